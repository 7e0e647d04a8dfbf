//! Fixed on-wire blocks shared by several messages, as `zerocopy` structs that
//! are read in place from the frame, plus the small owned values built from them.
//!
//! Every multi-byte integer on the wire is big-endian.

use std::fmt;

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The wire's 6-byte local datetime: YY MM DD HH MM SS, year counted from 2000.
///
/// Badges send their local time without a zone; the reference server assumes
/// UTC+8. [`DeviceTime::to_unix`] takes the offset, so the caller decides.
#[derive(
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
)]
#[repr(C)]
pub struct DeviceTime {
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DeviceTime {
    pub const fn new(year: u8, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Self {
        Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    /// Seconds since the Unix epoch, reading this as local time at
    /// `offset_minutes` east of UTC. `None` for an impossible date (month 13,
    /// 31 February, hour 24, ...), which devices do send before their first fix.
    pub fn to_unix(&self, offset_minutes: i32) -> Option<i64> {
        let year = 2000 + i64::from(self.year);
        let (m, d) = (u32::from(self.month), u32::from(self.day));
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(year, m) {
            return None;
        }
        if self.hour > 23 || self.minute > 59 || self.second > 59 {
            return None;
        }
        let days = days_from_civil(year, m, d);
        let local = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        Some(local - i64::from(offset_minutes) * 60)
    }

    /// The local time at `offset_minutes` east of UTC for a Unix time, as the
    /// wire carries it. Years outside 2000–2255 are clamped to that range.
    pub fn from_unix(unix: i64, offset_minutes: i32) -> Self {
        let local = unix + i64::from(offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let year = (y - 2000).clamp(0, 255) as u8;
        Self::new(
            year,
            m as u8,
            d as u8,
            (secs / 3600) as u8,
            (secs / 60 % 60) as u8,
            (secs % 60) as u8,
        )
    }
}

impl fmt::Debug for DeviceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "20{:02}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day) of a day count
/// since 1970-01-01. Also dates the live events (`events::json`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The 12-byte GPS block: info(1) + latitude(4) + longitude(4) + speed(1) +
/// course/status(2).
///
/// Latitude and longitude are in units of 1/1 800 000 degree (minutes × 30 000).
/// Course/status bits, as real devices send them and the reference reads them:
/// bit 13 real-time, bit 12 positioned, bit 11 set = West, bit 10 set = North,
/// bits 9–0 course in degrees. (The reference's comment on bit 11 says the
/// opposite of its code; the code matches the devices and the GT06 manual.)
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Hash,
)]
#[repr(C)]
pub struct GpsFix {
    /// High nibble: length of the GPS block (12); low nibble: satellites in use.
    pub info: u8,
    pub latitude_raw: U32,
    pub longitude_raw: U32,
    /// km/h
    pub speed: u8,
    pub course_status: U16,
}

/// Coordinates outside the globe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpossiblePosition;

const REALTIME: u16 = 0x2000;
const POSITIONED: u16 = 0x1000;
const WEST: u16 = 0x0800;
const NORTH: u16 = 0x0400;
const COURSE: u16 = 0x03FF;
const UNITS_PER_DEGREE: f64 = 1_800_000.0;

impl GpsFix {
    /// Builds a block from degrees (negative = South / West). Coordinates are
    /// rounded to the wire's resolution (about 6 cm).
    pub fn new(
        latitude: f64,
        longitude: f64,
        speed_kmh: u8,
        course: u16,
        satellites: u8,
        positioned: bool,
        realtime: bool,
    ) -> Self {
        let mut status = course.min(COURSE);
        if positioned {
            status |= POSITIONED;
        }
        if realtime {
            status |= REALTIME;
        }
        if latitude.is_sign_positive() {
            status |= NORTH;
        }
        if longitude.is_sign_negative() {
            status |= WEST;
        }
        Self {
            info: 0xC0 | (satellites & 0x0F),
            latitude_raw: U32::new((latitude.abs() * UNITS_PER_DEGREE).round() as u32),
            longitude_raw: U32::new((longitude.abs() * UNITS_PER_DEGREE).round() as u32),
            speed: speed_kmh,
            course_status: U16::new(status),
        }
    }

    pub fn satellites(&self) -> u8 {
        self.info & 0x0F
    }

    /// Degrees, negative in the southern hemisphere.
    pub fn latitude(&self) -> f64 {
        let v = f64::from(self.latitude_raw.get()) / UNITS_PER_DEGREE;
        if self.course_status.get() & NORTH != 0 {
            v
        } else {
            -v
        }
    }

    /// Degrees, negative in the western hemisphere.
    pub fn longitude(&self) -> f64 {
        let v = f64::from(self.longitude_raw.get()) / UNITS_PER_DEGREE;
        if self.course_status.get() & WEST != 0 {
            -v
        } else {
            v
        }
    }

    pub fn speed_kmh(&self) -> u8 {
        self.speed
    }

    pub fn course(&self) -> u16 {
        self.course_status.get() & COURSE
    }

    pub fn positioned(&self) -> bool {
        self.course_status.get() & POSITIONED != 0
    }

    /// Where the block says the badge is: `None` for the zeros of a badge
    /// without a fix, `Err` for coordinates no place has (a latitude past
    /// 90 degrees, as a variant layout read as this one gives).
    pub fn coordinates(&self) -> Option<Result<(f64, f64), ImpossiblePosition>> {
        if self.latitude_raw.get() == 0 && self.longitude_raw.get() == 0 {
            return None;
        }
        let (lat, lon) = (self.latitude(), self.longitude());
        Some(if lat.abs() <= 90.0 && lon.abs() <= 180.0 {
            Ok((lat, lon))
        } else {
            Err(ImpossiblePosition)
        })
    }

    pub fn realtime(&self) -> bool {
        self.course_status.get() & REALTIME != 0
    }
}

impl fmt::Debug for GpsFix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpsFix")
            .field("latitude", &self.latitude())
            .field("longitude", &self.longitude())
            .field("speed_kmh", &self.speed)
            .field("course", &self.course())
            .field("satellites", &self.satellites())
            .field("positioned", &self.positioned())
            .field("realtime", &self.realtime())
            .finish()
    }
}

