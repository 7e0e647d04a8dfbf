//! End-to-end rows/s, from TCP frames to committed ClickHouse rows, against
//! ClickHouse's own insert rate for the same rows measured in the same run.
//!
//!     BADGE_BENCH_CLICKHOUSE_URL=$(scripts/clickhouse.sh url) cargo bench --bench e2e
//!
//! Environment: BADGE_BENCH_ROWS (default 1,000,000), BADGE_BENCH_CONNECTIONS (200),
//! BADGE_BENCH_COMPRESSION (`lz4`, the default, or `none`),
//! BADGE_BENCH_INSERTS_IN_FLIGHT (`sink.inserts_in_flight`, default 2),
//! BADGE_BENCH_BATCH_ROWS and BADGE_BENCH_BATCH_BYTES (`sink.batch_rows`,
//! `sink.batch_bytes`, defaults 50,000 and 16 MiB).
//! The server runs in-process (2 shards, ClickHouse sink with its default
//! batching); the load comes from plain threads writing pre-encoded GPS and
//! LBS frames, which need no reply. The raw rate is `clickhouse-client`
//! inserting, as RowBinary, exactly the rows the server wrote (exported
//! from the table), into the same table of a second database with the same
//! schema, materialized views included, so ClickHouse does the same work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use badge_ingest::config::{Config, SinkKind};
use badge_ingest::protocol::layout::*;
use badge_ingest::protocol::message::*;
use badge_ingest::protocol::{Imei, Message};

// The allocator the badge-ingest binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value of `name`, if set; a value that does not parse stops the bench.
fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")),
    )
}

