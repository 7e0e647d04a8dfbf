//! Black-box tests of the server: each test starts the real server in-process
//! on loopback (its own port, its own JSON-lines file sink), drives it with
//! plain blocking `std::net::TcpStream` clients, and checks the replies byte
//! for byte, the counters, and the rows written.
//!
//! Uplink frames are built with the library codec (`Message::encode`). Every
//! expected reply is built here independently of the crate: by hand (hex), or
//! with the small frame builder below, whose CRC is a bit-by-bit CRC-16/X-25
//! checked against the GT06 manual's login acknowledgement and the catalogue
//! check value. Replies follow the reference server (`kks_tcp_server.py`).
//!
//! Nothing here sleeps its way to success: conditions are awaited with
//! deadlines (socket read timeouts, or polling the counters).

#[path = "pipeline_support/scratch.rs"]
mod scratch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use badge_ingest::config::{Config, SinkKind};
use badge_ingest::ingest::ShardMap;
use badge_ingest::metrics::ShardMetrics;
use badge_ingest::protocol::layout::{
    AttendanceKind, BeaconBattery, BeaconSighting, Cell2g, Cell4g, CellId4g, CellTower, Cells,
    DeviceTime, Generation, GpsFix, MobileNetwork, TerminalInfo, WifiAp,
};
use badge_ingest::protocol::message::{
    AddressRequest, Alarm, AlarmBody, AlarmSource, AlarmStatus, Attendance, AttendanceHead,
    BluetoothLocation, BluetoothPunch, CommandReply, GeneralInfo, GpsReport, GpsTail, Heartbeat,
    HeartbeatStatus, LbsReport, Login, PunchBody, TimeSyncRequest, TzLanguage, WifiReport,
};
use badge_ingest::protocol::{Imei, Message};
use badge_ingest::server::RunningServer;
use badge_ingest::sink::SinkWorkers;
use bytes::BytesMut;
use serde_json::Value;
use zerocopy::byteorder::big_endian::U16;

mod wire;
use wire::{ack, crc_x25, hex, reply_frame, to_hex};

const TEST_SHARD_KEY: [u8; 16] = [7; 16];

/// The shard that owns `imei` in a server started by this file.
fn owner_shard(imei: Imei, shards: usize) -> usize {
    ShardMap::new(TEST_SHARD_KEY, shards).owner(imei)
}

// ---------------------------------------------------------------------------
// Independent frame building (the expected side)
// ---------------------------------------------------------------------------

/// Address reply with an empty address and no phone, as the reference sends it
/// when it knows no address: 0x17 with a 1-byte length, 0x97 with 2 bytes.
fn empty_address_reply(english: bool, serial: u16) -> Vec<u8> {
    let mut inner = vec![0, 0, 0, 0];
    inner.extend_from_slice(b"ADDRESS");
    inner.extend_from_slice(b"&&");
    inner.extend_from_slice(b"&&");
    inner.extend_from_slice(&[b'0'; 21]);
    inner.extend_from_slice(b"##");
    assert_eq!(inner.len(), 38);
    let mut content = Vec::new();
    if english {
        content.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    } else {
        content.push(inner.len() as u8);
    }
    content.extend_from_slice(&inner);
    reply_frame(if english { 0x97 } else { 0x17 }, &content, serial)
}

/// 0xB0 / 0xB1 / 0xB2 reply: the request's datetime + status 1 + punch type
/// (1 in, 2 out) + the two reserved bytes echoed.
fn punch_reply(protocol: u8, time: [u8; 6], kind: u8, reserved: [u8; 2], serial: u16) -> Vec<u8> {
    let mut content = time.to_vec();
    content.extend_from_slice(&[1, kind]);
    content.extend_from_slice(&reserved);
    reply_frame(protocol, &content, serial)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn the_expected_side_is_right() {
    // GT06 manual: the login acknowledgement for serial 1.
    assert_eq!(ack(0x01, 1), hex("78 78 05 01 00 01 D9 DC 0D 0A"));
    // CRC-16/X-25 catalogue check value.
    assert_eq!(crc_x25(b"123456789"), 0x906E);
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2024, 2, 29) * 86_400, 1_709_164_800);
}

// ---------------------------------------------------------------------------
// Uplink frames (the library codec)
// ---------------------------------------------------------------------------

/// 2024-05-01 08:30:00 device local time.
const DT: DeviceTime = DeviceTime::new(24, 5, 1, 8, 30, 0);
const DT_BYTES: [u8; 6] = [0x18, 0x05, 0x01, 0x08, 0x1E, 0x00];

fn encode(m: &Message<'_>, serial: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(serial, &mut out).unwrap();
    out.to_vec()
}

