//! The control commands: parse one line, ask the shards or the sink,
//! answer in text and JSON.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::beacons::{format_mac, UnknownBeacons};
use crate::metrics::{latency_histogram, Percentiles, ShardMetrics};
use crate::protocol::{number, Imei};
use crate::record::Table;
use crate::server::downlink::{CommandKind, CommandView};
use crate::server::session::owner_shard;
use crate::server::{DeviceView, ShardMsg};

use super::Context;

/// How long a shard may take to answer.
const SHARD_DEADLINE: Duration = Duration::from_secs(5);
/// The longest `send --wait`.
const MAX_WAIT_SECS: u64 = 300;

pub const HELP: &str = "commands (prefix any with `json` for a JSON answer):
  stats                       connections, frames, bytes, errors, rows, queues, spool
  latency [reply|insert|e2e]  percentiles since start and for the last interval
  latency reset               start the latency histograms afresh
  devices [--limit N]         online badges
  device IMEI                 one badge
  send [--wait SECS] IMEI TEXT   0x80 online command (queued if the badge is offline)
  message IMEI TEXT           0x82 message (UTF-16BE on the wire)
  commands IMEI               recent and queued commands with their status
  geo                         geo providers: calls, hits, failures, breakers, caches, latency
  geo reload                  read the cell database file again
  beacons                     the beacon registry: size, last load, known/unknown sightings
  beacons reload              load the registry again now
  beacons unknown [--limit N] beacons heard that the registry does not know, most heard first
  metrics                     Prometheus text format (also: HTTP GET /metrics)
  watch [KIND...]             stream live events as JSON lines until disconnect
                              (status, location, alarm, attendance, bluetooth, command)
  auth TOKEN | help | quit";

pub struct Answer {
    ok: bool,
    text: String,
    json: Value,
}

impl Answer {
    pub fn ok(text: impl Into<String>, json: Value) -> Self {
        Self {
            ok: true,
            text: text.into(),
            json,
        }
    }

    pub fn err(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            ok: false,
            json: json!({ "error": message }),
            text: message,
        }
    }

    /// The bytes sent back: text lines (errors as `error: ...`) or one JSON
    /// line, then the empty line that ends every answer.
    pub fn render(&self, as_json: bool) -> String {
        if as_json {
            let mut v = self.json.clone();
            if let Value::Object(map) = &mut v {
                map.insert("ok".into(), Value::Bool(self.ok));
            } else {
                v = json!({ "ok": self.ok, "result": v });
            }
            return format!("{v}\n\n");
        }
        let body = if self.ok {
            self.text.clone()
        } else {
            format!("error: {}", self.text)
        };
        // An empty line inside an answer would end it early.
        let body: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
        format!("{}\n\n", body.join("\n"))
    }
}

pub async fn execute(ctx: &Context, line: &str) -> Answer {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match verb {
        "help" => Answer::ok(HELP, json!({ "help": HELP })),
        "stats" if args.is_empty() => stats(ctx).await,
        "latency" => latency(ctx, &args).await,
        "devices" => devices(ctx, &args).await,
        "device" => match args.as_slice() {
            [imei] => device(ctx, imei).await,
            _ => Answer::err("usage: device IMEI"),
        },
        "send" => send(ctx, line, CommandKind::OnlineCommand).await,
        "message" => send(ctx, line, CommandKind::Message).await,
        "commands" => match args.as_slice() {
            [imei] => commands(ctx, imei).await,
            _ => Answer::err("usage: commands IMEI"),
        },
        "geo" => geo(ctx, &args).await,
        "beacons" => beacons(ctx, &args).await,
        "metrics" if args.is_empty() => {
            let text = super::prometheus::render(ctx).await;
            Answer::ok(text.clone(), json!({ "metrics": text }))
        }
        "stats" | "metrics" => Answer::err(format!("{verb} takes no arguments")),
        "" => Answer::err("empty command"),
        _ => Answer::err(format!("unknown command `{verb}`; try `help`")),
    }
}

