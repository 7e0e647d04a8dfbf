//! 0x94 general information: a sub-protocol byte, then its data. No reply.
//!
//! Known sub-protocols: 0x0A IMEI(8) + IMSI(8) + ICCID(10); 0x00 ICCID(10)
//! (older firmware); 0x09 GPS status(1). Others are kept raw.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::protocol::cursor::Cursor;

use super::error::MessageError;

/// The SIM's ICCID: 10 BCD bytes, shown as 20 hex digits as the reference stores it
/// (`bytes.hex()`: lower case, so a 19-digit ICCID ends in its `f` padding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Iccid(pub [u8; 10]);

/// The SIM's IMSI: 8 BCD bytes, shown without the padding zeros, as the reference does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Imsi(pub [u8; 8]);

/// Lower-case hex, as Python's `bytes.hex()` writes it.
fn lower_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl fmt::Display for Iccid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        lower_hex(&self.0, f)
    }
}

impl fmt::Debug for Iccid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iccid({self})")
    }
}

impl fmt::Display for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        let trimmed = hex.trim_start_matches('0');
        f.write_str(if trimmed.is_empty() { "0" } else { trimmed })
    }
}

impl fmt::Debug for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Imsi({self})")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneralInfo<'a> {
    /// 0x0A
    SimIds {
        imei: [u8; 8],
        imsi: Imsi,
        iccid: Iccid,
    },
    /// 0x00
    Iccid(Iccid),
    /// 0x09: 0 off, 1 searching, 2 2D, 3 3D, 4 sleep.
    GpsStatus(u8),
    /// Any other sub-protocol, or a known one too short for its layout.
    Other { sub_protocol: u8, data: &'a [u8] },
}

impl<'a> GeneralInfo<'a> {
    pub(super) fn decode(content: &'a [u8]) -> Result<Self, MessageError> {
        let mut c = Cursor::new("general_info", content);
        let sub_protocol = c.u8("sub_protocol")?;
        let data = c.rest();
        let mut d = Cursor::new("general_info", data);
        // A known sub-protocol with a short body is kept as Other, as the
        // reference skips it without failing.
        Ok(match sub_protocol {
            0x0A if data.len() >= 26 => GeneralInfo::SimIds {
                imei: d.array("imei")?,
                imsi: Imsi(d.array("imsi")?),
                iccid: Iccid(d.array("iccid")?),
            },
            0x00 if data.len() >= 10 => GeneralInfo::Iccid(Iccid(d.array("iccid")?)),
            0x09 if !data.is_empty() => GeneralInfo::GpsStatus(data[0]),
            _ => GeneralInfo::Other { sub_protocol, data },
        })
    }

    pub fn sub_protocol(&self) -> u8 {
        match self {
            GeneralInfo::SimIds { .. } => 0x0A,
            GeneralInfo::Iccid(_) => 0x00,
            GeneralInfo::GpsStatus(_) => 0x09,
            GeneralInfo::Other { sub_protocol, .. } => *sub_protocol,
        }
    }

    pub fn iccid(&self) -> Option<Iccid> {
        match self {
            GeneralInfo::SimIds { iccid, .. } | GeneralInfo::Iccid(iccid) => Some(*iccid),
            _ => None,
        }
    }

    pub fn imsi(&self) -> Option<Imsi> {
        match self {
            GeneralInfo::SimIds { imsi, .. } => Some(*imsi),
            _ => None,
        }
    }

    pub(super) fn content_len(&self) -> usize {
        1 + match self {
            GeneralInfo::SimIds { .. } => 26,
            GeneralInfo::Iccid(_) => 10,
            GeneralInfo::GpsStatus(_) => 1,
            GeneralInfo::Other { data, .. } => data.len(),
        }
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.sub_protocol());
        match self {
            GeneralInfo::SimIds { imei, imsi, iccid } => {
                out.put_slice(imei);
                out.put_slice(&imsi.0);
                out.put_slice(&iccid.0);
            }
            GeneralInfo::Iccid(iccid) => out.put_slice(&iccid.0),
            GeneralInfo::GpsStatus(s) => out.put_u8(*s),
            GeneralInfo::Other { data, .. } => out.put_slice(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_ids() {
        let mut content = vec![0x0A];
        content.extend_from_slice(&[0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48]);
        content.extend_from_slice(&[0x04, 0x60, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90]);
        content.extend_from_slice(&[0x89, 0x86, 0x01, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34]);
        let info = GeneralInfo::decode(&content).unwrap();
        assert_eq!(info.imsi().unwrap().to_string(), "460011234567890");
        assert_eq!(info.iccid().unwrap().to_string(), "89860112345678901234");
        let short = GeneralInfo::decode(&content[..20]).unwrap();
        assert!(matches!(
            short,
            GeneralInfo::Other {
                sub_protocol: 0x0A,
                ..
            }
        ));
        assert_eq!(
            GeneralInfo::decode(&[0x09, 3]).unwrap(),
            GeneralInfo::GpsStatus(3)
        );
        assert!(GeneralInfo::decode(&[]).is_err());
    }
}
