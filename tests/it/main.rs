//! The integration tests, one module per behaviour, compiled and linked as one test binary
//! (one link of the server instead of one per file). Each test starts the real server on
//! `127.0.0.1:0` through `support`; `cli` runs the built `resound` binary.

mod support;

mod channels;
mod cli;
mod client_events;
mod connect;
mod console;
mod dotenv;
mod drain;
mod health;
mod http_api;
mod metrics;
mod presence;
mod robustness;
mod scaling;
mod scaling_cache;
mod shutdown;
mod signin;
mod subscription_count;
mod tls;
mod tls_renewal;
mod webhooks;
mod webhooks_cluster;
