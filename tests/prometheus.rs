//! `GET /metrics` through a strict Prometheus text-format (0.0.4) parser:
//! every sample belongs to a family declared with `# HELP` and `# TYPE`
//! just before it, names and labels are valid and escaped, values parse,
//! series are unique, counters end in `_total` and never go negative,
//! summaries have one `_sum` and one integral `_count` per label set and
//! ordered quantiles (histograms, should one appear, consistent buckets).
//! The server runs with every optional part on (geo providers, webhook,
//! events) and some traffic, so that every family has samples.

mod http_fake;
mod pipeline_support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use badge_ingest::app::App;
use badge_ingest::config::{ControlAddr, SinkKind};
use badge_ingest::events::WebhookConfig;
use badge_ingest::protocol::layout::*;
use badge_ingest::protocol::message::*;
use badge_ingest::protocol::Message;
use http_fake::{answer, FakeServer};
use pipeline_support::*;

// ---------------------------------------------------------------------------
// The parser

type Labels = Vec<(String, String)>;

/// A summary's or histogram's series of one label set: (bound, value)
/// parts, the `_sum` values and the `_count` values.
#[derive(Default)]
struct Group {
    parts: Vec<(f64, f64)>,
    sums: Vec<f64>,
    counts: Vec<f64>,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: String,
    samples: Vec<Sample>,
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

/// `NaN`, `+Inf`, `-Inf`, or a decimal float; nothing else (Rust's own
/// parser would also take "inf", "infinity", "nan" in any case).
fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (digits, None),
    };
    let mantissa_ok = !mantissa.is_empty()
        && mantissa != "."
        && mantissa.bytes().filter(|&c| c == b'.').count() <= 1
        && mantissa.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    if !mantissa_ok || !exponent_ok {
        return Err(format!("not a number: {s:?}"));
    }
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

