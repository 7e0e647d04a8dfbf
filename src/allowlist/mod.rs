//! Which badges may log in: a set of IMEIs from a file or from the
//! `devices` table (`schema/015_devices.sql`), configured by
//! `limits.allowlist` (empty: every IMEI may; a path; or `clickhouse`).
//!
//! Shards ask at every login ([`ImeiAllowlist::allows`]), from many threads
//! at once, so a lookup must never wait: the set is an immutable snapshot
//! published through [`arc_swap`], and a lookup is one atomic load and one
//! hash lookup. A reload builds a whole new set off the shards (on the
//! refresher's thread) and swaps it in; readers of the old one finish
//! undisturbed.
//!
//! The first load happens in [`AllowlistRefresher::start`] and a failure
//! fails the start: someone asked for an allowlist, and starting without
//! it would let in every badge (or none). Later loads — every
//! `limits.allowlist_refresh_secs`, and on the control socket's
//! `allowlist reload` — that fail keep the previous set, and are logged
//! and counted.

mod parse;
mod refresh;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::control::figures::atomic_figures;
use crate::protocol::Imei;
pub use crate::record::lookup::ImeiAllowlist;

pub use parse::{parse, BadLine, BadLines};
pub use refresh::AllowlistRefresher;

/// The value of `limits.allowlist` that names the `devices` table.
pub const CLICKHOUSE: &str = "clickhouse";

#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error("allowlist file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("allowlist file {}: {lines}", path.display())]
    BadLines { path: PathBuf, lines: BadLines },
    #[error("allowlist table {database}.devices: {error}")]
    ClickHouse {
        database: String,
        error: clickhouse::error::Error,
    },
    #[error("allowlist table {database}.devices: ClickHouse did not answer within {timeout:?}")]
    Timeout { database: String, timeout: Duration },
    #[error("`{0}` is not a database name (letters, digits and underscores)")]
    BadDatabase(String),
    #[error("this allowlist has no source to reload from")]
    NoSource,
    #[error("the allowlist refresher has stopped")]
    Stopped,
    #[error("starting the allowlist refresher: {0}")]
    Start(std::io::Error),
}

/// Where the IMEIs come from.
// One per server, built once: boxing the client would only make it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum AllowlistSource {
    /// One IMEI per line, `#` comments.
    File(PathBuf),
    /// The `devices` table of `database`: the IMEIs whose latest version
    /// (by `updated_at`) has `enabled = 1`.
    ClickHouse {
        client: clickhouse::Client,
        database: String,
    },
}

impl std::fmt::Display for AllowlistSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowlistSource::File(path) => write!(f, "file {}", path.display()),
            AllowlistSource::ClickHouse { database, .. } => {
                write!(f, "ClickHouse table {database}.devices")
            }
        }
    }
}

impl std::fmt::Debug for AllowlistSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl AllowlistSource {
    /// What `limits.allowlist` names; `None` when it is empty (no allowlist).
    /// The table is read with `[clickhouse]`'s URL, user and database,
    /// whatever the sink.
    pub fn from_config(config: &Config) -> Option<Self> {
        let named = config.limits.allowlist.trim();
        if named.is_empty() {
            None
        } else if named == CLICKHOUSE {
            Some(AllowlistSource::ClickHouse {
                client: crate::sink::clickhouse::client(config),
                database: config.clickhouse.database.clone(),
            })
        } else {
            Some(AllowlistSource::File(PathBuf::from(named)))
        }
    }
}

atomic_figures! {
    /// What the allowlist counts, readable from any thread.
    pub struct AllowlistCounters;
    /// Every figure of [`AllowlistCounters`], for `stats` (its `allowlist:`
    /// line), `allowlist` and `/metrics`.
    pub static ALLOWLIST_FIGURES on Total;
    /// IMEIs in the allowlist.
    entries: Gauge, "allowlist.entries", "allowlist_entries", "entries";
    /// Logins refused because their IMEI is not in the allowlist (every
    /// `false` of `allows`). Not exported on its own: the shards export
    /// theirs, `logins_not_allowed_total`.
    refused: Counter, "allowlist.refused", -, "refused";
    /// Successful loads of the allowlist, the first included.
    loads: Counter, "allowlist.loads", "allowlist_loads_total", "loads";
    /// Failed loads of the allowlist (each kept the previous set).
    load_failures: Counter, "allowlist.load_failures", "allowlist_load_failures_total", "load_failures";
    /// Rows of the devices table that were not IMEIs, at the last load (left out).
    skipped_rows: Gauge, "allowlist.skipped_rows", "allowlist_skipped_rows", "skipped_rows";
    /// When the allowlist was last loaded, Unix seconds (0: never).
    loaded_at: Gauge, "allowlist.loaded_at", "allowlist_last_load_timestamp_seconds", "loaded_at";
}

struct Shared {
    current: ArcSwap<HashSet<u64>>,
    counters: AllowlistCounters,
    /// `None` for a fixed set ([`Allowlist::of`]).
    source: Option<AllowlistSource>,
    /// Why the latest load failed; `None` once one succeeds.
    last_error: Mutex<Option<String>>,
}

