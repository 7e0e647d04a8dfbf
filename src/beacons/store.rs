//! The `beacons` table: import a checked list as a new version, load the
//! current version of every beacon.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Beacon, BeaconError};

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
