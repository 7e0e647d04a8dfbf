//! The reference server's "live" side through the whole server: the beacon
//! registry enriching Bluetooth reports (rows checked in a real
//! ClickHouse), `watch` on the control socket receiving every event kind,
//! and a webhook on loopback HTTP getting signed events after a 500.

mod http_fake;
mod pipeline_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::app::App;
use badge_ingest::beacons::{self, Beacon};
use badge_ingest::config::{Config, SinkKind};
use badge_ingest::events::WebhookConfig;
use badge_ingest::protocol::layout::*;
use badge_ingest::protocol::message::*;
use badge_ingest::protocol::Message;
use hmac::{Hmac, Mac};
use http_fake::FakeServer;
use pipeline_support::*;
use serde_json::Value;
use sha2::Sha256;
use zerocopy::byteorder::big_endian::U16;

fn base_config() -> Config {
    let mut c = loopback_config(2);
    c.sink.batch_age_ms = 50;
    c
}

fn sighting(rssi: i8, last: u8) -> BeaconSighting {
    BeaconSighting::new(
        rssi,
        [0xC1, 0, 0, 0, 0, last],
        [0xFD; 16],
        10,
        u16::from(last),
        BeaconBattery::Centivolts(300),
    )
}

fn beacon(last: u8, name: &str, lat: f64, lon: f64, address: &str) -> Beacon {
    Beacon {
        mac: 0xC100_0000_0000 | u64::from(last),
        name: name.into(),
        lat,
        lon,
        address: address.into(),
        active: true,
    }
}

fn punch(mac_last: u8) -> Message<'static> {
    Message::BluetoothPunch(BluetoothPunch {
        body: PunchBody {
            time: time(),
            rssi: -58,
            mac: [0xC1, 0, 0, 0, 0, mac_last],
            uuid: [0xFD; 16],
            major: U16::new(10),
            minor: U16::new(9),
            battery_centivolts: U16::new(300),
            terminal_info: TerminalInfo::for_attendance(AttendanceKind::ClockIn).0,
            reserved: [0xAB, 0xCD],
        },
    })
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn registered_beacons_name_and_place_bluetooth_reports() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "beacons");
    let log = temp_dir("beacons");
    let mut c = config(&url, &db, &log);
    c.beacons.refresh_secs = 0;
    let client = badge_ingest::sink::clickhouse::client(&c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 1 and 2 have positions; 3 is heard but unregistered; 9 is the punch's.
    let registered = vec![
        beacon(1, "Gate A", 22.5401, 113.9401, "Gate A, Building 1"),
        beacon(2, "Lab", 22.5402, 113.9402, "Lab, Building 2"),
        beacon(9, "Canteen", 22.5409, 113.9409, "Canteen"),
    ];
    rt.block_on(beacons::import(&client, &db, &registered))
        .unwrap();
    let app = App::start(Arc::new(c)).expect("starts");
    let mut control = Control::connect(&app);
    assert!(
        control.ask("beacons").starts_with("registry: 3 beacons"),
        "loaded at start"
    );

    let mut badge = Badge::connect(app.local_addr(), imei(201));
    badge.login();
    // 3 is the strongest but unknown; 1 (-60) beats 2 (-75).
    let heard = [sighting(-60, 1), sighting(-75, 2), sighting(-50, 3)];
    badge.send(&Message::BluetoothLocation(BluetoothLocation {
        time: time(),
        beacons: &heard,
    }));
    badge.exchange(&punch(9));

    let unknown = control.ask("beacons unknown");
    assert!(
        unknown.starts_with("1 unknown beacons") && unknown.contains("C1:00:00:00:00:03"),
        "{unknown}"
    );
    // Registering 3 and reloading: it is known from then on.
    rt.block_on(beacons::import(
        &client,
        &db,
        &[beacon(3, "Store", 22.5403, 113.9403, "Store")],
    ))
    .unwrap();
    assert_eq!(
        control.ask("beacons reload"),
        "beacon registry reloaded: 4 beacons"
    );
    assert_eq!(control.ask("beacons unknown"), "0 unknown beacons");
    drop(control);

    let shards = shutdown_app(app).expect("stops");
    let total = badge_ingest::metrics::ShardMetrics::total(&shards);
    assert_eq!(
        (total.counters.beacons_known, total.counters.beacons_unknown),
        (3, 1)
    );

    let rows = query(
        &url,
        &format!(
            "SELECT kind, hex(mac), beacon_known, beacon_name, is_best, round(beacon_lat, 4), beacon_address \
             FROM {db}.bluetooth ORDER BY kind, beacon_index FORMAT TSV"
        ),
    );
    assert_eq!(
        rows.trim(),
        [
            "punch\tC10000000009\t1\tCanteen\t0\t22.5409\tCanteen",
            "location\tC10000000001\t1\tGate A\t1\t22.5401\tGate A, Building 1",
            "location\tC10000000002\t1\tLab\t0\t22.5402\tLab, Building 2",
            "location\tC10000000003\t0\t\t0\t0",
        ]
        .join("\n")
    );
    let location = query(
        &url,
        &format!(
            "SELECT source, position_source, round(lat, 4), round(lon, 4), address, protocol \
             FROM {db}.locations FORMAT TSV"
        ),
    );
    assert_eq!(
        location.trim(),
        "beacon\tbeacon\t22.5401\t113.9401\tGate A, Building 1\t179"
    );
    query(&url, &format!("DROP DATABASE {db}"));
}