fn imei(n: u64) -> Imei {
    Imei::with_check_digit(35_341_903_000_000 + n).unwrap()
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

fn heartbeat(serial: u16) -> Vec<u8> {
    encode(
        &Message::Heartbeat(Heartbeat {
            extended: false,
            status: HeartbeatStatus {
                terminal_info: 0x44,
                battery: 85,
                gsm_signal: 4,
            },
            language: Some(2),
            extension: &[],
        }),
        serial,
    )
}

fn heartbeat_ext(serial: u16) -> Vec<u8> {
    encode(
        &Message::Heartbeat(Heartbeat {
            extended: true,
            status: HeartbeatStatus {
                terminal_info: 0x04,
                battery: 50,
                gsm_signal: 3,
            },
            language: Some(1),
            extension: &[0xAA, 0xBB, 0x01],
        }),
        serial,
    )
}

fn fix() -> GpsFix {
    GpsFix::new(22.543_1, 113.942_2, 12, 270, 9, true, true)
}

fn cells2() -> Vec<Cell2g> {
    let mut v = vec![Cell2g::new(0x251A, 0x0FA1, 0x40)];
    v.extend((1..7u16).map(|i| Cell2g::new(0x2500 + i, 0x100 + u32::from(i), 0x20 + i as u8)));
    v
}

fn cells4() -> Vec<Cell4g> {
    let mut v = vec![Cell4g::new(0x0000_251A, 0x0000_0000_0A1B_2C3D, 0x40)];
    v.extend((1..7u32).map(|i| Cell4g::new(0x2500 + i, 0x1000 + u64::from(i), 0x20 + i as u8)));
    v
}

fn aps() -> Vec<WifiAp> {
    vec![
        WifiAp::new([0x11, 0x22, 0x33, 0x44, 0x55, 0x66], 60),
        WifiAp::new([0x12, 0x23, 0x34, 0x45, 0x56, 0x67], 72),
    ]
}

fn net2() -> MobileNetwork {
    MobileNetwork::new(460, 0)
}

fn net4() -> MobileNetwork {
    MobileNetwork {
        mcc: 460,
        mnc: 1,
        wide_mnc: true,
    }
}

fn gps(generation: Generation, serial: u16) -> Vec<u8> {
    let cell = match generation {
        Generation::G2 => CellTower {
            lac: 0x251A,
            cell_id: 0x0F_A1,
            rssi: 0,
        },
        Generation::G4 => CellTower {
            lac: 0x251A,
            cell_id: 0x0A1B_2C3D,
            rssi: 0,
        },
    };
    encode(
        &Message::Gps(GpsReport {
            generation,
            time: DT,
            fix: fix(),
            tail: Some(GpsTail {
                network: net2(),
                cell,
                acc: 1,
                report_mode: 0,
                realtime_upload: 0,
                mileage: Some(1234),
            }),
        }),
        serial,
    )
}

fn lbs(protocol: u8, serial: u16) -> Vec<u8> {
    let c2 = cells2();
    let c4 = cells4();
    let (network, cells) = if protocol == 0xA1 {
        (net4(), Cells::G4(&c4))
    } else {
        (net2(), Cells::G2(&c2))
    };
    encode(
        &Message::Lbs(LbsReport {
            protocol,
            time: DT,
            network,
            cells,
            timing_advance: Some(0),
            language: Some(1),
        }),
        serial,
    )
}

fn wifi(generation: Generation, serial: u16) -> Vec<u8> {
    let c2 = cells2();
    let c4 = cells4();
    let a = aps();
    let (network, cells) = match generation {
        Generation::G2 => (net2(), Cells::G2(&c2)),
        Generation::G4 => (net4(), Cells::G4(&c4)),
    };
    encode(
        &Message::Wifi(WifiReport {
            time: DT,
            network,
            cells,
            timing_advance: 0,
            aps: &a,
        }),
        serial,
    )
}

fn time_sync(language: u16, serial: u16) -> Vec<u8> {
    encode(
        &Message::TimeSync(TimeSyncRequest {
            device_time: Some(DT),
            language,
        }),
        serial,
    )
}

fn time_sync_2(serial: u16) -> Vec<u8> {
    encode(&Message::TimeSync2, serial)
}

fn alarm_status() -> AlarmStatus {
    AlarmStatus {
        terminal_info: 0x44,
        voltage_level: 4,
        gsm_signal: 3,
        alarm_code: 0x01,
        language: 1,
    }
}

fn alarm(protocol: u8, serial: u16) -> Vec<u8> {
    let c2 = cells2();
    let a = aps();
    let cell = CellId4g::new(0x251A, 0x0A1B_2C3D);
    let (source, body) = match protocol {
        0xA3 | 0xA4 => (
            if protocol == 0xA3 {
                AlarmSource::SingleFence
            } else {
                AlarmSource::MultiFence
            },
            AlarmBody::Fence {
                time: DT,
                fix: fix(),
                lbs_length: 0x11,
                network: net2(),
                cell,
                status: alarm_status(),
                fence_id: (protocol == 0xA4).then_some(2),
            },
        ),
        0xA5 => (
            AlarmSource::Lbs,
            AlarmBody::Lbs {
                network: net2(),
                cell,
                status: alarm_status(),
            },
        ),
        0xA9 => (
            AlarmSource::Wifi,
            AlarmBody::Wifi {
                time: DT,
                network: net2(),
                cells: Cells::G2(&c2[..3]),
                timing_advance: 0,
                aps: &a,
                alarm_code: 0x01,
                language: 1,
            },
        ),
        _ => unreachable!(),
    };
    encode(&Message::Alarm(Alarm { source, body }), serial)
}

fn address_request(protocol: u8, language: u16, serial: u16) -> Vec<u8> {
    let mut body = Vec::new();
    match protocol {
        0x17 => body.extend_from_slice(&[0x01, 0xCC, 0x00, 0x25, 0x1A, 0x00, 0x0F, 0xA1]),
        0x1A => body.extend_from_slice(zerocopy::IntoBytes::as_bytes(&fix())),
        0xA7 => {
            body.extend_from_slice(&[0x01, 0xCC, 0x00, 0x00, 0x00, 0x25, 0x1A]);
            body.extend_from_slice(&0x0A1B_2C3Du64.to_be_bytes());
        }
        _ => unreachable!(),
    }
    body.extend_from_slice(&[b'0'; 21]);
    encode(
        &Message::AddressRequest(AddressRequest {
            protocol,
            time: DT,
            body: &body,
            language,
        }),
        serial,
    )
}

const RESERVED: [u8; 2] = [0xAB, 0xCD];

fn attendance(protocol: u8, kind: AttendanceKind, serial: u16) -> Vec<u8> {
    let c2 = cells2();
    let c4 = cells4();
    let a = aps();
    let (network, cells) = if protocol == 0xB1 {
        (net4(), Cells::G4(&c4))
    } else {
        (net2(), Cells::G2(&c2))
    };
    encode(
        &Message::Attendance(Attendance {
            head: AttendanceHead {
                time: DT,
                gps_flag: 1,
                reserved: RESERVED,
                fix: fix(),
                terminal_info: TerminalInfo::for_attendance(kind).0,
                voltage_level: 4,
                gsm_signal: 3,
                reserved_ext: [0, 0],
            },
            network,
            cells,
            timing_advance: 0,
            aps: &a,
        }),
        serial,
    )
}

fn punch(kind: AttendanceKind, serial: u16) -> Vec<u8> {
    encode(
        &Message::BluetoothPunch(BluetoothPunch {
            body: PunchBody {
                time: DT,
                rssi: -61,
                mac: [0xC1, 0x00, 0x00, 0x00, 0x00, 0x01],
                uuid: [0x5A; 16],
                major: U16::new(10),
                minor: U16::new(20),
                battery_centivolts: U16::new(301),
                terminal_info: TerminalInfo::for_attendance(kind).0,
                reserved: [0x12, 0x34],
            },
        }),
        serial,
    )
}

fn bt_location(serial: u16) -> Vec<u8> {
    let beacons = [
        BeaconSighting::new(
            -70,
            [0xC1, 0, 0, 0, 0, 2],
            [0x11; 16],
            1,
            2,
            BeaconBattery::Centivolts(295),
        ),
        BeaconSighting::new(
            -55,
            [0xC1, 0, 0, 0, 0, 3],
            [0x22; 16],
            3,
            4,
            BeaconBattery::Percent(80),
        ),
    ];
    encode(
        &Message::BluetoothLocation(BluetoothLocation {
            time: DT,
            beacons: &beacons,
        }),
        serial,
    )
}

fn general_info(serial: u16) -> Vec<u8> {
    encode(&Message::GeneralInfo(GeneralInfo::GpsStatus(3)), serial)
}

fn command_reply(serial: u16) -> Vec<u8> {
    encode(
        &Message::CommandReply(CommandReply {
            length: 11,
            server_flag: 42,
            text: b"OK!",
            language: Some(1),
        }),
        serial,
    )
}

fn unknown(serial: u16) -> Vec<u8> {
    encode(
        &Message::Unknown {
            protocol: 0x55,
            content: &[1, 2, 3, 4],
        },
        serial,
    )
}

/// Frames used where the decoder must not find a second start marker inside.
fn assert_no_inner_marker(frame: &[u8]) {
    for w in frame[1..].windows(2) {
        assert!(
            w != [0x78, 0x78] && w != [0x79, 0x79],
            "start marker inside {}",
            to_hex(frame)
        );
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

const DEADLINE: Duration = Duration::from_secs(10);

struct TestServer {
    server: Option<RunningServer>,
    workers: Option<SinkWorkers>,
    path: PathBuf,
    addr: SocketAddr,
    /// When the sink writes into a FIFO: the thread reading it, and a switch
    /// that stops it reading (a stalled database stand-in).
    reader: Option<std::thread::JoinHandle<String>>,
    paused: Arc<AtomicBool>,
}

fn temp_file(name: &str) -> PathBuf {
    scratch::path(&format!("{name}.jsonl"))
}

impl TestServer {
    fn start(name: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(name, false, tweak)
    }

    /// With `fifo`, the sink file is a FIFO drained by a thread of ours,
    /// which [`TestServer::pause_sink`] can stop.
    fn start_with(name: &str, fifo: bool, tweak: impl FnOnce(&mut Config)) -> Self {
        let path = temp_file(name);
        let paused = Arc::new(AtomicBool::new(false));
        let reader = fifo.then(|| {
            let paused = paused.clone();
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo reads the NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
            let path = path.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::File::open(&path).unwrap();
                let mut all = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    while paused.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    match f.read(&mut buf).unwrap() {
                        0 => break,
                        n => all.extend_from_slice(&buf[..n]),
                    }
                }
                String::from_utf8(all).unwrap()
            })
        });
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.shards = 1;
        config.server.ring_depth = 256;
        config.server.instance = "test".into();
        config.server.summary_interval_secs = 0;
        config.sink.kind = SinkKind::File;
        config.sink.file = path.clone();
        config.sink.batch_age_ms = 20;
        config.log.dir = path.with_extension("log");
        let _ = std::fs::remove_dir_all(&config.log.dir);
        // The shard hash is keyed by a file in the log directory: a known key
        // lets the test know which shard owns an IMEI.
        std::fs::create_dir_all(&config.log.dir).unwrap();
        std::fs::write(config.log.dir.join("shard-key"), TEST_SHARD_KEY).unwrap();
        config.log.max_bytes = 1 << 30;
        config.log.segment_bytes = 8 << 20;
        tweak(&mut config);
        config.validate().unwrap();
        let (server, workers) =
            badge_ingest::app::start_ingest(Arc::new(config), Default::default()).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        TestServer {
            server: Some(server),
            workers: Some(workers),
            path,
            addr,
            reader,
            paused,
        }
    }

    fn pause_sink(&self, paused: bool) {
        assert!(self.reader.is_some(), "only a FIFO sink can be paused");
        self.paused.store(paused, Ordering::Release);
    }

    fn connect(&self) -> Client {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s }
    }

    fn shards(&self) -> Vec<ShardMetrics> {
        self.server.as_ref().unwrap().metrics()
    }

    fn metrics(&self) -> ShardMetrics {
        ShardMetrics::total(&self.shards())
    }

    /// Polls the counters until `ok` holds, or fails after the deadline.
    fn wait_for(&self, what: &str, ok: impl Fn(&ShardMetrics) -> bool) -> ShardMetrics {
        let end = Instant::now() + DEADLINE;
        loop {
            let m = self.metrics();
            if ok(&m) {
                return m;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {m:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Shuts the server down, waits for the sink, and returns the final
    /// counters (per shard) and every row written.
    fn stop(self) -> (Vec<ShardMetrics>, Vec<Value>) {
        self.stop_with(|_| {})
    }

    /// [`TestServer::stop`], running `meanwhile` while the shutdown is under way.
    fn stop_with(mut self, meanwhile: impl FnOnce(&Self)) -> (Vec<ShardMetrics>, Vec<Value>) {
        let server = self.server.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.shutdown());
        });
        meanwhile(&self);
        let shards = rx
            .recv_timeout(Duration::from_secs(40))
            .expect("shutdown did not finish");
        let workers = self.workers.take().unwrap();
        let stats = workers.stats.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(workers.finish().map_err(|e| e.to_string()));
        });
        let finished = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the sink did not finish: a SinkHandle outlived the shards");
        match finished {
            Ok(()) => {}
            // The file sink ends with an fsync, which a FIFO refuses (EINVAL)
            // after every row was written into it.
            Err(e) if self.reader.is_some() && e.contains("os error 22") => {}
            Err(e) => panic!("sink: {e}"),
        }
        let text = match self.reader.take() {
            Some(reader) => reader.join().unwrap(),
            None => std::fs::read_to_string(&self.path).unwrap_or_default(),
        };
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        assert_eq!(
            stats.written_total(),
            rows.len() as u64,
            "rows in the file vs written"
        );
        assert_eq!(
            stats.queued_total(),
            rows.len() as u64,
            "rows queued vs written"
        );
        let records: u64 = shards.iter().map(|m| m.counters.records).sum();
        assert_eq!(
            records,
            rows.len() as u64,
            "records counted by the shards vs written"
        );
        (shards, rows)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.paused.store(false, Ordering::Release);
        if let Some(server) = self.server.take() {
            // A failed test: stop the shards, leave the writer thread be.
            let _ = std::thread::spawn(move || server.shutdown());
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Client {
    s: TcpStream,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Exactly `n` bytes, or a failure after `within`.
    fn read_n(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let end = Instant::now() + within;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out with {got} of {n} bytes: {}",
                to_hex(&buf[..got])
            );
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf[got..]) {
                Ok(0) => panic!(
                    "connection closed after {got} of {n} bytes: {}",
                    to_hex(&buf[..got])
                ),
                Ok(k) => got += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("read failed after {got} of {n} bytes: {e}"),
            }
        }
        buf
    }

    /// The next bytes are exactly `expected`.
    fn expect(&mut self, expected: &[u8]) {
        let got = self.read_n(expected.len(), DEADLINE);
        assert_eq!(to_hex(&got), to_hex(expected));
    }

    /// Sends `frame` and expects `reply` as the very next bytes.
    fn exchange(&mut self, frame: &[u8], reply: &[u8]) {
        self.send(frame);
        self.expect(reply);
    }

    /// `frame` gets no reply: a heartbeat sent right after is answered first.
    fn no_reply(&mut self, what: &str, frame: &[u8], probe_serial: u16) {
        self.send(frame);
        self.send(&heartbeat(probe_serial));
        let want = ack(0x13, probe_serial);
        let got = self.read_n(want.len(), DEADLINE);
        assert_eq!(to_hex(&got), to_hex(&want), "{what} got a reply");
    }

    /// The server closes the connection (read returns 0) within `within`,
    /// with nothing sent before; returns how long that took.
    fn expect_closed(&mut self, within: Duration) -> Duration {
        self.wait_close(within, false)
    }

    /// The server closed the connection, orderly or (with our bytes still
    /// unread on its side) with a reset, within `within`; what it sent
    /// before does not matter.
    fn expect_gone(&mut self, within: Duration) -> Duration {
        self.wait_close(within, true)
    }

    fn wait_close(&mut self, within: Duration, gone: bool) -> Duration {
        let start = Instant::now();
        let end = start + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the server did not close the connection within {within:?}"
            );
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return start.elapsed(),
                Ok(_) if gone => {}
                Ok(k) => panic!("unexpected bytes instead of a close: {}", to_hex(&buf[..k])),
                Err(e) if gone && e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("expected a close, got {e}"),
            }
        }
    }

    fn login(&mut self, imei: Imei, serial: u16) {
        self.exchange(&login(imei, serial), &ack(0x01, serial));
    }
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

