//! The ClickHouse writers: batch rows per table (rows, bytes, age), insert
//! them as RowBinary (lz4 on the wire), retry with backoff, and spool what
//! cannot be inserted; a replayer drains the spool, oldest first, whenever
//! ClickHouse answers again.
//!
//! Delivery is at-least-once: an insert whose outcome is unknown (a timeout
//! after sending) is spooled and replayed, so a rare duplicate is possible.
//! Every row carries its ingest key for finding those.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clickhouse::{Client, Compression, Row};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::logging::LogLimit;
use crate::record::*;

use super::rowbinary::serialize_into;
use super::spool::Spool;
use super::{Input, SinkError, SinkStats};

/// Inserts in flight at once; more would only queue inside ClickHouse.
const MAX_IN_FLIGHT: usize = 2;
/// Attempts of a direct insert before its batch goes to the spool.
const ATTEMPTS: u32 = 3;
/// Largest chunk handed to the client at once (one lz4 block each).
const SEND_CHUNK: usize = 1 << 20;

/// A client for ClickHouse 18.16 and later: plain RowBinary (18.16 predates
/// RowBinaryWithNamesAndTypes, which validation needs), lz4 compression.
pub fn client(config: &Config) -> Client {
    let c = &config.clickhouse;
    let compression = if c.compression == "none" {
        Compression::None
    } else {
        Compression::Lz4
    };
    let mut client = Client::default()
        .with_url(&c.url)
        .with_compression(compression)
        .with_validation(false);
    if c.user != "default" || !c.password.is_empty() {
        client = client.with_user(&c.user).with_password(&c.password);
    }
    client
}

/// Turns the client's schema validation on for servers that support it
/// (the crate's validation needs RowBinaryWithNamesAndTypes and the modern
/// DESCRIBE; we require 24.x to be safe).
pub async fn client_for_server(
    config: &Config,
) -> Result<(Client, String), clickhouse::error::Error> {
    let client = client(config);
    let version: String = client.query("SELECT version()").fetch_one().await?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Ok((
        if major >= 24 {
            client.with_validation(true)
        } else {
            client
        },
        version,
    ))
}

/// Applies `schema/` to `database`; returns the number of statements run.
pub async fn apply_schema(
    config: &Config,
    database: &str,
) -> Result<usize, clickhouse::error::Error> {
    let client = client(config);
    let mut n = 0;
    for (_, sql) in super::schema::FILES {
        for statement in super::schema::statements(sql, database) {
            client.query(&statement).execute().await?;
            n += 1;
        }
    }
    Ok(n)
}

/// `INSERT INTO db.table (`a`, `b`, ...) FORMAT RowBinary`
pub fn insert_statement(database: &str, table: Table) -> String {
    let cols: Vec<String> = table.columns().iter().map(|c| format!("`{c}`")).collect();
    format!(
        "INSERT INTO {database}.{} ({}) FORMAT RowBinary",
        table.name(),
        cols.join(", ")
    )
}

/// Appends one record's RowBinary to `out`.
pub fn serialize(
    record: &Record,
    out: &mut Vec<u8>,
) -> Result<(), super::rowbinary::RowBinaryError> {
    struct Append<'a>(&'a mut Vec<u8>);
    impl RowVisitor for Append<'_> {
        type Output = Result<(), super::rowbinary::RowBinaryError>;
        fn row<R: serde::Serialize + Row>(self, _: Table, row: &R) -> Self::Output {
            serialize_into(self.0, row)
        }
    }
    record.visit(Append(out))
}

struct Batch {
    table: Table,
    rows: u64,
    payload: Vec<u8>,
    received: Vec<Instant>,
    started: Instant,
}

/// What the insert tasks share.
struct Writer {
    client: Client,
    statements: Vec<String>,
    stats: Arc<SinkStats>,
    spool: Arc<Spool>,
    log: LogLimit,
}

