//! The writer: one thread that takes each commit's entries, keeps the
//! [`Lanes`], starts and finishes inserts, reads the logs back where memory
//! does not serve, sets refused rows aside, and keeps every shard's
//! checkpoint (deleting the segments below it).
//!
//! A failed insert is tried again with backoff, and the table meanwhile
//! reads its rows from the log; other tables go on. A batch refused for
//! good is split in halves until the refused rows are found: they go to the
//! dead-letter file, everything else is inserted.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::log::checkpoint::{self, Checkpoint};
use crate::log::segments::{self, ReadError, Reader};
use crate::log::Chunk;
use crate::logging::LogLimit;
use crate::record::Table;

use super::clickhouse::Failure;
use super::dead_letter::DeadLetters;
use super::destination::{Destination, Done};
use super::lanes::{BatchId, Effects, Lanes, Limits};
use super::{ShardLog, SinkError, SinkStats};

/// How long the loop waits for news when there is none.
const TICK: Duration = Duration::from_millis(20);
/// Bytes of log read back per shard per turn of the loop.
const REPLAY_PER_TURN: u64 = 8 << 20;
/// How often checkpoints are written at most.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// After the shards have stopped: how long inserts may still take. The
/// log holds the rest for the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

static INSERT_LOG: LogLimit = LogLimit::per_second();
static REJECT_LOG: LogLimit = LogLimit::per_second();
static READ_LOG: LogLimit = LogLimit::per_second();

/// The rows of a batch in flight still to go in, the front one being
/// inserted; split when ClickHouse refuses them for good.
struct Job {
    ranges: VecDeque<Range<usize>>,
    backoff: Duration,
    rejected: u64,
}

struct ShardLogState {
    info: ShardLog,
    reader: Reader,
    /// The queued commands as of the commands checkpoint, by IMEI.
    commands: std::collections::BTreeMap<String, String>,
    last_written: Option<Checkpoint>,
}

struct Writer {
    lanes: Lanes,
    logs: Vec<ShardLogState>,
    destination: Destination,
    stats: Arc<SinkStats>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    /// Per table, its batches in flight.
    jobs: Vec<BTreeMap<BatchId, Job>>,
    dead: DeadLetters,
    last_checkpoint: Instant,
    /// Inserts sent and not yet answered.
    outstanding: usize,
}

pub(super) fn spawn(
    config: &Config,
    logs: Vec<ShardLog>,
    chunks: Receiver<Chunk>,
    destination: Destination,
    stats: Arc<SinkStats>,
) -> Result<JoinHandle<()>, SinkError> {
    let limits = Limits {
        rows: config.sink.batch_rows,
        bytes: config.sink.batch_bytes,
        age: Duration::from_millis(config.sink.batch_age_ms),
        in_flight: config.sink.inserts_in_flight,
    };
    let starts: Vec<u64> = logs.iter().map(|l| l.end).collect();
    let checkpoints: Vec<_> = logs.iter().map(|l| l.checkpoint).collect();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let dead = DeadLetters::new(&stats.dead_letters);
    let mut writer = Writer {
        lanes: Lanes::new(limits, &starts, &checkpoints),
        logs: logs
            .into_iter()
            .map(|info| ShardLogState {
                reader: Reader::new(&info.dir, info.checkpoint.1),
                commands: info.commands.clone(),
                info,
                last_written: None,
            })
            .collect(),
        destination,
        stats,
        done_tx,
        done_rx,
        jobs: (0..Table::COUNT).map(|_| BTreeMap::new()).collect(),
        dead,
        last_checkpoint: Instant::now(),
        outstanding: 0,
    };
    std::thread::Builder::new()
        .name("sink-writer".into())
        .spawn(move || writer.run(chunks))
        .map_err(SinkError::Start)
}

