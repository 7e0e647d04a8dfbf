//! The ingest core without sockets: frames in, outcomes checked.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use bytes::BytesMut;
use zerocopy::byteorder::big_endian::U16;

use super::*;
use crate::protocol::layout::*;
use crate::protocol::message::*;
use crate::protocol::number as n;
use crate::protocol::{FrameDecoder, Message};
use crate::record::lookup::Beacon;
use crate::record::{enums, Record};

/// 2025-06-15T12:00:00Z
const NOW: u32 = 1_749_988_800;
const TIME: DeviceTime = DeviceTime::new(25, 6, 15, 19, 59, 0);

fn imei(n: u64) -> Imei {
    Imei::with_check_digit(35_341_903_000_000 + n).unwrap()
}

/// An IMEI owned by `shard` of `shards`.
fn owned_by(shard: usize, shards: usize) -> Imei {
    (1..)
        .map(imei)
        .find(|i| map(shards).owner(*i) == shard)
        .unwrap()
}

fn map(shards: usize) -> ShardMap {
    ShardMap::new([7; 16], shards)
}

fn settings(shard: usize, shards: usize) -> Settings {
    let mut s = Settings::new(&Config::default(), shard, map(shards));
    s.geo = None;
    s
}

fn geo() -> GeoSettings {
    GeoSettings {
        max_pending: 2,
        addresses: false,
        language: Language::Chinese,
    }
}

struct Beacons(Vec<Beacon>);

impl BeaconDirectory for Beacons {
    fn beacon(&self, mac: u64) -> Option<Arc<Beacon>> {
        self.0.iter().find(|b| b.mac == mac).cloned().map(Arc::new)
    }
}

fn core_with(settings: Settings, beacons: Arc<dyn BeaconDirectory>) -> Ingest {
    Ingest::new(settings, "test", Arc::new(AtomicU32::new(100)), beacons)
}

fn core() -> Ingest {
    core_with(settings(0, 1), Arc::new(()))
}

fn request(imei: Imei, kind: CommandKind, text: &str) -> CommandRequest {
    CommandRequest {
        imei,
        kind,
        text: text.into(),
        wait: None,
    }
}

fn frame(message: &Message<'_>, serial: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(serial, &mut out).unwrap();
    out.to_vec()
}

fn login_frame(imei: Imei, serial: u16) -> Vec<u8> {
    frame(
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
            battery: 87,
            gsm_signal: 4,
        },
        language: Some(1),
        extension: &[],
    })
}

fn sightings() -> [BeaconSighting; 2] {
    [
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
    ]
}

/// Feeds every frame of `bytes` as the server does: until one ends the connection.
fn feed(badge: &mut Badge, core: &mut Ingest, bytes: &[u8]) -> Outcome {
    feed_at(badge, core, bytes, NOW)
}

fn feed_at(badge: &mut Badge, core: &mut Ingest, bytes: &[u8], now: u32) -> Outcome {
    let mut out = Outcome::default();
    let mut decoder = FrameDecoder::default();
    let mut pos = 0;
    while let Some(f) = decoder.next_frame(bytes, &mut pos) {
        badge.on_frame(&f, now, core, &mut out);
        if out.end.is_some() {
            break;
        }
    }
    out
}

/// The frames written to the badge: (protocol, serial, content).
fn replies(out: &Outcome) -> Vec<(u8, u16, Vec<u8>)> {
    let mut decoder = FrameDecoder::default();
    let frames: Vec<_> = decoder
        .frames(&out.replies)
        .map(|f| (f.protocol, f.serial, f.content.to_vec()))
        .collect();
    assert_eq!(decoder.stats.rejected(), 0, "every reply is a good frame");
    frames
}

fn tables(out: &Outcome) -> Vec<&'static str> {
    out.rows.iter().map(|r| r.table().name()).collect()
}

fn logged_in(core: &mut Ingest, imei: Imei) -> Badge {
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
    let out = feed(&mut badge, core, &login_frame(imei, 1));
    assert_eq!(replies(&out), [(n::LOGIN, 1, vec![])]);
    badge
}

