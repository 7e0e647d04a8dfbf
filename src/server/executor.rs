//! The life of a shard thread: a runtime pinned to a core, with
//! its own `SO_REUSEPORT` listener, its inbox, one coarse timer, and the
//! shutdown that lets every connection finish its frames.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::net::{TcpListener, TcpStream};

use crate::config::{AckMode, Config};
use crate::events::Events;
use crate::geo::GeoHandle;
use crate::ingest::{CloseReason, Ingest, Liveness, Outcome};
use crate::log::{LogStats, LogWriter, SegmentList};
use crate::logging::LogLimit;
use crate::metrics::{latency_histogram, ShardMetrics};
use crate::protocol::{FrameConfig, FrameDecoder};
use crate::sink::SinkHandle;

use super::connection::{self, Conn};
use super::limits::{ConnectionLimits, Refused};
use super::proxy::{self, Parsed};
use super::shard::{unix_now, Handoff, Shard, ShardMsg};

/// Connections the kernel queues for a shard before it accepts them: a
/// fleet reconnects all at once after a restart.
const LISTEN_BACKLOG: i32 = 4096;

/// How long a shutdown lets connections write the answers to their last
/// frames before their writing side is shut as well.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);

/// Everything a shard thread needs to start.
pub(crate) struct ShardStart {
    pub id: usize,
    pub listen: SocketAddr,
    pub config: Arc<Config>,
    pub core: Ingest,
    pub inbox: flume::Receiver<ShardMsg>,
    pub peers: Vec<flume::Sender<ShardMsg>>,
    pub sink: SinkHandle,
    pub log: ShardLogStart,
    pub events: Events,
    pub limits: Arc<ConnectionLimits>,
    pub next_conn_id: Arc<std::sync::atomic::AtomicU64>,
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
    pub geo: Option<GeoHandle>,
}

/// Where the shard's log goes on from, as recovery found it.
pub(crate) struct ShardLogStart {
    pub dir: std::path::PathBuf,
    pub end: u64,
    pub segments: SegmentList,
    pub stats: Arc<LogStats>,
}