impl Writer {
    fn run(&mut self, chunks: Receiver<Chunk>) {
        let mut closing: Option<Instant> = None;
        loop {
            crossbeam_channel::select! {
                recv(chunks) -> msg => match msg {
                    Ok(chunk) => self.chunk(chunk),
                    Err(_) => {
                        closing.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                    }
                },
                recv(self.done_rx) -> done => {
                    if let Ok(done) = done {
                        self.done(done);
                    }
                },
                default(TICK) => {}
            }
            // Take what else waits, without waiting.
            while let Ok(chunk) = chunks.try_recv() {
                self.chunk(chunk);
            }
            while let Ok(done) = self.done_rx.try_recv() {
                self.done(done);
            }
            let now = Instant::now();
            self.start_inserts(now, closing.is_some());
            self.replay(now);
            self.publish();
            let idle = self.jobs.iter().all(BTreeMap::is_empty) && self.lanes.idle();
            // Closing, with nothing out and nothing to send before the
            // deadline (retries wait out a backoff beyond it): waiting
            // longer is no use, and the log keeps the rows for the next start.
            let over = closing.is_some_and(|deadline| {
                let stuck = self.outstanding == 0
                    && self.lanes.due(now, true).is_empty()
                    && self.lanes.next_retry().is_none_or(|at| at >= deadline);
                now >= deadline || stuck
            });
            self.checkpoints(now, closing.is_some() && (idle || over));
            if closing.is_some() && (idle || over) {
                if !idle {
                    tracing::warn!(
                        rows = self.lanes.pending_rows(),
                        "stopping with rows not yet inserted; they are in the log, and go in at the next start"
                    );
                }
                return;
            }
        }
    }

    fn publish(&self) {
        for t in Table::ALL {
            self.stats.queued[t.index()].store(self.lanes.taken(t), Ordering::Relaxed);
        }
    }

    fn chunk(&mut self, chunk: Chunk) {
        let Chunk {
            shard,
            start,
            end,
            bytes,
            received,
        } = chunk;
        let fx = self
            .lanes
            .chunk(shard, start, end, &bytes, &received, Instant::now());
        self.apply(fx);
    }

    /// Queued-command entries: the latest state of a badge's queue.
    fn apply(&mut self, fx: Effects) {
        for (shard, json) in fx.commands {
            crate::log::apply_commands(&mut self.logs[shard].commands, &json);
        }
    }

    fn start_inserts(&mut self, now: Instant, closing: bool) {
        for table in self.lanes.due(now, closing) {
            let Some((id, batch)) = self.lanes.take(table) else {
                continue;
            };
            let n = batch.rows.len();
            self.jobs[table.index()].insert(
                id,
                Job {
                    ranges: std::iter::once(0..n).collect(),
                    backoff: BACKOFF_FIRST,
                    rejected: 0,
                },
            );
            self.send(table, id);
        }
        for table in Table::ALL {
            for id in self.lanes.retries_due(table, now) {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                self.send(table, id);
            }
        }
    }

    fn job(&mut self, table: Table, id: BatchId) -> &mut Job {
        self.jobs[table.index()]
            .get_mut(&id)
            .expect("a job for every batch in flight")
    }

    /// Sends the front range of a batch's job.
    fn send(&mut self, table: Table, id: BatchId) {
        let Some(range) = self.jobs[table.index()]
            .get(&id)
            .and_then(|j| j.ranges.front().cloned())
        else {
            return;
        };
        let Some(batch) = self.lanes.in_flight(table, id) else {
            return;
        };
        let payload = batch.slice(range);
        self.outstanding += 1;
        self.destination.insert(table, id, payload, &self.done_tx);
    }

