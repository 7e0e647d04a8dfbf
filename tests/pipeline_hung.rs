//! A ClickHouse that accepts connections and never answers (as opposed to
//! one that is down): the server keeps answering badges, every row it
//! acknowledged ends up in the spool once the inserts time out, and a
//! restart against the real ClickHouse with the same spool stores each of
//! them, once per ingest key. Slow by nature (the insert timeout is 30 s),
//! so in a binary of its own.

mod pipeline_support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
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
    let spool = temp_dir("hung");
    let running = start(config(&format!("http://{}", hung.addr), &db, &spool));
    let stats = running.workers.stats.clone();

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
    // The login and every heartbeat: acknowledged, so they must be kept.
    let acknowledged = 1 + HEARTBEATS;
    assert!(
        wait_until(Duration::from_secs(120), || {
            stats.spooled_rows.load(Ordering::Relaxed) == acknowledged
        }),
        "spooled {} of {acknowledged} rows while ClickHouse hung",
        stats.spooled_rows.load(Ordering::Relaxed)
    );
    // Still answering badges while the inserts hang.
    badge.exchange(heartbeat);
    drop(badge);
    let stats = running.stop();
    // ... and the extra heartbeat and the offline row went to the spool too.
    assert_eq!(stats.spooled_rows.load(Ordering::Relaxed), acknowledged + 2);
    assert_eq!(stats.written_total(), 0, "nothing can have been written");
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.heartbeats")),
        0
    );

    // The real ClickHouse, the same spool: replayed without new traffic.
    let running = start(config(&url, &db, &spool));
    let stats = running.workers.stats.clone();
    assert!(
        wait_until(Duration::from_secs(60), || stats.spool_size() == (0, 0)),
        "spool not drained: {:?}",
        stats.spool_size()
    );
    running.stop();
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
