//! Traffic generation: what a badge sends and when.
//!
//! [`Badge`] holds one device's identity and the state its reports evolve
//! (position, battery, clock-in state) and builds frames with the library's
//! encoders. [`Planner`] decides when each message is due under a profile.
//! Both are plain data with a deterministic RNG, so a seed reproduces a run's
//! traffic (up to timing).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use badge_ingest::protocol::layout::{
    AttendanceKind, BeaconBattery, BeaconSighting, Cell2g, Cell4g, CellId4g, CellTower, Cells,
    DeviceTime, Generation, GpsFix, MobileNetwork, TerminalInfo, WifiAp,
};
use badge_ingest::protocol::message::{
    AddressRequest, Alarm, AlarmBody, AlarmSource, AlarmStatus, Attendance, AttendanceHead,
    BluetoothLocation, BluetoothPunch, CommandReply, GeneralInfo, GpsReport, GpsTail, Heartbeat,
    HeartbeatStatus, Iccid, Imsi, LbsReport, Login, PunchBody, TimeSyncRequest, TzLanguage,
    WifiReport,
};
use badge_ingest::protocol::number as n;
use badge_ingest::protocol::{Imei, Message};
use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::U16;
use zerocopy::IntoBytes;

use crate::expect::Expected;

/// A small, fast, seedable generator (SplitMix64). Statistical quality is
/// ample for picking message types and jittering timers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut r = Self(seed ^ 0x5851_F42D_4C95_7F2D);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponentially distributed, for Poisson arrivals.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// A Gaussian sample (Box–Muller).
    pub fn normal(&mut self, sd: f64) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Realistic,
    Burst,
    ReconnectStorm,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Realistic => "realistic",
            Profile::Burst => "burst",
            Profile::ReconnectStorm => "reconnect-storm",
        }
    }
}

/// Every message a badge can be asked to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Heartbeat,
    HeartbeatExt,
    Gps,
    Gps4g,
    Lbs,
    LbsReply,
    Lbs4g,
    Wifi,
    Wifi4g,
    TimeSync,
    TimeSync2,
    AlarmSingleFence,
    AlarmMultiFence,
    AlarmLbs,
    AlarmWifi,
    AddressLbs,
    AddressGps,
    AddressLbs4g,
    ClockIn,
    ClockOut,
    Punch,
    /// 0xB3 with a few beacons.
    Beacons,
    /// 0xB3 with enough beacons to need a 79 79 frame.
    ManyBeacons,
    /// 0xB3 that saw nothing.
    NoBeacons,
    GeneralInfo,
}

#[cfg(test)]
impl Kind {
    pub const ALL: [Kind; 25] = [
        Kind::Heartbeat,
        Kind::HeartbeatExt,
        Kind::Gps,
        Kind::Gps4g,
        Kind::Lbs,
        Kind::LbsReply,
        Kind::Lbs4g,
        Kind::Wifi,
        Kind::Wifi4g,
        Kind::TimeSync,
        Kind::TimeSync2,
        Kind::AlarmSingleFence,
        Kind::AlarmMultiFence,
        Kind::AlarmLbs,
        Kind::AlarmWifi,
        Kind::AddressLbs,
        Kind::AddressGps,
        Kind::AddressLbs4g,
        Kind::ClockIn,
        Kind::ClockOut,
        Kind::Punch,
        Kind::Beacons,
        Kind::ManyBeacons,
        Kind::NoBeacons,
        Kind::GeneralInfo,
    ];
}

/// Weights (per mille) of the frames a realistic badge sends between
/// heartbeats. GPS and beacon scans dominate, as on a badge worn indoors and
/// out; what needs a reply (0x2E, punches, address and time requests,
/// alarms) is about a sixth.
const REALISTIC_MIX: &[(Kind, u32)] = &[
    (Kind::Gps, 295),
    (Kind::Gps4g, 140),
    (Kind::Lbs, 50),
    (Kind::LbsReply, 80),
    (Kind::Lbs4g, 50),
    (Kind::Wifi, 60),
    (Kind::Wifi4g, 50),
    (Kind::Punch, 40),
    (Kind::Beacons, 150),
    (Kind::ManyBeacons, 30),
    (Kind::NoBeacons, 10),
    (Kind::AddressLbs, 8),
    (Kind::AddressGps, 9),
    (Kind::AddressLbs4g, 8),
    (Kind::TimeSync, 6),
    (Kind::TimeSync2, 6),
    (Kind::GeneralInfo, 5),
    (Kind::AlarmSingleFence, 1),
    (Kind::AlarmMultiFence, 1),
    (Kind::AlarmLbs, 1),
    (Kind::AlarmWifi, 1),
];

/// Frames that need a reply, for the burst profile's pipeline.
const BURST_REPLY_MIX: &[(Kind, u32)] = &[
    (Kind::Heartbeat, 300),
    (Kind::LbsReply, 300),
    (Kind::ClockIn, 75),
    (Kind::ClockOut, 75),
    (Kind::Punch, 250),
];

/// Frames that need none, sent between the others in the burst profile.
const BURST_SILENT_MIX: &[(Kind, u32)] = &[
    (Kind::Gps, 600),
    (Kind::Beacons, 300),
    (Kind::ManyBeacons, 100),
];

/// The light traffic between reconnects of the reconnect-storm profile.
const STORM_MIX: &[(Kind, u32)] = &[
    (Kind::Gps, 500),
    (Kind::LbsReply, 300),
    (Kind::Beacons, 200),
];

