//! Alarms: 0xA3 single fence, 0xA4 multi fence, 0xA5 LBS (4G), 0xA9 WiFi.
//! Each is acknowledged with 0x26, then answered with an "ALARMSMS" address
//! reply when an address is known (see `reply`).

use bytes::{BufMut, BytesMut};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::protocol::cursor::Cursor;
use crate::protocol::layout::{
    voltage_level_percent, CellId4g, CellTower, Cells, DeviceTime, Generation, GpsFix,
    MobileNetwork, TerminalInfo, WifiAp,
};
use crate::protocol::number as n;

use super::error::MessageError;
use super::location::read_cells;

/// Which alarm message, named as the reference stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmSource {
    SingleFence,
    MultiFence,
    Lbs,
    Wifi,
}

impl AlarmSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmSource::SingleFence => "single_fence",
            AlarmSource::MultiFence => "multi_fence",
            AlarmSource::Lbs => "lbs",
            AlarmSource::Wifi => "wifi",
        }
    }

    pub fn protocol(self) -> u8 {
        match self {
            AlarmSource::SingleFence => n::ALARM_SINGLE_FENCE,
            AlarmSource::MultiFence => n::ALARM_MULTI_FENCE,
            AlarmSource::Lbs => n::ALARM_LBS_4G,
            AlarmSource::Wifi => n::ALARM_WIFI,
        }
    }
}

/// The status tail of 0xA3, 0xA4 and 0xA5: terminal info(1) + voltage level(1)
/// + GSM signal(1) + alarm code(1) + language(1).
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq, Debug,
)]
#[repr(C)]
pub struct AlarmStatus {
    pub terminal_info: u8,
    /// 0–6; see [`voltage_level_percent`].
    pub voltage_level: u8,
    pub gsm_signal: u8,
    pub alarm_code: u8,
    pub language: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlarmBody<'a> {
    /// 0xA3 / 0xA4: datetime(6) + GPS(12) + LBS length(1) + MCC/MNC + LAC(4) +
    /// cell id(8) + status(5) [+ fence id(1), 0xA4 only].
    Fence {
        time: DeviceTime,
        fix: GpsFix,
        lbs_length: u8,
        network: MobileNetwork,
        cell: CellId4g,
        status: AlarmStatus,
        fence_id: Option<u8>,
    },
    /// 0xA5: MCC/MNC + LAC(4) + cell id(8) + status(5). No datetime: the
    /// reference stamps it with the server's time.
    Lbs {
        network: MobileNetwork,
        cell: CellId4g,
        status: AlarmStatus,
    },
    /// 0xA9: datetime(6) + MCC/MNC + cell type(1: 0 = 2G, 1 = 4G) + cell
    /// count(1) + stations + timing advance(1) + AP count(1) + APs + alarm
    /// code(1) + language(1).
    Wifi {
        time: DeviceTime,
        network: MobileNetwork,
        cells: Cells<'a>,
        timing_advance: u8,
        aps: &'a [WifiAp],
        alarm_code: u8,
        language: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm<'a> {
    pub source: AlarmSource,
    pub body: AlarmBody<'a>,
}

impl<'a> Alarm<'a> {
    pub(super) fn decode(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        let source = match protocol {
            n::ALARM_SINGLE_FENCE => AlarmSource::SingleFence,
            n::ALARM_MULTI_FENCE => AlarmSource::MultiFence,
            n::ALARM_LBS_4G => AlarmSource::Lbs,
            _ => AlarmSource::Wifi,
        };
        let mut c = Cursor::new(n::name(protocol), content);
        let body = match source {
            AlarmSource::SingleFence | AlarmSource::MultiFence => {
                let time = *c.read::<DeviceTime>("datetime")?;
                let fix = *c.read::<GpsFix>("gps")?;
                let lbs_length = c.u8("lbs_length")?;
                let network = c.network()?;
                let cell = *c.read::<CellId4g>("cell")?;
                let status = *c.read::<AlarmStatus>("status")?;
                let fence_id = if source == AlarmSource::MultiFence {
                    c.opt_u8()
                } else {
                    None
                };
                AlarmBody::Fence {
                    time,
                    fix,
                    lbs_length,
                    network,
                    cell,
                    status,
                    fence_id,
                }
            }
            AlarmSource::Lbs => {
                let network = c.network()?;
                let cell = *c.read::<CellId4g>("cell")?;
                let status = *c.read::<AlarmStatus>("status")?;
                AlarmBody::Lbs {
                    network,
                    cell,
                    status,
                }
            }
            AlarmSource::Wifi => {
                let time = *c.read::<DeviceTime>("datetime")?;
                let network = c.network()?;
                let generation = match c.u8("cell_type")? {
                    0 => Generation::G2,
                    1 => Generation::G4,
                    _ => return Err(c.invalid("cell_type", "neither 0 (2G) nor 1 (4G)")),
                };
                let count = c.u8("cell_count")?;
                let cells = read_cells(&mut c, generation, usize::from(count))?;
                let timing_advance = c.u8("timing_advance")?;
                let ap_count = c.u8("wifi_count")?;
                let aps = c.slice::<WifiAp>(usize::from(ap_count), "wifi")?;
                let alarm_code = c.u8("alarm_code")?;
                let language = c.u8("language")?;
                AlarmBody::Wifi {
                    time,
                    network,
                    cells,
                    timing_advance,
                    aps,
                    alarm_code,
                    language,
                }
            }
        };
        Ok(Self { source, body })
    }