    fn done(&mut self, done: Done) {
        self.outstanding -= 1;
        let (table, id) = (done.table, done.batch);
        let now = Instant::now();
        match done.result {
            Ok(took) => {
                if self.destination.timed() {
                    self.stats.record_insert(took);
                }
                let finished = {
                    let job = self.job(table, id);
                    job.ranges.pop_front();
                    job.backoff = BACKOFF_FIRST;
                    job.ranges.is_empty()
                };
                if finished {
                    self.finish(table, id);
                } else {
                    self.send(table, id);
                }
            }
            Err(Failure::Retry(error)) => {
                self.stats.insert_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = INSERT_LOG.check() {
                    tracing::warn!(table = table.name(), %error, suppressed,
                        "insert failed; tried again with backoff, the rows wait in the log");
                }
                self.backoff(table, id, now);
            }
            Err(Failure::Permanent(error)) => {
                self.stats.insert_failures.fetch_add(1, Ordering::Relaxed);
                let range = self
                    .job(table, id)
                    .ranges
                    .pop_front()
                    .expect("a range in flight");
                if range.len() > 1 {
                    // Halves, until the refused rows stand alone.
                    let mid = range.start + range.len() / 2;
                    let job = self.job(table, id);
                    job.ranges.push_front(mid..range.end);
                    job.ranges.push_front(range.start..mid);
                    self.send(table, id);
                    return;
                }
                if self.reject(table, id, range, &error) {
                    self.next_range(table, id);
                }
            }
            Err(Failure::Schema(error)) => {
                self.stats.insert_failures.fetch_add(1, Ordering::Relaxed);
                let range = self
                    .job(table, id)
                    .ranges
                    .pop_front()
                    .expect("a range in flight");
                if self.reject(table, id, range, &error) {
                    self.next_range(table, id);
                }
            }
        }
    }

    /// Batch `id` waits before it is tried again, longer each time.
    fn backoff(&mut self, table: Table, id: BatchId, now: Instant) {
        let job = self.job(table, id);
        let backoff = job.backoff;
        job.backoff = (backoff * 2).min(BACKOFF_MAX);
        self.lanes.failed(table, id, now, backoff);
    }

    /// After a range was set aside: the next one, or the batch is done.
    fn next_range(&mut self, table: Table, id: BatchId) {
        if self.job(table, id).ranges.is_empty() {
            self.finish(table, id);
        } else {
            self.send(table, id);
        }
    }

    /// Sets refused rows aside; `false` if even that failed (the disk): they
    /// are tried again later, never dropped.
    fn reject(&mut self, table: Table, id: BatchId, range: Range<usize>, error: &str) -> bool {
        let batch = self.lanes.in_flight(table, id).expect("a batch in flight");
        let rows: Vec<(u16, u64, bytes::Bytes)> = range
            .clone()
            .map(|i| {
                (
                    batch.rows[i].shard,
                    batch.rows[i].lsn,
                    batch.slice(i..i + 1),
                )
            })
            .collect();
        let written = self.dead.write(
            table,
            rows.iter()
                .map(|(shard, lsn, row)| (*shard, *lsn, &row[..])),
            error,
        );
        match written {
            Ok(n) => {
                self.stats.rejected[table.index()].fetch_add(n, Ordering::Relaxed);
                *self
                    .stats
                    .last_rejection
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some((table, error.to_string()));
                self.job(table, id).rejected += n;
                if let Some(suppressed) = REJECT_LOG.check() {
                    tracing::error!(table = table.name(), rows = n, shard = rows[0].0, lsn = rows[0].1, error,
                        file = %self.dead.path().display(), suppressed,
                        "ClickHouse refused rows for good; set aside in the dead-letter file");
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, file = %self.dead.path().display(),
                    "cannot write the dead-letter file; the rows are tried again later");
                self.job(table, id).ranges.push_front(range);
                self.backoff(table, id, Instant::now());
                false
            }
        }
    }

    /// Every row of batch `id` is in (or set aside).
    fn finish(&mut self, table: Table, id: BatchId) {
        let job = self.jobs[table.index()].remove(&id).expect("a job");
        let Some(batch) = self.lanes.inserted(table, id) else {
            return;
        };
        let rows = batch.rows.len() as u64;
        self.stats.written[table.index()].fetch_add(rows - job.rejected, Ordering::Relaxed);
        self.stats.batches[table.index()].fetch_add(1, Ordering::Relaxed);
        if batch.replayed {
            self.stats.replayed_rows.fetch_add(rows, Ordering::Relaxed);
        }
        self.stats.record_end_to_end(&batch.received);
    }

