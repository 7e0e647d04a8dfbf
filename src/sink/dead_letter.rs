//! Rows ClickHouse refused for good, set aside as JSON lines with the
//! reason: never dropped, never holding back the rows after them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::record::Table;

/// The file rejected rows go to, and how many went.
pub struct DeadLetters {
    path: PathBuf,
    file: Option<File>,
}

#[derive(Serialize)]
struct Line<'a, R: Serialize> {
    table: &'static str,
    shard: u16,
    /// The row's position in its shard's log (its ingest sequence).
    lsn: u64,
    rejected_at: u64,
    error: &'a str,
    row: R,
}

impl DeadLetters {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row (RowBinary of `table`) with its error, synced: a row
    /// is set aside only once it is safely in the file.
    pub fn write(
        &mut self,
        table: Table,
        shard: u16,
        lsn: u64,
        rowbinary: &[u8],
        error: &str,
    ) -> std::io::Result<()> {
        let mut view = table.view(rowbinary);
        view.table = None;
        let line = Line {
            table: table.name(),
            shard,
            lsn,
            rejected_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            error,
            row: view,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = self.file.as_mut().expect("opened");
        file.write_all(&bytes)?;
        file.sync_data()
    }
}
