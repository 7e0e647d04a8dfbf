//! Where rows go once the log holds them: the writer takes each commit's
//! entries from memory (a bounded `crossbeam-channel`), batches them per
//! table, and inserts them into ClickHouse (or a JSON-lines file, or just
//! counts them); what it cannot take from memory it reads back from the log.
//!
//! Shards never wait here: a full queue drops the commit's copy in memory,
//! and the writer, seeing the gap, reads those entries from the log.
//! Inserting advances each table's checkpoint in each shard's log, and the
//! segments below every checkpoint are deleted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use hdrhistogram::Histogram;

use crate::config::Config;
use crate::log::writer::LogStats;
use crate::log::{Chunk, SegmentList};
use crate::metrics::{latency_histogram, Figure, Kind, Line};
use crate::record::Table;

pub mod clickhouse;
mod dead_letter;
mod destination;
pub mod lanes;
pub mod schema;
mod writer;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open sink file {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("starting the writer: {0}")]
    Start(std::io::Error),
    #[error("writer thread panicked")]
    Panicked,
}

/// Figures the writer keeps, readable from any thread.
#[derive(Debug)]
pub struct SinkStats {
    /// Rows taken in by the writer (from memory, or read back from the log), per table.
    pub queued: [AtomicU64; Table::COUNT],
    /// Rows inserted (ClickHouse committed them, or the file sink synced them), per table.
    pub written: [AtomicU64; Table::COUNT],
    pub batches: [AtomicU64; Table::COUNT],
    /// Rows ClickHouse refused for good, set aside in the dead-letter file, per table.
    pub rejected: [AtomicU64; Table::COUNT],
    /// From frame read to row inserted, µs (rows taken from memory).
    pub end_to_end: Mutex<Histogram<u64>>,
    /// Duration of successful inserts, µs.
    pub insert_latency: Mutex<Histogram<u64>>,
    pub retries: AtomicU64,
    pub insert_failures: AtomicU64,
    /// Rows read back from the log (after a restart, an outage, or missed commits).
    pub replayed_rows: AtomicU64,
    /// Commits the writer had no room for in memory (read from the log instead).
    pub chunks_missed: AtomicU64,
    /// Damaged segments moved aside, and what their loss covered.
    pub corrupt_segments: AtomicU64,
    /// Bytes of torn appends cut off at start.
    pub torn_bytes: AtomicU64,
    pub deleted_segments: AtomicU64,
    /// The last refusal: the table and ClickHouse's words.
    pub last_rejection: Mutex<Option<(Table, String)>>,
    pub dead_letters: PathBuf,
    /// Each shard's log.
    pub logs: Vec<Arc<LogStats>>,
}

impl SinkStats {
    fn new(dead_letters: PathBuf, logs: Vec<Arc<LogStats>>) -> Self {
        Self {
            queued: Default::default(),
            written: Default::default(),
            batches: Default::default(),
            rejected: Default::default(),
            end_to_end: Mutex::new(latency_histogram()),
            insert_latency: Mutex::new(latency_histogram()),
            retries: AtomicU64::new(0),
            insert_failures: AtomicU64::new(0),
            replayed_rows: AtomicU64::new(0),
            chunks_missed: AtomicU64::new(0),
            corrupt_segments: AtomicU64::new(0),
            torn_bytes: AtomicU64::new(0),
            deleted_segments: AtomicU64::new(0),
            last_rejection: Mutex::new(None),
            dead_letters,
            logs,
        }
    }

