//! ClickHouse killed in the middle of a stream: nothing the server accepted
//! is lost, and the log is replayed once ClickHouse is back. In a test binary
//! of its own, because it stops the ClickHouse every other test shares.

mod pipeline_support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipeline_support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clickhouse.sh");

fn clickhouse_script(arg: &str) -> Result<String, String> {
    let out = Command::new(SCRIPT)
        .arg(arg)
        .output()
        .map_err(|e| format!("{SCRIPT} {arg}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "clickhouse.sh {arg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn answers(url: &str) -> bool {
    try_query(url, "SELECT 1").is_ok_and(|b| b.trim() == "1")
}

/// Brings ClickHouse back however the test ends: a failed assertion
/// between the kill and the restart must not leave every later test (and
/// the next run) without one.
struct RestartOnDrop {
    url: String,
    done: bool,
}

impl RestartOnDrop {
    fn restart(&mut self) -> Result<(), String> {
        self.done = true;
        if !answers(&self.url) {
            clickhouse_script("start")?;
        }
        if wait_until(Duration::from_secs(30), || answers(&self.url)) {
            Ok(())
        } else {
            Err(format!("{} does not answer after the restart", self.url))
        }
    }
}

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(e) = self.restart() {
            // Already unwinding from the test's own failure: say it, do not abort.
            eprintln!("restarting ClickHouse after a failed test: {e}");
            if !std::thread::panicking() {
                panic!("{e}");
            }
        }
    }
}

/// The pid of the ClickHouse at `url`, from the pid file `scripts/test.sh`
/// exports, after checking that the script would restart that same server.
fn clickhouse_pid(url: &str) -> i32 {
    let pid_file = std::env::var("BADGE_TEST_CLICKHOUSE_PID_FILE")
        .ok()
        .filter(|p| !p.is_empty())
        .expect("BADGE_TEST_CLICKHOUSE_PID_FILE is not set: run the tests with scripts/test.sh");
    // The restart goes through the script: it must mean the same server.
    assert_eq!(
        clickhouse_script("pidfile").unwrap(),
        pid_file,
        "scripts/clickhouse.sh (BADGE_CH_* variables) names another pid file than the tests were given"
    );
    assert_eq!(
        clickhouse_script("url").unwrap().trim_end_matches('/'),
        url.trim_end_matches('/'),
        "scripts/clickhouse.sh (BADGE_CH_* variables) names another server than BADGE_TEST_CLICKHOUSE_URL"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{pid_file}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{pid_file}: {e}"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("clickhouse"),
        "pid {pid} from {pid_file} is not a ClickHouse server"
    );
    pid
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_clickhouse_outage_loses_nothing_and_the_log_is_replayed() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "outage");
    let log = temp_dir("outage");
    let mut config = config(&url, &db, &log);
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
                    // Pacing, not synchronisation: a steady stream across the outage.
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();

    assert!(
        wait_until(Duration::from_secs(10), || stats.written_total() > 50),
        "no rows before the outage"
    );
    let pid = clickhouse_pid(&url);
    let mut guard = RestartOnDrop {
        url: url.clone(),
        done: false,
    };
    // SIGKILL: no clean shutdown, in-flight inserts die with it.
    // SAFETY: kill(2) with a pid read from ClickHouse's own pid file, checked above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    assert!(
        wait_until(Duration::from_secs(10), || !answers(&url)),
        "{url} still answers after killing pid {pid}: the test did not stop its ClickHouse"
    );
    let during = acked.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(20), || stats
            .insert_failures
            .load(Ordering::Relaxed)
            > 0),
        "no insert failed while ClickHouse was down"
    );
    assert!(
        wait_until(Duration::from_secs(10), || acked.load(Ordering::Relaxed)
            > during + 200),
        "the server stopped answering during the outage"
    );
    guard.restart().unwrap();
    // Traffic goes on after ClickHouse is back, beside the rows read back from the log.
    let back = acked.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(10), || acked.load(Ordering::Relaxed)
            > back + 100),
        "the server stopped answering after ClickHouse came back"
    );
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let stats = running.stop();
    assert!(
        stats.replayed_rows.load(Ordering::Relaxed) > 0,
        "the rows of the outage were read back from the log"
    );
    assert!(logs_fully_inserted(&log, 2), "rows left in the log");
    let accepted = acked.load(Ordering::Relaxed);
    // At-least-once: an insert killed mid-flight may have landed and been
    // spooled too. Every accepted heartbeat must be there exactly once by
    // ingest key; extra copies of a key are allowed, and reported.
    let distinct = count(
        &url,
        &format!(
            "SELECT uniqExact(ingest_instance, ingest_shard, ingest_seq) FROM {db}.heartbeats"
        ),
    );
    let total = count(&url, &format!("SELECT count() FROM {db}.heartbeats"));
    let duplicated_keys = count(
        &url,
        &format!(
            "SELECT count() FROM (SELECT ingest_instance, ingest_shard, ingest_seq FROM {db}.heartbeats \
             GROUP BY ingest_instance, ingest_shard, ingest_seq HAVING count() > 1)"
        ),
    );
    assert_eq!(
        distinct,
        accepted,
        "accepted {accepted} heartbeats, stored {distinct} distinct ingest keys \
         ({total} rows, {} duplicate rows over {duplicated_keys} keys)",
        total - distinct
    );
    eprintln!(
        "accepted {accepted} heartbeats; replayed {} rows from the log; stored {total} rows, \
         {distinct} distinct, {} duplicate rows over {duplicated_keys} keys",
        stats.replayed_rows.load(Ordering::Relaxed),
        total - distinct
    );
    query(&url, &format!("DROP DATABASE {db}"));
}
