//! One shard: a glommio executor pinned to a core, with its own
//! `SO_REUSEPORT` listener, its connections, the sessions of the IMEIs it
//! owns, one coarse timer, and its counters.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::metrics::ShardMetrics;
use crate::protocol::{FrameConfig, FrameDecoder, Imei};
use crate::sink::SinkHandle;

use super::connection::{self, Conn};
use super::limits::{ConnPermit, ConnectionLimits, Refused};
use super::session::Session;
use super::LogLimiter;

/// Messages a shard takes from other shards and from the process.
pub enum ShardMsg {
    /// A connection whose IMEI this shard owns.
    Handoff(Handoff),
    /// Send back a snapshot of the counters.
    Metrics(flume::Sender<ShardMetrics>),
    /// Stop accepting, close every connection after its in-flight frames,
    /// hand every record to the sink, and return.
    Shutdown,
}

/// A socket moving to the shard that owns its IMEI, with the bytes already
/// read from it (starting with the login frame).
pub struct Handoff {
    pub fd: RawFd,
    pub peer: SocketAddr,
    pub conn_id: u64,
    pub accepted: Instant,
    pub bytes: Vec<u8>,
    pub permit: ConnPermit,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    IoError,
    LoginTimeout,
    IdleTimeout,
    /// A newer login of the same IMEI took over.
    Replaced,
    /// The badge logged in again with another IMEI on the same connection.
    ImeiChanged,
    /// Replies piled up because the badge stopped reading.
    OutputOverflow,
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::IoError => "io_error",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Replaced => "replaced",
            CloseReason::ImeiChanged => "imei_changed",
            CloseReason::OutputOverflow => "output_overflow",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What the timer and other connections can see of a connection.
#[derive(Debug)]
pub struct ConnShared {
    pub fd: RawFd,
    pub accepted: Instant,
    pub last_seen: Cell<Instant>,
    pub logged_in: Cell<bool>,
    pub close: Cell<Option<CloseReason>>,
}

impl ConnShared {
    /// Ends the connection from outside its task: the pending read returns
    /// end-of-file, and the task cleans up with `reason`.
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
        // SAFETY: the fd stays open until the connection task drops its
        // stream, which happens only after it has left the shard's table.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RD) };
    }
}

pub(crate) struct Shard {
    pub id: usize,
    pub shards: usize,
    pub config: Arc<Config>,
    pub instance: &'static str,
    pub idle_timeout: Duration,
    pub login_timeout: Duration,
    pub decoder: RefCell<FrameDecoder>,
    /// Every connection of the shard reads into this one buffer; a
    /// connection keeps only a partial frame of its own.
    pub buf: RefCell<Box<[u8]>>,
    /// Replies of one read, written before the next await.
    pub out: RefCell<BytesMut>,
    pub conns: RefCell<HashMap<u64, Rc<ConnShared>>>,
    pub sessions: RefCell<HashMap<Imei, Session>>,
    pub metrics: RefCell<ShardMetrics>,
    pub peers: Vec<flume::Sender<ShardMsg>>,
    pub sink: SinkHandle,
    pub limits: Arc<ConnectionLimits>,
    pub seq: Cell<u64>,
    pub stopping: Cell<bool>,
    pub decode_log: LogLimiter,
    pub accept_log: LogLimiter,
}

/// Everything a shard thread needs to start.
pub(crate) struct ShardStart {
    pub id: usize,
    pub shards: usize,
    pub listen: SocketAddr,
    pub config: Arc<Config>,
    pub instance: &'static str,
    pub inbox: flume::Receiver<ShardMsg>,
    pub peers: Vec<flume::Sender<ShardMsg>>,
    pub sink: SinkHandle,
    pub limits: Arc<ConnectionLimits>,
    pub next_conn_id: Arc<std::sync::atomic::AtomicU64>,
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
}

pub(crate) async fn run(start: ShardStart) -> ShardMetrics {
    let listener = match TcpListener::bind(start.listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = start.ready.send(Err(format!("shard {}: cannot listen on {}: {e}", start.id, start.listen)));
            return ShardMetrics::new(start.id);
        }
    };
    let config = start.config.clone();
    let shard = Rc::new(Shard {
        id: start.id,
        shards: start.shards,
        idle_timeout: config.idle_timeout(),
        login_timeout: Duration::from_secs(config.server.login_timeout_secs),
        decoder: RefCell::new(FrameDecoder::new(FrameConfig {
            max_frame_len: config.protocol.max_frame,
            accept_bad_crc: config.protocol.accept_bad_crc,
        })),
        buf: RefCell::new(vec![0u8; config.server.read_buffer].into_boxed_slice()),
        out: RefCell::new(BytesMut::with_capacity(4096)),
        conns: RefCell::new(HashMap::new()),
        sessions: RefCell::new(HashMap::new()),
        metrics: RefCell::new(ShardMetrics::new(start.id)),
        peers: start.peers,
        sink: start.sink,
        limits: start.limits,
        seq: Cell::new(0),
        stopping: Cell::new(false),
        decode_log: LogLimiter::new(),
        accept_log: LogLimiter::new(),
        instance: start.instance,
        config,
    });
    let _ = start.ready.send(Ok(()));

    let accept = glommio::spawn_local(accept_loop(shard.clone(), listener, start.next_conn_id));
    let timer = glommio::spawn_local(timer_loop(shard.clone()));

    while let Ok(msg) = start.inbox.recv_async().await {
        match msg {
            ShardMsg::Handoff(h) => adopt(&shard, h),
            ShardMsg::Metrics(reply) => {
                let _ = reply.try_send(shard.snapshot());
            }
            ShardMsg::Shutdown => break,
        }
    }

    shard.stopping.set(true);
    accept.cancel().await;
    for conn in shard.conns.borrow().values() {
        conn.close(CloseReason::Shutdown);
    }
    // Connections finish their in-flight frames and hand their records to
    // the sink; sockets handed to us meanwhile are closed unprocessed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shard.conns.borrow().is_empty() && Instant::now() < deadline {
        while let Ok(ShardMsg::Handoff(h)) = start.inbox.try_recv() {
            // SAFETY: the fd was dup'ed for us and nobody else owns it.
            unsafe { libc::close(h.fd) };
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    timer.cancel().await;
    shard.snapshot()
}

