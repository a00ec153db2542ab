//! The registry on its own: handles without sockets (frames stay queued, read back with
//! `take_texts`) and a recording listener on the seam.

use std::time::Duration;

use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::ChannelRegistry;
use crate::channel::presence::PresenceMember;
use crate::channel::ChannelKind;
use crate::connection::{ConnectionHandle, OutboundLimits, Pending, SocketId};
use crate::hooks::{Hooks, Record};

fn handle() -> ConnectionHandle {
    ConnectionHandle::new(SocketId::random(), OutboundLimits::frames(64), None)
}

fn member(id: &str) -> PresenceMember {
    let raw = |s: String| RawValue::from_string(s).unwrap();
    PresenceMember::from_parts(raw(format!("\"{id}\"")), Some(raw("{\"n\":1}".into()))).unwrap()
}

/// The `event` of each queued frame, in order.
fn events(h: &ConnectionHandle) -> Vec<String> {
    h.take_texts()
        .iter()
        .map(|t| {
            let v: serde_json::Value = serde_json::from_str(t).unwrap();
            v["event"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn registry(subscription_count: bool) -> (ChannelRegistry, std::sync::Arc<Record>) {
    let (record, hooks) = Record::hooks("app");
    let reg = ChannelRegistry::new(Duration::from_secs(60), subscription_count, 3, hooks);
    (reg, record)
}

fn subscribe(reg: &ChannelRegistry, name: &str, h: &ConnectionHandle, m: Option<&str>) -> bool {
    reg.subscribe(name, ChannelKind::from_name(name), h, m.map(member))
        .unwrap()
}

#[test]
fn a_repeated_subscribe_only_repeats_the_reply() {
    let (reg, record) = registry(false);
    let h = handle();
    assert!(subscribe(&reg, "public", &h, None));
    assert!(!subscribe(&reg, "public", &h, None));
    assert_eq!(
        events(&h),
        [
            "pusher_internal:subscription_succeeded",
            "pusher_internal:subscription_succeeded"
        ]
    );
    let got = record.take();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        got[0].starts_with("Subscribed { channel: \"public\""),
        "{got:?}"
    );
    assert_eq!(got[1], "ChannelOccupied { channel: \"public\" }");
    // Nobody else reports the channel: occupied across the cluster too.
    assert_eq!(got[2], "ClusterOccupied { channel: \"public\" }");
    assert_eq!(
        got[3],
        "SubscriptionCount { channel: \"public\", local: 1 }"
    );
    assert_eq!(
        got[4],
        "ClusterSubscriptionCount { channel: \"public\", count: 1 }"
    );
    assert_eq!(reg.subscription_count("public"), 1);
}

#[test]
fn a_presence_channel_is_reported_occupied_before_its_first_member() {
    let (reg, record) = registry(false);
    subscribe(&reg, "presence-room", &handle(), Some("a"));
    let kinds: Vec<String> = record
        .take()
        .iter()
        .map(|a| a.split([' ', '{']).next().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "Subscribed",
            "ChannelOccupied",
            "ClusterOccupied",
            "MemberJoined",
            "ClusterMemberAdded",
            "SubscriptionCount",
            "ClusterSubscriptionCount"
        ]
    );
}

#[test]
fn presence_counts_users_not_sockets() {
    let (reg, record) = registry(false);
    let (a1, a2, b) = (handle(), handle(), handle());
    subscribe(&reg, "presence-room", &a1, Some("a"));
    subscribe(&reg, "presence-room", &a2, Some("a"));
    subscribe(&reg, "presence-room", &b, Some("b"));
    // a1 heard b join; a's second socket was not announced to anybody.
    assert_eq!(
        events(&a1),
        [
            "pusher_internal:subscription_succeeded",
            "pusher_internal:member_added"
        ]
    );
    assert_eq!(events(&a2)[1..], ["pusher_internal:member_added"]);
    assert_eq!(events(&b), ["pusher_internal:subscription_succeeded"]);
    let joined: Vec<String> = record
        .take()
        .into_iter()
        .filter(|a| a.starts_with("MemberJoined"))
        .collect();
    assert_eq!(joined.len(), 2, "one report per user: {joined:?}");
    assert_eq!(reg.user_count("presence-room"), 2);

    reg.unsubscribe("presence-room", a1.id());
    assert!(events(&b).is_empty(), "a is still there on another socket");
    assert!(!record.take().iter().any(|a| a.starts_with("MemberLeft")));
    reg.unsubscribe("presence-room", a2.id());
    assert_eq!(events(&b), ["pusher_internal:member_removed"]);
    let got = record.take();
    assert!(got.contains(&"MemberLeft { channel: \"presence-room\", id: \"a\" }".to_owned()));
    assert!(
        !got.iter().any(|a| a.starts_with("ChannelVacated")),
        "b is left"
    );
    reg.unsubscribe("presence-room", b.id());
    assert!(record
        .take()
        .contains(&"ChannelVacated { channel: \"presence-room\" }".to_owned()));
    assert_eq!(reg.user_count("presence-room"), 0);
}

#[test]
fn publish_skips_the_excluded_socket_and_caches_on_cache_channels() {
    let (reg, _) = registry(false);
    let mut out = Pending::new();
    let text = || Utf8Bytes::from_static(r#"{"event":"e","channel":"cache-x","data":"1"}"#);
    assert_eq!(reg.publish("cache-x", true, text, None, &mut out), 0);
    let (a, b) = (handle(), handle());
    subscribe(&reg, "cache-x", &a, None);
    subscribe(&reg, "cache-x", &b, None);
    assert_eq!(events(&a), ["pusher_internal:subscription_succeeded", "e"]);
    assert_eq!(events(&b), ["pusher_internal:subscription_succeeded", "e"]);
    assert!(reg.cached("cache-x").is_some());
    assert_eq!(
        reg.publish("cache-x", true, text, Some(a.id()), &mut out),
        2
    );
    out.flush();
    assert!(events(&a).is_empty());
    assert_eq!(events(&b), ["e"]);

    let c = handle();
    subscribe(&reg, "cache-empty", &c, None);
    assert_eq!(
        events(&c),
        [
            "pusher_internal:subscription_succeeded",
            "pusher:cache_miss"
        ]
    );
}

#[test]
fn other_nodes_members_join_the_same_set() {
    let (reg, _) = registry(false);
    let mut out = Pending::new();
    let a = handle();
    subscribe(&reg, "presence-room", &a, Some("a"));
    a.take_texts();
    reg.remote_join("n2", "presence-room", member("a"), &mut out);
    assert!(events(&a).is_empty(), "a is present already");
    reg.remote_join("n2", "presence-room", member("b"), &mut out);
    assert_eq!(events(&a), ["pusher_internal:member_added"]);
    assert_eq!(reg.user_count("presence-room"), 2);
    let mut local = reg.local_presence();
    assert_eq!(local.len(), 1);
    assert_eq!(local.pop().unwrap().1.id, "a");
    // The node reports only b now, then is dropped.
    reg.replace_node("n2", vec![("presence-room".into(), member("b"))], &mut out);
    assert!(events(&a).is_empty());
    reg.replace_node("n2", Vec::new(), &mut out);
    assert_eq!(events(&a), ["pusher_internal:member_removed"]);
    reg.remote_join("n2", "public", member("c"), &mut out);
    assert_eq!(
        reg.user_count("public"),
        0,
        "only presence channels have members"
    );
}

#[test]
fn subscription_counts_add_the_other_nodes() {
    let (reg, _) = registry(true);
    let mut out = Pending::new();
    let a = handle();
    subscribe(&reg, "room", &a, None);
    assert_eq!(
        a.take_texts()[1],
        r#"{"event":"pusher_internal:subscription_count","channel":"room","data":"{\"subscription_count\":1}"}"#
    );
    reg.remote_count("n2", "room", 4, &mut out);
    reg.remote_count("n2", "room", 4, &mut out);
    let texts = a.take_texts();
    assert_eq!(texts.len(), 1, "an unchanged report is not repeated");
    assert!(
        texts[0].contains(r#"{\"subscription_count\":5}"#),
        "{texts:?}"
    );
    assert_eq!(reg.counted_channels(), [("room".to_owned(), 1)]);
    reg.replace_node_counts("n2", Vec::new(), &mut out);
    assert!(a.take_texts()[0].contains(r#"{\"subscription_count\":1}"#));
    let p = handle();
    subscribe(&reg, "presence-x", &p, Some("u"));
    assert_eq!(events(&p), ["pusher_internal:subscription_succeeded"]);
    assert_eq!(
        reg.local_counts(None, "pre"),
        [("presence-x".to_owned(), 1)]
    );
}

#[test]
fn without_listeners_nothing_is_reported() {
    let reg = ChannelRegistry::new(
        Duration::from_secs(1),
        false,
        0,
        Hooks::default().for_app("a"),
    );
    let h = handle();
    assert!(subscribe(&reg, "presence-x", &h, Some("u")));
    assert!(reg.unsubscribe("presence-x", h.id()));
    assert!(!reg.unsubscribe("presence-x", h.id()));
    assert!(reg.occupied("").is_empty());
}

#[test]
fn a_full_presence_channel_refuses_new_users_but_not_their_other_sockets() {
    let (reg, _) = registry(false);
    let kind = ChannelKind::from_name("presence-full");
    for u in ["a", "b", "c"] {
        subscribe(&reg, "presence-full", &handle(), Some(u));
    }
    let d = handle();
    let refused = reg.subscribe("presence-full", kind, &d, Some(member("d")));
    assert_eq!(refused.unwrap_err().code(), 4009);
    assert!(
        d.take_texts().is_empty(),
        "nothing queued for the refused socket"
    );
    assert!(
        subscribe(&reg, "presence-full", &handle(), Some("a")),
        "a second socket of a"
    );
    let mut out = Pending::new();
    reg.remote_join("n2", "presence-full", member("e"), &mut out);
    assert_eq!(
        reg.user_count("presence-full"),
        4,
        "other nodes' members are not refused"
    );
}

#[test]
fn a_presence_reply_is_built_outside_the_entry_and_still_comes_first() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (_, hooks) = Record::hooks("app");
    let reg = Arc::new(ChannelRegistry::new(
        Duration::from_secs(60),
        false,
        0,
        hooks,
    ));
    let name = "presence-room";
    let a = handle();
    subscribe(&reg, name, &a, Some("a"));
    // While b's reply is being built, the entry is free: c joins and an event is published.
    let (c, once, free) = (
        handle(),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let hook = {
        let (reg, c, once, free) = (Arc::downgrade(&reg), c.clone(), once.clone(), free.clone());
        move || {
            if once.swap(true, Ordering::SeqCst) {
                return;
            }
            let reg = reg.upgrade().unwrap();
            free.store(
                reg.channels.try_get_mut(name).is_present(),
                Ordering::SeqCst,
            );
            subscribe(&reg, name, &c, Some("c"));
            let mut out = Pending::new();
            let text = || Utf8Bytes::from_static(r#"{"event":"e","channel":"presence-room"}"#);
            reg.publish(name, false, text, None, &mut out);
            out.flush();
        }
    };
    *reg.between_phases.lock() = Arc::new(hook);
    let b = handle();
    subscribe(&reg, name, &b, Some("b"));
    assert!(
        free.load(Ordering::SeqCst),
        "the entry was held while the reply was built"
    );
    let texts = b.take_texts();
    let got: Vec<serde_json::Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let order: Vec<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [
            "pusher_internal:subscription_succeeded",
            "pusher_internal:member_added",
            "e"
        ],
        "the reply first, then what happened while it was built"
    );
    let data: serde_json::Value = serde_json::from_str(got[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["presence"]["ids"],
        serde_json::json!(["a", "b"]),
        "the members when b joined, not c who joined after"
    );
    assert_eq!(got[1]["data"], r#"{"user_id":"c","user_info":{"n":1}}"#);
    // Nothing stays held: later frames go straight to b.
    let mut out = Pending::new();
    reg.publish(
        name,
        false,
        || Utf8Bytes::from_static(r#"{"event":"f"}"#),
        None,
        &mut out,
    );
    out.flush();
    assert_eq!(events(&b), ["f"]);
}

/// The cluster-wide transitions (counts aside) among what `record` heard since the last call.
fn cluster_wide(record: &Record) -> Vec<String> {
    record
        .take()
        .into_iter()
        .filter(|a| a.starts_with("Cluster") && !a.starts_with("ClusterSubscriptionCount"))
        .collect()
}

#[test]
fn occupancy_and_members_are_cluster_wide_transitions() {
    let (reg, record) = registry(false);
    let (here, mut out) = (handle(), Pending::new());
    // Another node's subscriber comes first: occupied once, not again for ours.
    reg.remote_occupied("n2", "presence-c", true);
    reg.remote_join("n2", "presence-c", member("u"), &mut out);
    subscribe(&reg, "presence-c", &here, Some("u"));
    assert_eq!(
        cluster_wide(&record),
        [
            "ClusterOccupied { channel: \"presence-c\" }",
            "ClusterMemberAdded { channel: \"presence-c\", user_id: \"u\" }"
        ]
    );
    // Ours leaves: the other node still has the user and the channel.
    reg.unsubscribe("presence-c", here.id());
    assert!(cluster_wide(&record).is_empty());
    // The other node goes away: removed, then vacated.
    reg.replace_node("n2", Vec::new(), &mut out);
    reg.replace_node_channels("n2", &[]);
    assert_eq!(
        cluster_wide(&record),
        [
            "ClusterMemberRemoved { channel: \"presence-c\", user_id: \"u\" }",
            "ClusterVacated { channel: \"presence-c\" }"
        ]
    );
    // A node's state replaces what it reported before.
    reg.replace_node_channels("n3", &["a".into(), "b".into()]);
    reg.replace_node_channels("n3", &["b".into()]);
    assert_eq!(
        cluster_wide(&record),
        [
            "ClusterOccupied { channel: \"a\" }",
            "ClusterOccupied { channel: \"b\" }",
            "ClusterVacated { channel: \"a\" }"
        ]
    );
    out.flush();
}

#[test]
fn a_cache_publish_while_a_presence_reply_is_built_reaches_the_joiner_once() {
    use std::sync::Arc;

    let (_, hooks) = Record::hooks("app");
    let reg = Arc::new(ChannelRegistry::new(
        Duration::from_secs(60),
        false,
        0,
        hooks,
    ));
    let name = "presence-cache-room";
    subscribe(&reg, name, &handle(), Some("a"));
    let hook = {
        let reg = Arc::downgrade(&reg);
        move || {
            let Some(reg) = reg.upgrade() else { return };
            let mut out = Pending::new();
            let text =
                || Utf8Bytes::from_static(r#"{"event":"news","channel":"presence-cache-room"}"#);
            reg.publish(name, true, text, None, &mut out);
            out.flush();
        }
    };
    *reg.between_phases.lock() = Arc::new(hook);
    let b = handle();
    subscribe(&reg, name, &b, Some("b"));
    // Nothing was cached when b joined: its reply, the cache miss, then the event, once.
    assert_eq!(
        events(&b),
        [
            "pusher_internal:subscription_succeeded",
            "pusher:cache_miss",
            "news"
        ]
    );
}

#[test]
fn another_nodes_cached_event_is_kept_unless_this_node_holds_a_newer_one() {
    let (reg, _) = registry(false);
    let theirs = |d: &str| {
        Utf8Bytes::from(format!(
            r#"{{"event":"e","channel":"cache-x","data":"{d}"}}"#
        ))
    };
    reg.adopt_cached("cache-x", theirs("old"), Duration::from_secs(30));
    assert_eq!(reg.cached("cache-x").unwrap().0, theirs("old"));
    // A newer one (more of its time to live left) replaces it; an older one does not.
    reg.adopt_cached("cache-x", theirs("new"), Duration::from_secs(50));
    reg.adopt_cached("cache-x", theirs("older"), Duration::from_secs(10));
    assert_eq!(reg.cached("cache-x").unwrap().0, theirs("new"));
    // This node's own event, stored now, is newer than anything already aged elsewhere.
    let mut out = Pending::default();
    reg.publish("cache-x", true, || theirs("mine"), None, &mut out);
    reg.adopt_cached("cache-x", theirs("stale"), Duration::from_secs(59));
    assert_eq!(reg.cached("cache-x").unwrap().0, theirs("mine"));
    // Only cache channels keep one; nothing is kept with no time left.
    reg.adopt_cached("plain", theirs("x"), Duration::from_secs(30));
    reg.adopt_cached("cache-y", theirs("x"), Duration::ZERO);
    assert!(reg.cached("plain").is_none() && reg.cached("cache-y").is_none());
    let listed = reg.cached_events();
    assert_eq!(listed.len(), 1, "only cache-x is live");
    assert_eq!(listed[0].0, "cache-x");
}
