//! Hostile clients against the real server on loopback sockets: every
//! bound and deadline of `[limits]` acts, is counted, and leaves honest
//! badges their service; a re-login rebinds as in the reference; a panic
//! ends the process.

mod pipeline_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use badge_ingest::config::{Config, SinkKind};
use badge_ingest::metrics::ShardMetrics;
use badge_ingest::protocol::message::{Heartbeat, HeartbeatStatus, Login, TzLanguage};
use badge_ingest::protocol::{Imei, Message};
use bytes::BytesMut;
use pipeline_support::{connect_from, imei, loopback_config, start, wait_until, Badge, Running};

const DEADLINE: Duration = Duration::from_secs(10);

fn config(tweak: impl FnOnce(&mut Config)) -> Config {
    let mut c = loopback_config(1);
    c.sink.kind = SinkKind::File;
    c.sink.file = c.log.dir.join("rows.jsonl");
    c.sink.batch_age_ms = 20;
    c.server.timer_interval_ms = 100;
    tweak(&mut c);
    c.validate().unwrap();
    c
}

fn totals(r: &Running) -> ShardMetrics {
    ShardMetrics::total(&r.server.metrics())
}

fn wait_for(r: &Running, what: &str, ok: impl Fn(&ShardMetrics) -> bool) -> ShardMetrics {
    let mut last = None;
    let reached = wait_until(DEADLINE, || {
        let m = totals(r);
        let done = ok(&m);
        last = Some(m);
        done
    });
    let m = last.unwrap();
    assert!(reached, "timed out waiting for {what}: {:?}", m.counters);
    m
}

fn encode(m: &Message<'_>, serial: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(serial, &mut out).unwrap();
    out.to_vec()
}

fn login(imei: Imei, serial: u16) -> Vec<u8> {
    encode(
        &Message::Login(Login {
            imei,
            type_code: Some(0x2404),
            tz_language: Some(TzLanguage::new(480, 1)),
        }),
        serial,
    )
}

fn heartbeat() -> Message<'static> {
    Message::Heartbeat(Heartbeat {
        extended: false,
        status: HeartbeatStatus {
            terminal_info: 0x44,
            battery: 80,
            gsm_signal: 4,
        },
        language: Some(1),
        extension: &[],
    })
}

fn time_sync(serial: u16) -> Vec<u8> {
    encode(&Message::TimeSync2, serial)
}

/// Waits until the server ends the connection (an orderly close, or a
/// reset when our bytes were still unread); how long that took.
fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = (start + within).saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server did not close within {within:?}"
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[test]
fn a_frame_begun_and_never_finished_is_closed_by_its_deadline() {
    let r = start(config(|c| {
        c.limits.partial_frame_timeout_secs = 1;
        c.server.login_timeout_secs = 30;
    }));
    // Slowloris: the first bytes of a login, then nothing.
    let mut slow = connect(r.addr());
    slow.write_all(&login(imei(1), 1)[..5]).unwrap();
    // A logged-in badge that stops mid-frame is closed too.
    let mut badge = Badge::connect(r.addr(), imei(2));
    badge.login();
    let mut stalled = connect(r.addr());
    stalled.write_all(&login(imei(3), 1)).unwrap();
    let mut ack = [0u8; 10];
    stalled.read_exact(&mut ack).unwrap();
    stalled.write_all(&encode(&heartbeat(), 2)[..7]).unwrap();
    let took = closed_within(&mut slow, DEADLINE);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    closed_within(&mut stalled, DEADLINE);
    let m = wait_for(&r, "two partial-frame timeouts", |m| {
        m.counters.partial_timeouts == 2
    });
    assert_eq!(m.counters.login_timeouts, 0);
    // The honest badge, between frames, keeps its connection.
    badge.exchange(&heartbeat());
    assert_eq!(totals(&r).counters.connections_open, 1);
    r.stop();
}

