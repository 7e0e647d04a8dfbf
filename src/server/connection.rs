//! One badge connection: read into the shard's buffer, split frames, decode,
//! reply, and hand records to the sink. Back only for replies.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future::{poll_fn, poll_once};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::protocol::message::Login;
use crate::protocol::{Frame, Imei, Message, Reply};
use crate::record::{enrich, enums, Envelope, Record, RecordContext, Records};

use super::geo::{Owed, ReplyTo};
use super::limits::ConnPermit;
use super::session::{owner_shard, Session};
use super::shard::{CloseReason, ConnShared, Handoff, Shard, ShardMsg};

pub(crate) struct Conn {
    id: u64,
    peer: SocketAddr,
    shared: Rc<ConnShared>,
    /// Travels with the socket on a handoff.
    permit: Option<ConnPermit>,
    /// Set when another shard handed this socket over: it is never moved again.
    adopted: bool,
    imei: Option<Imei>,
    /// The start of a frame whose end has not arrived yet. Empty (and
    /// unallocated) between frames, which is what keeps idle connections small.
    partial: Vec<u8>,
    /// Replies the socket would not take at once.
    unsent: Vec<u8>,
    /// Records the sink queue had no room for, in order.
    unqueued: VecDeque<Envelope>,
    /// Replies built since the last write, for the latency histogram.
    replies: u64,
}

/// What to do after a read.
enum Step {
    Continue,
    Handoff { owner: usize, bytes: Vec<u8> },
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
            id,
            peer,
            shared,
            permit: Some(permit),
            adopted,
            imei: None,
            partial: Vec::new(),
            unsent: Vec::new(),
            unqueued: VecDeque::new(),
            replies: 0,
        }
    }
}

pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

pub(crate) async fn run(shard: Rc<Shard>, mut stream: TcpStream, mut conn: Conn, initial: Vec<u8>) {
    let mut pending_input = initial;
    let reason = loop {
        // `received` is when the bytes were read, not when the wait began:
        // the reply latency must not include the badge's silence.
        let (step, received) = if !pending_input.is_empty() {
            let input = std::mem::take(&mut pending_input);
            let received = Instant::now();
            (conn.feed(&shard, &input, received), received)
        } else {
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
                let mut buf = shard.buf.borrow_mut();
                Pin::new(&mut stream).poll_read(cx, &mut buf[..]).map(Some)
            })
            .await;
            let received = Instant::now();
            let step = match event {
                None => {
                    let frames = std::mem::take(&mut *conn.shared.downlink.borrow_mut());
                    shard.out.borrow_mut().extend_from_slice(&frames);
                    Step::Continue
                }
                Some(Ok(0)) => break conn.shared.close.get().unwrap_or(CloseReason::PeerClosed),
                Some(Err(_)) => break conn.shared.close.get().unwrap_or(CloseReason::IoError),
                Some(Ok(len)) => {
                    conn.shared.last_seen.set(received);
                    shard.metrics.borrow_mut().counters.bytes_in += len as u64;
                    let buf = shard.buf.borrow();
                    conn.feed(&shard, &buf[..len], received)
                }
            };
            (step, received)
        };
        if let Err(reason) = conn.flush(&shard, &mut stream, received).await {
            // A write fails when the connection was closed from outside
            // (timeout, newer login, shutdown): that is the reason to record.
            break conn.shared.close.get().unwrap_or(reason);
        }
        match step {
            Step::Continue => {}
            Step::Close(reason) => break reason,
            Step::Handoff { owner, bytes } => {
                Box::pin(conn.hand_off(&shard, stream, owner, bytes)).await;
                return;
            }
        }
    };
    if reason == CloseReason::Shutdown && conn.shared.owed.get() > 0 {
        Box::pin(conn.owed_replies(&shard, &mut stream)).await;
    }
    Box::pin(conn.finish(&shard, reason)).await;
    drop(stream);
}

