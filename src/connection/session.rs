//! The life of one connection: `connection_established`, then one read loop over inbound
//! frames, the heartbeat timer and shutdown, then cleanup with a single exit. The session is
//! the only reader of the socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, debug_span, Instrument};

use super::close::{CloseReason, MESSAGE_TOO_BIG, RATE_LIMITED};
use super::handle::ConnectionHandle;
use super::inbound::Inbound;
use super::pending::Pending;
use super::socket::Accepted;
use super::throttle::Throttle;
use super::writer;
use crate::apps::{ClientEvents, RateLimit};
use crate::auth;
use crate::channel::presence::PresenceMember;
use crate::channel::ChannelKind;
use crate::hooks::Activity;
use crate::protocol::message::Subscribe;
use crate::protocol::names::{excerpt, is_event_name_too_long, validate_channel_name};
use crate::protocol::{server, ClientMessage, PusherError};
use crate::state::{AppRuntime, ConnectionSlot, State};
use crate::users::SignedInUser;

/// An empty WebSocket ping frame (server to client: unmasked).
const WS_PING: &[u8] = &[0x89, 0x00];

/// Sends `pusher:error` and a close frame with the same code to a client refused at handshake.
pub(crate) async fn reject<S>(mut ws: WebSocketStream<S>, err: PusherError)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let code = err.close_code().unwrap_or(err.code());
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        ws.feed(Message::text(server::error(&err))).await?;
        ws.send(Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: err.to_string().into(),
        })))
        .await?;
        // Wait for the client's close reply so the close handshake completes.
        while ws.next().await.is_some_and(|r| r.is_ok()) {}
        Ok::<_, WsError>(())
    })
    .await;
}

/// Runs an accepted connection to its end. `prefix` holds bytes read past the upgrade
/// request, which belong to the WebSocket stream.
pub(crate) async fn run(
    socket: Accepted,
    prefix: Bytes,
    config: WebSocketConfig,
    state: Arc<State>,
    app: Arc<AppRuntime>,
    slot: ConnectionSlot,
) {
    let (read, write) = socket.split();
    let limits = state.outbound.clone().counted(app.stats.clone());
    let handle = app.register(|id| ConnectionHandle::new(id, limits, Some(write)));
    let inbound = Inbound::new(prefix, read, handle.clone());
    let mut stream = WebSocketStream::from_raw_socket(inbound, Role::Server, Some(config)).await;
    // A debug span: disabled (and free) unless debug logging is on.
    let span = debug_span!("conn", socket_id = %handle.id(), app_id = %app.app.id);
    let writer = tokio::spawn(writer::run(handle.clone()));
    let mut session = Session::new(state, app, handle);
    async move {
        debug!("connection open");
        // Cleanup must run even if handling a frame panicked, or the connection's entries
        // would stay in the registries.
        let _ = std::panic::AssertUnwindSafe(session.read_loop(&mut stream))
            .catch_unwind()
            .await;
        // tungstenite writes its reply to a client's close frame only on the next read or
        // flush: flush it into the queue, where it goes out before the connection ends.
        let _ = SinkExt::flush(&mut stream).await;
        session.cleanup();
        let _ = writer.await;
        drop(slot);
        debug!("connection closed");
    }
    .instrument(span)
    .await
}

/// Runs a session over `frames` for `handle`, a handle without a socket registered with
/// `app`, as [`run`] does over a socket: `connection_established`, each frame, cleanup. For
/// the fuzz target `ws_message` (`crate::fuzzing`) and tests; a panic is not caught.
#[cfg(any(test, fuzzing))]
pub(crate) async fn replay(
    state: Arc<State>,
    app: Arc<AppRuntime>,
    handle: ConnectionHandle,
    frames: Vec<Message>,
) {
    let mut session = Session::new(state, app, handle);
    let mut stream = futures_util::stream::iter(frames.into_iter().map(Ok));
    session.read_loop(&mut stream).await;
    session.cleanup();
}

struct Session {
    state: Arc<State>,
    app: Arc<AppRuntime>,
    handle: ConnectionHandle,
    /// Subscribed channels, with the presence user id this socket joined as.
    channels: HashMap<String, Option<Box<RawValue>>>,
    rate: Option<(Instant, u32)>,
    /// Client events allowed from now on (`client_event_rate`); `None` when unlimited.
    client_events: Option<Throttle>,
    /// The user this connection signed in as.
    user: Option<SignedInUser>,
    /// Signed in, or subscribed to a private or presence channel (authorized connections).
    authorized: bool,
}

