//! Per-IMEI clock zones from the `devices` table (its `utc_offset_minutes`
//! column), with `protocol.zones_from_devices`: loaded at start and every
//! `protocol.zones_refresh_secs` on a thread of their own, and published to
//! the shards in one swap ([`crate::ingest::ClockZones`] reads them per
//! frame without a lock). A load that fails keeps the zones already
//! loaded, and does not stop the start: ingest must not wait for
//! ClickHouse.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Config, MAX_UTC_OFFSET_MINUTES};
use crate::ingest::ZoneTable;
use crate::logging::LogLimit;
use crate::protocol::Imei;
use crate::refresh::{Load, Refresher, Why};

/// How long one load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

static FAILED_LOG: LogLimit = LogLimit::every(Duration::from_secs(60));

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("reading the zones of {database}.devices: {error}")]
    ClickHouse {
        database: String,
        error: clickhouse::error::Error,
    },
    #[error("reading the zones of {database}.devices: no answer within {timeout:?}")]
    Timeout { database: String, timeout: Duration },
    #[error("starting the zones thread: {0}")]
    Start(std::io::Error),
    #[error("the zones thread stopped")]
    Stopped,
}

/// The running refresher and the table it keeps.
pub struct ZoneRefresher {
    table: ZoneTable,
    _thread: Refresher,
}

impl ZoneRefresher {
    /// `None` when `protocol.zones_from_devices` is off.
    pub fn start(config: &Config) -> Result<Option<Self>, ZoneError> {
        if !config.protocol.zones_from_devices {
            return Ok(None);
        }
        let table: ZoneTable = Arc::new(ArcSwap::from_pointee(HashMap::new()));
        let load = ZoneLoad {
            client: crate::sink::clickhouse::client(config),
            database: config.clickhouse.database.clone(),
            period: Duration::from_secs(config.protocol.zones_refresh_secs.max(1)),
            table: table.clone(),
        };
        // Reloads are periodic only: nobody asks for one.
        let (_requests_tx, requests) = flume::unbounded();
        let thread = Refresher::start("zones", load, requests)?;
        Ok(Some(Self {
            table,
            _thread: thread,
        }))
    }

    /// What the shards read.
    pub fn table(&self) -> ZoneTable {
        self.table.clone()
    }
}

struct ZoneLoad {
    client: clickhouse::Client,
    database: String,
    period: Duration,
    table: ZoneTable,
}

impl ZoneLoad {
    async fn fetch(&self) -> Result<HashMap<Imei, i32>, ZoneError> {
        let db = &self.database;
        let sql = format!(
            "SELECT imei, assumeNotNull(zone) FROM (SELECT imei, argMax(utc_offset_minutes, updated_at) AS zone \
             FROM {db}.devices GROUP BY imei) WHERE isNotNull(zone)"
        );
        let query = self.client.query(&sql).fetch_all::<(String, i16)>();
        let rows = tokio::time::timeout(LOAD_TIMEOUT, query)
            .await
            .map_err(|_| ZoneError::Timeout {
                database: db.clone(),
                timeout: LOAD_TIMEOUT,
            })?
            .map_err(|error| ZoneError::ClickHouse {
                database: db.clone(),
                error,
            })?;
        let mut zones = HashMap::with_capacity(rows.len());
        let mut skipped = 0usize;
        for (imei, minutes) in rows {
            match imei.trim().parse::<Imei>() {
                Ok(imei) if i32::from(minutes).abs() <= MAX_UTC_OFFSET_MINUTES => {
                    zones.insert(imei, i32::from(minutes));
                }
                // A row no badge can match, or a zone that does not exist:
                // its badges keep the zone of their login.
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(database = %db, skipped, "zones: rows of the devices table without an IMEI or with a zone beyond ±14 h; left out");
        }
        Ok(zones)
    }
}

impl Load for ZoneLoad {
    type Error = ZoneError;

    async fn load(&mut self, why: Why) -> Result<usize, ZoneError> {
        match self.fetch().await {
            Ok(zones) => {
                let n = zones.len();
                self.table.store(Arc::new(zones));
                Ok(n)
            }
            Err(e) => {
                if why == Why::Start || FAILED_LOG.check().is_some() {
                    tracing::warn!(error = %e, kept = self.table.load().len(),
                        "zones from the devices table not loaded; keeping those already loaded");
                }
                Err(e)
            }
        }
    }

    fn fails_start(&self, _: &ZoneError) -> bool {
        false
    }

    fn next(&mut self, _ok: bool) -> Option<Duration> {
        Some(self.period)
    }

    fn start_error(error: std::io::Error) -> ZoneError {
        ZoneError::Start(error)
    }

    fn stopped() -> ZoneError {
        ZoneError::Stopped
    }
}
