//! Property tests of the protocol codec, through the public API only.
//!
//! - every `Message` variant, generated from valid field values, survives
//!   `encode` → `FrameDecoder` → `decode` unchanged;
//! - whatever a decoder accepts, re-encoding it and decoding again is stable;
//! - frames split at random points and mixed with garbage all come out, in order;
//! - arbitrary bytes never panic the frame decoder or any message decoder, and
//!   the decoder never holds on to more than a frame's worth of input;
//! - replies and downlink frames never panic and their length fields agree
//!   with the frame, whatever the text.

use std::ops::RangeInclusive;

use badge_ingest::protocol::downlink::{DownlinkError, OnlineCommand, TextMessage};
use badge_ingest::protocol::frame::{write_frame_bytes, DEFAULT_MAX_FRAME};
use badge_ingest::protocol::layout::{
    AttendanceKind, BeaconBattery, BeaconSighting, Cell2g, Cell4g, CellId4g, CellTower, Cells,
    DeviceTime, Generation, GpsFix, MobileNetwork, WifiAp,
};
use badge_ingest::protocol::message::{
    AddressRequest, Alarm, AlarmBody, AlarmSource, AlarmStatus, Attendance, AttendanceHead,
    BluetoothLocation, BluetoothPunch, CommandReply, GeneralInfo, GpsReport, GpsTail, Heartbeat,
    HeartbeatStatus, Iccid, Imsi, LbsReport, Login, PunchBody, TimeSyncRequest, TzLanguage,
    WifiReport,
};
use badge_ingest::protocol::{
    number as n, Frame, FrameConfig, FrameDecoder, Imei, Marker, Message, Reply,
};
use bytes::{Buf, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;
use zerocopy::FromBytes;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // No regression files in the source tree: failures print their minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Owned backing storage for the borrowed parts of a `Message`
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum OwnedCells {
    G2(Vec<Cell2g>),
    G4(Vec<Cell4g>),
}

impl OwnedCells {
    fn cells(&self) -> Cells<'_> {
        match self {
            OwnedCells::G2(c) => Cells::G2(c),
            OwnedCells::G4(c) => Cells::G4(c),
        }
    }
}

#[derive(Debug, Clone)]
enum OwnedGeneralInfo {
    SimIds {
        imei: [u8; 8],
        imsi: Imsi,
        iccid: Iccid,
    },
    Iccid(Iccid),
    GpsStatus(u8),
    Other {
        sub_protocol: u8,
        data: Vec<u8>,
    },
}

/// A message whose variable-length parts live in owned vectors; `message()`
/// builds the borrowed [`Message`] over them.
#[derive(Debug, Clone)]
enum Owned {
    Login(Login),
    Heartbeat {
        extended: bool,
        status: HeartbeatStatus,
        language: Option<u16>,
        extension: Vec<u8>,
    },
    Gps(GpsReport),
    Lbs {
        protocol: u8,
        time: DeviceTime,
        network: MobileNetwork,
        cells: OwnedCells,
        timing_advance: Option<u8>,
        language: Option<u16>,
    },
    Wifi {
        time: DeviceTime,
        network: MobileNetwork,
        cells: OwnedCells,
        timing_advance: u8,
        aps: Vec<WifiAp>,
    },
    TimeSync(TimeSyncRequest),
    TimeSync2,
    AlarmFence {
        multi: bool,
        time: DeviceTime,
        fix: GpsFix,
        lbs_length: u8,
        network: MobileNetwork,
        cell: CellId4g,
        status: AlarmStatus,
        fence_id: Option<u8>,
    },
    AlarmLbs {
        network: MobileNetwork,
        cell: CellId4g,
        status: AlarmStatus,
    },
    AlarmWifi {
        time: DeviceTime,
        network: MobileNetwork,
        cells: OwnedCells,
        timing_advance: u8,
        aps: Vec<WifiAp>,
        alarm_code: u8,
        language: u8,
    },
    Address {
        protocol: u8,
        time: DeviceTime,
        body: Vec<u8>,
        language: u16,
    },
    Attendance {
        head: AttendanceHead,
        network: MobileNetwork,
        cells: OwnedCells,
        timing_advance: u8,
        aps: Vec<WifiAp>,
    },
    Punch(BluetoothPunch),
    BtLocation {
        time: DeviceTime,
        beacons: Vec<BeaconSighting>,
    },
    GeneralInfo(OwnedGeneralInfo),
    CommandReply {
        length: u8,
        server_flag: u32,
        text: Vec<u8>,
        language: Option<u16>,
    },
    Unknown {
        protocol: u8,
        content: Vec<u8>,
    },
}

