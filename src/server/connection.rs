//! One badge connection: read into the shard's buffer, split frames, feed
//! them to the ingest core, and carry out what it decided: write the
//! replies, queue the rows, start the lookups, close replaced connections
//! and hand the socket off. Back only for replies.

use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use futures_lite::future::poll_fn;

use crate::runtime::net::TcpStream;

use crate::ingest::{Badge, CloseReason, End, Outcome};

use super::limits::ConnPermit;
use super::shard::{unix_now, ConnShared, Handoff, Shard, ShardMsg};

pub(crate) struct Conn {
    badge: Badge,
    shared: Rc<ConnShared>,
    /// Travels with the socket on a handoff.
    permit: Option<ConnPermit>,
    /// The start of a frame whose end has not arrived yet. Empty (and
    /// unallocated) between frames, which is what keeps idle connections small.
    partial: Vec<u8>,
    /// Bytes read before login, against `limits.prelogin_bytes`. This and
    /// `replies` are 32 bits: `Conn` is in every idle badge's task.
    prelogin_bytes: u32,
    /// Frames in the current second, against `limits.max_frames_per_sec`.
    rate: RateWindow,
    /// Replies the socket would not take at once.
    unsent: Vec<u8>,
    /// The log position the replies in `unsent` wait for.
    ack_lsn: u64,
    /// Replies made since the last write, for the latency histogram.
    replies: u32,
    /// Set when the connection went over its frame rate: how long to
    /// stop reading before the next read ...
    pause: Option<std::time::Duration>,
    /// ... and the bytes read but not yet decoded, decoded then.
    held: Vec<u8>,
    /// This turn waited (and so let the shard's other tasks run).
    waited: bool,
}

/// The panic-injection hook of the tests (`tests/hostile.rs`): a shard
/// panics when the IMEI in `BADGE_TEST_PANIC_IMEI` logs in, to show that
/// the process then exits instead of living on without the shard.
fn test_panic(imei: Option<crate::protocol::Imei>) {
    static IMEI: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let target = IMEI.get_or_init(|| std::env::var("BADGE_TEST_PANIC_IMEI").ok());
    if let (Some(target), Some(imei)) = (target, imei) {
        if *target == imei.to_string() {
            panic!("BADGE_TEST_PANIC_IMEI {imei} logged in");
        }
    }
}

/// Frames counted over one-second windows: a burst of up to a second's
/// worth passes, a steady flood waits for the next window.
#[derive(Default)]
struct RateWindow {
    start: Option<Instant>,
    frames: u32,
}

impl RateWindow {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

    /// Counts one more frame at `now`; false when the window has no room
    /// left under `max` (0: no cap).
    fn take(&mut self, max: u32, now: Instant) -> bool {
        if max == 0 {
            return true;
        }
        let start = *self.start.get_or_insert(now);
        if now.duration_since(start) >= Self::WINDOW {
            self.start = Some(now);
            self.frames = 0;
        }
        if self.frames >= max {
            return false;
        }
        self.frames += 1;
        true
    }

    /// How long until the window has room again.
    fn wait(&self, now: Instant) -> std::time::Duration {
        self.start.map_or(std::time::Duration::ZERO, |s| {
            (s + Self::WINDOW).saturating_duration_since(now)
        })
    }
}

/// What to do after a read. Small, as it is kept across the flush (see
/// `run`); a handoff's bytes wait in the task's `pending_input`.
enum Step {
    Continue,
    Handoff { owner: usize },
    Close(CloseReason),
}

impl Conn {
    pub fn new(
        id: u64,
        peer: SocketAddr,
        shared: Rc<ConnShared>,
        permit: ConnPermit,
        adopted: bool,
    ) -> Self {
        Self {
            badge: Badge::new(id, peer, adopted),
            shared,
            permit: Some(permit),
            partial: Vec::new(),
            prelogin_bytes: 0,
            rate: RateWindow::default(),
            unsent: Vec::new(),
            ack_lsn: 0,
            replies: 0,
            pause: None,
            held: Vec::new(),
            waited: false,
        }
    }
}

