//! Black-box tests of the protocol codec, through the public API only.
//!
//! Every uplink frame below is written out by hand, field by field, and every
//! reply is the full byte string the reference server (`kks_tcp_server.py`)
//! would send, its payload built as the reference's handlers build it. The
//! CRCs were computed with this independent Python, never with the crate
//! (checked against the catalogue value `x25(b"123456789") == 0x906E` and the
//! GT06 manual's login frame `78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A`):
//!
//! ```python
//! def x25(data):                      # CRC-ITU = CRC-16/X-25
//!     crc = 0xFFFF
//!     for b in data:
//!         crc ^= b
//!         for _ in range(8):
//!             crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
//!     return crc ^ 0xFFFF
//!
//! def build(proto, payload, serial, long=None):
//!     length = 1 + len(payload) + 4   # protocol + content + serial + CRC
//!     long = length > 0xFF if long is None else long
//!     start, lf = (b"\x79\x79", length.to_bytes(2, "big")) if long else (b"\x78\x78", bytes([length]))
//!     body = lf + bytes([proto]) + payload + serial.to_bytes(2, "big")
//!     return start + body + x25(body).to_bytes(2, "big") + b"\r\n"
//! ```

use badge_ingest::protocol::downlink::{DownlinkError, OnlineCommand, TextMessage};
use badge_ingest::protocol::layout::{
    format_uuid, AttendanceKind, BeaconBattery, CellId4g, CellTower, DeviceTime, Generation,
    MacAddr, MobileNetwork, TerminalInfo,
};
use badge_ingest::protocol::message::{
    alarm_label, alarm_name, AlarmBody, AlarmSource, AlarmStatus, CommandReply, GeneralInfo,
    GpsTail, HeartbeatStatus, MessageErrorKind, TimeSyncRequest, TzLanguage,
};
use badge_ingest::protocol::{
    number as n, Frame, FrameConfig, FrameDecoder, Marker, Message, MessageError, Reply,
};
use bytes::BytesMut;

/// 2024-12-31T23:59:59Z: the server clock for every time-dependent reply.
const NOW: i64 = 1_735_689_599;

/// The datetime most frames carry: 2024-05-01 08:30:00.
const DT: DeviceTime = DeviceTime::new(24, 5, 1, 8, 30, 0);

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits in {s:?}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The one frame `bytes` holds, checked to be whole, clean and CRC-correct.
fn frame_of(bytes: &[u8]) -> Frame<'_> {
    let mut dec = FrameDecoder::default();
    let mut pos = 0;
    let f = dec.next_frame(bytes, &mut pos).expect("one whole frame");
    assert_eq!(pos, bytes.len(), "the frame is the whole input");
    assert!(dec.next_frame(bytes, &mut pos).is_none());
    assert!(f.crc_ok);
    assert_eq!(f.raw, bytes);
    assert_eq!(dec.stats.frames, 1);
    assert_eq!(dec.stats.frame_bytes, bytes.len() as u64);
    assert_eq!(dec.stats.garbage_bytes, 0);
    assert_eq!(dec.stats.rejected(), 0);
    let header = match f.marker {
        Marker::Short => 3,
        Marker::Long => 4,
    };
    assert_eq!(f.content.len(), bytes.len() - header - 1 - 2 - 2 - 2);
    f
}

/// Frame and message of a hand-written frame.
fn decode(bytes: &[u8]) -> (Frame<'_>, Message<'_>) {
    let f = frame_of(bytes);
    let m = Message::decode(&f).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.protocol(), f.protocol);
    (f, m)
}

/// The message encodes back to exactly the hand-written frame.
fn assert_reencodes(bytes: &[u8]) {
    let (f, m) = decode(bytes);
    assert_eq!(m.content_len(), f.content.len());
    let mut out = BytesMut::new();
    m.encode(f.serial, &mut out).unwrap();
    assert_eq!(&out[..], bytes, "re-encoding {m:?}");
}

fn reply_bytes(r: &Reply<'_>, serial: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    r.encode(serial, &mut out).unwrap();
    // Every reply is itself a clean frame with the protocol it claims.
    let f = frame_of(&out);
    assert_eq!((f.protocol, f.serial), (r.protocol(), serial));
    out.to_vec()
}

/// The immediate reply to a hand-written frame, with the request's serial.
fn immediate_reply(bytes: &[u8]) -> Vec<u8> {
    let (f, m) = decode(bytes);
    let r = Reply::immediate(&m, NOW).unwrap_or_else(|| panic!("no reply to {m:?}"));
    reply_bytes(&r, f.serial)
}

fn no_immediate_reply(bytes: &[u8]) {
    let (_, m) = decode(bytes);
    assert_eq!(Reply::immediate(&m, NOW), None, "{m:?}");
}

fn tower(lac: u32, cell_id: u64, rssi: u8) -> CellTower {
    CellTower { lac, cell_id, rssi }
}

fn net(mcc: u16, mnc: u16, wide_mnc: bool) -> MobileNetwork {
    MobileNetwork { mcc, mnc, wide_mnc }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---------------------------------------------------------------------------
// 0x01 login
// ---------------------------------------------------------------------------

#[test]
fn login_with_type_code_and_east_half_hour_zone() {
    let bytes = hex(LOGIN);
    let (f, m) = decode(&bytes);
    assert_eq!(
        (f.marker, f.protocol, f.serial),
        (Marker::Short, n::LOGIN, 0x0001)
    );
    let Message::Login(l) = m else {
        panic!("{m:?}")
    };
    assert_eq!(l.imei.to_string(), "353419032981448");
    assert_eq!(l.imei.as_u64(), 353_419_032_981_448);
    assert_eq!(l.type_code, Some(0x2404));
    let tz = l.tz_language.unwrap();
    assert_eq!(tz, TzLanguage(0x2122));
    assert_eq!(tz.offset_minutes(), 5 * 60 + 30);
    assert_eq!(tz.language(), 2);
    assert_eq!(TzLanguage::new(330, 2), tz);
    assert_reencodes(&bytes);
}

#[test]
fn login_with_leading_zero_imei_and_west_zone() {
    let bytes = hex(LOGIN_WEST);
    let (f, m) = decode(&bytes);
    assert_eq!(f.serial, 0x0102);
    let Message::Login(l) = m else {
        panic!("{m:?}")
    };
    // The reference strips exactly one padding digit: "012345678901234".
    assert_eq!(l.imei.to_string(), "012345678901234");
    assert_eq!(l.imei.as_u64(), 12_345_678_901_234);
    assert_eq!(l.type_code, Some(0x0101));
    let tz = l.tz_language.unwrap();
    assert_eq!(
        (tz.0, tz.offset_minutes(), tz.language()),
        (0x12C9, -180, 1)
    );
    assert_eq!(TzLanguage::new(-180, 1), tz);
    assert_reencodes(&bytes);
}

#[test]
fn login_with_imei_only_and_marker_bytes_in_the_serial() {
    let bytes = hex(LOGIN_IMEI_ONLY);
    let (f, m) = decode(&bytes);
    assert_eq!(f.serial, 0x7878);
    let Message::Login(l) = m else {
        panic!("{m:?}")
    };
    assert_eq!(l.imei.to_string(), "8612345678901234");
    assert_eq!((l.type_code, l.tz_language), (None, None));
    assert_reencodes(&bytes);
}

#[test]
fn login_is_acknowledged_with_an_empty_0x01() {
    assert_eq!(immediate_reply(&hex(LOGIN)), hex(R_LOGIN));
    assert_eq!(immediate_reply(&hex(LOGIN_WEST)), hex(R_LOGIN_WEST));
    let bytes = hex(LOGIN);
    let (_, m) = decode(&bytes);
    assert_eq!(
        Reply::immediate(&m, NOW),
        Some(Reply::Ack { protocol: 0x01 })
    );
}

// ---------------------------------------------------------------------------
// 0x13 / 0x36 heartbeats
// ---------------------------------------------------------------------------

#[test]
fn heartbeat() {
    let bytes = hex(HEARTBEAT);
    let (_, m) = decode(&bytes);
    let Message::Heartbeat(h) = m else {
        panic!("{m:?}")
    };
    assert!(!h.extended);
    assert_eq!(h.protocol(), 0x13);
    assert_eq!(
        h.status,
        HeartbeatStatus {
            terminal_info: 0xC8,
            battery: 85,
            gsm_signal: 4
        }
    );
    let ti = h.terminal_info();
    assert!(ti.power_disconnected() && ti.gps_positioned() && ti.charging());
    assert_eq!(h.language, Some(2));
    assert!(h.extension.is_empty());
    assert_reencodes(&bytes);
}

#[test]
fn heartbeat_padding_is_not_an_extension() {
    let bytes = hex(HEARTBEAT_PADDED);
    let (_, m) = decode(&bytes);
    let Message::Heartbeat(h) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        h.status,
        HeartbeatStatus {
            terminal_info: 0,
            battery: 20,
            gsm_signal: 1
        }
    );
    assert_eq!(h.language, Some(1));
    assert_eq!(h.extension, &[] as &[u8]);
    let ti = h.terminal_info();
    assert!(!ti.power_disconnected() && !ti.gps_positioned() && !ti.charging());
}

#[test]
fn extended_heartbeat() {
    let bytes = hex(HEARTBEAT_EXT);
    let (_, m) = decode(&bytes);
    let Message::Heartbeat(h) = m else {
        panic!("{m:?}")
    };
    assert!(h.extended);
    assert_eq!(h.protocol(), 0x36);
    assert_eq!(
        h.status,
        HeartbeatStatus {
            terminal_info: 0x46,
            battery: 50,
            gsm_signal: 3
        }
    );
    assert!(h.terminal_info().gps_positioned());
    assert!(!h.terminal_info().charging());
    assert_eq!(h.language, Some(1));
    assert_eq!(h.extension, &[0x01, 0x02, 0x0A, 0x0B]);
    assert_reencodes(&bytes);

    let bytes = hex(HEARTBEAT_EXT_SHORT);
    let (_, m) = decode(&bytes);
    let Message::Heartbeat(h) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        h.status,
        HeartbeatStatus {
            terminal_info: 0,
            battery: 100,
            gsm_signal: 0
        }
    );
    assert_eq!((h.language, h.extension), (None, &[] as &[u8]));
    assert_reencodes(&bytes);
}

#[test]
fn heartbeats_are_acknowledged_with_their_own_protocol() {
    assert_eq!(immediate_reply(&hex(HEARTBEAT)), hex(R_HEARTBEAT));
    assert_eq!(immediate_reply(&hex(HEARTBEAT_EXT)), hex(R_HEARTBEAT_EXT));
}

// ---------------------------------------------------------------------------
// 0x22 / 0xA0 GPS
// ---------------------------------------------------------------------------

#[test]
fn gps_north_east_with_2g_tail_and_mileage() {
    let bytes = hex(GPS_NE);
    let (_, m) = decode(&bytes);
    let Message::Gps(g) = m else { panic!("{m:?}") };
    assert_eq!(g.generation, Generation::G2);
    assert_eq!(g.time, DT);
    assert_eq!(g.fix.satellites(), 9);
    assert_eq!(
        (g.fix.latitude_raw.get(), g.fix.longitude_raw.get()),
        (40_500_000, 205_020_000)
    );
    assert_eq!(g.fix.latitude(), 22.5);
    assert!(close(g.fix.longitude(), 113.9));
    assert_eq!((g.fix.speed_kmh(), g.fix.course()), (40, 270));
    assert!(g.fix.positioned() && g.fix.realtime());
    assert_eq!(
        g.tail,
        Some(GpsTail {
            network: net(460, 0, false),
            cell: tower(0x251A, 0x0A_BCDE, 0),
            acc: 1,
            report_mode: 0,
            realtime_upload: 1,
            mileage: Some(123_456),
        })
    );
    assert_reencodes(&bytes);
}

#[test]
fn gps_south_east_without_tail() {
    let bytes = hex(GPS_SE);
    let (_, m) = decode(&bytes);
    let Message::Gps(g) = m else { panic!("{m:?}") };
    assert_eq!(g.generation, Generation::G2);
    assert_eq!(g.time, DeviceTime::new(23, 12, 31, 23, 59, 59));
    assert_eq!(
        (g.fix.latitude_raw.get(), g.fix.longitude_raw.get()),
        (61_020_000, 272_160_000)
    );
    assert!(close(g.fix.latitude(), -33.9), "{}", g.fix.latitude());
    assert!(close(g.fix.longitude(), 151.2), "{}", g.fix.longitude());
    assert_eq!(
        (g.fix.speed_kmh(), g.fix.course(), g.fix.satellites()),
        (0, 0, 4)
    );
    assert!(g.fix.positioned());
    assert!(!g.fix.realtime());
    assert_eq!(g.tail, None);
    assert_reencodes(&bytes);
}

#[test]
fn gps_4g_north_west_with_two_byte_mnc() {
    let bytes = hex(GPS_NW);
    let (_, m) = decode(&bytes);
    let Message::Gps(g) = m else { panic!("{m:?}") };
    assert_eq!(g.generation, Generation::G4);
    assert_eq!(g.protocol(), 0xA0);
    assert_eq!(
        (g.fix.latitude_raw.get(), g.fix.longitude_raw.get()),
        (73_260_000, 133_200_000)
    );
    assert!(close(g.fix.latitude(), 40.7));
    assert!(close(g.fix.longitude(), -74.0));
    assert_eq!(
        (g.fix.speed_kmh(), g.fix.course(), g.fix.satellites()),
        (88, 359, 12)
    );
    assert!(g.fix.positioned() && g.fix.realtime());
    assert_eq!(
        g.tail,
        Some(GpsTail {
            network: net(310, 260, true),
            cell: tower(8000, 0x0A1B_2C3D, 0),
            acc: 0,
            report_mode: 2,
            realtime_upload: 0,
            mileage: Some(1000),
        })
    );
    assert_reencodes(&bytes);
}