fn pick(rng: &mut Rng, mix: &[(Kind, u32)]) -> Kind {
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut x = rng.int(0, u64::from(total) - 1) as u32;
    for &(k, w) in mix {
        if x < w {
            return k;
        }
        x -= w;
    }
    mix[0].0
}

/// Walking pace: badges are worn by people.
const WALK_MPS: f64 = 1.4;
/// Beyond this from home a walker turns back.
const ROAM_M: f64 = 1500.0;
const METERS_PER_DEGREE: f64 = 111_320.0;

/// Networks by rough region, so cells match where the badge is.
const NETWORKS: &[(f64, f64, u16, u16)] = &[
    // (latitude, longitude, mcc, mnc) of a region's centre
    (31.0, 114.0, 460, 0),    // China
    (22.3, 114.2, 454, 0),    // Hong Kong
    (39.0, -98.0, 310, 410),  // USA: a three-digit MNC
    (52.0, -1.0, 234, 15),    // UK
    (51.0, 10.0, 262, 1),     // Germany
    (-25.0, 134.0, 505, 1),   // Australia
    (-15.0, -50.0, 724, 5),   // Brazil
    (-29.0, 24.0, 655, 7),    // South Africa
    (21.0, 78.0, 404, 45),    // India
    (-38.0, -64.0, 722, 310), // Argentina
];

/// Where a badge's fixes come from: plausible walking paths around a home.
#[derive(Debug, Clone)]
struct Walker {
    home: (f64, f64),
    pos: (f64, f64),
    /// Radians from north.
    heading: f64,
    speed_mps: f64,
    at: Instant,
}

impl Walker {
    fn new(rng: &mut Rng, now: Instant) -> Self {
        // Homes spread over both hemispheres, away from the poles.
        let home = (rng.range(-55.0, 65.0), rng.range(-180.0, 180.0));
        Self {
            home,
            pos: home,
            heading: rng.range(0.0, std::f64::consts::TAU),
            speed_mps: WALK_MPS,
            at: now,
        }
    }

    fn step(&mut self, rng: &mut Rng, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        if dt <= 0.0 {
            return;
        }
        // People stop and start: a third of the time they stand still.
        self.speed_mps = if rng.chance(0.3) {
            0.0
        } else {
            (WALK_MPS + rng.normal(0.3)).clamp(0.5, 2.2)
        };
        self.heading += rng.normal(0.35);
        let (dn, de) = self.offset_from_home();
        if (dn * dn + de * de).sqrt() > ROAM_M {
            // Head back home.
            self.heading = (-de).atan2(-dn);
        }
        let d = self.speed_mps * dt;
        let lat = self.pos.0 + d * self.heading.cos() / METERS_PER_DEGREE;
        let lon = self.pos.1
            + d * self.heading.sin() / (METERS_PER_DEGREE * lat.to_radians().cos().max(0.05));
        self.pos = (lat.clamp(-85.0, 85.0), wrap_lon(lon));
    }

    fn offset_from_home(&self) -> (f64, f64) {
        let dn = (self.pos.0 - self.home.0) * METERS_PER_DEGREE;
        let mut dlon = self.pos.1 - self.home.1;
        if dlon > 180.0 {
            dlon -= 360.0;
        } else if dlon < -180.0 {
            dlon += 360.0;
        }
        (
            dn,
            dlon * METERS_PER_DEGREE * self.home.0.to_radians().cos(),
        )
    }

    fn course_degrees(&self) -> u16 {
        (self.heading.to_degrees().rem_euclid(360.0) as u16) % 360
    }
}

fn wrap_lon(lon: f64) -> f64 {
    let mut l = lon;
    while l >= 180.0 {
        l -= 360.0;
    }
    while l < -180.0 {
        l += 360.0;
    }
    l
}

/// What the device loop needs to know about a frame it is about to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub protocol: u8,
    pub expect: Option<Expected>,
    /// Rows the server writes to `bluetooth` for this frame.
    pub bluetooth_rows: u32,
}

/// One badge: identity plus the state its reports carry.
#[derive(Debug, Clone)]
pub struct Badge {
    pub rng: Rng,
    pub imei: Imei,
    /// 1 Chinese, 2 English: the badge's preferred language.
    pub language: u16,
    tz_minutes: i16,
    network: MobileNetwork,
    lac: u32,
    cell_id: u64,
    walker: Walker,
    battery: u8,
    /// Seeds the MACs of the WiFi APs and beacons around the badge's home.
    site: u64,
    /// 0xB1 rather than 0xB0 for attendance.
    four_g: bool,
    pub clocked_in: bool,
}

