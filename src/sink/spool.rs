//! The durable local spool: where batches wait while ClickHouse is slow or
//! down, and from where they are replayed, oldest first.
//!
//! One file per batch, written to a temporary name, fsynced, renamed and the
//! directory fsynced: once [`Spool::write`] returns, the batch survives a
//! crash or power loss. Each file carries a CRC-32C of its rows; a file that
//! fails it is moved aside to `corrupt/`, counted and logged, never deleted.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crc::{Crc, CRC_32_ISCSI};

use crate::record::Table;

const MAGIC: &[u8; 8] = b"BISPOOL1";
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("spool full: {used} of {max} bytes used, a batch of {needed} bytes does not fit (raise spool.max_bytes or bring ClickHouse back)")]
    Full { used: u64, max: u64, needed: u64 },
}

/// A batch read back from the spool.
pub struct SpooledBatch {
    pub path: PathBuf,
    pub table: Table,
    pub rows: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Serialises writers and the replayer over file naming and accounting.
    state: Mutex<State>,
    pub bytes: AtomicU64,
    pub files: AtomicU64,
    pub corrupt: AtomicU64,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
}

impl Spool {
    /// Opens (or creates) the spool and accounts for what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            dir: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut next_seq = 1;
        let mut bytes = 0;
        let mut files = 0;
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write that never completed was never counted as safe.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(seq) = parse_name(&name).map(|(seq, _)| seq) {
                next_seq = next_seq.max(seq + 1);
                bytes += entry.metadata().map_err(io)?.len();
                files += 1;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State { next_seq }),
            bytes: AtomicU64::new(bytes),
            files: AtomicU64::new(files),
            corrupt: AtomicU64::new(0),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.files.load(Ordering::Acquire) == 0
    }

    /// Writes a batch durably. Fails without writing when the spool is full.
    pub fn write(&self, table: Table, rows: u64, payload: &[u8]) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        };
        let name_len = table.name().len();
        let size = (MAGIC.len() + 1 + name_len + 8 + 8 + 4 + payload.len()) as u64;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let used = self.bytes.load(Ordering::Acquire);
        if used + size > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
                needed: size,
            });
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let final_path = self.dir.join(format!("{seq:020}.{}.spool", table.name()));
        let tmp = final_path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            let mut header = Vec::with_capacity(64);
            header.extend_from_slice(MAGIC);
            header.push(name_len as u8);
            header.extend_from_slice(table.name().as_bytes());
            header.extend_from_slice(&rows.to_le_bytes());
            header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            header.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
            f.write_all(&header).map_err(io)?;
            f.write_all(payload).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &final_path).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        self.bytes.fetch_add(size, Ordering::AcqRel);
        self.files.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The oldest valid batch. Corrupt files met on the way are moved aside.
    pub fn oldest(&self) -> Result<Option<SpooledBatch>, SpoolError> {
        let io = |source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        };
        loop {
            let mut names: Vec<(u64, String)> = fs::read_dir(&self.dir)
                .map_err(io)?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    parse_name(&name).map(|(seq, _)| (seq, name))
                })
                .collect();
            names.sort();
            let Some((_, name)) = names.into_iter().next() else {
                // Nothing on disk: whatever the counters say (a failed
                // directory sync can leave them high), the spool is empty.
                let _guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
                self.files.store(0, Ordering::Release);
                self.bytes.store(0, Ordering::Release);
                return Ok(None);
            };
            let path = self.dir.join(&name);
            match read_batch(&path) {
                Ok(batch) => return Ok(Some(batch)),
                // Out of descriptors, a disk hiccup: the file may be fine; try again later.
                Err(Unreadable::Io(source)) => {
                    return Err(SpoolError::Io {
                        dir: self.dir.clone(),
                        source,
                    })
                }
                Err(Unreadable::Corrupt(reason)) => {
                    tracing::error!(file = %path.display(), %reason, "corrupt spool file moved to corrupt/");
                    let corrupt_dir = self.dir.join("corrupt");
                    fs::create_dir_all(&corrupt_dir).map_err(io)?;
                    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    fs::rename(&path, corrupt_dir.join(&name)).map_err(io)?;
                    self.account_removed(size);
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Deletes a replayed batch.
    pub fn remove(&self, batch: &SpooledBatch) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        };
        let size = fs::metadata(&batch.path).map_err(io)?.len();
        fs::remove_file(&batch.path).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        self.account_removed(size);
        Ok(())
    }

    fn account_removed(&self, size: u64) {
        let _guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.bytes.fetch_sub(
            size.min(self.bytes.load(Ordering::Acquire)),
            Ordering::AcqRel,
        );
        self.files.fetch_sub(1, Ordering::AcqRel);
    }
}