/// The connection's task. Written as an `async move` block, not an `async
/// fn`: an `async fn` keeps its arguments twice in its future (as
/// arguments and as the locals they move into), and this future is what
/// every idle badge costs.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    mut conn: Conn,
    mut pending_input: Vec<u8>,
) -> impl std::future::Future<Output = ()> {
    async move {
        let reason = loop {
            // `received` is when the bytes were read, not when the wait began:
            // the reply latency must not include the badge's silence.
            if let Some(pause) = conn.pause.take() {
                shard.counters().rate_limited += 1;
                crate::runtime::sleep(pause).await;
                pending_input = std::mem::take(&mut conn.held);
            }
            let (step, received) = if !pending_input.is_empty() {
                let input = std::mem::take(&mut pending_input);
                let received = Instant::now();
                (
                    conn.feed(&shard, &input, received, &mut pending_input),
                    received,
                )
            } else {
                // A full log (ClickHouse away too long, or a failing disk) stops
                // reading: TCP then holds the badges back.
                if shard.log.full() {
                    Box::pin(shard.log.room()).await;
                }
                // Wait for bytes from the badge, or for a command to write to it.
                let event = poll_fn(|cx| {
                    if !conn.shared.downlink.borrow().is_empty() {
                        return Poll::Ready(None);
                    }
                    let mut waker = conn.shared.waker.borrow_mut();
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    drop(waker);
                    stream.poll_recv(cx).map(Some)
                })
                .await;
                let received = Instant::now();
                let step = match event {
                    None => {
                        let frames = std::mem::take(&mut *conn.shared.downlink.borrow_mut());
                        conn.unsent.extend_from_slice(&frames);
                        Step::Continue
                    }
                    Some(Ok(None)) => {
                        break conn.shared.close.get().unwrap_or(CloseReason::PeerClosed)
                    }
                    Some(Err(_)) => break conn.shared.close.get().unwrap_or(CloseReason::IoError),
                    Some(Ok(Some(buf))) => {
                        conn.shared.last_seen.set(received);
                        shard.counters().bytes_in += buf.len() as u64;
                        // The buffer goes back to the kernel once decoded.
                        conn.feed(&shard, &buf, received, &mut pending_input)
                    }
                };
                (step, received)
            };
            // The next receive goes out with this turn's send, when the
            // connection reads on right after it.
            let reads_on =
                matches!(step, Step::Continue) && conn.pause.is_none() && conn.held.is_empty();
            if let Err(reason) = conn.flush(&shard, &mut stream, received, reads_on).await {
                // A write fails when the connection was closed from outside
                // (timeout, newer login, shutdown): that is the reason to record.
                break conn.shared.close.get().unwrap_or(reason);
            }
            match step {
                Step::Continue => {}
                Step::Close(reason) => break reason,
                Step::Handoff { owner } => {
                    let bytes = std::mem::take(&mut pending_input);
                    Box::pin(conn.hand_off(&shard, stream, owner, bytes)).await;
                    return;
                }
            }
            // A read that returns data does not yield by itself: without this,
            // a client that keeps bytes queued would be served for as long as
            // it likes, and the shard's other connections, its timer and its
            // inbox would wait. One read's worth of frames per turn; a turn
            // that waited (for its commit, or on the socket) has already let
            // the others run.
            if !std::mem::take(&mut conn.waited) {
                futures_lite::future::yield_now().await;
            }
        };
        if reason == CloseReason::Shutdown && conn.shared.owed.get() > 0 {
            Box::pin(conn.owed_replies(&shard, &mut stream)).await;
        }
        Box::pin(conn.finish(&shard, reason)).await;
        drop(stream);
    }
}

