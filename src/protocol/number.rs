//! Protocol numbers: the byte after the length field.
//!
//! Names follow the reference server's constants.

pub const LOGIN: u8 = 0x01;
pub const HEARTBEAT: u8 = 0x13;
pub const LBS_ADDRESS_REQUEST: u8 = 0x17;
pub const ADDRESS_QUERY: u8 = 0x1A;
pub const TIME_SYNC: u8 = 0x1F;
pub const GPS: u8 = 0x22;
pub const ALARM_ACK: u8 = 0x26;
pub const LBS_MULTI: u8 = 0x28;
pub const WIFI: u8 = 0x2C;
pub const LBS_MULTI_REPLY: u8 = 0x2E;
pub const HEARTBEAT_EXT: u8 = 0x36;
pub const ONLINE_COMMAND: u8 = 0x80;
pub const ONLINE_COMMAND_REPLY: u8 = 0x81;
pub const MESSAGE: u8 = 0x82;
pub const TIME_SYNC_2: u8 = 0x8A;
pub const GENERAL_INFO: u8 = 0x94;
pub const ADDRESS_REPLY_EN: u8 = 0x97;
pub const GPS_4G: u8 = 0xA0;
pub const LBS_4G: u8 = 0xA1;
pub const WIFI_4G: u8 = 0xA2;
pub const ALARM_SINGLE_FENCE: u8 = 0xA3;
pub const ALARM_MULTI_FENCE: u8 = 0xA4;
pub const ALARM_LBS_4G: u8 = 0xA5;
pub const LBS_4G_ADDRESS_REQUEST: u8 = 0xA7;
pub const ALARM_WIFI: u8 = 0xA9;
pub const ATTENDANCE: u8 = 0xB0;
pub const ATTENDANCE_4G: u8 = 0xB1;
pub const BT_PUNCH: u8 = 0xB2;
pub const BT_LOCATION: u8 = 0xB3;

/// Every protocol number a badge sends that the server understands.
pub const UPLINK: [u8; 29] = [
    LOGIN,
    HEARTBEAT,
    HEARTBEAT_EXT,
    GPS,
    GPS_4G,
    LBS_MULTI,
    LBS_MULTI_REPLY,
    LBS_4G,
    WIFI,
    WIFI_4G,
    TIME_SYNC,
    TIME_SYNC_2,
    ALARM_SINGLE_FENCE,
    ALARM_MULTI_FENCE,
    ALARM_LBS_4G,
    ALARM_WIFI,
    LBS_ADDRESS_REQUEST,
    ADDRESS_QUERY,
    LBS_4G_ADDRESS_REQUEST,
    ATTENDANCE,
    ATTENDANCE_4G,
    BT_PUNCH,
    BT_LOCATION,
    GENERAL_INFO,
    ONLINE_COMMAND_REPLY,
    // Downlink numbers a badge never sends, listed so stats can name them if one does.
    ONLINE_COMMAND,
    MESSAGE,
    ALARM_ACK,
    ADDRESS_REPLY_EN,
];

/// A short stable name for logs, stats and metric labels.
pub fn name(protocol: u8) -> &'static str {
    match protocol {
        LOGIN => "login",
        HEARTBEAT => "heartbeat",
        HEARTBEAT_EXT => "heartbeat_ext",
        GPS => "gps",
        GPS_4G => "gps_4g",
        LBS_MULTI => "lbs",
        LBS_MULTI_REPLY => "lbs_reply",
        LBS_4G => "lbs_4g",
        WIFI => "wifi",
        WIFI_4G => "wifi_4g",
        TIME_SYNC => "time_sync",
        TIME_SYNC_2 => "time_sync_2",
        ALARM_SINGLE_FENCE => "alarm_single_fence",
        ALARM_MULTI_FENCE => "alarm_multi_fence",
        ALARM_LBS_4G => "alarm_lbs_4g",
        ALARM_WIFI => "alarm_wifi",
        LBS_ADDRESS_REQUEST => "lbs_address_request",
        ADDRESS_QUERY => "address_query",
        LBS_4G_ADDRESS_REQUEST => "lbs_4g_address_request",
        ATTENDANCE => "attendance",
        ATTENDANCE_4G => "attendance_4g",
        BT_PUNCH => "bt_punch",
        BT_LOCATION => "bt_location",
        GENERAL_INFO => "general_info",
        ONLINE_COMMAND_REPLY => "command_reply",
        ONLINE_COMMAND => "online_command",
        MESSAGE => "message",
        ALARM_ACK => "alarm_ack",
        ADDRESS_REPLY_EN => "address_reply_en",
        _ => "unknown",
    }
}
