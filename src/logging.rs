//! Logging: the subscriber set up at start, and the one rate limit every
//! repeated warning goes through, so that a flood of bad frames, failed
//! inserts or dropped events never becomes a flood of log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A panic anywhere ends the process. A shard whose executor died would
/// leave its part of the fleet unable to log in while the process looks
/// healthy, and a dead writer would leave the logs filling up: half-alive
/// is worse than gone. Everything acknowledged is in the durable log, so a
/// supervisor that restarts the process loses nothing.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("?"), panic = %info, "panic: aborting the process (nothing acknowledged is lost: it is in the log)");
        std::process::abort();
    }));
}

/// Text or JSON lines on stderr, filtered by `RUST_LOG` or else `filter`.
pub fn init(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Lets one line of a kind out per interval, and counts what it held back
/// since the last one. Lock-free, so that shards, writers and the event
/// dispatcher can share one without waiting on each other.
#[derive(Debug)]
pub struct LogLimit {
    every_ms: u64,
    /// Milliseconds since [`epoch`] before which nothing is let out.
    next_ms: AtomicU64,
    held: AtomicU64,
}

impl LogLimit {
    /// One line a second: for warnings that a client or a fault can repeat
    /// at line rate.
    pub const fn per_second() -> Self {
        Self::every(Duration::from_secs(1))
    }

    pub const fn every(interval: Duration) -> Self {
        Self {
            every_ms: interval.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now.
    pub fn check(&self) -> Option<u64> {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(self.held.swap(0, Ordering::Relaxed))
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let limit = LogLimit::every(Duration::from_secs(3600));
        assert_eq!(limit.check(), Some(0));
        assert_eq!(limit.check(), None);
        assert_eq!(limit.check(), None);
        limit.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(limit.check(), Some(2));
        assert_eq!(limit.check(), None);
    }
}
