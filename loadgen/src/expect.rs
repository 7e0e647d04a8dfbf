//! What each request should get back, and the checks a reply must pass.
//!
//! The checks are written against the wire layout directly rather than by
//! re-encoding with `badge_ingest::protocol::reply`: a load generator that
//! asked the server's own encoder what the answer should be would agree with
//! the server's bugs. The unit tests tie the two together the other way round
//! (the library's encoder must pass these checks).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use badge_ingest::protocol::layout::DeviceTime;
use badge_ingest::protocol::number as n;
use badge_ingest::protocol::{Frame, Marker};

/// Badges' clocks and the reference's 0x8A replies are in UTC+8.
pub const BEIJING_OFFSET_MINUTES: i32 = 8 * 60;

/// How far a time in a reply may be from our clock when it arrives. The
/// server reads its clock once per read, and whole seconds are sent.
const CLOCK_TOLERANCE_SECS: i64 = 5;

/// The reply a request expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Empty content: login 0x01, heartbeats 0x13/0x36, LBS 0x2E, and 0x26 for alarms.
    Ack { protocol: u8 },
    /// 0x1F: unix time (UTC+8 wall clock for language 1) + the language echoed.
    TimeSync { language: u16 },
    /// 0x8A: YY MM DD HH MM SS in UTC+8.
    TimeSync2,
    /// 0x17 (Chinese) or 0x97 (English) with the ADDRESS layout.
    Address { english: bool },
    /// 0xB0/0xB1/0xB2: datetime echoed + 01 + clock type + reserved echoed.
    Punch {
        protocol: u8,
        time: [u8; 6],
        kind: u8,
        reserved: [u8; 2],
    },
}

impl Expected {
    pub fn protocol(&self) -> u8 {
        match *self {
            Expected::Ack { protocol } | Expected::Punch { protocol, .. } => protocol,
            Expected::TimeSync { .. } => n::TIME_SYNC,
            Expected::TimeSync2 => n::TIME_SYNC_2,
            Expected::Address { english: true } => n::ADDRESS_REPLY_EN,
            Expected::Address { english: false } => n::LBS_ADDRESS_REQUEST,
        }
    }
}

/// Every way a reply (or its absence) can be wrong. The discriminant
/// indexes the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// CRC does not match the bytes.
    BadCrc,
    /// `79 79` on a frame that fits `78 78`.
    Marker,
    /// Bytes that are not a frame: garbage, wrong stop bytes, impossible length.
    Framing,
    /// A reply with our serial but another protocol number.
    WrongProtocol,
    /// The expected protocol with a serial we did not send.
    WrongSerial,
    /// Content that does not have the reply's layout.
    BadLayout,
    /// The layout is right but a value is not: an echo, a language, a time.
    BadValue,
    /// A frame nobody asked for.
    Unexpected,
    /// A reply to a message that must not be answered.
    ReplyToNoReply,
    /// A reply that overtook an earlier one on the same connection.
    OutOfOrder,
    /// No reply within the deadline.
    Timeout,
    /// The connection ended while replies were outstanding.
    LostOnClose,
    /// A server-initiated 0x80/0x82 with a broken layout.
    BadDownlink,
}