    pub fn protocol(&self) -> u8 {
        self.source.protocol()
    }

    pub fn alarm_code(&self) -> u8 {
        match self.body {
            AlarmBody::Fence { status, .. } | AlarmBody::Lbs { status, .. } => status.alarm_code,
            AlarmBody::Wifi { alarm_code, .. } => alarm_code,
        }
    }

    /// The device's clock, where the message has one (0xA5 does not).
    pub fn time(&self) -> Option<DeviceTime> {
        match self.body {
            AlarmBody::Fence { time, .. } | AlarmBody::Wifi { time, .. } => Some(time),
            AlarmBody::Lbs { .. } => None,
        }
    }

    /// The GPS fix, only when it is positioned (the reference ignores the rest).
    pub fn position(&self) -> Option<GpsFix> {
        match self.body {
            AlarmBody::Fence { fix, .. } if fix.positioned() => Some(fix),
            _ => None,
        }
    }

    pub fn network(&self) -> MobileNetwork {
        match self.body {
            AlarmBody::Fence { network, .. }
            | AlarmBody::Lbs { network, .. }
            | AlarmBody::Wifi { network, .. } => network,
        }
    }

    /// The serving cell (for 0xA9 the first station, with its signal).
    pub fn main_cell(&self) -> Option<CellTower> {
        match self.body {
            AlarmBody::Fence { cell, .. } | AlarmBody::Lbs { cell, .. } => Some(cell.tower()),
            AlarmBody::Wifi { cells, .. } => cells.main(),
        }
    }

    pub fn status(&self) -> Option<AlarmStatus> {
        match self.body {
            AlarmBody::Fence { status, .. } | AlarmBody::Lbs { status, .. } => Some(status),
            AlarmBody::Wifi { .. } => None,
        }
    }

    pub fn terminal_info(&self) -> Option<TerminalInfo> {
        self.status().map(|s| TerminalInfo(s.terminal_info))
    }

    pub fn battery_percent(&self) -> Option<u8> {
        self.status()
            .and_then(|s| voltage_level_percent(s.voltage_level))
    }

    pub fn fence_id(&self) -> Option<u8> {
        match self.body {
            AlarmBody::Fence { fence_id, .. } => fence_id,
            _ => None,
        }
    }

    pub fn wifi(&self) -> &'a [WifiAp] {
        match self.body {
            AlarmBody::Wifi { aps, .. } => aps,
            _ => &[],
        }
    }