impl Conn {
    /// Splits `input` (after any partial frame kept from before) into
    /// frames and handles each. Synchronous: nothing else runs on the shard
    /// meanwhile, so the shard's buffers can be borrowed freely.
    fn feed(&mut self, shard: &Rc<Shard>, input: &[u8], received: Instant) -> Step {
        let joined;
        let data: &[u8] = if self.partial.is_empty() {
            input
        } else {
            self.partial.extend_from_slice(input);
            joined = std::mem::take(&mut self.partial);
            &joined
        };
        let now = unix_now();
        let mut pos = 0;
        let mut step = Step::Continue;
        loop {
            let frame = shard.decoder.borrow_mut().next_frame(data, &mut pos);
            let Some(frame) = frame else { break };
            match self.frame(shard, &frame, now, received) {
                Step::Continue => {}
                Step::Handoff { owner, .. } => {
                    // The owner decodes the login again and counts it there.
                    {
                        let mut decoder = shard.decoder.borrow_mut();
                        decoder.stats.frames -= 1;
                        decoder.stats.frame_bytes -= frame.raw.len() as u64;
                    }
                    shard.metrics.borrow_mut().frames[usize::from(frame.protocol)] -= 1;
                    let start = frame.raw.as_ptr() as usize - data.as_ptr() as usize;
                    return Step::Handoff {
                        owner,
                        bytes: data[start..].to_vec(),
                    };
                }
                other => {
                    step = other;
                    break;
                }
            }
        }
        if pos < data.len() {
            self.partial = data[pos..].to_vec();
        }
        step
    }

