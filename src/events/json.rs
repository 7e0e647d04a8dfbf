//! One record as one event: a JSON object on one line.
//!
//! The row is serialised by its own `Serialize` (as the file sink writes it)
//! and read back member by member, in column order, so the event carries
//! every column without a second list of them to keep in step with the
//! schema. Reading back into `serde_json::Value` would sort the members
//! (no `preserve_order`) and print `f32` columns at `f64` precision
//! (`12.300000190734863`), hence the text round trip.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::EventKind;
use crate::protocol::layout::civil_from_days;
use crate::record::{enums, Record};

/// Members of the row that the event leaves out: the tag is the event's
/// `kind`, `imei` is written first as a string, and the ingest key is for
/// deduplication in ClickHouse, meaningless to a consumer.
const LEFT_OUT: [&str; 5] = [
    "table",
    "imei",
    "ingest_instance",
    "ingest_shard",
    "ingest_seq",
];

/// The event line for `record`, already known to be of `kind`.
pub(super) fn event_line(kind: EventKind, record: &Record) -> Result<Arc<str>, serde_json::Error> {
    let (imei, time, status) = head(record);
    let row = serde_json::to_string(record)?;
    let Members(members) = serde_json::from_str(&row)?;

    let mut out = Vec::with_capacity(row.len() + 96);
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(kind.name().as_bytes());
    out.extend_from_slice(format!("\",\"imei\":\"{imei:015}\",\"time\":\"").as_bytes());
    out.extend_from_slice(rfc3339(time).as_bytes());
    out.push(b'"');
    if let Some(status) = status {
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status.as_bytes());
        out.push(b'"');
    }
    for (key, value) in &members {
        if LEFT_OUT.contains(&key.as_ref()) {
            continue;
        }
        out.push(b',');
        if key == "kind" {
            // Three tables have a `kind` column of their own; the event's
            // `kind` wins the name and the column keeps its meaning under
            // a prefixed one (`attendance_kind`, `bluetooth_kind`, `command_kind`).
            serde_json::to_writer(&mut out, &format!("{}_kind", kind.name()))?;
        } else {
            serde_json::to_writer(&mut out, key)?;
        }
        out.push(b':');
        serde_json::to_writer(&mut out, value)?;
    }
    out.push(b'}');
    let line = String::from_utf8(out).expect("serde_json writes UTF-8");
    Ok(line.into())
}

/// `(imei, unix time, status)`: what goes before the row's own columns.
fn head(record: &Record) -> (u64, u32, Option<&'static str>) {
    let status = match record {
        Record::DeviceEvents(r) => match r.event {
            enums::EVENT_LOGIN | enums::EVENT_RECONNECT => Some("online"),
            enums::EVENT_LOGOUT | enums::EVENT_OFFLINE => Some("offline"),
            _ => None,
        },
        _ => None,
    };
    (record.imei(), record.time(), status)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn rfc3339(unix: u32) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let (y, m, d) = civil_from_days(i64::from(days));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A JSON object's members in the order written.
struct Members<'de>(Vec<(Cow<'de, str>, Value)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(40));
                while let Some(Key(key)) = map.next_key()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// A member name, borrowed from the text when it has no escapes (column
/// names never do).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttendanceRow, CommandLogRow, DeviceEventRow};

    fn status(event: i8) -> Record {
        Record::DeviceEvents(DeviceEventRow {
            imei: 123_456_789_012_345,
            server_time: 1_700_000_000,
            event,
            protocol: 0x01,
            serial: 1,
            device_type: 0x3610,
            tz_offset_min: 480,
            language: 2,
            conn_id: 7,
            peer_addr: "10.0.0.1:5555".into(),
            reason: "say \"hi\"".into(),
            ingest_instance: "test",
            ingest_shard: 3,
            ingest_seq: 99,
        })
    }

    #[test]
    fn unix_seconds_read_as_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn a_status_event_leads_with_kind_imei_time_and_status_in_column_order() {
        let line = event_line(EventKind::Status, &status(enums::EVENT_LOGIN)).unwrap();
        assert!(
            line.starts_with(
                r#"{"kind":"status","imei":"123456789012345","time":"2023-11-14T22:13:20Z","status":"online","server_time":1700000000,"event":1,"#
            ),
            "{line}"
        );
        assert!(line.ends_with(r#""reason":"say \"hi\""}"#), "{line}");
        assert!(
            !line.contains("ingest") && !line.contains("table"),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["peer_addr"], "10.0.0.1:5555");
        for (event, expected) in [
            (enums::EVENT_RECONNECT, Some("online")),
            (enums::EVENT_LOGOUT, Some("offline")),
            (enums::EVENT_OFFLINE, Some("offline")),
            (0, None),
        ] {
            let v: Value =
                serde_json::from_str(&event_line(EventKind::Status, &status(event)).unwrap())
                    .unwrap();
            assert_eq!(v.get("status").and_then(Value::as_str), expected, "{event}");
        }
    }

    #[test]
    fn short_imeis_are_zero_padded_and_floats_keep_their_own_precision() {
        let r = Record::Attendance(AttendanceRow {
            imei: 42,
            device_time: 1,
            server_time: 2,
            device_time_valid: 1,
            tz_offset_min: 0,
            protocol: 0xB1,
            serial: 9,
            kind: 2,
            gps_positioned: 0,
            has_position: 1,
            lat: 22.5431,
            lon: 113.9419,
            position_source: 2,
            accuracy_m: 12.3,
            speed_kmh: 0,
            course: 0,
            satellites: 0,
            terminal_info: 0,
            voltage_level: 0,
            battery: 80,
            gsm_signal: 4,
            mcc: 460,
            mnc: 0,
            lac: 9360,
            cell_id: 4082,
            rssi: 60,
            cells_lac: vec![1, 2],
            cells_cell_id: vec![u64::MAX, 4],
            cells_rssi: vec![5, 6],
            wifi_mac: vec![],
            wifi_rssi: vec![],
            address: String::new(),
            ingest_instance: "test",
            ingest_shard: 0,
            ingest_seq: 0,
        });
        let line = event_line(EventKind::Attendance, &r).unwrap();
        assert!(line.contains(r#""imei":"000000000000042""#), "{line}");
        assert!(line.contains(r#""accuracy_m":12.3,"#), "{line}");
        assert!(
            line.contains(r#""cells.cell_id":[18446744073709551615,4]"#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "attendance");
        assert_eq!(v["attendance_kind"], 2);
        assert_eq!(v["time"], "1970-01-01T00:00:02Z");
    }

    #[test]
    fn command_events_are_timed_by_the_status_change() {
        let r = Record::CommandLog(CommandLogRow {
            imei: 860_000_000_000_001,
            event_time: 86_400,
            command_id: 5,
            created_at: 10,
            kind: enums::COMMAND_MESSAGE,
            command_type: "message".into(),
            text: "héllo".into(),
            status: enums::STATUS_SENT,
            protocol: 0x80,
            serial: 3,
            server_flag: 77,
            reply_text: String::new(),
            error: String::new(),
            ingest_instance: "test",
            ingest_shard: 0,
            ingest_seq: 0,
        });
        let v: Value = serde_json::from_str(&event_line(EventKind::Command, &r).unwrap()).unwrap();
        assert_eq!(v["time"], "1970-01-02T00:00:00Z");
        assert_eq!(v["command_kind"], 2);
        assert_eq!(v["status"], 2);
        assert_eq!(v["text"], "héllo");
        assert!(v.get("kind_kind").is_none());
    }
}
