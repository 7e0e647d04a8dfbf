//! Records: what the shards hand to the sink, one row of one ClickHouse
//! table each. The row structs mirror `schema/*.sql` column for column, so
//! the ClickHouse writer serialises them as they are (RowBinary), and the
//! file sink writes them as JSON lines.
//!
//! Built once on the shard ([`build`]) and moved, never cloned.

use std::time::Instant;

use serde::Serialize;

pub mod build;
pub mod enrich;
pub mod lookup;
pub mod rowbinary;

pub use build::{RecordContext, Records};

/// `Enum8` values, as in the schema.
pub mod enums {
    pub const EVENT_LOGIN: i8 = 1;
    pub const EVENT_LOGOUT: i8 = 2;
    pub const EVENT_OFFLINE: i8 = 3;
    pub const EVENT_RECONNECT: i8 = 4;

    pub const POSITION_NONE: i8 = 0;
    pub const POSITION_GPS: i8 = 1;
    /// A fix whose coordinates are impossible: stored without them.
    pub const POSITION_INVALID: i8 = 5;
    pub const POSITION_CELL: i8 = 2;
    pub const POSITION_WIFI: i8 = 3;
    pub const POSITION_BEACON: i8 = 4;

    /// `locations.source` of a row made from a Bluetooth report's best beacon.
    pub const LOCATION_BEACON: i8 = 10;

    pub const BT_PUNCH: i8 = 1;
    pub const BT_LOCATION: i8 = 2;

    pub const BATTERY_UNKNOWN: i8 = 0;
    pub const BATTERY_VOLTS: i8 = 1;
    pub const BATTERY_PERCENT: i8 = 2;

    pub const DIRECTION_IN: i8 = 1;

    pub const COMMAND_ONLINE: i8 = 1;
    pub const COMMAND_MESSAGE: i8 = 2;

    pub const STATUS_QUEUED: i8 = 1;
    pub const STATUS_SENT: i8 = 2;
    pub const STATUS_REPLIED: i8 = 3;
    pub const STATUS_EXPIRED: i8 = 4;
    pub const STATUS_FAILED: i8 = 5;
}

/// The one definition of the tables: each entry names the [`Table`]
/// variant, its row struct (defined below with [`row!`]), the ClickHouse
/// table, the column with the row's time, and the live event it makes.
/// Everything that enumerates tables (names, counts, the [`Record`] enum,
/// serialisation, events) is generated from it, so a new table is one line
/// here, its row struct, and its DDL in `schema/`.
macro_rules! tables {
    ($($(#[doc = $doc:literal])* $variant:ident($row:ident) = $name:literal, time $time:ident $(, event $event:ident)?;)*) => {
        /// The tables records go to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Table {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Table {
            pub const ALL: [Table; Table::COUNT] = [$(Table::$variant,)*];
            pub const COUNT: usize = [$($name,)*].len();

            /// The ClickHouse table (and the `table` tag of JSON lines).
            pub fn name(self) -> &'static str {
                match self {
                    $(Table::$variant => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<Table> {
                Self::ALL.into_iter().find(|t| t.name() == name)
            }

            pub fn index(self) -> usize {
                self as usize
            }

            /// The columns a row of this table inserts, in order.
            pub fn columns(self) -> &'static [&'static str] {
                match self {
                    $(Table::$variant => <$row as clickhouse::Row>::COLUMN_NAMES,)*
                }
            }

            /// Their types, in the same order.
            pub fn types(self) -> &'static [rowbinary::ColumnType] {
                match self {
                    $(Table::$variant => <$row as rowbinary::Columns>::TYPES,)*
                }
            }

            /// A row of this table in RowBinary, read back by column.
            pub fn view(self, bytes: &[u8]) -> rowbinary::RowView<'_> {
                rowbinary::RowView {
                    table: Some(self.name()),
                    names: self.columns(),
                    types: self.types(),
                    bytes,
                }
            }
        }

        /// One row for one table.
        #[derive(Debug, Clone, Serialize, PartialEq)]
        #[serde(tag = "table", rename_all = "snake_case")]
        pub enum Record {
            $($variant($row),)*
        }

        impl Record {
            pub fn table(&self) -> Table {
                match self {
                    $(Record::$variant(_) => Table::$variant,)*
                }
            }

            /// `(shard, sequence)` of the ingest key.
            pub fn ingest_seq(&self) -> (u16, u64) {
                match self {
                    $(Record::$variant(r) => (r.ingest_shard, r.ingest_seq),)*
                }
            }

            pub fn imei(&self) -> u64 {
                match self {
                    $(Record::$variant(r) => r.imei,)*
                }
            }

            /// The row's own time column (Unix seconds): when it was received,
            /// or when the command changed.
            pub fn time(&self) -> u32 {
                match self {
                    $(Record::$variant(r) => r.$time,)*
                }
            }

            /// The kind of live event this row makes, if any.
            pub fn event_kind(&self) -> Option<EventKind> {
                match self {
                    $(Record::$variant(_) => tables!(@event $($event)?),)*
                }
            }

            /// Appends the row in RowBinary.
            pub fn to_rowbinary(&self, out: &mut Vec<u8>) -> Result<(), rowbinary::RowBinaryError> {
                match self {
                    $(Record::$variant(r) => rowbinary::serialize_into(out, r),)*
                }
            }

            pub fn visit<V: RowVisitor>(&self, visitor: V) -> V::Output {
                match self {
                    $(Record::$variant(r) => visitor.row(Table::$variant, r),)*
                }
            }
        }
    };
    (@event $event:ident) => { Some(EventKind::$event) };
    (@event) => { None };
}

