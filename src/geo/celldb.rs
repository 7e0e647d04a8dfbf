//! The offline cell database: an OpenCellID-format CSV held in memory.
//!
//! Columns: `radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,
//! created,updated,averageSignal`; the header line is optional. Only radio,
//! mcc, net, area, cell, lon, lat, range and samples are read.
//!
//! Cells are kept in one sorted array and found by binary search: 32 bytes a
//! cell, no per-entry allocation, so a country extract of millions of cells
//! stays small and loads in seconds. Coordinates are stored as `f32`
//! (better than 2 m anywhere on Earth, far below a cell's range).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::protocol::layout::MobileNetwork;

use super::{CellQuery, Fix, FixSource, GeoError};

/// The accuracy radius is never claimed tighter than this: a cell position
/// is itself only an estimate from crowd-sourced samples.
pub const MIN_ACCURACY_M: f64 = 50.0;

/// The range assumed for a cell whose row gives none (0 or empty).
pub const DEFAULT_RANGE_M: u32 = 1_000;

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// What a load read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellDbInfo {
    /// Distinct cells kept.
    pub cells: usize,
    /// Lines not used: malformed, out of range, or CDMA rows (whose columns
    /// mean SID/NID/BID and would alias GSM/LTE cells).
    pub skipped: usize,
    /// Rows for a cell already seen; the one with the most samples is kept.
    pub duplicates: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct CellKey {
    mcc: u16,
    mnc: u16,
    lac: u32,
    cell: u64,
}

/// One cell's estimated position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellSite {
    pub lat: f32,
    pub lon: f32,
    /// Metres.
    pub range: u32,
}

/// Cell positions by (mcc, mnc, lac, cell id). Immutable: a reload builds a
/// new one and swaps it in.
#[derive(Debug, Default)]
pub struct CellDb {
    cells: Vec<(CellKey, CellSite)>,
}

impl CellDb {
    pub fn load(path: &Path) -> Result<(Self, CellDbInfo), GeoError> {
        let read_err = |source| GeoError::CellDbRead {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let (db, info) = Self::parse(BufReader::with_capacity(1 << 20, file)).map_err(read_err)?;
        if db.is_empty() && info.skipped > 0 {
            // Every line was rejected: most likely not an OpenCellID file.
            return Err(GeoError::CellDbEmpty {
                path: path.to_owned(),
                skipped: info.skipped,
            });
        }
        Ok((db, info))
    }

    /// Reads CSV rows; I/O errors fail the whole read, bad rows are skipped.
    pub fn parse(mut input: impl BufRead) -> std::io::Result<(Self, CellDbInfo)> {
        let mut rows: Vec<(CellKey, CellSite, u32)> = Vec::new();
        let mut skipped = 0;
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let mut text = match std::str::from_utf8(&line) {
                Ok(t) => t.trim_end_matches(['\r', '\n']),
                Err(_) => {
                    skipped += 1;
                    continue;
                }
            };
            if first {
                first = false;
                text = text.trim_start_matches('\u{FEFF}');
                if text
                    .split(',')
                    .next()
                    .is_some_and(|f| f.trim().eq_ignore_ascii_case("radio"))
                {
                    continue;
                }
            }
            if text.trim().is_empty() {
                continue;
            }
            match parse_row(text) {
                Some(row) => rows.push(row),
                None => skipped += 1,
            }
        }
        // Most samples first within a key, so dedup keeps the best-observed row.
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)));
        let before = rows.len();
        rows.dedup_by_key(|r| r.0);
        let duplicates = before - rows.len();
        let cells: Vec<_> = rows.into_iter().map(|(k, s, _)| (k, s)).collect();
        let info = CellDbInfo {
            cells: cells.len(),
            skipped,
            duplicates,
        };
        Ok((Self { cells }, info))
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn get(&self, network: MobileNetwork, lac: u32, cell: u64) -> Option<CellSite> {
        let key = CellKey {
            mcc: network.mcc,
            mnc: network.mnc,
            lac,
            cell,
        };
        self.cells
            .binary_search_by(|(k, _)| k.cmp(&key))
            .ok()
            .map(|i| self.cells[i].1)
    }

    /// The RSSI-weighted centroid of the query's cells that are known.
    ///
    /// Weight: the raw signal byte the badge reported, `max(rssi, 1)`. It
    /// grows with signal strength but its scale differs between firmwares,
    /// so no dBm model is assumed; linear weights pull the centroid toward
    /// the strongest (usually nearest) cells without letting one dominate.
    /// The floor of 1 keeps cells reported without signal (0) in, and makes
    /// a query with no signals at all a plain centroid.
    ///
    /// Accuracy: the weighted mean over known cells of (distance from the
    /// centroid + the cell's range), at least [`MIN_ACCURACY_M`]. The badge
    /// hears each cell, so it is likely within that cell's range of it, and so
    /// within distance + range of the centroid; a single cell gives its range.
    /// The mean rather than the minimum, because crowd-sourced ranges are
    /// often too small.
    pub fn locate(&self, query: &CellQuery) -> Option<Fix> {
        let mut known: Vec<(CellSite, f64)> = Vec::with_capacity(query.cells.len());
        let mut seen: Vec<(u32, u64)> = Vec::with_capacity(query.cells.len());
        for c in &query.cells {
            if c.is_empty() || seen.contains(&(c.lac, c.cell_id)) {
                continue;
            }
            seen.push((c.lac, c.cell_id));
            if let Some(site) = self.get(query.network, c.lac, c.cell_id) {
                known.push((site, f64::from(c.rssi.max(1))));
            }
        }
        let (first, _) = *known.first()?;
        let total: f64 = known.iter().map(|(_, w)| w).sum();
        // Longitudes are averaged as offsets from the first cell, so cells
        // either side of the antimeridian do not average to the far side of
        // the planet.
        let lon0 = f64::from(first.lon);
        let (mut lat, mut dlon) = (0.0, 0.0);
        for (site, w) in &known {
            lat += w * f64::from(site.lat);
            dlon += w * wrap_lon(f64::from(site.lon) - lon0);
        }
        let lat = lat / total;
        let lon = wrap_lon(lon0 + dlon / total);
        let spread: f64 = known
            .iter()
            .map(|(site, w)| {
                let d = distance_m(lat, lon, f64::from(site.lat), f64::from(site.lon));
                w * (d + f64::from(site.range))
            })
            .sum::<f64>()
            / total;
        Some(Fix {
            lat,
            lon,
            accuracy_m: spread.max(MIN_ACCURACY_M),
            source: FixSource::Cell,
        })
    }
}

