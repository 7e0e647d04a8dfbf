//! A ClickHouse that accepts connections and never answers (as opposed to
//! one that is down): the server keeps answering badges (what it
//! acknowledges is in its log), stops within its grace period though an
//! insert hangs, and a restart against the real ClickHouse with the same
//! log stores each row, once per ingest key.

mod pipeline_support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline_support::*;

/// Accepts every connection and holds it, reading and answering nothing.
struct Silent {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let held = held.clone();
            move || {
                for stream in listener.incoming().flatten() {
                    held.lock().unwrap().push(stream);
                }
            }
        });
        Self { addr, held }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

const HEARTBEATS: u64 = 20;

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn a_hung_clickhouse_loses_nothing_acknowledged_and_a_restart_stores_it_once() {
    let url = clickhouse_url();
    let hung = Silent::start();
    let db = fresh_database(&url, "hung");
    let log = temp_dir("hung");
    let running = start(config(&format!("http://{}", hung.addr), &db, &log));

    let samples = Samples::new();
    let heartbeat = &samples.messages()[0];
    let mut badge = Badge::connect(running.addr(), imei(600));
    badge.login();
    for _ in 0..HEARTBEATS {
        badge.exchange(heartbeat);
    }
    assert!(
        hung.connections() > 0,
        "the server never tried the hung ClickHouse"
    );
    // Still answering badges while the inserts hang: the log holds the rows.
    badge.exchange(heartbeat);
    drop(badge);
    let stopping = std::time::Instant::now();
    let stats = running.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "a hung insert held the shutdown for {:?}",
        stopping.elapsed()
    );
    assert_eq!(stats.written_total(), 0, "nothing can have been written");
    assert!(!logs_fully_inserted(&log, 2));
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.heartbeats")),
        0
    );

    // The real ClickHouse, the same log: replayed without new traffic.
    // The login, every heartbeat, and the offline row.
    let all = 1 + HEARTBEATS + 1 + 1;
    let running = start(config(&url, &db, &log));
    let stats = running.workers.stats.clone();
    assert!(
        wait_until(Duration::from_secs(60), || stats.written_total() == all),
        "replayed {} of {all} rows",
        stats.written_total()
    );
    running.stop();
    assert!(logs_fully_inserted(&log, 2));
    for (table, want) in [("heartbeats", HEARTBEATS + 1), ("device_events", 2)] {
        let keys = count(
            &url,
            &format!(
                "SELECT uniqExact(ingest_instance, ingest_shard, ingest_seq) FROM {db}.{table}"
            ),
        );
        let rows = count(&url, &format!("SELECT count() FROM {db}.{table}"));
        assert_eq!(
            keys, want,
            "{table}: {keys} ingest keys ({rows} rows), want {want}"
        );
        if rows != keys {
            eprintln!("{table}: {} duplicate rows (at least once)", rows - keys);
        }
    }
    assert_eq!(
        query(
            &url,
            &format!("SELECT event, reason FROM {db}.device_events ORDER BY event FORMAT TSV")
        ),
        "login\t\noffline\tpeer_closed\n"
    );
    query(&url, &format!("DROP DATABASE {db}"));
}
