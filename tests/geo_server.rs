//! Geo enrichment through the whole server: badges on real TCP, the cell
//! database from a CSV fixture, a Nominatim stand-in on loopback HTTP, and
//! (where rows are checked) a real ClickHouse.

mod http_fake;
mod pipeline_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::app::App;
use badge_ingest::config::{Config, SinkKind};
use badge_ingest::protocol::layout::*;
use badge_ingest::protocol::message::*;
use badge_ingest::protocol::Message;
use http_fake::{answer, Answer, FakeServer, Gate, Seen};
use pipeline_support::*;
use serde_json::json;

const ZH: &str = "广东省深圳市南山区科技园";
const EN: &str = "Science Park, Nanshan, Shenzhen, China";

/// A Nominatim stand-in answering by `accept-language`, after `delay`.
fn nominatim(delay: Duration) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    move |seen: &Seen| {
        if seen.path() != "/reverse" || seen.query("lat").is_none() || seen.query("lon").is_none() {
            return answer(400, r#"{"error":"bad request"}"#);
        }
        let name = match seen.query("accept-language").as_deref() {
            Some("en") => EN,
            _ => ZH,
        };
        Answer {
            delay,
            ..answer(200, json!({ "display_name": name }).to_string())
        }
    }
}

/// [`nominatim`] that holds every answer until `gate` opens: a provider
/// that has not answered yet by construction.
fn gated_nominatim(gate: &Gate) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    let (gate, answer) = (gate.clone(), nominatim(Duration::ZERO));
    move |seen: &Seen| {
        gate.wait();
        answer(seen)
    }
}

fn pending_lookups(app: &App) -> u64 {
    badge_ingest::metrics::ShardMetrics::total(&app.handle().metrics())
        .counters
        .geo_pending
}

fn cells_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cells.csv")
}

fn geo_config(mut c: Config, reverse: &FakeServer, deadline_ms: u64) -> Config {
    c.geo.cell_db = Some(cells_fixture());
    c.geo.reverse_url = reverse.url("/reverse");
    c.geo.deadline_ms = deadline_ms;
    // Beyond every deadline used here: what ends a wait is the deadline.
    c.geo.timeout_ms = 30_000;
    c.geo.cache_entries = 0;
    c.validate().unwrap();
    c
}

/// The address text of a 0x17/0x97 reply: `[len] flag(4) ADDRESS|ALARMSMS && addr && phone ##`.
fn address_of(protocol: u8, content: &[u8]) -> (String, String) {
    let at = content
        .windows(2)
        .position(|w| w == b"&&")
        .expect("first &&");
    // 0x97 has a 2-byte length, 0x17 a 1-byte one; then the 4-byte server flag.
    let marker_start = if protocol == 0x97 { 6 } else { 5 };
    let marker = String::from_utf8_lossy(&content[marker_start..at]).to_string();
    let rest = &content[at + 2..];
    let end = rest
        .windows(2)
        .enumerate()
        .position(|(i, w)| i % 2 == 0 && w == b"&&")
        .expect("second &&");
    let units: Vec<u16> = rest[..end]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    (marker, String::from_utf16(&units).expect("UTF-16BE"))
}