impl Badge {
    pub fn new(seed: u64, index: u64, imei: Imei, now: Instant) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index);
        let walker = Walker::new(&mut rng, now);
        let (_, _, mcc, mnc) = NETWORKS
            .iter()
            .copied()
            .min_by(|a, b| {
                let da = (a.0 - walker.home.0).powi(2) + (a.1 - walker.home.1).powi(2);
                let db = (b.0 - walker.home.0).powi(2) + (b.1 - walker.home.1).powi(2);
                da.total_cmp(&db)
            })
            .expect("NETWORKS is not empty");
        let network = MobileNetwork::new(mcc, mnc);
        // Time zone from longitude, to the hour; language mostly Chinese in
        // China and Hong Kong, English elsewhere, with some of each everywhere.
        let tz_minutes = ((walker.home.1 / 15.0).round() as i16).clamp(-12, 14) * 60;
        let chinese = matches!(mcc, 460 | 454);
        let language = if rng.chance(if chinese { 0.8 } else { 0.2 }) {
            1
        } else {
            2
        };
        Self {
            lac: rng.int(1, 0xFFFE) as u32,
            cell_id: rng.int(1, 0x0FFF_FFFF),
            battery: rng.int(40, 100) as u8,
            site: rng.next_u64(),
            four_g: rng.chance(0.5),
            clocked_in: false,
            rng,
            imei,
            language,
            tz_minutes,
            network,
            walker,
        }
    }

    /// A language for a request: mostly the badge's own, sometimes the other,
    /// so both reply forms are exercised.
    fn request_language(&mut self) -> u16 {
        if self.rng.chance(0.8) {
            self.language
        } else {
            3 - self.language
        }
    }

    /// The badge's clock: local time in the zone its login gives.
    fn device_time(&self, now_unix: i64) -> DeviceTime {
        DeviceTime::from_unix(now_unix, i32::from(self.tz_minutes))
    }

    pub fn login(&mut self, serial: u16, out: &mut BytesMut) -> Outgoing {
        let m = Message::Login(Login {
            imei: self.imei,
            type_code: Some(0x2404),
            tz_language: Some(TzLanguage::new(self.tz_minutes, self.language as u8)),
        });
        encode(&m, serial, out);
        Outgoing {
            protocol: n::LOGIN,
            expect: Some(Expected::Ack { protocol: n::LOGIN }),
            bluetooth_rows: 0,
        }
    }

    /// The 0x81 answer to an 0x80 command: the flag echoed, "OK", the language.
    pub fn command_reply(
        &mut self,
        server_flag: u32,
        language: u16,
        serial: u16,
        out: &mut BytesMut,
    ) -> Outgoing {
        let text = b"OK";
        let m = Message::CommandReply(CommandReply {
            length: (4 + text.len() + 2) as u8,
            server_flag,
            text,
            language: Some(language),
        });
        encode(&m, serial, out);
        Outgoing {
            protocol: n::ONLINE_COMMAND_REPLY,
            expect: None,
            bluetooth_rows: 0,
        }
    }

    fn fix(&mut self, now: Instant) -> GpsFix {
        self.walker.step(&mut self.rng, now);
        if self.rng.chance(0.03) {
            // Indoors, no fix yet: devices send zeros.
            return GpsFix::new(0.0, 0.0, 0, 0, 0, false, true);
        }
        let (lat, lon) = self.walker.pos;
        let speed = (self.walker.speed_mps * 3.6).round() as u8;
        let sats = self.rng.int(4, 12) as u8;
        GpsFix::new(
            lat,
            lon,
            speed,
            self.walker.course_degrees(),
            sats,
            true,
            true,
        )
    }

    /// The serving cell drifts as the badge moves: a handover now and then.
    fn serving_cell(&mut self) -> (u32, u64) {
        if self.rng.chance(0.02) {
            self.cell_id = self.rng.int(1, 0x0FFF_FFFF);
        }
        (self.lac, self.cell_id)
    }

    fn rssi(&mut self) -> u8 {
        self.rng.int(20, 90) as u8
    }

    fn cells_2g(&mut self) -> [Cell2g; 7] {
        let (lac, id) = self.serving_cell();
        let lac = lac as u16;
        let mut cells = [Cell2g::new(0, 0, 0); 7];
        cells[0] = Cell2g::new(lac, (id & 0xFF_FFFF) as u32, self.rssi());
        // Unused neighbour slots stay zero, as devices send them.
        let neighbours = self.rng.int(0, 6) as usize;
        for (i, c) in cells.iter_mut().enumerate().skip(1).take(neighbours) {
            *c = Cell2g::new(lac, ((id + i as u64 * 7) & 0xFF_FFFF) as u32, self.rssi());
        }
        cells
    }

    fn cells_4g(&mut self) -> [Cell4g; 7] {
        let (lac, id) = self.serving_cell();
        let mut cells = [Cell4g::new(0, 0, 0); 7];
        cells[0] = Cell4g::new(lac, id, self.rssi());
        let neighbours = self.rng.int(0, 6) as usize;
        for (i, c) in cells.iter_mut().enumerate().skip(1).take(neighbours) {
            *c = Cell4g::new(lac, id + i as u64 * 7, self.rssi());
        }
        cells
    }

    /// The APs near home, each seen with a varying signal.
    fn wifi(&mut self, out: &mut [WifiAp; 8]) -> usize {
        let count = self.rng.int(1, 8) as usize;
        let start = self.rng.int(0, 15);
        for (i, ap) in out.iter_mut().take(count).enumerate() {
            let mac = mac_of(self.site, start + i as u64, 0x02);
            *ap = WifiAp::new(mac, self.rng.int(30, 95) as u8);
        }
        count
    }

    /// A beacon of the badge's site: beacons are fixed, so the same MACs recur.
    fn beacon(&mut self, i: u64) -> BeaconSighting {
        let mac = mac_of(self.site, 1000 + i, 0xAC);
        let battery = if self.rng.chance(0.5) {
            BeaconBattery::Centivolts(self.rng.int(260, 330) as u16)
        } else {
            BeaconBattery::Percent(self.rng.int(10, 100) as u16)
        };
        BeaconSighting::new(
            -(self.rng.int(40, 100) as i8),
            mac,
            SITE_UUID,
            (self.site & 0xFFFF) as u16,
            i as u16,
            battery,
        )
    }

    fn gsm_signal(&mut self) -> u8 {
        self.rng.int(1, 4) as u8
    }

    fn drain_battery(&mut self) -> u8 {
        if self.battery > 5 && self.rng.chance(0.02) {
            self.battery -= 1;
        }
        self.battery
    }

    /// Builds `kind` with `serial` into `out` and says what it expects back.
    pub fn build(
        &mut self,
        kind: Kind,
        serial: u16,
        now: Instant,
        now_unix: i64,
        out: &mut BytesMut,
    ) -> Outgoing {
        let time = self.device_time(now_unix);
        let start = out.len();
        let mut bluetooth_rows = 0;
        let expect = match kind {
            Kind::Heartbeat | Kind::HeartbeatExt => {
                let extended = kind == Kind::HeartbeatExt;
                let battery = self.drain_battery();
                let status = HeartbeatStatus {
                    terminal_info: 0x44,
                    battery,
                    gsm_signal: self.gsm_signal(),
                };
                let ext = [0x00, 0x01, 0x02, battery];
                let m = Message::Heartbeat(Heartbeat {
                    extended,
                    status,
                    language: Some(self.language),
                    extension: if extended { &ext } else { &[] },
                });
                encode(&m, serial, out);
                Some(Expected::Ack {
                    protocol: m.protocol(),
                })
            }
            Kind::Gps | Kind::Gps4g => {
                let generation = if kind == Kind::Gps4g {
                    Generation::G4
                } else {
                    Generation::G2
                };
                let fix = self.fix(now);
                let tail = if self.rng.chance(0.7) {
                    let (lac, id) = self.serving_cell();
                    let cell = match generation {
                        Generation::G2 => CellTower {
                            lac: lac & 0xFFFF,
                            cell_id: id & 0xFF_FFFF,
                            rssi: 0,
                        },
                        Generation::G4 => CellTower {
                            lac,
                            cell_id: id,
                            rssi: 0,
                        },
                    };
                    Some(GpsTail {
                        network: self.network,
                        cell,
                        acc: 0,
                        report_mode: self.rng.int(0, 2) as u8,
                        realtime_upload: 0,
                        mileage: self
                            .rng
                            .chance(0.5)
                            .then(|| self.rng.int(0, 100_000) as u32),
                    })
                } else {
                    None
                };
                encode(
                    &Message::Gps(GpsReport {
                        generation,
                        time,
                        fix,
                        tail,
                    }),
                    serial,
                    out,
                );
                None
            }
            Kind::Lbs | Kind::LbsReply | Kind::Lbs4g => {
                let protocol = match kind {
                    Kind::Lbs => n::LBS_MULTI,
                    Kind::LbsReply => n::LBS_MULTI_REPLY,
                    _ => n::LBS_4G,
                };
                let (c2, c4);
                let cells = if kind == Kind::Lbs4g {
                    c4 = self.cells_4g();
                    Cells::G4(&c4)
                } else {
                    c2 = self.cells_2g();
                    Cells::G2(&c2)
                };
                let m = Message::Lbs(LbsReport {
                    protocol,
                    time,
                    network: self.network,
                    cells,
                    timing_advance: Some(self.rng.int(0, 63) as u8),
                    language: Some(self.language),
                });
                encode(&m, serial, out);
                (kind == Kind::LbsReply).then_some(Expected::Ack {
                    protocol: n::LBS_MULTI_REPLY,
                })
            }
            Kind::Wifi | Kind::Wifi4g => {
                let mut aps = [WifiAp::new([0; 6], 0); 8];
                let count = self.wifi(&mut aps);
                let (c2, c4);
                let cells = if kind == Kind::Wifi4g {
                    c4 = self.cells_4g();
                    Cells::G4(&c4)
                } else {
                    c2 = self.cells_2g();
                    Cells::G2(&c2)
                };
                let m = Message::Wifi(WifiReport {
                    time,
                    network: self.network,
                    cells,
                    timing_advance: self.rng.int(0, 63) as u8,
                    aps: &aps[..count],
                });
                encode(&m, serial, out);
                None
            }
            Kind::TimeSync => {
                let language = self.request_language();
                let m = Message::TimeSync(TimeSyncRequest {
                    device_time: Some(time),
                    language,
                });
                encode(&m, serial, out);
                Some(Expected::TimeSync { language })
            }
            Kind::TimeSync2 => {
                encode(&Message::TimeSync2, serial, out);
                Some(Expected::TimeSync2)
            }
            Kind::AlarmSingleFence | Kind::AlarmMultiFence | Kind::AlarmLbs | Kind::AlarmWifi => {
                self.alarm(kind, time, now, serial, out);
                Some(Expected::Ack {
                    protocol: n::ALARM_ACK,
                })
            }
            Kind::AddressLbs | Kind::AddressGps | Kind::AddressLbs4g => {
                let language = self.request_language();
                let mut body = BytesMut::with_capacity(48);
                let (lac, id) = self.serving_cell();
                let protocol = match kind {
                    Kind::AddressLbs => {
                        self.network.encode(&mut body);
                        body.put_u16(lac as u16);
                        body.put_slice(&((id & 0xFF_FFFF) as u32).to_be_bytes()[1..]);
                        n::LBS_ADDRESS_REQUEST
                    }
                    Kind::AddressGps => {
                        let fix = self.fix(now);
                        body.put_slice(fix.as_bytes());
                        n::ADDRESS_QUERY
                    }
                    _ => {
                        self.network.encode(&mut body);
                        body.put_u32(lac);
                        body.put_u64(id);
                        n::LBS_4G_ADDRESS_REQUEST
                    }
                };
                // The phone number the reply should go to, 21 ASCII bytes.
                body.put_slice(b"13800138000");
                body.put_bytes(b'0', 10);
                let m = Message::AddressRequest(AddressRequest {
                    protocol,
                    time,
                    body: &body,
                    language,
                });
                encode(&m, serial, out);
                Some(Expected::Address {
                    english: language == 2,
                })
            }
            Kind::ClockIn | Kind::ClockOut => {
                let attendance = if kind == Kind::ClockIn {
                    AttendanceKind::ClockIn
                } else {
                    AttendanceKind::ClockOut
                };
                self.clocked_in = attendance == AttendanceKind::ClockIn;
                let fix = self.fix(now);
                let reserved = self.rng.bytes::<2>();
                let head = AttendanceHead {
                    time,
                    gps_flag: u8::from(fix.positioned()),
                    reserved,
                    fix,
                    terminal_info: TerminalInfo::for_attendance(attendance).0
                        | if fix.positioned() { 0x40 } else { 0 },
                    voltage_level: self.rng.int(2, 6) as u8,
                    gsm_signal: self.gsm_signal(),
                    reserved_ext: [0, 0],
                };
                let mut aps = [WifiAp::new([0; 6], 0); 8];
                let count = self.wifi(&mut aps);
                let (c2, c4);
                let (cells, network) = if self.four_g {
                    c4 = self.cells_4g();
                    let net = MobileNetwork {
                        wide_mnc: true,
                        ..self.network
                    };
                    (Cells::G4(&c4), net)
                } else {
                    c2 = self.cells_2g();
                    (Cells::G2(&c2), self.network)
                };
                let m = Message::Attendance(Attendance {
                    head,
                    network,
                    cells,
                    timing_advance: self.rng.int(0, 63) as u8,
                    aps: &aps[..count],
                });
                encode(&m, serial, out);
                Some(Expected::Punch {
                    protocol: m.protocol(),
                    time: time_bytes(time),
                    kind: attendance as u8,
                    reserved,
                })
            }
            Kind::Punch => {
                let attendance = if self.rng.chance(0.5) {
                    AttendanceKind::ClockIn
                } else {
                    AttendanceKind::ClockOut
                };
                let i = self.rng.int(0, 39);
                let beacon = self.beacon(i);
                let reserved = self.rng.bytes::<2>();
                let body = PunchBody {
                    time,
                    rssi: beacon.rssi,
                    mac: beacon.mac,
                    uuid: beacon.uuid,
                    major: beacon.major,
                    minor: beacon.minor,
                    battery_centivolts: U16::new(self.rng.int(260, 330) as u16),
                    terminal_info: TerminalInfo::for_attendance(attendance).0,
                    reserved,
                };
                encode(
                    &Message::BluetoothPunch(BluetoothPunch { body }),
                    serial,
                    out,
                );
                bluetooth_rows = 1;
                Some(Expected::Punch {
                    protocol: n::BT_PUNCH,
                    time: time_bytes(time),
                    kind: attendance as u8,
                    reserved,
                })
            }
            Kind::Beacons | Kind::ManyBeacons | Kind::NoBeacons => {
                let count = match kind {
                    Kind::Beacons => self.rng.int(1, 5),
                    // 7 + 30 × 9 content bytes no longer fit a one-byte length.
                    Kind::ManyBeacons => self.rng.int(9, 40),
                    _ => 0,
                } as usize;
                let first = self.rng.int(0, 39);
                let beacons: Vec<BeaconSighting> = (0..count as u64)
                    .map(|i| self.beacon((first + i) % 60))
                    .collect();
                encode(
                    &Message::BluetoothLocation(BluetoothLocation {
                        time,
                        beacons: &beacons,
                    }),
                    serial,
                    out,
                );
                bluetooth_rows = count.max(1) as u32;
                None
            }
            Kind::GeneralInfo => {
                let m = if self.rng.chance(0.7) {
                    let imsi_digits = 460_000_000_000_000u64 + (self.imei.as_u64() % 1_000_000_000);
                    Message::GeneralInfo(GeneralInfo::SimIds {
                        imei: self.imei.to_bcd(),
                        imsi: Imsi(Imei::new(imsi_digits).map(Imei::to_bcd).unwrap_or([0; 8])),
                        iccid: Iccid(bcd20(
                            8986_0000_0000_0000_0000u128 + u128::from(self.imei.as_u64()),
                        )),
                    })
                } else {
                    Message::GeneralInfo(GeneralInfo::GpsStatus(self.rng.int(0, 4) as u8))
                };
                encode(&m, serial, out);
                None
            }
        };
        let protocol = frame_protocol(&out[start..]);
        Outgoing {
            protocol,
            expect,
            bluetooth_rows,
        }
    }

    fn alarm(
        &mut self,
        kind: Kind,
        time: DeviceTime,
        now: Instant,
        serial: u16,
        out: &mut BytesMut,
    ) {
        // SOS, fall, low battery, vibration, fence exit/enter.
        const CODES: [u8; 6] = [0x01, 0x23, 0x19, 0x03, 0x05, 0x04];
        let code = CODES[self.rng.int(0, CODES.len() as u64 - 1) as usize];
        let status = AlarmStatus {
            terminal_info: 0x44,
            voltage_level: self.rng.int(1, 6) as u8,
            gsm_signal: self.gsm_signal(),
            alarm_code: code,
            language: self.language as u8,
        };
        let (lac, id) = self.serving_cell();
        let cell = CellId4g::new(lac, id);
        let (cells2, cells4, mut aps) = (
            self.cells_2g(),
            self.cells_4g(),
            [WifiAp::new([0; 6], 0); 8],
        );
        let count = self.wifi(&mut aps);
        let body = match kind {
            Kind::AlarmSingleFence | Kind::AlarmMultiFence => AlarmBody::Fence {
                time,
                fix: self.fix(now),
                lbs_length: (self.network.encoded_len() + 12) as u8,
                network: self.network,
                cell,
                status,
                fence_id: (kind == Kind::AlarmMultiFence).then(|| self.rng.int(1, 8) as u8),
            },
            Kind::AlarmLbs => AlarmBody::Lbs {
                network: self.network,
                cell,
                status,
            },
            _ => AlarmBody::Wifi {
                time,
                network: self.network,
                cells: if self.four_g {
                    Cells::G4(&cells4[..3])
                } else {
                    Cells::G2(&cells2[..3])
                },
                timing_advance: self.rng.int(0, 63) as u8,
                aps: &aps[..count],
                alarm_code: code,
                language: self.language as u8,
            },
        };
        let source = match kind {
            Kind::AlarmSingleFence => AlarmSource::SingleFence,
            Kind::AlarmMultiFence => AlarmSource::MultiFence,
            Kind::AlarmLbs => AlarmSource::Lbs,
            _ => AlarmSource::Wifi,
        };
        encode(&Message::Alarm(Alarm { source, body }), serial, out);
    }
}