#[test]
fn before_login_only_time_syncs_are_answered() {
    let mut core = core();
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
    let out = feed(&mut badge, &mut core, &frame(&heartbeat(), 7));
    assert!(out.replies.is_empty() && out.rows.is_empty());
    assert_eq!(core.counters.prelogin_drops, 1);
    let sync = Message::TimeSync(TimeSyncRequest {
        device_time: None,
        language: 2,
    });
    let out = feed(&mut badge, &mut core, &frame(&sync, 8));
    assert_eq!(replies(&out).len(), 1);
    assert_eq!(replies(&out)[0].0, n::TIME_SYNC);
    assert!(out.rows.is_empty());
    assert_eq!(badge.imei(), None);
}

#[test]
fn a_login_is_acknowledged_recorded_and_opens_a_session() {
    let mut core = core();
    let badge = logged_in(&mut core, imei(1));
    assert_eq!(badge.imei(), Some(imei(1)));
    assert_eq!(core.counters.logins, 1);
    assert_eq!(core.device(imei(1)).map(|d| d.device_type), Some(0x2404));
    assert_eq!(core.counters().sessions, 1);
}

#[test]
fn a_login_for_another_shard_is_handed_off_uncounted() {
    let imei = owned_by(1, 2);
    let mut core = core_with(settings(0, 2), Arc::new(()));
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
    let mut bytes = login_frame(imei, 1);
    bytes.extend(frame(&heartbeat(), 2));
    let out = feed(&mut badge, &mut core, &bytes);
    assert_eq!(out.end, Some(End::Handoff { owner: 1 }));
    assert!(out.replies.is_empty() && out.rows.is_empty());
    assert_eq!(core.frames.iter().sum::<u64>(), 0);
    assert_eq!(core.counters.logins, 0);
    // Handed over, the owner takes it whatever the hash says.
    let mut owner = core_with(settings(1, 2), Arc::new(()));
    let mut adopted = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), true);
    let out = feed(&mut adopted, &mut owner, &bytes);
    assert_eq!(out.end, None);
    assert_eq!(
        replies(&out),
        [(n::LOGIN, 1, vec![]), (n::HEARTBEAT, 2, vec![])]
    );
    assert_eq!(tables(&out), ["device_events", "heartbeats"]);
}

#[test]
fn a_newer_connection_replaces_the_older_without_an_offline_row() {
    let mut core = core();
    let mut first = logged_in(&mut core, imei(1));
    let mut second = Badge::new(2, "127.0.0.1:5001".parse().unwrap(), false);
    let out = feed(&mut second, &mut core, &login_frame(imei(1), 1));
    assert_eq!(out.replaced, [1]);
    let Record::DeviceEvents(row) = &out.rows[0] else {
        panic!()
    };
    assert_eq!(row.event, enums::EVENT_RECONNECT);
    assert_eq!(core.counters.reconnects, 1);
    let mut out = Outcome::default();
    first.on_close(CloseReason::Replaced, NOW, &mut core, &mut out);
    assert!(out.rows.is_empty(), "the badge is not offline");
    second.on_close(CloseReason::PeerClosed, NOW, &mut core, &mut out);
    let Record::DeviceEvents(row) = &out.rows[0] else {
        panic!()
    };
    assert_eq!(
        (row.event, row.reason.as_str()),
        (enums::EVENT_OFFLINE, "peer_closed")
    );
    assert_eq!(core.device(imei(1)).map(|d| d.imei), None);
}

#[test]
fn a_repeated_login_is_acknowledged_and_another_imei_rebinds_the_connection() {
    let mut core = core();
    let mut badge = logged_in(&mut core, imei(1));
    let out = feed(&mut badge, &mut core, &login_frame(imei(1), 2));
    assert_eq!(replies(&out), [(n::LOGIN, 2, vec![])]);
    assert_eq!(tables(&out), ["device_events"]);
    // As the reference: acknowledged, and the connection is now imei(2)'s.
    let out = feed(&mut badge, &mut core, &login_frame(imei(2), 3));
    assert_eq!(out.end, None);
    assert_eq!(replies(&out), [(n::LOGIN, 3, vec![])]);
    let events: Vec<_> = out
        .rows
        .iter()
        .map(|r| match r {
            Record::DeviceEvents(e) => (e.imei, e.event, e.reason.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                imei(1).as_u64(),
                enums::EVENT_LOGOUT,
                "imei_changed".to_string()
            ),
            (imei(2).as_u64(), enums::EVENT_LOGIN, String::new()),
        ]
    );
    assert_eq!(badge.imei(), Some(imei(2)));
    assert_eq!(core.counters.rebinds, 1);
    assert!(core.device(imei(1)).is_none());
    assert_eq!(core.device(imei(2)).unwrap().imei, imei(2).to_string());
    // Rows now go to the new IMEI.
    let out = feed(&mut badge, &mut core, &frame(&heartbeat(), 4));
    let Record::Heartbeats(h) = &out.rows[0] else {
        panic!()
    };
    assert_eq!(h.imei, imei(2).as_u64());
}

