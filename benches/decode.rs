//! Decode throughput on a realistic mixed stream of badge traffic.
//!
//! The stream (10 000 frames, fixed seed) is built once, outside the timed
//! loops: mostly heartbeats, then GPS (both hemispheres, 2G and 4G), LBS,
//! WiFi, attendance, bluetooth punches and bluetooth location reports (some
//! long enough to need `79 79` frames), a few alarms, and ~1% of the bytes
//! garbage between frames.
//!
//! Benchmarks (each in an `elements` group, throughput in frames, and a
//! `bytes` group, throughput in bytes of the stream):
//!
//! - `frames_only`: [`FrameDecoder`] over the whole buffer (split + CRC);
//! - `frames_and_messages`: the same, then [`Message::decode`] on every frame;
//! - `replies`: the same, then [`Reply::immediate`] encoded into a reused buffer;
//! - `chunked_1460_frames` / `chunked_1460_replies`: the stream cut into
//!   1460-byte reads fed through a `BytesMut` as the server does (extend,
//!   iterate the frames, `split_to(consumed)`).
//!
//! Run: `cargo bench --bench decode -- --warm-up-time 2 --measurement-time 5`

use std::hint::black_box;

use badge_ingest::protocol::layout::{
    AttendanceKind, BeaconBattery, BeaconSighting, Cell2g, Cell4g, CellId4g, CellTower, Cells,
    DeviceTime, Generation, GpsFix, MobileNetwork, TerminalInfo, WifiAp,
};
use badge_ingest::protocol::message::{
    Alarm, AlarmBody, AlarmSource, AlarmStatus, Attendance, AttendanceHead, BluetoothLocation,
    BluetoothPunch, GpsReport, GpsTail, Heartbeat, HeartbeatStatus, LbsReport, PunchBody,
    WifiReport,
};
use badge_ingest::protocol::{FrameDecoder, Message, Reply};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zerocopy::byteorder::big_endian::U16;

const FRAMES: usize = 10_000;
const SEED: u64 = 0x5EED_BADC_0FFE_E001;
const NOW: i64 = 1_714_000_000;
const READ_SIZE: usize = 1460;

/// xorshift64*: enough randomness for a traffic mix, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    /// Uniform in `[lo, hi)`.
    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }

    fn mac(&mut self) -> [u8; 6] {
        let v = self.next().to_be_bytes();
        [v[0], v[1], v[2], v[3], v[4], v[5]]
    }
}

/// The generated stream and what a decoder must find in it.
struct Stream {
    bytes: Vec<u8>,
    frames: usize,
    garbage: usize,
    long_frames: usize,
    replies: usize,
}

fn network(rng: &mut Rng) -> MobileNetwork {
    match rng.range(0, 9) {
        0..=5 => MobileNetwork::new(460, rng.range(0, 11) as u16),
        6 | 7 => MobileNetwork::new(234, 15),
        // A three-digit MNC sent as two bytes.
        _ => MobileNetwork {
            mcc: 310,
            mnc: 260,
            wide_mnc: true,
        },
    }
}

fn cells_2g(rng: &mut Rng) -> Vec<Cell2g> {
    let seen = rng.range(1, 7) as usize;
    (0..7)
        .map(|i| {
            if i < seen {
                Cell2g::new(
                    rng.range(1, 0xFFFE) as u16,
                    rng.range(1, 0xFF_FFFF) as u32,
                    rng.range(20, 70) as u8,
                )
            } else {
                Cell2g::new(0, 0, 0)
            }
        })
        .collect()
}

fn cells_4g(rng: &mut Rng) -> Vec<Cell4g> {
    let seen = rng.range(1, 7) as usize;
    (0..7)
        .map(|i| {
            if i < seen {
                Cell4g::new(
                    rng.range(1, 0x00FF_FFFF) as u32,
                    rng.range(1, 0xFFF_FFFF),
                    rng.range(20, 70) as u8,
                )
            } else {
                Cell4g::new(0, 0, 0)
            }
        })
        .collect()
}

