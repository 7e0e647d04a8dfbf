//! Writes the seed corpora of both fuzz targets: frames of every message
//! type the server knows, encoded by the crate's own encoders.
//!
//! Run from `fuzz/`: `cargo run --example seed_corpus -- corpus/decode corpus/ingest`
//! (the second directory defaults to `ingest` next to the first).
//!
//! `decode`: each file is one configuration byte (bit 0: accept bad CRCs),
//! then a stream. Most streams hold one frame; some hold several, with
//! garbage, a bad CRC or a truncated tail. A second set of files holds bare
//! contents, with the protocol number as byte 0, for the target's direct
//! `Message::decode_content` pass.
//!
//! `ingest`: each file is the target's 11-byte option prefix (see
//! `Options::parse` in `fuzz_targets/ingest.rs`), then a badge's stream: a
//! login followed by frames of every message type, under several
//! configurations (geo lookups, held acknowledgements, commands, several
//! shards, an allowlist, limits, bad CRCs), and streams of two connections:
//! the same IMEI logging in again (replacement, or refused from another
//! address), a handoff to the owner shard, another IMEI on the same
//! connection (rebind).

use std::path::{Path, PathBuf};

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
use badge_ingest::ingest::ShardMap;
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
    let ingest_dir = std::env::args().nth(2).map_or_else(
        || dir.parent().unwrap_or(Path::new(".")).join("ingest"),
        PathBuf::from,
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

    write_ingest_seeds(&ingest_dir, &messages);
}

/// Options of the `ingest` target, byte by byte (see its `Options::parse`).
const ACCEPT_BAD_CRC: u8 = 1 << 0;
const GEO: u8 = 1 << 1;
const HOLD_ACKS: u8 = 1 << 2;
const RAW_FRAMES: u8 = 1 << 3;
const QUEUE_OFFLINE: u8 = 1 << 4;
const COMMAND_ON_LOGIN: u8 = 1 << 5;
const EXPIRE: u8 = 1 << 6;
const GEO_ADDRESSES: u8 = 1 << 7;
const FOUND_FIX: u8 = 1 << 0;
const FOUND_ADDRESS: u8 = 1 << 1;
const FOUND_HUGE_ADDRESS: u8 = 1 << 2;
const FOUND_MISSED: u8 = 1 << 3;

/// The target's `SHARD_KEY`.
const SHARD_KEY: [u8; 16] = [7; 16];
const ALLOWLIST: u8 = 1 << 0;
const SAME_IP: u8 = 1 << 1;

/// The first 7 bytes of an `ingest` input; the slot mask follows.
#[derive(Clone, Copy, Default)]
struct IngestOptions {
    flags: u8,
    /// `shards - 1` in bits 0-1, this shard in bits 2-3, `geo.max_pending`
    /// in bits 4-7.
    shards: u8,
    /// `sqrt` of the seconds per frame.
    step: u8,
    /// What lookups find, and (bits 4-7) how many stay pending.
    found: u8,
    /// `unknown_beacons_max` in bits 0-3, command ttl / 600 s in bits 4-7.
    limits: u8,
    /// `ALLOWLIST`, `SAME_IP`, and (bits 2-7) the minimum time before a
    /// session is replaced from another address, in minutes.
    identity: u8,
    /// Frames allowed before login.
    prelogin: u8,
}

