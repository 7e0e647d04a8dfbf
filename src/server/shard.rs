//! One shard: a glommio executor pinned to a core, with its own
//! `SO_REUSEPORT` listener, its connections, the sessions of the IMEIs it
//! owns, one coarse timer, and its counters.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::{TcpListener, TcpStream};

use crate::beacons::{UnknownBeacon, UnknownBeacons};
use crate::config::Config;
use crate::metrics::ShardMetrics;
use crate::protocol::{FrameConfig, FrameDecoder, Imei};
use crate::record::{Envelope, Record};
use crate::sink::SinkHandle;

use super::connection::{self, unix_now, Conn};
use super::downlink::{self, CommandKind, CommandStatus, CommandView, Downlinks};
use super::limits::{ConnPermit, ConnectionLimits, Refused};
use super::session::Session;
use crate::logging::LogLimit;

/// Messages a shard takes from other shards and from the process.
pub enum ShardMsg {
    /// A connection whose IMEI this shard owns.
    Handoff(Handoff),
    /// Send back a snapshot of the counters.
    Metrics(flume::Sender<ShardMetrics>),
    /// The badges this shard owns that are online, up to a limit.
    Devices {
        limit: usize,
        reply: flume::Sender<Vec<DeviceView>>,
    },
    /// One badge, if online here.
    Device {
        imei: Imei,
        reply: flume::Sender<Option<DeviceView>>,
    },
    /// A command (0x80) or message (0x82) for a badge this shard owns. With
    /// `wait`, the final status is sent there too.
    Command {
        imei: Imei,
        kind: CommandKind,
        text: String,
        wait: Option<flume::Sender<CommandView>>,
        reply: flume::Sender<Result<CommandView, String>>,
    },
    /// Recent and queued commands of a badge.
    Commands {
        imei: Imei,
        reply: flume::Sender<Vec<CommandView>>,
    },
    /// Start the reply-latency histogram afresh.
    ResetLatency,
    /// Beacons heard here that the registry does not know, and how many
    /// more were not remembered (the tracker was full).
    UnknownBeacons(flume::Sender<(Vec<UnknownBeacon>, u64)>),
    /// Stop accepting, close every connection after its in-flight frames,
    /// hand every record to the sink, and return.
    Shutdown,
}

/// What the control socket shows of an online badge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceView {
    pub imei: String,
    pub online: bool,
    pub shard: usize,
    pub peer: String,
    pub device_type: u16,
    /// Unix seconds.
    pub logged_in_at: u32,
    pub last_frame_at: u32,
    pub battery: Option<u8>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// A socket moving to the shard that owns its IMEI, with the bytes already
/// read from it (starting with the login frame).
pub struct Handoff {
    /// Owned: a handoff dropped anywhere (a stopping shard, a full inbox)
    /// closes its socket instead of leaking it.
    pub fd: std::os::fd::OwnedFd,
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
    /// Server-initiated frames waiting to be written by the connection's task.
    pub downlink: RefCell<Vec<u8>>,
    /// Wakes the connection's task when `downlink` gets bytes.
    pub waker: RefCell<Option<std::task::Waker>>,
    /// Replies still waiting for a geo lookup (address requests, alarms):
    /// a connection closed for shutdown writes them before it goes.
    pub owed: Cell<u32>,
}