#[test]
fn a_rebind_to_an_imei_of_another_shard_ends_the_session_and_hands_off() {
    let here = owned_by(0, 2);
    let there = owned_by(1, 2);
    let mut core = core_with(settings(0, 2), Arc::new(()));
    // Even a connection adopted from another shard moves on a rebind.
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), true);
    feed(&mut badge, &mut core, &login_frame(here, 1));
    let out = feed(&mut badge, &mut core, &login_frame(there, 2));
    assert_eq!(out.end, Some(End::Handoff { owner: 1 }));
    assert!(out.replies.is_empty(), "the owner acknowledges the login");
    assert_eq!(tables(&out), ["device_events"]);
    assert!(core.device(here).is_none());
    assert_eq!(core.counters.rebinds, 1);
}

#[test]
fn frames_before_login_have_a_budget() {
    let mut s = settings(0, 1);
    s.prelogin_frames = 3;
    let mut core = core_with(s, Arc::new(()));
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
    let sync = frame(&Message::TimeSync2, 1);
    for _ in 0..3 {
        let out = feed(&mut badge, &mut core, &sync);
        assert_eq!(out.end, None);
        assert!(!out.replies.is_empty());
    }
    let out = feed(&mut badge, &mut core, &sync);
    assert_eq!(out.end, Some(End::Close(CloseReason::PreloginBudget)));
    assert!(out.replies.is_empty());
    assert_eq!(core.counters.prelogin_budget_closes, 1);
    // A login within the budget ends it: logged-in badges have none.
    let mut badge = Badge::new(2, "127.0.0.1:5001".parse().unwrap(), false);
    feed(&mut badge, &mut core, &sync);
    feed(&mut badge, &mut core, &login_frame(imei(1), 2));
    for _ in 0..10 {
        assert_eq!(feed(&mut badge, &mut core, &sync).end, None);
    }
}

struct Allow(Imei);

impl crate::record::lookup::ImeiAllowlist for Allow {
    fn allows(&self, imei: Imei) -> bool {
        imei == self.0
    }
}

#[test]
fn an_allowlist_refuses_other_imeis_before_anything_is_stored() {
    let mut core = core();
    core.set_allowlist(Arc::new(Allow(imei(1))));
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
    let out = feed(&mut badge, &mut core, &login_frame(imei(2), 1));
    assert_eq!(out.end, Some(End::Close(CloseReason::NotAllowed)));
    assert!(out.replies.is_empty() && out.rows.is_empty());
    assert_eq!(core.counters.logins_not_allowed, 1);
    assert!(core.device(imei(2)).is_none());
    logged_in(&mut core, imei(1));
}

