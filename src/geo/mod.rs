//! Positions for reports without GPS (cell towers, WiFi APs) and addresses
//! for positions.
//!
//! Providers, chosen in [`GeoConfig`]:
//! - the offline cell database ([`CellDb`], an OpenCellID CSV in memory):
//!   the RSSI-weighted centroid of the known cells, no network;
//! - HTTP geolocation (the Geolocation-API JSON POST), when the cell
//!   database is off or knows none of the cells;
//! - HTTP reverse geocoding (Nominatim-compatible `GET /reverse`).
//!
//! Lookups run on a tokio runtime, never on a shard. A shard holds a
//! [`GeoHandle`]: each lookup is a `try_send` into the service queue (a full
//! queue answers `None` at once and counts `queue_full`) and a one-slot
//! flume channel for the reply, which any executor can await, glommio's
//! included. The handle never blocks.
//!
//! **Deadlines are the caller's.** The service bounds every provider call
//! with `timeout_ms`, but a lookup may also wait for a concurrency permit,
//! so a caller that must answer a badge in time races the future against
//! its own timer. Dropping the future is enough to give up: a lookup whose
//! caller is gone is not sent to a provider.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use badge_ingest::geo::{CellQuery, Fix, GeoHandle};
//! // On a shard (glommio).
//! async fn position(geo: &GeoHandle, query: CellQuery) -> Option<Fix> {
//!     futures_lite::future::or(geo.locate(query), async {
//!         glommio::timer::sleep(Duration::from_millis(300)).await;
//!         None
//!     })
//!     .await
//! }
//! ```
//!
//! Around each HTTP provider: an LRU cache with a TTL (shared by the
//! providers of one kind of lookup), a concurrency limit (a semaphore per
//! provider, so a slow one cannot starve the other), a timeout per call, a
//! circuit breaker, and counters with a latency histogram ([`GeoStats`]).

pub mod beacons;
mod breaker;
mod cache;
mod celldb;
mod http;
mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::config::ConfigError;
use crate::protocol::layout::{CellTower, Cells, Generation, MacAddr, MobileNetwork, WifiAp};

pub use breaker::BreakerState;
pub use cache::CacheStats;
pub use celldb::{distance_m, CellDb, CellDbInfo, CellSite, DEFAULT_RANGE_M, MIN_ACCURACY_M};
pub use stats::{GeoStats, ProviderStats};

use breaker::Breaker;
use cache::TtlCache;
use http::{GeolocationClient, ReverseClient};
use stats::ProviderCounters;

/// The `[geo]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeoConfig {
    /// An OpenCellID-format CSV, loaded at start and on reload. Used first.
    pub cell_db: Option<PathBuf>,
    /// The Geolocation-API endpoint, e.g.
    /// `https://www.googleapis.com/geolocation/v1/geolocate`; empty: off.
    pub geolocation_url: String,
    /// Sent as `?key=`; empty: none.
    pub geolocation_key: String,
    /// The whole reverse endpoint, e.g. `https://nominatim.openstreetmap.org/reverse`
    /// (the query string is added); empty: off.
    pub reverse_url: String,
    /// Bound on each provider call.
    pub timeout_ms: u64,
    /// HTTP calls in flight per provider.
    pub concurrency: usize,
    /// Entries per cache (positions, addresses); 0 turns caching off.
    pub cache_entries: usize,
    pub cache_ttl_secs: u64,
    /// Consecutive failures (errors or timeouts) that open a provider's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before one probe.
    pub breaker_cooldown_secs: u64,
    /// Lookups accepted and not yet answered; more are refused at the handle.
    pub queue: usize,
    /// How long an address request (0x17/0x1A/0xA7) waits for its address
    /// before it is answered with an empty one, and how long a stored row
    /// waits for its position and address before it is stored without.
    pub deadline_ms: u64,
    /// Rows (and address replies) waiting for the geo service per shard;
    /// beyond this a row is stored at once without enrichment, and counted.
    pub max_pending: usize,
    /// Whether rows that have a position (GPS, or one found from cells) are
    /// also given an address. Off: only address requests and alarms ask
    /// for one, which spares a rate-limited reverse provider.
    pub addresses: bool,
    /// The language of stored addresses (`zh` or `en`). Address requests
    /// use their own, alarms their language byte.
    pub language: String,
}

