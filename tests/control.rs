//! Black-box tests of the control socket: each test starts the real server
//! in-process (its own badge port and control port, both port 0, the
//! `count` sink), drives badges over real `std::net::TcpStream`s with frames
//! built by the library codec, and talks to the control socket with raw
//! lines, with `badge_ingest::control::client::Client`, with plain HTTP, and
//! once through the `badge-ingest ctl` binary.
//!
//! Every expected downlink frame (0x80, 0x82) and every expected reply is
//! built here independently of the crate, with a bit-by-bit CRC-16/X-25, and
//! Chinese text is checked against hand-written UTF-16BE bytes.
//!
//! Nothing sleeps its way to success: every condition is awaited with a
//! deadline (socket read timeouts, or polling the control socket).

#[path = "pipeline_support/scratch.rs"]
mod scratch;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badge_ingest::config::{Config, ControlAddr, SinkKind};
use badge_ingest::control::client::{Client, ClientError};
use badge_ingest::control::{self, ControlServer};
use badge_ingest::ingest::ShardMap;
use badge_ingest::protocol::layout::{DeviceTime, Generation, GpsFix};
use badge_ingest::protocol::message::{
    CommandReply, GpsReport, Heartbeat, HeartbeatStatus, Login, TzLanguage,
};
use badge_ingest::protocol::{Imei, Message};
use badge_ingest::server::RunningServer;
use badge_ingest::sink::SinkWorkers;
use bytes::BytesMut;
use serde_json::{json, Value};

mod wire;
use wire::{ack, crc_x25, reply_frame as server_frame, to_hex};

/// How long any single condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

const TEST_SHARD_KEY: [u8; 16] = [7; 16];

/// The shard that owns `imei` in a server started by this file.
fn owner_shard(imei: Imei, shards: usize) -> usize {
    ShardMap::new(TEST_SHARD_KEY, shards).owner(imei)
}

// ---------------------------------------------------------------------------
// Independent frame building (the expected side)
// ---------------------------------------------------------------------------

/// 0x80: inner length(1) = flag(4) + ASCII command + language(2) = 00 01.
fn online_command_frame(flag: u32, text: &str, serial: u16) -> Vec<u8> {
    let mut content = vec![(4 + text.len() + 2) as u8];
    content.extend_from_slice(&flag.to_be_bytes());
    content.extend_from_slice(text.as_bytes());
    content.extend_from_slice(&[0x00, 0x01]);
    server_frame(0x80, &content, serial)
}

/// 0x82: inner length (1 byte, or 2 over 255) = flag(4) + UTF-16BE text + language(2) = 00 01.
fn message_frame(flag: u32, utf16be: &[u8], serial: u16) -> Vec<u8> {
    let inner = 4 + utf16be.len() + 2;
    let mut content = if inner > 0xFF {
        vec![(inner >> 8) as u8, inner as u8]
    } else {
        vec![inner as u8]
    };
    content.extend_from_slice(&flag.to_be_bytes());
    content.extend_from_slice(utf16be);
    content.extend_from_slice(&[0x00, 0x01]);
    server_frame(0x82, &content, serial)
}

#[test]
fn the_expected_side_matches_the_manual() {
    // GT06 manual: the login acknowledgement for serial 1 is 78 78 05 01 00 01 D9 DC 0D 0A.
    assert_eq!(
        ack(0x01, 1),
        vec![0x78, 0x78, 0x05, 0x01, 0x00, 0x01, 0xD9, 0xDC, 0x0D, 0x0A]
    );
    assert_eq!(crc_x25(b"123456789"), 0x906E);
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

static NEXT: AtomicU32 = AtomicU32::new(0);

fn config(shards: usize) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.control = "127.0.0.1:0".into();
    c.server.shards = shards;
    c.server.summary_interval_secs = 0;
    c.sink.kind = SinkKind::Count;
    c.sink.batch_age_ms = 20;
    c.log.dir = scratch::dir("control-log");
    // The shard hash is keyed by a file in the log directory: a known key
    // lets the test know which shard owns an IMEI.
    std::fs::write(c.log.dir.join("shard-key"), TEST_SHARD_KEY).unwrap();
    c.log.max_bytes = 1 << 30;
    c.log.segment_bytes = 8 << 20;
    c
}

struct Server {
    server: Option<RunningServer>,
    workers: Option<SinkWorkers>,
    control: Option<ControlServer>,
    shards: usize,
    token: Option<String>,
}

impl Server {
    fn start(config: Config) -> Self {
        config.validate().expect("the test config is valid");
        let token = Some(config.server.control_token.clone()).filter(|t| !t.is_empty());
        let shards = config.shards();
        let config = Arc::new(config);
        let (server, workers) = badge_ingest::app::start_ingest(config.clone(), Default::default())
            .expect("server starts");
        let sink_stats = workers.stats.clone();
        let ctx = control::Context::new(server.handle(), sink_stats, token.clone());
        let control = control::start(&config, ctx).expect("control socket starts");
        Self {
            server: Some(server),
            workers: Some(workers),
            control: Some(control),
            shards,
            token,
        }
    }

    fn badge_addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    fn control_addr(&self) -> ControlAddr {
        self.control.as_ref().unwrap().addr.clone()
    }

    fn control_tcp(&self) -> SocketAddr {
        match self.control_addr() {
            ControlAddr::Tcp(a) => {
                assert_ne!(a.port(), 0, "ControlServer.addr is the bound address");
                a
            }
            other => panic!("not a TCP control address: {other}"),
        }
    }

    /// A raw line-protocol connection, authenticated when the server has a token.
    fn ctl(&self) -> Ctl<TcpStream> {
        let mut c = Ctl::tcp(self.control_tcp());
        if let Some(t) = &self.token {
            assert_eq!(c.ask(&format!("auth {t}")), "authenticated");
        }
        c
    }

    fn client(&self) -> Client {
        Client::connect(&self.control_addr(), self.token.as_deref(), DEADLINE)
            .expect("client connects")
    }
}

/// How long the server's shutdown and the sink's flush may take together.
const STOP_LIMIT: Duration = Duration::from_secs(60);

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.control.take());
        let (server, workers) = (self.server.take(), self.workers.take());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(s) = server {
                s.shutdown();
            }
            if let Some(w) = workers {
                let _ = w.finish();
            }
            let _ = tx.send(());
        });
        // A hung shutdown fails the test instead of holding CI for ever;
        // while already unwinding, the first failure is the one to see.
        if rx.recv_timeout(STOP_LIMIT).is_err() && !std::thread::panicking() {
            panic!(
                "the server's shutdown and the sink's flush did not finish within {STOP_LIMIT:?}"
            );
        }
    }
}

/// Polls `f` until it gives `Some`, or fails the test at the deadline.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Control clients
// ---------------------------------------------------------------------------

/// The line protocol over a raw stream: one line out, lines in until the empty line.
struct Ctl<S: Read + Write> {
    reader: BufReader<S>,
}

impl Ctl<TcpStream> {
    fn tcp(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("control connects");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }
}

impl Ctl<UnixStream> {
    fn unix(path: &std::path::Path) -> Self {
        let s = UnixStream::connect(path).expect("control connects over the Unix socket");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }
}

impl<S: Read + Write> Ctl<S> {
    fn send_line(&mut self, line: &str) {
        let s = self.reader.get_mut();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }

