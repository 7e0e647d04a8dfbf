//! The event bus from outside: hand-built records published the way the
//! sink writers will publish them, watchers read the way the control socket
//! will read them (from a tokio runtime), and webhooks delivered to tiny
//! HTTP/1.1 servers on 127.0.0.1.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod http_fake;

use badge_ingest::events::{
    EventKind, EventStats, Events, EventsConfig, EventsError, Watcher, WebhookConfig,
};
use badge_ingest::record::{
    enums, AlarmRow, AttendanceRow, BluetoothRow, CommandLogRow, DeviceEventRow, DeviceInfoRow,
    HeartbeatRow, LocationRow, RawFrameRow, Record,
};
use hmac::{Hmac, Mac};
use http_fake::{FakeServer, Seen};
use serde_json::Value;
use sha2::Sha256;

// ---------------------------------------------------------------------------
// Records.

const IMEI: u64 = 860_000_000_000_001;
const INSTANCE: &str = "events-test";

fn status(event: i8, t: u32) -> Record {
    Record::DeviceEvents(DeviceEventRow {
        imei: IMEI,
        server_time: t,
        event,
        protocol: 0x01,
        serial: 1,
        device_type: 0x3610,
        tz_offset_min: 480,
        language: 2,
        conn_id: 42,
        peer_addr: "10.1.2.3:40000".into(),
        reason: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 1,
        ingest_seq: u64::from(t),
    })
}

