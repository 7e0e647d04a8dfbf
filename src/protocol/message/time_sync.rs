//! 0x1F time sync request. The reference reads only the language, at content
//! bytes 6–7 (after a 6-byte datetime); a shorter request means Chinese.

use bytes::{BufMut, BytesMut};

use crate::protocol::layout::DeviceTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSyncRequest {
    /// The device clock as sent, when the request carries one.
    pub device_time: Option<DeviceTime>,
    /// 1 Chinese (the reply is then in UTC+8), 2 English (UTC).
    pub language: u16,
}

impl TimeSyncRequest {
    pub(super) fn decode(content: &[u8]) -> Self {
        if content.len() >= 8 {
            let t = DeviceTime::new(
                content[0], content[1], content[2], content[3], content[4], content[5],
            );
            Self {
                device_time: Some(t),
                language: u16::from_be_bytes([content[6], content[7]]),
            }
        } else {
            Self {
                device_time: None,
                language: 1,
            }
        }
    }

    pub(super) fn content_len(&self) -> usize {
        if self.device_time.is_some() {
            8
        } else {
            0
        }
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        if let Some(t) = self.device_time {
            out.put_slice(zerocopy::IntoBytes::as_bytes(&t));
            out.put_u16(self.language);
        }
    }
}
