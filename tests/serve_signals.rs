//! `badge-ingest serve`, the real binary, stopped by SIGTERM or SIGINT:
//! it exits 0 after writing every record it acknowledged and a logout row
//! per badge. ClickHouse batches are set to wait a minute, so what is
//! stored there was flushed by the shutdown, not before it.

mod pipeline_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pipeline_support::*;

const BADGES: u64 = 3;
const HEARTBEATS: u64 = 5;

/// The server process, killed if the test ends without it having exited.
struct Serve {
    child: Child,
    /// Its log lines (stderr), as they come.
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serve {
    fn start(args: &[&str], config: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_badge-ingest"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--shards", "2", "--log-json"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Nothing from the caller's environment may change the server under test.
        for (key, _) in std::env::vars() {
            if key.starts_with("BADGE_") && !key.starts_with("BADGE_TEST_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("badge-ingest serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            log,
            seen: Vec::new(),
        }
    }

    /// The `fields` of the first log line with this message, within `within`.
    fn wait_log(&mut self, message: &str, within: Duration) -> serde_json::Value {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if v["fields"]["message"] == message {
                        return v["fields"].clone();
                    }
                }
                Err(_) => panic!(
                    "no {message:?} in the server's log within {within:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// The exit code, or a failure (with the log) after `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= end {
                while let Ok(line) = self.log.try_recv() {
                    self.seen.push(line);
                }
                panic!(
                    "the server did not exit within {within:?} of the signal:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

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

fn listen_addr(fields: &serde_json::Value) -> SocketAddr {
    fields["listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {fields}"))
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