#[test]
fn a_badge_that_never_reads_is_closed_by_the_write_deadline() {
    let r = start(config(|c| {
        c.limits.write_timeout_secs = 1;
        c.limits.max_frames_per_sec = 0;
        c.server.max_pending_output = 1 << 30;
        c.server.idle_timeout_secs = 3600;
    }));
    let mut s = connect(r.addr());
    s.write_all(&login(imei(1), 1)).unwrap();
    // Time requests are answered and store nothing: replies pile up.
    let burst: Vec<u8> = (0..1000).flat_map(time_sync).collect();
    s.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    loop {
        match s.write(&burst) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break, // closed on us
        }
        if totals(&r).counters.write_timeouts == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never closed");
    }
    let m = wait_for(&r, "the write timeout", |m| {
        m.counters.write_timeouts == 1 && m.counters.connections_open == 0
    });
    assert_eq!(m.counters.idle_timeouts, 0);
    assert_eq!(m.counters.output_overflows, 0);
    r.stop();
}

#[test]
fn connections_that_have_not_logged_in_have_a_cap_in_total_and_per_address() {
    let r = start(config(|c| {
        c.limits.max_prelogin = 3;
        c.limits.max_prelogin_per_ip = 2;
    }));
    let from = |ip: &str| connect_from(ip, r.addr());
    let _a1 = from("127.0.0.1");
    let mut a2 = from("127.0.0.1");
    wait_for(&r, "two connections", |m| m.counters.connections_open == 2);
    // A third from the same address is refused: closed at once.
    let mut a3 = from("127.0.0.1");
    closed_within(&mut a3, DEADLINE);
    let _b1 = from("127.0.0.2");
    wait_for(&r, "three connections", |m| {
        m.counters.connections_open == 3
    });
    let mut b2 = from("127.0.0.2");
    closed_within(&mut b2, DEADLINE);
    let m = wait_for(&r, "the refusals counted", |m| {
        m.counters.connections_refused_prelogin_per_ip == 1
            && m.counters.connections_refused_prelogin == 1
    });
    assert_eq!(m.counters.connections_open, 3);
    // A login frees its place: the next stranger gets in.
    a2.write_all(&login(imei(1), 1)).unwrap();
    let mut ack = [0u8; 10];
    a2.read_exact(&mut ack).unwrap();
    let mut c1 = from("127.0.0.3");
    c1.write_all(&login(imei(2), 1)).unwrap();
    c1.read_exact(&mut ack).unwrap();
    wait_for(&r, "four connections", |m| m.counters.connections_open == 4);
    r.stop();
}

#[test]
fn frames_before_login_and_bytes_before_login_have_budgets() {
    let r = start(config(|c| {
        c.limits.prelogin_frames = 4;
        c.limits.prelogin_bytes = 4096;
    }));
    // A time-sync flooder: four answers, then closed.
    let mut flood = connect(r.addr());
    let five: Vec<u8> = (0..5).flat_map(time_sync).collect();
    flood.write_all(&five).unwrap();
    let mut answers = Vec::new();
    flood.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = flood.read_to_end(&mut answers);
    assert_eq!(
        answers.len(),
        4 * 16,
        "four time-sync answers, then the close"
    );
    // Garbage that never makes a frame: closed past 4 KiB.
    let mut garbage = connect(r.addr());
    let _ = garbage.write_all(&[0x55; 8192]);
    closed_within(&mut garbage, DEADLINE);
    let m = wait_for(&r, "both budgets", |m| {
        m.counters.prelogin_budget_closes == 2
    });
    assert_eq!(m.counters.connections_open, 0);
    // A badge that logs in has no such budget.
    let mut badge = Badge::connect(r.addr(), imei(1));
    badge.login();
    for _ in 0..10 {
        badge.exchange(&Message::TimeSync2);
    }
    r.stop();
}

#[test]
fn a_connection_over_its_frame_rate_waits_and_loses_nothing() {
    let r = start(config(|c| c.limits.max_frames_per_sec = 100));
    let mut badge = Badge::connect(r.addr(), imei(1));
    badge.login();
    let start = Instant::now();
    let mut serials = Vec::new();
    for _ in 0..300 {
        serials.push(badge.send(&heartbeat()));
    }
    for serial in serials {
        assert_eq!(badge.reply(), (0x13, serial));
    }
    // 301 frames at 100 a second: the last waited for the third window.
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    assert!(totals(&r).counters.rate_limited >= 2);
    r.stop();
}

