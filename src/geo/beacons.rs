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
//! same format named in [`BeaconsConfig::file`]. A [`BeaconRefresher`]
//! keeps a registry fresh from either.
//!
//! Sightings of MACs the registry does not know are counted per shard by
//! [`UnknownBeacons`], so that operators can find beacons that were
//! installed but never registered.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, SinkKind};

/// Bound on one load from ClickHouse: a server that accepts the connection
/// and never answers must not hold the refresher (or the start) forever.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed load is tried again this soon at the latest, so that a registry
/// that started empty (ClickHouse down at start) fills once it is back.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// One installed beacon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beacon {
    /// The 48-bit MAC as an integer, the way [`MacAddr::to_u64`] reads it.
    ///
    /// [`MacAddr::to_u64`]: crate::protocol::layout::MacAddr::to_u64
    pub mac: u64,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub address: String,
    /// A retired beacon stays in the table (its history does) but is left
    /// out of lookups.
    pub active: bool,
}

impl Beacon {
    /// Whether `lat`/`lon` is a usable position: finite, in range, and not
    /// 0/0, which is how the table says "position unknown".
    pub fn has_position(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
            && !(self.lat == 0.0 && self.lon == 0.0)
    }

    /// What parsing checks, for beacons that come from elsewhere.
    fn check(&self) -> Result<(), String> {
        if self.mac == 0 || self.mac >> 48 != 0 {
            return Err(format!(
                "MAC {:#x} is not a 48-bit address other than 0",
                self.mac
            ));
        }
        if self.name.is_empty() {
            return Err("the name is empty".into());
        }
        if !self.lat.is_finite() || !(-90.0..=90.0).contains(&self.lat) {
            return Err(format!("lat {} is not between -90 and 90", self.lat));
        }
        if !self.lon.is_finite() || !(-180.0..=180.0).contains(&self.lon) {
            return Err(format!("lon {} is not between -180 and 180", self.lon));
        }
        Ok(())
    }
}

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

/// The `[beacons]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconsConfig {
    /// Load a registry at all. With the default `true`, the registry is read
    /// from `file` when one is set, else from the `beacons` table when
    /// `sink.kind = "clickhouse"`; with another sink and no file there is
    /// nothing to read it from and it stays off (see [`Self::source`]).
    pub enabled: bool,
    /// A CSV file (the format of `badge-ingest beacons import`) to read
    /// instead of the ClickHouse table.
    pub file: Option<PathBuf>,
    /// Seconds between reloads; 0: only at start and on `reload`.
    pub refresh_secs: u64,
    /// Unknown beacons each shard keeps track of; sightings of further ones
    /// are only counted ([`UnknownBeacons::overflow`]).
    pub unknown_max: usize,
}

impl Default for BeaconsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: None,
            refresh_secs: 60,
            unknown_max: 10_000,
        }
    }
}

impl BeaconsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, reason: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        }
        if self.file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return bad("beacons.file", "must name a file (or be left out)");
        }
        if self.refresh_secs > 86_400 {
            return bad(
                "beacons.refresh_secs",
                "at most 86400 (0 reloads only at start and on request)",
            );
        }
        if self.unknown_max > 10_000_000 {
            return bad("beacons.unknown_max", "at most 10000000");
        }
        Ok(())
    }

    /// Where the registry of a server with `config` comes from, or `None`
    /// when it has none (disabled, or neither a file nor a ClickHouse sink).
    pub fn source(&self, config: &Config) -> Option<BeaconSource> {
        if !self.enabled {
            return None;
        }
        if let Some(path) = &self.file {
            return Some(BeaconSource::File(path.clone()));
        }
        (config.sink.kind == SinkKind::ClickHouse).then(|| BeaconSource::ClickHouse {
            client: crate::sink::clickhouse::client(config),
            database: config.clickhouse.database.clone(),
        })
    }
}

// ---------------------------------------------------------------------------
// The registry.

