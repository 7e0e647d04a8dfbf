//! Keeps a registry fresh from the table or a file: a thread of its own
//! with a small runtime, reloading on a period and on request.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::BeaconsConfig;
use crate::refresh::{Load, Refresher, Reply, Why};

use super::{load, read_csv_file, Beacon, BeaconError, BeaconRegistry};

/// Bound on one load from ClickHouse: a server that accepts the connection
/// and never answers must not hold the refresher (or the start) forever.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed load is tried again this soon at the latest, so that a registry
/// that started empty (ClickHouse down at start) fills once it is back.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where a [`BeaconRefresher`] reads beacons from.
// One per server, built once: boxing the client would only make it clumsier to write.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum BeaconSource {
    /// The `beacons` table of `database`.
    ClickHouse {
        client: clickhouse::Client,
        database: String,
    },
    /// A CSV file in the import format.
    File(PathBuf),
}

impl std::fmt::Debug for BeaconSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BeaconSource::ClickHouse { database, .. } => {
                write!(f, "ClickHouse table {database}.beacons")
            }
            BeaconSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl BeaconSource {
    async fn fetch(&self) -> Result<Vec<Beacon>, BeaconError> {
        match self {
            BeaconSource::ClickHouse { client, database } => {
                tokio::time::timeout(LOAD_TIMEOUT, load(client, database))
                    .await
                    .map_err(|_| BeaconError::Timeout(LOAD_TIMEOUT))?
            }
            // The refresher has its thread to itself: reading here blocks
            // nothing else.
            BeaconSource::File(path) => read_csv_file(path),
        }
    }
}

/// How the refresher has fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefreshStats {
    /// Successful loads, the first included.
    pub loads: u64,
    /// Failed loads (each one kept the previous snapshot).
    pub failures: u64,
    /// Why the latest load failed; `None` once one succeeds.
    pub last_error: Option<String>,
    /// Active beacons in the registry.
    pub beacons: usize,
    /// When the registry was last replaced; `None` if it never was.
    pub loaded_at: Option<SystemTime>,
}

#[derive(Default)]
struct Counters {
    loads: u64,
    failures: u64,
    last_error: Option<String>,
}

struct RefreshShared {
    source: BeaconSource,
    registry: BeaconRegistry,
    counters: Mutex<Counters>,
}

impl RefreshShared {
    /// Loads and publishes; on failure the registry is left as it was.
    async fn refresh(&self) -> Result<usize, BeaconError> {
        let result = self.source.fetch().await;
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(beacons) => {
                let listed = beacons.len();
                self.registry.replace(beacons);
                let active = self.registry.len();
                counters.loads += 1;
                counters.last_error = None;
                tracing::info!(source = ?self.source, active, inactive = listed.saturating_sub(active), "beacon registry loaded");
                Ok(active)
            }
            Err(e) => {
                counters.failures += 1;
                counters.last_error = Some(e.to_string());
                tracing::warn!(source = ?self.source, error = %e, kept = self.registry.len(),
                    "beacon registry load failed; keeping the previous one");
                Err(e)
            }
        }
    }

    fn stats(&self) -> RefreshStats {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        RefreshStats {
            loads: counters.loads,
            failures: counters.failures,
            last_error: counters.last_error.clone(),
            beacons: self.registry.len(),
            loaded_at: self.registry.loaded_at(),
        }
    }
}

type ReloadReply = Reply<BeaconError>;

/// What the control socket holds to reload the registry and read the
/// refresher's stats. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct BeaconHandle {
    requests: flume::Sender<ReloadReply>,
    shared: Arc<RefreshShared>,
}

impl std::fmt::Debug for BeaconHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeaconHandle")
            .field("source", &self.shared.source)
            .finish_non_exhaustive()
    }
}

impl BeaconHandle {
    /// Loads the source now and, if that works, publishes it; answers the
    /// number of active beacons. The load runs on the refresher's thread;
    /// the future may be awaited on any executor (it needs no tokio). On
    /// error the previous snapshot stays. Reloads queue behind each other.
    pub fn reload(&self) -> impl Future<Output = Result<usize, BeaconError>> + Send + 'static {
        let (tx, rx) = flume::bounded(1);
        let sent = self.requests.send(tx).is_ok();
        async move {
            if !sent {
                return Err(BeaconError::Stopped);
            }
            rx.recv_async().await.unwrap_or(Err(BeaconError::Stopped))
        }
    }

    pub fn stats(&self) -> RefreshStats {
        self.shared.stats()
    }

    pub fn registry(&self) -> &BeaconRegistry {
        &self.shared.registry
    }
}

