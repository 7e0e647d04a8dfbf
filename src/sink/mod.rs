//! Where records go after the shards: a bounded lock-free queue
//! (`crossbeam-channel`) to writer threads, which batch them by table.
//!
//! Shards only ever `try_send`. A full queue is backpressure: the shard holds
//! the record and stops reading sockets until there is room, so nothing is
//! dropped and no executor thread ever blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;

use crate::config::{Config, SinkKind};
use crate::events::Events;
use crate::metrics::{latency_histogram, Figure, Kind, Line};
use crate::record::{Envelope, Table};

pub mod clickhouse;
mod file;
mod rowbinary;
pub mod schema;
pub mod spool;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open sink file {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("writing records: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error("writer thread panicked")]
    Panicked,
}

/// Figures the writers keep, readable from any thread.
#[derive(Debug)]
pub struct SinkStats {
    /// Rows handed to the queue, per table.
    pub queued: [AtomicU64; Table::COUNT],
    /// Rows safely written (file flushed, or ClickHouse insert committed), per table.
    pub written: [AtomicU64; Table::COUNT],
    pub batches: [AtomicU64; Table::COUNT],
    /// From frame read to row written, µs.
    pub end_to_end: Mutex<Histogram<u64>>,
    /// Duration of successful inserts, µs.
    pub insert_latency: Mutex<Histogram<u64>>,
    pub retries: AtomicU64,
    pub insert_failures: AtomicU64,
    pub spooled_batches: AtomicU64,
    pub spooled_rows: AtomicU64,
    pub replayed_batches: AtomicU64,
    /// Times a batch could not be spooled (spool full, disk error); ingestion waits meanwhile.
    pub spool_errors: AtomicU64,
    /// The spool, when the sink has one (for its size and file count).
    pub spool: std::sync::OnceLock<Arc<spool::Spool>>,
}

impl SinkStats {
    fn new() -> Self {
        Self {
            queued: Default::default(),
            written: Default::default(),
            batches: Default::default(),
            end_to_end: Mutex::new(latency_histogram()),
            insert_latency: Mutex::new(latency_histogram()),
            retries: AtomicU64::new(0),
            insert_failures: AtomicU64::new(0),
            spooled_batches: AtomicU64::new(0),
            spooled_rows: AtomicU64::new(0),
            replayed_batches: AtomicU64::new(0),
            spool_errors: AtomicU64::new(0),
            spool: std::sync::OnceLock::new(),
        }
    }

    pub fn queued(&self, table: Table) -> u64 {
        self.queued[table.index()].load(Ordering::Relaxed)
    }

    pub fn written(&self, table: Table) -> u64 {
        self.written[table.index()].load(Ordering::Relaxed)
    }

    pub fn written_total(&self) -> u64 {
        self.written.iter().map(|w| w.load(Ordering::Relaxed)).sum()
    }

    pub fn queued_total(&self) -> u64 {
        self.queued.iter().map(|w| w.load(Ordering::Relaxed)).sum()
    }

