//! `badge-ingest serve`, the real binary, stopped by SIGTERM or SIGINT:
//! it exits 0 after writing every record it acknowledged and a logout row
//! per badge. ClickHouse batches are set to wait a minute, so what is
//! stored there was flushed by the shutdown, not before it.

mod pipeline_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline_support::serve::{listen_addr, Serve};
use pipeline_support::*;

const BADGES: u64 = 3;
const HEARTBEATS: u64 = 5;

/// A config file for what has no flag: batches that wait a minute.
fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("serve.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nsummary_interval_secs = 0\ninstance = \"signals\"\n\n[sink]\nbatch_age_ms = 60000\n\n[log]\ndir = {:?}\n",
            dir.join("log")
        ),
    )
    .unwrap();
    path
}

/// Badges that log in and send heartbeats and a GPS fix, each read by the
/// server (the heartbeats acknowledged, the GPS fix followed by one).
/// Returns the connections, still open.
fn traffic(addr: SocketAddr, first: u64) -> Vec<Badge> {
    let samples = Samples::new();
    let messages = samples.messages();
    let heartbeat = &messages[0];
    let gps = messages
        .iter()
        .find(|m| matches!(m, badge_ingest::protocol::Message::Gps(_)))
        .unwrap();
    (0..BADGES)
        .map(|n| {
            let mut b = Badge::connect(addr, imei(first + n));
            b.login();
            b.send(gps);
            for _ in 0..HEARTBEATS {
                b.exchange(heartbeat);
            }
            b
        })
        .collect()
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn sigterm_flushes_every_record_to_clickhouse_and_logs_every_badge_out() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "sigterm");
    let dir = temp_dir("sigterm");
    let log = dir.join("log");
    let config = config_file(&dir);
    let mut serve = Serve::start(
        &[
            "--sink",
            "clickhouse",
            "--clickhouse-url",
            &url,
            "--database",
            &db,
            "--log-dir",
            log.to_str().unwrap(),
        ],
        &config,
    );
    let addr = listen_addr(&serve.wait_log("listening for badges", Duration::from_secs(30)));
    let badges = traffic(addr, 800);
    let lo = imei(800).as_u64();
    let hi = imei(800 + BADGES - 1).as_u64();
    let rows = |table: &str| {
        count(
            &url,
            &format!("SELECT count() FROM {db}.{table} WHERE imei BETWEEN {lo} AND {hi}"),
        )
    };
    assert_eq!(rows("heartbeats"), 0, "batches were meant to wait");

    serve.signal(libc::SIGTERM);
    assert_eq!(serve.wait_exit(Duration::from_secs(60)), Some(0));
    drop(badges);

    assert_eq!(rows("heartbeats"), BADGES * HEARTBEATS);
    assert_eq!(rows("locations"), BADGES);
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT count() - uniqExact(ingest_instance, ingest_shard, ingest_seq) FROM {db}.heartbeats"
            )
        ),
        0
    );
    assert_eq!(
        query(
            &url,
            &format!(
                "SELECT event, reason, count() FROM {db}.device_events WHERE imei BETWEEN {lo} AND {hi} \
                 GROUP BY event, reason ORDER BY event FORMAT TSV"
            )
        ),
        format!("login\t\t{BADGES}\nlogout\tshutdown\t{BADGES}\n")
    );
    // Nothing was left for a later start to replay.
    assert!(
        logs_fully_inserted(&log, 2),
        "rows left in the log for a later start"
    );
    query(&url, &format!("DROP DATABASE {db}"));
}

#[test]
fn sigint_flushes_every_record_to_the_file_sink_and_logs_every_badge_out() {
    let dir = temp_dir("sigint");
    let out = dir.join("rows.jsonl");
    let config = config_file(&dir);
    let mut serve = Serve::start(
        &["--sink", "file", "--sink-file", out.to_str().unwrap()],
        &config,
    );
    let addr = listen_addr(&serve.wait_log("listening for badges", Duration::from_secs(30)));
    // The file sink writes rows as they come; the logouts can only come
    // from the shutdown.
    let badges = traffic(addr, 850);

    serve.signal(libc::SIGINT);
    assert_eq!(serve.wait_exit(Duration::from_secs(60)), Some(0));
    drop(badges);

    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |table: &str| rows.iter().filter(|r| r["table"] == table).count() as u64;
    assert_eq!(of("heartbeats"), BADGES * HEARTBEATS);
    assert_eq!(of("locations"), BADGES);
    let mut events: Vec<(i64, String)> = rows
        .iter()
        .filter(|r| r["table"] == "device_events")
        .map(|r| {
            (
                r["event"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    events.sort();
    let mut want = vec![(1, String::new()); BADGES as usize];
    want.extend(vec![(2, "shutdown".to_string()); BADGES as usize]);
    assert_eq!(events, want, "a login and a shutdown logout per badge");
    assert_eq!(rows.len() as u64, BADGES * (HEARTBEATS + 1 + 2));
    let keys: std::collections::HashSet<_> = rows
        .iter()
        .map(|r| (r["ingest_shard"].as_u64(), r["ingest_seq"].as_u64()))
        .collect();
    assert_eq!(keys.len(), rows.len(), "every row once");
}