impl Default for GeoConfig {
    fn default() -> Self {
        Self {
            cell_db: None,
            geolocation_url: String::new(),
            geolocation_key: String::new(),
            reverse_url: String::new(),
            timeout_ms: 2000,
            concurrency: 16,
            cache_entries: 100_000,
            cache_ttl_secs: 86_400,
            breaker_failures: 5,
            breaker_cooldown_secs: 30,
            queue: 4096,
            deadline_ms: 3000,
            max_pending: 4096,
            addresses: true,
            language: "zh".into(),
        }
    }
}

impl GeoConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Whether any provider is configured; without one the server answers
    /// address requests at once with an empty address, as the reference
    /// does when its geocoder is off.
    pub fn enabled(&self) -> bool {
        self.cell_db.is_some() || !self.geolocation_url.is_empty() || !self.reverse_url.is_empty()
    }

    /// The language of stored addresses.
    pub fn stored_language(&self) -> Language {
        if self.language == "en" {
            Language::English
        } else {
            Language::Chinese
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        }
        fn url_ok(url: &str) -> Result<(), String> {
            let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(format!("`{url}` must be an http:// or https:// URL"));
            }
            Ok(())
        }
        if self
            .cell_db
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return bad("geo.cell_db", "must name a file (or be left out)");
        }
        if !self.geolocation_url.is_empty() {
            if let Err(reason) = url_ok(&self.geolocation_url) {
                return bad("geo.geolocation_url", reason);
            }
        } else if !self.geolocation_key.is_empty() {
            return bad(
                "geo.geolocation_key",
                "is set but geo.geolocation_url is empty",
            );
        }
        if !self.reverse_url.is_empty() {
            if let Err(reason) = url_ok(&self.reverse_url) {
                return bad("geo.reverse_url", reason);
            }
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return bad("geo.timeout_ms", "must be between 1 and 60000");
        }
        if !(1..=4096).contains(&self.concurrency) {
            return bad("geo.concurrency", "must be between 1 and 4096");
        }
        if self.cache_entries > 100_000_000 {
            return bad("geo.cache_entries", "at most 100000000");
        }
        if self.cache_ttl_secs == 0 {
            return bad(
                "geo.cache_ttl_secs",
                "must be at least 1 (cache_entries = 0 turns caching off)",
            );
        }
        if self.breaker_failures == 0 {
            return bad("geo.breaker_failures", "must be at least 1");
        }
        if self.breaker_cooldown_secs == 0 {
            return bad("geo.breaker_cooldown_secs", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return bad("geo.queue", "must be between 1 and 1000000");
        }
        if !(1..=60_000).contains(&self.deadline_ms) {
            return bad("geo.deadline_ms", "must be between 1 and 60000");
        }
        if !(1..=1_000_000).contains(&self.max_pending) {
            return bad("geo.max_pending", "must be between 1 and 1000000");
        }
        if !matches!(self.language.as_str(), "zh" | "en") {
            return bad("geo.language", "must be `zh` or `en`");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cell database {path}: {source}")]
    CellDbRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cell database {path}: no usable row ({skipped} lines skipped); is it an OpenCellID CSV?"
    )]
    CellDbEmpty { path: PathBuf, skipped: usize },
    #[error("no cell database is configured (geo.cell_db)")]
    NoCellDb,
    #[error("{provider}: bad URL: {reason}")]
    BadUrl {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider}: {source}")]
    Http {
        provider: &'static str,
        source: reqwest::Error,
    },
    #[error("{provider}: HTTP status {status}")]
    Status { provider: &'static str, status: u16 },
    #[error("{provider}: unusable answer: {reason}")]
    BadAnswer {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider}: no answer within {after:?}")]
    Timeout {
        provider: &'static str,
        after: Duration,
    },
    #[error("{provider}: circuit breaker open")]
    BreakerOpen { provider: &'static str },
    #[error("{provider}: the caller stopped waiting")]
    Abandoned { provider: &'static str },
    #[error("the geo service has stopped")]
    Stopped,
}

/// The radio of the cells in a query, as the Geolocation API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Radio {
    Gsm,
    Lte,
}

impl From<Generation> for Radio {
    fn from(g: Generation) -> Self {
        match g {
            Generation::G2 => Radio::Gsm,
            Generation::G4 => Radio::Lte,
        }
    }
}

/// What a badge heard: cells (main first) and WiFi APs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellQuery {
    pub network: MobileNetwork,
    pub radio: Radio,
    /// The serving cell first, then neighbours. Zero-filled slots are ignored.
    pub cells: Vec<CellTower>,
    /// MAC and signal in dBm (negative; 0 = unknown).
    pub wifi: Vec<(MacAddr, i8)>,
}