impl Mismatch {
    pub const ALL: [Mismatch; 13] = [
        Mismatch::BadCrc,
        Mismatch::Marker,
        Mismatch::Framing,
        Mismatch::WrongProtocol,
        Mismatch::WrongSerial,
        Mismatch::BadLayout,
        Mismatch::BadValue,
        Mismatch::Unexpected,
        Mismatch::ReplyToNoReply,
        Mismatch::OutOfOrder,
        Mismatch::Timeout,
        Mismatch::LostOnClose,
        Mismatch::BadDownlink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mismatch::BadCrc => "bad_crc",
            Mismatch::Marker => "marker",
            Mismatch::Framing => "framing",
            Mismatch::WrongProtocol => "wrong_protocol",
            Mismatch::WrongSerial => "wrong_serial",
            Mismatch::BadLayout => "bad_layout",
            Mismatch::BadValue => "bad_value",
            Mismatch::Unexpected => "unexpected_frame",
            Mismatch::ReplyToNoReply => "reply_to_no_reply_message",
            Mismatch::OutOfOrder => "out_of_order",
            Mismatch::Timeout => "missing_reply_timeout",
            Mismatch::LostOnClose => "missing_reply_connection_lost",
            Mismatch::BadDownlink => "bad_downlink",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// A reply that never came, as opposed to one that came wrong.
    pub fn is_missing(self) -> bool {
        matches!(self, Mismatch::Timeout | Mismatch::LostOnClose)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Mismatch,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: Mismatch, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// Checks a frame received as the answer to `expected`, sent with `serial`.
/// `now_unix` is our clock when the frame arrived.
pub fn check(
    expected: &Expected,
    serial: u16,
    frame: &Frame<'_>,
    now_unix: i64,
) -> Result<(), Failure> {
    check_frame(frame)?;
    if frame.protocol != expected.protocol() {
        return Err(Failure::new(
            Mismatch::WrongProtocol,
            format!(
                "expected 0x{:02X}, got 0x{:02X}",
                expected.protocol(),
                frame.protocol
            ),
        ));
    }
    if frame.serial != serial {
        return Err(Failure::new(
            Mismatch::WrongSerial,
            format!("expected serial {serial}, got {}", frame.serial),
        ));
    }
    let c = frame.content;
    match *expected {
        Expected::Ack { .. } => {
            if !c.is_empty() {
                return Err(layout(format!(
                    "ack with {} content bytes, expected none",
                    c.len()
                )));
            }
        }
        Expected::TimeSync { language } => {
            if c.len() != 6 {
                return Err(layout(format!(
                    "0x1F content of {} bytes, expected 6",
                    c.len()
                )));
            }
            let time = i64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            let lang = u16::from_be_bytes([c[4], c[5]]);
            if lang != language {
                return Err(value(format!("0x1F language {lang}, sent {language}")));
            }
            // The reference sends Chinese badges their wall clock (UTC+8) as if it were Unix time.
            let shift = if language == 1 {
                i64::from(BEIJING_OFFSET_MINUTES) * 60
            } else {
                0
            };
            let want = now_unix + shift;
            if (time - want).abs() > CLOCK_TOLERANCE_SECS {
                return Err(value(format!(
                    "0x1F time {time} is {}s from the expected {want} (language {language})",
                    time - want
                )));
            }
        }
        Expected::TimeSync2 => {
            if c.len() != 6 {
                return Err(layout(format!(
                    "0x8A content of {} bytes, expected 6",
                    c.len()
                )));
            }
            let t = DeviceTime::new(c[0], c[1], c[2], c[3], c[4], c[5]);
            let Some(unix) = t.to_unix(BEIJING_OFFSET_MINUTES) else {
                return Err(layout(format!("0x8A time {t:?} is not a date")));
            };
            if (unix - now_unix).abs() > CLOCK_TOLERANCE_SECS {
                return Err(value(format!(
                    "0x8A time {t:?} (UTC+8) is {}s from our clock",
                    unix - now_unix
                )));
            }
        }
        Expected::Address { english } => {
            let parsed = parse_address(frame.protocol, c).map_err(layout)?;
            if parsed.marker != AddressMarker::Address {
                return Err(value("address reply marked ALARMSMS"));
            }
            let _ = english; // the protocol check above already told 0x17 from 0x97
        }
        Expected::Punch {
            time,
            kind,
            reserved,
            ..
        } => {
            if c.len() != 10 {
                return Err(layout(format!(
                    "punch reply content of {} bytes, expected 10",
                    c.len()
                )));
            }
            if c[..6] != time {
                return Err(value(format!(
                    "datetime {} echoed as {}",
                    hex(&time),
                    hex(&c[..6])
                )));
            }
            if c[6] != 1 {
                return Err(value(format!("status byte {}, expected 1", c[6])));
            }
            if c[7] != kind {
                return Err(value(format!("clock type {}, expected {kind}", c[7])));
            }
            if c[8..10] != reserved {
                return Err(value(format!(
                    "reserved {} echoed as {}",
                    hex(&reserved),
                    hex(&c[8..10])
                )));
            }
        }
    }
    Ok(())
}

/// What every frame from the server must satisfy whatever it answers.
fn check_frame(frame: &Frame<'_>) -> Result<(), Failure> {
    if !frame.crc_ok {
        return Err(Failure::new(Mismatch::BadCrc, "CRC-ITU does not match"));
    }
    // The length field counts protocol + content + serial + CRC.
    let length = 1 + frame.content.len() + 4;
    if frame.marker == Marker::Long && length <= 0xFF {
        return Err(Failure::new(
            Mismatch::Marker,
            format!("79 79 frame of length {length}, which fits 78 78"),
        ));
    }
    Ok(())
}

fn layout(detail: impl Into<String>) -> Failure {
    Failure::new(Mismatch::BadLayout, detail)
}

fn value(detail: impl Into<String>) -> Failure {
    Failure::new(Mismatch::BadValue, detail)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMarker {
    Address,
    AlarmSms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressReply {
    pub marker: AddressMarker,
    pub address: String,
    pub phone: String,
}

/// Reads an 0x17/0x97 reply: length (1 byte for 0x17, 2 for 0x97) + server
/// flag(4) + "ADDRESS" or "ALARMSMS" + "&&" + address (UTF-16BE) + "&&" +
/// phone(21 ASCII) + "##".
pub fn parse_address(protocol: u8, c: &[u8]) -> Result<AddressReply, String> {
    let (declared, inner) = match protocol {
        n::ADDRESS_REPLY_EN => {
            if c.len() < 2 {
                return Err("0x97 without its 2-byte length".into());
            }
            (usize::from(u16::from_be_bytes([c[0], c[1]])), &c[2..])
        }
        _ => {
            if c.is_empty() {
                return Err("0x17 without its length byte".into());
            }
            (usize::from(c[0]), &c[1..])
        }
    };
    if declared != inner.len() {
        return Err(format!(
            "length field says {declared}, {} bytes follow",
            inner.len()
        ));
    }
    let (marker, rest) =
        if let Some(rest) = inner.get(4..).and_then(|r| r.strip_prefix(b"ADDRESS&&")) {
            (AddressMarker::Address, rest)
        } else if let Some(rest) = inner.get(4..).and_then(|r| r.strip_prefix(b"ALARMSMS&&")) {
            (AddressMarker::AlarmSms, rest)
        } else {
            return Err("no ADDRESS&& or ALARMSMS&& after the server flag".into());
        };
    // Fixed tail: "&&" + phone(21) + "##".
    const TAIL: usize = 2 + 21 + 2;
    if rest.len() < TAIL {
        return Err(format!(
            "{} bytes after the marker, the tail alone needs {TAIL}",
            rest.len()
        ));
    }
    let (addr, tail) = rest.split_at(rest.len() - TAIL);
    if &tail[..2] != b"&&" || &tail[23..] != b"##" {
        return Err(format!("tail is {}, expected && + phone + ##", hex(tail)));
    }
    let phone = &tail[2..23];
    if !phone.is_ascii() {
        return Err(format!("phone {} is not ASCII", hex(phone)));
    }
    if addr.len() % 2 != 0 {
        return Err(format!("address of {} bytes is not UTF-16", addr.len()));
    }
    let units: Vec<u16> = addr
        .chunks_exact(2)
        .map(|u| u16::from_be_bytes([u[0], u[1]]))
        .collect();
    let address = String::from_utf16(&units)
        .map_err(|_| format!("address {} is not valid UTF-16BE", hex(addr)))?;
    Ok(AddressReply {
        marker,
        address,
        phone: String::from_utf8_lossy(phone).into_owned(),
    })
}

/// An 0x80 online command: length(1) + server flag(4) + text + language(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineCommand {
    pub server_flag: u32,
    pub text: String,
    pub language: u16,
}

pub fn parse_online_command(c: &[u8]) -> Result<OnlineCommand, String> {
    if c.len() < 7 {
        return Err(format!(
            "0x80 content of {} bytes, at least 7 needed",
            c.len()
        ));
    }
    let declared = usize::from(c[0]);
    if declared != c.len() - 1 {
        return Err(format!(
            "0x80 length byte says {declared}, {} bytes follow",
            c.len() - 1
        ));
    }
    let server_flag = u32::from_be_bytes([c[1], c[2], c[3], c[4]]);
    let text = String::from_utf8_lossy(&c[5..c.len() - 2]).into_owned();
    let language = u16::from_be_bytes([c[c.len() - 2], c[c.len() - 1]]);
    Ok(OnlineCommand {
        server_flag,
        text,
        language,
    })
}

/// An 0x82 message: length (1 byte, or 2 when over 255) + server flag(4) +
/// text (UTF-16BE) + language(2). Returns the text.
pub fn parse_text_message(c: &[u8]) -> Result<String, String> {
    let (declared, inner) = if c.len() >= 2 && usize::from(c[0]) + 1 != c.len() {
        (usize::from(u16::from_be_bytes([c[0], c[1]])), &c[2..])
    } else if !c.is_empty() {
        (usize::from(c[0]), &c[1..])
    } else {
        return Err("0x82 without content".into());
    };
    if declared != inner.len() || inner.len() < 6 {
        return Err(format!(
            "0x82 length field says {declared}, {} bytes follow",
            inner.len()
        ));
    }
    let text = &inner[4..inner.len() - 2];
    if text.len() % 2 != 0 {
        return Err("0x82 text is not UTF-16".into());
    }
    let units: Vec<u16> = text
        .chunks_exact(2)
        .map(|u| u16::from_be_bytes([u[0], u[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| "0x82 text is not valid UTF-16BE".into())
}

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// The request's protocol number.
    pub request: u8,
    pub serial: u16,
    pub expected: Expected,
    pub sent_at: Instant,
}

/// What became of a frame from the server.
#[derive(Debug)]
pub enum Verdict {
    /// The answer to `pending`, right or wrong.
    Reply {
        pending: Pending,
        result: Result<(), Failure>,
    },
    /// The answer to `pending`, which was not the oldest outstanding request.
    OutOfOrder {
        pending: Pending,
        result: Result<(), Failure>,
    },
    /// The ALARMSMS address reply the reference sends after an alarm's 0x26
    /// when it knows the address: allowed, and checked.
    AlarmSms(Result<(), Failure>),
    /// A frame that answers nothing we sent; `request` is the protocol of
    /// the no-reply message it answers, when its serial tells.
    Unexpected {
        failure: Failure,
        request: Option<u8>,
    },
}

/// How many recent serials of no-reply messages and alarms are remembered,
/// to name a stray reply.
const RECENT: usize = 16;

/// The replies a connection waits for, in the order they must arrive (the
/// server answers each connection's frames in order), plus a short memory
/// of what was sent without expecting a reply.
#[derive(Debug, Default)]
pub struct Outstanding {
    fifo: VecDeque<Pending>,
    no_reply: VecDeque<(u16, u8)>,
    alarms: VecDeque<u16>,
}

impl Outstanding {
    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    pub fn expect(&mut self, pending: Pending) {
        if pending.expected
            == (Expected::Ack {
                protocol: n::ALARM_ACK,
            })
        {
            remember(&mut self.alarms, pending.serial);
        }
        self.fifo.push_back(pending);
    }

    /// Remembers a frame that must get no reply.
    pub fn sent_without_reply(&mut self, serial: u16, protocol: u8) {
        remember(&mut self.no_reply, (serial, protocol));
    }

    /// Matches a frame from the server (other than 0x80/0x82) against what
    /// is outstanding.
    pub fn on_frame(&mut self, frame: &Frame<'_>, now_unix: i64) -> Verdict {
        let matches =
            |p: &Pending| p.expected.protocol() == frame.protocol && p.serial == frame.serial;
        if let Some(head) = self.fifo.front() {
            if matches(head) {
                let pending = self.fifo.pop_front().expect("front exists");
                return Verdict::Reply {
                    result: check(&pending.expected, pending.serial, frame, now_unix),
                    pending,
                };
            }
        }
        if frame.protocol == n::LBS_ADDRESS_REQUEST && self.alarms.contains(&frame.serial) {
            if let Ok(AddressReply {
                marker: AddressMarker::AlarmSms,
                ..
            }) = parse_address(frame.protocol, frame.content)
            {
                return Verdict::AlarmSms(check_frame(frame));
            }
        }
        if let Some(i) = self.fifo.iter().position(matches) {
            let pending = self.fifo.remove(i).expect("position is in range");
            let result = check(&pending.expected, pending.serial, frame, now_unix);
            // A server with a geo service answers address requests when the
            // address is found (or its deadline passes): other replies may
            // pass them, and they may pass nothing but each other.
            let overtaken = self
                .fifo
                .iter()
                .take(i)
                .any(|p| !matches!(p.expected, Expected::Address { .. }));
            return if overtaken {
                Verdict::OutOfOrder { result, pending }
            } else {
                Verdict::Reply { result, pending }
            };
        }
        if let Some(head) = self.fifo.front() {
            // Same protocol, wrong serial, or our serial with another
            // protocol: most likely the answer to the head, wrong.
            if head.expected.protocol() == frame.protocol || head.serial == frame.serial {
                let pending = self.fifo.pop_front().expect("front exists");
                return Verdict::Reply {
                    result: check(&pending.expected, pending.serial, frame, now_unix),
                    pending,
                };
            }
        }
        if let Some(&(_, request)) = self.no_reply.iter().find(|(s, _)| *s == frame.serial) {
            return Verdict::Unexpected {
                failure: Failure::new(
                    Mismatch::ReplyToNoReply,
                    format!(
                        "0x{:02X} serial {} answers 0x{request:02X} ({}), which gets no reply",
                        frame.protocol,
                        frame.serial,
                        n::name(request)
                    ),
                ),
                request: Some(request),
            };
        }
        Verdict::Unexpected {
            failure: Failure::new(
                Mismatch::Unexpected,
                format!(
                    "0x{:02X} serial {} matches nothing outstanding ({} waiting)",
                    frame.protocol,
                    frame.serial,
                    self.fifo.len()
                ),
            ),
            request: None,
        }
    }

    /// When the oldest outstanding reply becomes overdue.
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.fifo.front().map(|p| p.sent_at + timeout)
    }

    /// Removes and returns the requests whose reply is overdue at `now`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Pending> {
        let mut out = Vec::new();
        while let Some(p) = self.fifo.front() {
            if p.sent_at + timeout > now {
                break;
            }
            out.push(self.fifo.pop_front().expect("front exists"));
        }
        out
    }

    /// Everything still outstanding, for when the connection ends.
    pub fn take_all(&mut self) -> Vec<Pending> {
        self.fifo.drain(..).collect()
    }
}

fn remember<T>(ring: &mut VecDeque<T>, item: T) {
    if ring.len() == RECENT {
        ring.pop_front();
    }
    ring.push_back(item);
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use badge_ingest::protocol::layout::AttendanceKind;
    use badge_ingest::protocol::{FrameConfig, FrameDecoder, Message, Reply};
    use bytes::BytesMut;

    const NOW: i64 = 1_700_000_000;

    fn encoded(reply: Reply<'_>, serial: u16) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(serial, &mut out).unwrap();
        out.to_vec()
    }

    /// Decodes one frame the way the device loop does (bad CRCs handed on).
    fn with_frame<R>(bytes: &[u8], f: impl FnOnce(&Frame<'_>) -> R) -> R {
        let mut dec = FrameDecoder::new(FrameConfig {
            max_frame_len: 70_000,
            accept_bad_crc: true,
        });
        let mut pos = 0;
        let frame = dec.next_frame(bytes, &mut pos).expect("one whole frame");
        assert_eq!(pos, bytes.len());
        f(&frame)
    }

    fn check_bytes(expected: Expected, serial: u16, bytes: &[u8], now: i64) -> Result<(), Failure> {
        with_frame(bytes, |f| check(&expected, serial, f, now))
    }

    fn kind_of(r: Result<(), Failure>) -> Option<Mismatch> {
        r.err().map(|f| f.kind)
    }

    #[test]
    fn acks_from_the_library_pass() {
        for protocol in [
            n::LOGIN,
            n::HEARTBEAT,
            n::HEARTBEAT_EXT,
            n::LBS_MULTI_REPLY,
            n::ALARM_ACK,
        ] {
            let bytes = encoded(Reply::Ack { protocol }, 0x1234);
            assert_eq!(
                check_bytes(Expected::Ack { protocol }, 0x1234, &bytes, NOW),
                Ok(()),
                "0x{protocol:02X}"
            );
        }
    }

    #[test]
    fn time_sync_replies_from_the_library_pass() {
        for language in [1, 2] {
            let bytes = encoded(Reply::time_sync(language, NOW), 7);
            assert_eq!(
                check_bytes(Expected::TimeSync { language }, 7, &bytes, NOW + 2),
                Ok(())
            );
        }
        let reply = Reply::immediate(&Message::TimeSync2, NOW).unwrap();
        let bytes = encoded(reply, 8);
        assert_eq!(check_bytes(Expected::TimeSync2, 8, &bytes, NOW - 1), Ok(()));
    }

    #[test]
    fn time_sync_with_the_wrong_zone_or_language_is_a_value_mismatch() {
        // A Chinese badge answered in plain UTC: eight hours off.
        let bytes = encoded(Reply::time_sync(2, NOW), 7);
        assert_eq!(
            kind_of(check_bytes(
                Expected::TimeSync { language: 1 },
                7,
                &bytes,
                NOW
            )),
            Some(Mismatch::BadValue)
        );
        let utc = encoded(
            Reply::TimeSync {
                time: NOW as u32,
                language: 1,
            },
            7,
        );
        assert_eq!(
            kind_of(check_bytes(
                Expected::TimeSync { language: 1 },
                7,
                &utc,
                NOW
            )),
            Some(Mismatch::BadValue)
        );
        // 0x8A in UTC rather than UTC+8.
        let t = DeviceTime::from_unix(NOW, 0);
        let bytes = encoded(Reply::TimeSync2 { time: t }, 9);
        assert_eq!(
            kind_of(check_bytes(Expected::TimeSync2, 9, &bytes, NOW)),
            Some(Mismatch::BadValue)
        );
    }

    #[test]
    fn address_replies_from_the_library_pass() {
        for (english, address) in [
            (false, ""),
            (true, ""),
            (false, "深圳市南山区"),
            (true, "1 Main St"),
        ] {
            let bytes = encoded(
                Reply::Address {
                    english,
                    alarm: false,
                    address,
                    phone: "",
                },
                3,
            );
            assert_eq!(
                check_bytes(Expected::Address { english }, 3, &bytes, NOW),
                Ok(()),
                "{english} {address}"
            );
            let parsed = with_frame(&bytes, |f| parse_address(f.protocol, f.content)).unwrap();
            assert_eq!(parsed.address, address);
            assert_eq!(parsed.phone, "0".repeat(21));
        }
        // A long Chinese address goes out as a 79 79 frame with a true length byte.
        let long = "路".repeat(200);
        let bytes = encoded(
            Reply::Address {
                english: false,
                alarm: false,
                address: &long,
                phone: "",
            },
            3,
        );
        assert_eq!(&bytes[..2], &[0x79, 0x79]);
        assert_eq!(
            check_bytes(Expected::Address { english: false }, 3, &bytes, NOW),
            Ok(())
        );
    }

    #[test]
    fn address_reply_in_the_wrong_language_or_with_a_lying_length_fails() {
        let en = encoded(
            Reply::Address {
                english: true,
                alarm: false,
                address: "",
                phone: "",
            },
            3,
        );
        assert_eq!(
            kind_of(check_bytes(
                Expected::Address { english: false },
                3,
                &en,
                NOW
            )),
            Some(Mismatch::WrongProtocol)
        );
        // The reference's own bug: the 0x17 length byte clamped at 255 while
        // the whole address is sent. Build such a frame by hand.
        let mut content = vec![0xFF, 0, 0, 0, 0];
        content.extend_from_slice(b"ADDRESS&&");
        for _ in 0..120 {
            content.extend_from_slice(&[0x8D, 0xEF]);
        }
        content.extend_from_slice(b"&&000000000000000000000##");
        let mut out = BytesMut::new();
        badge_ingest::protocol::frame::write_frame_bytes(&mut out, 0x17, 3, &content).unwrap();
        assert_eq!(
            kind_of(check_bytes(
                Expected::Address { english: false },
                3,
                &out,
                NOW
            )),
            Some(Mismatch::BadLayout)
        );
    }

    #[test]
    fn punch_replies_from_the_library_pass_and_a_wrong_echo_fails() {
        let time = DeviceTime::new(24, 5, 1, 8, 30, 0);
        for protocol in [n::ATTENDANCE, n::ATTENDANCE_4G, n::BT_PUNCH] {
            for kind in [AttendanceKind::ClockIn, AttendanceKind::ClockOut] {
                let bytes = encoded(
                    Reply::Punch {
                        protocol,
                        time,
                        kind,
                        reserved: [0xAB, 0xCD],
                    },
                    0x10,
                );
                let expected = Expected::Punch {
                    protocol,
                    time: [24, 5, 1, 8, 30, 0],
                    kind: kind as u8,
                    reserved: [0xAB, 0xCD],
                };
                assert_eq!(check_bytes(expected, 0x10, &bytes, NOW), Ok(()));
                let wrong = Expected::Punch {
                    protocol,
                    time: [24, 5, 1, 8, 30, 0],
                    kind: kind as u8,
                    reserved: [0xAB, 0xCE],
                };
                assert_eq!(
                    kind_of(check_bytes(wrong, 0x10, &bytes, NOW)),
                    Some(Mismatch::BadValue)
                );
            }
        }
    }

    #[test]
    fn frame_level_failures() {
        let mut bytes = encoded(
            Reply::Ack {
                protocol: n::HEARTBEAT,
            },
            5,
        );
        let ack = Expected::Ack {
            protocol: n::HEARTBEAT,
        };
        assert_eq!(
            kind_of(check_bytes(ack, 6, &bytes, NOW)),
            Some(Mismatch::WrongSerial)
        );
        assert_eq!(
            kind_of(check_bytes(
                Expected::Ack { protocol: n::LOGIN },
                5,
                &bytes,
                NOW
            )),
            Some(Mismatch::WrongProtocol)
        );
        let n = bytes.len();
        bytes[n - 3] ^= 0x01;
        assert_eq!(
            kind_of(check_bytes(ack, 5, &bytes, NOW)),
            Some(Mismatch::BadCrc)
        );
        // An ack with content.
        let mut out = BytesMut::new();
        badge_ingest::protocol::frame::write_frame_bytes(&mut out, n::HEARTBEAT, 5, &[0]).unwrap();
        assert_eq!(
            kind_of(check_bytes(ack, 5, &out, NOW)),
            Some(Mismatch::BadLayout)
        );
        // A short frame dressed as a long one.
        let long = [0x79, 0x79, 0x00, 0x05, 0x13, 0x00, 0x05];
        let crc = badge_ingest::protocol::crc::crc_itu(&long[2..]);
        let mut frame = long.to_vec();
        frame.extend_from_slice(&crc.to_be_bytes());
        frame.extend_from_slice(&[0x0D, 0x0A]);
        assert_eq!(
            kind_of(check_bytes(ack, 5, &frame, NOW)),
            Some(Mismatch::Marker)
        );
    }

    fn pending(request: u8, serial: u16, expected: Expected) -> Pending {
        Pending {
            request,
            serial,
            expected,
            sent_at: Instant::now(),
        }
    }

    #[test]
    fn replies_may_pass_an_address_request_waiting_for_its_lookup() {
        let mut o = Outstanding::default();
        o.expect(pending(
            n::LBS_ADDRESS_REQUEST,
            1,
            Expected::Address { english: false },
        ));
        o.expect(pending(
            n::HEARTBEAT,
            2,
            Expected::Ack {
                protocol: n::HEARTBEAT,
            },
        ));
        let r2 = encoded(
            Reply::Ack {
                protocol: n::HEARTBEAT,
            },
            2,
        );
        assert!(matches!(
            with_frame(&r2, |f| o.on_frame(f, NOW)),
            Verdict::Reply { result: Ok(()), .. }
        ));
        let r1 = encoded(
            Reply::Address {
                english: false,
                alarm: false,
                address: "深圳",
                phone: "",
            },
            1,
        );
        assert!(matches!(
            with_frame(&r1, |f| o.on_frame(f, NOW)),
            Verdict::Reply { result: Ok(()), .. }
        ));

        // Anything else overtaken is still out of order.
        o.expect(pending(
            n::HEARTBEAT,
            3,
            Expected::Ack {
                protocol: n::HEARTBEAT,
            },
        ));
        o.expect(pending(
            n::LBS_ADDRESS_REQUEST,
            4,
            Expected::Address { english: false },
        ));
        let r4 = encoded(
            Reply::Address {
                english: false,
                alarm: false,
                address: "",
                phone: "",
            },
            4,
        );
        assert!(matches!(
            with_frame(&r4, |f| o.on_frame(f, NOW)),
            Verdict::OutOfOrder { .. }
        ));
    }

    #[test]
    fn fifo_matching() {
        let mut o = Outstanding::default();
        o.expect(pending(
            n::HEARTBEAT,
            1,
            Expected::Ack {
                protocol: n::HEARTBEAT,
            },
        ));
        o.sent_without_reply(2, n::GPS);
        o.expect(pending(
            n::LBS_MULTI_REPLY,
            3,
            Expected::Ack {
                protocol: n::LBS_MULTI_REPLY,
            },
        ));
        o.expect(pending(
            n::ALARM_SINGLE_FENCE,
            4,
            Expected::Ack {
                protocol: n::ALARM_ACK,
            },
        ));

        // The reply to 3 overtakes 1.
        let r3 = encoded(
            Reply::Ack {
                protocol: n::LBS_MULTI_REPLY,
            },
            3,
        );
        assert!(matches!(
            with_frame(&r3, |f| o.on_frame(f, NOW)),
            Verdict::OutOfOrder { result: Ok(()), .. }
        ));
        let r1 = encoded(
            Reply::Ack {
                protocol: n::HEARTBEAT,
            },
            1,
        );
        assert!(matches!(
            with_frame(&r1, |f| o.on_frame(f, NOW)),
            Verdict::Reply { result: Ok(()), .. }
        ));
        // A reply to the GPS report, which must not be answered.
        let r2 = encoded(Reply::Ack { protocol: n::GPS }, 2);
        match with_frame(&r2, |f| o.on_frame(f, NOW)) {
            Verdict::Unexpected { failure, request } => {
                assert_eq!(failure.kind, Mismatch::ReplyToNoReply);
                assert_eq!(request, Some(n::GPS));
            }
            v => panic!("{v:?}"),
        }
        let r4 = encoded(
            Reply::Ack {
                protocol: n::ALARM_ACK,
            },
            4,
        );
        assert!(matches!(
            with_frame(&r4, |f| o.on_frame(f, NOW)),
            Verdict::Reply { result: Ok(()), .. }
        ));
        // The ALARMSMS that may follow an alarm's 0x26.
        let sms = encoded(Reply::alarm_address("Somewhere"), 4);
        assert!(matches!(
            with_frame(&sms, |f| o.on_frame(f, NOW)),
            Verdict::AlarmSms(Ok(()))
        ));
        // Nothing is outstanding now: any frame is unexpected.
        let stray = encoded(Reply::Ack { protocol: n::LOGIN }, 99);
        match with_frame(&stray, |f| o.on_frame(f, NOW)) {
            Verdict::Unexpected { failure, .. } => assert_eq!(failure.kind, Mismatch::Unexpected),
            v => panic!("{v:?}"),
        }
        assert!(o.is_empty());
    }

    #[test]
    fn a_wrong_serial_is_charged_to_the_oldest_request() {
        let mut o = Outstanding::default();
        o.expect(pending(
            n::HEARTBEAT,
            1,
            Expected::Ack {
                protocol: n::HEARTBEAT,
            },
        ));
        let bytes = encoded(
            Reply::Ack {
                protocol: n::HEARTBEAT,
            },
            77,
        );
        match with_frame(&bytes, |f| o.on_frame(f, NOW)) {
            Verdict::Reply {
                pending,
                result: Err(f),
            } => {
                assert_eq!(pending.serial, 1);
                assert_eq!(f.kind, Mismatch::WrongSerial);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn overdue_replies_expire_in_order() {
        let mut o = Outstanding::default();
        let t0 = Instant::now();
        for (i, dt) in [0u64, 100, 200].iter().enumerate() {
            o.expect(Pending {
                request: n::HEARTBEAT,
                serial: i as u16,
                expected: Expected::Ack {
                    protocol: n::HEARTBEAT,
                },
                sent_at: t0 + Duration::from_millis(*dt),
            });
        }
        let timeout = Duration::from_secs(5);
        assert_eq!(o.next_deadline(timeout), Some(t0 + timeout));
        let gone = o.expire(t0 + timeout + Duration::from_millis(150), timeout);
        assert_eq!(
            gone.iter().map(|p| p.serial).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(o.len(), 1);
        assert_eq!(o.take_all().len(), 1);
    }

    #[test]
    fn downlinks_from_the_library_parse() {
        use badge_ingest::protocol::downlink::{OnlineCommand as Cmd, TextMessage};
        let mut out = BytesMut::new();
        Cmd {
            server_flag: 42,
            text: "WHERE#",
        }
        .encode(5, &mut out)
        .unwrap();
        let cmd = with_frame(&out, |f| parse_online_command(f.content)).unwrap();
        assert_eq!(
            cmd,
            OnlineCommand {
                server_flag: 42,
                text: "WHERE#".into(),
                language: 1
            }
        );
        for text in ["你好", &"好".repeat(130)] {
            out.clear();
            TextMessage {
                server_flag: 1,
                text,
            }
            .encode(2, &mut out)
            .unwrap();
            assert_eq!(
                with_frame(&out, |f| parse_text_message(f.content)).unwrap(),
                text
            );
        }
    }
}
