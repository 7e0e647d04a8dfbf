//! A real ClickHouse cluster on loopback (`scripts/ch-cluster.sh`: Debian's
//! ZooKeeper and 2 shards × 2 replicas of ClickHouse 18.16) under
//! `schema/cluster/`:
//!
//! - the schema applied twice is the same, and the BI checks and README
//!   examples of `scripts/apply-schema-check.sh check-cluster` give the
//!   single-node answers;
//! - two instances take badges at once, and the BI views answer as a single
//!   node given the same rows does;
//! - then the replica one of them writes through is killed with SIGKILL
//!   mid-run and started again: every acknowledged frame is in the cluster
//!   exactly once after dedup by ingest key, and both replicas of each shard
//!   hold the same rows. The views may then miss a block (18.16 does not
//!   run them for a block it deduplicates); after
//!   `scripts/rebuild-aggregates.sh` they answer as the single node again.

mod pipeline_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pipeline_support::fleet::{by_table, check, one_per_table, Acked, Fleet};
use pipeline_support::*;

/// The tables rows are inserted into (the rest are filled by views).
fn row_tables() -> impl Iterator<Item = &'static str> {
    badge_ingest::record::Table::ALL
        .into_iter()
        .map(|t| t.name())
}

/// The cluster's processes, stopped (and their files removed) when dropped.
struct Cluster {
    dir: PathBuf,
    port: String,
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        let port = std::env::var("BADGE_TEST_CLUSTER_PORT").unwrap_or_else(|_| "18600".into());
        let cluster = Self {
            dir: dir.to_owned(),
            port,
        };
        let out = cluster.script(&["start"]);
        eprintln!("{out}");
        cluster
    }

    /// Runs `scripts/ch-cluster.sh ARGS` for this cluster; panics with its
    /// output when it fails.
    fn script(&self, args: &[&str]) -> String {
        run(Command::new(script("ch-cluster.sh"))
            .args(args)
            .env("BADGE_CLUSTER_DIR", &self.dir)
            .env("BADGE_CLUSTER_PORT", &self.port))
    }

    fn url(&self, node: usize) -> String {
        self.script(&["url", &node.to_string()]).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The nodes' logs go with the directory: a failed run shows their
        // last errors, which tell ClickHouse's own trouble (a DDLWorker that
        // ended, say) from ours.
        if std::thread::panicking() {
            eprintln!("ClickHouse errors:\n{}", error_logs(&self.dir));
        }
        let _ = Command::new(script("ch-cluster.sh"))
            .arg("stop")
            .env("BADGE_CLUSTER_DIR", &self.dir)
            .env("BADGE_CLUSTER_PORT", &self.port)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Runs a command to its end (bounded), and gives its output; panics with
/// it when the command fails.
fn run(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let mut command = std::mem::replace(command, Command::new("true"));
    let out = bounded(&shown.clone(), Duration::from_secs(300), move || {
        command.output().expect("the script runs")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown} failed:\n{text}");
    text
}

/// `query`, each line of the answer sorted, so that two answers compare
/// whatever order the shards sent their rows in.
fn sorted_rows(url: &str, sql: &str) -> Vec<String> {
    let mut rows: Vec<String> = query(url, sql).lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

/// Badges on both instances: a fleet of 8 on each, as fast as their replies
/// come, with `during` run once rows arrive; then 4 quiet badges on each,
/// with one row per table, so that every "latest" of badge_now has one
/// candidate (the fleet's badges send several heartbeats a second, whose
/// argMax by server_time may be any of them). Returns what was acknowledged
/// once all of it is in the cluster, and the quiet badges' IMEIs.
fn load(
    instances: [&Running; 2],
    first: u64,
    (urls, cluster_dir): (&[String], &Path),
    db: &str,
    during: impl FnOnce(),
) -> (Vec<Acked>, Vec<u64>) {
    let patience = Duration::from_secs(30);
    let fleets = [
        Fleet::start(instances[0].addr(), first, 8, patience),
        Fleet::start(instances[1].addr(), first + 100, 8, patience),
    ];
    assert!(
        wait_until(Duration::from_secs(60), || fleets
            .iter()
            .map(Fleet::acked)
            .sum::<usize>()
            > 2_000),
        "the badges are not acknowledged"
    );
    during();
    std::thread::sleep(Duration::from_secs(2));
    let mut acked: Vec<Acked> = fleets.into_iter().flat_map(Fleet::finish).collect();
    let samples = Samples::new();
    let mut quiet = Vec::new();
    let mut badges = Vec::new();
    for (n, running) in (0..8).zip(instances.iter().cycle()) {
        let imei = imei(first + 200 + n);
        let mut badge = Badge::connect(running.addr(), imei);
        badge.login();
        for m in one_per_table(samples.messages()) {
            badge.exchange(&m);
        }
        quiet.push(imei.as_u64());
        badges.push(badge);
    }
    // Their logouts fall in a later second than their logins.
    std::thread::sleep(Duration::from_millis(1_100));
    drop(badges);
    acked.sort();
    // Read through node 2's Distributed tables, which ask one replica of
    // each shard: wait for the replicas to agree as well, so that which one
    // answers does not matter.
    let done = wait_until(Duration::from_secs(120), || {
        agree(&replica_counts(urls, db)) && check(&urls[1], db, &acked).0.is_empty()
    });
    let (missing, twice) = check(&urls[1], db, &acked);
    assert!(
        done && missing.is_empty(),
        "{} of {} acknowledged frames are not in the cluster ({}), e.g. {:?}; \
         sinks: {}; rows per replica: {:?}; ClickHouse errors:\n{}",
        missing.len(),
        acked.len(),
        by_table(&missing),
        &missing[..missing.len().min(5)],
        instances.map(sink_state).join("; "),
        replica_counts(urls, db),
        error_logs(cluster_dir)
    );
    assert!(twice.is_empty(), "stored under two ingest keys: {twice:?}");
    eprintln!("acked {} ({})", acked.len(), by_table(&acked));
    (acked, quiet)
}

/// Rows of each row table on each node (`<table>_local`).
fn replica_counts(urls: &[String], db: &str) -> BTreeMap<&'static str, Vec<u64>> {
    row_tables()
        .map(|table| {
            let counts = urls
                .iter()
                .map(|u| count(u, &format!("SELECT count() FROM {db}.{table}_local")))
                .collect();
            (table, counts)
        })
        .collect()
}

/// Both replicas of each shard (nodes 1 and 2, 3 and 4) hold as many rows.
fn agree(counts: &BTreeMap<&'static str, Vec<u64>>) -> bool {
    counts.values().all(|c| c[0] == c[1] && c[2] == c[3])
}

/// The last errors and warnings of each node's error log (their first
/// lines, without the stack traces that follow), for a failure's message.
fn error_logs(cluster_dir: &Path) -> String {
    (1..=4)
        .map(|n| {
            let path = cluster_dir.join(format!("node-{n}/log/clickhouse-server.err.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(" <Error> ") || l.contains(" <Warning> "))
                .map(|l| l.get(..400).unwrap_or(l))
                .collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n");
            format!("node {n}:\n{tail}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a sink has done, for a failure's message.
fn sink_state(running: &Running) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &running.workers.stats;
    let sum =
        |v: &[std::sync::atomic::AtomicU64]| v.iter().map(|x| x.load(Relaxed)).collect::<Vec<_>>();
    format!(
        "queued {:?} written {:?} rejected {:?} failures {} retries {} last rejection {:?}",
        sum(&s.queued),
        sum(&s.written),
        sum(&s.rejected),
        s.insert_failures.load(Relaxed),
        s.retries.load(Relaxed),
        s.last_rejection.lock().unwrap()
    )
}

/// The BI views of `db` on the cluster against those of a single node
/// (schema/, on node 2) given the same rows: the differing rows of each.
fn view_differences(url: &str, db: &str, quiet: &[u64], rebuild: bool) -> BTreeMap<String, usize> {
    let single = format!("{db}_single");
    let c = config(url, &single, Path::new("unused"));
    query(url, &format!("DROP DATABASE IF EXISTS {single}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(badge_ingest::sink::clickhouse::apply_schema(&c, &single))
        .expect("schema/ applies");
    for table in row_tables() {
        query(
            url,
            &format!("INSERT INTO {single}.{table} SELECT * FROM {db}.{table}"),
        );
    }
    if rebuild {
        for (database, cluster) in [(db, "badge"), (single.as_str(), "")] {
            let out = run(Command::new(script("rebuild-aggregates.sh"))
                .args([database, cluster])
                .env("BADGE_CH_URL", url));
            assert!(
                out.contains("rebuilt badge_latest from heartbeats"),
                "{out}"
            );
        }
    }
    let views = query(
        url,
        &format!("SELECT name FROM system.tables WHERE database = '{single}' AND engine = 'View' ORDER BY name"),
    );
    let views: Vec<&str> = views.lines().collect();
    assert_eq!(views, ["attendance_day", "badge_now"]);
    let quiet: Vec<String> = quiet.iter().map(u64::to_string).collect();
    let selects = [
        (
            "attendance_day",
            "SELECT * FROM {db}.attendance_day".to_string(),
        ),
        (
            "badge_now (quiet badges)",
            format!(
                "SELECT * FROM {{db}}.badge_now WHERE imei IN ({})",
                quiet.join(",")
            ),
        ),
        (
            "badge_now (times, all badges)",
            "SELECT imei, last_seen, pos_time, heartbeat_time, session_time FROM {db}.badge_now"
                .to_string(),
        ),
    ];
    let mut differences = BTreeMap::new();
    for (what, select) in selects {
        let on_cluster = sorted_rows(url, &select.replace("{db}", db));
        let on_one = sorted_rows(url, &select.replace("{db}", &single));
        assert!(on_one.len() >= quiet.len(), "{what}: {} rows", on_one.len());
        let differing = on_one
            .iter()
            .filter(|r| on_cluster.binary_search(r).is_err())
            .count()
            + on_cluster.len().abs_diff(on_one.len());
        if differing > 0 {
            let first = on_one.iter().find(|r| on_cluster.binary_search(r).is_err());
            eprintln!("{what}: {differing} rows differ, e.g. one node has {first:?}");
        }
        differences.insert(what.to_string(), differing);
    }
    query(url, &format!("DROP DATABASE IF EXISTS {single}"));
    differences
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_two_by_two_cluster_keeps_every_row_once_through_a_replica_kill() {
    let scratch = temp_dir("cluster");
    let cluster = Cluster::start(&scratch.join("ch"));
    let urls: Vec<String> = (1..=4).map(|n| cluster.url(n)).collect();

    // schema/cluster/ twice, the sample rows, the BI checks and every
    // README example, all on this cluster.
    let checked = run(Command::new(script("apply-schema-check.sh"))
        .args(["check-cluster", "badge"])
        .env("BADGE_CH_URL", &urls[0])
        .env("CHECK_DB", "cluster_check"));
    assert!(checked.contains("ok   idempotent"), "{checked}");
    assert!(checked.contains(" passed, 0 failed"), "{checked}");

    let db = "cluster_load";
    let objects = |url: &str| {
        query(
            url,
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name"
            ),
        )
    };
    for round in 0..2 {
        run(Command::new(script("apply-schema-check.sh"))
            .args(["apply-cluster", db, "badge"])
            .env("BADGE_CH_URL", &urls[0]));
        let first = objects(&urls[0]);
        assert_eq!(first.lines().count(), 32, "round {round}: {first}");
        for url in &urls[1..] {
            assert_eq!(objects(url), first, "round {round}: {url} differs");
        }
    }

    // Instance a writes through node 1 (shard 1), b through node 3 (shard 2);
    // each Distributed insert returns once every shard has its rows.
    let instance = |name: &str, url: &str| {
        let log = scratch.join(format!("log-{name}"));
        let mut c = config(url, db, &log);
        c.server.instance = name.into();
        c.clickhouse
            .settings
            .insert("insert_distributed_sync".into(), "1".into());
        (start(c), log)
    };
    let (a, log_a) = instance("a", &urls[0]);
    let (b, log_b) = instance("b", &urls[2]);

    // Nothing killed: the views answer as on one node, as they are.
    let (_, quiet) = load([&a, &b], 1_000, (&urls, &cluster.dir), db, || {});
    let differences = view_differences(&urls[1], db, &quiet, false);
    assert!(differences.values().all(|n| *n == 0), "{differences:?}");

    // Node 1 killed mid-run, and started again. The cluster goes on
    // without it: b's rows for shard 1 go to node 2, a's wait in its log.
    let rows_in = |url: &str| count(url, &format!("SELECT count() FROM {db}.heartbeats"));
    let (acked, quiet) = load([&a, &b], 2_000, (&urls, &cluster.dir), db, || {
        eprintln!("{}", cluster.script(&["kill-node", "1"]));
        let down = rows_in(&urls[1]);
        assert!(
            wait_until(Duration::from_secs(60), || rows_in(&urls[1]) > down + 500),
            "no rows while node 1 was down"
        );
        eprintln!("{}", cluster.script(&["start-node", "1"]));
    });
    let (stats_a, stats_b) = (a.stop(), b.stop());
    let failures = |s: &badge_ingest::sink::SinkStats| {
        s.insert_failures.load(std::sync::atomic::Ordering::Relaxed)
    };
    eprintln!(
        "second run: acked {}; insert failures a {} b {}",
        acked.len(),
        failures(&stats_a),
        failures(&stats_b)
    );
    assert!(
        failures(&stats_a) > 0,
        "instance a never saw node 1 down: the kill proved nothing"
    );
    assert!(
        logs_fully_inserted(&log_a, 2),
        "a's log is all in ClickHouse"
    );
    assert!(
        logs_fully_inserted(&log_b, 2),
        "b's log is all in ClickHouse"
    );
    let retried = query(
        &urls[1],
        &format!(
            "SELECT sum(c) - count() FROM (SELECT count() AS c FROM {db}.heartbeats \
             GROUP BY ingest_instance, ingest_shard, ingest_seq)"
        ),
    );
    eprintln!(
        "heartbeat rows inserted twice by a retry (same ingest key): {}",
        retried.trim()
    );

    // Node 1 has caught up (load waited for it): both replicas of each
    // shard hold the same rows, the shards hold all of them, and both some.
    let counts = replica_counts(&urls, db);
    eprintln!("rows per replica: {counts:?}");
    for (table, local) in &counts {
        let all = count(&urls[0], &format!("SELECT count() FROM {db}.{table}"));
        assert_eq!(local[0] + local[2], all, "{table}: {local:?} vs {all}");
    }
    let heartbeats = &counts["heartbeats"];
    assert!(
        heartbeats[0] > 0 && heartbeats[2] > 0,
        "one shard is empty: {heartbeats:?}"
    );

    // What the kill cost the views (reported), and the repair.
    let differences = view_differences(&urls[1], db, &quiet, false);
    eprintln!("views after the kill, rows differing from one node: {differences:?}");
    let differences = view_differences(&urls[1], db, &quiet, true);
    assert!(
        differences.values().all(|n| *n == 0),
        "after the rebuild: {differences:?}"
    );
}