impl Shard {
    pub fn snapshot(&self) -> ShardMetrics {
        let mut m = self.metrics.borrow().clone();
        m.frame = self.decoder.borrow().stats.clone();
        m.sessions = self.sessions.borrow().len() as u64;
        m
    }

    fn register(&self, conn_id: u64, fd: RawFd, accepted: Instant) -> Rc<ConnShared> {
        let shared = Rc::new(ConnShared {
            fd,
            accepted,
            last_seen: Cell::new(accepted),
            logged_in: Cell::new(false),
            close: Cell::new(None),
        });
        self.conns.borrow_mut().insert(conn_id, shared.clone());
        self.metrics.borrow_mut().connections_open += 1;
        shared
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, next_id: Arc<std::sync::atomic::AtomicU64>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let stream = match listener.accept().await {
            Ok(s) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                let e = std::io::Error::from(e);
                let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                {
                    let mut m = shard.metrics.borrow_mut();
                    if out_of_fds {
                        m.emfile += 1;
                    } else {
                        m.accept_errors += 1;
                    }
                }
                if let Some(suppressed) = shard.accept_log.allow() {
                    tracing::warn!(shard = shard.id, error = %e, suppressed, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                }
                // Out of descriptors the listener stays readable: sleeping is
                // what keeps this from spinning.
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else { continue };
        let permit = match shard.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                let mut m = shard.metrics.borrow_mut();
                match why {
                    Refused::Total => m.connections_refused_limit += 1,
                    Refused::PerIp => m.connections_refused_per_ip += 1,
                }
                drop(m);
                if let Some(suppressed) = shard.accept_log.allow() {
                    tracing::warn!(shard = shard.id, %peer, ?why, suppressed, "connection refused by limit");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let accepted = Instant::now();
        let shared = shard.register(conn_id, std::os::fd::AsRawFd::as_raw_fd(&stream), accepted);
        shard.metrics.borrow_mut().connections_accepted += 1;
        let conn = Conn::new(conn_id, peer, shared, permit, false);
        glommio::spawn_local(connection::run(shard.clone(), stream, conn, Vec::new())).detach();
    }
}

/// Takes over a socket from another shard.
fn adopt(shard: &Rc<Shard>, h: Handoff) {
    if shard.stopping.get() {
        // SAFETY: the fd was dup'ed for us and nobody else owns it.
        unsafe { libc::close(h.fd) };
        return;
    }
    // SAFETY: the sending shard dup'ed this fd for us and closed its own copy.
    let stream = unsafe { TcpStream::from_raw_fd(h.fd) };
    let shared = shard.register(h.conn_id, h.fd, h.accepted);
    shard.metrics.borrow_mut().handoffs_in += 1;
    let conn = Conn::new(h.conn_id, h.peer, shared, h.permit, true);
    glommio::spawn_local(connection::run(shard.clone(), stream, conn, h.bytes)).detach();
}

/// One coarse timer per shard closes connections that never logged in or
/// went silent, instead of a timer per read.
async fn timer_loop(shard: Rc<Shard>) {
    let period = Duration::from_millis(shard.config.server.timer_interval_ms);
    loop {
        glommio::timer::sleep(period).await;
        let now = Instant::now();
        let mut login_timeouts = 0;
        let mut idle_timeouts = 0;
        for conn in shard.conns.borrow().values() {
            if conn.close.get().is_some() {
                continue;
            }
            if !conn.logged_in.get() {
                if now.duration_since(conn.accepted) >= shard.login_timeout {
                    conn.close(CloseReason::LoginTimeout);
                    login_timeouts += 1;
                }
            } else if now.duration_since(conn.last_seen.get()) >= shard.idle_timeout {
                conn.close(CloseReason::IdleTimeout);
                idle_timeouts += 1;
            }
        }
        let mut m = shard.metrics.borrow_mut();
        m.login_timeouts += login_timeouts;
        m.idle_timeouts += idle_timeouts;
    }
}
