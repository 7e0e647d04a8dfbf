//! The beacon registry: the CSV format, the `beacons` table of a real
//! ClickHouse (import, load, versions), the refresher with both sources,
//! the unknown-beacon tracker, and the `badge-ingest beacons` commands run
//! as the real binary.

mod pipeline_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use badge_ingest::beacons::{
    self, format_mac, parse_csv, Beacon, BeaconError, BeaconRefresher, BeaconRegistry, BeaconSource,
};
use badge_ingest::config::BeaconsConfig;
use badge_ingest::config::Config;
use badge_ingest::ingest::{UnknownBeacon, UnknownBeacons};
use futures_lite::future::block_on;

use pipeline_support::{clickhouse_url, count, fresh_database, query, temp_dir, wait_until};

fn parse(text: &str) -> Result<Vec<Beacon>, BeaconError> {
    parse_csv(text.as_bytes())
}

/// The message of a parse error, which must start with its line.
fn parse_error(text: &str) -> String {
    let e = parse(text).expect_err("the CSV is bad");
    assert!(matches!(e, BeaconError::Line { .. }), "{e:?}");
    e.to_string()
}

fn beacon(mac: u64, name: &str, lat: f64, lon: f64, address: &str, active: bool) -> Beacon {
    Beacon {
        mac,
        name: name.into(),
        lat,
        lon,
        address: address.into(),
        active,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(url: &str) -> clickhouse::Client {
    let mut config = Config::default();
    config.clickhouse.url = url.to_string();
    badge_ingest::sink::clickhouse::client(&config)
}

fn config(refresh_secs: u64) -> BeaconsConfig {
    BeaconsConfig {
        refresh_secs,
        ..BeaconsConfig::default()
    }
}

// ---------------------------------------------------------------------------
// CSV

#[test]
fn csv_reads_every_mac_spelling_quoted_fields_and_optional_columns() {
    let text = "\u{feff}mac,name,lat,lon,address,active\n\
        AC:23:3F:01:02:03,Gate 1,22.543099,114.057868,\"Bldg 3, Floor 2\",1\n\
        \n\
        ac-23-3f-01-02-04,\"Dock \"\"B\"\", north\",-33.8688,151.2093,,0\n\
        ac233f010205 , Stores ,,,\"two\nlines\",\n\
        AC233F010206,Yard,1.5,-2.25,,yes\n";
    let got = parse(text).unwrap();
    assert_eq!(
        got,
        vec![
            beacon(
                0xAC23_3F01_0203,
                "Gate 1",
                22.543099,
                114.057868,
                "Bldg 3, Floor 2",
                true
            ),
            beacon(
                0xAC23_3F01_0204,
                "Dock \"B\", north",
                -33.8688,
                151.2093,
                "",
                false
            ),
            beacon(0xAC23_3F01_0205, "Stores", 0.0, 0.0, "two\nlines", true),
            beacon(0xAC23_3F01_0206, "Yard", 1.5, -2.25, "", true),
        ]
    );
    assert!(got[0].has_position());
    assert!(!got[2].has_position(), "empty lat/lon is no position");

    // Columns by name, in any order and case; address and active optional.
    let got = parse("LON,Name,mac,lat\n114.1,Gate,C1:00:00:00:00:01,22.5\n").unwrap();
    assert_eq!(
        got,
        vec![beacon(0xC100_0000_0001, "Gate", 22.5, 114.1, "", true)]
    );
    assert_eq!(parse("mac,name,lat,lon\n").unwrap(), vec![]);
}

#[test]
fn csv_errors_name_the_line_and_the_problem() {
    let header = "mac,name,lat,lon,address,active\n";
    let good = "C1:00:00:00:00:01,One,22.5,114.0,,1\n";

    let e = parse_error(&format!("{header}{good}C1:00:00:00:00:ZZ,Two,1,2,,1\n"));
    assert!(e.starts_with("line 3: bad MAC `C1:00:00:00:00:ZZ`"), "{e}");
    let e = parse_error(&format!("{header}C1:00:00:00:00:02,Two,95.5,2,,1\n"));
    assert!(e.starts_with("line 2: bad lat `95.5`"), "{e}");
    let e = parse_error(&format!("{header}C1:00:00:00:00:02,Two,north,2,,1\n"));
    assert!(
        e.starts_with("line 2: bad lat `north`: not a number"),
        "{e}"
    );
    let e = parse_error(&format!("{header}C1:00:00:00:00:02,Two,1,,,1\n"));
    assert!(e.starts_with("line 2: bad lon ``"), "{e}");
    let e = parse_error("mac,name,lat\nC1:00:00:00:00:02,Two,1\n");
    assert!(e.starts_with("line 1: missing column `lon`"), "{e}");
    let e = parse_error("mac,name,lat,lon,adress\n");
    assert!(e.starts_with("line 1: unknown column `adress`"), "{e}");
    let e = parse_error("mac,name,lat,lon,\n");
    assert!(e.starts_with("line 1: column 5 has no name"), "{e}");
    let e = parse_error("");
    assert!(e.starts_with("line 1: no header row"), "{e}");
    let e = parse_error(&format!(
        "{header}{good}C1:00:00:00:00:02,Two,1,2,,1\nc1-00-00-00-00-01,Again,1,2,,1\n"
    ));
    assert!(
        e.starts_with("line 4: MAC C1:00:00:00:00:01 is already on line 2"),
        "{e}"
    );
    // A quoted newline makes a record span lines; the next one's number counts them.
    let e = parse_error(&format!(
        "{header}C1:00:00:00:00:02,Two,1,2,\"a\nb\",1\nC1:00:00:00:00:03,Three,1,2,,maybe\n"
    ));
    assert!(e.starts_with("line 4: bad active `maybe`"), "{e}");
    let e = parse_error(&format!("{header}{good}C1:00:00:00:00:02,Two,1,2\n"));
    assert!(
        e.starts_with("line 3: 4 fields where the header has 6"),
        "{e}"
    );
    let e = parse_error(&format!("{header}C1:00:00:00:00:02,,1,2,,1\n"));
    assert!(e.starts_with("line 2: empty name"), "{e}");
}

// ---------------------------------------------------------------------------
// The table

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn import_then_load_round_trips_and_a_new_version_supersedes_the_old() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "beacons");
    let rt = runtime();
    let client = client(&url);
    let list = vec![
        beacon(0xC1, "Gate, east", 22.543099, 114.057868, "Bldg 3", true),
        beacon(0xC2, "Dock \"B\"", -33.8688, 151.2093, "", true),
        beacon(0xFFFF_FFFF_FFFF, "Yard", 0.0, 0.0, "多语言 ok", false),
    ];
    assert_eq!(
        rt.block_on(beacons::import(&client, &db, &list)).unwrap(),
        3
    );
    let mut loaded = rt.block_on(beacons::load(&client, &db)).unwrap();
    loaded.sort_by_key(|b| b.mac);
    assert_eq!(loaded, list);

    // Re-imported at once (the same second): the new version must still win.
    let changed = vec![beacon(
        0xC1,
        "Gate, east (moved)",
        22.6,
        114.1,
        "Bldg 4",
        false,
    )];
    assert_eq!(
        rt.block_on(beacons::import(&client, &db, &changed))
            .unwrap(),
        1
    );
    let loaded = rt.block_on(beacons::load(&client, &db)).unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[0], changed[0]);
    assert_eq!(loaded[1], list[1]);
    assert_eq!(
        count(
            &url,
            &format!("SELECT count() FROM {db}.beacons WHERE mac = 193")
        ),
        2,
        "history is kept"
    );
    assert_eq!(
        count(
            &url,
            &format!("SELECT uniqExact(updated_at) FROM {db}.beacons WHERE mac = 193")
        ),
        2,
        "every import is a version of its own"
    );
    // After a merge too (ReplacingMergeTree keeps the newest).
    query(&url, &format!("OPTIMIZE TABLE {db}.beacons FINAL"));
    assert_eq!(rt.block_on(beacons::load(&client, &db)).unwrap(), loaded);

    let registry = BeaconRegistry::new();
    registry.replace(loaded);
    assert!(registry.get(0xC1).is_none(), "retired");
    assert!(registry.get(0xFFFF_FFFF_FFFF).is_none(), "inactive");
    assert_eq!(registry.get(0xC2).unwrap().name, "Dock \"B\"");
    assert_eq!(registry.len(), 1);

    // Checked before anything is written.
    let twice = vec![list[1].clone(), list[1].clone()];
    let e = rt
        .block_on(beacons::import(&client, &db, &twice))
        .unwrap_err();
    assert!(matches!(e, BeaconError::DuplicateMac { mac: 0xC2 }), "{e}");
    let mut bad = list[1].clone();
    bad.lat = f64::NAN;
    let e = rt
        .block_on(beacons::import(&client, &db, &[list[0].clone(), bad]))
        .unwrap_err();
    assert!(e.to_string().contains("lat NaN"), "{e}");
    assert!(matches!(
        rt.block_on(beacons::import(&client, "x; DROP", &list)),
        Err(BeaconError::BadDatabase(_))
    ));
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.beacons")),
        3,
        "one row per beacon after the merge, and nothing more written"
    );
    query(&url, &format!("DROP DATABASE {db}"));
}

