//! When a connection has had enough time: the decisions of the shard's one
//! coarse timer, apart from the timer itself.

use std::time::Duration;

use super::CloseReason;

/// How long a connection may take to log in, to finish a frame it began,
/// to take the replies sent to it, and stay silent after.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub login: Duration,
    pub idle: Duration,
    pub partial_frame: Duration,
    pub write: Duration,
}

/// What the timer knows of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub logged_in: bool,
    /// Since it was accepted.
    pub age: Duration,
    /// Since its last bytes.
    pub silent: Duration,
    /// Since the start of a frame still unfinished, if one is.
    pub partial: Option<Duration>,
    /// Since the start of a send still unfinished, if one is.
    pub sending: Option<Duration>,
}

impl Deadlines {
    /// Why the connection should close now, if it should.
    pub fn check(&self, conn: Liveness) -> Option<CloseReason> {
        // A badge that stopped reading must not hold its connection.
        if conn.sending.is_some_and(|s| s >= self.write) {
            return Some(CloseReason::WriteTimeout);
        }
        if conn.partial.is_some_and(|p| p >= self.partial_frame) {
            return Some(CloseReason::PartialFrameTimeout);
        }
        if !conn.logged_in {
            (conn.age >= self.login).then_some(CloseReason::LoginTimeout)
        } else {
            (conn.silent >= self.idle).then_some(CloseReason::IdleTimeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_silence_have_their_deadlines() {
        let d = Deadlines {
            login: Duration::from_secs(60),
            idle: Duration::from_secs(600),
            partial_frame: Duration::from_secs(10),
            write: Duration::from_secs(10),
        };
        let conn = |logged_in, age, silent| Liveness {
            logged_in,
            age: Duration::from_secs(age),
            silent: Duration::from_secs(silent),
            partial: None,
            sending: None,
        };
        assert_eq!(d.check(conn(false, 59, 59)), None);
        assert_eq!(d.check(conn(false, 60, 0)), Some(CloseReason::LoginTimeout));
        // Once logged in, only silence counts.
        assert_eq!(d.check(conn(true, 6000, 599)), None);
        assert_eq!(
            d.check(conn(true, 6000, 600)),
            Some(CloseReason::IdleTimeout)
        );
        // A frame begun and never finished, logged in or not.
        let partial = |logged_in, secs| Liveness {
            partial: Some(Duration::from_secs(secs)),
            ..conn(logged_in, 1, 1)
        };
        assert_eq!(d.check(partial(true, 9)), None);
        assert_eq!(
            d.check(partial(true, 10)),
            Some(CloseReason::PartialFrameTimeout)
        );
        assert_eq!(
            d.check(partial(false, 10)),
            Some(CloseReason::PartialFrameTimeout)
        );
        // Replies the badge does not take, logged in or not.
        let sending = |logged_in, secs| Liveness {
            sending: Some(Duration::from_secs(secs)),
            ..conn(logged_in, 1, 1)
        };
        assert_eq!(d.check(sending(true, 9)), None);
        assert_eq!(d.check(sending(true, 10)), Some(CloseReason::WriteTimeout));
        assert_eq!(d.check(sending(false, 10)), Some(CloseReason::WriteTimeout));
    }
}
