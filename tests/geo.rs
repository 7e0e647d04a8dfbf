//! The geo service over real loopback HTTP: tiny HTTP/1.1 servers on
//! 127.0.0.1 stand in for the geolocation and reverse-geocoding providers,
//! and the handle is used the way shards will use it (futures awaited from
//! outside tokio, the shards' own runtime included).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::geo::{
    BreakerState, CellQuery, Fix, FixSource, GeoConfig, GeoError, GeoHandle, GeoService, Language,
    Radio,
};
use badge_ingest::protocol::layout::{CellTower, MacAddr, MobileNetwork};
use futures_lite::future::{block_on, poll_once};
use serde_json::json;

mod http_fake;
use http_fake::{answer, Answer, FakeServer, Gate, Seen};

// ---------------------------------------------------------------------------
// Helpers.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("badge-geo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CELLS_CSV: &str = "\
radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal
GSM,460,0,9360,4082,,113.9,22.5,500,10,1,1459692342,1459692342,0
GSM,460,0,9360,4083,,113.92,22.51,1000,3,1,1459692342,1459692342,0
";

fn tower(lac: u32, cell_id: u64, rssi: u8) -> CellTower {
    CellTower { lac, cell_id, rssi }
}

fn gsm_query(cells: Vec<CellTower>) -> CellQuery {
    CellQuery {
        network: MobileNetwork::new(460, 0),
        radio: Radio::Gsm,
        cells,
        wifi: Vec::new(),
    }
}

const ZH: &str = "广东省深圳市南山区科技园";
const EN: &str = "Science Park, Nanshan, Shenzhen, Guangdong, China";

