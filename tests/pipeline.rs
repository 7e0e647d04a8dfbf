//! The ClickHouse pipeline against a real ClickHouse: every message type to
//! its rows, the durable log surviving a restart of the server, and the schema.

mod pipeline_support;

use std::time::Duration;

use pipeline_support::*;

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn every_message_type_lands_in_its_table_with_its_values() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "all");
    let log = temp_dir("all");
    let running = start(config(&url, &db, &log));
    let samples = Samples::new();
    let devices = [imei(1), imei(2), imei(3)];
    let mut badges: Vec<Badge> = devices
        .iter()
        .map(|i| Badge::connect(running.addr(), *i))
        .collect();
    // What the first badge sent as its unknown frame: raw_frames must hold exactly these bytes.
    let mut raw_sent = None;
    for (i, b) in badges.iter_mut().enumerate() {
        b.login();
        for m in samples.messages() {
            let sent = b.exchange(&m);
            if i == 0 && matches!(m, badge_ingest::protocol::Message::Unknown { .. }) {
                raw_sent = Some(sent);
            }
        }
    }
    let raw_sent = raw_sent.expect("the samples have an unknown frame");
    // A final acknowledged heartbeat proves every earlier frame was read.
    for b in &mut badges {
        b.exchange(&samples.messages()[0]);
    }
    let stats = running.stop();
    assert_eq!(
        stats
            .replayed_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every row went in from memory"
    );
    assert!(logs_fully_inserted(&log, 2), "every row is in ClickHouse");

    let n = devices.len() as u64;
    let lo = devices.iter().map(|i| i.as_u64()).min().unwrap();
    let hi = devices.iter().map(|i| i.as_u64()).max().unwrap();
    let count_in = |table: &str| {
        count(
            &url,
            &format!("SELECT count() FROM {db}.{table} WHERE imei BETWEEN {lo} AND {hi}"),
        )
    };
    for (table, rows) in SAMPLE_ROWS {
        let extra = if *table == "heartbeats" { 1 } else { 0 };
        assert_eq!(count_in(table), (rows + extra) * n, "{table}");
    }
    // One login and, at shutdown, one logout per badge.
    assert_eq!(
        query(&url, &format!("SELECT event, reason, count() FROM {db}.device_events GROUP BY event, reason ORDER BY event FORMAT TSV")),
        format!("login\t\t{n}\nlogout\tshutdown\t{n}\n")
    );

    let one = devices[0].as_u64();
    let q = |sql: String| {
        query(
            &url,
            &sql.replace("{db}", &db).replace("{imei}", &one.to_string()),
        )
    };
    // GPS in both hemispheres, with device time read as UTC+8 and stored in UTC.
    let t = time_unix();
    assert_eq!(
        q("SELECT source, round(lat, 5), round(lon, 5), speed_kmh, course, satellites, mcc, lac, cell_id, mileage, toUInt32(device_time), device_time_valid \
           FROM {db}.locations WHERE imei = {imei} AND source IN ('gps', 'gps_4g') ORDER BY source FORMAT TSV".into()),
        format!(
            "gps\t22.5431\t114.05787\t12\t90\t9\t460\t10133\t940577\t1234\t{t}\t1\n\
             gps_4g\t-33.8688\t151.2093\t0\t0\t6\t0\t0\t0\t0\t{t}\t1\n"
        )
    );
    // LBS and WiFi: serving cell, non-empty neighbours only, APs as integers.
    assert_eq!(
        q("SELECT source, lac, cell_id, rssi, cells.lac, cells.cell_id, wifi.mac, wifi.rssi FROM {db}.locations \
           WHERE imei = {imei} AND source IN ('lbs', 'wifi', 'lbs_4g') ORDER BY source, protocol FORMAT TSV".into()),
        "lbs\t10133\t940577\t60\t[10133,10134]\t[940578,940801]\t[]\t[]\n\
         lbs\t10133\t940577\t60\t[10133,10134]\t[940578,940801]\t[]\t[]\n\
         lbs_4g\t75669\t4535755009\t70\t[75669]\t[4535755010]\t[]\t[]\n\
         wifi\t10133\t940577\t60\t[10133,10134]\t[940578,940801]\t[189267380863491,189267380863492]\t[70,65]\n"
    );
    assert_eq!(
        q("SELECT source, has_position, round(lat, 4), mcc, lac, cell_id FROM {db}.locations WHERE imei = {imei} \
           AND source IN ('lbs_address_req', 'address_query', 'lbs_4g_address_req') ORDER BY source FORMAT TSV".into()),
        "lbs_address_req\t0\t0\t460\t10133\t940577\naddress_query\t1\t22.5431\t0\t0\t0\nlbs_4g_address_req\t0\t0\t460\t75669\t4535755009\n"
    );
    assert_eq!(
        q("SELECT source, alarm_code, alarm_type, fence_id, has_position, round(lat, 4), battery, length(wifi.mac) \
           FROM {db}.alarms WHERE imei = {imei} ORDER BY source FORMAT TSV".into()),
        "single_fence\t1\tsos\t0\t1\t22.5431\t85\t0\n\
         multi_fence\t5\texit_fence\t3\t1\t-33.8688\t85\t0\n\
         lbs\t2\tpower_cut\t0\t0\t0\t85\t0\n\
         wifi\t35\tfall\t0\t0\t0\t0\t2\n"
    );
    assert_eq!(
        q("SELECT protocol, kind, gps_positioned, battery, mcc, mnc, lac, length(cells.lac), length(wifi.mac), tz_offset_min \
           FROM {db}.attendance WHERE imei = {imei} ORDER BY protocol FORMAT TSV".into()),
        "176\tclock_in\t1\t100\t460\t0\t10133\t2\t2\t480\n177\tclock_out\t1\t100\t460\t11\t75669\t1\t0\t480\n"
    );
    assert_eq!(
        q("SELECT kind, attendance, beacon_index, beacon_count, hex(reinterpretAsString(mac)), rssi, round(battery, 2), battery_unit, major, minor \
           FROM {db}.bluetooth WHERE imei = {imei} ORDER BY kind, beacon_index FORMAT TSV".into()),
        "punch\tclock_in\t0\t1\t0900000000C1\t-58\t3\tV\t10\t9\n\
         location\tnone\t0\t3\t0100000000C1\t-60\t3.01\tV\t10\t1\n\
         location\tnone\t1\t3\t0200000000C1\t-75\t88\tpercent\t10\t2\n\
         location\tnone\t2\t3\t0300000000C1\t-50\t2.95\tV\t10\t3\n"
    );
    assert_eq!(
        q(
            "SELECT sub_protocol, iccid, imsi FROM {db}.device_info WHERE imei = {imei} FORMAT TSV"
                .into()
        ),
        "10\t89860112345678901234\t460011234567890\n"
    );
    assert_eq!(
        q("SELECT command_id, status, reply_text, server_flag FROM {db}.command_log WHERE imei = {imei} FORMAT TSV".into()),
        "42\treplied\tOK!\t42\n"
    );
    // The whole frame as it went out of the badge: serial, CRC and stop bytes included.
    let raw_hex: String = raw_sent.iter().map(|b| format!("{b:02X}")).collect();
    assert!(raw_hex.starts_with("7878085A010203"), "{raw_hex}");
    assert_eq!(
        q(
            "SELECT protocol, frame, crc_ok FROM {db}.raw_frames WHERE imei = {imei} FORMAT TSV"
                .into()
        ),
        format!("90\t{raw_hex}\t1\n")
    );
    assert_eq!(
        q("SELECT battery, gsm_signal, language, extension FROM {db}.heartbeats WHERE imei = {imei} ORDER BY protocol DESC, serial LIMIT 2 FORMAT TSV".into()),
        "86\t3\t2\tAABB\n87\t4\t1\t\n"
    );
    // Every row carries a unique ingest key.
    assert_eq!(
        count(&url, &format!("SELECT count() - uniqExact(ingest_instance, ingest_shard, ingest_seq) FROM {db}.locations")),
        0
    );
    query(&url, &format!("DROP DATABASE {db}"));
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn rows_logged_while_clickhouse_is_unreachable_are_replayed_after_a_restart() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "replay");
    let log = temp_dir("replay");
    // Nothing listens on port 9: every insert fails; the rows wait in the log.
    let mut unreachable = config("http://127.0.0.1:9", &db, &log);
    unreachable.sink.batch_rows = 5;
    let running = start(unreachable);
    let samples = Samples::new();
    let heartbeat = &samples.messages()[0];
    let mut badge = Badge::connect(running.addr(), imei(100));
    badge.login();
    for _ in 0..40 {
        badge.exchange(heartbeat);
    }
    drop(badge);
    let stats = running.stop();
    assert_eq!(stats.written_total(), 0);
    assert!(
        stats
            .insert_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the inserts were tried"
    );
    assert!(!logs_fully_inserted(&log, 2));
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.heartbeats")),
        0
    );

    // The same log, now with ClickHouse reachable: replayed without any new traffic.
    let running = start(config(&url, &db, &log));
    let stats = running.workers.stats.clone();
    // 1 login + 40 heartbeats + 1 offline.
    assert!(
        wait_until(Duration::from_secs(30), || stats.written_total() == 42),
        "replayed {} of 42 rows",
        stats.written_total()
    );
    running.stop();
    assert_eq!(
        stats
            .replayed_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        42
    );
    assert!(logs_fully_inserted(&log, 2));
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.heartbeats")),
        40
    );
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.device_events")),
        2
    );
    query(&url, &format!("DROP DATABASE {db}"));
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn the_schema_applies_twice_to_a_fresh_database() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "twice");
    let mut config = badge_ingest::config::Config::default();
    config.clickhouse.url = url.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let again = rt
        .block_on(badge_ingest::sink::clickhouse::apply_schema(&config, &db))
        .expect("second apply succeeds");
    // 001 creates the database, 002-013 twenty tables and views, 014 three
    // ALTERs, 015 the devices table.
    assert_eq!(again, 25, "statements applied the second time");
    assert_eq!(
        again,
        statements_on_disk(),
        "the embedded schema and schema/*.sql differ"
    );
    let objects = query(
        &url,
        &format!(
            "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name FORMAT TSV"
        ),
    );
    let want: String = [
        ("alarms", "MergeTree"),
        ("attendance", "MergeTree"),
        ("attendance_daily", "AggregatingMergeTree"),
        ("attendance_daily_attendance_mv", "MaterializedView"),
        ("attendance_daily_bluetooth_mv", "MaterializedView"),
        ("attendance_day", "View"),
        ("badge_latest", "AggregatingMergeTree"),
        ("badge_latest_device_info_mv", "MaterializedView"),
        ("badge_latest_events_mv", "MaterializedView"),
        ("badge_latest_heartbeats_mv", "MaterializedView"),
        ("badge_latest_locations_mv", "MaterializedView"),
        ("badge_now", "View"),
        ("beacons", "ReplacingMergeTree"),
        ("bluetooth", "MergeTree"),
        ("command_log", "MergeTree"),
        ("device_events", "MergeTree"),
        ("device_info", "MergeTree"),
        ("devices", "ReplacingMergeTree"),
        ("heartbeats", "MergeTree"),
        ("locations", "MergeTree"),
        ("raw_frames", "MergeTree"),
    ]
    .iter()
    .map(|(name, engine)| format!("{name}\t{engine}\n"))
    .collect();
    let missing: Vec<&str> = want
        .lines()
        .filter(|l| !objects.lines().any(|o| o == *l))
        .collect();
    let unexpected: Vec<&str> = objects
        .lines()
        .filter(|l| !want.lines().any(|w| w == *l))
        .collect();
    assert_eq!(
        objects, want,
        "missing {missing:?}, unexpected {unexpected:?}"
    );
    query(&url, &format!("DROP DATABASE {db}"));
}

