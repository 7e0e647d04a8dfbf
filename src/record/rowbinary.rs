//! ClickHouse's RowBinary format: the form a row takes once it is
//! accepted. The shards write it into the durable log, the writers insert
//! it verbatim, and [`RowView`] reads it back (for the file sink, dead
//! letters and live events) without the row struct.
//!
//! The `clickhouse` crate has a serializer, but keeps it private; we need
//! the bytes themselves. Only what the row structs use is supported:
//! integers, floats, strings, byte arrays (`FixedString`), vectors (`Array`
//! / `Nested`) and structs.

use serde::ser::{self, Impossible, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("RowBinary: {0}")]
pub struct RowBinaryError(String);

impl ser::Error for RowBinaryError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        RowBinaryError(msg.to_string())
    }
}

/// Appends `row` to `out`.
pub fn serialize_into<T: Serialize>(out: &mut Vec<u8>, row: &T) -> Result<(), RowBinaryError> {
    row.serialize(&mut RowBinary { out })
}

struct RowBinary<'a> {
    out: &'a mut Vec<u8>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn unsupported(what: &str) -> RowBinaryError {
    RowBinaryError(format!("{what} has no RowBinary mapping here"))
}

impl<'a, 'b> ser::Serializer for &'a mut RowBinary<'b> {
    type Ok = ();
    type Error = RowBinaryError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), RowBinaryError>;
    type SerializeMap = Impossible<(), RowBinaryError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), RowBinaryError>;

    fn serialize_bool(self, v: bool) -> Result<(), RowBinaryError> {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), RowBinaryError> {
        self.out.push(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), RowBinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), RowBinaryError> {
        let mut b = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut b))
    }
    fn serialize_str(self, v: &str) -> Result<(), RowBinaryError> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), RowBinaryError> {
        put_varint(self.out, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), RowBinaryError> {
        self.out.push(1);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), RowBinaryError> {
        self.out.push(0);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), RowBinaryError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), RowBinaryError> {
        Err(unsupported("an enum"))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowBinaryError> {
        Err(unsupported("an enum"))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, RowBinaryError> {
        let len = len.ok_or_else(|| unsupported("a sequence of unknown length"))?;
        put_varint(self.out, len as u64);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RowBinaryError> {
        Err(unsupported("an enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowBinaryError> {
        Err(unsupported("a map"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RowBinaryError> {
        Err(unsupported("an enum"))
    }
}

impl<'a, 'b> ser::SerializeSeq for &'a mut RowBinary<'b> {
    type Ok = ();
    type Error = RowBinaryError;
    fn serialize_element<T: ?Sized + Serialize>(
        &mut self,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
}

impl<'a, 'b> ser::SerializeTuple for &'a mut RowBinary<'b> {
    type Ok = ();
    type Error = RowBinaryError;
    fn serialize_element<T: ?Sized + Serialize>(
        &mut self,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
}

impl<'a, 'b> ser::SerializeTupleStruct for &'a mut RowBinary<'b> {
    type Ok = ();
    type Error = RowBinaryError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), RowBinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
}

impl<'a, 'b> ser::SerializeStruct for &'a mut RowBinary<'b> {
    type Ok = ();
    type Error = RowBinaryError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
}

/// The type of one column, as RowBinary lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    F32,
    F64,
    /// Varint length, then the bytes.
    Str,
    /// Varint count, then the elements.
    Array(&'static ColumnType),
    /// A fixed number of elements (`FixedString(n)` for bytes).
    Fixed(usize, &'static ColumnType),
}

/// The column type of a Rust field type.
pub trait Column {
    const TYPE: ColumnType;
}

macro_rules! column {
    ($($t:ty => $c:ident),*) => { $(impl Column for $t { const TYPE: ColumnType = ColumnType::$c; })* };
}
column!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, f32 => F32, f64 => F64,
    String => Str, &'static str => Str);

impl<T: Column> Column for Vec<T> {
    const TYPE: ColumnType = ColumnType::Array(&T::TYPE);
}

impl<T: Column, const N: usize> Column for [T; N] {
    const TYPE: ColumnType = ColumnType::Fixed(N, &T::TYPE);
}

/// A row whose columns are known by type, in order.
pub trait Columns {
    const TYPES: &'static [ColumnType];
}

/// Content that does not read as the row it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RowBinary: {0} at byte {1}")]
pub struct Malformed(&'static str, usize);

/// One RowBinary row read back through its column names and types, so that
/// it serialises (to JSON, say) exactly as its row struct would.
pub struct RowView<'a> {
    /// Tagged like a [`crate::record::Record`]: `{"table": ..., columns...}`.
    pub table: Option<&'static str>,
    pub names: &'static [&'static str],
    pub types: &'static [ColumnType],
    pub bytes: &'a [u8],
}

impl RowView<'_> {
    /// The row's length in bytes, checking that it is whole.
    pub fn len(&self) -> Result<usize, Malformed> {
        let mut at = 0;
        for ty in self.types {
            skip(self.bytes, &mut at, *ty)?;
        }
        Ok(at)
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], Malformed> {
    let end = at.checked_add(n).filter(|e| *e <= bytes.len());
    let end = end.ok_or(Malformed("truncated", *at))?;
    let s = &bytes[*at..end];
    *at = end;
    Ok(s)
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, Malformed> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take(bytes, at, 1)?[0];
        v |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(Malformed("varint too long", *at))
}

fn width(ty: ColumnType) -> Option<usize> {
    Some(match ty {
        ColumnType::U8 | ColumnType::I8 => 1,
        ColumnType::U16 | ColumnType::I16 => 2,
        ColumnType::U32 | ColumnType::F32 => 4,
        ColumnType::U64 | ColumnType::F64 => 8,
        _ => return None,
    })
}

fn skip(bytes: &[u8], at: &mut usize, ty: ColumnType) -> Result<(), Malformed> {
    match ty {
        ColumnType::Str => {
            let n = varint(bytes, at)? as usize;
            take(bytes, at, n)?;
        }
        ColumnType::Array(inner) => {
            let n = varint(bytes, at)?;
            for _ in 0..n {
                skip(bytes, at, *inner)?;
            }
        }
        ColumnType::Fixed(n, inner) => {
            for _ in 0..n {
                skip(bytes, at, *inner)?;
            }
        }
        scalar => {
            take(bytes, at, width(scalar).expect("scalar"))?;
        }
    }
    Ok(())
}

/// One value of a column, serialised as its Rust type would be.
struct Value<'a> {
    ty: ColumnType,
    bytes: &'a [u8],
}

impl Serialize for Value<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.bytes;
        let mut at = 0;
        let bad = |e: Malformed| ser::Error::custom(e);
        macro_rules! le {
            ($t:ty) => {
                <$t>::from_le_bytes(
                    take(b, &mut at, std::mem::size_of::<$t>())
                        .map_err(bad)?
                        .try_into()
                        .expect("width"),
                )
            };
        }
        match self.ty {
            ColumnType::U8 => s.serialize_u8(le!(u8)),
            ColumnType::U16 => s.serialize_u16(le!(u16)),
            ColumnType::U32 => s.serialize_u32(le!(u32)),
            ColumnType::U64 => s.serialize_u64(le!(u64)),
            ColumnType::I8 => s.serialize_i8(le!(i8)),
            ColumnType::I16 => s.serialize_i16(le!(i16)),
            ColumnType::F32 => s.serialize_f32(le!(f32)),
            ColumnType::F64 => s.serialize_f64(le!(f64)),
            ColumnType::Str => {
                let n = varint(b, &mut at).map_err(bad)? as usize;
                let text = take(b, &mut at, n).map_err(bad)?;
                s.serialize_str(&String::from_utf8_lossy(text))
            }
            ColumnType::Array(inner) | ColumnType::Fixed(_, inner) => {
                use ser::SerializeSeq;
                let n = match self.ty {
                    ColumnType::Fixed(n, _) => n,
                    _ => varint(b, &mut at).map_err(bad)? as usize,
                };
                let mut seq = s.serialize_seq(Some(n))?;
                for _ in 0..n {
                    let start = at;
                    skip(b, &mut at, *inner).map_err(bad)?;
                    seq.serialize_element(&Value {
                        ty: *inner,
                        bytes: &b[start..at],
                    })?;
                }
                seq.end()
            }
        }
    }
}

impl Serialize for RowView<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.names.len() + 1))?;
        if let Some(table) = self.table {
            map.serialize_entry("table", table)?;
        }
        let mut at = 0;
        for (name, ty) in self.names.iter().zip(self.types) {
            let start = at;
            skip(self.bytes, &mut at, *ty).map_err(ser::Error::custom)?;
            map.serialize_entry(
                name,
                &Value {
                    ty: *ty,
                    bytes: &self.bytes[start..at],
                },
            )?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Row {
        a: u8,
        b: i16,
        s: String,
        fixed: [u8; 3],
        list: Vec<u32>,
        e: i8,
        f: f64,
    }

    #[test]
    fn layout_matches_clickhouse_rowbinary() {
        let mut out = Vec::new();
        let row = Row {
            a: 7,
            b: -2,
            s: "hé".into(),
            fixed: [1, 2, 3],
            list: vec![1, 300],
            e: -1,
            f: 1.5,
        };
        serialize_into(&mut out, &row).unwrap();
        let mut expected = vec![7, 0xFE, 0xFF, 3, b'h', 0xC3, 0xA9, 1, 2, 3, 2];
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&300u32.to_le_bytes());
        expected.push(0xFF);
        expected.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn a_row_read_back_serialises_as_its_struct() {
        use crate::record::{AlarmRow, BluetoothRow, Record};
        let bt = BluetoothRow {
            imei: 860_000_000_000_017,
            device_time: 1,
            server_time: 2,
            device_time_valid: 1,
            tz_offset_min: -300,
            protocol: 0xB3,
            serial: 9,
            kind: 2,
            attendance: 0,
            terminal_info: 3,
            beacon_index: 1,
            beacon_count: 2,
            is_best: 0,
            mac: 0xAC23_3F01_0203,
            uuid: [0xFD; 16],
            major: 10,
            minor: 3,
            rssi: -60,
            battery: 3.01,
            battery_unit: 1,
            beacon_known: 1,
            beacon_name: "gate \"1\"".into(),
            beacon_lat: 22.5,
            beacon_lon: -114.25,
            beacon_address: "深圳".into(),
            ingest_instance: "host",
            ingest_shard: 1,
            ingest_seq: u64::MAX,
        };
        let alarm = AlarmRow {
            imei: 1,
            device_time: 0,
            server_time: 0,
            device_time_valid: 0,
            protocol: 0xA9,
            serial: 1,
            source: 4,
            alarm_code: 0x23,
            alarm_type: "fall".into(),
            fence_id: 0,
            has_position: 0,
            lat: 0.0,
            lon: 0.0,
            position_source: 0,
            accuracy_m: 550.5,
            speed_kmh: 0,
            course: 0,
            satellites: 0,
            gps_positioned: 0,
            terminal_info: 0,
            voltage_level: 0,
            battery: 0,
            gsm_signal: 0,
            language: 1,
            mcc: 460,
            mnc: 0,
            lac: 0x2795,
            cell_id: 0x0E5A21,
            cells_lac: vec![1, 2],
            cells_cell_id: vec![3, 4],
            cells_rssi: vec![5, 6],
            wifi_mac: vec![],
            wifi_rssi: vec![],
            address: String::new(),
            ingest_instance: "host",
            ingest_shard: 0,
            ingest_seq: 7,
        };
        for record in [Record::Bluetooth(bt), Record::Alarms(alarm)] {
            let mut bytes = Vec::new();
            record.to_rowbinary(&mut bytes).unwrap();
            let view = record.table().view(&bytes);
            assert_eq!(view.len(), Ok(bytes.len()));
            assert_eq!(
                serde_json::to_string(&view).unwrap(),
                serde_json::to_string(&record).unwrap()
            );
            assert!(record
                .table()
                .view(&bytes[..bytes.len() - 1])
                .len()
                .is_err());
        }
    }

    #[test]
    fn long_strings_use_a_multibyte_varint() {
        let mut out = Vec::new();
        serialize_into(&mut out, &"x".repeat(300)).unwrap();
        assert_eq!(&out[..2], &[0xAC, 0x02]);
        assert_eq!(out.len(), 302);
    }
}