    pub(super) fn content_len(&self) -> usize {
        match &self.body {
            AlarmBody::Fence {
                network, fence_id, ..
            } => 6 + 12 + 1 + network.encoded_len() + 12 + 5 + fence_id.map_or(0, |_| 1),
            AlarmBody::Lbs { network, .. } => network.encoded_len() + 12 + 5,
            AlarmBody::Wifi {
                network,
                cells,
                aps,
                ..
            } => {
                6 + network.encoded_len()
                    + 2
                    + cells.as_bytes().len()
                    + 2
                    + aps.as_bytes().len()
                    + 2
            }
        }
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        match &self.body {
            AlarmBody::Fence {
                time,
                fix,
                lbs_length,
                network,
                cell,
                status,
                fence_id,
            } => {
                out.put_slice(time.as_bytes());
                out.put_slice(fix.as_bytes());
                out.put_u8(*lbs_length);
                network.encode(out);
                out.put_slice(cell.as_bytes());
                out.put_slice(status.as_bytes());
                if let Some(id) = fence_id {
                    out.put_u8(*id);
                }
            }
            AlarmBody::Lbs {
                network,
                cell,
                status,
            } => {
                network.encode(out);
                out.put_slice(cell.as_bytes());
                out.put_slice(status.as_bytes());
            }
            AlarmBody::Wifi {
                time,
                network,
                cells,
                timing_advance,
                aps,
                alarm_code,
                language,
            } => {
                out.put_slice(time.as_bytes());
                network.encode(out);
                out.put_u8(match cells.generation() {
                    Generation::G2 => 0,
                    Generation::G4 => 1,
                });
                out.put_u8(cells.len() as u8);
                out.put_slice(cells.as_bytes());
                out.put_u8(*timing_advance);
                out.put_u8(aps.len() as u8);
                out.put_slice(aps.as_bytes());
                out.put_u8(*alarm_code);
                out.put_u8(*language);
            }
        }
    }
}

/// The name of an alarm code, as stored for BI, from the GT06-family alarm
/// table (Concox's published codes; no public KKS badge table exists). `None` for codes outside it; the reference names those
/// `unknown_0xNN`, which [`alarm_label`] reproduces.
pub fn alarm_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x00 => "normal",
        0x01 => "sos",
        0x02 => "power_cut",
        0x03 => "vibration",
        0x04 => "enter_fence",
        0x05 => "exit_fence",
        0x06 => "overspeed",
        0x09 => "displacement",
        0x0A => "enter_gps_dead_zone",
        0x0B => "exit_gps_dead_zone",
        0x0C => "power_on",
        0x0D => "gps_first_fix",
        0x0E => "external_battery_low",
        0x0F => "external_battery_low_protection",
        0x10 => "sim_changed",
        0x11 => "power_off",
        0x12 => "airplane_mode_low_battery",
        0x13 => "tamper",
        0x14 => "door",
        0x15 => "low_power_shutdown",
        0x16 => "sound",
        0x17 => "fake_base_station",
        0x18 => "cover_open",
        0x19 => "internal_battery_low",
        0x20 => "deep_sleep",
        0x23 => "fall",
        0x29 => "harsh_acceleration",
        0x2A => "sharp_left_turn",
        0x2B => "sharp_right_turn",
        0x2C => "collision",
        0x30 => "harsh_braking",
        0x32 => "unplugged",
        0xFE => "acc_on",
        0xFF => "acc_off",
        _ => return None,
    })
}

/// [`alarm_name`], or `unknown_0xNN`.
pub fn alarm_label(code: u8) -> std::borrow::Cow<'static, str> {
    match alarm_name(code) {
        Some(name) => name.into(),
        None => format!("unknown_0x{code:02X}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_names() {
        assert_eq!(alarm_name(0x01), Some("sos"));
        assert_eq!(alarm_name(0xFF), Some("acc_off"));
        assert_eq!(alarm_name(0x7E), None);
        assert_eq!(alarm_label(0x7E), "unknown_0x7E");
    }
}