impl Conn {
    /// Splits `input` (after any partial frame kept from before) into
    /// frames, feeds each to the core, and carries out all of its outcome
    /// that needs no waiting. Synchronous: nothing else runs on the shard
    /// meanwhile, so the shard's buffers can be borrowed freely. With
    /// `Step::Handoff`, `handed` has the bytes from the login frame on.
    fn feed(
        &mut self,
        shard: &Rc<Shard>,
        input: &[u8],
        received: Instant,
        handed: &mut Vec<u8>,
    ) -> Step {
        let limits = &shard.config.limits;
        if self.badge.imei().is_none() {
            let len = u32::try_from(input.len()).unwrap_or(u32::MAX);
            self.prelogin_bytes = self.prelogin_bytes.saturating_add(len);
        }
        // The partial frame grows in place, and the decoder is told how
        // much of it it has already seen: a frame costs the same however
        // it is split.
        let seen = self.partial.len();
        let data: &[u8] = if seen == 0 {
            input
        } else {
            self.partial.extend_from_slice(input);
            &self.partial
        };
        let now = unix_now();
        let mut out = shard.outcome.borrow_mut();
        out.clear();
        let mut pos = 0;
        let mut step = Step::Continue;
        let mut held = None;
        {
            let mut core = shard.core.borrow_mut();
            let mut decoder = shard.decoder.borrow_mut();
            while let Some(frame) = decoder.next_frame_since(data, &mut pos, seen) {
                if !self.rate.take(limits.max_frames_per_sec, received) {
                    // Over its rate: the rest waits, unread, for the next window.
                    decoder.unread(&frame);
                    let start = frame.raw.as_ptr() as usize - data.as_ptr() as usize;
                    held = Some(data[start..].to_vec());
                    pos = data.len();
                    break;
                }
                self.badge.on_frame(&frame, now, &mut core, &mut out);
                match out.end {
                    None => continue,
                    Some(End::Close(reason)) => step = Step::Close(reason),
                    Some(End::Handoff { owner }) => {
                        // The owner reads this frame again and counts it there.
                        decoder.unread(&frame);
                        let start = frame.raw.as_ptr() as usize - data.as_ptr() as usize;
                        *handed = data[start..].to_vec();
                        step = Step::Handoff { owner };
                    }
                }
                break;
            }
        }
        if !matches!(step, Step::Handoff { .. }) {
            let rest = data.len() - pos;
            if seen == 0 {
                if rest > 0 {
                    self.partial.extend_from_slice(&input[pos..]);
                }
            } else if rest == 0 {
                self.partial = Vec::new();
            } else {
                self.partial.drain(..pos);
            }
        }
        // The partial-frame deadline runs from the first byte of the frame.
        if self.partial.is_empty() {
            self.shared.partial_since.set(None);
        } else if self.shared.partial_since.get().is_none() {
            self.shared.partial_since.set(Some(received));
        }
        // What came before a handoff (a rebind's logout row, replies to
        // earlier frames) is carried out here; the login goes to the owner.
        self.carry_out(shard, &mut out, received);
        if let Some(held) = held {
            self.pause = Some(self.rate.wait(received));
            // Fed again after the pause, and counted then.
            if self.badge.imei().is_none() {
                let len = u32::try_from(held.len()).unwrap_or(u32::MAX);
                self.prelogin_bytes = self.prelogin_bytes.saturating_sub(len);
            }
            self.held = held;
        }
        // Checked after the read is decoded, so that a login followed by a
        // badge's backlog in one packet is taken: at most one read buffer
        // of garbage is ever looked at.
        if matches!(step, Step::Continue)
            && self.badge.imei().is_none()
            && self.prelogin_bytes as usize > limits.prelogin_bytes
        {
            shard.counters().prelogin_budget_closes += 1;
            return Step::Close(CloseReason::PreloginBudget);
        }
        step
    }