fn table(r: &Value) -> &str {
    r["table"].as_str().unwrap()
}

fn rows_of(rows: &[Value], imei: Imei) -> Vec<&Value> {
    rows.iter()
        .filter(|r| r["imei"].as_u64() == Some(imei.as_u64()))
        .collect()
}

fn count_by_table(rows: &[&Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(table(r).to_string()).or_insert(0) += 1;
    }
    m
}

fn events(rows: &[&Value]) -> Vec<(i64, String, u64)> {
    rows.iter()
        .filter(|r| table(r) == "device_events")
        .map(|r| {
            (
                r["event"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
                r["conn_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn expect_tables(rows: &[&Value], expected: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = expected.iter().map(|(t, n)| (t.to_string(), *n)).collect();
    assert_eq!(count_by_table(rows), want);
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

#[test]
fn every_reply_byte_for_byte_with_the_request_serial() {
    let srv = TestServer::start("replies", |_| {});
    let mut c = srv.connect();
    let dev = imei(1);

    c.login(dev, 0x0001);
    // A login with another serial: the serial is echoed, whatever it is.
    c.login(dev, 0xBEEF);

    c.exchange(&heartbeat(0x0102), &ack(0x13, 0x0102));
    c.exchange(&heartbeat_ext(0xFFFF), &ack(0x36, 0xFFFF));
    c.exchange(&lbs(0x2E, 0x0203), &ack(0x2E, 0x0203));

    // 0x1F, language 1: Unix time + 8 h; language 2: Unix time.
    for (language, shift, serial) in [(1u16, 8 * 3600i64, 0x0300u16), (2, 0, 0x0301)] {
        c.send(&time_sync(language, serial));
        let before = unix_now();
        let got = c.read_n(16, DEADLINE);
        let after = unix_now();
        assert_eq!(&got[..4], &[0x78, 0x78, 0x0B, 0x1F], "{}", to_hex(&got));
        let t = i64::from(u32::from_be_bytes([got[4], got[5], got[6], got[7]]));
        assert!(
            (before - 3 + shift..=after + 3 + shift).contains(&t),
            "language {language}: {t} vs now {before}"
        );
        let mut content = (t as u32).to_be_bytes().to_vec();
        content.extend_from_slice(&language.to_be_bytes());
        assert_eq!(to_hex(&got), to_hex(&reply_frame(0x1F, &content, serial)));
    }

    // 0x8A: UTC+8 wall clock, YY MM DD HH MM SS.
    c.send(&time_sync_2(0x0400));
    let before = unix_now();
    let got = c.read_n(16, DEADLINE);
    let after = unix_now();
    assert_eq!(&got[..4], &[0x78, 0x78, 0x0B, 0x8A], "{}", to_hex(&got));
    let d = &got[4..10];
    let wall = days_from_civil(2000 + i64::from(d[0]), i64::from(d[1]), i64::from(d[2])) * 86_400
        + i64::from(d[3]) * 3600
        + i64::from(d[4]) * 60
        + i64::from(d[5]);
    let unix = wall - 8 * 3600;
    assert!(
        (before - 3..=after + 3).contains(&unix),
        "0x8A says {unix}, now is {before}"
    );
    assert_eq!(to_hex(&got), to_hex(&reply_frame(0x8A, d, 0x0400)));

    // Alarms: 0x26 with the alarm's serial, and nothing else (no address known).
    for (i, p) in [0xA3u8, 0xA4, 0xA5, 0xA9].into_iter().enumerate() {
        let serial = 0x0500 + i as u16;
        c.send(&alarm(p, serial));
        c.expect(&ack(0x26, serial));
        // No ALARMSMS follows: the next bytes answer the next frame.
        c.exchange(&heartbeat(serial + 0x10), &ack(0x13, serial + 0x10));
    }

    // Address requests: 0x17 unless the badge asks in language 2 (0x97), empty address.
    for (i, p) in [0x17u8, 0x1A, 0xA7].into_iter().enumerate() {
        let serial = 0x0600 + 2 * i as u16;
        c.exchange(
            &address_request(p, 1, serial),
            &empty_address_reply(false, serial),
        );
        c.exchange(
            &address_request(p, 2, serial + 1),
            &empty_address_reply(true, serial + 1),
        );
    }
    // The literal 0x17 reply for serial 0x0600, written out in full.
    let mut literal = hex("78 78 2C 17 26 00 00 00 00");
    literal.extend_from_slice(b"ADDRESS&&&&000000000000000000000##");
    literal.extend_from_slice(&[0x06, 0x00]);
    let crc = crc_x25(&literal[2..]);
    literal.extend_from_slice(&crc.to_be_bytes());
    literal.extend_from_slice(&[0x0D, 0x0A]);
    assert_eq!(literal, empty_address_reply(false, 0x0600));

    // Attendance and punches: clock-in (1) and clock-out (2).
    let mut serial = 0x0700;
    for p in [0xB0u8, 0xB1] {
        for (kind, k) in [
            (AttendanceKind::ClockIn, 1u8),
            (AttendanceKind::ClockOut, 2),
        ] {
            c.exchange(
                &attendance(p, kind, serial),
                &punch_reply(p, DT_BYTES, k, RESERVED, serial),
            );
            serial += 1;
        }
    }
    c.exchange(
        &punch(AttendanceKind::ClockIn, 0x0800),
        &hex("78 78 0F B2 18 05 01 08 1E 00 01 01 12 34 08 00")
            .into_iter()
            .chain(crc_x25(&hex("0F B2 18 05 01 08 1E 00 01 01 12 34 08 00")).to_be_bytes())
            .chain([0x0D, 0x0A])
            .collect::<Vec<u8>>(),
    );
    c.exchange(
        &punch(AttendanceKind::ClockOut, 0x0801),
        &punch_reply(0xB2, DT_BYTES, 2, [0x12, 0x34], 0x0801),
    );

    // No reply at all.
    let silent: Vec<(&str, Vec<u8>)> = vec![
        ("0x22", gps(Generation::G2, 0x0900)),
        ("0xA0", gps(Generation::G4, 0x0901)),
        ("0x28", lbs(0x28, 0x0902)),
        ("0xA1", lbs(0xA1, 0x0903)),
        ("0x2C", wifi(Generation::G2, 0x0904)),
        ("0xA2", wifi(Generation::G4, 0x0905)),
        ("0xB3", bt_location(0x0906)),
        ("0x94", general_info(0x0907)),
        ("0x81", command_reply(0x0908)),
        ("unknown 0x55", unknown(0x0909)),
    ];
    for (i, (what, frame)) in silent.iter().enumerate() {
        c.no_reply(what, frame, 0x0A00 + i as u16);
    }

    let m = srv.metrics();
    assert_eq!(m.counters.decode_errors, 0, "every frame above decodes");
    assert_eq!(m.counters.prelogin_drops, 0);
    assert_eq!(m.frame.rejected(), 0);
    assert_eq!(m.frame.garbage_bytes, 0);
    assert_eq!(m.counters.logins, 2);
    assert_eq!(m.counters.reconnects, 0);
    drop(c);
    srv.wait_for("the badge's hang-up", |m| m.counters.connections_open == 0);
    let (_, rows) = srv.stop();
    let mine = rows_of(&rows, dev);
    assert_eq!(mine.len(), rows.len());
    // Two logins on one connection: two login events, then offline when the badge hung up.
    let ev = events(&mine);
    assert_eq!(
        ev.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![1, 1, 3],
        "{ev:?}"
    );
    assert_eq!(ev[2].1, "peer_closed");
    expect_tables(
        &mine,
        &[
            ("device_events", 3),
            // 0x13, 0x36, the four probes after the alarms, the ten after the silent frames.
            ("heartbeats", 2 + 4 + 10),
            // 0x2E, six address requests, 0x22, 0xA0, 0x28, 0xA1, 0x2C, 0xA2.
            ("locations", 1 + 6 + 6),
            ("alarms", 4),
            ("attendance", 4),
            ("bluetooth", 2 + 2),
            ("device_info", 1),
            ("command_log", 1),
            ("raw_frames", 1),
        ],
    );
}

#[test]
fn split_and_coalesced_frames_get_every_reply() {
    let srv = TestServer::start("split", |_| {});

    // One byte at a time, each its own read: TCP_NODELAY sends it at once
    // (connect sets it), and the next goes only when the server has read it.
    let mut a = srv.connect();
    let mut stream = login(imei(2), 1);
    stream.extend(heartbeat(2));
    stream.extend(alarm(0xA4, 3));
    stream.extend(attendance(0xB1, AttendanceKind::ClockOut, 4));
    stream.extend(address_request(0xA7, 2, 5));
    stream.extend(heartbeat_ext(6));
    let base = srv.metrics().counters.bytes_in;
    for (i, b) in stream.iter().enumerate() {
        a.send(std::slice::from_ref(b));
        let want = base + i as u64 + 1;
        let end = Instant::now() + DEADLINE;
        while srv.metrics().counters.bytes_in < want {
            assert!(
                Instant::now() < end,
                "byte {i} not read within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let mut expected_a = ack(0x01, 1);
    expected_a.extend(ack(0x13, 2));
    expected_a.extend(ack(0x26, 3));
    expected_a.extend(punch_reply(0xB1, DT_BYTES, 2, RESERVED, 4));
    expected_a.extend(empty_address_reply(true, 5));
    expected_a.extend(ack(0x36, 6));
    a.expect(&expected_a);

    // Many frames in one write.
    let mut b = srv.connect();
    let mut burst = login(imei(3), 100);
    let mut expected = ack(0x01, 100);
    for s in 101..=300u16 {
        if s % 50 == 0 {
            burst.extend(attendance(0xB0, AttendanceKind::ClockIn, s));
            expected.extend(punch_reply(0xB0, DT_BYTES, 1, RESERVED, s));
        } else if s % 7 == 0 {
            burst.extend(gps(Generation::G2, s)); // no reply
        } else {
            burst.extend(heartbeat(s));
            expected.extend(ack(0x13, s));
        }
    }
    b.send(&burst);
    b.expect(&expected);

    // A write that ends inside a frame, the rest in a later write.
    let mut tail = heartbeat(400);
    tail.extend(alarm(0xA9, 401));
    let cut = tail.len() - 7;
    b.send(&tail[..cut]);
    b.expect(&ack(0x13, 400));
    b.send(&tail[cut..]);
    b.expect(&ack(0x26, 401));

    let m = srv.metrics();
    assert_eq!(m.frame.garbage_bytes, 0);
    assert_eq!(m.frame.rejected(), 0);
    assert_eq!(m.frame.frames, 6 + 201 + 2);
    assert_eq!(
        m.frame.frame_bytes,
        (stream.len() + burst.len() + tail.len()) as u64
    );
    assert_eq!(
        m.counters.bytes_in,
        (stream.len() + burst.len() + tail.len()) as u64
    );
    assert_eq!(
        m.counters.bytes_out,
        (expected_a.len() + expected.len() + 2 * 10) as u64
    );
    drop((a, b));
    srv.stop();
}

// ---------------------------------------------------------------------------
// Garbage and broken frames
// ---------------------------------------------------------------------------

#[test]
fn garbage_and_broken_frames_are_counted_exactly_and_the_next_good_frame_is_answered() {
    let srv = TestServer::start("garbage", |_| {});
    let mut c = srv.connect();
    let dev = imei(4);
    let login_frame = login(dev, 1);
    assert_no_inner_marker(&login_frame);
    c.exchange(&login_frame, &ack(0x01, 1));

    let hb = |s: u16| {
        let f = heartbeat(s);
        assert_no_inner_marker(&f);
        assert_eq!(f.len(), 15);
        f
    };
    let mut garbage = 0u64;
    let mut resyncs = 0u64;
    let mut good = vec![login_frame.clone()];

    // 1. Bytes without any start marker: all skipped.
    let junk = b"\x00\x01\x02\x03hello, garbage!\r\n\xFF\x0D\x0A";
    assert!(!junk.iter().any(|&b| b == 0x78 || b == 0x79));
    // 2. A heartbeat with a wrong CRC: rejected; one resync, its 15 bytes skipped.
    let mut bad_crc = hb(10);
    bad_crc[11] ^= 0x5A;
    // 3. Then a good heartbeat.
    let h = hb(11);
    let mut w = junk.to_vec();
    w.extend(&bad_crc);
    w.extend(&h);
    c.send(&w);
    c.expect(&ack(0x13, 11));
    garbage += junk.len() as u64 + 15;
    resyncs += 1;
    good.push(h);

    // 4. A length below the minimum: one resync, then the rest is scanned.
    let h = hb(12);
    let mut w = vec![0x78, 0x78, 0x02, 0xAA, 0xBB];
    w.extend(&h);
    c.send(&w);
    c.expect(&ack(0x13, 12));
    garbage += 5;
    resyncs += 1;
    good.push(h);

    // 5. A stray start marker whose length runs past a complete good frame:
    // the good frame is not held hostage.
    let h = hb(13);
    let mut w = vec![0x78, 0x78, 0xFF];
    w.extend(&h);
    c.send(&w);
    c.expect(&ack(0x13, 13));
    garbage += 3;
    resyncs += 1;
    good.push(h);

    // 6. Wrong stop bytes: one resync, 15 bytes skipped.
    let mut bad_stop = hb(14);
    bad_stop[14] = 0x0B;
    let h = hb(15);
    let mut w = bad_stop.clone();
    w.extend(&h);
    c.send(&w);
    c.expect(&ack(0x13, 15));
    garbage += 15;
    resyncs += 1;
    good.push(h);

    // 7. A long frame over the size limit: one resync, 4 bytes skipped.
    let h = hb(16);
    let mut w = vec![0x79, 0x79, 0x20, 0x00];
    w.extend(&h);
    c.send(&w);
    c.expect(&ack(0x13, 16));
    garbage += 4;
    resyncs += 1;
    good.push(h);

    // 8. A bad frame split over two writes, then a good one.
    let mut bad_crc2 = hb(17);
    bad_crc2[12] ^= 0x01;
    c.send(&bad_crc2[..6]);
    // Let the server take the first half as a read of its own.
    let sent_so_far = (login_frame.len() + junk.len() + 15 * 7 + 5 + 3 + 4 + 6) as u64;
    srv.wait_for("the first half of the bad frame", |m| {
        m.counters.bytes_in == sent_so_far
    });
    let h = hb(18);
    let mut w = bad_crc2[6..].to_vec();
    w.extend(&h);
    c.send(&w);
    c.expect(&ack(0x13, 18));
    garbage += 15;
    resyncs += 1;
    good.push(h);
    for broken in [&bad_crc, &bad_stop, &bad_crc2] {
        assert_no_inner_marker(broken);
    }

    // The connection is still logged in: a time sync and an alarm work as usual.
    c.send(&alarm(0xA3, 19));
    c.expect(&ack(0x26, 19));
    good.push(alarm(0xA3, 19));

    let m = srv.metrics();
    let f = &m.frame;
    assert_eq!(f.garbage_bytes, garbage, "{f:?}");
    assert_eq!(f.resyncs, resyncs, "{f:?}");
    assert_eq!(f.bad_crc, 2, "{f:?}");
    assert_eq!(f.accepted_bad_crc, 0, "{f:?}");
    assert_eq!(f.bad_stop, 1, "{f:?}");
    assert_eq!(f.bad_length, 1, "{f:?}");
    assert_eq!(f.oversized, 1, "{f:?}");
    assert_eq!(f.frames, good.len() as u64, "{f:?}");
    assert_eq!(
        f.frame_bytes,
        good.iter().map(Vec::len).sum::<usize>() as u64,
        "{f:?}"
    );
    assert_eq!(m.frames[0x13], 6);
    assert_eq!(m.counters.decode_errors, 0);
    assert_eq!(m.counters.prelogin_drops, 0);
    assert_eq!(m.counters.connections_open, 1);
    drop(c);
    let (_, rows) = srv.stop();
    expect_tables(
        &rows_of(&rows, dev),
        &[("device_events", 2), ("heartbeats", 6), ("alarms", 1)],
    );
}

#[test]
fn a_flood_of_random_bytes_does_not_take_the_server_down() {
    const FLOOD: usize = 1 << 20;
    let srv = TestServer::start("flood", |_| {});
    // xorshift64*, fixed seed: the same bytes every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let flood: Vec<u8> = (0..FLOOD)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();

    let mut normal = srv.connect();
    normal.login(imei(5), 1);

    // A logged-in badge gone mad: served throughout (it has proved an IMEI).
    let mut flooder = srv.connect();
    flooder.login(imei(6), 1);
    // Garbage before any login: closed once past `limits.prelogin_bytes`.
    let mut stranger = srv.connect();
    let flood_from = |s: &TcpStream| {
        let mut s = s.try_clone().unwrap();
        let flood = flood.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            for chunk in flood.chunks(16 * 1024) {
                if s.write_all(chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    };
    let writer = flood_from(&flooder.s);
    let stranger_writer = flood_from(&stranger.s);
    // While the floods go on, the normal device is answered.
    for s in 2..50u16 {
        normal.exchange(&heartbeat(s), &ack(0x13, s));
    }
    assert_eq!(writer.join().unwrap(), FLOOD);
    stranger.expect_gone(DEADLINE);
    // (Its writes may all have gone into socket buffers: what counts is
    // what the server read, below.)
    stranger_writer.join().unwrap();
    let m = srv.wait_for("the whole flood read", |m| {
        m.counters.prelogin_budget_closes == 1 && m.frame.garbage_bytes >= FLOOD as u64
    });
    let prelogin_bytes = Config::default().limits.prelogin_bytes as u64;
    let stranger_read =
        m.counters.bytes_in - (2 * login(imei(5), 1).len() + 48 * 15 + FLOOD) as u64;
    assert!(
        stranger_read > prelogin_bytes && stranger_read <= prelogin_bytes + 64 * 1024,
        "read {stranger_read} bytes of the stranger's garbage"
    );
    normal.exchange(&alarm(0xA5, 50), &ack(0x26, 50));

    // The flooding connection is still served: whatever partial frame the
    // flood left behind is skipped.
    flooder.exchange(&heartbeat(8), &ack(0x13, 8));
    // And new connections are accepted.
    let mut late = srv.connect();
    late.login(imei(7), 1);

    let m = srv.metrics();
    let f = &m.frame;
    // Every flood byte was skipped, exactly once; no frame came out of it.
    // Of the stranger's, only its budget and the read that went past it
    // were even looked at.
    let read_buffer = Config::default().server.read_buffer as u64;
    let stranger_decoded = f.garbage_bytes - FLOOD as u64;
    assert!(stranger_decoded <= prelogin_bytes + read_buffer, "{f:?}");
    assert_eq!(f.frames, 1 + 48 + 1 + 1 + 1 + 1, "{f:?}");
    assert!(f.resyncs < 400, "{f:?}");
    assert!(f.rejected() <= f.resyncs, "{f:?}");
    assert_eq!(m.counters.prelogin_drops, 0);
    assert_eq!(m.counters.decode_errors, 0);
    assert_eq!(m.counters.connections_open, 3);
    assert_eq!(m.counters.sessions, 3);
    drop((normal, flooder, late));
    let (_, rows) = srv.stop();
    assert_eq!(rows_of(&rows, imei(5)).len(), 2 + 48 + 1);
}

// ---------------------------------------------------------------------------
// Before login, and timeouts
// ---------------------------------------------------------------------------

#[test]
fn before_login_only_time_requests_are_answered() {
    let srv = TestServer::start("prelogin", |_| {});
    let mut c = srv.connect();
    // A heartbeat and a GPS report before login: dropped without a reply.
    c.send(&heartbeat(1));
    c.send(&gps(Generation::G2, 2));
    c.send(&alarm(0xA3, 3));
    // The very next bytes answer the time sync.
    c.send(&time_sync(2, 4));
    let got = c.read_n(16, DEADLINE);
    assert_eq!(&got[..4], &[0x78, 0x78, 0x0B, 0x1F], "{}", to_hex(&got));
    assert_eq!(&got[8..12], &[0x00, 0x02, 0x00, 0x04]);
    c.send(&time_sync_2(5));
    let got = c.read_n(16, DEADLINE);
    assert_eq!(&got[..4], &[0x78, 0x78, 0x0B, 0x8A], "{}", to_hex(&got));
    assert_eq!(&got[10..12], &[0x00, 0x05]);
    let m = srv.metrics();
    assert_eq!(m.counters.prelogin_drops, 3);
    assert_eq!(m.counters.logins, 0);

    let dev = imei(8);
    c.login(dev, 6);
    c.exchange(&heartbeat(7), &ack(0x13, 7));
    assert_eq!(srv.metrics().counters.prelogin_drops, 3);
    drop(c);
    let (_, rows) = srv.stop();
    // Nothing from before the login was stored.
    assert_eq!(rows.len(), rows_of(&rows, dev).len());
    expect_tables(
        &rows_of(&rows, dev),
        &[("device_events", 2), ("heartbeats", 1)],
    );
}

#[test]
fn a_connection_that_never_logs_in_is_closed() {
    let srv = TestServer::start("login-timeout", |c| {
        c.server.login_timeout_secs = 1;
        c.server.timer_interval_ms = 100;
    });
    let connected = Instant::now();
    let mut silent = srv.connect();
    let mut chatty = srv.connect();
    let mut good = srv.connect();
    let dev = imei(9);
    good.login(dev, 1);
    chatty.send(&heartbeat(1));

    silent.expect_closed(Duration::from_secs(5));
    let took = connected.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "closed after {took:?}, before the login timeout"
    );
    chatty.expect_closed(Duration::from_secs(5));
    srv.wait_for("two login timeouts", |m| {
        m.counters.login_timeouts == 2 && m.counters.connections_open == 1
    });
    // The logged-in connection is not touched.
    good.exchange(&heartbeat(2), &ack(0x13, 2));
    let m = srv.metrics();
    assert_eq!(m.counters.login_timeouts, 2);
    assert_eq!(m.counters.idle_timeouts, 0);
    assert_eq!(m.counters.prelogin_drops, 1);
    drop(good);
    let (_, rows) = srv.stop();
    assert_eq!(
        rows.len(),
        rows_of(&rows, dev).len(),
        "no rows for connections without a login"
    );
}

#[test]
fn a_silent_logged_in_connection_is_closed_after_the_idle_timeout() {
    let srv = TestServer::start("idle-timeout", |c| {
        c.server.idle_timeout_secs = 1;
        c.server.timer_interval_ms = 100;
    });
    let dev = imei(10);
    let mut c = srv.connect();
    c.login(dev, 1);
    // Traffic keeps it open past the timeout ...
    let start = Instant::now();
    let mut s = 2;
    let mut last_sent;
    loop {
        last_sent = Instant::now();
        c.exchange(&heartbeat(s), &ack(0x13, s));
        s += 1;
        if start.elapsed() > Duration::from_millis(1600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // ... and silence closes it.
    c.expect_closed(Duration::from_secs(5));
    let took = last_sent.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "closed {took:?} after the last frame"
    );
    srv.wait_for("one idle timeout", |m| {
        m.counters.idle_timeouts == 1 && m.counters.connections_open == 0
    });
    let m = srv.metrics();
    assert_eq!(m.counters.login_timeouts, 0);
    assert_eq!(m.counters.sessions, 0);
    let (_, rows) = srv.stop();
    let ev = events(&rows_of(&rows, dev));
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!((ev[0].0, ev[1].0, ev[1].1.as_str()), (1, 3, "idle_timeout"));
}

// ---------------------------------------------------------------------------
// Sessions across connections and shards
// ---------------------------------------------------------------------------

#[test]
fn a_new_login_of_the_same_imei_replaces_the_old_connection() {
    let srv = TestServer::start("reconnect", |c| c.server.shards = 2);
    let dev = imei(11);
    let mut old = srv.connect();
    old.login(dev, 1);
    old.exchange(&heartbeat(2), &ack(0x13, 2));

    let mut new = srv.connect();
    new.login(dev, 1);
    old.expect_closed(DEADLINE);
    new.exchange(&heartbeat(2), &ack(0x13, 2));
    srv.wait_for("the old connection gone", |m| {
        m.counters.connections_open == 1
    });
    let m = srv.metrics();
    assert_eq!(
        (
            m.counters.logins,
            m.counters.reconnects,
            m.counters.sessions
        ),
        (2, 1, 1)
    );

    let (_, rows) = srv.stop();
    let ev = events(&rows_of(&rows, dev));
    assert_eq!(ev.len(), 3, "{ev:?}");
    let (login_ev, reconnect_ev, logout_ev) = (&ev[0], &ev[1], &ev[2]);
    assert_eq!(login_ev.0, 1);
    assert_eq!(reconnect_ev.0, 4);
    assert_ne!(login_ev.2, reconnect_ev.2, "two different connections");
    // The replaced connection leaves no offline event; the new one logs out at shutdown.
    assert!(!ev.iter().any(|e| e.0 == 3), "{ev:?}");
    assert_eq!(
        (logout_ev.0, logout_ev.1.as_str(), logout_ev.2),
        (2, "shutdown", reconnect_ev.2)
    );
    drop(new);
}

#[test]
fn logins_are_handed_to_the_shard_that_owns_the_imei() {
    const DEVICES: u64 = 40;
    let srv = TestServer::start("shards", |c| c.server.shards = 2);
    let devs: Vec<Imei> = (0..DEVICES).map(|i| imei(100 + i)).collect();
    let mut clients: Vec<Client> = devs.iter().map(|_| srv.connect()).collect();
    for (c, d) in clients.iter_mut().zip(&devs) {
        c.send(&login(*d, 1));
    }
    for c in &mut clients {
        c.expect(&ack(0x01, 1));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.exchange(&heartbeat(i as u16 + 2), &ack(0x13, i as u16 + 2));
    }
    let per_shard = srv.shards();
    assert_eq!(per_shard.len(), 2);
    let total = ShardMetrics::total(&per_shard);
    assert!(total.counters.handoffs_out > 0, "{total:?}");
    assert_eq!(total.counters.handoffs_out, total.counters.handoffs_in);
    assert_eq!(total.counters.connections_accepted, DEVICES);
    assert_eq!(total.counters.logins, DEVICES);
    // A handed-off login is counted once, on the shard that handles it.
    assert_eq!(total.frame.frames, 2 * DEVICES, "{:?}", total.frame);
    assert_eq!(total.frames[0x01], DEVICES);
    assert_eq!(total.frames_total(), 2 * DEVICES);
    let sent = DEVICES * (login(devs[0], 1).len() + heartbeat(2).len()) as u64;
    assert_eq!(total.frame.frame_bytes, sent);
    assert_eq!(total.counters.bytes_in, sent);
    for m in &per_shard {
        let owned = devs
            .iter()
            .filter(|d| owner_shard(**d, 2) == m.shard)
            .count() as u64;
        assert_eq!(m.counters.sessions, owned, "shard {}", m.shard);
        assert_eq!(m.counters.connections_open, owned, "shard {}", m.shard);
        assert_eq!(m.counters.logins, owned, "shard {}", m.shard);
        // Every connection that landed on the other shard came over.
        assert_eq!(
            m.counters.handoffs_in,
            m.counters.connections_open + m.counters.handoffs_out - m.counters.connections_accepted,
            "shard {}",
            m.shard
        );
    }

    let (_, rows) = srv.stop();
    let mut keys = HashSet::new();
    for d in &devs {
        let mine = rows_of(&rows, *d);
        expect_tables(&mine, &[("device_events", 2), ("heartbeats", 1)]);
        let owner = owner_shard(*d, 2) as u64;
        for r in &mine {
            assert_eq!(r["ingest_shard"].as_u64(), Some(owner), "{r}");
        }
    }
    for r in &rows {
        let key = (
            r["ingest_shard"].as_u64().unwrap(),
            r["ingest_seq"].as_u64().unwrap(),
        );
        assert!(keys.insert(key), "duplicate ingest key {key:?}");
    }
    drop(clients);
}

/// Connects and returns the client with the shard that accepted it: the
/// kernel (SO_REUSEPORT), not the test, chooses it.
fn connect_and_see_acceptor(srv: &TestServer) -> (Client, usize) {
    let before: Vec<u64> = srv
        .shards()
        .iter()
        .map(|m| m.counters.connections_accepted)
        .collect();
    let c = srv.connect();
    let end = Instant::now() + DEADLINE;
    loop {
        let now: Vec<u64> = srv
            .shards()
            .iter()
            .map(|m| m.counters.connections_accepted)
            .collect();
        let grew: Vec<usize> = (0..now.len()).filter(|&i| now[i] > before[i]).collect();
        if grew.len() == 1 && now.iter().sum::<u64>() == before.iter().sum::<u64>() + 1 {
            return (c, grew[0]);
        }
        assert!(
            Instant::now() < end,
            "the connection was not accepted: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first IMEI from `imei(from)` on that `shard` of `shards` owns.
fn imei_of_shard(shard: usize, shards: usize, from: u64) -> Imei {
    (from..)
        .map(imei)
        .find(|i| owner_shard(*i, shards) == shard)
        .unwrap()
}

#[test]
fn frames_in_the_login_packet_are_handed_off_with_it_and_all_answered() {
    let srv = TestServer::start("handoff-coalesced", |c| c.server.shards = 2);
    let mut clients = Vec::new();
    let mut devs = Vec::new();
    let mut from = 700;
    for n in 0..4u16 {
        // An IMEI the accepting shard does not own: the login is handed off.
        let (mut c, acceptor) = connect_and_see_acceptor(&srv);
        let dev = imei_of_shard(1 - acceptor, 2, from);
        from = dev.as_u64() / 10 - 35_341_903_000_000 + 1;
        // Login, heartbeat, GPS (no reply) and alarm in one write, before
        // the login is acknowledged; the last two badges also end the
        // write inside a frame, whose rest comes after the replies.
        let mut packet = login(dev, 1);
        packet.extend(heartbeat(2));
        packet.extend(gps(Generation::G2, 3));
        packet.extend(alarm(0xA4, 4));
        let tail = heartbeat(5);
        let cut = if n >= 2 { tail.len() / 2 } else { tail.len() };
        packet.extend(&tail[..cut]);
        c.send(&packet);
        let mut want = ack(0x01, 1);
        want.extend(ack(0x13, 2));
        want.extend(ack(0x26, 4));
        if cut == tail.len() {
            want.extend(ack(0x13, 5));
        }
        c.expect(&want);
        if cut < tail.len() {
            c.send(&tail[cut..]);
            c.expect(&ack(0x13, 5));
        }
        // Answered by the owner: a heartbeat after the handoff too.
        c.exchange(&heartbeat(6), &ack(0x13, 6));
        clients.push(c);
        devs.push(dev);
    }

    let per_shard = srv.shards();
    let total = ShardMetrics::total(&per_shard);
    assert_eq!(
        (total.counters.handoffs_out, total.counters.handoffs_in),
        (4, 4),
        "{total:?}"
    );
    assert_eq!(total.counters.logins, 4);
    // Each frame counted once, on the shard that handled it.
    assert_eq!(total.frame.frames, 4 * 6, "{:?}", total.frame);
    assert_eq!(total.frames[0x01], 4);
    assert_eq!(total.frames[0x13], 4 * 3);
    assert_eq!(total.frame.rejected(), 0);
    for m in &per_shard {
        let owned = devs
            .iter()
            .filter(|d| owner_shard(**d, 2) == m.shard)
            .count() as u64;
        assert_eq!(
            (m.counters.sessions, m.counters.connections_open),
            (owned, owned),
            "shard {}",
            m.shard
        );
    }

    drop(clients);
    let (_, rows) = srv.stop();
    for d in &devs {
        let mine = rows_of(&rows, *d);
        expect_tables(
            &mine,
            &[
                ("device_events", 2),
                ("heartbeats", 3),
                ("locations", 1),
                ("alarms", 1),
            ],
        );
        let owner = owner_shard(*d, 2) as u64;
        for r in &mine {
            assert_eq!(r["ingest_shard"].as_u64(), Some(owner), "{r}");
        }
    }
}

/// Device times up to `protocol.max_future_minutes` (15) ahead of the
/// server and 366 days behind are kept; outside, the server time stands
/// in, flagged.
#[test]
fn device_times_outside_the_plausibility_window_are_replaced_and_flagged() {
    const DAY: i64 = 86_400;
    const AHEAD: i64 = 15 * 60;
    const LIMIT: i64 = 366 * DAY;
    let srv = TestServer::start("device-time", |_| {});
    let mut c = srv.connect();
    let dev = imei(720);
    c.login(dev, 1);
    let now = unix_now();
    // (device time sent, kept?) by GPS serial; the badge's clock is UTC+8.
    let cases: [(u16, Option<i64>, bool); 6] = [
        (10, Some(now), true),
        (11, Some(now + AHEAD - 60), true),
        (12, Some(now + AHEAD + 60), false),
        (13, Some(now - LIMIT + DAY), true),
        (14, Some(now - LIMIT - DAY), false),
        // 2025-13-01: no such date.
        (15, None, false),
    ];
    for (serial, t, _) in cases {
        let time = match t {
            Some(t) => DeviceTime::from_unix(t, 480),
            None => DeviceTime::new(25, 13, 1, 0, 0, 0),
        };
        c.send(&encode(
            &Message::Gps(GpsReport {
                generation: Generation::G4,
                time,
                fix: fix(),
                tail: None,
            }),
            serial,
        ));
    }
    c.exchange(&heartbeat(20), &ack(0x13, 20));
    let (_, rows) = srv.stop();
    let after = unix_now();
    let locations: Vec<&Value> = rows_of(&rows, dev)
        .into_iter()
        .filter(|r| table(r) == "locations")
        .collect();
    assert_eq!(locations.len(), cases.len());
    for (serial, t, kept) in cases {
        let r = locations
            .iter()
            .find(|r| r["serial"].as_u64() == Some(u64::from(serial)))
            .unwrap_or_else(|| panic!("no row for serial {serial}"));
        let server_time = r["server_time"].as_i64().unwrap();
        assert!((now..=after).contains(&server_time), "{r}");
        let (want_time, want_valid) = if kept {
            (t.unwrap(), 1)
        } else {
            (server_time, 0)
        };
        assert_eq!(
            (r["device_time"].as_i64(), r["device_time_valid"].as_i64()),
            (Some(want_time), Some(want_valid)),
            "serial {serial}: sent {t:?}, server time {server_time}: {r}"
        );
    }
}

// ---------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------

#[test]
fn shutdown_writes_every_record_and_logs_every_device_out() {
    let srv = TestServer::start("shutdown", |c| {
        c.server.shards = 2;
        c.sink.batch_age_ms = 1000;
    });
    let devs = [imei(200), imei(201), imei(202)];
    let mut clients = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let mut c = srv.connect();
        c.login(*d, 1);
        // Each device sends a different number of rounds.
        let mut frames = Vec::new();
        let mut serial = 10u16;
        for _ in 0..=i {
            let mut next = || {
                serial += 1;
                serial
            };
            frames.extend(heartbeat(next()));
            frames.extend(gps(Generation::G4, next()));
            frames.extend(lbs(0x28, next()));
            frames.extend(wifi(Generation::G2, next()));
            frames.extend(alarm(0xA9, next()));
            frames.extend(address_request(0x1A, 1, next()));
            frames.extend(attendance(0xB0, AttendanceKind::ClockIn, next()));
            frames.extend(punch(AttendanceKind::ClockOut, next()));
            frames.extend(bt_location(next()));
            frames.extend(general_info(next()));
            frames.extend(command_reply(next()));
            frames.extend(unknown(next()));
            frames.extend(time_sync(1, next()));
        }
        c.send(&frames);
        // Every frame is handled before the probe after them is answered.
        let probe = 1000;
        c.send(&heartbeat(probe));
        let mut serial = 10u16;
        for _ in 0..=i {
            let s = serial;
            // heartbeat, alarm, address request, attendance, punch; then the time sync.
            for want in [
                ack(0x13, s + 1),
                ack(0x26, s + 5),
                empty_address_reply(false, s + 6),
                punch_reply(0xB0, DT_BYTES, 1, RESERVED, s + 7),
                punch_reply(0xB2, DT_BYTES, 2, [0x12, 0x34], s + 8),
            ] {
                c.expect(&want);
            }
            let t = c.read_n(16, DEADLINE);
            assert_eq!(&t[..4], &[0x78, 0x78, 0x0B, 0x1F]);
            assert_eq!(&t[10..12], &(s + 13).to_be_bytes());
            serial += 13;
        }
        c.expect(&ack(0x13, probe));
        clients.push(c);
    }
    // Connections still open: shutdown closes them and flushes everything.
    let (shards, rows) = srv.stop();
    for c in &mut clients {
        c.expect_closed(DEADLINE);
    }
    let total = ShardMetrics::total(&shards);
    assert_eq!(total.counters.connections_open, 0);
    assert_eq!(total.counters.sessions, 0);
    for (i, d) in devs.iter().enumerate() {
        let n = i + 1;
        let mine = rows_of(&rows, *d);
        expect_tables(
            &mine,
            &[
                ("device_events", 2),
                ("heartbeats", n + 1),
                ("locations", 4 * n),
                ("alarms", n),
                ("attendance", n),
                ("bluetooth", 3 * n),
                ("device_info", n),
                ("command_log", n),
                ("raw_frames", n),
            ],
        );
        let ev = events(&mine);
        assert_eq!(ev[0].0, 1);
        assert_eq!((ev[1].0, ev[1].1.as_str()), (2, "shutdown"), "{ev:?}");
    }
    assert_eq!(
        rows.len(),
        rows_of(&rows, devs[0]).len()
            + rows_of(&rows, devs[1]).len()
            + rows_of(&rows, devs[2]).len()
    );
    let by_shard: HashMap<u64, usize> = rows.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r["ingest_shard"].as_u64().unwrap()).or_insert(0) += 1;
        m
    });
    assert!(by_shard.keys().all(|s| *s < 2));
}

fn big_bt_location(serial: u16) -> Vec<u8> {
    let beacons: Vec<BeaconSighting> = (0..255u16)
        .map(|i| {
            let [hi, lo] = i.to_be_bytes();
            BeaconSighting::new(
                -60,
                [0xC2, 0, 0, 0, hi, lo],
                [0x33; 16],
                i,
                i,
                BeaconBattery::Percent(90),
            )
        })
        .collect();
    encode(
        &Message::BluetoothLocation(BluetoothLocation {
            time: DT,
            beacons: &beacons,
        }),
        serial,
    )
}

#[test]
fn a_stalled_sink_holds_no_badge_back_and_loses_nothing() {
    // A sink that stops taking rows: the badges are answered all the same
    // (what is acknowledged is in the log), and once the sink moves again,
    // during the shutdown, every row reaches it.
    let srv = TestServer::start_with("backpressure", true, |c| {
        c.server.shards = 2;
        c.sink.queue_capacity = 1024;
        c.sink.batch_rows = 256;
    });
    let quiet = (500..).map(imei).find(|d| owner_shard(*d, 2) == 0).unwrap();
    let busy = (500..).map(imei).find(|d| owner_shard(*d, 2) == 1).unwrap();
    let mut a = srv.connect();
    a.login(quiet, 1);
    srv.wait_for("the quiet badge's login written", |m| {
        m.counters.records == 1
    });
    srv.pause_sink(true);

    const FRAMES: usize = 8;
    let mut b = srv.connect();
    b.login(busy, 1);
    let mut burst = Vec::new();
    for s in 0..FRAMES {
        burst.extend(big_bt_location(10 + s as u16));
    }
    burst.extend(heartbeat(999));
    b.send(&burst);
    b.expect(&ack(0x13, 999));
    srv.wait_for("every frame of the burst read and stored", |m| {
        m.counters.records == 1 + 1 + FRAMES as u64 * 255 + 1
    });

    let handle = srv.server.as_ref().unwrap().handle();
    let (shards, rows) = srv.stop_with(|srv| {
        // Give shard 0 the chance to finish early (it would, if it did not
        // wait for its badge's logout to be queued), then let the sink go.
        let end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            let (tx, _rx) = flume::bounded(1);
            if !handle.send(0, badge_ingest::server::ShardMsg::Metrics(tx)) {
                break; // shard 0 is gone
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        srv.pause_sink(false);
    });
    assert_eq!(shards.len(), 2);
    expect_tables(&rows_of(&rows, quiet), &[("device_events", 2)]);
    expect_tables(
        &rows_of(&rows, busy),
        &[
            ("device_events", 2),
            ("heartbeats", 1),
            ("bluetooth", FRAMES * 255),
        ],
    );
    for d in [quiet, busy] {
        let ev = events(&rows_of(&rows, d));
        assert_eq!((ev[1].0, ev[1].1.as_str()), (2, "shutdown"), "{ev:?}");
    }
    drop((a, b));
}

/// Shrinks a socket's buffers, so that a peer that stops reading stalls the
/// other side after a few kilobytes instead of megabytes.
fn small_buffers(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt reads `size` for the duration of the call.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }
}

/// A badge that keeps sending time requests (16-byte answers, no rows) but
/// never reads its answers, until the socket will not take more.
fn stop_reading(c: &mut Client, until: impl Fn() -> bool) {
    let mut burst = Vec::new();
    for s in 0..1000u16 {
        burst.extend(time_sync_2(s));
    }
    c.s.set_nonblocking(true).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let mut off = 0;
    let mut blocked_since: Option<Instant> = None;
    loop {
        match c.s.write(&burst[off..]) {
            Ok(n) => {
                off = (off + n) % burst.len();
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
                if until() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // The server gave up on us: the condition should follow.
            Err(e) => {
                while !until() {
                    assert!(
                        Instant::now() < end,
                        "condition not reached after the connection failed: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                return;
            }
        }
        assert!(
            Instant::now() < end,
            "condition not reached (blocked since {blocked_since:?})"
        );
    }
}

#[test]
fn a_badge_that_stops_reading_is_still_closed_by_the_idle_timeout() {
    let srv = TestServer::start("stuck-idle", |c| {
        c.server.idle_timeout_secs = 1;
        c.server.timer_interval_ms = 100;
        // Each read's answers stay under the limit: the connection waits on the
        // socket instead of being closed for overflow.
        c.server.max_pending_output = 1 << 20;
        // Fast enough to fill the socket buffers within the test.
        c.limits.max_frames_per_sec = 0;
    });
    let dev = imei(400);
    let mut c = srv.connect();
    small_buffers(&c.s);
    c.login(dev, 1);
    stop_reading(&mut c, || {
        let m = srv.metrics();
        m.counters.idle_timeouts == 1 && m.counters.connections_open == 0
    });
    let m = srv.metrics();
    assert_eq!(m.counters.output_overflows, 0);
    let (_, rows) = srv.stop();
    let ev = events(&rows_of(&rows, dev));
    assert_eq!(
        ev.iter().map(|e| (e.0, e.1.as_str())).collect::<Vec<_>>(),
        vec![(1, ""), (3, "idle_timeout")]
    );
}

#[test]
fn shutdown_does_not_wait_for_a_badge_that_stops_reading() {
    let srv = TestServer::start("stuck-shutdown", |c| {
        c.server.max_pending_output = 1 << 20;
        c.limits.max_frames_per_sec = 0;
    });
    let dev = imei(401);
    let mut c = srv.connect();
    small_buffers(&c.s);
    c.login(dev, 1);
    // Until the server stops reading from us.
    let last = std::cell::Cell::new((0u64, Instant::now()));
    stop_reading(&mut c, || {
        let now = srv.metrics().counters.bytes_in;
        let (before, since) = last.get();
        if now != before {
            last.set((now, Instant::now()));
            false
        } else {
            since.elapsed() > Duration::from_millis(300)
        }
    });
    let start = Instant::now();
    let (_, rows) = srv.stop();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let ev = events(&rows_of(&rows, dev));
    assert_eq!(
        ev.iter().map(|e| (e.0, e.1.as_str())).collect::<Vec<_>>(),
        vec![(1, ""), (2, "shutdown")]
    );
    drop(c);
}

/// The reply latency runs from the read of a frame to its reply, never from
/// when the connection started waiting: a badge that was silent for a while
/// must not show up as a slow reply.
#[test]
fn reply_latency_does_not_include_the_silence_before_a_frame() {
    let srv = TestServer::start("latency-silence", |_| {});
    let mut c = srv.connect();
    c.login(imei(77), 1);
    let silence = Duration::from_millis(1500);
    std::thread::sleep(silence);
    c.exchange(&heartbeat(2), &ack(0x13, 2));
    let m = srv.wait_for("two replies recorded", |m| m.reply_latency.len() == 2);
    let max = Duration::from_micros(m.reply_latency.max());
    assert!(
        max < silence,
        "a reply latency of {max:?} includes the {silence:?} of silence"
    );
}

/// With only two receive buffers per shard, many badges sending at once
/// find every buffer taken (the kernel answers their receives with
/// ENOBUFS): each such receive waits for a buffer to come back, and
/// nothing is lost or answered out of order.
#[test]
fn receives_wait_for_a_buffer_when_every_one_is_taken() {
    let server = TestServer::start("few-buffers", |c| {
        c.server.read_buffers = 2;
        c.server.read_buffer = 512;
    });
    let addr = server.addr;
    let badges: Vec<_> = (0..40u64)
        .map(|n| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut c = Client { s };
                c.login(imei(9_000 + n), 1);
                for round in 0..10u16 {
                    // 30 heartbeats in one write: more than a buffer holds.
                    let serials: Vec<u16> = (0..30).map(|i| 2 + round * 30 + i).collect();
                    let burst: Vec<u8> = serials.iter().flat_map(|s| heartbeat(*s)).collect();
                    c.send(&burst);
                    let want: Vec<u8> = serials.iter().flat_map(|s| ack(0x13, *s)).collect();
                    c.expect(&want);
                }
                c
            })
        })
        .collect();
    let clients: Vec<Client> = badges.into_iter().map(|t| t.join().unwrap()).collect();
    let m = server.wait_for("every frame", |m| m.frame.frames >= 40 * 301);
    assert_eq!(m.frame.frames, 40 * 301);
    assert_eq!((m.frame.rejected(), m.frame.garbage_bytes), (0, 0));
    assert!(
        m.counters.recv_buffer_waits > 0,
        "no receive waited for a buffer: {m:?}"
    );
    drop(clients);
    let (_, rows) = server.stop();
    let heartbeats = rows.iter().filter(|r| table(r) == "heartbeats").count();
    assert_eq!(heartbeats, 40 * 300);
}