fn aps(rng: &mut Rng, lo: u64, hi: u64) -> Vec<WifiAp> {
    (0..rng.range(lo, hi))
        .map(|_| WifiAp::new(rng.mac(), rng.range(30, 95) as u8))
        .collect()
}

fn fix(rng: &mut Rng) -> GpsFix {
    // Both hemispheres on both axes.
    let lat = rng.float(-55.0, 65.0);
    let lon = rng.float(-180.0, 180.0);
    GpsFix::new(
        lat,
        lon,
        rng.range(0, 20) as u8,
        rng.range(0, 359) as u16,
        rng.range(3, 12) as u8,
        rng.percent(90),
        rng.percent(95),
    )
}

const UUID: [u8; 16] = [
    0xFD, 0xA5, 0x06, 0x93, 0xA4, 0xE2, 0x4F, 0xB1, 0xAF, 0xCF, 0xC6, 0xEB, 0x07, 0x64, 0x78, 0x25,
];

fn beacon(rng: &mut Rng) -> BeaconSighting {
    let battery = if rng.percent(50) {
        BeaconBattery::Percent(rng.range(10, 100) as u16)
    } else {
        BeaconBattery::Centivolts(rng.range(250, 330) as u16)
    };
    BeaconSighting::new(
        -(rng.range(40, 100) as i8),
        rng.mac(),
        UUID,
        rng.range(1, 20) as u16,
        rng.range(1, 500) as u16,
        battery,
    )
}

