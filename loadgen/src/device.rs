//! One badge: connect, log in, follow the profile, check every reply, and
//! close cleanly at the end. One tokio task per badge.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use badge_ingest::protocol::number as n;
use badge_ingest::protocol::{FrameConfig, FrameDecoder, FrameStats, Imei};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::expect::{
    parse_online_command, parse_text_message, Failure, Mismatch, Outstanding, Pending, Verdict,
};
use crate::net::connect;
use crate::profile::{Action, Badge, Kind, Outgoing, Plan, Planner, Profile};
use crate::report::Stats;

/// How long a close waits for the server to close its side, which is when
/// it has recorded the session's end.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffers that grew for a long frame (an 0xB3 with many beacons, a long
/// address reply) are given back past this size, so that 200 000 badges
/// stay small.
const BUFFER_KEEP: usize = 1024;
/// Replies can be long (0x97 addresses): accept up to the largest frame.
const MAX_REPLY_FRAME: usize = 65_535 + 6;

/// What every badge task of a process shares.
pub struct Shared {
    pub target: SocketAddr,
    /// Local addresses to connect from, round-robin by device index.
    pub sources: Vec<IpAddr>,
    pub stats: Arc<Stats>,
    pub plan: Plan,
    pub reply_timeout: Duration,
    /// Burst: reply-expecting frames in flight per connection.
    pub inflight: usize,
    pub seed: u64,
}

/// One badge of the run.
pub struct DeviceSpec {
    /// Index in the whole run (across processes): picks the source address.
    pub index: u64,
    pub imei: Imei,
    /// When this badge first connects (the ramp).
    pub start: Instant,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// How a connection's traffic phase ended.
enum Outcome {
    /// The run is over.
    End,
    /// The profile asked for a reconnect.
    Reconnect,
    /// The server closed the connection or it failed.
    Lost(String),
}

/// Runs one badge until the run ends. Never panics on network trouble: every
/// failure is counted and the badge carries on (reconnecting) while time remains.
pub async fn run(shared: Arc<Shared>, spec: DeviceSpec, mut stop: watch::Receiver<bool>) {
    let stats = &shared.stats;
    let end = shared.plan.end;
    tokio::select! {
        _ = sleep_until(spec.start.into()) => {}
        _ = stop.changed() => return,
    }
    let mut badge = Badge::new(shared.seed, spec.index, spec.imei, Instant::now());
    let mut planner = Planner::new(shared.plan);
    let mut first = true;
    let mut backoff = Duration::from_millis(500);
    let source = if shared.sources.is_empty() {
        None
    } else {
        Some(shared.sources[(spec.index % shared.sources.len() as u64) as usize])
    };
    while Instant::now() < end && !*stop.borrow() {
        let started = Instant::now();
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(shared.target, source)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    stats.c.connect_failures.fetch_add(1, Relaxed);
                    stats.note(
                        spec.imei.as_u64(),
                        &format!("connect to {} failed: {e}", shared.target),
                    );
                    if !pause(&mut backoff, end, &mut stop).await {
                        break;
                    }
                    continue;
                }
                Err(_) => {
                    stats.c.connect_failures.fetch_add(1, Relaxed);
                    stats.note(
                        spec.imei.as_u64(),
                        &format!("connect to {} timed out", shared.target),
                    );
                    if !pause(&mut backoff, end, &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
        stats.connect_latency(micros(started.elapsed()));
        stats.c.connects.fetch_add(1, Relaxed);
        let mut conn = Conn::new(stream, &shared, spec.index, spec.imei);

        if !conn.login(&mut badge).await {
            stats.c.login_failures.fetch_add(1, Relaxed);
            conn.close(&mut badge).await;
            if !pause(&mut backoff, end, &mut stop).await {
                break;
            }
            continue;
        }
        backoff = Duration::from_millis(500);
        stats.connected.fetch_add(1, Relaxed);
        planner.on_login(&mut badge, Instant::now(), first);
        first = false;

        let outcome = conn.traffic(&mut badge, &mut planner, &mut stop).await;
        stats.connected.fetch_sub(1, Relaxed);
        match outcome {
            Outcome::End => {
                conn.drain(&mut badge).await;
                conn.close(&mut badge).await;
                break;
            }
            Outcome::Reconnect => {
                stats.c.reconnects.fetch_add(1, Relaxed);
                conn.drain(&mut badge).await;
                conn.close(&mut badge).await;
            }
            Outcome::Lost(why) => {
                stats.c.server_closes.fetch_add(1, Relaxed);
                stats.note(spec.imei.as_u64(), &format!("connection lost: {why}"));
                conn.lose_outstanding();
                if !pause(&mut backoff, end, &mut stop).await {
                    break;
                }
            }
        }
    }
}

/// Waits out a backoff; false if the run ended meanwhile.
async fn pause(backoff: &mut Duration, end: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    let until = (Instant::now() + *backoff).min(end);
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    tokio::select! {
        _ = sleep_until(until.into()) => Instant::now() < end,
        _ = stop.changed() => false,
    }
}

/// One TCP connection of a badge.
struct Conn<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    stats: &'a Stats,
    device: u64,
    imei: Imei,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Frames in `wbuf` not yet written.
    unflushed: Vec<Outgoing>,
    decoder: FrameDecoder,
    seen: FrameStats,
    outstanding: Outstanding,
    serial: u16,
}

impl<'a> Conn<'a> {
    fn new(stream: TcpStream, shared: &'a Shared, device: u64, imei: Imei) -> Self {
        Self {
            stream,
            shared,
            stats: &shared.stats,
            device,
            imei,
            rbuf: BytesMut::with_capacity(256),
            wbuf: BytesMut::with_capacity(256),
            unflushed: Vec::new(),
            decoder: FrameDecoder::new(FrameConfig {
                max_frame_len: MAX_REPLY_FRAME,
                // A bad CRC is the server's mistake to report, not a frame to skip.
                accept_bad_crc: true,
            }),
            seen: FrameStats::default(),
            outstanding: Outstanding::default(),
            serial: 0,
        }
    }

