//! Fuzzes the whole decode path: framing, message decoding, replies, and the
//! encoders (re-encoding must reproduce the message).
//!
//! Input: byte 0 picks the configuration (bit 0: `accept_bad_crc`) and is
//! also decoded as a protocol number; the rest is a TCP stream from a badge.
//!
//! 1. The stream goes through `FrameDecoder::next_frame` until it asks for
//!    more bytes; the decoder's bookkeeping is checked.
//! 2. Every frame is decoded with `Message::decode`, and every message:
//!    - reports the protocol number it was decoded from;
//!    - gets its `Reply::immediate` (and an address reply for address
//!      requests and alarms), encoded, which must itself decode as one good frame;
//!    - is re-encoded with `Message::encode`, which must write `content_len`
//!      bytes and decode back, through the frame decoder, to an equal
//!      message; encoding that again must give the same bytes (the
//!      encoding is canonical for every message type, see fuzz/README.md).
//! 3. The stream is also decoded directly as the content of byte 0's
//!    protocol number, with the same checks, and of every uplink protocol
//!    number, with a content-level round trip.

#![no_main]

use std::hint::black_box;

use badge_ingest::protocol::layout::format_uuid;
use badge_ingest::protocol::message::{AlarmBody, GeneralInfo};
use badge_ingest::protocol::number::{self, UPLINK};
use badge_ingest::protocol::{FrameConfig, FrameDecoder, Message, Reply};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_700_000_000;

/// Large enough for any frame an encoder can build (65 535 + 6), so the
/// decoder's default size limit does not hide encoder output.
const MAX_ENCODED: usize = 65_541;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let accept_bad_crc = first & 1 == 1;
    let mut scratch = Scratch::default();

    // 1. Framing.
    let config = FrameConfig {
        accept_bad_crc,
        ..FrameConfig::default()
    };
    let max_frame_len = config.max_frame_len;
    let mut dec = FrameDecoder::new(config);
    let mut pos = 0;
    let mut frames = 0u64;
    while let Some(frame) = dec.next_frame(stream, &mut pos) {
        frames += 1;
        assert!(pos <= stream.len());
        assert_eq!(
            frame.raw.as_ptr_range().end,
            stream[pos..].as_ptr(),
            "pos is just past the frame"
        );
        assert!(frame.raw.len() <= max_frame_len);
        assert!(frame.crc_ok || accept_bad_crc, "bad CRC handed on");
        assert_eq!(&frame.raw[frame.raw.len() - 2..], &[0x0D, 0x0A]);
        // 2. Messages.
        check_content(frame.protocol, frame.content, frame.serial, &mut scratch);
    }
    let stats = &dec.stats;
    assert_eq!(stats.frames, frames);
    assert_eq!(
        stats.frame_bytes + stats.garbage_bytes,
        pos as u64,
        "every byte before pos counted once: {stats:?}"
    );
    assert!(stats.accepted_bad_crc <= stats.bad_crc);
    assert!(accept_bad_crc || stats.accepted_bad_crc == 0);
    // What is left must be a possible frame prefix, never over the limit.
    assert!(
        stream.len() - pos < max_frame_len,
        "{} bytes kept",
        stream.len() - pos
    );
    // Nothing kept when the rest cannot start a frame.
    if let Some(&b) = stream.get(pos) {
        assert!(b == 0x78 || b == 0x79, "kept bytes start with {b:02X}");
    }

    // 3. Direct content decoding: with every check for byte 0's protocol
    // number (the fuzzer steers it to any number), and for every protocol
    // number a badge sends a content-level round trip (no frame, CRC or
    // reply: those are what make an execution slow).
    check_content(first, stream, 0x1234, &mut scratch);
    for &protocol in UPLINK.iter() {
        check_content_round_trip(protocol, stream, &mut scratch);
    }
});

fn check_content_round_trip(protocol: u8, content: &[u8], s: &mut Scratch) {
    let Ok(msg) = Message::decode_content(protocol, content) else {
        return;
    };
    assert_eq!(msg.protocol(), protocol, "{msg:?}");
    touch(&msg);
    s.out.clear();
    msg.encode_content(&mut s.out);
    assert_eq!(s.out.len(), msg.content_len(), "content_len of {msg:?}");
    let again = Message::decode_content(protocol, &s.out).unwrap_or_else(|e| {
        panic!(
            "re-encoded {msg:?} does not decode: {e}; content {:02X?}",
            &s.out[..]
        )
    });
    assert_eq!(
        again,
        msg,
        "re-encoding changed the message; content {:02X?}",
        &s.out[..]
    );
    s.again.clear();
    again.encode_content(&mut s.again);
    assert_eq!(
        &s.again[..],
        &s.out[..],
        "encoding is not canonical for {msg:?}"
    );
}

#[derive(Default)]
struct Scratch {
    out: BytesMut,
    again: BytesMut,
}