async fn geo(ctx: &Context, args: &[&str]) -> Answer {
    let Some(geo) = &ctx.services.geo else {
        return Answer::err("no geo provider is configured (see [geo] in the configuration)");
    };
    match args {
        [] => {
            let s = geo.stats();
            let mut text = String::new();
            let mut providers = serde_json::Map::new();
            for (name, p) in [
                ("cell_db", &s.cell_db),
                ("geolocation", &s.geolocation),
                ("reverse", &s.reverse),
            ] {
                if !p.enabled {
                    continue;
                }
                let latency = Percentiles::of(&p.latency_us);
                let _ = writeln!(
                    text,
                    "{name}: requests {} hits {} misses {} failures {} timeouts {} breaker {:?} opens {} rejected_open {} abandoned {} latency {latency}",
                    p.requests, p.hits, p.misses, p.failures, p.timeouts, p.breaker, p.breaker_opens,
                    p.rejected_open, p.abandoned
                );
                providers.insert(
                    name.into(),
                    json!({
                        "requests": p.requests, "hits": p.hits, "misses": p.misses,
                        "failures": p.failures, "timeouts": p.timeouts,
                        "breaker": format!("{:?}", p.breaker).to_lowercase(),
                        "breaker_opens": p.breaker_opens, "rejected_open": p.rejected_open,
                        "abandoned": p.abandoned, "latency_us": latency,
                    }),
                );
            }
            let _ = writeln!(
                text,
                "queue_full {} outstanding {} cell_db_cells {} reloads {} reload_failures {}",
                s.queue_full,
                s.outstanding,
                s.cell_db_cells,
                s.cell_db_reloads,
                s.cell_db_reload_failures
            );
            Answer::ok(
                text,
                json!({
                    "providers": providers,
                    "queue_full": s.queue_full,
                    "outstanding": s.outstanding,
                    "cell_db_cells": s.cell_db_cells,
                    "cell_db_reloads": s.cell_db_reloads,
                    "cell_db_reload_failures": s.cell_db_reload_failures,
                }),
            )
        }
        ["reload"] => match geo.reload_cell_db().await {
            Ok(info) => Answer::ok(
                format!("cell database reloaded: {} cells", info.cells),
                json!({ "cells": info.cells, "skipped": info.skipped }),
            ),
            Err(e) => Answer::err(format!("cell database not reloaded: {e}")),
        },
        _ => Answer::err("usage: geo | geo reload"),
    }
}

async fn beacons(ctx: &Context, args: &[&str]) -> Answer {
    let registry = &ctx.services.beacons;
    let source = ctx.services.beacon_source.as_ref();
    match args {
        [] => {
            let total = ShardMetrics::total(&shard_metrics(ctx).await);
            let stats = source.map(|s| s.stats());
            let loaded_at = registry.loaded_at().map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
            let mut text = format!(
                "registry: {} beacons, loaded at {} (unix), source {}\nsightings: known {} unknown {}",
                registry.len(),
                loaded_at.map_or("never".into(), |t| t.to_string()),
                if source.is_some() { "configured" } else { "none" },
                total.beacons_known,
                total.beacons_unknown,
            );
            if let Some(s) = &stats {
                let _ = write!(
                    text,
                    "\nloads {} failures {}{}",
                    s.loads,
                    s.failures,
                    s.last_error
                        .as_deref()
                        .map_or(String::new(), |e| format!(" last_error: {e}"))
                );
            }
            Answer::ok(
                text,
                json!({
                    "beacons": registry.len(),
                    "loaded_at": loaded_at,
                    "source": source.is_some(),
                    "known_sightings": total.beacons_known,
                    "unknown_sightings": total.beacons_unknown,
                    "loads": stats.as_ref().map(|s| s.loads),
                    "failures": stats.as_ref().map(|s| s.failures),
                    "last_error": stats.as_ref().and_then(|s| s.last_error.clone()),
                }),
            )
        }
        ["reload"] => {
            let Some(source) = source else {
                return Answer::err(
                    "no beacon registry source (a ClickHouse sink or beacons.file)",
                );
            };
            match source.reload().await {
                Ok(n) => Answer::ok(
                    format!("beacon registry reloaded: {n} beacons"),
                    json!({ "beacons": n }),
                ),
                Err(e) => Answer::err(format!(
                    "beacon registry not reloaded (the previous one stays): {e}"
                )),
            }
        }
        ["unknown", rest @ ..] => {
            let limit = match limit_arg(rest, "usage: beacons unknown [--limit N]") {
                Ok(limit) => limit,
                Err(answer) => return answer,
            };
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
            let mut text = format!("{total} unknown beacons");
            if overflow > 0 {
                let _ = write!(
                    text,
                    " (and {overflow} sightings of further ones not remembered: beacons.unknown_max reached)"
                );
            }
            for b in &all {
                let _ = write!(
                    text,
                    "\n{} seen {} times, last {} by {:015}, best rssi {} dBm",
                    format_mac(b.mac),
                    b.count,
                    b.last_seen,
                    b.last_imei,
                    b.best_rssi
                );
            }
            let rows: Vec<Value> = all
                .iter()
                .map(|b| {
                    json!({
                        "mac": format_mac(b.mac), "count": b.count, "first_seen": b.first_seen,
                        "last_seen": b.last_seen, "last_imei": format!("{:015}", b.last_imei),
                        "best_rssi": b.best_rssi,
                    })
                })
                .collect();
            Answer::ok(
                text,
                json!({ "total": total, "unknown": rows, "not_remembered": overflow }),
            )
        }
        _ => Answer::err("usage: beacons | beacons reload | beacons unknown [--limit N]"),
    }
}

