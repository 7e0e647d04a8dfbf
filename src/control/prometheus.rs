//! The figures of `stats` and `latency` in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

use crate::metrics::ShardMetrics;
use crate::protocol::number;
use crate::record::Table;

use super::commands::{histograms, shard_metrics};
use super::Context;

pub async fn render(ctx: &Context) -> String {
    let shards = shard_metrics(ctx).await;
    let total = ShardMetrics::total(&shards);
    let mut out = String::new();
    let mut per_shard = |name: &str, kind: &str, help: &str, value: fn(&ShardMetrics) -> u64| {
        let _ = writeln!(
            out,
            "# HELP badge_{name} {help}\n# TYPE badge_{name} {kind}"
        );
        for s in &shards {
            let _ = writeln!(out, "badge_{name}{{shard=\"{}\"}} {}", s.shard, value(s));
        }
    };
    per_shard("connections", "gauge", "Open badge connections.", |s| {
        s.connections_open
    });
    per_shard(
        "sessions",
        "gauge",
        "Logged-in badges owned by the shard.",
        |s| s.sessions,
    );
    per_shard(
        "connections_accepted_total",
        "counter",
        "Connections accepted.",
        |s| s.connections_accepted,
    );
    per_shard(
        "connections_refused_total",
        "counter",
        "Connections refused by a limit.",
        |s| s.connections_refused_limit + s.connections_refused_per_ip,
    );
    per_shard("logins_total", "counter", "Logins.", |s| s.logins);
    per_shard(
        "reconnects_total",
        "counter",
        "Logins that replaced a live connection.",
        |s| s.reconnects,
    );
    per_shard(
        "bytes_in_total",
        "counter",
        "Bytes read from badges.",
        |s| s.bytes_in,
    );
    per_shard(
        "bytes_out_total",
        "counter",
        "Bytes written to badges.",
        |s| s.bytes_out,
    );
    per_shard(
        "crc_errors_total",
        "counter",
        "Frames with a wrong CRC.",
        |s| s.frame.bad_crc,
    );
    per_shard(
        "resyncs_total",
        "counter",
        "Times the frame decoder searched for the next start marker.",
        |s| s.frame.resyncs,
    );
    per_shard(
        "garbage_bytes_total",
        "counter",
        "Bytes skipped outside frames.",
        |s| s.frame.garbage_bytes,
    );
    per_shard(
        "bad_frames_total",
        "counter",
        "Frames with a wrong stop marker, length, or over the size limit.",
        |s| s.frame.bad_stop + s.frame.bad_length + s.frame.oversized,
    );
    per_shard(
        "decode_errors_total",
        "counter",
        "Frames whose content did not match its layout.",
        |s| s.decode_errors,
    );
    per_shard(
        "prelogin_drops_total",
        "counter",
        "Frames dropped because they came before login.",
        |s| s.prelogin_drops,
    );
    per_shard(
        "login_timeouts_total",
        "counter",
        "Connections closed for not logging in.",
        |s| s.login_timeouts,
    );
    per_shard(
        "idle_timeouts_total",
        "counter",
        "Connections closed after silence.",
        |s| s.idle_timeouts,
    );
    per_shard(
        "emfile_total",
        "counter",
        "Accepts that failed for lack of file descriptors.",
        |s| s.emfile,
    );
    per_shard(
        "records_total",
        "counter",
        "Records handed to the sink.",
        |s| s.records,
    );
    per_shard(
        "sink_full_waits_total",
        "counter",
        "Waits because the sink queue was full.",
        |s| s.sink_full_waits,
    );
    per_shard(
        "geo_lookups_total",
        "counter",
        "Rows handed to the geo service.",
        |s| s.geo.lookups,
    );
    per_shard(
        "geo_positioned_total",
        "counter",
        "Rows given a position from cells or WiFi.",
        |s| s.geo.positioned,
    );
    per_shard(
        "geo_addressed_total",
        "counter",
        "Rows given an address.",
        |s| s.geo.addressed,
    );
    per_shard(
        "geo_unenriched_total",
        "counter",
        "Rows stored without the position or address they waited for.",
        |s| s.geo.unenriched,
    );
    per_shard(
        "geo_deadline_missed_total",
        "counter",
        "Lookups cut short by the deadline.",
        |s| s.geo.deadline_missed,
    );
    per_shard(
        "geo_skipped_total",
        "counter",
        "Rows stored without a lookup because too many were waiting.",
        |s| s.geo.skipped,
    );
    per_shard(
        "geo_pending",
        "gauge",
        "Rows waiting for the geo service.",
        |s| s.geo.pending,
    );
    per_shard(
        "address_replies_total",
        "counter",
        "Address replies sent after a lookup (with or without an address).",
        |s| s.geo.replies_with_address + s.geo.replies_empty,
    );
    per_shard(
        "alarm_sms_total",
        "counter",
        "ALARMSMS replies sent after an alarm's acknowledgement.",
        |s| s.geo.alarm_sms,
    );

    let _ = writeln!(
        out,
        "# HELP badge_frames_total Frames by protocol.\n# TYPE badge_frames_total counter"
    );
    for (p, n) in total.frames.iter().enumerate().filter(|(_, n)| **n > 0) {
        let _ = writeln!(
            out,
            "badge_frames_total{{protocol=\"{}\",number=\"0x{p:02X}\"}} {n}",
            number::name(p as u8)
        );
    }
    let _ = writeln!(out, "# HELP badge_rows_written_total Rows committed to ClickHouse (or the file sink).\n# TYPE badge_rows_written_total counter");
    for t in Table::ALL {
        let _ = writeln!(
            out,
            "badge_rows_written_total{{table=\"{}\"}} {}",
            t.name(),
            ctx.sink.written(t)
        );
    }
    let _ = writeln!(out, "# HELP badge_rows_queued_total Rows handed to the writers.\n# TYPE badge_rows_queued_total counter");
    for t in Table::ALL {
        let _ = writeln!(
            out,
            "badge_rows_queued_total{{table=\"{}\"}} {}",
            t.name(),
            ctx.sink.queued[t.index()].load(Ordering::Relaxed)
        );
    }
    let (spool_bytes, spool_files) = ctx.sink.spool_size();
    let ev = ctx.events.stats();
    for (name, kind, help, v) in [
        (
            "events_published_total",
            "counter",
            "Live events handed to watchers and webhooks.",
            ev.published,
        ),
        (
            "events_dropped_total",
            "counter",
            "Live events dropped because the event queue was full.",
            ev.dropped,
        ),
        (
            "event_watchers",
            "gauge",
            "Control-socket watchers now.",
            ev.watchers as u64,
        ),
        (
            "event_watchers_dropped_total",
            "counter",
            "Watchers dropped for falling behind.",
            ev.watchers_dropped,
        ),
        (
            "spool_bytes",
            "gauge",
            "Bytes waiting in the spool.",
            spool_bytes,
        ),
        (
            "spool_files",
            "gauge",
            "Batches waiting in the spool.",
            spool_files,
        ),
        (
            "spooled_rows_total",
            "counter",
            "Rows written to the spool.",
            ctx.sink.spooled_rows.load(Ordering::Relaxed),
        ),
        (
            "insert_retries_total",
            "counter",
            "Insert retries.",
            ctx.sink.retries.load(Ordering::Relaxed),
        ),
        (
            "insert_failures_total",
            "counter",
            "Failed insert attempts.",
            ctx.sink.insert_failures.load(Ordering::Relaxed),
        ),
        (
            "spool_errors_total",
            "counter",
            "Batches that could not be spooled at first try.",
            ctx.sink.spool_errors.load(Ordering::Relaxed),
        ),
        (
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            ctx.started.elapsed().as_secs(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP badge_{name} {help}\n# TYPE badge_{name} {kind}\nbadge_{name} {v}"
        );
    }
    for (name, help, value) in [
        (
            "webhook_delivered_total",
            "Events a webhook accepted.",
            (|w| w.delivered) as fn(&crate::events::WebhookStats) -> u64,
        ),
        (
            "webhook_failed_total",
            "Events given up after every retry.",
            |w| w.failed,
        ),
        ("webhook_retries_total", "POSTs retried.", |w| w.retries),
        (
            "webhook_overflow_total",
            "Events dropped because the webhook's queue was full.",
            |w| w.overflow,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP badge_{name} {help}\n# TYPE badge_{name} counter"
        );
        for w in &ev.webhooks {
            let _ = writeln!(
                out,
                "badge_{name}{{url=\"{}\"}} {}",
                w.url.replace('"', "%22"),
                value(w)
            );
        }
    }
    if let Some(geo) = &ctx.services.geo {
        let g = geo.stats();
        let providers = [
            ("cell_db", &g.cell_db),
            ("geolocation", &g.geolocation),
            ("reverse", &g.reverse),
        ];
        for (name, help, value) in [
            (
                "geo_requests_total",
                "Calls that went to a geo provider.",
                (|p| p.requests) as fn(&crate::geo::ProviderStats) -> u64,
            ),
            (
                "geo_hits_total",
                "Calls answered with a position or address.",
                |p| p.hits,
            ),
            (
                "geo_misses_total",
                "Calls the provider had no answer for.",
                |p| p.misses,
            ),
            ("geo_failures_total", "Calls that failed.", |p| p.failures),
            ("geo_timeouts_total", "Calls that timed out.", |p| {
                p.timeouts
            }),
            (
                "geo_breaker_opens_total",
                "Times the provider's breaker opened.",
                |p| p.breaker_opens,
            ),
            (
                "geo_rejected_open_total",
                "Lookups refused while the breaker was open.",
                |p| p.rejected_open,
            ),
            (
                "geo_breaker_open",
                "1 while the provider's breaker is open.",
                |p| u64::from(p.breaker != crate::geo::BreakerState::Closed),
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP badge_{name} {help}\n# TYPE badge_{name} {kind}"
            );
            for (provider, p) in providers.iter().filter(|(_, p)| p.enabled) {
                let _ = writeln!(out, "badge_{name}{{provider=\"{provider}\"}} {}", value(p));
            }
        }
        for (provider, p) in providers.iter().filter(|(_, p)| p.enabled) {
            summary(
                &mut out,
                &format!("geo_{provider}_latency_seconds"),
                "Duration of calls to the geo provider.",
                &p.latency_us,
            );
        }
    }
    let [reply, insert, e2e] = histograms(ctx).await;
    summary(
        &mut out,
        "reply_latency_seconds",
        "From the last byte of a frame read to its reply written.",
        &reply,
    );
    summary(
        &mut out,
        "insert_latency_seconds",
        "ClickHouse insert duration.",
        &insert,
    );
    summary(
        &mut out,
        "e2e_latency_seconds",
        "From frame read to row committed.",
        &e2e,
    );
    out
}

fn summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(
        out,
        "# HELP badge_{name} {help}\n# TYPE badge_{name} summary"
    );
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(
            out,
            "badge_{name}{{quantile=\"{q}\"}} {}",
            h.value_at_quantile(q) as f64 / 1e6
        );
    }
    let _ = writeln!(out, "badge_{name}_sum {}", h.mean() * h.len() as f64 / 1e6);
    let _ = writeln!(out, "badge_{name}_count {}", h.len());
}
