//! ClickHouse killed in the middle of a stream: nothing the server accepted
//! is lost, and the spool drains once ClickHouse is back. In a test binary
//! of its own, because it stops the ClickHouse every other test shares.

mod pipeline_support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipeline_support::*;

fn clickhouse_script(arg: &str) -> String {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/clickhouse.sh"
    ))
    .arg(arg)
    .output()
    .expect("scripts/clickhouse.sh runs");
    assert!(
        out.status.success(),
        "clickhouse.sh {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_clickhouse_outage_loses_nothing_and_the_spool_drains() {
    let Some(url) = clickhouse_url() else { return };
    let db = fresh_database(&url, "outage");
    let spool = temp_dir("outage");
    let mut config = config(&url, &db, &spool);
    config.sink.batch_rows = 200;
    let running = start(config);
    let addr = running.addr();
    let stats = running.workers.stats.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let samples = Samples::new();
                let heartbeat = &samples.messages()[0];
                let mut badge = Badge::connect(addr, imei(500 + i));
                badge.login();
                while !stop.load(Ordering::Relaxed) {
                    badge.exchange(heartbeat);
                    acked.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();

    assert!(
        wait_until(Duration::from_secs(10), || stats.written_total() > 50),
        "no rows before the outage"
    );
    let pid: i32 = std::fs::read_to_string(clickhouse_script("pidfile"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL: no clean shutdown, in-flight inserts die with it.
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let during = acked.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(20), || stats
            .spooled_rows
            .load(Ordering::Relaxed)
            > 0),
        "nothing was spooled while ClickHouse was down"
    );
    assert!(
        wait_until(Duration::from_secs(10), || acked.load(Ordering::Relaxed)
            > during + 200),
        "the server stopped answering during the outage"
    );
    clickhouse_script("start");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(60), || stats.spool_size() == (0, 0)),
        "spool did not drain: {:?}",
        stats.spool_size()
    );
    let stats = running.stop();
    assert_eq!(stats.spool_size(), (0, 0));
    let accepted = acked.load(Ordering::Relaxed);
    // At-least-once: an insert killed mid-flight may have landed and been
    // spooled too, so count distinct ingest keys: every accepted heartbeat is there.
    let distinct = count(
        &url,
        &format!(
            "SELECT uniqExact(ingest_instance, ingest_shard, ingest_seq) FROM {db}.heartbeats"
        ),
    );
    let total = count(&url, &format!("SELECT count() FROM {db}.heartbeats"));
    assert_eq!(
        distinct, accepted,
        "accepted {accepted}, stored {distinct} distinct ({total} rows)"
    );
    assert!(total >= distinct);
    eprintln!(
        "accepted {accepted} heartbeats; spooled {} rows in {} batches; stored {total} rows, {distinct} distinct",
        stats.spooled_rows.load(Ordering::Relaxed),
        stats.spooled_batches.load(Ordering::Relaxed)
    );
    query(&url, &format!("DROP DATABASE {db}"));
}