    /// The logs' commit durations, all shards together, µs.
    pub fn commit_latency(&self) -> Histogram<u64> {
        let mut all = latency_histogram();
        for l in &self.logs {
            if let Ok(h) = l.commit_latency.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }

    fn sum(counters: &[AtomicU64; Table::COUNT]) -> u64 {
        counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn queued(&self, table: Table) -> u64 {
        self.queued[table.index()].load(Ordering::Relaxed)
    }

    pub fn written(&self, table: Table) -> u64 {
        self.written[table.index()].load(Ordering::Relaxed)
    }

    pub fn rejected(&self, table: Table) -> u64 {
        self.rejected[table.index()].load(Ordering::Relaxed)
    }

    pub fn written_total(&self) -> u64 {
        Self::sum(&self.written)
    }

    pub fn queued_total(&self) -> u64 {
        Self::sum(&self.queued)
    }

    pub fn rejected_total(&self) -> u64 {
        Self::sum(&self.rejected)
    }

    /// Rows taken in and neither inserted nor set aside yet.
    pub fn queue_depth(&self) -> u64 {
        self.queued_total()
            .saturating_sub(self.written_total() + self.rejected_total())
    }

    /// Bytes the logs hold (what is not yet safely in ClickHouse, and a
    /// little more: whole segments are deleted).
    pub fn log_bytes(&self) -> u64 {
        self.logs
            .iter()
            .map(|l| {
                l.durable
                    .load(Ordering::Relaxed)
                    .saturating_sub(l.oldest.load(Ordering::Relaxed))
            })
            .sum()
    }

    fn log_sum(&self, f: impl Fn(&LogStats) -> &AtomicU64) -> u64 {
        self.logs.iter().map(|l| f(l).load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn record_insert(&self, took: std::time::Duration) {
        if let Ok(mut h) = self.insert_latency.lock() {
            h.saturating_record((took.as_micros() as u64).max(1));
        }
    }

    /// From each row's frame read until now, the moment it was inserted.
    pub(crate) fn record_end_to_end(&self, received: &[std::time::Instant]) {
        let now = std::time::Instant::now();
        if let Ok(mut h) = self.end_to_end.lock() {
            for t in received {
                let us = now.saturating_duration_since(*t).as_micros() as u64;
                h.saturating_record(us.max(1));
            }
        }
    }
}

/// The writer's and the logs' figures, for `stats` and `/metrics` (rows
/// per table are shown by table, beside these).
pub static SINK_FIGURES: &[Figure<SinkStats>] = &[
    Figure {
        key: "sink_queue",
        prom: Some("sink_queue"),
        kind: Kind::Gauge,
        help: "Rows the writer took in and has neither inserted nor set aside yet.",
        text: &[(Line::Records, "sink_queue")],
        get: SinkStats::queue_depth,
    },
    Figure {
        key: "log_bytes",
        prom: Some("log_bytes"),
        kind: Kind::Gauge,
        help: "Bytes the durable logs hold.",
        text: &[(Line::Records, "log_bytes")],
        get: SinkStats::log_bytes,
    },
    Figure {
        key: "log_commits",
        prom: Some("log_commits_total"),
        kind: Kind::Counter,
        help: "Group commits of the durable logs (write and fdatasync).",
        text: &[(Line::Records, "log_commits")],
        get: |s| s.log_sum(|l| &l.commits),
    },
    Figure {
        key: "log_errors",
        prom: Some("log_errors_total"),
        kind: Kind::Counter,
        help: "Log writes or syncs that failed and were retried.",
        text: &[(Line::Records, "log_errors")],
        get: |s| s.log_sum(|l| &l.errors),
    },
    Figure {
        key: "log_full",
        prom: Some("log_full_total"),
        kind: Kind::Counter,
        help: "Times a shard stopped reading because its log was full.",
        text: &[(Line::Records, "log_full")],
        get: |s| s.log_sum(|l| &l.full),
    },
    Figure {
        key: "replayed_rows",
        prom: Some("replayed_rows_total"),
        kind: Kind::Counter,
        help: "Rows read back from the log to be inserted.",
        text: &[(Line::Records, "replayed")],
        get: |s| s.replayed_rows.load(Ordering::Relaxed),
    },
    Figure {
        key: "chunks_missed",
        prom: Some("log_chunks_missed_total"),
        kind: Kind::Counter,
        help: "Commits the writer had no room for in memory, read from the log instead.",
        text: &[],
        get: |s| s.chunks_missed.load(Ordering::Relaxed),
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
        key: "rejected_rows",
        prom: Some("rejected_rows_total"),
        kind: Kind::Counter,
        help: "Rows ClickHouse refused for good, set aside in the dead-letter file.",
        text: &[(Line::Records, "rejected")],
        get: SinkStats::rejected_total,
    },
    Figure {
        key: "log_corrupt_segments",
        prom: Some("log_corrupt_segments_total"),
        kind: Kind::Counter,
        help: "Damaged log segments moved aside.",
        text: &[],
        get: |s| s.corrupt_segments.load(Ordering::Relaxed),
    },
    Figure {
        key: "log_torn_bytes",
        prom: Some("log_torn_bytes_total"),
        kind: Kind::Counter,
        help: "Bytes of torn appends cut off the logs at start.",
        text: &[],
        get: |s| s.torn_bytes.load(Ordering::Relaxed),
    },
    Figure {
        key: "log_segments_deleted",
        prom: Some("log_segments_deleted_total"),
        kind: Kind::Counter,
        help: "Log segments deleted once everything in them was inserted.",
        text: &[],
        get: |s| s.deleted_segments.load(Ordering::Relaxed),
    },
];

/// The shards' end of the queue. Cheap to clone: one per shard.
#[derive(Clone)]
pub struct SinkHandle {
    tx: Sender<Chunk>,
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// Hands a commit's entries to the writer, never waiting: when there is
    /// no room, the writer reads them from the log instead.
    pub fn send(&self, chunk: Chunk) {
        match self.tx.try_send(chunk) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.chunks_missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

/// What the writer needs of one shard's log.
#[derive(Debug, Clone)]
pub struct ShardLog {
    pub dir: PathBuf,
    pub segments: SegmentList,
    pub stats: Arc<LogStats>,
    /// Where the data ends after recovery (the shard appends from here).
    pub end: u64,
    /// Per table, and for the commands, where reading starts.
    pub checkpoint: ([u64; Table::COUNT], u64),
    /// The queued commands as of `checkpoint.1`, by IMEI (JSON).
    pub commands: std::collections::BTreeMap<String, String>,
    pub last_command_id: u32,
}

/// The writer thread; [`SinkWorkers::finish`] waits until it has inserted
/// what it can (bounded: the log keeps the rest), which starts once every
/// [`SinkHandle`] is dropped.
pub struct SinkWorkers {
    threads: Vec<JoinHandle<()>>,
    pub stats: Arc<SinkStats>,
}

impl SinkWorkers {
    pub fn finish(self) -> Result<(), SinkError> {
        let mut result = Ok(());
        for t in self.threads {
            if t.join().is_err() {
                result = Err(SinkError::Panicked);
            }
        }
        result
    }
}

/// Starts the writer for the logs of every shard, as recovery found them.
pub fn start(
    config: &Config,
    recovered: &[crate::log::Recovery],
) -> Result<(SinkHandle, SinkWorkers), SinkError> {
    let logs: Vec<ShardLog> = recovered
        .iter()
        .map(|r| ShardLog {
            dir: r.dir.clone(),
            segments: r.segments.clone(),
            stats: r.stats.clone(),
            end: r.end,
            checkpoint: (r.tables, r.end),
            commands: r.commands.clone(),
            last_command_id: r.last_command_id,
        })
        .collect();
    let (tx, rx) = crossbeam_channel::bounded(config.sink.queue_capacity);
    let stats = Arc::new(SinkStats::new(
        config.log.dir.join("rejected.jsonl"),
        logs.iter().map(|l| l.stats.clone()).collect(),
    ));
    let torn: u64 = recovered.iter().map(|r| r.torn_bytes).sum();
    stats.torn_bytes.store(torn, Ordering::Relaxed);
    let destination = destination::Destination::open(config, &stats)?;
    let thread = writer::spawn(config, logs, rx, destination, stats.clone())?;
    Ok((
        SinkHandle {
            tx,
            stats: stats.clone(),
        },
        SinkWorkers {
            threads: vec![thread],
            stats,
        },
    ))
}