fn query(url: &str, sql: &str) -> String {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(authority).expect("ClickHouse reachable");
    let req = format!(
        "POST / HTTP/1.0\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.contains(" 200 "), "{head}\n{body}\n{sql}");
    body.to_string()
}

fn count(url: &str, table: &str) -> u64 {
    query(url, &format!("SELECT count() FROM {table}"))
        .trim()
        .parse()
        .unwrap()
}

fn frames_for(imei: Imei, n: u64, seed: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    Message::Login(Login {
        imei,
        type_code: Some(0x2404),
        tz_language: Some(TzLanguage::new(480, 1)),
    })
    .encode(1, &mut out)
    .unwrap();
    let cells: Vec<Cell2g> = (0..7)
        .map(|i| Cell2g::new(0x2795, 0x0E5A21 + i, 60 - i as u8))
        .collect();
    for i in 0..n {
        let serial = (i + 2) as u16;
        let lat = 22.5 + ((seed + i) % 1000) as f64 * 1e-5;
        let message = if i % 2 == 0 {
            Message::Gps(GpsReport {
                generation: Generation::G2,
                time: DeviceTime::new(25, 3, 14, 9, (i / 60 % 60) as u8, (i % 60) as u8),
                fix: GpsFix::new(lat, 114.05, 5, 90, 8, true, true),
                tail: Some(GpsTail {
                    network: MobileNetwork::new(460, 0),
                    cell: CellTower {
                        lac: 0x2795,
                        cell_id: 0x0E5A21,
                        rssi: 0,
                    },
                    acc: 1,
                    report_mode: 0,
                    realtime_upload: 0,
                    mileage: Some(i as u32),
                }),
            })
        } else {
            Message::Lbs(LbsReport {
                protocol: 0x28,
                time: DeviceTime::new(25, 3, 14, 9, 30, 0),
                network: MobileNetwork::new(460, 0),
                cells: Cells::G2(&cells),
                timing_advance: Some(0),
                language: Some(1),
            })
        };
        message.encode(serial, &mut out).unwrap();
    }
    out.to_vec()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run only when asked.
    let Ok(url) = std::env::var("BADGE_BENCH_CLICKHOUSE_URL") else {
        eprintln!("e2e: set BADGE_BENCH_CLICKHOUSE_URL (e.g. $(scripts/clickhouse.sh url)) to run this benchmark");
        return;
    };
    let rows = env_or("BADGE_BENCH_ROWS", 1_000_000);
    let connections = env_or("BADGE_BENCH_CONNECTIONS", 200);
    let per_conn = rows / connections;
    let rows = per_conn * connections;
    let db = format!("bench_e2e_{}", std::process::id());

    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.control = "127.0.0.1:0".into();
    config.server.shards = 2;
    config.server.summary_interval_secs = 0;
    // Each connection sends its frames (10,000 at 2 M rows) as fast as TCP
    // takes them, far past the flood cap (2,000 frames/s a connection),
    // which would otherwise be what this measures: 400k rows/s at most.
    config.limits.max_frames_per_sec = 0;
    config.sink.kind = SinkKind::ClickHouse;
    config.clickhouse.url = url.clone();
    config.clickhouse.database = db.clone();
    let sink = &mut config.sink;
    sink.inserts_in_flight =
        env_parse("BADGE_BENCH_INSERTS_IN_FLIGHT").unwrap_or(sink.inserts_in_flight);
    sink.batch_rows = env_parse("BADGE_BENCH_BATCH_ROWS").unwrap_or(sink.batch_rows);
    sink.batch_bytes = env_parse("BADGE_BENCH_BATCH_BYTES").unwrap_or(sink.batch_bytes);
    if let Some(c) = env_parse("BADGE_BENCH_COMPRESSION") {
        config.clickhouse.compression = c;
    }
    config.log.dir = std::env::temp_dir().join(format!("badge-e2e-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&config.log.dir);
    config.validate().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(badge_ingest::sink::clickhouse::apply_schema(&config, &db))
        .expect("schema");

    eprintln!("e2e: encoding {rows} frames for {connections} badges");
    let payloads: Vec<Vec<u8>> = (0..connections)
        .map(|c| {
            frames_for(
                Imei::with_check_digit(87_000_000_000_000 + c).unwrap(),
                per_conn,
                c * 7919,
            )
        })
        .collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();

    let config = Arc::new(config);
    let (server, workers) =
        badge_ingest::app::start_ingest(config.clone(), Default::default()).expect("server");
    let addr = server.local_addr();

    let started = Instant::now();
    let senders: Vec<_> = payloads
        .into_iter()
        .map(|payload| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                for chunk in payload.chunks(64 * 1024) {
                    s.write_all(chunk).unwrap();
                }
                // Keep the connection until the server has read everything.
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut sink = [0u8; 64];
                while s.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
            })
        })
        .collect();
    let table = format!("{db}.locations");
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&url, &table) < rows && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let e2e = started.elapsed();
    for s in senders {
        let _ = s.join();
    }
    server.shutdown();
    workers.finish().expect("sink");
    let stored = count(&url, &table);
    assert_eq!(stored, rows, "every frame becomes a row");

    // ClickHouse alone: the same rows, RowBinary, into an empty copy.
    let dump = std::env::temp_dir().join(format!("badge-e2e-{}.rowbinary", std::process::id()));
    let client_bin = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clickhouse.sh");
    let status = Command::new(client_bin)
        .args([
            "client",
            "--query",
            &format!("SELECT * FROM {table} FORMAT RowBinary"),
        ])
        .stdout(std::fs::File::create(&dump).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "export failed");
    let raw_db = format!("{db}_raw");
    rt.block_on(badge_ingest::sink::clickhouse::apply_schema(
        &config, &raw_db,
    ))
    .expect("schema");
    let raw_started = Instant::now();
    let status = Command::new(client_bin)
        .args([
            "client",
            "--query",
            &format!("INSERT INTO {raw_db}.locations FORMAT RowBinary"),
        ])
        .stdin(Stdio::from(std::fs::File::open(&dump).unwrap()))
        .status()
        .unwrap();
    let raw = raw_started.elapsed();
    assert!(status.success(), "raw insert failed");
    assert_eq!(count(&url, &format!("{raw_db}.locations")), rows);

    let e2e_rate = rows as f64 / e2e.as_secs_f64();
    let raw_rate = rows as f64 / raw.as_secs_f64();
    println!(
        "e2e: {rows} rows ({:.1} MB of frames) in {:.2} s = {:.0} rows/s end to end; \
         clickhouse-client raw insert of the same rows: {:.2} s = {:.0} rows/s; ratio {:.2}",
        bytes as f64 / 1e6,
        e2e.as_secs_f64(),
        e2e_rate,
        raw.as_secs_f64(),
        raw_rate,
        e2e_rate / raw_rate
    );
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_dir_all(&config.log.dir);
    query(&url, &format!("DROP DATABASE {db}"));
    query(&url, &format!("DROP DATABASE {raw_db}"));
}
