//! Where batches are inserted: ClickHouse (over HTTP, on a small tokio
//! runtime, up to `sink.inserts_in_flight` inserts per table), a JSON-lines file (for
//! debugging and the server tests), or nowhere (load tests of the server
//! alone: rows are only counted).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::config::{Config, SinkKind};
use crate::record::Table;

use super::clickhouse::{self, Failure};
use super::lanes::BatchId;
use super::{SinkError, SinkStats};

/// How an insert ended.
#[derive(Debug)]
pub struct Done {
    pub table: Table,
    pub batch: BatchId,
    /// How long it took, or why it failed.
    pub result: Result<Duration, Failure>,
}

// One per writer thread: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Destination {
    ClickHouse {
        client: ::clickhouse::Client,
        statements: Vec<String>,
        runtime: Arc<tokio::runtime::Runtime>,
    },
    File(BufWriter<File>),
    Count,
}

impl Destination {
    /// Whether inserts take time worth measuring (the file and count sinks
    /// are not inserts).
    pub fn timed(&self) -> bool {
        matches!(self, Destination::ClickHouse { .. })
    }

    pub fn open(config: &Config, _stats: &SinkStats) -> Result<Self, SinkError> {
        Ok(match config.sink.kind {
            SinkKind::Count => Destination::Count,
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
                Destination::File(BufWriter::with_capacity(1 << 20, f))
            }
            SinkKind::ClickHouse => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sink-clickhouse")
                    .enable_all()
                    .build()
                    .map_err(SinkError::Start)?;
                // Validation needs a server newer than 18.16; ask which one this is.
                let probe = runtime.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(5),
                        clickhouse::client_for_server(config),
                    )
                    .await
                });
                let client = match probe {
                    Ok(Ok((client, version))) => {
                        tracing::info!(%version, url = %config.clickhouse.url, "ClickHouse reachable");
                        client
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, url = %config.clickhouse.url, "ClickHouse not reachable at start; rows wait in the log");
                        clickhouse::client(config)
                    }
                    Err(_) => {
                        tracing::warn!(url = %config.clickhouse.url, "ClickHouse did not answer within 5 s at start; rows wait in the log");
                        clickhouse::client(config)
                    }
                };
                let database = &config.clickhouse.database;
                Destination::ClickHouse {
                    client,
                    statements: Table::ALL
                        .iter()
                        .map(|t| clickhouse::insert_statement(database, *t))
                        .collect(),
                    runtime: Arc::new(runtime),
                }
            }
        })
    }

    /// Starts inserting `payload` (rows of `table`'s batch `batch`, in
    /// RowBinary); the outcome comes on `done`.
    pub fn insert(&mut self, table: Table, batch: BatchId, payload: Bytes, done: &Sender<Done>) {
        let started = Instant::now();
        match self {
            Destination::ClickHouse {
                client,
                statements,
                runtime,
            } => {
                let (client, statement, done) = (
                    client.clone(),
                    statements[table.index()].clone(),
                    done.clone(),
                );
                runtime.spawn(async move {
                    let result = clickhouse::insert(&client, &statement, payload)
                        .await
                        .map(|()| started.elapsed())
                        .map_err(|e| clickhouse::classify(&e));
                    let _ = done.send(Done {
                        table,
                        batch,
                        result,
                    });
                });
            }
            Destination::File(out) => {
                let result = write_json(out, table, &payload)
                    .map(|()| started.elapsed())
                    .map_err(|e| Failure::Retry(e.to_string()));
                let _ = done.send(Done {
                    table,
                    batch,
                    result,
                });
            }
            Destination::Count => {
                let _ = done.send(Done {
                    table,
                    batch,
                    result: Ok(started.elapsed()),
                });
            }
        }
    }
}

/// Each row as one JSON line, then synced: a row counts as written once
/// the file has it.
fn write_json(out: &mut BufWriter<File>, table: Table, payload: &[u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < payload.len() {
        let view = table.view(&payload[at..]);
        let len = view.len().map_err(std::io::Error::other)?;
        let view = table.view(&payload[at..at + len]);
        serde_json::to_writer(&mut *out, &view).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        at += len;
    }
    out.flush()?;
    // A pipe or /dev/stdout cannot be synced; only a regular file can.
    if out.get_ref().metadata().is_ok_and(|m| m.is_file()) {
        out.get_ref().sync_data()?;
    }
    Ok(())
}