/// Statements in schema/[0-9]*.sql on disk, split by the rules of
/// schema/README.md (drop `--` lines, a statement ends with `;` at the end
/// of a line, skip empty ones), independently of the crate's splitter.
fn statements_on_disk() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".sql") && name.starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no schema files in {}", dir.display());
    let mut n = 0;
    for f in files {
        let mut pending = String::new();
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            if line.trim_start().starts_with("--") {
                continue;
            }
            pending.push_str(line);
            pending.push('\n');
            if line.trim_end().ends_with(';') {
                if pending.trim().trim_end_matches(';').trim().is_empty() {
                    pending.clear();
                    continue;
                }
                n += 1;
                pending.clear();
            }
        }
        if !pending.trim().is_empty() {
            n += 1;
        }
    }
    n
}

/// Badges at UTC-5 and UTC+5:30, as their logins say: the device times of
/// their fixes are stored in true UTC (the reference decoded every badge's
/// clock as UTC+8), and each zone is kept with its login.
#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn device_times_of_badges_in_other_zones_are_stored_in_true_utc() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "zones");
    let log = temp_dir("zones");
    let running = start(config(&url, &db, &log));
    let samples = Samples::new();
    let fix_time = two_minutes_ago();
    let zones = [(imei(31), -300i16), (imei(32), 330)];
    for (device, zone) in zones {
        let mut badge = Badge::connect(running.addr(), device);
        badge.login_in_zone(zone);
        badge.exchange(&fix_at(fix_time, i32::from(zone)));
        // Acknowledged after the fix, which gets no reply: it was read.
        badge.exchange(&samples.messages()[0]);
    }
    running.stop();
    assert!(logs_fully_inserted(&log, 2), "every row is in ClickHouse");
    for (device, zone) in zones {
        let imei = device.as_u64();
        assert_eq!(
            stored_fix(&url, &db, device),
            format!("{fix_time}\t1"),
            "UTC{zone:+} min"
        );
        let login = query(
            &url,
            &format!(
                "SELECT tz_offset_min FROM {db}.device_events WHERE imei = {imei} AND protocol = 1"
            ),
        );
        assert_eq!(login.trim(), zone.to_string());
    }
}