/// The iBeacon UUID all the site's beacons share (a common vendor default).
const SITE_UUID: [u8; 16] = [
    0xFD, 0xA5, 0x06, 0x93, 0xA4, 0xE2, 0x4F, 0xB1, 0xAF, 0xCF, 0xC6, 0xEB, 0x07, 0x64, 0x78, 0x25,
];

fn mac_of(site: u64, i: u64, oui: u8) -> [u8; 6] {
    let v = Rng::new(site ^ i.wrapping_mul(0x9E37_79B9))
        .next_u64()
        .to_be_bytes();
    [oui, v[0], v[1], v[2], v[3], v[4]]
}

fn bcd20(v: u128) -> [u8; 10] {
    let mut out = [0u8; 10];
    let mut v = v;
    for b in out.iter_mut().rev() {
        let lo = (v % 10) as u8;
        v /= 10;
        let hi = (v % 10) as u8;
        v /= 10;
        *b = (hi << 4) | lo;
    }
    out
}

fn time_bytes(t: DeviceTime) -> [u8; 6] {
    [t.year, t.month, t.day, t.hour, t.minute, t.second]
}

fn encode(m: &Message<'_>, serial: u16, out: &mut BytesMut) {
    // Every message built here is far below the 64 KiB a frame can hold.
    m.encode(serial, out).expect("badge frames fit a frame");
}