/// Appends one frame of a message kind drawn from the traffic mix.
/// Returns whether it was a long (`79 79`) frame.
fn push_message(rng: &mut Rng, i: usize, serial: u16, out: &mut BytesMut) -> bool {
    let time = DeviceTime::from_unix(NOW - 86_400 + i as i64 * 7, 8 * 60);
    let start = out.len();
    let roll = rng.range(0, 999);
    // Owned storage the borrowed message parts point into.
    let c2 = cells_2g(rng);
    let c4 = cells_4g(rng);
    let msg_aps;
    let beacons;
    let msg = match roll {
        // 40 %: heartbeats.
        0..=399 => Message::Heartbeat(Heartbeat {
            extended: false,
            status: HeartbeatStatus {
                terminal_info: if rng.percent(50) { 0x44 } else { 0x04 },
                battery: rng.range(5, 100) as u8,
                gsm_signal: rng.range(0, 4) as u8,
            },
            language: Some(rng.range(1, 2) as u16),
            extension: &[],
        }),
        // 14 %: GPS, 2G (0x22) and 4G (0xA0), with and without the tail.
        400..=539 => {
            let generation = if rng.percent(50) {
                Generation::G2
            } else {
                Generation::G4
            };
            let tail = rng.percent(85).then(|| GpsTail {
                network: network(rng),
                cell: match generation {
                    Generation::G2 => CellTower {
                        lac: rng.range(1, 0xFFFF) as u32,
                        cell_id: rng.range(1, 0xFF_FFFF),
                        rssi: 0,
                    },
                    Generation::G4 => CellTower {
                        lac: rng.range(1, 0x00FF_FFFF) as u32,
                        cell_id: rng.range(1, 0xFFF_FFFF),
                        rssi: 0,
                    },
                },
                acc: 0,
                report_mode: rng.range(0, 3) as u8,
                realtime_upload: 0,
                mileage: rng.percent(60).then(|| rng.range(0, 1_000_000) as u32),
            });
            Message::Gps(GpsReport {
                generation,
                time,
                fix: fix(rng),
                tail,
            })
        }
        // 10 %: LBS 0x28 / 0x2E (2G) and 0xA1 (4G).
        540..=639 => {
            let (protocol, cells) = match rng.range(0, 2) {
                0 => (0x28, Cells::G2(&c2)),
                1 => (0x2E, Cells::G2(&c2)),
                _ => (0xA1, Cells::G4(&c4)),
            };
            Message::Lbs(LbsReport {
                protocol,
                time,
                network: network(rng),
                cells,
                timing_advance: Some(rng.range(0, 63) as u8),
                language: Some(1),
            })
        }
        // 10 %: WiFi 0x2C (2G) and 0xA2 (4G), 2 to 12 APs.
        640..=739 => {
            msg_aps = aps(rng, 2, 12);
            Message::Wifi(WifiReport {
                time,
                network: network(rng),
                cells: if rng.percent(50) {
                    Cells::G2(&c2)
                } else {
                    Cells::G4(&c4)
                },
                timing_advance: rng.range(0, 63) as u8,
                aps: &msg_aps,
            })
        }
        // 4 %: attendance 0xB0.
        740..=779 => {
            msg_aps = aps(rng, 0, 6);
            let kind = if rng.percent(50) {
                AttendanceKind::ClockIn
            } else {
                AttendanceKind::ClockOut
            };
            let fix = fix(rng);
            Message::Attendance(Attendance {
                head: AttendanceHead {
                    time,
                    gps_flag: u8::from(fix.positioned()),
                    reserved: [rng.byte(), rng.byte()],
                    fix,
                    terminal_info: TerminalInfo::for_attendance(kind).0 | 0x40,
                    voltage_level: rng.range(0, 6) as u8,
                    gsm_signal: rng.range(0, 4) as u8,
                    reserved_ext: [0, 0],
                },
                network: network(rng),
                cells: Cells::G2(&c2),
                timing_advance: rng.range(0, 63) as u8,
                aps: &msg_aps,
            })
        }
        // 4 %: bluetooth punch 0xB2.
        780..=819 => {
            let kind = if rng.percent(50) {
                AttendanceKind::ClockIn
            } else {
                AttendanceKind::ClockOut
            };
            Message::BluetoothPunch(BluetoothPunch {
                body: PunchBody {
                    time,
                    rssi: -(rng.range(40, 90) as i8),
                    mac: rng.mac(),
                    uuid: UUID,
                    major: U16::new(rng.range(1, 20) as u16),
                    minor: U16::new(rng.range(1, 500) as u16),
                    battery_centivolts: U16::new(rng.range(250, 330) as u16),
                    terminal_info: TerminalInfo::for_attendance(kind).0,
                    reserved: [rng.byte(), rng.byte()],
                },
            })
        }
        // 17 %: bluetooth location 0xB3; one in five sees enough beacons
        // (9 or more: 7 + 9 × 30 > 250 content bytes) to need a 79 79 frame.
        820..=989 => {
            let count = if rng.percent(20) {
                rng.range(9, 40)
            } else {
                rng.range(1, 8)
            };
            beacons = (0..count).map(|_| beacon(rng)).collect::<Vec<_>>();
            Message::BluetoothLocation(BluetoothLocation {
                time,
                beacons: &beacons,
            })
        }
        // 1 %: alarms of every kind.
        _ => {
            let status = AlarmStatus {
                terminal_info: 0x44,
                voltage_level: rng.range(0, 6) as u8,
                gsm_signal: rng.range(0, 4) as u8,
                alarm_code: [0x01, 0x04, 0x05, 0x13, 0x23][rng.range(0, 4) as usize],
                language: 1,
            };
            let cell = CellId4g::new(rng.range(1, 0xFFFF) as u32, rng.range(1, 0xFFF_FFFF));
            let source = [
                AlarmSource::SingleFence,
                AlarmSource::MultiFence,
                AlarmSource::Lbs,
                AlarmSource::Wifi,
            ][rng.range(0, 3) as usize];
            let body = match source {
                AlarmSource::SingleFence | AlarmSource::MultiFence => AlarmBody::Fence {
                    time,
                    fix: fix(rng),
                    lbs_length: 16,
                    network: network(rng),
                    cell,
                    status,
                    fence_id: (source == AlarmSource::MultiFence).then(|| rng.range(0, 8) as u8),
                },
                AlarmSource::Lbs => AlarmBody::Lbs {
                    network: network(rng),
                    cell,
                    status,
                },
                AlarmSource::Wifi => {
                    msg_aps = aps(rng, 1, 6);
                    AlarmBody::Wifi {
                        time,
                        network: network(rng),
                        cells: Cells::G4(&c4[..3]),
                        timing_advance: 0,
                        aps: &msg_aps,
                        alarm_code: 0x01,
                        language: 1,
                    }
                }
            };
            Message::Alarm(Alarm { source, body })
        }
    };
    msg.encode(serial, out).expect("encode");
    out[start] == 0x79
}

