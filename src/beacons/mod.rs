//! The beacon registry: where each iBeacon is installed, so that Bluetooth
//! punches and location reports can be enriched with a name, a position and
//! an address on the shard itself.
//!
//! Shards look beacons up synchronously, on every sighting, so a lookup must
//! never wait: the registry publishes immutable snapshots through
//! [`arc_swap`], and [`BeaconRegistry::get`] is one `load()` and one hash
//! lookup, without a lock or an allocation. A reload builds a whole new
//! snapshot off the shards and swaps it in; readers of the old one finish
//! undisturbed.
//!
//! The source of truth is the `beacons` table (`schema/010_beacons.sql`),
//! filled by `badge-ingest beacons import FILE.csv`, or a CSV file of the
//! same format named in `beacons.file`. A [`BeaconRefresher`]
//! keeps a registry fresh from either.
//!
//! Sightings of MACs the registry does not know are counted per shard by
//! the ingest core (`ingest::UnknownBeacons`), so that operators can find
//! beacons that were installed but never registered.

mod csv;
mod refresh;
mod registry;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;

pub use self::csv::{format_mac, parse_csv, parse_mac, read_csv_file};
pub use crate::record::lookup::Beacon;
pub use refresh::{BeaconHandle, BeaconRefresher, BeaconSource, RefreshStats};
pub use registry::BeaconRegistry;
pub use store::{import, load};

/// Each message is whole on its own (no source chain to walk), so that a
/// log line or the refresher's `last_error` says everything.
#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A problem with one line of a CSV file (1-based, the header is line 1).
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("reading the CSV: {0}")]
    Io(std::io::Error),
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// An error in a named file (`error` is usually [`BeaconError::Line`]).
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: Box<BeaconError>,
    },
    #[error("beacon {}: {reason}", format_mac(*mac))]
    Invalid { mac: u64, reason: String },
    #[error("beacon {} is in the list twice", format_mac(*mac))]
    DuplicateMac { mac: u64 },
    #[error("`{0}` is not a database name (letters, digits and underscores)")]
    BadDatabase(String),
    #[error("ClickHouse: {0}")]
    ClickHouse(clickhouse::error::Error),
    #[error("ClickHouse did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the beacon refresher has stopped")]
    Stopped,
    #[error("starting the beacon refresher: {0}")]
    Start(std::io::Error),
}

impl From<clickhouse::error::Error> for BeaconError {
    fn from(e: clickhouse::error::Error) -> Self {
        BeaconError::ClickHouse(e)
    }
}