    fn next_serial(&mut self) -> u16 {
        // Badges start at 1 and wrap, as the reference's own counter does.
        self.serial = self.serial.wrapping_add(1);
        if self.serial == 0 {
            self.serial = 1;
        }
        self.serial
    }

    /// Registers a frame just built into `wbuf`.
    fn sent(&mut self, out: Outgoing, serial: u16) {
        match out.expect {
            Some(expected) => self.outstanding.expect(Pending {
                request: out.protocol,
                serial,
                expected,
                sent_at: Instant::now(),
            }),
            None => self.outstanding.sent_without_reply(serial, out.protocol),
        }
        self.unflushed.push(out);
    }

    fn build(&mut self, badge: &mut Badge, kind: Kind) {
        let serial = self.next_serial();
        let out = badge.build(kind, serial, Instant::now(), unix_now(), &mut self.wbuf);
        self.sent(out, serial);
    }

    /// Writes what was built; only written frames count as sent.
    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.wbuf).await?;
        let s = self.stats;
        s.c.bytes_sent.fetch_add(self.wbuf.len() as u64, Relaxed);
        for out in &self.unflushed {
            let p = usize::from(out.protocol);
            s.sent[p].fetch_add(1, Relaxed);
            if out.expect.is_some() {
                s.expected[p].fetch_add(1, Relaxed);
            }
            if out.bluetooth_rows > 0 {
                s.c.bluetooth_rows
                    .fetch_add(u64::from(out.bluetooth_rows), Relaxed);
            }
        }
        self.unflushed.clear();
        self.wbuf.clear();
        if self.wbuf.capacity() > BUFFER_KEEP {
            self.wbuf = BytesMut::with_capacity(256);
        }
        Ok(())
    }

    /// Sends the login and waits for its acknowledgement.
    async fn login(&mut self, badge: &mut Badge) -> bool {
        let serial = self.next_serial();
        let out = badge.login(serial, &mut self.wbuf);
        self.sent(out, serial);
        let sent_at = Instant::now();
        if let Err(e) = self.flush().await {
            self.stats.note(
                self.imei.as_u64(),
                &format!("sending the login failed: {e}"),
            );
            return false;
        }
        let deadline = sent_at + self.shared.reply_timeout;
        while !self.outstanding.is_empty() {
            let read = tokio::select! {
                r = self.stream.read_buf(&mut self.rbuf) => r,
                _ = sleep_until(deadline.into()) => {
                    self.expire(Instant::now() + self.shared.reply_timeout);
                    return false;
                }
            };
            match read {
                Ok(0) | Err(_) => {
                    self.lose_outstanding();
                    return false;
                }
                Ok(len) => {
                    self.stats.c.bytes_received.fetch_add(len as u64, Relaxed);
                    if let Some(ok) = self.process(badge).login_ok {
                        if ok {
                            self.stats.login_latency(micros(sent_at.elapsed()), sent_at);
                            self.stats.c.logins.fetch_add(1, Relaxed);
                        }
                        let _ = self.flush().await;
                        return ok;
                    }
                }
            }
        }
        false
    }

    /// Follows the profile until the run ends, a reconnect is due, or the
    /// connection is lost.
    async fn traffic(
        &mut self,
        badge: &mut Badge,
        planner: &mut Planner,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let end = self.shared.plan.end;
        let timeout = self.shared.reply_timeout;
        loop {
            let now = Instant::now();
            if now >= end || *stop.borrow() {
                return match self.flush().await {
                    Ok(()) => Outcome::End,
                    Err(e) => Outcome::Lost(e.to_string()),
                };
            }
            let mut reconnect = false;
            if planner.profile() == Profile::Burst {
                while self.outstanding.len() < self.shared.inflight {
                    let kind = planner.burst_next(badge);
                    self.build(badge, kind);
                }
            } else {
                while let Some(action) = planner.due(badge, now) {
                    match action {
                        Action::Send(kind) => self.build(badge, kind),
                        Action::Reconnect => {
                            reconnect = true;
                            break;
                        }
                    }
                }
            }
            if let Err(e) = self.flush().await {
                return Outcome::Lost(e.to_string());
            }
            if reconnect {
                return Outcome::Reconnect;
            }
            let mut wake = end;
            if planner.profile() != Profile::Burst {
                if let Some(t) = planner.next_due() {
                    wake = wake.min(t);
                }
            }
            if let Some(t) = self.outstanding.next_deadline(timeout) {
                wake = wake.min(t);
            }
            tokio::select! {
                biased;
                r = self.stream.read_buf(&mut self.rbuf) => match r {
                    Ok(0) => return Outcome::Lost("closed by the server".into()),
                    Err(e) => return Outcome::Lost(e.to_string()),
                    Ok(len) => {
                        self.stats.c.bytes_received.fetch_add(len as u64, Relaxed);
                        self.process(badge);
                    }
                },
                _ = sleep_until(wake.into()) => {}
                _ = stop.changed() => {}
            }
            self.expire(Instant::now());
        }
    }

    /// Waits for the replies still outstanding, up to the reply deadline.
    async fn drain(&mut self, badge: &mut Badge) {
        let timeout = self.shared.reply_timeout;
        while let Some(deadline) = self.outstanding.next_deadline(timeout) {
            tokio::select! {
                r = self.stream.read_buf(&mut self.rbuf) => match r {
                    Ok(0) | Err(_) => {
                        self.stats.c.server_closes.fetch_add(1, Relaxed);
                        self.lose_outstanding();
                        return;
                    }
                    Ok(len) => {
                        self.stats.c.bytes_received.fetch_add(len as u64, Relaxed);
                        self.process(badge);
                        let _ = self.flush().await;
                    }
                },
                _ = sleep_until(deadline.into()) => {}
            }
            self.expire(Instant::now());
        }
    }

    /// Closes our side and waits for the server to close its side: by then
    /// it has recorded the disconnect, so a reconnect is a fresh login and
    /// not a replacement of a live session. Anything that arrives meanwhile
    /// is unexpected.
    async fn close(&mut self, badge: &mut Badge) {
        self.stats.c.closes.fetch_add(1, Relaxed);
        if self.stream.shutdown().await.is_err() {
            self.lose_outstanding();
            return;
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            tokio::select! {
                r = self.stream.read_buf(&mut self.rbuf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(len) => {
                        self.stats.c.bytes_received.fetch_add(len as u64, Relaxed);
                        self.process(badge);
                    }
                },
                _ = sleep_until(deadline.into()) => {
                    self.stats.c.close_timeouts.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
        self.lose_outstanding();
    }

    fn expire(&mut self, now: Instant) {
        for p in self.outstanding.expire(now, self.shared.reply_timeout) {
            let detail = format!(
                "no 0x{:02X} reply to serial {} within {:?}",
                p.expected.protocol(),
                p.serial,
                self.shared.reply_timeout
            );
            self.stats.mismatch(
                Mismatch::Timeout,
                Some(p.request),
                self.imei.as_u64(),
                &detail,
                &[],
            );
        }
    }

    /// The connection is gone: whatever was outstanding will never come.
    fn lose_outstanding(&mut self) {
        for p in self.outstanding.take_all() {
            let detail = format!(
                "connection ended before the 0x{:02X} reply to serial {}",
                p.expected.protocol(),
                p.serial
            );
            self.stats.mismatch(
                Mismatch::LostOnClose,
                Some(p.request),
                self.imei.as_u64(),
                &detail,
                &[],
            );
        }
    }

    /// Handles every whole frame in the read buffer.
    fn process(&mut self, badge: &mut Badge) -> Processed {
        let mut result = Processed::default();
        let now_unix = unix_now();
        let now = Instant::now();
        let imei = self.imei.as_u64();
        let stats = self.stats;
        let mut commands: Vec<(u32, u16)> = Vec::new();
        let mut pos = 0;
        while let Some(frame) = self.decoder.next_frame(&self.rbuf, &mut pos) {
            match frame.protocol {
                n::ONLINE_COMMAND => match parse_online_command(frame.content) {
                    Ok(cmd) => {
                        stats.c.downlink_commands.fetch_add(1, Relaxed);
                        commands.push((cmd.server_flag, frame.serial));
                    }
                    Err(e) => stats.mismatch(Mismatch::BadDownlink, None, imei, &e, frame.raw),
                },
                n::MESSAGE => match parse_text_message(frame.content) {
                    Ok(_) => {
                        stats.c.downlink_messages.fetch_add(1, Relaxed);
                    }
                    Err(e) => stats.mismatch(Mismatch::BadDownlink, None, imei, &e, frame.raw),
                },
                _ => match self.outstanding.on_frame(&frame, now_unix) {
                    Verdict::Reply { pending, result: r } => {
                        record_reply(
                            stats,
                            self.device,
                            &pending,
                            now,
                            imei,
                            r.as_ref().err(),
                            frame.raw,
                        );
                        if pending.request == n::LOGIN {
                            result.login_ok = Some(r.is_ok());
                        }
                    }
                    Verdict::OutOfOrder { pending, result: r } => {
                        let detail = format!(
                            "0x{:02X} reply to serial {} arrived before earlier replies",
                            frame.protocol, pending.serial
                        );
                        // One mismatch per reply: out of order, plus its kind if also wrong.
                        record_reply(stats, self.device, &pending, now, imei, None, frame.raw);
                        stats.mismatch(
                            Mismatch::OutOfOrder,
                            Some(pending.request),
                            imei,
                            &detail,
                            frame.raw,
                        );
                        if let Err(f) = &r {
                            stats.mismatch(f.kind, None, imei, &f.detail, frame.raw);
                        }
                        if pending.request == n::LOGIN {
                            result.login_ok = Some(r.is_ok());
                        }
                    }
                    Verdict::AlarmSms(r) => {
                        stats.c.alarm_sms.fetch_add(1, Relaxed);
                        if let Err(f) = r {
                            stats.mismatch(f.kind, None, imei, &f.detail, frame.raw);
                        }
                    }
                    Verdict::Unexpected { failure, request } => {
                        stats.mismatch(failure.kind, request, imei, &failure.detail, frame.raw);
                    }
                },
            }
        }
        // Bytes the decoder skipped or rejected are the server's framing errors.
        let s = &self.decoder.stats;
        if s.garbage_bytes > self.seen.garbage_bytes || s.rejected() > self.seen.rejected() {
            let detail = format!(
                "{} bytes that are not frames ({} bad stop, {} bad length, {} oversized)",
                s.garbage_bytes - self.seen.garbage_bytes,
                s.bad_stop - self.seen.bad_stop,
                s.bad_length - self.seen.bad_length,
                s.oversized - self.seen.oversized
            );
            stats.mismatch(Mismatch::Framing, None, imei, &detail, &self.rbuf[..pos]);
            self.seen = s.clone();
        }
        self.rbuf.advance(pos);
        if self.rbuf.is_empty() && self.rbuf.capacity() > BUFFER_KEEP {
            self.rbuf = BytesMut::with_capacity(256);
        }
        for (flag, serial) in commands {
            // Answer 0x80 at once, echoing the server flag, as a badge does.
            let out = badge.command_reply(flag, 1, serial, &mut self.wbuf);
            self.sent(out, serial);
        }
        result
    }
}

/// What `process` learnt that the caller acts on.
#[derive(Default)]
struct Processed {
    /// The login's reply arrived: whether it was right.
    login_ok: Option<bool>,
}

fn record_reply(
    stats: &Stats,
    device: u64,
    p: &Pending,
    now: Instant,
    imei: u64,
    failure: Option<&Failure>,
    raw: &[u8],
) {
    stats.received[usize::from(p.request)].fetch_add(1, Relaxed);
    stats.reply_latency(
        device,
        micros(now.saturating_duration_since(p.sent_at)),
        p.sent_at,
    );
    if let Some(f) = failure {
        let detail = format!("{} (request serial {})", f.detail, p.serial);
        stats.mismatch(f.kind, Some(p.request), imei, &detail, raw);
    }
}
