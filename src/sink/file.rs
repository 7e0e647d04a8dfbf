//! The simplest writers: count records, or append them as JSON lines to a
//! file. Useful for load tests of the server alone, and for debugging.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Input, SinkError, SinkStats};
use crate::config::{Config, SinkKind};

pub(super) fn spawn(
    config: &Config,
    input: Input,
    stats: Arc<SinkStats>,
) -> Result<JoinHandle<Result<(), SinkError>>, SinkError> {
    let mut out = match config.sink.kind {
        SinkKind::File => {
            let path = &config.sink.file;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| SinkError::Open {
                    path: path.clone(),
                    source,
                })?;
            Some(BufWriter::with_capacity(1 << 20, f))
        }
        _ => None,
    };
    let max = config.sink.batch_rows;
    let wait = Duration::from_millis(config.sink.batch_age_ms);
    std::thread::Builder::new()
        .name("sink-file".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(max.min(65_536));
            let mut line = Vec::with_capacity(1024);
            while input.recv_batch(&mut batch, max, wait).is_some() {
                if batch.is_empty() {
                    continue;
                }
                if let Some(w) = out.as_mut() {
                    for e in &batch {
                        line.clear();
                        serde_json::to_writer(&mut line, &e.record)
                            .map_err(std::io::Error::other)?;
                        line.push(b'\n');
                        w.write_all(&line)?;
                    }
                    w.flush()?;
                }
                stats.committed(&batch);
                batch.clear();
            }
            if let Some(mut w) = out {
                w.flush()?;
                // A pipe or /dev/stdout cannot be synced; only a regular file can.
                if w.get_ref().metadata().is_ok_and(|m| m.is_file()) {
                    w.get_ref().sync_all()?;
                }
            }
            Ok(())
        })
        .map_err(SinkError::Write)
}
