//! Attendance: 0xB0 (2G cells) and 0xB1 (4G cells). Both are answered with
//! datetime + status + clock type + the two reserved bytes echoed.

use bytes::{BufMut, BytesMut};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::protocol::cursor::Cursor;
use crate::protocol::layout::{
    voltage_level_percent, AttendanceKind, Cells, DeviceTime, Generation, GpsFix, MobileNetwork,
    TerminalInfo, WifiAp,
};
use crate::protocol::number as n;

use super::error::MessageError;
use super::location::{read_cells, STATIONS};

/// The fixed first 26 bytes of an attendance report.
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct AttendanceHead {
    pub time: DeviceTime,
    /// 1 when the device had a GPS fix.
    pub gps_flag: u8,
    /// Echoed back in the reply.
    pub reserved: [u8; 2],
    pub fix: GpsFix,
    /// Bits 5–2 say clock-in or clock-out.
    pub terminal_info: u8,
    pub voltage_level: u8,
    pub gsm_signal: u8,
    pub reserved_ext: [u8; 2],
}

/// 0xB0 / 0xB1: the head, then MCC/MNC + 7 stations + timing advance(1) +
/// AP count(1) + APs.
///
/// 0xB0 uses the usual MCC/MNC (the MCC's high bit selects a 2-byte MNC);
/// 0xB1 always sends a 2-byte MNC and masks the MCC's high bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attendance<'a> {
    pub head: AttendanceHead,
    pub network: MobileNetwork,
    pub cells: Cells<'a>,
    pub timing_advance: u8,
    pub aps: &'a [WifiAp],
}

impl<'a> Attendance<'a> {
    pub(super) fn decode(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        let four_g = protocol == n::ATTENDANCE_4G;
        let mut c = Cursor::new(n::name(protocol), content);
        let head = *c.read::<AttendanceHead>("head")?;
        let network = if four_g {
            let mcc = c.u16("mcc")? & 0x7FFF;
            let mnc = c.u16("mnc")?;
            MobileNetwork {
                mcc,
                mnc,
                wide_mnc: true,
            }
        } else {
            c.network()?
        };
        let generation = if four_g {
            Generation::G4
        } else {
            Generation::G2
        };
        let cells = read_cells(&mut c, generation, STATIONS)?;
        let timing_advance = c.u8("timing_advance")?;
        let count = c.u8("wifi_count")?;
        let aps = c.slice::<WifiAp>(usize::from(count), "wifi")?;
        Ok(Self {
            head,
            network,
            cells,
            timing_advance,
            aps,
        })
    }

    pub fn protocol(&self) -> u8 {
        match self.cells.generation() {
            Generation::G2 => n::ATTENDANCE,
            Generation::G4 => n::ATTENDANCE_4G,
        }
    }

    pub fn kind(&self) -> AttendanceKind {
        TerminalInfo(self.head.terminal_info).attendance_kind()
    }

    /// The GPS course/status bit wins over the separate flag byte, as in the reference.
    pub fn gps_positioned(&self) -> bool {
        self.head.fix.positioned()
    }

    pub fn battery_percent(&self) -> Option<u8> {
        voltage_level_percent(self.head.voltage_level)
    }

    pub(super) fn content_len(&self) -> usize {
        let network = match self.cells.generation() {
            Generation::G2 => self.network.encoded_len(),
            Generation::G4 => 4,
        };
        size_of::<AttendanceHead>()
            + network
            + self.cells.as_bytes().len()
            + 2
            + self.aps.as_bytes().len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.head.as_bytes());
        match self.cells.generation() {
            Generation::G2 => self.network.encode(out),
            Generation::G4 => {
                out.put_u16(self.network.mcc | 0x8000);
                out.put_u16(self.network.mnc);
            }
        }
        out.put_slice(self.cells.as_bytes());
        out.put_u8(self.timing_advance);
        out.put_u8(self.aps.len() as u8);
        out.put_slice(self.aps.as_bytes());
    }
}
