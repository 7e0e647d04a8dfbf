//! The shard's side of its log: entries appended to a buffer in memory,
//! committed in groups by one task of the shard's executor: a DMA
//! (`O_DIRECT`, io_uring) write of the new blocks, durable when it
//! completes (`O_DSYNC` on a prepared segment, one operation instead of a
//! write and an `fdatasync`; a plain new segment gets `fdatasync`). The
//! shard never waits on the disk; what waits is a reply that acknowledges a
//! row, until the commit covering that row is done.
//!
//! Commits are at most one per `log.commit_interval_us` (sooner once
//! `log.commit_bytes` are pending), so a busy shard syncs about a thousand
//! times a second whatever its frame rate, and an idle one syncs at once.
//! The last block of a commit is padded with zeros and written again, whole,
//! by the next commit: the bytes already durable in it are the same in both
//! versions, so even a torn write of that block loses nothing committed.
//!
//! Segments are zero-filled ahead of time (a spare, prepared in the
//! background once the current segment is a quarter full, renamed into
//! place at rotation; the first one at the start), so that a commit overwrites
//! allocated blocks and `fdatasync` has no file size to journal. On ext4 an
//! appending `fdatasync` commits the journal, which waits for every other
//! process's dirty data on the filesystem (ClickHouse's parts, say):
//! measured on this machine with a buffered writer running, p99 36 ms
//! appending against 0.6 ms overwriting, and idle p50 0.20 against 0.10 ms.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime::fs::{DmaBuf, File as DmaFile};

use crate::config::LogConfig;
use crate::record::Record;

use super::format;
use super::segments::{self, SegmentList};
use super::Chunk;

/// Where committed entries go: the writers, or nowhere (tests).
pub type ChunkSink = Box<dyn Fn(Chunk)>;

