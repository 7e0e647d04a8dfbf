//! `stats`: the counters of every shard and their total, rows per table,
//! the writers, live events and the geo lookups.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::allowlist::{Allowlist, ALLOWLIST_FIGURES};
use crate::events::{EventStats, EVENT_FIGURES, WEBHOOK_FIGURES};
use crate::metrics::{json_into, text_line, Line, ShardMetrics, FIGURES};
use crate::protocol::number;
use crate::record::Table;
use crate::sink::{SinkStats, SINK_FIGURES};

use super::super::answer::{self, Answer};
use super::super::shards::shard_metrics;
use super::super::{Context, CONTROL_FIGURES};

pub async fn run(ctx: &Arc<Context>, args: &[&str]) -> Answer {
    if !args.is_empty() {
        return answer::err("stats takes no arguments");
    }
    let shards = shard_metrics(ctx).await;
    answer::ok(Stats {
        uptime_s: ctx.started.elapsed().as_secs(),
        total: ShardMetrics::total(&shards),
        shards,
        sink: ctx.sink.clone(),
        events: ctx.events.stats(),
        ctx: ctx.clone(),
    })
}

pub struct Stats {
    uptime_s: u64,
    shards: Vec<ShardMetrics>,
    total: ShardMetrics,
    sink: Arc<SinkStats>,
    events: EventStats,
    /// For the control socket's counters and the allowlist's.
    ctx: Arc<Context>,
}

impl Stats {
    fn allowlist(&self) -> Option<&Allowlist> {
        self.ctx.allowlist.as_ref()
    }
}

/// A protocol's name in `stats`; unknown numbers by number, so that two
/// of them do not read the same.
fn protocol_name(p: u8) -> String {
    match number::name(p) {
        "unknown" => format!("0x{p:02X}"),
        name => name.to_string(),
    }
}

fn shard_json(s: &ShardMetrics) -> Value {
    let mut map = Map::new();
    map.insert(
        "shard".into(),
        if s.shard == usize::MAX {
            Value::Null
        } else {
            json!(s.shard)
        },
    );
    json_into(FIGURES, s, &mut map);
    Value::Object(map)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = &self.total;
        writeln!(f, "uptime_s {}", self.uptime_s)?;
        for s in &self.shards {
            writeln!(
                f,
                "shard {}: {}",
                s.shard,
                text_line(FIGURES, Line::Shard, s)
            )?;
        }
        writeln!(f, "total: {}", text_line(FIGURES, Line::Total, total))?;
        writeln!(f, "errors: {}", text_line(FIGURES, Line::Errors, total))?;
        writeln!(f, "limits: {}", text_line(FIGURES, Line::Limits, total))?;
        let by_type: Vec<String> = total
            .frames
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| format!("{}={n}", protocol_name(p as u8)))
            .collect();
        writeln!(f, "frames by type: {}", by_type.join(" "))?;
        let rows: Vec<String> = Table::ALL
            .iter()
            .filter(|t| self.sink.queued(**t) > 0)
            .map(|t| {
                format!(
                    "{}={}/{}",
                    t.name(),
                    self.sink.written(*t),
                    self.sink.queued(*t)
                )
            })
            .collect();
        writeln!(f, "rows written/queued: {}", rows.join(" "))?;
        writeln!(
            f,
            "events: {}",
            text_line(EVENT_FIGURES, Line::Events, &self.events)
        )?;
        for w in &self.events.webhooks {
            writeln!(
                f,
                "webhook {}: {}",
                w.url,
                text_line(WEBHOOK_FIGURES, Line::Webhook, w)
            )?;
        }
        writeln!(f, "geo: {}", text_line(FIGURES, Line::Geo, total))?;
        writeln!(
            f,
            "control: {}",
            text_line(CONTROL_FIGURES, Line::Total, &self.ctx.control_stats)
        )?;
        if let Some(list) = self.allowlist() {
            writeln!(
                f,
                "allowlist: {}",
                text_line(ALLOWLIST_FIGURES, Line::Total, list.counters())
            )?;
        }
        writeln!(
            f,
            "{} {}",
            text_line(FIGURES, Line::Records, total),
            text_line(SINK_FIGURES, Line::Records, &self.sink)
        )
    }
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let frames: Map<String, Value> = self
            .total
            .frames
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (format!("0x{p:02X}"), json!(n)))
            .collect();
        let rows: Map<String, Value> = Table::ALL
            .iter()
            .map(|t| {
                let figures =
                    json!({ "queued": self.sink.queued(*t), "written": self.sink.written(*t) });
                (t.name().to_string(), figures)
            })
            .collect();
        let mut map = Map::new();
        map.insert("uptime_s".into(), json!(self.uptime_s));
        map.insert(
            "shards".into(),
            Value::Array(self.shards.iter().map(shard_json).collect()),
        );
        map.insert("total".into(), shard_json(&self.total));
        map.insert("frames_by_protocol".into(), Value::Object(frames));
        map.insert("rows".into(), Value::Object(rows));
        json_into(SINK_FIGURES, &self.sink, &mut map);
        map.insert("events".into(), json!(self.events));
        json_into(CONTROL_FIGURES, &self.ctx.control_stats, &mut map);
        match self.allowlist() {
            Some(list) => json_into(ALLOWLIST_FIGURES, list.counters(), &mut map),
            None => {
                map.insert("allowlist".into(), Value::Null);
            }
        }
        Value::Object(map).serialize(s)
    }
}
