//! One shard's state: its ingest core (the sessions of the IMEIs it owns),
//! its frame decoder, its connections, its way into the
//! sink, and the messages other threads send it.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::config::Config;
use crate::geo::GeoHandle;
use crate::ingest::{
    CloseReason, CommandError, CommandRequest, CommandView, DeviceView, Ingest, Outcome,
    UnknownBeacon,
};
use crate::logging::LogLimit;
use crate::metrics::{Counters, ShardMetrics};
use crate::protocol::{FrameDecoder, Imei};

use crate::events::Events;
use crate::log::LogWriter;
use crate::record::Record;

use super::limits::{ConnPermit, ConnectionLimits};

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
        request: CommandRequest,
        reply: flume::Sender<Result<CommandView, CommandError>>,
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
    /// IMEIs replaced from other addresses often enough to look cloned.
    Clones(flume::Sender<Vec<crate::ingest::CloneView>>),
    /// Stop accepting, close every connection after its in-flight frames,
    /// hand every record to the sink, and return.
    Shutdown,
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

/// What the timer and other connections can see of a connection.
#[derive(Debug)]
pub struct ConnShared {
    pub fd: RawFd,
    pub accepted: Instant,
    pub last_seen: Cell<Instant>,
    pub logged_in: Cell<bool>,
    /// When the unfinished frame the connection keeps began arriving.
    pub partial_since: Cell<Option<Instant>>,
    /// When the send still in flight began: the timer ends a connection
    /// whose badge does not take its replies within the write deadline.
    pub sending_since: Cell<Option<Instant>>,
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

/// Unix seconds now: the one clock the ingest core is given.
pub(crate) fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

pub(crate) struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    /// What is decided for every frame; borrowed only synchronously.
    pub core: RefCell<Ingest>,
    pub decoder: RefCell<FrameDecoder>,
    /// The core's answer to one read, emptied before the next await.
    pub outcome: RefCell<Outcome>,
    pub conns: RefCell<HashMap<u64, Rc<ConnShared>>>,
    pub peers: Vec<flume::Sender<ShardMsg>>,
    /// Where every accepted row goes first.
    pub log: Rc<LogWriter>,
    /// Replies wait until the rows they acknowledge are durable.
    pub durable_acks: bool,
    pub events: Events,
    pub limits: Arc<ConnectionLimits>,
    pub stopping: Cell<bool>,
    pub accept_log: LogLimit,
    pub geo: Option<GeoHandle>,
    /// From the last byte of a frame read to its reply written, in µs.
    pub reply_latency: RefCell<Histogram<u64>>,
}

impl Shard {
    /// The counters, for the server's own (sockets, accepts, timeouts).
    pub fn counters(&self) -> RefMut<'_, Counters> {
        RefMut::map(self.core.borrow_mut(), |core| &mut core.counters)
    }

    /// Keeps a row: offered as a live event, and appended to the log.
    /// Returns the position the log must reach for the row to be durable.
    pub fn store(&self, record: &Record, received: Instant) -> u64 {
        self.events.publish(record);
        self.log.append(record, received)
    }

    /// Logs the command queues that changed, so they survive a restart.
    pub fn keep_queues(&self) -> u64 {
        let changes = self.core.borrow_mut().take_queue_changes();
        let mut end = self.log.appended_end();
        for json in changes {
            end = self.log.append_commands(json.as_bytes());
        }
        end
    }

    pub fn snapshot(&self) -> ShardMetrics {
        let core = self.core.borrow();
        let mut counters = core.counters();
        counters.recv_buffer_waits = crate::runtime::receive_buffer_waits();
        ShardMetrics {
            shard: self.id,
            counters,
            frames: core.frames.clone(),
            frame: self.decoder.borrow().stats.clone(),
            reply_latency: self.reply_latency.borrow().clone(),
        }
    }

    pub fn register(&self, conn_id: u64, fd: RawFd, accepted: Instant) -> Rc<ConnShared> {
        let shared = Rc::new(ConnShared {
            fd,
            accepted,
            last_seen: Cell::new(accepted),
            logged_in: Cell::new(false),
            partial_since: Cell::new(None),
            sending_since: Cell::new(None),
            close: Cell::new(None),
            downlink: RefCell::new(Vec::new()),
            waker: RefCell::new(None),
            owed: Cell::new(0),
        });
        self.conns.borrow_mut().insert(conn_id, shared.clone());
        self.counters().connections_open += 1;
        shared
    }

    /// A command from the control socket: written to its badge's
    /// connection at once, or queued by the core; its log rows stored.
    /// Queues or delivers a command. Returns the answer, and the position
    /// the log must reach before it is given: a queued command is promised
    /// to survive a restart.
    pub fn submit(&self, request: CommandRequest) -> (Result<CommandView, CommandError>, u64) {
        let mut rows = Vec::new();
        let result = self
            .core
            .borrow_mut()
            .submit(request, unix_now(), &mut rows);
        let now = Instant::now();
        for row in &rows {
            self.store(row, now);
        }
        let lsn = self.keep_queues();
        let answer = result.map(|(command, delivery)| {
            if let Some(d) = delivery {
                if let Some(conn) = self.conns.borrow().get(&d.conn_id) {
                    conn.push_downlink(&d.frame);
                }
            }
            command
        });
        (answer, lsn)
    }
}