    /// Reads the logs back where tables need it.
    fn replay(&mut self, now: Instant) {
        for shard in 0..self.logs.len() {
            let Some(from) = self.lanes.wants_log(shard) else {
                continue;
            };
            let until = self.lanes.covered(shard);
            let state = &mut self.logs[shard];
            if state.reader.position() != from {
                state.reader.seek(from);
            }
            let segments = state.info.segments.snapshot();
            let mut fx = Effects::default();
            let lanes = &mut self.lanes;
            let mut budget = REPLAY_PER_TURN;
            let result = state.reader.read(&segments, until, |lsn, len, entry| {
                let go_on = lanes.replayed(shard, lsn, len, entry, now, &mut fx);
                budget = budget.saturating_sub(len as u64);
                go_on && budget > 0
            });
            let pos = state.reader.position();
            match result {
                Ok(_) if pos >= until => self.lanes.read_to(shard, until),
                Ok(_) => {}
                Err(ReadError::Damaged { first, at, damage }) => {
                    let next = segments.iter().find(|s| **s > first).copied();
                    let to = next.unwrap_or(until);
                    let dir = self.logs[shard].info.dir.clone();
                    match segments::quarantine(&dir, first) {
                        Ok(moved) => {
                            self.logs[shard].info.segments.remove(first);
                            self.stats.corrupt_segments.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(shard, segment = first, at, %damage, moved = %moved.display(),
                                lost_from = at, lost_to = to,
                                "log segment damaged: moved aside; the rows from the damage to its end are not replayed");
                        }
                        Err(e) => {
                            tracing::error!(shard, segment = first, error = %e, "cannot move a damaged log segment aside")
                        }
                    }
                    self.logs[shard].reader.seek(to);
                    self.lanes.skipped_to(shard, to);
                }
                Err(ReadError::Io { first, source }) => {
                    if let Some(suppressed) = READ_LOG.check() {
                        tracing::error!(shard, segment = first, error = %source, suppressed, "reading the log back failed; trying again");
                    }
                }
            }
            self.apply(fx);
        }
    }

    /// Writes the checkpoints that moved (at most every 200 ms, or now when
    /// `last`), then deletes the segments every table is done with.
    fn checkpoints(&mut self, now: Instant, last: bool) {
        if !last && now.duration_since(self.last_checkpoint) < CHECKPOINT_EVERY {
            return;
        }
        self.last_checkpoint = now;
        for shard in 0..self.logs.len() {
            let mut cp = Checkpoint {
                commands_at: self.lanes.commands_checkpoint(shard),
                commands: self.logs[shard].commands.clone(),
                last_command_id: self.logs[shard].info.last_command_id,
                ..Default::default()
            };
            for t in Table::ALL {
                cp.tables
                    .insert(t.name().to_string(), self.lanes.checkpoint(shard, t));
            }
            let state = &mut self.logs[shard];
            if state.last_written.as_ref() == Some(&cp) {
                continue;
            }
            if let Err(e) = checkpoint::store(&state.info.dir, &cp) {
                tracing::error!(shard, error = %e, "cannot write the log checkpoint; segments are kept");
                continue;
            }
            let low = cp.low_water().unwrap_or(0);
            state.last_written = Some(cp);
            self.delete_below(shard, low);
            checkpoint::keep_reserve(&self.logs[shard].info.dir);
        }
    }

    /// Deletes the segments that end at or below `low` (never the newest).
    fn delete_below(&mut self, shard: usize, low: u64) {
        let state = &self.logs[shard];
        let segments = state.info.segments.snapshot();
        for pair in segments.windows(2) {
            let (first, next) = (pair[0], pair[1]);
            if next > low {
                break;
            }
            let path = segments::path(&state.info.dir, first);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    state.info.segments.remove(first);
                    state.info.stats.oldest.store(next, Ordering::Relaxed);
                    self.stats.deleted_segments.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    state.info.segments.remove(first);
                }
                Err(e) => {
                    tracing::error!(shard, error = %e, path = %path.display(), "cannot delete a log segment");
                    break;
                }
            }
        }
    }
}