struct Snapshot {
    by_mac: HashMap<u64, Arc<Beacon>>,
    loaded_at: Option<SystemTime>,
    generation: u64,
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// Serializes writers only, so that generations are never reused;
    /// readers never touch it.
    writer: Mutex<()>,
}

/// The active beacons by MAC. Cheap to clone; every clone sees the same
/// registry.
#[derive(Clone)]
pub struct BeaconRegistry {
    shared: Arc<Shared>,
}

impl Default for BeaconRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BeaconRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.current.load();
        f.debug_struct("BeaconRegistry")
            .field("beacons", &s.by_mac.len())
            .field("generation", &s.generation)
            .finish()
    }
}

impl BeaconRegistry {
    /// An empty registry (never loaded: [`Self::loaded_at`] is `None`).
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Snapshot {
                    by_mac: HashMap::new(),
                    loaded_at: None,
                    generation: 0,
                }),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Publishes `beacons` as the whole registry; inactive ones are left
    /// out. A MAC listed twice keeps its last entry.
    pub fn replace(&self, beacons: Vec<Beacon>) {
        let by_mac: HashMap<u64, Arc<Beacon>> = beacons
            .into_iter()
            .filter(|b| b.active)
            .map(|b| (b.mac, Arc::new(b)))
            .collect();
        let _one_writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.shared.current.load().generation + 1;
        self.shared.current.store(Arc::new(Snapshot {
            by_mac,
            loaded_at: Some(SystemTime::now()),
            generation,
        }));
    }

    /// The active beacon with this MAC. Lock-free, and allocation-free once
    /// the thread has done its first lookup (arc-swap registers each thread
    /// once): safe to call on a shard for every sighting.
    pub fn get(&self, mac: u64) -> Option<Arc<Beacon>> {
        self.shared.current.load().by_mac.get(&mac).cloned()
    }

    /// Whether an active beacon has this MAC (no reference count touched).
    pub fn contains(&self, mac: u64) -> bool {
        self.shared.current.load().by_mac.contains_key(&mac)
    }

    /// Active beacons.
    pub fn len(&self) -> usize {
        self.shared.current.load().by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the current snapshot was published; `None` before the first.
    pub fn loaded_at(&self) -> Option<SystemTime> {
        self.shared.current.load().loaded_at
    }

    /// Changes with every [`Self::replace`]: a shard that remembers it can
    /// tell cheaply when to call [`UnknownBeacons::forget`].
    pub fn generation(&self) -> u64 {
        self.shared.current.load().generation
    }
}

// ---------------------------------------------------------------------------
// MACs and the CSV format.

