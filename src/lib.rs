//! resound: a Pusher Channels protocol 7 server, built as a drop-in for Laravel Reverb.
//!
//! Architecture, from the edge inwards:
//! - `server` accepts TCP connections on one listener and hands each to hyper;
//! - `http` routes `/up`, the HTTP API (`/apps/{id}/...`) and WebSocket upgrades (`/app/{key}`);
//! - `connection::session` owns one WebSocket (reader), `connection::writer` its write half,
//!   fed by a bounded queue behind a `ConnectionHandle`;
//! - `channel::registry` maps channels to subscribers per app; `dispatch` is the one path
//!   every HTTP event takes to subscribers (serialized once, shared by all recipients);
//! - `hooks` is the seam: the core reports what happens there as typed values, and asks
//!   cluster-wide questions through it; listeners are plugged in at startup (`server::state`);
//! - `cluster` is one such plugin: it shares events, presence and queries with other nodes
//!   over Redis pub/sub when scaling is enabled. Nothing in the core imports it;
//! - `console` is another: the live debug console, a listener plus HTTP pages mounted under
//!   the path prefix (`state::Pages`), when `RESOUND_CONSOLE_ENABLED` is on;
//! - `webhooks` is another: Pusher webhooks, signed, batched, delayed and retried;
//! - `metrics` is another: Prometheus metrics, from what the seam reports and from the
//!   counters the core keeps in `stats` (traffic, HTTP API, slow consumers, the Redis link);
//! - `protocol` and `auth` are pure: message shapes, names, errors and signatures;
//! - `config` and `apps` read and validate settings once, before anything binds.
//!
//! docs/architecture.md walks through the layers and the path of a message.

// Items are `pub(crate)` unless reachable from here: the compiler then finds dead code.
#![warn(unreachable_pub)]

// Public: what the binary and the integration tests use (settings, signatures, the state
// they inspect, the seam's types, starting and stopping). Everything else is the crate's own,
// so the compiler reports what nobody uses (`unreachable_pub`, `dead_code`).
pub mod apps;
pub mod auth;
pub mod config;
pub mod health;
pub mod hooks;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;

pub(crate) mod channel;
pub(crate) mod cluster;
pub(crate) mod connection;
pub(crate) mod console;
pub(crate) mod dispatch;
pub(crate) mod drain;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod protocol;
pub(crate) mod stats;
pub(crate) mod users;
pub(crate) mod webhooks;

// Entry points for the fuzz targets (fuzz/): compiled only by `cargo fuzz`.
#[cfg(fuzzing)]
pub mod fuzzing;

pub use config::Config;
pub use server::{run, serve};
