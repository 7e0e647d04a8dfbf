//! The login allowlist against the real server (`App::start`): from a file
//! and from the `devices` table of a real ClickHouse, loaded at start (a
//! failure fails the start), refreshed on its period and by the control
//! socket's `allowlist reload` (a failure keeps the previous list), and
//! shown by `allowlist`, `stats` and `/metrics`, by exact value.
//!
//! What the shards do with the answer is the ingest core's (its tests);
//! here the list is asked the way the shards ask it, through
//! `App::imei_allowlist`.

mod pipeline_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use badge_ingest::app::App;
use badge_ingest::config::{Config, SinkKind};
use badge_ingest::protocol::Imei;
use serde_json::{json, Value};

use pipeline_support::{
    clickhouse_url, fresh_database, imei, query, shutdown_app, temp_dir, wait_until, Control,
};

fn config(allowlist: &str) -> Config {
    let mut c = pipeline_support::loopback_config(1);
    c.sink.kind = SinkKind::Count;
    c.limits.allowlist = allowlist.into();
    c.limits.allowlist_refresh_secs = 0;
    c
}

fn start(config: Config) -> App {
    config.validate().expect("the test config is valid");
    App::start(Arc::new(config)).expect("the server starts")
}

fn start_error(config: Config) -> String {
    config.validate().expect("the test config is valid");
    App::start(Arc::new(config))
        .err()
        .expect("the start fails")
        .to_string()
}

fn write_list(path: &Path, imeis: &[Imei], extra: &str) {
    let mut text = String::from("# allowed badges\n");
    for i in imeis {
        text.push_str(&format!("{i}   # badge {i}\n"));
    }
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

fn ask_json(ctl: &mut Control, command: &str) -> Value {
    let a = ctl.ask(&format!("json {command}"));
    serde_json::from_str(&a).unwrap_or_else(|e| panic!("{e}: {a}"))
}

/// What the shards ask, `n` times for `imei`.
fn allows(app: &App, imei: Imei) -> bool {
    app.imei_allowlist().expect("an allowlist").allows(imei)
}

/// `name value` of the Prometheus text, as a number.
fn prom(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn a_file_allowlist_is_loaded_shown_reloaded_and_kept_when_a_reload_fails() {
    let dir = temp_dir("allow-file");
    let path = dir.join("allowed.txt");
    write_list(&path, &[imei(1), imei(2)], "");
    let app = start(config(path.to_str().unwrap()));
    let mut ctl = Control::connect(&app);

    assert!(allows(&app, imei(1)));
    assert!(allows(&app, imei(2)));
    assert!(!allows(&app, imei(3)));
    assert!(!allows(&app, imei(3)));

    let text = ctl.ask("allowlist");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("allowlist: 2 IMEIs from file {}", path.display())
    );
    let loaded_at = app.allowlist().unwrap().loaded_at().unwrap();
    let loaded_at = loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        lines[1],
        format!("entries 2 refused 2 loads 1 load_failures 0 skipped_rows 0 loaded_at {loaded_at}")
    );
    assert_eq!(lines.len(), 2, "no last_error: {text}");
    let v = ask_json(&mut ctl, "allowlist");
    assert_eq!(
        v,
        json!({
            "ok": true, "configured": true,
            "source": format!("file {}", path.display()),
            "entries": 2, "refused": 2, "loads": 1, "load_failures": 0,
            "skipped_rows": 0, "loaded_at": loaded_at, "last_error": null,
        })
    );
    // The same figures in `stats`.
    let stats = ctl.ask("stats");
    assert!(
        stats
            .lines()
            .any(|l| l == format!("allowlist: {}", lines[1])),
        "{stats}"
    );
    assert_eq!(ask_json(&mut ctl, "stats")["allowlist"]["refused"], 2);

    // A new list, reloaded on request.
    write_list(&path, &[imei(2), imei(3), imei(4)], "\n");
    assert_eq!(ctl.ask("allowlist reload"), "allowlist reloaded: 3 IMEIs");
    assert!(!allows(&app, imei(1)));
    assert!(allows(&app, imei(3)));

    // A bad list: refused with its line, the previous one stays.
    write_list(&path, &[imei(5)], "35341903298144x\n");
    let e = ctl.ask("allowlist reload");
    assert_eq!(
        e,
        format!(
            "error: allowlist not reloaded (the previous one stays, 3 IMEIs): allowlist file {}: \
             line 3: `35341903298144x` is not an IMEI (an IMEI has only decimal digits)",
            path.display()
        )
    );
    assert!(allows(&app, imei(4)));
    assert!(!allows(&app, imei(5)));
    let v = ask_json(&mut ctl, "allowlist");
    assert_eq!(
        (
            v["entries"].clone(),
            v["loads"].clone(),
            v["load_failures"].clone(),
            v["refused"].clone()
        ),
        (json!(3), json!(2), json!(1), json!(4)),
        "{v}"
    );
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .contains("line 3: `35341903298144x`"),
        "{v}"
    );
    assert!(ctl
        .ask("allowlist")
        .lines()
        .any(|l| l.starts_with("last_error: allowlist file ")));
    let metrics = ctl.ask("metrics");
    assert_eq!(prom(&metrics, "badge_allowlist_entries"), 3.0);
    assert_eq!(prom(&metrics, "badge_allowlist_loads_total"), 2.0);
    assert_eq!(prom(&metrics, "badge_allowlist_load_failures_total"), 1.0);

    // Fixed again: the error is gone.
    write_list(&path, &[imei(5)], "");
    assert_eq!(ctl.ask("allowlist reload"), "allowlist reloaded: 1 IMEIs");
    assert_eq!(ask_json(&mut ctl, "allowlist")["last_error"], Value::Null);
    assert!(ctl.ask("help").contains("allowlist reload"));
    drop(ctl);
    shutdown_app(app).unwrap();
}

