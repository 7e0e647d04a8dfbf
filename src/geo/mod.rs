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
//! flume channel for the reply, which any executor can await, the shards'
//! runtime included. The handle never blocks.
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
//! // On a shard.
//! async fn position(geo: &GeoHandle, query: CellQuery) -> Option<Fix> {
//!     futures_lite::future::or(geo.locate(query), async {
//!         badge_ingest::runtime::sleep(Duration::from_millis(300)).await;
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

mod breaker;
mod cache;
mod celldb;
mod http;
mod keys;
mod service;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;

pub use breaker::BreakerState;
pub use cache::CacheStats;
pub use celldb::{distance_m, CellDb, CellDbInfo, CellSite, DEFAULT_RANGE_M, MIN_ACCURACY_M};
pub use stats::{GeoStats, ProviderStats, PROVIDER_FIGURES};

pub use crate::config::GeoConfig;
pub use crate::record::lookup::{wifi_dbm, CellQuery, Fix, FixSource, Language, Radio};
pub use service::{GeoHandle, GeoService};

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