/// Keeps a [`BeaconRegistry`] fresh from a [`BeaconSource`]: at start, every
/// `refresh_secs`, and on [`Self::reload`], on a thread of its own with a
/// current-thread tokio runtime. Dropping it stops the thread (after the
/// load in progress, if any); handles then answer [`BeaconError::Stopped`].
pub struct BeaconRefresher {
    // Dropped first: it stops the thread while the handle still lives.
    _thread: Refresher,
    handle: BeaconHandle,
}

impl std::fmt::Debug for BeaconRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeaconRefresher")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl BeaconRefresher {
    /// Validates `config`, does the first load, and starts refreshing.
    ///
    /// The first load is done before this returns, and how it fails decides
    /// the start:
    /// - a `File` source that cannot be read or has a bad line fails the
    ///   start: someone named that file, and a typo must not go unnoticed
    ///   behind an empty registry;
    /// - a `ClickHouse` source that fails (down, no answer within 10 s, no
    ///   table yet) is logged and counted, and the registry starts empty:
    ///   badges must not wait for the registry, and the sink has its own
    ///   answer to ClickHouse being down (the spool). The load is retried
    ///   every `min(refresh_secs, 30)` seconds (every 30 with
    ///   `refresh_secs = 0`) until one succeeds.
    ///
    /// `config.enabled` is not consulted: whether to start one at all is the
    /// caller's choice (see [`BeaconsConfig::source`]).
    pub fn start(
        config: &BeaconsConfig,
        source: BeaconSource,
        registry: BeaconRegistry,
    ) -> Result<Self, BeaconError> {
        config.validate()?;
        let refresh = Duration::from_secs(config.refresh_secs);
        let fatal_at_start = matches!(source, BeaconSource::File(_));
        let shared = Arc::new(RefreshShared {
            source,
            registry,
            counters: Mutex::new(Counters::default()),
        });
        let (requests_tx, requests) = flume::unbounded::<ReloadReply>();
        let load = BeaconLoad {
            shared: Arc::clone(&shared),
            refresh,
            fatal_at_start,
            loaded: false,
        };
        let thread = Refresher::start("beacons", load, requests)?;
        Ok(Self {
            handle: BeaconHandle {
                requests: requests_tx,
                shared,
            },
            _thread: thread,
        })
    }

    /// See [`BeaconHandle::reload`].
    pub fn reload(&self) -> impl Future<Output = Result<usize, BeaconError>> + Send + 'static {
        self.handle.reload()
    }

    pub fn stats(&self) -> RefreshStats {
        self.handle.stats()
    }

    pub fn handle(&self) -> BeaconHandle {
        self.handle.clone()
    }

    pub fn registry(&self) -> &BeaconRegistry {
        self.handle.registry()
    }
}

/// The registry's policy: a failed first load fails the start only for a
/// file, and a failed load is retried sooner than the period.
struct BeaconLoad {
    shared: Arc<RefreshShared>,
    refresh: Duration,
    fatal_at_start: bool,
    /// Whether a load ever succeeded.
    loaded: bool,
}

impl Load for BeaconLoad {
    type Error = BeaconError;

    async fn load(&mut self, _why: Why) -> Result<usize, BeaconError> {
        self.shared.refresh().await
    }

    fn fails_start(&self, _: &BeaconError) -> bool {
        self.fatal_at_start
    }

    fn next(&mut self, ok: bool) -> Option<Duration> {
        self.loaded |= ok;
        match (ok, self.refresh.is_zero()) {
            (true, true) => None,
            (true, false) => Some(self.refresh),
            (false, false) => Some(self.refresh.min(RETRY_AFTER)),
            // Only a registry that never loaded is retried on its own: with
            // refresh off, a failed manual reload was answered to whoever
            // asked, and the old snapshot is what they chose to keep.
            (false, true) if self.loaded => None,
            (false, true) => Some(RETRY_AFTER),
        }
    }

    fn start_error(error: std::io::Error) -> BeaconError {
        BeaconError::Start(error)
    }

    fn stopped() -> BeaconError {
        BeaconError::Stopped
    }
}
