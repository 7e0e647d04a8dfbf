//! What `--verify-clickhouse` found: the report carries it, `verify`
//! makes it.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub table: &'static str,
    pub expected: u64,
    /// Distinct ingest keys: must equal `expected`.
    pub found: u64,
    /// Rows beyond one per ingest key (retried inserts).
    pub duplicate_rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub url: String,
    pub database: String,
    pub imei_lo: u64,
    pub imei_hi: u64,
    pub since_unix: i64,
    pub tables: Vec<TableCheck>,
    pub waited_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ok: bool,
}

impl Verification {
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "ClickHouse {} database {}: rows for IMEIs {:015}..{:015} since {} (waited {:.1} s)",
            self.url, self.database, self.imei_lo, self.imei_hi, self.since_unix, self.waited_s
        );
        if let Some(e) = &self.error {
            let _ = writeln!(o, "  ERROR: {e}");
        }
        let _ = writeln!(
            o,
            "  {:<14} {:>12} {:>12} {:>12}",
            "table", "expected", "found", "duplicate rows"
        );
        for t in &self.tables {
            let verdict = match t.found.cmp(&t.expected) {
                std::cmp::Ordering::Less => "  SHORT",
                std::cmp::Ordering::Greater => "  MORE than expected",
                std::cmp::Ordering::Equal => "",
            };
            let _ = writeln!(
                o,
                "  {:<14} {:>12} {:>12} {:>12}{verdict}",
                t.table, t.expected, t.found, t.duplicate_rows
            );
        }
        let _ = writeln!(
            o,
            "  (found: distinct ingest keys; duplicate rows: extra rows of a key, allowed by at-least-once delivery)"
        );
        o
    }
}