impl CellQuery {
    /// From a report's cell list, with the zero slots left out.
    pub fn from_cells(network: MobileNetwork, cells: Cells<'_>) -> Self {
        Self {
            network,
            radio: cells.generation().into(),
            cells: cells.iter().filter(|c| !c.is_empty()).collect(),
            wifi: Vec::new(),
        }
    }

    /// Adds a report's WiFi APs, their signal bytes read by [`wifi_dbm`].
    pub fn with_wifi(mut self, aps: &[WifiAp]) -> Self {
        self.wifi
            .extend(aps.iter().map(|ap| (ap.mac(), wifi_dbm(ap.rssi))));
        self
    }

    fn is_empty(&self) -> bool {
        self.cells.iter().all(CellTower::is_empty) && self.wifi.is_empty()
    }
}

/// A WiFi signal byte as dBm. Firmwares send either the signed dBm value
/// (0x80..=0xFF) or its magnitude (e.g. 65 for -65 dBm); both read as the
/// same negative number. 0 stays 0, unknown.
pub fn wifi_dbm(raw: u8) -> i8 {
    if raw >= 0x80 {
        raw as i8
    } else {
        -(raw as i8)
    }
}

/// Where a position came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FixSource {
    Cell,
    Wifi,
}

/// A position without GPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    /// Radius in metres.
    pub accuracy_m: f64,
    pub source: FixSource,
}

/// The language of an address: Chinese answers 0x17, English 0x97.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Chinese,
    English,
}

impl Language {
    /// From an address request's language word: 2 is English, anything else
    /// Chinese (as the reply chosen for it).
    pub fn from_request(language: u16) -> Self {
        if language == 2 {
            Language::English
        } else {
            Language::Chinese
        }
    }

    /// The `accept-language` value.
    pub fn code(self) -> &'static str {
        match self {
            Language::Chinese => "zh",
            Language::English => "en",
        }
    }
}

/// The position cache key: the set of cells and APs, without their signals,
/// so a badge standing still hits the cache while its signals flicker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LocateKey {
    radio: Radio,
    cells: Box<[(u16, u16, u32, u64)]>,
    wifi: Box<[MacAddr]>,
}

impl LocateKey {
    fn new(q: &CellQuery) -> Self {
        let n = q.network;
        let mut cells: Vec<_> = q
            .cells
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| (n.mcc, n.mnc, c.lac, c.cell_id))
            .collect();
        cells.sort_unstable();
        cells.dedup();
        let mut wifi: Vec<_> = q.wifi.iter().map(|(mac, _)| *mac).collect();
        wifi.sort_unstable();
        wifi.dedup();
        Self {
            radio: q.radio,
            cells: cells.into(),
            wifi: wifi.into(),
        }
    }
}

