//! 0x81: the badge's answer to an 0x80 online command.
//!
//! Layout: length(1) + server flag(4) + text + language(2). The server flag
//! is echoed from the command, which is how we match a reply to its command
//! (the reference matched "the most recent sent command" instead).

use bytes::{BufMut, BytesMut};

use crate::protocol::cursor::Cursor;

use super::error::{Hex, MessageError};

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommandReply<'a> {
    pub length: u8,
    pub server_flag: u32,
    /// The reply text as sent (ASCII or UTF-8 in practice).
    pub text: &'a [u8],
    /// Absent when the reply is too short to carry one; the reference then
    /// takes everything after the flag as text.
    pub language: Option<u16>,
}

impl<'a> CommandReply<'a> {
    pub(super) fn decode(content: &'a [u8]) -> Result<Self, MessageError> {
        let mut c = Cursor::new("command_reply", content);
        let length = c.u8("length")?;
        let server_flag = c.u32("server_flag")?;
        let rest = c.rest();
        // Same rule as the reference: more than 7 content bytes means the
        // last two are the language.
        let (text, language) = if content.len() > 7 {
            let (t, l) = rest.split_at(rest.len() - 2);
            (t, Some(u16::from_be_bytes([l[0], l[1]])))
        } else {
            (rest, None)
        };
        Ok(Self {
            length,
            server_flag,
            text,
            language,
        })
    }

    /// The text, with invalid UTF-8 replaced, as the reference stores it.
    pub fn text_lossy(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.text)
    }

    pub(super) fn content_len(&self) -> usize {
        5 + self.text.len() + self.language.map_or(0, |_| 2)
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.length);
        out.put_u32(self.server_flag);
        out.put_slice(self.text);
        if let Some(l) = self.language {
            out.put_u16(l);
        }
    }
}

impl std::fmt::Debug for CommandReply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandReply")
            .field("server_flag", &self.server_flag)
            .field("text", &self.text_lossy())
            .field("raw", &Hex(self.text))
            .field("language", &self.language)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_with_language() {
        let content = [0x0B, 0x00, 0x00, 0x00, 0x2A, b'O', b'K', b'!', 0x00, 0x01];
        let r = CommandReply::decode(&content).unwrap();
        assert_eq!(
            (r.server_flag, r.text, r.language),
            (42, &b"OK!"[..], Some(1))
        );
        let short = CommandReply::decode(&content[..7]).unwrap();
        assert_eq!((short.text, short.language), (&b"OK"[..], None));
        assert!(CommandReply::decode(&content[..4]).is_err());
    }
}