#[test]
fn gps_4g_south_west_with_wide_small_mnc_and_no_mileage() {
    let bytes = hex(GPS_SW);
    let (_, m) = decode(&bytes);
    let Message::Gps(g) = m else { panic!("{m:?}") };
    assert_eq!(
        (g.fix.latitude_raw.get(), g.fix.longitude_raw.get()),
        (62_280_000, 105_120_000)
    );
    assert!(close(g.fix.latitude(), -34.6));
    assert!(close(g.fix.longitude(), -58.4));
    assert_eq!(
        (g.fix.speed_kmh(), g.fix.course(), g.fix.satellites()),
        (5, 90, 7)
    );
    // MNC "007": two bytes on the wire, told apart from "07" by the MCC's high bit.
    assert_eq!(
        g.tail,
        Some(GpsTail {
            network: net(722, 7, true),
            cell: tower(65_536, 0x100_0000_0001, 0),
            acc: 1,
            report_mode: 0,
            realtime_upload: 1,
            mileage: None,
        })
    );
    assert_reencodes(&bytes);
}

// ---------------------------------------------------------------------------
// 0x28 / 0x2E / 0xA1 LBS
// ---------------------------------------------------------------------------

#[test]
fn lbs_main_cell_neighbours_and_empty_slots() {
    let bytes = hex(LBS);
    let (_, m) = decode(&bytes);
    let Message::Lbs(l) = m else { panic!("{m:?}") };
    assert_eq!(l.protocol, 0x28);
    assert_eq!(l.time, DT);
    assert_eq!(l.network, net(460, 0, false));
    assert_eq!(l.cells.generation(), Generation::G2);
    assert_eq!(l.cells.len(), 7);
    assert_eq!(l.cells.main(), Some(tower(0x251A, 0x000FA1, 0x3C)));
    // Zeroed slots are skipped even with a signal byte; a LAC of 0 with a cell id is kept.
    assert_eq!(l.cells.get(4), Some(tower(0, 0, 0x1E)));
    assert_eq!(
        l.cells.neighbours().collect::<Vec<_>>(),
        vec![tower(0x251A, 0x000FA2, 0x32), tower(0, 0x001001, 0x28)]
    );
    assert_eq!(l.cells.iter().count(), 7);
    assert_eq!(l.timing_advance, Some(5));
    assert_eq!(l.language, Some(1));
    assert_reencodes(&bytes);
}

#[test]
fn lbs_with_a_single_cell_and_no_trailing_options() {
    let bytes = hex(LBS_MIN);
    let (_, m) = decode(&bytes);
    let Message::Lbs(l) = m else { panic!("{m:?}") };
    assert_eq!(l.network, net(460, 1, false));
    assert_eq!(l.cells.len(), 1);
    assert_eq!(l.cells.main(), Some(tower(0x1000, 0x123456, 0x50)));
    assert_eq!(l.cells.neighbours().count(), 0);
    assert_eq!((l.timing_advance, l.language), (None, None));
    assert_reencodes(&bytes);
}

#[test]
fn lbs_0x2e_with_three_stations_and_wide_mnc() {
    let bytes = hex(LBS_REPLY);
    let (_, m) = decode(&bytes);
    let Message::Lbs(l) = m else { panic!("{m:?}") };
    assert_eq!(l.protocol, 0x2E);
    assert_eq!(l.network, net(460, 11, true));
    assert_eq!(l.cells.len(), 3);
    assert_eq!(l.cells.main(), Some(tower(0x1000, 0x123456, 0x50)));
    assert_eq!(
        l.cells.neighbours().collect::<Vec<_>>(),
        vec![tower(0x1001, 0x123457, 0x20)]
    );
    assert_eq!((l.timing_advance, l.language), (Some(0), Some(2)));
    assert_reencodes(&bytes);
}

#[test]
fn lbs_4g_stations() {
    let bytes = hex(LBS_4G);
    let (_, m) = decode(&bytes);
    let Message::Lbs(l) = m else { panic!("{m:?}") };
    assert_eq!(l.protocol, 0xA1);
    assert_eq!(l.network, net(460, 0, false));
    assert_eq!(l.cells.generation(), Generation::G4);
    assert_eq!(l.cells.len(), 7);
    assert_eq!(l.cells.main(), Some(tower(0x251A, 0x0FA1_0001, 0x3C)));
    assert_eq!(
        l.cells.neighbours().collect::<Vec<_>>(),
        vec![
            tower(0x251B, 0x0FA1_0002, 0x30),
            tower(0x1_0000, 0xFFFF_FFFF_FFFF, 0x10)
        ]
    );
    assert_eq!((l.timing_advance, l.language), (Some(2), None));
    assert_reencodes(&bytes);
}

#[test]
fn only_lbs_0x2e_gets_an_ack() {
    assert_eq!(immediate_reply(&hex(LBS_REPLY)), hex(R_LBS_REPLY));
    no_immediate_reply(&hex(LBS));
    no_immediate_reply(&hex(LBS_MIN));
    no_immediate_reply(&hex(LBS_4G));
}

// ---------------------------------------------------------------------------
// 0x2C / 0xA2 WiFi
// ---------------------------------------------------------------------------

#[test]
fn wifi_without_access_points() {
    let bytes = hex(WIFI);
    let (_, m) = decode(&bytes);
    let Message::Wifi(w) = m else { panic!("{m:?}") };
    assert_eq!(w.protocol(), 0x2C);
    assert_eq!(w.time, DT);
    assert_eq!(w.network, net(460, 0, false));
    assert_eq!((w.cells.generation(), w.cells.len()), (Generation::G2, 7));
    assert_eq!(w.cells.main(), Some(tower(0x251A, 0x000FA1, 0x3C)));
    assert_eq!(
        w.cells.neighbours().collect::<Vec<_>>(),
        vec![tower(0x251A, 0x000FA2, 0x32)]
    );
    assert_eq!(w.timing_advance, 3);
    assert!(w.aps.is_empty());
    assert_reencodes(&bytes);
}

#[test]
fn wifi_with_several_access_points() {
    let bytes = hex(WIFI_4G);
    let (_, m) = decode(&bytes);
    let Message::Wifi(w) = m else { panic!("{m:?}") };
    assert_eq!(w.protocol(), 0xA2);
    assert_eq!(w.network, net(460, 1, true));
    assert_eq!((w.cells.generation(), w.cells.len()), (Generation::G4, 7));
    assert_eq!(w.cells.main(), Some(tower(0x251A, 0x0FA1_0001, 0x3C)));
    assert_eq!(w.cells.neighbours().count(), 0);
    assert_eq!(w.timing_advance, 0);
    let aps: Vec<(String, u8)> = w
        .aps
        .iter()
        .map(|a| (a.mac().to_string(), a.rssi))
        .collect();
    assert_eq!(
        aps,
        vec![
            ("AC:23:3F:01:02:03".to_string(), 0xC4),
            ("00:11:22:33:44:55".to_string(), 0x50),
            ("FF:EE:DD:CC:BB:AA".to_string(), 0x01),
        ]
    );
    assert_eq!(w.aps[2].mac().to_u64(), 0xFFEE_DDCC_BBAA);
    assert_reencodes(&bytes);

    let bytes = hex(WIFI_2G_APS);
    let (_, m) = decode(&bytes);
    let Message::Wifi(w) = m else { panic!("{m:?}") };
    assert_eq!((w.protocol(), w.timing_advance, w.aps.len()), (0x2C, 1, 2));
    assert_eq!(
        w.aps[0].mac(),
        MacAddr([0xAC, 0x23, 0x3F, 0x01, 0x02, 0x03])
    );
    assert_eq!(w.aps[1].rssi, 0x50);
    assert_reencodes(&bytes);
}

// ---------------------------------------------------------------------------
// 0x1F / 0x8A time sync
// ---------------------------------------------------------------------------

#[test]
fn time_sync_requests() {
    let bytes = hex(TIME_SYNC_EN);
    let (_, m) = decode(&bytes);
    assert_eq!(
        m,
        Message::TimeSync(TimeSyncRequest {
            device_time: Some(DT),
            language: 2
        })
    );
    let bytes = hex(TIME_SYNC_ZH);
    let (_, m) = decode(&bytes);
    assert_eq!(
        m,
        Message::TimeSync(TimeSyncRequest {
            device_time: Some(DT),
            language: 1
        })
    );
    let bytes = hex(TIME_SYNC_EMPTY);
    let (_, m) = decode(&bytes);
    assert_eq!(
        m,
        Message::TimeSync(TimeSyncRequest {
            device_time: None,
            language: 1
        })
    );
    let bytes = hex(TIME_SYNC_2);
    let (_, m) = decode(&bytes);
    assert_eq!(m, Message::TimeSync2);
    for f in [TIME_SYNC_EN, TIME_SYNC_ZH, TIME_SYNC_EMPTY, TIME_SYNC_2] {
        assert_reencodes(&hex(f));
    }
}

#[test]
fn time_sync_replies() {
    // Language 1: Unix time shifted to UTC+8, as the reference does.
    let bytes = hex(TIME_SYNC_ZH);
    let (_, m) = decode(&bytes);
    assert_eq!(
        Reply::immediate(&m, NOW),
        Some(Reply::TimeSync {
            time: (NOW + 8 * 3600) as u32,
            language: 1
        })
    );
    assert_eq!(immediate_reply(&hex(TIME_SYNC_ZH)), hex(R_TIME_SYNC_ZH));
    assert_eq!(
        immediate_reply(&hex(TIME_SYNC_EMPTY)),
        hex(R_TIME_SYNC_EMPTY)
    );
    // Language 2: plain UTC.
    let bytes = hex(TIME_SYNC_EN);
    let (_, m) = decode(&bytes);
    assert_eq!(
        Reply::immediate(&m, NOW),
        Some(Reply::TimeSync {
            time: NOW as u32,
            language: 2
        })
    );
    assert_eq!(immediate_reply(&hex(TIME_SYNC_EN)), hex(R_TIME_SYNC_EN));
    // 0x8A: Beijing wall clock, across the new year.
    let bytes = hex(TIME_SYNC_2);
    let (_, m) = decode(&bytes);
    assert_eq!(
        Reply::immediate(&m, NOW),
        Some(Reply::TimeSync2 {
            time: DeviceTime::new(25, 1, 1, 7, 59, 59)
        })
    );
    assert_eq!(immediate_reply(&hex(TIME_SYNC_2)), hex(R_TIME_SYNC_2));
}

// ---------------------------------------------------------------------------
// 0xA3 / 0xA4 / 0xA5 / 0xA9 alarms
// ---------------------------------------------------------------------------

#[test]
fn single_fence_alarm() {
    let bytes = hex(ALARM_A3);
    let (_, m) = decode(&bytes);
    let Message::Alarm(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (a.source, a.protocol(), a.source.as_str()),
        (AlarmSource::SingleFence, 0xA3, "single_fence")
    );
    let AlarmBody::Fence {
        time,
        fix,
        lbs_length,
        network,
        cell,
        status,
        fence_id,
    } = a.body
    else {
        panic!("{a:?}")
    };
    assert_eq!(time, DT);
    assert_eq!(fix.latitude(), 22.5);
    assert!(close(fix.longitude(), 113.9));
    assert_eq!(
        (fix.speed_kmh(), fix.course(), fix.satellites()),
        (12, 180, 8)
    );
    assert_eq!(lbs_length, 0x0F);
    assert_eq!(network, net(460, 0, false));
    assert_eq!(cell, CellId4g::new(0x251A, 0x0ABC_DEF0));
    assert_eq!(
        status,
        AlarmStatus {
            terminal_info: 0x44,
            voltage_level: 5,
            gsm_signal: 3,
            alarm_code: 0x01,
            language: 1
        }
    );
    // The trailing byte is not a fence id: only 0xA4 has one.
    assert_eq!(fence_id, None);
    assert_eq!(a.fence_id(), None);
    assert_eq!(a.alarm_code(), 0x01);
    assert_eq!(alarm_name(a.alarm_code()), Some("sos"));
    assert_eq!(a.time(), Some(DT));
    assert_eq!(a.position(), Some(fix));
    assert_eq!(a.network(), net(460, 0, false));
    assert_eq!(a.main_cell(), Some(tower(0x251A, 0x0ABC_DEF0, 0)));
    assert_eq!(a.battery_percent(), Some(85));
    assert_eq!(a.terminal_info(), Some(TerminalInfo(0x44)));
    assert!(a.wifi().is_empty());
}