/// The protocol number of a frame `encode` just wrote.
fn frame_protocol(frame: &[u8]) -> u8 {
    if frame[0] == 0x78 {
        frame[3]
    } else {
        frame[4]
    }
}

/// What the device loop should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send(Kind),
    /// Close the connection cleanly and log in again on a new one.
    Reconnect,
}

/// Rates and times shared by every badge of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub profile: Profile,
    pub heartbeat: Duration,
    /// When traffic stops.
    pub end: Instant,
    /// The whole run's traffic time, for placing clock-in and clock-out.
    pub duration: Duration,
    /// Mean seconds between one badge's reconnects (reconnect-storm).
    pub reconnect_mean_secs: f64,
    /// Realistic: frames per second per badge, heartbeats included.
    pub rate: f64,
}

impl Plan {
    /// Realistic: frames per second between the heartbeats, so that the
    /// total is `rate` (0 when the heartbeats alone make it).
    fn realistic_other_rate(&self) -> f64 {
        (self.rate - 1.0 / self.heartbeat.as_secs_f64()).max(0.0)
    }
}
/// The reconnect-storm's light traffic: one report every few seconds.
const STORM_OTHER_RATE: f64 = 0.2;

/// When each of a badge's messages is due.
#[derive(Debug, Clone)]
pub struct Planner {
    plan: Plan,
    /// Sent as soon as possible, in order (the burst after a login).
    queue: VecDeque<Kind>,
    next_heartbeat: Option<Instant>,
    next_other: Option<Instant>,
    clock_in: Option<Instant>,
    clock_out: Option<Instant>,
    next_reconnect: Option<Instant>,
    /// Burst: a silent frame after every few that need a reply.
    since_silent: u32,
}

