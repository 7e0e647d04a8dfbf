//! Every reply the server sends to a badge, byte for byte as the reference
//! server builds them.
//!
//! Which message gets which reply is decided here too ([`Reply::immediate`]),
//! so the server's read loop has a single place to ask.

use bytes::{BufMut, BytesMut};
use zerocopy::IntoBytes;

use super::frame::{write_frame, EncodeError};
use super::layout::{AttendanceKind, DeviceTime};
use super::message::{AddressRequest, Message};
use super::number as n;

/// UTC+8: the reference's fixed "Beijing time" for replies to Chinese badges.
pub const BEIJING_OFFSET_MINUTES: i32 = 8 * 60;

/// The phone field of an address reply is always 21 ASCII bytes.
const PHONE_LEN: usize = 21;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Empty content, echoing the request's serial: login (0x01), heartbeats
    /// (0x13, 0x36), LBS 0x2E, and the 0x26 alarm acknowledgement.
    Ack { protocol: u8 },
    /// 0x1F: Unix time (shifted to UTC+8 for language 1, as the reference
    /// does) + the language echoed.
    TimeSync { time: u32, language: u16 },
    /// 0x8A: YY MM DD HH MM SS in UTC+8.
    TimeSync2 { time: DeviceTime },
    /// 0x17 (Chinese) or 0x97 (English): server flag(4) + "ADDRESS" or
    /// "ALARMSMS" + "&&" + address (UTF-16BE) + "&&" + phone(21) + "##",
    /// behind a 1-byte (0x17) or 2-byte (0x97) length.
    Address {
        english: bool,
        alarm: bool,
        address: &'a str,
        phone: &'a str,
    },
    /// 0xB0, 0xB1, 0xB2: datetime(6) echoed + status 1 + clock type (1 in,
    /// 2 out) + the two reserved bytes echoed.
    Punch {
        protocol: u8,
        time: DeviceTime,
        kind: AttendanceKind,
        reserved: [u8; 2],
    },
}

impl<'a> Reply<'a> {
    /// The reply a message gets at once, if any. Address requests are not
    /// answered here: their reply waits for the address (see
    /// [`Reply::address`]); alarms get their 0x26 here and the ALARMSMS reply
    /// later, when an address is known.
    pub fn immediate(message: &Message<'_>, now_unix: i64) -> Option<Reply<'static>> {
        Some(match message {
            Message::Login(_) => Reply::Ack { protocol: n::LOGIN },
            Message::Heartbeat(h) => Reply::Ack {
                protocol: h.protocol(),
            },
            Message::Lbs(l) if l.protocol == n::LBS_MULTI_REPLY => Reply::Ack {
                protocol: n::LBS_MULTI_REPLY,
            },
            Message::TimeSync(req) => Reply::time_sync(req.language, now_unix),
            Message::TimeSync2 => Reply::TimeSync2 {
                time: DeviceTime::from_unix(now_unix, BEIJING_OFFSET_MINUTES),
            },
            Message::Alarm(_) => Reply::Ack {
                protocol: n::ALARM_ACK,
            },
            Message::Attendance(a) => Reply::Punch {
                protocol: a.protocol(),
                time: a.head.time,
                kind: a.kind(),
                reserved: a.head.reserved,
            },
            Message::BluetoothPunch(p) => Reply::Punch {
                protocol: n::BT_PUNCH,
                time: p.body.time,
                kind: p.kind(),
                reserved: p.body.reserved,
            },
            _ => return None,
        })
    }

    /// 0x1F: the reference sends UTC+8 wall-clock seconds to Chinese-language
    /// badges (language 1) and plain Unix time to the others.
    pub fn time_sync(language: u16, now_unix: i64) -> Reply<'static> {
        let shift = if language == 1 {
            i64::from(BEIJING_OFFSET_MINUTES) * 60
        } else {
            0
        };
        Reply::TimeSync {
            time: (now_unix + shift).clamp(0, i64::from(u32::MAX)) as u32,
            language,
        }
    }

