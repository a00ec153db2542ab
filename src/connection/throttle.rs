//! `Throttle`: a token bucket per connection for client events. Pusher allows a client 10
//! client events a second; a burst of that many is fine (a typist's whispers), a flood is
//! refused event by event with 4301 while the connection stays open. The flooder's own queue
//! takes the refusals, so readers of the channel never see the flood.

use tokio::time::Instant;

#[derive(Debug)]
pub(super) struct Throttle {
    /// Tokens (events) per second, and the bucket's size.
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    /// A full bucket of `rate` events refilling at `rate` a second; `None` for 0 (unlimited).
    pub(super) fn new(rate: u32) -> Option<Throttle> {
        (rate > 0).then(|| Throttle {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        })
    }

    /// Takes a token for one event at `now`; false when the bucket is empty.
    pub(super) fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_rate_then_rate_per_second() {
        let start = Instant::now();
        let mut t = Throttle::new(10).unwrap();
        assert_eq!((0..20).filter(|_| t.allow(start)).count(), 10);
        // A tenth of a second refills one token; a second refills ten, never more.
        assert!(t.allow(start + Duration::from_millis(100)));
        assert!(!t.allow(start + Duration::from_millis(100)));
        let later = start + Duration::from_secs(5);
        assert_eq!((0..20).filter(|_| t.allow(later)).count(), 10);
        assert!(Throttle::new(0).is_none(), "0 is unlimited");
    }
}
