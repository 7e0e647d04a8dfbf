//! The ingestion server: one runtime thread per shard, connections
//! sharded by IMEI, and the process-level start and shutdown around them.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::metrics::ShardMetrics;
use crate::sink::SinkHandle;

mod connection;
mod executor;
mod geo;
pub mod limits;
mod proxy;
mod shard;

pub use crate::ingest::{CloseReason, DeviceView};
pub use shard::ShardMsg;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Limit(#[from] limits::LimitError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {reason}")]
    Shard { shard: usize, reason: String },
}

/// Descriptors kept free for the listeners, io_uring, the sink and the
/// control socket when the connection limit is derived from `ulimit -n`.
const FD_RESERVE: u64 = 64;

/// A running server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    shards: Vec<std::thread::JoinHandle<ShardMetrics>>,
    map: crate::ingest::ShardMap,
    peers: Vec<flume::Sender<ShardMsg>>,
    local_addr: SocketAddr,
    started: Instant,
}

/// What shards may ask besides the sink; all of it is optional.
#[derive(Clone)]
pub struct Services {
    /// Positions and addresses; `None` answers address requests at once
    /// with an empty address and stores rows as they came.
    pub geo: Option<crate::geo::GeoHandle>,
    /// Where beacons are; an empty registry knows none (every beacon is
    /// then counted unknown).
    pub beacons: crate::beacons::BeaconRegistry,
    /// Reloads the registry (the control socket's `beacons reload`);
    /// `None` when there is no registry source.
    pub beacon_source: Option<crate::beacons::BeaconHandle>,
    /// Live events: every stored row is offered (one atomic load when
    /// nobody listens).
    pub events: crate::events::Events,
    /// Who may log in; `None` lets every IMEI in.
    pub allowlist: Option<Arc<dyn crate::record::lookup::ImeiAllowlist>>,
    /// Per-IMEI clock zones from the `devices` table.
    pub zones: Option<crate::ingest::ZoneTable>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            geo: None,
            beacons: Default::default(),
            beacon_source: None,
            events: crate::events::Events::disabled(),
            allowlist: None,
            zones: None,
        }
    }
}

/// Starts the shards, each appending to its log as recovery left it, and
/// returns once every one of them listens.
pub fn start(
    config: Arc<Config>,
    sink: SinkHandle,
    services: Services,
    logs: Vec<crate::log::Recovery>,
) -> Result<RunningServer, ServerError> {
    let memlock = limits::ensure_memlock()?;
    let (nofile, nofile_hard) = limits::raise_nofile();
    let n = config.shards();
    tracing::info!(
        shards = n,
        memlock,
        open_files_limit = nofile,
        open_files_hard_limit = nofile_hard,
        "starting"
    );
    let max_connections = match config.server.max_connections {
        0 => nofile.saturating_sub(FD_RESERVE).max(1) as usize,
        n => n,
    };
    if max_connections as u64 + FD_RESERVE > nofile {
        tracing::warn!(
            max_connections,
            nofile,
            "server.max_connections exceeds the open-files limit: accept will fail with EMFILE before the limit is reached"
        );
    }

    // Bind once (without listening) to learn the port when 0 was asked for,
    // and hold it until every shard listens on it with SO_REUSEPORT, so
    // nothing else can take the port in between. A socket that does not
    // listen is never given connections.
    let (reservation, listen) = reserve(config.server.listen)?;

    let instance: &'static str = Box::leak(config.server.instance.clone().into_boxed_str());
    let beacons: Arc<dyn crate::record::lookup::BeaconDirectory> =
        Arc::new(services.beacons.clone());
    let limits = limits::ConnectionLimits::new(
        max_connections,
        config.server.max_connections_per_ip,
        config.limits.max_prelogin,
        config.limits.max_prelogin_per_ip,
    );
    let next_conn_id = Arc::new(AtomicU64::new(1));
    // Command ids are the 4-byte server flag: from the clock, and past any
    // id the logs kept, so they are unique across restarts.
    let first_command_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32)
        .max(
            logs.iter()
                .map(|l| l.last_command_id.wrapping_add(1))
                .max()
                .unwrap_or(0),
        );
    let next_command_id = Arc::new(std::sync::atomic::AtomicU32::new(first_command_id));
    if logs.len() != n {
        return Err(ServerError::Shard {
            shard: logs.len(),
            reason: format!("{} logs for {n} shards", logs.len()),
        });
    }
    let key = crate::log::shard_key(&config.log.dir).map_err(|e| ServerError::Shard {
        shard: 0,
        reason: format!("the shard key in {}: {e}", config.log.dir.display()),
    })?;
    let map = crate::ingest::ShardMap::new(key, n);
    let (peers, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| flume::bounded(4096)).unzip();
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut shards = Vec::with_capacity(n);
    for ((id, inbox), recovery) in inboxes.into_iter().enumerate().zip(logs) {
        let mut settings = crate::ingest::Settings::new(&config, id, map);
        if let Some(zones) = &services.zones {
            settings.clocks.set_table(zones.clone());
        }
        let mut core = crate::ingest::Ingest::new(
            settings,
            instance,
            next_command_id.clone(),
            beacons.clone(),
        );
        if let Some(allowlist) = &services.allowlist {
            core.set_allowlist(allowlist.clone());
        }
        core.restore_commands(&recovery.commands);
        let start = executor::ShardStart {
            id,
            listen,
            config: config.clone(),
            core,
            inbox,
            peers: peers.clone(),
            sink: sink.clone(),
            log: executor::ShardLogStart {
                dir: recovery.dir,
                end: recovery.end,
                segments: recovery.segments,
                stats: recovery.stats,
            },
            events: services.events.clone(),
            limits: limits.clone(),
            next_conn_id: next_conn_id.clone(),
            ready: ready_tx.clone(),
            geo: services.geo.clone(),
        };
        let mut builder = crate::runtime::Builder::new(format!("shard-{id}"))
            .ring_entries(config.server.ring_depth as u32)
            .buffers(config.server.read_buffers, config.server.read_buffer);
        if n <= cpus {
            builder = builder.pin(id);
        }
        let handle =
            builder
                .spawn(move || executor::run(start))
                .map_err(|e| ServerError::Shard {
                    shard: id,
                    reason: e.to_string(),
                })?;
        shards.push(handle);
    }
    drop(ready_tx);
    for id in 0..n {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(ServerError::Shard { shard: id, reason }),
            Err(_) => {
                return Err(ServerError::Shard {
                    shard: id,
                    reason: "did not start within 10 s (see the log)".into(),
                })
            }
        }
    }
    drop(reservation);
    tracing::info!(%listen, shards = n, "listening for badges");
    Ok(RunningServer {
        shards,
        map,
        peers,
        local_addr: listen,
        started: Instant::now(),
    })
}

