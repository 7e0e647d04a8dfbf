//! Message → rows. One function per message family; field semantics follow
//! the reference server's stored records.

use std::fmt::Write as _;

use crate::protocol::layout::{
    BeaconBattery, Cells, DeviceTime, Generation, GpsFix, ImpossiblePosition, MobileNetwork, WifiAp,
};
use crate::protocol::message::{
    alarm_label, AddressRequest, Alarm, Attendance, BluetoothLocation, BluetoothPunch,
    CommandReply, GeneralInfo, GpsReport, Heartbeat, LbsReport, Login, Message, WifiReport,
};
use crate::protocol::number as n;
use crate::protocol::{Frame, Imei};

use super::enums::*;
use super::*;

/// Badges that replay stored data may send old timestamps; anything older
/// than this, or more than `protocol.max_future_minutes` ahead of the
/// server, is not trusted. A
/// year: what a badge can hold offline, and it keeps the rows of one
/// insert within 14 monthly partitions (ClickHouse refuses an insert that
/// spans more than 100, and one badge with a bad clock must not cause it).
const MAX_DEVICE_TIME_AGE_SECS: i64 = 366 * 86_400;

/// What a record needs besides the message.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext {
    pub imei: Imei,
    /// Unix seconds when the frame was read.
    pub server_time: u32,
    /// The zone this badge's clock is in, minutes east of UTC.
    pub device_offset_minutes: i32,
    /// A device time further ahead of `server_time` is not trusted.
    pub max_future_secs: u32,
    pub serial: u16,
    pub conn_id: u64,
}

/// Builds records and gives each its ingest key.
pub struct Records<'a> {
    pub ctx: RecordContext,
    pub keys: &'a mut IngestKeys,
}