    /// What of an outcome needs no waiting: closes, lookups, rows into the
    /// log, replies into the write buffer (to go out once their rows are
    /// durable).
    fn carry_out(&mut self, shard: &Rc<Shard>, out: &mut Outcome, received: Instant) {
        let logged_in = self.badge.imei().is_some();
        self.shared.logged_in.set(logged_in);
        if logged_in {
            if let Some(permit) = self.permit.as_mut().filter(|p| p.is_prelogin()) {
                permit.logged_in();
                test_panic(self.badge.imei());
            }
        }
        for conn_id in out.replaced.drain(..) {
            if let Some(old) = shard.conns.borrow().get(&conn_id) {
                old.close(CloseReason::Replaced);
            }
        }
        for lookup in out.lookups.drain(..) {
            super::geo::start(shard, self.badge.conn_id(), lookup, received);
        }
        for record in out.rows.drain(..) {
            self.ack_lsn = shard.store(&record, received);
        }
        if self.badge.imei().is_some() {
            // A login delivers what was queued: the queue is now empty.
            self.ack_lsn = self.ack_lsn.max(shard.keep_queues());
        }
        self.unsent.extend_from_slice(&out.replies);
        self.replies = self
            .replies
            .saturating_add(u32::try_from(out.replied).unwrap_or(u32::MAX));
        out.clear();
    }

    /// Writes this read's replies, once the rows they acknowledge are
    /// durable. Only here does the connection wait: for the commit, and
    /// for its send to complete (at once when the socket has room).
    ///
    /// An `async move` block, not an `async fn`, for the reason `run` gives:
    /// this future lives inside every connection's.
    #[allow(clippy::manual_async_fn)]
    fn flush<'a>(
        &'a mut self,
        shard: &'a Rc<Shard>,
        stream: &'a mut TcpStream,
        received: Instant,
        reads_on: bool,
    ) -> impl std::future::Future<Output = Result<(), CloseReason>> + 'a {
        async move {
            if reads_on && !self.unsent.is_empty() && !shard.log.full() {
                stream.arm_recv();
            }
            if shard.durable_acks
                && self.ack_lsn > shard.log.durable_end()
                && !self.unsent.is_empty()
            {
                Box::pin(shard.log.durable(self.ack_lsn)).await;
                self.waited = true;
            }
            if !self.unsent.is_empty() {
                self.waited = true;
                let unsent = std::mem::take(&mut self.unsent);
                // The slow path is boxed: every connection's task is as large
                // as its largest await, and idle badges should cost little.
                self.unsent =
                    Box::pin(send_replies(shard, &self.shared, stream, unsent, received)).await?;
            }
            if self.replies > 0 {
                let us = received.elapsed().as_micros() as u64;
                let _ = shard
                    .reply_latency
                    .borrow_mut()
                    .record_n(us.max(1), u64::from(self.replies));
                self.replies = 0;
            }
            Ok(())
        }
    }

    /// At shutdown: waits for the replies owed to geo lookups (each ends
    /// by its deadline) and writes them, so a badge gets the answer to every
    /// frame it sent before the server stopped.
    async fn owed_replies(&mut self, shard: &Rc<Shard>, stream: &mut TcpStream) {
        while self.shared.owed.get() > 0 && shard.counters().geo_pending > 0 {
            crate::runtime::sleep(std::time::Duration::from_millis(5)).await;
        }
        let frames = std::mem::take(&mut *self.shared.downlink.borrow_mut());
        let len = frames.len() as u64;
        if len > 0 && stream.send_all(frames).await.1.is_ok() {
            shard.counters().bytes_out += len;
        }
    }

    /// Moves the socket to the shard that owns its IMEI, with the bytes
    /// from the login frame on. If that fails (the owner is shutting down),
    /// the connection just closes: nothing from it was accepted yet.
    async fn hand_off(&mut self, shard: &Shard, stream: TcpStream, owner: usize, bytes: Vec<u8>) {
        shard.conns.borrow_mut().remove(&self.badge.conn_id());
        {
            let mut c = shard.counters();
            c.connections_open -= 1;
            c.handoffs_out += 1;
        }
        let Some(permit) = self.permit.take() else {
            return;
        };
        let fd = stream.into_fd();
        let handoff = Handoff {
            fd,
            peer: self.badge.peer(),
            conn_id: self.badge.conn_id(),
            accepted: self.shared.accepted,
            bytes,
            permit,
        };
        // If the owner is gone the handoff comes back and is dropped, which
        // closes the socket: nothing from it was accepted yet.
        let _ = shard.peers[owner]
            .send_async(ShardMsg::Handoff(handoff))
            .await;
    }

    /// Leaves the shard's tables, with the row that says how the session
    /// ended (the core leaves it out for a connection a newer login replaced).
    async fn finish(&mut self, shard: &Rc<Shard>, reason: CloseReason) {
        // Still in the table until its records are handed over; marked, so
        // that the timer does not count a timeout for it meanwhile.
        if self.shared.close.get().is_none() {
            self.shared.close.set(Some(reason));
        }
        {
            let mut out = shard.outcome.borrow_mut();
            out.clear();
            self.badge
                .on_close(reason, unix_now(), &mut shard.core.borrow_mut(), &mut out);
            self.carry_out(shard, &mut out, Instant::now());
        }
        shard.conns.borrow_mut().remove(&self.badge.conn_id());
        shard.counters().connections_open -= 1;
        tracing::debug!(shard = shard.id, peer = %self.badge.peer(), imei = ?self.badge.imei(), reason = reason.as_str(), "connection closed");
    }
}

