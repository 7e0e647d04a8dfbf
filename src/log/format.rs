//! The bytes of the log: entries framed by a length and a CRC, laid end to
//! end in segment files. Pure: no files here, so every rule is tested on
//! byte slices.
//!
//! ```text
//! entry   = len:u32le crc:u32le body[len]          crc = CRC-32C of body
//! body    = 1 table:u8 rowbinary                    a row of a table
//!         | 2 json                                  a badge's queued commands
//! ```
//!
//! A length of 0 ends the data (the zeros after the last entry of a
//! segment, which O_DIRECT writes pad to a block). A position in the log,
//! an LSN, counts the bytes of every segment before it: segment files are
//! named by the LSN of their first byte, and the next one starts where the
//! last entry of the one before ended.

use crate::record::rowbinary::RowBinaryError;
use crate::record::{Record, Table};

/// Bytes before an entry's body.
pub const ENTRY_HEAD: usize = 8;
/// The largest body accepted on reading: a frame's rows are far smaller, so
/// anything above this is damage, not data.
pub const MAX_BODY: usize = 16 << 20;

const ROW: u8 = 1;
const COMMANDS: u8 = 2;

/// One entry of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    Row {
        table: Table,
        rowbinary: &'a [u8],
    },
    /// A badge's queued commands as they now are (JSON).
    Commands(&'a [u8]),
}

/// Why bytes do not read as the next entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("entry truncated ({needed} bytes needed, {available} left)")]
    Truncated { needed: usize, available: usize },
    #[error("entry length {0} is impossible")]
    Length(usize),
    #[error("entry CRC mismatch")]
    Crc,
    #[error("unknown entry kind {0}")]
    Kind(u8),
    #[error("unknown table {0}")]
    Table(u8),
}

/// Appends a row entry whose ingest sequence is the entry's position
/// `lsn` (the row's last column), so that the key is unique for as long as
/// the log grows, and the same when the row is replayed.
pub fn push_row(out: &mut Vec<u8>, record: &Record, lsn: u64) -> Result<(), RowBinaryError> {
    let start = out.len();
    out.extend_from_slice(&[0; ENTRY_HEAD]);
    out.push(ROW);
    out.push(record.table().index() as u8);
    if let Err(e) = record.to_rowbinary(out) {
        out.truncate(start);
        return Err(e);
    }
    let end = out.len();
    // `ingest_seq` is the last column of every row: a little-endian u64.
    out[end - 8..end].copy_from_slice(&lsn.to_le_bytes());
    seal(out, start);
    Ok(())
}

/// Appends a commands entry.
pub fn push_commands(out: &mut Vec<u8>, json: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; ENTRY_HEAD]);
    out.push(COMMANDS);
    out.extend_from_slice(json);
    seal(out, start);
}

/// Fills in the length and CRC of the entry that starts at `start`.
fn seal(out: &mut [u8], start: usize) {
    let body = &out[start + ENTRY_HEAD..];
    let len = body.len() as u32;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The entry at the start of `bytes` and its whole length, or `Ok(None)`
/// at the end of the data (a zero length, or no bytes left).
pub fn read(bytes: &[u8]) -> Result<Option<(Entry<'_>, usize)>, Damage> {
    if bytes.len() < ENTRY_HEAD {
        return if bytes.iter().all(|b| *b == 0) {
            Ok(None)
        } else {
            Err(Damage::Truncated {
                needed: ENTRY_HEAD,
                available: bytes.len(),
            })
        };
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_BODY {
        return Err(Damage::Length(len));
    }
    let total = ENTRY_HEAD + len;
    let Some(body) = bytes.get(ENTRY_HEAD..total) else {
        return Err(Damage::Truncated {
            needed: total,
            available: bytes.len(),
        });
    };
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err(Damage::Crc);
    }
    let entry = match body[0] {
        ROW => {
            let t = *body.get(1).ok_or(Damage::Length(len))?;
            let table = *Table::ALL.get(usize::from(t)).ok_or(Damage::Table(t))?;
            Entry::Row {
                table,
                rowbinary: &body[2..],
            }
        }
        COMMANDS => Entry::Commands(&body[1..]),
        k => return Err(Damage::Kind(k)),
    };
    Ok(Some((entry, total)))
}

/// The entries of `bytes`, each with its offset, until the end of the
/// data or the first damage.
pub fn entries(bytes: &[u8]) -> Entries<'_> {
    Entries { bytes, pos: 0 }
}

