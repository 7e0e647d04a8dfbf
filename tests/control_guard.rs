//! The control socket's guards, against the real server (`App::start`, as
//! `badge-ingest serve` runs it, and once the binary itself): the
//! connection cap, the idle and auth timeouts, the backoff after wrong
//! tokens, and the Unix socket's mode and what it does with what it finds
//! at its path. Every guard is also checked in the counters (`stats` text
//! and JSON, `/metrics`), by exact value.
//!
//! Timeouts are configured at one second so that the tests wait little;
//! the backoff is fixed (1, 2, 4, 8, 8 s), so its test takes ~23 s.

mod pipeline_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::app::App;
use badge_ingest::config::{Config, ControlAddr, SinkKind};
use serde_json::Value;

use pipeline_support::serve::{control_addr, Serve};
use pipeline_support::{shutdown_app, temp_dir, wait_until};

/// Read timeout of every client: longer than the longest backoff.
const READ_LIMIT: Duration = Duration::from_secs(20);

fn config() -> Config {
    let mut c = pipeline_support::loopback_config(1);
    c.sink.kind = SinkKind::Count;
    c
}

fn start(config: Config) -> App {
    config.validate().expect("the test config is valid");
    App::start(Arc::new(config)).expect("the server starts")
}

fn tcp_addr(app: &App) -> std::net::SocketAddr {
    match app.control_addr() {
        ControlAddr::Tcp(a) => *a,
        other => panic!("not TCP: {other}"),
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The line protocol over a raw stream.
struct Ctl {
    reader: BufReader<Box<dyn Stream>>,
}

impl Ctl {
    fn tcp(addr: std::net::SocketAddr) -> Self {
        let s = std::net::TcpStream::connect(addr).expect("control connects");
        s.set_read_timeout(Some(READ_LIMIT)).unwrap();
        Self {
            reader: BufReader::new(Box::new(s)),
        }
    }

    fn unix(path: &Path) -> Self {
        let s = UnixStream::connect(path).expect("control connects over the Unix socket");
        s.set_read_timeout(Some(READ_LIMIT)).unwrap();
        Self {
            reader: BufReader::new(Box::new(s)),
        }
    }

    fn of(app: &App) -> Self {
        Self::tcp(tcp_addr(app))
    }

    fn send(&mut self, line: &str) {
        let s = self.reader.get_mut();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }

    /// The next answer (up to the empty line), or `None` if the connection
    /// closed before any of it.
    fn answer(&mut self) -> Option<String> {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).expect("an answer in time");
            if n == 0 {
                assert!(lines.is_empty(), "closed mid-answer: {lines:?}");
                return None;
            }
            if l == "\n" {
                return Some(lines.join("\n"));
            }
            lines.push(l.trim_end().to_string());
        }
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.answer()
            .unwrap_or_else(|| panic!("closed instead of answering {line:?}"))
    }

    fn ask_json(&mut self, line: &str) -> Value {
        let a = self.ask(&format!("json {line}"));
        serde_json::from_str(&a).unwrap_or_else(|e| panic!("{e}: {a}"))
    }

    /// Asserts that the server closes the connection with nothing more.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .expect("the server closes the connection");
        assert!(
            rest.is_empty(),
            "unexpected: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// The `control` object of `json stats`.
fn control_json(ctl: &mut Ctl) -> Value {
    let v = ctl.ask_json("stats");
    assert_eq!(v["ok"], true, "{v}");
    v["control"].clone()
}

/// The `control:` line of `stats`.
fn control_line(ctl: &mut Ctl) -> String {
    let stats = ctl.ask("stats");
    stats
        .lines()
        .find(|l| l.starts_with("control: "))
        .unwrap_or_else(|| panic!("no control line in {stats}"))
        .to_string()
}

/// `name value` of the Prometheus text, as a number.
fn prom(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn connections_beyond_the_limit_get_one_line_and_are_closed() {
    let mut c = config();
    c.control.max_connections = 2;
    let app = start(c);
    let mut a = Ctl::of(&app);
    let mut b = Ctl::of(&app);
    // Both admitted (answered) before the third comes.
    assert!(a.ask("help").starts_with("commands"));
    assert!(b.ask("help").starts_with("commands"));

    let mut refused = Ctl::of(&app);
    assert_eq!(
        refused.answer().as_deref(),
        Some("error: too many control connections")
    );
    refused.expect_closed();
    // A client that sends its command first still reads the refusal.
    let mut eager = Ctl::of(&app);
    eager.send("stats");
    assert_eq!(
        eager.answer().as_deref(),
        Some("error: too many control connections")
    );
    eager.expect_closed();

    assert_eq!(
        control_line(&mut a),
        "control: connections 2 accepted 4 refused 2 idle_closes 0 auth_timeouts 0 wrong_tokens 0 wrong_token_closes 0"
    );
    let j = control_json(&mut a);
    assert_eq!(
        (j["connections"].clone(), j["refused"].clone()),
        (2.into(), 2.into()),
        "{j}"
    );
    let metrics = a.ask("metrics");
    assert_eq!(
        prom(&metrics, "badge_control_connections_refused_total"),
        2.0
    );
    assert_eq!(prom(&metrics, "badge_control_connections"), 2.0);

    // A slot given back is a slot for the next one.
    drop(b);
    assert!(
        wait_until(Duration::from_secs(10), || control_json(&mut a)
            ["connections"]
            == 1),
        "the closed connection's slot was not given back"
    );
    let mut c3 = Ctl::of(&app);
    assert!(c3.ask("help").starts_with("commands"));
    assert_eq!(control_json(&mut a)["refused"], 2);
    drop((a, c3));
    shutdown_app(app).unwrap();
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout_but_a_watch_is_not() {
    let mut c = config();
    c.control.idle_timeout_secs = 1;
    let app = start(c);

    // Silent after one command: closed, told why, about a second later.
    let mut silent = Ctl::of(&app);
    assert!(silent.ask("help").starts_with("commands"));
    let t = Instant::now();
    assert_eq!(
        silent.answer().as_deref(),
        Some("error: idle timeout (control.idle_timeout_secs), closing the connection")
    );
    silent.expect_closed();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // Busy: a command every 400 ms for 2 s keeps it open.
    let mut busy = Ctl::of(&app);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert!(busy.ask("help").starts_with("commands"));
        std::thread::sleep(Duration::from_millis(400));
    }

    // A watch streams on past the idle timeout.
    let raw = std::net::TcpStream::connect(tcp_addr(&app)).unwrap();
    raw.set_read_timeout(Some(READ_LIMIT)).unwrap();
    let mut watch = Ctl {
        reader: BufReader::new(Box::new(raw.try_clone().unwrap())),
    };
    watch.send("watch");
    let mut header = String::new();
    watch.reader.read_line(&mut header).unwrap();
    assert!(header.starts_with("{\"watching\":"), "{header}");
    raw.set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let mut more = String::new();
    match watch.reader.read_line(&mut more) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the watch ended within 2.5 s (idle timeout 1 s): {other:?} {more:?}"),
    }

    // `busy`, silent since, has been closed too.
    assert_eq!(
        busy.answer().as_deref(),
        Some("error: idle timeout (control.idle_timeout_secs), closing the connection")
    );
    let mut fresh = Ctl::of(&app);
    let j = control_json(&mut fresh);
    assert_eq!(j["idle_closes"], 2, "{j}");
    assert_eq!(j["auth_timeouts"], 0, "{j}");
    assert_eq!(
        prom(&fresh.ask("metrics"), "badge_control_idle_closes_total"),
        2.0
    );
    drop(fresh);
    shutdown_app(app).unwrap();
}

#[test]
fn with_a_token_an_unauthenticated_connection_is_closed_after_the_auth_timeout() {
    let mut c = config();
    c.server.control_token = "the-token".into();
    c.control.auth_timeout_secs = 1;
    let app = start(c);

    let mut silent = Ctl::of(&app);
    let t = Instant::now();
    assert_eq!(
        silent.answer().as_deref(),
        Some("error: auth timeout (control.auth_timeout_secs), closing the connection")
    );
    silent.expect_closed();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // Busy with other commands is not authenticating: closed all the same.
    let mut chatty = Ctl::of(&app);
    let t = Instant::now();
    let closed = loop {
        // The close may come while we sleep: then the write may fail, and
        // the farewell is what there is to read.
        let s = chatty.reader.get_mut();
        let _ = s.write_all(b"help\n").and_then(|()| s.flush());
        match chatty.answer() {
            Some(a) if a == "error: auth required: send `auth TOKEN` first" => {}
            Some(a) => break a,
            None => panic!("closed without a word"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "still open after 5 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        closed,
        "error: auth timeout (control.auth_timeout_secs), closing the connection"
    );
    assert!(t.elapsed() >= Duration::from_millis(900));

    // Authenticated in time: stays.
    let mut authed = Ctl::of(&app);
    assert_eq!(authed.ask("auth the-token"), "authenticated");
    std::thread::sleep(Duration::from_millis(1500));
    let j = control_json(&mut authed);
    assert_eq!(j["auth_timeouts"], 2, "{j}");
    assert_eq!(j["idle_closes"], 0, "{j}");
    drop(authed);
    shutdown_app(app).unwrap();
}

#[test]
fn wrong_tokens_are_answered_ever_later_and_the_fifth_closes_the_connection() {
    let mut c = config();
    c.server.control_token = "right-token".into();
    c.control.auth_timeout_secs = 60;
    let app = start(c);

    // One wrong, then the right one: the right one is not held back.
    let mut once = Ctl::of(&app);
    let t = Instant::now();
    assert_eq!(
        once.ask_json("auth wrong"),
        serde_json::json!({"ok": false, "error": "bad token"})
    );
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_eq!(once.ask("auth right-token"), "authenticated");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    let mut guesser = Ctl::of(&app);
    let mut delays = Vec::new();
    for n in 1..=4 {
        let t = Instant::now();
        assert_eq!(guesser.ask(&format!("auth guess-{n}")), "error: bad token");
        delays.push(t.elapsed());
    }
    let t = Instant::now();
    assert_eq!(
        guesser.ask("auth guess-5"),
        "error: bad token; 5 wrong tokens, closing the connection"
    );
    delays.push(t.elapsed());
    guesser.expect_closed();
    for (delay, expected) in delays.iter().zip([1u64, 2, 4, 8, 8]) {
        let expected = Duration::from_secs(expected);
        assert!(
            *delay >= expected - Duration::from_millis(50)
                && *delay < expected + Duration::from_millis(1500),
            "delays {delays:?}"
        );
    }

    let j = control_json(&mut once);
    assert_eq!(j["wrong_tokens"], 6, "{j}");
    assert_eq!(j["wrong_token_closes"], 1, "{j}");
    assert_eq!(j["auth_timeouts"], 0, "{j}");
    let metrics = once.ask("metrics");
    assert_eq!(prom(&metrics, "badge_control_wrong_tokens_total"), 6.0);
    assert_eq!(
        prom(&metrics, "badge_control_wrong_token_closes_total"),
        1.0
    );
    drop(once);
    shutdown_app(app).unwrap();
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("ctl.sock")
}

fn unix_config(path: &Path) -> Config {
    let mut c = config();
    c.server.control = path.to_str().unwrap().into();
    c
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_unix_socket_is_created_with_socket_mode() {
    let dir = temp_dir("ctl-mode");
    let path = socket_path(&dir);
    let app = start(unix_config(&path));
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    assert_eq!(mode(&path), 0o600, "the default control.socket_mode");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ctl.sock"], "nothing else left in the directory");
    assert!(Ctl::unix(&path).ask("help").starts_with("commands"));
    shutdown_app(app).unwrap();
    assert!(!path.exists(), "removed at the end");

    let mut c = unix_config(&path);
    c.control.socket_mode = "0640".into();
    let app = start(c);
    assert_eq!(mode(&path), 0o640);
    shutdown_app(app).unwrap();
}

#[test]
fn a_file_or_directory_at_the_socket_path_is_kept_and_the_start_fails() {
    let dir = temp_dir("ctl-file");
    let path = socket_path(&dir);
    std::fs::write(&path, "precious").unwrap();
    let e = App::start(Arc::new(unix_config(&path)))
        .err()
        .expect("the start fails")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("regular file"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");

    let sub = dir.join("sub.sock");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), "x").unwrap();
    let e = App::start(Arc::new(unix_config(&sub)))
        .err()
        .expect("the start fails")
        .to_string();
    assert!(e.contains("sub.sock") && e.contains("a directory"), "{e}");
    assert!(sub.join("inside").exists());
}

#[test]
fn a_live_socket_at_the_path_is_kept_and_the_start_fails() {
    let dir = temp_dir("ctl-live");
    let path = socket_path(&dir);
    let other = UnixListener::bind(&path).unwrap();
    let e = App::start(Arc::new(unix_config(&path)))
        .err()
        .expect("the start fails")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("another process is listening"),
        "{e}"
    );
    // Still the other one's.
    let _c = UnixStream::connect(&path).unwrap();
    other.accept().unwrap();
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = temp_dir("ctl-stale");
    let path = socket_path(&dir);
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    assert!(UnixStream::connect(&path).is_err(), "stale");
    let app = start(unix_config(&path));
    assert_eq!(mode(&path), 0o600);
    let mut ctl = Ctl::unix(&path);
    assert!(ctl.ask("stats").starts_with("uptime_s "));
    drop(ctl);
    shutdown_app(app).unwrap();
    assert!(!path.exists());
}

/// The binary, with the limits from a config file: the cap and the idle
/// timeout act; and with a regular file at `--control`, it exits non-zero
/// naming the path, and the file is still there.
#[test]
fn the_binary_takes_the_limits_from_its_config_file() {
    let dir = temp_dir("ctl-binary");
    let file = dir.join("serve.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nsummary_interval_secs = 0\n\n[log]\ndir = {:?}\n\n[control]\nmax_connections = 1\nidle_timeout_secs = 1\n",
            dir.join("log")
        ),
    )
    .unwrap();
    let mut serve = Serve::start(&["--sink", "count"], &file);
    let addr = control_addr(&serve.wait_log("control socket listening", Duration::from_secs(30)));
    let mut one = Ctl::tcp(addr);
    assert!(one.ask("help").starts_with("commands"));
    let mut two = Ctl::tcp(addr);
    assert_eq!(
        two.answer().as_deref(),
        Some("error: too many control connections")
    );
    let t = Instant::now();
    assert_eq!(
        one.answer().as_deref(),
        Some("error: idle timeout (control.idle_timeout_secs), closing the connection")
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    serve.signal(libc::SIGTERM);
    assert_eq!(serve.wait_exit(Duration::from_secs(60)), Some(0));

    let taken = dir.join("taken.sock");
    std::fs::write(&taken, "keep").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_badge-ingest"))
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0", "--sink", "count", "--control"])
        .arg(&taken)
        .env_remove("BADGE_CONTROL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&taken.display().to_string()) && stderr.contains("regular file"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep");
}
