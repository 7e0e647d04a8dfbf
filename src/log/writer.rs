//! The shard's side of its log: entries appended to a buffer in memory,
//! committed in groups by one task of the shard's executor: a DMA
//! (`O_DIRECT`, io_uring) write of the new blocks, then `fdatasync`. The
//! shard never waits on the disk; what waits is a reply that acknowledges a
//! row, until the commit covering that row is done.
//!
//! Commits are at most one per `log.commit_interval_us` (sooner once
//! `log.commit_bytes` are pending), so a busy shard syncs about a thousand
//! times a second whatever its frame rate, and an idle one syncs at once.
//! The last block of a commit is padded with zeros and written again, whole,
//! by the next commit: the bytes already durable in it are the same in both
//! versions, so even a torn write of that block loses nothing committed.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::io::DmaFile;

use crate::config::LogConfig;
use crate::record::Record;

use super::format;
use super::segments::{self, SegmentList};
use super::Chunk;

/// Where committed entries go: the writers, or nowhere (tests).
pub type ChunkSink = Box<dyn Fn(Chunk)>;

/// What a shard's log shows the rest of the process. Atomics: read by the
/// control socket and the writers, which also lower `bytes` as they delete.
#[derive(Debug, Default)]
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
}

struct State {
    file: Rc<DmaFile>,
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
    pub segments: SegmentList,
    pub stats: Arc<LogStats>,
    sink: ChunkSink,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log segment {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: glommio::GlommioError<()>,
    },
}

impl LogWriter {
    /// Starts a new segment at `start` (where recovery found the end) and
    /// the commit task on the current executor. `stats.oldest` says where
    /// the oldest segment kept starts.
    pub async fn open(
        shard: usize,
        dir: &Path,
        start: u64,
        config: &LogConfig,
        segments: SegmentList,
        stats: Arc<LogStats>,
        sink: ChunkSink,
    ) -> Result<Rc<Self>, LogError> {
        let path = segments::path(dir, start);
        let file = DmaFile::create(&path)
            .await
            .map_err(|source| LogError::Open { path, source })?;
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
                segment: start,
                buf: Vec::with_capacity(1 << 20),
                base: 0,
                received: Vec::new(),
                chunk_start: start,
            }),
            appended: Cell::new(start),
            durable: Cell::new(start),
            max_pending: config.commit_bytes.max(1 << 20) * 64,
            max_bytes: config.max_bytes,
            interval: Duration::from_micros(config.commit_interval_us),
            commit_bytes: config.commit_bytes,
            segment_bytes: config.segment_bytes,
            align,
            waiters: RefCell::new(Vec::new()),
            commit_task: RefCell::new(None),
            room_waiters: RefCell::new(Vec::new()),
            closing: Cell::new(false),
            segments,
            stats,
            sink,
        });
        glommio::spawn_local(commit_loop(log.clone())).detach();
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

    /// Whether the shard should stop reading: the log holds its limit, or
    /// commits fall behind (a failing disk).
    pub fn full(&self) -> bool {
        self.bytes() >= self.max_bytes
            || self.appended.get() - self.durable.get() >= self.max_pending
    }

    /// The bytes the log holds.
    pub fn bytes(&self) -> u64 {
        self.durable
            .get()
            .saturating_sub(self.stats.oldest.load(Ordering::Relaxed))
    }

    /// Waits (counting it, once) until the log has room again.
    pub async fn room(&self) {
        if !self.full() {
            return;
        }
        self.stats.full.fetch_add(1, Ordering::Relaxed);
        futures_lite::future::poll_fn(|cx| {
            if !self.full() {
                return Poll::Ready(());
            }
            self.room_waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Commits what is appended, and stops the commit task.
    pub async fn close(&self) {
        self.closing.set(true);
        self.wake_commit();
        let end = self.appended.get();
        self.durable(end).await;
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
    async fn commit(&self) {
        let started = Instant::now();
        let (file, pos, data, end) = {
            let s = self.state.borrow();
            let end = self.appended.get();
            let used = (end - s.segment - s.base) as usize;
            let len = used.div_ceil(self.align as usize) * self.align as usize;
            let mut data = s.file.alloc_dma_buffer(len);
            let bytes = data.as_bytes_mut();
            bytes[..used].copy_from_slice(&s.buf[..used]);
            bytes[used..].fill(0);
            (s.file.clone(), s.base, data, end)
        };
        let written = data.len() as u64;
        let mut delay = Duration::from_millis(10);
        loop {
            // A copy per attempt: a failed write consumes its buffer.
            let mut attempt = file.alloc_dma_buffer(data.len());
            attempt.as_bytes_mut().copy_from_slice(data.as_bytes());
            let result = match file.write_at(attempt, pos).await {
                Ok(n) if n as u64 == written => file.fdatasync().await.map_err(|e| e.to_string()),
                Ok(n) => Err(format!("short write ({n} of {written} bytes)")),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => break,
                Err(error) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = COMMIT_LOG.check() {
                        tracing::error!(shard = self.shard, %error, suppressed,
                            "log commit failed; retrying (acknowledgements wait, and reading stops once enough is pending)");
                    }
                    glommio::timer::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
        let chunk = {
            let mut s = self.state.borrow_mut();
            // Keep the last, partial block: the next commit writes it again.
            let done = (end - s.segment - s.base) as usize;
            let keep_from = done / self.align as usize * self.align as usize;
            let chunk_bytes = {
                let from = (s.chunk_start - s.segment - s.base) as usize;
                s.buf[from..done].to_vec()
            };
            s.buf.drain(..keep_from);
            s.base += keep_from as u64;
            let received = std::mem::take(&mut s.received);
            let chunk = Chunk {
                shard: self.shard,
                start: s.chunk_start,
                end,
                bytes: chunk_bytes,
                received,
            };
            s.chunk_start = end;
            chunk
        };
        self.durable.set(end);
        let st = &self.stats;
        st.durable.store(end, Ordering::Relaxed);
        st.commits.fetch_add(1, Ordering::Relaxed);
        st.written.fetch_add(written, Ordering::Relaxed);
        st.last_commit_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
        (self.sink)(chunk);
        self.wake_room();
    }

    /// Wakes the readers held back by a full log, when it has room.
    pub fn wake_room(&self) {
        if !self.full() {
            for w in self.room_waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// After a commit past the segment size: the next entries go to a new
    /// segment that starts where the data ends, so positions run on.
    async fn rotate(&self) {
        let start = self.durable.get();
        let path = segments::path(&self.dir, start);
        let file = match DmaFile::create(&path).await {
            Ok(f) => f,
            Err(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = COMMIT_LOG.check() {
                    tracing::error!(shard = self.shard, %error, suppressed, path = %path.display(),
                        "cannot start a new log segment; the current one goes on");
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
            std::mem::replace(&mut s.file, Rc::new(file))
        };
        self.segments.insert(start);
        // The old segment is whole and synced; closing it is all that is left.
        if let Ok(old) = Rc::try_unwrap(old) {
            let _ = old.close().await;
        }
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
                glommio::timer::sleep(at - now).await;
            }
        }
        last_start = Some(Instant::now());
        log.commit().await;
        if log.segment_full() {
            log.rotate().await;
        }
    }
}