#[test]
fn replacements_from_other_addresses_are_counted_listed_and_can_be_throttled() {
    let mut s = settings(0, 1);
    s.replace_min_interval_secs = 30;
    s.clone_replacements = 2;
    let mut core = core_with(s, Arc::new(()));
    let login = login_frame(imei(1), 1);
    let mut a = Badge::new(1, "10.0.0.1:5000".parse().unwrap(), false);
    assert_eq!(feed_at(&mut a, &mut core, &login, NOW).end, None);
    // From the same address: a reconnect, never throttled nor counted.
    let mut a2 = Badge::new(2, "10.0.0.1:5001".parse().unwrap(), false);
    let out = feed_at(&mut a2, &mut core, &login, NOW + 1);
    assert_eq!((out.end, out.replaced.as_slice()), (None, &[1][..]));
    assert_eq!(core.counters.clone_replacements, 0);
    // From another address within 30 s of the session's login: refused.
    let mut b = Badge::new(3, "10.0.0.2:6000".parse().unwrap(), false);
    let out = feed_at(&mut b, &mut core, &login, NOW + 10);
    assert_eq!(out.end, Some(End::Close(CloseReason::ReplaceRefused)));
    assert!(out.replaced.is_empty() && out.replies.is_empty() && out.rows.is_empty());
    assert_eq!(core.counters.replacements_refused, 1);
    assert_eq!(core.device(imei(1)).unwrap().peer, "10.0.0.1:5001");
    // Later it wins, and the second replacement lists the IMEI.
    let mut b = Badge::new(4, "10.0.0.2:6001".parse().unwrap(), false);
    let out = feed_at(&mut b, &mut core, &login, NOW + 40);
    assert_eq!((out.end, out.replaced.as_slice()), (None, &[2][..]));
    assert_eq!(core.counters.clone_replacements, 2);
    let listed = core.clones(NOW + 40);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].imei, imei(1).to_string());
    assert_eq!(listed[0].replacements, 2);
}

#[test]
fn every_message_gets_its_reply_and_rows() {
    let net = MobileNetwork::new(460, 0);
    let fix = GpsFix::new(22.543099, 114.057868, 12, 90, 9, true, true);
    let mut cells = [Cell2g::new(0, 0, 0); 7];
    cells[0] = Cell2g::new(0x2795, 0x0E5A21, 60);
    let aps = [WifiAp::new([1, 2, 3, 4, 5, 6], 70)];
    let sightings = sightings();
    let status = AlarmStatus {
        terminal_info: 0x44,
        voltage_level: 5,
        gsm_signal: 4,
        alarm_code: 0x01,
        language: 1,
    };
    let punch = PunchBody {
        time: TIME,
        rssi: -58,
        mac: [0xC1, 0, 0, 0, 0, 9],
        uuid: [0xFD; 16],
        major: U16::new(10),
        minor: U16::new(9),
        battery_centivolts: U16::new(300),
        terminal_info: TerminalInfo::for_attendance(AttendanceKind::ClockIn).0,
        reserved: [0xAB, 0xCD],
    };
    let head = AttendanceHead {
        time: TIME,
        gps_flag: 1,
        reserved: [0x12, 0x34],
        fix,
        terminal_info: TerminalInfo::for_attendance(AttendanceKind::ClockOut).0,
        voltage_level: 6,
        gsm_signal: 3,
        reserved_ext: [0, 0],
    };
    let lbs = |protocol| {
        Message::Lbs(LbsReport {
            protocol,
            time: TIME,
            network: net,
            cells: Cells::G2(&cells),
            timing_advance: Some(0),
            language: Some(1),
        })
    };
    // (message, the reply's protocol if any, the tables of its rows)
    let cases: Vec<(Message<'_>, Option<u8>, Vec<&str>)> = vec![
        (heartbeat(), Some(n::HEARTBEAT), vec!["heartbeats"]),
        (
            Message::Gps(GpsReport {
                generation: Generation::G2,
                time: TIME,
                fix,
                tail: None,
            }),
            None,
            vec!["locations"],
        ),
        (lbs(n::LBS_MULTI), None, vec!["locations"]),
        (
            lbs(n::LBS_MULTI_REPLY),
            Some(n::LBS_MULTI_REPLY),
            vec!["locations"],
        ),
        (
            Message::Wifi(WifiReport {
                time: TIME,
                network: net,
                cells: Cells::G2(&cells),
                timing_advance: 0,
                aps: &aps,
            }),
            None,
            vec!["locations"],
        ),
        (
            Message::TimeSync(TimeSyncRequest {
                device_time: None,
                language: 1,
            }),
            Some(n::TIME_SYNC),
            vec![],
        ),
        (Message::TimeSync2, Some(n::TIME_SYNC_2), vec![]),
        (
            Message::Alarm(Alarm {
                source: AlarmSource::Lbs,
                body: AlarmBody::Lbs {
                    network: net,
                    cell: CellId4g::new(0x2795, 0x0E5A21),
                    status,
                },
            }),
            Some(n::ALARM_ACK),
            vec!["alarms"],
        ),
        (
            Message::AddressRequest(AddressRequest {
                protocol: n::ADDRESS_QUERY,
                time: TIME,
                body: zerocopy::IntoBytes::as_bytes(&fix),
                language: 2,
            }),
            // Without a geo service, an empty English address at once.
            Some(n::ADDRESS_REPLY_EN),
            vec!["locations"],
        ),
        (
            Message::Attendance(Attendance {
                head,
                network: net,
                cells: Cells::G2(&cells),
                timing_advance: 0,
                aps: &[],
            }),
            Some(n::ATTENDANCE),
            vec!["attendance"],
        ),
        (
            Message::BluetoothPunch(BluetoothPunch { body: punch }),
            Some(n::BT_PUNCH),
            vec!["bluetooth"],
        ),
        (
            Message::BluetoothLocation(BluetoothLocation {
                time: TIME,
                beacons: &sightings,
            }),
            None,
            vec!["bluetooth", "bluetooth"],
        ),
        (
            Message::GeneralInfo(GeneralInfo::GpsStatus(3)),
            None,
            vec!["device_info"],
        ),
        (
            Message::CommandReply(CommandReply {
                length: 9,
                server_flag: 42,
                text: b"OK!",
                language: Some(1),
            }),
            None,
            vec!["command_log"],
        ),
        (
            Message::Unknown {
                protocol: 0x5A,
                content: &[1, 2, 3],
            },
            None,
            vec!["raw_frames"],
        ),
    ];
    let mut core = core();
    let mut badge = logged_in(&mut core, imei(1));
    for (i, (message, reply, rows)) in cases.iter().enumerate() {
        let serial = 10 + i as u16;
        let out = feed(&mut badge, &mut core, &frame(message, serial));
        let got: Vec<(u8, u16)> = replies(&out).into_iter().map(|(p, s, _)| (p, s)).collect();
        let want: Vec<(u8, u16)> = reply.iter().map(|p| (*p, serial)).collect();
        assert_eq!(got, want, "reply to {message:?}");
        assert_eq!(&tables(&out), rows, "rows of {message:?}");
        assert!(out.lookups.is_empty() && out.end.is_none());
        for row in &out.rows {
            assert_eq!(row.imei(), imei(1).as_u64());
        }
    }
    assert_eq!(core.counters.decode_errors, 0);
    // The attendance (voltage level 6) came after the heartbeat (87 %).
    assert_eq!(core.device(imei(1)).and_then(|d| d.battery), Some(100));
    // Rows carry the shard of their key; the log gives the sequence.
    let mut badge2 = logged_in(&mut core, imei(2));
    let out = feed(&mut badge2, &mut core, &frame(&heartbeat(), 1));
    for r in &out.rows {
        assert_eq!(r.ingest_seq(), (0, 0));
    }
}