    /// The answer's lines, without the empty line that ends it.
    fn read_answer(&mut self) -> String {
        let mut answer = String::new();
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).expect("an answer arrives");
            assert!(
                n > 0,
                "the control socket closed mid-answer (so far: {answer:?})"
            );
            if l == "\n" {
                break;
            }
            answer.push_str(&l);
        }
        assert!(answer.ends_with('\n'), "answer {answer:?}");
        answer.pop();
        answer
    }

    fn ask(&mut self, line: &str) -> String {
        self.send_line(line);
        self.read_answer()
    }

    /// `json LINE`: exactly one JSON line.
    fn ask_json(&mut self, line: &str) -> Value {
        let answer = self.ask(&format!("json {line}"));
        assert!(
            !answer.contains('\n'),
            "a JSON answer is one line: {answer:?}"
        );
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// Asserts that the server closes the connection (no more bytes).
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .expect("the server closes the connection");
        assert!(
            rest.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// One plain HTTP request on a fresh connection: (status line, headers, body).
fn http_get<S: Read + Write>(s: S, path: &str) -> (String, BTreeMap<String, String>, String) {
    http_get_with(s, path, "")
}

/// A GET with `extra` header lines (each ending in `\r\n`).
fn http_get_with<S: Read + Write>(
    mut s: S,
    path: &str,
    extra: &str,
) -> (String, BTreeMap<String, String>, String) {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n{extra}Accept: */*\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .expect("the HTTP answer arrives and the connection closes");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("header and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, body.to_string())
}

fn http_get_tcp(addr: SocketAddr, path: &str) -> (String, BTreeMap<String, String>, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    http_get(s, path)
}

/// Prometheus text exposition: `name{labels}` (as written) -> value. Panics on
/// a line that is neither a comment nor `series value`.
fn parse_exposition(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            assert!(
                c.starts_with(" HELP badge_") || c.starts_with(" TYPE badge_"),
                "comment {line:?}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("exposition line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.starts_with("badge_")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "metric name in {line:?}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "labels in {line:?}"
            );
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("label in {line:?}"));
                assert!(
                    k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "label name in {line:?}"
                );
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "label value in {line:?}"
                );
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{e}: value in {line:?}"));
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "series {series} repeated"
        );
    }
    out
}

fn metric(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series} in {m:#?}"))
}

// ---------------------------------------------------------------------------
// Badges
// ---------------------------------------------------------------------------

fn imei(n: u64) -> Imei {
    Imei::with_check_digit(86_120_000_000_000 + n).unwrap()
}

/// IMEIs owned by `shard` of `shards`, in order.
fn imeis_of_shard(shard: usize, shards: usize, count: usize, from: u64) -> Vec<Imei> {
    (from..)
        .map(imei)
        .filter(|i| owner_shard(*i, shards) == shard)
        .take(count)
        .collect()
}

const TIME: DeviceTime = DeviceTime::new(25, 3, 14, 9, 30, 0);
const LAT: f64 = 22.543099;
const LON: f64 = 114.057868;

/// What the wire keeps of a coordinate: 1/1 800 000 of a degree.
fn on_the_wire(deg: f64) -> f64 {
    (deg * 1_800_000.0).round() / 1_800_000.0
}

struct Badge {
    imei: Imei,
    stream: TcpStream,
    serial: u16,
    buf: Vec<u8>,
    bytes_sent: u64,
    bytes_received: u64,
}

impl Badge {
    fn connect(addr: SocketAddr, imei: Imei) -> Self {
        let stream = TcpStream::connect(addr).expect("badge connects");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Self {
            imei,
            stream,
            serial: 0,
            buf: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    fn send(&mut self, message: &Message<'_>) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        let mut out = BytesMut::new();
        message.encode(self.serial, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
        self.bytes_sent += out.len() as u64;
        self.serial
    }

    /// The next whole frame from the server, as raw bytes.
    fn read_frame(&mut self) -> Vec<u8> {
        loop {
            if self.buf.len() >= 4 {
                let total = match (self.buf[0], self.buf[1]) {
                    (0x78, 0x78) => 2 + 1 + usize::from(self.buf[2]) + 2,
                    (0x79, 0x79) => {
                        2 + 2 + usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])) + 2
                    }
                    _ => panic!("not a frame start: {}", to_hex(&self.buf)),
                };
                if self.buf.len() >= total {
                    return self.buf.drain(..total).collect();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("a frame arrives");
            assert!(n > 0, "the server closed the badge connection");
            self.bytes_received += n as u64;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn expect_frame(&mut self, expected: &[u8]) {
        let got = self.read_frame();
        assert_eq!(to_hex(&got), to_hex(expected));
    }

    fn login(&mut self) {
        let serial = self.send(&Message::Login(Login {
            imei: self.imei,
            type_code: Some(0x2404),
            tz_language: Some(TzLanguage::new(480, 1)),
        }));
        self.expect_frame(&ack(0x01, serial));
    }

    fn heartbeat(&mut self, battery: u8) {
        let serial = self.send(&Message::Heartbeat(Heartbeat {
            extended: false,
            status: HeartbeatStatus {
                terminal_info: 0x44,
                battery,
                gsm_signal: 4,
            },
            language: Some(1),
            extension: &[],
        }));
        self.expect_frame(&ack(0x13, serial));
    }

    /// A 0xA0 GPS fix (no reply: follow it with a heartbeat to know it was read).
    fn gps(&mut self, lat: f64, lon: f64) {
        self.send(&Message::Gps(GpsReport {
            generation: Generation::G4,
            time: TIME,
            fix: GpsFix::new(lat, lon, 12, 90, 9, true, true),
            tail: None,
        }));
    }

    /// The badge's 0x81 answer to command `flag`.
    fn command_reply(&mut self, flag: u32, text: &str) {
        self.send(&Message::CommandReply(CommandReply {
            length: (4 + text.len() + 2) as u8,
            server_flag: flag,
            text: text.as_bytes(),
            language: Some(1),
        }));
    }

    fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }
}

/// The command id of a `send`/`message` answer `ID STATUS...`.
fn command_id(answer: &str, status: &str) -> u32 {
    let mut words = answer.split(' ');
    let id = words
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    assert_eq!(words.next(), Some(status), "answer {answer:?}");
    id
}

/// `json commands IMEI` as a list.
fn commands_json<S: Read + Write>(ctl: &mut Ctl<S>, imei: Imei) -> Vec<Value> {
    let v = ctl.ask_json(&format!("commands {imei}"));
    assert_eq!(v["ok"], true, "{v}");
    v["commands"].as_array().expect("commands array").clone()
}

fn command_by_id(list: &[Value], id: u32) -> Value {
    list.iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("command {id} not in {list:#?}"))
        .clone()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// A known traffic pattern on one shard, and every figure `stats`, `json
/// stats`, `metrics`, the HTTP scrape and `latency` give for it.
#[test]
fn stats_metrics_and_latency_count_known_traffic_exactly() {
    let server = Server::start(config(1));
    let mut ctl = server.ctl();

    // Before any badge: zeros, and help.
    let help = ctl.ask("help");
    for cmd in [
        "stats",
        "latency [reply|insert|e2e|commit]",
        "clones",
        "latency reset",
        "devices [--limit N]",
        "device IMEI",
        "send [--wait SECS] IMEI TEXT",
        "message IMEI TEXT",
        "commands IMEI",
        "metrics",
        "auth TOKEN | help | quit",
    ] {
        assert!(help.contains(cmd), "help lacks {cmd:?}:\n{help}");
    }
    let v = ctl.ask_json("help");
    assert_eq!(v["ok"], true);
    assert!(v["help"].as_str().unwrap().contains("commands IMEI"));
    let v = ctl.ask_json("stats");
    assert_eq!(
        (
            v["total"]["connections"].clone(),
            v["total"]["frames"].clone()
        ),
        (json!(0), json!(0)),
        "{v}"
    );

    // A: login, heartbeat, GPS, heartbeat. B: login, heartbeat. 5 replies of 10 bytes.
    let mut a = Badge::connect(server.badge_addr(), imei(1));
    let mut b = Badge::connect(server.badge_addr(), imei(2));
    a.login();
    a.heartbeat(87);
    a.gps(LAT, LON);
    a.heartbeat(86);
    b.login();
    b.heartbeat(55);
    let bytes_in = a.bytes_sent + b.bytes_sent;
    let bytes_out = a.bytes_received + b.bytes_received;
    assert_eq!(bytes_out, 50);
    // 22-byte login, 15-byte heartbeat, 28-byte 0xA0 without tail (time 6 + fix 12).
    assert_eq!(bytes_in, 2 * 22 + 3 * 15 + 28);

    // Text.
    let stats = ctl.ask("stats");
    let lines: Vec<&str> = stats.lines().collect();
    assert!(lines[0].starts_with("uptime_s "), "{stats}");
    assert!(!stats.contains("\n\n"));
    let expect = [
        format!("shard 0: connections 2 sessions 2 logins 2 frames 6 bytes_in {bytes_in} bytes_out {bytes_out} crc_errors 0 resyncs 0 records 6"),
        format!("total: connections 2 sessions 2 accepted 2 logins 2 reconnects 0 frames 6 bytes_in {bytes_in} bytes_out {bytes_out}"),
        "errors: crc 0 resyncs 0 garbage_bytes 0 bad_stop 0 bad_length 0 oversized 0 decode 0 prelogin_drops 0 login_timeouts 0 idle_timeouts 0 emfile 0 refused 0".to_string(),
        "limits: output_overflows 0 write_timeouts 0 partial_timeouts 0 prelogin_budget 0 rate_limited 0 not_allowed 0 replaced_other_address 0 replacements_refused 0 rebinds 0 proxy_untrusted 0 proxy_bad_header 0".to_string(),
        "frames by type: login=2 heartbeat=3 gps_4g=1".to_string(),
    ];
    for e in &expect {
        assert!(lines.contains(&e.as_str()), "stats lacks {e:?}:\n{stats}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("rows written/queued: ")),
        "{stats}"
    );

    // JSON, once the count sink has written every row.
    let v = wait_for("the count sink to write 6 rows", || {
        let v = ctl.ask_json("stats");
        let written: u64 = v["rows"]
            .as_object()
            .unwrap()
            .values()
            .map(|t| t["written"].as_u64().unwrap())
            .sum();
        (written == 6).then_some(v)
    });
    assert_eq!(v["ok"], true);
    let total = &v["total"];
    for (key, want) in [
        ("connections", 2),
        ("sessions", 2),
        ("accepted", 2),
        ("logins", 2),
        ("reconnects", 0),
        ("frames", 6),
        ("bytes_in", bytes_in),
        ("bytes_out", bytes_out),
        ("crc_errors", 0),
        ("decode_errors", 0),
        ("prelogin_drops", 0),
        ("records", 6),
        ("refused", 0),
    ] {
        assert_eq!(total[key], json!(want), "total.{key} in {v}");
    }
    assert_eq!(total["shard"], Value::Null);
    assert_eq!(v["shards"].as_array().unwrap().len(), 1);
    assert_eq!(v["shards"][0]["shard"], 0);
    assert_eq!(v["shards"][0]["frames"], 6);
    assert_eq!(
        v["frames_by_protocol"],
        json!({"0x01": 2, "0x13": 3, "0xA0": 1})
    );
    let rows = &v["rows"];
    for (table, n) in [
        ("device_events", 2),
        ("heartbeats", 3),
        ("locations", 1),
        ("alarms", 0),
        ("command_log", 0),
        ("raw_frames", 0),
    ] {
        assert_eq!(
            rows[table],
            json!({"queued": n, "written": n}),
            "rows.{table} in {v}"
        );
    }
    assert_eq!(v["sink_queue"], 0);
    assert_eq!(
        (v["rejected_rows"].clone(), v["replayed_rows"].clone()),
        (json!(0), json!(0))
    );
    let stats = ctl.ask("stats");
    assert!(
        stats
            .lines()
            .any(|l| l == "rows written/queued: device_events=2/2 heartbeats=3/3 locations=1/1"),
        "{stats}"
    );

    // The `metrics` command and the HTTP scrape give the same figures.
    let via_command = parse_exposition(&ctl.ask("metrics"));
    let (status, headers, body) = http_get_tcp(server.control_tcp(), "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert_eq!(
        headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4");
    let scraped = parse_exposition(&body);
    for m in [&via_command, &scraped] {
        for (series, want) in [
            ("badge_connections{shard=\"0\"}", 2),
            ("badge_sessions{shard=\"0\"}", 2),
            ("badge_connections_accepted_total{shard=\"0\"}", 2),
            ("badge_connections_refused_total{shard=\"0\"}", 0),
            ("badge_logins_total{shard=\"0\"}", 2),
            ("badge_reconnects_total{shard=\"0\"}", 0),
            ("badge_bytes_in_total{shard=\"0\"}", bytes_in),
            ("badge_bytes_out_total{shard=\"0\"}", bytes_out),
            ("badge_crc_errors_total{shard=\"0\"}", 0),
            ("badge_records_total{shard=\"0\"}", 6),
            ("badge_frames_total{protocol=\"login\",number=\"0x01\"}", 2),
            (
                "badge_frames_total{protocol=\"heartbeat\",number=\"0x13\"}",
                3,
            ),
            ("badge_frames_total{protocol=\"gps_4g\",number=\"0xA0\"}", 1),
            ("badge_rows_written_total{table=\"device_events\"}", 2),
            ("badge_rows_written_total{table=\"heartbeats\"}", 3),
            ("badge_rows_written_total{table=\"locations\"}", 1),
            ("badge_rows_queued_total{table=\"command_log\"}", 0),
            ("badge_rejected_rows_total", 0),
            ("badge_insert_failures_total", 0),
            ("badge_reply_latency_seconds_count", 5),
            ("badge_e2e_latency_seconds_count", 6),
            ("badge_insert_latency_seconds_count", 0),
        ] {
            assert_eq!(metric(m, series), want as f64, "{series}");
        }
        assert_eq!(
            m.keys()
                .filter(|k| k.starts_with("badge_frames_total{"))
                .count(),
            3
        );
        // Every reply is in the +Inf bucket and, taking less than 10 s,
        // in the 10 s one.
        assert_eq!(
            metric(m, "badge_reply_latency_seconds_bucket{le=\"+Inf\"}"),
            5.0
        );
        assert_eq!(
            metric(m, "badge_reply_latency_seconds_bucket{le=\"10\"}"),
            5.0
        );
        assert!(metric(m, "badge_reply_latency_seconds_sum") > 0.0);
    }
    // The exposition has a HELP and a TYPE for every family.
    assert!(body.contains("# TYPE badge_logins_total counter\n"));
    assert!(body.contains("# TYPE badge_connections gauge\n"));
    assert!(body.contains("# TYPE badge_reply_latency_seconds histogram\n"));
    // The control connection outlived the scrape and is still usable.
    assert!(ctl.ask("stats").contains("total: connections 2 "));

    // latency: 5 replies so far; the sink wrote 6 rows; no ClickHouse inserts.
    let all = ctl.ask("latency");
    for name in ["reply", "insert", "e2e", "commit"] {
        assert!(
            all.lines()
                .any(|l| l.starts_with(&format!("{name} since start: "))),
            "{all}"
        );
        assert!(
            all.lines()
                .any(|l| l.starts_with(&format!("{name} last interval: not yet"))),
            "{all}"
        );
    }
    let v = ctl.ask_json("latency");
    assert_eq!(v["reply"]["since_start"]["count"], 5, "{v}");
    assert_eq!(v["insert"]["since_start"]["count"], 0, "{v}");
    assert_eq!(v["e2e"]["since_start"]["count"], 6, "{v}");
    assert!(v["reply"]["since_start"]["max"].as_u64().unwrap() > 0);
    // Every row was committed to the log before its reply: at least one
    // commit, and no more than one per frame.
    let commits = v["commit"]["since_start"]["count"].as_u64().unwrap();
    assert!((1..=6).contains(&commits), "{v}");
    for name in ["reply", "insert", "e2e", "commit"] {
        let one = ctl.ask(&format!("latency {name}"));
        assert!(one.starts_with(&format!("{name} since start: ")), "{one}");
        assert_eq!(one.lines().count(), 2, "{one}");
        let v = ctl.ask_json(&format!("latency {name}"));
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let mut want = vec![name, "ok"];
        want.sort();
        assert_eq!(keys, want, "{v}");
        assert_eq!(v[name]["unit"], "us");
        assert_eq!(v[name]["interval"], Value::Null);
    }
    assert_eq!(ctl.ask("latency reset"), "latency histograms reset");
    let v = ctl.ask_json("latency");
    for name in ["reply", "insert", "e2e", "commit"] {
        assert_eq!(
            v[name]["since_start"]["count"], 0,
            "{name} after reset: {v}"
        );
    }
    let m = parse_exposition(&ctl.ask("metrics"));
    assert_eq!(metric(&m, "badge_reply_latency_seconds_count"), 0.0);
    // New replies count from zero.
    b.heartbeat(54);
    let v = ctl.ask_json("latency reply");
    assert_eq!(v["reply"]["since_start"]["count"], 1, "{v}");

    // A closed badge leaves the gauges; the counters stay.
    drop(b);
    let v = wait_for("the closed badge to leave", || {
        let v = ctl.ask_json("stats");
        (v["total"]["connections"] == 1).then_some(v)
    });
    assert_eq!(v["total"]["sessions"], 1);
    assert_eq!(v["total"]["logins"], 2);
    assert_eq!(v["total"]["frames"], 7);

    // quit ends the session without an answer.
    ctl.send_line("quit");
    ctl.expect_closed();
    let mut again = server.ctl();
    again.send_line("exit");
    again.expect_closed();
    drop(a);
}

/// `devices`, `devices --limit N` and `device IMEI` on two shards: each badge
/// on the shard that owns its IMEI, with its battery and position.
#[test]
fn devices_and_device_show_owner_shard_battery_and_position() {
    let server = Server::start(config(2));
    assert_eq!(server.shards, 2);
    let mut ctl = server.ctl();
    assert_eq!(ctl.ask("devices"), "no badges online");
    assert_eq!(ctl.ask_json("devices")["devices"], json!([]));

    // Two badges on shard 0, one on shard 1, one offline IMEI.
    let mut imeis = imeis_of_shard(0, 2, 2, 100);
    imeis.extend(imeis_of_shard(1, 2, 2, 100));
    let offline = imeis.pop().unwrap();
    imeis.sort();
    let mut badges: Vec<Badge> = imeis
        .iter()
        .map(|i| Badge::connect(server.badge_addr(), *i))
        .collect();
    for b in &mut badges {
        b.login();
    }
    // The first badge reports a heartbeat and a GPS fix.
    badges[0].heartbeat(77);
    badges[0].gps(LAT, LON);
    badges[0].heartbeat(76);

    let list = ctl.ask("devices");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    for (line, b) in lines.iter().zip(&badges) {
        let shard = owner_shard(b.imei, 2);
        let prefix = format!(
            "{} online shard {shard} peer {} type 0x2404 login ",
            b.imei,
            b.local_addr()
        );
        assert!(
            line.starts_with(&prefix),
            "{line:?} should start with {prefix:?}"
        );
    }
    assert!(
        lines[0].ends_with(" battery 76% position 22.543099,114.057868"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with(" battery - position -"), "{}", lines[1]);
    let v = ctl.ask_json("devices");
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    for (d, b) in devices.iter().zip(&badges) {
        assert_eq!(d["imei"], b.imei.to_string());
        assert_eq!(d["online"], true);
        assert_eq!(d["shard"], owner_shard(b.imei, 2));
        assert_eq!(d["peer"], b.local_addr().to_string());
        assert_eq!(d["device_type"], 0x2404);
    }

    for n in [1usize, 2] {
        let limited = ctl.ask(&format!("devices --limit {n}"));
        let got: Vec<&str> = limited
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(got.len(), n, "{limited}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted: {limited}");
        assert!(
            got.iter()
                .all(|i| imeis.iter().any(|x| x.to_string() == *i)),
            "{limited}"
        );
        let v = ctl.ask_json(&format!("devices --limit {n}"));
        assert_eq!(v["devices"].as_array().unwrap().len(), n);
    }
    assert_eq!(ctl.ask("devices --limit 10").lines().count(), 3);

    // One badge, online.
    let a = &badges[0];
    let shard = owner_shard(a.imei, 2);
    let text = ctl.ask(&format!("device {}", a.imei));
    assert!(
        text.starts_with(&format!(
            "{} online shard {shard} peer {} type 0x2404 ",
            a.imei,
            a.local_addr()
        )),
        "{text}"
    );
    assert!(
        text.ends_with(" battery 76% position 22.543099,114.057868"),
        "{text}"
    );
    let v = ctl.ask_json(&format!("device {}", a.imei));
    let d = &v["device"];
    assert_eq!(d["online"], true, "{v}");
    assert_eq!(d["shard"], shard);
    assert_eq!(d["battery"], 76);
    assert!(
        (d["latitude"].as_f64().unwrap() - on_the_wire(LAT)).abs() < 1e-9,
        "{v}"
    );
    assert!(
        (d["longitude"].as_f64().unwrap() - on_the_wire(LON)).abs() < 1e-9,
        "{v}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last = d["last_frame_at"].as_u64().unwrap();
    assert!(
        last >= d["logged_in_at"].as_u64().unwrap() && last.abs_diff(now) <= 5,
        "{v}"
    );
    // Online without reports yet.
    let v = ctl.ask_json(&format!("device {}", badges[2].imei));
    assert_eq!(
        (
            v["device"]["battery"].clone(),
            v["device"]["latitude"].clone()
        ),
        (Value::Null, Value::Null)
    );
    assert_eq!(v["device"]["shard"], owner_shard(badges[2].imei, 2));

    // Offline.
    let off_shard = owner_shard(offline, 2);
    assert_eq!(off_shard, 1);
    assert_eq!(
        ctl.ask(&format!("device {offline}")),
        format!("{offline} offline (owner shard {off_shard})")
    );
    let v = ctl.ask_json(&format!("device {offline}"));
    assert_eq!(
        v,
        json!({"ok": true, "device": {"imei": offline.to_string(), "online": false, "shard": off_shard}})
    );

    // Per-shard figures in the scrape follow the owners.
    let m = parse_exposition(&http_get_tcp(server.control_tcp(), "/metrics").2);
    for shard in 0..2 {
        let owned = badges
            .iter()
            .filter(|b| owner_shard(b.imei, 2) == shard)
            .count() as f64;
        assert_eq!(
            metric(&m, &format!("badge_logins_total{{shard=\"{shard}\"}}")),
            owned
        );
        assert_eq!(
            metric(&m, &format!("badge_sessions{{shard=\"{shard}\"}}")),
            owned
        );
        assert_eq!(
            metric(&m, &format!("badge_connections{{shard=\"{shard}\"}}")),
            owned
        );
    }
    let sent: u64 = badges.iter().map(|b| b.bytes_sent).sum();
    let received: u64 = badges.iter().map(|b| b.bytes_received).sum();
    let sum = |name: &str| {
        (0..2)
            .map(|s| metric(&m, &format!("{name}{{shard=\"{s}\"}}")))
            .sum::<f64>()
    };
    assert_eq!(sum("badge_bytes_in_total"), sent as f64);
    assert_eq!(sum("badge_bytes_out_total"), received as f64);
    assert_eq!(sum("badge_connections_accepted_total"), 3.0);

    // A badge that leaves goes offline.
    let gone = badges.remove(1);
    let gone_imei = gone.imei;
    drop(gone);
    wait_for("the badge to go offline", || {
        ctl.ask(&format!("device {gone_imei}"))
            .contains(" offline (owner shard ")
            .then_some(())
    });
    assert_eq!(ctl.ask("devices").lines().count(), 2);
}

/// Every bad command or argument gets exactly one `error: ...` line and the
/// empty line, and the connection goes on working.
#[test]
fn bad_commands_and_arguments_get_one_error_line_and_the_connection_stays_usable() {
    let server = Server::start(config(1));
    let mut ctl = server.ctl();
    let some = imei(500);
    let too_long = "x".repeat(250);
    let cases: Vec<(String, String)> = vec![
        (
            "frobnicate".into(),
            "unknown command `frobnicate`; try `help`".into(),
        ),
        ("STATS".into(), "unknown command `STATS`; try `help`".into()),
        ("stats now".into(), "stats takes no arguments".into()),
        ("metrics please".into(), "metrics takes no arguments".into()),
        (
            "latency median".into(),
            "usage: latency [reply|insert|e2e|commit] | latency reset".into(),
        ),
        (
            "latency reply insert".into(),
            "usage: latency [reply|insert|e2e|commit] | latency reset".into(),
        ),
        (
            "devices --limit".into(),
            "usage: devices [--limit N]".into(),
        ),
        (
            "devices everything".into(),
            "usage: devices [--limit N]".into(),
        ),
        (
            "devices --limit 0".into(),
            "--limit takes a positive number".into(),
        ),
        (
            "devices --limit many".into(),
            "--limit takes a positive number".into(),
        ),
        ("device".into(), "usage: device IMEI".into()),
        (format!("device {some} {some}"), "usage: device IMEI".into()),
        (
            "device 12345".into(),
            "`12345` is not an IMEI: an IMEI has 15 or 16 digits".into(),
        ),
        (
            "device 86120000000001x".into(),
            "`86120000000001x` is not an IMEI: an IMEI has only decimal digits".into(),
        ),
        ("commands".into(), "usage: commands IMEI".into()),
        ("commands 1 2".into(), "usage: commands IMEI".into()),
        (
            "commands nope".into(),
            "`nope` is not an IMEI: an IMEI has 15 or 16 digits".into(),
        ),
        ("send".into(), "usage: send [--wait SECS] IMEI TEXT".into()),
        (
            format!("send {some}"),
            "usage: send [--wait SECS] IMEI TEXT".into(),
        ),
        (
            "send notanimei WHERE#".into(),
            "`notanimei` is not an IMEI: an IMEI has 15 or 16 digits".into(),
        ),
        (
            format!("send --wait 0 {some} WHERE#"),
            "--wait takes seconds from 1 to 300".into(),
        ),
        (
            format!("send --wait 301 {some} WHERE#"),
            "--wait takes seconds from 1 to 300".into(),
        ),
        (
            format!("send --wait soon {some} WHERE#"),
            "--wait takes seconds from 1 to 300".into(),
        ),
        (
            format!("send {some} {too_long}"),
            "command text of 250 bytes exceeds the 249-byte limit of its length field".into(),
        ),
        ("message".into(), "usage: message IMEI TEXT".into()),
        (format!("message {some}"), "usage: message IMEI TEXT".into()),
        (
            format!("message {some} {}", "x".repeat(32_501)),
            "command text of 65002 bytes exceeds the 65000-byte limit of its length field".into(),
        ),
    ];
    for (line, error) in &cases {
        let answer = ctl.ask(line);
        let shown: String = line.chars().take(60).collect();
        assert_eq!(answer, format!("error: {error}"), "for {shown:?}");
        // Still usable: a good command right after.
        assert_eq!(ctl.ask("devices"), "no badges online", "after {shown:?}");
    }
    // The same errors as JSON.
    let v = ctl.ask_json("frobnicate");
    assert_eq!(
        v,
        json!({"ok": false, "error": "unknown command `frobnicate`; try `help`"})
    );
    let v = ctl.ask_json("devices --limit 0");
    assert_eq!(
        v,
        json!({"ok": false, "error": "--limit takes a positive number"})
    );
    // No bad send left a command behind.
    assert_eq!(
        ctl.ask(&format!("commands {some}")),
        format!("no commands for {some}")
    );
    // Blank lines are ignored; the next command is answered.
    ctl.send_line("");
    ctl.send_line("   ");
    assert!(ctl.ask("help").starts_with("commands"));

    // The Client reports errors as failures, and goes on too.
    let mut client = server.client();
    let (ok, answer) = client.command("frobnicate").unwrap();
    assert!(!ok);
    assert_eq!(answer, "error: unknown command `frobnicate`; try `help`\n");
    let (ok, _) = client.command("json device 1").unwrap();
    assert!(!ok);
    let (ok, answer) = client.command("devices").unwrap();
    assert!(ok);
    assert_eq!(answer, "no badges online\n");

    // A line over 64 KiB is refused, and that connection is closed. (Exactly
    // one byte over, so that the server reads all of it and closes cleanly.)
    let mut flood = server.ctl();
    flood
        .reader
        .get_mut()
        .write_all(&[b'y'; 64 * 1024 + 1])
        .unwrap();
    assert_eq!(flood.read_answer(), "error: line too long");
    flood.expect_closed();
    // Other connections are unaffected.
    assert_eq!(ctl.ask("devices"), "no badges online");
}

/// With a token, nothing but `auth TOKEN` is served until the right token
/// comes, and the HTTP scrape (which cannot authenticate) is refused.
#[test]
fn auth_token_is_required_checked_and_then_works() {
    let mut c = config(1);
    c.server.control_token = "s3cret-token".into();
    let server = Server::start(c);
    let mut raw = Ctl::tcp(server.control_tcp());
    let refused = "error: auth required: send `auth TOKEN` first";
    for line in [
        "stats",
        "help",
        "devices",
        "metrics",
        "latency reset",
        "send 861200000000016 WHERE#",
        "auth",
    ] {
        assert_eq!(raw.ask(line), refused, "{line}");
    }
    assert_eq!(
        raw.ask_json("stats"),
        json!({"ok": false, "error": "auth required: send `auth TOKEN` first"})
    );
    assert_eq!(raw.ask("auth wrong"), "error: bad token");
    assert_eq!(raw.ask("auth s3cret-token-and-more"), "error: bad token");
    assert_eq!(raw.ask("stats"), refused);
    assert_eq!(
        raw.ask_json("auth nope"),
        json!({"ok": false, "error": "bad token"})
    );
    assert_eq!(raw.ask("auth s3cret-token"), "authenticated");
    assert!(raw.ask("stats").starts_with("uptime_s "));
    assert_eq!(raw.ask("devices"), "no badges online");
    // JSON auth on a new connection.
    let mut other = Ctl::tcp(server.control_tcp());
    assert_eq!(
        other.ask_json("auth s3cret-token"),
        json!({"ok": true, "authenticated": true})
    );
    assert_eq!(other.ask_json("stats")["ok"], true);

    // HTTP: 403 without auth, with a Content-Length that matches.
    let (status, headers, body) = http_get_tcp(server.control_tcp(), "/metrics");
    assert_eq!(status, "HTTP/1.0 403 Forbidden");
    assert_eq!(
        headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
    assert!(!body.contains("badge_"), "{body}");
    // A scrape with the token as a bearer gets the metrics; a wrong one
    // does not.
    let bearer = |token: &str| {
        let s = TcpStream::connect(server.control_tcp()).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        http_get_with(s, "/metrics", &format!("Authorization: Bearer {token}\r\n"))
    };
    let (status, _, body) = bearer("s3cret-token");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(
        body.contains("# TYPE badge_reply_latency_seconds histogram\n"),
        "{body}"
    );
    let (status, _, body) = bearer("s3cret-token-and-more");
    assert_eq!(status, "HTTP/1.0 403 Forbidden");
    assert!(!body.contains("badge_"), "{body}");

    // The client library: wrong token refused at connect; right token works;
    // no token gets the refusal as an error answer.
    match Client::connect(&server.control_addr(), Some("wrong"), DEADLINE) {
        Err(ClientError::Refused(msg)) => assert_eq!(msg, "error: bad token\n"),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("a wrong token was accepted"),
    }
    let mut anonymous = Client::connect(&server.control_addr(), None, DEADLINE).unwrap();
    assert_eq!(
        anonymous.command("stats").unwrap(),
        (false, format!("{refused}\n"))
    );
    let mut client = server.client();
    let (ok, answer) = client.command("stats").unwrap();
    assert!(ok && answer.starts_with("uptime_s "), "{answer}");
}

#[test]
fn without_a_token_any_auth_is_accepted_and_http_other_paths_are_404() {
    let server = Server::start(config(1));
    let mut ctl = Ctl::tcp(server.control_tcp());
    assert_eq!(ctl.ask("auth anything"), "authenticated");
    assert!(ctl.ask("stats").starts_with("uptime_s "));
    let (status, headers, body) = http_get_tcp(server.control_tcp(), "/");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    assert_eq!(
        headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
}

#[test]
fn config_refuses_a_control_socket_outside_loopback_without_a_token() {
    for control in ["0.0.0.0:8842", "192.0.2.10:8842", "[::]:8842"] {
        let mut c = config(1);
        c.server.control = control.into();
        let e = c.validate().expect_err(control).to_string();
        assert!(
            e.starts_with("config key `server.control`") && e.contains("control_token"),
            "{control}: {e}"
        );
        c.server.control_token = "t".into();
        c.validate()
            .unwrap_or_else(|e| panic!("{control} with a token: {e}"));
    }
    for control in [
        "127.0.0.1:0",
        "[::1]:8842",
        "/run/badge-ingest.sock",
        "unix:./ctl.sock",
    ] {
        let mut c = config(1);
        c.server.control = control.into();
        c.validate().unwrap_or_else(|e| panic!("{control}: {e}"));
    }
}

/// `send` to an online badge: the exact 0x80 bytes, the badge's 0x81 echoing
/// the flag, and the command `replied` with its text, seen by `commands` and
/// by `send --wait`.
#[test]
fn send_to_an_online_badge_writes_0x80_and_matches_the_0x81_reply() {
    let server = Server::start(config(2));
    let mut ctl = server.ctl();
    let mut badge = Badge::connect(server.badge_addr(), imei(7));
    badge.login();

    let answer = ctl.ask(&format!("send {} WHERE#", badge.imei));
    let id = command_id(&answer, "sent");
    assert_eq!(answer, format!("{id} sent"));
    let frame = badge.read_frame();
    // 78 78 LEN=12 80 INNER=0C FLAG(4) "WHERE#" 00 01 SERIAL=00 01 CRC 0D 0A
    assert_eq!(
        &frame[..5],
        &[0x78, 0x78, 0x12, 0x80, 0x0C],
        "{}",
        to_hex(&frame)
    );
    assert_eq!(&frame[5..9], &id.to_be_bytes());
    assert_eq!(&frame[9..15], b"WHERE#");
    assert_eq!(&frame[15..19], &[0x00, 0x01, 0x00, 0x01]);
    assert_eq!(
        to_hex(&frame),
        to_hex(&online_command_frame(id, "WHERE#", 1))
    );

    let list = commands_json(&mut ctl, badge.imei);
    let c = command_by_id(&list, id);
    assert_eq!(
        (c["status"].clone(), c["serial"].clone(), c["kind"].clone()),
        (json!("sent"), json!(1), json!("online_command"))
    );

    let reply = "Lat:N22.543099,Lon:E114.057868";
    badge.command_reply(id, reply);
    let c = wait_for("the command to be replied", || {
        let c = command_by_id(&commands_json(&mut ctl, badge.imei), id);
        (c["status"] == "replied").then_some(c)
    });
    assert_eq!(c["reply"], reply);
    assert_eq!(c["text"], "WHERE#");
    assert_eq!(c["imei"], badge.imei.to_string());
    assert_eq!(c["error"], "");
    let text = ctl.ask(&format!("commands {}", badge.imei));
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap();
    assert!(
        line.starts_with(&format!(
            "{id} {} OnlineCommand status replied created ",
            badge.imei
        )),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(" text \"WHERE#\" reply {reply:?}")),
        "{line}"
    );

    // send --wait: the answer comes with the badge's reply.
    let (addr, target) = (server.control_addr(), badge.imei);
    let waiting = std::thread::spawn(move || {
        let mut client = Client::connect(&addr, None, DEADLINE).unwrap();
        client
            .command(&format!("send --wait 10 {target} STATUS#"))
            .unwrap()
    });
    let frame = badge.read_frame();
    let flag = u32::from_be_bytes(frame[5..9].try_into().unwrap());
    assert_eq!(
        to_hex(&frame),
        to_hex(&online_command_frame(flag, "STATUS#", 2))
    );
    assert_ne!(flag, id);
    badge.command_reply(flag, "BAT:90%");
    let (ok, answer) = waiting.join().unwrap();
    assert!(ok);
    assert_eq!(answer, format!("{flag} replied BAT:90%\n"));

    // JSON send, and a --wait that runs out: the command stays `sent`.
    let v = ctl.ask_json(&format!("send {} VERSION#", badge.imei));
    assert_eq!(v["ok"], true);
    assert_eq!(v["command"]["status"], "sent");
    assert_eq!(v["command"]["serial"], 3);
    let third = v["command"]["id"].as_u64().unwrap() as u32;
    badge.expect_frame(&online_command_frame(third, "VERSION#", 3));
    let answer = ctl.ask(&format!("send --wait 1 {} RESET#", badge.imei));
    let fourth = command_id(&answer, "sent");
    assert_eq!(answer, format!("{fourth} sent (no reply within 1s)"));
    badge.expect_frame(&online_command_frame(fourth, "RESET#", 4));

    // A reply with an unknown flag changes nothing.
    badge.command_reply(0xDEAD_BEEF, "??");
    badge.heartbeat(50);
    let list = commands_json(&mut ctl, badge.imei);
    assert_eq!(list.len(), 4);
    let statuses: Vec<(u64, String)> = list
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (cid, want) in [
        (id, "replied"),
        (flag, "replied"),
        (third, "sent"),
        (fourth, "sent"),
    ] {
        assert!(
            statuses.contains(&(u64::from(cid), want.to_string())),
            "{cid} {want}: {statuses:?}"
        );
    }
    // Newest first.
    let created: Vec<u64> = list
        .iter()
        .map(|c| c["created_at"].as_u64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    // Every status change went to the command_log table.
    let v = wait_for("7 command_log rows", || {
        let v = ctl.ask_json("stats");
        (v["rows"]["command_log"]["queued"].as_u64() >= Some(7)).then_some(v)
    });
    assert_eq!(
        v["rows"]["command_log"]["queued"],
        4 + 3,
        "4 sent, 3 replies (2 matched, 1 unknown flag): {v}"
    );
}

/// `send` to an offline badge: queued, then written right after the login
/// ack when the badge logs in, and matched to its reply after that.
#[test]
fn send_to_an_offline_badge_is_queued_and_delivered_after_login() {
    let server = Server::start(config(2));
    let mut ctl = server.ctl();
    let target = imei(21);
    let answer = ctl.ask(&format!("send {target} WHERE#"));
    let first = command_id(&answer, "queued");
    assert_eq!(answer, format!("{first} queued"));
    let second = command_id(&ctl.ask(&format!("message {target} 你好")), "queued");
    let v = ctl.ask_json(&format!("send {target} STATUS#"));
    assert_eq!(v["command"]["status"], "queued");
    let third = v["command"]["id"].as_u64().unwrap() as u32;
    let list = commands_json(&mut ctl, target);
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .all(|c| c["status"] == "queued" && c["serial"] == 0),
        "{list:#?}"
    );
    let text = ctl.ask(&format!("commands {target}"));
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines().all(|l| l.contains(" status queued ")),
        "{text}"
    );

    let mut badge = Badge::connect(server.badge_addr(), target);
    badge.login();
    // Right after the ack, in order, serials from 1.
    badge.expect_frame(&online_command_frame(first, "WHERE#", 1));
    badge.expect_frame(&message_frame(second, &[0x4F, 0x60, 0x59, 0x7D], 2));
    badge.expect_frame(&online_command_frame(third, "STATUS#", 3));
    let list = commands_json(&mut ctl, target);
    for (id, serial) in [(first, 1), (second, 2), (third, 3)] {
        let c = command_by_id(&list, id);
        assert_eq!(
            (c["status"].clone(), c["serial"].clone()),
            (json!("sent"), json!(serial)),
            "{c}"
        );
    }
    badge.command_reply(first, "OK");
    wait_for("the delivered command to be replied", || {
        (command_by_id(&commands_json(&mut ctl, target), first)["status"] == "replied")
            .then_some(())
    });

    // A new login session starts its downlink serials at 1 again.
    drop(badge);
    wait_for("the badge to go offline", || {
        ctl.ask(&format!("device {target}"))
            .contains(" offline ")
            .then_some(())
    });
    let fourth = command_id(&ctl.ask(&format!("send {target} VERSION#")), "queued");
    let mut badge = Badge::connect(server.badge_addr(), target);
    badge.login();
    badge.expect_frame(&online_command_frame(fourth, "VERSION#", 1));
}

/// A full queue refuses more commands for the badge, with an error.
#[test]
fn the_command_queue_of_an_offline_badge_is_bounded() {
    let mut c = config(1);
    c.server.max_queued_commands = 2;
    let server = Server::start(c);
    let mut ctl = server.ctl();
    let target = imei(32);
    let a = command_id(&ctl.ask(&format!("send {target} WHERE#")), "queued");
    let b = command_id(&ctl.ask(&format!("message {target} hello")), "queued");
    let full = format!("2 commands already queued for {target} (server.max_queued_commands)");
    assert_eq!(
        ctl.ask(&format!("send {target} STATUS#")),
        format!("error: {full}")
    );
    assert_eq!(
        ctl.ask_json(&format!("message {target} again")),
        json!({"ok": false, "error": full})
    );
    // The refused ones are remembered as failed; the two queued stay queued.
    let list = commands_json(&mut ctl, target);
    assert_eq!(list.len(), 4, "{list:#?}");
    let failed: Vec<&Value> = list.iter().filter(|c| c["status"] == "failed").collect();
    assert_eq!(failed.len(), 2, "{list:#?}");
    assert!(failed.iter().all(|c| c["error"] == "queue full"));
    for id in [a, b] {
        assert_eq!(command_by_id(&list, id)["status"], "queued");
    }
    // Another badge has its own queue.
    command_id(&ctl.ask(&format!("send {} WHERE#", imei(31))), "queued");

    // Login empties the queue (both delivered), and there is room again.
    let mut badge = Badge::connect(server.badge_addr(), target);
    badge.login();
    badge.expect_frame(&online_command_frame(a, "WHERE#", 1));
    badge.expect_frame(&message_frame(
        b,
        &[0, b'h', 0, b'e', 0, b'l', 0, b'l', 0, b'o'],
        2,
    ));
    drop(badge);
    wait_for("the badge to go offline", || {
        ctl.ask(&format!("device {target}"))
            .contains(" offline ")
            .then_some(())
    });
    for _ in 0..2 {
        command_id(&ctl.ask(&format!("send {target} VERSION#")), "queued");
    }
    assert!(ctl
        .ask(&format!("send {target} VERSION#"))
        .starts_with("error: 2 commands already queued"));
}

/// Queued commands expire after `command_ttl_secs` (checked by the shard's timer).
#[test]
fn queued_commands_expire() {
    let mut c = config(1);
    c.server.command_ttl_secs = 1;
    c.server.timer_interval_ms = 100;
    let server = Server::start(c);
    let mut ctl = server.ctl();
    let target = imei(33);
    let a = command_id(&ctl.ask(&format!("send {target} WHERE#")), "queued");
    let b = command_id(&ctl.ask(&format!("message {target} 你好")), "queued");
    let list = wait_for("the queued commands to expire", || {
        let list = commands_json(&mut ctl, target);
        let expired = [a, b]
            .iter()
            .all(|id| command_by_id(&list, *id)["status"] == "expired");
        expired.then_some(list)
    });
    assert_eq!(list.len(), 2);
    for id in [a, b] {
        let c = command_by_id(&list, id);
        assert!(
            c["updated_at"].as_u64().unwrap() > c["created_at"].as_u64().unwrap(),
            "at least the TTL later: {c}"
        );
        assert_eq!(c["serial"], 0, "never sent: {c}");
    }
    let text = ctl.ask(&format!("commands {target}"));
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" status expired "))
            .count(),
        2,
        "{text}"
    );

    // A waiting send learns of the expiry.
    let answer = ctl.ask(&format!("send --wait 10 {target} RESET#"));
    let e = command_id(&answer, "expired");
    assert_eq!(answer, format!("{e} expired"));

    // Expired commands are not delivered when the badge comes: only the two acks are written.
    let mut badge = Badge::connect(server.badge_addr(), target);
    badge.login();
    badge.heartbeat(40);
    assert_eq!(badge.bytes_received, 20);
    let v = ctl.ask_json("stats");
    assert_eq!(v["total"]["bytes_out"], 20, "{v}");
    // 3 queued + 3 expired status rows, handed to the writers within
    // the log's handoff interval.
    let v = wait_for("6 command_log rows", || {
        let v = ctl.ask_json("stats");
        (v["rows"]["command_log"]["queued"].as_u64() >= Some(6)).then_some(v)
    });
    assert_eq!(v["rows"]["command_log"]["queued"], 6, "{v}");
}

/// `message IMEI TEXT` with Chinese text: 0x82 with UTF-16BE on the wire,
/// a one-byte length, or two bytes and a 79 79 frame when the text is long.
#[test]
fn message_in_chinese_is_utf16be_in_an_0x82_frame() {
    let server = Server::start(config(1));
    let mut ctl = server.ctl();
    let mut badge = Badge::connect(server.badge_addr(), imei(44));
    badge.login();

    let id = command_id(
        &ctl.ask(&format!("message {} 你好，世界", badge.imei)),
        "sent",
    );
    let frame = badge.read_frame();
    // 你 4F60, 好 597D, ， FF0C, 世 4E16, 界 754C.
    let utf16 = [0x4F, 0x60, 0x59, 0x7D, 0xFF, 0x0C, 0x4E, 0x16, 0x75, 0x4C];
    // LEN = 1 (protocol) + 1 (inner length) + 16 (inner) + 2 (serial) + 2 (CRC) = 0x16.
    assert_eq!(
        &frame[..5],
        &[0x78, 0x78, 0x16, 0x82, 0x10],
        "{}",
        to_hex(&frame)
    );
    assert_eq!(&frame[5..9], &id.to_be_bytes());
    assert_eq!(&frame[9..19], &utf16);
    assert_eq!(&frame[19..23], &[0x00, 0x01, 0x00, 0x01]);
    assert_eq!(to_hex(&frame), to_hex(&message_frame(id, &utf16, 1)));

    // Over 255 bytes inside: two length bytes, 79 79 and a two-byte frame length.
    let long = "好".repeat(130);
    let id2 = command_id(&ctl.ask(&format!("message {} {long}", badge.imei)), "sent");
    let frame = badge.read_frame();
    // inner = 4 + 260 + 2 = 266 = 0x010A; frame length = 1 + 2 + 266 + 4 = 273 = 0x0111.
    assert_eq!(
        &frame[..7],
        &[0x79, 0x79, 0x01, 0x11, 0x82, 0x01, 0x0A],
        "{}",
        to_hex(&frame[..16])
    );
    assert_eq!(frame.len(), 2 + 2 + 273 + 2);
    let utf16: Vec<u8> = std::iter::repeat_n([0x59, 0x7D], 130).flatten().collect();
    assert_eq!(to_hex(&frame), to_hex(&message_frame(id2, &utf16, 2)));

    // Outside the BMP: a surrogate pair.
    let id3 = command_id(&ctl.ask(&format!("message {} 好😀", badge.imei)), "sent");
    badge.expect_frame(&message_frame(
        id3,
        &[0x59, 0x7D, 0xD8, 0x3D, 0xDE, 0x00],
        3,
    ));

    let list = commands_json(&mut ctl, badge.imei);
    let c = command_by_id(&list, id);
    assert_eq!(
        (c["kind"].clone(), c["text"].clone(), c["status"].clone()),
        (json!("message"), json!("你好，世界"), json!("sent"))
    );
    let text = ctl.ask(&format!("commands {}", badge.imei));
    assert!(
        text.lines().any(
            |l| l.starts_with(&format!("{id} {} Message status sent ", badge.imei))
                && l.ends_with(" text \"你好，世界\"")
        ),
        "{text}"
    );
}

/// A Unix socket path as the control address: the line protocol, the client
/// and the HTTP scrape all work over it, and the socket file is removed at the end.
#[test]
fn a_unix_socket_control_address_works() {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "badge-ctl-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut c = config(1);
    c.server.control = path.to_str().unwrap().into();
    let server = Server::start(c);
    assert_eq!(server.control_addr(), ControlAddr::Unix(path.clone()));
    assert!(path.exists());

    let mut badge = Badge::connect(server.badge_addr(), imei(55));
    badge.login();
    badge.heartbeat(66);

    let mut ctl = Ctl::unix(&path);
    assert!(ctl.ask("help").starts_with("commands"));
    let v = ctl.ask_json("stats");
    assert_eq!(
        (v["total"]["logins"].clone(), v["total"]["frames"].clone()),
        (json!(1), json!(2)),
        "{v}"
    );
    assert!(ctl
        .ask(&format!("device {}", badge.imei))
        .ends_with(" battery 66% position -"));
    assert_eq!(
        ctl.ask("frobnicate"),
        "error: unknown command `frobnicate`; try `help`"
    );
    let id = command_id(&ctl.ask(&format!("send {} WHERE#", badge.imei)), "sent");
    badge.expect_frame(&online_command_frame(id, "WHERE#", 1));

    let mut client = server.client();
    let (ok, answer) = client.command("devices").unwrap();
    assert!(
        ok && answer.starts_with(&format!("{} online shard 0 ", badge.imei)),
        "{answer}"
    );
    let unix_addr = ControlAddr::parse(&format!("unix:{}", path.display())).unwrap();
    let mut client = Client::connect(&unix_addr, None, DEADLINE).unwrap();
    assert!(client.command("stats").unwrap().0);

    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let (status, headers, body) = http_get(s, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert_eq!(
        headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
    assert_eq!(
        metric(&parse_exposition(&body), "badge_logins_total{shard=\"0\"}"),
        1.0
    );

    ctl.send_line("quit");
    ctl.expect_closed();
    drop(badge);
    drop(server);
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

/// The `badge-ingest ctl` binary: exit 0 and the answer on success, 1 on an
/// error answer, a refused token, or nothing listening.
#[test]
fn ctl_binary_prints_the_answer_and_exits_by_outcome() {
    let mut c = config(1);
    c.server.control_token = "ctl-token".into();
    let server = Server::start(c);
    let mut badge = Badge::connect(server.badge_addr(), imei(66));
    badge.login();
    let addr = server.control_tcp().to_string();
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_badge-ingest"))
            .arg("ctl")
            .args(args)
            .env_remove("BADGE_CONTROL")
            .env_remove("BADGE_CONTROL_TOKEN")
            .output()
            .expect("the binary runs");
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };

    let (code, stdout, stderr) = ctl(&["--control", &addr, "--token", "ctl-token", "stats"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "\ntotal: connections 1 sessions 1 accepted 1 logins 1 reconnects 0 frames 1 "
        ),
        "{stdout}"
    );

    let (code, stdout, _) = ctl(&[
        "--control",
        &addr,
        "--token",
        "ctl-token",
        "json",
        "device",
        &badge.imei.to_string(),
    ]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["device"]["online"], true);

    // Hyphenated arguments pass through to the command.
    let (code, stdout, _) = ctl(&[
        "--control",
        &addr,
        "--token",
        "ctl-token",
        "devices",
        "--limit",
        "1",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    let (code, stdout, _) = ctl(&[
        "--control",
        &addr,
        "--token",
        "ctl-token",
        "send",
        &badge.imei.to_string(),
        "WHERE#",
    ]);
    assert_eq!(code, Some(0));
    let id = command_id(stdout.trim_end(), "sent");
    badge.expect_frame(&online_command_frame(id, "WHERE#", 1));

    let (code, stdout, _) = ctl(&["--control", &addr, "--token", "ctl-token", "frobnicate"]);
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "error: unknown command `frobnicate`; try `help`\n");

    let (code, stdout, _) = ctl(&["--control", &addr, "stats"]);
    assert_eq!(code, Some(1), "no token: refused");
    assert_eq!(stdout, "error: auth required: send `auth TOKEN` first\n");

    let (code, _, stderr) = ctl(&["--control", &addr, "--token", "wrong", "stats"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bad token"), "{stderr}");

    // Nothing listening.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, stderr) = ctl(&["--control", &free.to_string(), "stats"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot reach the control socket"),
        "{stderr}"
    );
}

/// Frame counters across a handoff: a login accepted by one shard and
/// handed to its owner is counted once (the accepting shard takes back its
/// count when it hands the socket over; the owner decodes it again).
#[test]
fn a_login_handed_to_its_owner_shard_is_counted_once() {
    let server = Server::start(config(2));
    let mut ctl = server.ctl();
    // SO_REUSEPORT, not the test, picks the shard that accepts; so each
    // badge connects first, the test sees which shard took it, and only
    // then picks its IMEI: every other badge is owned by the other shard.
    let accepted = || -> Vec<u64> {
        let running = server.server.as_ref().unwrap();
        running
            .metrics()
            .iter()
            .map(|m| m.counters.connections_accepted)
            .collect()
    };
    let mut next = 900;
    let mut badges = Vec::new();
    for n in 0..16 {
        let before = accepted();
        let mut badge = Badge::connect(server.badge_addr(), imei(0));
        let acceptor = wait_for("the connection accepted", || {
            let now = accepted();
            (now.iter().sum::<u64>() == before.iter().sum::<u64>() + 1)
                .then(|| (0..now.len()).find(|&i| now[i] == before[i] + 1).unwrap())
        });
        let owner = if n % 2 == 0 { 1 - acceptor } else { acceptor };
        badge.imei = imeis_of_shard(owner, 2, 1, next)[0];
        next = badge.imei.as_u64() / 10 - 86_120_000_000_000 + 1;
        badge.login();
        badges.push(badge);
    }
    let v = ctl.ask_json("stats");
    let handoffs: u64 = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handoffs_out"].as_u64().unwrap())
        .sum();
    assert_eq!(handoffs, 8, "{v}");
    assert_eq!(v["total"]["logins"], 16);
    let sent: u64 = badges.iter().map(|b| b.bytes_sent).sum();
    assert_eq!(v["total"]["bytes_in"], sent, "{v}");
    assert_eq!(
        v["frames_by_protocol"],
        json!({"0x01": 16}),
        "{handoffs} handoffs: {v}"
    );
    assert_eq!(v["total"]["frames"], 16, "{handoffs} handoffs: {v}");
}
