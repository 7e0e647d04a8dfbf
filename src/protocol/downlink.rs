//! Server-initiated frames: 0x80 online command and 0x82 text message.
//!
//! Both carry a 4-byte server flag. The reference always sent zero; we put a
//! command id there, which the badge echoes in its 0x81 reply, so replies
//! are matched to commands exactly.

use bytes::{BufMut, BytesMut};

use super::frame::{write_frame, EncodeError};
use super::number as n;

/// Language word sent with downlink frames: 0x0001, as the reference does.
const LANGUAGE: u16 = 0x0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DownlinkError {
    #[error("command text of {len} bytes exceeds the {max}-byte limit of its length field")]
    TooLong { len: usize, max: usize },
    #[error(transparent)]
    Frame(#[from] EncodeError),
}

/// 0x80: length(1) + server flag(4) + command (ASCII/UTF-8) + language(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineCommand<'a> {
    pub server_flag: u32,
    pub text: &'a str,
}

impl OnlineCommand<'_> {
    /// The one-byte length counts flag + text + language, so the text is at
    /// most 249 bytes. (The reference would have crashed building a longer one.)
    pub const MAX_TEXT: usize = 255 - 6;

    pub fn encode(&self, serial: u16, out: &mut BytesMut) -> Result<(), DownlinkError> {
        let text = self.text.as_bytes();
        if text.len() > Self::MAX_TEXT {
            return Err(DownlinkError::TooLong {
                len: text.len(),
                max: Self::MAX_TEXT,
            });
        }
        let inner = 4 + text.len() + 2;
        write_frame(out, n::ONLINE_COMMAND, serial, 1 + inner, |o| {
            o.put_u8(inner as u8);
            o.put_u32(self.server_flag);
            o.put_slice(text);
            o.put_u16(LANGUAGE);
        })?;
        Ok(())
    }
}

/// 0x82: length(1, or 2 when over 255) + server flag(4) + text (UTF-16BE) + language(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextMessage<'a> {
    pub server_flag: u32,
    pub text: &'a str,
}

impl TextMessage<'_> {
    /// Bounded by the 2-byte length and the frame: 65 000 bytes of UTF-16.
    pub const MAX_UTF16_BYTES: usize = 65_000;

    pub fn encode(&self, serial: u16, out: &mut BytesMut) -> Result<(), DownlinkError> {
        let utf16_len = 2 * self.text.encode_utf16().count();
        if utf16_len > Self::MAX_UTF16_BYTES {
            return Err(DownlinkError::TooLong {
                len: utf16_len,
                max: Self::MAX_UTF16_BYTES,
            });
        }
        let inner = 4 + utf16_len + 2;
        let len_width = if inner > 0xFF { 2 } else { 1 };
        write_frame(out, n::MESSAGE, serial, len_width + inner, |o| {
            if len_width == 2 {
                o.put_u16(inner as u16);
            } else {
                o.put_u8(inner as u8);
            }
            o.put_u32(self.server_flag);
            for unit in self.text.encode_utf16() {
                o.put_u16(unit);
            }
            o.put_u16(LANGUAGE);
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::crc::crc_itu;

    #[test]
    fn online_command_bytes() {
        let mut out = BytesMut::new();
        OnlineCommand {
            server_flag: 0x0000_0007,
            text: "WHERE#",
        }
        .encode(0x0005, &mut out)
        .unwrap();
        let mut expected = vec![0x78, 0x78, 0x12, 0x80, 0x0C, 0, 0, 0, 7];
        expected.extend_from_slice(b"WHERE#");
        expected.extend_from_slice(&[0x00, 0x01, 0x00, 0x05]);
        let crc = crc_itu(&expected[2..]);
        expected.extend_from_slice(&crc.to_be_bytes());
        expected.extend_from_slice(&[0x0D, 0x0A]);
        assert_eq!(&out[..], &expected[..]);
        let too_long = "x".repeat(250);
        assert!(OnlineCommand {
            server_flag: 0,
            text: &too_long
        }
        .encode(1, &mut out)
        .is_err());
    }

    #[test]
    fn chinese_message_in_utf16be() {
        let mut out = BytesMut::new();
        TextMessage {
            server_flag: 1,
            text: "你好",
        }
        .encode(2, &mut out)
        .unwrap();
        assert_eq!(
            &out[..16],
            &[0x78, 0x78, 0x10, 0x82, 0x0A, 0, 0, 0, 1, 0x4F, 0x60, 0x59, 0x7D, 0x00, 0x01, 0x00]
        );
        out.clear();
        let long: String = std::iter::repeat_n('好', 130).collect();
        TextMessage {
            server_flag: 1,
            text: &long,
        }
        .encode(2, &mut out)
        .unwrap();
        // 4 + 260 + 2 = 266 > 255: two length bytes, and a 79 79 frame of
        // length 1 + 2 + 266 + 4 = 273.
        assert_eq!(&out[..7], &[0x79, 0x79, 0x01, 0x11, 0x82, 0x01, 0x0A]);
    }
}
