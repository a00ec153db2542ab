//! The Redis side of the bus: one subscriber connection that feeds [`super::apply::receive`] (read at
//! our pace, see [`Subscriber`]), one connection that publishes the outbox (pipelined, in
//! order), the beat, and reconnection with backoff. A link that hears nothing, not even its own
//! beat, for the peer timeout is redialled. Beside it, on its own timer whether the link is up
//! or not, nodes silent for the peer timeout are dropped with their members.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::apply::{drop_node, queue_state, receive};
use super::bus::Bus;
use super::subscriber::Subscriber;
use super::wire::{encode, Msg, BATCH};
use crate::connection::Pending;
use crate::state::State;
use crate::stats::RedisStats;

const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The longest wait between attempts while the node drains: its window is seconds long.
const DRAIN_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// After a reconnect, how many beats we wait at most for the nodes we knew to be heard again
/// before publishing what we queued meanwhile (see `Link::rejoin`).
const REJOIN_WAIT_BEATS: u32 = 3;
/// How often a draining node looks whether its last client has gone (then it says `bye`).
const GONE_CHECK: Duration = Duration::from_millis(100);
/// The longest Redis may take to answer a command before the link counts as lost.
const RESPONSE_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// Runs the link until shutdown has drained this node's clients, when it says `bye`.
pub(super) async fn run(state: Arc<State>, bus: Arc<Bus>) {
    let Some(mut outbox) = bus.inbox_for_link.lock().take() else {
        return;
    };
    state
        .stats
        .redis
        .enabled
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let settings = &bus.settings;
    if settings.url.starts_with("rediss:") {
        super::tls::install_provider();
    }
    let opened = match &settings.ca {
        Some(pem) => redis::Client::build_with_tls(
            settings.url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => redis::Client::open(settings.url.as_str()),
    };
    let client = match opened {
        Ok(c) => c,
        Err(e) => {
            // The URL was checked when the configuration was read.
            warn!(error = %e, "scaling: bad Redis URL; running as a single node");
            return;
        }
    };
    tokio::select! {
        () = links(&state, &bus, &client, &mut outbox) => {}
        never = expire_silent_peers(&state, &bus) => match never {},
    }
}

/// Drops the nodes silent for the peer timeout, with their presence members, signed-in users
/// and counts, checking every beat. On a timer of its own, not the link's beat: while Redis
/// is unreachable the others are silent too, and their members must leave here as they would
/// if those nodes had died. When the link is back, their answer to our hello brings back
/// whoever is still there.
async fn expire_silent_peers(state: &State, bus: &Bus) -> Infallible {
    let mut tick = tokio::time::interval(bus.settings.beat_every);
    loop {
        tick.tick().await;
        let mut out = Pending::all_to_jobs();
        for node in bus.expire_peers() {
            drop_node(state, &node, &mut out);
        }
        out.flush();
    }
}

/// Connects, serves, and reconnects with backoff, until shutdown has drained this node.
async fn links(
    state: &State,
    bus: &Bus,
    client: &redis::Client,
    outbox: &mut mpsc::Receiver<String>,
) {
    let key = match bus.settings.secret {
        Some(_) => "RESOUND_SCALING_SECRET",
        None => "derived from the apps' ids and secrets",
    };
    // Taken from the outbox and numbered but not yet known to be published: kept across a
    // reconnect and sent first (with the same numbers, so the others skip what they have).
    let mut batch = Vec::with_capacity(BATCH);
    let mut seq = Seq(0);
    let mut backoff = Duration::from_millis(250);
    let stats = &state.stats.redis;
    loop {
        match connect(client, bus).await {
            Ok((publisher, messages)) => {
                stats.connects.add(1);
                stats.set_up(true);
                info!(
                    node = bus.node(),
                    channel = bus.settings.channel,
                    key,
                    "scaling: connected to Redis"
                );
                backoff = Duration::from_millis(250);
                bus.linked(true);
                let link = Link {
                    state,
                    bus,
                    publisher,
                    messages,
                };
                let served = link.serve(outbox, &mut batch, &mut seq).await;
                bus.linked(false);
                stats.set_up(false);
                match served {
                    Ok(()) => return,
                    Err(e) => warn!(error = %e, "scaling: lost Redis; reconnecting"),
                }
                bus.first_sync.finish();
                stats.failures.add(1);
            }
            Err(e) => {
                // Serve alone meanwhile, rather than hold the first clients.
                bus.first_sync.finish();
                stats.failures.add(1);
                warn!(error = %e, "scaling: cannot reach Redis; retrying");
            }
        }
        // Shutdown does not end the retries while this node still has clients: the others
        // must hear of their departures (the state we send on reconnecting brings back the
        // members they dropped after the peer timeout) and of our `bye`. Once the last client
        // has gone there is nothing left to tell, and the others drop us at the peer timeout.
        let waited_from = tokio::time::Instant::now();
        loop {
            let draining = state.shutdown.is_cancelled();
            if draining && no_clients(state) {
                return;
            }
            let retry = waited_from
                + if draining {
                    backoff.min(DRAIN_BACKOFF_MAX)
                } else {
                    backoff
                };
            tokio::select! {
                () = tokio::time::sleep_until(retry) => break,
                () = tokio::time::sleep(GONE_CHECK), if draining => {}
                () = state.shutdown.cancelled(), if !draining => {}
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether every app's last connection has gone (a draining node is then done).
fn no_clients(state: &State) -> bool {
    state.apps().all(|app| app.connections.is_empty())
}

async fn connect(
    client: &redis::Client,
    bus: &Bus,
) -> Result<(MultiplexedConnection, Subscriber), String> {
    let timeout = bus.settings.timeout;
    let dial = async {
        // The crate's default response timeout (0.5 s) would count a large state message on a
        // slow link as a lost connection; much longer would stall the link past our beats.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout.min(RESPONSE_TIMEOUT_MAX)));
        let publisher = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        let settings = &bus.settings;
        let subscriber =
            Subscriber::connect(&settings.url, settings.ca.as_deref(), &settings.channel).await?;
        Ok::<_, String>((publisher, subscriber))
    };
    match tokio::time::timeout(timeout, dial).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

async fn publish(
    conn: &mut MultiplexedConnection,
    channel: &str,
    texts: &[String],
    stats: &RedisStats,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for t in texts {
        pipe.cmd("PUBLISH").arg(channel).arg(t.as_bytes()).ignore();
    }
    pipe.query_async::<()>(conn)
        .await
        .map_err(|e| e.to_string())?;
    stats.published.add(texts.len() as u64);
    Ok(())
}

/// The next sequence number of this node's messages (see `Envelope::seq`).
struct Seq(u64);

impl Seq {
    /// `msg` (encoded) in its numbered, signed envelope.
    fn wrap(&mut self, bus: &Bus, msg: &str) -> String {
        self.0 += 1;
        bus.key().seal(bus.node(), self.0, msg)
    }
}

struct Link<'a> {
    state: &'a State,
    bus: &'a Bus,
    publisher: MultiplexedConnection,
    messages: Subscriber,
}

/// Takes up to [`BATCH`] waiting messages into `batch` (numbered) without waiting.
fn take_waiting(
    bus: &Bus,
    outbox: &mut mpsc::Receiver<String>,
    batch: &mut Vec<String>,
    seq: &mut Seq,
) {
    while batch.len() < BATCH {
        match outbox.try_recv() {
            Ok(text) => {
                bus.dequeued(text.len());
                batch.push(seq.wrap(bus, &text));
            }
            Err(_) => break,
        }
    }
}

impl Link<'_> {
    /// Says hello at once (everybody answers with their state) and then, before anything we
    /// queued while away is published, waits until every node we knew has been heard on
    /// this connection: Redis keeps nothing for a channel nobody subscribes to, so what we
    /// published before a node that restarted with Redis had subscribed again would be lost
    /// for it (the soak test saw that). Messages heard meanwhile are applied. A node that
    /// does not come back is waited for at most [`REJOIN_WAIT_BEATS`] beats.
    async fn rejoin(&mut self, seq: &mut Seq) -> Result<(), String> {
        let (state, bus) = (self.state, self.bus);
        let since = Instant::now();
        let expected = bus.live_peers();
        let hello = seq.wrap(bus, &encode(&Msg::Hello));
        let stats = &state.stats.redis;
        // PUBLISH answers how many subscribers heard it: the nodes whose state we wait for
        // before serving (`sync.rs`), ourselves included.
        let receivers: usize = redis::cmd("PUBLISH")
            .arg(&bus.settings.channel)
            .arg(hello.as_bytes())
            .query_async(&mut self.publisher)
            .await
            .map_err(|e| e.to_string())?;
        stats.published.add(1);
        bus.first_sync.hello_reached(receivers);
        if expected.is_empty() {
            return Ok(());
        }
        let wait = (bus.settings.beat_every * REJOIN_WAIT_BEATS).min(bus.settings.peer_timeout);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        while !bus.heard_all_since(&expected, since) {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = &mut deadline => {
                    info!("scaling: not every node was heard after reconnecting; publishing anyway");
                    break;
                }
                payload = self.messages.next_message() => {
                    let payload = payload?;
                    stats.received.add(1);
                    receive(state, bus, &payload);
                }
            }
        }
        Ok(())
    }

    async fn serve(
        mut self,
        outbox: &mut mpsc::Receiver<String>,
        batch: &mut Vec<String>,
        seq: &mut Seq,
    ) -> Result<(), String> {
        let (state, bus) = (self.state, self.bus);
        let stats = &state.stats.redis;
        let channel = bus.settings.channel.as_str();
        // Peers' beats were not read while we were away (those silent for the peer timeout
        // were dropped meanwhile); their state answers our hello.
        bus.refresh_peers();
        self.rejoin(seq).await?;
        let publisher = &mut self.publisher;
        // What a lost connection left unconfirmed goes first, in order.
        if !batch.is_empty() {
            publish(publisher, channel, batch, stats).await?;
            batch.clear();
        }
        // Our state, behind whatever waits in the outbox, so that the others apply our older
        // changes before the state that follows them. The state covers whatever was
        // dropped, too.
        bus.resynced();
        queue_state(state, bus);
        let peer_timeout = bus.settings.peer_timeout;
        let mut beat = tokio::time::interval(bus.settings.beat_every);
        beat.tick().await;
        let mut last_heard = Instant::now();
        let mut incoming = Vec::with_capacity(BATCH);
        let mut draining = false;
        let mut gone = tokio::time::interval(GONE_CHECK);
        loop {
            // Not biased: under a backlog of messages the outbox and the beat still get their
            // turn (a node that stopped beating would be dropped by the others).
            tokio::select! {
                // The drain starts: the others hear at once that we no longer lead, and
                // keep our members and channels until our clients leave, as we report each
                // departure as usual; we keep publishing and reading meanwhile.
                _ = state.shutdown.cancelled(), if !draining => {
                    bus.leave();
                    draining = true;
                    bus.send(Msg::Draining);
                }
                _ = gone.tick(), if draining => {
                    if no_clients(state) {
                        // Best effort, within a second: what our clients' departures queued,
                        // then `bye`.
                        let farewell = async {
                            loop {
                                take_waiting(bus, outbox, batch, seq);
                                if batch.is_empty() {
                                    break;
                                }
                                publish(publisher, channel, batch, stats).await?;
                                batch.clear();
                            }
                            let bye = seq.wrap(bus, &encode(&Msg::Bye));
                            publish(publisher, channel, &[bye], stats).await
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(1), farewell).await;
                        return Ok(());
                    }
                }
                payload = self.messages.next_message() => {
                    last_heard = Instant::now();
                    let payload = payload?;
                    stats.received.add(1);
                    receive(state, bus, &payload);
                }
                n = outbox.recv_many(&mut incoming, BATCH) => {
                    if n == 0 {
                        return Ok(());
                    }
                    for text in incoming.drain(..) {
                        bus.dequeued(text.len());
                        batch.push(seq.wrap(bus, &text));
                    }
                    // On failure the batch stays for the next connection.
                    publish(publisher, channel, batch, stats).await?;
                    batch.clear();
                }
                _ = beat.tick() => {
                    if last_heard.elapsed() >= peer_timeout {
                        return Err(format!("nothing heard for {:?}", peer_timeout));
                    }
                    // While draining, every beat says so (a node that joined meanwhile learns).
                    let alive = if draining { Msg::Draining } else { Msg::Beat };
                    let beat = seq.wrap(bus, &encode(&alive));
                    publish(publisher, channel, &[beat], stats).await?;
                    // What was held back this beat (`bus::Gate`), and our state when something
                    // for the others was dropped.
                    let (hello, owed_state) = bus.due();
                    if hello {
                        bus.send(Msg::Hello);
                    }
                    if owed_state {
                        queue_state(state, bus);
                    }
                }
            }
        }
    }
}
