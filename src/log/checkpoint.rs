//! How far a shard's log is safely in ClickHouse: per table, the position
//! below which every row is inserted; and the queued commands as of the
//! position the commands are known up to. Written whole to a new file,
//! synced, and renamed over the old one (then the directory synced), so a
//! crash leaves either the old checkpoint or the new one, never a mix.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::Table;

const FILE: &str = "checkpoint.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Table name → every row of that table below this position is inserted.
    pub tables: BTreeMap<String, u64>,
    /// The queued commands are as of this position.
    pub commands_at: u64,
    /// IMEI → the JSON list of its queued commands (none queued: not kept).
    pub commands: BTreeMap<String, String>,
    /// The highest command id handed out, so that ids are not reused.
    pub last_command_id: u32,
}

impl Checkpoint {
    pub fn table(&self, table: Table) -> Option<u64> {
        self.tables.get(table.name()).copied()
    }

    /// The position below which nothing is needed any more.
    pub fn low_water(&self) -> Option<u64> {
        let tables = Table::ALL.iter().map(|t| self.table(*t));
        tables
            .chain(std::iter::once(Some(self.commands_at)))
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().min())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a checkpoint: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The checkpoint of the log in `dir`; `None` when it has none yet.
pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CheckpointError::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io { path, source }),
    }
}

/// Space set aside in each log directory for checkpoints. Segments are
/// deleted only once a checkpoint says they are inserted; on a full disk,
/// without this, no checkpoint could be written and no room ever made.
const RESERVE: &str = "reserve";
const RESERVE_BYTES: usize = 1 << 20;

/// Sets the reserve aside again if it is gone (best effort: on a full disk
/// it waits for the next call).
pub fn keep_reserve(dir: &Path) {
    let path = dir.join(RESERVE);
    if path.exists() {
        return;
    }
    let made = File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0; RESERVE_BYTES])
            .and_then(|()| f.sync_data())
    });
    if made.is_err() {
        let _ = fs::remove_file(&path);
    }
}

/// Replaces the checkpoint of the log in `dir`, durably. On a full disk
/// the reserve makes room for it.
pub fn store(dir: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    match write(dir, checkpoint) {
        Err(CheckpointError::Io { source, .. })
            if source.raw_os_error() == Some(libc::ENOSPC)
                && fs::remove_file(dir.join(RESERVE)).is_ok() =>
        {
            tracing::warn!(dir = %dir.display(), "the log's disk is full: its reserve went to a checkpoint, so that segments can be deleted");
            write(dir, checkpoint)
        }
        r => r,
    }
}

fn write(dir: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |source| CheckpointError::Io {
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec(checkpoint).expect("a checkpoint serialises");
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_data().map_err(io)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("badge-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir).unwrap(), None);
        let mut c = Checkpoint::default();
        for (i, t) in Table::ALL.iter().enumerate() {
            c.tables.insert(t.name().into(), 100 + i as u64);
        }
        c.commands_at = 99;
        c.commands
            .insert("353419032981446".into(), "[{\"id\":1}]".into());
        assert_eq!(c.low_water(), Some(99));
        store(&dir, &c).unwrap();
        assert_eq!(
            load(&dir).unwrap().unwrap().table(Table::Locations),
            Some(102)
        );
        assert!(!dir.join("checkpoint.json.tmp").exists());
        fs::write(dir.join(FILE), b"{not json").unwrap();
        assert!(matches!(load(&dir), Err(CheckpointError::Parse { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
