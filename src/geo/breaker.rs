//! A circuit breaker per HTTP provider.
//!
//! When a provider is down, every lookup would otherwise wait for its full
//! timeout and hold a concurrency permit doing so. After `threshold`
//! consecutive failures the breaker opens and lookups are refused at once;
//! after `cooldown` one probe is let through (half-open): its success closes
//! the breaker, its failure opens it for another cool-down.
//!
//! The clock is passed in, so the state machine is tested without sleeping.

use std::time::{Duration, Instant};

/// What a provider's breaker is doing, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// The cool-down ended; one probe is (or may be) in flight.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: State::Closed { failures: 0 },
        }
    }

    /// Whether a call may go out now. Past the cool-down the first caller
    /// becomes the probe and everyone else is refused until it reports.
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probe_since: now };
                true
            }
            State::Open { .. } => false,
            // A probe that never reported (its task was cancelled) must not
            // keep the breaker half-open for ever: after another cool-down
            // the next caller probes instead.
            State::HalfOpen { probe_since } if now >= probe_since + self.cooldown => {
                self.state = State::HalfOpen { probe_since: now };
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    /// A call was answered (with or without a result). True when this closed
    /// a breaker that was not closed.
    pub(crate) fn success(&mut self) -> bool {
        match self.state {
            State::Closed { .. } => {
                self.state = State::Closed { failures: 0 };
                false
            }
            State::HalfOpen { .. } => {
                self.state = State::Closed { failures: 0 };
                true
            }
            // A call admitted before the breaker opened came back late: one
            // success proves little against the failures that opened it, so
            // the cool-down and its probe decide.
            State::Open { .. } => false,
        }
    }

    /// A call failed or timed out. True when this opened the breaker.
    pub(crate) fn failure(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    self.state = State::Open {
                        until: now + self.cooldown,
                    };
                    true
                } else {
                    self.state = State::Closed { failures };
                    false
                }
            }
            State::HalfOpen { .. } => {
                self.state = State::Open {
                    until: now + self.cooldown,
                };
                true
            }
            State::Open { .. } => false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, COOL);
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        // A success in between resets the count.
        assert!(!b.success());
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t0));
        assert!(b.failure(t0));
        assert_eq!(b.state(), BreakerState::Open);
        // Late failures of calls already in flight do not count as new opens.
        assert!(!b.failure(t0));
    }

    #[test]
    fn refuses_while_open_then_lets_one_probe_through() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        assert!(b.failure(t0));
        assert!(!b.admit(t0 + Duration::from_secs(29)));
        assert!(b.admit(t0 + COOL));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.admit(t0 + COOL), "only one probe at a time");
        assert!(b.success());
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t0 + COOL));
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cool_down() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, COOL);
        b.failure(t0);
        b.failure(t0);
        let t1 = t0 + COOL;
        assert!(b.admit(t1));
        assert!(b.failure(t1));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.admit(t1 + Duration::from_secs(1)));
        assert!(b.admit(t1 + COOL));
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cool_down() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.failure(t0);
        assert!(b.admit(t0 + COOL));
        assert!(!b.admit(t0 + COOL + Duration::from_secs(10)));
        assert!(b.admit(t0 + COOL + COOL));
    }

    #[test]
    fn a_late_success_does_not_close_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.failure(t0);
        assert!(!b.success());
        assert_eq!(b.state(), BreakerState::Open);
    }
}
