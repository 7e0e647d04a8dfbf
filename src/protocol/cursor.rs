//! A bounds-checked reader over a message's content. Every read either
//! succeeds or returns a [`MessageError`] naming the message, the field and
//! the offset; nothing here can panic on short or hostile input.

use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::layout::MobileNetwork;
use super::message::error::{MessageError, MessageErrorKind};

pub(crate) struct Cursor<'a> {
    message: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(message: &'static str, buf: &'a [u8]) -> Self {
        Self {
            message,
            buf,
            pos: 0,
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn error(&self, kind: MessageErrorKind) -> MessageError {
        MessageError {
            message: self.message,
            offset: self.pos,
            kind,
        }
    }

    pub fn invalid(&self, field: &'static str, reason: &'static str) -> MessageError {
        self.error(MessageErrorKind::Invalid { field, reason })
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        if self.remaining() < n {
            return Err(self.error(MessageErrorKind::Truncated {
                field,
                needed: n,
                available: self.remaining(),
            }));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// Everything left, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let bytes = &self.buf[self.pos..];
        self.pos = self.buf.len();
        bytes
    }

    /// A fixed on-wire block, borrowed in place.
    pub fn read<T>(&mut self, field: &'static str) -> Result<&'a T, MessageError>
    where
        T: FromBytes + KnownLayout + Immutable + Unaligned,
    {
        let bytes = self.take(size_of::<T>(), field)?;
        // Cannot fail: the size is exact and `Unaligned` rules out alignment errors.
        T::ref_from_bytes(bytes).map_err(|_| self.invalid(field, "layout"))
    }

    /// `count` consecutive fixed blocks, borrowed in place.
    pub fn slice<T>(&mut self, count: usize, field: &'static str) -> Result<&'a [T], MessageError>
    where
        T: FromBytes + Immutable + Unaligned,
    {
        let bytes = self.take(count.saturating_mul(size_of::<T>()), field)?;
        <[T]>::ref_from_bytes_with_elems(bytes, count).map_err(|_| self.invalid(field, "layout"))
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.take(1, field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let b = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A trailing optional byte: present or absent, never an error.
    pub fn opt_u8(&mut self) -> Option<u8> {
        self.u8("").ok()
    }

    /// A trailing optional big-endian u16. A lone byte where two are expected
    /// is left unread rather than misread.
    pub fn opt_u16(&mut self) -> Option<u16> {
        if self.remaining() >= 2 {
            self.u16("").ok()
        } else {
            None
        }
    }

    /// MCC(2) + MNC(1 or 2): the MCC's high bit says the MNC has two bytes.
    pub fn network(&mut self) -> Result<MobileNetwork, MessageError> {
        let raw = self.u16("mcc")?;
        let wide_mnc = raw & 0x8000 != 0;
        let mnc = if wide_mnc {
            self.u16("mnc")?
        } else {
            u16::from(self.u8("mnc")?)
        };
        Ok(MobileNetwork {
            mcc: raw & 0x7FFF,
            mnc,
            wide_mnc,
        })
    }
}