#[test]
fn content_that_does_not_decode_is_kept_raw_and_counted() {
    let mut core = core();
    let mut badge = logged_in(&mut core, imei(1));
    let mut bytes = BytesMut::new();
    crate::protocol::frame::write_frame_bytes(&mut bytes, n::ATTENDANCE, 9, &[1, 2, 3]).unwrap();
    let out = feed(&mut badge, &mut core, &bytes);
    assert!(out.replies.is_empty());
    assert_eq!(tables(&out), ["raw_frames"]);
    assert_eq!(core.counters.decode_errors, 1);
}

#[test]
fn commands_queued_offline_follow_the_login_ack_and_their_reply_is_matched() {
    let mut core = core();
    let mut rows = Vec::new();
    let (command, delivery) = core
        .submit(
            request(imei(1), CommandKind::OnlineCommand, "WHERE#"),
            NOW,
            &mut rows,
        )
        .unwrap();
    assert!(delivery.is_none());
    assert_eq!(rows.len(), 1, "queued is a status change");
    let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
    let out = feed(&mut badge, &mut core, &login_frame(imei(1), 1));
    let frames = replies(&out);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].0, n::LOGIN, "the ack first");
    assert_eq!(frames[1].0, n::ONLINE_COMMAND);
    assert_eq!(&frames[1].2[1..5], &command.id.to_be_bytes());
    assert_eq!(tables(&out), ["device_events", "command_log"]);
    let reply = Message::CommandReply(CommandReply {
        length: 11,
        server_flag: command.id,
        text: b"LAT:1",
        language: Some(1),
    });
    let out = feed(&mut badge, &mut core, &frame(&reply, 2));
    let Record::CommandLog(row) = &out.rows[0] else {
        panic!()
    };
    assert_eq!(
        (row.status, row.text.as_str(), row.reply_text.as_str()),
        (enums::STATUS_REPLIED, "WHERE#", "LAT:1")
    );
    assert_eq!(core.commands(imei(1))[0].status, CommandStatus::Replied);
    // An online badge gets a command at once, through its connection.
    let (_, delivery) = core
        .submit(request(imei(1), CommandKind::Message, "hi"), NOW, &mut rows)
        .unwrap();
    assert_eq!(delivery.map(|d| d.conn_id), Some(1));
}

