//! `/metrics` in Prometheus text format, rendered from the same figure
//! tables as `stats`: the shards' ([`crate::metrics::FIGURES`]), the
//! writers', the event bus's, each webhook's, the control socket's, the
//! allowlist's and each geo provider's, then
//! rows per table and the latency histograms.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::allowlist::ALLOWLIST_FIGURES;
use crate::events::{EVENT_FIGURES, WEBHOOK_FIGURES};
use crate::geo::PROVIDER_FIGURES;
use crate::metrics::{Figure, Kind, ShardMetrics, FIGURES};
use crate::protocol::number;
use crate::record::Table;
use crate::sink::SINK_FIGURES;

use super::shards::{histograms, shard_metrics};
use super::{Context, CONTROL_FIGURES};

fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(
        out,
        "# HELP badge_{name} {}\n# TYPE badge_{name} {}",
        help.trim(),
        kind.name()
    );
}

/// One family per exported figure, one sample per item with its label
/// (`label` empty: one unlabelled sample, the first item).
fn families<T>(out: &mut String, figures: &[Figure<T>], label: &str, items: &[(String, &T)]) {
    for f in figures {
        let Some(name) = f.prom else { continue };
        family(out, name, f.kind, f.help);
        for (value, item) in items {
            if label.is_empty() {
                let _ = writeln!(out, "badge_{name} {}", (f.get)(item));
                break;
            }
            let _ = writeln!(out, "badge_{name}{{{label}=\"{value}\"}} {}", (f.get)(item));
        }
    }
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn render(ctx: &Context) -> String {
    let shards = shard_metrics(ctx).await;
    let total = ShardMetrics::total(&shards);
    let mut out = String::new();
    let per_shard: Vec<(String, &ShardMetrics)> =
        shards.iter().map(|s| (s.shard.to_string(), s)).collect();
    families(&mut out, FIGURES, "shard", &per_shard);

    family(
        &mut out,
        "frames_total",
        Kind::Counter,
        "Frames by protocol.",
    );
    for (p, n) in total.frames.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = writeln!(
            out,
            "badge_frames_total{{protocol=\"{}\",number=\"0x{p:02X}\"}} {n}",
            number::name(p as u8)
        );
    }
    family(
        &mut out,
        "rows_written_total",
        Kind::Counter,
        "Rows committed to ClickHouse (or the file sink).",
    );
    for t in Table::ALL {
        let _ = writeln!(
            out,
            "badge_rows_written_total{{table=\"{}\"}} {}",
            t.name(),
            ctx.sink.written(t)
        );
    }
    family(
        &mut out,
        "rows_queued_total",
        Kind::Counter,
        "Rows handed to the writers.",
    );
    for t in Table::ALL {
        let _ = writeln!(
            out,
            "badge_rows_queued_total{{table=\"{}\"}} {}",
            t.name(),
            ctx.sink.queued(t)
        );
    }

    families(&mut out, SINK_FIGURES, "", &[(String::new(), &*ctx.sink)]);
    let events = ctx.events.stats();
    families(&mut out, EVENT_FIGURES, "", &[(String::new(), &events)]);
    let hooks: Vec<(String, _)> = events
        .webhooks
        .iter()
        .map(|w| (escape(&w.url), w))
        .collect();
    families(&mut out, WEBHOOK_FIGURES, "url", &hooks);
    families(
        &mut out,
        CONTROL_FIGURES,
        "",
        &[(String::new(), &ctx.control_stats)],
    );
    if let Some(list) = &ctx.allowlist {
        families(
            &mut out,
            ALLOWLIST_FIGURES,
            "",
            &[(String::new(), list.counters())],
        );
    }
    family(
        &mut out,
        "uptime_seconds",
        Kind::Gauge,
        "Seconds since start.",
    );
    let _ = writeln!(
        out,
        "badge_uptime_seconds {}",
        ctx.started.elapsed().as_secs()
    );

    if let Some(geo) = &ctx.services.geo {
        let g = geo.stats();
        let providers: Vec<(String, _)> = g
            .providers()
            .into_iter()
            .filter(|(_, p)| p.enabled)
            .map(|(name, p)| (name.to_string(), p))
            .collect();
        families(&mut out, PROVIDER_FIGURES, "provider", &providers);
        for (name, p) in &providers {
            histogram(
                &mut out,
                &format!("geo_{name}_latency_seconds"),
                "Duration of calls to the geo provider.",
                &p.latency_us,
            );
        }
    }
    let [reply, insert, e2e, commit] = histograms(ctx).await;
    histogram(
        &mut out,
        "reply_latency_seconds",
        "From the last byte of a frame read to its reply written.",
        &reply,
    );
    histogram(
        &mut out,
        "insert_latency_seconds",
        "ClickHouse insert duration.",
        &insert,
    );
    histogram(
        &mut out,
        "e2e_latency_seconds",
        "From frame read to row committed.",
        &e2e,
    );
    histogram(
        &mut out,
        "log_commit_seconds",
        "Durable-log group commit duration (write and sync).",
        &commit,
    );
    out
}

/// Bucket bounds of the latency histograms, seconds: 100 µs to 10 s, the
/// same in every instance, so that `sum(rate(..._bucket[1m])) by (le)`
/// adds instances up (summaries' quantiles cannot be).
const BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A Prometheus histogram, cumulative since start, from an HdrHistogram of
/// microseconds (which `ctl latency` shows with its exact quantiles). The
/// `_sum` is the histogram's mean times its count: HdrHistogram keeps no
/// exact sum, and this one is within its 0.1 % precision.
fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(
        out,
        "# HELP badge_{name} {help}\n# TYPE badge_{name} histogram"
    );
    for le in BUCKETS_SECONDS {
        let us = (le * 1e6) as u64;
        let _ = writeln!(
            out,
            "badge_{name}_bucket{{le=\"{le}\"}} {}",
            h.count_between(0, us)
        );
    }
    let _ = writeln!(out, "badge_{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(out, "badge_{name}_sum {}", h.mean() * h.len() as f64 / 1e6);
    let _ = writeln!(out, "badge_{name}_count {}", h.len());
}
