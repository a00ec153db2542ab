//! Which notes become webhook events, and when: `channel_vacated` and `member_removed` wait
//! the leave delay and are dropped, with the `channel_occupied`/`member_added` that undoes
//! them, when the channel or member comes back meanwhile; `subscription_count` is sent when
//! the count changes, at most every 5 s on channels of more than 100 subscribers (as
//! Pusher); a channel's `cache_miss` at most every 10 s; everything else is ready at once.
//! Delays are equal, so a FIFO holds them in the order they fall due, which keeps one
//! channel's events in the order they happened.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::listen::Note;
use super::Kind;
use crate::channel::ChannelKind;

/// A channel's `cache_miss` goes out at most once per this time: a crowd subscribing to an
/// empty cache channel is one webhook.
const CACHE_MISS_EVERY: Duration = Duration::from_secs(10);
/// Below this many remembered cache misses, none is forgotten early.
const MISSES_PRUNE_AT: usize = 1024;

/// Above this many subscribers, `subscription_count` goes out at most every [`COUNT_EVERY`].
const COUNT_THROTTLE_ABOVE: usize = 100;
const COUNT_EVERY: Duration = Duration::from_secs(5);

/// One event of a webhook body, in Pusher's field order.
#[derive(Debug, Serialize)]
pub(super) struct Event {
    pub(super) name: &'static str,
    pub(super) channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) subscription_count: Option<usize>,
}

/// An event ready to send, for app `app`; `cluster` marks a cluster-wide transition, which
/// only the cluster's leader sends.
#[derive(Debug)]
pub(super) struct Ready {
    pub(super) app: Arc<str>,
    pub(super) kind: Kind,
    pub(super) event: Event,
}

impl Ready {
    fn of(note: Note) -> Ready {
        let client = note.client;
        let event = Event {
            name: note.kind.name(),
            channel: note.channel,
            event: client.as_ref().map(|c| c.event.clone()),
            data: client.as_ref().and_then(|c| c.data.clone()),
            socket_id: client.map(|c| c.socket_id),
            user_id: note.user_id,
            subscription_count: (note.kind == Kind::Count).then_some(note.count),
        };
        Ready {
            app: note.app,
            kind: note.kind,
            event,
        }
    }
}

/// A delayed leave: the channel (vacated) or the member (removed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Leave {
    app: Arc<str>,
    channel: String,
    /// The member, for `member_removed`; `None` for `channel_vacated`.
    user_id: Option<String>,
}

/// Per channel: the last count sent and when, and one held back by the throttle.
#[derive(Default)]
struct Count {
    sent: Option<(usize, Instant)>,
    held: Option<usize>,
}

pub(super) struct Sorter {
    delay: Duration,
    /// Leaves in the order they fall due, with the generation they were queued under.
    due: VecDeque<(Instant, Leave, u64)>,
    /// The leaves still waiting (a leave whose generation is not here was undone).
    waiting: HashMap<Leave, (u64, Note)>,
    generation: u64,
    counts: HashMap<(Arc<str>, String), Count>,
    /// When each channel's last `cache_miss` went out.
    misses: HashMap<(Arc<str>, String), Instant>,
    /// `misses` entries left by the last pruning (see [`Sorter::note`]).
    misses_kept: usize,
}

impl Sorter {
    pub(super) fn new(delay: Duration) -> Sorter {
        Sorter {
            delay,
            due: VecDeque::new(),
            waiting: HashMap::new(),
            generation: 0,
            counts: HashMap::new(),
            misses: HashMap::new(),
            misses_kept: 0,
        }
    }

    /// Takes one note; what is ready now is pushed to `out`.
    pub(super) fn note(&mut self, note: Note, now: Instant, out: &mut Vec<Ready>) {
        let leave = |n: &Note| Leave {
            app: n.app.clone(),
            channel: n.channel.clone(),
            user_id: n.user_id.clone(),
        };
        match note.kind {
            Kind::Occupied | Kind::MemberAdded => {
                // Back within the delay: the leave and this return are both dropped.
                if self.waiting.remove(&leave(&note)).is_none() {
                    out.push(Ready::of(note));
                }
            }
            Kind::Vacated | Kind::MemberRemoved if !self.delay.is_zero() => {
                let key = leave(&note);
                self.generation += 1;
                self.due
                    .push_back((now + self.delay, key.clone(), self.generation));
                self.waiting.insert(key, (self.generation, note));
            }
            Kind::Count => self.count(note, now, out),
            Kind::Vacated => self.vacated(note, out),
            Kind::CacheMiss => {
                let key = (note.app.clone(), note.channel.clone());
                let recent = self
                    .misses
                    .get(&key)
                    .is_some_and(|at| now.duration_since(*at) < CACHE_MISS_EVERY);
                if !recent {
                    // Forget the misses past their window now and then, so that a target
                    // wanting only cache misses keeps no entry per channel ever seen.
                    if self.misses.len() >= MISSES_PRUNE_AT.max(2 * self.misses_kept) {
                        self.misses
                            .retain(|_, at| now.duration_since(*at) < CACHE_MISS_EVERY);
                        self.misses_kept = self.misses.len();
                    }
                    self.misses.insert(key, now);
                    out.push(Ready::of(note));
                }
            }
            _ => out.push(Ready::of(note)),
        }
    }