/// The `ingest` seeds: the 11-byte prefix, then the frames of both
/// connection slots interleaved, the slot mask saying whose each is.
fn write_ingest_seeds(dir: &Path, messages: &[Message<'_>]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let enc = |msg: &Message<'_>, serial: u16| {
        let mut b = BytesMut::new();
        msg.encode(serial, &mut b).expect("encode");
        b.to_vec()
    };
    let login_a = &messages[0];
    let login_b = &messages[1];
    assert!(matches!(login_a, Message::Login(l) if l.imei.as_u64() == 353_419_032_981_448));
    let others: Vec<&Message<'_>> = messages
        .iter()
        .filter(|m| !matches!(m, Message::Login(_)))
        .collect();
    let find = |p: u8| {
        *others
            .iter()
            .find(|m| m.protocol() == p)
            .unwrap_or_else(|| panic!("no seed message for {p:02X}"))
    };
    let heartbeat = find(0x13);
    let gps = find(0x22);
    let time_sync = find(0x1F);
    let alarm = find(0xA3);
    let address = find(0x1A);
    let bt_location = find(0xB3);
    let bt_punch = find(0xB2);
    let attendance = find(0xB0);
    // Replies to the commands the target submits: ids 100 and 101 are
    // queued before the stream, 103 is the first one sent at a login.
    let command_replies: Vec<Message<'_>> = [100u32, 101, 103]
        .into_iter()
        .map(|flag| {
            Message::CommandReply(CommandReply {
                length: 11,
                server_flag: flag,
                text: b"OK!",
                language: Some(1),
            })
        })
        .collect();

    // A login, then every other message type.
    let full_session = |login: &Message<'_>| {
        let mut frames = vec![(0usize, enc(login, 1))];
        for (i, m) in others.iter().enumerate() {
            frames.push((0, enc(m, i as u16 + 2)));
        }
        frames
    };
    let one = |msgs: &[&Message<'_>]| -> Vec<(usize, Vec<u8>)> {
        msgs.iter()
            .enumerate()
            .map(|(i, m)| (0, enc(m, i as u16 + 1)))
            .collect()
    };

    let mut written = 0;
    let mut write = |name: &str, o: IngestOptions, frames: &[(usize, Vec<u8>)]| {
        let mut mask = 0u32;
        let mut file = vec![
            o.flags, o.shards, o.step, o.found, o.limits, o.identity, o.prelogin, 0, 0, 0, 0,
        ];
        for (i, (slot, bytes)) in frames.iter().enumerate() {
            if *slot == 1 {
                assert!(i < 32, "{name}: the slot mask covers 32 frames");
                mask |= 1 << i;
            }
            file.extend_from_slice(bytes);
        }
        file[7..11].copy_from_slice(&mask.to_le_bytes());
        std::fs::write(dir.join(format!("ingest-{name}")), &file).expect("write seed");
        written += 1;
    };
    let plain = IngestOptions {
        step: 5,
        limits: 0x1F,
        prelogin: 16,
        ..Default::default()
    };

    write("session", plain, &full_session(login_a));
    write("session-other-imei", plain, &full_session(login_b));
    write(
        "session-raw-frames",
        IngestOptions {
            flags: RAW_FRAMES,
            limits: 0x02,
            ..plain
        },
        &full_session(login_a),
    );
    // Lookups: found at once, some left pending, acknowledgements held.
    write(
        "geo-held-acks",
        IngestOptions {
            flags: GEO | GEO_ADDRESSES | HOLD_ACKS,
            shards: 2 << 4,
            step: 3,
            found: FOUND_FIX | FOUND_ADDRESS | (1 << 4),
            limits: 0x13,
            ..plain
        },
        &full_session(login_a),
    );
    // No room to wait: every row stored at once, owed replies empty.
    write(
        "geo-full",
        IngestOptions {
            flags: GEO,
            found: FOUND_ADDRESS,
            ..plain
        },
        &full_session(login_a),
    );
    // Lookups that miss, and an address too long for a reply.
    write(
        "geo-huge-address",
        IngestOptions {
            flags: GEO | HOLD_ACKS,
            shards: 15 << 4,
            found: FOUND_ADDRESS | FOUND_HUGE_ADDRESS | FOUND_MISSED | (15 << 4),
            ..plain
        },
        &one(&[login_a, alarm, address, gps, attendance, alarm]),
    );
    // Commands: queued before the login, delivered after its ack, one more
    // sent at the login, and their replies matched.
    let commands = {
        let mut f = one(&[login_a, heartbeat]);
        for (i, r) in command_replies.iter().enumerate() {
            f.push((0, enc(r, 10 + i as u16)));
        }
        f.push((0, enc(heartbeat, 20)));
        f
    };
    write(
        "commands",
        IngestOptions {
            flags: QUEUE_OFFLINE | COMMAND_ON_LOGIN | EXPIRE,
            step: 30,
            limits: 0x10,
            ..plain
        },
        &commands,
    );
    // Queued commands that expire before the badge logs in.
    write(
        "commands-expired",
        IngestOptions {
            flags: QUEUE_OFFLINE | EXPIRE,
            step: 200,
            limits: 0x10,
            ..plain
        },
        &one(&[heartbeat, time_sync, login_a, heartbeat]),
    );
    // Before login: only time requests are answered; past the budget of
    // frames before login, the connection closes.
    let prelogin = one(&[heartbeat, time_sync, gps, alarm, login_a, heartbeat]);
    write("prelogin", plain, &prelogin);
    write(
        "prelogin-budget",
        IngestOptions {
            prelogin: 2,
            ..plain
        },
        &prelogin,
    );
    // Another IMEI on a logged-in connection rebinds it: the old session
    // ends (logout), the new one begins.
    let rebind = one(&[login_a, heartbeat, login_b, heartbeat, login_a, gps]);
    write("rebind", plain, &rebind);
    // The allowlist refuses login_b's IMEI: the connection closes.
    write(
        "rebind-not-allowed",
        IngestOptions {
            identity: ALLOWLIST,
            ..plain
        },
        &rebind,
    );
    // Two connections: the same IMEI logs in again on the second
    // (replacing the first, which closes), then the first slot reconnects
    // with another IMEI, which the second slot then takes over too.
    let replace = vec![
        (0, enc(login_a, 1)),
        (0, enc(heartbeat, 2)),
        (1, enc(login_a, 1)),
        (1, enc(gps, 2)),
        (0, enc(login_b, 1)),
        (0, enc(alarm, 2)),
        (1, enc(login_b, 3)),
        (1, enc(heartbeat, 4)),
        (0, enc(heartbeat, 3)),
    ];
    write("replace", plain, &replace);
    // From another address, too soon after the login: refused (the slots
    // connect from 10.0.0.1 and 10.0.0.2); from the same address, replaced.
    write(
        "replace-refused",
        IngestOptions {
            identity: 10 << 2,
            ..plain
        },
        &replace,
    );
    write(
        "replace-same-ip",
        IngestOptions {
            identity: SAME_IP | (10 << 2),
            ..plain
        },
        &replace,
    );
    write(
        "replace-geo",
        IngestOptions {
            flags: GEO | HOLD_ACKS | COMMAND_ON_LOGIN,
            shards: 3 << 4,
            found: FOUND_ADDRESS | (2 << 4),
            ..plain
        },
        &replace,
    );
    // Several shards: logins for other shards hand off, and the owner
    // adopts the connection; a rebind to an IMEI of another shard moves it.
    for (shards, shard) in [(2u8, 0u8), (2, 1), (4, 0), (4, 3)] {
        write(
            &format!("handoff-{shards}-{shard}"),
            IngestOptions {
                flags: QUEUE_OFFLINE | COMMAND_ON_LOGIN,
                shards: (shards - 1) | (shard << 2),
                ..plain
            },
            &replace,
        );
        // An IMEI that another shard than login_a's owns.
        let map = ShardMap::new(SHARD_KEY, usize::from(shards));
        let Message::Login(a) = login_a else {
            unreachable!()
        };
        let other = (1..)
            .map(|i| Imei::with_check_digit(35_341_903_100_000 + i).unwrap())
            .find(|&i| map.owner(i) != map.owner(a.imei))
            .unwrap();
        let login_other = Message::Login(Login {
            imei: other,
            ..*a
        });
        write(
            &format!("handoff-rebind-{shards}-{shard}"),
            IngestOptions {
                shards: (shards - 1) | (shard << 2),
                ..plain
            },
            &one(&[login_a, heartbeat, &login_other, heartbeat, login_a, gps]),
        );
    }
    // Beacons: known (with and without a position or an address) and unknown,
    // more unknown ones than are kept.
    write(
        "beacons",
        IngestOptions {
            flags: GEO | GEO_ADDRESSES,
            shards: 4 << 4,
            found: FOUND_FIX,
            limits: 0x01,
            ..plain
        },
        &one(&[login_a, bt_location, bt_punch, bt_location]),
    );
    // Bad CRCs handed on, garbage between frames, a truncated last frame.
    let mut bad = full_session(login_a);
    for (i, (_, f)) in bad.iter_mut().enumerate() {
        if i % 3 == 1 {
            let at = f.len() - 4;
            f[at] ^= 0x5A;
        }
        if i % 5 == 2 {
            let mut g = b"\x00junk".to_vec();
            g.extend_from_slice(f);
            *f = g;
        }
    }
    if let Some((_, last)) = bad.last_mut() {
        last.truncate(last.len() - 3);
    }
    write(
        "bad-crc-accepted",
        IngestOptions {
            flags: ACCEPT_BAD_CRC | RAW_FRAMES,
            ..plain
        },
        &bad,
    );
    write("bad-crc", plain, &bad);

    eprintln!("wrote {written} seeds to {}", dir.display());
}

fn net_bytes(net: MobileNetwork) -> Vec<u8> {
    let mut b = BytesMut::new();
    net.encode(&mut b);
    b.to_vec()
}