/// Sends `unsent` in full. A badge that stops reading must not hold its
/// connection (and its task) forever, nor pile up replies: the shard's
/// timer ends a send older than the write deadline (`sending_since`), and
/// too much left unsent ends it here. Gives the buffer back, emptied, for
/// the next replies.
async fn send_replies(
    shard: &Shard,
    conn: &ConnShared,
    stream: &TcpStream,
    unsent: Vec<u8>,
    started: Instant,
) -> Result<Vec<u8>, CloseReason> {
    let max_pending = shard.config.server.max_pending_output;
    let total = unsent.len() as u64;
    conn.sending_since.set(Some(started));
    let mut buf = unsent;
    let mut off = 0;
    let mut result = Ok(());
    while off < buf.len() {
        let (b, sent) = stream.send(buf, off).await;
        buf = b;
        match sent {
            Ok(0) | Err(_) => {
                result = Err(CloseReason::IoError);
                break;
            }
            Ok(n) => off += n,
        }
        // What the socket would not take at once waits; too much of it
        // means the badge stopped reading.
        if buf.len() - off > max_pending {
            shard.counters().output_overflows += 1;
            result = Err(CloseReason::OutputOverflow);
            break;
        }
    }
    conn.sending_since.set(None);
    result?;
    shard.counters().bytes_out += total;
    buf.clear();
    Ok(buf)
}
#[cfg(test)]
mod tests {
    /// Every idle badge costs its connection's task: the future of `run`,
    /// in which `Conn` lives. An `async fn` would keep its arguments twice
    /// (760 bytes here, and 96 instead of 56 for `flush` inside it); the
    /// slow paths are boxed for the same reason. At 384 bytes, the task
    /// (the future, 8 bytes of spawn_local's thread check, async-task's
    /// 40-byte header and the schedule function) takes 440 bytes, which
    /// mimalloc serves from its 448-byte class; at 448 it took a 512-byte one.
    #[test]
    fn the_connection_task_stays_small() {
        fn future_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let size = future_size(super::run as fn(_, _, _, _) -> _);
        assert!(size <= 384, "the connection future is {size} bytes");
        let conn = std::mem::size_of::<super::Conn>();
        assert!(conn <= 248, "Conn is {conn} bytes");
    }
}
