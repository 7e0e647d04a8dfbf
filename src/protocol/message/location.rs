//! Position reports: GPS (0x22, 0xA0), LBS (0x28, 0x2E, 0xA1) and WiFi (0x2C, 0xA2).
//!
//! The 4G variants (0xAx) differ only in the station layout: LAC(4) + cell
//! id(8) instead of LAC(2) + cell id(3).

use bytes::{BufMut, BytesMut};
use zerocopy::IntoBytes;

use crate::protocol::cursor::Cursor;
use crate::protocol::layout::{
    Cell2g, Cell4g, CellTower, Cells, DeviceTime, Generation, GpsFix, MobileNetwork, WifiAp,
};
use crate::protocol::number as n;

use super::error::MessageError;

/// Main cell + six neighbours.
pub const STATIONS: usize = 7;

/// 0x22 / 0xA0: datetime(6) + GPS(12), then optionally the serving cell,
/// ACC, upload mode, re-upload flag and mileage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsReport {
    pub generation: Generation,
    pub time: DeviceTime,
    pub fix: GpsFix,
    pub tail: Option<GpsTail>,
}

/// What follows the GPS block: MCC/MNC + LAC + cell id (2G or 4G sizes) +
/// ACC(1) + upload mode(1) + re-upload(1) + mileage(4, optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpsTail {
    pub network: MobileNetwork,
    pub cell: CellTower,
    pub acc: u8,
    pub report_mode: u8,
    pub realtime_upload: u8,
    pub mileage: Option<u32>,
}

impl GpsReport {
    pub(super) fn decode(protocol: u8, content: &[u8]) -> Result<Self, MessageError> {
        let generation = if protocol == n::GPS_4G {
            Generation::G4
        } else {
            Generation::G2
        };
        let mut c = Cursor::new(
            if protocol == n::GPS_4G {
                "gps_4g"
            } else {
                "gps"
            },
            content,
        );
        let time = *c.read::<DeviceTime>("datetime")?;
        let fix = *c.read::<GpsFix>("gps")?;
        let tail = if c.remaining() == 0 {
            None
        } else {
            let network = c.network()?;
            let cell = match generation {
                Generation::G2 => {
                    let lac = c.u16("lac")?;
                    let id = c.array::<3>("cell_id")?;
                    CellTower {
                        lac: u32::from(lac),
                        cell_id: u64::from(u32::from_be_bytes([0, id[0], id[1], id[2]])),
                        rssi: 0,
                    }
                }
                Generation::G4 => {
                    let lac = c.u32("lac")?;
                    let id = u64::from_be_bytes(c.array::<8>("cell_id")?);
                    CellTower {
                        lac,
                        cell_id: id,
                        rssi: 0,
                    }
                }
            };
            let acc = c.u8("acc")?;
            let report_mode = c.u8("report_mode")?;
            let realtime_upload = c.u8("realtime_upload")?;
            let mileage = if c.remaining() >= 4 {
                Some(c.u32("mileage")?)
            } else {
                None
            };
            Some(GpsTail {
                network,
                cell,
                acc,
                report_mode,
                realtime_upload,
                mileage,
            })
        };
        Ok(Self {
            generation,
            time,
            fix,
            tail,
        })
    }

    pub fn protocol(&self) -> u8 {
        match self.generation {
            Generation::G2 => n::GPS,
            Generation::G4 => n::GPS_4G,
        }
    }

    pub(super) fn content_len(&self) -> usize {
        let cell = match self.generation {
            Generation::G2 => 5,
            Generation::G4 => 12,
        };
        18 + self.tail.map_or(0, |t| {
            t.network.encoded_len() + cell + 3 + t.mileage.map_or(0, |_| 4)
        })
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.time.as_bytes());
        out.put_slice(self.fix.as_bytes());
        if let Some(t) = self.tail {
            t.network.encode(out);
            match self.generation {
                Generation::G2 => {
                    out.put_u16(t.cell.lac as u16);
                    out.put_slice(&(t.cell.cell_id as u32).to_be_bytes()[1..]);
                }
                Generation::G4 => {
                    out.put_u32(t.cell.lac);
                    out.put_u64(t.cell.cell_id);
                }
            }
            out.put_slice(&[t.acc, t.report_mode, t.realtime_upload]);
            if let Some(m) = t.mileage {
                out.put_u32(m);
            }
        }
    }
}

