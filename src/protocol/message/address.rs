//! Address requests: 0x17 (LBS), 0x1A (GPS address query), 0xA7 (4G LBS).
//!
//! The reference reads only two things from them: the datetime at the start
//! and the language in the last two bytes, which picks the reply (0x97
//! English for language 2, else 0x17 Chinese). What lies between is kept
//! raw, and read on request as a GPS block (0x1A) or a serving cell (0x17,
//! 0xA7), which is how GT06-family devices lay these requests out.

use bytes::{BufMut, BytesMut};
use zerocopy::{FromBytes, IntoBytes};

use crate::protocol::cursor::Cursor;
use crate::protocol::layout::{CellTower, DeviceTime, GpsFix, MobileNetwork};
use crate::protocol::number as n;

use super::error::{Hex, MessageError};

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AddressRequest<'a> {
    pub protocol: u8,
    pub time: DeviceTime,
    /// Everything between the datetime and the language.
    pub body: &'a [u8],
    /// 1 Chinese, 2 English.
    pub language: u16,
}

impl<'a> AddressRequest<'a> {
    pub(super) fn decode(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        let mut c = Cursor::new(n::name(protocol), content);
        let time = *c.read::<DeviceTime>("datetime")?;
        if c.remaining() < 2 {
            // Reports the language's own offset and size (it directly follows
            // the datetime when there is no body).
            c.take(2, "language")?;
        }
        let rest = c.rest();
        let (body, language) = rest.split_at(rest.len() - 2);
        Ok(Self {
            protocol,
            time,
            body,
            language: u16::from_be_bytes([language[0], language[1]]),
        })
    }

    /// Language 2 asks for an English (0x97) reply; anything else for Chinese (0x17).
    pub fn wants_english(&self) -> bool {
        self.language == 2
    }

    /// The GPS block of a 0x1A query.
    pub fn gps(&self) -> Option<GpsFix> {
        if self.protocol != n::ADDRESS_QUERY {
            return None;
        }
        GpsFix::read_from_prefix(self.body).ok().map(|(fix, _)| fix)
    }

    /// The serving cell of a 0x17 (2G sizes) or 0xA7 (4G sizes) request.
    pub fn cell(&self) -> Option<(MobileNetwork, CellTower)> {
        let mut c = Cursor::new("address", self.body);
        let network = c.network().ok()?;
        let cell = match self.protocol {
            n::LBS_ADDRESS_REQUEST => {
                let lac = c.u16("lac").ok()?;
                let id = c.array::<3>("cell_id").ok()?;
                CellTower {
                    lac: u32::from(lac),
                    cell_id: u64::from(u32::from_be_bytes([0, id[0], id[1], id[2]])),
                    rssi: 0,
                }
            }
            n::LBS_4G_ADDRESS_REQUEST => CellTower {
                lac: c.u32("lac").ok()?,
                cell_id: u64::from_be_bytes(c.array::<8>("cell_id").ok()?),
                rssi: 0,
            },
            _ => return None,
        };
        Some((network, cell))
    }

    pub(super) fn content_len(&self) -> usize {
        6 + self.body.len() + 2
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.time.as_bytes());
        out.put_slice(self.body);
        out.put_u16(self.language);
    }
}

impl std::fmt::Debug for AddressRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressRequest")
            .field("protocol", &self.protocol)
            .field("time", &self.time)
            .field("body", &Hex(self.body))
            .field("language", &self.language)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_is_the_last_two_bytes() {
        let fix = GpsFix::new(22.5, 113.9, 0, 0, 5, true, true);
        let mut content = vec![24, 5, 1, 8, 30, 0];
        content.extend_from_slice(fix.as_bytes());
        content.extend_from_slice(&[0x30; 21]);
        content.extend_from_slice(&[0x00, 0x02]);
        let r = AddressRequest::decode(0x1A, &content).unwrap();
        assert!(r.wants_english());
        assert_eq!(r.gps(), Some(fix));
        assert_eq!(r.body.len(), 12 + 21);
        assert_eq!(r.cell(), None);
    }

    #[test]
    fn cell_of_lbs_requests() {
        let content = [
            24, 5, 1, 8, 30, 0, 0x01, 0xCC, 0x00, 0x25, 0x1A, 0x00, 0x0F, 0xA1, 0x00, 0x01,
        ];
        let r = AddressRequest::decode(0x17, &content).unwrap();
        assert!(!r.wants_english());
        let (net, cell) = r.cell().unwrap();
        assert_eq!((net.mcc, net.mnc), (460, 0));
        assert_eq!((cell.lac, cell.cell_id), (0x251A, 0x000FA1));
        let e = AddressRequest::decode(0x17, &content[..7]).unwrap_err();
        assert_eq!(e.message, "lbs_address_request");
    }
}