fn build_stream() -> Stream {
    let mut rng = Rng(SEED);
    let mut out = BytesMut::with_capacity(2 << 20);
    let mut garbage = 0;
    let mut long_frames = 0;
    let mut replies = 0;
    for i in 0..FRAMES {
        // About one gap in ten frames, 0–20 bytes: ~1% of the stream's bytes.
        // No 0x78 / 0x79 in it, so that no candidate frame is rejected and
        // the decoder must find exactly FRAMES frames.
        if rng.percent(10) {
            for _ in 0..rng.range(0, 20) {
                let b = match rng.byte() {
                    0x78 | 0x79 => 0x00,
                    b => b,
                };
                out.extend_from_slice(&[b]);
                garbage += 1;
            }
        }
        let start = out.len();
        if push_message(&mut rng, i, i as u16, &mut out) {
            long_frames += 1;
        }
        let mut pos = 0;
        let frame = FrameDecoder::default()
            .next_frame(&out[start..], &mut pos)
            .unwrap();
        if Reply::immediate(&Message::decode(&frame).unwrap(), NOW).is_some() {
            replies += 1;
        }
    }
    Stream {
        bytes: out.to_vec(),
        frames: FRAMES,
        garbage,
        long_frames,
        replies,
    }
}

/// Frame split + CRC. Returns a checksum of what was seen.
fn frames_only(dec: &mut FrameDecoder, input: &[u8]) -> u64 {
    let mut acc = 0u64;
    for f in dec.frames(input) {
        acc =
            acc.wrapping_add(u64::from(f.protocol) ^ u64::from(f.serial) ^ f.content.len() as u64);
    }
    acc
}

/// Frame split + CRC + message decode.
fn frames_and_messages(dec: &mut FrameDecoder, input: &[u8]) -> u64 {
    let mut errors = 0u64;
    for f in dec.frames(input) {
        match Message::decode(&f) {
            Ok(m) => {
                black_box(&m);
            }
            Err(_) => errors += 1,
        }
    }
    errors
}

/// Frame split + CRC + message decode + immediate reply encoded into `out`.
fn replies(dec: &mut FrameDecoder, input: &[u8], out: &mut BytesMut) -> u64 {
    let mut errors = 0u64;
    for f in dec.frames(input) {
        match Message::decode(&f) {
            Ok(m) => {
                if let Some(r) = Reply::immediate(&m, NOW) {
                    r.encode(f.serial, out).expect("reply");
                }
                black_box(&m);
            }
            Err(_) => errors += 1,
        }
    }
    errors
}

/// The server's read loop: each read is appended to the connection buffer,
/// the complete frames decoded, and the consumed prefix split off.
fn chunked(
    dec: &mut FrameDecoder,
    input: &[u8],
    buf: &mut BytesMut,
    out: Option<&mut BytesMut>,
) -> u64 {
    let mut seen = 0u64;
    let mut out = out;
    for read in input.chunks(READ_SIZE) {
        buf.extend_from_slice(read);
        let mut it = dec.frames(&buf[..]);
        for f in it.by_ref() {
            seen += 1;
            if let Some(out) = out.as_deref_mut() {
                if let Ok(m) = Message::decode(&f) {
                    if let Some(r) = Reply::immediate(&m, NOW) {
                        r.encode(f.serial, out).expect("reply");
                    }
                    black_box(&m);
                }
            }
        }
        let used = it.consumed();
        let _ = buf.split_to(used);
    }
    seen
}