/// Reads `count` stations of `generation`.
pub(super) fn read_cells<'a>(
    c: &mut Cursor<'a>,
    generation: Generation,
    count: usize,
) -> Result<Cells<'a>, MessageError> {
    Ok(match generation {
        Generation::G2 => Cells::G2(c.slice::<Cell2g>(count, "cells")?),
        Generation::G4 => Cells::G4(c.slice::<Cell4g>(count, "cells")?),
    })
}

/// 0x28 / 0x2E / 0xA1: datetime(6) + MCC/MNC + up to 7 stations (main cell
/// first) + timing advance(1) + language(2).
///
/// Firmware that sees fewer cells may send fewer stations; the reference
/// reads as many whole stations as the content holds, and so do we.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbsReport<'a> {
    /// 0x28 (no reply), 0x2E (acknowledged) or 0xA1 (4G).
    pub protocol: u8,
    pub time: DeviceTime,
    pub network: MobileNetwork,
    pub cells: Cells<'a>,
    pub timing_advance: Option<u8>,
    pub language: Option<u16>,
}

impl<'a> LbsReport<'a> {
    pub(super) fn decode(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        let generation = if protocol == n::LBS_4G {
            Generation::G4
        } else {
            Generation::G2
        };
        let mut c = Cursor::new(crate::protocol::number::name(protocol), content);
        let time = *c.read::<DeviceTime>("datetime")?;
        let network = c.network()?;
        let count = (c.remaining() / Cells::station_len(generation)).min(STATIONS);
        if count == 0 {
            return Err(c.invalid("cells", "no serving cell"));
        }
        let cells = read_cells(&mut c, generation, count)?;
        let timing_advance = c.opt_u8();
        let language = c.opt_u16();
        Ok(Self {
            protocol,
            time,
            network,
            cells,
            timing_advance,
            language,
        })
    }

    pub(super) fn content_len(&self) -> usize {
        6 + self.network.encoded_len()
            + self.cells.as_bytes().len()
            + self
                .timing_advance
                .map_or(0, |_| 1 + self.language.map_or(0, |_| 2))
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.time.as_bytes());
        self.network.encode(out);
        out.put_slice(self.cells.as_bytes());
        if let Some(ta) = self.timing_advance {
            out.put_u8(ta);
            if let Some(l) = self.language {
                out.put_u16(l);
            }
        }
    }
}

/// 0x2C / 0xA2: datetime(6) + MCC/MNC + 7 stations + timing advance(1) +
/// AP count(1) + APs (MAC(6) + signal(1) each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WifiReport<'a> {
    pub time: DeviceTime,
    pub network: MobileNetwork,
    pub cells: Cells<'a>,
    pub timing_advance: u8,
    pub aps: &'a [WifiAp],
}

impl<'a> WifiReport<'a> {
    pub(super) fn decode(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        let generation = if protocol == n::WIFI_4G {
            Generation::G4
        } else {
            Generation::G2
        };
        let mut c = Cursor::new(crate::protocol::number::name(protocol), content);
        let time = *c.read::<DeviceTime>("datetime")?;
        let network = c.network()?;
        let cells = read_cells(&mut c, generation, STATIONS)?;
        let timing_advance = c.u8("timing_advance")?;
        let count = c.u8("wifi_count")?;
        let aps = c.slice::<WifiAp>(usize::from(count), "wifi")?;
        Ok(Self {
            time,
            network,
            cells,
            timing_advance,
            aps,
        })
    }

    pub fn protocol(&self) -> u8 {
        match self.cells.generation() {
            Generation::G2 => n::WIFI,
            Generation::G4 => n::WIFI_4G,
        }
    }

    pub(super) fn content_len(&self) -> usize {
        6 + self.network.encoded_len() + self.cells.as_bytes().len() + 2 + self.aps.as_bytes().len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self.time.as_bytes());
        self.network.encode(out);
        out.put_slice(self.cells.as_bytes());
        out.put_u8(self.timing_advance);
        out.put_u8(self.aps.len() as u8);
        out.put_slice(self.aps.as_bytes());
    }
}