#[test]
fn rows_wait_for_lookups_within_a_bound_and_owe_their_replies() {
    let mut s = settings(0, 1);
    s.geo = Some(geo());
    s.hold_acks = false;
    let mut core = core_with(s, Arc::new(()));
    let mut badge = logged_in(&mut core, imei(1));
    let fix = GpsFix::new(22.543099, 114.057868, 12, 90, 9, true, true);
    let request = |serial| {
        frame(
            &Message::AddressRequest(AddressRequest {
                protocol: n::ADDRESS_QUERY,
                time: TIME,
                body: zerocopy::IntoBytes::as_bytes(&fix),
                language: 2,
            }),
            serial,
        )
    };
    let out = feed(&mut badge, &mut core, &request(1));
    assert!(out.replies.is_empty(), "the reply waits for the address");
    assert!(out.rows.is_empty());
    assert_eq!(out.lookups.len(), 1);
    let lookup = &out.lookups[0];
    assert_eq!(lookup.owed, Some(Owed::Address { english: true }));
    assert_eq!(lookup.language, Language::English);
    assert_eq!(
        lookup.want.position,
        Some((fix.latitude(), fix.longitude()))
    );
    // An alarm: 0x26 at once, its ALARMSMS once the lookup is done.
    let alarm = Message::Alarm(Alarm {
        source: AlarmSource::SingleFence,
        body: AlarmBody::Fence {
            time: TIME,
            fix,
            lbs_length: 12,
            network: MobileNetwork::new(460, 0),
            cell: CellId4g::new(0x2795, 0x0E5A21),
            status: AlarmStatus {
                terminal_info: 0,
                voltage_level: 5,
                gsm_signal: 4,
                alarm_code: 1,
                language: 1,
            },
            fence_id: None,
        },
    });
    let mut out2 = feed(&mut badge, &mut core, &frame(&alarm, 2));
    assert_eq!(replies(&out2), [(n::ALARM_ACK, 2, vec![])]);
    let alarm_lookup = out2.lookups.pop().unwrap();
    assert_eq!(alarm_lookup.owed, Some(Owed::AlarmSms));
    // Two wait (the bound): the third is stored at once and answered empty.
    let out3 = feed(&mut badge, &mut core, &request(3));
    assert!(out3.lookups.is_empty());
    assert_eq!(tables(&out3), ["locations"]);
    assert_eq!(replies(&out3)[0].0, n::ADDRESS_REPLY_EN);
    assert_eq!(
        (core.counters.geo_skipped, core.counters.geo_replies_empty),
        (1, 1)
    );
    // Done: the row with its address, the owed reply with it.
    let mut reply = BytesMut::new();
    let found = Found {
        fix: None,
        address: Some("深圳".into()),
        missed: false,
    };
    let row = core.finish_lookup(alarm_lookup, found, &mut reply);
    let Record::Alarms(row) = row else { panic!() };
    assert_eq!(row.address, "深圳");
    let mut d = FrameDecoder::default();
    let sms: Vec<_> = d.frames(&reply).map(|f| (f.protocol, f.serial)).collect();
    assert_eq!(sms, [(n::LBS_ADDRESS_REQUEST, 2)]);
    assert_eq!(core.counters.geo_alarm_sms, 1);
    assert_eq!(core.counters.geo_pending, 2);
    core.lookup_stored();
    assert_eq!(core.counters.geo_pending, 1);
}