impl Owned {
    fn message(&self) -> Message<'_> {
        match self {
            Owned::Login(l) => Message::Login(*l),
            Owned::Heartbeat {
                extended,
                status,
                language,
                extension,
            } => Message::Heartbeat(Heartbeat {
                extended: *extended,
                status: *status,
                language: *language,
                extension,
            }),
            Owned::Gps(g) => Message::Gps(*g),
            Owned::Lbs {
                protocol,
                time,
                network,
                cells,
                timing_advance,
                language,
            } => Message::Lbs(LbsReport {
                protocol: *protocol,
                time: *time,
                network: *network,
                cells: cells.cells(),
                timing_advance: *timing_advance,
                language: *language,
            }),
            Owned::Wifi {
                time,
                network,
                cells,
                timing_advance,
                aps,
            } => Message::Wifi(WifiReport {
                time: *time,
                network: *network,
                cells: cells.cells(),
                timing_advance: *timing_advance,
                aps,
            }),
            Owned::TimeSync(t) => Message::TimeSync(*t),
            Owned::TimeSync2 => Message::TimeSync2,
            Owned::AlarmFence {
                multi,
                time,
                fix,
                lbs_length,
                network,
                cell,
                status,
                fence_id,
            } => Message::Alarm(Alarm {
                source: if *multi {
                    AlarmSource::MultiFence
                } else {
                    AlarmSource::SingleFence
                },
                body: AlarmBody::Fence {
                    time: *time,
                    fix: *fix,
                    lbs_length: *lbs_length,
                    network: *network,
                    cell: *cell,
                    status: *status,
                    fence_id: *fence_id,
                },
            }),
            Owned::AlarmLbs {
                network,
                cell,
                status,
            } => Message::Alarm(Alarm {
                source: AlarmSource::Lbs,
                body: AlarmBody::Lbs {
                    network: *network,
                    cell: *cell,
                    status: *status,
                },
            }),
            Owned::AlarmWifi {
                time,
                network,
                cells,
                timing_advance,
                aps,
                alarm_code,
                language,
            } => Message::Alarm(Alarm {
                source: AlarmSource::Wifi,
                body: AlarmBody::Wifi {
                    time: *time,
                    network: *network,
                    cells: cells.cells(),
                    timing_advance: *timing_advance,
                    aps,
                    alarm_code: *alarm_code,
                    language: *language,
                },
            }),
            Owned::Address {
                protocol,
                time,
                body,
                language,
            } => Message::AddressRequest(AddressRequest {
                protocol: *protocol,
                time: *time,
                body,
                language: *language,
            }),
            Owned::Attendance {
                head,
                network,
                cells,
                timing_advance,
                aps,
            } => Message::Attendance(Attendance {
                head: *head,
                network: *network,
                cells: cells.cells(),
                timing_advance: *timing_advance,
                aps,
            }),
            Owned::Punch(p) => Message::BluetoothPunch(*p),
            Owned::BtLocation { time, beacons } => Message::BluetoothLocation(BluetoothLocation {
                time: *time,
                beacons,
            }),
            Owned::GeneralInfo(g) => Message::GeneralInfo(match g {
                OwnedGeneralInfo::SimIds { imei, imsi, iccid } => GeneralInfo::SimIds {
                    imei: *imei,
                    imsi: *imsi,
                    iccid: *iccid,
                },
                OwnedGeneralInfo::Iccid(i) => GeneralInfo::Iccid(*i),
                OwnedGeneralInfo::GpsStatus(s) => GeneralInfo::GpsStatus(*s),
                OwnedGeneralInfo::Other { sub_protocol, data } => GeneralInfo::Other {
                    sub_protocol: *sub_protocol,
                    data,
                },
            }),
            Owned::CommandReply {
                length,
                server_flag,
                text,
                language,
            } => Message::CommandReply(CommandReply {
                length: *length,
                server_flag: *server_flag,
                text,
                language: *language,
            }),
            Owned::Unknown { protocol, content } => Message::Unknown {
                protocol: *protocol,
                content,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Bytes with a bias toward the framing bytes, so that content and garbage
/// often look like markers and stop bytes.
fn byte() -> impl Strategy<Value = u8> + Clone {
    // One byte in sixteen each of 78, 79, 0D and 0A, otherwise any byte (a
    // map is much cheaper than a union per byte).
    (any::<u8>(), any::<u8>()).prop_map(|(select, b)| match select % 16 {
        0 => 0x78,
        1 => 0x79,
        2 => 0x0D,
        3 => 0x0A,
        _ => b,
    })
}

fn bytes(len: RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> + Clone {
    vec(byte(), len)
}

/// A zerocopy block read from arbitrary bytes of its exact size.
fn block<T: FromBytes + std::fmt::Debug>(len: usize) -> impl Strategy<Value = T> {
    vec(any::<u8>(), len).prop_map(|b| T::read_from_bytes(&b).expect("exact size"))
}

fn device_time() -> impl Strategy<Value = DeviceTime> {
    prop_oneof![
        block::<DeviceTime>(6),
        (0u8..=99, 1u8..=12, 1u8..=28, 0u8..=23, 0u8..=59, 0u8..=59)
            .prop_map(|(y, mo, d, h, mi, s)| DeviceTime::new(y, mo, d, h, mi, s)),
    ]
}

fn gps_fix() -> impl Strategy<Value = GpsFix> {
    prop_oneof![
        block::<GpsFix>(12),
        (
            -90.0..=90.0f64,
            -180.0..=180.0f64,
            any::<u8>(),
            0u16..=1023,
            0u8..=15,
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(lat, lon, speed, course, sats, pos, rt)| GpsFix::new(
                lat, lon, speed, course, sats, pos, rt
            )),
    ]
}

/// An MCC/MNC the wire can carry: a one-byte MNC must be at most 255.
fn network() -> impl Strategy<Value = MobileNetwork> {
    prop_oneof![
        (0u16..=0x7FFF, 0u16..=0xFF).prop_map(|(mcc, mnc)| MobileNetwork {
            mcc,
            mnc,
            wide_mnc: false
        }),
        (0u16..=0x7FFF, any::<u16>()).prop_map(|(mcc, mnc)| MobileNetwork {
            mcc,
            mnc,
            wide_mnc: true
        }),
        (0u16..=999, 0u16..=999).prop_map(|(mcc, mnc)| MobileNetwork::new(mcc, mnc)),
    ]
}

fn generation() -> impl Strategy<Value = Generation> {
    prop_oneof![Just(Generation::G2), Just(Generation::G4)]
}

fn cell2g() -> impl Strategy<Value = Cell2g> {
    prop_oneof![
        1 => Just(Cell2g::new(0, 0, 0)),
        4 => (any::<u16>(), 0u32..=0xFF_FFFF, any::<u8>()).prop_map(|(l, c, r)| Cell2g::new(l, c, r)),
    ]
}

fn cell4g() -> impl Strategy<Value = Cell4g> {
    prop_oneof![
        1 => Just(Cell4g::new(0, 0, 0)),
        4 => (any::<u32>(), any::<u64>(), any::<u8>()).prop_map(|(l, c, r)| Cell4g::new(l, c, r)),
    ]
}

fn cells(g: Generation, count: RangeInclusive<usize>) -> BoxedStrategy<OwnedCells> {
    match g {
        Generation::G2 => vec(cell2g(), count).prop_map(OwnedCells::G2).boxed(),
        Generation::G4 => vec(cell4g(), count).prop_map(OwnedCells::G4).boxed(),
    }
}

fn wifi_aps(count: RangeInclusive<usize>) -> impl Strategy<Value = Vec<WifiAp>> {
    vec(
        (any::<[u8; 6]>(), any::<u8>()).prop_map(|(m, r)| WifiAp::new(m, r)),
        count,
    )
}

fn beacon() -> impl Strategy<Value = BeaconSighting> {
    prop_oneof![
        block::<BeaconSighting>(30),
        (
            any::<i8>(),
            any::<[u8; 6]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
            prop_oneof![
                any::<u16>().prop_map(BeaconBattery::Centivolts),
                any::<u16>().prop_map(BeaconBattery::Percent)
            ]
        )
            .prop_map(|(rssi, mac, uuid, major, minor, battery)| {
                BeaconSighting::new(rssi, mac, uuid, major, minor, battery)
            }),
    ]
}

fn alarm_status() -> impl Strategy<Value = AlarmStatus> {
    block::<AlarmStatus>(5)
}

fn cell_id4g() -> impl Strategy<Value = CellId4g> {
    (any::<u32>(), any::<u64>()).prop_map(|(l, c)| CellId4g::new(l, c))
}

/// Protocol numbers `Message::decode_content` keeps as `Unknown`.
fn is_unknown(protocol: u8) -> bool {
    matches!(
        Message::decode_content(protocol, &[]),
        Ok(Message::Unknown { .. })
    )
}

fn login() -> impl Strategy<Value = Owned> {
    (
        0u64..=9_999_999_999_999_999,
        option::of((any::<u16>(), option::of(any::<u16>()))),
    )
        .prop_map(|(imei, opt)| {
            Owned::Login(Login {
                imei: Imei::new(imei).unwrap(),
                type_code: opt.map(|o| o.0),
                // The zone word only follows a type code.
                tz_language: opt.and_then(|o| o.1).map(TzLanguage),
            })
        })
}

fn heartbeat() -> impl Strategy<Value = Owned> {
    (
        any::<bool>(),
        any::<[u8; 3]>(),
        option::of(any::<u16>()),
        bytes(0..=40),
    )
        .prop_map(
            |(extended, [terminal_info, battery, gsm_signal], language, extension)| {
                Owned::Heartbeat {
                    extended,
                    status: HeartbeatStatus {
                        terminal_info,
                        battery,
                        gsm_signal,
                    },
                    language,
                    // 0x13 carries no extension, and one can only follow a language.
                    extension: if extended && language.is_some() {
                        extension
                    } else {
                        Vec::new()
                    },
                }
            },
        )
}

fn gps() -> impl Strategy<Value = Owned> {
    let tail = (
        network(),
        any::<u32>(),
        any::<u64>(),
        any::<[u8; 3]>(),
        option::of(any::<u32>()),
    );
    (generation(), device_time(), gps_fix(), option::of(tail)).prop_map(
        |(generation, time, fix, tail)| {
            Owned::Gps(GpsReport {
                generation,
                time,
                fix,
                tail: tail.map(
                    |(network, lac, cell_id, [acc, report_mode, realtime_upload], mileage)| {
                        let cell = match generation {
                            Generation::G2 => CellTower {
                                lac: lac & 0xFFFF,
                                cell_id: cell_id & 0xFF_FFFF,
                                rssi: 0,
                            },
                            Generation::G4 => CellTower {
                                lac,
                                cell_id,
                                rssi: 0,
                            },
                        };
                        GpsTail {
                            network,
                            cell,
                            acc,
                            report_mode,
                            realtime_upload,
                            mileage,
                        }
                    },
                ),
            })
        },
    )
}

fn lbs() -> impl Strategy<Value = Owned> {
    select(vec![n::LBS_MULTI, n::LBS_MULTI_REPLY, n::LBS_4G])
        .prop_flat_map(|protocol| {
            let g = if protocol == n::LBS_4G {
                Generation::G4
            } else {
                Generation::G2
            };
            (
                Just(protocol),
                device_time(),
                network(),
                cells(g, 1..=7),
                option::of((any::<u8>(), option::of(any::<u16>()))),
            )
        })
        .prop_map(|(protocol, time, network, cells, opt)| Owned::Lbs {
            protocol,
            time,
            network,
            cells,
            // The language only follows a timing advance.
            timing_advance: opt.map(|o| o.0),
            language: opt.and_then(|o| o.1),
        })
}

fn wifi() -> impl Strategy<Value = Owned> {
    generation()
        .prop_flat_map(|g| {
            (
                device_time(),
                network(),
                cells(g, 7..=7),
                any::<u8>(),
                wifi_aps(0..=20),
            )
        })
        .prop_map(|(time, network, cells, timing_advance, aps)| Owned::Wifi {
            time,
            network,
            cells,
            timing_advance,
            aps,
        })
}

fn time_sync() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (device_time(), any::<u16>()).prop_map(|(t, language)| Owned::TimeSync(TimeSyncRequest {
            device_time: Some(t),
            language
        })),
        // Without a device clock there is no language either: Chinese.
        Just(Owned::TimeSync(TimeSyncRequest {
            device_time: None,
            language: 1
        })),
        Just(Owned::TimeSync2),
    ]
}

fn alarm() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (
            any::<bool>(),
            device_time(),
            gps_fix(),
            any::<u8>(),
            network(),
            cell_id4g(),
            alarm_status(),
            option::of(any::<u8>())
        )
            .prop_map(
                |(multi, time, fix, lbs_length, network, cell, status, fence_id)| {
                    Owned::AlarmFence {
                        multi,
                        time,
                        fix,
                        lbs_length,
                        network,
                        cell,
                        status,
                        // Only 0xA4 carries a fence id.
                        fence_id: if multi { fence_id } else { None },
                    }
                }
            ),
        (network(), cell_id4g(), alarm_status()).prop_map(|(network, cell, status)| {
            Owned::AlarmLbs {
                network,
                cell,
                status,
            }
        }),
        generation()
            .prop_flat_map(|g| (
                device_time(),
                network(),
                cells(g, 0..=8),
                any::<u8>(),
                wifi_aps(0..=8),
                any::<u8>(),
                any::<u8>()
            ))
            .prop_map(
                |(time, network, cells, timing_advance, aps, alarm_code, language)| {
                    Owned::AlarmWifi {
                        time,
                        network,
                        cells,
                        timing_advance,
                        aps,
                        alarm_code,
                        language,
                    }
                }
            ),
    ]
}