impl ImeiAllowlist for Shared {
    fn allows(&self, imei: Imei) -> bool {
        let allowed = self.current.load().contains(&imei.as_u64());
        if !allowed {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

type ReloadReply = flume::Sender<Result<usize, AllowlistError>>;

/// The allowlist: what the shards ask and the control socket shows and
/// reloads. Cheap to clone (every clone is the same list), `Send + Sync`.
#[derive(Clone)]
pub struct Allowlist {
    shared: Arc<Shared>,
    /// To the refresher's thread; `None` for a fixed set.
    requests: Option<flume::Sender<ReloadReply>>,
}

impl std::fmt::Debug for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allowlist")
            .field("source", &self.shared.source)
            .field("entries", &self.len())
            .finish()
    }
}

impl ImeiAllowlist for Allowlist {
    fn allows(&self, imei: Imei) -> bool {
        self.shared.allows(imei)
    }
}

impl Allowlist {
    /// A fixed set with no source (for tests, and tools): `reload` answers
    /// [`AllowlistError::NoSource`].
    pub fn of(imeis: impl IntoIterator<Item = Imei>) -> Self {
        let list = Self::new(None, None);
        list.publish(imeis.into_iter().map(Imei::as_u64).collect(), 0);
        list
    }

    fn new(source: Option<AllowlistSource>, requests: Option<flume::Sender<ReloadReply>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(HashSet::new()),
                counters: AllowlistCounters::default(),
                source,
                last_error: Mutex::new(None),
            }),
            requests,
        }
    }

    /// The same list as the shards' trait object. Every `false` it answers
    /// is counted as a refused login: ask once per login.
    pub fn shared(&self) -> Arc<dyn ImeiAllowlist> {
        self.shared.clone()
    }

    /// IMEIs in the list now.
    pub fn len(&self) -> usize {
        self.shared.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `imei` is listed, without counting a refusal.
    pub fn contains(&self, imei: Imei) -> bool {
        self.shared.current.load().contains(&imei.as_u64())
    }

    pub fn source(&self) -> Option<&AllowlistSource> {
        self.shared.source.as_ref()
    }

    pub fn counters(&self) -> &AllowlistCounters {
        &self.shared.counters
    }

    /// When the list was last loaded; `None` if it never was.
    pub fn loaded_at(&self) -> Option<SystemTime> {
        match self.shared.counters.loaded_at.load(Ordering::Relaxed) {
            0 => None,
            s => Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    /// Why the latest load failed; `None` once one succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the source now and, if that works, publishes it; answers the
    /// number of IMEIs. The load runs on the refresher's thread; the future
    /// may be awaited on any executor. On error the previous set stays.
    pub fn reload(
        &self,
    ) -> impl std::future::Future<Output = Result<usize, AllowlistError>> + Send + 'static {
        let (tx, rx) = flume::bounded(1);
        let sent = match &self.requests {
            None => Err(AllowlistError::NoSource),
            Some(r) => r.send(tx).map_err(|_| AllowlistError::Stopped),
        };
        async move {
            sent?;
            rx.recv_async()
                .await
                .unwrap_or(Err(AllowlistError::Stopped))
        }
    }

    /// Swaps in a new set.
    fn publish(&self, imeis: HashSet<u64>, skipped: usize) {
        let c = &self.shared.counters;
        let n = imeis.len();
        self.shared.current.store(Arc::new(imeis));
        c.entries.store(n as u64, Ordering::Relaxed);
        c.skipped_rows.store(skipped as u64, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        c.loaded_at.store(now, Ordering::Relaxed);
        c.loads.fetch_add(1, Ordering::Relaxed);
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn failed(&self, error: &AllowlistError) {
        self.shared
            .counters
            .load_failures
            .fetch_add(1, Ordering::Relaxed);
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imei(n: u64) -> Imei {
        Imei::with_check_digit(86_120_000_000_000 + n).unwrap()
    }

    #[test]
    fn a_fixed_list_allows_its_imeis_and_counts_refusals() {
        let list = Allowlist::of([imei(1), imei(2)]);
        let shared = list.shared();
        assert!(shared.allows(imei(1)));
        assert!(shared.allows(imei(2)));
        assert!(!shared.allows(imei(3)));
        assert!(!list.allows(imei(4)));
        assert!(!list.contains(imei(5)));
        let c = list.counters();
        assert_eq!(c.refused.load(Ordering::Relaxed), 2);
        assert_eq!(c.entries.load(Ordering::Relaxed), 2);
        assert_eq!(list.len(), 2);
        assert!(list.loaded_at().is_some());
        assert!(list.source().is_none());
    }

    #[test]
    fn a_fixed_list_cannot_reload() {
        let list = Allowlist::of([imei(1)]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt.block_on(list.reload()).unwrap_err();
        assert!(matches!(e, AllowlistError::NoSource), "{e}");
    }

    #[test]
    fn the_source_follows_the_config() {
        let mut c = Config::default();
        assert!(AllowlistSource::from_config(&c).is_none());
        c.limits.allowlist = "/etc/badges/allowed.txt".into();
        assert_eq!(
            AllowlistSource::from_config(&c).unwrap().to_string(),
            "file /etc/badges/allowed.txt"
        );
        c.limits.allowlist = "clickhouse".into();
        c.clickhouse.database = "prod".into();
        assert_eq!(
            AllowlistSource::from_config(&c).unwrap().to_string(),
            "ClickHouse table prod.devices"
        );
    }

    #[test]
    fn the_figures_are_well_formed() {
        crate::control::figures::tests::check_table(ALLOWLIST_FIGURES);
    }
}