#[test]
fn watch_streams_every_event_kind_and_filters_by_kind() {
    let mut c = base_config();
    c.sink.kind = SinkKind::Count;
    let app = App::start(Arc::new(c)).expect("starts");
    let mut all = Control::connect(&app);
    all.send("watch");
    let header: Value = serde_json::from_str(&all.line()).unwrap();
    assert_eq!(header["watching"].as_array().unwrap().len(), 6);
    let mut alarms = Control::connect(&app);
    alarms.send("watch alarm");
    assert_eq!(alarms.line(), r#"{"watching":["alarm"]}"#);
    let mut bad = Control::connect(&app);
    assert!(bad
        .ask("watch nonsense")
        .starts_with("error: unknown event kind `nonsense`"));

    let samples = Samples::new();
    let id = imei(301);
    let mut badge = Badge::connect(app.local_addr(), id);
    badge.login();
    for m in samples.messages().iter().filter(|m| {
        matches!(
            m,
            Message::Gps(_)
                | Message::Alarm(_)
                | Message::Attendance(_)
                | Message::BluetoothPunch(_)
        )
    }) {
        badge.exchange(m);
    }
    let mut ctl = Control::connect(&app);
    let sent = ctl.ask(&format!("send {id} WHERE#"));
    assert!(sent.ends_with(" sent"), "{sent}");
    drop(badge);

    let want = [
        "status",
        "location",
        "alarm",
        "attendance",
        "bluetooth",
        "command",
    ];
    let mut seen = std::collections::HashMap::<String, Value>::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while want.iter().any(|k| !seen.contains_key(*k))
        || seen.get("status").is_some_and(|s| s["status"] != "offline")
    {
        assert!(
            Instant::now() < deadline,
            "missing kinds; seen {:?}",
            seen.keys()
        );
        let event: Value = serde_json::from_str(&all.line()).unwrap();
        assert_eq!(event["imei"], id.to_string(), "{event}");
        seen.insert(event["kind"].as_str().unwrap().to_string(), event);
    }
    assert_eq!(seen["location"]["has_position"], 1);
    assert!(seen["command"]["text"] == "WHERE#", "{}", seen["command"]);

    // The filtered watcher got the alarms (4 samples) and nothing else.
    for _ in 0..4 {
        let event: Value = serde_json::from_str(&alarms.line()).unwrap();
        assert_eq!(event["kind"], "alarm");
    }
    drop((all, alarms));
    shutdown_app(app).expect("stops");
}

#[test]
fn a_webhook_gets_the_server_events_signed_after_a_500() {
    let hook = FakeServer::answering_in_turn(|n| if n == 0 { 500 } else { 200 });
    let mut c = base_config();
    c.sink.kind = SinkKind::Count;
    c.events.webhooks = vec![WebhookConfig {
        url: hook.url("/hook"),
        kinds: vec!["alarm".into()],
        secret: "s3cret".into(),
        batch_age_ms: 50,
        backoff_ms: 50,
        ..WebhookConfig::default()
    }];
    let app = App::start(Arc::new(c)).expect("starts");
    let samples = Samples::new();
    let mut badge = Badge::connect(app.local_addr(), imei(401));
    badge.login();
    for m in samples
        .messages()
        .iter()
        .filter(|m| matches!(m, Message::Alarm(_) | Message::Gps(_)))
    {
        badge.exchange(m);
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            app.events().stats().webhooks[0].delivered == 4
        }),
        "{:?}",
        app.events().stats()
    );
    let stats = app.events().stats().webhooks[0].clone();
    assert_eq!((stats.retries, stats.failed, stats.overflow), (1, 0, 0));
    let seen = hook.seen();
    let last = seen.last().unwrap();
    let signature = last.header("X-Badge-Signature").expect("signed");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&last.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(signature, format!("sha256={expected}"));
    // The retried body carries the alarms (and only alarms) once.
    let body = last.json();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e["kind"] == "alarm"));
    shutdown_app(app).expect("stops");
}

