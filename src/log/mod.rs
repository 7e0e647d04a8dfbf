//! The durable log: one per shard, the one place accepted data waits.
//!
//! ```text
//! shard ──append──▶ log buffer ──group commit (O_DIRECT write + fdatasync)──▶ segment files
//!                        │ replies wait for the commit covering their rows
//!                        └─ each commit's entries ──▶ writers (memory, the normal case)
//! writers ──insert──▶ ClickHouse ──success──▶ checkpoint ──▶ segments below it deleted
//!     └─ when a table fell behind, or after a restart: replay from the log, in order
//! ```
//!
//! - [`format`]: the bytes of an entry and of a segment's name.
//! - [`writer`]: the shard's side (direct I/O on the shard's ring), appending and
//!   committing without ever blocking the shard.
//! - [`segments`]: recovery at start, sequential reading for replay,
//!   moving damaged segments aside, listing and deleting.
//! - [`checkpoint`]: how far each table is safely in ClickHouse.

pub mod checkpoint;
pub mod format;
pub mod segments;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::record::Table;

pub use segments::SegmentList;
pub use writer::{LogStats, LogWriter};

/// One commit's entries, handed to the writers once they are durable.
#[derive(Debug)]
pub struct Chunk {
    pub shard: usize,
    /// The position of the first entry, and after the last.
    pub start: u64,
    pub end: u64,
    /// The entries, end to end.
    pub bytes: Vec<u8>,
    /// When each row's frame was read, in order: for the end-to-end latency.
    pub received: Vec<Instant>,
}

/// The directory of shard `shard`'s log under `dir`, made absolute:
/// the writers' thread reads it from another working directory's view of
/// the same paths, and the segment rotation syncs the directory by name.
pub fn shard_dir(dir: &Path, shard: usize) -> PathBuf {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    dir.join(format!("shard-{shard}"))
}

/// The secret key of the shard hash (`ingest::ShardMap`), made once and
/// kept in `dir`: the logs hold each badge's queued commands on the shard
/// that owned it, so the owners must not change across restarts.
pub fn shard_key(dir: &Path) -> std::io::Result<[u8; 16]> {
    use std::io::{Read, Write};
    let path = dir.join("shard-key");
    let mut key = [0u8; 16];
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            f.read_exact(&mut key)?;
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let tmp = dir.join("shard-key.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(key)
}

/// A shard's log as the start found it, ready for its writer and the sink.
#[derive(Debug)]
pub struct Recovery {
    pub shard: usize,
    pub dir: PathBuf,
    /// Where the data ends: the shard's new segment starts here.
    pub end: u64,
    pub segments: SegmentList,
    pub stats: Arc<LogStats>,
    /// Per table, where every row below is inserted (the oldest segment's
    /// start when the log has no checkpoint yet).
    pub tables: [u64; Table::COUNT],
    /// The queued commands at `end`, by IMEI (JSON lists).
    pub commands: BTreeMap<String, String>,
    pub last_command_id: u32,
    /// Bytes of a torn append cut off.
    pub torn_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("log {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("log {}: reading the commands back: {source}", dir.display())]
    Read {
        dir: PathBuf,
        source: segments::ReadError,
    },
}

/// Opens shard `shard`'s log under `dir`: cuts off a torn tail, reads the
/// checkpoint, and brings the queued commands up to the end of the log.
///
/// An empty log starts at the clock's nanoseconds, so that positions (and
/// with them ingest keys) do not repeat even if the directory was wiped:
/// no log grows faster than a byte a nanosecond.
pub fn recover(dir: &Path, shard: usize) -> Result<Recovery, RecoveryError> {
    let dir = shard_dir(dir, shard);
    let io = |source| RecoveryError::Io {
        dir: dir.clone(),
        source,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let found = segments::recover(&dir, now).map_err(io)?;
    checkpoint::keep_reserve(&dir);
    let saved = checkpoint::load(&dir)?;
    let oldest = found.segments.first().copied().unwrap_or(found.end);
    let mut tables = [oldest; Table::COUNT];
    let mut commands = BTreeMap::new();
    let mut commands_at = oldest;
    let mut last_command_id = 0;
    if let Some(cp) = &saved {
        for t in Table::ALL {
            if let Some(at) = cp.table(t) {
                tables[t.index()] = at.clamp(oldest.min(found.end), found.end);
            }
        }
        commands = cp.commands.clone();
        commands_at = cp.commands_at.min(found.end);
        last_command_id = cp.last_command_id;
    }
    // Commands queued since the checkpoint are in the log after it.
    let mut reader = segments::Reader::new(&dir, commands_at);
    let read = reader.read(&found.segments, found.end, |_, _, entry| {
        if let format::Entry::Commands(json) = entry {
            apply_commands(&mut commands, json);
        }
        true
    });
    if let Err(e) = read {
        // A damaged segment is moved aside when the tables replay it; the
        // commands queued after the damage are lost with it, and said so.
        tracing::error!(shard, error = %e, "log damaged while reading queued commands back: commands queued after the damage are lost");
    }
    let list = SegmentList::default();
    for s in &found.segments {
        list.insert(*s);
    }
    let stats = Arc::new(LogStats::default());
    stats.oldest.store(oldest, Ordering::Relaxed);
    stats.durable.store(found.end, Ordering::Relaxed);
    if found.torn_bytes > 0 {
        tracing::warn!(shard, bytes = found.torn_bytes, "cut off a torn append at the end of the log (a crash during a commit; nothing acknowledged was in it)");
    }
    Ok(Recovery {
        shard,
        dir,
        end: found.end,
        segments: list,
        stats,
        tables,
        commands,
        last_command_id,
        torn_bytes: found.torn_bytes,
    })
}

/// A commands entry: `{"imei": "...", "queued": [...]}`, the badge's queue
/// as it now is (an empty list: nothing queued).
pub fn apply_commands(map: &mut BTreeMap<String, String>, json: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Queued<'a> {
        imei: String,
        #[serde(borrow)]
        queued: &'a serde_json::value::RawValue,
    }
    match serde_json::from_slice::<Queued<'_>>(json) {
        Ok(q) => {
            let list = q.queued.get();
            if list == "[]" {
                map.remove(&q.imei);
            } else {
                map.insert(q.imei, list.to_string());
            }
        }
        Err(e) => tracing::error!(error = %e, "unreadable commands entry in the log"),
    }
}