impl Writer {
    async fn insert(&self, table: Table, payload: &[u8]) -> Result<(), clickhouse::error::Error> {
        let mut insert = self
            .client
            .insert_formatted_with(self.statements[table.index()].clone())
            .with_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(30)));
        for chunk in payload.chunks(SEND_CHUNK) {
            insert.send(Bytes::copy_from_slice(chunk)).await?;
        }
        insert.end().await
    }

    fn warn(&self, what: &str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(%error, suppressed, "{what}");
        }
    }

    /// Inserts directly while the spool is empty (ClickHouse healthy); once
    /// anything waits in the spool, new batches queue behind it in order.
    async fn deliver(&self, batch: Batch) {
        if self.spool.is_empty() {
            let mut delay = Duration::from_millis(100);
            for attempt in 1..=ATTEMPTS {
                let started = Instant::now();
                match self.insert(batch.table, &batch.payload).await {
                    Ok(()) => {
                        self.stats.record_insert(started.elapsed());
                        self.stats
                            .committed_rows(batch.table, batch.rows, &batch.received);
                        return;
                    }
                    Err(e) => {
                        self.stats.insert_failures.fetch_add(1, Ordering::Relaxed);
                        self.warn("ClickHouse insert failed", &e);
                        // A hung server would hold every shard back for each
                        // retry's full timeout: spool at once instead.
                        if matches!(e, clickhouse::error::Error::TimedOut) {
                            break;
                        }
                        if attempt < ATTEMPTS {
                            self.stats.retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(delay).await;
                            delay *= 4;
                        }
                    }
                }
            }
        }
        self.to_spool(batch).await;
    }

    /// Waits (holding the writer back, and so the shards) until the batch is
    /// safely on disk: a full spool loses nothing, it stops ingestion.
    async fn to_spool(&self, batch: Batch) {
        loop {
            let spool = self.spool.clone();
            let (table, rows) = (batch.table, batch.rows);
            let payload = batch.payload.clone();
            let result =
                tokio::task::spawn_blocking(move || spool.write(table, rows, &payload)).await;
            match result {
                Ok(Ok(())) => {
                    self.stats.spooled_batches.fetch_add(1, Ordering::Relaxed);
                    self.stats.spooled_rows.fetch_add(rows, Ordering::Relaxed);
                    return;
                }
                Ok(Err(e)) => {
                    self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = self.log.check() {
                        tracing::error!(error = %e, suppressed, "cannot spool a batch; ingestion is held back until there is room");
                    }
                }
                Err(e) => tracing::error!(error = %e, "spool task failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Replays the spool, oldest first, while ClickHouse takes it.
    async fn replay(self: Arc<Self>, stop: Arc<tokio::sync::Notify>) {
        let mut delay = Duration::from_millis(200);
        loop {
            if self.spool.is_empty() {
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
            let spool = self.spool.clone();
            let oldest = tokio::task::spawn_blocking(move || spool.oldest()).await;
            let batch = match oldest {
                Ok(Ok(Some(b))) => b,
                // The counters were high; the spool recounted itself.
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the spool failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => continue,
            };
            let started = Instant::now();
            match self.insert(batch.table, &batch.payload).await {
                Ok(()) => {
                    self.stats.record_insert(started.elapsed());
                    self.stats.committed_rows(batch.table, batch.rows, &[]);
                    self.stats.replayed_batches.fetch_add(1, Ordering::Relaxed);
                    let spool = self.spool.clone();
                    if let Ok(Err(e)) =
                        tokio::task::spawn_blocking(move || spool.remove(&batch)).await
                    {
                        tracing::error!(error = %e, "removing a replayed spool file failed; it will be replayed again");
                    }
                    delay = Duration::from_millis(200);
                }
                Err(e) => {
                    self.warn("ClickHouse still unavailable; spool kept", &e);
                    tokio::select! {
                        _ = stop.notified() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

pub(super) fn spawn(
    config: &Config,
    input: Input,
    stats: Arc<SinkStats>,
) -> Result<Vec<JoinHandle<Result<(), SinkError>>>, SinkError> {
    let spool = Arc::new(Spool::open(&config.spool.dir, config.spool.max_bytes)?);
    let _ = stats.spool.set(spool.clone());
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sink-clickhouse")
            .enable_all()
            .build()
            .map_err(SinkError::Write)?,
    );
    let database = config.clickhouse.database.clone();
    // Validation needs a server newer than 18.16; ask which one this is.
    let probe = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), client_for_server(config)).await
    });
    let client = match probe {
        Ok(Ok((client, version))) => {
            tracing::info!(%version, url = %config.clickhouse.url, "ClickHouse reachable");
            client
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, url = %config.clickhouse.url, "ClickHouse not reachable at start; batches will wait in the spool");
            client(config)
        }
        Err(_) => {
            tracing::warn!(url = %config.clickhouse.url, "ClickHouse did not answer within 5 s at start; batches will wait in the spool");
            client(config)
        }
    };
    let writer = Arc::new(Writer {
        client,
        statements: Table::ALL
            .iter()
            .map(|t| insert_statement(&database, *t))
            .collect(),
        stats,
        spool,
        log: LogLimit::per_second(),
    });
    if !writer.spool.is_empty() {
        tracing::info!(
            files = writer.spool.files.load(Ordering::Relaxed),
            bytes = writer.spool.bytes.load(Ordering::Relaxed),
            "replaying the spool left by an earlier run"
        );
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let replayer = rt.spawn(writer.clone().replay(stop.clone()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let max_rows = config.sink.batch_rows as u64;
    let max_bytes = config.sink.batch_bytes;
    let max_age = Duration::from_millis(config.sink.batch_age_ms);
    let writers = config.sink.writers;
    let mut threads = Vec::new();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..writers {
        let (input, rt, writer, in_flight) =
            (input.clone(), rt.clone(), writer.clone(), in_flight.clone());
        let (stop, done) = (stop.clone(), done.clone());
        let t = std::thread::Builder::new()
            .name(format!("sink-batch-{i}"))
            .spawn(move || -> Result<(), SinkError> {
                let mut batches: Vec<Option<Batch>> = (0..Table::COUNT).map(|_| None).collect();
                // The size of each table's last batch: the next one starts with that
                // capacity instead of growing (and copying) its way up to it.
                let mut last_size = [64 * 1024usize; Table::COUNT];
                let mut incoming = Vec::with_capacity(4096);
                let flush = |batch: Batch| {
                    let permit = rt.block_on(in_flight.clone().acquire_owned()).expect("never closed");
                    let writer = writer.clone();
                    rt.spawn(async move {
                        writer.deliver(batch).await;
                        drop(permit);
                    });
                };
                loop {
                    let open = input.recv_batch(&mut incoming, 4096, max_age / 4).is_some();
                    for envelope in incoming.drain(..) {
                        let table = envelope.record.table();
                        let slot = &mut batches[table.index()];
                        let batch = slot.get_or_insert_with(|| Batch {
                            table,
                            rows: 0,
                            payload: Vec::with_capacity(last_size[table.index()].min(max_bytes + 64 * 1024)),
                            received: Vec::new(),
                            started: Instant::now(),
                        });
                        if let Err(e) = serialize(&envelope.record, &mut batch.payload) {
                            // A row type the serializer cannot express is a bug, not data loss at runtime:
                            // the row structs are fixed; say so loudly.
                            tracing::error!(error = %e, table = table.name(), "row not serialisable");
                            continue;
                        }
                        batch.rows += 1;
                        batch.received.push(envelope.received);
                        if batch.rows >= max_rows || batch.payload.len() >= max_bytes {
                            last_size[table.index()] = batch.payload.len() + batch.payload.len() / 8;
                            flush(slot.take().expect("just filled"));
                        }
                    }
                    for slot in batches.iter_mut() {
                        if slot.as_ref().is_some_and(|b| !open || b.started.elapsed() >= max_age) {
                            let batch = slot.take().expect("checked");
                            last_size[batch.table.index()] = batch.payload.len() + batch.payload.len() / 8;
                            flush(batch);
                        }
                    }
                    if !open {
                        break;
                    }
                }
                // Every batch handed out is either inserted or spooled before we return.
                drop(rt.block_on(in_flight.acquire_many(MAX_IN_FLIGHT as u32)));
                if done.fetch_add(1, Ordering::AcqRel) + 1 == writers {
                    stop.notify_one();
                }
                Ok(())
            })
            .map_err(SinkError::Write)?;
        threads.push(t);
    }
    // The replayer, and with it the runtime, ends after the last writer thread.
    let rt_owner = std::thread::Builder::new()
        .name("sink-replay".into())
        .spawn(move || -> Result<(), SinkError> {
            let _ = rt.block_on(replayer);
            Ok(())
        })
        .map_err(SinkError::Write)?;
    threads.push(rt_owner);
    Ok(threads)
}