#[test]
fn with_durable_acks_an_acknowledgement_waits_with_its_row() {
    let mut s = settings(0, 1);
    s.geo = Some(geo());
    assert!(s.hold_acks, "the default");
    let mut core = core_with(s, Arc::new(()));
    let mut badge = logged_in(&mut core, imei(1));
    let alarm = Message::Alarm(Alarm {
        source: AlarmSource::Lbs,
        body: AlarmBody::Lbs {
            network: MobileNetwork::new(460, 0),
            cell: CellId4g::new(0x2795, 0x0E5A21),
            status: AlarmStatus {
                terminal_info: 0,
                voltage_level: 5,
                gsm_signal: 4,
                alarm_code: 1,
                language: 1,
            },
        },
    });
    let out = feed(&mut badge, &mut core, &frame(&alarm, 4));
    assert!(out.replies.is_empty(), "no 0x26 before the row is logged");
    assert_eq!(out.replied, 0);
    let mut d = FrameDecoder::default();
    let held: Vec<_> = d
        .frames(&out.lookups[0].ack)
        .map(|f| (f.protocol, f.serial))
        .collect();
    assert_eq!(held, [(n::ALARM_ACK, 4)]);
    // A frame whose row needs no lookup is answered at once as ever.
    let out = feed(&mut badge, &mut core, &frame(&heartbeat(), 5));
    assert_eq!(replies(&out).len(), 1);
}

#[test]
fn known_beacons_enrich_their_rows_and_the_best_becomes_a_location() {
    let registry = Beacons(vec![Beacon {
        mac: 0xC100_0000_0002,
        name: "gate".into(),
        lat: 22.5,
        lon: 114.0,
        address: "Gate 1".into(),
        active: true,
    }]);
    let mut core = core_with(settings(0, 1), Arc::new(registry));
    let mut badge = logged_in(&mut core, imei(1));
    let sightings = sightings();
    let report = Message::BluetoothLocation(BluetoothLocation {
        time: TIME,
        beacons: &sightings,
    });
    let out = feed(&mut badge, &mut core, &frame(&report, 5));
    assert_eq!(tables(&out), ["bluetooth", "bluetooth", "locations"]);
    let Record::Locations(loc) = &out.rows[2] else {
        panic!()
    };
    assert_eq!(
        (loc.lat, loc.lon, loc.address.as_str()),
        (22.5, 114.0, "Gate 1")
    );
    assert_eq!(
        (core.counters.beacons_known, core.counters.beacons_unknown),
        (1, 1)
    );
    let (unknown, overflow) = core.unknown_beacons();
    assert_eq!(
        (unknown.len(), unknown[0].mac, overflow),
        (1, 0xC100_0000_0001, 0)
    );
}

#[test]
fn the_log_rows_of_expired_commands_are_counted_records() {
    let mut core = core();
    let mut rows = Vec::new();
    core.submit(
        request(imei(1), CommandKind::OnlineCommand, "WHERE#"),
        NOW,
        &mut rows,
    )
    .unwrap();
    let ttl = core.settings().command_ttl.as_secs() as u32;
    core.expire_commands(NOW + ttl + 1, &mut rows);
    assert_eq!(rows.len(), 2);
    assert_eq!(core.counters.records, 2);
}

#[test]
fn impossible_coordinates_are_flagged_not_stored() {
    let mut core = core();
    let mut badge = logged_in(&mut core, imei(1));
    let gps = |lat: f64, lon: f64| {
        frame(
            &Message::Gps(GpsReport {
                generation: Generation::G2,
                time: TIME,
                fix: GpsFix::new(lat, lon, 12, 90, 9, true, true),
                tail: None,
            }),
            5,
        )
    };
    let position = |out: &Outcome| match &out.rows[0] {
        Record::Locations(l) => (l.has_position, l.lat, l.lon, l.position_source),
        other => panic!("{other:?}"),
    };
    // What a variant layout read as this one gives: latitude 638.
    let out = feed(&mut badge, &mut core, &gps(638.0, 114.0));
    assert_eq!(position(&out), (0, 0.0, 0.0, enums::POSITION_INVALID));
    let out = feed(&mut badge, &mut core, &gps(22.5, -190.0));
    assert_eq!(position(&out), (0, 0.0, 0.0, enums::POSITION_INVALID));
    assert_eq!(core.device(imei(1)).unwrap().latitude, None);
    let out = feed(&mut badge, &mut core, &gps(-90.0, 180.0));
    assert_eq!(position(&out), (1, -90.0, 180.0, enums::POSITION_GPS));
}

