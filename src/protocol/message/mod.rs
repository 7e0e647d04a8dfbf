//! Typed messages: one file per message family, each with its layout, its
//! decoder and its encoder.
//!
//! A [`Message`] borrows variable-length parts (cell lists, WiFi APs,
//! beacons) from the frame, so decoding allocates nothing.

use bytes::BytesMut;

use super::frame::{write_frame, EncodeError, Frame};
use super::number as n;

mod address;
mod alarm;
mod attendance;
mod bluetooth;
mod command_reply;
pub(crate) mod error;
mod general_info;
mod heartbeat;
mod location;
mod login;
mod time_sync;

pub use address::AddressRequest;
pub use alarm::{alarm_label, alarm_name, Alarm, AlarmBody, AlarmSource, AlarmStatus};
pub use attendance::{Attendance, AttendanceHead};
pub use bluetooth::{BluetoothLocation, BluetoothPunch, PunchBody};
pub use command_reply::CommandReply;
pub use error::{MessageError, MessageErrorKind};
pub use general_info::{GeneralInfo, Iccid, Imsi};
pub use heartbeat::{Heartbeat, HeartbeatStatus};
pub use location::{GpsReport, GpsTail, LbsReport, WifiReport};
pub use login::{Login, TzLanguage};
pub use time_sync::TimeSyncRequest;

