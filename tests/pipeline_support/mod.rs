//! Shared by the ClickHouse pipeline tests: a real ClickHouse (started by
//! `scripts/test.sh`), a real server, and badges speaking real TCP.
#![allow(dead_code)]

pub mod fleet;
pub mod proxy;
pub mod scratch;
pub mod serve;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use zerocopy::byteorder::big_endian::U16;

use badge_ingest::config::{Config, SinkKind};
use badge_ingest::protocol::layout::*;
use badge_ingest::protocol::message::*;
use badge_ingest::protocol::{FrameDecoder, Imei, Message};
use badge_ingest::server::RunningServer;
use badge_ingest::sink::SinkWorkers;

/// The ClickHouse the tests use (`scripts/test.sh` starts it and sets the
/// variable). Missing, it fails the test: a test that cannot reach its
/// ClickHouse has tested nothing. `BADGE_TEST_SKIP_CLICKHOUSE=1` is the
/// explicit way out; `build.rs` then marks these tests ignored.
pub fn clickhouse_url() -> String {
    match std::env::var("BADGE_TEST_CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "BADGE_TEST_CLICKHOUSE_URL is not set: run the tests with scripts/test.sh, \
             which starts a throwaway ClickHouse (or set BADGE_TEST_SKIP_CLICKHOUSE=1 \
             to have the ClickHouse tests reported as ignored)"
        ),
    }
}

/// Runs `f` on a thread of its own and fails the test if it has not
/// returned within `limit`: a shutdown or a flush that hangs must fail CI
/// with a message, not hold it for ever.
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// How long a server's shutdown, and then its sink's flush, may take.
pub const STOP_LIMIT: Duration = Duration::from_secs(60);

/// [`badge_ingest::app::App::shutdown`], bounded by [`STOP_LIMIT`].
pub fn shutdown_app(
    app: badge_ingest::app::App,
) -> Result<Vec<badge_ingest::metrics::ShardMetrics>, badge_ingest::sink::SinkError> {
    bounded("App::shutdown", STOP_LIMIT, move || app.shutdown())
}

/// Runs one statement over HTTP and returns the body; panics on an error answer.
pub fn query(url: &str, sql: &str) -> String {
    try_query(url, sql).unwrap_or_else(|e| panic!("{e}\nquery: {sql}"))
}

pub fn try_query(url: &str, sql: &str) -> Result<String, String> {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(authority).map_err(|e| format!("connect {authority}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "POST / HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("ClickHouse answered: {head}\n{body}"));
    }
    Ok(body.to_string())
}