fn check_content(protocol: u8, content: &[u8], serial: u16, s: &mut Scratch) {
    let Ok(msg) = Message::decode_content(protocol, content) else {
        return;
    };
    assert_eq!(msg.protocol(), protocol, "{msg:?}");
    touch(&msg);

    // Replies.
    if let Some(reply) = Reply::immediate(&msg, NOW) {
        check_reply(reply, serial, &mut s.out);
    }
    match &msg {
        Message::AddressRequest(req) => {
            let address = String::from_utf8_lossy(req.body);
            check_reply(Reply::address(req, &address), serial, &mut s.out);
        }
        Message::Alarm(_) => {
            let address = String::from_utf8_lossy(content);
            check_reply(Reply::alarm_address(&address), serial, &mut s.out);
        }
        _ => {}
    }

    // Re-encoding.
    s.out.clear();
    if msg.encode(serial, &mut s.out).is_err() {
        assert!(
            msg.content_len() > 65_530,
            "encode failed for {} content bytes",
            msg.content_len()
        );
        return;
    }
    let mut dec = FrameDecoder::new(FrameConfig {
        max_frame_len: MAX_ENCODED,
        accept_bad_crc: false,
    });
    let mut pos = 0;
    let frame = dec
        .next_frame(&s.out, &mut pos)
        .unwrap_or_else(|| panic!("re-encoded {msg:?} is not a frame: {:02X?}", &s.out[..]));
    assert_eq!(pos, s.out.len());
    assert!(frame.crc_ok);
    assert_eq!((frame.protocol, frame.serial), (protocol, serial));
    assert_eq!(
        frame.content.len(),
        msg.content_len(),
        "content_len of {msg:?}"
    );
    let again = Message::decode(&frame).unwrap_or_else(|e| {
        panic!(
            "re-encoded {msg:?} does not decode: {e}; content {:02X?}",
            frame.content
        )
    });
    assert_eq!(
        again, msg,
        "re-encoding changed the message; content {:02X?}",
        frame.content
    );

    // Canonical: a decoded message encodes to the same bytes again.
    s.again.clear();
    again.encode(serial, &mut s.again).unwrap();
    assert_eq!(
        &s.again[..],
        &s.out[..],
        "encoding is not canonical for {msg:?}"
    );
}

fn check_reply(reply: Reply<'_>, serial: u16, out: &mut BytesMut) {
    out.clear();
    reply.encode(serial, out).expect("reply encodes");
    let mut dec = FrameDecoder::new(FrameConfig {
        max_frame_len: MAX_ENCODED,
        accept_bad_crc: false,
    });
    let mut pos = 0;
    let frame = dec
        .next_frame(out, &mut pos)
        .unwrap_or_else(|| panic!("reply {reply:?} is not a frame: {:02X?}", &out[..]));
    assert_eq!(pos, out.len(), "reply {reply:?}");
    assert_eq!((frame.protocol, frame.serial), (reply.protocol(), serial));
    assert!(frame.crc_ok);
    if let Reply::Address { english, .. } = reply {
        // The inner length field must be true: 1 byte (0x17) or 2 (0x97).
        let (width, inner) = if english {
            (
                2,
                usize::from(u16::from_be_bytes([frame.content[0], frame.content[1]])),
            )
        } else {
            (1, usize::from(frame.content[0]))
        };
        assert_eq!(
            width + inner,
            frame.content.len(),
            "address reply length field"
        );
    }
}

/// Calls the accessors the record builders use, so that they run on hostile
/// values too.
fn touch(msg: &Message<'_>) {
    match msg {
        Message::Login(l) => {
            black_box(l.imei.to_string());
            black_box(l.imei.luhn_valid());
            if let Some(tz) = l.tz_language {
                black_box((tz.offset_minutes(), tz.language()));
            }
        }
        Message::Heartbeat(h) => {
            black_box(h.terminal_info().attendance_kind());
        }
        Message::Gps(g) => {
            black_box((
                g.time.to_unix(480),
                g.fix.latitude(),
                g.fix.longitude(),
                g.fix.course(),
            ));
            black_box(format!("{g:?}"));
        }
        Message::Lbs(l) => {
            black_box((
                l.time.to_unix(480),
                l.cells.main(),
                l.cells.neighbours().count(),
            ));
        }
        Message::Wifi(w) => {
            black_box((
                w.cells.iter().count(),
                w.aps.iter().map(|a| a.mac().to_u64()).sum::<u64>(),
            ));
        }
        Message::Attendance(a) => {
            black_box((
                a.kind(),
                a.gps_positioned(),
                a.battery_percent(),
                a.cells.main(),
            ));
            black_box(a.head.fix.latitude());
        }
        Message::BluetoothPunch(p) => {
            black_box((
                p.kind(),
                p.mac().to_string(),
                p.battery().value(),
                format_uuid(&p.body.uuid),
            ));
        }
        Message::BluetoothLocation(l) => {
            black_box(l.strongest(|b| b.major.get() % 2 == 0));
            for b in l.beacons {
                black_box((b.battery().value(), b.mac().to_u64()));
            }
        }
        Message::Alarm(a) => {
            black_box((
                a.alarm_code(),
                a.time().and_then(|t| t.to_unix(480)),
                a.position(),
            ));
            black_box((
                a.main_cell(),
                a.battery_percent(),
                a.terminal_info(),
                a.fence_id(),
                a.wifi().len(),
            ));
            black_box(badge_ingest::protocol::message::alarm_label(a.alarm_code()));
            if let AlarmBody::Wifi { cells, .. } = a.body {
                black_box(cells.neighbours().count());
            }
        }
        Message::AddressRequest(r) => {
            black_box((r.wants_english(), r.gps(), r.cell()));
        }
        Message::GeneralInfo(g) => {
            black_box((
                g.iccid().map(|i| i.to_string()),
                g.imsi().map(|i| i.to_string()),
            ));
            if let GeneralInfo::SimIds { imei, .. } = g {
                black_box(imei);
            }
        }
        Message::CommandReply(c) => {
            black_box(c.text_lossy());
        }
        Message::TimeSync(t) => {
            black_box(t.device_time.and_then(|d| d.to_unix(0)));
        }
        Message::TimeSync2 | Message::Unknown { .. } => {}
    }
    black_box(number::name(msg.protocol()));
}
