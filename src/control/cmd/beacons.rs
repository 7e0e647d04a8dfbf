//! `beacons`, `beacons reload` and `beacons unknown [--limit N]`: the
//! registry, reloading it, and the beacons heard that it does not know.

use std::fmt;

use serde::Serialize;
use serde_json::json;

use crate::beacons::{format_mac, RefreshStats};
use crate::ingest::{UnknownBeacon, UnknownBeacons};
use crate::metrics::ShardMetrics;
use crate::server::ShardMsg;

use super::super::answer::{self, Answer, Done};
use super::super::shards::{ask, limit_arg, shard_metrics};
use super::super::Context;

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    match args {
        [] => registry(ctx).await,
        ["reload"] => {
            let Some(source) = &ctx.services.beacon_source else {
                return answer::err(
                    "no beacon registry source (a ClickHouse sink or beacons.file)",
                );
            };
            match source.reload().await {
                Ok(n) => answer::ok(Done::new(
                    format!("beacon registry reloaded: {n} beacons"),
                    json!({ "beacons": n }),
                )),
                Err(e) => answer::err(format!(
                    "beacon registry not reloaded (the previous one stays): {e}"
                )),
            }
        }
        ["unknown", rest @ ..] => unknown(ctx, rest).await,
        _ => answer::err("usage: beacons | beacons reload | beacons unknown [--limit N]"),
    }
}

async fn registry(ctx: &Context) -> Answer {
    let total = ShardMetrics::total(&shard_metrics(ctx).await);
    let registry = &ctx.services.beacons;
    answer::ok(Registry {
        beacons: registry.len(),
        loaded_at: registry.loaded_at().map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }),
        source: ctx.services.beacon_source.is_some(),
        known_sightings: total.counters.beacons_known,
        unknown_sightings: total.counters.beacons_unknown,
        refresh: ctx.services.beacon_source.as_ref().map(|s| s.stats()),
    })
}

#[derive(Serialize)]
struct Registry {
    beacons: usize,
    loaded_at: Option<u64>,
    source: bool,
    known_sightings: u64,
    unknown_sightings: u64,
    #[serde(flatten, serialize_with = "refresh_json")]
    refresh: Option<RefreshStats>,
}

/// `loads`, `failures` and `last_error` at the top level, null without a source.
fn refresh_json<S: serde::Serializer>(r: &Option<RefreshStats>, s: S) -> Result<S::Ok, S::Error> {
    json!({
        "loads": r.as_ref().map(|r| r.loads),
        "failures": r.as_ref().map(|r| r.failures),
        "last_error": r.as_ref().and_then(|r| r.last_error.clone()),
    })
    .serialize(s)
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "registry: {} beacons, loaded at {} (unix), source {}\nsightings: known {} unknown {}",
            self.beacons,
            self.loaded_at.map_or("never".into(), |t| t.to_string()),
            if self.source { "configured" } else { "none" },
            self.known_sightings,
            self.unknown_sightings,
        )?;
        if let Some(r) = &self.refresh {
            write!(f, "\nloads {} failures {}", r.loads, r.failures)?;
            if let Some(e) = &r.last_error {
                write!(f, " last_error: {e}")?;
            }
        }
        Ok(())
    }
}

async fn unknown(ctx: &Context, args: &[&str]) -> Answer {
    let limit = limit_arg(args, "usage: beacons unknown [--limit N]")?;
    let mut all = Vec::new();
    let mut overflow = 0;
    for shard in 0..ctx.server.shards() {
        if let Some((list, more)) = ask(ctx, shard, ShardMsg::UnknownBeacons).await {
            UnknownBeacons::merge(&mut all, list);
            overflow += more;
        }
    }
    let total = all.len();
    all.truncate(limit);
    answer::ok(Unknown {
        total,
        unknown: all.into_iter().map(UnknownView::from).collect(),
        not_remembered: overflow,
    })
}

#[derive(Serialize)]
struct UnknownView {
    mac: String,
    count: u64,
    first_seen: u32,
    last_seen: u32,
    last_imei: String,
    best_rssi: i8,
}

impl From<UnknownBeacon> for UnknownView {
    fn from(b: UnknownBeacon) -> Self {
        UnknownView {
            mac: format_mac(b.mac),
            count: b.count,
            first_seen: b.first_seen,
            last_seen: b.last_seen,
            last_imei: format!("{:015}", b.last_imei),
            best_rssi: b.best_rssi,
        }
    }
}

#[derive(Serialize)]
struct Unknown {
    total: usize,
    unknown: Vec<UnknownView>,
    not_remembered: u64,
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unknown beacons", self.total)?;
        if self.not_remembered > 0 {
            write!(
                f,
                " (and {} sightings of further ones not remembered: beacons.unknown_max reached)",
                self.not_remembered
            )?;
        }
        for b in &self.unknown {
            write!(
                f,
                "\n{} seen {} times, last {} by {}, best rssi {} dBm",
                b.mac, b.count, b.last_seen, b.last_imei, b.best_rssi
            )?;
        }
        Ok(())
    }
}
