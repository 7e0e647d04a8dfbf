//! Bluetooth: 0xB2 punch (one beacon, answered like attendance) and 0xB3
//! location (up to 255 beacons, no reply).

use bytes::{BufMut, BytesMut};
use zerocopy::byteorder::big_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::protocol::cursor::Cursor;
use crate::protocol::layout::{
    AttendanceKind, BeaconBattery, BeaconSighting, DeviceTime, MacAddr, TerminalInfo,
};

use super::error::MessageError;

/// 0xB2, 38 bytes: datetime(6) + RSSI(1, signed) + MAC(6) + UUID(16) +
/// major(2) + minor(2) + battery(2, 0.01 V) + terminal info(1) + reserved(2).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct PunchBody {
    pub time: DeviceTime,
    pub rssi: i8,
    pub mac: [u8; 6],
    pub uuid: [u8; 16],
    pub major: U16,
    pub minor: U16,
    pub battery_centivolts: U16,
    pub terminal_info: u8,
    /// Echoed back in the reply.
    pub reserved: [u8; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BluetoothPunch {
    pub body: PunchBody,
}

impl BluetoothPunch {
    pub(super) fn decode(content: &[u8]) -> Result<Self, MessageError> {
        let mut c = Cursor::new("bt_punch", content);
        let body = *c.read::<PunchBody>("punch")?;
        Ok(Self { body })
    }

    pub fn kind(&self) -> AttendanceKind {
        TerminalInfo(self.body.terminal_info).attendance_kind()
    }

    pub fn mac(&self) -> MacAddr {
        MacAddr(self.body.mac)
    }

    pub fn battery(&self) -> BeaconBattery {
        BeaconBattery::Centivolts(self.body.battery_centivolts.get())
    }

    pub(super) fn content_len(&self) -> usize {
        size_of::<PunchBody>()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.body.as_bytes());
    }
}

/// 0xB3: datetime(6) + beacon count(1) + 30-byte beacon records.
///
/// The count byte bounds the work per frame at 255 beacons; a count the
/// content cannot hold is an error, not a partial list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BluetoothLocation<'a> {
    pub time: DeviceTime,
    pub beacons: &'a [BeaconSighting],
}

impl<'a> BluetoothLocation<'a> {
    pub(super) fn decode(content: &'a [u8]) -> Result<Self, MessageError> {
        let mut c = Cursor::new("bt_location", content);
        let time = *c.read::<DeviceTime>("datetime")?;
        let count = c.u8("beacon_count")?;
        let beacons = c.slice::<BeaconSighting>(usize::from(count), "beacons")?;
        Ok(Self { time, beacons })
    }

    /// The strongest beacon for which `known` says a position exists.
    pub fn strongest<F>(&self, mut known: F) -> Option<&'a BeaconSighting>
    where
        F: FnMut(&BeaconSighting) -> bool,
    {
        self.beacons
            .iter()
            .filter(|b| known(b))
            .max_by_key(|b| b.rssi)
    }

    pub(super) fn content_len(&self) -> usize {
        7 + self.beacons.as_bytes().len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.time.as_bytes());
        out.put_u8(self.beacons.len() as u8);
        out.put_slice(self.beacons.as_bytes());
    }
}