/// The address cache key: the position on a 1e-4° grid (about 11 m).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddressKey {
    lat: i32,
    lon: i32,
    lang: Language,
}

impl AddressKey {
    const GRID: f64 = 1e4;

    fn new(lat: f64, lon: f64, lang: Language) -> Self {
        Self {
            lat: (lat * Self::GRID).round() as i32,
            lon: (lon * Self::GRID).round() as i32,
            lang,
        }
    }

    fn lat(&self) -> f64 {
        f64::from(self.lat) / Self::GRID
    }

    fn lon(&self) -> f64 {
        f64::from(self.lon) / Self::GRID
    }
}

/// Counts a lookup as outstanding from its acceptance at the handle until
/// its answer is sent (or it is dropped unanswered).
struct Ticket(Arc<Shared>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Reply<T> {
    tx: flume::Sender<T>,
    ticket: Ticket,
}

impl<T> Reply<T> {
    fn send(self, value: T) {
        // Released first, so a caller that asks again the moment it has its
        // answer finds the slot free.
        drop(self.ticket);
        // The caller may have stopped waiting; that is its right.
        let _ = self.tx.try_send(value);
    }

    fn abandoned(&self) -> bool {
        self.tx.is_disconnected()
    }
}

enum Request {
    Locate {
        query: CellQuery,
        reply: Reply<Option<Fix>>,
    },
    Address {
        lat: f64,
        lon: f64,
        lang: Language,
        reply: Reply<Option<String>>,
    },
}

/// One HTTP provider with everything that guards it.
struct Provider<C> {
    name: &'static str,
    client: C,
    limit: Semaphore,
    timeout: Duration,
    breaker: Mutex<Breaker>,
    stats: ProviderCounters,
}

impl<C> Provider<C> {
    fn new(name: &'static str, client: C, config: &GeoConfig) -> Self {
        Self {
            name,
            client,
            limit: Semaphore::new(config.concurrency),
            timeout: config.timeout(),
            breaker: Mutex::new(Breaker::new(
                config.breaker_failures,
                Duration::from_secs(config.breaker_cooldown_secs),
            )),
            stats: ProviderCounters::new(),
        }
    }

    /// Runs one provider call under the concurrency limit, the breaker and
    /// the timeout, and counts it.
    async fn call<'a, T, Fut>(
        &'a self,
        abandoned: impl Fn() -> bool,
        call: impl FnOnce(&'a C) -> Fut,
    ) -> Result<Option<T>, GeoError>
    where
        Fut: Future<Output = Result<Option<T>, GeoError>>,
    {
        let provider = self.name;
        let _permit = self.limit.acquire().await.map_err(|_| GeoError::Stopped)?;
        // Checked after the wait for a permit, which is where time passes.
        if abandoned() {
            ProviderCounters::inc(&self.stats.abandoned);
            return Err(GeoError::Abandoned { provider });
        }
        // Asked only now, so a half-open probe is the call that goes out next.
        if !lock(&self.breaker).admit(Instant::now()) {
            ProviderCounters::inc(&self.stats.rejected_open);
            return Err(GeoError::BreakerOpen { provider });
        }
        ProviderCounters::inc(&self.stats.requests);
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, call(&self.client)).await;
        self.stats.record_latency(start.elapsed());
        match outcome {
            Ok(Ok(answer)) => {
                let counter = if answer.is_some() {
                    &self.stats.hits
                } else {
                    &self.stats.misses
                };
                ProviderCounters::inc(counter);
                if lock(&self.breaker).success() {
                    tracing::info!(provider, "geo provider answers again; circuit closed");
                }
                Ok(answer)
            }
            Ok(Err(e)) => {
                ProviderCounters::inc(&self.stats.failures);
                self.failed(&e);
                Err(e)
            }
            Err(_) => {
                ProviderCounters::inc(&self.stats.timeouts);
                let e = GeoError::Timeout {
                    provider,
                    after: self.timeout,
                };
                self.failed(&e);
                Err(e)
            }
        }
    }

    fn failed(&self, e: &GeoError) {
        let opened = lock(&self.breaker).failure(Instant::now());
        if opened {
            ProviderCounters::inc(&self.stats.breaker_opens);
            tracing::warn!(provider = self.name, error = %e, "geo provider failing; circuit open");
        } else {
            tracing::debug!(provider = self.name, error = %e, "geo provider call failed");
        }
    }

    fn snapshot(&self) -> ProviderStats {
        self.stats.snapshot(true, lock(&self.breaker).state())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can leave them half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shared {
    queue: usize,
    outstanding: AtomicUsize,
    queue_full: AtomicU64,
    cell_db_path: Option<PathBuf>,
    cell_db: RwLock<Option<Arc<CellDb>>>,
    cell_stats: ProviderCounters,
    reload_lock: tokio::sync::Mutex<()>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    geolocation: Option<Provider<GeolocationClient>>,
    reverse: Option<Provider<ReverseClient>>,
    locate_cache: Mutex<TtlCache<LocateKey, Option<Fix>>>,
    address_cache: Mutex<TtlCache<AddressKey, Option<String>>>,
}

impl Shared {
    fn cell_db(&self) -> Option<Arc<CellDb>> {
        self.cell_db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs on the dispatcher: answers from the cache or the cell database
    /// at once, and leaves only HTTP calls to a task of their own.
    fn locate(self: &Arc<Self>, query: CellQuery, reply: Reply<Option<Fix>>) {
        if query.is_empty() {
            return reply.send(None);
        }
        let key = LocateKey::new(&query);
        if let Some(cached) = lock(&self.locate_cache).get(&key, Instant::now()) {
            return reply.send(cached);
        }
        if let Some(db) = self.cell_db() {
            let start = Instant::now();
            ProviderCounters::inc(&self.cell_stats.requests);
            let fix = db.locate(&query);
            self.cell_stats.record_latency(start.elapsed());
            if let Some(fix) = fix {
                ProviderCounters::inc(&self.cell_stats.hits);
                lock(&self.locate_cache).insert(key, Some(fix), Instant::now());
                return reply.send(Some(fix));
            }
            ProviderCounters::inc(&self.cell_stats.misses);
        }
        if self.geolocation.is_none() {
            if self.cell_db_path.is_some() {
                // Unknown to the database until it is reloaded, which clears the cache.
                lock(&self.locate_cache).insert(key, None, Instant::now());
            }
            return reply.send(None);
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let provider = shared.geolocation.as_ref().expect("checked above");
            let outcome = provider
                .call(|| reply.abandoned(), |client| client.locate(&query))
                .await;
            match outcome {
                Ok(fix) => {
                    lock(&shared.locate_cache).insert(key, fix, Instant::now());
                    reply.send(fix);
                }
                // Failures are not cached: the next lookup tries again.
                Err(_) => reply.send(None),
            }
        });
    }

    fn address(self: &Arc<Self>, lat: f64, lon: f64, lang: Language, reply: Reply<Option<String>>) {
        if !http::valid_position(lat, lon) {
            return reply.send(None);
        }
        let key = AddressKey::new(lat, lon, lang);
        if let Some(cached) = lock(&self.address_cache).get(&key, Instant::now()) {
            return reply.send(cached);
        }
        if self.reverse.is_none() {
            return reply.send(None);
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let provider = shared.reverse.as_ref().expect("checked above");
            let outcome = provider
                .call(
                    || reply.abandoned(),
                    |client| client.address(key.lat(), key.lon(), key.lang),
                )
                .await;
            match outcome {
                Ok(address) => {
                    lock(&shared.address_cache).insert(key, address.clone(), Instant::now());
                    reply.send(address);
                }
                Err(_) => reply.send(None),
            }
        });
    }

    async fn reload_cell_db(self: Arc<Self>) -> Result<CellDbInfo, GeoError> {
        let path = self.cell_db_path.clone().ok_or(GeoError::NoCellDb)?;
        // Two reloads at once would parse the same file twice for nothing.
        let _one_at_a_time = self.reload_lock.lock().await;
        let loaded = tokio::task::spawn_blocking({
            let path = path.clone();
            move || CellDb::load(&path)
        })
        .await
        .map_err(|_| GeoError::Stopped)?;
        match loaded {
            Ok((db, info)) => {
                *self.cell_db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                // Answers (and "unknown"s) of the old database must not outlive it.
                lock(&self.locate_cache).clear();
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %path.display(), cells = info.cells, skipped = info.skipped,
                    duplicates = info.duplicates, "cell database reloaded");
                Ok(info)
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cell database reload failed; keeping the old one");
                Err(e)
            }
        }
    }

    fn stats(&self) -> GeoStats {
        let off = || ProviderCounters::new().snapshot(false, BreakerState::Closed);
        GeoStats {
            cell_db: self
                .cell_stats
                .snapshot(self.cell_db_path.is_some(), BreakerState::Closed),
            geolocation: self
                .geolocation
                .as_ref()
                .map_or_else(off, Provider::snapshot),
            reverse: self.reverse.as_ref().map_or_else(off, Provider::snapshot),
            locate_cache: lock(&self.locate_cache).stats(),
            address_cache: lock(&self.address_cache).stats(),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            outstanding: self.outstanding.load(Ordering::Relaxed),
            cell_db_cells: self.cell_db().map_or(0, |db| db.len()),
            cell_db_reloads: self.reloads.load(Ordering::Relaxed),
            cell_db_reload_failures: self.reload_failures.load(Ordering::Relaxed),
        }
    }
}

