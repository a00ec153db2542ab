//! The listener and the router never wait: past their bounds events are dropped and counted.

use super::*;
use crate::hooks::{Activity, Listener};

fn app_with_target() -> App {
    let mut app = App::new("1", "k", "s");
    app.webhooks = vec![WebhookTarget {
        url: "http://127.0.0.1:9/h".into(),
        events: vec!["channel_occupied".into()],
        headers: Vec::new(),
    }];
    app
}

#[test]
fn a_full_node_queue_drops_and_counts() {
    let stats = Arc::new(Stats::default());
    let (tx, mut rx) = mpsc::channel(2);
    let tap = listen::Tap::new(&[app_with_target()], tx, stats.clone());
    for channel in ["a", "b", "c"] {
        tap.on("1", &Activity::ClusterOccupied { channel });
    }
    // Not wanted, so neither queued nor dropped; unknown apps are ignored.
    tap.on(
        "1",
        &Activity::CacheMiss {
            channel: "x",
            socket_id: crate::connection::SocketId::random(),
        },
    );
    tap.on("2", &Activity::ClusterOccupied { channel: "d" });
    assert_eq!(stats.counts().0, 1);
    assert_eq!(rx.try_recv().unwrap().channel, "a");
    assert_eq!(rx.try_recv().unwrap().channel, "b");
    assert!(rx.try_recv().is_err());
}

#[test]
fn pairs_are_heard_together() {
    let mut t = app_with_target().webhooks;
    assert_eq!(needed(&t), Kind::Occupied.bit() | Kind::Vacated.bit());
    t[0].events = vec!["member_removed".into()];
    assert_eq!(
        needed(&t),
        Kind::MemberAdded.bit() | Kind::MemberRemoved.bit()
    );
    t[0].events.clear();
    assert_eq!(needed(&t), 0x7f, "no filter is every event");
}

#[test]
fn a_full_target_queue_drops_and_counts() {
    let config = Config {
        apps: vec![app_with_target()],
        ..Config::default()
    };
    let state = State::new(config.clone());
    let stats = Arc::new(Stats::default());
    let shared = Shared {
        settings: config.webhooks.clone(),
        stats: stats.clone(),
        stop_by: OnceLock::new(),
        stop: CancellationToken::new(),
        tls: Arc::default(),
        ca: None,
    };
    let (tx, mut target) = mpsc::channel(1);
    let routes = HashMap::from([(
        Arc::<str>::from("1"),
        vec![Route {
            wants: Kind::Occupied.bit(),
            tx,
        }],
    )]);
    let mut sorter = sort::Sorter::new(Duration::ZERO);
    let mut ready = Vec::new();
    for channel in ["a", "b"] {
        let note = listen::Note {
            app: "1".into(),
            kind: Kind::Occupied,
            channel: channel.into(),
            user_id: None,
            client: None,
            count: 0,
        };
        sorter.note(note, Instant::now(), &mut ready);
    }
    route(
        &state,
        &routes,
        &shared,
        Speaks::Leader,
        &mut ready,
        &mut Vec::new(),
    );
    assert_eq!(stats.counts().0, 1);
    assert_eq!(
        target.try_recv().unwrap(),
        r#"{"name":"channel_occupied","channel":"a"}"#
    );
}