#[test]
fn a_connection_that_keeps_the_socket_full_does_not_starve_the_others() {
    let r = start(config(|c| {
        c.limits.max_frames_per_sec = 0;
        // Its answers outgrow what it sends: let them wait, not close it.
        c.server.max_pending_output = 1 << 24;
    }));
    let mut hog = connect(r.addr());
    hog.write_all(&login(imei(1), 1)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Keeps 64 KiB and more queued, and drains its answers so it never
    // blocks on its own replies.
    let writer = {
        let mut s = hog.try_clone().unwrap();
        let stop = stop.clone();
        let burst: Vec<u8> = (0..4096).flat_map(time_sync).collect();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if s.write_all(&burst).is_err() {
                    break;
                }
            }
        })
    };
    let reader = {
        let mut s = hog.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        })
    };
    wait_for(&r, "the hog going", |m| m.frames[0x8A] > 100_000);
    let mut badge = Badge::connect(r.addr(), imei(2));
    badge.set_timeout(Duration::from_secs(5));
    badge.login();
    for _ in 0..20 {
        badge.exchange(&heartbeat());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // The socket itself, for the clones the threads hold too.
    let _ = hog.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    let _ = reader.join();
    r.stop();
}

#[test]
fn a_login_with_another_imei_rebinds_the_connection_as_the_reference_does() {
    // Two shards: the new IMEI may belong to the other one.
    let mut c = config(|_| {});
    c.server.shards = 2;
    let dir = c.log.dir.clone();
    let rows_file = c.sink.file.clone();
    let r = start(c);
    let mut badge = Badge::connect(r.addr(), imei(1));
    badge.login();
    badge.exchange(&heartbeat());
    let mut moved = 0;
    for n in 2..6 {
        let serial = badge.send(&Message::Login(Login {
            imei: imei(n),
            type_code: Some(0x2404),
            tz_language: Some(TzLanguage::new(480, 1)),
        }));
        assert_eq!(
            badge.reply(),
            (0x01, serial),
            "the new login is acknowledged"
        );
        badge.exchange(&heartbeat());
        moved += 1;
    }
    let m = wait_for(&r, "the rebinds", |m| m.counters.rebinds == moved);
    assert_eq!(m.counters.sessions, 1);
    r.stop();
    let text = std::fs::read_to_string(rows_file).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |n: u64, table: &str| {
        rows.iter()
            .filter(|r| r["imei"] == imei(n).as_u64() && r["table"] == table)
            .map(|r| r["reason"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    for n in 1..6 {
        assert_eq!(of(n, "heartbeats").len(), 1, "imei {n}: its heartbeat");
    }
    for n in 1..5 {
        let events = of(n, "device_events");
        assert_eq!(events, ["", "imei_changed"], "imei {n}: login, then logout");
    }
    assert_eq!(of(5, "device_events"), ["", "shutdown"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_panic_in_a_shard_ends_the_process() {
    let dir = pipeline_support::temp_dir("panic");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[sink]\nkind = \"count\"\n[log]\ndir = \"{}\"\n",
            dir.join("log").display()
        ),
    )
    .unwrap();
    let doomed = imei(66);
    std::env::set_var("BADGE_TEST_PANIC_IMEI", doomed.to_string());
    let mut serve = pipeline_support::serve::Serve::start(&[], &config);
    std::env::remove_var("BADGE_TEST_PANIC_IMEI");
    let addr =
        pipeline_support::serve::listen_addr(&serve.wait_log("listening for badges", DEADLINE));
    let mut fine = Badge::connect(addr, imei(65));
    fine.login();
    let mut s = connect(addr);
    s.write_all(&login(doomed, 1)).unwrap();
    // Aborted, not exited: no code, killed by SIGABRT.
    assert_eq!(serve.wait_exit(DEADLINE), None);
    use std::os::unix::process::ExitStatusExt;
    let status = serve.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT));
    serve.wait_log(
        "panic: aborting the process (nothing acknowledged is lost: it is in the log)",
        DEADLINE,
    );
}

/// A connection from `ip` (any of 127.0.0.0/8).
#[test]
fn cloned_imeis_are_counted_and_listed_and_an_allowlist_keeps_strangers_out() {
    let mut c = config(|c| {
        c.limits.clone_replacements = 3;
        c.limits.clone_window_secs = 600;
    });
    let allowed = [imei(10), imei(11)];
    let list = c.log.dir.join("allowlist.txt");
    std::fs::write(
        &list,
        format!("# badges of site A\n{}\n{}\n", allowed[0], allowed[1]),
    )
    .unwrap();
    c.limits.allowlist = list.display().to_string();
    let app = badge_ingest::app::App::start(std::sync::Arc::new(c)).unwrap();
    let addr = app.local_addr();
    let mut ctl = pipeline_support::Control::connect(&app);
    assert_eq!(
        ctl.ask("clones"),
        "no IMEI replaced from other addresses often enough to list"
    );

    // A stranger: refused without an acknowledgement, counted.
    let mut stranger = connect(addr);
    stranger.write_all(&login(imei(12), 1)).unwrap();
    closed_within(&mut stranger, DEADLINE);

    // Two badges with one IMEI, from two addresses, taking turns.
    let clone = allowed[0];
    let mut ack = [0u8; 10];
    let mut turns = Vec::new();
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]
        .iter()
        .enumerate()
    {
        let mut s = connect_from(ip, addr);
        s.write_all(&login(clone, i as u16 + 1)).unwrap();
        s.read_exact(&mut ack).unwrap();
        turns.push(s);
    }
    // The same badge reconnecting from its own address is no clone.
    let mut a = connect_from("127.0.0.4", addr);
    a.write_all(&login(allowed[1], 1)).unwrap();
    a.read_exact(&mut ack).unwrap();
    let mut a2 = connect_from("127.0.0.4", addr);
    a2.write_all(&login(allowed[1], 2)).unwrap();
    a2.read_exact(&mut ack).unwrap();

    let v: serde_json::Value = serde_json::from_str(&ctl.ask("json clones")).unwrap();
    let listed = v["clones"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{v}");
    assert_eq!(listed[0]["imei"], clone.to_string());
    assert_eq!(listed[0]["replacements"], 3);
    let text = ctl.ask("clones");
    assert!(
        text.starts_with(&format!(
            "{clone} replaced 3 times in the window (3 in all)"
        )),
        "{text}"
    );
    let stats: serde_json::Value = serde_json::from_str(&ctl.ask("json stats")).unwrap();
    assert_eq!(stats["total"]["clone_replacements"], 3, "{stats}");
    assert_eq!(stats["total"]["reconnects"], 4, "{stats}");
    assert_eq!(stats["total"]["logins_not_allowed"], 1, "{stats}");
    assert_eq!(stats["total"]["logins"], 6, "{stats}");
    drop((turns, a, a2, ctl));
    app.shutdown().unwrap();
}

/// Found by the demo: with a relative `log.dir`, moving to the zero-filled
/// spare segment failed (the runtime of the time could not open a relative
/// directory to sync it), and the log stayed on an appending segment.
#[test]
fn a_relative_log_dir_still_writes_to_prepared_segments() {
    let dir = std::path::PathBuf::from(format!("target/test-relative-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = config(|_| {});
    c.log.dir = dir.clone();
    let segment_bytes = c.log.segment_bytes;
    let (server, workers) =
        badge_ingest::app::start_ingest(std::sync::Arc::new(c), Default::default()).unwrap();
    let shard = dir.join("shard-0");
    let segments = || -> Vec<u64> {
        std::fs::read_dir(&shard)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| e.metadata().unwrap().len())
                    .collect()
            })
            .unwrap_or_default()
    };
    // The first segment is zero-filled before any badge is read.
    let mut badge = Badge::connect(server.local_addr(), imei(1));
    badge.login();
    badge.exchange(&heartbeat());
    let found = segments();
    assert!(
        found.len() == 1 && found[0] >= segment_bytes,
        "not one prepared segment: {found:?}"
    );
    let errors: u64 = workers
        .stats
        .logs
        .iter()
        .map(|l| l.errors.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(errors, 0);
    Running { server, workers }.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
