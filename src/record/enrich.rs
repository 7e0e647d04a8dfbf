//! What a stored row still lacks that the geo service can add: a position
//! for reports heard only from cells and WiFi, and an address for any
//! position. Pure functions over the rows; the lookups themselves and
//! their deadline are the server's (`server::geo`), and the services that
//! answer them depend on this module, never the other way round.
//!
//! Everything a lookup needs is read back from the row's own columns
//! (serving cell, neighbours, WiFi APs), so enrichment does not have to
//! keep the frame alive while it waits.

use std::sync::Arc;

pub use super::lookup::GeoWant;
use super::lookup::{wifi_dbm, Beacon, CellQuery, Fix, FixSource, Language, Radio};
use crate::protocol::layout::{CellTower, MacAddr, MobileNetwork};
use crate::protocol::number as n;

use super::enums::{BT_LOCATION, POSITION_CELL, POSITION_INVALID, POSITION_NONE, POSITION_WIFI};
use super::{BluetoothRow, Record};

/// The columns the position is read from and written to, whatever the table.
struct Columns<'a> {
    protocol: u8,
    has_position: &'a mut u8,
    lat: &'a mut f64,
    lon: &'a mut f64,
    position_source: &'a mut i8,
    accuracy_m: &'a mut f32,
    address: &'a mut String,
    mcc: u16,
    mnc: u16,
    main: CellTower,
    cells: (&'a [u32], &'a [u64], &'a [u8]),
    wifi: (&'a [u64], &'a [u8]),
}

/// The same columns in every table with a position; only the serving
/// cell's signal has another name in `alarms`.
macro_rules! columns {
    ($r:expr, $signal:ident) => {{
        let r = $r;
        Columns {
            protocol: r.protocol,
            has_position: &mut r.has_position,
            lat: &mut r.lat,
            lon: &mut r.lon,
            position_source: &mut r.position_source,
            accuracy_m: &mut r.accuracy_m,
            address: &mut r.address,
            mcc: r.mcc,
            mnc: r.mnc,
            main: CellTower {
                lac: r.lac,
                cell_id: r.cell_id,
                rssi: r.$signal,
            },
            cells: (&r.cells_lac, &r.cells_cell_id, &r.cells_rssi),
            wifi: (&r.wifi_mac, &r.wifi_rssi),
        }
    }};
}

fn columns(record: &mut Record) -> Option<Columns<'_>> {
    Some(match record {
        Record::Locations(r) => columns!(r, rssi),
        Record::Alarms(r) => columns!(r, gsm_signal),
        Record::Attendance(r) => columns!(r, rssi),
        _ => return None,
    })
}

/// The radio of a row's cells. The 4G messages carry 32-bit LACs and
/// 64-bit cell ids; 0xA9 exists in both sizes, told apart by the values.
fn radio(protocol: u8, main: CellTower) -> Radio {
    match protocol {
        n::GPS_4G
        | n::LBS_4G
        | n::WIFI_4G
        | n::ALARM_SINGLE_FENCE
        | n::ALARM_MULTI_FENCE
        | n::ALARM_LBS_4G
        | n::LBS_4G_ADDRESS_REQUEST
        | n::ATTENDANCE_4G => Radio::Lte,
        n::ALARM_WIFI if main.lac > 0xFFFF || main.cell_id > 0xFF_FFFF => Radio::Lte,
        _ => Radio::Gsm,
    }
}

/// What `record` could still gain, or `None` when it has nothing to look
/// up (a table without positions, or a report that heard nothing).
/// `addresses`: whether rows with a position get an address.
pub fn want(record: &mut Record, addresses: bool) -> Option<GeoWant> {
    let c = columns(record)?;
    if *c.has_position != 0 {
        // A beacon's row arrives with the registry's address already.
        if !c.address.is_empty() {
            return None;
        }
        return addresses.then_some(GeoWant {
            position: Some((*c.lat, *c.lon)),
            query: None,
            address: true,
        });
    }
    let mut cells = Vec::with_capacity(1 + c.cells.0.len());
    // Cells without a country code cannot be looked up (nor trusted).
    if c.mcc != 0 {
        if !c.main.is_empty() {
            cells.push(c.main);
        }
        for ((&lac, &cell_id), &rssi) in c.cells.0.iter().zip(c.cells.1).zip(c.cells.2) {
            let tower = CellTower { lac, cell_id, rssi };
            if !tower.is_empty() {
                cells.push(tower);
            }
        }
    }
    let wifi: Vec<(MacAddr, i8)> = c
        .wifi
        .0
        .iter()
        .zip(c.wifi.1)
        .map(|(&mac, &rssi)| (mac_from_u64(mac), wifi_dbm(rssi)))
        .collect();
    if cells.is_empty() && wifi.is_empty() {
        return None;
    }
    Some(GeoWant {
        position: None,
        query: Some(CellQuery {
            network: MobileNetwork {
                mcc: c.mcc,
                mnc: c.mnc,
                wide_mnc: c.mnc > 99,
            },
            radio: radio(c.protocol, c.main),
            cells,
            wifi,
        }),
        address: addresses,
    })
}