#[test]
fn multi_fence_alarm_with_fence_id_and_no_fix() {
    let bytes = hex(ALARM_A4);
    let (_, m) = decode(&bytes);
    let Message::Alarm(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!((a.source, a.protocol()), (AlarmSource::MultiFence, 0xA4));
    let AlarmBody::Fence {
        lbs_length, status, ..
    } = a.body
    else {
        panic!("{a:?}")
    };
    assert_eq!(lbs_length, 0x10);
    assert_eq!(
        status,
        AlarmStatus {
            terminal_info: 0x02,
            voltage_level: 6,
            gsm_signal: 4,
            alarm_code: 0x05,
            language: 2
        }
    );
    assert_eq!(a.fence_id(), Some(7));
    assert_eq!(a.position(), None, "an unpositioned fix is no position");
    assert_eq!(a.network(), net(460, 1, true));
    assert_eq!(a.main_cell(), Some(tower(0x251B, 0x0FA1, 0)));
    assert_eq!(a.battery_percent(), Some(100));
    assert_eq!(alarm_label(a.alarm_code()), "exit_fence");
    assert_reencodes(&bytes);
}

#[test]
fn lbs_alarm_has_no_datetime() {
    let bytes = hex(ALARM_A5);
    let (_, m) = decode(&bytes);
    let Message::Alarm(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (a.source, a.protocol(), a.source.as_str()),
        (AlarmSource::Lbs, 0xA5, "lbs")
    );
    assert_eq!(
        a.body,
        AlarmBody::Lbs {
            network: net(460, 0, false),
            cell: CellId4g::new(100_000, 0x12_3456_789A),
            status: AlarmStatus {
                terminal_info: 0x80,
                voltage_level: 7,
                gsm_signal: 0,
                alarm_code: 0x7E,
                language: 1
            },
        }
    );
    assert_eq!(a.time(), None);
    assert_eq!(a.position(), None);
    assert_eq!(a.main_cell(), Some(tower(100_000, 0x12_3456_789A, 0)));
    assert_eq!(a.battery_percent(), None, "voltage level 7 is outside 0-6");
    assert!(a.terminal_info().unwrap().power_disconnected());
    assert_eq!(alarm_name(0x7E), None);
    assert_eq!(alarm_label(a.alarm_code()), "unknown_0x7E");
    assert_reencodes(&bytes);
}

#[test]
fn wifi_alarm_with_2g_cells() {
    let bytes = hex(ALARM_A9_2G);
    let (_, m) = decode(&bytes);
    let Message::Alarm(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (a.source, a.protocol(), a.source.as_str()),
        (AlarmSource::Wifi, 0xA9, "wifi")
    );
    let AlarmBody::Wifi {
        time,
        network,
        cells,
        timing_advance,
        aps,
        alarm_code,
        language,
    } = a.body
    else {
        panic!("{a:?}")
    };
    assert_eq!((time, network), (DT, net(460, 1, false)));
    assert_eq!((cells.generation(), cells.len()), (Generation::G2, 2));
    assert_eq!(cells.main(), Some(tower(0x251A, 0x000FA1, 0x3C)));
    assert_eq!(
        cells.neighbours().collect::<Vec<_>>(),
        vec![tower(0x251A, 0x000FA2, 0x32)]
    );
    assert_eq!(timing_advance, 4);
    assert_eq!(aps.len(), 2);
    assert_eq!(a.wifi(), aps);
    assert_eq!(
        (aps[0].mac().to_string().as_str(), aps[0].rssi),
        ("AC:23:3F:01:02:03", 0xC4)
    );
    assert_eq!((alarm_code, language), (0x01, 2));
    assert_eq!(a.alarm_code(), 0x01);
    assert_eq!(a.main_cell(), Some(tower(0x251A, 0x000FA1, 0x3C)));
    assert_eq!(
        (a.status(), a.battery_percent(), a.fence_id(), a.position()),
        (None, None, None, None)
    );
    assert_eq!(a.time(), Some(DT));
    assert_reencodes(&bytes);
}

#[test]
fn wifi_alarm_with_4g_cells() {
    let bytes = hex(ALARM_A9_4G);
    let (_, m) = decode(&bytes);
    let Message::Alarm(a) = m else {
        panic!("{m:?}")
    };
    let AlarmBody::Wifi {
        network,
        cells,
        timing_advance,
        aps,
        alarm_code,
        language,
        ..
    } = a.body
    else {
        panic!("{a:?}")
    };
    assert_eq!(network, net(310, 260, true));
    assert_eq!((cells.generation(), cells.len()), (Generation::G4, 1));
    assert_eq!(cells.main(), Some(tower(100_000, 0x12_3456_789A, 0x2A)));
    assert_eq!(
        (timing_advance, aps.len(), alarm_code, language),
        (0, 0, 0x13, 1)
    );
    assert_eq!(alarm_label(alarm_code), "tamper");
    assert_reencodes(&bytes);
}

#[test]
fn wifi_alarm_with_an_unknown_cell_type_is_rejected() {
    let mut content = frame_of(&hex(ALARM_A9_2G)).content.to_vec();
    content[9] = 2;
    let e = Message::decode_content(0xA9, &content).unwrap_err();
    assert_eq!((e.message, e.offset), ("alarm_wifi", 10));
    assert!(
        matches!(
            e.kind,
            MessageErrorKind::Invalid {
                field: "cell_type",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn alarms_get_a_0x26_ack_then_alarmsms() {
    for (frame, reply) in [
        (ALARM_A3, R_ALARM_ACK_A3),
        (ALARM_A4, R_ALARM_ACK_A4),
        (ALARM_A5, R_ALARM_ACK_A5),
        (ALARM_A9_2G, R_ALARM_ACK_A9_2G),
        (ALARM_A9_4G, R_ALARM_ACK_A9_4G),
    ] {
        let bytes = hex(frame);
        let (_, m) = decode(&bytes);
        assert_eq!(
            Reply::immediate(&m, NOW),
            Some(Reply::Ack { protocol: 0x26 })
        );
        assert_eq!(immediate_reply(&hex(frame)), hex(reply));
    }
    let f = frame_of(&hex(ALARM_A3)).serial;
    let r = Reply::alarm_address("深圳市南山区");
    assert_eq!(r.protocol(), 0x17);
    assert_eq!(reply_bytes(&r, f), hex(R_ALARMSMS));
}

// ---------------------------------------------------------------------------
// 0x17 / 0x1A / 0xA7 address requests
// ---------------------------------------------------------------------------

#[test]
fn lbs_address_request() {
    let bytes = hex(ADDR_17);
    let (_, m) = decode(&bytes);
    let Message::AddressRequest(r) = m else {
        panic!("{m:?}")
    };
    assert_eq!((r.protocol, r.time, r.language), (0x17, DT, 1));
    assert!(!r.wants_english());
    assert_eq!(r.body.len(), 3 + 2 + 3 + 21);
    assert_eq!(&r.body[8..22], b"+8613800138000");
    assert_eq!(
        r.cell(),
        Some((net(460, 0, false), tower(0x251A, 0x000FA1, 0)))
    );
    assert_eq!(r.gps(), None);
    assert_reencodes(&bytes);
}

#[test]
fn gps_address_query() {
    let bytes = hex(ADDR_1A);
    let (_, m) = decode(&bytes);
    let Message::AddressRequest(r) = m else {
        panic!("{m:?}")
    };
    assert_eq!((r.protocol, r.time, r.language), (0x1A, DT, 2));
    assert!(r.wants_english());
    assert_eq!(r.body.len(), 12 + 21);
    let fix = r.gps().unwrap();
    assert_eq!(fix.latitude(), 22.5);
    assert_eq!(fix.satellites(), 6);
    assert_eq!(r.cell(), None);
    assert_reencodes(&bytes);
}

#[test]
fn lbs_4g_address_request() {
    let bytes = hex(ADDR_A7);
    let (_, m) = decode(&bytes);
    let Message::AddressRequest(r) = m else {
        panic!("{m:?}")
    };
    assert_eq!((r.protocol, r.time, r.language), (0xA7, DT, 2));
    assert!(r.wants_english());
    assert_eq!(r.body.len(), 4 + 4 + 8);
    assert_eq!(
        r.cell(),
        Some((net(460, 11, true), tower(100_000, 0x1_2345_6789, 0)))
    );
    assert_eq!(r.gps(), None);
    assert_reencodes(&bytes);
}

#[test]
fn address_replies() {
    for f in [ADDR_17, ADDR_1A, ADDR_A7] {
        no_immediate_reply(&hex(f));
    }
    // 0x17 request in Chinese: 0x17 ADDRESS reply with a 1-byte length, UTF-16BE text.
    let bytes = hex(ADDR_17);
    let (f, m) = decode(&bytes);
    let Message::AddressRequest(req) = m else {
        panic!()
    };
    let r = Reply::address(&req, "广东省深圳市南山区科技园");
    assert_eq!(r.protocol(), 0x17);
    assert_eq!(reply_bytes(&r, f.serial), hex(R_ADDRESS_ZH));
    assert_eq!(
        reply_bytes(&Reply::address(&req, ""), f.serial),
        hex(R_ADDRESS_EMPTY)
    );
    // 0x1A request in English: 0x97 with a 2-byte length.
    let bytes = hex(ADDR_1A);
    let (f, m) = decode(&bytes);
    let Message::AddressRequest(req) = m else {
        panic!()
    };
    let r = Reply::address(&req, "1 Science Park Rd, Nanshan, Shenzhen");
    assert_eq!(r.protocol(), 0x97);
    assert_eq!(reply_bytes(&r, f.serial), hex(R_ADDRESS_EN));
}

#[test]
fn a_long_address_reply_needs_a_79_79_frame() {
    let bytes = hex(ADDR_A7);
    let (f, m) = decode(&bytes);
    let Message::AddressRequest(req) = m else {
        panic!()
    };
    let long = "Building 7, Phase 2, Shenzhen Bay Science and Technology Ecological Park, \
                1819 Shahe West Road, Yuehai Subdistrict, Nanshan District, Shenzhen, \
                Guangdong 518057, China";
    let out = reply_bytes(&Reply::address(&req, long), f.serial);
    assert_eq!(&out[..2], &[0x79, 0x79]);
    assert_eq!(out, hex(R_ADDRESS_LONG));
    assert_eq!(frame_of(&out).marker, Marker::Long);
}

// ---------------------------------------------------------------------------
// 0xB0 / 0xB1 attendance, 0xB2 punch
// ---------------------------------------------------------------------------

#[test]
fn attendance_2g_clock_in() {
    let bytes = hex(ATT_B0_IN);
    let (_, m) = decode(&bytes);
    let Message::Attendance(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(a.protocol(), 0xB0);
    let h = a.head;
    assert_eq!((h.time, h.gps_flag, h.reserved), (DT, 1, [0xAB, 0xCD]));
    assert_eq!(h.fix.latitude(), 22.5);
    assert_eq!(h.fix.satellites(), 9);
    assert_eq!(
        (
            h.terminal_info,
            h.voltage_level,
            h.gsm_signal,
            h.reserved_ext
        ),
        (0x44, 4, 3, [0, 0])
    );
    assert_eq!(a.kind(), AttendanceKind::ClockIn);
    assert!(a.gps_positioned());
    assert_eq!(a.battery_percent(), Some(68));
    assert_eq!(a.network, net(460, 0, false));
    assert_eq!((a.cells.generation(), a.cells.len()), (Generation::G2, 7));
    assert_eq!(a.cells.main(), Some(tower(0x251A, 0x000FA1, 0x3C)));
    assert_eq!(
        a.cells.neighbours().collect::<Vec<_>>(),
        vec![tower(0x251A, 0x000FA2, 0x32)]
    );
    assert_eq!(a.timing_advance, 1);
    assert_eq!(a.aps.len(), 2);
    assert_eq!(a.aps[1].mac().to_string(), "00:11:22:33:44:55");
    assert_reencodes(&bytes);
}

#[test]
fn attendance_2g_clock_out() {
    let bytes = hex(ATT_B0_OUT);
    let (_, m) = decode(&bytes);
    let Message::Attendance(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(a.head.time, DeviceTime::new(24, 5, 1, 18, 0, 5));
    assert_eq!((a.head.gps_flag, a.head.reserved), (0, [0x00, 0x07]));
    assert_eq!(a.kind(), AttendanceKind::ClockOut);
    assert!(!a.gps_positioned());
    assert_eq!(a.battery_percent(), Some(34));
    assert_eq!((a.timing_advance, a.aps.len()), (0, 0));
    assert_reencodes(&bytes);
}

#[test]
fn attendance_4g_clock_out() {
    let bytes = hex(ATT_B1_OUT);
    let (_, m) = decode(&bytes);
    let Message::Attendance(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(a.protocol(), 0xB1);
    assert_eq!(a.kind(), AttendanceKind::ClockOut);
    // The flag byte says 1, the GPS block says not positioned: the block wins.
    assert_eq!(a.head.gps_flag, 1);
    assert!(!a.gps_positioned());
    assert_eq!(a.battery_percent(), Some(100));
    assert_eq!(a.network, net(460, 1, true));
    assert_eq!((a.cells.generation(), a.cells.len()), (Generation::G4, 7));
    assert_eq!(a.cells.main(), Some(tower(0x251A, 0x0FA1_0001, 0x3C)));
    assert_eq!(
        a.cells.neighbours().collect::<Vec<_>>(),
        vec![tower(0x251A, 0x0FA1_0002, 0x20)]
    );
    assert_reencodes(&bytes);
}

#[test]
fn attendance_4g_clock_in_has_a_two_byte_mnc_without_the_mcc_bit() {
    let bytes = hex(ATT_B1_IN);
    let (_, m) = decode(&bytes);
    let Message::Attendance(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(a.kind(), AttendanceKind::ClockIn);
    assert_eq!(a.network, net(460, 2, true));
    assert_eq!(a.head.reserved, [0xFF, 0x00]);
    assert!(close(a.head.fix.latitude(), -33.9));
    assert_eq!(a.battery_percent(), Some(0));
    assert_eq!((a.timing_advance, a.aps.len()), (7, 1));
    // Re-encoded with the MCC's high bit set, as 0xB1 is always sent.
    let mut out = BytesMut::new();
    m.encode(0x0083, &mut out).unwrap();
    let again = Message::decode(&frame_of(&out)).unwrap();
    assert_eq!(again, m);
}

#[test]
fn bluetooth_punches() {
    let bytes = hex(PUNCH_IN);
    let (_, m) = decode(&bytes);
    let Message::BluetoothPunch(p) = m else {
        panic!("{m:?}")
    };
    let b = p.body;
    assert_eq!((b.time, b.rssi), (DT, -59));
    assert_eq!(p.mac().to_string(), "AC:23:3F:5A:10:01");
    assert_eq!(format_uuid(&b.uuid), "FDA50693-A4E2-4FB1-AFCF-C6EB07647825");
    assert_eq!((b.major.get(), b.minor.get()), (10001, 515));
    assert_eq!(p.battery(), BeaconBattery::Centivolts(300));
    assert_eq!(p.battery().value(), 3.0);
    assert_eq!((b.terminal_info, b.reserved), (0x04, [0x12, 0x34]));
    assert_eq!(p.kind(), AttendanceKind::ClockIn);
    assert_reencodes(&bytes);

    let bytes = hex(PUNCH_OUT);
    let (_, m) = decode(&bytes);
    let Message::BluetoothPunch(p) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (p.body.time, p.body.rssi),
        (DeviceTime::new(24, 5, 1, 18, 1, 2), -100)
    );
    assert_eq!(
        (p.body.terminal_info, p.body.reserved),
        (0x08, [0x00, 0xFF])
    );
    assert_eq!(p.kind(), AttendanceKind::ClockOut);
    assert_reencodes(&bytes);
}

#[test]
fn attendance_and_punch_replies_echo_datetime_type_and_reserved() {
    let bytes = hex(ATT_B0_IN);
    let (_, m) = decode(&bytes);
    assert_eq!(
        Reply::immediate(&m, NOW),
        Some(Reply::Punch {
            protocol: 0xB0,
            time: DT,
            kind: AttendanceKind::ClockIn,
            reserved: [0xAB, 0xCD]
        })
    );
    for (frame, reply) in [
        (ATT_B0_IN, R_ATT_B0_IN),
        (ATT_B0_OUT, R_ATT_B0_OUT),
        (ATT_B1_OUT, R_ATT_B1_OUT),
        (ATT_B1_IN, R_ATT_B1_IN),
        (PUNCH_IN, R_PUNCH_IN),
        (PUNCH_OUT, R_PUNCH_OUT),
    ] {
        assert_eq!(immediate_reply(&hex(frame)), hex(reply), "reply to {frame}");
    }
}

// ---------------------------------------------------------------------------
// 0xB3 Bluetooth location
// ---------------------------------------------------------------------------

#[test]
fn bluetooth_location_without_beacons() {
    let bytes = hex(BT_LOC_0);
    let (_, m) = decode(&bytes);
    let Message::BluetoothLocation(l) = m else {
        panic!("{m:?}")
    };
    assert_eq!(l.time, DT);
    assert!(l.beacons.is_empty());
    assert_eq!(l.strongest(|_| true), None);
    assert_reencodes(&bytes);
}

#[test]
fn bluetooth_location_with_one_beacon_in_volts() {
    let bytes = hex(BT_LOC_1);
    let (_, m) = decode(&bytes);
    let Message::BluetoothLocation(l) = m else {
        panic!("{m:?}")
    };
    assert_eq!(l.beacons.len(), 1);
    let b = &l.beacons[0];
    assert_eq!(b.rssi, -70);
    assert_eq!(b.mac().to_string(), "AC:23:3F:5A:10:01");
    assert_eq!(format_uuid(&b.uuid), "FDA50693-A4E2-4FB1-AFCF-C6EB07647825");
    assert_eq!((b.major.get(), b.minor.get()), (10001, 1));
    assert_eq!(
        (b.battery(), b.battery_unit),
        (BeaconBattery::Centivolts(310), 0)
    );
    assert!(close(b.battery().value(), 3.1));
    assert_reencodes(&bytes);
}

#[test]
fn bluetooth_location_long_frame_with_three_beacons() {
    let bytes = hex(BT_LOC_3);
    let (f, m) = decode(&bytes);
    assert_eq!(f.marker, Marker::Long);
    assert_eq!(f.serial, 0x00A2);
    let Message::BluetoothLocation(l) = m else {
        panic!("{m:?}")
    };
    let got: Vec<(i8, String, u16, u16, BeaconBattery)> = l
        .beacons
        .iter()
        .map(|b| {
            (
                b.rssi,
                b.mac().to_string(),
                b.major.get(),
                b.minor.get(),
                b.battery(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                -80,
                "AC:23:3F:5A:10:01".into(),
                10001,
                1,
                BeaconBattery::Centivolts(295)
            ),
            (
                -45,
                "AC:23:3F:5A:10:02".into(),
                10001,
                2,
                BeaconBattery::Percent(90)
            ),
            (
                -128,
                "AC:23:3F:5A:10:03".into(),
                65535,
                0,
                BeaconBattery::Percent(75)
            ),
        ]
    );
    // Any non-zero unit byte means percent.
    assert_eq!(l.beacons[2].battery_unit, 0x64);
    assert_eq!(l.beacons[1].battery().value(), 90.0);
    assert_eq!(l.strongest(|_| true).map(|b| b.minor.get()), Some(2));
    assert_eq!(
        l.strongest(|b| b.minor.get() != 2).map(|b| b.rssi),
        Some(-80)
    );
    assert_eq!(l.strongest(|_| false), None);
    // The encoder picks the marker by size: the same message fits 78 78.
    let mut out = BytesMut::new();
    m.encode(f.serial, &mut out).unwrap();
    assert_eq!(&out[..3], &[0x78, 0x78, 0x66]);
    assert_eq!(&out[4..out.len() - 4], &bytes[5..bytes.len() - 4]);
    assert_eq!(Message::decode(&frame_of(&out)).unwrap(), m);
}

// ---------------------------------------------------------------------------
// 0x94 general information
// ---------------------------------------------------------------------------

#[test]
fn general_info_sub_protocols() {
    let bytes = hex(GI_SIM_IDS);
    let (_, m) = decode(&bytes);
    let Message::GeneralInfo(g) = m else {
        panic!("{m:?}")
    };
    let GeneralInfo::SimIds { imei, imsi, iccid } = g else {
        panic!("{g:?}")
    };
    assert_eq!(imei, [0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48]);
    assert_eq!(imsi.to_string(), "460011234567890");
    // content[17:27].hex() in the reference: lower-case, the F padding kept.
    assert_eq!(iccid.to_string(), "8986011234567890123f");
    assert_eq!(
        (g.sub_protocol(), g.imsi(), g.iccid()),
        (0x0A, Some(imsi), Some(iccid))
    );
    assert_reencodes(&bytes);

    let bytes = hex(GI_ICCID);
    let (_, m) = decode(&bytes);
    let Message::GeneralInfo(g) = m else {
        panic!("{m:?}")
    };
    assert_eq!(g.sub_protocol(), 0x00);
    assert_eq!(g.iccid().unwrap().to_string(), "89860112345678901234");
    assert_eq!(g.imsi(), None);
    assert_reencodes(&bytes);

    let bytes = hex(GI_GPS_STATUS);
    let (_, m) = decode(&bytes);
    assert_eq!(m, Message::GeneralInfo(GeneralInfo::GpsStatus(3)));
    assert_reencodes(&bytes);

    let bytes = hex(GI_OTHER);
    let (_, m) = decode(&bytes);
    assert_eq!(
        m,
        Message::GeneralInfo(GeneralInfo::Other {
            sub_protocol: 0x04,
            data: b"ABC"
        })
    );
    assert_reencodes(&bytes);

    let bytes = hex(GI_SIM_IDS_SHORT);
    let (_, m) = decode(&bytes);
    let Message::GeneralInfo(g) = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        g,
        GeneralInfo::Other {
            sub_protocol: 0x0A,
            data: &hex("03 53 41 90 32 98 14 48 04 60")
        }
    );
    assert_eq!((g.iccid(), g.imsi()), (None, None));
    assert_reencodes(&bytes);
}

#[test]
fn general_info_layouts_need_their_whole_length() {
    // 0x0A needs 26 bytes after the sub-protocol, 0x00 ten, 0x09 one
    // (`len(content) >= 27 / 11 / 2` in the reference); shorter is kept raw.
    let bytes = hex(GI_SIM_IDS);
    let f = frame_of(&bytes);
    let m = Message::decode_content(0x94, &f.content[..26]).unwrap();
    assert_eq!(
        m,
        Message::GeneralInfo(GeneralInfo::Other {
            sub_protocol: 0x0A,
            data: &f.content[1..26]
        })
    );
    let Message::GeneralInfo(g) = Message::decode_content(0x94, &f.content[..27]).unwrap() else {
        panic!()
    };
    assert_eq!(g.sub_protocol(), 0x0A);
    assert_eq!(g.iccid().unwrap().to_string(), "8986011234567890123f");

    let bytes = hex(GI_ICCID);
    let f = frame_of(&bytes);
    let m = Message::decode_content(0x94, &f.content[..10]).unwrap();
    assert_eq!(
        m,
        Message::GeneralInfo(GeneralInfo::Other {
            sub_protocol: 0x00,
            data: &f.content[1..10]
        })
    );
    let Message::GeneralInfo(g) = Message::decode_content(0x94, f.content).unwrap() else {
        panic!()
    };
    assert_eq!(g.iccid().map(|i| i.0.len()), Some(10));

    let m = Message::decode_content(0x94, &[0x09]).unwrap();
    assert_eq!(
        m,
        Message::GeneralInfo(GeneralInfo::Other {
            sub_protocol: 0x09,
            data: &[]
        })
    );
}

// ---------------------------------------------------------------------------
// 0x81 command reply, unknown protocols
// ---------------------------------------------------------------------------

#[test]
fn command_replies() {
    let bytes = hex(CMD_REPLY);
    let (_, m) = decode(&bytes);
    assert_eq!(
        m,
        Message::CommandReply(CommandReply {
            length: 14,
            server_flag: 42,
            text: b"RESET OK",
            language: Some(2)
        })
    );
    let Message::CommandReply(r) = m else {
        panic!()
    };
    assert_eq!(r.text_lossy(), "RESET OK");
    assert_reencodes(&bytes);

    // Seven content bytes: everything after the flag is text, as in the reference.
    let bytes = hex(CMD_REPLY_SHORT);
    let (_, m) = decode(&bytes);
    assert_eq!(
        m,
        Message::CommandReply(CommandReply {
            length: 3,
            server_flag: 256,
            text: b"OK",
            language: None
        })
    );
    assert_reencodes(&bytes);
}

#[test]
fn unknown_protocols_are_kept() {
    let bytes = hex(UNKNOWN);
    let (f, m) = decode(&bytes);
    assert_eq!(f.serial, 0xFFFF);
    assert_eq!(
        m,
        Message::Unknown {
            protocol: 0x5A,
            content: &[0xDE, 0xAD, 0xBE, 0xEF]
        }
    );
    assert_eq!(n::name(0x5A), "unknown");
    assert_reencodes(&bytes);
    no_immediate_reply(&bytes);
    // Downlink numbers a badge never sends are kept the same way.
    for p in [
        n::ONLINE_COMMAND,
        n::MESSAGE,
        n::ALARM_ACK,
        n::ADDRESS_REPLY_EN,
    ] {
        assert_eq!(
            Message::decode_content(p, b"xyz").unwrap(),
            Message::Unknown {
                protocol: p,
                content: b"xyz"
            }
        );
    }
}

#[test]
fn messages_the_reference_does_not_answer_get_no_immediate_reply() {
    for f in [
        GPS_NE,
        GPS_SE,
        GPS_NW,
        GPS_SW,
        LBS,
        LBS_MIN,
        LBS_4G,
        WIFI,
        WIFI_4G,
        WIFI_2G_APS,
        BT_LOC_0,
        BT_LOC_1,
        BT_LOC_3,
        GI_SIM_IDS,
        GI_ICCID,
        GI_GPS_STATUS,
        GI_OTHER,
        CMD_REPLY,
        CMD_REPLY_SHORT,
        ADDR_17,
        ADDR_1A,
        ADDR_A7,
        UNKNOWN,
    ] {
        no_immediate_reply(&hex(f));
    }
}

// ---------------------------------------------------------------------------
// Downlink
// ---------------------------------------------------------------------------

#[test]
fn online_command_and_text_messages() {
    let mut out = BytesMut::new();
    OnlineCommand {
        server_flag: 0x0102,
        text: "STATUS#",
    }
    .encode(0x0007, &mut out)
    .unwrap();
    assert_eq!(&out[..], &hex(R_COMMAND)[..]);
    assert_eq!(Message::decode(&frame_of(&out)).unwrap().protocol(), 0x80);

    out.clear();
    TextMessage {
        server_flag: 9,
        text: "请于18:00前返回",
    }
    .encode(0x0008, &mut out)
    .unwrap();
    assert_eq!(&out[..], &hex(R_MESSAGE)[..]);

    out.clear();
    let long = "注意安全".repeat(33);
    TextMessage {
        server_flag: 10,
        text: &long,
    }
    .encode(0x0009, &mut out)
    .unwrap();
    assert_eq!(&out[..], &hex(R_MESSAGE_LONG)[..]);
    assert_eq!(frame_of(&out).marker, Marker::Long);
}

#[test]
fn frames_switch_to_79_79_above_a_length_of_255() {
    // Length = protocol(1) + content + serial(2) + CRC(2): 250 content bytes
    // make 255, the largest a 78 78 frame can say.
    let content = [0xAB; 251];
    let mut out = BytesMut::new();
    Message::Unknown {
        protocol: 0x5A,
        content: &content[..250],
    }
    .encode(0x0102, &mut out)
    .unwrap();
    assert_eq!(&out[..4], &[0x78, 0x78, 0xFF, 0x5A]);
    assert_eq!(out.len(), 3 + 255 + 2);
    assert_eq!(frame_of(&out).content, &content[..250]);
    out.clear();
    Message::Unknown {
        protocol: 0x5A,
        content: &content,
    }
    .encode(0x0102, &mut out)
    .unwrap();
    assert_eq!(&out[..5], &[0x79, 0x79, 0x01, 0x00, 0x5A]);
    assert_eq!(out.len(), 4 + 256 + 2);
    assert_eq!(frame_of(&out).content, &content[..]);
}

#[test]
fn downlink_limits() {
    let mut out = BytesMut::new();
    let max = "x".repeat(OnlineCommand::MAX_TEXT);
    OnlineCommand {
        server_flag: 1,
        text: &max,
    }
    .encode(1, &mut out)
    .unwrap();
    let f = frame_of(&out);
    assert_eq!(f.content[0], 255, "the length byte is exactly full");
    assert_eq!(f.content.len(), 256);
    out.clear();
    let over = "x".repeat(OnlineCommand::MAX_TEXT + 1);
    assert_eq!(
        OnlineCommand {
            server_flag: 1,
            text: &over
        }
        .encode(1, &mut out),
        Err(DownlinkError::TooLong { len: 250, max: 249 })
    );
    assert!(out.is_empty(), "nothing written on error");
    let huge = "好".repeat(TextMessage::MAX_UTF16_BYTES / 2 + 1);
    assert!(matches!(
        TextMessage {
            server_flag: 1,
            text: &huge
        }
        .encode(1, &mut out),
        Err(DownlinkError::TooLong { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn the_longest_english_address_fills_the_frame_exactly() {
    let bytes = hex(ADDR_1A);
    let (_, m) = decode(&bytes);
    let Message::AddressRequest(req) = m else {
        panic!()
    };
    let huge = "A".repeat(70_000);
    let mut out = BytesMut::new();
    Reply::address(&req, &huge).encode(1, &mut out).unwrap();
    let mut dec = FrameDecoder::new(FrameConfig {
        max_frame_len: 70_000,
        ..FrameConfig::default()
    });
    let mut pos = 0;
    let f = dec.next_frame(&out, &mut pos).unwrap();
    assert_eq!(pos, out.len());
    assert_eq!(
        u16::from_be_bytes([out[2], out[3]]),
        u16::MAX,
        "the frame length field is full"
    );
    let inner = u16::from_be_bytes([f.content[0], f.content[1]]) as usize;
    assert_eq!(inner, f.content.len() - 2);
    assert!(f.content.ends_with(b"&&000000000000000000000##"));
}

// ---------------------------------------------------------------------------
// Truncated content
// ---------------------------------------------------------------------------

fn truncated(protocol: u8, content: &[u8]) -> MessageError {
    match Message::decode_content(protocol, content) {
        Err(e) => e,
        Ok(m) => panic!(
            "0x{protocol:02X} with {} bytes decoded: {m:?}",
            content.len()
        ),
    }
}

#[test]
fn truncated_content_names_the_message_field_and_offset() {
    // (frame, bytes kept, message, offset, field, needed, available)
    let cases: &[(&str, usize, &str, usize, &str, usize, usize)] = &[
        (LOGIN, 7, "login", 0, "imei", 8, 7),
        (HEARTBEAT, 2, "heartbeat", 0, "status", 3, 2),
        (HEARTBEAT_EXT, 1, "heartbeat_ext", 0, "status", 3, 1),
        (GPS_NE, 5, "gps", 0, "datetime", 6, 5),
        (GPS_NE, 17, "gps", 6, "gps", 12, 11),
        (GPS_NE, 25, "gps", 23, "cell_id", 3, 2),
        (GPS_NE, 26, "gps", 26, "acc", 1, 0),
        (GPS_NW, 21, "gps_4g", 20, "mnc", 2, 1),
        (GPS_NW, 30, "gps_4g", 26, "cell_id", 8, 4),
        (LBS, 8, "lbs", 8, "mnc", 1, 0),
        (LBS_REPLY, 9, "lbs_reply", 8, "mnc", 2, 1),
        (LBS_4G, 3, "lbs_4g", 0, "datetime", 6, 3),
        (WIFI, 50, "wifi", 9, "cells", 42, 41),
        (WIFI, 52, "wifi", 52, "wifi_count", 1, 0),
        (WIFI_4G, 123, "wifi_4g", 103, "wifi", 21, 20),
        (ALARM_A3, 18, "alarm_single_fence", 18, "lbs_length", 1, 0),
        (ALARM_A3, 30, "alarm_single_fence", 22, "cell", 12, 8),
        (ALARM_A4, 39, "alarm_multi_fence", 35, "status", 5, 4),
        (ALARM_A5, 10, "alarm_lbs_4g", 3, "cell", 12, 7),
        (ALARM_A9_2G, 40, "alarm_wifi", 40, "language", 1, 0),
        (ALARM_A9_2G, 20, "alarm_wifi", 11, "cells", 12, 9),
        (ALARM_A9_4G, 27, "alarm_wifi", 27, "alarm_code", 1, 0),
        (ADDR_17, 7, "lbs_address_request", 6, "language", 2, 1),
        (ADDR_1A, 6, "address_query", 6, "language", 2, 0),
        (ADDR_A7, 3, "lbs_4g_address_request", 0, "datetime", 6, 3),
        (ATT_B0_IN, 25, "attendance", 0, "head", 26, 25),
        (ATT_B0_IN, 28, "attendance", 28, "mnc", 1, 0),
        (ATT_B0_IN, 85, "attendance", 73, "wifi", 14, 12),
        (ATT_B1_OUT, 27, "attendance_4g", 26, "mcc", 2, 1),
        (ATT_B1_OUT, 122, "attendance_4g", 122, "wifi_count", 1, 0),
        (PUNCH_IN, 37, "bt_punch", 0, "punch", 38, 37),
        (BT_LOC_0, 6, "bt_location", 6, "beacon_count", 1, 0),
        (BT_LOC_3, 96, "bt_location", 7, "beacons", 90, 89),
        (GI_SIM_IDS, 0, "general_info", 0, "sub_protocol", 1, 0),
        (CMD_REPLY, 4, "command_reply", 1, "server_flag", 4, 3),
        (CMD_REPLY, 0, "command_reply", 0, "length", 1, 0),
    ];
    for &(frame, keep, message, offset, field, needed, available) in cases {
        let bytes = hex(frame);
        let f = frame_of(&bytes);
        assert!(
            keep < f.content.len(),
            "{message}: keep {keep} of {}",
            f.content.len()
        );
        let e = truncated(f.protocol, &f.content[..keep]);
        assert_eq!((e.message, e.offset), (message, offset), "{e}");
        assert_eq!(
            e.kind,
            MessageErrorKind::Truncated {
                field,
                needed,
                available
            },
            "{e}"
        );
        assert!(e.to_string().starts_with(message), "{e}");
    }
}

#[test]
fn time_sync_requests_never_fail() {
    // The reference reads the language only from 8 bytes or more; anything
    // shorter is a Chinese request, and 0x8A carries nothing it reads.
    let bytes = hex(TIME_SYNC_EN);
    let f = frame_of(&bytes);
    for keep in 0..8 {
        assert_eq!(
            Message::decode_content(0x1F, &f.content[..keep]),
            Ok(Message::TimeSync(TimeSyncRequest {
                device_time: None,
                language: 1
            }))
        );
    }
    assert_eq!(
        Message::decode_content(0x8A, &[1, 2, 3]),
        Ok(Message::TimeSync2)
    );
}

#[test]
fn lbs_without_a_whole_serving_cell_is_invalid() {
    for (frame, keep, message) in [
        (LBS, 14, "lbs"),
        (LBS_REPLY, 10, "lbs_reply"),
        (LBS_4G, 21, "lbs_4g"),
    ] {
        let bytes = hex(frame);
        let f = frame_of(&bytes);
        let e = truncated(f.protocol, &f.content[..keep]);
        let network_end = if message == "lbs_reply" { 10 } else { 9 };
        assert_eq!((e.message, e.offset), (message, network_end), "{e}");
        assert!(
            matches!(e.kind, MessageErrorKind::Invalid { field: "cells", .. }),
            "{e}"
        );
    }
}

#[test]
fn trailing_optional_fields_may_be_cut_without_error() {
    // 0xA4 without its fence id, 0x22 without mileage, 0x2E without language,
    // 0x13 without language, login without time zone.
    let bytes = hex(ALARM_A4);
    let (f, _) = decode(&bytes);
    let Message::Alarm(a) =
        Message::decode_content(0xA4, &f.content[..f.content.len() - 1]).unwrap()
    else {
        panic!()
    };
    assert_eq!(a.fence_id(), None);
    let bytes = hex(GPS_NE);
    let (f, _) = decode(&bytes);
    let Message::Gps(g) = Message::decode_content(0x22, &f.content[..f.content.len() - 4]).unwrap()
    else {
        panic!()
    };
    assert_eq!(g.tail.unwrap().mileage, None);
    let bytes = hex(LBS_REPLY);
    let (f, _) = decode(&bytes);
    let Message::Lbs(l) = Message::decode_content(0x2E, &f.content[..f.content.len() - 2]).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (l.cells.len(), l.timing_advance, l.language),
        (3, Some(0), None)
    );
    let bytes = hex(HEARTBEAT);
    let (f, _) = decode(&bytes);
    let Message::Heartbeat(h) = Message::decode_content(0x13, &f.content[..3]).unwrap() else {
        panic!()
    };
    assert_eq!(h.language, None);
    let bytes = hex(LOGIN);
    let (f, _) = decode(&bytes);
    let Message::Login(l) = Message::decode_content(0x01, &f.content[..10]).unwrap() else {
        panic!()
    };
    assert_eq!((l.type_code, l.tz_language), (Some(0x2404), None));
}

// ---------------------------------------------------------------------------
// Hand-written frames and replies
// ---------------------------------------------------------------------------

/// 0x01 login: 15-digit IMEI, type 0x2404, UTC+5:30 and English (530 << 4 | 2).
const LOGIN: &str = concat!(
    "78 78 11 01",              // short frame, length 17, protocol 0x01
    " 03 53 41 90 32 98 14 48", // IMEI 353419032981448 (BCD, one padding 0)
    " 24 04",                   // type code 0x2404
    " 21 22",                   // tz/lang: 530 << 4 = 0x2120, East, language 2
    " 00 01",                   // serial 0x0001
    " F7 6A 0D 0A",             // CRC-ITU, stop
);

/// 0x01 login: IMEI with a leading zero digit, UTC-3:00 (West bit) and Chinese.
const LOGIN_WEST: &str = concat!(
    "78 78 11 01",              // short frame, length 17, protocol 0x01
    " 00 12 34 56 78 90 12 34", // IMEI 012345678901234
    " 01 01",                   // type code 0x0101
    " 12 C9",                   // tz/lang: 300 << 4 = 0x12C0, West 0x08, language 1
    " 01 02",                   // serial 0x0102
    " 26 93 0D 0A",             // CRC-ITU, stop
);

/// 0x01 login from old firmware: a 16-digit IMEISV and nothing else.
const LOGIN_IMEI_ONLY: &str = concat!(
    "78 78 0D 01",              // short frame, length 13, protocol 0x01
    " 86 12 34 56 78 90 12 34", // IMEI 8612345678901234
    " 78 78",                   // serial 0x7878
    " 44 01 0D 0A",             // CRC-ITU, stop
);

/// 0x13 heartbeat: power cut + GPS fixed + charging, 85 %, signal 4, language 2.
const HEARTBEAT: &str = concat!(
    "78 78 0A 13",  // short frame, length 10, protocol 0x13
    " C8",          // terminal info: 0x80 power cut, 0x40 GPS, 0x08 charging
    " 55",          // battery 85 %
    " 04",          // GSM signal 4
    " 00 02",       // language 2
    " 00 10",       // serial 0x0010
    " C7 47 0D 0A", // CRC-ITU, stop
);

/// 0x13 heartbeat with vendor padding after the language (not an extension).
const HEARTBEAT_PADDED: &str = concat!(
    "78 78 0C 13",  // short frame, length 12, protocol 0x13
    " 00",          // terminal info 0
    " 14",          // battery 20 %
    " 01",          // GSM signal 1
    " 00 01",       // language 1
    " FF FF",       // vendor padding
    " 00 11",       // serial 0x0011
    " 90 0E 0D 0A", // CRC-ITU, stop
);

/// 0x36 extended heartbeat with four bytes of extension modules.
const HEARTBEAT_EXT: &str = concat!(
    "78 78 0E 36",  // short frame, length 14, protocol 0x36
    " 46",          // terminal info 0x46
    " 32",          // battery 50 %
    " 03",          // GSM signal 3
    " 00 01",       // language 1
    " 01 02 0A 0B", // extension modules
    " 00 12",       // serial 0x0012
    " 45 F9 0D 0A", // CRC-ITU, stop
);

/// 0x36 extended heartbeat with the status bytes only.
const HEARTBEAT_EXT_SHORT: &str = concat!(
    "78 78 08 36",  // short frame, length 8, protocol 0x36
    " 00",          // terminal info 0
    " 64",          // battery 100 %
    " 00",          // GSM signal 0
    " 00 13",       // serial 0x0013
    " 44 A4 0D 0A", // CRC-ITU, stop
);

/// 0x22 GPS, Shenzhen (N/E), 2G serving cell, 1-byte MNC, mileage.
const GPS_NE: &str = concat!(
    "78 78 26 22",        // short frame, length 38, protocol 0x22
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " C9",                // GPS info: 12-byte block, 9 satellites
    " 02 69 FB 20",       // latitude 22.5 N = 40500000
    " 0C 38 5B 60",       // longitude 113.9 E = 205020000
    " 28",                // speed 40 km/h
    " 35 0E",             // course 270, real-time, positioned, N/E
    " 01 CC 00",          // MCC 460, MNC 0
    " 25 1A",             // LAC 0x251A
    " 0A BC DE",          // cell id 0x0ABCDE
    " 01",                // ACC on
    " 00",                // upload mode 0
    " 01",                // re-upload 1
    " 00 01 E2 40",       // mileage 123456
    " 00 20",             // serial 0x0020
    " 47 71 0D 0A",       // CRC-ITU, stop
);

/// 0x22 GPS, Sydney (S/E), positioned but not real-time, no tail.
const GPS_SE: &str = concat!(
    "78 78 17 22",        // short frame, length 23, protocol 0x22
    " 17 0C 1F 17 3B 3B", // datetime 2023-12-31 23:59:59
    " C4",                // GPS info: 12-byte block, 4 satellites
    " 03 A3 17 60",       // latitude 33.9 S = 61020000
    " 10 38 D5 00",       // longitude 151.2 E = 272160000
    " 00",                // speed 0 km/h
    " 10 00",             // course 0, positioned, S/E
    " 00 21",             // serial 0x0021
    " 87 E4 0D 0A",       // CRC-ITU, stop
);

/// 0xA0 4G GPS, New York (N/W), 2-byte MNC 260 (MCC high bit), 4G cell, mileage.
const GPS_NW: &str = concat!(
    "78 78 2E A0",              // short frame, length 46, protocol 0xA0
    " 18 05 01 08 1E 00",       // datetime 2024-05-01 08:30:00
    " CC",                      // GPS info: 12-byte block, 12 satellites
    " 04 5D DB E0",             // latitude 40.7 N = 73260000
    " 07 F0 78 80",             // longitude 74.0 W = 133200000
    " 58",                      // speed 88 km/h
    " 3D 67",                   // course 359, real-time, positioned, N/W
    " 81 36 01 04",             // MCC 310 (high bit: 2-byte MNC), MNC 260
    " 00 00 1F 40",             // LAC 8000
    " 00 00 00 00 0A 1B 2C 3D", // cell id 0x0A1B2C3D
    " 00",                      // ACC off
    " 02",                      // upload mode 2
    " 00",                      // re-upload 0
    " 00 00 03 E8",             // mileage 1000
    " 00 22",                   // serial 0x0022
    " 53 83 0D 0A",             // CRC-ITU, stop
);

/// 0xA0 4G GPS, Buenos Aires (S/W), wide MNC 007, LAC above 16 bits, no mileage.
const GPS_SW: &str = concat!(
    "78 78 2A A0",              // short frame, length 42, protocol 0xA0
    " 18 05 01 08 1E 00",       // datetime 2024-05-01 08:30:00
    " C7",                      // GPS info: 12-byte block, 7 satellites
    " 03 B6 51 40",             // latitude 34.6 S = 62280000
    " 06 44 01 00",             // longitude 58.4 W = 105120000
    " 05",                      // speed 5 km/h
    " 38 5A",                   // course 90, real-time, positioned, S/W
    " 82 D2 00 07",             // MCC 722 (high bit: 2-byte MNC), MNC 7
    " 00 01 00 00",             // LAC 65536
    " 00 00 01 00 00 00 00 01", // cell id 0x10000000001
    " 01",                      // ACC on
    " 00",                      // upload mode 0
    " 01",                      // re-upload 1
    " 00 23",                   // serial 0x0023
    " D4 C6 0D 0A",             // CRC-ITU, stop
);

/// 0x28 LBS: main cell, two neighbours (one with LAC 0), zeroed slots, TA and language.
const LBS: &str = concat!(
    "78 78 3B 28",        // short frame, length 59, protocol 0x28
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 01 CC 00",          // MCC 460, MNC 0
    " 25 1A 00 0F A1 3C", // main: LAC 0x251A, cell 0x000FA1, RSSI 60
    " 25 1A 00 0F A2 32", // neighbour 1: LAC 0x251A, cell 0x000FA2, RSSI 50
    " 00 00 00 10 01 28", // neighbour 2 (LAC 0, cell set: kept): LAC 0x0000, cell 0x001001, RSSI 40
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 1E", // neighbour: empty slot with a signal byte
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 05",                // timing advance 5
    " 00 01",             // language 1
    " 00 30",             // serial 0x0030
    " BD 18 0D 0A",       // CRC-ITU, stop
);

/// 0x28 LBS from firmware that saw one cell: no neighbours, no TA, no language.
const LBS_MIN: &str = concat!(
    "78 78 14 28",        // short frame, length 20, protocol 0x28
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 01 CC 01",          // MCC 460, MNC 1
    " 10 00 12 34 56 50", // main: LAC 0x1000, cell 0x123456, RSSI 80
    " 00 31",             // serial 0x0031
    " 46 E7 0D 0A",       // CRC-ITU, stop
);

/// 0x2E LBS (acknowledged): three stations, wide MNC 11, TA, language 2.
const LBS_REPLY: &str = concat!(
    "78 78 24 2E",        // short frame, length 36, protocol 0x2E
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 81 CC 00 0B",       // MCC 460 (high bit: 2-byte MNC), MNC 11
    " 10 00 12 34 56 50", // main: LAC 0x1000, cell 0x123456, RSSI 80
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 10 01 12 34 57 20", // neighbour 2: LAC 0x1001, cell 0x123457, RSSI 32
    " 00",                // timing advance 0
    " 00 02",             // language 2
    " 00 32",             // serial 0x0032
    " 5B 7F 0D 0A",       // CRC-ITU, stop
);

/// 0xA1 4G LBS: seven 4G stations (two real neighbours), TA, no language.
const LBS_4G: &str = concat!(
    "78 78 6A A1",                             // short frame, length 106, protocol 0xA1
    " 18 05 01 08 1E 00",                      // datetime 2024-05-01 08:30:00
    " 01 CC 00",                               // MCC 460, MNC 0
    " 00 00 25 1A 00 00 00 00 0F A1 00 01 3C", // main: LAC 9498, cell 0xFA10001, RSSI 60
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 25 1B 00 00 00 00 0F A1 00 02 30", // neighbour 2: LAC 9499, cell 0xFA10002, RSSI 48
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 01 00 00 00 00 FF FF FF FF FF FF 10", // neighbour 5: LAC 65536, cell 0xFFFFFFFFFFFF, RSSI 16
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 02",                                     // timing advance 2
    " 00 33",                                  // serial 0x0033
    " AF 24 0D 0A",                            // CRC-ITU, stop
);

/// 0x2C WiFi: seven 2G stations, TA, no access points.
const WIFI: &str = concat!(
    "78 78 3A 2C",        // short frame, length 58, protocol 0x2C
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 01 CC 00",          // MCC 460, MNC 0
    " 25 1A 00 0F A1 3C", // main: LAC 0x251A, cell 0x000FA1, RSSI 60
    " 25 1A 00 0F A2 32", // neighbour 1: LAC 0x251A, cell 0x000FA2, RSSI 50
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 03",                // timing advance 3
    " 00",                // 0 access points
    " 00 40",             // serial 0x0040
    " 1B 72 0D 0A",       // CRC-ITU, stop
);

/// 0xA2 4G WiFi: wide MNC 1, seven 4G stations, three access points.
const WIFI_4G: &str = concat!(
    "78 78 81 A2",                             // short frame, length 129, protocol 0xA2
    " 18 05 01 08 1E 00",                      // datetime 2024-05-01 08:30:00
    " 81 CC 00 01",                            // MCC 460 (high bit: 2-byte MNC), MNC 1
    " 00 00 25 1A 00 00 00 00 0F A1 00 01 3C", // main: LAC 9498, cell 0xFA10001, RSSI 60
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00",                                     // timing advance 0
    " 03",                                     // 3 access points
    " AC 23 3F 01 02 03 C4",                   // WiFi AP AC:23:3F:01:02:03, signal 196
    " 00 11 22 33 44 55 50",                   // WiFi AP 00:11:22:33:44:55, signal 80
    " FF EE DD CC BB AA 01",                   // WiFi AP FF:EE:DD:CC:BB:AA, signal 1
    " 00 41",                                  // serial 0x0041
    " 3C F1 0D 0A",                            // CRC-ITU, stop
);

/// 0x2C WiFi with two access points.
const WIFI_2G_APS: &str = concat!(
    "78 78 48 2C",           // short frame, length 72, protocol 0x2C
    " 18 05 01 08 1E 00",    // datetime 2024-05-01 08:30:00
    " 01 CC 00",             // MCC 460, MNC 0
    " 25 1A 00 0F A1 3C",    // main: LAC 0x251A, cell 0x000FA1, RSSI 60
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 01",                   // timing advance 1
    " 02",                   // 2 access points
    " AC 23 3F 01 02 03 C4", // WiFi AP AC:23:3F:01:02:03, signal 196
    " 00 11 22 33 44 55 50", // WiFi AP 00:11:22:33:44:55, signal 80
    " 00 42",                // serial 0x0042
    " 4C ED 0D 0A",          // CRC-ITU, stop
);

/// 0x1F time sync request: device clock, language 2.
const TIME_SYNC_EN: &str = concat!(
    "78 78 0D 1F",        // short frame, length 13, protocol 0x1F
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 00 02",             // language 2
    " 00 50",             // serial 0x0050
    " 8D 07 0D 0A",       // CRC-ITU, stop
);

/// 0x1F time sync request: device clock, language 1.
const TIME_SYNC_ZH: &str = concat!(
    "78 78 0D 1F",        // short frame, length 13, protocol 0x1F
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 00 01",             // language 1
    " 00 51",             // serial 0x0051
    " 73 EA 0D 0A",       // CRC-ITU, stop
);

/// 0x1F time sync request without content: Chinese by default.
const TIME_SYNC_EMPTY: &str = concat!(
    "78 78 05 1F",  // short frame, length 5, protocol 0x1F
    " 00 52",       // serial 0x0052
    " 2C 4C 0D 0A", // CRC-ITU, stop
);

/// 0x8A time sync request.
const TIME_SYNC_2: &str = concat!(
    "78 78 05 8A",  // short frame, length 5, protocol 0x8A
    " 00 53",       // serial 0x0053
    " 8D 01 0D 0A", // CRC-ITU, stop
);

/// 0xA3 single-fence alarm: positioned GPS, SOS; a trailing byte is no fence id here.
const ALARM_A3: &str = concat!(
    "78 78 2D A3",              // short frame, length 45, protocol 0xA3
    " 18 05 01 08 1E 00",       // datetime 2024-05-01 08:30:00
    " C8",                      // GPS info: 12-byte block, 8 satellites
    " 02 69 FB 20",             // latitude 22.5 N = 40500000
    " 0C 38 5B 60",             // longitude 113.9 E = 205020000
    " 0C",                      // speed 12 km/h
    " 34 B4",                   // course 180, real-time, positioned, N/E
    " 0F",                      // LBS length 15
    " 01 CC 00",                // MCC 460, MNC 0
    " 00 00 25 1A",             // LAC 0x251A
    " 00 00 00 00 0A BC DE F0", // cell id 0x0ABCDEF0
    " 44",                      // terminal info
    " 05",                      // voltage level 5
    " 03",                      // GSM signal 3
    " 01",                      // alarm code 0x01 (sos)
    " 01",                      // language 1
    " 09",                      // trailing byte
    " 00 60",                   // serial 0x0060
    " 56 02 0D 0A",             // CRC-ITU, stop
);

/// 0xA4 multi-fence alarm: GPS not positioned, wide MNC, exit fence, fence id 7.
const ALARM_A4: &str = concat!(
    "78 78 2E A4",              // short frame, length 46, protocol 0xA4
    " 18 05 01 08 1E 00",       // datetime 2024-05-01 08:30:00
    " C0",                      // GPS info: 12-byte block, 0 satellites
    " 02 69 FB 20",             // latitude 22.5 N = 40500000
    " 0C 38 5B 60",             // longitude 113.9 E = 205020000
    " 00",                      // speed 0 km/h
    " 04 00",                   // course 0, N/E
    " 10",                      // LBS length 16
    " 81 CC 00 01",             // MCC 460 (high bit: 2-byte MNC), MNC 1
    " 00 00 25 1B",             // LAC 0x251B
    " 00 00 00 00 00 00 0F A1", // cell id 0x0FA1
    " 02",                      // terminal info
    " 06",                      // voltage level 6
    " 04",                      // GSM signal 4
    " 05",                      // alarm code 0x05 (exit_fence)
    " 02",                      // language 2
    " 07",                      // fence id 7
    " 00 61",                   // serial 0x0061
    " A3 CA 0D 0A",             // CRC-ITU, stop
);

/// 0xA5 LBS alarm: no datetime, voltage level 7 (unknown), unlisted code 0x7E.
const ALARM_A5: &str = concat!(
    "78 78 19 A5",              // short frame, length 25, protocol 0xA5
    " 01 CC 00",                // MCC 460, MNC 0
    " 00 01 86 A0",             // LAC 100000
    " 00 00 00 12 34 56 78 9A", // cell id 0x123456789A
    " 80",                      // terminal info
    " 07",                      // voltage level 7
    " 00",                      // GSM signal 0
    " 7E",                      // alarm code 0x7E (unlisted)
    " 01",                      // language 1
    " 00 62",                   // serial 0x0062
    " 34 6C 0D 0A",             // CRC-ITU, stop
);

/// 0xA9 WiFi alarm, 2G cells: two stations, two access points.
const ALARM_A9_2G: &str = concat!(
    "78 78 2E A9",           // short frame, length 46, protocol 0xA9
    " 18 05 01 08 1E 00",    // datetime 2024-05-01 08:30:00
    " 01 CC 01",             // MCC 460, MNC 1
    " 00",                   // cell type 0: 2G
    " 02",                   // 2 stations
    " 25 1A 00 0F A1 3C",    // main: LAC 0x251A, cell 0x000FA1, RSSI 60
    " 25 1A 00 0F A2 32",    // neighbour 1: LAC 0x251A, cell 0x000FA2, RSSI 50
    " 04",                   // timing advance 4
    " 02",                   // 2 access points
    " AC 23 3F 01 02 03 C4", // WiFi AP AC:23:3F:01:02:03, signal 196
    " 00 11 22 33 44 55 50", // WiFi AP 00:11:22:33:44:55, signal 80
    " 01",                   // alarm code 0x01 (sos)
    " 02",                   // language 2
    " 00 63",                // serial 0x0063
    " 9E A7 0D 0A",          // CRC-ITU, stop
);

/// 0xA9 WiFi alarm, 4G cells: one station, no access point, tamper.
const ALARM_A9_4G: &str = concat!(
    "78 78 22 A9",                             // short frame, length 34, protocol 0xA9
    " 18 05 01 08 1E 00",                      // datetime 2024-05-01 08:30:00
    " 81 36 01 04",                            // MCC 310 (high bit: 2-byte MNC), MNC 260
    " 01",                                     // cell type 1: 4G
    " 01",                                     // 1 station
    " 00 01 86 A0 00 00 00 12 34 56 78 9A 2A", // main: LAC 100000, cell 0x123456789A, RSSI 42
    " 00",                                     // timing advance 0
    " 00",                                     // 0 access points
    " 13",                                     // alarm code 0x13 (tamper)
    " 01",                                     // language 1
    " 00 64",                                  // serial 0x0064
    " 89 A6 0D 0A",                            // CRC-ITU, stop
);

/// 0x17 LBS address request: serving cell, phone, language 1 (Chinese).
const ADDR_17: &str = concat!(
    "78 78 2A 17",        // short frame, length 42, protocol 0x17
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 01 CC 00",          // MCC 460, MNC 0
    " 25 1A",             // LAC 0x251A
    " 00 0F A1",          // cell id 0x000FA1
    " 2B 38 36 31 33 38 30 30 31 33 38 30 30 30 00 00 00 00 00 00 00", // "+8613800138000" padded to 21
    " 00 01",                                                          // language 1
    " 00 70",                                                          // serial 0x0070
    " A6 4D 0D 0A",                                                    // CRC-ITU, stop
);

/// 0x1A address query: GPS block, phone, language 2 (English).
const ADDR_1A: &str = concat!(
    "78 78 2E 1A",        // short frame, length 46, protocol 0x1A
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " C6",                // GPS info: 12-byte block, 6 satellites
    " 02 69 FB 20",       // latitude 22.5 N = 40500000
    " 0C 38 5B 60",       // longitude 113.9 E = 205020000
    " 00",                // speed 0 km/h
    " 34 00",             // course 0, real-time, positioned, N/E
    " 31 33 38 30 30 31 33 38 30 30 30 00 00 00 00 00 00 00 00 00 00", // "13800138000" padded to 21
    " 00 02",             // language 2
    " 00 71",             // serial 0x0071
    " C3 17 0D 0A",       // CRC-ITU, stop
);

/// 0xA7 4G LBS address request: wide MNC, 4G cell, language 2.
const ADDR_A7: &str = concat!(
    "78 78 1D A7",              // short frame, length 29, protocol 0xA7
    " 18 05 01 08 1E 00",       // datetime 2024-05-01 08:30:00
    " 81 CC 00 0B",             // MCC 460 (high bit: 2-byte MNC), MNC 11
    " 00 01 86 A0",             // LAC 100000
    " 00 00 00 01 23 45 67 89", // cell id 0x123456789
    " 00 02",                   // language 2
    " 00 72",                   // serial 0x0072
    " 73 49 0D 0A",             // CRC-ITU, stop
);

/// 0xB0 attendance, clock-in, GPS fix, 2G cells, two access points.
const ATT_B0_IN: &str = concat!(
    "78 78 5C B0",           // short frame, length 92, protocol 0xB0
    " 18 05 01 08 1E 00",    // datetime 2024-05-01 08:30:00
    " 01",                   // GPS flag 1
    " AB CD",                // reserved (echoed)
    " C9",                   // GPS info: 12-byte block, 9 satellites
    " 02 69 FB 20",          // latitude 22.5 N = 40500000
    " 0C 38 5B 60",          // longitude 113.9 E = 205020000
    " 00",                   // speed 0 km/h
    " 34 00",                // course 0, real-time, positioned, N/E
    " 44",                   // terminal info: clock-in (0b0001 << 2) + GPS
    " 04",                   // voltage level 4
    " 03",                   // GSM signal 3
    " 00 00",                // reserved
    " 01 CC 00",             // MCC 460, MNC 0
    " 25 1A 00 0F A1 3C",    // main: LAC 0x251A, cell 0x000FA1, RSSI 60
    " 25 1A 00 0F A2 32",    // neighbour 1: LAC 0x251A, cell 0x000FA2, RSSI 50
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 00 00 00 00 00 00",    // neighbour: empty slot
    " 01",                   // timing advance 1
    " 02",                   // 2 access points
    " AC 23 3F 01 02 03 C4", // WiFi AP AC:23:3F:01:02:03, signal 196
    " 00 11 22 33 44 55 50", // WiFi AP 00:11:22:33:44:55, signal 80
    " 00 80",                // serial 0x0080
    " E3 4F 0D 0A",          // CRC-ITU, stop
);

/// 0xB0 attendance, clock-out, no fix, 2G cells, no access point.
const ATT_B0_OUT: &str = concat!(
    "78 78 4E B0",        // short frame, length 78, protocol 0xB0
    " 18 05 01 12 00 05", // datetime 2024-05-01 18:00:05
    " 00",                // GPS flag 0
    " 00 07",             // reserved (echoed)
    " C0",                // GPS info: 12-byte block, 0 satellites
    " 00 00 00 00",       // latitude 0.0 N = 0
    " 00 00 00 00",       // longitude 0.0 E = 0
    " 00",                // speed 0 km/h
    " 04 00",             // course 0, N/E
    " 08",                // terminal info: clock-out (0b0010 << 2)
    " 02",                // voltage level 2
    " 02",                // GSM signal 2
    " 00 00",             // reserved
    " 01 CC 00",          // MCC 460, MNC 0
    " 25 1A 00 0F A1 3C", // main: LAC 0x251A, cell 0x000FA1, RSSI 60
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00", // neighbour: empty slot
    " 00",                // timing advance 0
    " 00",                // 0 access points
    " 00 81",             // serial 0x0081
    " DD 9D 0D 0A",       // CRC-ITU, stop
);

/// 0xB1 4G attendance, clock-out; GPS flag 1 but the fix says not positioned.
const ATT_B1_OUT: &str = concat!(
    "78 78 80 B1",                             // short frame, length 128, protocol 0xB1
    " 18 05 01 12 00 00",                      // datetime 2024-05-01 18:00:00
    " 01",                                     // GPS flag 1
    " 12 34",                                  // reserved (echoed)
    " C3",                                     // GPS info: 12-byte block, 3 satellites
    " 02 69 FB 20",                            // latitude 22.5 N = 40500000
    " 0C 38 5B 60",                            // longitude 113.9 E = 205020000
    " 00",                                     // speed 0 km/h
    " 04 00",                                  // course 0, N/E
    " 48",                                     // terminal info: clock-out + GPS
    " 06",                                     // voltage level 6
    " 04",                                     // GSM signal 4
    " 00 00",                                  // reserved
    " 81 CC 00 01",                            // MCC 460 (high bit: 2-byte MNC), MNC 1
    " 00 00 25 1A 00 00 00 00 0F A1 00 01 3C", // main: LAC 9498, cell 0xFA10001, RSSI 60
    " 00 00 25 1A 00 00 00 00 0F A1 00 02 20", // neighbour 1: LAC 9498, cell 0xFA10002, RSSI 32
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00",                                     // timing advance 0
    " 00",                                     // 0 access points
    " 00 82",                                  // serial 0x0082
    " DE C8 0D 0A",                            // CRC-ITU, stop
);

/// 0xB1 4G attendance, clock-in; MCC without the high bit still has a 2-byte MNC.
const ATT_B1_IN: &str = concat!(
    "78 78 87 B1",                             // short frame, length 135, protocol 0xB1
    " 18 05 01 08 1E 00",                      // datetime 2024-05-01 08:30:00
    " 01",                                     // GPS flag 1
    " FF 00",                                  // reserved (echoed)
    " C5",                                     // GPS info: 12-byte block, 5 satellites
    " 03 A3 17 60",                            // latitude 33.9 S = 61020000
    " 10 38 D5 00",                            // longitude 151.2 E = 272160000
    " 00",                                     // speed 0 km/h
    " 30 00",                                  // course 0, real-time, positioned, S/E
    " 04",                                     // terminal info: clock-in
    " 00",                                     // voltage level 0
    " 01",                                     // GSM signal 1
    " 00 00",                                  // reserved
    " 01 CC 00 02", // MCC 460 (no high bit), MNC 2 (always 2 bytes in 0xB1)
    " 00 00 25 1A 00 00 00 00 0F A1 00 01 3C", // main: LAC 9498, cell 0xFA10001, RSSI 60
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 00 00 00 00 00 00 00 00 00 00 00 00 00", // neighbour: empty slot
    " 07",          // timing advance 7
    " 01",          // 1 access point
    " AC 23 3F 01 02 03 C4", // WiFi AP AC:23:3F:01:02:03, signal 196
    " 00 83",       // serial 0x0083
    " BF E7 0D 0A", // CRC-ITU, stop
);

/// 0xB2 Bluetooth punch, clock-in.
const PUNCH_IN: &str = concat!(
    "78 78 2B B2",        // short frame, length 43, protocol 0xB2
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " C5",                // RSSI -59 dBm
    " AC 23 3F 5A 10 01", // beacon MAC
    " FD A5 06 93 A4 E2 4F B1 AF CF C6 EB 07 64 78 25", // UUID FDA50693-A4E2-4FB1-AFCF-C6EB07647825
    " 27 11",             // major 10001
    " 02 03",             // minor 515
    " 01 2C",             // battery 300 = 3.00 V
    " 04",                // terminal info: clock-in
    " 12 34",             // reserved (echoed)
    " 00 90",             // serial 0x0090
    " 2B 44 0D 0A",       // CRC-ITU, stop
);

/// 0xB2 Bluetooth punch, clock-out.
const PUNCH_OUT: &str = concat!(
    "78 78 2B B2",        // short frame, length 43, protocol 0xB2
    " 18 05 01 12 01 02", // datetime 2024-05-01 18:01:02
    " 9C",                // RSSI -100 dBm
    " AC 23 3F 5A 10 01", // beacon MAC
    " FD A5 06 93 A4 E2 4F B1 AF CF C6 EB 07 64 78 25", // UUID FDA50693-A4E2-4FB1-AFCF-C6EB07647825
    " 27 11",             // major 10001
    " 02 03",             // minor 515
    " 01 2C",             // battery 300 = 3.00 V
    " 08",                // terminal info: clock-out
    " 00 FF",             // reserved (echoed)
    " 00 91",             // serial 0x0091
    " 5A 02 0D 0A",       // CRC-ITU, stop
);

/// 0xB3 Bluetooth location with no beacon.
const BT_LOC_0: &str = concat!(
    "78 78 0C B3",        // short frame, length 12, protocol 0xB3
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 00",                // 0 beacons
    " 00 A0",             // serial 0x00A0
    " 9C 13 0D 0A",       // CRC-ITU, stop
);

/// 0xB3 Bluetooth location with one beacon (battery in volts).
const BT_LOC_1: &str = concat!(
    "78 78 2A B3",        // short frame, length 42, protocol 0xB3
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 01",                // 1 beacon
    " BA",                // beacon RSSI -70 dBm
    " AC 23 3F 5A 10 01", // MAC
    " FD A5 06 93 A4 E2 4F B1 AF CF C6 EB 07 64 78 25", // UUID FDA50693-A4E2-4FB1-AFCF-C6EB07647825
    " 27 11",             // major 10001
    " 00 01",             // minor 1
    " 01 36",             // battery raw 310
    " 00",                // unit: 0.01 V
    " 00 A1",             // serial 0x00A1
    " 51 37 0D 0A",       // CRC-ITU, stop
);

/// 0xB3 Bluetooth location, three beacons, sent as a 79 79 long frame as badges do.
const BT_LOC_3: &str = concat!(
    "79 79 00 66 B3",     // long frame, length 102, protocol 0xB3
    " 18 05 01 08 1E 00", // datetime 2024-05-01 08:30:00
    " 03",                // 3 beacons
    " B0",                // beacon RSSI -80 dBm
    " AC 23 3F 5A 10 01", // MAC
    " FD A5 06 93 A4 E2 4F B1 AF CF C6 EB 07 64 78 25", // UUID FDA50693-A4E2-4FB1-AFCF-C6EB07647825
    " 27 11",             // major 10001
    " 00 01",             // minor 1
    " 01 27",             // battery raw 295
    " 00",                // unit: 0.01 V
    " D3",                // beacon RSSI -45 dBm
    " AC 23 3F 5A 10 02", // MAC
    " FD A5 06 93 A4 E2 4F B1 AF CF C6 EB 07 64 78 25", // UUID FDA50693-A4E2-4FB1-AFCF-C6EB07647825
    " 27 11",             // major 10001
    " 00 02",             // minor 2
    " 00 5A",             // battery raw 90
    " 01",                // unit: percent
    " 80",                // beacon RSSI -128 dBm
    " AC 23 3F 5A 10 03", // MAC
    " FD A5 06 93 A4 E2 4F B1 AF CF C6 EB 07 64 78 25", // UUID FDA50693-A4E2-4FB1-AFCF-C6EB07647825
    " FF FF",             // major 65535
    " 00 00",             // minor 0
    " 00 4B",             // battery raw 75
    " 64",                // unit: percent
    " 00 A2",             // serial 0x00A2
    " 97 B5 0D 0A",       // CRC-ITU, stop
);

/// 0x94 sub-protocol 0x0A: IMEI, IMSI, ICCID (19 digits, F-padded).
const GI_SIM_IDS: &str = concat!(
    "78 78 20 94",                    // short frame, length 32, protocol 0x94
    " 0A",                            // sub-protocol 0x0A
    " 03 53 41 90 32 98 14 48",       // IMEI
    " 04 60 01 12 34 56 78 90",       // IMSI 460011234567890
    " 89 86 01 12 34 56 78 90 12 3F", // ICCID 8986011234567890123f
    " 00 B0",                         // serial 0x00B0
    " 2B EB 0D 0A",                   // CRC-ITU, stop
);

/// 0x94 sub-protocol 0x00: ICCID only.
const GI_ICCID: &str = concat!(
    "78 78 10 94",                    // short frame, length 16, protocol 0x94
    " 00",                            // sub-protocol 0x00
    " 89 86 01 12 34 56 78 90 12 34", // ICCID 89860112345678901234
    " 00 B1",                         // serial 0x00B1
    " 83 87 0D 0A",                   // CRC-ITU, stop
);

/// 0x94 sub-protocol 0x09: GPS status 3 (3D).
const GI_GPS_STATUS: &str = concat!(
    "78 78 07 94",  // short frame, length 7, protocol 0x94
    " 09",          // sub-protocol 0x09
    " 03",          // 3D fix
    " 00 B2",       // serial 0x00B2
    " 78 C5 0D 0A", // CRC-ITU, stop
);

/// 0x94 sub-protocol 0x04, kept raw.
const GI_OTHER: &str = concat!(
    "78 78 09 94",  // short frame, length 9, protocol 0x94
    " 04",          // sub-protocol 0x04
    " 41 42 43",    // "ABC"
    " 00 B3",       // serial 0x00B3
    " E8 DB 0D 0A", // CRC-ITU, stop
);

/// 0x94 sub-protocol 0x0A too short for its layout: kept raw.
const GI_SIM_IDS_SHORT: &str = concat!(
    "78 78 10 94",                    // short frame, length 16, protocol 0x94
    " 0A",                            // sub-protocol 0x0A
    " 03 53 41 90 32 98 14 48 04 60", // 10 bytes only
    " 00 B4",                         // serial 0x00B4
    " DE 26 0D 0A",                   // CRC-ITU, stop
);

/// 0x81 command reply: length, server flag 42, text, language 2.
const CMD_REPLY: &str = concat!(
    "78 78 14 81",              // short frame, length 20, protocol 0x81
    " 0E",                      // length 14
    " 00 00 00 2A",             // server flag 42
    " 52 45 53 45 54 20 4F 4B", // "RESET OK"
    " 00 02",                   // language 2
    " 00 C0",                   // serial 0x00C0
    " 3B 12 0D 0A",             // CRC-ITU, stop
);

/// 0x81 command reply of 7 content bytes: no language.
const CMD_REPLY_SHORT: &str = concat!(
    "78 78 0C 81",  // short frame, length 12, protocol 0x81
    " 03",          // length 3
    " 00 00 01 00", // server flag 256
    " 4F 4B",       // "OK"
    " 00 C1",       // serial 0x00C1
    " ED CD 0D 0A", // CRC-ITU, stop
);

/// An unknown protocol number 0x5A: kept raw.
const UNKNOWN: &str = concat!(
    "78 78 09 5A",  // short frame, length 9, protocol 0x5A
    " DE AD BE EF", // content
    " FF FF",       // serial 0xFFFF
    " 22 39 0D 0A", // CRC-ITU, stop
);

/// Login ack, serial 0x0001 echoed.
const R_LOGIN: &str = "78 78 05 01 00 01 D9 DC 0D 0A";

/// Login ack, serial 0x0102.
const R_LOGIN_WEST: &str = "78 78 05 01 01 02 F2 9F 0D 0A";

/// 0x13 ack.
const R_HEARTBEAT: &str = "78 78 05 13 00 10 E8 F9 0D 0A";

/// 0x36 ack.
const R_HEARTBEAT_EXT: &str = "78 78 05 36 00 12 F1 6D 0D 0A";

/// 0x2E ack.
const R_LBS_REPLY: &str = "78 78 05 2E 00 32 93 38 0D 0A";

/// 0x26 alarm ack for the 0xA3 alarm, serial 0x0060.
const R_ALARM_ACK_A3: &str = "78 78 05 26 00 60 24 6D 0D 0A";

/// 0x26 alarm ack for the 0xA4 alarm, serial 0x0061.
const R_ALARM_ACK_A4: &str = "78 78 05 26 00 61 35 E4 0D 0A";

/// 0x26 alarm ack for the 0xA5 alarm, serial 0x0062.
const R_ALARM_ACK_A5: &str = "78 78 05 26 00 62 07 7F 0D 0A";

/// 0x26 alarm ack for the 0xA9 alarm, serial 0x0063.
const R_ALARM_ACK_A9_2G: &str = "78 78 05 26 00 63 16 F6 0D 0A";

/// 0x26 alarm ack for the 0xA9 alarm, serial 0x0064.
const R_ALARM_ACK_A9_4G: &str = "78 78 05 26 00 64 62 49 0D 0A";

/// 0x1F reply to language 1: 1735689599 + 8 h = 1735718399, language 1.
const R_TIME_SYNC_ZH: &str = "78 78 0B 1F 67 74 F5 FF 00 01 00 51 1E 1F 0D 0A";

/// 0x1F reply to a request without language: Chinese, 1735718399.
const R_TIME_SYNC_EMPTY: &str = "78 78 0B 1F 67 74 F5 FF 00 01 00 52 2C 84 0D 0A";

/// 0x1F reply to language 2: plain Unix time 1735689599, language 2.
const R_TIME_SYNC_EN: &str = "78 78 0B 1F 67 74 85 7F 00 02 00 50 AF A6 0D 0A";

/// 0x8A reply: 2025-01-01T07:59:59+08:00 (UTC+8).
const R_TIME_SYNC_2: &str = "78 78 0B 8A 19 01 01 07 3B 3B 00 53 41 77 0D 0A";

/// 0x17 ADDRESS reply to the 0x17 request: "广东省深圳市南山区科技园" in UTF-16BE.
const R_ADDRESS_ZH: &str = concat!(
    "78 78 44 17 3E 00 00 00 00 41 44 44 52 45 53 53 26 26 5E 7F 4E 1C 77 01 6D F1 57 33 5E 02 53 57 ",
    "5C 71 53 3A 79 D1 62 80 56 ED 26 26 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 ",
    "30 23 23 00 70 84 CE 0D 0A ",
);

/// 0x97 ADDRESS reply to the 0x1A request (language 2): "1 Science Park Rd, Nanshan, Shenzhen".
const R_ADDRESS_EN: &str = concat!(
    "78 78 75 97 00 6E 00 00 00 00 41 44 44 52 45 53 53 26 26 00 31 00 20 00 53 00 63 00 69 00 65 00 ",
    "6E 00 63 00 65 00 20 00 50 00 61 00 72 00 6B 00 20 00 52 00 64 00 2C 00 20 00 4E 00 61 00 6E 00 ",
    "73 00 68 00 61 00 6E 00 2C 00 20 00 53 00 68 00 65 00 6E 00 7A 00 68 00 65 00 6E 26 26 30 30 30 ",
    "30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 23 23 00 71 59 4A 0D 0A ",
);

/// 0x17 ADDRESS reply with no address known.
const R_ADDRESS_EMPTY: &str = concat!(
    "78 78 2C 17 26 00 00 00 00 41 44 44 52 45 53 53 26 26 26 26 30 30 30 30 30 30 30 30 30 30 30 30 ",
    "30 30 30 30 30 30 30 30 30 23 23 00 70 C2 1B 0D 0A ",
);

/// 0x17 ALARMSMS reply after the 0xA3 alarm: "深圳市南山区".
const R_ALARMSMS: &str = concat!(
    "78 78 39 17 33 00 00 00 00 41 4C 41 52 4D 53 4D 53 26 26 6D F1 57 33 5E 02 53 57 5C 71 53 3A 26 ",
    "26 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 23 23 00 60 41 7E 0D 0A ",
);

/// 0x97 reply to the 0xA7 request with a 167-character address: needs 79 79.
const R_ADDRESS_LONG: &str = concat!(
    "79 79 01 7B 97 01 74 00 00 00 00 41 44 44 52 45 53 53 26 26 00 42 00 75 00 69 00 6C 00 64 00 69 ",
    "00 6E 00 67 00 20 00 37 00 2C 00 20 00 50 00 68 00 61 00 73 00 65 00 20 00 32 00 2C 00 20 00 53 ",
    "00 68 00 65 00 6E 00 7A 00 68 00 65 00 6E 00 20 00 42 00 61 00 79 00 20 00 53 00 63 00 69 00 65 ",
    "00 6E 00 63 00 65 00 20 00 61 00 6E 00 64 00 20 00 54 00 65 00 63 00 68 00 6E 00 6F 00 6C 00 6F ",
    "00 67 00 79 00 20 00 45 00 63 00 6F 00 6C 00 6F 00 67 00 69 00 63 00 61 00 6C 00 20 00 50 00 61 ",
    "00 72 00 6B 00 2C 00 20 00 31 00 38 00 31 00 39 00 20 00 53 00 68 00 61 00 68 00 65 00 20 00 57 ",
    "00 65 00 73 00 74 00 20 00 52 00 6F 00 61 00 64 00 2C 00 20 00 59 00 75 00 65 00 68 00 61 00 69 ",
    "00 20 00 53 00 75 00 62 00 64 00 69 00 73 00 74 00 72 00 69 00 63 00 74 00 2C 00 20 00 4E 00 61 ",
    "00 6E 00 73 00 68 00 61 00 6E 00 20 00 44 00 69 00 73 00 74 00 72 00 69 00 63 00 74 00 2C 00 20 ",
    "00 53 00 68 00 65 00 6E 00 7A 00 68 00 65 00 6E 00 2C 00 20 00 47 00 75 00 61 00 6E 00 67 00 64 ",
    "00 6F 00 6E 00 67 00 20 00 35 00 31 00 38 00 30 00 35 00 37 00 2C 00 20 00 43 00 68 00 69 00 6E ",
    "00 61 26 26 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 23 23 00 72 62 81 0D ",
    "0A ",
);

/// 0xB0 reply: datetime echoed, 01, clock-in, reserved AB CD echoed.
const R_ATT_B0_IN: &str = "78 78 0F B0 18 05 01 08 1E 00 01 01 AB CD 00 80 2F 9E 0D 0A";

/// 0xB0 reply: clock-out, reserved 00 07.
const R_ATT_B0_OUT: &str = "78 78 0F B0 18 05 01 12 00 05 01 02 00 07 00 81 B8 61 0D 0A";

/// 0xB1 reply: clock-out, reserved 12 34.
const R_ATT_B1_OUT: &str = "78 78 0F B1 18 05 01 12 00 00 01 02 12 34 00 82 EC E9 0D 0A";

/// 0xB1 reply: clock-in, reserved FF 00.
const R_ATT_B1_IN: &str = "78 78 0F B1 18 05 01 08 1E 00 01 01 FF 00 00 83 4A B7 0D 0A";

/// 0xB2 reply: clock-in, reserved 12 34.
const R_PUNCH_IN: &str = "78 78 0F B2 18 05 01 08 1E 00 01 01 12 34 00 90 BC 90 0D 0A";

/// 0xB2 reply: clock-out, reserved 00 FF.
const R_PUNCH_OUT: &str = "78 78 0F B2 18 05 01 12 01 02 01 02 00 FF 00 91 AF EB 0D 0A";

/// 0x80 online command "STATUS#", server flag 0x0102 (the command id).
const R_COMMAND: &str = "78 78 13 80 0D 00 00 01 02 53 54 41 54 55 53 23 00 01 00 07 04 83 0D 0A";

/// 0x82 message "请于18:00前返回" in UTF-16BE, server flag 9.
const R_MESSAGE: &str = concat!(
    "78 78 20 82 1A 00 00 00 09 8B F7 4E 8E 00 31 00 38 00 3A 00 30 00 30 52 4D 8F D4 56 DE 00 01 00 ",
    "08 96 D6 0D 0A ",
);

/// 0x82 message of 132 Chinese characters: 2-byte length and 79 79.
const R_MESSAGE_LONG: &str = concat!(
    "79 79 01 15 82 01 0E 00 00 00 0A 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B ",
    "89 51 68 6C E8 61 0F 5B 89 51 68 6C E8 61 0F 5B 89 51 68 00 01 00 09 D1 5A 0D 0A ",
);