fn address_request() -> impl Strategy<Value = Owned> {
    (
        select(vec![
            n::LBS_ADDRESS_REQUEST,
            n::ADDRESS_QUERY,
            n::LBS_4G_ADDRESS_REQUEST,
        ]),
        device_time(),
        bytes(0..=60),
        any::<u16>(),
    )
        .prop_map(|(protocol, time, body, language)| Owned::Address {
            protocol,
            time,
            body,
            language,
        })
}

fn attendance() -> impl Strategy<Value = Owned> {
    generation()
        .prop_flat_map(|g| {
            let network = match g {
                Generation::G2 => network().boxed(),
                // 0xB1 always sends a two-byte MNC.
                Generation::G4 => (0u16..=0x7FFF, any::<u16>())
                    .prop_map(|(mcc, mnc)| MobileNetwork {
                        mcc,
                        mnc,
                        wide_mnc: true,
                    })
                    .boxed(),
            };
            (
                block::<AttendanceHead>(26),
                network,
                cells(g, 7..=7),
                any::<u8>(),
                wifi_aps(0..=15),
            )
        })
        .prop_map(
            |(head, network, cells, timing_advance, aps)| Owned::Attendance {
                head,
                network,
                cells,
                timing_advance,
                aps,
            },
        )
}

fn bluetooth() -> impl Strategy<Value = Owned> {
    prop_oneof![
        block::<PunchBody>(38).prop_map(|body| Owned::Punch(BluetoothPunch { body })),
        (
            device_time(),
            prop_oneof![8 => vec(beacon(), 0..=6), 1 => vec(beacon(), 200..=255)]
        )
            .prop_map(|(time, beacons)| Owned::BtLocation { time, beacons }),
    ]
}