    /// A vacate is sent: the channel's count starts afresh.
    fn vacated(&mut self, note: Note, out: &mut Vec<Ready>) {
        self.counts
            .remove(&(note.app.clone(), note.channel.clone()));
        out.push(Ready::of(note));
    }

    /// `subscription_count` for non-presence channels, when it changed, throttled on busy
    /// channels (held back and sent by [`Sorter::due`]).
    fn count(&mut self, note: Note, now: Instant, out: &mut Vec<Ready>) {
        if ChannelKind::from_name(&note.channel).presence {
            return;
        }
        if note.count == 0 {
            // Nobody left: the channel's entry goes (a target wanting only counts hears no
            // vacate that would remove it).
            self.counts
                .remove(&(note.app.clone(), note.channel.clone()));
            return;
        }
        let c = self
            .counts
            .entry((note.app.clone(), note.channel.clone()))
            .or_default();
        if c.sent.is_some_and(|(n, _)| n == note.count) {
            c.held = None;
            return;
        }
        let busy = note.count > COUNT_THROTTLE_ABOVE;
        if busy
            && c.sent
                .is_some_and(|(_, at)| now.duration_since(at) < COUNT_EVERY)
        {
            c.held = Some(note.count);
            return;
        }
        c.sent = Some((note.count, now));
        c.held = None;
        out.push(Ready::of(note));
    }