// ---------------------------------------------------------------------------
// The refresher

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn the_refresher_reloads_from_clickhouse_and_keeps_its_snapshot_when_that_fails() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "beacons");
    let rt = runtime();
    let writer = client(&url);
    rt.block_on(beacons::import(
        &writer,
        &db,
        &[
            beacon(0xC1, "One", 1.0, 2.0, "", true),
            beacon(0xC2, "Two", 1.0, 2.0, "", true),
        ],
    ))
    .unwrap();

    let registry = BeaconRegistry::new();
    let source = BeaconSource::ClickHouse {
        client: client(&url),
        database: db.clone(),
    };
    let refresher = BeaconRefresher::start(&config(0), source, registry.clone()).unwrap();
    assert_eq!(registry.len(), 2, "loaded before start returns");
    assert_eq!(registry.get(0xC1).unwrap().name, "One");
    let stats = refresher.stats();
    assert_eq!((stats.loads, stats.failures, stats.beacons), (1, 0, 2));
    assert!(stats.loaded_at.is_some());

    rt.block_on(beacons::import(
        &writer,
        &db,
        &[
            beacon(0xC1, "One (renamed)", 1.0, 2.0, "", true),
            beacon(0xC2, "Two", 1.0, 2.0, "", false),
            beacon(0xC3, "Three", 1.0, 2.0, "", true),
        ],
    ))
    .unwrap();
    assert_eq!(
        registry.get(0xC1).unwrap().name,
        "One",
        "not before a reload"
    );
    // Awaited outside tokio, as the control socket or a shard might.
    let handle = refresher.handle();
    assert_eq!(block_on(handle.reload()).unwrap(), 2);
    assert_eq!(registry.get(0xC1).unwrap().name, "One (renamed)");
    assert!(registry.get(0xC2).is_none());
    assert!(registry.get(0xC3).is_some());

    let generation = registry.generation();
    let loaded_at = registry.loaded_at();
    query(&url, &format!("DROP TABLE {db}.beacons"));
    let e = block_on(refresher.reload()).unwrap_err();
    assert!(matches!(e, BeaconError::ClickHouse(_)), "{e}");
    assert_eq!(registry.generation(), generation, "the snapshot is kept");
    assert_eq!(registry.loaded_at(), loaded_at);
    assert_eq!(registry.get(0xC1).unwrap().name, "One (renamed)");
    let stats = refresher.stats();
    assert_eq!((stats.loads, stats.failures, stats.beacons), (2, 1, 2));
    assert!(
        stats.last_error.as_deref().unwrap().contains("beacons"),
        "{:?}",
        stats.last_error
    );

    drop(refresher);
    assert!(matches!(
        block_on(handle.reload()),
        Err(BeaconError::Stopped)
    ));
    query(&url, &format!("DROP DATABASE {db}"));
}