fn parse_row(line: &str) -> Option<(CellKey, CellSite, u32)> {
    let mut f = line.split(',').map(str::trim);
    let radio = f.next()?;
    if radio.eq_ignore_ascii_case("CDMA") {
        return None;
    }
    let mcc: u16 = f.next()?.parse().ok()?;
    let mnc: u16 = f.next()?.parse().ok()?;
    let lac: u32 = f.next()?.parse().ok()?;
    let cell: u64 = f.next()?.parse().ok()?;
    let _unit = f.next()?;
    let lon: f64 = f.next()?.parse().ok()?;
    let lat: f64 = f.next()?.parse().ok()?;
    if !(lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0) {
        return None;
    }
    // Range and samples may be missing in hand-made extracts.
    let range = f
        .next()
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r >= 1.0)
        .map_or(DEFAULT_RANGE_M, |r| r.min(f64::from(u32::MAX)) as u32);
    let samples = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((
        CellKey {
            mcc: mcc & 0x7FFF,
            mnc,
            lac,
            cell,
        },
        CellSite {
            lat: lat as f32,
            lon: lon as f32,
            range,
        },
        samples,
    ))
}

/// Brings a longitude (or a difference of two) into [-180, 180].
fn wrap_lon(lon: f64) -> f64 {
    let l = (lon + 180.0).rem_euclid(360.0) - 180.0;
    if l == -180.0 && lon > 0.0 {
        180.0
    } else {
        l
    }
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Radio;
    use crate::protocol::layout::CellTower;

    const CSV: &str = "\
radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal
GSM,460,0,9360,4082,,113.9,22.5,500,10,1,1459692342,1459692342,0
GSM,460,0,9360,4083,,113.92,22.51,1000,3,1,1459692342,1459692342,0
LTE,460,1,30000,123456789,,114.0,22.6,0,7,1,1459692342,1459692342,0
CDMA,460,13824,1,2,,100.0,10.0,100,1,1,0,0,0
GSM,460,0,9360,4083,,0.0,0.0,9,1,1,0,0,0
nonsense line
GSM,460,0,9360,oops,,1,1,1,1,1,1,1,1
";

    fn cell(lac: u32, cell_id: u64, rssi: u8) -> CellTower {
        CellTower { lac, cell_id, rssi }
    }

    fn query(cells: Vec<CellTower>) -> CellQuery {
        CellQuery {
            network: MobileNetwork::new(460, 0),
            radio: Radio::Gsm,
            cells,
            wifi: Vec::new(),
        }
    }

    fn db() -> CellDb {
        CellDb::parse(CSV.as_bytes()).unwrap().0
    }

    #[test]
    fn parses_rows_skips_bad_ones_and_keeps_the_best_sampled_duplicate() {
        let (db, info) = CellDb::parse(CSV.as_bytes()).unwrap();
        assert_eq!(
            info,
            CellDbInfo {
                cells: 3,
                skipped: 3,
                duplicates: 1
            }
        );
        let b = db.get(MobileNetwork::new(460, 0), 9360, 4083).unwrap();
        assert_eq!((b.lat, b.lon, b.range), (22.51, 113.92, 1000));
        let lte = db
            .get(MobileNetwork::new(460, 1), 30000, 123_456_789)
            .unwrap();
        assert_eq!(lte.range, DEFAULT_RANGE_M);
        assert!(db.get(MobileNetwork::new(460, 1), 9360, 4083).is_none());
    }

    #[test]
    fn the_header_is_optional_and_crlf_is_fine() {
        let text = "\u{FEFF}GSM,460,0,1,2,,10.0,20.0,300,1\r\nUMTS,460,0,1,3,,10.5,20.5,300,1\r\n";
        let (db, info) = CellDb::parse(text.as_bytes()).unwrap();
        assert_eq!((info.cells, info.skipped), (2, 0));
        assert_eq!(db.get(MobileNetwork::new(460, 0), 1, 3).unwrap().lat, 20.5);
    }

    #[test]
    fn the_centroid_is_weighted_by_rssi() {
        let db = db();
        let fix = db
            .locate(&query(vec![
                cell(9360, 4082, 60),
                cell(9360, 4083, 20),
                cell(9360, 9999, 90),
            ]))
            .unwrap();
        // (60 × 22.5 + 20 × 22.51) / 80 and 113.9 + 20 × 0.02 / 80 (the
        // unknown cell contributes nothing).
        assert!((fix.lat - 22.5025).abs() < 1e-5, "{fix:?}");
        assert!((fix.lon - 113.905).abs() < 1e-5, "{fix:?}");
        let da = distance_m(fix.lat, fix.lon, 22.5, 113.9);
        let db_ = distance_m(fix.lat, fix.lon, 22.51, 113.92);
        let expected = (60.0 * (da + 500.0) + 20.0 * (db_ + 1000.0)) / 80.0;
        assert!(
            (fix.accuracy_m - expected).abs() < 1.0,
            "{fix:?} vs {expected}"
        );
        assert_eq!(fix.source, FixSource::Cell);
    }

    #[test]
    fn one_cell_gives_its_own_position_and_range_with_a_floor() {
        let db = CellDb::parse("GSM,460,0,1,2,,10.0,20.0,10,1\n".as_bytes())
            .unwrap()
            .0;
        let fix = db.locate(&query(vec![cell(1, 2, 0)])).unwrap();
        assert_eq!((fix.lat, fix.lon), (20.0, 10.0));
        assert_eq!(fix.accuracy_m, MIN_ACCURACY_M);
        let db = CellDb::parse("GSM,460,0,1,2,,10.0,20.0,700,1\n".as_bytes())
            .unwrap()
            .0;
        assert!((db.locate(&query(vec![cell(1, 2, 0)])).unwrap().accuracy_m - 700.0).abs() < 1e-6);
    }

    #[test]
    fn unknown_empty_and_repeated_cells_are_ignored() {
        let db = db();
        assert!(db.locate(&query(vec![cell(1, 1, 50)])).is_none());
        assert!(db.locate(&query(vec![])).is_none());
        // The main cell repeated as a neighbour counts once; zero slots not at all.
        let a = db
            .locate(&query(vec![cell(9360, 4082, 60), cell(9360, 4083, 20)]))
            .unwrap();
        let b = db
            .locate(&query(vec![
                cell(9360, 4082, 60),
                cell(9360, 4083, 20),
                cell(9360, 4082, 60),
                cell(0, 0, 0),
            ]))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn cells_across_the_antimeridian_average_near_it() {
        let text = "GSM,1,1,1,1,,179.99,0,100,1\nGSM,1,1,1,2,,-179.99,0,100,1\n";
        let db = CellDb::parse(text.as_bytes()).unwrap().0;
        let q = CellQuery {
            network: MobileNetwork::new(1, 1),
            radio: Radio::Gsm,
            cells: vec![cell(1, 1, 10), cell(1, 2, 10)],
            wifi: Vec::new(),
        };
        let fix = db.locate(&q).unwrap();
        assert!(fix.lon.abs() > 179.98, "{fix:?}");
        assert!(fix.accuracy_m < 2_000.0, "{fix:?}");
    }

    #[test]
    fn distances_are_great_circle() {
        // One degree of latitude is about 111.2 km.
        assert!((distance_m(0.0, 0.0, 1.0, 0.0) - 111_195.0).abs() < 10.0);
        assert!(distance_m(22.5, 113.9, 22.5, 113.9) < 1e-9);
    }
}