/// `{name="value",...}` at the start of `s`: the labels and the rest of `s`.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').expect("called at a brace");
    if let Some(r) = rest.strip_prefix('}') {
        return Ok((labels, r));
    }
    loop {
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}: value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("label {name}: bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err(format!("label {name}: raw newline")),
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("after label {name}: expected , or }}"))?;
        if rest.starts_with('}') {
            return Err("trailing comma in labels".into());
        }
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("junk after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The families of a text exposition, or the first rule it breaks.
fn parse_strict(text: &str) -> Result<Vec<Family>, String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut names = HashSet::new();
    let mut series = HashSet::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if line.is_empty() || line.contains('\r') {
            return Err(at("empty line or carriage return".into()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let Some(help) = comment.strip_prefix(" HELP ") else {
                return Err(at("a comment that is not a HELP opening a family".into()));
            };
            let (name, doc) = help
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !is_metric_name(name) || !names.insert(name.to_string()) {
                return Err(at(format!("bad or repeated family {name}")));
            }
            if doc.contains('\\') && doc.replace("\\\\", "").replace("\\n", "").contains('\\') {
                return Err(at("bad escape in HELP".into()));
            }
            let (_, type_line) = lines.next().ok_or_else(|| at("HELP without TYPE".into()))?;
            let kind = type_line
                .strip_prefix("# TYPE ")
                .and_then(|t| t.strip_prefix(name))
                .and_then(|t| t.strip_prefix(' '))
                .ok_or_else(|| at(format!("HELP {name} not followed by its TYPE")))?;
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            families.push(Family {
                name: name.to_string(),
                kind: kind.to_string(),
                samples: Vec::new(),
            });
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = families
            .last_mut()
            .ok_or_else(|| at("a sample before any TYPE".into()))?;
        let suffixes: &[&str] = match family.kind.as_str() {
            "summary" => &["", "_sum", "_count"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        if !suffixes
            .iter()
            .any(|s| sample.name == format!("{}{s}", family.name))
        {
            return Err(at(format!(
                "sample not of the family declared before it ({} {})",
                family.kind, family.name
            )));
        }
        let mut key: Vec<_> = sample.labels.clone();
        key.sort();
        if !series.insert((sample.name.clone(), key)) {
            return Err(at("series repeated".into()));
        }
        family.samples.push(sample);
    }
    for f in &families {
        check_family(f).map_err(|e| format!("family {} ({}): {e}", f.name, f.kind))?;
    }
    Ok(families)
}

fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The labels of `s` without `skip`, to group a summary's or histogram's series.
fn group_of(s: &Sample, skip: &str) -> Labels {
    let mut g: Vec<_> = s
        .labels
        .iter()
        .filter(|(n, _)| n != skip)
        .cloned()
        .collect();
    g.sort();
    g
}

fn check_family(f: &Family) -> Result<(), String> {
    match f.kind.as_str() {
        "counter" => {
            if !f.name.ends_with("_total") {
                return Err("a counter's name must end in _total".into());
            }
            if let Some(s) = f
                .samples
                .iter()
                .find(|s| !(s.value.is_finite() && s.value >= 0.0))
            {
                return Err(format!("counter value {} in {s:?}", s.value));
            }
        }
        "gauge" | "untyped" => {
            if let Some(s) = f.samples.iter().find(|s| s.value.is_infinite()) {
                return Err(format!("infinite value in {s:?}"));
            }
        }
        "summary" | "histogram" => {
            let (part, bound) = if f.kind == "summary" {
                (f.name.clone(), "quantile")
            } else {
                (format!("{}_bucket", f.name), "le")
            };
            let mut groups: BTreeMap<Labels, Group> = BTreeMap::new();
            for s in &f.samples {
                let g = groups.entry(group_of(s, bound)).or_default();
                if s.name == part {
                    let b = label(s, bound).ok_or_else(|| format!("{s:?} without {bound}"))?;
                    let b = parse_value(b)?;
                    if f.kind == "summary" && !(0.0..=1.0).contains(&b) {
                        return Err(format!("quantile {b} outside [0, 1]"));
                    }
                    g.parts.push((b, s.value));
                } else if label(s, bound).is_some() {
                    return Err(format!("{s:?} must not carry {bound}"));
                } else if s.name.ends_with("_sum") {
                    g.sums.push(s.value);
                } else {
                    g.counts.push(s.value);
                }
            }
            for (
                labels,
                Group {
                    mut parts,
                    sums,
                    counts,
                },
            ) in groups
            {
                let ([sum], [count]) = (sums.as_slice(), counts.as_slice()) else {
                    return Err(format!(
                        "{labels:?}: {} _sum and {} _count, want one each",
                        sums.len(),
                        counts.len()
                    ));
                };
                if !(count.is_finite() && *count >= 0.0 && count.fract() == 0.0) {
                    return Err(format!("{labels:?}: _count {count}"));
                }
                if sum.is_nan() || (*count == 0.0 && *sum != 0.0) {
                    return Err(format!("{labels:?}: _sum {sum} with _count {count}"));
                }
                parts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if parts.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(format!("{labels:?}: a {bound} twice"));
                }
                if parts.windows(2).any(|w| w[1].1 < w[0].1) {
                    return Err(format!(
                        "{labels:?}: values fall as {bound} grows: {parts:?}"
                    ));
                }
                if f.kind == "histogram"
                    && parts
                        .last()
                        .is_none_or(|b| b.0 != f64::INFINITY || b.1 != *count)
                {
                    return Err(format!("{labels:?}: the +Inf bucket must equal _count"));
                }
            }
        }
        _ => unreachable!("checked by the parser"),
    }
    Ok(())
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                # HELP s S.\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"0.9\"} 2\ns_sum 4\ns_count 3\n";
    parse_strict(good).unwrap();
    for (bad, why) in [
        ("# TYPE a_total counter\na_total 1\n", "TYPE without HELP"),
        ("a_total 1\n", "sample without TYPE"),
        ("# HELP a A.\n# TYPE a counter\na 1\n", "counter without _total"),
        ("# HELP a_total A.\n# TYPE a_total counter\na_total -1\n", "negative counter"),
        ("# HELP a_total A.\n# TYPE a_total counter\na_total 1", "no final newline"),
        ("# HELP g G.\n# TYPE g gauge\ng one\n", "value not a number"),
        ("# HELP g G.\n# TYPE g gauge\ng inf\n", "Rust-only spelling of infinity"),
        ("# HELP g G.\n# TYPE g gauge\ng{x=\"a\\q\"} 1\n", "bad escape"),
        ("# HELP g G.\n# TYPE g gauge\ng{x=\"a\"\"} 1\n", "unescaped quote"),
        ("# HELP g G.\n# TYPE g gauge\ng{x=\"1\",} 1\n", "trailing comma"),
        ("# HELP g G.\n# TYPE g gauge\ng{x=\"1\",x=\"2\"} 1\n", "label twice"),
        ("# HELP g G.\n# TYPE g gauge\ng{__x=\"1\"} 1\n", "reserved label name"),
        ("# HELP g G.\n# TYPE g gauge\ng 1\ng 2\n", "series twice"),
        ("# HELP g G.\n# TYPE g gauge\n# HELP h H.\n# TYPE h gauge\ng 1\n", "sample after another family"),
        ("# HELP g G.\n# TYPE g gauge\n# HELP g G.\n# TYPE g gauge\n", "family twice"),
        ("# HELP g G.\n# TYPE g gauge\n\ng 1\n", "empty line"),
        ("# HELP s S.\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\n", "summary without _count"),
        ("# HELP s S.\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 0.5\n", "fractional _count"),
        ("# HELP s S.\n# TYPE s summary\ns{quantile=\"0.5\"} 2\ns{quantile=\"0.9\"} 1\ns_sum 1\ns_count 2\n", "falling quantiles"),
        ("# HELP s S.\n# TYPE s summary\ns{quantile=\"1.5\"} 2\ns_sum 1\ns_count 2\n", "quantile over 1"),
        ("# HELP s S.\n# TYPE s summary\ns_sum 3\ns_count 0\n", "a sum without observations"),
    ] {
        assert!(parse_strict(bad).is_err(), "accepted ({why}): {bad:?}");
    }
}

// ---------------------------------------------------------------------------
// The server's /metrics

/// Every family `src/control/prometheus.rs` writes.
const FAMILIES: &[&str] = &[
    "badge_connections",
    "badge_sessions",
    "badge_connections_accepted_total",
    "badge_connections_refused_total",
    "badge_logins_total",
    "badge_reconnects_total",
    "badge_bytes_in_total",
    "badge_bytes_out_total",
    "badge_crc_errors_total",
    "badge_resyncs_total",
    "badge_garbage_bytes_total",
    "badge_bad_frames_total",
    "badge_decode_errors_total",
    "badge_prelogin_drops_total",
    "badge_login_timeouts_total",
    "badge_idle_timeouts_total",
    "badge_emfile_total",
    "badge_records_total",
    "badge_geo_lookups_total",
    "badge_geo_positioned_total",
    "badge_geo_addressed_total",
    "badge_geo_unenriched_total",
    "badge_geo_deadline_missed_total",
    "badge_geo_skipped_total",
    "badge_geo_pending",
    "badge_address_replies_total",
    "badge_alarm_sms_total",
    "badge_frames_total",
    "badge_rows_written_total",
    "badge_rows_queued_total",
    "badge_events_published_total",
    "badge_events_dropped_total",
    "badge_event_watchers",
    "badge_event_watchers_dropped_total",
    "badge_insert_retries_total",
    "badge_insert_failures_total",
    "badge_log_bytes",
    "badge_log_commits_total",
    "badge_log_errors_total",
    "badge_log_full_total",
    "badge_replayed_rows_total",
    "badge_log_chunks_missed_total",
    "badge_rejected_rows_total",
    "badge_log_corrupt_segments_total",
    "badge_log_torn_bytes_total",
    "badge_log_segments_deleted_total",
    "badge_uptime_seconds",
    "badge_webhook_delivered_total",
    "badge_webhook_failed_total",
    "badge_webhook_retries_total",
    "badge_webhook_overflow_total",
    "badge_geo_requests_total",
    "badge_geo_hits_total",
    "badge_geo_misses_total",
    "badge_geo_failures_total",
    "badge_geo_timeouts_total",
    "badge_geo_breaker_opens_total",
    "badge_geo_rejected_open_total",
    "badge_geo_breaker_open",
    "badge_geo_cell_db_latency_seconds",
    "badge_geo_geolocation_latency_seconds",
    "badge_geo_reverse_latency_seconds",
    "badge_reply_latency_seconds",
    "badge_insert_latency_seconds",
    "badge_e2e_latency_seconds",
];

fn get_metrics(app: &App) -> String {
    let ControlAddr::Tcp(addr) = app.control_addr() else {
        panic!("a TCP control socket")
    };
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

#[test]
fn every_metric_family_passes_a_strict_exposition_parser() {
    let reverse = FakeServer::start(|_| {
        answer(
            200,
            serde_json::json!({ "display_name": "Science Park" }).to_string(),
        )
    });
    let geolocation = FakeServer::start(|_| {
        answer(
            200,
            r#"{"location":{"lat":22.5,"lng":113.9},"accuracy":50}"#,
        )
    });
    let hook = FakeServer::start(|_| answer(200, "{}"));
    let out = temp_dir("prometheus").join("rows.jsonl");
    let mut c = loopback_config(2);
    c.sink.kind = SinkKind::File;
    c.sink.file = out;
    c.sink.batch_age_ms = 50;
    c.geo.cell_db =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cells.csv"));
    c.geo.reverse_url = reverse.url("/reverse");
    c.geo.geolocation_url = geolocation.url("/geolocate");
    c.events.webhooks = vec![WebhookConfig {
        url: hook.url("/hook"),
        batch_age_ms: 50,
        ..WebhookConfig::default()
    }];
    c.validate().unwrap();
    let app = App::start(Arc::new(c)).expect("starts");

    // Traffic that touches the families with labels: frames of several
    // protocols, every geo provider, the webhook.
    let samples = Samples::new();
    let mut badge = Badge::connect(app.local_addr(), imei(900));
    badge.login();
    badge.exchange(&samples.messages()[0]);
    badge.send(&Message::Lbs(LbsReport {
        protocol: 0x28,
        time: time(),
        network: MobileNetwork::new(460, 0),
        cells: Cells::G2(&samples.cells2),
        timing_advance: Some(0),
        language: Some(1),
    }));
    // A cell the file does not know: the geolocation provider's turn.
    let unknown = [Cell4g::new(0x0001_2795, 0x0000_0009_0000_0001, 70)];
    badge.send(&Message::Lbs(LbsReport {
        protocol: 0xA1,
        time: time(),
        network: MobileNetwork::new(460, 11),
        cells: Cells::G4(&unknown),
        timing_advance: Some(0),
        language: Some(1),
    }));
    let serial = badge.send(&Message::AddressRequest(AddressRequest {
        protocol: 0x1A,
        time: time(),
        body: zerocopy::IntoBytes::as_bytes(&samples.shenzhen),
        language: 2,
    }));
    let (protocol, got, _) = badge.reply_frame();
    assert_eq!((protocol, got), (0x97, serial));
    badge.exchange(&samples.messages()[0]);
    let geo_calls = || {
        let s = app.handle().metrics();
        badge_ingest::metrics::ShardMetrics::total(&s)
            .counters
            .geo_pending
            == 0
            && reverse.count() >= 1
            && geolocation.count() >= 1
    };
    assert!(
        wait_until(Duration::from_secs(10), geo_calls),
        "the geo providers were not called"
    );
    assert!(
        wait_until(Duration::from_secs(10), || hook.count() >= 1),
        "the webhook got nothing"
    );

    let body = get_metrics(&app);
    let families = parse_strict(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let names: BTreeSet<&str> = families.iter().map(|f| f.name.as_str()).collect();
    let missing: Vec<&&str> = FAMILIES.iter().filter(|f| !names.contains(**f)).collect();
    assert!(missing.is_empty(), "families missing: {missing:?}\n{body}");
    for f in &families {
        assert!(!f.samples.is_empty(), "{} has no sample\n{body}", f.name);
        assert!(f.name.starts_with("badge_"), "{}", f.name);
    }
    eprintln!(
        "{} families, {} samples",
        families.len(),
        families.iter().map(|f| f.samples.len()).sum::<usize>()
    );

    // A few values known from the traffic.
    let family = |name: &str| families.iter().find(|f| f.name == name).unwrap();
    let sum = |name: &str| family(name).samples.iter().map(|s| s.value).sum::<f64>();
    assert_eq!(sum("badge_logins_total"), 1.0);
    assert_eq!(
        family("badge_logins_total").samples.len(),
        2,
        "one per shard"
    );
    let login_frames = family("badge_frames_total")
        .samples
        .iter()
        .find(|s| label(s, "number") == Some("0x01"))
        .expect("login frames");
    assert_eq!(
        (label(login_frames, "protocol"), login_frames.value),
        (Some("login"), 1.0)
    );
    for provider in ["cell_db", "geolocation", "reverse"] {
        assert!(
            family("badge_geo_requests_total")
                .samples
                .iter()
                .any(|s| label(s, "provider") == Some(provider) && s.value >= 1.0),
            "{provider}\n{body}"
        );
    }
    let replies = family("badge_reply_latency_seconds")
        .samples
        .iter()
        .find(|s| s.name == "badge_reply_latency_seconds_count")
        .unwrap();
    // Login, two heartbeats (the address reply waits for its lookup, not timed here).
    assert!(replies.value >= 3.0, "{replies:?}");
    drop(badge);
    shutdown_app(app).expect("stops");
}