    /// When the next delayed event falls due, if any waits.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, _, _)| *at)
    }

    /// Whether a throttled count waits.
    pub(super) fn counts_held(&self) -> bool {
        self.counts.values().any(|c| c.held.is_some())
    }

    /// Pushes what has fallen due by `now` to `out`.
    pub(super) fn due(&mut self, now: Instant, out: &mut Vec<Ready>) {
        self.misses
            .retain(|_, at| now.duration_since(*at) < CACHE_MISS_EVERY);
        while self.due.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, key, generation) = self.due.pop_front().expect("checked");
            if self
                .waiting
                .get(&key)
                .is_some_and(|(g, _)| *g == generation)
            {
                let (_, note) = self.waiting.remove(&key).expect("checked");
                match note.kind {
                    Kind::Vacated => self.vacated(note, out),
                    _ => out.push(Ready::of(note)),
                }
            }
        }
        for ((app, channel), c) in &mut self.counts {
            let due = c
                .sent
                .is_none_or(|(_, at)| now.duration_since(at) >= COUNT_EVERY);
            if let Some(n) = c.held.filter(|_| due) {
                c.held = None;
                c.sent = Some((n, now));
                out.push(Ready::of(Note {
                    app: app.clone(),
                    kind: Kind::Count,
                    channel: channel.clone(),
                    user_id: None,
                    client: None,
                    count: n,
                }));
            }
        }
    }

    /// At shutdown: everything still delayed, ready now, in order.
    pub(super) fn flush(&mut self, out: &mut Vec<Ready>) {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        self.due(far, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(kind: Kind, channel: &str, user: Option<&str>) -> Note {
        Note {
            app: "1".into(),
            kind,
            channel: channel.into(),
            user_id: user.map(Into::into),
            client: None,
            count: 0,
        }
    }

    fn names(out: &mut Vec<Ready>) -> Vec<String> {
        out.drain(..)
            .map(|r| serde_json::to_string(&r.event).unwrap())
            .collect()
    }

    #[test]
    fn a_return_within_the_delay_drops_the_leave_and_the_return() {
        let mut s = Sorter::new(Duration::from_secs(3));
        let t = Instant::now();
        let mut out = Vec::new();
        s.note(note(Kind::Occupied, "c", None), t, &mut out);
        s.note(note(Kind::Vacated, "c", None), t, &mut out);
        s.note(
            note(Kind::Occupied, "c", None),
            t + Duration::from_secs(1),
            &mut out,
        );
        s.due(t + Duration::from_secs(4), &mut out);
        assert_eq!(
            names(&mut out),
            [r#"{"name":"channel_occupied","channel":"c"}"#]
        );
        // A second leave is delayed on its own, and sent once due.
        s.note(
            note(Kind::Vacated, "c", None),
            t + Duration::from_secs(5),
            &mut out,
        );
        s.due(t + Duration::from_secs(7), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.next_due(), Some(t + Duration::from_secs(8)));
        s.due(t + Duration::from_secs(8), &mut out);
        assert_eq!(
            names(&mut out),
            [r#"{"name":"channel_vacated","channel":"c"}"#]
        );
    }

    #[test]
    fn members_are_delayed_per_user_and_keep_their_order() {
        let mut s = Sorter::new(Duration::from_secs(3));
        let t = Instant::now();
        let mut out = Vec::new();
        s.note(
            note(Kind::MemberRemoved, "presence-p", Some("1")),
            t,
            &mut out,
        );
        s.note(note(Kind::Vacated, "presence-p", None), t, &mut out);
        s.note(
            note(Kind::MemberAdded, "presence-p", Some("2")),
            t,
            &mut out,
        );
        assert_eq!(
            names(&mut out),
            [r#"{"name":"member_added","channel":"presence-p","user_id":"2"}"#]
        );
        s.flush(&mut out);
        assert_eq!(
            names(&mut out),
            [
                r#"{"name":"member_removed","channel":"presence-p","user_id":"1"}"#,
                r#"{"name":"channel_vacated","channel":"presence-p"}"#
            ]
        );
    }

    #[test]
    fn a_reload_does_not_repeat_the_count_but_a_real_vacate_resets_it() {
        let mut s = Sorter::new(Duration::from_secs(3));
        let t = Instant::now();
        let mut out = Vec::new();
        let count = |n| Note {
            count: n,
            ..note(Kind::Count, "c", None)
        };
        s.note(count(1), t, &mut out);
        s.note(note(Kind::Vacated, "c", None), t, &mut out);
        s.note(note(Kind::Occupied, "c", None), t, &mut out);
        s.note(count(1), t, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        s.note(note(Kind::Vacated, "c", None), t, &mut out);
        s.due(t + Duration::from_secs(3), &mut out);
        s.note(note(Kind::Occupied, "c", None), t, &mut out);
        s.note(count(1), t, &mut out);
        assert_eq!(
            names(&mut out)[1..],
            [
                r#"{"name":"channel_vacated","channel":"c"}"#,
                r#"{"name":"channel_occupied","channel":"c"}"#,
                r#"{"name":"subscription_count","channel":"c","subscription_count":1}"#
            ]
        );
    }

    #[test]
    fn channels_seen_once_leave_no_entry_behind() {
        // Targets wanting only counts, or only cache misses, hear no vacate: what the sorter
        // keeps per channel must go by other means.
        let mut s = Sorter::new(Duration::ZERO);
        let t = Instant::now();
        let mut out = Vec::new();
        for i in 0..5000 {
            let channel = format!("c{i}");
            for n in [1, 0] {
                let mut n1 = note(Kind::Count, &channel, None);
                n1.count = n;
                s.note(n1, t, &mut out);
            }
        }
        assert!(s.counts.is_empty(), "{} count entries kept", s.counts.len());
        for i in 0..5000 {
            let later = t + CACHE_MISS_EVERY * (i / 1000 + 1);
            s.note(
                note(Kind::CacheMiss, &format!("cache-{i}"), None),
                later,
                &mut out,
            );
        }
        assert!(
            s.misses.len() <= 2 * MISSES_PRUNE_AT,
            "{} cache misses kept",
            s.misses.len()
        );
    }

    #[test]
    fn a_channels_cache_misses_are_one_webhook_per_10_s() {
        let mut s = Sorter::new(Duration::ZERO);
        let t = Instant::now();
        let mut out = Vec::new();
        for secs in [0, 1, 9] {
            s.note(
                note(Kind::CacheMiss, "cache-a", None),
                t + Duration::from_secs(secs),
                &mut out,
            );
        }
        s.note(note(Kind::CacheMiss, "cache-b", None), t, &mut out);
        s.note(
            note(Kind::CacheMiss, "cache-a", None),
            t + Duration::from_secs(10),
            &mut out,
        );
        assert_eq!(
            names(&mut out),
            [
                r#"{"name":"cache_miss","channel":"cache-a"}"#,
                r#"{"name":"cache_miss","channel":"cache-b"}"#,
                r#"{"name":"cache_miss","channel":"cache-a"}"#
            ]
        );
    }

    #[test]
    fn counts_are_sent_on_change_and_throttled_above_100() {
        let mut s = Sorter::new(Duration::ZERO);
        let t = Instant::now();
        let mut out = Vec::new();
        let count = |n| Note {
            count: n,
            ..note(Kind::Count, "c", None)
        };
        s.note(count(1), t, &mut out);
        s.note(count(1), t, &mut out);
        assert_eq!(out.len(), 1, "an unchanged count is not sent again");
        out.clear();
        s.note(count(101), t, &mut out);
        s.note(count(102), t + Duration::from_secs(1), &mut out);
        s.note(count(103), t + Duration::from_secs(2), &mut out);
        assert!(
            out.is_empty(),
            "busy, and a count went out less than 5 s ago"
        );
        assert!(s.counts_held());
        s.due(t + Duration::from_secs(5), &mut out);
        let last = serde_json::to_string(&out.pop().unwrap().event).unwrap();
        assert_eq!(
            last,
            r#"{"name":"subscription_count","channel":"c","subscription_count":103}"#
        );
        s.note(count(3), t, &mut out);
        let mut presence = count(2);
        presence.channel = "presence-x".into();
        s.note(presence, t, &mut out);
        assert_eq!(out.len(), 1, "presence channels have no subscription_count");
    }
}