/// `AA:BB:CC:DD:EE:FF`, like [`MacAddr`](crate::protocol::layout::MacAddr) prints.
pub fn format_mac(mac: u64) -> String {
    let b = mac.to_be_bytes();
    format!(
        "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// `AA:BB:CC:DD:EE:FF`, `aa-bb-cc-dd-ee-ff` (either case, one separator
/// throughout) or 12 hex digits.
pub fn parse_mac(s: &str) -> Option<u64> {
    let digits: String = if s.len() == 17 {
        let sep = s.as_bytes()[2];
        if sep != b':' && sep != b'-' {
            return None;
        }
        let mut digits = String::with_capacity(12);
        for (i, part) in s.split(sep as char).enumerate() {
            if i >= 6 || part.len() != 2 {
                return None;
            }
            digits.push_str(part);
        }
        digits
    } else {
        s.to_string()
    };
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&digits, 16).ok()
}

const COLUMNS: [&str; 6] = ["mac", "name", "lat", "lon", "address", "active"];
const REQUIRED: usize = 4;

/// Reads beacons from CSV with a header row `mac,name,lat,lon,address,active`.
///
/// Columns are found by name (any order, any case); `address` and `active`
/// may be left out (empty address, active). MACs: see [`parse_mac`]. `lat`
/// and `lon` are degrees, both empty for a beacon without a known position.
/// `active` is `1`/`0`, `true`/`false` or `yes`/`no`, empty meaning active.
/// Fields are trimmed; quoted fields may hold commas, quotes and newlines;
/// blank lines are skipped. There are no comment lines: a line skipped for
/// starting with `#` could be a beacon named so. An unknown column is an
/// error rather than ignored, so that a misspelt `adress` is noticed.
///
/// The whole input is checked: the first problem is returned, naming its
/// line, and nothing is returned otherwise. A MAC listed twice is an error.
pub fn parse_csv(reader: impl std::io::Read) -> Result<Vec<Beacon>, BeaconError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv.headers().map_err(csv_error)?.clone();
    let header_line = header.position().map_or(1, |p| p.line());
    if header.iter().all(str::is_empty) {
        return Err(BeaconError::Line {
            line: 1,
            reason: format!("no header row (expected `{}`)", COLUMNS.join(",")),
        });
    }
    // The field index of each of COLUMNS.
    let mut index = [None::<usize>; COLUMNS.len()];
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(BeaconError::Line {
                line: header_line,
                reason: format!("column {} has no name", i + 1),
            });
        }
        let Some(c) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name)) else {
            return Err(BeaconError::Line {
                line: header_line,
                reason: format!(
                    "unknown column `{name}` (the columns are {})",
                    COLUMNS.join(", ")
                ),
            });
        };
        if index[c].replace(i).is_some() {
            return Err(BeaconError::Line {
                line: header_line,
                reason: format!("column `{}` appears twice", COLUMNS[c]),
            });
        }
    }
    if let Some(c) = (0..REQUIRED).find(|&c| index[c].is_none()) {
        return Err(BeaconError::Line {
            line: header_line,
            reason: format!(
                "missing column `{}` (the header must have mac, name, lat and lon)",
                COLUMNS[c]
            ),
        });
    }

    let mut beacons = Vec::new();
    let mut first_line: HashMap<u64, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let field = |c: usize| index[c].and_then(|i| record.get(i)).unwrap_or("");
        let bad = |reason: String| BeaconError::Line { line, reason };
        let mac = parse_mac(field(0)).ok_or_else(|| {
            bad(format!(
                "bad MAC `{}` (expected AA:BB:CC:DD:EE:FF, aa-bb-cc-dd-ee-ff or 12 hex digits)",
                field(0)
            ))
        })?;
        if mac == 0 {
            return Err(bad("MAC 00:00:00:00:00:00 is not a beacon".into()));
        }
        let name = field(1);
        if name.is_empty() {
            return Err(bad("empty name".into()));
        }
        let (lat, lon) = match (field(2), field(3)) {
            ("", "") => (0.0, 0.0),
            (lat, lon) => (
                degrees(lat, 90.0).map_err(|r| bad(format!("bad lat `{lat}`: {r}")))?,
                degrees(lon, 180.0).map_err(|r| bad(format!("bad lon `{lon}`: {r}")))?,
            ),
        };
        let active = match field(5).to_ascii_lowercase().as_str() {
            "" | "1" | "true" | "yes" => true,
            "0" | "false" | "no" => false,
            other => {
                return Err(bad(format!(
                    "bad active `{other}` (expected 1 or 0, true or false, yes or no)"
                )))
            }
        };
        if let Some(earlier) = first_line.insert(mac, line) {
            return Err(bad(format!(
                "MAC {} is already on line {earlier}",
                format_mac(mac)
            )));
        }
        beacons.push(Beacon {
            mac,
            name: name.to_string(),
            lat,
            lon,
            address: field(4).to_string(),
            active,
        });
    }
    Ok(beacons)
}