/// What a shard's log shows the rest of the process. Atomics: read by the
/// control socket and the writers, which also lower `bytes` as they delete.
#[derive(Debug)]
pub struct LogStats {
    /// The first position of the oldest segment kept: the log holds the
    /// bytes from here to `durable`. Raised by the writers as they delete.
    pub oldest: AtomicU64,
    pub commits: AtomicU64,
    /// Bytes written by commits (the padding of their last block included).
    pub written: AtomicU64,
    /// Failed writes or syncs, retried until they succeed.
    pub errors: AtomicU64,
    /// Times the shard stopped reading because the log was full.
    pub full: AtomicU64,
    /// The durable end.
    pub durable: AtomicU64,
    /// Commit durations (write + sync), µs, the last one.
    pub last_commit_us: AtomicU64,
    /// Commit durations, µs (the shard records, the control socket reads).
    pub commit_latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for LogStats {
    fn default() -> Self {
        Self {
            oldest: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            written: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            full: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            last_commit_us: AtomicU64::new(0),
            commit_latency: std::sync::Mutex::new(crate::metrics::latency_histogram()),
        }
    }
}

struct State {
    file: Rc<DmaFile>,
    /// The file is open with `O_DSYNC`: a write is durable once done, with
    /// no `fdatasync` (a zero-filled segment: overwrites journal nothing).
    dsync: bool,
    /// The segment's first position.
    segment: u64,
    /// Bytes from `base` (a block boundary of the segment) to the end of
    /// what is appended.
    buf: Vec<u8>,
    base: u64,
    /// Rows appended since the last chunk went out, with their read times.
    received: Vec<Instant>,
    /// Where the entries not yet handed to the writers start.
    chunk_start: u64,
}

pub struct LogWriter {
    shard: usize,
    dir: PathBuf,
    state: RefCell<State>,
    /// The end of what is appended and of what is durable.
    appended: Cell<u64>,
    durable: Cell<u64>,
    /// Set when a commit cannot keep up (the disk failing or full): appends
    /// beyond this many uncommitted bytes make the shard stop reading.
    max_pending: u64,
    max_bytes: u64,
    interval: Duration,
    commit_bytes: u64,
    segment_bytes: u64,
    align: u64,
    waiters: RefCell<Vec<Waker>>,
    commit_task: RefCell<Option<Waker>>,
    room_waiters: RefCell<Vec<Waker>>,
    closing: Cell<bool>,
    /// The last commit attempt failed (the disk full or failing).
    failing: Cell<bool>,
    /// Readers wait for room (and a task watches for it).
    stopped: Cell<bool>,
    spare: RefCell<Spare>,
    /// Whether the current segment was zero-filled (one that is not, made
    /// when no spare could be, is replaced as soon as a spare is ready).
    preallocated: Cell<bool>,
    pub segments: SegmentList,
    pub stats: Arc<LogStats>,
    /// Taken out at close: tasks still pending when the executor ends must
    /// not keep the writers' channel open.
    sink: RefCell<Option<ChunkSink>>,
    /// Commits not yet handed on (see `hand_on`), and whether a task will.
    outbox: RefCell<Option<Chunk>>,
    handoff_pending: Cell<bool>,
}

/// The next segment, zero-filled ahead of time.
enum Spare {
    /// None ready; after a failure, not before this instant.
    Missing {
        retry_at: Option<Instant>,
    },
    Preparing,
    Ready(DmaFile),
}

/// The spare's name while it waits: not a segment name, so never listed.
const SPARE: &str = "spare.tmp";

/// How often a stopped shard looks for room in its log.
const ROOM_POLL: Duration = Duration::from_millis(5);

/// Zeros written per request while preparing a spare.
const ZERO_CHUNK: u64 = 256 << 10;

/// Commits are handed on to the writers at least this often ...
const HANDOFF_EVERY: Duration = Duration::from_millis(10);
/// ... or once this many bytes of them wait.
const HANDOFF_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log segment {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LogWriter {
    /// Starts a new segment at `start` (where recovery found the end) and
    /// the commit task on the current executor. `stats.oldest` says where
    /// the oldest segment kept starts. The log holds at most its share of
    /// `log.max_bytes`, split evenly over `shards`.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        shard: usize,
        dir: &Path,
        start: u64,
        config: &LogConfig,
        shards: usize,
        segments: SegmentList,
        stats: Arc<LogStats>,
        sink: ChunkSink,
    ) -> Result<Rc<Self>, LogError> {
        let path = segments::path(dir, start);
        let size = spare_size(config.segment_bytes, config.commit_bytes);
        // The first segment is zero-filled too, before any badge is read
        // (about 60 ms for 64 MiB here), or is the spare the last run left:
        // badges reconnect all at once after a restart, the worst time for
        // slow appending syncs, or for a spare's zeros competing with them.
        let mut first = reuse_spare(dir, &path, size).await;
        if first.is_none() {
            if let Ok(spare) = zero_filled(&dir.join(SPARE), size, &Cell::new(false)).await {
                drop(spare);
                first = reuse_spare(dir, &path, size).await;
            }
        }
        // Without one (a full disk, say) a plain file will do.
        let (file, preallocated) = match first {
            Some(file) => (file, true),
            None => (
                DmaFile::create(&path).map_err(|source| LogError::Open { path, source })?,
                false,
            ),
        };
        // Whole pages: what the device needs, and what the page cache of a
        // reader of the same file deals in.
        let align = file.alignment().max(4096);
        segments.insert(start);
        stats.durable.store(start, Ordering::Relaxed);
        if stats.oldest.load(Ordering::Relaxed) == 0 {
            stats.oldest.store(start, Ordering::Relaxed);
        }
        let log = Rc::new(Self {
            shard,
            dir: dir.to_owned(),
            state: RefCell::new(State {
                file: Rc::new(file),
                dsync: preallocated,
                segment: start,
                buf: Vec::with_capacity(1 << 20),
                base: 0,
                received: Vec::new(),
                chunk_start: start,
            }),
            appended: Cell::new(start),
            durable: Cell::new(start),
            max_pending: config.commit_bytes.max(1 << 20) * 64,
            max_bytes: config.max_bytes / shards.max(1) as u64,
            interval: Duration::from_micros(config.commit_interval_us),
            commit_bytes: config.commit_bytes,
            segment_bytes: config.segment_bytes,
            align,
            waiters: RefCell::new(Vec::new()),
            commit_task: RefCell::new(None),
            room_waiters: RefCell::new(Vec::new()),
            closing: Cell::new(false),
            failing: Cell::new(false),
            stopped: Cell::new(false),
            spare: RefCell::new(Spare::Missing { retry_at: None }),
            preallocated: Cell::new(preallocated),
            segments,
            stats,
            sink: RefCell::new(Some(sink)),
            outbox: RefCell::new(None),
            handoff_pending: Cell::new(false),
        });
        if !preallocated {
            log.prepare_spare();
        }
        crate::runtime::spawn_local(commit_loop(log.clone())).detach();
        Ok(log)
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Appends a row; its ingest sequence becomes its position. Returns the
    /// end of the log after it: the position to wait for.
    pub fn append(&self, record: &Record, received: Instant) -> u64 {
        let mut s = self.state.borrow_mut();
        let lsn = self.appended.get();
        let before = s.buf.len();
        if let Err(e) = format::push_row(&mut s.buf, record, lsn) {
            // The row structs are fixed: this is a bug, not bad input.
            tracing::error!(error = %e, table = record.table().name(), "row not serialisable");
            return lsn;
        }
        s.received.push(received);
        self.appended(&s, before)
    }

    /// Appends a badge's queued commands as they now are.
    pub fn append_commands(&self, json: &[u8]) -> u64 {
        let mut s = self.state.borrow_mut();
        let before = s.buf.len();
        format::push_commands(&mut s.buf, json);
        self.appended(&s, before)
    }

    fn appended(&self, s: &State, before: usize) -> u64 {
        let end = self.appended.get() + (s.buf.len() - before) as u64;
        self.appended.set(end);
        if let Some(w) = self.commit_task.borrow_mut().take() {
            w.wake();
        }
        end
    }

    pub fn appended_end(&self) -> u64 {
        self.appended.get()
    }

    pub fn durable_end(&self) -> u64 {
        self.durable.get()
    }

    /// Waits until everything up to `lsn` is durable.
    pub async fn durable(&self, lsn: u64) {
        futures_lite::future::poll_fn(|cx| {
            if self.durable.get() >= lsn {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Whether the shard should stop reading: the log holds its limit,
    /// commits fail (a full or failing disk), or fall far behind.
    pub fn full(&self) -> bool {
        self.bytes() >= self.max_bytes
            || self.failing.get()
            || self.appended.get() - self.durable.get() >= self.max_pending
    }

    /// The bytes the log holds.
    pub fn bytes(&self) -> u64 {
        self.durable
            .get()
            .saturating_sub(self.stats.oldest.load(Ordering::Relaxed))
    }

    /// Waits until the log has room again. The shard's stop is counted and
    /// said once, however many connections wait.
    pub async fn room(self: &Rc<Self>) {
        if !self.full() {
            return;
        }
        self.watch_room();
        futures_lite::future::poll_fn(|cx| {
            if !self.full() {
                return Poll::Ready(());
            }
            self.room_waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Room comes from the writers' thread (segments inserted and deleted),
    /// which cannot wake a shard's tasks: while readers wait, one task looks
    /// every few milliseconds.
    fn watch_room(self: &Rc<Self>) {
        if self.stopped.replace(true) {
            return;
        }
        self.stats.full.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            shard = self.shard,
            bytes = self.bytes(),
            max_bytes = self.max_bytes,
            failing = self.failing.get(),
            "log full (or its disk failing): the shard stops reading sockets until there is room; nothing is dropped"
        );
        let log = self.clone();
        crate::runtime::spawn_local(async move {
            let since = Instant::now();
            while log.full() && !log.closing.get() {
                crate::runtime::sleep(ROOM_POLL).await;
            }
            log.stopped.set(false);
            for w in log.room_waiters.borrow_mut().drain(..) {
                w.wake();
            }
            tracing::info!(
                shard = log.shard,
                stopped_ms = since.elapsed().as_millis() as u64,
                "log has room again: reading goes on"
            );
        })
        .detach();
    }

    /// Commits what is appended, stops the commit task, and lets the
    /// writers' channel go.
    pub async fn close(&self) {
        self.closing.set(true);
        self.wake_commit();
        let end = self.appended.get();
        self.durable(end).await;
        // A spare being zero-filled stops at its next write.
        let deadline = Instant::now() + Duration::from_secs(1);
        while matches!(*self.spare.borrow(), Spare::Preparing) && Instant::now() < deadline {
            crate::runtime::sleep(Duration::from_millis(1)).await;
        }
        self.flush_outbox();
        self.sink.borrow_mut().take();
    }

    fn wake_commit(&self) {
        if let Some(w) = self.commit_task.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until there is something to commit, and it is time to.
    async fn due(&self) -> bool {
        futures_lite::future::poll_fn(|cx| {
            if self.appended.get() > self.durable.get() || self.closing.get() {
                return Poll::Ready(());
            }
            *self.commit_task.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        !(self.closing.get() && self.appended.get() == self.durable.get())
    }

    /// One commit: the new blocks written, synced, and the entries handed on.
    async fn commit(self: &Rc<Self>) {
        let started = Instant::now();
        let end = self.appended.get();
        let mut delay = Duration::from_millis(10);
        let written = loop {
            // Built afresh per attempt (a failed write consumes its buffer);
            // the bytes stay in `buf` until the commit succeeds.
            let (file, pos, data, dsync) = {
                let s = self.state.borrow();
                let used = (end - s.segment - s.base) as usize;
                let len = used.div_ceil(self.align as usize) * self.align as usize;
                let mut data = DmaBuf::new(len);
                let bytes = data.as_bytes_mut();
                bytes[..used].copy_from_slice(&s.buf[..used]);
                bytes[used..].fill(0);
                (s.file.clone(), s.base, data, s.dsync)
            };
            let written = data.len() as u64;
            let result = match file.write_at(data, pos).await {
                Ok(n) if n as u64 == written && dsync => Ok(()),
                Ok(n) if n as u64 == written => file.fdatasync().await.map_err(|e| e.to_string()),
                Ok(n) => Err(format!("short write ({n} of {written} bytes)")),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => {
                    self.failing.set(false);
                    break written;
                }
                Err(error) => {
                    self.failing.set(true);
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = COMMIT_LOG.check() {
                        tracing::error!(shard = self.shard, %error, suppressed,
                            "log commit failed; retrying (acknowledgements wait, and reading stops once enough is pending)");
                    }
                    crate::runtime::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        {
            let mut s = self.state.borrow_mut();
            // Keep the last, partial block: the next commit writes it again.
            let done = (end - s.segment - s.base) as usize;
            let keep_from = done / self.align as usize * self.align as usize;
            let from = (s.chunk_start - s.segment - s.base) as usize;
            let received = std::mem::take(&mut s.received);
            // Straight into the outbox (see `hand_on`): the bytes are
            // copied once, however many commits it joins.
            self.stage(s.chunk_start, end, &s.buf[from..done], received);
            s.buf.drain(..keep_from);
            s.base += keep_from as u64;
            s.chunk_start = end;
        }
        self.durable.set(end);
        let st = &self.stats;
        st.durable.store(end, Ordering::Relaxed);
        st.commits.fetch_add(1, Ordering::Relaxed);
        st.written.fetch_add(written, Ordering::Relaxed);
        let took = started.elapsed().as_micros() as u64;
        st.last_commit_us.store(took, Ordering::Relaxed);
        if let Ok(mut h) = st.commit_latency.lock() {
            let _ = h.record(took.max(1));
        }
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
        self.hand_on();
    }

    /// Adds a commit's entries (`start..end`) to the outbox.
    fn stage(&self, start: u64, end: u64, bytes: &[u8], mut received: Vec<Instant>) {
        let mut outbox = self.outbox.borrow_mut();
        let o = outbox.get_or_insert_with(|| Chunk {
            shard: self.shard,
            start,
            end: start,
            bytes: Vec::with_capacity(bytes.len()),
            received: Vec::new(),
        });
        debug_assert_eq!(o.end, start, "commits hand on in order");
        o.end = end;
        o.bytes.extend_from_slice(bytes);
        o.received.append(&mut received);
    }

    /// Passes the outbox on to the writers, with the other commits of the
    /// last few milliseconds: one commit a millisecond would wake the
    /// writers' thread a thousand times a second for each shard, for rows
    /// it batches far longer than that anyway.
    fn hand_on(self: &Rc<Self>) {
        let big = self
            .outbox
            .borrow()
            .as_ref()
            .is_some_and(|o| o.bytes.len() >= HANDOFF_BYTES);
        if big || self.closing.get() {
            self.flush_outbox();
        } else if !self.handoff_pending.replace(true) {
            let log = self.clone();
            crate::runtime::spawn_local(async move {
                crate::runtime::sleep(HANDOFF_EVERY).await;
                log.handoff_pending.set(false);
                log.flush_outbox();
            })
            .detach();
        }
    }

    fn flush_outbox(&self) {
        let Some(chunk) = self.outbox.borrow_mut().take() else {
            return;
        };
        if let Some(sink) = &*self.sink.borrow() {
            sink(chunk);
        }
    }

    /// Starts zero-filling the next segment in the background, unless one
    /// is ready or on its way, or a failure is too recent.
    fn prepare_spare(self: &Rc<Self>) {
        if let Spare::Missing { retry_at } = &*self.spare.borrow() {
            if retry_at.is_some_and(|at| Instant::now() < at) {
                return;
            }
        } else {
            return;
        }
        *self.spare.borrow_mut() = Spare::Preparing;
        let log = self.clone();
        crate::runtime::spawn_local(async move {
            let path = log.dir.join(SPARE);
            let size = spare_size(log.segment_bytes, log.commit_bytes);
            let left = if whole_spare(&path, size) {
                DmaFile::open_write(&path, 0).ok()
            } else {
                None
            };
            let made = match left {
                Some(file) => Ok(file),
                None => zero_filled(&path, size, &log.closing).await,
            };
            let next = match made {
                Ok(file) => Spare::Ready(file),
                Err(error) => {
                    if !log.closing.get() {
                        log.stats.errors.fetch_add(1, Ordering::Relaxed);
                        if let Some(suppressed) = COMMIT_LOG.check() {
                            tracing::error!(shard = log.shard, %error, suppressed, path = %path.display(),
                                "cannot prepare the next log segment; the current one goes on growing");
                        }
                    }
                    Spare::Missing {
                        retry_at: Some(Instant::now() + Duration::from_secs(1)),
                    }
                }
            };
            *log.spare.borrow_mut() = next;
        })
        .detach();
    }

    /// After a commit: the next entries go to a new segment once the
    /// current one is past its size, or was not zero-filled and the spare
    /// is ready. The new segment starts where the data ends, so positions
    /// run on.
    ///
    /// Without a spare (the disk full, say), a full segment still ends: the
    /// next one is a plain new file. Only the newest segment can never be
    /// deleted, so this bounds what a full disk can keep.
    async fn maybe_rotate(self: &Rc<Self>) {
        let ready = matches!(*self.spare.borrow(), Spare::Ready(_));
        if !(self.segment_full() || (ready && !self.preallocated.get())) {
            return;
        }
        let start = self.durable.get();
        let path = segments::path(&self.dir, start);
        let next = if ready {
            let Spare::Ready(file) = std::mem::replace(
                &mut *self.spare.borrow_mut(),
                Spare::Missing { retry_at: None },
            ) else {
                unreachable!("checked above")
            };
            match file.rename(&path) {
                // Written through from now on: the same file, open O_DSYNC.
                Ok(()) => {
                    let reopened = open_dsync(&path);
                    drop(file);
                    reopened.map(|f| (f, true))
                }
                Err(e) => Err(e.to_string()),
            }
        } else {
            self.prepare_spare();
            DmaFile::create(&path)
                .map(|file| (file, false))
                .map_err(|e| e.to_string())
        };
        // The name must be durable before anything acknowledged is in it.
        let next = match next {
            Ok(next) => match sync_dir(&self.dir).await {
                Ok(()) => Ok(next),
                Err(e) => {
                    let _ = next.0.remove();
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        let (file, preallocated) = match next {
            Ok(next) => next,
            Err(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = COMMIT_LOG.check() {
                    tracing::error!(shard = self.shard, %error, suppressed, path = %path.display(),
                        "cannot start a new log segment; the current one goes on");
                }
                if ready {
                    *self.spare.borrow_mut() = Spare::Missing {
                        retry_at: Some(Instant::now() + Duration::from_secs(1)),
                    };
                }
                return;
            }
        };
        let old = {
            let mut s = self.state.borrow_mut();
            // Entries appended since the commit move to the new segment's start.
            let done = (start - s.segment - s.base) as usize;
            s.buf.drain(..done);
            s.base = 0;
            s.segment = start;
            s.dsync = preallocated;
            std::mem::replace(&mut s.file, Rc::new(file))
        };
        self.preallocated.set(preallocated);
        self.segments.insert(start);
        if !preallocated {
            self.prepare_spare();
        }
        // The old segment is whole and synced; closing it is all that is left.
        drop(old);
    }

    /// The next spare is made once the segment is a quarter full: long
    /// before it is needed, and not at a start or a rotation, when the
    /// zeros would compete with the commits of a reconnecting fleet.
    fn spare_due(&self) -> bool {
        let s = self.state.borrow();
        (self.durable.get() - s.segment) * 4 >= self.segment_bytes
    }

    fn segment_full(&self) -> bool {
        let s = self.state.borrow();
        self.durable.get() - s.segment >= self.segment_bytes
    }

    /// When the next commit may start.
    fn next_commit(&self, last_start: Option<Instant>) -> Option<Instant> {
        let pending = self.appended.get() - self.durable.get();
        if pending >= self.commit_bytes || self.closing.get() {
            return None;
        }
        last_start.map(|t| t + self.interval)
    }
}

static COMMIT_LOG: crate::logging::LogLimit = crate::logging::LogLimit::per_second();

async fn commit_loop(log: Rc<LogWriter>) {
    let mut last_start: Option<Instant> = None;
    loop {
        if !log.due().await {
            return;
        }
        if let Some(at) = log.next_commit(last_start) {
            let now = Instant::now();
            if at > now {
                crate::runtime::sleep(at - now).await;
            }
        }
        last_start = Some(Instant::now());
        log.commit().await;
        log.maybe_rotate().await;
        if log.spare_due() {
            log.prepare_spare();
        }
    }
}

async fn sync_dir(dir: &Path) -> Result<(), String> {
    crate::runtime::fs::sync_dir(dir)
        .await
        .map_err(|e| format!("syncing {}: {e}", dir.display()))
}

/// The size of a spare: a segment and one commit's worth past its end.
fn spare_size(segment_bytes: u64, commit_bytes: u64) -> u64 {
    (segment_bytes + commit_bytes).div_ceil(ZERO_CHUNK) * ZERO_CHUNK
}

/// Whether the spare a previous run left at `path` is whole: the zeros
/// are written in order, each extending the file, so a run that died while
/// making it left it shorter. (Were it not all zeros after all, recovery
/// would find where the entries end by their CRCs, as in any segment.)
fn whole_spare(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// A zero-filled segment, written through: each write is durable once done.
fn open_dsync(path: &Path) -> Result<DmaFile, String> {
    DmaFile::open_write(path, libc::O_DSYNC).map_err(|e| e.to_string())
}

/// At a start: the spare in `dir`, renamed to `segment` (the name
/// synced) and open `O_DSYNC`; `None` when there is no whole one.
async fn reuse_spare(dir: &Path, segment: &Path, size: u64) -> Option<DmaFile> {
    let spare = dir.join(SPARE);
    if !whole_spare(&spare, size) {
        return None;
    }
    std::fs::rename(&spare, segment).ok()?;
    if sync_dir(dir).await.is_err() {
        let _ = std::fs::remove_file(segment);
        return None;
    }
    open_dsync(segment).ok()
}

/// A new file at `path` of `size` zeros, synced; given up when `closing`,
/// and removed when it cannot be made whole (a full disk keeps no half
/// spare).
async fn zero_filled(path: &Path, size: u64, closing: &Cell<bool>) -> Result<DmaFile, String> {
    let file = DmaFile::create(path).map_err(|e| e.to_string())?;
    let mut pos = 0;
    let mut failure = None;
    while pos < size && failure.is_none() {
        if closing.get() {
            failure = Some("the log is closing".to_string());
            break;
        }
        let zeros = DmaBuf::new(ZERO_CHUNK as usize);
        match file.write_at(zeros, pos).await {
            Ok(0) => failure = Some("the disk took no bytes".into()),
            Ok(n) => pos += n as u64,
            Err(e) => failure = Some(e.to_string()),
        }
    }
    if failure.is_none() {
        if let Err(e) = file.fdatasync().await {
            failure = Some(e.to_string());
        }
    }
    match failure {
        None => Ok(file),
        Some(e) => {
            let _ = file.remove();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format::Entry;
    use crate::record::{HeartbeatRow, Record};

    fn heartbeat(serial: u16) -> Record {
        Record::Heartbeats(HeartbeatRow {
            imei: 860_000_000_000_017,
            server_time: 1_749_988_800,
            protocol: 0x13,
            serial,
            terminal_info: 4,
            battery: 5,
            gsm_signal: 6,
            language: 1,
            extension: "x".repeat(100),
            ingest_instance: "test",
            ingest_shard: 0,
            ingest_seq: 0,
        })
    }

    /// Rows appended in bursts, waited for, across several rotations: every
    /// commit handed on once and in order, the log on disk the same bytes,
    /// and every segment zero-filled ahead of time.
    #[test]
    fn commits_run_on_across_zero_filled_segments() {
        let (dir, config) = fresh("badge-logw");
        let (chunks, end) = write_bursts(&dir, &config, 1000, 400);
        // The chunks tile the log.
        assert_eq!(chunks.first().unwrap().start, 1000);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!(chunks.last().unwrap().end, end);
        let segments = segments::list(&dir).unwrap();
        assert!(segments.len() >= 4, "{segments:?}");
        let spare_size = spare_size(config.segment_bytes, config.commit_bytes);
        for first in &segments {
            let len = std::fs::metadata(segments::path(&dir, *first))
                .unwrap()
                .len();
            assert_eq!(len, spare_size, "segment {first} was not zero-filled ahead");
        }
        // Read back from disk: every row, in order, with its position as key.
        let found = segments::recover(&dir, 0).unwrap();
        assert_eq!((found.end, found.torn_bytes), (end, 0));
        let mut reader = segments::Reader::new(&dir, 1000);
        let mut rows = 0u32;
        let mut from_disk = Vec::new();
        reader
            .read(&found.segments, end, |lsn, len, entry| {
                assert!(matches!(entry, Entry::Row { .. }));
                assert!(len > 100);
                from_disk.push(lsn);
                rows += 1;
                true
            })
            .unwrap();
        assert_eq!(rows, 40_000);
        let in_chunks: Vec<u64> = chunks
            .iter()
            .flat_map(|c| format::entries(&c.bytes).map(|e| c.start + e.unwrap().0 as u64))
            .collect();
        assert_eq!(in_chunks, from_disk);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A log opened where a previous run left a whole spare starts on it
    /// (zero-filled, written through), and what both runs wrote reads back.
    #[test]
    fn a_restart_starts_on_the_spare_the_last_run_left() {
        let (dir, config) = fresh("badge-logw-spare");
        let size = spare_size(config.segment_bytes, config.commit_bytes);
        // A quarter of a segment and more: the run makes its next spare.
        let (_, first_end) = write_bursts(&dir, &config, 1000, 30);
        let spare = dir.join(SPARE);
        assert_eq!(std::fs::metadata(&spare).map(|m| m.len()).ok(), Some(size));

        let (_, end) = write_bursts(&dir, &config, first_end, 5);
        assert!(!spare.exists(), "the spare was not taken");
        let second = std::fs::metadata(segments::path(&dir, first_end)).unwrap();
        assert_eq!(second.len(), size, "the restart did not start on the spare");
        let found = segments::recover(&dir, 0).unwrap();
        assert_eq!((found.end, found.torn_bytes), (end, 0));
        let mut rows = 0u32;
        segments::Reader::new(&dir, 1000)
            .read(&found.segments, end, |_, _, _| {
                rows += 1;
                true
            })
            .unwrap();
        assert_eq!(rows, 3_500);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An empty directory of this test process, and a log config with small
    /// segments and short commit intervals.
    fn fresh(tag: &str) -> (PathBuf, LogConfig) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = LogConfig {
            segment_bytes: 1 << 20,
            commit_interval_us: 200,
            ..LogConfig::default()
        };
        (dir, config)
    }

    /// Opens the log in `dir` at `start`, appends `bursts` bursts of 100
    /// heartbeats (each waited for), and closes it: the chunks handed on,
    /// and the end.
    fn write_bursts(dir: &Path, config: &LogConfig, start: u64, bursts: u16) -> (Vec<Chunk>, u64) {
        let (d, c) = (dir.to_owned(), config.clone());
        crate::runtime::Builder::new("log-test")
            .spawn(move || async move {
                let chunks = Rc::new(RefCell::new(Vec::<Chunk>::new()));
                let seen = chunks.clone();
                let log = LogWriter::open(
                    0,
                    &d,
                    start,
                    &c,
                    1,
                    SegmentList::default(),
                    Arc::new(LogStats::default()),
                    Box::new(move |chunk| seen.borrow_mut().push(chunk)),
                )
                .await
                .unwrap();
                for burst in 0..bursts {
                    let mut end = 0;
                    for i in 0..100 {
                        end = log.append(&heartbeat(burst * 100 + i), Instant::now());
                    }
                    log.durable(end).await;
                    assert!(log.durable_end() >= end);
                }
                // A spare being made is given up at close: let it finish.
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(*log.spare.borrow(), Spare::Preparing) && Instant::now() < deadline {
                    crate::runtime::sleep(Duration::from_millis(1)).await;
                }
                log.close().await;
                let end = log.appended_end();
                let chunks = std::mem::take(&mut *chunks.borrow_mut());
                (chunks, end)
            })
            .unwrap()
            .join()
            .unwrap()
    }
}
