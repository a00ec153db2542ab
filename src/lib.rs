//! resound: a Pusher Channels protocol 7 server, built as a drop-in for Laravel Reverb.
//!
//! Architecture, from the edge inwards:
//! - `server` accepts TCP connections on one listener and hands each to hyper;
//! - `http` routes `/up`, the HTTP API (`/apps/{id}/...`) and WebSocket upgrades (`/app/{key}`);
//! - `connection::session` owns one WebSocket (reader), `connection::writer` its write half,
//!   fed by a bounded queue behind a `ConnectionHandle`;
//! - `channel::registry` maps channels to subscribers per app; `dispatch` is the one path
//!   every HTTP event takes to subscribers (serialized once, shared by all recipients);
//! - `protocol` and `auth` are pure: message shapes, names, errors and signatures;
//! - `cluster` shares events, presence and queries with other nodes over Redis pub/sub
//!   when scaling is enabled;
//! - `config` and `apps` read and validate settings once, before anything binds.

pub mod apps;
pub mod auth;
pub mod channel;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod http;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod users;

pub use config::Config;
pub use server::{run, serve};