/// [`parse_csv`] of a file; errors name the file.
pub fn read_csv_file(path: &Path) -> Result<Vec<Beacon>, BeaconError> {
    let file = std::fs::File::open(path).map_err(|error| BeaconError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse_csv(std::io::BufReader::new(file)).map_err(|e| BeaconError::File {
        path: path.to_owned(),
        error: Box::new(e),
    })
}

fn degrees(s: &str, limit: f64) -> Result<f64, String> {
    if s.is_empty() {
        return Err("empty (leave both lat and lon empty for no position)".into());
    }
    let v: f64 = s.parse().map_err(|_| "not a number".to_string())?;
    if !v.is_finite() || v.abs() > limit {
        return Err(format!("must be between -{limit} and {limit}"));
    }
    Ok(v)
}

fn csv_error(e: csv::Error) -> BeaconError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(e) => BeaconError::Io(e),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => BeaconError::Line {
            line,
            reason: format!("{len} fields where the header has {expected_len}"),
        },
        csv::ErrorKind::Utf8 { .. } => BeaconError::Line {
            line,
            reason: "not UTF-8".into(),
        },
        other => BeaconError::Line {
            line,
            reason: format!("{other:?}"),
        },
    }
}

// ---------------------------------------------------------------------------
// The table.

#[derive(clickhouse::Row, Serialize)]
struct InsertRow<'a> {
    mac: u64,
    name: &'a str,
    lat: f64,
    lon: f64,
    address: &'a str,
    active: u8,
    updated_at: u32,
}

#[derive(clickhouse::Row, Deserialize)]
struct LoadRow {
    mac: u64,
    name: String,
    lat: f64,
    lon: f64,
    address: String,
    active: u8,
}

fn check_database(database: &str) -> Result<(), BeaconError> {
    // It is spliced into SQL: only what needs no quoting.
    if database.is_empty()
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(BeaconError::BadDatabase(database.to_string()));
    }
    Ok(())
}

/// Writes `beacons` to `{database}.beacons` as new versions; returns how many.
///
/// Every row of one import has the same `updated_at`: now, or one second
/// past the newest version already in the table if that is later. The
/// column has one-second resolution and `argMax` picks arbitrarily among
/// equal versions, so an import within the same second as the previous one
/// (or after one from a host whose clock ran ahead) must still win.
///
/// All rows go in one INSERT, so an import is stored whole or not at all.
/// Beacons are checked first (MAC, name, lat/lon ranges, no MAC twice);
/// nothing is written if any fails.
pub async fn import(
    client: &clickhouse::Client,
    database: &str,
    beacons: &[Beacon],
) -> Result<usize, BeaconError> {
    check_database(database)?;
    let mut seen = std::collections::HashSet::with_capacity(beacons.len());
    for b in beacons {
        b.check()
            .map_err(|reason| BeaconError::Invalid { mac: b.mac, reason })?;
        if !seen.insert(b.mac) {
            return Err(BeaconError::DuplicateMac { mac: b.mac });
        }
    }
    if beacons.is_empty() {
        return Ok(0);
    }
    let newest: u32 = client
        .query(&format!(
            "SELECT toUInt32(max(updated_at)) FROM {database}.beacons"
        ))
        .fetch_one()
        .await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let version = now.max(newest.saturating_add(1));
    let mut insert = client
        .insert_unescaped::<InsertRow<'_>>(&format!("{database}.beacons"))
        .await?;
    for b in beacons {
        insert
            .write(&InsertRow {
                mac: b.mac,
                name: &b.name,
                lat: b.lat,
                lon: b.lon,
                address: &b.address,
                active: u8::from(b.active),
                updated_at: version,
            })
            .await?;
    }
    insert.end().await?;
    Ok(beacons.len())
}