pub fn count(url: &str, sql: &str) -> u64 {
    query(url, sql)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, with the schema applied.
pub fn fresh_database(url: &str, tag: &str) -> String {
    let db = format!(
        "t_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    query(url, &format!("DROP DATABASE IF EXISTS {db}"));
    let mut config = Config::default();
    config.clickhouse.url = url.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(badge_ingest::sink::clickhouse::apply_schema(&config, &db))
        .expect("schema applies");
    db
}

pub fn temp_dir(tag: &str) -> PathBuf {
    scratch::dir(tag)
}

/// A server on loopback ports the system picks (badges and control), with
/// `shards` shards, its own durable log, and no periodic log summary.
pub fn loopback_config(shards: usize) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.control = "127.0.0.1:0".into();
    c.server.shards = shards;
    c.server.summary_interval_secs = 0;
    c.log.dir = temp_dir("log");
    c.log.max_bytes = 1 << 30;
    c.log.segment_bytes = 8 << 20;
    c
}

/// A ClickHouse sink into `db`, with its log in `log_dir` (so that a
/// restart can go on from it).
pub fn config(url: &str, db: &str, log_dir: &std::path::Path) -> Config {
    let mut c = loopback_config(2);
    c.sink.kind = SinkKind::ClickHouse;
    c.sink.batch_age_ms = 100;
    c.clickhouse.url = url.to_string();
    c.clickhouse.database = db.to_string();
    c.log.dir = log_dir.to_owned();
    c.validate().unwrap();
    c
}

pub struct Running {
    pub server: RunningServer,
    pub workers: SinkWorkers,
}

pub fn start(config: Config) -> Running {
    let (server, workers) = badge_ingest::app::start_ingest(Arc::new(config), Default::default())
        .expect("server starts");
    Running { server, workers }
}

/// Whether every row in the logs under `dir` is in ClickHouse: every
/// table's checkpoint at the end of its shard's log.
pub fn logs_fully_inserted(dir: &std::path::Path, shards: usize) -> bool {
    (0..shards).all(|s| {
        let r = badge_ingest::log::recover(dir, s).expect("the log opens");
        r.tables.iter().all(|at| *at == r.end)
    })
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server and waits until the writers have inserted what they
    /// can (the log keeps the rest); each step is bounded by [`STOP_LIMIT`].
    pub fn stop(self) -> Arc<badge_ingest::sink::SinkStats> {
        let Running { server, workers } = self;
        bounded("RunningServer::shutdown", STOP_LIMIT, move || {
            server.shutdown();
        });
        let stats = workers.stats.clone();
        bounded("SinkWorkers::finish", STOP_LIMIT, move || workers.finish())
            .expect("sink finishes");
        stats
    }
}

/// A badge on a real TCP connection.
pub struct Badge {
    pub imei: Imei,
    stream: TcpStream,
    serial: u16,
    buf: Vec<u8>,
}

/// A helper process (Prometheus, HAProxy), killed when dropped.
pub struct Killed(pub std::process::Child);

impl Killed {
    /// Starts a helper the test needs: Debian's `package`, which
    /// `scripts/test.sh` installs when it is missing.
    pub fn spawn(command: &mut std::process::Command, package: &str) -> Self {
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} ({e}): run the tests with scripts/test.sh, which installs Debian's {package}",
                command.get_program()
            )
        });
        Self(child)
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (for a helper process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A connection to `addr` from the loopback address `ip` (127.0.0.5, say).
pub fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&addr.into()).unwrap();
    let s = TcpStream::from(s);
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

impl Badge {
    /// A badge on a connection already open.
    pub fn over(stream: TcpStream, imei: Imei) -> Self {
        Self {
            imei,
            stream,
            serial: 0,
            buf: Vec::new(),
        }
    }

    pub fn connect(addr: SocketAddr, imei: Imei) -> Self {
        Self::connect_with(addr, imei, &[])
    }