/// Defines a row struct whose last three columns are the ingest key
/// `(ingest_instance, ingest_shard, ingest_seq)`: unique per row, so that the
/// rare duplicate from an insert retried after an unknown outcome can be
/// found and removed.
macro_rules! row {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Serialize, PartialEq, clickhouse::Row)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub ingest_instance: &'static str,
            pub ingest_shard: u16,
            pub ingest_seq: u64,
        }

        impl rowbinary::Columns for $name {
            const TYPES: &'static [rowbinary::ColumnType] = &[
                $(<$ty as rowbinary::Column>::TYPE,)*
                rowbinary::ColumnType::Str,
                rowbinary::ColumnType::U16,
                rowbinary::ColumnType::U64,
            ];
        }
    };
}

row! {
    DeviceEventRow {
        pub imei: u64,
        pub server_time: u32,
        pub event: i8,
        pub protocol: u8,
        pub serial: u16,
        pub device_type: u16,
        pub tz_offset_min: i16,
        pub language: u8,
        pub conn_id: u64,
        pub peer_addr: String,
        pub reason: String,
    }
}

row! {
    HeartbeatRow {
        pub imei: u64,
        pub server_time: u32,
        pub protocol: u8,
        pub serial: u16,
        pub terminal_info: u8,
        pub battery: u8,
        pub gsm_signal: u8,
        pub language: u16,
        /// Hex of the 0x36 extension bytes.
        pub extension: String,
    }
}

row! {
    LocationRow {
        pub imei: u64,
        pub device_time: u32,
        pub server_time: u32,
        pub device_time_valid: u8,
        pub protocol: u8,
        pub serial: u16,
        pub source: i8,
        pub has_position: u8,
        pub lat: f64,
        pub lon: f64,
        pub position_source: i8,
        pub accuracy_m: f32,
        pub speed_kmh: u16,
        pub course: u16,
        pub satellites: u8,
        pub gps_positioned: u8,
        pub realtime: u8,
        pub mcc: u16,
        pub mnc: u16,
        pub lac: u32,
        pub cell_id: u64,
        pub rssi: u8,
        pub report_mode: u8,
        pub mileage: u32,
        #[serde(rename = "cells.lac")]
        pub cells_lac: Vec<u32>,
        #[serde(rename = "cells.cell_id")]
        pub cells_cell_id: Vec<u64>,
        #[serde(rename = "cells.rssi")]
        pub cells_rssi: Vec<u8>,
        #[serde(rename = "wifi.mac")]
        pub wifi_mac: Vec<u64>,
        #[serde(rename = "wifi.rssi")]
        pub wifi_rssi: Vec<u8>,
        pub address: String,
    }
}