fn parse_name(name: &str) -> Option<(u64, Table)> {
    let rest = name.strip_suffix(".spool")?;
    let (seq, table) = rest.split_once('.')?;
    let table = Table::from_name(table)?;
    Some((seq.parse().ok()?, table))
}

/// Why a spool file could not be read back.
enum Unreadable {
    Io(std::io::Error),
    Corrupt(String),
}

impl From<String> for Unreadable {
    fn from(reason: String) -> Self {
        Unreadable::Corrupt(reason)
    }
}

impl From<&str> for Unreadable {
    fn from(reason: &str) -> Self {
        Unreadable::Corrupt(reason.to_string())
    }
}

fn read_batch(path: &Path) -> Result<SpooledBatch, Unreadable> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(Unreadable::Io)?;
    let short = || "truncated".to_string();
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err("bad magic".into());
    }
    let name_len = *bytes.get(8).ok_or_else(short)? as usize;
    let name = std::str::from_utf8(bytes.get(9..9 + name_len).ok_or_else(short)?)
        .map_err(|e| e.to_string())?;
    let table = Table::from_name(name).ok_or_else(|| format!("unknown table {name}"))?;
    let mut at = 9 + name_len;
    let u64_at = |at: &mut usize| -> Result<u64, String> {
        let b = bytes.get(*at..*at + 8).ok_or_else(short)?;
        *at += 8;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let rows = u64_at(&mut at)?;
    let len = u64_at(&mut at)? as usize;
    let crc = u32::from_le_bytes(
        bytes
            .get(at..at + 4)
            .ok_or_else(short)?
            .try_into()
            .expect("4 bytes"),
    );
    at += 4;
    let payload = bytes.get(at..at + len).ok_or_else(short)?;
    if bytes.len() != at + len {
        return Err("trailing bytes".into());
    }
    if CRC32C.checksum(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(SpooledBatch {
        path: path.to_owned(),
        table,
        rows,
        payload: payload.to_vec(),
    })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("badge-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn batches_come_back_oldest_first_and_survive_reopening() {
        let dir = temp_dir("order");
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        spool.write(Table::Heartbeats, 2, b"first").unwrap();
        spool.write(Table::Locations, 1, b"second").unwrap();
        assert_eq!(spool.files.load(Ordering::Relaxed), 2);
        drop(spool);
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(spool.files.load(Ordering::Relaxed), 2);
        let a = spool.oldest().unwrap().unwrap();
        assert_eq!(
            (a.table, a.rows, &a.payload[..]),
            (Table::Heartbeats, 2, &b"first"[..])
        );
        spool.remove(&a).unwrap();
        spool.write(Table::Alarms, 1, b"third").unwrap();
        let b = spool.oldest().unwrap().unwrap();
        assert_eq!(&b.payload[..], b"second");
        spool.remove(&b).unwrap();
        let c = spool.oldest().unwrap().unwrap();
        assert_eq!(&c.payload[..], b"third");
        spool.remove(&c).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes.load(Ordering::Relaxed), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_spool_refuses_and_a_corrupt_file_is_moved_aside() {
        let dir = temp_dir("full");
        let spool = Spool::open(&dir, 100).unwrap();
        let err = spool.write(Table::Heartbeats, 1, &[0u8; 200]).unwrap_err();
        assert!(matches!(err, SpoolError::Full { .. }), "{err}");
        spool.write(Table::Heartbeats, 1, b"ok").unwrap();
        let path = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
        assert!(spool.oldest().unwrap().is_none());
        assert_eq!(spool.corrupt.load(Ordering::Relaxed), 1);
        assert!(dir.join("corrupt").read_dir().unwrap().next().is_some());
        assert!(spool.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
