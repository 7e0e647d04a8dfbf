//! The durable log when things go wrong around it, against a real
//! ClickHouse: a table ClickHouse refuses for good, a log that reaches its
//! limit during an outage, and a disk that fills up. In each, nothing
//! acknowledged is lost, and the rest goes on.

mod pipeline_support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use badge_ingest::app::App;
use badge_ingest::config::Config;
use badge_ingest::sink::SinkStats;
use pipeline_support::fleet::{check, Acked, Fleet};
use pipeline_support::proxy::Proxy;
use pipeline_support::*;

/// A badge waits this long for a reply: a server that stopped reading
/// because its log is full answers once it has room.
const PATIENCE: Duration = Duration::from_secs(60);

fn log_figure(stats: &SinkStats, f: impl Fn(&badge_ingest::log::LogStats) -> u64) -> u64 {
    stats.logs.iter().map(|l| f(l)).sum()
}

/// A ClickHouse outage (the proxy down) with badges sending: the log fills
/// to its limit, the shards stop reading (counted), nothing acknowledged is
/// lost; the outage ends, the log drains, and reading goes on.
fn outage_until_reading_stops(
    config: Config,
    proxy: &Proxy,
    url: &str,
    db: &str,
) -> (Vec<Acked>, Arc<SinkStats>) {
    let config = Arc::new(config);
    let app = App::start(config.clone()).expect("starts");
    let stats = app.sink_stats().clone();
    let fleet = Fleet::start(app.local_addr(), 5000, 20, PATIENCE);
    // Reading stops (the log full, or its commits failing: counted either
    // way): the count of acknowledgements stands still.
    let stopped = wait_until(Duration::from_secs(60), || {
        log_figure(&stats, |l| {
            l.full.load(Ordering::Relaxed) + l.errors.load(Ordering::Relaxed)
        }) > 0
            && {
                let before = fleet.acked();
                std::thread::sleep(Duration::from_millis(500));
                fleet.acked() == before
            }
    });
    assert!(
        stopped,
        "reading never stopped: {} acknowledged, log {} bytes, {} commit errors",
        fleet.acked(),
        stats.log_bytes(),
        log_figure(&stats, |l| l.errors.load(Ordering::Relaxed))
    );
    let at_stop = fleet.acked();
    eprintln!(
        "reading stopped after {at_stop} acknowledgements; log {} bytes, {} commit errors",
        stats.log_bytes(),
        log_figure(&stats, |l| l.errors.load(Ordering::Relaxed))
    );
    // ClickHouse back: the log drains and reading goes on.
    proxy.set_up(true);
    let resumed = wait_until(Duration::from_secs(60), || fleet.acked() > at_stop + 5000);
    assert!(
        resumed,
        "reading did not resume: {} acknowledged",
        fleet.acked()
    );
    let acked = fleet.finish();
    shutdown_app(app).expect("shuts down");
    // What the writers could not insert before the shutdown's deadline (a
    // busy machine) is in the log: the next start inserts it.
    if !logs_fully_inserted(&config.log.dir, config.shards()) {
        eprintln!("rows left in the log at shutdown: restarting to insert them");
        let app = App::start(config.clone()).expect("restarts");
        let drained = wait_until(Duration::from_secs(60), || {
            check(url, db, &acked).0.is_empty()
        });
        shutdown_app(app).expect("shuts down");
        assert!(drained, "the restart did not insert what the log kept");
    }
    let (missing, twice) = check(url, db, &acked);
    assert!(
        missing.is_empty(),
        "{} of {} lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "{twice:?}");
    (acked, stats)
}

fn outage_config(proxy: &Proxy, db: &str, dir: &Path) -> Config {
    let mut c = config(&proxy.url(), db, dir);
    c.log.segment_bytes = 1 << 20;
    c
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_full_log_stops_reading_until_it_drains_and_loses_nothing() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "fulllog");
    let proxy = Proxy::start(&url);
    let dir = temp_dir("fulllog");
    let mut c = outage_config(&proxy, &db, &dir);
    // Two segments per shard: the least the config allows.
    c.log.max_bytes = 4 << 20;
    let (acked, stats) = outage_until_reading_stops(c, &proxy, &url, &db);
    assert!(log_figure(&stats, |l| l.full.load(Ordering::Relaxed)) > 0);
    assert!(acked.len() > 20_000, "{} acknowledged", acked.len());
    query(&url, &format!("DROP DATABASE {db}"));
}

