//! A shard's segment files as seen from outside its thread: found and
//! repaired at start, read back sequentially for replay, moved aside when
//! damaged, and deleted once everything in them is in ClickHouse. Plain
//! blocking file I/O: none of this runs on a shard.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::format::{self, Damage, Entry};

/// The segments of one shard's log by first position, shared by the shard
/// (which adds one when it starts a new segment) and the writers (which
/// delete them).
#[derive(Debug, Clone, Default)]
pub struct SegmentList(Arc<Mutex<BTreeSet<u64>>>);

impl SegmentList {
    pub fn insert(&self, first: u64) {
        self.lock().insert(first);
    }

    pub fn remove(&self, first: u64) {
        self.lock().remove(&first);
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.lock().iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The segment files of `dir`, by first position.
pub fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| format::segment_lsn(&e.file_name().to_string_lossy()))
        .collect();
    found.sort_unstable();
    Ok(found)
}

pub fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format::segment_name(first))
}

/// What the start found in a shard's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub segments: Vec<u64>,
    /// Where the data ends: the next segment starts here.
    pub end: u64,
    /// Bytes after the last whole entry of the newest segment that were not
    /// zeros: the part of an append a crash cut short. Cut off.
    pub torn_bytes: u64,
}

/// Finds the end of the data in `dir` and cuts off a torn tail. An empty
/// log starts at `empty_start`.
///
/// Only the newest segment can end in a torn append: it is the only one
/// written to when the process stopped. Older segments are checked as
/// they are replayed.
pub fn recover(dir: &Path, empty_start: u64) -> std::io::Result<Recovered> {
    fs::create_dir_all(dir)?;
    let segments = list(dir)?;
    let Some(&last) = segments.last() else {
        return Ok(Recovered {
            segments,
            end: empty_start,
            torn_bytes: 0,
        });
    };
    let file = path(dir, last);
    // Read in blocks, as a replay does: the newest segment is usually a
    // zero-filled 64 MiB, and reading it whole would leave that much
    // resident after every restart.
    let mut reader = Reader::new(dir, last);
    let valid = match reader.read(&[last], u64::MAX, |_, _, _| true) {
        Ok(_) => reader.position() - last,
        // Where the reading stopped: after the last whole entry.
        Err(ReadError::Damaged { at, .. }) => at - last,
        Err(ReadError::Io { source, .. }) => return Err(source),
    };
    drop(reader);
    let (len, torn) = nonzero_tail(&file, valid)?;
    // Also the zeros a segment was filled with ahead of time: nothing is
    // ever written to it again (the start begins a new one at the end).
    if len > valid {
        let f = OpenOptions::new().write(true).open(&file)?;
        f.set_len(valid)?;
        f.sync_all()?;
    }
    Ok(Recovered {
        segments,
        end: last + valid,
        torn_bytes: torn,
    })
}

/// The length of `file`, and how many bytes after `from` lead up to its
/// last nonzero byte (what a crash left of an append).
fn nonzero_tail(file: &Path, from: u64) -> std::io::Result<(u64, u64)> {
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, mut torn) = (from, 0);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((len, torn));
        }
        if let Some(p) = buf[..n].iter().rposition(|b| *b != 0) {
            torn = at + p as u64 + 1 - from;
        }
        at += n as u64;
    }
}

/// Moves a damaged segment into `dir/corrupt/`, where it stays for an
/// operator to look at; never deleted.
pub fn quarantine(dir: &Path, first: u64) -> std::io::Result<PathBuf> {
    let aside = dir.join("corrupt");
    fs::create_dir_all(&aside)?;
    let to = aside.join(format::segment_name(first));
    fs::rename(path(dir, first), &to)?;
    File::open(dir)?.sync_all()?;
    Ok(to)
}

/// Damage found while reading a segment back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("segment {first}: {source}")]
    Io { first: u64, source: std::io::Error },
    #[error("segment {first} damaged at position {at}: {damage}")]
    Damaged { first: u64, at: u64, damage: Damage },
}