    /// The answer to an address request: English (0x97) if the badge asked
    /// in language 2, else Chinese (0x17). An unknown address is sent empty.
    pub fn address(request: &AddressRequest<'_>, address: &'a str) -> Reply<'a> {
        Reply::Address {
            english: request.wants_english(),
            alarm: false,
            address,
            phone: "",
        }
    }

    /// The ALARMSMS reply that follows an alarm's 0x26 when its address is
    /// known. Always 0x17, as in the reference.
    pub fn alarm_address(address: &'a str) -> Reply<'a> {
        Reply::Address {
            english: false,
            alarm: true,
            address,
            phone: "",
        }
    }

    pub fn protocol(&self) -> u8 {
        match self {
            Reply::Ack { protocol } | Reply::Punch { protocol, .. } => *protocol,
            Reply::TimeSync { .. } => n::TIME_SYNC,
            Reply::TimeSync2 { .. } => n::TIME_SYNC_2,
            Reply::Address { english: true, .. } => n::ADDRESS_REPLY_EN,
            Reply::Address { english: false, .. } => n::LBS_ADDRESS_REQUEST,
        }
    }

    /// Appends the reply frame, with the request's serial, to `out`.
    pub fn encode(&self, serial: u16, out: &mut BytesMut) -> Result<(), EncodeError> {
        let protocol = self.protocol();
        match *self {
            Reply::Ack { .. } => write_frame(out, protocol, serial, 0, |_| {}),
            Reply::TimeSync { time, language } => write_frame(out, protocol, serial, 6, |o| {
                o.put_u32(time);
                o.put_u16(language);
            }),
            Reply::TimeSync2 { time } => {
                write_frame(out, protocol, serial, 6, |o| o.put_slice(time.as_bytes()))
            }
            Reply::Punch {
                time,
                kind,
                reserved,
                ..
            } => write_frame(out, protocol, serial, 10, |o| {
                o.put_slice(time.as_bytes());
                o.put_u8(1);
                o.put_u8(kind as u8);
                o.put_slice(&reserved);
            }),
            Reply::Address {
                english,
                alarm,
                address,
                phone,
            } => {
                let marker: &[u8] = if alarm { b"ALARMSMS" } else { b"ADDRESS" };
                let fixed = 4 + marker.len() + 2 + 2 + PHONE_LEN + 2;
                // The reference clamps the 0x17 length byte at 255 but still
                // sends the whole address, so a badge would read a wrong
                // length. We cut the address (at a character boundary) so the
                // length is always true; 0x97 is bounded by the frame instead.
                let (len_width, max_inner) = if english {
                    (2, u16::MAX as usize - 7)
                } else {
                    (1, u8::MAX as usize)
                };
                let address = utf16_prefix(address, max_inner - fixed);
                let inner = fixed + 2 * address.encode_utf16().count();
                write_frame(out, protocol, serial, len_width + inner, |o| {
                    if english {
                        o.put_u16(inner as u16);
                    } else {
                        o.put_u8(inner as u8);
                    }
                    o.put_u32(0);
                    o.put_slice(marker);
                    o.put_slice(b"&&");
                    for unit in address.encode_utf16() {
                        o.put_u16(unit);
                    }
                    o.put_slice(b"&&");
                    put_phone(o, phone);
                    o.put_slice(b"##");
                })
            }
        }
    }
}

/// The longest prefix of `s` whose UTF-16 encoding fits `max_bytes`.
pub(crate) fn utf16_prefix(s: &str, max_bytes: usize) -> &str {
    let mut bytes = 0;
    for (i, ch) in s.char_indices() {
        bytes += 2 * ch.len_utf16();
        if bytes > max_bytes {
            return &s[..i];
        }
    }
    s
}