/// A decoded uplink message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message<'a> {
    /// 0x01
    Login(Login),
    /// 0x13, 0x36
    Heartbeat(Heartbeat<'a>),
    /// 0x22, 0xA0
    Gps(GpsReport),
    /// 0x28, 0x2E, 0xA1
    Lbs(LbsReport<'a>),
    /// 0x2C, 0xA2
    Wifi(WifiReport<'a>),
    /// 0x1F
    TimeSync(TimeSyncRequest),
    /// 0x8A: the request carries nothing the reply depends on.
    TimeSync2,
    /// 0xA3, 0xA4, 0xA5, 0xA9
    Alarm(Alarm<'a>),
    /// 0x17, 0x1A, 0xA7
    AddressRequest(AddressRequest<'a>),
    /// 0xB0, 0xB1
    Attendance(Attendance<'a>),
    /// 0xB2
    BluetoothPunch(BluetoothPunch),
    /// 0xB3
    BluetoothLocation(BluetoothLocation<'a>),
    /// 0x94
    GeneralInfo(GeneralInfo<'a>),
    /// 0x81
    CommandReply(CommandReply<'a>),
    /// A protocol number this server does not know: kept, not dropped.
    Unknown { protocol: u8, content: &'a [u8] },
}

impl<'a> Message<'a> {
    /// Decodes a frame's content according to its protocol number.
    pub fn decode(frame: &Frame<'a>) -> Result<Self, MessageError> {
        Self::decode_content(frame.protocol, frame.content)
    }

    pub fn decode_content(protocol: u8, content: &'a [u8]) -> Result<Self, MessageError> {
        Ok(match protocol {
            n::LOGIN => Message::Login(Login::decode(content)?),
            n::HEARTBEAT | n::HEARTBEAT_EXT => {
                Message::Heartbeat(Heartbeat::decode(protocol, content)?)
            }
            n::GPS | n::GPS_4G => Message::Gps(GpsReport::decode(protocol, content)?),
            n::LBS_MULTI | n::LBS_MULTI_REPLY | n::LBS_4G => {
                Message::Lbs(LbsReport::decode(protocol, content)?)
            }
            n::WIFI | n::WIFI_4G => Message::Wifi(WifiReport::decode(protocol, content)?),
            n::TIME_SYNC => Message::TimeSync(TimeSyncRequest::decode(content)),
            n::TIME_SYNC_2 => Message::TimeSync2,
            n::ALARM_SINGLE_FENCE | n::ALARM_MULTI_FENCE | n::ALARM_LBS_4G | n::ALARM_WIFI => {
                Message::Alarm(Alarm::decode(protocol, content)?)
            }
            n::LBS_ADDRESS_REQUEST | n::ADDRESS_QUERY | n::LBS_4G_ADDRESS_REQUEST => {
                Message::AddressRequest(AddressRequest::decode(protocol, content)?)
            }
            n::ATTENDANCE | n::ATTENDANCE_4G => {
                Message::Attendance(Attendance::decode(protocol, content)?)
            }
            n::BT_PUNCH => Message::BluetoothPunch(BluetoothPunch::decode(content)?),
            n::BT_LOCATION => Message::BluetoothLocation(BluetoothLocation::decode(content)?),
            n::GENERAL_INFO => Message::GeneralInfo(GeneralInfo::decode(content)?),
            n::ONLINE_COMMAND_REPLY => Message::CommandReply(CommandReply::decode(content)?),
            _ => Message::Unknown { protocol, content },
        })
    }

    /// The protocol number this message is sent with.
    pub fn protocol(&self) -> u8 {
        match self {
            Message::Login(_) => n::LOGIN,
            Message::Heartbeat(m) => m.protocol(),
            Message::Gps(m) => m.protocol(),
            Message::Lbs(m) => m.protocol,
            Message::Wifi(m) => m.protocol(),
            Message::TimeSync(_) => n::TIME_SYNC,
            Message::TimeSync2 => n::TIME_SYNC_2,
            Message::Alarm(m) => m.protocol(),
            Message::AddressRequest(m) => m.protocol,
            Message::Attendance(m) => m.protocol(),
            Message::BluetoothPunch(_) => n::BT_PUNCH,
            Message::BluetoothLocation(_) => n::BT_LOCATION,
            Message::GeneralInfo(_) => n::GENERAL_INFO,
            Message::CommandReply(_) => n::ONLINE_COMMAND_REPLY,
            Message::Unknown { protocol, .. } => *protocol,
        }
    }

    /// Length of the content [`Message::encode_content`] writes.
    pub fn content_len(&self) -> usize {
        match self {
            Message::Login(m) => m.content_len(),
            Message::Heartbeat(m) => m.content_len(),
            Message::Gps(m) => m.content_len(),
            Message::Lbs(m) => m.content_len(),
            Message::Wifi(m) => m.content_len(),
            Message::TimeSync(m) => m.content_len(),
            Message::TimeSync2 => 0,
            Message::Alarm(m) => m.content_len(),
            Message::AddressRequest(m) => m.content_len(),
            Message::Attendance(m) => m.content_len(),
            Message::BluetoothPunch(m) => m.content_len(),
            Message::BluetoothLocation(m) => m.content_len(),
            Message::GeneralInfo(m) => m.content_len(),
            Message::CommandReply(m) => m.content_len(),
            Message::Unknown { content, .. } => content.len(),
        }
    }

    /// Writes the content as a badge would send it.
    pub fn encode_content(&self, out: &mut BytesMut) {
        match self {
            Message::Login(m) => m.encode(out),
            Message::Heartbeat(m) => m.encode(out),
            Message::Gps(m) => m.encode(out),
            Message::Lbs(m) => m.encode(out),
            Message::Wifi(m) => m.encode(out),
            Message::TimeSync(m) => m.encode(out),
            Message::TimeSync2 => {}
            Message::Alarm(m) => m.encode(out),
            Message::AddressRequest(m) => m.encode(out),
            Message::Attendance(m) => m.encode(out),
            Message::BluetoothPunch(m) => m.encode(out),
            Message::BluetoothLocation(m) => m.encode(out),
            Message::GeneralInfo(m) => m.encode(out),
            Message::CommandReply(m) => m.encode(out),
            Message::Unknown { content, .. } => out.extend_from_slice(content),
        }
    }

    /// Writes the whole frame as a badge would send it.
    pub fn encode(&self, serial: u16, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_frame(out, self.protocol(), serial, self.content_len(), |o| {
            self.encode_content(o)
        })
    }
}
