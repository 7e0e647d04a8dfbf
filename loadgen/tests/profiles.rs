//! badge-loadgen against the real server, for every profile: 200 badges for
//! 10 s, no mismatch, every expected reply received. The server runs in
//! this process (count sink); loadgen runs as the real binary.

#[path = "../../tests/pipeline_support/scratch.rs"]
mod scratch;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::config::{Config, SinkKind};

/// A 10 s run, its drain and its report take far less; a loadgen that
/// hangs is killed and fails the test instead of holding CI.
const LOADGEN_LIMIT: Duration = Duration::from_secs(120);
/// How long the server's shutdown, and then the sink's flush, may take.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` to completion, or kills it after `limit` and fails with
/// what it printed so far.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("badge-loadgen starts");
    // Read both pipes all along, so a chatty child never blocks on a full one.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "badge-loadgen did not finish within {limit:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `f` on a thread of its own; fails the test if it takes over `limit`.
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

fn run_profile(profile: &str) {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.control = "127.0.0.1:0".into();
    config.server.shards = 2;
    config.server.summary_interval_secs = 0;
    config.sink.kind = SinkKind::Count;
    config.log.dir = scratch::dir(&format!("{profile}-log"));
    config.log.max_bytes = 2 << 30;
    // Each log keeps a zero-filled spare segment: small ones keep the
    // tests' disk use small.
    config.log.segment_bytes = 8 << 20;
    config.validate().unwrap();
    let config = Arc::new(config);
    let (server, workers) = badge_ingest::app::start_ingest(config, Default::default()).unwrap();
    let target = server.local_addr().to_string();

    let mut loadgen = Command::new(env!("CARGO_BIN_EXE_badge-loadgen"));
    loadgen.args([
        "--target",
        &target,
        "--devices",
        "200",
        "--duration",
        "10",
        "--profile",
        profile,
        "--json",
    ]);
    let out = output_within(loadgen, LOADGEN_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{profile}: no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });

    // Loadgen has closed its connections; let the server read them to the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = badge_ingest::metrics::ShardMetrics::total(&server.metrics())
            .counters
            .connections_open;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{profile}: {open} connections still open 20 s after loadgen exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let shards = bounded("the server's shutdown", STOP_LIMIT, move || {
        server.shutdown()
    });
    bounded("the sink's flush", STOP_LIMIT, move || workers.finish()).unwrap();

    assert!(out.status.success(), "{profile}: loadgen failed:\n{stdout}");
    assert_eq!(report["ok"], true, "{profile}: {stdout}");
    assert_eq!(report["mismatches"], 0, "{profile}: {stdout}");
    assert_eq!(report["missing_replies"], 0, "{profile}: {stdout}");
    let mut expected = 0;
    for line in report["by_type"].as_array().expect("by_type") {
        assert_eq!(
            line["replies_received"], line["replies_expected"],
            "{profile}: {line}"
        );
        assert_eq!(line["mismatches"], 0, "{profile}: {line}");
        expected += line["replies_expected"].as_u64().unwrap();
    }
    assert!(expected > 0, "{profile}: no replies were expected at all");
    assert_eq!(
        report["replies_received"].as_u64().unwrap(),
        expected,
        "{profile}"
    );
    // What loadgen sent is what the server decoded: nothing lost, nothing invented.
    let total = badge_ingest::metrics::ShardMetrics::total(&shards);
    assert_eq!(
        total.frames_total(),
        report["frames_sent"].as_u64().unwrap(),
        "{profile}"
    );
    assert_eq!(
        total.frame.rejected() + total.counters.decode_errors,
        0,
        "{profile}"
    );
}

#[test]
fn realistic() {
    run_profile("realistic");
}

#[test]
fn burst() {
    run_profile("burst");
}

#[test]
fn reconnect_storm() {
    run_profile("reconnect-storm");
}

fn clickhouse_url() -> String {
    match std::env::var("BADGE_TEST_CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "BADGE_TEST_CLICKHOUSE_URL is not set: run the tests with scripts/test.sh \
             (or set BADGE_TEST_SKIP_CLICKHOUSE=1 to have this test reported as ignored)"
        ),
    }
}

/// Two runs over the same IMEIs into one database, each checked with
/// `--verify-clickhouse`: the second must count exactly its own rows, not
/// the first run's as well.
#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn verify_clickhouse_counts_exactly_this_runs_rows() {
    let url = clickhouse_url();
    let db = format!("t_loadgen_verify_{}", std::process::id());
    let spool = scratch::dir("verify-log");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.control = "127.0.0.1:0".into();
    config.server.shards = 2;
    config.server.summary_interval_secs = 0;
    config.sink.kind = SinkKind::ClickHouse;
    config.sink.batch_age_ms = 200;
    config.clickhouse.url = url.clone();
    config.clickhouse.database = db.clone();
    config.log.dir = spool.clone();
    config.log.segment_bytes = 8 << 20;
    config.validate().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(badge_ingest::sink::clickhouse::apply_schema(&config, &db))
        .expect("schema applies");
    let config = Arc::new(config);
    let (server, workers) = badge_ingest::app::start_ingest(config, Default::default()).unwrap();
    let target = server.local_addr().to_string();

    for run in 1..=2 {
        if run == 2 {
            // A row of the first run stamped in the very second the second
            // one starts (a logout the server saw late, say): it is the
            // first run's, and must not be counted as the second's.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            std::thread::sleep(Duration::from_secs(now.as_secs() + 1) - now);
            let imei = badge_ingest::protocol::Imei::with_check_digit(86_999_900_000_000).unwrap();
            clickhouse_post(
                &url,
                &format!(
                    "INSERT INTO {db}.device_events (imei, server_time, event, reason, ingest_instance, ingest_shard, ingest_seq) \
                     VALUES ({}, {}, 'logout', 'earlier run', 'earlier', 0, 1)",
                    imei.as_u64(),
                    now.as_secs() + 1
                ),
            );
        }
        let mut loadgen = Command::new(env!("CARGO_BIN_EXE_badge-loadgen"));
        loadgen.args([
            "--target",
            &target,
            "--devices",
            "20",
            "--duration",
            "3",
            "--heartbeat",
            "1",
            "--verify-clickhouse",
            &url,
            "--database",
            &db,
            "--json",
        ]);
        let out = output_within(loadgen, LOADGEN_LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "run {run}: no JSON report ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let verify = &report["verify"];
        assert_eq!(verify["ok"], true, "run {run}: {verify:#}");
        let tables = verify["tables"].as_array().expect("tables");
        for t in tables {
            assert_eq!(t["found"], t["expected"], "run {run}: {t}");
        }
        let rows: u64 = tables.iter().map(|t| t["found"].as_u64().unwrap()).sum();
        assert!(rows > 0, "run {run}: no rows expected at all: {verify:#}");
        assert!(out.status.success(), "run {run}: loadgen failed:\n{stdout}");
    }

    bounded("the server's shutdown", STOP_LIMIT, move || {
        server.shutdown()
    });
    bounded("the sink's flush", STOP_LIMIT, move || workers.finish()).unwrap();
    let _ = std::fs::remove_dir_all(&spool);
    clickhouse_post(&url, &format!("DROP DATABASE {db}"));
}

/// One statement over ClickHouse's HTTP interface; panics unless it answers 200.
fn clickhouse_post(url: &str, sql: &str) {
    use std::io::Write;
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "{sql}: {answer}"
    );
}