pub struct Entries<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Entries<'_> {
    /// Where the next entry would start: after the last one read.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(usize, Entry<'a>), Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        match read(&self.bytes[self.pos..]) {
            Ok(None) => None,
            Ok(Some((entry, len))) => {
                let at = self.pos;
                self.pos += len;
                Some(Ok((at, entry)))
            }
            Err(e) => {
                // Stop here: a length cannot be trusted past damage.
                let e = Some(Err(e));
                self.pos = self.bytes.len();
                e
            }
        }
    }
}

/// The file name of the segment whose first byte is at `lsn`.
pub fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}.log")
}

/// The first LSN of a segment from its file name.
pub fn segment_lsn(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{HeartbeatRow, Record};

    fn heartbeat(seq: u64) -> Record {
        Record::Heartbeats(HeartbeatRow {
            imei: 860_000_000_000_017,
            server_time: 1_749_988_800,
            protocol: 0x13,
            serial: 7,
            terminal_info: 0x44,
            battery: 87,
            gsm_signal: 4,
            language: 1,
            extension: String::new(),
            ingest_instance: "host",
            ingest_shard: 1,
            ingest_seq: seq,
        })
    }

    #[test]
    fn entries_read_back_with_their_key_set_to_their_position() {
        let mut log = Vec::new();
        push_row(&mut log, &heartbeat(0), 1000).unwrap();
        let second = log.len();
        push_commands(&mut log, br#"{"imei":"1"}"#);
        let at = 1000 + log.len() as u64;
        push_row(&mut log, &heartbeat(0), at).unwrap();
        log.extend_from_slice(&[0; 100]);
        let read: Vec<_> = entries(&log).collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1], (second, Entry::Commands(br#"{"imei":"1"}"#)));
        let Entry::Row { table, rowbinary } = read[0].1 else {
            panic!()
        };
        assert_eq!(table, Table::Heartbeats);
        let json: serde_json::Value = serde_json::to_value(table.view(rowbinary)).unwrap();
        assert_eq!(json["ingest_seq"], 1000);
        assert_eq!(json["battery"], 87);
    }

    #[test]
    fn damage_stops_the_reading_where_it_starts() {
        let mut log = Vec::new();
        push_row(&mut log, &heartbeat(0), 1).unwrap();
        let good = log.len();
        push_row(&mut log, &heartbeat(0), 2).unwrap();
        // A torn write: the second entry half there.
        let mut torn = log[..good + 20].to_vec();
        let mut it = entries(&torn);
        assert!(matches!(it.next(), Some(Ok((0, _)))));
        assert!(matches!(it.next(), Some(Err(Damage::Truncated { .. }))));
        assert!(it.next().is_none());
        // A flipped bit.
        torn = log.clone();
        torn[good + 12] ^= 1;
        assert_eq!(entries(&torn).nth(1), Some(Err(Damage::Crc)));
        // Garbage where a length should be.
        torn = log[..good].to_vec();
        torn.extend_from_slice(&[0xFF; 8]);
        assert_eq!(
            entries(&torn).nth(1),
            Some(Err(Damage::Length(0xFFFF_FFFF)))
        );
        // Zeros are the end, not damage.
        torn = log[..good].to_vec();
        torn.extend_from_slice(&[0; 3]);
        let mut it = entries(&torn);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
        assert_eq!(it.offset(), good);
    }

    #[test]
    fn segment_names_sort_by_position() {
        assert_eq!(segment_name(42), "00000000000000000042.log");
        assert_eq!(segment_lsn(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(segment_lsn("42.log"), None);
        assert_eq!(segment_lsn("0000000000000000004x.log"), None);
        assert!(segment_name(9) < segment_name(10));
    }
}
