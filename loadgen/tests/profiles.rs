//! badge-loadgen against the real server, for every profile: 200 badges for
//! 10 s, no mismatch, every expected reply received. The server runs in
//! this process (count sink); loadgen runs as the real binary.

use std::process::Command;
use std::sync::Arc;

use badge_ingest::config::{Config, SinkKind};

fn run_profile(profile: &str) {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.control = "127.0.0.1:0".into();
    config.server.shards = 2;
    config.server.summary_interval_secs = 0;
    config.sink.kind = SinkKind::Count;
    config.validate().unwrap();
    let config = Arc::new(config);
    let (sink, workers) = badge_ingest::sink::start(&config).unwrap();
    let server = badge_ingest::server::start(config, sink).unwrap();
    let target = server.local_addr().to_string();

    let out = Command::new(env!("CARGO_BIN_EXE_badge-loadgen"))
        .args([
            "--target",
            &target,
            "--devices",
            "200",
            "--duration",
            "10",
            "--profile",
            profile,
            "--json",
        ])
        .output()
        .expect("badge-loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{profile}: no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });

    // Loadgen has closed its connections; let the server read them to the end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while badge_ingest::metrics::ShardMetrics::total(&server.metrics())
        .counters
        .connections_open
        > 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let shards = server.shutdown();
    workers.finish().unwrap();

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
