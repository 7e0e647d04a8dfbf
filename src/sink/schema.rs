//! The ClickHouse DDL of `schema/`, built into the binary so that
//! `badge-ingest schema apply` needs no checkout, and the rules for applying it.

/// `schema/*.sql`, in the order they are applied.
pub const FILES: &[(&str, &str)] = &[
    (
        "001_database.sql",
        include_str!("../../schema/001_database.sql"),
    ),
    (
        "002_device_events.sql",
        include_str!("../../schema/002_device_events.sql"),
    ),
    (
        "003_heartbeats.sql",
        include_str!("../../schema/003_heartbeats.sql"),
    ),
    (
        "004_locations.sql",
        include_str!("../../schema/004_locations.sql"),
    ),
    (
        "005_alarms.sql",
        include_str!("../../schema/005_alarms.sql"),
    ),
    (
        "006_attendance.sql",
        include_str!("../../schema/006_attendance.sql"),
    ),
    (
        "007_bluetooth.sql",
        include_str!("../../schema/007_bluetooth.sql"),
    ),
    (
        "008_device_info.sql",
        include_str!("../../schema/008_device_info.sql"),
    ),
    (
        "009_command_log.sql",
        include_str!("../../schema/009_command_log.sql"),
    ),
    (
        "010_beacons.sql",
        include_str!("../../schema/010_beacons.sql"),
    ),
    (
        "011_raw_frames.sql",
        include_str!("../../schema/011_raw_frames.sql"),
    ),
    (
        "012_badge_latest.sql",
        include_str!("../../schema/012_badge_latest.sql"),
    ),
    (
        "013_attendance_daily.sql",
        include_str!("../../schema/013_attendance_daily.sql"),
    ),
    (
        "014_geo_sources.sql",
        include_str!("../../schema/014_geo_sources.sql"),
    ),
];

/// The statements of one file, as `scripts/apply-schema-check.sh` splits
/// them: lines starting with `--` are dropped, a statement ends with `;` at
/// the end of a line, and `{db}` becomes the database name.
pub fn statements(sql: &str, database: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(body) = trimmed.strip_suffix(';') {
            current.push_str(body);
            current.push('\n');
            push_statement(&mut out, &mut current, database);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push_statement(&mut out, &mut current, database);
    out
}

fn push_statement(out: &mut Vec<String>, current: &mut String, database: &str) {
    if !current.trim().is_empty() {
        out.push(current.trim().replace("{db}", database));
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_is_built_in_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, built_in);
    }

    #[test]
    fn splitting_drops_comments_and_substitutes_the_database() {
        let sql = "-- a comment; with a semicolon\nCREATE DATABASE IF NOT EXISTS {db};\n\nCREATE TABLE {db}.t\n(\n  x UInt8 -- trailing\n);\n";
        let s = statements(sql, "prod");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].trim(), "CREATE DATABASE IF NOT EXISTS prod");
        assert!(s[1].starts_with("CREATE TABLE prod.t"));
        assert!(!s[1].trim_end().ends_with(';'));
        for (name, sql) in FILES {
            assert!(!statements(sql, "badges").is_empty(), "{name}");
        }
    }
}
