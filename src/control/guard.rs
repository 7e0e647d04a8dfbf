//! What keeps the control socket from being a way in or a way down: a cap
//! on connections, idle and auth timeouts, a token compared in constant
//! time with a growing delay after each wrong one, and the counters that
//! show each of these acting (`stats`, `/metrics`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::ControlConfig;
use crate::logging::LogLimit;

use super::figures::atomic_figures;

atomic_figures! {
    /// The control socket's counters, shared by its sessions.
    pub struct ControlStats;
    /// Every figure of [`ControlStats`], for `stats` (its `control:` line)
    /// and `/metrics`.
    pub static CONTROL_FIGURES on Total;
    /// Open control connections.
    connections: Gauge, "control.connections", "control_connections", "connections";
    /// Control connections accepted (refused ones included).
    accepted: Counter, "control.accepted", "control_connections_accepted_total", "accepted";
    /// Control connections refused by `control.max_connections`.
    refused: Counter, "control.refused", "control_connections_refused_total", "refused";
    /// Control connections closed after `control.idle_timeout_secs` without a command.
    idle_closes: Counter, "control.idle_closes", "control_idle_closes_total", "idle_closes";
    /// Control connections closed for not authenticating within `control.auth_timeout_secs`.
    auth_timeouts: Counter, "control.auth_timeouts", "control_auth_timeouts_total", "auth_timeouts";
    /// Wrong tokens sent with `auth`.
    wrong_tokens: Counter, "control.wrong_tokens", "control_wrong_tokens_total", "wrong_tokens";
    /// Control connections closed after too many wrong tokens.
    wrong_token_closes: Counter, "control.wrong_token_closes", "control_wrong_token_closes_total", "wrong_token_closes";
}

impl ControlStats {
    pub(crate) fn add(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wrong tokens one connection may send; the last of them closes it.
pub const MAX_WRONG_TOKENS: u32 = 5;
/// The answer to the first wrong token on a connection is held back this
/// long, each further one twice as long as the one before ...
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// ... up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// How long the answer to the `n`th wrong token (1-based) of a connection
/// is held back: 1, 2, 4, 8, 8 s. Attempts on one connection are answered
/// one after another, so sending several at once gains nothing; across
/// connections, `control.max_connections` bounds how many run at once.
pub fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(16);
    (BACKOFF_FIRST * (1u32 << doublings)).min(BACKOFF_MAX)
}

/// The bounds a session works within, from `[control]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle: Duration,
    pub auth: Duration,
}

impl Limits {
    pub fn new(c: &ControlConfig) -> Self {
        Self {
            max_connections: c.max_connections.max(1),
            idle: Duration::from_secs(c.idle_timeout_secs.max(1)),
            auth: Duration::from_secs(c.auth_timeout_secs.max(1)),
        }
    }
}

/// One open connection, counted while it lives.
pub struct Slot(Arc<super::Context>);

impl Slot {
    /// A slot if fewer than `max` connections are open. Called only from
    /// the accept loop (one thread), so the check and the increment cannot
    /// race each other; sessions only ever give slots back.
    pub fn take(ctx: &Arc<super::Context>, max: usize) -> Option<Slot> {
        let open = &ctx.control_stats.connections;
        if open.load(Ordering::Relaxed) as usize >= max {
            return None;
        }
        open.fetch_add(1, Ordering::Relaxed);
        Some(Slot(ctx.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .control_stats
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Refusals logged at most once a second, with the count held back.
pub static REFUSED_LOG: LogLimit = LogLimit::per_second();
/// Wrong tokens, likewise.
pub static WRONG_TOKEN_LOG: LogLimit = LogLimit::per_second();
/// Connections closed for not authenticating, likewise.
pub static AUTH_TIMEOUT_LOG: LogLimit = LogLimit::per_second();

type HmacSha256 = Hmac<Sha256>;

/// Keys the digests below. It needs no secrecy: the MAC is used only to
/// turn both tokens into 32 bytes each, so that neither their contents nor
/// their lengths show in how long a comparison takes.
const DIGEST_KEY: &[u8] = b"badge-ingest control token";

/// The control token, kept only as a digest.
#[derive(Clone)]
pub struct Token {
    tag: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    pub fn new(token: &str) -> Self {
        Self {
            tag: Self::mac(token).finalize().into_bytes().into(),
        }
    }

    fn mac(s: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(DIGEST_KEY).expect("HMAC takes any key");
        mac.update(s.as_bytes());
        mac
    }

    /// Whether `given` is the token. The digests are compared with the
    /// `hmac` crate's `verify_slice`, which is constant-time (`subtle`):
    /// the time taken says nothing about how much of a guess was right, nor
    /// (both sides being digests of one length) how long the token is.
    pub fn matches(&self, given: &str) -> bool {
        Self::mac(given).verify_slice(&self.tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        assert_eq!(backoff(0), BACKOFF_FIRST);
    }

    #[test]
    fn a_token_matches_only_itself() {
        let t = Token::new("s3cret");
        assert!(t.matches("s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "s3creT", "s3cret-and-more", "x"] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn the_figures_are_well_formed() {
        super::super::figures::tests::check_table(CONTROL_FIGURES);
        let s = ControlStats::default();
        ControlStats::add(&s.wrong_tokens);
        let get = |key: &str| (CONTROL_FIGURES.iter().find(|f| f.key == key).unwrap().get)(&s);
        assert_eq!(get("control.wrong_tokens"), 1);
        assert_eq!(get("control.refused"), 0);
    }
}