/// A Nominatim stand-in answering by `accept-language`.
fn nominatim(seen: &Seen) -> Answer {
    if seen.method != "GET"
        || seen.path() != "/reverse"
        || seen.query("format").as_deref() != Some("jsonv2")
    {
        return answer(400, r#"{"error":"bad request"}"#);
    }
    let name = match seen.query("accept-language").as_deref() {
        Some("zh") => ZH,
        Some("en") => EN,
        _ => return answer(400, r#"{"error":"no language"}"#),
    };
    answer(
        200,
        json!({ "place_id": 1, "display_name": name }).to_string(),
    )
}

fn start(config: GeoConfig, rt: &tokio::runtime::Runtime) -> (GeoHandle, GeoService) {
    GeoService::start(config, rt.handle().clone()).unwrap()
}

/// Sleeps until `t`: for waits whose end is a provable instant (a TTL or a
/// cool-down counted from a time the test has an upper bound of).
fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Polls `f` until it holds, failing the test after `within`.
fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------

#[test]
fn an_lbs_query_is_positioned_from_a_cell_csv_and_reloads() {
    let rt = runtime();
    let dir = TempDir::new("lbs");
    let csv = dir.file("cells.csv", CELLS_CSV);
    let (geo, service) = start(
        GeoConfig {
            cell_db: Some(csv.clone()),
            ..GeoConfig::default()
        },
        &rt,
    );
    assert_eq!(service.stats().cell_db_cells, 2);

    // Main cell at signal 60, a neighbour at 20, one neighbour unknown.
    let query = gsm_query(vec![
        tower(9360, 4082, 60),
        tower(9360, 4083, 20),
        tower(9360, 7777, 90),
    ]);
    let fix = block_on(geo.locate(query.clone())).expect("known cells give a position");
    // (60 × 22.5 + 20 × 22.51) / 80, (60 × 113.9 + 20 × 113.92) / 80
    assert!((fix.lat - 22.5025).abs() < 1e-5, "{fix:?}");
    assert!((fix.lon - 113.905).abs() < 1e-5, "{fix:?}");
    // Weighted mean of distance-to-centroid + range: (60 × (584.05 + 500) +
    // 20 × (1752.10 + 1000)) / 80.
    assert!((fix.accuracy_m - 1501.06).abs() < 2.0, "{fix:?}");
    assert_eq!(fix.source, FixSource::Cell);

    assert_eq!(block_on(geo.locate(gsm_query(vec![tower(1, 1, 50)]))), None);
    let s = geo.stats();
    assert_eq!(
        (s.cell_db.requests, s.cell_db.hits, s.cell_db.misses),
        (2, 1, 1)
    );
    assert!(s.cell_db.latency_us.len() == 2);
    assert!(!s.geolocation.enabled && !s.reverse.enabled);

    // The cell moves; a reload picks it up and the cached answer goes.
    std::fs::write(&csv, "GSM,460,0,9360,4082,,114.0,23.0,800,5\n").unwrap();
    let info = block_on(geo.reload_cell_db()).unwrap();
    assert_eq!((info.cells, info.skipped), (1, 0));
    let moved = block_on(geo.locate(query.clone())).unwrap();
    assert_eq!(
        (moved.lat, moved.lon, moved.accuracy_m),
        (23.0, 114.0, 800.0)
    );

    // A broken file leaves the loaded database in place.
    std::fs::write(&csv, "this is not a cell list\nnor this\n").unwrap();
    let e = block_on(service.reload_cell_db()).unwrap_err();
    assert!(matches!(e, GeoError::CellDbEmpty { skipped: 2, .. }), "{e}");
    let s = geo.stats();
    assert_eq!(
        (
            s.cell_db_cells,
            s.cell_db_reloads,
            s.cell_db_reload_failures
        ),
        (1, 1, 1)
    );
    assert_eq!(block_on(geo.locate(query)), Some(moved));
}

#[test]
fn geolocation_posts_the_api_shape_and_its_answer_is_used() {
    let expected = json!({
        "homeMobileCountryCode": 460,
        "homeMobileNetworkCode": 1,
        "radioType": "lte",
        "considerIp": false,
        "cellTowers": [
            {"cellId": 123456789, "locationAreaCode": 30000, "mobileCountryCode": 460,
             "mobileNetworkCode": 1, "signalStrength": -80},
            {"cellId": 987, "locationAreaCode": 30001, "mobileCountryCode": 460,
             "mobileNetworkCode": 1}
        ],
        "wifiAccessPoints": [
            {"macAddress": "AC:23:3F:00:01:FF", "signalStrength": -61},
            {"macAddress": "AC:23:3F:00:01:FE", "signalStrength": -75}
        ]
    });
    let server = FakeServer::start({
        let expected = expected.clone();
        move |seen| {
            let shape_ok = seen.method == "POST"
                && seen.path() == "/geolocation/v1/geolocate"
                && seen.query("key").as_deref() == Some("k3y")
                && seen.header("content-type") == Some("application/json")
                && seen.json() == expected;
            if !shape_ok {
                return answer(400, r#"{"error":{"code":400,"message":"bad shape"}}"#);
            }
            answer(
                200,
                r#"{"location":{"lat":22.5401,"lng":113.9502},"accuracy":35.5}"#,
            )
        }
    });
    let rt = runtime();
    let dir = TempDir::new("geolocation");
    let (geo, _service) = start(
        GeoConfig {
            // Knows a GSM cell only, so the LTE query falls through to HTTP.
            cell_db: Some(dir.file("cells.csv", CELLS_CSV)),
            geolocation_url: server.url("/geolocation/v1/geolocate"),
            geolocation_key: "k3y".into(),
            ..GeoConfig::default()
        },
        &rt,
    );
    let query = CellQuery {
        network: MobileNetwork::new(460, 1),
        radio: Radio::Lte,
        cells: vec![tower(30000, 123_456_789, 0xB0), tower(30001, 987, 40)],
        wifi: vec![
            (MacAddr([0xAC, 0x23, 0x3F, 0, 1, 0xFF]), -61),
            (MacAddr([0xAC, 0x23, 0x3F, 0, 1, 0xFE]), -75),
        ],
    };
    let fix = block_on(geo.locate(query)).expect("the provider's answer");
    assert_eq!(
        fix,
        Fix {
            lat: 22.5401,
            lon: 113.9502,
            accuracy_m: 35.5,
            source: FixSource::Wifi
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].json(), expected);
    assert_eq!(seen[0].query("key").as_deref(), Some("k3y"));
    assert!(seen[0]
        .header("user-agent")
        .unwrap()
        .starts_with("badge-ingest/"));

    // Cells the database knows never reach the HTTP provider.
    let known = block_on(geo.locate(gsm_query(vec![tower(9360, 4082, 60)]))).unwrap();
    assert_eq!(known.source, FixSource::Cell);
    assert_eq!(server.count(), 1);

    let s = geo.stats();
    assert_eq!((s.cell_db.hits, s.cell_db.misses), (1, 1));
    assert_eq!(
        (
            s.geolocation.requests,
            s.geolocation.hits,
            s.geolocation.failures
        ),
        (1, 1, 0)
    );
    assert_eq!(s.geolocation.latency_us.len(), 1);
}

#[test]
fn geolocation_not_found_is_a_miss_not_a_failure() {
    let server =
        FakeServer::start(|_| answer(404, r#"{"error":{"code":404,"message":"notFound"}}"#));
    let rt = runtime();
    let (geo, _service) = start(
        GeoConfig {
            geolocation_url: server.url("/geolocate"),
            breaker_failures: 1,
            ..GeoConfig::default()
        },
        &rt,
    );
    assert_eq!(block_on(geo.locate(gsm_query(vec![tower(1, 2, 3)]))), None);
    assert_eq!(block_on(geo.locate(gsm_query(vec![tower(1, 3, 3)]))), None);
    let s = geo.stats();
    assert_eq!((s.geolocation.misses, s.geolocation.failures), (2, 0));
    assert_eq!(s.geolocation.breaker, BreakerState::Closed);
    // A miss is cached like an answer.
    assert_eq!(block_on(geo.locate(gsm_query(vec![tower(1, 2, 9)]))), None);
    assert_eq!(server.count(), 2);
}

#[test]
fn addresses_follow_the_request_language() {
    let server = FakeServer::start(|seen| {
        if seen.query("lat").as_deref() == Some("0.0000") {
            // Nominatim at sea.
            return answer(200, r#"{"error":"Unable to geocode"}"#);
        }
        nominatim(seen)
    });
    let rt = runtime();
    let (geo, _service) = start(
        GeoConfig {
            reverse_url: server.url("/reverse"),
            ..GeoConfig::default()
        },
        &rt,
    );
    let zh = block_on(geo.address(22.543_12, 113.941_86, Language::Chinese));
    let en = block_on(geo.address(22.543_12, 113.941_86, Language::English));
    assert_eq!(zh.as_deref(), Some(ZH));
    assert_eq!(en.as_deref(), Some(EN));
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "one request per language");
    for (s, lang) in seen.iter().zip(["zh", "en"]) {
        assert_eq!(s.method, "GET");
        assert_eq!(s.path(), "/reverse");
        assert_eq!(s.query("format").as_deref(), Some("jsonv2"));
        assert_eq!(s.query("accept-language").as_deref(), Some(lang));
        // Sent on the cache's 1e-4° grid.
        assert_eq!(s.query("lat").as_deref(), Some("22.5431"));
        assert_eq!(s.query("lon").as_deref(), Some("113.9419"));
    }
    assert_eq!(block_on(geo.address(0.0, 0.0, Language::English)), None);
    assert_eq!(
        block_on(geo.address(f64::NAN, 0.0, Language::English)),
        None
    );
    assert_eq!(block_on(geo.address(91.0, 0.0, Language::English)), None);
    let s = geo.stats();
    assert_eq!(
        (s.reverse.requests, s.reverse.hits, s.reverse.misses),
        (3, 2, 1)
    );
}

#[test]
fn identical_lookups_are_cached_until_the_ttl() {
    let reverse = FakeServer::start(nominatim);
    let geolocation =
        FakeServer::start(|_| answer(200, r#"{"location":{"lat":1.5,"lng":2.5},"accuracy":100}"#));
    let rt = runtime();
    // Long enough that the lookups which must hit are surely inside it.
    const TTL: Duration = Duration::from_secs(3);
    let (geo, _service) = start(
        GeoConfig {
            reverse_url: reverse.url("/reverse"),
            geolocation_url: geolocation.url("/geolocate"),
            cache_ttl_secs: TTL.as_secs(),
            ..GeoConfig::default()
        },
        &rt,
    );
    // Every entry below is inserted after this.
    let before = Instant::now();
    let first = block_on(geo.address(22.5431, 113.9419, Language::Chinese));
    // Within the same ~11 m cell of the grid.
    let second = block_on(geo.address(22.543_14, 113.941_88, Language::Chinese));

    // The same cells with other signals (and in another order) are the same key.
    let a = block_on(geo.locate(gsm_query(vec![tower(1, 2, 50), tower(1, 3, 10)])));
    let b = block_on(geo.locate(gsm_query(vec![tower(1, 3, 70), tower(1, 2, 20)])));
    // ... and before this, since an entry goes in before its answer comes back.
    let inserted_by = Instant::now();
    assert!(
        inserted_by < before + TTL,
        "the lookups took {:?}, longer than the TTL: the machine stalled",
        inserted_by - before
    );
    assert_eq!(first.as_deref(), Some(ZH));
    assert_eq!(second, first);
    assert_eq!(reverse.count(), 1);
    assert!(a.is_some());
    assert_eq!(a, b);
    assert_eq!(geolocation.count(), 1);
    let s = geo.stats();
    assert_eq!((s.address_cache.hits, s.address_cache.misses), (1, 1));
    assert_eq!((s.locate_cache.hits, s.locate_cache.misses), (1, 1));

    // Past the TTL of the latest possible insert, every entry has expired.
    sleep_until(inserted_by + TTL);
    assert_eq!(
        block_on(geo.address(22.5431, 113.9419, Language::Chinese)).as_deref(),
        Some(ZH)
    );
    assert!(block_on(geo.locate(gsm_query(vec![tower(1, 2, 50), tower(1, 3, 10)]))).is_some());
    assert_eq!((reverse.count(), geolocation.count()), (2, 2));
    let s = geo.stats();
    assert_eq!((s.address_cache.expired, s.locate_cache.expired), (1, 1));
}

#[test]
fn a_provider_slower_than_the_timeout_gives_none_and_others_are_still_served() {
    // The slow lookup is never answered before the test opens the gate.
    let gate = Gate::new();
    let server = FakeServer::start({
        let gate = gate.clone();
        move |seen| {
            if seen.query("lat").as_deref() == Some("10.0000") {
                gate.wait();
            }
            nominatim(seen)
        }
    });
    let rt = runtime();
    let dir = TempDir::new("slow");
    const TIMEOUT: Duration = Duration::from_secs(2);
    let (geo, _service) = start(
        GeoConfig {
            cell_db: Some(dir.file("cells.csv", CELLS_CSV)),
            reverse_url: server.url("/reverse"),
            timeout_ms: TIMEOUT.as_millis() as u64,
            ..GeoConfig::default()
        },
        &rt,
    );
    let t0 = Instant::now();
    let mut slow = Box::pin(geo.address(10.0, 10.0, Language::English));
    wait_until(
        "the slow call reaches the provider",
        Duration::from_secs(10),
        || server.count() == 1,
    );

    let fast = block_on(geo.address(22.5431, 113.9419, Language::English));
    let cell = block_on(geo.locate(gsm_query(vec![tower(9360, 4082, 60)])));
    assert_eq!(fast.as_deref(), Some(EN));
    assert!(cell.is_some());
    // Served while the slow call waits: it has not come back yet.
    let others = t0.elapsed();
    assert!(
        others < TIMEOUT,
        "the other lookups took {others:?}, past the slow call's timeout: the machine stalled"
    );
    assert!(
        block_on(poll_once(&mut slow)).is_none(),
        "the slow call ended before its timeout"
    );

    // Only the timeout can end it: the provider never answers.
    assert_eq!(block_on(slow), None);
    let waited = t0.elapsed();
    assert!(waited >= TIMEOUT - Duration::from_millis(10), "{waited:?}");
    assert!(
        waited < Duration::from_secs(30),
        "bounded by the timeout: {waited:?}"
    );
    let s = geo.stats();
    assert_eq!(
        (s.reverse.timeouts, s.reverse.hits, s.reverse.failures),
        (1, 1, 0)
    );
    assert_eq!(s.reverse.breaker, BreakerState::Closed);
    gate.open();
}

#[test]
fn the_breaker_opens_rejects_while_open_and_closes_after_the_cool_down() {
    let failing = Arc::new(AtomicBool::new(true));
    let server = FakeServer::start({
        let failing = failing.clone();
        move |seen| {
            if failing.load(Ordering::SeqCst) {
                answer(500, "{}")
            } else {
                nominatim(seen)
            }
        }
    });
    let rt = runtime();
    // Long enough that the calls which must be refused are surely inside it.
    const COOL_DOWN: Duration = Duration::from_secs(3);
    let (geo, _service) = start(
        GeoConfig {
            reverse_url: server.url("/reverse"),
            breaker_failures: 3,
            breaker_cooldown_secs: COOL_DOWN.as_secs(),
            ..GeoConfig::default()
        },
        &rt,
    );
    let ask = |lat: f64| block_on(geo.address(lat, 113.0, Language::Chinese));
    // The breaker opens during the third failure: after this ...
    let before = Instant::now();
    for _ in 0..3 {
        assert_eq!(ask(22.0), None);
    }
    // ... and before this.
    let opened_by = Instant::now();
    assert_eq!(server.count(), 3);
    let s = geo.stats();
    assert_eq!((s.reverse.failures, s.reverse.breaker_opens), (3, 1));
    assert_eq!(s.reverse.breaker, BreakerState::Open);

    // Open: refused without calling (the provider saw nothing more).
    assert_eq!(ask(22.0), None);
    assert_eq!(ask(23.0), None);
    let refused_by = Instant::now();
    assert!(
        refused_by < before + COOL_DOWN,
        "took {:?}, past the cool-down: the machine stalled",
        refused_by - before
    );
    assert_eq!(server.count(), 3);
    assert_eq!(geo.stats().reverse.rejected_open, 2);

    // The provider recovers; after the cool-down one probe closes the breaker.
    failing.store(false, Ordering::SeqCst);
    sleep_until(opened_by + COOL_DOWN);
    assert_eq!(ask(22.0).as_deref(), Some(ZH));
    assert_eq!(geo.stats().reverse.breaker, BreakerState::Closed);
    assert_eq!(ask(24.0).as_deref(), Some(ZH));
    assert_eq!(server.count(), 5);
    let s = geo.stats();
    assert_eq!(
        (s.reverse.requests, s.reverse.hits, s.reverse.breaker_opens),
        (5, 2, 1)
    );
}

#[test]
fn a_full_queue_is_refused_at_once_and_counted() {
    // The first two lookups wait at the provider until the gate opens.
    let gate = Gate::new();
    let server = FakeServer::start({
        let gate = gate.clone();
        move |seen| {
            gate.wait();
            nominatim(seen)
        }
    });
    let rt = runtime();
    let (geo, _service) = start(
        GeoConfig {
            reverse_url: server.url("/reverse"),
            queue: 2,
            concurrency: 1,
            timeout_ms: 30_000,
            ..GeoConfig::default()
        },
        &rt,
    );
    let mut first = Box::pin(geo.address(1.0, 1.0, Language::English));
    let second = geo.address(2.0, 2.0, Language::English);
    // Refused while the two before it are still out: it did not wait for them.
    let third = block_on(geo.address(3.0, 3.0, Language::English));
    assert_eq!(third, None);
    let s = geo.stats();
    assert_eq!((s.queue_full, s.outstanding), (1, 2));
    assert!(block_on(poll_once(&mut first)).is_none());

    gate.open();
    assert_eq!(block_on(first).as_deref(), Some(EN));
    assert_eq!(block_on(second).as_deref(), Some(EN));
    assert_eq!(geo.stats().outstanding, 0);
    assert_eq!(
        block_on(geo.address(3.0, 3.0, Language::English)).as_deref(),
        Some(EN)
    );
    assert_eq!(geo.stats().queue_full, 1);
}

#[test]
fn a_dropped_service_answers_none() {
    let rt = runtime();
    let dir = TempDir::new("dropped");
    let (geo, service) = start(
        GeoConfig {
            cell_db: Some(dir.file("cells.csv", CELLS_CSV)),
            ..GeoConfig::default()
        },
        &rt,
    );
    assert!(block_on(geo.locate(gsm_query(vec![tower(9360, 4082, 60)]))).is_some());
    drop(service);
    // The abort lands on one of the runtime's next turns. A lookup queued
    // before it lands is never answered (its reply sits in the channel the
    // aborted dispatcher no longer reads; shards bound it with their
    // deadline), so each probe gets a bound of its own and the wait goes on
    // until a probe is answered None at once.
    let probe = || {
        let (tx, rx) = std::sync::mpsc::channel();
        let geo = geo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(block_on(geo.locate(gsm_query(vec![tower(9360, 4082, 60)]))));
        });
        rx.recv_timeout(Duration::from_secs(1))
    };
    wait_until(
        "the dropped service answers None",
        Duration::from_secs(10),
        || probe() == Ok(None),
    );
    for _ in 0..3 {
        assert_eq!(probe(), Ok(None));
    }
}

#[test]
fn the_handle_is_awaited_from_a_shard_runtime() {
    // The late lookup is never answered during the test.
    let gate = Gate::new();
    let server = FakeServer::start({
        let gate = gate.clone();
        move |seen| {
            if seen.query("lat").as_deref() == Some("10.0000") {
                gate.wait();
            }
            nominatim(seen)
        }
    });
    let rt = runtime();
    let dir = TempDir::new("shard-runtime");
    let (geo, _service) = start(
        GeoConfig {
            cell_db: Some(dir.file("cells.csv", CELLS_CSV)),
            reverse_url: server.url("/reverse"),
            // Far beyond the caller's deadline: only that deadline can end the wait.
            timeout_ms: 60_000,
            ..GeoConfig::default()
        },
        &rt,
    );
    let on_shard = geo.clone();
    let (address, fix, deadline_hit, waited) = badge_ingest::runtime::Builder::new("geo-test")
        .spawn(move || async move {
            let address = on_shard.address(22.5431, 113.9419, Language::Chinese).await;
            let fix = on_shard
                .locate(gsm_query(vec![tower(9360, 4082, 60)]))
                .await;
            // The caller's own deadline, as a shard applies it.
            let t = Instant::now();
            let late =
                futures_lite::future::or(on_shard.address(10.0, 10.0, Language::Chinese), async {
                    badge_ingest::runtime::sleep(Duration::from_millis(100)).await;
                    None
                })
                .await;
            (address, fix, late.is_none(), t.elapsed())
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(address.as_deref(), Some(ZH));
    assert_eq!(fix.map(|f| f.source), Some(FixSource::Cell));
    assert!(deadline_hit);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    // Still waiting at the provider: the caller's deadline ended it, not a timeout.
    let s = geo.stats();
    assert_eq!((s.reverse.timeouts, s.reverse.failures), (0, 0), "{s:?}");
    gate.open();
}

#[test]
fn start_refuses_a_bad_config_or_a_missing_cell_file() {
    let rt = runtime();
    let e = GeoService::start(
        GeoConfig {
            queue: 0,
            ..GeoConfig::default()
        },
        rt.handle().clone(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("geo.queue"), "{e}");
    let e = GeoService::start(
        GeoConfig {
            cell_db: Some("/nonexistent/cells.csv".into()),
            ..GeoConfig::default()
        },
        rt.handle().clone(),
    )
    .unwrap_err();
    assert!(matches!(e, GeoError::CellDbRead { .. }), "{e}");
    // No providers at all: lookups answer None at once.
    let (geo, _service) = start(GeoConfig::default(), &rt);
    assert_eq!(block_on(geo.locate(gsm_query(vec![tower(1, 2, 3)]))), None);
    assert_eq!(block_on(geo.address(1.0, 1.0, Language::English)), None);
    assert!(matches!(
        block_on(geo.reload_cell_db()),
        Err(GeoError::NoCellDb)
    ));
}