/// Reads one shard's log sequentially from a position, in large blocks.
pub struct Reader {
    dir: PathBuf,
    /// The next position to read.
    pos: u64,
    open: Option<(u64, File)>,
    buf: Vec<u8>,
    /// Bytes of `buf` from `buf_start` on are read but not yet given out.
    buf_start: usize,
}

/// Bytes read from a file at once.
const BLOCK: usize = 4 << 20;

impl Reader {
    pub fn new(dir: &Path, pos: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            pos,
            open: None,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Goes on from `pos` (after damage, or to skip ahead).
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos;
        self.open = None;
        self.buf.clear();
        self.buf_start = 0;
    }

    /// Gives `f` each entry from the position until `until` (exclusive)
    /// with its position and length, stopping early when `f` says so (`false`), and
    /// returns how many bytes of entries were read. `segments` is the list
    /// of segments: reading passes from one to the next.
    pub fn read(
        &mut self,
        segments: &[u64],
        until: u64,
        mut f: impl FnMut(u64, usize, Entry<'_>) -> bool,
    ) -> Result<u64, ReadError> {
        let start = self.pos;
        while self.pos < until {
            let Some(first) = segments.iter().rev().find(|s| **s <= self.pos).copied() else {
                // Before the oldest segment: nothing was kept there (it was
                // deleted as inserted, or moved aside).
                match segments.iter().find(|s| **s > self.pos) {
                    Some(next) => {
                        self.seek(*next);
                        continue;
                    }
                    None => break,
                }
            };
            let next_first = segments.iter().find(|s| **s > first).copied();
            if self.open.as_ref().is_none_or(|(f, _)| *f != first) {
                let io = |source| ReadError::Io { first, source };
                let mut file = File::open(path(&self.dir, first)).map_err(io)?;
                file.seek(SeekFrom::Start(self.pos - first)).map_err(io)?;
                self.open = Some((first, file));
                self.buf.clear();
                self.buf_start = 0;
            }
            let ahead = self.buf.len() - self.buf_start;
            match format::read(&self.buf[self.buf_start..]) {
                Ok(Some((entry, len))) => {
                    let at = self.pos;
                    self.pos += len as u64;
                    self.buf_start += len;
                    if !f(at, len, entry) {
                        break;
                    }
                }
                found @ (Ok(None) | Err(Damage::Truncated { .. })) => {
                    // A zero length is the end of the data: what follows is
                    // the zeros the segment was filled with, not worth reading.
                    let end_mark = found.is_ok() && ahead >= format::ENTRY_HEAD;
                    if !end_mark && self.fill(first, until)? {
                        continue;
                    }
                    // The end of what this segment holds.
                    match next_first {
                        Some(next) if next == self.pos => self.seek(next),
                        Some(next) => {
                            return Err(ReadError::Damaged {
                                first,
                                at: self.pos,
                                damage: Damage::Truncated {
                                    needed: (next - self.pos) as usize,
                                    available: self.buf.len() - self.buf_start,
                                },
                            })
                        }
                        None => {
                            // The newest segment, still being written: what
                            // was read past here may be rewritten, so read it
                            // afresh next time.
                            self.seek(self.pos);
                            break;
                        }
                    }
                }
                Err(damage) => {
                    return Err(ReadError::Damaged {
                        first,
                        at: self.pos,
                        damage,
                    })
                }
            }
        }
        Ok(self.pos - start)
    }

    /// Reads more of the open file, never past `until` (what is past it may
    /// be being written); `false` when there is nothing more to read.
    fn fill(&mut self, first: u64, until: u64) -> Result<bool, ReadError> {
        let (_, file) = self.open.as_mut().expect("a segment is open");
        self.buf.drain(..self.buf_start);
        self.buf_start = 0;
        let have = self.buf.len();
        let room = until
            .saturating_sub(self.pos + have as u64)
            .min(BLOCK as u64) as usize;
        if room == 0 {
            return Ok(false);
        }
        self.buf.resize(have + room, 0);
        let n = file
            .read(&mut self.buf[have..])
            .map_err(|source| ReadError::Io { first, source })?;
        self.buf.truncate(have + n);
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{HeartbeatRow, Record, Table};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("badge-seg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn heartbeat() -> Record {
        Record::Heartbeats(HeartbeatRow {
            imei: 1,
            server_time: 2,
            protocol: 0x13,
            serial: 3,
            terminal_info: 4,
            battery: 5,
            gsm_signal: 6,
            language: 1,
            extension: String::new(),
            ingest_instance: "h",
            ingest_shard: 0,
            ingest_seq: 0,
        })
    }

    /// A segment starting at `first` with `n` rows; returns its end.
    fn segment(dir: &Path, first: u64, n: usize, padding: usize) -> u64 {
        let mut bytes = Vec::new();
        for _ in 0..n {
            let lsn = first + bytes.len() as u64;
            format::push_row(&mut bytes, &heartbeat(), lsn).unwrap();
        }
        let end = first + bytes.len() as u64;
        bytes.extend(std::iter::repeat_n(0, padding));
        fs::write(path(dir, first), bytes).unwrap();
        end
    }

    fn read_all(dir: &Path, from: u64, until: u64) -> Result<Vec<u64>, ReadError> {
        let segments = list(dir).unwrap();
        let mut r = Reader::new(dir, from);
        let mut seen = Vec::new();
        r.read(&segments, until, |lsn, _, e| {
            assert!(matches!(
                e,
                Entry::Row {
                    table: Table::Heartbeats,
                    ..
                }
            ));
            seen.push(lsn);
            true
        })?;
        Ok(seen)
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_counted() {
        let d = dir("torn");
        let end = segment(&d, 1000, 3, 0);
        let mut bytes = fs::read(path(&d, 1000)).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&[0xAB; 20]);
        bytes.extend_from_slice(&[0; 4000]);
        fs::write(path(&d, 1000), &bytes).unwrap();
        let r = recover(&d, 7).unwrap();
        assert_eq!((r.end, r.torn_bytes, r.segments), (end, 20, vec![1000]));
        assert_eq!(fs::metadata(path(&d, 1000)).unwrap().len(), whole as u64);
        // Zero padding after the last entry is no tear.
        let d2 = dir("padded");
        let end = segment(&d2, 0, 2, 4096);
        assert_eq!(recover(&d2, 7).unwrap().torn_bytes, 0);
        assert_eq!(recover(&d2, 7).unwrap().end, end);
        assert_eq!(recover(&dir("empty"), 7).unwrap().end, 7);
    }

    #[test]
    fn reading_passes_from_segment_to_segment_and_stops_where_asked() {
        let d = dir("read");
        let a = segment(&d, 100, 3, 512);
        let b = segment(&d, a, 2, 0);
        let all = read_all(&d, 100, b).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[3], a);
        // From the middle, to the middle.
        let some = read_all(&d, all[1], all[4]).unwrap();
        assert_eq!(some, &all[1..4]);
        // From before the oldest segment: from its start.
        assert_eq!(read_all(&d, 0, b).unwrap().len(), 5);
    }

    #[test]
    fn damage_in_an_older_segment_is_reported_with_its_place() {
        let d = dir("damaged");
        let a = segment(&d, 0, 3, 0);
        segment(&d, a, 1, 0);
        let mut bytes = fs::read(path(&d, 0)).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xFF;
        fs::write(path(&d, 0), &bytes).unwrap();
        let e = read_all(&d, 0, a + 100).unwrap_err();
        assert!(matches!(e, ReadError::Damaged { first: 0, .. }), "{e}");
        let moved = quarantine(&d, 0).unwrap();
        assert!(moved.exists() && !path(&d, 0).exists());
        // A segment that ends short of the next one's start is damaged too.
        let d = dir("short");
        let a = segment(&d, 0, 2, 0);
        segment(&d, a + 50, 1, 0);
        assert!(read_all(&d, 0, a + 200).is_err());
    }
}
