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
    (
        "015_devices.sql",
        include_str!("../../schema/015_devices.sql"),
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
    use crate::record::Table;

    /// `schema/cluster/*.sql`, read from the checkout (only the tests need them).
    fn cluster_files() -> Vec<(String, String)> {
        FILES
            .iter()
            .map(|(name, _)| {
                let path = format!("{}/schema/cluster/{name}", env!("CARGO_MANIFEST_DIR"));
                let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                (name.to_string(), sql)
            })
            .collect()
    }

    /// Whitespace folded to single spaces, trailing `--` comments dropped.
    fn normal(s: &str) -> String {
        s.lines()
            .map(|l| l.split(" --").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every statement of a set of files, normalised, with `{db}` kept.
    fn all_statements<'a>(files: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        files
            .into_iter()
            .flat_map(|sql| statements(sql, "{db}"))
            .map(|s| normal(&s))
            .collect()
    }

    /// What a `CREATE TABLE {db}.<table>` says, split at the column list:
    /// (column definitions, the clauses after the list).
    fn table_parts(statements: &[String], table: &str) -> Option<(Vec<String>, String)> {
        let head = format!("CREATE TABLE IF NOT EXISTS {{db}}.{table} ");
        let s = statements
            .iter()
            .find(|s| s.starts_with(&head) && s.contains('('))?;
        let open = s.find('(')?;
        let mut depth = 0;
        let mut columns = Vec::new();
        let mut current = String::new();
        let mut close = open;
        for (i, c) in s[open + 1..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    close = open + 1 + i;
                    break;
                }
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    columns.push(current.trim().to_string());
                    current.clear();
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        columns.push(current.trim().to_string());
        Some((columns, s[close + 1..].trim().to_string()))
    }

    /// The columns an INSERT gives, `Nested` ones as their `name.field` arrays.
    fn stored(columns: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for c in columns {
            if c.contains(" ALIAS ") || c.contains(" MATERIALIZED ") {
                continue;
            }
            let (name, ty) = c.split_once(' ').unwrap_or((c, ""));
            match ty.strip_prefix("Nested(").and_then(|t| t.strip_suffix(')')) {
                Some(fields) => out.extend(
                    fields
                        .split(',')
                        .map(|f| format!("{name}.{}", f.trim().split(' ').next().unwrap_or(""))),
                ),
                None => out.push(name.to_string()),
            }
        }
        out
    }

    /// The clauses after ENGINE, without the engine itself (which is what
    /// the cluster variant changes).
    fn keys(after: &str) -> String {
        match after.find(") ") {
            Some(i) => after[i + 2..].to_string(),
            None => after.to_string(),
        }
    }

    #[test]
    fn every_row_struct_is_its_tables_stored_columns_in_order() {
        let single = all_statements(FILES.iter().map(|(_, sql)| *sql));
        for table in Table::ALL {
            let (columns, _) = table_parts(&single, table.name())
                .unwrap_or_else(|| panic!("no CREATE TABLE for {}", table.name()));
            assert_eq!(stored(&columns), table.columns(), "{}", table.name());
        }
    }

    #[test]
    fn the_cluster_schema_has_the_same_tables_columns_keys_and_views() {
        let cluster_files = cluster_files();
        let single = all_statements(FILES.iter().map(|(_, sql)| *sql));
        let cluster = all_statements(cluster_files.iter().map(|(_, sql)| sql.as_str()));
        let mut checked = 0;
        for s in &single {
            let Some(rest) = s.strip_prefix("CREATE TABLE IF NOT EXISTS {db}.") else {
                continue;
            };
            let name = rest.split([' ', '(']).next().unwrap();
            let (columns, after) = table_parts(&single, name).unwrap();
            // The registries (beacons, devices) are replicated whole to
            // every node, under their own names.
            let registry = matches!(name, "beacons" | "devices");
            let local = if registry {
                name.to_string()
            } else {
                format!("{name}_local")
            };
            let (cluster_columns, cluster_after) =
                table_parts(&cluster, &format!("{local} ON CLUSTER '{{cluster}}'"))
                    .unwrap_or_else(|| panic!("schema/cluster/ has no {local} ON CLUSTER"));
            assert_eq!(columns, cluster_columns, "columns of {name}");
            assert_eq!(keys(&after), keys(&cluster_after), "keys of {name}");
            assert!(
                cluster_after.contains("ENGINE = Replicated"),
                "{name}: {cluster_after}"
            );
            if !registry {
                let distributed = format!(
                    "CREATE TABLE IF NOT EXISTS {{db}}.{name} ON CLUSTER '{{cluster}}' AS {{db}}.{name}_local ENGINE = Distributed('{{cluster}}', '{{db}}', '{name}_local', cityHash64(imei))"
                );
                assert!(
                    cluster.contains(&distributed),
                    "no Distributed table for {name}"
                );
            }
            checked += 1;
        }
        assert_eq!(
            checked,
            Table::COUNT + 4,
            "tables checked (the row tables, beacons, devices and the two aggregates)"
        );
        let views = |statements: &[String]| -> Vec<String> {
            let mut v: Vec<String> = statements
                .iter()
                .filter_map(|s| {
                    let rest = s
                        .strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.")
                        .or_else(|| s.strip_prefix("CREATE VIEW IF NOT EXISTS {db}."))?;
                    Some(rest.split(' ').next()?.to_string())
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(views(&single), views(&cluster));
        assert!(views(&single).len() >= 8, "{:?}", views(&single));
        // Every ALTER of a table has its twin on the local tables.
        for s in single.iter().filter(|s| s.starts_with("ALTER TABLE {db}.")) {
            let rest = &s["ALTER TABLE {db}.".len()..];
            let (name, body) = rest.split_once(' ').unwrap();
            let twin = format!("ALTER TABLE {{db}}.{name}_local ON CLUSTER '{{cluster}}' {body}");
            assert!(cluster.contains(&twin), "no ALTER of {name}_local like {s}");
        }
    }

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