/// The `[--limit N]` of listing commands: 100 when left out.
fn limit_arg(args: &[&str], usage: &str) -> Result<usize, Answer> {
    match args {
        [] => Ok(100),
        ["--limit", n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Answer::err("--limit takes a positive number")),
        },
        _ => Err(Answer::err(usage)),
    }
}

fn parse_imei(s: &str) -> Result<Imei, Answer> {
    s.parse::<Imei>()
        .map_err(|e| Answer::err(format!("`{s}` is not an IMEI: {e}")))
}

/// Asks one shard and waits for its answer.
async fn ask<T>(
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
pub async fn histograms(ctx: &Context) -> [Histogram<u64>; 3] {
    let reply = ShardMetrics::total(&shard_metrics(ctx).await).reply_latency;
    let insert = ctx
        .sink
        .insert_latency
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| latency_histogram());
    let e2e = ctx
        .sink
        .end_to_end
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| latency_histogram());
    [reply, insert, e2e]
}

async fn stats(ctx: &Context) -> Answer {
    let shards = shard_metrics(ctx).await;
    let total = ShardMetrics::total(&shards);
    let uptime = ctx.started.elapsed().as_secs();
    let (spool_bytes, spool_files) = ctx.sink.spool_size();
    let mut text = String::new();
    let _ = writeln!(text, "uptime_s {uptime}");
    let shard_rows: Vec<Value> = shards.iter().map(shard_json).collect();
    for s in &shards {
        let _ = writeln!(
            text,
            "shard {}: connections {} sessions {} logins {} frames {} bytes_in {} bytes_out {} crc_errors {} resyncs {} records {}",
            s.shard, s.connections_open, s.sessions, s.logins, s.frames_total(), s.bytes_in, s.bytes_out,
            s.frame.bad_crc, s.frame.resyncs, s.records
        );
    }
    let _ = writeln!(
        text,
        "total: connections {} sessions {} accepted {} logins {} reconnects {} frames {} bytes_in {} bytes_out {}",
        total.connections_open, total.sessions, total.connections_accepted, total.logins, total.reconnects,
        total.frames_total(), total.bytes_in, total.bytes_out
    );
    let _ = writeln!(
        text,
        "errors: crc {} resyncs {} garbage_bytes {} bad_stop {} bad_length {} oversized {} decode {} prelogin_drops {} login_timeouts {} idle_timeouts {} emfile {} refused {}",
        total.frame.bad_crc, total.frame.resyncs, total.frame.garbage_bytes, total.frame.bad_stop,
        total.frame.bad_length, total.frame.oversized, total.decode_errors, total.prelogin_drops,
        total.login_timeouts, total.idle_timeouts, total.emfile,
        total.connections_refused_limit + total.connections_refused_per_ip
    );
    let frames: serde_json::Map<String, Value> = total
        .frames
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| (format!("0x{p:02X}"), json!(n)))
        .collect();
    let _ = writeln!(
        text,
        "frames by type: {}",
        total
            .frames
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| format!("{}={n}", number::name(p as u8)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut rows = serde_json::Map::new();
    let mut rows_text = Vec::new();
    for t in Table::ALL {
        let written = ctx.sink.written(t);
        let queued = ctx.sink.queued[t.index()].load(std::sync::atomic::Ordering::Relaxed);
        rows.insert(
            t.name().into(),
            json!({ "queued": queued, "written": written }),
        );
        if queued > 0 {
            rows_text.push(format!("{}={written}/{queued}", t.name()));
        }
    }
    let _ = writeln!(text, "rows written/queued: {}", rows_text.join(" "));
    let ev = ctx.events.stats();
    let _ = writeln!(
        text,
        "events: published {} dropped {} watchers {} watchers_dropped {}",
        ev.published, ev.dropped, ev.watchers, ev.watchers_dropped
    );
    for w in &ev.webhooks {
        let _ = writeln!(
            text,
            "webhook {}: delivered {} failed {} posts {} retries {} overflow {} queue {}",
            w.url, w.delivered, w.failed, w.posts, w.retries, w.overflow, w.queue_len
        );
    }
    let g = &total.geo;
    let _ = writeln!(
        text,
        "geo: lookups {} pending {} positioned {} addressed {} unenriched {} deadline_missed {} skipped {} address_replies {}/{} (with address/empty) alarm_sms {} beacons known {} unknown {}",
        g.lookups, g.pending, g.positioned, g.addressed, g.unenriched, g.deadline_missed, g.skipped,
        g.replies_with_address, g.replies_empty, g.alarm_sms, total.beacons_known, total.beacons_unknown
    );
    let _ = writeln!(
        text,
        "records {} sink_queue {} sink_full_waits {} spool_bytes {spool_bytes} spool_files {spool_files} insert_retries {} insert_failures {}",
        total.records,
        total_queue(ctx),
        total.sink_full_waits,
        ctx.sink.retries.load(std::sync::atomic::Ordering::Relaxed),
        ctx.sink.insert_failures.load(std::sync::atomic::Ordering::Relaxed),
    );
    Answer::ok(
        text,
        json!({
            "uptime_s": uptime,
            "shards": shard_rows,
            "total": shard_json(&total),
            "frames_by_protocol": frames,
            "rows": rows,
            "sink_queue": total_queue(ctx),
            "spool_bytes": spool_bytes,
            "spool_files": spool_files,
            "insert_retries": ctx.sink.retries.load(std::sync::atomic::Ordering::Relaxed),
            "insert_failures": ctx.sink.insert_failures.load(std::sync::atomic::Ordering::Relaxed),
            "events": ev,
        }),
    )
}

fn total_queue(ctx: &Context) -> u64 {
    ctx.sink.queued_total().saturating_sub(
        ctx.sink.written_total()
            + ctx
                .sink
                .spooled_rows
                .load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn shard_json(s: &ShardMetrics) -> Value {
    json!({
        "shard": if s.shard == usize::MAX { Value::Null } else { json!(s.shard) },
        "connections": s.connections_open,
        "sessions": s.sessions,
        "accepted": s.connections_accepted,
        "logins": s.logins,
        "reconnects": s.reconnects,
        "handoffs_in": s.handoffs_in,
        "handoffs_out": s.handoffs_out,
        "frames": s.frames_total(),
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "crc_errors": s.frame.bad_crc,
        "resyncs": s.frame.resyncs,
        "garbage_bytes": s.frame.garbage_bytes,
        "bad_stop": s.frame.bad_stop,
        "bad_length": s.frame.bad_length,
        "oversized": s.frame.oversized,
        "decode_errors": s.decode_errors,
        "prelogin_drops": s.prelogin_drops,
        "login_timeouts": s.login_timeouts,
        "idle_timeouts": s.idle_timeouts,
        "emfile": s.emfile,
        "refused": s.connections_refused_limit + s.connections_refused_per_ip,
        "records": s.records,
        "sink_full_waits": s.sink_full_waits,
        "geo": s.geo,
        "beacons_known": s.beacons_known,
        "beacons_unknown": s.beacons_unknown,
    })
}

async fn latency(ctx: &Context, args: &[&str]) -> Answer {
    if args == ["reset"] {
        for shard in 0..ctx.server.shards() {
            ctx.server.send(shard, ShardMsg::ResetLatency);
        }
        for h in [&ctx.sink.insert_latency, &ctx.sink.end_to_end] {
            if let Ok(mut h) = h.lock() {
                h.reset();
            }
        }
        *ctx.windows.lock().unwrap_or_else(|p| p.into_inner()) = super::Windows {
            older: None,
            newer: None,
        };
        return Answer::ok("latency histograms reset", json!({ "reset": true }));
    }
    let names = ["reply", "insert", "e2e"];
    let wanted: Vec<usize> = match args {
        [] => vec![0, 1, 2],
        [one] => match names.iter().position(|n| n == one) {
            Some(i) => vec![i],
            None => return Answer::err("usage: latency [reply|insert|e2e] | latency reset"),
        },
        _ => return Answer::err("usage: latency [reply|insert|e2e] | latency reset"),
    };
    let current = histograms(ctx).await;
    let window = ctx
        .windows
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .older
        .clone();
    let mut text = String::new();
    let mut out = serde_json::Map::new();
    for i in wanted {
        let since_start = Percentiles::of(&current[i]);
        let interval = window.as_ref().and_then(|(at, old)| {
            let mut h = current[i].clone();
            h.subtract(&old[i]).ok()?;
            Some((at.elapsed().as_secs(), Percentiles::of(&h)))
        });
        let _ = writeln!(text, "{} since start: {since_start}", names[i]);
        match &interval {
            Some((secs, p)) => {
                let _ = writeln!(text, "{} last {secs}s: {p}", names[i]);
            }
            None => {
                let _ = writeln!(
                    text,
                    "{} last interval: not yet (the first window closes 20 s after start)",
                    names[i]
                );
            }
        }
        out.insert(
            names[i].into(),
            json!({
                "unit": "us",
                "since_start": since_start,
                "interval": interval.map(|(secs, p)| json!({ "seconds": secs, "percentiles": p })),
            }),
        );
    }
    Answer::ok(text, Value::Object(out))
}

fn device_text(d: &DeviceView) -> String {
    let position = match (d.latitude, d.longitude) {
        (Some(lat), Some(lon)) => format!("{lat:.6},{lon:.6}"),
        _ => "-".into(),
    };
    let battery = d.battery.map_or("-".into(), |b| format!("{b}%"));
    format!(
        "{} online shard {} peer {} type 0x{:04X} login {} last_frame {} battery {battery} position {position}",
        d.imei, d.shard, d.peer, d.device_type, d.logged_in_at, d.last_frame_at
    )
}

async fn devices(ctx: &Context, args: &[&str]) -> Answer {
    let limit = match limit_arg(args, "usage: devices [--limit N]") {
        Ok(limit) => limit,
        Err(answer) => return answer,
    };
    let mut all: Vec<DeviceView> = Vec::new();
    for shard in 0..ctx.server.shards() {
        if let Some(v) = ask(ctx, shard, |reply| ShardMsg::Devices { limit, reply }).await {
            all.extend(v);
        }
    }
    all.sort_by(|a, b| a.imei.cmp(&b.imei));
    all.truncate(limit);
    let text = if all.is_empty() {
        "no badges online".to_string()
    } else {
        all.iter().map(device_text).collect::<Vec<_>>().join("\n")
    };
    Answer::ok(text, json!({ "devices": all }))
}

async fn device(ctx: &Context, imei: &str) -> Answer {
    let imei = match parse_imei(imei) {
        Ok(i) => i,
        Err(a) => return a,
    };
    let shard = owner_shard(imei, ctx.server.shards());
    match ask(ctx, shard, |reply| ShardMsg::Device { imei, reply }).await {
        Some(Some(d)) => Answer::ok(device_text(&d), json!({ "device": d })),
        Some(None) => Answer::ok(
            format!("{imei} offline (owner shard {shard})"),
            json!({ "device": { "imei": imei.to_string(), "online": false, "shard": shard } }),
        ),
        None => Answer::err("the shard did not answer"),
    }
}

fn command_text(c: &CommandView) -> String {
    let mut s = format!(
        "{} {} {:?} status {} created {} updated {} text {:?}",
        c.id,
        c.imei,
        c.kind,
        c.status.as_str(),
        c.created_at,
        c.updated_at,
        c.text
    );
    if !c.reply.is_empty() {
        let _ = write!(s, " reply {:?}", c.reply);
    }
    if !c.error.is_empty() {
        let _ = write!(s, " error {:?}", c.error);
    }
    s
}

/// `send [--wait SECS] IMEI TEXT` and `message IMEI TEXT`; TEXT is the rest of the line.
async fn send(ctx: &Context, line: &str, kind: CommandKind) -> Answer {
    let usage = match kind {
        CommandKind::OnlineCommand => "usage: send [--wait SECS] IMEI TEXT",
        CommandKind::Message => "usage: message IMEI TEXT",
    };
    let mut rest = line
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r)
        .trim_start();
    let mut wait = None;
    if kind == CommandKind::OnlineCommand {
        if let Some(after) = rest.strip_prefix("--wait") {
            let after = after.trim_start();
            let (secs, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            match secs.parse::<u64>() {
                Ok(s) if (1..=MAX_WAIT_SECS).contains(&s) => wait = Some(Duration::from_secs(s)),
                _ => return Answer::err(format!("--wait takes seconds from 1 to {MAX_WAIT_SECS}")),
            }
            rest = tail.trim_start();
        }
    }
    let Some((imei, text)) = rest.split_once(char::is_whitespace) else {
        return Answer::err(usage);
    };
    let text = text.trim();
    if text.is_empty() {
        return Answer::err(usage);
    }
    let imei = match parse_imei(imei) {
        Ok(i) => i,
        Err(a) => return a,
    };
    let shard = owner_shard(imei, ctx.server.shards());
    let (wait_tx, wait_rx) = flume::bounded(1);
    let text = text.to_string();
    let accepted = ask(ctx, shard, |reply| ShardMsg::Command {
        imei,
        kind,
        text,
        wait: wait.map(|_| wait_tx),
        reply,
    })
    .await;
    let command = match accepted {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Answer::err(e),
        None => return Answer::err("the shard did not answer"),
    };
    let Some(wait) = wait else {
        return Answer::ok(
            format!("{} {}", command.id, command.status.as_str()),
            json!({ "command": command }),
        );
    };
    match tokio::time::timeout(wait, wait_rx.recv_async()).await {
        Ok(Ok(done)) => {
            // The reply text only when there is one (no trailing space for expired or failed).
            let mut text = format!("{} {}", done.id, done.status.as_str());
            if !done.reply.is_empty() {
                text = format!("{text} {}", done.reply);
            }
            Answer::ok(text, json!({ "command": done }))
        }
        _ => Answer::ok(
            format!(
                "{} {} (no reply within {}s)",
                command.id,
                command.status.as_str(),
                wait.as_secs()
            ),
            json!({ "command": command, "timed_out": true }),
        ),
    }
}

async fn commands(ctx: &Context, imei: &str) -> Answer {
    let imei = match parse_imei(imei) {
        Ok(i) => i,
        Err(a) => return a,
    };
    let shard = owner_shard(imei, ctx.server.shards());
    match ask(ctx, shard, |reply| ShardMsg::Commands { imei, reply }).await {
        Some(list) => {
            let text = if list.is_empty() {
                format!("no commands for {imei}")
            } else {
                list.iter().map(command_text).collect::<Vec<_>>().join("\n")
            };
            Answer::ok(text, json!({ "commands": list }))
        }
        None => Answer::err("the shard did not answer"),
    }
}