fn lbs_alarm(cell: CellId4g) -> Message<'static> {
    Message::Alarm(Alarm {
        source: AlarmSource::Lbs,
        body: AlarmBody::Lbs {
            network: MobileNetwork::new(460, 0),
            cell,
            status: AlarmStatus {
                terminal_info: 0x44,
                voltage_level: 5,
                gsm_signal: 4,
                alarm_code: 0x01,
                language: 1,
            },
        },
    })
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn cells_and_addresses_reach_the_badge_and_the_stored_rows() {
    let url = clickhouse_url();
    let reverse = FakeServer::start(nominatim(Duration::ZERO));
    let db = fresh_database(&url, "geo");
    let log = temp_dir("geo");
    let config = geo_config(config(&url, &db, &log), &reverse, 3000);
    let app = App::start(Arc::new(config)).expect("starts");
    let samples = Samples::new();
    let net = MobileNetwork::new(460, 0);

    let mut badge = Badge::connect(app.local_addr(), imei(71));
    badge.login();

    // An LBS report: positioned from the CSV, stored with source `cell`.
    badge.send(&Message::Lbs(LbsReport {
        protocol: 0x28,
        time: time(),
        network: net,
        cells: Cells::G2(&samples.cells2),
        timing_advance: Some(0),
        language: Some(1),
    }));

    // 0x17 in Chinese: the address comes back in UTF-16BE.
    let serial = badge.send(&Message::AddressRequest(AddressRequest {
        protocol: 0x17,
        time: time(),
        body: &[0x01, 0xCC, 0x00, 0x27, 0x95, 0x0E, 0x5A, 0x21],
        language: 1,
    }));
    let (protocol, got, content) = badge.reply_frame();
    assert_eq!((protocol, got), (0x17, serial));
    assert_eq!(
        address_of(protocol, &content),
        ("ADDRESS".into(), ZH.into())
    );

    // 0x1A with a GPS fix in English: 0x97.
    let serial = badge.send(&Message::AddressRequest(AddressRequest {
        protocol: 0x1A,
        time: time(),
        body: zerocopy::IntoBytes::as_bytes(&samples.shenzhen),
        language: 2,
    }));
    let (protocol, got, content) = badge.reply_frame();
    assert_eq!((protocol, got), (0x97, serial));
    assert_eq!(
        address_of(protocol, &content),
        ("ADDRESS".into(), EN.into())
    );

    // An alarm: 0x26 at once, then ALARMSMS with the address (the reference's order).
    let serial = badge.send(&lbs_alarm(CellId4g::new(0x2795, 0x0E5A21)));
    assert_eq!(badge.reply(), (0x26, serial));
    let (protocol, got, content) = badge.reply_frame();
    assert_eq!((protocol, got), (0x17, serial));
    assert_eq!(
        address_of(protocol, &content),
        ("ALARMSMS".into(), ZH.into())
    );

    // The providers' counters, on the control socket and in /metrics.
    let mut control = Control::connect(&app);
    let geo = control.ask("geo");
    assert!(
        geo.contains("cell_db: requests") && geo.contains("reverse: requests"),
        "{geo}"
    );
    let metrics = control.ask("metrics");
    assert!(
        metrics.contains("badge_geo_hits_total{provider=\"cell_db\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("badge_geo_reverse_latency_seconds_count"),
        "{metrics}"
    );
    drop(control);

    let shards = shutdown_app(app).expect("sink flushes");
    let geo = badge_ingest::metrics::ShardMetrics::total(&shards).counters;
    assert_eq!(geo.geo_pending, 0);
    assert_eq!((geo.geo_replies_with_address, geo.geo_alarm_sms), (2, 1));

    let lbs = query(
        &url,
        &format!(
            "SELECT position_source, has_position, round(lat, 2), round(lon, 2), accuracy_m > 0, address \
             FROM {db}.locations WHERE source = 'lbs' FORMAT TSV"
        ),
    );
    let f: Vec<&str> = lbs.trim().split('\t').collect();
    assert_eq!(f[0], "cell", "{lbs}");
    assert_eq!(f[1], "1");
    let (lat, lon): (f64, f64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert!(
        (22.54..=22.55).contains(&lat) && (113.94..=113.95).contains(&lon),
        "{lbs}"
    );
    assert_eq!(f[4], "1", "accuracy radius: {lbs}");
    assert_eq!(f[5], ZH, "stored in geo.language: {lbs}");

    let requests = query(
        &url,
        &format!(
            "SELECT source, position_source, address FROM {db}.locations \
             WHERE source IN ('lbs_address_req', 'address_query') ORDER BY source FORMAT TSV"
        ),
    );
    assert_eq!(
        requests.trim(),
        format!("lbs_address_req\tcell\t{ZH}\naddress_query\tgps\t{EN}")
    );
    let alarm = query(
        &url,
        &format!("SELECT position_source, address FROM {db}.alarms FORMAT TSV"),
    );
    assert_eq!(alarm.trim(), format!("cell\t{ZH}"));
    query(&url, &format!("DROP DATABASE {db}"));
}

#[test]
fn a_provider_slower_than_the_deadline_gets_an_empty_reply_in_time_and_others_are_served() {
    // The provider never answers while the test runs: only the deadline can.
    let gate = Gate::new();
    let reverse = FakeServer::start(gated_nominatim(&gate));
    let out = temp_dir("geo-slow").join("rows.jsonl");
    let mut c = loopback_config(1);
    c.sink.kind = SinkKind::File;
    c.sink.file = out.clone();
    c.sink.batch_age_ms = 50;
    const DEADLINE: Duration = Duration::from_secs(3);
    let config = geo_config(c, &reverse, DEADLINE.as_millis() as u64);
    let app = App::start(Arc::new(config)).expect("starts");
    let samples = Samples::new();

    let mut slow = Badge::connect(app.local_addr(), imei(81));
    slow.login();
    let mut other = Badge::connect(app.local_addr(), imei(82));
    other.login();

    let asked = Instant::now();
    let serial = slow.send(&Message::AddressRequest(AddressRequest {
        protocol: 0x1A,
        time: time(),
        body: zerocopy::IntoBytes::as_bytes(&samples.shenzhen),
        language: 1,
    }));
    assert!(
        wait_until(Duration::from_secs(10), || pending_lookups(&app) == 1),
        "the request's lookup never started"
    );
    // While the lookup waits, the same shard answers another badge.
    let heartbeat = Message::Heartbeat(Heartbeat {
        extended: false,
        status: HeartbeatStatus {
            terminal_info: 0x44,
            battery: 80,
            gsm_signal: 4,
        },
        language: Some(1),
        extension: &[],
    });
    for _ in 0..5 {
        let s = other.send(&heartbeat);
        assert_eq!(other.reply(), (0x13, s));
    }
    let heartbeats_done = asked.elapsed();
    assert!(
        heartbeats_done < DEADLINE,
        "the heartbeats took {heartbeats_done:?}, past the deadline: the machine stalled"
    );
    assert_eq!(
        pending_lookups(&app),
        1,
        "the heartbeats were answered while the lookup still waited"
    );

    slow.set_timeout(Duration::from_secs(30));
    let (protocol, got, content) = slow.reply_frame();
    let waited = asked.elapsed();
    assert_eq!((protocol, got), (0x17, serial));
    assert_eq!(
        address_of(protocol, &content),
        ("ADDRESS".into(), String::new())
    );
    assert!(
        waited >= DEADLINE - Duration::from_millis(50) && waited < Duration::from_secs(30),
        "answered after {waited:?}, deadline {DEADLINE:?}, provider never"
    );

    let shards = shutdown_app(app).expect("sink flushes");
    gate.open();
    let geo = badge_ingest::metrics::ShardMetrics::total(&shards).counters;
    assert_eq!((geo.geo_replies_empty, geo.geo_deadline_missed), (1, 1));
    assert_eq!(geo.geo_pending, 0);
    // Stored anyway: with its GPS position, without the address.
    let rows = std::fs::read_to_string(&out).unwrap();
    let row: serde_json::Value = rows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["table"] == "locations")
        .expect("the request's row was stored");
    assert_eq!(row["has_position"], 1);
    assert_eq!(row["address"], "");
}

#[test]
fn beyond_max_pending_rows_are_stored_at_once_and_counted() {
    // The first lookup waits at the provider until its deadline.
    let gate = Gate::new();
    let reverse = FakeServer::start(gated_nominatim(&gate));
    let mut c = loopback_config(1);
    c.sink.kind = SinkKind::Count;
    c.geo.max_pending = 1;
    let config = geo_config(c, &reverse, 3000);
    let app = App::start(Arc::new(config)).expect("starts");
    let samples = Samples::new();
    let mut badge = Badge::connect(app.local_addr(), imei(91));
    badge.login();
    let request = Message::AddressRequest(AddressRequest {
        protocol: 0x1A,
        time: time(),
        body: zerocopy::IntoBytes::as_bytes(&samples.shenzhen),
        language: 1,
    });
    let first = badge.send(&request);
    let second = badge.send(&request);
    // The second finds the one slot taken: answered at once, empty, while
    // the first is still waiting (its reply comes after, at its deadline).
    let (protocol, serial, content) = badge.reply_frame();
    assert_eq!((protocol, serial), (0x17, second));
    assert_eq!(address_of(protocol, &content).1, "");
    assert_eq!(pending_lookups(&app), 1, "the first lookup still waits");
    badge.set_timeout(Duration::from_secs(30));
    let (protocol, serial, _) = badge.reply_frame();
    assert_eq!((protocol, serial), (0x17, first));
    let shards = shutdown_app(app).expect("stops");
    gate.open();
    let total = badge_ingest::metrics::ShardMetrics::total(&shards);
    assert_eq!(
        (total.counters.geo_skipped, total.counters.geo_lookups),
        (1, 1)
    );
    assert_eq!(
        total.counters.geo_unenriched, 2,
        "skipped, and the one past its deadline"
    );
}

#[test]
fn replies_owed_to_lookups_are_written_before_a_shutdown_closes_the_badge() {
    // The provider answers only once the shutdown is under way.
    let gate = Gate::new();
    let reverse = FakeServer::start(gated_nominatim(&gate));
    let mut c = loopback_config(1);
    c.sink.kind = SinkKind::Count;
    let config = geo_config(c, &reverse, 10_000);
    let app = App::start(Arc::new(config)).expect("starts");
    let addr = app.local_addr();
    let samples = Samples::new();
    let mut badge = Badge::connect(addr, imei(95));
    badge.login();
    let serial = badge.send(&Message::AddressRequest(AddressRequest {
        protocol: 0x1A,
        time: time(),
        body: zerocopy::IntoBytes::as_bytes(&samples.shenzhen),
        language: 2,
    }));
    // The request is in; the server is told to stop while its lookup waits.
    assert!(wait_until(Duration::from_secs(5), || {
        pending_lookups(&app) == 1
    }));
    let stopping = std::thread::spawn(move || shutdown_app(app).expect("stops"));
    // The shard has stopped accepting: the shutdown has reached it.
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            addr
        )
        .is_err()),
        "the server still accepts connections"
    );
    gate.open();
    let (protocol, got, content) = badge.reply_frame();
    assert_eq!((protocol, got), (0x97, serial));
    assert_eq!(
        address_of(protocol, &content),
        ("ADDRESS".into(), EN.into())
    );
    let shards = stopping.join().unwrap();
    let geo = badge_ingest::metrics::ShardMetrics::total(&shards).counters;
    assert_eq!(
        (geo.geo_replies_with_address, geo.geo_replies_orphaned),
        (1, 0)
    );
}