/// The current version of every beacon in `{database}.beacons`, inactive
/// ones included, by MAC.
///
/// Versions are picked with `argMax(..., updated_at) GROUP BY mac`, not by
/// trusting merges: until ReplacingMergeTree merges, every version is
/// there to read, and FINAL (a merge at each read on 18.16) collapses only
/// within a partition, which a later PARTITION BY would quietly break. The
/// columns are taken as one tuple so that, should two versions ever tie, a
/// beacon is still one row's values and not a mix of two.
pub async fn load(client: &clickhouse::Client, database: &str) -> Result<Vec<Beacon>, BeaconError> {
    check_database(database)?;
    let sql = format!(
        "SELECT mac, tupleElement(v, 1) AS name, tupleElement(v, 2) AS lat, \
         tupleElement(v, 3) AS lon, tupleElement(v, 4) AS address, tupleElement(v, 5) AS active \
         FROM (SELECT mac, argMax((name, lat, lon, address, active), updated_at) AS v \
         FROM {database}.beacons GROUP BY mac) ORDER BY mac"
    );
    let rows: Vec<LoadRow> = client.query(&sql).fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| Beacon {
            mac: r.mac,
            name: r.name,
            lat: r.lat,
            lon: r.lon,
            address: r.address,
            active: r.active != 0,
        })
        .collect())
}

// ---------------------------------------------------------------------------
// The refresher.

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