    /// Called by writers once a batch of mixed tables is safe.
    pub(crate) fn committed(&self, batch: &[Envelope]) {
        let mut by_table = [0u64; Table::COUNT];
        for e in batch {
            by_table[e.record.table().index()] += 1;
        }
        for (i, n) in by_table.iter().enumerate() {
            if *n > 0 {
                self.written[i].fetch_add(*n, Ordering::Relaxed);
                self.batches[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.record_end_to_end(batch.iter().map(|e| e.received));
    }

    /// Called by writers once a batch of one table is committed. `received`
    /// is empty for batches replayed from the spool (their read times are gone).
    pub(crate) fn committed_rows(&self, table: Table, rows: u64, received: &[std::time::Instant]) {
        self.written[table.index()].fetch_add(rows, Ordering::Relaxed);
        self.batches[table.index()].fetch_add(1, Ordering::Relaxed);
        if !received.is_empty() {
            self.record_end_to_end(received.iter().copied());
        }
    }

    /// From each row's frame read until now, the moment it became safe.
    fn record_end_to_end(&self, received: impl Iterator<Item = std::time::Instant>) {
        let now = std::time::Instant::now();
        if let Ok(mut h) = self.end_to_end.lock() {
            for t in received {
                let us = now.saturating_duration_since(t).as_micros() as u64;
                h.saturating_record(us.max(1));
            }
        }
    }

    pub(crate) fn record_insert(&self, took: std::time::Duration) {
        if let Ok(mut h) = self.insert_latency.lock() {
            h.saturating_record((took.as_micros() as u64).max(1));
        }
    }

    /// Rows handed to the writers and neither written nor spooled yet.
    pub fn queue_depth(&self) -> u64 {
        self.queued_total()
            .saturating_sub(self.written_total() + self.spooled_rows.load(Ordering::Relaxed))
    }

    /// (bytes, files) waiting in the spool.
    pub fn spool_size(&self) -> (u64, u64) {
        self.spool.get().map_or((0, 0), |s| {
            (
                s.bytes.load(Ordering::Relaxed),
                s.files.load(Ordering::Relaxed),
            )
        })
    }
}

/// The writers' figures, for `stats` and `/metrics` (rows per table are
/// shown by table, beside these).
pub static SINK_FIGURES: &[Figure<SinkStats>] = &[
    Figure {
        key: "sink_queue",
        prom: Some("sink_queue"),
        kind: Kind::Gauge,
        help: "Rows handed to the writers and neither written nor spooled yet.",
        text: &[(Line::Records, "sink_queue")],
        get: SinkStats::queue_depth,
    },
    Figure {
        key: "spool_bytes",
        prom: Some("spool_bytes"),
        kind: Kind::Gauge,
        help: "Bytes waiting in the spool.",
        text: &[(Line::Records, "spool_bytes")],
        get: |s| s.spool_size().0,
    },
    Figure {
        key: "spool_files",
        prom: Some("spool_files"),
        kind: Kind::Gauge,
        help: "Batches waiting in the spool.",
        text: &[(Line::Records, "spool_files")],
        get: |s| s.spool_size().1,
    },
    Figure {
        key: "spooled_rows",
        prom: Some("spooled_rows_total"),
        kind: Kind::Counter,
        help: "Rows written to the spool.",
        text: &[],
        get: |s| s.spooled_rows.load(Ordering::Relaxed),
    },
    Figure {
        key: "replayed_batches",
        prom: Some("replayed_batches_total"),
        kind: Kind::Counter,
        help: "Spooled batches inserted after all.",
        text: &[],
        get: |s| s.replayed_batches.load(Ordering::Relaxed),
    },
    Figure {
        key: "insert_retries",
        prom: Some("insert_retries_total"),
        kind: Kind::Counter,
        help: "Insert retries.",
        text: &[(Line::Records, "insert_retries")],
        get: |s| s.retries.load(Ordering::Relaxed),
    },
    Figure {
        key: "insert_failures",
        prom: Some("insert_failures_total"),
        kind: Kind::Counter,
        help: "Failed insert attempts.",
        text: &[(Line::Records, "insert_failures")],
        get: |s| s.insert_failures.load(Ordering::Relaxed),
    },
    Figure {
        key: "spool_errors",
        prom: Some("spool_errors_total"),
        kind: Kind::Counter,
        help: "Batches that could not be spooled at first try.",
        text: &[],
        get: |s| s.spool_errors.load(Ordering::Relaxed),
    },
];

/// The shards' end of the queue. Cheap to clone: one per shard.
#[derive(Clone)]
pub struct SinkHandle {
    tx: Sender<Envelope>,
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// Queues a record, or gives it back when the queue is full.
    // Giving the record back (not an error type) is the point: the shard keeps it.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, envelope: Envelope) -> Result<(), Envelope> {
        let table = envelope.record.table();
        match self.tx.try_send(envelope) {
            Ok(()) => {
                self.stats.queued[table.index()].fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(e)) | Err(TrySendError::Disconnected(e)) => Err(e),
        }
    }

    pub fn queue_len(&self) -> usize {
        self.tx.len()
    }

    /// Whether the queue has room again for a burst of records: a quarter
    /// free, so that waiting connections do not wake for every single slot.
    pub fn has_room(&self) -> bool {
        self.tx
            .capacity()
            .is_none_or(|c| self.tx.len() <= c - c / 4)
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

/// The writer threads; [`SinkWorkers::finish`] waits until they have written
/// everything, which happens once every [`SinkHandle`] is dropped.
pub struct SinkWorkers {
    threads: Vec<JoinHandle<Result<(), SinkError>>>,
    pub stats: Arc<SinkStats>,
}

impl SinkWorkers {
    pub fn finish(self) -> Result<(), SinkError> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(SinkError::Panicked),
            }
        }
        result
    }
}

/// Starts the writers the configuration asks for, without live events.
pub fn start(config: &Config) -> Result<(SinkHandle, SinkWorkers), SinkError> {
    start_with(config, Events::disabled())
}

/// Starts the writers; every record they take from the queue is also
/// offered to `events` (one atomic load per record when nobody listens).
pub fn start_with(config: &Config, events: Events) -> Result<(SinkHandle, SinkWorkers), SinkError> {
    let (tx, rx) = crossbeam_channel::bounded(config.sink.queue_capacity);
    let stats = Arc::new(SinkStats::new());
    let input = Input { rx, events };
    let threads = match config.sink.kind {
        SinkKind::Count | SinkKind::File => vec![file::spawn(config, input, stats.clone())?],
        SinkKind::ClickHouse => clickhouse::spawn(config, input, stats.clone())?,
    };
    Ok((
        SinkHandle {
            tx,
            stats: stats.clone(),
        },
        SinkWorkers { threads, stats },
    ))
}

/// The writers' end of the queue. Records are published as live events
/// the moment a writer takes them, before batching: watchers and webhooks
/// do not wait for the insert.
#[derive(Clone)]
pub(crate) struct Input {
    rx: Receiver<Envelope>,
    events: Events,
}

impl Input {
    /// Takes what is queued, up to `max`, waiting at most `wait` for the
    /// first record. `None` once the queue is closed and empty.
    pub(crate) fn recv_batch(
        &self,
        batch: &mut Vec<Envelope>,
        max: usize,
        wait: std::time::Duration,
    ) -> Option<()> {
        let start = batch.len();
        match self.rx.recv_timeout(wait) {
            Ok(e) => batch.push(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Some(()),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
        }
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for e in &batch[start..] {
            self.events.publish(&e.record);
        }
        Some(())
    }
}
