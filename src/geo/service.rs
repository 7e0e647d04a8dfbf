//! The geo service: a dispatcher on a tokio runtime that answers from the
//! caches and the cell database at once and runs HTTP calls as tasks, and
//! the [`GeoHandle`] that shards hold to ask it without blocking.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::GeoConfig;
use crate::record::lookup::{CellQuery, Fix, Language};

use super::breaker::{Breaker, BreakerState};
use super::cache::TtlCache;
use super::celldb::{CellDb, CellDbInfo};
use super::http::{self, GeolocationClient, ReverseClient};
use super::keys::{AddressKey, LocateKey};
use super::stats::{GeoStats, ProviderCounters, ProviderStats};
use super::GeoError;

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