/// MCC + MNC. On the wire the MCC's high bit marks a two-byte MNC, which is
/// how a three-digit MNC such as "001" is told apart from "01".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MobileNetwork {
    pub mcc: u16,
    pub mnc: u16,
    pub wide_mnc: bool,
}

impl MobileNetwork {
    /// A network whose MNC width follows its value.
    pub fn new(mcc: u16, mnc: u16) -> Self {
        Self {
            mcc: mcc & 0x7FFF,
            mnc,
            wide_mnc: mnc > 0xFF,
        }
    }

    pub fn encoded_len(&self) -> usize {
        if self.wide_mnc {
            4
        } else {
            3
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        if self.wide_mnc {
            out.put_u16(self.mcc | 0x8000);
            out.put_u16(self.mnc);
        } else {
            out.put_u16(self.mcc & 0x7FFF);
            out.put_u8(self.mnc as u8);
        }
    }
}

/// A 2G (GSM) station: LAC(2) + cell id(3) + RSSI(1).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct Cell2g {
    pub lac: U16,
    pub cell_id: [u8; 3],
    pub rssi: u8,
}

impl Cell2g {
    pub fn new(lac: u16, cell_id: u32, rssi: u8) -> Self {
        let b = cell_id.to_be_bytes();
        Self {
            lac: U16::new(lac),
            cell_id: [b[1], b[2], b[3]],
            rssi,
        }
    }

    pub fn tower(&self) -> CellTower {
        let [a, b, c] = self.cell_id;
        CellTower {
            lac: u32::from(self.lac.get()),
            cell_id: u64::from(u32::from_be_bytes([0, a, b, c])),
            rssi: self.rssi,
        }
    }
}

/// A 4G (LTE) station: LAC(4) + cell id(8) + RSSI(1).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct Cell4g {
    pub lac: U32,
    pub cell_id: U64,
    pub rssi: u8,
}

impl Cell4g {
    pub fn new(lac: u32, cell_id: u64, rssi: u8) -> Self {
        Self {
            lac: U32::new(lac),
            cell_id: U64::new(cell_id),
            rssi,
        }
    }

    pub fn tower(&self) -> CellTower {
        CellTower {
            lac: self.lac.get(),
            cell_id: self.cell_id.get(),
            rssi: self.rssi,
        }
    }
}

/// A 4G cell without signal strength, as the alarm messages carry it: LAC(4) + cell id(8).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct CellId4g {
    pub lac: U32,
    pub cell_id: U64,
}

impl CellId4g {
    pub fn new(lac: u32, cell_id: u64) -> Self {
        Self {
            lac: U32::new(lac),
            cell_id: U64::new(cell_id),
        }
    }

    pub fn tower(&self) -> CellTower {
        CellTower {
            lac: self.lac.get(),
            cell_id: self.cell_id.get(),
            rssi: 0,
        }
    }
}

/// One cell tower, whatever its generation on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CellTower {
    pub lac: u32,
    pub cell_id: u64,
    pub rssi: u8,
}

impl CellTower {
    /// Neighbour slots a device has nothing for are sent as zeros.
    pub fn is_empty(&self) -> bool {
        self.lac == 0 && self.cell_id == 0
    }
}

/// Which station layout a message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// LAC(2) + cell id(3)
    G2,
    /// LAC(4) + cell id(8)
    G4,
}

