//! Writes a seed corpus for the `decode` fuzz target: frames of every
//! message type the server knows, encoded by the crate's own encoders.
//!
//! Run from `fuzz/`: `cargo run --example seed_corpus -- corpus/decode`
//!
//! Each file is: one configuration byte (bit 0: accept bad CRCs), then a
//! stream. Most streams hold one frame; some hold several, with garbage,
//! a bad CRC or a truncated tail. A second set of files holds bare
//! contents, with the protocol number as byte 0, for the target's direct
//! `Message::decode_content` pass.

use std::path::PathBuf;

use badge_ingest::protocol::imei::Imei;
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
use badge_ingest::protocol::Message;
use bytes::BytesMut;

const UUID: [u8; 16] = [
    0xFD, 0xA5, 0x06, 0x93, 0xA4, 0xE2, 0x4F, 0xB1, 0xAF, 0xCF, 0xC6, 0xEB, 0x07, 0x64, 0x78, 0x25,
];

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus/decode".into()),
    );
    std::fs::create_dir_all(&dir).expect("corpus dir");

    let time = DeviceTime::new(24, 5, 1, 8, 30, 0);
    let fix_n = GpsFix::new(22.5, 113.9, 40, 270, 9, true, true);
    let fix_s = GpsFix::new(-33.9, -58.4, 0, 12, 5, false, false);
    let net = MobileNetwork::new(460, 0);
    let wide = MobileNetwork::new(310, 260);
    let c2: Vec<Cell2g> = (0..7u32)
        .map(|i| Cell2g::new(0x251A + i as u16, 0x0FA1 + i, 40 + i as u8))
        .collect();
    let c4: Vec<Cell4g> = (0..7u64)
        .map(|i| Cell4g::new(0x1234_5678, 0xABCD_0000 + i, 50))
        .collect();
    let aps: Vec<WifiAp> = (0..5u8)
        .map(|i| WifiAp::new([0xAC, 0x23, 0x3F, 0, 1, i], 60 + i))
        .collect();
    let beacons: Vec<BeaconSighting> = (0..12u16)
        .map(|i| {
            let battery = if i % 2 == 0 {
                BeaconBattery::Percent(80)
            } else {
                BeaconBattery::Centivolts(300)
            };
            BeaconSighting::new(
                -60 - i as i8,
                [0xAC, 0x23, 0x3F, 9, 9, i as u8],
                UUID,
                1,
                100 + i,
                battery,
            )
        })
        .collect();
    let status = AlarmStatus {
        terminal_info: 0x44,
        voltage_level: 5,
        gsm_signal: 4,
        alarm_code: 0x01,
        language: 1,
    };
    let cell = CellId4g::new(0x0000_251A, 0x0000_0000_000F_A100);
    let head = |kind| AttendanceHead {
        time,
        gps_flag: 1,
        reserved: [0xAB, 0xCD],
        fix: fix_n,
        terminal_info: TerminalInfo::for_attendance(kind).0,
        voltage_level: 6,
        gsm_signal: 3,
        reserved_ext: [0, 0],
    };
    let punch = PunchBody {
        time,
        rssi: -61,
        mac: [0xAC, 0x23, 0x3F, 1, 2, 3],
        uuid: UUID,
        major: 7.into(),
        minor: 42.into(),
        battery_centivolts: 301.into(),
        terminal_info: TerminalInfo::for_attendance(AttendanceKind::ClockOut).0,
        reserved: [0x01, 0x02],
    };
    let gps_tail = |generation| GpsTail {
        network: net,
        cell: match generation {
            Generation::G2 => CellTower {
                lac: 0x251A,
                cell_id: 0x0FA1,
                rssi: 0,
            },
            Generation::G4 => CellTower {
                lac: 0x1234_5678,
                cell_id: 0xABCD_EF01,
                rssi: 0,
            },
        },
        acc: 1,
        report_mode: 0,
        realtime_upload: 0,
        mileage: Some(123_456),
    };
    let address_body = {
        let mut b = net_bytes(net);
        b.extend_from_slice(&[0x25, 0x1A, 0x00, 0x0F, 0xA1]);
        b
    };
    let address_body_4g = {
        let mut b = net_bytes(net);
        b.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01]);
        b
    };
    let fix_bytes = zerocopy::IntoBytes::as_bytes(&fix_n).to_vec();

    let messages: Vec<Message<'_>> = vec![
        Message::Login(Login {
            imei: "353419032981448".parse::<Imei>().unwrap(),
            type_code: Some(0x2404),
            tz_language: Some(TzLanguage::new(480, 1)),
        }),
        Message::Login(Login {
            imei: Imei::new(123_456_789_012_345).unwrap(),
            type_code: None,
            tz_language: None,
        }),
        Message::Heartbeat(Heartbeat {
            extended: false,
            status: HeartbeatStatus {
                terminal_info: 0x44,
                battery: 85,
                gsm_signal: 4,
            },
            language: Some(1),
            extension: &[],
        }),
        Message::Heartbeat(Heartbeat {
            extended: true,
            status: HeartbeatStatus {
                terminal_info: 0x04,
                battery: 50,
                gsm_signal: 3,
            },
            language: Some(2),
            extension: &[0x00, 0x11, 0x22, 0x33],
        }),
        Message::Gps(GpsReport {
            generation: Generation::G2,
            time,
            fix: fix_n,
            tail: Some(gps_tail(Generation::G2)),
        }),
        Message::Gps(GpsReport {
            generation: Generation::G4,
            time,
            fix: fix_s,
            tail: Some(gps_tail(Generation::G4)),
        }),
        Message::Gps(GpsReport {
            generation: Generation::G2,
            time,
            fix: fix_s,
            tail: None,
        }),
        Message::Lbs(LbsReport {
            protocol: 0x28,
            time,
            network: net,
            cells: Cells::G2(&c2),
            timing_advance: Some(3),
            language: Some(1),
        }),
        Message::Lbs(LbsReport {
            protocol: 0x2E,
            time,
            network: wide,
            cells: Cells::G2(&c2[..2]),
            timing_advance: None,
            language: None,
        }),
        Message::Lbs(LbsReport {
            protocol: 0xA1,
            time,
            network: net,
            cells: Cells::G4(&c4),
            timing_advance: Some(0),
            language: Some(2),
        }),
        Message::Wifi(WifiReport {
            time,
            network: net,
            cells: Cells::G2(&c2),
            timing_advance: 1,
            aps: &aps,
        }),
        Message::Wifi(WifiReport {
            time,
            network: wide,
            cells: Cells::G4(&c4),
            timing_advance: 1,
            aps: &aps[..2],
        }),
        Message::TimeSync(TimeSyncRequest {
            device_time: Some(time),
            language: 2,
        }),
        Message::TimeSync(TimeSyncRequest {
            device_time: None,
            language: 1,
        }),
        Message::TimeSync2,
        Message::Alarm(Alarm {
            source: AlarmSource::SingleFence,
            body: AlarmBody::Fence {
                time,
                fix: fix_n,
                lbs_length: 16,
                network: net,
                cell,
                status,
                fence_id: None,
            },
        }),
        Message::Alarm(Alarm {
            source: AlarmSource::MultiFence,
            body: AlarmBody::Fence {
                time,
                fix: fix_s,
                lbs_length: 17,
                network: wide,
                cell,
                status,
                fence_id: Some(3),
            },
        }),
        Message::Alarm(Alarm {
            source: AlarmSource::Lbs,
            body: AlarmBody::Lbs {
                network: net,
                cell,
                status,
            },
        }),
        Message::Alarm(Alarm {
            source: AlarmSource::Wifi,
            body: AlarmBody::Wifi {
                time,
                network: net,
                cells: Cells::G2(&c2[..3]),
                timing_advance: 2,
                aps: &aps,
                alarm_code: 0x01,
                language: 2,
            },
        }),
        Message::Alarm(Alarm {
            source: AlarmSource::Wifi,
            body: AlarmBody::Wifi {
                time,
                network: wide,
                cells: Cells::G4(&c4[..1]),
                timing_advance: 0,
                aps: &[],
                alarm_code: 0x23,
                language: 1,
            },
        }),
        Message::AddressRequest(AddressRequest {
            protocol: 0x17,
            time,
            body: &address_body,
            language: 1,
        }),
        Message::AddressRequest(AddressRequest {
            protocol: 0x1A,
            time,
            body: &fix_bytes,
            language: 2,
        }),
        Message::AddressRequest(AddressRequest {
            protocol: 0xA7,
            time,
            body: &address_body_4g,
            language: 2,
        }),
        Message::Attendance(Attendance {
            head: head(AttendanceKind::ClockIn),
            network: net,
            cells: Cells::G2(&c2),
            timing_advance: 1,
            aps: &aps,
        }),
        Message::Attendance(Attendance {
            head: head(AttendanceKind::ClockOut),
            network: MobileNetwork {
                mcc: 460,
                mnc: 1,
                wide_mnc: true,
            },
            cells: Cells::G4(&c4),
            timing_advance: 1,
            aps: &aps[..1],
        }),
        Message::BluetoothPunch(BluetoothPunch { body: punch }),
        Message::BluetoothLocation(BluetoothLocation {
            time,
            beacons: &beacons[..3],
        }),
        Message::BluetoothLocation(BluetoothLocation {
            time,
            beacons: &beacons,
        }),
        Message::GeneralInfo(GeneralInfo::SimIds {
            imei: [0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48],
            imsi: Imsi([0x04, 0x60, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90]),
            iccid: Iccid([0x89, 0x86, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34]),
        }),
        Message::GeneralInfo(GeneralInfo::Iccid(Iccid([
            0x89, 0x86, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34,
        ]))),
        Message::GeneralInfo(GeneralInfo::GpsStatus(3)),
        Message::GeneralInfo(GeneralInfo::Other {
            sub_protocol: 0x04,
            data: &[1, 2, 3],
        }),
        Message::CommandReply(CommandReply {
            length: 11,
            server_flag: 42,
            text: b"OK!",
            language: Some(1),
        }),
        Message::CommandReply(CommandReply {
            length: 6,
            server_flag: 7,
            text: b"OK",
            language: None,
        }),
        Message::Unknown {
            protocol: 0x55,
            content: &[1, 2, 3, 4],
        },
    ];

    let mut written = 0;
    let mut write = |name: String, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).expect("write seed");
        written += 1;
    };
    let mut all = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let mut frame = BytesMut::new();
        msg.encode(i as u16 + 1, &mut frame).expect("encode");
        let mut file = vec![0u8];
        file.extend_from_slice(&frame);
        write(format!("frame-{i:02}-{:02x}", msg.protocol()), &file);
        all.extend_from_slice(&frame);

        let mut content = BytesMut::new();
        msg.encode_content(&mut content);
        let mut file = vec![msg.protocol()];
        file.extend_from_slice(&content);
        write(format!("content-{i:02}-{:02x}", msg.protocol()), &file);
    }

    // A session: every frame back to back, with garbage, a stray marker
    // byte, a corrupted CRC, and a truncated last frame.
    let mut session = vec![0u8];
    session.extend_from_slice(b"\x00\x01junk\x78");
    session.extend_from_slice(&all);
    write("session".into(), &session);
    let mut bad_crc = session.clone();
    // The login frame (22 bytes) starts after the config byte and 7 bytes
    // of garbage; its CRC is 4 bytes from its end.
    let login_crc = 1 + 7 + 22 - 4;
    assert_eq!(&session[login_crc + 2..login_crc + 4], &[0x0D, 0x0A]);
    bad_crc[login_crc] ^= 0xFF;
    write("session-bad-crc".into(), &bad_crc);
    let mut accept = bad_crc.clone();
    accept[0] = 1;
    write("session-bad-crc-accepted".into(), &accept);
    let truncated = &session[..session.len() - 7];
    write("session-truncated".into(), truncated);

    eprintln!("wrote {written} seeds to {}", dir.display());
}

fn net_bytes(net: MobileNetwork) -> Vec<u8> {
    let mut b = BytesMut::new();
    net.encode(&mut b);
    b.to_vec()
}
