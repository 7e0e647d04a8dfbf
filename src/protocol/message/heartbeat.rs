//! 0x13 heartbeat: terminal info(1) + battery(1) + GSM signal(1) + language(2).
//! 0x36 extended heartbeat: the same, then extension modules (N).

use bytes::{BufMut, BytesMut};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::protocol::cursor::Cursor;
use crate::protocol::layout::TerminalInfo;
use crate::protocol::number as n;

use super::error::{Hex, MessageError};

/// The three status bytes every heartbeat starts with.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct HeartbeatStatus {
    pub terminal_info: u8,
    /// Battery in percent (0–100): the reference stores it as is.
    pub battery: u8,
    /// GSM signal, 0 (none) to 4 (strong).
    pub gsm_signal: u8,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    pub extended: bool,
    pub status: HeartbeatStatus,
    /// Absent on firmware that sends only the status bytes.
    pub language: Option<u16>,
    /// The 0x36 extension modules, kept raw.
    pub extension: &'a [u8],
}

impl<'a> Heartbeat<'a> {
    pub(super) fn decode(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        let extended = protocol == n::HEARTBEAT_EXT;
        let mut c = Cursor::new(
            if extended {
                "heartbeat_ext"
            } else {
                "heartbeat"
            },
            content,
        );
        let status = *c.read::<HeartbeatStatus>("status")?;
        let language = c.opt_u16();
        // 0x13 has nothing after the language; tolerate vendor padding there.
        let extension = c.rest();
        Ok(Self {
            extended,
            status,
            language,
            extension: if extended { extension } else { &[] },
        })
    }

    pub fn protocol(&self) -> u8 {
        if self.extended {
            n::HEARTBEAT_EXT
        } else {
            n::HEARTBEAT
        }
    }

    pub fn terminal_info(&self) -> TerminalInfo {
        TerminalInfo(self.status.terminal_info)
    }

    pub(super) fn content_len(&self) -> usize {
        3 + self.language.map_or(0, |_| 2) + self.extension.len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.status.as_bytes());
        if let Some(l) = self.language {
            out.put_u16(l);
        }
        out.put_slice(self.extension);
    }
}

impl std::fmt::Debug for Heartbeat<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("extended", &self.extended)
            .field("status", &self.status)
            .field("language", &self.language)
            .field("extension", &Hex(self.extension))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_and_extended_heartbeat() {
        let h = Heartbeat::decode(0x13, &[0x44, 85, 4, 0x00, 0x01]).unwrap();
        assert_eq!(
            h.status,
            HeartbeatStatus {
                terminal_info: 0x44,
                battery: 85,
                gsm_signal: 4
            }
        );
        assert_eq!(h.language, Some(1));
        assert!(h.terminal_info().gps_positioned());
        let h = Heartbeat::decode(0x36, &[0x00, 50, 3, 0x00, 0x02, 0xAA, 0xBB]).unwrap();
        assert_eq!(h.extension, &[0xAA, 0xBB]);
        assert_eq!(h.protocol(), 0x36);
        let e = Heartbeat::decode(0x13, &[0x00, 50]).unwrap_err();
        assert_eq!(e.message, "heartbeat");
    }
}