impl Planner {
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            queue: VecDeque::new(),
            next_heartbeat: None,
            next_other: None,
            clock_in: None,
            clock_out: None,
            next_reconnect: None,
            since_silent: 0,
        }
    }

    pub fn profile(&self) -> Profile {
        self.plan.profile
    }

    /// Called after every successful login; `first` for the first one of the run.
    pub fn on_login(&mut self, badge: &mut Badge, now: Instant, first: bool) {
        let rng = &mut badge.rng;
        let hb = self.plan.heartbeat.as_secs_f64();
        self.queue.clear();
        match self.plan.profile {
            Profile::Realistic => {
                // What badges do after logging in: set the clock, report the SIM.
                self.queue.push_back(if rng.chance(0.5) {
                    Kind::TimeSync
                } else {
                    Kind::TimeSync2
                });
                self.queue.push_back(Kind::GeneralInfo);
                self.next_heartbeat = Some(now + secs(rng.range(0.0, hb)));
                let other = self.plan.realistic_other_rate();
                self.next_other = (other > 0.0).then(|| now + secs(rng.exp(1.0 / other)));
                if first {
                    // Clock in near the start and out near the end, within
                    // the first and last twentieth of the run.
                    let window = (self.plan.duration.as_secs_f64() / 20.0).max(0.5);
                    self.clock_in = Some(now + secs(rng.range(0.2, 0.2 + window)));
                    let out = self
                        .plan
                        .end
                        .checked_sub(secs(rng.range(0.3, 0.3 + window)));
                    self.clock_out = out.filter(|t| *t > now + secs(0.2 + window));
                }
            }
            Profile::Burst => {}
            Profile::ReconnectStorm => {
                self.queue.push_back(Kind::Heartbeat);
                self.next_heartbeat = Some(now + secs(hb * rng.range(0.8, 1.2)));
                self.next_other = Some(now + secs(rng.exp(1.0 / STORM_OTHER_RATE)));
                if self.plan.reconnect_mean_secs > 0.0 {
                    self.next_reconnect = Some(now + secs(rng.exp(self.plan.reconnect_mean_secs)));
                }
            }
        }
    }

    /// The next time something is due (realistic, reconnect-storm), or
    /// `None` when nothing is scheduled. Burst frames are sent on demand.
    pub fn next_due(&self) -> Option<Instant> {
        if !self.queue.is_empty() {
            return Some(Instant::now());
        }
        [
            self.next_heartbeat,
            self.next_other,
            self.clock_in,
            self.clock_out,
            self.next_reconnect,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The action due at `now`, if any.
    pub fn due(&mut self, badge: &mut Badge, now: Instant) -> Option<Action> {
        if let Some(k) = self.queue.pop_front() {
            return Some(Action::Send(k));
        }
        let rng = &mut badge.rng;
        if take_if_due(&mut self.next_reconnect, now) {
            return Some(Action::Reconnect);
        }
        if take_if_due(&mut self.clock_in, now) {
            return Some(Action::Send(Kind::ClockIn));
        }
        if take_if_due(&mut self.clock_out, now) {
            return Some(Action::Send(Kind::ClockOut));
        }
        if take_if_due(&mut self.next_heartbeat, now) {
            let hb = self.plan.heartbeat.as_secs_f64();
            self.next_heartbeat = Some(now + secs(hb * rng.range(0.8, 1.2)));
            let kind = if rng.chance(0.15) {
                Kind::HeartbeatExt
            } else {
                Kind::Heartbeat
            };
            return Some(Action::Send(kind));
        }
        if take_if_due(&mut self.next_other, now) {
            let (rate, mix) = match self.plan.profile {
                Profile::ReconnectStorm => (STORM_OTHER_RATE, STORM_MIX),
                _ => (self.plan.realistic_other_rate(), REALISTIC_MIX),
            };
            self.next_other = Some(now + secs(rng.exp(1.0 / rate)));
            return Some(Action::Send(pick(rng, mix)));
        }
        None
    }

    /// The burst profile's next frame: one that needs no reply after every
    /// four that do.
    pub fn burst_next(&mut self, badge: &mut Badge) -> Kind {
        if self.since_silent >= 4 {
            self.since_silent = 0;
            return pick(&mut badge.rng, BURST_SILENT_MIX);
        }
        self.since_silent += 1;
        pick(&mut badge.rng, BURST_REPLY_MIX)
    }
}

fn take_if_due(slot: &mut Option<Instant>, now: Instant) -> bool {
    match *slot {
        Some(t) if t <= now => {
            *slot = None;
            true
        }
        _ => false,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::check;
    use badge_ingest::protocol::{FrameConfig, FrameDecoder, Reply};

    const NOW_UNIX: i64 = 1_750_000_000;

    /// The server's side of every frame a badge builds: it decodes with the
    /// library, the library's reply logic answers it, and our expectation
    /// accepts that answer (or, for messages without a reply, expects none).
    #[test]
    fn every_kind_decodes_and_its_expectation_matches_the_library_reply() {
        let now = Instant::now();
        let imei = Imei::with_check_digit(35_341_900_000_001).unwrap();
        for seed in 0..20u64 {
            let mut badge = Badge::new(seed, seed, imei, now);
            for kind in Kind::ALL {
                let mut out = BytesMut::new();
                let serial = 100 + seed as u16;
                let sent = badge.build(kind, serial, now, NOW_UNIX, &mut out);
                let mut dec = FrameDecoder::new(FrameConfig {
                    max_frame_len: 70_000,
                    accept_bad_crc: false,
                });
                let mut pos = 0;
                let frame = dec
                    .next_frame(&out, &mut pos)
                    .unwrap_or_else(|| panic!("{kind:?}: no frame"));
                assert_eq!(pos, out.len(), "{kind:?}");
                assert_eq!(frame.protocol, sent.protocol);
                let message = Message::decode(&frame).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
                assert!(!matches!(message, Message::Unknown { .. }), "{kind:?}");
                let reply = match &message {
                    Message::AddressRequest(r) => Some(Reply::address(r, "")),
                    m => Reply::immediate(m, NOW_UNIX),
                };
                match (reply, sent.expect) {
                    (None, None) => {}
                    (Some(reply), Some(expected)) => {
                        let mut bytes = BytesMut::new();
                        reply.encode(serial, &mut bytes).unwrap();
                        let mut pos = 0;
                        let rf = dec.next_frame(&bytes, &mut pos).unwrap();
                        assert_eq!(check(&expected, serial, &rf, NOW_UNIX), Ok(()), "{kind:?}");
                    }
                    (r, e) => panic!("{kind:?}: library replies {r:?}, we expect {e:?}"),
                }
                if kind == Kind::ManyBeacons {
                    assert_eq!(&out[..2], &[0x79, 0x79], "many beacons need a long frame");
                }
                if let Message::BluetoothLocation(l) = message {
                    assert_eq!(sent.bluetooth_rows as usize, l.beacons.len().max(1));
                }
            }
        }
    }

    /// A badge's clock shows local time in the zone its login gives (the
    /// server decodes it so), wherever in the world it lives.
    #[test]
    fn device_times_are_local_to_the_zone_of_the_login() {
        let now = Instant::now();
        let mut zones = std::collections::BTreeSet::new();
        for seed in 0..200u64 {
            let imei = Imei::with_check_digit(35_341_900_001_000 + seed).unwrap();
            let mut badge = Badge::new(seed, seed, imei, now);
            let mut out = BytesMut::new();
            badge.login(1, &mut out);
            for kind in Kind::ALL {
                badge.build(kind, 2, now, NOW_UNIX, &mut out);
            }
            let mut dec = FrameDecoder::new(FrameConfig {
                max_frame_len: 70_000,
                accept_bad_crc: false,
            });
            let messages: Vec<Vec<u8>> = dec.frames(&out).map(|f| f.raw.to_vec()).collect();
            let mut zone = None;
            let mut fixes = 0;
            for raw in &messages {
                let mut pos = 0;
                let f = dec.next_frame(raw, &mut pos).unwrap();
                match Message::decode(&f).unwrap() {
                    Message::Login(l) => {
                        zone = l.tz_language.map(|t| i32::from(t.offset_minutes()))
                    }
                    Message::Gps(g) => {
                        let zone = zone.expect("the login comes first");
                        assert_eq!(
                            g.time.to_unix(zone),
                            Some(NOW_UNIX),
                            "seed {seed}, UTC{zone:+} min"
                        );
                        fixes += 1;
                    }
                    _ => {}
                }
            }
            assert!(fixes > 0, "seed {seed}: no GPS frame");
            zones.insert(zone);
        }
        assert!(
            zones.len() > 3,
            "the badges live in several zones: {zones:?}"
        );
    }

    #[test]
    fn login_and_command_reply_decode() {
        let now = Instant::now();
        let imei = Imei::with_check_digit(35_341_900_000_002).unwrap();
        let mut badge = Badge::new(1, 2, imei, now);
        let mut out = BytesMut::new();
        badge.login(1, &mut out);
        badge.command_reply(0xDEAD_BEEF, 1, 2, &mut out);
        let mut dec = FrameDecoder::default();
        let frames: Vec<_> = dec
            .frames(&out)
            .map(|f| Message::decode(&f).unwrap().protocol())
            .collect();
        assert_eq!(frames, vec![n::LOGIN, n::ONLINE_COMMAND_REPLY]);
        let mut pos = 0;
        let f = dec.next_frame(&out, &mut pos).unwrap();
        let Message::Login(l) = Message::decode(&f).unwrap() else {
            panic!()
        };
        assert_eq!(l.imei, imei);
        assert!(l.imei.luhn_valid());
    }

    #[test]
    fn walkers_stay_near_home_and_cover_both_hemispheres() {
        let t0 = Instant::now();
        let mut hemispheres = [false; 4];
        for seed in 0..200u64 {
            let mut rng = Rng::new(seed);
            let mut w = Walker::new(&mut rng, t0);
            for s in 1..=600u64 {
                w.step(&mut rng, t0 + Duration::from_secs(s * 10));
            }
            let (dn, de) = w.offset_from_home();
            assert!(
                (dn * dn + de * de).sqrt() < ROAM_M + 100.0,
                "seed {seed} walked off"
            );
            hemispheres[usize::from(w.home.0 < 0.0) * 2 + usize::from(w.home.1 < 0.0)] = true;
        }
        assert_eq!(hemispheres, [true; 4]);
    }

    /// Frames per second one realistic badge sends over an hour, and their kinds.
    fn realistic_rate(rate: f64, heartbeat_secs: u64) -> (f64, std::collections::HashSet<Kind>) {
        let t0 = Instant::now();
        let duration = Duration::from_secs(3600);
        let plan = Plan {
            profile: Profile::Realistic,
            heartbeat: Duration::from_secs(heartbeat_secs),
            end: t0 + duration,
            duration,
            reconnect_mean_secs: 0.0,
            rate,
        };
        let imei = Imei::with_check_digit(35_341_900_000_003).unwrap();
        let mut badge = Badge::new(7, 3, imei, t0);
        let mut planner = Planner::new(plan);
        planner.on_login(&mut badge, t0, true);
        let mut frames = 0;
        let mut kinds = std::collections::HashSet::new();
        let mut now = t0;
        while let Some(due) = planner.next_due() {
            let at = due.max(now);
            if at >= plan.end {
                break;
            }
            now = at;
            if let Some(Action::Send(k)) = planner.due(&mut badge, now) {
                frames += 1;
                kinds.insert(k);
            }
        }
        (f64::from(frames) / duration.as_secs_f64(), kinds)
    }

    #[test]
    fn realistic_rate_is_about_one_frame_per_second() {
        let (rate, kinds) = realistic_rate(1.0, 30);
        assert!((0.9..1.1).contains(&rate), "{rate} frames/s");
        assert!(kinds.contains(&Kind::ClockIn) && kinds.contains(&Kind::ClockOut));
        assert!(kinds.contains(&Kind::Heartbeat) && kinds.contains(&Kind::ManyBeacons));
    }

    #[test]
    fn realistic_rate_follows_the_rate_whatever_the_heartbeat() {
        let (rate, _) = realistic_rate(1.0, 10);
        assert!((0.9..1.1).contains(&rate), "{rate} frames/s");
        let (rate, _) = realistic_rate(3.0, 30);
        assert!((2.8..3.2).contains(&rate), "{rate} frames/s");
        // Below one heartbeat per interval: heartbeats (and clocking) only.
        let (rate, kinds) = realistic_rate(0.01, 10);
        assert!((0.08..0.12).contains(&rate), "{rate} frames/s");
        assert!(!kinds.contains(&Kind::Gps) && !kinds.contains(&Kind::Beacons));
    }
}