#[test]
fn a_watcher_that_stops_reading_is_dropped_with_a_notice_and_ingestion_goes_on() {
    let mut c = base_config();
    c.sink.kind = SinkKind::Count;
    c.events.watcher_queue = 64;
    let app = App::start(Arc::new(c)).expect("starts");
    let mut slow = Control::connect(&app);
    slow.send("watch location");
    assert_eq!(slow.line(), r#"{"watching":["location"]}"#);

    // Far more than the socket buffers hold, while the watcher reads nothing.
    let mut badge = Badge::connect(app.local_addr(), imei(501));
    badge.login();
    let frames = 30_000;
    let started = Instant::now();
    // The badge sends from its own thread: the watcher must be read soon
    // after its drop, before the server's write timeout cuts it off
    // mid-line, however long a slow build takes to send every frame.
    let sender = std::thread::spawn(move || {
        let samples = Samples::new();
        let gps = samples
            .messages()
            .into_iter()
            .find(|m| matches!(m, Message::Gps(_)))
            .unwrap();
        for _ in 0..frames {
            badge.send(&gps);
        }
    });
    let records = || {
        badge_ingest::metrics::ShardMetrics::total(&app.handle().metrics())
            .counters
            .records
    };
    // Publishing went on past a watcher that reads nothing: that is what
    // fills its queue and drops it.
    assert!(
        wait_until(Duration::from_secs(30), || {
            app.events().stats().watchers_dropped == 1
        }),
        "the stalled watcher was not dropped: {} records",
        records()
    );
    let at_drop = records();

    // Reading now: what was buffered, then the notice and the end of the answer.
    let mut notice = None;
    loop {
        let l = slow.line();
        if l.is_empty() {
            break;
        }
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        if v.get("notice").is_some() {
            notice = Some(v);
        }
    }
    let notice = notice.expect("a notice line before the end");
    assert!(
        notice["notice"].as_str().unwrap().starts_with("dropped"),
        "{notice}"
    );
    sender.join().expect("the badge sent every frame");
    assert!(
        wait_until(Duration::from_secs(30), || records() > frames),
        "ingestion stopped with the watcher: {} records",
        records()
    );
    let ingest = started.elapsed();
    assert!(at_drop < frames, "the watcher was dropped only at the end");
    eprintln!("{frames} GPS frames ingested in {ingest:?} with a stalled watcher");
    shutdown_app(app).expect("stops");
}