impl ConnShared {
    /// Ends the connection from outside its task: the pending read returns
    /// end-of-file, and the task cleans up with `reason`.
    ///
    /// For a shutdown only the reading side is shut, so that the frames
    /// already received are still answered. Every other reason shuts both
    /// sides: a write waiting on a badge that stopped reading fails at once
    /// instead of keeping the connection (and the shard's shutdown) forever.
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
        let how = if reason == CloseReason::Shutdown {
            libc::SHUT_RD
        } else {
            libc::SHUT_RDWR
        };
        // SAFETY: the fd stays open until the connection task drops its
        // stream, which happens only after it has left the shard's table.
        unsafe { libc::shutdown(self.fd, how) };
    }

    /// Also shuts the writing side of a connection closed for shutdown
    /// that is still waiting to write.
    pub fn force_close(&self) {
        // SAFETY: as in `close`.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    /// Hands the connection's task a frame to write.
    pub fn push_downlink(&self, frame: &[u8]) {
        self.downlink.borrow_mut().extend_from_slice(frame);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// How long a shutdown lets connections write the answers to their last
/// frames before their writing side is shut as well.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);

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
    pub decode_log: LogLimit,
    pub accept_log: LogLimit,
    pub downlinks: RefCell<Downlinks>,
    /// Records made outside a connection (command log) the sink had no room for.
    pub backlog: RefCell<VecDeque<Envelope>>,
    pub next_command_id: Arc<std::sync::atomic::AtomicU32>,
    /// Connections waiting for room in the sink queue, and whether the one
    /// task that watches the queue for them is running.
    pub sink_waiters: RefCell<Vec<std::task::Waker>>,
    pub sink_watcher: Cell<bool>,
    pub services: super::Services,
    /// Beacons heard that the registry does not know (`beacons unknown`).
    pub unknown_beacons: RefCell<UnknownBeacons>,
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
    pub next_command_id: Arc<std::sync::atomic::AtomicU32>,
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
    pub services: super::Services,
}

pub(crate) async fn run(start: ShardStart) -> ShardMetrics {
    let listener = match TcpListener::bind(start.listen) {
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
        decode_log: LogLimit::per_second(),
        accept_log: LogLimit::per_second(),
        downlinks: RefCell::new(Downlinks::default()),
        backlog: RefCell::new(VecDeque::new()),
        next_command_id: start.next_command_id,
        sink_waiters: RefCell::new(Vec::new()),
        sink_watcher: Cell::new(false),
        services: start.services,
        unknown_beacons: RefCell::new(UnknownBeacons::new(config.beacons.unknown_max)),
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
            ShardMsg::Devices { limit, reply } => {
                let sessions = shard.sessions.borrow();
                let views = sessions
                    .values()
                    .take(limit)
                    .map(|s| shard.view(s))
                    .collect();
                let _ = reply.try_send(views);
            }
            ShardMsg::Device { imei, reply } => {
                let view = shard.sessions.borrow().get(&imei).map(|s| shard.view(s));
                let _ = reply.try_send(view);
            }
            ShardMsg::Command {
                imei,
                kind,
                text,
                wait,
                reply,
            } => {
                let _ = reply.try_send(shard.submit(imei, kind, text, wait));
            }
            ShardMsg::Commands { imei, reply } => {
                let _ = reply.try_send(shard.downlinks.borrow().list(imei));
            }
            ShardMsg::UnknownBeacons(reply) => {
                let mut unknown = shard.unknown_beacons.borrow_mut();
                // Entries the registry learnt since (a reload) are not unknown anymore.
                unknown.forget(&shard.services.beacons);
                let _ = reply.try_send((unknown.snapshot(), unknown.overflow()));
            }
            ShardMsg::ResetLatency => shard.metrics.borrow_mut().reply_latency.reset(),
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
    // There is no deadline after which records are given up: a connection
    // still here is waiting for room in the sink queue, which drains into
    // ClickHouse or, failing that, the spool. Dropping it would lose rows
    // the badges were already answered for.
    // Replies owed to a geo lookup are written once it answers, which is
    // at most the deadline away.
    let grace = Instant::now()
        + match shard.services.geo {
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
                "shutdown still waiting for connections to hand their records to the sink (is ClickHouse or the spool stuck?)"
            );
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    // Rows still waiting for the geo service: each waits at most the
    // deadline, then is queued with or without its position.
    while shard.metrics.borrow().counters.geo_pending > 0 {
        while start.inbox.try_recv().is_ok() {}
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    while start.inbox.try_recv().is_ok() {}
    timer.cancel().await;
    shard.drain_backlog().await;
    shard.snapshot()
}

impl Shard {
    pub fn snapshot(&self) -> ShardMetrics {
        let mut m = self.metrics.borrow().clone();
        m.frame = self.decoder.borrow().stats.clone();
        m.counters.sessions = self.sessions.borrow().len() as u64;
        m
    }

    fn register(&self, conn_id: u64, fd: RawFd, accepted: Instant) -> Rc<ConnShared> {
        let shared = Rc::new(ConnShared {
            fd,
            accepted,
            last_seen: Cell::new(accepted),
            logged_in: Cell::new(false),
            close: Cell::new(None),
            downlink: RefCell::new(Vec::new()),
            waker: RefCell::new(None),
            owed: Cell::new(0),
        });
        self.conns.borrow_mut().insert(conn_id, shared.clone());
        self.metrics.borrow_mut().counters.connections_open += 1;
        shared
    }
}

impl Shard {
    fn view(&self, s: &Session) -> DeviceView {
        DeviceView {
            imei: s.imei.to_string(),
            online: true,
            shard: self.id,
            peer: s.peer.to_string(),
            device_type: s.login.type_code.unwrap_or(0),
            logged_in_at: s.logged_in_at,
            last_frame_at: s.last_frame_at,
            battery: s.battery,
            latitude: s.last_position.map(|p| p.0),
            longitude: s.last_position.map(|p| p.1),
        }
    }

    /// Hands a record made outside any connection to the sink, keeping it
    /// in order behind earlier ones when the queue is full.
    pub fn emit(&self, record: Record) {
        self.metrics.borrow_mut().counters.records += 1;
        let envelope = Envelope {
            record,
            received: Instant::now(),
        };
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            backlog.push_back(envelope);
        } else if let Err(e) = self.sink.try_send(envelope) {
            backlog.push_back(e);
        }
    }

    /// Resolves when the sink queue has room again. One watcher task per
    /// shard polls the queue while anyone waits, instead of every waiting
    /// connection waking on its own timer.
    pub async fn sink_space(self: &Rc<Self>) {
        let mut registered = false;
        futures_lite::future::poll_fn(|cx| {
            if registered {
                return std::task::Poll::Ready(());
            }
            registered = true;
            self.sink_waiters.borrow_mut().push(cx.waker().clone());
            if !self.sink_watcher.replace(true) {
                glommio::spawn_local(watch_sink(self.clone())).detach();
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Hands a record to the sink, waiting (and counting the wait) while
    /// its queue is full. For a record its caller holds in order itself;
    /// records made outside a connection go through [`Shard::emit`].
    pub async fn send(self: &Rc<Self>, mut envelope: Envelope) {
        while let Err(e) = self.sink.try_send(envelope) {
            envelope = e;
            self.metrics.borrow_mut().counters.sink_full_waits += 1;
            self.sink_space().await;
        }
    }

    async fn drain_backlog(self: &Rc<Self>) {
        loop {
            let Some(envelope) = self.backlog.borrow_mut().pop_front() else {
                return;
            };
            if let Err(envelope) = self.sink.try_send(envelope) {
                self.backlog.borrow_mut().push_front(envelope);
                self.sink_space().await;
            }
        }
    }

    fn log_command(&self, imei: Imei, command: &CommandView) {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        self.emit(downlink::log_row(
            imei,
            command,
            unix_now(),
            self.instance,
            self.id as u16,
            seq,
        ));
    }

    /// Accepts a command: written at once to an online badge, queued for
    /// an offline one (bounded), logged either way.
    fn submit(
        &self,
        imei: Imei,
        kind: CommandKind,
        text: String,
        wait: Option<flume::Sender<CommandView>>,
    ) -> Result<CommandView, String> {
        downlink::validate(kind, &text)?;
        let id = self
            .next_command_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let command = Downlinks::new_command(imei, id, kind, text, unix_now());
        if let Some(w) = wait {
            self.downlinks.borrow_mut().wait(id, w);
        }
        if self.sessions.borrow().contains_key(&imei) {
            return Ok(self.deliver(imei, command));
        }
        self.log_command(imei, &command);
        let queued = self.downlinks.borrow_mut().enqueue(
            imei,
            command,
            self.config.server.max_queued_commands,
        );
        match queued {
            Ok(()) => Ok(self
                .downlinks
                .borrow()
                .list(imei)
                .into_iter()
                .find(|c| c.id == id)
                .expect("just queued")),
            Err(mut command) => {
                command.status = CommandStatus::Failed;
                command.error = "queue full".into();
                self.downlinks.borrow_mut().remember(imei, &command);
                self.log_command(imei, &command);
                Err(format!(
                    "{} commands already queued for {imei} (server.max_queued_commands)",
                    self.config.server.max_queued_commands
                ))
            }
        }
    }

    /// Writes a command to the badge's connection and marks it sent.
    pub fn deliver(&self, imei: Imei, mut command: CommandView) -> CommandView {
        let target = {
            let mut sessions = self.sessions.borrow_mut();
            sessions
                .get_mut(&imei)
                .map(|s| (s.conn_id, s.next_serial()))
        };
        let conn = target
            .and_then(|(id, serial)| self.conns.borrow().get(&id).map(|c| (c.clone(), serial)));
        command.updated_at = unix_now();
        let mut frame = BytesMut::new();
        match conn {
            Some((conn, serial)) => {
                match downlink::encode(command.kind, command.id, &command.text, serial, &mut frame)
                {
                    Ok(()) => {
                        conn.push_downlink(&frame);
                        command.serial = serial;
                        command.status = CommandStatus::Sent;
                    }
                    Err(e) => {
                        command.status = CommandStatus::Failed;
                        command.error = e;
                    }
                }
            }
            None => {
                command.status = CommandStatus::Failed;
                command.error = "badge went offline".into();
            }
        }
        self.downlinks.borrow_mut().remember(imei, &command);
        self.log_command(imei, &command);
        command
    }

    /// Delivers what was queued while the badge was offline.
    pub fn deliver_queued(&self, imei: Imei) {
        let queued = self.downlinks.borrow_mut().take_queued(imei);
        for command in queued {
            self.deliver(imei, command);
        }
    }
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    next_id: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let stream = match listener.accept().await {
            Ok(s) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                let e = std::io::Error::from(e);
                let out_of_fds =
                    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                {
                    let mut m = shard.metrics.borrow_mut();
                    if out_of_fds {
                        m.counters.emfile += 1;
                    } else {
                        m.counters.accept_errors += 1;
                    }
                }
                if let Some(suppressed) = shard.accept_log.check() {
                    tracing::warn!(shard = shard.id, error = %e, suppressed, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                }
                // Out of descriptors the listener stays readable: sleeping is
                // what keeps this from spinning.
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let permit = match shard.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                let mut m = shard.metrics.borrow_mut();
                match why {
                    Refused::Total => m.counters.connections_refused_limit += 1,
                    Refused::PerIp => m.counters.connections_refused_per_ip += 1,
                }
                drop(m);
                if let Some(suppressed) = shard.accept_log.check() {
                    tracing::warn!(shard = shard.id, %peer, ?why, suppressed, "connection refused by limit");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let accepted = Instant::now();
        let shared = shard.register(conn_id, std::os::fd::AsRawFd::as_raw_fd(&stream), accepted);
        shard.metrics.borrow_mut().counters.connections_accepted += 1;
        let conn = Conn::new(conn_id, peer, shared, permit, false);
        glommio::spawn_local(connection::run(shard.clone(), stream, conn, Vec::new())).detach();
    }
}

/// Takes over a socket from another shard.
fn adopt(shard: &Rc<Shard>, h: Handoff) {
    if shard.stopping.get() {
        return;
    }
    let fd = std::os::fd::IntoRawFd::into_raw_fd(h.fd);
    // SAFETY: the sending shard dup'ed this fd for us and closed its own copy;
    // `into_raw_fd` handed its ownership to the stream.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let shared = shard.register(h.conn_id, fd, h.accepted);
    shard.metrics.borrow_mut().counters.handoffs_in += 1;
    let conn = Conn::new(h.conn_id, h.peer, shared, h.permit, true);
    glommio::spawn_local(connection::run(shard.clone(), stream, conn, h.bytes)).detach();
}

/// Wakes the connections waiting for sink space once the queue has room.
async fn watch_sink(shard: Rc<Shard>) {
    while !shard.sink_waiters.borrow().is_empty() {
        glommio::timer::sleep(Duration::from_micros(500)).await;
        if shard.sink.has_room() {
            for waker in shard.sink_waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }
    shard.sink_watcher.set(false);
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
        {
            let mut m = shard.metrics.borrow_mut();
            m.counters.login_timeouts += login_timeouts;
            m.counters.idle_timeouts += idle_timeouts;
        }
        let ttl = Duration::from_secs(shard.config.server.command_ttl_secs);
        let expired = shard.downlinks.borrow_mut().expire(unix_now(), ttl);
        for (imei, command) in expired {
            shard.log_command(imei, &command);
        }
        shard.drain_backlog().await;
    }
}