/// The language a row's address is asked in: an address request's own,
/// an alarm's language byte, else the configured one.
pub fn language(record: &Record, default: Language) -> Language {
    match record {
        Record::Alarms(r) if r.language == 2 => Language::English,
        Record::Alarms(r) if r.language == 1 => Language::Chinese,
        _ => default,
    }
}

/// Writes what the lookups found into the row. A fix is applied only to a
/// row without a position: GPS stays authoritative.
pub fn apply(record: &mut Record, fix: Option<Fix>, address: Option<&str>) {
    let Some(c) = columns(record) else {
        return;
    };
    if let Some(fix) = fix {
        if *c.has_position == 0 {
            *c.has_position = 1;
            *c.lat = fix.lat;
            *c.lon = fix.lon;
            *c.accuracy_m = fix.accuracy_m as f32;
            *c.position_source = match fix.source {
                FixSource::Cell => POSITION_CELL,
                FixSource::Wifi => POSITION_WIFI,
            };
        }
    }
    if let Some(a) = address {
        if c.address.is_empty() {
            a.clone_into(c.address);
        }
    }
    // Without a position the source says why: none, or an impossible fix
    // (which a cell or WiFi position found here replaces).
    debug_assert!(
        *c.has_position != 0 || matches!(*c.position_source, POSITION_NONE | POSITION_INVALID)
    );
}

/// Copies the registry's entry into each Bluetooth row whose beacon it
/// knows, and hands the others to `unknown`. Returns the strongest beacon
/// with a position of a location report (0xB3), marked `is_best`: its row
/// index and entry, from which the report's own location row is made.
pub fn beacons(
    records: &mut [Record],
    registry: impl Fn(u64) -> Option<Arc<Beacon>>,
    mut unknown: impl FnMut(&BluetoothRow),
) -> Option<(usize, Arc<Beacon>)> {
    let mut best: Option<(usize, i16, Arc<Beacon>)> = None;
    for (i, record) in records.iter_mut().enumerate() {
        let Record::Bluetooth(row) = record else {
            continue;
        };
        // A 0xB3 that listed no beacon keeps its placeholder row.
        if row.mac == 0 {
            continue;
        }
        let Some(beacon) = registry(row.mac) else {
            unknown(row);
            continue;
        };
        row.beacon_known = 1;
        beacon.name.clone_into(&mut row.beacon_name);
        row.beacon_lat = beacon.lat;
        row.beacon_lon = beacon.lon;
        beacon.address.clone_into(&mut row.beacon_address);
        // RSSI 0 means "not measured": it loses to any real reading.
        let strength = if row.rssi == 0 {
            i16::MIN
        } else {
            i16::from(row.rssi)
        };
        if row.kind == BT_LOCATION
            && beacon.has_position()
            && best.as_ref().is_none_or(|(_, s, _)| strength > *s)
        {
            best = Some((i, strength, beacon));
        }
    }
    let (i, _, beacon) = best?;
    if let Record::Bluetooth(row) = &mut records[i] {
        row.is_best = 1;
    }
    Some((i, beacon))
}