row! {
    AlarmRow {
        pub imei: u64,
        pub device_time: u32,
        pub server_time: u32,
        pub device_time_valid: u8,
        pub protocol: u8,
        pub serial: u16,
        pub source: i8,
        pub alarm_code: u8,
        pub alarm_type: String,
        pub fence_id: u8,
        pub has_position: u8,
        pub lat: f64,
        pub lon: f64,
        pub position_source: i8,
        pub accuracy_m: f32,
        pub speed_kmh: u16,
        pub course: u16,
        pub satellites: u8,
        pub gps_positioned: u8,
        pub terminal_info: u8,
        pub voltage_level: u8,
        pub battery: u8,
        pub gsm_signal: u8,
        pub language: u8,
        pub mcc: u16,
        pub mnc: u16,
        pub lac: u32,
        pub cell_id: u64,
        #[serde(rename = "cells.lac")]
        pub cells_lac: Vec<u32>,
        #[serde(rename = "cells.cell_id")]
        pub cells_cell_id: Vec<u64>,
        #[serde(rename = "cells.rssi")]
        pub cells_rssi: Vec<u8>,
        #[serde(rename = "wifi.mac")]
        pub wifi_mac: Vec<u64>,
        #[serde(rename = "wifi.rssi")]
        pub wifi_rssi: Vec<u8>,
        pub address: String,
    }
}

row! {
    AttendanceRow {
        pub imei: u64,
        pub device_time: u32,
        pub server_time: u32,
        pub device_time_valid: u8,
        pub tz_offset_min: i16,
        pub protocol: u8,
        pub serial: u16,
        pub kind: i8,
        pub gps_positioned: u8,
        pub has_position: u8,
        pub lat: f64,
        pub lon: f64,
        pub position_source: i8,
        pub accuracy_m: f32,
        pub speed_kmh: u16,
        pub course: u16,
        pub satellites: u8,
        pub terminal_info: u8,
        pub voltage_level: u8,
        pub battery: u8,
        pub gsm_signal: u8,
        pub mcc: u16,
        pub mnc: u16,
        pub lac: u32,
        pub cell_id: u64,
        pub rssi: u8,
        #[serde(rename = "cells.lac")]
        pub cells_lac: Vec<u32>,
        #[serde(rename = "cells.cell_id")]
        pub cells_cell_id: Vec<u64>,
        #[serde(rename = "cells.rssi")]
        pub cells_rssi: Vec<u8>,
        #[serde(rename = "wifi.mac")]
        pub wifi_mac: Vec<u64>,
        #[serde(rename = "wifi.rssi")]
        pub wifi_rssi: Vec<u8>,
        pub address: String,
    }
}

row! {
    BluetoothRow {
        pub imei: u64,
        pub device_time: u32,
        pub server_time: u32,
        pub device_time_valid: u8,
        pub tz_offset_min: i16,
        pub protocol: u8,
        pub serial: u16,
        pub kind: i8,
        /// 0 none (location reports), 1 clock-in, 2 clock-out.
        pub attendance: i8,
        pub terminal_info: u8,
        pub beacon_index: u8,
        pub beacon_count: u8,
        pub is_best: u8,
        pub mac: u64,
        pub uuid: [u8; 16],
        pub major: u16,
        pub minor: u16,
        pub rssi: i8,
        pub battery: f32,
        pub battery_unit: i8,
        pub beacon_known: u8,
        pub beacon_name: String,
        pub beacon_lat: f64,
        pub beacon_lon: f64,
        pub beacon_address: String,
    }
}