/// Found by the `ingest` fuzz target: a row flagged with impossible
/// coordinates still goes to its lookup, which may give it a position.
#[test]
fn an_impossible_fix_can_still_get_a_cell_position() {
    let mut s = settings(0, 1);
    s.geo = Some(GeoSettings {
        addresses: true,
        ..geo()
    });
    let mut core = core_with(s, Arc::new(()));
    let mut badge = logged_in(&mut core, imei(1));
    let gps = frame(
        &Message::Gps(GpsReport {
            generation: Generation::G2,
            time: TIME,
            fix: GpsFix::new(638.0, 114.0, 12, 90, 9, true, true),
            tail: Some(GpsTail {
                network: MobileNetwork::new(460, 0),
                cell: CellTower {
                    lac: 0x2795,
                    cell_id: 0x0E5A21,
                    rssi: 0,
                },
                acc: 1,
                report_mode: 0,
                realtime_upload: 0,
                mileage: None,
            }),
        }),
        5,
    );
    let cell = crate::record::lookup::Fix {
        lat: 22.5,
        lon: 114.0,
        accuracy_m: 800.0,
        source: crate::record::lookup::FixSource::Cell,
    };
    for fix in [None, Some(cell)] {
        let mut out = feed(&mut badge, &mut core, &gps);
        let lookup = out.lookups.pop().expect("the row waits for a lookup");
        let found = Found {
            fix,
            address: None,
            missed: false,
        };
        let row = core.finish_lookup(lookup, found, &mut BytesMut::new());
        core.lookup_stored();
        let Record::Locations(l) = row else { panic!() };
        let want = match fix {
            None => (0, 0.0, enums::POSITION_INVALID),
            Some(_) => (1, 22.5, enums::POSITION_CELL),
        };
        assert_eq!((l.has_position, l.lat, l.position_source), want);
    }
}

/// Device times are decoded in the zone each badge gives in its login
/// (the reference took UTC+8 for every badge), the fleet default when it
/// gives none, and a time too far ahead is flagged, not trusted.
#[test]
fn device_times_are_stored_in_true_utc_whatever_the_badges_zone() {
    let gps_at = |time: DeviceTime| {
        frame(
            &Message::Gps(GpsReport {
                generation: Generation::G2,
                time,
                fix: GpsFix::new(22.5, 114.0, 12, 90, 9, true, true),
                tail: None,
            }),
            5,
        )
    };
    let stored = |out: &Outcome| match &out.rows[0] {
        Record::Locations(l) => (l.device_time, l.device_time_valid),
        other => panic!("{other:?}"),
    };
    let fix_time = i64::from(NOW) - 90;
    for (n, zone) in [(1, Some(-300i16)), (2, Some(330)), (3, Some(0)), (4, None)] {
        let mut core = core();
        let mut badge = Badge::new(1, "127.0.0.1:5000".parse().unwrap(), false);
        let login = Message::Login(Login {
            imei: imei(n),
            type_code: Some(0x2404),
            tz_language: zone.map(|z| TzLanguage::new(z, 2)),
        });
        feed(&mut badge, &mut core, &frame(&login, 1));
        let zone = zone.map_or(480, i32::from);
        // The badge's clock shows local time in its own zone.
        let out = feed(
            &mut badge,
            &mut core,
            &gps_at(DeviceTime::from_unix(fix_time, zone)),
        );
        assert_eq!(stored(&out), (fix_time as u32, 1), "UTC{zone:+} min");
        let ahead = i64::from(NOW) + 16 * 60;
        let out = feed(
            &mut badge,
            &mut core,
            &gps_at(DeviceTime::from_unix(ahead, zone)),
        );
        assert_eq!(stored(&out), (NOW, 0), "16 minutes ahead, UTC{zone:+} min");
    }
}