async fn dispatch(requests: flume::Receiver<Request>, shared: Arc<Shared>) {
    while let Ok(request) = requests.recv_async().await {
        match request {
            Request::Locate { query, reply } => shared.locate(query, reply),
            Request::Address {
                lat,
                lon,
                lang,
                reply,
            } => shared.address(lat, lon, lang, reply),
        }
    }
}

/// What shards hold to ask for positions and addresses. Cheap to clone.
#[derive(Clone)]
pub struct GeoHandle {
    requests: flume::Sender<Request>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for GeoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoHandle")
            .field(
                "outstanding",
                &self.shared.outstanding.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl GeoHandle {
    /// The position of what a badge heard, or `None` when no provider knows,
    /// one failed, or the queue was full. The lookup is queued when this is
    /// called, not when the future is first polled.
    pub fn locate(&self, query: CellQuery) -> impl Future<Output = Option<Fix>> + Send + 'static {
        let (tx, rx) = flume::bounded(1);
        let sent = self.submit(|ticket| Request::Locate {
            query,
            reply: Reply { tx, ticket },
        });
        async move {
            if !sent {
                return None;
            }
            rx.into_recv_async().await.ok().flatten()
        }
    }

    /// The address at a position in `lang`, or `None` (see [`Self::locate`]).
    pub fn address(
        &self,
        lat: f64,
        lon: f64,
        lang: Language,
    ) -> impl Future<Output = Option<String>> + Send + 'static {
        let (tx, rx) = flume::bounded(1);
        let sent = self.submit(|ticket| Request::Address {
            lat,
            lon,
            lang,
            reply: Reply { tx, ticket },
        });
        async move {
            if !sent {
                return None;
            }
            rx.into_recv_async().await.ok().flatten()
        }
    }