type ReloadReply = flume::Sender<Result<usize, BeaconError>>;

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
    handle: BeaconHandle,
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BeaconError::Start)?;
        let (requests_tx, requests) = flume::unbounded::<ReloadReply>();
        let (stop_tx, stop) = flume::bounded::<()>(1);
        let (first_tx, first) = std::sync::mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("beacons".into())
            .spawn(move || {
                runtime.block_on(run(
                    thread_shared,
                    refresh,
                    fatal_at_start,
                    first_tx,
                    requests,
                    stop,
                ))
            })
            .map_err(BeaconError::Start)?;
        match first.recv() {
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Ok(Ok(())) => Ok(Self {
                handle: BeaconHandle {
                    requests: requests_tx,
                    shared,
                },
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(_) => {
                let _ = thread.join();
                Err(BeaconError::Stopped)
            }
        }
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

impl Drop for BeaconRefresher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(
    shared: Arc<RefreshShared>,
    refresh: Duration,
    fatal_at_start: bool,
    first: std::sync::mpsc::SyncSender<Result<(), BeaconError>>,
    requests: flume::Receiver<ReloadReply>,
    stop: flume::Receiver<()>,
) {
    let mut loaded = match shared.refresh().await {
        Ok(_) => true,
        Err(e) if fatal_at_start => {
            let _ = first.send(Err(e));
            return;
        }
        Err(_) => false,
    };
    let _ = first.send(Ok(()));
    let next = |ok: bool, loaded: bool| -> Option<tokio::time::Instant> {
        let after = match (ok, refresh.is_zero()) {
            (true, true) => return None,
            (true, false) => refresh,
            (false, false) => refresh.min(RETRY_AFTER),
            // Only a registry that never loaded is retried on its own: with
            // refresh off, a failed manual reload was answered to whoever
            // asked, and the old snapshot is what they chose to keep.
            (false, true) if loaded => return None,
            (false, true) => RETRY_AFTER,
        };
        Some(tokio::time::Instant::now() + after)
    };
    let mut due = next(loaded, loaded);
    loop {
        let timer = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.recv_async() => return,
            request = requests.recv_async() => {
                let Ok(reply) = request else { return };
                let result = shared.refresh().await;
                let ok = result.is_ok();
                loaded |= ok;
                // The caller may have stopped waiting.
                let _ = reply.send(result);
                due = next(ok, loaded);
            }
            _ = timer => {
                let ok = shared.refresh().await.is_ok();
                loaded |= ok;
                due = next(ok, loaded);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Unknown beacons.

/// A MAC the registry did not know, as seen by one shard (or several, merged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownBeacon {
    pub mac: u64,
    /// Sightings.
    pub count: u64,
    /// Unix seconds.
    pub first_seen: u32,
    pub last_seen: u32,
    /// The badge of the latest sighting.
    pub last_imei: u64,
    /// The strongest signal in dBm (the highest value); 0 if none was known.
    pub best_rssi: i8,
}

impl UnknownBeacon {
    fn absorb(&mut self, other: &UnknownBeacon) {
        self.count += other.count;
        self.first_seen = self.first_seen.min(other.first_seen);
        if other.last_seen >= self.last_seen {
            self.last_seen = other.last_seen;
            self.last_imei = other.last_imei;
        }
        self.best_rssi = better_rssi(self.best_rssi, other.best_rssi);
    }
}

/// 0 means unknown, so it loses to any reading.
fn better_rssi(a: i8, b: i8) -> i8 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.max(b),
    }
}

/// One shard's record of unknown beacons. Not shared between threads on
/// purpose: each shard updates its own without synchronization, and the
/// control socket merges their [`snapshot`](Self::snapshot)s on request.
#[derive(Debug)]
pub struct UnknownBeacons {
    max: usize,
    // SipHash, not a cheaper hash: the keys are whatever badges send.
    entries: HashMap<u64, UnknownBeacon>,
    overflow: u64,
}

impl UnknownBeacons {
    /// Keeps at most `max` MACs; sightings of more are only counted.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            entries: HashMap::new(),
            overflow: 0,
        }
    }

    /// Counts one sighting of `mac` (which the caller found unknown) by the
    /// badge `imei` at `now_unix`; `rssi` in dBm, 0 if unknown.
    pub fn seen(&mut self, mac: u64, imei: u64, rssi: i8, now_unix: u32) {
        let sighting = UnknownBeacon {
            mac,
            count: 1,
            first_seen: now_unix,
            last_seen: now_unix,
            last_imei: imei,
            best_rssi: rssi,
        };
        let full = self.entries.len() >= self.max;
        match self.entries.entry(mac) {
            Entry::Occupied(mut e) => e.get_mut().absorb(&sighting),
            Entry::Vacant(_) if full => self.overflow += 1,
            Entry::Vacant(e) => {
                e.insert(sighting);
            }
        }
    }

    /// The MACs kept, in no particular order (see [`Self::merge`]).
    pub fn snapshot(&self) -> Vec<UnknownBeacon> {
        self.entries.values().cloned().collect()
    }

    /// Adds `other` (a shard's snapshot) to `into`: the same MAC seen by two
    /// shards becomes one entry with the counts summed. Leaves `into` sorted
    /// by count, most seen first (then by MAC).
    pub fn merge(into: &mut Vec<UnknownBeacon>, other: Vec<UnknownBeacon>) {
        let mut at: HashMap<u64, usize> =
            into.iter().enumerate().map(|(i, u)| (u.mac, i)).collect();
        for u in other {
            match at.entry(u.mac) {
                Entry::Occupied(e) => into[*e.get()].absorb(&u),
                Entry::Vacant(e) => {
                    e.insert(into.len());
                    into.push(u);
                }
            }
        }
        into.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.mac.cmp(&b.mac)));
    }

    /// Drops the MACs that `registry` now knows (after a reload), which also
    /// makes room for new ones.
    pub fn forget(&mut self, registry: &BeaconRegistry) {
        let current = registry.shared.current.load();
        self.entries
            .retain(|mac, _| !current.by_mac.contains_key(mac));
    }

    /// MACs kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sightings of MACs not kept because the tracker was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(mac: u64, name: &str, active: bool) -> Beacon {
        Beacon {
            mac,
            name: name.into(),
            lat: 22.5,
            lon: 114.0,
            address: String::new(),
            active,
        }
    }

    #[test]
    fn macs_parse_in_three_spellings_and_print_in_one() {
        let want = 0xAC23_3F01_0203;
        for s in ["AC:23:3F:01:02:03", "ac-23-3f-01-02-03", "ac233F010203"] {
            assert_eq!(parse_mac(s), Some(want), "{s}");
        }
        assert_eq!(format_mac(want), "AC:23:3F:01:02:03");
        assert_eq!(
            format_mac(want),
            crate::protocol::layout::MacAddr([0xAC, 0x23, 0x3F, 1, 2, 3]).to_string()
        );
        for s in [
            "",
            "AC:23:3F:01:02",
            "AC:23:3F:01:02:03:04",
            "AC:23-3F:01:02:03",
            "AC.23.3F.01.02.03",
            "AC233F01020",
            "AC233F0102030",
            "+C233F010203",
            "GG:23:3F:01:02:03",
            "A:C23:3F:01:02:03",
        ] {
            assert_eq!(parse_mac(s), None, "{s}");
        }
    }

    #[test]
    fn positions_need_range_and_not_zero_zero() {
        let mut b = beacon(1, "x", true);
        assert!(b.has_position());
        b.lat = 0.0;
        assert!(b.has_position());
        b.lon = 0.0;
        assert!(!b.has_position());
        b.lat = f64::NAN;
        b.lon = 1.0;
        assert!(!b.has_position());
        b.lat = 91.0;
        assert!(!b.has_position());
        b.lat = -90.0;
        b.lon = 180.0;
        assert!(b.has_position());
    }

    #[test]
    fn the_registry_serves_active_beacons_of_the_latest_snapshot() {
        let r = BeaconRegistry::new();
        assert!(r.is_empty());
        assert_eq!(r.loaded_at(), None);
        assert_eq!(r.generation(), 0);
        r.replace(vec![beacon(1, "one", true), beacon(2, "two", false)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(1).unwrap().name, "one");
        assert!(r.get(2).is_none());
        assert!(r.loaded_at().is_some());
        let held = r.get(1).unwrap();
        let clone = r.clone();
        clone.replace(vec![beacon(2, "two", true)]);
        assert_eq!(r.generation(), 2);
        assert!(r.get(1).is_none());
        assert!(r.contains(2));
        // A reader of the old snapshot keeps what it has.
        assert_eq!(held.name, "one");
    }

    #[test]
    fn config_defaults_are_valid_and_bad_values_name_their_key() {
        let c = BeaconsConfig::default();
        c.validate().unwrap();
        assert!(c.enabled);
        assert_eq!((c.refresh_secs, c.unknown_max), (60, 10_000));
        let c: BeaconsConfig = toml::from_str("file = \"\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `beacons.file`"), "{e}");
        let c: BeaconsConfig = toml::from_str("refresh_secs = 100000").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `beacons.refresh_secs`"), "{e}");
        assert!(toml::from_str::<BeaconsConfig>("refresh = 5").is_err());
        let c: BeaconsConfig =
            toml::from_str("file = \"/etc/beacons.csv\"\nrefresh_secs = 0").unwrap();
        c.validate().unwrap();
        assert!(matches!(
            c.source(&Config::default()),
            Some(BeaconSource::File(_))
        ));
    }

    #[test]
    fn the_source_follows_the_sink_unless_a_file_is_named() {
        let mut config = Config::default();
        let c = BeaconsConfig::default();
        assert!(matches!(
            c.source(&config),
            Some(BeaconSource::ClickHouse { ref database, .. }) if database == "badges"
        ));
        config.sink.kind = SinkKind::Count;
        assert!(c.source(&config).is_none());
        let off = BeaconsConfig {
            enabled: false,
            file: Some("b.csv".into()),
            ..c
        };
        assert!(off.source(&config).is_none());
    }

    #[test]
    fn unknown_beacons_keep_first_last_and_best() {
        let mut u = UnknownBeacons::new(10);
        u.seen(7, 100, -80, 1000);
        u.seen(7, 200, 0, 1005);
        u.seen(7, 300, -60, 1003);
        let s = u.snapshot();
        assert_eq!(
            s,
            vec![UnknownBeacon {
                mac: 7,
                count: 3,
                first_seen: 1000,
                last_seen: 1005,
                last_imei: 200,
                best_rssi: -60,
            }]
        );
        let r = BeaconRegistry::new();
        r.replace(vec![beacon(7, "now known", true)]);
        u.seen(8, 1, -70, 1010);
        u.forget(&r);
        assert_eq!(u.snapshot().iter().map(|b| b.mac).collect::<Vec<_>>(), [8]);
    }
}