/// The log on a 6 MiB tmpfs: the disk fills long before the log's limit.
/// Commits fail (counted, retried), the shards stop reading, and once the
/// writers have inserted and deleted segments, commits and reading go on.
#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_full_disk_stops_reading_until_there_is_room_and_loses_nothing() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "fulldisk");
    let proxy = Proxy::start(&url);
    let dir = temp_dir("fulldisk");
    let mount = Tmpfs::mount(&dir.join("disk"), 6 << 20);
    let mut c = outage_config(&proxy, &db, &mount.path);
    c.log.max_bytes = 1 << 30;
    let (_, stats) = outage_until_reading_stops(c, &proxy, &url, &db);
    assert!(
        log_figure(&stats, |l| l.errors.load(Ordering::Relaxed)) > 0,
        "the disk never filled"
    );
    drop(mount);
    query(&url, &format!("DROP DATABASE {db}"));
}

/// A tmpfs of `bytes` at `path`, unmounted when dropped (the tests run as
/// root, as CI does).
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (the test needs root)",
            path.display()
        );
        Self {
            path: path.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// One column dropped from `device_info`: every batch of it is refused for
/// good, set aside whole in the dead-letter file (with ClickHouse's words),
/// shown by `rejected`, and no other table waits or retries.
#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_table_clickhouse_refuses_is_set_aside_and_the_others_go_in() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "refused");
    query(
        &url,
        &format!("ALTER TABLE {db}.device_info DROP COLUMN iccid"),
    );
    let dir = temp_dir("refused");
    let app = App::start(Arc::new(config(&url, &db, &dir))).expect("starts");
    let stats = app.sink_stats().clone();
    let samples = Samples::new();
    const BADGES: u64 = 20;
    const ROUNDS: u64 = 5;
    let mut sent: Vec<u64> = Vec::new();
    for n in 0..BADGES {
        let mut badge = Badge::connect(app.local_addr(), imei(6000 + n));
        badge.login();
        for _ in 0..ROUNDS {
            for m in samples.messages() {
                badge.exchange(&m);
            }
        }
        sent.push(badge.imei.as_u64());
    }
    let want =
        |table: &str| SAMPLE_ROWS.iter().find(|(t, _)| *t == table).unwrap().1 * BADGES * ROUNDS;
    let rows = |table: &str| count(&url, &format!("SELECT count() FROM {db}.{table}"));
    let table = badge_ingest::record::Table::from_name("device_info").unwrap();
    let settled = wait_until(Duration::from_secs(60), || {
        stats.rejected(table) == want("device_info")
            && SAMPLE_ROWS
                .iter()
                .filter(|(t, _)| *t != "device_info")
                .all(|(t, _)| rows(t) == want(t))
    });
    let mut ctl = Control::connect(&app);
    let answer = ctl.ask("rejected");
    assert!(
        settled,
        "{answer}\n{:?}",
        SAMPLE_ROWS
            .iter()
            .map(|(t, _)| (t, rows(t), want(t)))
            .collect::<Vec<_>>()
    );
    assert_eq!(rows("device_info"), 0);
    // Batches refused whole: one refused insert each, no split, no retry.
    let failures = stats.insert_failures.load(Ordering::Relaxed);
    assert!(
        (1..=want("device_info")).contains(&failures),
        "{failures} failed inserts"
    );
    assert_eq!(stats.retries.load(Ordering::Relaxed), 0, "a table retried");
    // What `rejected` shows, and the file it points to.
    assert!(
        answer.contains(&format!("rejected rows: {}", want("device_info"))),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("  device_info: {}", want("device_info"))),
        "{answer}"
    );
    assert!(
        answer.contains("iccid"),
        "the last error names the column: {answer}"
    );
    let file = std::fs::read_to_string(&stats.dead_letters).expect("the dead-letter file");
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, want("device_info"));
    for l in &lines {
        assert_eq!(l["table"], "device_info");
        assert!(l["error"].as_str().unwrap().contains("iccid"), "{l}");
        assert!(sent.contains(&l["row"]["imei"].as_u64().unwrap()), "{l}");
        assert!(
            l["lsn"].as_u64().unwrap() > 0 && l["row"]["ingest_seq"] == l["lsn"],
            "{l}"
        );
    }
    let json = ctl.ask("json rejected");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["total"], want("device_info"));
    drop(ctl);
    shutdown_app(app).expect("shuts down");
    // Set aside counts as done: the log is free of it.
    assert!(logs_fully_inserted(&dir, 2));
    query(&url, &format!("DROP DATABASE {db}"));
}