    /// Reads the cell database file again and swaps it in (clearing the
    /// position cache); on error the old one stays. Runs on the service's
    /// runtime; the future may be awaited anywhere.
    pub fn reload_cell_db(
        &self,
    ) -> impl Future<Output = Result<CellDbInfo, GeoError>> + Send + 'static {
        let task = self
            .runtime
            .spawn(Arc::clone(&self.shared).reload_cell_db());
        async move { task.await.map_err(|_| GeoError::Stopped)? }
    }

    pub fn stats(&self) -> GeoStats {
        self.shared.stats()
    }

    fn submit(&self, request: impl FnOnce(Ticket) -> Request) -> bool {
        let s = &self.shared;
        // The outstanding count, not the channel, is the limit: the
        // dispatcher drains the channel at once into tasks that may wait for
        // a slow provider, and those must count against the queue too.
        if s.outstanding.fetch_add(1, Ordering::AcqRel) >= s.queue {
            s.outstanding.fetch_sub(1, Ordering::AcqRel);
            s.queue_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let ticket = Ticket(Arc::clone(s));
        match self.requests.try_send(request(ticket)) {
            Ok(()) => true,
            Err(flume::TrySendError::Full(_)) => {
                s.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(flume::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The running service. Dropping it stops taking lookups (handles then
/// answer `None`); calls already out finish within their timeout.
pub struct GeoService {
    handle: GeoHandle,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl GeoService {
    /// Validates `config`, loads the cell database (an unreadable one fails
    /// the start), and starts the dispatcher on `runtime`, which must have
    /// its time driver enabled.
    pub fn start(
        config: GeoConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<(GeoHandle, GeoService), GeoError> {
        config.validate()?;
        let cell_db = match &config.cell_db {
            Some(path) => {
                let (db, info) = CellDb::load(path)?;
                tracing::info!(path = %path.display(), cells = info.cells, skipped = info.skipped,
                    duplicates = info.duplicates, "cell database loaded");
                Some(Arc::new(db))
            }
            None => None,
        };
        let http_needed = !config.geolocation_url.is_empty() || !config.reverse_url.is_empty();
        let http = if http_needed {
            let _in_runtime = runtime.enter();
            Some(http::client(config.timeout())?)
        } else {
            None
        };
        let geolocation = match &http {
            Some(h) if !config.geolocation_url.is_empty() => Some(Provider::new(
                http::GEOLOCATION,
                GeolocationClient::new(
                    h.clone(),
                    &config.geolocation_url,
                    &config.geolocation_key,
                )?,
                &config,
            )),
            _ => None,
        };
        let reverse = match &http {
            Some(h) if !config.reverse_url.is_empty() => Some(Provider::new(
                http::REVERSE,
                ReverseClient::new(h.clone(), &config.reverse_url)?,
                &config,
            )),
            _ => None,
        };
        let ttl = Duration::from_secs(config.cache_ttl_secs);
        let shared = Arc::new(Shared {
            queue: config.queue,
            outstanding: AtomicUsize::new(0),
            queue_full: AtomicU64::new(0),
            cell_db_path: config.cell_db.clone(),
            cell_db: RwLock::new(cell_db),
            cell_stats: ProviderCounters::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            geolocation,
            reverse,
            locate_cache: Mutex::new(TtlCache::new(config.cache_entries, ttl)),
            address_cache: Mutex::new(TtlCache::new(config.cache_entries, ttl)),
        });
        let (tx, rx) = flume::bounded(config.queue);
        let dispatcher = runtime.spawn(dispatch(rx, Arc::clone(&shared)));
        let handle = GeoHandle {
            requests: tx,
            shared,
            runtime,
        };
        Ok((handle.clone(), GeoService { handle, dispatcher }))
    }

    pub fn handle(&self) -> GeoHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> GeoStats {
        self.handle.stats()
    }

    /// See [`GeoHandle::reload_cell_db`].
    pub fn reload_cell_db(
        &self,
    ) -> impl Future<Output = Result<CellDbInfo, GeoError>> + Send + 'static {
        self.handle.reload_cell_db()
    }
}

impl std::fmt::Debug for GeoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoService")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Drop for GeoService {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tower(lac: u32, cell_id: u64, rssi: u8) -> CellTower {
        CellTower { lac, cell_id, rssi }
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        GeoConfig::default().validate().unwrap();
        let c: GeoConfig = toml::from_str("timeout_ms = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `geo.timeout_ms`"), "{e}");
        let c: GeoConfig = toml::from_str("reverse_url = \"ftp://x/reverse\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `geo.reverse_url`"), "{e}");
        let c: GeoConfig = toml::from_str("geolocation_key = \"k\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `geo.geolocation_key`"), "{e}");
        let e = toml::from_str::<GeoConfig>("timeout = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
        let c: GeoConfig = toml::from_str(
            "cell_db = \"/var/lib/cells.csv\"\ngeolocation_url = \"https://example.invalid/geolocate\"\nqueue = 8",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.queue, 8);
        assert_eq!(c.timeout_ms, 2000);
    }

    #[test]
    fn the_position_key_ignores_signal_order_and_empty_slots() {
        let net = MobileNetwork::new(460, 0);
        let mac = |b| MacAddr([0, 0, 0, 0, 0, b]);
        let a = CellQuery {
            network: net,
            radio: Radio::Gsm,
            cells: vec![tower(1, 2, 50), tower(1, 3, 20)],
            wifi: vec![(mac(1), -60), (mac(2), -70)],
        };
        let b = CellQuery {
            network: net,
            radio: Radio::Gsm,
            cells: vec![tower(1, 3, 90), tower(0, 0, 0), tower(1, 2, 10)],
            wifi: vec![(mac(2), -50), (mac(1), -80)],
        };
        assert_eq!(LocateKey::new(&a), LocateKey::new(&b));
        let c = CellQuery {
            radio: Radio::Lte,
            ..b.clone()
        };
        assert_ne!(LocateKey::new(&a), LocateKey::new(&c));
        let d = CellQuery {
            network: MobileNetwork::new(460, 1),
            ..b
        };
        assert_ne!(LocateKey::new(&a), LocateKey::new(&d));
    }

    #[test]
    fn the_address_key_is_a_1e4_degree_grid_per_language() {
        let k = AddressKey::new(22.543_12, 113.941_86, Language::Chinese);
        assert_eq!(k, AddressKey::new(22.543_14, 113.941_94, Language::Chinese));
        assert_ne!(k, AddressKey::new(22.543_12, 113.941_86, Language::English));
        assert_ne!(k, AddressKey::new(22.543_2, 113.941_86, Language::Chinese));
        assert_eq!((k.lat(), k.lon()), (22.5431, 113.9419));
        let s = AddressKey::new(-33.868_84, -151.209_3, Language::English);
        assert_eq!((s.lat(), s.lon()), (-33.8688, -151.2093));
    }

    #[test]
    fn wifi_signal_bytes_read_as_dbm_either_way() {
        assert_eq!(wifi_dbm(0xBF), -65);
        assert_eq!(wifi_dbm(65), -65);
        assert_eq!(wifi_dbm(0), 0);
        assert_eq!(wifi_dbm(0x80), -128);
    }

    #[test]
    fn queries_are_built_from_report_blocks() {
        use crate::protocol::layout::Cell2g;
        let cells = [
            Cell2g::new(9360, 4082, 60),
            Cell2g::new(0, 0, 0),
            Cell2g::new(9360, 4083, 20),
        ];
        let q = CellQuery::from_cells(MobileNetwork::new(460, 0), Cells::G2(&cells))
            .with_wifi(&[WifiAp::new([1, 2, 3, 4, 5, 6], 70)]);
        assert_eq!(q.radio, Radio::Gsm);
        assert_eq!(q.cells, vec![tower(9360, 4082, 60), tower(9360, 4083, 20)]);
        assert_eq!(q.wifi, vec![(MacAddr([1, 2, 3, 4, 5, 6]), -70)]);
        assert_eq!(Language::from_request(2), Language::English);
        assert_eq!(Language::from_request(1).code(), "zh");
    }
}