fn location(imei: u64, t: u32) -> Record {
    Record::Locations(LocationRow {
        imei,
        device_time: t,
        server_time: t,
        device_time_valid: 1,
        protocol: 0x22,
        serial: 7,
        source: enums::POSITION_GPS,
        has_position: 1,
        lat: 22.543_1,
        lon: 113.941_9,
        position_source: enums::POSITION_GPS,
        accuracy_m: 12.5,
        speed_kmh: 3,
        course: 90,
        satellites: 9,
        gps_positioned: 1,
        realtime: 1,
        mcc: 460,
        mnc: 0,
        lac: 9360,
        cell_id: 4082,
        rssi: 60,
        report_mode: 0,
        mileage: 0,
        cells_lac: vec![9360],
        cells_cell_id: vec![4083],
        cells_rssi: vec![20],
        wifi_mac: vec![0x0102_0304_0506],
        wifi_rssi: vec![70],
        address: "Science Park".into(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn alarm(t: u32) -> Record {
    Record::Alarms(AlarmRow {
        imei: IMEI,
        device_time: t,
        server_time: t,
        device_time_valid: 1,
        protocol: 0x26,
        serial: 8,
        source: enums::POSITION_GPS,
        alarm_code: 0x01,
        alarm_type: "sos".into(),
        fence_id: 0,
        has_position: 1,
        lat: 22.5,
        lon: 113.9,
        position_source: enums::POSITION_GPS,
        accuracy_m: 5.0,
        speed_kmh: 0,
        course: 0,
        satellites: 7,
        gps_positioned: 1,
        terminal_info: 0x44,
        voltage_level: 4,
        battery: 80,
        gsm_signal: 3,
        language: 2,
        mcc: 460,
        mnc: 0,
        lac: 9360,
        cell_id: 4082,
        cells_lac: vec![],
        cells_cell_id: vec![],
        cells_rssi: vec![],
        wifi_mac: vec![],
        wifi_rssi: vec![],
        address: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn attendance(t: u32) -> Record {
    Record::Attendance(AttendanceRow {
        imei: IMEI,
        device_time: t,
        server_time: t,
        device_time_valid: 1,
        tz_offset_min: 480,
        protocol: 0xB0,
        serial: 9,
        kind: 1,
        gps_positioned: 0,
        has_position: 0,
        lat: 0.0,
        lon: 0.0,
        position_source: enums::POSITION_NONE,
        accuracy_m: 0.0,
        speed_kmh: 0,
        course: 0,
        satellites: 0,
        terminal_info: 0,
        voltage_level: 0,
        battery: 90,
        gsm_signal: 4,
        mcc: 460,
        mnc: 0,
        lac: 1,
        cell_id: 2,
        rssi: 50,
        cells_lac: vec![],
        cells_cell_id: vec![],
        cells_rssi: vec![],
        wifi_mac: vec![],
        wifi_rssi: vec![],
        address: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn bluetooth(t: u32) -> Record {
    Record::Bluetooth(BluetoothRow {
        imei: IMEI,
        device_time: t,
        server_time: t,
        device_time_valid: 1,
        tz_offset_min: 480,
        protocol: 0xB2,
        serial: 10,
        kind: enums::BT_PUNCH,
        attendance: 1,
        terminal_info: 0,
        beacon_index: 0,
        beacon_count: 1,
        is_best: 1,
        mac: 0xAABB_CCDD_EEFF,
        uuid: [7; 16],
        major: 1,
        minor: 2,
        rssi: -60,
        battery: 3.1,
        battery_unit: enums::BATTERY_VOLTS,
        beacon_known: 1,
        beacon_name: "Gate A".into(),
        beacon_lat: 22.5,
        beacon_lon: 113.9,
        beacon_address: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn command(t: u32) -> Record {
    Record::CommandLog(CommandLogRow {
        imei: IMEI,
        event_time: t,
        command_id: 77,
        created_at: t.saturating_sub(5),
        kind: enums::COMMAND_ONLINE,
        command_type: "WHERE".into(),
        text: "WHERE#".into(),
        status: enums::STATUS_REPLIED,
        protocol: 0x80,
        serial: 11,
        server_flag: 0x0102_0304,
        reply_text: "OK".into(),
        error: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn heartbeat(t: u32) -> Record {
    Record::Heartbeats(HeartbeatRow {
        imei: IMEI,
        server_time: t,
        protocol: 0x13,
        serial: 12,
        terminal_info: 0,
        battery: 5,
        gsm_signal: 4,
        language: 2,
        extension: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn device_info(t: u32) -> Record {
    Record::DeviceInfo(DeviceInfoRow {
        imei: IMEI,
        server_time: t,
        protocol: 0x94,
        serial: 13,
        sub_protocol: 0x0A,
        iccid: "8986".into(),
        imsi: "460".into(),
        gps_status: 255,
        payload: String::new(),
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

fn raw_frame(t: u32) -> Record {
    Record::RawFrames(RawFrameRow {
        imei: IMEI,
        server_time: t,
        conn_id: 42,
        direction: enums::DIRECTION_IN,
        protocol: 0x13,
        serial: 14,
        frame: "7878".into(),
        crc_ok: 1,
        ingest_instance: INSTANCE,
        ingest_shard: 0,
        ingest_seq: u64::from(t),
    })
}

// ---------------------------------------------------------------------------
// Helpers.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next event of `w` as JSON, failing the test after 10 s.
fn next(rt: &tokio::runtime::Runtime, w: &mut Watcher) -> Option<Value> {
    let line = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), w.next()).await })
        .expect("an event or the end within 10 s")?;
    assert!(!line.contains('\n'), "{line}");
    Some(serde_json::from_str(&line).unwrap())
}

/// Waits up to `secs` for `done` on the stats, failing with the last ones.
fn wait_for(events: &Events, secs: u64, what: &str, done: impl Fn(&EventStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = events.stats();
        if done(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within {secs} s: {s:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn hook(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        batch_age_ms: 50,
        timeout_ms: 2000,
        backoff_ms: 10,
        ..WebhookConfig::default()
    }
}

fn is_hmac_of(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

// ---------------------------------------------------------------------------
// Webhook receivers: `http_fake`, and one that never answers.

/// A receiver that accepts connections and never answers.
struct Silent {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let held = held.clone();
            move || {
                for stream in listener.incoming().flatten() {
                    held.lock().unwrap().push(stream);
                }
            }
        });
        Self { addr, held }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------------------

#[test]
fn watchers_get_every_kind_in_the_event_shape_filtered_or_not() {
    let rt = runtime();
    let events = Events::start(&EventsConfig::default()).unwrap();
    let mut all = events.watch(&[]);
    let mut some = events.watch(&[EventKind::Alarm, EventKind::Command]);
    let mut one = events.watch(&[EventKind::Status]);
    assert_eq!(events.stats().watchers, 3);

    let records = [
        status(enums::EVENT_LOGIN, 1_700_000_000),
        heartbeat(1_700_000_001),
        location(IMEI, 1_700_000_002),
        device_info(1_700_000_003),
        alarm(1_700_000_004),
        attendance(1_700_000_005),
        raw_frame(1_700_000_006),
        bluetooth(1_700_000_007),
        command(1_700_000_008),
        status(enums::EVENT_OFFLINE, 1_700_000_009),
    ];
    let kinds: Vec<Option<EventKind>> = records.iter().map(EventKind::of).collect();
    assert_eq!(
        kinds,
        [
            Some(EventKind::Status),
            None,
            Some(EventKind::Location),
            None,
            Some(EventKind::Alarm),
            Some(EventKind::Attendance),
            None,
            Some(EventKind::Bluetooth),
            Some(EventKind::Command),
            Some(EventKind::Status),
        ]
    );
    for r in &records {
        events.publish(r);
    }

    // What each kind must carry of its row, beyond the common head.
    let expected: [(&str, u32, &str, Value); 7] = [
        (
            "status",
            1_700_000_000,
            "peer_addr",
            "10.1.2.3:40000".into(),
        ),
        ("location", 1_700_000_002, "address", "Science Park".into()),
        ("alarm", 1_700_000_004, "alarm_type", "sos".into()),
        ("attendance", 1_700_000_005, "attendance_kind", 1.into()),
        ("bluetooth", 1_700_000_007, "beacon_name", "Gate A".into()),
        ("command", 1_700_000_008, "command_type", "WHERE".into()),
        (
            "status",
            1_700_000_009,
            "event",
            enums::EVENT_OFFLINE.into(),
        ),
    ];
    for (kind, t, field, value) in &expected {
        let e = next(&rt, &mut all).expect("an event");
        assert_eq!(e["kind"], *kind, "{e}");
        assert_eq!(e["imei"], "860000000000001", "{e}");
        let time_field = if *kind == "command" {
            "event_time"
        } else {
            "server_time"
        };
        assert_eq!(e[time_field], *t, "{e}");
        assert_eq!(e[*field], *value, "{e}");
        assert!(
            e["time"].as_str().unwrap().starts_with("2023-11-14T22:1"),
            "{e}"
        );
        let obj = e.as_object().unwrap();
        for absent in ["table", "ingest_instance", "ingest_shard", "ingest_seq"] {
            assert!(!obj.contains_key(absent), "{absent} in {e}");
        }
    }
    let first = next(&rt, &mut one).unwrap();
    assert_eq!(
        (&first["kind"], &first["status"], &first["event"]),
        (&"status".into(), &"online".into(), &1.into())
    );
    assert_eq!(next(&rt, &mut one).unwrap()["status"], "offline");
    let got: Vec<Value> = (0..2)
        .map(|_| next(&rt, &mut some).unwrap()["kind"].clone())
        .collect();
    assert_eq!(got, ["alarm", "command"]);
    // A further event proves nothing else was queued in between.
    events.publish(&alarm(1_700_000_100));
    assert_eq!(next(&rt, &mut some).unwrap()["server_time"], 1_700_000_100);
    assert_eq!(next(&rt, &mut all).unwrap()["server_time"], 1_700_000_100);

    let s = events.stats();
    assert_eq!((s.published, s.dropped, s.watchers_dropped), (8, 0, 0));

    // A watcher dropped by its owner leaves; the bus forgets it.
    drop(one);
    assert_eq!(events.stats().watchers, 2);

    // The shutdown hands on what was published before it, then ends the feeds.
    events.publish(&location(IMEI, 1_700_000_200));
    events.shutdown();
    assert_eq!(next(&rt, &mut all).unwrap()["server_time"], 1_700_000_200);
    assert_eq!(next(&rt, &mut all), None);
    assert_eq!(next(&rt, &mut some), None);
    assert!(!all.dropped() && !some.dropped());
    // Nothing is published after it, and new watchers end at once.
    events.publish(&location(IMEI, 1_700_000_300));
    assert_eq!(events.stats().published, 9);
    assert_eq!(next(&rt, &mut events.watch(&[])), None);
}

#[test]
fn a_watcher_that_does_not_read_is_dropped_and_the_others_get_everything() {
    let rt = runtime();
    let events = Events::start(&EventsConfig {
        watcher_queue: 16,
        ..EventsConfig::default()
    })
    .unwrap();
    let mut slow = events.watch(&[]);
    let mut fast = events.watch(&[EventKind::Location]);

    // In steps the fast watcher keeps up with, so only the slow one falls behind.
    const N: u32 = 2000;
    const STEP: u32 = 8;
    let mut publishing = Duration::ZERO;
    for step in 0..N / STEP {
        let started = Instant::now();
        for i in 0..STEP {
            events.publish(&location(IMEI, step * STEP + i));
        }
        publishing += started.elapsed();
        for i in 0..STEP {
            let e = next(&rt, &mut fast).expect("the fast watcher is never dropped");
            assert_eq!(e["server_time"], step * STEP + i);
        }
    }
    assert!(publishing < Duration::from_secs(5), "{publishing:?}");
    assert!(!fast.dropped());

    // Dropped, it ends at once, whatever it still had buffered.
    assert_eq!(next(&rt, &mut slow), None);
    assert!(slow.dropped());
    let s = events.stats();
    assert_eq!((s.watchers, s.watchers_dropped), (1, 1), "{s:?}");
    assert_eq!((s.published, s.dropped), (u64::from(N), 0), "{s:?}");

    // A burst with a watcher that never reads: publish never waits for it.
    let stuck = events.watch(&[]);
    drop(fast);
    const BURST: u32 = 20_000;
    let started = Instant::now();
    for t in 0..BURST {
        events.publish(&location(IMEI, t));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    wait_for(&events, 10, "the stuck watcher dropped", |s| {
        s.watchers_dropped == 2 && s.queue_len == 0
    });
    assert!(stuck.dropped());
    // With nobody left, publishing is one atomic load: nothing is counted.
    let before = events.stats();
    for t in 0..1000 {
        events.publish(&location(IMEI, t));
    }
    let after = events.stats();
    assert_eq!(after.watchers, 0);
    assert_eq!(
        (after.published, after.dropped),
        (before.published, before.dropped)
    );
    events.shutdown();
}

#[test]
fn a_webhook_gets_signed_batches_of_its_kinds_once_after_a_retry() {
    let server = FakeServer::answering_in_turn(|n| if n == 0 { 500 } else { 200 });
    const SECRET: &str = "s3cret";
    let events = Events::start(&EventsConfig {
        webhooks: vec![WebhookConfig {
            kinds: vec!["location".into(), "alarm".into()],
            secret: SECRET.into(),
            batch_age_ms: 300,
            ..hook(server.url("/hook?src=badges"))
        }],
        ..EventsConfig::default()
    })
    .unwrap();
    // Someone wants status events too, so they reach the dispatcher, which
    // must keep them from the webhook.
    let _status_watcher = events.watch(&[EventKind::Status]);

    let mut wanted = Vec::new();
    for t in 0..20u32 {
        let r = match t % 4 {
            0 | 1 => location(IMEI + u64::from(t), t),
            2 => alarm(t),
            _ => status(enums::EVENT_LOGIN, t),
        };
        if t % 4 != 3 {
            wanted.push((r.table().name(), t));
        }
        events.publish(&r);
    }
    let n = wanted.len() as u64;
    wait_for(&events, 20, "delivery", |s| s.webhooks[0].delivered == n);

    let seen = server.seen();
    assert_eq!(seen[0].status, 500);
    assert!(seen[1..].iter().all(|s| s.status == 200), "{seen:?}");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.target, "/hook?src=badges");
        assert_eq!(s.header("content-type"), Some("application/json"));
        let signature = s.header("x-badge-signature").expect("signed");
        assert!(is_hmac_of(SECRET, &s.body, signature), "{signature}");
        assert!(!is_hmac_of("other", &s.body, signature));
    }
    // The retry is the same batch, byte for byte.
    assert_eq!(seen[0].body, seen[1].body);

    let delivered: Vec<Value> = seen[1..].iter().flat_map(Seen::events).collect();
    let got: Vec<(String, u64)> = delivered
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["server_time"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = wanted
        .iter()
        .map(|(table, t)| {
            let kind = if *table == "locations" {
                "location"
            } else {
                "alarm"
            };
            (kind.to_string(), u64::from(*t))
        })
        .collect();
    assert_eq!(got, want);
    let imeis: HashSet<&str> = delivered
        .iter()
        .filter(|e| e["kind"] == "location")
        .map(|e| e["imei"].as_str().unwrap())
        .collect();
    assert!(imeis.contains("860000000000002"), "{imeis:?}");

    let s = &events.stats().webhooks[0];
    assert_eq!(
        (
            s.queued,
            s.delivered,
            s.retries,
            s.failed,
            s.overflow,
            s.queue_len
        ),
        (n, n, 1, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.posts, seen.len() as u64);
    assert_eq!(s.url, server.url("/hook?src=badges"));
    events.shutdown();
}

#[test]
fn a_batch_is_given_up_after_its_retries_and_later_ones_still_go() {
    let server = FakeServer::answering_in_turn(|n| if n < 3 { 503 } else { 200 });
    let events = Events::start(&EventsConfig {
        webhooks: vec![WebhookConfig {
            retries: 2,
            batch_age_ms: 0,
            ..hook(server.url("/"))
        }],
        ..EventsConfig::default()
    })
    .unwrap();
    events.publish(&alarm(1));
    wait_for(&events, 10, "the first batch given up", |s| {
        s.webhooks[0].failed == 1
    });
    events.publish(&alarm(2));
    wait_for(&events, 10, "the second delivered", |s| {
        s.webhooks[0].delivered == 1
    });
    let s = &events.stats().webhooks[0];
    assert_eq!((s.posts, s.retries, s.failed), (4, 2, 1), "{s:?}");
    let seen = server.seen();
    assert_eq!(seen[3].events()[0]["server_time"], 2);
    assert!(seen.iter().all(|s| s.header("x-badge-signature").is_none()));
    events.shutdown();
}

#[test]
fn a_webhook_that_never_answers_overflows_its_queue_without_holding_anyone_up() {
    let rt = runtime();
    let silent = Silent::start();
    let events = Events::start(&EventsConfig {
        webhooks: vec![WebhookConfig {
            queue: 10,
            batch_max: 5,
            batch_age_ms: 0,
            timeout_ms: 60_000,
            retries: 0,
            ..hook(format!("http://{}/hook", silent.addr))
        }],
        ..EventsConfig::default()
    })
    .unwrap();
    let mut watcher = events.watch(&[EventKind::Location]);

    const N: u64 = 1000;
    let started = Instant::now();
    for t in 0..N {
        events.publish(&location(IMEI, t as u32));
        // The watcher is read as it goes, so only the webhook falls behind.
        if t % 8 == 7 {
            for i in t - 7..=t {
                assert_eq!(next(&rt, &mut watcher).unwrap()["server_time"], i);
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_for(&events, 10, "every event offered, one POST out", |s| {
        let h = &s.webhooks[0];
        h.queued + h.overflow == N && h.posts == 1 && h.queue_len == 10
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while silent.connections() == 0 {
        assert!(Instant::now() < deadline, "the POST connects within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = events.stats();
    let h = &s.webhooks[0];
    // The queue, and at most one batch out of it, in the POST that hangs.
    assert!(h.queued <= 15 && h.overflow >= N - 15, "{h:?}");
    assert_eq!((h.delivered, h.failed), (0, 0), "{h:?}");
    assert_eq!((s.published, s.dropped, s.watchers_dropped), (N, 0, 0));

    // The shutdown waits its grace for the hung POST, then gives up on it.
    let started = Instant::now();
    events.shutdown();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let h = &events.stats().webhooks[0];
    assert_eq!((h.delivered, h.failed), (0, h.queued), "{h:?}");
    assert_eq!(next(&rt, &mut watcher), None);
}

#[test]
fn configs_with_unknown_kinds_or_non_http_urls_are_refused() {
    let config = |hook: WebhookConfig| EventsConfig {
        webhooks: vec![
            WebhookConfig {
                url: "https://example.invalid/ok".into(),
                ..WebhookConfig::default()
            },
            hook,
        ],
        ..EventsConfig::default()
    };
    let e = config(WebhookConfig {
        url: "https://example.invalid/hook".into(),
        kinds: vec!["alarm".into(), "locaton".into()],
        ..WebhookConfig::default()
    })
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("config key `events.webhooks.kinds`"), "{e}");
    assert!(e.contains("webhook 1") && e.contains("`locaton`"), "{e}");

    for url in [
        "ftp://example.invalid/hook",
        "not a url",
        "",
        "file:///tmp/x",
    ] {
        let bad = config(WebhookConfig {
            url: url.into(),
            ..WebhookConfig::default()
        });
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("config key `events.webhooks.url`"),
            "{url}: {e}"
        );
        assert!(
            matches!(Events::start(&bad), Err(EventsError::Config(_))),
            "{url}"
        );
    }

    let parsed: EventsConfig = toml::from_str(
        "[[webhooks]]\nurl = \"http://127.0.0.1:9/x\"\nkinds = [\"status\", \"command\"]\n",
    )
    .unwrap();
    parsed.validate().unwrap();
    assert_eq!(parsed.webhooks[0].retries, 5);
}

#[test]
fn a_disabled_bus_publishes_nothing_and_spawns_nothing() {
    let rt = runtime();
    let events = Events::disabled();
    let mut w = events.watch(&[]);
    for t in 0..1000 {
        events.clone().publish(&location(IMEI, t));
    }
    assert_eq!(next(&rt, &mut w), None);
    assert!(!w.dropped());
    let s = events.stats();
    assert_eq!((s.published, s.dropped, s.watchers), (0, 0, 0));
    assert!(s.webhooks.is_empty());
    events.shutdown();
}
