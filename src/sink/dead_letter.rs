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

    /// Appends rows of `table` (each: shard, log position, RowBinary) with
    /// their error, then syncs once: a row is set aside only once it is
    /// safely in the file.
    pub fn write<'a>(
        &mut self,
        table: Table,
        rows: impl IntoIterator<Item = (u16, u64, &'a [u8])>,
        error: &str,
    ) -> std::io::Result<u64> {
        let rejected_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut bytes = Vec::new();
        let mut n = 0;
        for (shard, lsn, rowbinary) in rows {
            let mut view = table.view(rowbinary);
            view.table = None;
            let line = Line {
                table: table.name(),
                shard,
                lsn,
                rejected_at,
                error,
                row: view,
            };
            serde_json::to_writer(&mut bytes, &line).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            n += 1;
        }
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
        file.sync_data()?;
        Ok(n)
    }
}