fn general_info() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (any::<[u8; 8]>(), any::<[u8; 8]>(), any::<[u8; 10]>()).prop_map(|(imei, imsi, iccid)| {
            OwnedGeneralInfo::SimIds {
                imei,
                imsi: Imsi(imsi),
                iccid: Iccid(iccid),
            }
        }),
        any::<[u8; 10]>().prop_map(|i| OwnedGeneralInfo::Iccid(Iccid(i))),
        any::<u8>().prop_map(OwnedGeneralInfo::GpsStatus),
        (
            prop_oneof![select(vec![0x0Au8, 0x00, 0x09]), any::<u8>()],
            bytes(0..=60)
        )
            .prop_map(|(sub_protocol, mut data)| {
                // A known sub-protocol is only kept raw when too short for its layout.
                match sub_protocol {
                    0x0A => data.truncate(25),
                    0x00 => data.truncate(9),
                    0x09 => data.clear(),
                    _ => {}
                }
                OwnedGeneralInfo::Other { sub_protocol, data }
            }),
    ]
    .prop_map(Owned::GeneralInfo)
}

fn command_reply() -> impl Strategy<Value = Owned> {
    (
        any::<u8>(),
        any::<u32>(),
        option::of(any::<u16>()),
        bytes(0..=100),
    )
        .prop_map(|(length, server_flag, language, mut text)| {
            // The reference reads a language only from more than 7 content
            // bytes (5 + text + 2), and always from more than 7.
            match language {
                Some(_) if text.is_empty() => text.push(b'!'),
                Some(_) => {}
                None => text.truncate(2),
            }
            Owned::CommandReply {
                length,
                server_flag,
                text,
                language,
            }
        })
}