impl Session {
    fn new(state: Arc<State>, app: Arc<AppRuntime>, handle: ConnectionHandle) -> Session {
        Session {
            state,
            client_events: Throttle::new(app.app.client_event_rate),
            app,
            handle,
            channels: HashMap::new(),
            rate: None,
            user: None,
            authorized: false,
        }
    }

    fn send(&self, text: String) {
        self.handle.send_text(text.into());
    }

    /// Sends `pusher:error` (one that leaves the connection open) and reports it; `channel`
    /// is the channel the refused message named. Errors are rare: the text is built here.
    fn send_error(&self, err: &PusherError, channel: Option<&str>) {
        debug!(code = err.code(), message = %err, "pusher:error");
        self.send(server::error(err));
        if !self.app.hooks.is_heard() {
            return;
        }
        let message = err.to_string();
        let channel = channel.filter(|c| validate_channel_name(c).is_ok());
        self.app.hooks.report(|| Activity::ClientError {
            socket_id: Some(self.handle.id()),
            code: err.code(),
            message: &message,
            channel,
        });
    }

    /// Ends the connection with `err` and its own close code.
    fn close_with(&self, err: &PusherError) {
        self.handle.close(CloseReason::for_error(err));
    }

    async fn read_loop<St>(&mut self, stream: &mut St)
    where
        St: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let app = &self.app.app;
        self.send(server::connection_established(
            &self.handle.id().to_string(),
            app.activity_timeout,
        ));
        let (ping_interval, pong_timeout) = (app.ping_interval, app.pong_timeout);
        let mut last_seen = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut ws_pings = false;
        let timer = tokio::time::sleep(ping_interval);
        tokio::pin!(timer);
        // Far in the future when the app does not require authorized connections.
        let auth_deadline = Instant::now()
            + app
                .authorized_timeout
                .unwrap_or(Duration::from_secs(86400 * 365));
        let auth_timer = tokio::time::sleep_until(auth_deadline);
        tokio::pin!(auth_timer);
        // Shutdown closes every registered connection (`State::close_all`); this one may have
        // registered just after that sweep.
        if self.state.shutdown.is_cancelled() {
            self.close_with(&PusherError::ShuttingDown);
            return;
        }
        let handle = self.handle.clone();
        let closed = handle.closed();
        tokio::pin!(closed);
        loop {
            // Every branch is cancel-safe: the close wait, timers, and `StreamExt::next`.
            tokio::select! {
                biased;
                _ = &mut closed => return,
                _ = &mut auth_timer, if !self.authorized => {
                    debug!("not authorized within timeout");
                    self.close_with(&PusherError::NotAuthorizedInTime);
                    return;
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    match ping_sent {
                        Some(at) if last_seen <= at && now >= at + pong_timeout => {
                            debug!("no pong in time");
                            self.close_with(&PusherError::PongTimeout);
                            return;
                        }
                        Some(at) if last_seen <= at => timer.as_mut().reset(at + pong_timeout),
                        _ if now >= last_seen + ping_interval => {
                            if ws_pings { self.handle.send_raw(Bytes::from_static(WS_PING)) } else { self.send(server::PING.to_owned()) }
                            ping_sent = Some(now);
                            timer.as_mut().reset(now + pong_timeout);
                        }
                        _ => timer.as_mut().reset(last_seen + ping_interval),
                    }
                }
                frame = stream.next() => {
                    last_seen = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if !self.on_text(&text) {
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => self.send_error(&PusherError::InvalidMessage, None),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => ws_pings = true,
                        Some(Ok(Message::Close(_))) | None => return,
                        Some(Ok(Message::Frame(_))) => {}
                        Some(Err(WsError::Capacity(_))) => {
                            debug!("message over max_message_size");
                            let (code, text) = MESSAGE_TOO_BIG;
                            self.handle.close(CloseReason::bare(code, text, true));
                            return;
                        }
                        Some(Err(e)) => {
                            debug!(error = %e, "read failed");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Handles one text frame; false when the connection must end.
    fn on_text(&mut self, text: &str) -> bool {
        self.app.stats.received.add(1, text.len() as u64);
        if let Some(limit) = self.app.app.rate_limit.clone() {
            if !self.within_rate(&limit) {
                if limit.terminate {
                    let err = PusherError::RateLimited;
                    self.handle
                        .close(CloseReason::with_code(&err, RATE_LIMITED));
                    return false;
                }
                self.send_error(&PusherError::RateLimited, None);
                return true;
            }
        }
        // Names and sizes only: frames carry signatures, user data and event data.
        let bytes = text.len();
        let result = ClientMessage::parse(text).and_then(|msg| {
            debug!(
                event = msg.event(),
                channel = msg.channel(),
                bytes,
                "received"
            );
            self.on_message(msg)
        });
        if let Err(e) = result {
            // The message is parsed again for its channel: only on this rare path, and only
            // when a listener hears it.
            let parsed = self
                .app
                .hooks
                .is_heard()
                .then(|| ClientMessage::parse(text).ok())
                .flatten();
            self.send_error(&e, parsed.as_ref().and_then(|m| m.channel()));
        }
        true
    }

    /// Reverb's fixed window: at most `max_attempts` messages per `decay`.
    fn within_rate(&mut self, limit: &RateLimit) -> bool {
        let now = Instant::now();
        let (start, count) = self.rate.get_or_insert((now, 0));
        if now.duration_since(*start) >= limit.decay {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= limit.max_attempts
    }

    fn on_message(&mut self, msg: ClientMessage<'_>) -> Result<(), PusherError> {
        match msg {
            ClientMessage::Ping => self.send(server::PONG.to_owned()),
            ClientMessage::Pong | ClientMessage::Ignored => {}
            ClientMessage::Subscribe(sub) => self.subscribe(sub)?,
            ClientMessage::Unsubscribe { channel } => {
                if self.channels.remove(&channel).is_some() {
                    self.app.channels.unsubscribe(&channel, self.handle.id());
                    debug!(channel, "unsubscribed");
                }
            }
            ClientMessage::Signin { auth, user_data } => self.signin(&auth, &user_data)?,
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => {
                let relayed = self.client_event(&event, &channel, data);
                if relayed.is_err() {
                    self.app.stats.client_events_refused.add(1);
                }
                relayed?
            }
        }
        Ok(())
    }

    /// `pusher:signin`: verifies `{socket_id}::user::{user_data}` and records the user.
    fn signin(&mut self, auth_token: &str, user_data: &str) -> Result<(), PusherError> {
        let app = &self.app.app;
        let to_sign = auth::signin_string_to_sign(&self.handle.id().to_string(), user_data);
        if !auth::verify_auth_token(&app.key, &app.secret, &to_sign, auth_token) {
            debug!("signin refused: bad signature");
            return Err(PusherError::Unauthorized);
        }
        let user = SignedInUser::from_user_data(user_data)?;
        match &self.user {
            Some(current) if current.id != user.id => {
                debug!(
                    current = current.id,
                    requested = user.id,
                    "signin refused: already signed in as another user"
                );
                return Err(PusherError::Unauthorized);
            }
            Some(_) => {
                // Same user again: confirm, keep the existing registration.
                self.send(server::signin_success(user_data));
                return Ok(());
            }
            None => {}
        }
        self.send(server::signin_success(user_data));
        if user.watchlist_truncated {
            self.send_error(&PusherError::WatchlistLimit, None);
        }
        self.app.users.sign_in(&user, &self.handle);
        debug!(user_id = user.id, "signed in");
        self.user = Some(user);
        self.authorized = true;
        Ok(())
    }

    fn subscribe(&mut self, sub: Subscribe) -> Result<(), PusherError> {
        let name = sub.channel;
        validate_channel_name(&name)
            .map_err(|e| PusherError::InvalidChannelName(format!("\"{}\": {e}", excerpt(&name))))?;
        let kind = ChannelKind::from_name(&name);
        let app = &self.app.app;
        let limit = self.state.config.max_channels_per_connection;
        if self.channels.len() >= limit && !self.channels.contains_key(&name) {
            return Err(PusherError::TooManyChannels(limit));
        }
        if kind.server_to_user {
            let owner = &name[crate::protocol::names::SERVER_TO_USER_PREFIX.len()..];
            if self.user.as_ref().map(|u| u.id.as_str()) != Some(owner) {
                debug!(
                    channel = name,
                    "subscription refused: not signed in as this user"
                );
                return Err(PusherError::Unauthorized);
            }
        }
        let mut member = None;
        if kind.needs_auth() {
            let socket_id = self.handle.id().to_string();
            let data = sub.channel_data.as_deref();
            if kind.presence && data.is_none() && self.user.is_none() {
                return Err(PusherError::Unauthorized);
            }
            let token = sub.auth.as_deref().unwrap_or("");
            let signed = |data: Option<&str>| {
                let to_sign = auth::channel_string_to_sign(&socket_id, &name, data);
                auth::verify_auth_token(&app.key, &app.secret, &to_sign, token)
            };
            // Private channels sign `{socket_id}:{channel}`; Reverb also accepts the string
            // with `:{channel_data}` when a client sends channel_data there, and so do we.
            let valid = if kind.presence {
                signed(data)
            } else {
                signed(None) || (data.is_some() && signed(data))
            };
            if !valid {
                debug!(channel = name, "subscription refused: bad signature");
                return Err(PusherError::Unauthorized);
            }
            if kind.presence {
                member = Some(match (data, &self.user) {
                    (Some(data), _) => PresenceMember::from_channel_data(data)?,
                    (None, Some(user)) => {
                        PresenceMember::from_user(&user.id, user.user_info.clone())
                    }
                    (None, None) => return Err(PusherError::Unauthorized),
                });
                let max = self.app.app.max_user_info_size;
                let info = member.as_ref().and_then(|m| m.user_info.as_ref());
                if max > 0 && info.is_some_and(|i| i.get().len() > max) {
                    return Err(PusherError::UserInfoTooLarge(max));
                }
            }
        }
        let user_id = member.as_ref().map(|m| m.user_id.clone());
        if self
            .app
            .channels
            .subscribe(&name, kind, &self.handle, member)?
        {
            debug!(channel = name, "subscribed");
            self.channels.insert(name, user_id);
        }
        self.authorized |= kind.needs_auth();
        Ok(())
    }

    fn client_event(
        &mut self,
        event: &str,
        channel: &str,
        data: Option<&RawValue>,
    ) -> Result<(), PusherError> {
        let mode = self.app.app.client_events;
        if mode == ClientEvents::None {
            return Err(PusherError::ClientEventsDisabled);
        }
        let max_name = self.state.config.max_event_name_length;
        if is_event_name_too_long(event, max_name) {
            return Err(PusherError::ClientEventNameTooLong(max_name));
        }
        if !ChannelKind::from_name(channel).allows_client_events(self.app.app.public_client_events)
        {
            return Err(PusherError::ClientEventForbidden(excerpt(channel)));
        }
        let membership = self.channels.get(channel);
        if membership.is_none() && mode != ClientEvents::All {
            return Err(PusherError::NotMember);
        }
        if let Some(throttle) = &mut self.client_events {
            if !throttle.allow(Instant::now()) {
                return Err(PusherError::ClientEventRateLimited);
            }
        }
        let user_id = membership.and_then(|m| m.as_deref());
        let text = || server::client_event(event, channel, data, user_id).into();
        let socket_id = self.handle.id();
        let mut out = Pending::new();
        let n = self
            .app
            .channels
            .publish(channel, false, text, Some(socket_id), &mut out);
        out.flush();
        self.app.hooks.report(|| Activity::ClientEvent {
            channel,
            event,
            data,
            user_id,
            socket_id,
        });
        debug!(
            event,
            channel,
            recipients = n.saturating_sub(1),
            "client event relayed"
        );
        Ok(())
    }

    /// The single exit: leave every channel (announcing presence departures), forget the
    /// connection, and let the writer finish.
    fn cleanup(&mut self) {
        let id = self.handle.id();
        for (channel, _) in self.channels.drain() {
            self.app.channels.unsubscribe(&channel, id);
        }
        if let Some(user) = self.user.take() {
            self.app.users.sign_out(&user, id);
        }
        self.app.connections.remove(&id);
        self.handle.close(CloseReason::silent(true));
        let reason = self.handle.close_reason();
        // An error that ended the connection went out as its last frame, before the close.
        if let Some((code, (_, message))) =
            reason.and_then(|r| Some((r.error_code?, r.code.as_ref()?)))
        {
            self.app.hooks.report(|| Activity::ClientError {
                socket_id: Some(id),
                code,
                message,
                channel: None,
            });
        }
        let code = reason.and_then(|r| Some(r.code.as_ref()?.0));
        self.app.hooks.report(|| Activity::ConnectionClosed {
            socket_id: id,
            code,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A whole session without a socket (as the fuzz target `ws_message` runs them): every
    /// frame answered in order, and nothing left behind by cleanup.
    #[tokio::test]
    async fn a_replayed_session_answers_each_frame_and_leaves_nothing() {
        let state = Arc::new(State::new(Config::default()));
        let app = state.apps().next().expect("the default app").clone();
        let handle = app.register(|id| ConnectionHandle::new(id, state.outbound.clone(), None));
        let frames = [
            r#"{"event":"pusher:ping"}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
            "not json",
        ];
        let frames = frames.into_iter().map(Message::text).collect();
        replay(state.clone(), app.clone(), handle.clone(), frames).await;
        let texts = handle.take_texts();
        assert!(
            texts[0].contains("pusher:connection_established"),
            "{texts:?}"
        );
        assert_eq!(
            texts[1..3],
            [
                server::PONG.to_owned(),
                server::subscription_succeeded("news", "{}")
            ]
        );
        assert_eq!(texts[3], server::error(&PusherError::InvalidMessage));
        assert_eq!(texts.len(), 4);
        assert!(app.connections.is_empty());
        assert!(app.channels.occupied("").is_empty());
    }
}
