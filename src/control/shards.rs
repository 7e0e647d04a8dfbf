//! Asking the shards from the control socket, and parsing the arguments
//! that several commands share.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::{latency_histogram, ShardMetrics};
use crate::protocol::Imei;
use crate::server::ShardMsg;

use super::answer::CommandError;
use super::Context;

/// How long a shard may take to answer.
const SHARD_DEADLINE: Duration = Duration::from_secs(5);

/// Asks one shard and waits for its answer; `None` when it does not answer.
pub async fn ask<T>(
    ctx: &Context,
    shard: usize,
    make: impl FnOnce(flume::Sender<T>) -> ShardMsg,
) -> Option<T> {
    let (tx, rx) = flume::bounded(1);
    if !ctx.server.send(shard, make(tx)) {
        return None;
    }
    tokio::time::timeout(SHARD_DEADLINE, rx.recv_async())
        .await
        .ok()?
        .ok()
}

/// Every shard's counters (the ones that answered).
pub async fn shard_metrics(ctx: &Context) -> Vec<ShardMetrics> {
    let mut all = Vec::new();
    for shard in 0..ctx.server.shards() {
        if let Some(m) = ask(ctx, shard, ShardMsg::Metrics).await {
            all.push(m);
        }
    }
    all
}

/// Reply, insert and end-to-end histograms, merged over shards.
pub async fn histograms(ctx: &Context) -> [Histogram<u64>; super::LATENCIES] {
    let reply = ShardMetrics::total(&shard_metrics(ctx).await).reply_latency;
    let copy = |h: &std::sync::Mutex<Histogram<u64>>| {
        h.lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| latency_histogram())
    };
    [
        reply,
        copy(&ctx.sink.insert_latency),
        copy(&ctx.sink.end_to_end),
        ctx.sink.commit_latency(),
    ]
}

pub fn parse_imei(s: &str) -> Result<Imei, CommandError> {
    s.parse::<Imei>()
        .map_err(|e| CommandError::new(format!("`{s}` is not an IMEI: {e}")))
}

/// The `[--limit N]` of listing commands: 100 when left out.
pub fn limit_arg(args: &[&str], usage: &str) -> Result<usize, CommandError> {
    match args {
        [] => Ok(100),
        ["--limit", n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(CommandError::new("--limit takes a positive number")),
        },
        _ => Err(CommandError::new(usage)),
    }
}