fn unknown() -> impl Strategy<Value = Owned> {
    (
        any::<u8>().prop_filter("a protocol the decoder knows", |p| is_unknown(*p)),
        bytes(0..=400),
    )
        .prop_map(|(protocol, content)| Owned::Unknown { protocol, content })
}

fn any_message() -> impl Strategy<Value = Owned> {
    Union::new(vec![
        login().boxed(),
        heartbeat().boxed(),
        gps().boxed(),
        lbs().boxed(),
        wifi().boxed(),
        time_sync().boxed(),
        alarm().boxed(),
        address_request().boxed(),
        attendance().boxed(),
        bluetooth().boxed(),
        general_info().boxed(),
        command_reply().boxed(),
        unknown().boxed(),
    ])
}

/// Unicode text of all kinds: ASCII, CJK (two UTF-16 bytes each), emoji
/// (surrogate pairs), control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,200}",
        "[a-zA-Z0-9 ,.#]{0,300}",
        "[\u{4e00}-\u{9fa5}]{90,140}",
        "[\u{1F600}-\u{1F64F}a]{40,80}",
    ]
}

/// One piece of a hostile stream: noise, a real frame, a real frame with a
/// byte changed, a cut frame, or a header promising a huge frame.
fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
    let frame =
        (any::<u8>(), any::<u16>(), bytes(0..=300)).prop_map(|(protocol, serial, content)| {
            let mut out = BytesMut::new();
            write_frame_bytes(&mut out, protocol, serial, &content).unwrap();
            out.to_vec()
        });
    prop_oneof![
        bytes(0..=64),
        frame.clone(),
        (frame.clone(), any::<Index>(), 1u8..=255).prop_map(|(mut f, i, x)| {
            let i = i.index(f.len());
            f[i] ^= x;
            f
        }),
        (frame, any::<Index>()).prop_map(|(f, i)| f[..i.index(f.len())].to_vec()),
        (prop_oneof![Just(0x78u8), Just(0x79u8)], any::<[u8; 2]>())
            .prop_map(|(m, l)| vec![m, m, l[0], l[1]]),
    ]
}

fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    vec(stream_piece(), 0..=24).prop_map(|pieces| pieces.concat())
}

/// CRC-16/X-25 bit by bit, independent of the crate's table-driven one.
fn x25(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The single frame in `bytes`, which must be all of it.
fn only_frame<'a>(dec: &mut FrameDecoder, bytes: &'a [u8]) -> Result<Frame<'a>, TestCaseError> {
    let mut pos = 0;
    let f = dec.next_frame(bytes, &mut pos);
    prop_assert!(f.is_some(), "no frame in {bytes:02X?}");
    prop_assert_eq!(pos, bytes.len());
    let f = f.unwrap();
    prop_assert!(f.crc_ok);
    // The length field agrees with the bytes, and the marker with the length.
    let (header, length) = match f.marker {
        Marker::Short => (3, bytes[2] as usize),
        Marker::Long => (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize),
    };
    prop_assert_eq!(header + length + 2, bytes.len());
    prop_assert_eq!(length, 1 + f.content.len() + 4);
    prop_assert_eq!(f.marker == Marker::Long, length > 0xFF);
    Ok(f)
}

fn big_decoder() -> FrameDecoder {
    FrameDecoder::new(FrameConfig {
        max_frame_len: 1 << 17,
        ..FrameConfig::default()
    })
}