row! {
    DeviceInfoRow {
        pub imei: u64,
        pub server_time: u32,
        pub protocol: u8,
        pub serial: u16,
        pub sub_protocol: u8,
        pub iccid: String,
        pub imsi: String,
        pub gps_status: u8,
        /// Hex of the sub-protocol's data.
        pub payload: String,
    }
}

row! {
    CommandLogRow {
        pub imei: u64,
        pub event_time: u32,
        pub command_id: u64,
        pub created_at: u32,
        pub kind: i8,
        pub command_type: String,
        pub text: String,
        pub status: i8,
        pub protocol: u8,
        pub serial: u16,
        pub server_flag: u32,
        pub reply_text: String,
        pub error: String,
    }
}

row! {
    RawFrameRow {
        pub imei: u64,
        pub server_time: u32,
        pub conn_id: u64,
        pub direction: i8,
        pub protocol: u8,
        pub serial: u16,
        /// Hex of the whole frame, start marker to stop bytes.
        pub frame: String,
        pub crc_ok: u8,
    }
}

tables! {
    /// Logins, reconnects, logouts and offline events.
    DeviceEvents(DeviceEventRow) = "device_events", time server_time, event Status;
    Heartbeats(HeartbeatRow) = "heartbeats", time server_time;
    /// GPS, LBS and WiFi reports, address requests, and beacon positions.
    Locations(LocationRow) = "locations", time server_time, event Location;
    Alarms(AlarmRow) = "alarms", time server_time, event Alarm;
    /// 0xB0 / 0xB1 punches.
    Attendance(AttendanceRow) = "attendance", time server_time, event Attendance;
    /// 0xB2 punches and 0xB3 reports, one row per beacon.
    Bluetooth(BluetoothRow) = "bluetooth", time server_time, event Bluetooth;
    /// 0x94 general information (ICCID, IMSI, ...).
    DeviceInfo(DeviceInfoRow) = "device_info", time server_time;
    /// Every status change of a downlink command, and 0x81 replies.
    CommandLog(CommandLogRow) = "command_log", time event_time, event Command;
    /// Frames kept as received (unknown protocols, undecodable content, the optional audit).
    RawFrames(RawFrameRow) = "raw_frames", time server_time;
}

/// Something done with one row, whatever its table: how sinks serialise a
/// [`Record`] without a match of their own over the tables.
pub trait RowVisitor {
    type Output;
    fn row<R: Serialize + clickhouse::Row>(self, table: Table, row: &R) -> Self::Output;
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Status,
    Location,
    Alarm,
    Attendance,
    Bluetooth,
    Command,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Status,
        EventKind::Location,
        EventKind::Alarm,
        EventKind::Attendance,
        EventKind::Bluetooth,
        EventKind::Command,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Location => "location",
            EventKind::Alarm => "alarm",
            EventKind::Attendance => "attendance",
            EventKind::Bluetooth => "bluetooth",
            EventKind::Command => "command",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The kind of event a record makes, if any.
    pub fn of(record: &Record) -> Option<EventKind> {
        record.event_kind()
    }
}
impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where ingest keys come from: `(instance, shard, sequence)`, unique per
/// row, so that the rare duplicate of an insert retried after an unknown
/// outcome can be found and removed. The sequence is the row's position in
/// its shard's durable log, set when the row is appended there (see
/// `log::format::push_row`): the same when it is replayed, and never
/// repeated as the log only grows.
#[derive(Debug, Clone, Copy)]
pub struct IngestKeys {
    pub instance: &'static str,
    pub shard: u16,
}

impl IngestKeys {
    pub fn new(instance: &'static str, shard: u16) -> Self {
        Self { instance, shard }
    }

    /// A row's sequence before the log gives it its position.
    pub fn next_seq(&self) -> u64 {
        0
    }
}

/// A record on its way to the sink, with the moment its frame was read, for
/// the end-to-end latency.
#[derive(Debug)]
pub struct Envelope {
    pub record: Record,
    pub received: Instant,
}