/// Runs every path once and checks that it saw the whole stream, so the
/// benchmarks cannot silently measure nothing.
fn check(stream: &Stream) {
    let input = &stream.bytes[..];

    let mut dec = FrameDecoder::default();
    let mut pos = 0;
    let mut n = 0;
    while dec.next_frame(input, &mut pos).is_some() {
        n += 1;
    }
    assert_eq!(n, stream.frames);
    assert_eq!(pos, input.len(), "whole stream consumed");
    assert_eq!(dec.stats.frames, stream.frames as u64);
    assert_eq!(dec.stats.rejected(), 0, "{:?}", dec.stats);
    assert_eq!(dec.stats.resyncs, 0, "{:?}", dec.stats);
    assert_eq!(
        dec.stats.garbage_bytes, stream.garbage as u64,
        "{:?}",
        dec.stats
    );
    assert_eq!(
        dec.stats.frame_bytes + dec.stats.garbage_bytes,
        input.len() as u64
    );

    let mut dec = FrameDecoder::default();
    assert_eq!(
        frames_and_messages(&mut dec, input),
        0,
        "message decode errors"
    );
    assert_eq!(dec.stats.frames, stream.frames as u64);

    let mut dec = FrameDecoder::default();
    let mut out = BytesMut::new();
    assert_eq!(replies(&mut dec, input, &mut out), 0);
    let mut rdec = FrameDecoder::default();
    assert_eq!(rdec.frames(&out).count(), stream.replies, "reply frames");
    assert_eq!(rdec.stats.rejected(), 0);

    for with_replies in [false, true] {
        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out = BytesMut::new();
        let seen = chunked(&mut dec, input, &mut buf, with_replies.then_some(&mut out));
        assert_eq!(seen, stream.frames as u64);
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        assert_eq!(dec.stats.rejected(), 0, "{:?}", dec.stats);
    }
}

fn benches(c: &mut Criterion) {
    let stream = build_stream();
    check(&stream);
    let input = &stream.bytes[..];
    eprintln!(
        "stream: {} frames ({} long 79 79, {} needing a reply), {} bytes, {} garbage bytes ({:.2}%), {:.1} bytes/frame",
        stream.frames,
        stream.long_frames,
        stream.replies,
        input.len(),
        stream.garbage,
        100.0 * stream.garbage as f64 / input.len() as f64,
        input.len() as f64 / stream.frames as f64,
    );

    for (group_name, throughput) in [
        ("elements", Throughput::Elements(stream.frames as u64)),
        ("bytes", Throughput::Bytes(input.len() as u64)),
    ] {
        let mut g = c.benchmark_group(group_name);
        g.throughput(throughput);

        let mut dec = FrameDecoder::default();
        g.bench_function("frames_only", |b| {
            b.iter(|| frames_only(&mut dec, black_box(input)))
        });

        let mut dec = FrameDecoder::default();
        g.bench_function("frames_and_messages", |b| {
            b.iter(|| frames_and_messages(&mut dec, black_box(input)))
        });

        let mut dec = FrameDecoder::default();
        let mut out = BytesMut::with_capacity(256 * 1024);
        g.bench_function("replies", |b| {
            b.iter(|| {
                out.clear();
                replies(&mut dec, black_box(input), &mut out)
            })
        });

        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        g.bench_function("chunked_1460_frames", |b| {
            b.iter(|| {
                buf.clear();
                chunked(&mut dec, black_box(input), &mut buf, None)
            })
        });

        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out = BytesMut::with_capacity(256 * 1024);
        g.bench_function("chunked_1460_replies", |b| {
            b.iter(|| {
                buf.clear();
                out.clear();
                chunked(&mut dec, black_box(input), &mut buf, Some(&mut out))
            })
        });

        g.finish();
    }
}

criterion_group!(decode, benches);
criterion_main!(decode);