pub(crate) async fn run(start: ShardStart) -> ShardMetrics {
    let sink = start.sink.clone();
    let log = LogWriter::open(
        start.id,
        &start.log.dir,
        start.log.end,
        &start.config.log,
        start.config.shards(),
        start.log.segments.clone(),
        start.log.stats.clone(),
        Box::new(move |chunk| sink.send(chunk)),
    )
    .await;
    let log = match log {
        Ok(l) => l,
        Err(e) => {
            let _ = start.ready.send(Err(format!("shard {}: {e}", start.id)));
            return ShardMetrics::new(start.id);
        }
    };
    let listener = match TcpListener::bind(start.listen, LISTEN_BACKLOG) {
        Ok(l) => l,
        Err(e) => {
            let _ = start.ready.send(Err(format!(
                "shard {}: cannot listen on {}: {e}",
                start.id, start.listen
            )));
            return ShardMetrics::new(start.id);
        }
    };
    let config = start.config.clone();
    let shard = Rc::new(Shard {
        id: start.id,
        core: RefCell::new(start.core),
        decoder: RefCell::new(FrameDecoder::new(FrameConfig {
            max_frame_len: config.protocol.max_frame,
            accept_bad_crc: config.protocol.accept_bad_crc,
        })),
        outcome: RefCell::new(Outcome::default()),
        conns: RefCell::new(HashMap::new()),
        peers: start.peers,
        durable_acks: config.log.ack == AckMode::Durable,
        log,
        events: start.events,
        limits: start.limits,
        stopping: Cell::new(false),
        accept_log: LogLimit::per_second(),
        geo: start.geo,
        reply_latency: RefCell::new(latency_histogram()),
        config,
    });
    let _ = start.ready.send(Ok(()));

    let accept =
        crate::runtime::spawn_local(accept_loop(shard.clone(), listener, start.next_conn_id));
    let timer = crate::runtime::spawn_local(timer_loop(shard.clone()));

    while let Ok(msg) = start.inbox.recv_async().await {
        match msg {
            ShardMsg::Handoff(h) => adopt(&shard, h),
            ShardMsg::Metrics(reply) => {
                let _ = reply.try_send(shard.snapshot());
            }
            ShardMsg::Devices { limit, reply } => {
                let _ = reply.try_send(shard.core.borrow().devices(limit));
            }
            ShardMsg::Device { imei, reply } => {
                let _ = reply.try_send(shard.core.borrow().device(imei));
            }
            ShardMsg::Command { request, reply } => {
                let (answer, lsn) = shard.submit(request);
                let shard = shard.clone();
                crate::runtime::spawn_local(async move {
                    if shard.durable_acks {
                        shard.log.durable(lsn).await;
                    }
                    let _ = reply.try_send(answer);
                })
                .detach();
            }
            ShardMsg::Commands { imei, reply } => {
                let _ = reply.try_send(shard.core.borrow().commands(imei));
            }
            ShardMsg::UnknownBeacons(reply) => {
                let _ = reply.try_send(shard.core.borrow_mut().unknown_beacons());
            }
            ShardMsg::Clones(reply) => {
                let _ = reply.try_send(shard.core.borrow().clones(unix_now()));
            }
            ShardMsg::ResetLatency => shard.reply_latency.borrow_mut().reset(),
            ShardMsg::Shutdown => break,
        }
    }

    shard.stopping.set(true);
    accept.cancel().await;
    for conn in shard.conns.borrow().values() {
        conn.close(CloseReason::Shutdown);
    }
    // Connections finish their in-flight frames and hand their records to
    // the sink; sockets handed to us meanwhile are closed unprocessed. A
    // connection still writing after the grace period (its badge stopped
    // reading) has its writing side shut too, which ends the write.
    //
    // Rows need no waiting here: they are in the log (a connection still
    // here is writing its replies, or waiting for their commit).
    // Replies owed to a geo lookup are written once it answers, which is
    // at most the deadline away.
    let grace = Instant::now()
        + match shard.geo {
            Some(_) => shard.config.geo.deadline() + SHUTDOWN_WRITE_GRACE,
            None => SHUTDOWN_WRITE_GRACE,
        };
    let mut forced = false;
    let mut next_warning = Instant::now() + Duration::from_secs(30);
    while !shard.conns.borrow().is_empty() {
        // Dropping a handoff closes its socket unprocessed.
        while start.inbox.try_recv().is_ok() {}
        if !forced && Instant::now() >= grace {
            forced = true;
            for conn in shard.conns.borrow().values() {
                conn.force_close();
            }
        }
        if Instant::now() >= next_warning {
            next_warning += Duration::from_secs(30);
            tracing::warn!(
                shard = shard.id,
                connections = shard.conns.borrow().len(),
                "shutdown still waiting for connections to finish (is the log's disk stuck?)"
            );
        }
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
    // Rows still waiting for the geo service: each waits at most the
    // deadline, then is queued with or without its position.
    while shard.counters().geo_pending > 0 {
        while start.inbox.try_recv().is_ok() {}
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
    while start.inbox.try_recv().is_ok() {}
    timer.cancel().await;
    // Everything is in the log: commit it, and the shard is done.
    shard.keep_queues();
    shard.log.close().await;
    drop(start.sink);
    shard.snapshot()
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    next_id: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                let out_of_fds =
                    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                if out_of_fds {
                    shard.counters().emfile += 1;
                } else {
                    shard.counters().accept_errors += 1;
                }
                if let Some(suppressed) = shard.accept_log.check() {
                    tracing::warn!(shard = shard.id, error = %e, suppressed, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                }
                // Out of descriptors the listener stays readable: sleeping is
                // what keeps this from spinning.
                crate::runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let conn_id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let server = &shard.config.server;
        if !server.proxy_protocol {
            start_conn(&shard, stream, peer, conn_id, Vec::new());
        } else if server.trusted_proxies.trusts(peer.ip()) {
            crate::runtime::spawn_local(proxied(shard.clone(), stream, peer, conn_id)).detach();
        } else {
            shard.counters().proxy_untrusted += 1;
            if let Some(suppressed) = shard.accept_log.check() {
                tracing::warn!(shard = shard.id, %peer, suppressed, "connection refused: not from a trusted proxy (server.trusted_proxies)");
            }
        }
    }
}

/// A connection from `peer` (the badge, or what its PROXY header says),
/// once the limits let it in; `initial` is what was read past the header.
fn start_conn(
    shard: &Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    initial: Vec<u8>,
) {
    let permit = match shard.limits.admit(peer.ip()) {
        Ok(p) => p,
        Err(why) => {
            let mut c = shard.counters();
            match why {
                Refused::Total => c.connections_refused_limit += 1,
                Refused::PerIp => c.connections_refused_per_ip += 1,
                Refused::Prelogin => c.connections_refused_prelogin += 1,
                Refused::PreloginPerIp => c.connections_refused_prelogin_per_ip += 1,
            }
            drop(c);
            if let Some(suppressed) = shard.accept_log.check() {
                tracing::warn!(shard = shard.id, %peer, ?why, suppressed, "connection refused by limit");
            }
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    set_send_buffer(&stream, shard.config.limits.send_buffer);
    let accepted = Instant::now();
    let shared = shard.register(conn_id, std::os::fd::AsRawFd::as_raw_fd(&stream), accepted);
    shard.counters().connections_accepted += 1;
    let conn = Conn::new(conn_id, peer, shared, permit, false);
    crate::runtime::spawn_local(connection::run(shard.clone(), stream, conn, initial)).detach();
}

/// Reads the PROXY header of a connection from a trusted `proxy`, within
/// the partial-frame deadline and `proxy::MAX_HEADER` bytes, and starts
/// the connection as the client it names (a header that names none, a
/// balancer's health check, stands for the proxy itself).
async fn proxied(shard: Rc<Shard>, mut stream: TcpStream, proxy: SocketAddr, conn_id: u64) {
    use futures_lite::FutureExt;
    let read = async {
        let mut buf = Vec::with_capacity(128);
        loop {
            match proxy::parse(&buf) {
                Parsed::Incomplete => {}
                Parsed::Header { client, len } => {
                    let rest = buf.split_off(len);
                    return Ok((client.unwrap_or(proxy), rest));
                }
                Parsed::Malformed(why) => return Err(why),
            }
            match stream.recv_into(&mut buf).await {
                Ok(0) => return Err("closed before its header ended".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let deadline = Duration::from_secs(shard.config.limits.partial_frame_timeout_secs.max(1));
    let late = async {
        crate::runtime::sleep(deadline).await;
        Err(format!("no whole header within {deadline:?}"))
    };
    match read.or(late).await {
        Ok((client, rest)) => start_conn(&shard, stream, client, conn_id, rest),
        Err(why) => {
            shard.counters().proxy_bad_headers += 1;
            if let Some(suppressed) = shard.accept_log.check() {
                tracing::warn!(shard = shard.id, %proxy, error = %why, suppressed, "PROXY header refused; connection closed");
            }
        }
    }
}

fn set_send_buffer(stream: &TcpStream, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let size = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads an int from the pointer we pass, on a socket we own.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Takes over a socket from another shard.
fn adopt(shard: &Rc<Shard>, h: Handoff) {
    if shard.stopping.get() {
        return;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&h.fd);
    let stream = TcpStream::from(h.fd);
    let shared = shard.register(h.conn_id, fd, h.accepted);
    shard.counters().handoffs_in += 1;
    let conn = Conn::new(h.conn_id, h.peer, shared, h.permit, true);
    crate::runtime::spawn_local(connection::run(shard.clone(), stream, conn, h.bytes)).detach();
}

/// One coarse timer per shard closes connections that never logged in or
/// went silent, instead of a timer per read, and expires queued commands.
async fn timer_loop(shard: Rc<Shard>) {
    let period = Duration::from_millis(shard.config.server.timer_interval_ms);
    let deadlines = shard.core.borrow().settings().deadlines;
    loop {
        crate::runtime::sleep(period).await;
        let now = Instant::now();
        let (mut login_timeouts, mut idle_timeouts, mut partial_timeouts) = (0, 0, 0);
        let mut write_timeouts = 0;
        for conn in shard.conns.borrow().values() {
            if conn.close.get().is_some() {
                continue;
            }
            let liveness = Liveness {
                logged_in: conn.logged_in.get(),
                age: now.duration_since(conn.accepted),
                silent: now.duration_since(conn.last_seen.get()),
                partial: conn.partial_since.get().map(|t| now.duration_since(t)),
                sending: conn.sending_since.get().map(|t| now.duration_since(t)),
            };
            match deadlines.check(liveness) {
                Some(reason @ CloseReason::LoginTimeout) => {
                    conn.close(reason);
                    login_timeouts += 1;
                }
                Some(reason @ CloseReason::PartialFrameTimeout) => {
                    conn.close(reason);
                    partial_timeouts += 1;
                }
                Some(reason @ CloseReason::WriteTimeout) => {
                    conn.close(reason);
                    write_timeouts += 1;
                }
                Some(reason) => {
                    conn.close(reason);
                    idle_timeouts += 1;
                }
                None => {}
            }
        }
        {
            let mut c = shard.counters();
            c.login_timeouts += login_timeouts;
            c.idle_timeouts += idle_timeouts;
            c.partial_timeouts += partial_timeouts;
            c.write_timeouts += write_timeouts;
        }
        if login_timeouts + partial_timeouts > 0 {
            if let Some(suppressed) = shard.accept_log.check() {
                tracing::warn!(
                    shard = shard.id,
                    login_timeouts,
                    partial_timeouts,
                    suppressed,
                    "closed connections that did not log in or finish a frame in time"
                );
            }
        }
        let mut rows = Vec::new();
        shard
            .core
            .borrow_mut()
            .expire_commands(unix_now(), &mut rows);
        let now = Instant::now();
        for row in &rows {
            shard.store(row, now);
        }
        shard.keep_queues();
    }
}