impl Records<'_> {
    /// Device time in UTC, and whether it is trustworthy. When it is not,
    /// the server time stands in, flagged with `device_time_valid = 0`.
    fn device_time(&self, t: Option<DeviceTime>) -> (u32, u8) {
        let server = i64::from(self.ctx.server_time);
        match t.and_then(|t| t.to_unix(self.ctx.device_offset_minutes)) {
            Some(unix)
                if unix <= server + i64::from(self.ctx.max_future_secs)
                    && unix >= server - MAX_DEVICE_TIME_AGE_SECS =>
            {
                (unix as u32, 1)
            }
            _ => (self.ctx.server_time, 0),
        }
    }

    /// The rows for one decoded message, handed to `emit` one by one. Time
    /// syncs produce none: the reference stores nothing for them.
    pub fn message(
        &mut self,
        frame: &Frame<'_>,
        message: &Message<'_>,
        emit: &mut impl FnMut(Record),
    ) {
        match message {
            Message::Login(l) => emit(self.login(l, EVENT_LOGIN, "", "")),
            Message::Heartbeat(h) => emit(self.heartbeat(h)),
            Message::Gps(g) => emit(self.gps(g)),
            Message::Lbs(l) => emit(self.lbs(l)),
            Message::Wifi(w) => emit(self.wifi(w)),
            Message::TimeSync(_) | Message::TimeSync2 => {}
            Message::Alarm(a) => emit(self.alarm(a)),
            Message::AddressRequest(r) => emit(self.address_request(r)),
            Message::Attendance(a) => emit(self.attendance(a)),
            Message::BluetoothPunch(p) => emit(self.punch(p)),
            Message::BluetoothLocation(l) => self.bluetooth_location(l, emit),
            Message::GeneralInfo(g) => emit(self.general_info(g)),
            Message::CommandReply(r) => emit(self.command_reply(r)),
            Message::Unknown { .. } => emit(self.raw_frame(frame)),
        }
    }

    /// A device event: login, reconnect, logout or offline.
    pub fn login(&mut self, login: &Login, event: i8, peer: &str, reason: &str) -> Record {
        self.device_event(Some(login), event, peer, reason)
    }

    /// A logout or offline event, which has no login packet behind it.
    pub fn disconnect(&mut self, event: i8, peer: &str, reason: &str) -> Record {
        self.device_event(None, event, peer, reason)
    }

    /// The login fields are zero for events without a login packet.
    fn device_event(
        &mut self,
        login: Option<&Login>,
        event: i8,
        peer: &str,
        reason: &str,
    ) -> Record {
        let tz = login.and_then(|l| l.tz_language);
        Record::DeviceEvents(DeviceEventRow {
            imei: self.ctx.imei.as_u64(),
            server_time: self.ctx.server_time,
            event,
            protocol: if login.is_some() { n::LOGIN } else { 0 },
            serial: if login.is_some() { self.ctx.serial } else { 0 },
            device_type: login.and_then(|l| l.type_code).unwrap_or(0),
            tz_offset_min: tz.map_or(0, |t| t.offset_minutes()),
            language: tz.map_or(0, |t| t.language()),
            conn_id: self.ctx.conn_id,
            peer_addr: peer.to_owned(),
            reason: reason.to_owned(),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }

    fn heartbeat(&mut self, h: &Heartbeat<'_>) -> Record {
        Record::Heartbeats(HeartbeatRow {
            imei: self.ctx.imei.as_u64(),
            server_time: self.ctx.server_time,
            protocol: h.protocol(),
            serial: self.ctx.serial,
            terminal_info: h.status.terminal_info,
            battery: h.status.battery,
            gsm_signal: h.status.gsm_signal,
            language: h.language.unwrap_or(0),
            extension: hex(h.extension),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }

    fn location(&mut self, protocol: u8, source: i8, time: Option<DeviceTime>) -> LocationRow {
        let (device_time, device_time_valid) = self.device_time(time);
        LocationRow {
            imei: self.ctx.imei.as_u64(),
            device_time,
            server_time: self.ctx.server_time,
            device_time_valid,
            protocol,
            serial: self.ctx.serial,
            source,
            has_position: 0,
            lat: 0.0,
            lon: 0.0,
            position_source: POSITION_NONE,
            accuracy_m: 0.0,
            speed_kmh: 0,
            course: 0,
            satellites: 0,
            gps_positioned: 0,
            realtime: 0,
            mcc: 0,
            mnc: 0,
            lac: 0,
            cell_id: 0,
            rssi: 0,
            report_mode: 0,
            mileage: 0,
            cells_lac: Vec::new(),
            cells_cell_id: Vec::new(),
            cells_rssi: Vec::new(),
            wifi_mac: Vec::new(),
            wifi_rssi: Vec::new(),
            address: String::new(),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        }
    }

    fn gps(&mut self, g: &GpsReport) -> Record {
        let source = match g.generation {
            Generation::G2 => 1,
            Generation::G4 => 2,
        };
        let mut row = self.location(g.protocol(), source, Some(g.time));
        set_fix(&mut row, &g.fix);
        if let Some(t) = g.tail {
            row.mcc = t.network.mcc;
            row.mnc = t.network.mnc;
            row.lac = t.cell.lac;
            row.cell_id = t.cell.cell_id;
            row.report_mode = t.report_mode;
            row.mileage = t.mileage.unwrap_or(0);
        }
        Record::Locations(row)
    }

    fn lbs(&mut self, l: &LbsReport<'_>) -> Record {
        let source = if l.protocol == n::LBS_4G { 4 } else { 3 };
        let mut row = self.location(l.protocol, source, Some(l.time));
        set_cells(&mut row, l.network, &l.cells);
        Record::Locations(row)
    }

    fn wifi(&mut self, w: &WifiReport<'_>) -> Record {
        let source = if w.protocol() == n::WIFI_4G { 6 } else { 5 };
        let mut row = self.location(w.protocol(), source, Some(w.time));
        set_cells(&mut row, w.network, &w.cells);
        (row.wifi_mac, row.wifi_rssi) = wifi_columns(w.aps);
        Record::Locations(row)
    }

    fn address_request(&mut self, r: &AddressRequest<'_>) -> Record {
        let source = match r.protocol {
            n::LBS_ADDRESS_REQUEST => 7,
            n::ADDRESS_QUERY => 8,
            _ => 9,
        };
        let mut row = self.location(r.protocol, source, Some(r.time));
        if let Some(fix) = r.gps() {
            set_fix(&mut row, &fix);
        }
        if let Some((net, cell)) = r.cell() {
            row.mcc = net.mcc;
            row.mnc = net.mnc;
            row.lac = cell.lac;
            row.cell_id = cell.cell_id;
        }
        Record::Locations(row)
    }

    fn alarm(&mut self, a: &Alarm<'_>) -> Record {
        let (device_time, device_time_valid) = self.device_time(a.time());
        let fix = a.position();
        let coordinates = fix
            .and_then(|f| f.coordinates())
            .or(fix.map(|_| Ok((0.0, 0.0))));
        let at = coordinates.and_then(Result::ok);
        let status = a.status();
        let main = a.main_cell().unwrap_or_default();
        let net = a.network();
        let (cells_lac, cells_cell_id, cells_rssi) = match a.body {
            crate::protocol::message::AlarmBody::Wifi { cells, .. } => neighbour_columns(&cells),
            _ => Default::default(),
        };
        let (wifi_mac, wifi_rssi) = wifi_columns(a.wifi());
        let code = a.alarm_code();
        Record::Alarms(AlarmRow {
            imei: self.ctx.imei.as_u64(),
            device_time,
            server_time: self.ctx.server_time,
            device_time_valid,
            protocol: a.protocol(),
            serial: self.ctx.serial,
            source: match a.source {
                crate::protocol::message::AlarmSource::SingleFence => 1,
                crate::protocol::message::AlarmSource::MultiFence => 2,
                crate::protocol::message::AlarmSource::Lbs => 3,
                crate::protocol::message::AlarmSource::Wifi => 4,
            },
            alarm_code: code,
            alarm_type: alarm_label(code).into_owned(),
            fence_id: a.fence_id().unwrap_or(0),
            has_position: u8::from(at.is_some()),
            lat: at.map_or(0.0, |p| p.0),
            lon: at.map_or(0.0, |p| p.1),
            position_source: position_source(coordinates),
            accuracy_m: 0.0,
            speed_kmh: fix.map_or(0, |f| u16::from(f.speed_kmh())),
            course: fix.map_or(0, |f| f.course()),
            satellites: fix.map_or(0, |f| f.satellites()),
            gps_positioned: u8::from(fix.is_some()),
            terminal_info: status.map_or(0, |s| s.terminal_info),
            voltage_level: status.map_or(0, |s| s.voltage_level),
            battery: a.battery_percent().unwrap_or(0),
            gsm_signal: status.map_or(main.rssi, |s| s.gsm_signal),
            language: match a.body {
                crate::protocol::message::AlarmBody::Wifi { language, .. } => language,
                _ => status.map_or(0, |s| s.language),
            },
            mcc: net.mcc,
            mnc: net.mnc,
            lac: main.lac,
            cell_id: main.cell_id,
            cells_lac,
            cells_cell_id,
            cells_rssi,
            wifi_mac,
            wifi_rssi,
            address: String::new(),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }

    fn attendance(&mut self, a: &Attendance<'_>) -> Record {
        let (device_time, device_time_valid) = self.device_time(Some(a.head.time));
        let fix = a.head.fix;
        let main = a.cells.main().unwrap_or_default();
        let (cells_lac, cells_cell_id, cells_rssi) = neighbour_columns(&a.cells);
        let (wifi_mac, wifi_rssi) = wifi_columns(a.aps);
        let coordinates = fix.coordinates();
        let at = coordinates.and_then(Result::ok);
        Record::Attendance(AttendanceRow {
            imei: self.ctx.imei.as_u64(),
            device_time,
            server_time: self.ctx.server_time,
            device_time_valid,
            tz_offset_min: self.ctx.device_offset_minutes as i16,
            protocol: a.protocol(),
            serial: self.ctx.serial,
            kind: a.kind() as i8,
            gps_positioned: u8::from(a.gps_positioned()),
            has_position: u8::from(at.is_some()),
            lat: at.map_or(0.0, |p| p.0),
            lon: at.map_or(0.0, |p| p.1),
            position_source: position_source(coordinates),
            accuracy_m: 0.0,
            speed_kmh: u16::from(fix.speed_kmh()),
            course: fix.course(),
            satellites: fix.satellites(),
            terminal_info: a.head.terminal_info,
            voltage_level: a.head.voltage_level,
            battery: a.battery_percent().unwrap_or(0),
            gsm_signal: a.head.gsm_signal,
            mcc: a.network.mcc,
            mnc: a.network.mnc,
            lac: main.lac,
            cell_id: main.cell_id,
            rssi: main.rssi,
            cells_lac,
            cells_cell_id,
            cells_rssi,
            wifi_mac,
            wifi_rssi,
            address: String::new(),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }

    fn bluetooth(&mut self, kind: i8, time: DeviceTime, protocol: u8) -> BluetoothRow {
        let (device_time, device_time_valid) = self.device_time(Some(time));
        BluetoothRow {
            imei: self.ctx.imei.as_u64(),
            device_time,
            server_time: self.ctx.server_time,
            device_time_valid,
            tz_offset_min: self.ctx.device_offset_minutes as i16,
            protocol,
            serial: self.ctx.serial,
            kind,
            attendance: 0,
            terminal_info: 0,
            beacon_index: 0,
            beacon_count: 0,
            is_best: 0,
            mac: 0,
            uuid: [0; 16],
            major: 0,
            minor: 0,
            rssi: 0,
            battery: 0.0,
            battery_unit: BATTERY_UNKNOWN,
            beacon_known: 0,
            beacon_name: String::new(),
            beacon_lat: 0.0,
            beacon_lon: 0.0,
            beacon_address: String::new(),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        }
    }

    fn punch(&mut self, p: &BluetoothPunch) -> Record {
        let b = &p.body;
        let mut row = self.bluetooth(BT_PUNCH, b.time, n::BT_PUNCH);
        row.attendance = p.kind() as i8;
        row.terminal_info = b.terminal_info;
        row.beacon_count = 1;
        row.mac = p.mac().to_u64();
        row.uuid = b.uuid;
        row.major = b.major.get();
        row.minor = b.minor.get();
        row.rssi = b.rssi;
        (row.battery, row.battery_unit) = battery_columns(p.battery());
        Record::Bluetooth(row)
    }

    /// One row per beacon, as the reference stores them; a report with no
    /// beacons still leaves one row, so that it is not lost.
    fn bluetooth_location(&mut self, l: &BluetoothLocation<'_>, emit: &mut impl FnMut(Record)) {
        let count = l.beacons.len() as u8;
        if count == 0 {
            let row = self.bluetooth(BT_LOCATION, l.time, n::BT_LOCATION);
            emit(Record::Bluetooth(row));
            return;
        }
        for (i, b) in l.beacons.iter().enumerate() {
            let mut row = self.bluetooth(BT_LOCATION, l.time, n::BT_LOCATION);
            row.beacon_index = i as u8;
            row.beacon_count = count;
            row.mac = b.mac().to_u64();
            row.uuid = b.uuid;
            row.major = b.major.get();
            row.minor = b.minor.get();
            row.rssi = b.rssi;
            (row.battery, row.battery_unit) = battery_columns(b.battery());
            emit(Record::Bluetooth(row));
        }
    }

    /// The location a Bluetooth report gives through its strongest
    /// registered beacon: the beacon's own position and address. Same
    /// device time and serial as the report; no cells, no GPS.
    pub fn beacon_location(
        &mut self,
        report: &BluetoothRow,
        lat: f64,
        lon: f64,
        address: &str,
    ) -> Record {
        let mut row = self.location(report.protocol, LOCATION_BEACON, None);
        row.device_time = report.device_time;
        row.device_time_valid = report.device_time_valid;
        row.has_position = 1;
        row.lat = lat;
        row.lon = lon;
        row.position_source = POSITION_BEACON;
        address.clone_into(&mut row.address);
        Record::Locations(row)
    }

    fn general_info(&mut self, g: &GeneralInfo<'_>) -> Record {
        let payload = match g {
            GeneralInfo::Other { data, .. } => hex(data),
            _ => String::new(),
        };
        Record::DeviceInfo(DeviceInfoRow {
            imei: self.ctx.imei.as_u64(),
            server_time: self.ctx.server_time,
            protocol: n::GENERAL_INFO,
            serial: self.ctx.serial,
            sub_protocol: g.sub_protocol(),
            iccid: g.iccid().map(|i| i.to_string()).unwrap_or_default(),
            imsi: g.imsi().map(|i| i.to_string()).unwrap_or_default(),
            // 255 marks "not in this message" in the schema.
            gps_status: match g {
                GeneralInfo::GpsStatus(s) => *s,
                _ => 255,
            },
            payload,
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }

    /// A command log row with the badge's reply. The command id is the
    /// server flag the badge echoed.
    fn command_reply(&mut self, r: &CommandReply<'_>) -> Record {
        Record::CommandLog(CommandLogRow {
            imei: self.ctx.imei.as_u64(),
            event_time: self.ctx.server_time,
            command_id: u64::from(r.server_flag),
            created_at: self.ctx.server_time,
            kind: COMMAND_ONLINE,
            command_type: String::new(),
            text: String::new(),
            status: STATUS_REPLIED,
            protocol: n::ONLINE_COMMAND_REPLY,
            serial: self.ctx.serial,
            server_flag: r.server_flag,
            reply_text: r.text_lossy().into_owned(),
            error: String::new(),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }

    /// The frame as received: for unknown protocols, for content that did
    /// not decode, and for the optional audit of every frame.
    pub fn raw_frame(&mut self, frame: &Frame<'_>) -> Record {
        Record::RawFrames(RawFrameRow {
            imei: self.ctx.imei.as_u64(),
            server_time: self.ctx.server_time,
            conn_id: self.ctx.conn_id,
            direction: DIRECTION_IN,
            protocol: frame.protocol,
            serial: frame.serial,
            frame: hex(frame.raw),
            crc_ok: u8::from(frame.crc_ok),
            ingest_instance: self.keys.instance,
            ingest_shard: self.keys.shard,
            ingest_seq: self.keys.next_seq(),
        })
    }
}

/// Impossible coordinates are flagged, never stored as a position.
fn position_source(coordinates: Option<Result<(f64, f64), ImpossiblePosition>>) -> i8 {
    match coordinates {
        None => POSITION_NONE,
        Some(Ok(_)) => POSITION_GPS,
        Some(Err(ImpossiblePosition)) => POSITION_INVALID,
    }
}

fn set_fix(row: &mut LocationRow, fix: &GpsFix) {
    let coordinates = fix.coordinates();
    row.position_source = position_source(coordinates);
    if let Some(Ok((lat, lon))) = coordinates {
        row.has_position = 1;
        row.lat = lat;
        row.lon = lon;
    }
    row.speed_kmh = u16::from(fix.speed_kmh());
    row.course = fix.course();
    row.satellites = fix.satellites();
    row.gps_positioned = u8::from(fix.positioned());
    row.realtime = u8::from(fix.realtime());
}

fn set_cells(row: &mut LocationRow, network: MobileNetwork, cells: &Cells<'_>) {
    let main = cells.main().unwrap_or_default();
    row.mcc = network.mcc;
    row.mnc = network.mnc;
    row.lac = main.lac;
    row.cell_id = main.cell_id;
    row.rssi = main.rssi;
    (row.cells_lac, row.cells_cell_id, row.cells_rssi) = neighbour_columns(cells);
}

fn neighbour_columns(cells: &Cells<'_>) -> (Vec<u32>, Vec<u64>, Vec<u8>) {
    let mut lac = Vec::new();
    let mut id = Vec::new();
    let mut rssi = Vec::new();
    for c in cells.neighbours() {
        lac.push(c.lac);
        id.push(c.cell_id);
        rssi.push(c.rssi);
    }
    (lac, id, rssi)
}

fn wifi_columns(aps: &[WifiAp]) -> (Vec<u64>, Vec<u8>) {
    (
        aps.iter().map(|a| a.mac().to_u64()).collect(),
        aps.iter().map(|a| a.rssi).collect(),
    )
}

fn battery_columns(b: BeaconBattery) -> (f32, i8) {
    let unit = match b {
        BeaconBattery::Centivolts(_) => BATTERY_VOLTS,
        BeaconBattery::Percent(_) => BATTERY_PERCENT,
    };
    (b.value() as f32, unit)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(keys: &mut IngestKeys, now: u32) -> Records<'_> {
        Records {
            ctx: RecordContext {
                imei: Imei::with_check_digit(35_341_903_000_001).unwrap(),
                server_time: now,
                device_offset_minutes: 480,
                max_future_secs: 900,
                serial: 1,
                conn_id: 1,
            },
            keys,
        }
    }

    #[test]
    fn device_times_are_trusted_within_a_window_of_the_server_clock() {
        let now: u32 = 1_749_988_800;
        let mut keys = IngestKeys::new("t", 0);
        let r = records(&mut keys, now);
        // The badge's clock is UTC+8: its local time converts back to `unix`.
        let at = |unix: i64| Some(DeviceTime::from_unix(unix, 480));
        let now = i64::from(now);
        assert_eq!(r.device_time(at(now - 3600)), ((now - 3600) as u32, 1));
        assert_eq!(r.device_time(at(now + 900)), ((now + 900) as u32, 1));
        // Too far ahead, too old, or no time at all: the server's time, flagged.
        for t in [at(now + 901), at(now - MAX_DEVICE_TIME_AGE_SECS - 1), None] {
            assert_eq!(r.device_time(t), (now as u32, 0), "{t:?}");
        }
    }

    #[test]
    fn every_row_carries_its_instance_and_shard() {
        let mut keys = IngestKeys::new("host", 3);
        let mut r = records(&mut keys, 1);
        let Record::DeviceEvents(a) = r.disconnect(EVENT_OFFLINE, "p", "x") else {
            panic!()
        };
        // The sequence is the log's to give: the row's position in it.
        assert_eq!(
            (a.ingest_instance, a.ingest_shard, a.ingest_seq),
            ("host", 3, 0)
        );
    }
}