#[test]
fn the_file_is_read_again_every_refresh_interval() {
    let dir = temp_dir("allow-refresh");
    let path = dir.join("allowed.txt");
    write_list(&path, &[imei(10)], "");
    let mut c = config(path.to_str().unwrap());
    c.limits.allowlist_refresh_secs = 1;
    let app = start(c);
    assert!(allows(&app, imei(10)) && !allows(&app, imei(11)));
    write_list(&path, &[imei(11)], "");
    assert!(
        wait_until(Duration::from_secs(10), || app
            .allowlist()
            .unwrap()
            .contains(imei(11))),
        "the new file was not picked up"
    );
    assert!(!allows(&app, imei(10)));
    // A broken file on a periodic refresh: counted, the list kept.
    std::fs::write(&path, "nonsense\n").unwrap();
    let list = app.allowlist().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(10), || list
            .counters()
            .load_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0),
        "the failed refresh was not counted"
    );
    assert!(list.contains(imei(11)));
    assert!(list.last_error().unwrap().contains("line 1: `nonsense`"));
    shutdown_app(app).unwrap();
}

#[test]
fn a_file_that_cannot_be_loaded_fails_the_start_naming_the_line() {
    let dir = temp_dir("allow-bad");
    let path = dir.join("allowed.txt");
    write_list(&path, &[imei(1)], "\n123\n");
    let e = start_error(config(path.to_str().unwrap()));
    assert_eq!(
        e,
        format!(
            "loading the allowlist: allowlist file {}: line 4: `123` is not an IMEI (an IMEI has 15 or 16 digits)",
            path.display()
        )
    );
    let missing = dir.join("missing.txt");
    let e = start_error(config(missing.to_str().unwrap()));
    assert!(
        e.starts_with(&format!(
            "loading the allowlist: allowlist file {}: ",
            missing.display()
        )) && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn without_an_allowlist_every_imei_may_log_in() {
    let app = start(config(""));
    assert!(app.imei_allowlist().is_none());
    assert!(app.allowlist().is_none());
    let mut ctl = Control::connect(&app);
    assert_eq!(
        ctl.ask("allowlist"),
        "no allowlist (limits.allowlist is empty): every IMEI may log in"
    );
    assert_eq!(
        ask_json(&mut ctl, "allowlist"),
        json!({"ok": true, "configured": false})
    );
    assert_eq!(
        ctl.ask("allowlist reload"),
        "error: no allowlist is configured (limits.allowlist)"
    );
    assert_eq!(
        ctl.ask("allowlist frobnicate"),
        "error: usage: allowlist | allowlist reload"
    );
    assert_eq!(ask_json(&mut ctl, "stats")["allowlist"], Value::Null);
    assert!(!ctl.ask("stats").contains("allowlist:"));
    assert!(!ctl.ask("metrics").contains("badge_allowlist_"));
    drop(ctl);
    shutdown_app(app).unwrap();
}

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn the_devices_table_gives_the_latest_enabled_version_of_each_imei() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "allowlist");
    let (a, b, c, d) = (imei(21), imei(22), imei(23), imei(24));
    query(
        &url,
        &format!(
            "INSERT INTO {db}.devices (imei, enabled, note, updated_at) VALUES \
             ('{a}', 1, 'a', 1700000000), \
             ('{b}', 1, 'b, later revoked', 1700000000), ('{b}', 0, 'revoked', 1700000100), \
             ('{c}', 0, 'c, later enabled', 1700000000), ('{c}', 1, 'enabled', 1700000100), \
             ('not-an-imei', 1, 'typo', 1700000000)"
        ),
    );
    let mut cfg = config("clickhouse");
    cfg.clickhouse.url = url.clone();
    cfg.clickhouse.database = db.clone();
    let app = start(cfg.clone());
    assert!(allows(&app, a));
    assert!(!allows(&app, b), "revoked by its later version");
    assert!(allows(&app, c), "enabled by its later version");
    assert!(!allows(&app, d));
    let mut ctl = Control::connect(&app);
    let v = ask_json(&mut ctl, "allowlist");
    assert_eq!(
        (
            v["source"].clone(),
            v["entries"].clone(),
            v["skipped_rows"].clone(),
            v["refused"].clone()
        ),
        (
            json!(format!("ClickHouse table {db}.devices")),
            json!(2),
            json!(1),
            json!(2)
        ),
        "{v}"
    );

    query(
        &url,
        &format!(
            "INSERT INTO {db}.devices (imei, enabled, note, updated_at) VALUES ('{d}', 1, 'new', 1700000200)"
        ),
    );
    assert_eq!(ctl.ask("allowlist reload"), "allowlist reloaded: 3 IMEIs");
    assert!(allows(&app, d));

    // The table gone: the reload fails, the list stays, the error says where.
    query(&url, &format!("DROP TABLE {db}.devices"));
    let e = ctl.ask("allowlist reload");
    assert!(
        e.starts_with(&format!(
            "error: allowlist not reloaded (the previous one stays, 3 IMEIs): allowlist table {db}.devices: "
        )),
        "{e}"
    );
    assert!(allows(&app, d));
    assert_eq!(ask_json(&mut ctl, "allowlist")["load_failures"], 1);
    drop(ctl);
    shutdown_app(app).unwrap();

    // Without the table, or without ClickHouse, the start fails.
    let e = start_error(cfg.clone());
    assert!(
        e.starts_with(&format!(
            "loading the allowlist: allowlist table {db}.devices: "
        )),
        "{e}"
    );
    let mut down = cfg;
    down.clickhouse.url = "http://127.0.0.1:1".into();
    let e = start_error(down);
    assert!(
        e.starts_with(&format!(
            "loading the allowlist: allowlist table {db}.devices: "
        )),
        "{e}"
    );
    query(&url, &format!("DROP DATABASE {db}"));
}
