//! Entry points for the fuzz targets in `fuzz/`. `cargo fuzz` builds with `--cfg fuzzing`;
//! otherwise this module does not exist, and nothing here widens the crate's API.
//!
//! Each function is a thin wrapper: it runs the crate's own parser or handler on the
//! fuzzer's input and does no I/O of its own. The state they run against is built once (for
//! the cluster, once per input: see [`cluster_payload`]), with three apps of different
//! settings and one socketless "peer" connection per app that is subscribed to a few
//! channels and signed in, so that what an input publishes has somebody to reach.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

use crate::apps::{App, ClientEvents, RateLimit};
use crate::auth;
use crate::channel::presence::PresenceMember;
use crate::channel::ChannelKind;
use crate::cluster::Inlet;
use crate::config::{Config, Scaling};
use crate::connection::{session, ConnectionHandle};
use crate::http::signature::parse_query;
use crate::protocol::ClientMessage;
use crate::state::{AppRuntime, State};
use crate::users::SignedInUser;

/// The apps' ids, in the order the `app` arguments below index them.
const APPS: [&str; 3] = ["1", "2", "3"];

/// The channels each app's peer is subscribed to.
const PEER_CHANNELS: [&str; 5] = [
    "my-channel",
    "private-chat",
    "presence-room",
    "cache-news",
    "private-encrypted-secret",
];

/// An auth value a frame may carry (`"auth":"sign"`) to have the wrapper replace it with a
/// valid signature: the fuzzer cannot forge HMACs, and the presence and sign-in paths lie
/// behind them.
const SIGN_ME: &str = "sign";

/// Parses one inbound text frame; true when it is a valid message.
pub fn client_message(text: &str) -> bool {
    ClientMessage::parse(text).is_ok()
}

/// Runs a whole session of app `APPS[app % 3]` over `frames` (text frames, in order), from
/// `connection_established` to cleanup, then checks that cleanup left nothing behind.
/// A frame whose `data.auth` is `"sign"` gets a valid signature for this connection first.
pub fn client_session(app: usize, frames: &[&str]) {
    let world = world();
    let app = &world.apps[app % APPS.len()];
    let handle = app.register(|id| ConnectionHandle::new(id, world.state.outbound.clone(), None));
    let id = handle.id();
    let socket_id = id.to_string();
    let frames = frames
        .iter()
        .map(|f| Message::text(signed(f, &app.app, &socket_id).unwrap_or_else(|| (*f).into())))
        .collect();
    runtime().block_on(session::replay(
        world.state.clone(),
        app.clone(),
        handle.clone(),
        frames,
    ));
    handle.take_texts();
    assert!(
        !app.connections.contains_key(&id),
        "cleanup forgot the connection"
    );
    for channel in app.channels.occupied("") {
        assert!(
            PEER_CHANNELS.contains(&channel.name.as_str()) && channel.subscription_count == 1,
            "cleanup left {} subscribed to {}",
            channel.subscription_count,
            channel.name,
        );
    }
    world.drain();
}

/// Answers an HTTP API request `/apps/{id}/..` with its body read, as the server does from
/// the signature check on; returns the status, or 0 for a method hyper would refuse. A
/// query without `auth_signature` is signed first (with `auth_key`, `auth_timestamp`,
/// `auth_version` and `body_md5` appended), so that the endpoints are reached.
pub fn http_request(method: &str, path: &str, query: &str, body: &[u8]) -> u16 {
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return 0;
    };
    let world = world();
    let query = match query.contains("auth_signature=") {
        true => query.to_owned(),
        false => signed_query(&world.state, &method, path, query, body),
    };
    let body = Bytes::copy_from_slice(body);
    let status = runtime().block_on(crate::http::api_request(
        &world.state,
        &method,
        path,
        &query,
        &body,
    ));
    world.drain();
    status.as_u16()
}

/// Reads `bytes` as what the Redis subscriber receives and applies each published message,
/// applies `bytes` as one message payload (which the MAC check refuses unless it is one),
/// and applies `bytes` as a message sealed by another node (so `apply` itself is reached). A fresh node each time: the bus
/// remembers the peers and sequence numbers it heard, so with state kept across inputs an
/// input's effect would depend on the ones before it, and a crash might not reproduce.
pub fn cluster_payload(bytes: &[u8]) {
    let scaling = Scaling::new("redis://127.0.0.1:1", "fuzz");
    let config = Config {
        scaling: Some(scaling.clone()),
        ..config()
    };
    let (inlet, plugins) = Inlet::plug(scaling, &config.apps);
    let state = Arc::new(State::with_plugins(config, plugins));
    let _peers = join_peers(&state);
    inlet.receive(&state, bytes);
    inlet.apply(&state, bytes);
    inlet.apply_sealed(&state, bytes);
}

/// Loads a configuration from a config file's text and a `.env` file's text (no flags, no
/// environment); when it is valid, renders it as a log would (the Redis URL redacted) and
/// builds the server's state from it.
pub fn config_file(file: &str, dotenv: &str) -> Result<(), String> {
    let mut config = crate::config::from_texts(file, dotenv).map_err(|e| e.0)?;
    std::hint::black_box(format!("{config:?}"));
    // The metrics' own address would be bound (a host name resolved): kept off the network.
    if let crate::config::Metrics::Own(_) = config.metrics {
        config.metrics = crate::config::Metrics::MainPort;
    }
    drop(crate::server::state(config));
    Ok(())
}

