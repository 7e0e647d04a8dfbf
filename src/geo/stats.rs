//! Counters for the geo service. Lookups finish on tokio worker threads, so
//! unlike the shards' metrics these are shared: atomics, and a mutex around
//! each latency histogram (taken once per provider call, never on a shard).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::breaker::BreakerState;
use super::cache::CacheStats;
use crate::metrics::{latency_histogram, Figure, Kind};

/// One provider's counters.
///
/// `requests` counts calls that went out (for the cell database: lookups in
/// it). Each ends as exactly one of `hits` (answered with a position or
/// address), `misses` (answered, but the provider knows nothing there),
/// `failures` (an error or an unusable answer) or `timeouts`. Lookups that
/// never went out are `rejected_open` (breaker open) or `abandoned` (the
/// caller had stopped waiting before a permit freed up). Cache hits never
/// reach a provider: see [`GeoStats::locate_cache`] and
/// [`GeoStats::address_cache`].
#[derive(Debug, Clone)]
pub struct ProviderStats {
    /// Whether the provider is configured.
    pub enabled: bool,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub failures: u64,
    pub timeouts: u64,
    /// Times the breaker opened (including re-opening after a failed probe).
    pub breaker_opens: u64,
    pub rejected_open: u64,
    pub abandoned: u64,
    pub breaker: BreakerState,
    /// Time per call that went out, in µs (timeouts included, at the timeout).
    pub latency_us: Histogram<u64>,
}

/// Each provider's figures (labelled by provider in `/metrics`), in the
/// order the `geo` command shows them.
pub static PROVIDER_FIGURES: &[Figure<ProviderStats>] = &[
    Figure {
        key: "requests",
        prom: Some("geo_requests_total"),
        kind: Kind::Counter,
        help: "Calls that went to a geo provider.",
        text: &[],
        get: |p| p.requests,
    },
    Figure {
        key: "hits",
        prom: Some("geo_hits_total"),
        kind: Kind::Counter,
        help: "Calls answered with a position or address.",
        text: &[],
        get: |p| p.hits,
    },
    Figure {
        key: "misses",
        prom: Some("geo_misses_total"),
        kind: Kind::Counter,
        help: "Calls the provider had no answer for.",
        text: &[],
        get: |p| p.misses,
    },
    Figure {
        key: "failures",
        prom: Some("geo_failures_total"),
        kind: Kind::Counter,
        help: "Calls that failed.",
        text: &[],
        get: |p| p.failures,
    },
    Figure {
        key: "timeouts",
        prom: Some("geo_timeouts_total"),
        kind: Kind::Counter,
        help: "Calls that timed out.",
        text: &[],
        get: |p| p.timeouts,
    },
    Figure {
        key: "breaker_open",
        prom: Some("geo_breaker_open"),
        kind: Kind::Gauge,
        help: "1 while the provider's breaker is open.",
        text: &[],
        get: |p| u64::from(p.breaker != BreakerState::Closed),
    },
    Figure {
        key: "breaker_opens",
        prom: Some("geo_breaker_opens_total"),
        kind: Kind::Counter,
        help: "Times the provider's breaker opened.",
        text: &[],
        get: |p| p.breaker_opens,
    },
    Figure {
        key: "rejected_open",
        prom: Some("geo_rejected_open_total"),
        kind: Kind::Counter,
        help: "Lookups refused while the breaker was open.",
        text: &[],
        get: |p| p.rejected_open,
    },
    Figure {
        key: "abandoned",
        prom: Some("geo_abandoned_total"),
        kind: Kind::Counter,
        help: "Lookups whose caller had stopped waiting before they went out.",
        text: &[],
        get: |p| p.abandoned,
    },
];

/// A snapshot of the whole service.
#[derive(Debug, Clone)]
pub struct GeoStats {
    pub cell_db: ProviderStats,
    pub geolocation: ProviderStats,
    pub reverse: ProviderStats,
    pub locate_cache: CacheStats,
    pub address_cache: CacheStats,
    /// Lookups refused at the handle because the service queue was full.
    pub queue_full: u64,
    /// Lookups accepted and not yet answered.
    pub outstanding: usize,
    pub cell_db_cells: usize,
    pub cell_db_reloads: u64,
    pub cell_db_reload_failures: u64,
}

impl GeoStats {
    /// The providers by name, configured or not.
    pub fn providers(&self) -> [(&'static str, &ProviderStats); 3] {
        [
            ("cell_db", &self.cell_db),
            ("geolocation", &self.geolocation),
            ("reverse", &self.reverse),
        ]
    }
}

pub(crate) struct ProviderCounters {
    pub(crate) requests: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) breaker_opens: AtomicU64,
    pub(crate) rejected_open: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
}

impl ProviderCounters {
    pub(crate) fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            breaker_opens: AtomicU64::new(0),
            rejected_open: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            latency_us: Mutex::new(latency_histogram()),
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = self.latency_us.lock() {
            h.saturating_record(us);
        }
    }

    pub(crate) fn snapshot(&self, enabled: bool, breaker: BreakerState) -> ProviderStats {
        ProviderStats {
            enabled,
            requests: self.requests.load(Relaxed),
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            failures: self.failures.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            breaker_opens: self.breaker_opens.load(Relaxed),
            rejected_open: self.rejected_open.load(Relaxed),
            abandoned: self.abandoned.load(Relaxed),
            breaker,
            latency_us: self
                .latency_us
                .lock()
                .map(|h| h.clone())
                .unwrap_or_else(|_| latency_histogram()),
        }
    }
}