/// With `protocol.zones_from_devices`, a zone in the `devices` table comes
/// before the one the badge's login gives (a badge set to the wrong zone),
/// and a badge without a row keeps its login's.
#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_zone_in_the_devices_table_comes_before_the_logins() {
    use badge_ingest::app::App;

    let url = clickhouse_url();
    let db = fresh_database(&url, "devzones");
    let log = temp_dir("devzones");
    let (listed, unlisted) = (imei(41), imei(42));
    query(
        &url,
        &format!(
            "INSERT INTO {db}.devices (imei, enabled, note, updated_at, utc_offset_minutes) VALUES \
             ('{listed}', 1, 'New York', 1700000000, -300)"
        ),
    );
    let mut c = config(&url, &db, &log);
    c.protocol.zones_from_devices = true;
    let app = App::start(std::sync::Arc::new(c)).expect("starts");
    let samples = Samples::new();
    let fix_time = two_minutes_ago();
    // Both logins say UTC+8; the listed badge's clock is really UTC-5.
    for (device, clock) in [(listed, -300), (unlisted, 480)] {
        let mut badge = Badge::connect(app.local_addr(), device);
        badge.login_in_zone(480);
        badge.exchange(&fix_at(fix_time, clock));
        badge.exchange(&samples.messages()[0]);
    }
    shutdown_app(app).expect("stops");
    assert!(logs_fully_inserted(&log, 2), "every row is in ClickHouse");
    for device in [listed, unlisted] {
        assert_eq!(
            stored_fix(&url, &db, device),
            format!("{fix_time}\t1"),
            "{device}"
        );
    }
}

/// Two minutes ago, in Unix seconds: a device time every window trusts.
fn two_minutes_ago() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 120
}

/// A GPS fix taken at `unix`, as a badge whose clock is `zone` minutes east
/// of UTC shows it.
fn fix_at(unix: i64, zone: i32) -> badge_ingest::protocol::Message<'static> {
    use badge_ingest::protocol::layout::{DeviceTime, Generation, GpsFix};
    badge_ingest::protocol::Message::Gps(badge_ingest::protocol::message::GpsReport {
        generation: Generation::G2,
        time: DeviceTime::from_unix(unix, zone),
        fix: GpsFix::new(22.5, 114.0, 12, 90, 9, true, true),
        tail: None,
    })
}

/// `device_time` (Unix seconds) and `device_time_valid` of `imei`'s location row.
fn stored_fix(url: &str, db: &str, imei: badge_ingest::protocol::Imei) -> String {
    let sql = format!(
        "SELECT toUnixTimestamp(device_time), device_time_valid FROM {db}.locations WHERE imei = {}",
        imei.as_u64()
    );
    query(url, &sql).trim().to_string()
}