/// What the server's read loop does: feed chunks, take frames, keep the rest.
fn decode_stream(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> (Vec<(u8, u16, Vec<u8>)>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut it = dec.frames(&buf);
        got.extend(
            it.by_ref()
                .map(|f| (f.protocol, f.serial, f.content.to_vec())),
        );
        let used = it.consumed();
        assert!(used <= buf.len());
        buf.advance(used);
    }
    (got, buf)
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

#[test]
fn the_unknown_protocols_are_exactly_those_outside_the_uplink_set() {
    let downlink_only = [
        n::ONLINE_COMMAND,
        n::MESSAGE,
        n::ALARM_ACK,
        n::ADDRESS_REPLY_EN,
    ];
    for p in 0..=255u8 {
        let known = n::UPLINK.contains(&p) && !downlink_only.contains(&p);
        assert_eq!(is_unknown(p), !known, "0x{p:02X}");
        assert_eq!(
            n::name(p) == "unknown",
            !n::UPLINK.contains(&p),
            "0x{p:02X}"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    /// encode → FrameDecoder → decode gives back the message, for every variant.
    #[test]
    fn every_message_round_trips(owned in any_message(), serial in any::<u16>()) {
        let m = owned.message();
        let mut out = BytesMut::new();
        m.encode(serial, &mut out).unwrap();
        let mut dec = FrameDecoder::default();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!((f.protocol, f.serial), (m.protocol(), serial));
        prop_assert_eq!(f.content.len(), m.content_len());
        let back = Message::decode(&f);
        prop_assert_eq!(back, Ok(m));
    }

    /// GPS blocks built from degrees read back within the wire's resolution,
    /// in the right hemisphere.
    #[test]
    fn gps_degrees_round_trip(lat in -90.0..=90.0f64, lon in -180.0..=180.0f64, course in 0u16..=2000) {
        let fix = GpsFix::new(lat, lon, 0, course, 4, true, false);
        let half_unit = 0.5 / 1_800_000.0 + 1e-12;
        prop_assert!((fix.latitude() - lat).abs() <= half_unit, "{} vs {}", fix.latitude(), lat);
        prop_assert!((fix.longitude() - lon).abs() <= half_unit, "{} vs {}", fix.longitude(), lon);
        prop_assert_eq!(fix.course(), course.min(1023));
        prop_assert!(fix.positioned() && !fix.realtime());
    }

    /// The UTC+8 wall clock of 0x8A replies reads back as the same instant.
    #[test]
    fn device_time_round_trips_through_unix_time(unix in 946_656_000i64..=8_000_000_000, offset in -720i32..=840) {
        let t = DeviceTime::from_unix(unix, offset);
        prop_assert_eq!(t.to_unix(offset), Some(unix));
    }

    /// Whatever a message decoder accepts, re-encoding it never panics (the
    /// promised and written lengths agree) and decodes to the same message.
    #[test]
    fn decoding_is_stable_under_re_encoding(
        protocol in prop_oneof![select(n::UPLINK.to_vec()), any::<u8>()],
        content in bytes(0..=600),
    ) {
        let Ok(m) = Message::decode_content(protocol, &content) else { return Ok(()) };
        prop_assert_eq!(m.protocol(), protocol);
        prop_assert!(m.content_len() <= content.len());
        let mut out = BytesMut::new();
        m.encode(7, &mut out).unwrap();
        let mut dec = FrameDecoder::default();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!(Message::decode(&f), Ok(m));
    }

    /// The same, from real messages with bytes changed and the end cut: this
    /// reaches the decoders random bytes rarely satisfy (BCD IMEIs, 0xA9 cell
    /// types, exact station counts).
    #[test]
    fn mutated_messages_decode_stably(
        owned in any_message(),
        flips in vec((any::<Index>(), any::<u8>()), 0..=3),
        cut in option::of(any::<Index>()),
    ) {
        let m = owned.message();
        let mut content = BytesMut::new();
        m.encode_content(&mut content);
        let mut content = content.to_vec();
        if !content.is_empty() {
            for (i, x) in &flips {
                let i = i.index(content.len());
                content[i] ^= x;
            }
        }
        if let Some(cut) = cut {
            content.truncate(cut.index(content.len() + 1));
        }
        let Ok(d) = Message::decode_content(m.protocol(), &content) else { return Ok(()) };
        prop_assert!(d.content_len() <= content.len());
        let mut out = BytesMut::new();
        d.encode(1, &mut out).unwrap();
        let mut dec = FrameDecoder::default();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!(Message::decode(&f), Ok(d));
    }

    /// Frames split at random points, with garbage (no 78/79 bytes) before,
    /// between and after them: every frame comes out, in order, and only the
    /// garbage is skipped.
    #[test]
    fn frames_survive_random_splits_and_garbage(
        frames in vec((any::<u8>(), any::<u16>(), bytes(0..=300)), 1..=10),
        garbage in vec(vec(any::<u8>().prop_map(|b| if b == 0x78 || b == 0x79 { b ^ 0x10 } else { b }), 0..=20), 11),
        cuts in vec(any::<Index>(), 0..=20),
    ) {
        let mut stream = Vec::new();
        let mut out = BytesMut::new();
        for (i, (protocol, serial, content)) in frames.iter().enumerate() {
            stream.extend_from_slice(&garbage[i]);
            out.clear();
            write_frame_bytes(&mut out, *protocol, *serial, content).unwrap();
            stream.extend_from_slice(&out);
        }
        stream.extend_from_slice(&garbage[10]);
        let garbage_len: usize = garbage[..frames.len()].iter().chain([&garbage[10]]).map(Vec::len).sum();

        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        let chunks: Vec<&[u8]> = at.windows(2).map(|w| &stream[w[0]..w[1]]).collect();

        let mut dec = FrameDecoder::default();
        let (got, rest) = decode_stream(&mut dec, &chunks);
        prop_assert_eq!(got, frames);
        prop_assert!(rest.is_empty(), "left over: {:02X?}", &rest[..]);
        prop_assert_eq!(dec.stats.garbage_bytes, garbage_len as u64);
        prop_assert_eq!(dec.stats.rejected(), 0);
        prop_assert_eq!(dec.stats.resyncs, 0);
    }

    /// Arbitrary input never panics the frame decoder; it never consumes more
    /// than it was given, and what it keeps is shorter than one frame.
    /// Every frame's content goes through every message decoder too.
    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop_oneof![bytes(0..=4096), bytes(0..=64), hostile_stream()],
        max_frame_len in prop_oneof![Just(DEFAULT_MAX_FRAME), 16usize..=600],
        accept_bad_crc in any::<bool>(),
        chunk in 1usize..=700,
        extra in vec(any::<u8>(), 4),
    ) {
        let mut dec = FrameDecoder::new(FrameConfig { max_frame_len, accept_bad_crc });
        let mut pos = 0;
        while let Some(f) = dec.next_frame(&input, &mut pos) {
            prop_assert!(pos <= input.len());
            prop_assert!(f.raw.len() <= max_frame_len);
            prop_assert!(f.raw.ends_with(&[0x0D, 0x0A]));
            let crc_at = f.raw.len() - 4;
            let crc_ok = x25(&f.raw[2..crc_at]) == u16::from_be_bytes([f.raw[crc_at], f.raw[crc_at + 1]]);
            prop_assert_eq!(f.crc_ok, crc_ok);
            prop_assert!(f.crc_ok || accept_bad_crc);
            let _ = Message::decode(&f);
            for &p in n::UPLINK.iter().chain(&extra) {
                let _ = Message::decode_content(p, f.content);
            }
        }
        prop_assert!(pos <= input.len());
        prop_assert!(input.len() - pos < max_frame_len, "kept {} of {}", input.len() - pos, input.len());

        // The same input fed in chunks: the buffer never outgrows a frame.
        let mut dec = FrameDecoder::new(FrameConfig { max_frame_len, accept_bad_crc });
        let mut buf = BytesMut::new();
        for c in input.chunks(chunk) {
            buf.extend_from_slice(c);
            let mut it = dec.frames(&buf);
            it.by_ref().for_each(drop);
            let used = it.consumed();
            prop_assert!(used <= buf.len());
            buf.advance(used);
            prop_assert!(buf.len() < max_frame_len);
        }

        // Raw content, as any protocol.
        for &p in n::UPLINK.iter().chain(&extra) {
            for end in [0, 1, 7, 26, input.len().min(600)] {
                let _ = Message::decode_content(p, &input[..end.min(input.len())]);
            }
        }
    }

    /// Every message gets the reply the reference gives it, or none, and
    /// every reply encodes to a clean frame echoing the serial.
    #[test]
    fn immediate_replies(owned in any_message(), serial in any::<u16>(), now in 946_684_800i64..=8_000_000_000) {
        let m = owned.message();
        let r = Reply::immediate(&m, now);
        let expected = match &m {
            Message::Login(_) => Some(0x01),
            Message::Heartbeat(h) => Some(h.protocol()),
            Message::Lbs(l) if l.protocol == 0x2E => Some(0x2E),
            Message::TimeSync(_) => Some(0x1F),
            Message::TimeSync2 => Some(0x8A),
            Message::Alarm(_) => Some(0x26),
            Message::Attendance(a) => Some(a.protocol()),
            Message::BluetoothPunch(_) => Some(0xB2),
            _ => None,
        };
        prop_assert_eq!(r.map(|r| r.protocol()), expected);
        let Some(r) = r else { return Ok(()) };
        let mut out = BytesMut::new();
        r.encode(serial, &mut out).unwrap();
        let mut dec = FrameDecoder::default();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!((f.protocol, f.serial), (r.protocol(), serial));
        match r {
            Reply::Ack { .. } => prop_assert!(f.content.is_empty()),
            Reply::TimeSync { time, language } => {
                let TimeSyncRequest { language: asked, .. } = match m { Message::TimeSync(t) => t, _ => unreachable!() };
                prop_assert_eq!(language, asked);
                let shift = if asked == 1 { 8 * 3600 } else { 0 };
                // The 4-byte field saturates past 2106 (the reference would crash there).
                prop_assert_eq!(i64::from(time), (now + shift).min(i64::from(u32::MAX)));
                prop_assert_eq!(&f.content[..4], &time.to_be_bytes());
                prop_assert_eq!(&f.content[4..], &language.to_be_bytes());
            }
            Reply::TimeSync2 { time } => {
                prop_assert_eq!(time.to_unix(8 * 60), Some(now));
                prop_assert_eq!(f.content.len(), 6);
            }
            Reply::Punch { time, kind, reserved, .. } => {
                let (t, k, res) = match m {
                    Message::Attendance(a) => (a.head.time, a.kind(), a.head.reserved),
                    Message::BluetoothPunch(p) => (p.body.time, p.kind(), p.body.reserved),
                    _ => unreachable!(),
                };
                prop_assert_eq!((time, kind, reserved), (t, k, res));
                let code = match kind { AttendanceKind::ClockIn => 1, AttendanceKind::ClockOut => 2 };
                let mut content = vec![t.year, t.month, t.day, t.hour, t.minute, t.second, 1, code];
                content.extend_from_slice(&res);
                prop_assert_eq!(f.content, &content[..]);
            }
            Reply::Address { .. } => prop_assert!(false, "address replies are never immediate"),
        }
    }

    /// Address replies, whatever the address and phone: the length fields
    /// agree with the frame, the address is a whole-character prefix (all of
    /// it unless a 0x17 length byte cannot hold it), the phone is 21 ASCII bytes.
    #[test]
    fn address_replies_are_well_formed(
        address in text(),
        phone in text(),
        english in any::<bool>(),
        alarm in any::<bool>(),
        serial in any::<u16>(),
    ) {
        let r = Reply::Address { english, alarm, address: &address, phone: &phone };
        let mut out = BytesMut::new();
        r.encode(serial, &mut out).unwrap();
        let mut dec = big_decoder();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!((f.protocol, f.serial), (if english { 0x97 } else { 0x17 }, serial));
        let (inner_len, inner) = if english {
            (u16::from_be_bytes([f.content[0], f.content[1]]) as usize, &f.content[2..])
        } else {
            (f.content[0] as usize, &f.content[1..])
        };
        prop_assert_eq!(inner_len, inner.len());
        let marker: &[u8] = if alarm { b"ALARMSMS" } else { b"ADDRESS" };
        prop_assert_eq!(&inner[..4], &[0u8; 4]);
        prop_assert_eq!(&inner[4..4 + marker.len()], marker);
        let head = 4 + marker.len() + 2;
        prop_assert_eq!(&inner[head - 2..head], b"&&");
        let tail = &inner[inner.len() - 25..];
        prop_assert_eq!(&tail[..2], b"&&");
        prop_assert_eq!(&tail[23..], b"##");
        let mut want_phone: Vec<u8> = phone.chars().filter(char::is_ascii).take(21).map(|c| c as u8).collect();
        want_phone.resize(21, b'0');
        prop_assert_eq!(&tail[2..23], &want_phone[..]);

        let text = &inner[head..inner.len() - 25];
        prop_assert_eq!(text.len() % 2, 0);
        let units: Vec<u16> = text.chunks(2).map(|u| u16::from_be_bytes([u[0], u[1]])).collect();
        let sent = String::from_utf16(&units);
        prop_assert!(sent.is_ok(), "a surrogate pair was split");
        let sent = sent.unwrap();
        prop_assert!(address.starts_with(&sent));
        if sent.len() < address.len() {
            prop_assert!(!english, "an English reply of {} bytes was cut", text.len());
            let next = address[sent.len()..].chars().next().unwrap();
            prop_assert!(inner.len() + 2 * next.len_utf16() > 255, "cut although {next:?} fits");
        }
    }

    /// 0x80 commands: a text too long for the length byte is refused and
    /// nothing is written; otherwise the length byte is true.
    #[test]
    fn online_commands_are_well_formed(text in text(), flag in any::<u32>(), serial in any::<u16>()) {
        let mut out = BytesMut::new();
        let res = OnlineCommand { server_flag: flag, text: &text }.encode(serial, &mut out);
        if text.len() > OnlineCommand::MAX_TEXT {
            prop_assert_eq!(res, Err(DownlinkError::TooLong { len: text.len(), max: OnlineCommand::MAX_TEXT }));
            prop_assert!(out.is_empty());
            return Ok(());
        }
        prop_assert_eq!(res, Ok(()));
        let mut dec = FrameDecoder::default();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!((f.protocol, f.serial), (0x80, serial));
        prop_assert_eq!(f.content[0] as usize, f.content.len() - 1);
        prop_assert_eq!(&f.content[1..5], &flag.to_be_bytes());
        prop_assert_eq!(&f.content[5..f.content.len() - 2], text.as_bytes());
        prop_assert_eq!(&f.content[f.content.len() - 2..], &[0x00, 0x01]);
    }

    /// 0x82 messages: one length byte up to 255, two above, always true.
    #[test]
    fn text_messages_are_well_formed(text in text(), flag in any::<u32>(), serial in any::<u16>()) {
        let mut out = BytesMut::new();
        TextMessage { server_flag: flag, text: &text }.encode(serial, &mut out).unwrap();
        let mut dec = big_decoder();
        let f = only_frame(&mut dec, &out)?;
        prop_assert_eq!((f.protocol, f.serial), (0x82, serial));
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let inner_len = 4 + utf16.len() + 2;
        let (len, inner) = if inner_len > 0xFF {
            (u16::from_be_bytes([f.content[0], f.content[1]]) as usize, &f.content[2..])
        } else {
            (f.content[0] as usize, &f.content[1..])
        };
        prop_assert_eq!(len, inner_len);
        prop_assert_eq!(inner.len(), inner_len);
        prop_assert_eq!(&inner[..4], &flag.to_be_bytes());
        prop_assert_eq!(&inner[4..4 + utf16.len()], &utf16[..]);
        prop_assert_eq!(&inner[4 + utf16.len()..], &[0x00, 0x01]);
    }
}
