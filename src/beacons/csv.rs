//! MACs as text, and the CSV format of `beacons import` and `beacons list`.

use std::collections::HashMap;
use std::path::Path;

use super::{Beacon, BeaconError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
