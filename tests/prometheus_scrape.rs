//! A real Prometheus (Debian's `prometheus`, which `scripts/test.sh`
//! installs) scrapes a loaded server whose control socket has a token, with
//! the token as a bearer, and answers the standard latency query over the
//! histograms: `histogram_quantile(0.99, sum(rate(..._bucket[1m])) by (le))`;
//! then every PromQL expression of the Grafana dashboard
//! (`deploy/grafana/badge-ingest.json`) is valid and returns data. Rows go
//! to a real ClickHouse, so that the insert figures have data too.

mod pipeline_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::app::App;
use badge_ingest::config::{ControlAddr, SinkKind};
use pipeline_support::*;

const TOKEN: &str = "scrape-token-0123456789";

/// GET `path` from `addr`: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// An instant query: its status and the values of its results.
fn query_all(prom: SocketAddr, promql: &str) -> Option<(String, Vec<f64>)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (_, body) = get(prom, &format!("/api/v1/query?query={encoded}"))?;
    // Chunked or not, the JSON is the part from the first brace.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let status = v["status"].as_str()?.to_string();
    let values = v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Some((status, values))
}

/// The value of an instant query's first result, once there is one.
fn query(prom: SocketAddr, promql: &str) -> Option<f64> {
    query_all(prom, promql)?.1.first().copied()
}

#[test]
fn a_real_prometheus_scrapes_with_a_bearer_token_and_aggregates_the_histograms() {
    let binary = std::env::var("BADGE_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let dir = temp_dir("prometheus-scrape");
    let url = clickhouse_url();
    let db = fresh_database(&url, "scrape");
    let mut c = loopback_config(2);
    c.sink.kind = SinkKind::ClickHouse;
    c.clickhouse.url = url;
    c.clickhouse.database = db;
    c.sink.batch_age_ms = 200;
    c.server.control_token = TOKEN.into();
    c.validate().unwrap();
    let app = App::start(Arc::new(c)).expect("starts");
    let ControlAddr::Tcp(control) = app.control_addr().clone() else {
        panic!("a TCP control socket")
    };

    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: badge\n    authorization:\n      type: Bearer\n      credentials: {TOKEN}\n    \
             static_configs:\n      - targets: ['{control}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed::spawn(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap()),
        "prometheus",
    );
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || get(prom, "/-/ready")
            .is_some_and(|(status, _)| status.contains(" 200"))),
        "Prometheus did not get ready"
    );

    // Badges keep sending while Prometheus scrapes.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = app.local_addr();
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let samples = Samples::new();
            let mut badges: Vec<Badge> = (0..20)
                .map(|i| Badge::connect(addr, imei(700 + i)))
                .collect();
            for b in &mut badges {
                b.login();
            }
            while !stop.load(Ordering::Relaxed) {
                for b in &mut badges {
                    b.exchange(&samples.messages()[0]);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let started = Instant::now();
    let up = || query(prom, "up{job=\"badge\"}");
    let p99 = || {
        query(
            prom,
            "histogram_quantile(0.99, sum(rate(badge_reply_latency_seconds_bucket[1m])) by (le))",
        )
    };
    let mut answer = None;
    let answered = wait_until(Duration::from_secs(90), || {
        answer = p99().filter(|v| v.is_finite() && *v > 0.0);
        answer.is_some()
    });
    // Every panel's expressions, while the load goes on: valid, and with
    // data (a number for every series; inserts, commits and rows happen).
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/badge-ingest.json"
        ))
        .unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            exprs.push((
                panel["title"].as_str().unwrap_or("?").to_string(),
                expr.to_string(),
            ));
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut missing = Vec::new();
    let all_answer = wait_until(Duration::from_secs(60), || {
        missing = exprs
            .iter()
            .filter(|(_, e)| {
                !query_all(prom, e).is_some_and(|(status, values)| {
                    status == "success"
                        && !values.is_empty()
                        && values.iter().all(|v| v.is_finite())
                })
            })
            .cloned()
            .collect();
        missing.is_empty()
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        up(),
        Some(1.0),
        "the scrape with the bearer token failed\n{log}"
    );
    assert!(
        answered,
        "no p99 from the histograms after {:?}\n{log}",
        started.elapsed()
    );
    let p99 = answer.unwrap();
    // The server's own replies take microseconds to milliseconds here.
    assert!(p99 < 1.0, "reply p99 {p99} s");
    assert!(
        all_answer,
        "dashboard expressions without data: {missing:#?}"
    );
    eprintln!(
        "Prometheus: reply p99 {:.6} s after {:?}",
        p99,
        started.elapsed()
    );
    app.shutdown().expect("stops");
}