/// The state shared by the session and HTTP targets, with each app's peer.
struct World {
    state: Arc<State>,
    apps: Vec<Arc<AppRuntime>>,
    peers: Vec<ConnectionHandle>,
}

impl World {
    /// Empties the peers' queues, so they never fill up and close.
    fn drain(&self) {
        for p in &self.peers {
            p.take_texts();
        }
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let state = crate::server::state(config());
        let peers = join_peers(&state);
        let apps = APPS
            .iter()
            .map(|id| state.app_by_id(id).expect("configured").clone())
            .collect();
        World { state, apps, peers }
    })
}

/// One current-thread runtime for every input: sessions need its timers.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Three apps: the defaults; everything optional switched on and small; and a disabled app
/// that refuses client events and closes connections over its rate limit.
fn config() -> Config {
    let mut strict = App::new("2", "key-2", "secret-2");
    strict.client_events = ClientEvents::All;
    strict.public_client_events = false;
    strict.subscription_count = true;
    strict.max_presence_members = 2;
    strict.max_user_info_size = 64;
    strict.client_event_rate = 5;
    strict.authorized_timeout = Some(Duration::from_secs(60));
    strict.rate_limit = Some(RateLimit {
        max_attempts: 20,
        decay: Duration::from_secs(1),
        terminate: false,
    });
    let mut closed = App::new("3", "key-3", "secret-3");
    closed.enabled = false;
    closed.client_events = ClientEvents::None;
    closed.rate_limit = Some(RateLimit {
        max_attempts: 5,
        decay: Duration::from_secs(1),
        terminate: true,
    });
    Config {
        apps: vec![App::new("1", "key-1", "secret-1"), strict, closed],
        dev_app: false,
        max_batch_size: 10,
        ..Config::default()
    }
}

/// Registers each app's peer: subscribed to [`PEER_CHANNELS`] (as presence member "peer"),
/// and signed in as "peer", watching "1" and "fuzz".
fn join_peers(state: &State) -> Vec<ConnectionHandle> {
    let user = r#"{"id":"peer","user_info":{"name":"Peer"},"watchlist":["1","fuzz"]}"#;
    let user = SignedInUser::from_user_data(user).expect("valid user data");
    let member = r#"{"user_id":"peer","user_info":{"name":"Peer"}}"#;
    let mut peers = Vec::new();
    for id in APPS {
        let app = state.app_by_id(id).expect("configured");
        let handle = app.register(|id| ConnectionHandle::new(id, state.outbound.clone(), None));
        for channel in PEER_CHANNELS {
            let kind = ChannelKind::from_name(channel);
            let member = kind
                .presence
                .then(|| PresenceMember::from_channel_data(member).expect("valid channel data"));
            let _ = app.channels.subscribe(channel, kind, &handle, member);
        }
        app.users.sign_in(&user, &handle);
        handle.take_texts();
        peers.push(handle);
    }
    peers
}

/// `frame` with a valid `auth` for `socket_id` in place of `"sign"` (in a `pusher:subscribe`
/// or `pusher:signin` whose `data` is an object or a string holding one); `None` otherwise.
fn signed(frame: &str, app: &App, socket_id: &str) -> Option<String> {
    let mut frame: Value = serde_json::from_str(frame).ok()?;
    let event = frame.get("event")?.as_str()?.to_owned();
    let data = frame.get_mut("data")?;
    let mut fields: Value = match &*data {
        Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    if fields.get("auth")?.as_str()? != SIGN_ME {
        return None;
    }
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let to_sign = match event.as_str() {
        "pusher:subscribe" => {
            auth::channel_string_to_sign(socket_id, text("channel")?, text("channel_data"))
        }
        "pusher:signin" => auth::signin_string_to_sign(socket_id, text("user_data")?),
        _ => return None,
    };
    let token = format!("{}:{}", app.key, auth::sign(&app.secret, &to_sign));
    fields["auth"] = Value::String(token);
    *data = match data {
        Value::String(_) => Value::String(fields.to_string()),
        _ => fields,
    };
    Some(frame.to_string())
}

/// `query` with the parameters of a valid signature appended, for the app the path names
/// (the first app when it names none).
fn signed_query(state: &State, method: &Method, path: &str, query: &str, body: &[u8]) -> String {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let app = decoded
        .strip_prefix("/apps/")
        .and_then(|rest| state.app_by_id(rest.split('/').next().unwrap_or("")))
        .or_else(|| state.app_by_id(APPS[0]))
        .expect("configured");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut query = match query.is_empty() {
        true => String::new(),
        false => format!("{query}&"),
    };
    query.push_str(&format!(
        "auth_key={}&auth_timestamp={now}&auth_version=1.0",
        app.app.key
    ));
    if !body.is_empty() {
        query.push_str(&format!("&body_md5={}", auth::md5_hex(body)));
    }
    let to_sign = auth::api_string_to_sign(method.as_str(), &decoded, &parse_query(&query));
    let signature = auth::sign(&app.app.secret, &to_sign);
    format!("{query}&auth_signature={signature}")
}