#[test]
fn the_refresher_reads_a_file_periodically_and_a_bad_file_fails_only_the_start() {
    let dir = temp_dir("beacons-file");
    let path = dir.join("beacons.csv");
    std::fs::write(
        &path,
        "mac,name,lat,lon\nC1:00:00:00:00:01,One,1,2\nnot a mac,x,1,2\n",
    )
    .unwrap();
    let registry = BeaconRegistry::new();
    let e = BeaconRefresher::start(
        &config(1),
        BeaconSource::File(path.clone()),
        registry.clone(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("beacons.csv: line 3: bad MAC `not a mac`"),
        "{e}"
    );
    assert!(registry.loaded_at().is_none());
    let missing = dir.join("missing.csv");
    assert!(
        BeaconRefresher::start(&config(1), BeaconSource::File(missing), registry.clone()).is_err()
    );

    std::fs::write(&path, "mac,name,lat,lon\nC1:00:00:00:00:01,One,1,2\n").unwrap();
    let refresher = BeaconRefresher::start(
        &config(1),
        BeaconSource::File(path.clone()),
        registry.clone(),
    )
    .unwrap();
    assert_eq!(registry.get(0xC100_0000_0001).unwrap().name, "One");

    // Picked up by the periodic refresh, without asking.
    std::fs::write(
        &path,
        "mac,name,lat,lon\nC1:00:00:00:00:01,Uno,1,2\nC1:00:00:00:00:02,Dos,1,2\n",
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || registry.len() == 2));
    assert_eq!(registry.get(0xC100_0000_0001).unwrap().name, "Uno");

    // A file broken later is a failed reload, not an empty registry.
    std::fs::write(&path, "mac,name,lat,lon\nC1:00:00:00:00:01,Uno,1,2,extra\n").unwrap();
    let e = block_on(refresher.reload()).unwrap_err().to_string();
    assert!(e.contains("line 2: 5 fields where the header has 4"), "{e}");
    assert_eq!(registry.len(), 2);
    assert!(refresher.stats().failures >= 1);
    assert_eq!(registry.get(0xC100_0000_0002).unwrap().name, "Dos");
    drop(refresher);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreachable_clickhouse_starts_an_empty_registry() {
    // Nothing listens on port 1.
    let source = BeaconSource::ClickHouse {
        client: client("http://127.0.0.1:1"),
        database: "badges".into(),
    };
    let registry = BeaconRegistry::new();
    let refresher = BeaconRefresher::start(&config(60), source, registry.clone()).unwrap();
    assert!(registry.is_empty());
    assert!(registry.loaded_at().is_none());
    let stats = refresher.stats();
    assert_eq!((stats.loads, stats.failures), (0, 1));
    assert!(stats.last_error.is_some());
    assert!(block_on(refresher.reload()).is_err());
    assert_eq!(refresher.stats().failures, 2);
}

// ---------------------------------------------------------------------------
// Unknown beacons

#[test]
fn unknown_beacons_are_bounded_and_merge_across_shards() {
    let mut shard0 = UnknownBeacons::new(2);
    shard0.seen(0xA, 1, -80, 100);
    shard0.seen(0xB, 1, -70, 101);
    shard0.seen(0xA, 2, -90, 105);
    // Full: a third MAC is counted, not kept; known ones still count.
    shard0.seen(0xC, 1, -60, 106);
    shard0.seen(0xC, 1, -60, 107);
    shard0.seen(0xB, 3, 0, 108);
    assert_eq!(shard0.len(), 2);
    assert_eq!(shard0.overflow(), 2);

    let mut shard1 = UnknownBeacons::new(2);
    shard1.seen(0xA, 7, -75, 90);
    shard1.seen(0xA, 7, -75, 91);
    shard1.seen(0xD, 8, -50, 120);

    let mut merged = Vec::new();
    UnknownBeacons::merge(&mut merged, shard0.snapshot());
    UnknownBeacons::merge(&mut merged, shard1.snapshot());
    assert_eq!(
        merged,
        vec![
            UnknownBeacon {
                mac: 0xA,
                count: 4,
                first_seen: 90,
                last_seen: 105,
                last_imei: 2,
                best_rssi: -75,
            },
            UnknownBeacon {
                mac: 0xB,
                count: 2,
                first_seen: 101,
                last_seen: 108,
                last_imei: 3,
                best_rssi: -70,
            },
            UnknownBeacon {
                mac: 0xD,
                count: 1,
                first_seen: 120,
                last_seen: 120,
                last_imei: 8,
                best_rssi: -50,
            },
        ]
    );

    // Registered after a reload: forgotten, which makes room again.
    let registry = BeaconRegistry::new();
    registry.replace(vec![beacon(0xA, "A", 1.0, 2.0, "", true)]);
    shard0.forget(|mac| registry.contains(mac));
    assert_eq!(shard0.len(), 1);
    shard0.seen(0xC, 1, -60, 110);
    assert_eq!(shard0.len(), 2);
    assert_eq!(shard0.overflow(), 2);

    let mut empty = UnknownBeacons::new(0);
    empty.seen(0xA, 1, -60, 1);
    assert!(empty.is_empty());
    assert_eq!(empty.overflow(), 1);
}

// ---------------------------------------------------------------------------
// The binary

fn badge_ingest(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_badge-ingest"))
        .args(args)
        .env_remove("BADGE_CLICKHOUSE_URL")
        .env_remove("BADGE_DATABASE")
        .output()
        .expect("the binary runs")
}

fn run_import(url: &str, db: &str, file: &Path) -> std::process::Output {
    badge_ingest(&[
        "beacons",
        "import",
        file.to_str().unwrap(),
        "--clickhouse-url",
        url,
        "--database",
        db,
    ])
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn the_import_command_writes_a_good_file_and_nothing_of_a_bad_one() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "beacons_cli");
    let dir = temp_dir("beacons-cli");

    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "mac,name,lat,lon,address,active\n\
         AC:23:3F:01:02:03,Gate 1,22.543099,114.057868,\"Bldg 3, Floor 2\",1\n\
         ac233f010204,Dock,,,,0\n",
    )
    .unwrap();
    let out = run_import(&url, &db, &good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("imported 2 beacons into {db}.beacons\n"));
    assert_eq!(count(&url, &format!("SELECT count() FROM {db}.beacons")), 2);

    // The first lines are fine; the bad one comes late, and nothing is written.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "mac,name,lat,lon\nC1:00:00:00:00:01,One,1,2\nC1:00:00:00:00:02,Two,1,2\nC1:00:00:00:00:03,Three,100,2\n",
    )
    .unwrap();
    let out = run_import(&url, &db, &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("bad.csv: line 4: bad lat `100`"),
        "{stderr}"
    );
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.beacons")),
        2,
        "nothing of the bad file is written"
    );

    let out = badge_ingest(&[
        "beacons",
        "list",
        "--clickhouse-url",
        &url,
        "--database",
        &db,
    ]);
    assert!(out.status.success());
    let listed = parse_csv(out.stdout.as_slice()).expect("list prints importable CSV");
    let mut want = parse_csv(std::fs::read(&good).unwrap().as_slice()).unwrap();
    want.sort_by_key(|b| b.mac);
    assert_eq!(listed, want);
    assert_eq!(format_mac(listed[0].mac), "AC:23:3F:01:02:03");

    // Unreachable ClickHouse: a failure that says where it tried.
    let out = run_import("http://127.0.0.1:1", &db, &good);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "importing into {db}.beacons at http://127.0.0.1:1"
        )),
        "{stderr}"
    );

    query(&url, &format!("DROP DATABASE {db}"));
    let _ = std::fs::remove_dir_all(dir);
}
