//! A serde serializer for ClickHouse's RowBinary format.
//!
//! The `clickhouse` crate has one, but keeps it private; we need the bytes
//! themselves, because a batch is what we spool to disk and replay verbatim.
//! Only what the row structs use is supported: integers, floats, strings,
//! byte arrays (`FixedString`), vectors (`Array` / `Nested`) and structs.

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
    fn long_strings_use_a_multibyte_varint() {
        let mut out = Vec::new();
        serialize_into(&mut out, &"x".repeat(300)).unwrap();
        assert_eq!(&out[..2], &[0xAC, 0x02]);
        assert_eq!(out.len(), 302);
    }
}