    /// Connects and writes `prefix` first (a PROXY protocol header, say).
    pub fn connect_with(addr: SocketAddr, imei: Imei, prefix: &[u8]) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connects");
        stream.write_all(prefix).expect("the prefix goes out");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            imei,
            stream,
            serial: 0,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, message: &Message<'_>) -> u16 {
        self.send_frame(message).0
    }

    /// Sends `message`; its serial and the bytes that went out.
    pub fn send_frame(&mut self, message: &Message<'_>) -> (u16, Vec<u8>) {
        self.serial = self.serial.wrapping_add(1);
        let mut out = BytesMut::new();
        message.encode(self.serial, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
        (self.serial, out.to_vec())
    }

    /// Reads the next reply frame: (protocol, serial).
    pub fn reply(&mut self) -> (u8, u16) {
        let (protocol, serial, _) = self.reply_frame();
        (protocol, serial)
    }

    /// Reads the next reply frame: (protocol, serial, content).
    pub fn reply_frame(&mut self) -> (u8, u16, Vec<u8>) {
        self.try_reply_frame().expect("reply arrives")
    }

    /// [`Self::reply_frame`], with a closed or failed connection as an error.
    pub fn try_reply_frame(&mut self) -> std::io::Result<(u8, u16, Vec<u8>)> {
        loop {
            let mut decoder = FrameDecoder::default();
            let mut pos = 0;
            if let Some(f) = decoder.next_frame(&self.buf, &mut pos) {
                let got = (f.protocol, f.serial, f.content.to_vec());
                self.buf.drain(..pos);
                return Ok(got);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The serial of the last frame sent.
    pub fn serial(&self) -> u16 {
        self.serial
    }

    /// The next frame goes out with serial `last + 1`.
    pub fn set_serial(&mut self, last: u16) {
        self.serial = last;
    }

    /// Sends `message`, which must get a reply, and waits for it: the serial
    /// it acknowledged, or `None` once the server is gone. A reply of the
    /// wrong type or serial is a failure of the server, and panics.
    pub fn try_exchange(&mut self, message: &Message<'_>) -> Option<u16> {
        let expected = expected_reply(message).expect("a message that gets a reply");
        self.serial = self.serial.wrapping_add(1);
        let mut out = BytesMut::new();
        message.encode(self.serial, &mut out).unwrap();
        self.stream.write_all(&out).ok()?;
        let (protocol, serial, _) = self.try_reply_frame().ok()?;
        assert_eq!(
            (protocol, serial),
            (expected, self.serial),
            "reply to {message:?}"
        );
        Some(serial)
    }

    /// Bounds how long [`Self::reply`] waits.
    pub fn set_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    pub fn login(&mut self) {
        self.login_in_zone(DEVICE_OFFSET_MINUTES as i16);
    }

    /// Logs in saying its clock is `offset_minutes` east of UTC.
    pub fn login_in_zone(&mut self, offset_minutes: i16) {
        let serial = self.send(&Message::Login(Login {
            imei: self.imei,
            type_code: Some(0x2404),
            tz_language: Some(TzLanguage::new(offset_minutes, 1)),
        }));
        assert_eq!(self.reply(), (0x01, serial));
    }

    /// Sends, and waits for the reply when the message gets one, so that
    /// the server has processed it before the test goes on. Returns the
    /// bytes sent.
    pub fn exchange(&mut self, message: &Message<'_>) -> Vec<u8> {
        let (serial, sent) = self.send_frame(message);
        if let Some(reply) = expected_reply(message) {
            assert_eq!(self.reply(), (reply, serial));
        }
        sent
    }
}

/// The protocol of the reply `message` gets, if any.
pub fn expected_reply(message: &Message<'_>) -> Option<u8> {
    badge_ingest::protocol::Reply::immediate(message, 0)
        .map(|r| r.protocol())
        .or(match message {
            Message::AddressRequest(r) => Some(if r.wants_english() { 0x97 } else { 0x17 }),
            _ => None,
        })
}

pub fn imei(n: u64) -> Imei {
    Imei::with_check_digit(86_000_000_000_000 + n).unwrap()
}

/// The badges' clock zone in these tests (their logins say UTC+8).
pub const DEVICE_OFFSET_MINUTES: i32 = 480;

/// Unix seconds of the device time the sample messages carry: an hour
/// before the first call, the same for the whole test binary. Relative to
/// now, so that it stays inside the server's plausibility window (a day
/// ahead, 366 days back) whatever the host clock says.
pub fn time_unix() -> i64 {
    static T: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now - 3600
    })
}

/// [`time_unix`] as the badges' local wall clock.
pub fn time() -> DeviceTime {
    DeviceTime::from_unix(time_unix(), DEVICE_OFFSET_MINUTES)
}

/// Backing storage for the borrowed parts of the sample messages.
pub struct Samples {
    pub cells2: Vec<Cell2g>,
    pub cells4: Vec<Cell4g>,
    pub aps: Vec<WifiAp>,
    pub beacons: Vec<BeaconSighting>,
    pub shenzhen: GpsFix,
}

impl Samples {
    pub fn new() -> Self {
        Self {
            cells2: vec![
                Cell2g::new(0x2795, 0x0E5A21, 60),
                Cell2g::new(0x2795, 0x0E5A22, 50),
                Cell2g::new(0, 0, 0),
                Cell2g::new(0x2796, 0x0E5B01, 40),
                Cell2g::new(0, 0, 0),
                Cell2g::new(0, 0, 0),
                Cell2g::new(0, 0, 0),
            ],
            cells4: vec![
                Cell4g::new(0x0001_2795, 0x0000_0001_0E5A_2101, 70),
                Cell4g::new(0x0001_2795, 0x0000_0001_0E5A_2102, 55),
                Cell4g::new(0, 0, 0),
                Cell4g::new(0, 0, 0),
                Cell4g::new(0, 0, 0),
                Cell4g::new(0, 0, 0),
                Cell4g::new(0, 0, 0),
            ],
            aps: vec![
                WifiAp::new([0xAC, 0x23, 0x3F, 0x01, 0x02, 0x03], 70),
                WifiAp::new([0xAC, 0x23, 0x3F, 0x01, 0x02, 0x04], 65),
            ],
            beacons: vec![
                BeaconSighting::new(
                    -60,
                    [0xC1, 0, 0, 0, 0, 1],
                    [0xFD; 16],
                    10,
                    1,
                    BeaconBattery::Centivolts(301),
                ),
                BeaconSighting::new(
                    -75,
                    [0xC1, 0, 0, 0, 0, 2],
                    [0xFD; 16],
                    10,
                    2,
                    BeaconBattery::Percent(88),
                ),
                BeaconSighting::new(
                    -50,
                    [0xC1, 0, 0, 0, 0, 3],
                    [0xFD; 16],
                    10,
                    3,
                    BeaconBattery::Centivolts(295),
                ),
            ],
            shenzhen: GpsFix::new(22.543099, 114.057868, 12, 90, 9, true, true),
        }
    }

    /// One message of every type the server stores, with the rows each
    /// should produce in each table (login and logout aside).
    pub fn messages(&self) -> Vec<Message<'_>> {
        let time = time();
        let net = MobileNetwork::new(460, 0);
        let shenzhen = self.shenzhen;
        let sydney = GpsFix::new(-33.8688, 151.2093, 0, 0, 6, true, true);
        let alarm_status = AlarmStatus {
            terminal_info: 0x44,
            voltage_level: 5,
            gsm_signal: 4,
            alarm_code: 0x01,
            language: 1,
        };
        let head = |kind| AttendanceHead {
            time,
            gps_flag: 1,
            reserved: [0x12, 0x34],
            fix: shenzhen,
            terminal_info: TerminalInfo::for_attendance(kind).0,
            voltage_level: 6,
            gsm_signal: 3,
            reserved_ext: [0, 0],
        };
        let punch = PunchBody {
            time,
            rssi: -58,
            mac: [0xC1, 0, 0, 0, 0, 9],
            uuid: [0xFD; 16],
            major: U16::new(10),
            minor: U16::new(9),
            battery_centivolts: U16::new(300),
            terminal_info: TerminalInfo::for_attendance(AttendanceKind::ClockIn).0,
            reserved: [0xAB, 0xCD],
        };
        let gps_tail = GpsTail {
            network: net,
            cell: CellTower {
                lac: 0x2795,
                cell_id: 0x0E5A21,
                rssi: 0,
            },
            acc: 1,
            report_mode: 0,
            realtime_upload: 0,
            mileage: Some(1234),
        };
        vec![
            Message::Heartbeat(Heartbeat {
                extended: false,
                status: HeartbeatStatus {
                    terminal_info: 0x44,
                    battery: 87,
                    gsm_signal: 4,
                },
                language: Some(1),
                extension: &[],
            }),
            Message::Heartbeat(Heartbeat {
                extended: true,
                status: HeartbeatStatus {
                    terminal_info: 0x40,
                    battery: 86,
                    gsm_signal: 3,
                },
                language: Some(2),
                extension: &[0xAA, 0xBB],
            }),
            Message::Gps(GpsReport {
                generation: Generation::G2,
                time,
                fix: shenzhen,
                tail: Some(gps_tail),
            }),
            Message::Gps(GpsReport {
                generation: Generation::G4,
                time,
                fix: sydney,
                tail: None,
            }),
            Message::Lbs(LbsReport {
                protocol: 0x28,
                time,
                network: net,
                cells: Cells::G2(&self.cells2),
                timing_advance: Some(0),
                language: Some(1),
            }),
            Message::Lbs(LbsReport {
                protocol: 0x2E,
                time,
                network: net,
                cells: Cells::G2(&self.cells2),
                timing_advance: Some(0),
                language: Some(1),
            }),
            Message::Lbs(LbsReport {
                protocol: 0xA1,
                time,
                network: MobileNetwork::new(460, 11),
                cells: Cells::G4(&self.cells4),
                timing_advance: Some(0),
                language: Some(1),
            }),
            Message::Wifi(WifiReport {
                time,
                network: net,
                cells: Cells::G2(&self.cells2),
                timing_advance: 0,
                aps: &self.aps,
            }),
            Message::Wifi(WifiReport {
                time,
                network: net,
                cells: Cells::G4(&self.cells4),
                timing_advance: 0,
                aps: &[],
            }),
            Message::AddressRequest(AddressRequest {
                protocol: 0x17,
                time,
                body: &[0x01, 0xCC, 0x00, 0x27, 0x95, 0x0E, 0x5A, 0x21],
                language: 1,
            }),
            Message::AddressRequest(AddressRequest {
                protocol: 0x1A,
                time,
                body: zerocopy::IntoBytes::as_bytes(&self.shenzhen),
                language: 2,
            }),
            Message::AddressRequest(AddressRequest {
                protocol: 0xA7,
                time,
                body: &[
                    0x01, 0xCC, 0x00, 0x00, 0x01, 0x27, 0x95, 0, 0, 0, 1, 0x0E, 0x5A, 0x21, 0x01,
                ],
                language: 1,
            }),
            Message::Alarm(Alarm {
                source: AlarmSource::SingleFence,
                body: AlarmBody::Fence {
                    time,
                    fix: shenzhen,
                    lbs_length: 12,
                    network: net,
                    cell: CellId4g::new(0x2795, 0x0E5A21),
                    status: alarm_status,
                    fence_id: None,
                },
            }),
            Message::Alarm(Alarm {
                source: AlarmSource::MultiFence,
                body: AlarmBody::Fence {
                    time,
                    fix: sydney,
                    lbs_length: 12,
                    network: net,
                    cell: CellId4g::new(0x2795, 0x0E5A21),
                    status: AlarmStatus {
                        alarm_code: 0x05,
                        ..alarm_status
                    },
                    fence_id: Some(3),
                },
            }),
            Message::Alarm(Alarm {
                source: AlarmSource::Lbs,
                body: AlarmBody::Lbs {
                    network: net,
                    cell: CellId4g::new(0x2795, 0x0E5A21),
                    status: AlarmStatus {
                        alarm_code: 0x02,
                        ..alarm_status
                    },
                },
            }),
            Message::Alarm(Alarm {
                source: AlarmSource::Wifi,
                body: AlarmBody::Wifi {
                    time,
                    network: net,
                    cells: Cells::G2(&self.cells2[..2]),
                    timing_advance: 0,
                    aps: &self.aps,
                    alarm_code: 0x23,
                    language: 1,
                },
            }),
            Message::Attendance(Attendance {
                head: head(AttendanceKind::ClockIn),
                network: net,
                cells: Cells::G2(&self.cells2),
                timing_advance: 0,
                aps: &self.aps,
            }),
            Message::Attendance(Attendance {
                head: head(AttendanceKind::ClockOut),
                network: MobileNetwork {
                    mcc: 460,
                    mnc: 11,
                    wide_mnc: true,
                },
                cells: Cells::G4(&self.cells4),
                timing_advance: 0,
                aps: &[],
            }),
            Message::BluetoothPunch(BluetoothPunch { body: punch }),
            Message::BluetoothLocation(BluetoothLocation {
                time,
                beacons: &self.beacons,
            }),
            Message::GeneralInfo(GeneralInfo::SimIds {
                imei: [0; 8],
                imsi: Imsi([0x04, 0x60, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90]),
                iccid: Iccid([0x89, 0x86, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34]),
            }),
            Message::CommandReply(CommandReply {
                length: 9,
                server_flag: 42,
                text: b"OK!",
                language: Some(1),
            }),
            Message::Unknown {
                protocol: 0x5A,
                content: &[1, 2, 3],
            },
        ]
    }
}

/// Rows per table that [`Samples::messages`] produce, besides login/logout.
pub const SAMPLE_ROWS: &[(&str, u64)] = &[
    ("heartbeats", 2),
    ("locations", 10),
    ("alarms", 4),
    ("attendance", 2),
    ("bluetooth", 4),
    ("device_info", 1),
    ("command_log", 1),
    ("raw_frames", 1),
];

/// A control-socket client speaking the line protocol.
pub struct Control {
    reader: BufReader<TcpStream>,
}

impl Control {
    pub fn connect(app: &badge_ingest::app::App) -> Self {
        let badge_ingest::config::ControlAddr::Tcp(addr) = app.control_addr() else {
            panic!("tests use a TCP control socket")
        };
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    pub fn send(&mut self, line: &str) {
        let s = self.reader.get_mut();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.reader.read_line(&mut l).expect("a line within 10 s");
        assert!(n > 0, "control socket closed");
        l.trim_end().to_string()
    }

    /// One whole answer (up to the empty line).
    pub fn ask(&mut self, command: &str) -> String {
        self.send(command);
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                return out.join("\n");
            }
            out.push(l);
        }
    }
}