fn mac_from_u64(mac: u64) -> MacAddr {
    let b = mac.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{enums, LocationRow};

    fn lbs_row() -> LocationRow {
        LocationRow {
            imei: 1,
            device_time: 0,
            server_time: 0,
            device_time_valid: 1,
            protocol: n::LBS_MULTI,
            serial: 1,
            source: 3,
            has_position: 0,
            lat: 0.0,
            lon: 0.0,
            position_source: enums::POSITION_NONE,
            accuracy_m: 0.0,
            speed_kmh: 0,
            course: 0,
            satellites: 0,
            gps_positioned: 0,
            realtime: 0,
            mcc: 460,
            mnc: 0,
            lac: 0x2795,
            cell_id: 0x0E6A,
            rssi: 40,
            report_mode: 0,
            mileage: 0,
            cells_lac: vec![0x2795, 0],
            cells_cell_id: vec![0x0E6B, 0],
            cells_rssi: vec![30, 0],
            wifi_mac: vec![0x0011_2233_4455],
            wifi_rssi: vec![65],
            address: String::new(),
            ingest_instance: "t",
            ingest_shard: 0,
            ingest_seq: 1,
        }
    }

    #[test]
    fn a_report_without_position_asks_for_its_cells_and_aps() {
        let mut r = Record::Locations(lbs_row());
        let w = want(&mut r, true).expect("has cells");
        assert_eq!(w.position, None);
        let q = w.query.expect("query");
        assert_eq!(q.radio, Radio::Gsm);
        assert_eq!(q.network.mcc, 460);
        // The empty neighbour slot is left out; the main cell comes first.
        assert_eq!(q.cells.len(), 2);
        assert_eq!(q.cells[0].cell_id, 0x0E6A);
        assert_eq!(
            q.wifi,
            vec![(MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55]), -65)]
        );
    }

    #[test]
    fn a_fix_fills_a_row_without_position_but_never_overrides_gps() {
        let fix = Fix {
            lat: 22.5,
            lon: 113.9,
            accuracy_m: 550.0,
            source: FixSource::Cell,
        };
        let mut r = Record::Locations(lbs_row());
        apply(&mut r, Some(fix), Some("深圳"));
        let Record::Locations(row) = &r else {
            unreachable!()
        };
        assert_eq!((row.has_position, row.lat, row.lon), (1, 22.5, 113.9));
        assert_eq!(row.position_source, enums::POSITION_CELL);
        assert_eq!(row.accuracy_m, 550.0);
        assert_eq!(row.address, "深圳");

        let mut gps = lbs_row();
        gps.has_position = 1;
        gps.lat = 1.0;
        gps.lon = 2.0;
        gps.position_source = enums::POSITION_GPS;
        let mut r = Record::Locations(gps);
        assert_eq!(
            want(&mut r, true).map(|w| w.position),
            Some(Some((1.0, 2.0)))
        );
        assert_eq!(want(&mut r, false), None, "addresses off: nothing to ask");
        apply(&mut r, Some(fix), None);
        let Record::Locations(row) = &r else {
            unreachable!()
        };
        assert_eq!((row.lat, row.position_source), (1.0, enums::POSITION_GPS));
    }

    #[test]
    fn without_stored_addresses_a_cell_fix_is_all_that_is_asked() {
        let mut r = Record::Locations(lbs_row());
        let w = want(&mut r, false).expect("has cells");
        assert!(w.query.is_some() && !w.address);
        assert!(want(&mut r, true).expect("has cells").address);
    }

    #[test]
    fn the_best_beacon_is_the_strongest_measured_one_with_a_position() {
        use crate::record::BluetoothRow;
        use std::collections::HashMap;
        let row = |mac: u64, rssi: i8| {
            Record::Bluetooth(BluetoothRow {
                imei: 1,
                device_time: 0,
                server_time: 0,
                device_time_valid: 1,
                tz_offset_min: 0,
                protocol: n::BT_LOCATION,
                serial: 1,
                kind: BT_LOCATION,
                attendance: 0,
                terminal_info: 0,
                beacon_index: 0,
                beacon_count: 3,
                is_best: 0,
                mac,
                uuid: [0; 16],
                major: 0,
                minor: 0,
                rssi,
                battery: 0.0,
                battery_unit: 0,
                beacon_known: 0,
                beacon_name: String::new(),
                beacon_lat: 0.0,
                beacon_lon: 0.0,
                beacon_address: String::new(),
                ingest_instance: "t",
                ingest_shard: 0,
                ingest_seq: 1,
            })
        };
        let beacon = |mac: u64, lat: f64| Beacon {
            mac,
            name: format!("b{mac}"),
            lat,
            lon: if lat == 0.0 { 0.0 } else { 113.9 },
            address: String::new(),
            active: true,
        };
        // 1: no RSSI measured; 2: weaker; 3: strongest but no position; 4: unknown.
        let registry: HashMap<u64, Arc<Beacon>> =
            [beacon(1, 22.1), beacon(2, 22.2), beacon(3, 0.0)]
                .into_iter()
                .map(|b| (b.mac, Arc::new(b)))
                .collect();
        let mut records = vec![row(1, 0), row(2, -80), row(3, -40), row(4, -30)];
        let mut unknown = Vec::new();
        let best = beacons(
            &mut records,
            |mac| registry.get(&mac).cloned(),
            |r| unknown.push(r.mac),
        );
        assert_eq!(unknown, vec![4]);
        let (i, b) = best.expect("a known beacon with a position");
        assert_eq!((i, b.mac), (1, 2));
        let bests: Vec<u8> = records
            .iter()
            .map(|r| match r {
                Record::Bluetooth(b) => b.is_best,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(bests, vec![0, 1, 0, 0]);
    }

    #[test]
    fn a_report_that_heard_nothing_asks_nothing() {
        let mut row = lbs_row();
        row.mcc = 0;
        row.wifi_mac.clear();
        row.wifi_rssi.clear();
        assert_eq!(want(&mut Record::Locations(row), true), None);
    }
}