/// A run of stations, main cell first, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells<'a> {
    G2(&'a [Cell2g]),
    G4(&'a [Cell4g]),
}

impl<'a> Cells<'a> {
    pub fn generation(&self) -> Generation {
        match self {
            Cells::G2(_) => Generation::G2,
            Cells::G4(_) => Generation::G4,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Cells::G2(c) => c.len(),
            Cells::G4(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<CellTower> {
        match self {
            Cells::G2(c) => c.get(i).map(Cell2g::tower),
            Cells::G4(c) => c.get(i).map(Cell4g::tower),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = CellTower> + 'a {
        let cells = *self;
        (0..cells.len()).filter_map(move |i| cells.get(i))
    }

    /// The serving cell.
    pub fn main(&self) -> Option<CellTower> {
        self.get(0)
    }

    /// The neighbour cells the device actually filled in (it zero-fills unused slots).
    pub fn neighbours(&self) -> impl Iterator<Item = CellTower> + 'a {
        self.iter().skip(1).filter(|c| !c.is_empty())
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Cells::G2(c) => c.as_bytes(),
            Cells::G4(c) => c.as_bytes(),
        }
    }

    /// Size of one station of `generation` on the wire.
    pub fn station_len(generation: Generation) -> usize {
        match generation {
            Generation::G2 => size_of::<Cell2g>(),
            Generation::G4 => size_of::<Cell4g>(),
        }
    }
}

/// A six-byte Bluetooth or WiFi MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The address as an integer, which is how ClickHouse stores it compactly.
    pub fn to_u64(self) -> u64 {
        let [a, b, c, d, e, f] = self.0;
        u64::from_be_bytes([0, 0, a, b, c, d, e, f])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A WiFi access point: MAC(6) + signal(1).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct WifiAp {
    pub mac: [u8; 6],
    pub rssi: u8,
}

impl WifiAp {
    pub fn new(mac: [u8; 6], rssi: u8) -> Self {
        Self { mac, rssi }
    }

    pub fn mac(&self) -> MacAddr {
        MacAddr(self.mac)
    }
}

/// One iBeacon seen by the badge, as a 0xB3 report carries it (30 bytes):
/// RSSI(1, signed) + MAC(6) + UUID(16) + major(2) + minor(2) + battery(2) + unit(1).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct BeaconSighting {
    pub rssi: i8,
    pub mac: [u8; 6],
    pub uuid: [u8; 16],
    pub major: U16,
    pub minor: U16,
    pub battery_raw: U16,
    /// 0: battery in units of 0.01 V; anything else: battery in percent.
    pub battery_unit: u8,
}

impl BeaconSighting {
    pub fn new(
        rssi: i8,
        mac: [u8; 6],
        uuid: [u8; 16],
        major: u16,
        minor: u16,
        battery: BeaconBattery,
    ) -> Self {
        let (raw, unit) = match battery {
            BeaconBattery::Centivolts(v) => (v, 0),
            BeaconBattery::Percent(p) => (p, 1),
        };
        Self {
            rssi,
            mac,
            uuid,
            major: U16::new(major),
            minor: U16::new(minor),
            battery_raw: U16::new(raw),
            battery_unit: unit,
        }
    }

    pub fn mac(&self) -> MacAddr {
        MacAddr(self.mac)
    }

    pub fn battery(&self) -> BeaconBattery {
        if self.battery_unit == 0 {
            BeaconBattery::Centivolts(self.battery_raw.get())
        } else {
            BeaconBattery::Percent(self.battery_raw.get())
        }
    }
}

/// A beacon's battery reading, in the unit the beacon reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BeaconBattery {
    /// Hundredths of a volt.
    Centivolts(u16),
    Percent(u16),
}

impl BeaconBattery {
    /// Volts or percent, as a number.
    pub fn value(&self) -> f64 {
        match *self {
            BeaconBattery::Centivolts(v) => f64::from(v) / 100.0,
            BeaconBattery::Percent(p) => f64::from(p),
        }
    }
}

/// Formats a 16-byte UUID the way the reference stores it: upper-case 8-4-4-4-12.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The terminal information byte of heartbeats, alarms and attendance.
///
/// Bit 7: power disconnected; bit 6: GPS positioned; bits 5–2: for attendance
/// the clock status (0b0001 in, 0b0010 out); bit 1: armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TerminalInfo(pub u8);

impl TerminalInfo {
    pub fn power_disconnected(self) -> bool {
        self.0 & 0x80 != 0
    }

    pub fn gps_positioned(self) -> bool {
        self.0 & 0x40 != 0
    }

    pub fn charging(self) -> bool {
        self.0 & 0x08 != 0
    }

    /// Clock-out when bits 5–2 read 0b0010; anything else counts as clock-in,
    /// as in the reference server.
    pub fn attendance_kind(self) -> AttendanceKind {
        if (self.0 >> 2) & 0x0F == 0b0010 {
            AttendanceKind::ClockOut
        } else {
            AttendanceKind::ClockIn
        }
    }

    /// The byte a badge sends for a clock-in or clock-out.
    pub fn for_attendance(kind: AttendanceKind) -> Self {
        match kind {
            AttendanceKind::ClockIn => TerminalInfo(0b0001 << 2),
            AttendanceKind::ClockOut => TerminalInfo(0b0010 << 2),
        }
    }
}

/// Clock-in or clock-out. The discriminant is the punch type the reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AttendanceKind {
    ClockIn = 1,
    ClockOut = 2,
}

/// Maps the 0–6 voltage level of alarms and attendance to a rough percentage,
/// as the reference does (level × 17, at most 100). Other values are unknown.
pub fn voltage_level_percent(level: u8) -> Option<u8> {
    (level <= 6).then(|| (level * 17).min(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_time_round_trips_through_unix_time() {
        let t = DeviceTime::new(24, 2, 29, 23, 59, 58);
        let unix = t.to_unix(8 * 60).unwrap();
        // 2024-02-29T23:59:58+08:00 = 2024-02-29T15:59:58Z
        assert_eq!(unix, 1_709_222_398);
        assert_eq!(DeviceTime::from_unix(unix, 8 * 60), t);
        assert_eq!(
            DeviceTime::from_unix(unix, 0),
            DeviceTime::new(24, 2, 29, 15, 59, 58)
        );
    }

    #[test]
    fn impossible_device_times_are_rejected() {
        for t in [
            DeviceTime::new(23, 2, 29, 0, 0, 0),
            DeviceTime::new(24, 13, 1, 0, 0, 0),
            DeviceTime::new(24, 0, 1, 0, 0, 0),
            DeviceTime::new(24, 4, 31, 0, 0, 0),
            DeviceTime::new(24, 4, 1, 24, 0, 0),
            DeviceTime::default(),
        ] {
            assert_eq!(t.to_unix(0), None, "{t:?}");
        }
    }

    #[test]
    fn gps_hemispheres_follow_the_course_status_bits() {
        // 22.5° N, 113.9° E: Shenzhen.
        let f = GpsFix::new(22.5, 113.9, 40, 270, 9, true, true);
        assert_eq!(
            f.as_bytes(),
            &[0xC9, 0x02, 0x69, 0xFB, 0x20, 0x0C, 0x38, 0x5B, 0x60, 40, 0x35, 0x0E]
        );
        assert_eq!((f.latitude(), f.longitude()), (22.5, 113.9));
        // 33.9° S, 151.2° E: Sydney; 40.7° N, 74.0° W: New York; 34.6° S, 58.4° W: Buenos Aires.
        for (lat, lon) in [(-33.9, 151.2), (40.7, -74.0), (-34.6, -58.4)] {
            let f = GpsFix::new(lat, lon, 0, 0, 0, true, false);
            assert!((f.latitude() - lat).abs() < 1e-6 && (f.longitude() - lon).abs() < 1e-6);
        }
        let sydney = GpsFix::new(-33.9, 151.2, 0, 0, 0, true, false);
        assert_eq!(sydney.course_status.get() & (NORTH | WEST), 0);
    }

    #[test]
    fn voltage_levels_map_like_the_reference() {
        assert_eq!(voltage_level_percent(0), Some(0));
        assert_eq!(voltage_level_percent(5), Some(85));
        assert_eq!(voltage_level_percent(6), Some(100));
        assert_eq!(voltage_level_percent(7), None);
    }

    #[test]
    fn clock_status_bits() {
        assert_eq!(
            TerminalInfo(0x08).attendance_kind(),
            AttendanceKind::ClockOut
        );
        assert_eq!(
            TerminalInfo(0x04).attendance_kind(),
            AttendanceKind::ClockIn
        );
        assert_eq!(
            TerminalInfo(0x00).attendance_kind(),
            AttendanceKind::ClockIn
        );
        assert_eq!(
            TerminalInfo(0x4A).attendance_kind(),
            AttendanceKind::ClockOut
        );
    }

    #[test]
    fn uuid_and_mac_formatting() {
        let uuid = [
            0xFD, 0xA5, 0x06, 0x93, 0xA4, 0xE2, 0x4F, 0xB1, 0xAF, 0xCF, 0xC6, 0xEB, 0x07, 0x64,
            0x78, 0x25,
        ];
        assert_eq!(format_uuid(&uuid), "FDA50693-A4E2-4FB1-AFCF-C6EB07647825");
        assert_eq!(
            MacAddr([0xAC, 0x23, 0x3F, 0, 1, 0xFF]).to_string(),
            "AC:23:3F:00:01:FF"
        );
    }
}
