//! `rejected`: the rows ClickHouse refused for good and the writers set
//! aside: how many per table, where they are, and the last refusal.

use std::fmt;

use serde::Serialize;

use crate::record::Table;

use super::super::answer::{self, Answer};
use super::super::Context;

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    if !args.is_empty() {
        return answer::err("rejected takes no arguments");
    }
    let sink = &ctx.sink;
    let tables = Table::ALL
        .iter()
        .map(|t| (t.name(), sink.rejected(*t)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let last = sink
        .last_rejection
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|(table, error)| Last {
            table: table.name(),
            error: error.clone(),
        });
    answer::ok(Rejected {
        file: sink.dead_letters.display().to_string(),
        total: sink.rejected_total(),
        tables,
        last,
    })
}

#[derive(Serialize)]
struct Rejected {
    /// The dead-letter file (JSON lines: table, shard, lsn, error, row).
    file: String,
    total: u64,
    tables: Vec<(&'static str, u64)>,
    last: Option<Last>,
}

#[derive(Serialize)]
struct Last {
    table: &'static str,
    error: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rejected rows: {} (in {})", self.total, self.file)?;
        for (table, n) in &self.tables {
            writeln!(f, "  {table}: {n}")?;
        }
        match &self.last {
            Some(l) => write!(f, "last: {}: {}", l.table, l.error),
            None => write!(f, "last: none"),
        }
    }
}
