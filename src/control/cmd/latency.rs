//! `latency [reply|insert|e2e|commit]` and `latency reset`: percentiles
//! since start and over the last interval (10–20 s).

use std::fmt;

use serde::Serialize;

use crate::metrics::Percentiles;
use crate::server::ShardMsg;

use super::super::answer::{self, Answer, Done};
use super::super::shards::histograms;
use super::super::{Context, Windows};

const USAGE: &str = "usage: latency [reply|insert|e2e|commit] | latency reset";
const NAMES: [&str; super::super::LATENCIES] = ["reply", "insert", "e2e", "commit"];

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    if args == ["reset"] {
        return reset(ctx);
    }
    let wanted: Vec<usize> = match args {
        [] => (0..NAMES.len()).collect(),
        [one] => match NAMES.iter().position(|n| n == one) {
            Some(i) => vec![i],
            None => return answer::err(USAGE),
        },
        _ => return answer::err(USAGE),
    };
    let current = histograms(ctx).await;
    let window = ctx
        .windows
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .older
        .clone();
    let figures = wanted
        .into_iter()
        .map(|i| {
            let interval = window.as_ref().and_then(|(at, old)| {
                let mut h = current[i].clone();
                h.subtract(&old[i]).ok()?;
                Some(Interval {
                    seconds: at.elapsed().as_secs(),
                    percentiles: Percentiles::of(&h),
                })
            });
            Latency {
                name: NAMES[i],
                since_start: Percentiles::of(&current[i]),
                interval,
            }
        })
        .collect();
    answer::ok(Latencies(figures))
}

fn reset(ctx: &Context) -> Answer {
    for shard in 0..ctx.server.shards() {
        ctx.server.send(shard, ShardMsg::ResetLatency);
    }
    for h in [&ctx.sink.insert_latency, &ctx.sink.end_to_end]
        .into_iter()
        .chain(ctx.sink.logs.iter().map(|l| &l.commit_latency))
    {
        if let Ok(mut h) = h.lock() {
            h.reset();
        }
    }
    *ctx.windows.lock().unwrap_or_else(|p| p.into_inner()) = Windows::default();
    answer::ok(Done::new(
        "latency histograms reset",
        serde_json::json!({ "reset": true }),
    ))
}

#[derive(Serialize)]
struct Interval {
    seconds: u64,
    percentiles: Percentiles,
}

struct Latency {
    name: &'static str,
    since_start: Percentiles,
    interval: Option<Interval>,
}

struct Latencies(Vec<Latency>);

impl fmt::Display for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.0 {
            writeln!(f, "{} since start: {}", l.name, l.since_start)?;
            match &l.interval {
                Some(i) => writeln!(f, "{} last {}s: {}", l.name, i.seconds, i.percentiles)?,
                None => writeln!(
                    f,
                    "{} last interval: not yet (the first window closes 20 s after start)",
                    l.name
                )?,
            }
        }
        Ok(())
    }
}

impl Serialize for Latencies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for l in &self.0 {
            map.serialize_entry(
                l.name,
                &serde_json::json!({
                    "unit": "us",
                    "since_start": l.since_start,
                    "interval": l.interval,
                }),
            )?;
        }
        map.end()
    }
}