/// 21 bytes: the phone's ASCII characters (others dropped, as the reference's
/// `encode("ascii", errors="ignore")` does), padded with ASCII '0'.
fn put_phone(out: &mut BytesMut, phone: &str) {
    let mut written = 0;
    for b in phone.bytes().filter(u8::is_ascii).take(PHONE_LEN) {
        out.put_u8(b);
        written += 1;
    }
    out.put_bytes(b'0', PHONE_LEN - written);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn encoded(reply: Reply<'_>, serial: u16) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(serial, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn login_ack_is_the_manual_example() {
        // GT06 manual: the server's answer to the login with serial 1.
        assert_eq!(
            encoded(Reply::Ack { protocol: 0x01 }, 1),
            hex("78 78 05 01 00 01 D9 DC 0D 0A")
        );
    }

    #[test]
    fn time_sync_shifts_chinese_badges_to_utc_plus_8() {
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        let zh = Reply::time_sync(1, now);
        assert_eq!(
            zh,
            Reply::TimeSync {
                time: 1_700_028_800,
                language: 1
            }
        );
        let en = Reply::time_sync(2, now);
        assert_eq!(
            en,
            Reply::TimeSync {
                time: 1_700_000_000,
                language: 2
            }
        );
        let bytes = encoded(zh, 0x0102);
        assert_eq!(&bytes[..10], &hex("78 78 0B 1F 65 54 61 80 00 01")[..]);
        assert_eq!(&bytes[10..12], &[0x01, 0x02]);
    }

    #[test]
    fn time_sync_2_is_beijing_wall_clock() {
        let m = Message::TimeSync2;
        let r = Reply::immediate(&m, 1_700_000_000).unwrap();
        // 22:13:20Z is 06:13:20 the next day in UTC+8.
        assert_eq!(
            r,
            Reply::TimeSync2 {
                time: DeviceTime::new(23, 11, 15, 6, 13, 20)
            }
        );
        assert_eq!(
            &encoded(r, 9)[..10],
            &hex("78 78 0B 8A 17 0B 0F 06 0D 14")[..]
        );
    }

    #[test]
    fn chinese_address_reply_layout() {
        let bytes = encoded(
            Reply::Address {
                english: false,
                alarm: false,
                address: "深圳",
                phone: "",
            },
            3,
        );
        let mut content = vec![4 + 7 + 2 + 4 + 2 + 21 + 2];
        content.extend_from_slice(&[0, 0, 0, 0]);
        content.extend_from_slice(b"ADDRESS&&");
        content.extend_from_slice(&[0x6D, 0xF1, 0x57, 0x33]);
        content.extend_from_slice(b"&&000000000000000000000##");
        assert_eq!(bytes[2] as usize, 1 + content.len() + 4);
        assert_eq!(bytes[3], 0x17);
        assert_eq!(&bytes[4..4 + content.len()], &content[..]);
    }

    #[test]
    fn english_alarm_and_empty_addresses() {
        let bytes = encoded(
            Reply::Address {
                english: true,
                alarm: false,
                address: "",
                phone: "13800138000",
            },
            3,
        );
        assert_eq!(bytes[3], 0x97);
        assert_eq!(&bytes[4..6], &[0x00, 4 + 7 + 2 + 2 + 21 + 2]);
        assert_eq!(&bytes[10..19], b"ADDRESS&&");
        assert_eq!(&bytes[19..21], b"&&");
        assert_eq!(&bytes[21..42], b"138001380000000000000");
        let alarm = encoded(Reply::alarm_address("A"), 7);
        assert_eq!(alarm[3], 0x17);
        assert_eq!(&alarm[9..19], b"ALARMSMS&&");
        assert_eq!(&alarm[19..21], &[0x00, 0x41]);
    }

    #[test]
    fn long_chinese_address_is_cut_to_keep_the_length_byte_true() {
        let long: String = std::iter::repeat_n('路', 200).collect();
        let bytes = encoded(
            Reply::Address {
                english: false,
                alarm: false,
                address: &long,
                phone: "",
            },
            1,
        );
        // 255 - 38 fixed bytes leaves 217: 108 whole characters (216 bytes),
        // so the length byte says 254. The frame length 1 + 1 + 254 + 4 = 260
        // no longer fits a byte: 79 79.
        assert_eq!(&bytes[..6], &[0x79, 0x79, 0x01, 0x04, 0x17, 0xFE]);
        assert_eq!(bytes.len(), 4 + 260 + 2);
        let english = encoded(
            Reply::Address {
                english: true,
                alarm: false,
                address: &long,
                phone: "",
            },
            1,
        );
        assert_eq!(&english[..2], &[0x79, 0x79]);
        assert_eq!(
            u16::from_be_bytes([english[5], english[6]]) as usize,
            38 + 400
        );
    }

    #[test]
    fn punch_reply_echoes_time_and_reserved_bytes() {
        let r = Reply::Punch {
            protocol: 0xB2,
            time: DeviceTime::new(24, 5, 1, 8, 30, 0),
            kind: AttendanceKind::ClockOut,
            reserved: [0xAB, 0xCD],
        };
        let bytes = encoded(r, 0x10);
        assert_eq!(
            &bytes[..14],
            &hex("78 78 0F B2 18 05 01 08 1E 00 01 02 AB CD")[..]
        );
    }
}