    fn frame(&mut self, shard: &Rc<Shard>, frame: &Frame<'_>, now: u32, received: Instant) -> Step {
        shard.metrics.borrow_mut().frames[usize::from(frame.protocol)] += 1;
        let message = match Message::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                shard.metrics.borrow_mut().counters.decode_errors += 1;
                if let Some(suppressed) = shard.decode_log.check() {
                    tracing::warn!(shard = shard.id, peer = %self.peer, imei = ?self.imei, error = %e, suppressed, "undecodable frame kept raw");
                }
                // Kept, not lost: the raw frame goes to the audit table.
                if let Some(imei) = self.imei {
                    let record =
                        self.records(shard, imei, frame.serial, now, |r| r.raw_frame(frame));
                    self.queue(shard, record, received);
                }
                return Step::Continue;
            }
        };

        let Some(imei) = self.imei else {
            return match message {
                Message::Login(login) => {
                    let owner = owner_shard(login.imei, shard.shards);
                    if owner != shard.id && !self.adopted {
                        Step::Handoff {
                            owner,
                            bytes: Vec::new(),
                        }
                    } else {
                        self.login(shard, login, frame.serial, now, received);
                        Step::Continue
                    }
                }
                // The reference answers time requests from anyone.
                Message::TimeSync(_) | Message::TimeSync2 => {
                    self.reply(shard, &message, frame.serial, now);
                    Step::Continue
                }
                _ => {
                    shard.metrics.borrow_mut().counters.prelogin_drops += 1;
                    Step::Continue
                }
            };
        };

        if let Message::Login(login) = message {
            if login.imei != imei {
                return Step::Close(CloseReason::ImeiChanged);
            }
            // A repeated login on the same connection: acknowledge and record it again.
            self.login(shard, login, frame.serial, now, received);
            return Step::Continue;
        }

        if let Some(session) = shard.sessions.borrow_mut().get_mut(&imei) {
            session.observe(&message, now);
        }
        self.reply(shard, &message, frame.serial, now);
        let mut records = Vec::new();
        let mut seq = shard.seq.get();
        {
            let mut builder = Records {
                ctx: self.context(shard, imei, frame.serial, now),
                seq: &mut seq,
            };
            builder.message(frame, &message, &mut |r| records.push(r));
            if matches!(
                message,
                Message::BluetoothPunch(_) | Message::BluetoothLocation(_)
            ) {
                self.beacons(shard, &mut builder, &mut records, now);
            }
            if shard.config.sink.raw_frames && !matches!(message, Message::Unknown { .. }) {
                records.push(builder.raw_frame(frame));
            }
        }
        shard.seq.set(seq);
        if let Message::CommandReply(reply) = &message {
            // Matched by the server flag we put in the command; the row then
            // carries the command's own kind, text and creation time.
            let matched = shard.downlinks.borrow_mut().replied(
                imei,
                reply.server_flag,
                &reply.text_lossy(),
                now,
            );
            if let Some(command) = matched {
                for r in records.iter_mut() {
                    if let Record::CommandLog(row) = r {
                        let seq = row.ingest_seq;
                        *r = super::downlink::log_row(
                            imei,
                            &command,
                            now,
                            shard.instance,
                            shard.id as u16,
                            seq,
                        );
                    }
                }
            }
        }
        // With a geo service, rows lacking a position or an address wait for
        // it on their own task; the reply an address request or alarm owes
        // goes with its row.
        let mut owed = match &message {
            Message::AddressRequest(req) => Some(Owed::Address {
                english: req.wants_english(),
            }),
            Message::Alarm(_) => Some(Owed::AlarmSms),
            _ => None,
        };
        for record in records {
            let geo = match (&shard.services.geo, &record) {
                (Some(geo), Record::Locations(_) | Record::Alarms(_) | Record::Attendance(_)) => {
                    geo
                }
                _ => {
                    self.queue(shard, record, received);
                    continue;
                }
            };
            let reply = owed.take().map(|owed| ReplyTo {
                conn_id: self.id,
                serial: frame.serial,
                owed,
            });
            let envelope = Envelope { record, received };
            match super::geo::enrich(shard, geo, envelope, reply) {
                Ok(()) => shard.metrics.borrow_mut().counters.records += 1,
                Err(envelope) => self.queue(shard, envelope.record, received),
            }
        }
        Step::Continue
    }

    fn context(&self, shard: &Shard, imei: Imei, serial: u16, now: u32) -> RecordContext {
        RecordContext {
            imei,
            server_time: now,
            device_offset_minutes: shard.config.protocol.device_utc_offset_minutes,
            serial,
            conn_id: self.id,
            instance: shard.instance,
            shard: shard.id as u16,
        }
    }

    fn records(
        &self,
        shard: &Shard,
        imei: Imei,
        serial: u16,
        now: u32,
        build: impl FnOnce(&mut Records<'_>) -> Record,
    ) -> Record {
        let mut seq = shard.seq.get();
        let record = build(&mut Records {
            ctx: self.context(shard, imei, serial, now),
            seq: &mut seq,
        });
        shard.seq.set(seq);
        record
    }

    /// Registry fields for the rows of a Bluetooth report, and for a
    /// location report the location row of its strongest known beacon.
    fn beacons(
        &self,
        shard: &Shard,
        builder: &mut Records<'_>,
        records: &mut Vec<Record>,
        now: u32,
    ) {
        let imei = builder.ctx.imei.as_u64();
        let mut unknown = 0;
        let registry = &shard.services.beacons;
        let best = enrich::beacons(
            records,
            |mac| registry.get(mac),
            |row| {
                unknown += 1;
                shard
                    .unknown_beacons
                    .borrow_mut()
                    .seen(row.mac, imei, row.rssi, now);
            },
        );
        {
            let mut m = shard.metrics.borrow_mut();
            let rows = records
                .iter()
                .filter(|r| matches!(r, Record::Bluetooth(b) if b.mac != 0));
            m.counters.beacons_known += rows.count() as u64 - unknown;
            m.counters.beacons_unknown += unknown;
        }
        if let Some((i, beacon)) = best {
            if let Record::Bluetooth(row) = &records[i] {
                let location =
                    builder.beacon_location(row, beacon.lat, beacon.lon, &beacon.address);
                records.push(location);
            }
        }
    }

    /// A login on the owner shard: a newer connection of the same IMEI
    /// replaces the older one, as in the reference.
    fn login(&mut self, shard: &Shard, login: Login, serial: u16, now: u32, received: Instant) {
        let imei = login.imei;
        let mut event = enums::EVENT_LOGIN;
        {
            let mut sessions = shard.sessions.borrow_mut();
            if let Some(old) = sessions.get(&imei) {
                if old.conn_id != self.id {
                    if let Some(old_conn) = shard.conns.borrow().get(&old.conn_id) {
                        old_conn.close(CloseReason::Replaced);
                    }
                    event = enums::EVENT_RECONNECT;
                }
            }
            sessions.insert(imei, Session::new(imei, self.id, self.peer, login, now));
        }
        {
            let mut m = shard.metrics.borrow_mut();
            m.counters.logins += 1;
            if event == enums::EVENT_RECONNECT {
                m.counters.reconnects += 1;
            }
        }
        self.imei = Some(imei);
        self.shared.logged_in.set(true);
        let peer = self.peer.to_string();
        let record = self.records(shard, imei, serial, now, |r| {
            r.login(&login, event, &peer, "")
        });
        self.queue(shard, record, received);
        self.reply(shard, &Message::Login(login), serial, now);
        // Commands queued while the badge was away follow its login ack.
        shard.deliver_queued(imei);
    }

    fn reply(&mut self, shard: &Shard, message: &Message<'_>, serial: u16, now: u32) {
        let reply = match message {
            // Without a geo service, answered at once with an empty address
            // (as the reference does when its geocoder is off); with one, the
            // row's lookup answers (`server::geo`).
            Message::AddressRequest(req) if shard.services.geo.is_none() => {
                Some(Reply::address(req, ""))
            }
            Message::AddressRequest(_) => None,
            other => Reply::immediate(other, i64::from(now)),
        };
        if let Some(reply) = reply {
            // Replies are small and bounded; encoding can only fail for a
            // content over 64 KiB, which no reply reaches.
            if reply.encode(serial, &mut shard.out.borrow_mut()).is_ok() {
                self.replies += 1;
            }
        }
    }

    /// Hands a record to the sink, or keeps it (in order) when the queue is full.
    fn queue(&mut self, shard: &Shard, record: Record, received: Instant) {
        shard.metrics.borrow_mut().counters.records += 1;
        let envelope = Envelope { record, received };
        if !self.unqueued.is_empty() {
            self.unqueued.push_back(envelope);
        } else if let Err(envelope) = shard.sink.try_send(envelope) {
            self.unqueued.push_back(envelope);
        }
    }

    /// Writes this read's replies and queues its records. Only here does
    /// the connection wait: on a slow socket, or on a full sink queue, which
    /// stops it reading (backpressure to the badge through TCP).
    async fn flush(
        &mut self,
        shard: &Rc<Shard>,
        stream: &mut TcpStream,
        received: Instant,
    ) -> Result<(), CloseReason> {
        let pending = shard.out.borrow().len();
        if pending > 0 {
            let mut off = 0;
            if self.unsent.is_empty() {
                while off < pending {
                    let attempt = poll_once(poll_fn(|cx| {
                        let out = shard.out.borrow();
                        Pin::new(&mut *stream).poll_write(cx, &out[off..])
                    }))
                    .await;
                    match attempt {
                        Some(Ok(0)) | Some(Err(_)) => {
                            shard.out.borrow_mut().clear();
                            return Err(CloseReason::IoError);
                        }
                        Some(Ok(n)) => off += n,
                        None => break,
                    }
                }
            }
            {
                let mut out = shard.out.borrow_mut();
                self.unsent.extend_from_slice(&out[off..]);
                out.clear();
            }
            shard.metrics.borrow_mut().counters.bytes_out += off as u64;
        }
        if !self.unsent.is_empty() {
            if self.unsent.len() > shard.config.server.max_pending_output {
                shard.metrics.borrow_mut().counters.output_overflows += 1;
                return Err(CloseReason::OutputOverflow);
            }
            // The slow paths are boxed: every connection's task is as large
            // as its largest await, and idle badges should cost little.
            Box::pin(self.write_unsent(shard, stream)).await?;
        }
        if self.replies > 0 {
            let us = received.elapsed().as_micros() as u64;
            let _ = shard
                .metrics
                .borrow_mut()
                .reply_latency
                .record_n(us.max(1), self.replies);
            self.replies = 0;
        }
        if !self.unqueued.is_empty() {
            Box::pin(self.drain_records(shard)).await;
        }
        Ok(())
    }

    /// At shutdown: waits for the replies owed to geo lookups (each ends
    /// by its deadline) and writes them, so a badge gets the answer to every
    /// frame it sent before the server stopped.
    async fn owed_replies(&mut self, shard: &Rc<Shard>, stream: &mut TcpStream) {
        while self.shared.owed.get() > 0 && shard.metrics.borrow().counters.geo_pending > 0 {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        let frames = std::mem::take(&mut *self.shared.downlink.borrow_mut());
        if !frames.is_empty() && stream.write_all(&frames).await.is_ok() {
            shard.metrics.borrow_mut().counters.bytes_out += frames.len() as u64;
        }
    }

    async fn write_unsent(
        &mut self,
        shard: &Shard,
        stream: &mut TcpStream,
    ) -> Result<(), CloseReason> {
        let unsent = std::mem::take(&mut self.unsent);
        stream
            .write_all(&unsent)
            .await
            .map_err(|_| CloseReason::IoError)?;
        shard.metrics.borrow_mut().counters.bytes_out += unsent.len() as u64;
        Ok(())
    }

    async fn drain_records(&mut self, shard: &Rc<Shard>) {
        while let Some(envelope) = self.unqueued.pop_front() {
            shard.send(envelope).await;
        }
    }

    /// Moves the socket to the shard that owns its IMEI, with the bytes
    /// from the login frame on. If that fails (the owner is shutting down),
    /// the connection just closes: nothing from it was accepted yet.
    async fn hand_off(&mut self, shard: &Shard, stream: TcpStream, owner: usize, bytes: Vec<u8>) {
        shard.conns.borrow_mut().remove(&self.id);
        {
            let mut m = shard.metrics.borrow_mut();
            m.counters.connections_open -= 1;
            m.counters.handoffs_out += 1;
        }
        let Some(permit) = self.permit.take() else {
            return;
        };
        // glommio's stream cannot give up its fd; a duplicate survives the drop.
        // SAFETY: dup on an fd we own; the result is checked.
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        drop(stream);
        if fd < 0 {
            return;
        }
        // SAFETY: `fd` is a fresh duplicate that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let handoff = Handoff {
            fd,
            peer: self.peer,
            conn_id: self.id,
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

    /// Leaves the shard's tables and records how the session ended. A
    /// connection that was replaced by a newer login of its IMEI records
    /// nothing: the device is not offline.
    async fn finish(&mut self, shard: &Rc<Shard>, reason: CloseReason) {
        // Still in the table until its records are handed over; marked, so
        // that the timer does not count a timeout for it meanwhile.
        if self.shared.close.get().is_none() {
            self.shared.close.set(Some(reason));
        }
        if let Some(imei) = self.imei {
            let current = {
                let mut sessions = shard.sessions.borrow_mut();
                let current = sessions.get(&imei).is_some_and(|s| s.conn_id == self.id);
                if current {
                    sessions.remove(&imei);
                }
                current
            };
            if current {
                let event = match reason {
                    CloseReason::Shutdown
                    | CloseReason::ImeiChanged
                    | CloseReason::OutputOverflow => enums::EVENT_LOGOUT,
                    _ => enums::EVENT_OFFLINE,
                };
                let peer = self.peer.to_string();
                let record = self.records(shard, imei, 0, unix_now(), |r| {
                    r.disconnect(event, &peer, reason.as_str())
                });
                self.queue(shard, record, Instant::now());
            }
        }
        self.drain_records(shard).await;
        // Only now: a shutting-down shard waits for its table to empty, and
        // must not stop while this connection still holds records.
        shard.conns.borrow_mut().remove(&self.id);
        shard.metrics.borrow_mut().counters.connections_open -= 1;
        tracing::debug!(shard = shard.id, peer = %self.peer, imei = ?self.imei, reason = reason.as_str(), "connection closed");
    }
}