/// A bound, non-listening `SO_REUSEPORT` socket on `addr`, and the address
/// with port 0 resolved. Binding also reports a port already taken by
/// another program (one without `SO_REUSEPORT`) before any shard starts.
fn reserve(addr: SocketAddr) -> Result<(socket2::Socket, SocketAddr), ServerError> {
    use socket2::{Domain, Socket, Type};
    let err = |source| ServerError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    let local = socket
        .local_addr()
        .map_err(err)?
        .as_socket()
        .ok_or_else(|| err(std::io::Error::other("not an IP socket")))?;
    Ok((socket, local))
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A way to reach the shards from other threads (control socket, summaries).
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            peers: self.peers.clone(),
            map: self.map,
        }
    }

    /// Counters of every shard.
    pub fn metrics(&self) -> Vec<ShardMetrics> {
        self.handle().metrics()
    }

    /// Stops accepting, lets every connection finish its in-flight frames
    /// and hand its records to the sink, and returns the final counters.
    pub fn shutdown(self) -> Vec<ShardMetrics> {
        for p in &self.peers {
            let _ = p.send(ShardMsg::Shutdown);
        }
        drop(self.peers);
        self.shards
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect()
    }
}

/// A cheap, `Send` handle for talking to the shards.
#[derive(Clone)]
pub struct ServerHandle {
    peers: Vec<flume::Sender<ShardMsg>>,
    map: crate::ingest::ShardMap,
}

impl ServerHandle {
    pub fn shards(&self) -> usize {
        self.peers.len()
    }

    /// The shard that owns `imei`.
    pub fn owner(&self, imei: crate::protocol::Imei) -> usize {
        self.map.owner(imei)
    }

    /// Asks every shard for its counters (blocking; not for shard threads).
    pub fn metrics(&self) -> Vec<ShardMetrics> {
        let (tx, rx) = flume::bounded(self.peers.len());
        let mut asked = 0;
        for p in &self.peers {
            if p.send(ShardMsg::Metrics(tx.clone())).is_ok() {
                asked += 1;
            }
        }
        let mut out: Vec<ShardMetrics> = (0..asked)
            .filter_map(|_| rx.recv_timeout(Duration::from_secs(5)).ok())
            .collect();
        out.sort_by_key(|m| m.shard);
        out
    }

    /// Never blocks: a shard whose inbox is full is reported as not answering.
    pub fn send(&self, shard: usize, msg: ShardMsg) -> bool {
        self.peers
            .get(shard)
            .is_some_and(|p| p.try_send(msg).is_ok())
    }
}
