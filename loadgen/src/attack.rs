//! Hostile clients beside the honest badges (`--attack KIND=N,...`).
//!
//! Each attacker is one connection slot that misbehaves in one way and
//! reconnects whenever the server closes it, from the attack's start
//! (`--attack-start`) to the end of the run. Attackers run on a thread and
//! runtime of their own at a lower CPU priority, so that on a shared
//! machine they take neither the honest badges' threads nor CPU the server
//! needs; they count nothing into the honest figures. What they saw is
//! counted per kind: connections opened, closed by the server (and how long
//! after the connect), still open at the end, bytes sent, frames received.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use badge_ingest::protocol::number as n;
use badge_ingest::protocol::{FrameConfig, FrameDecoder, Imei, Message};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until};

use crate::hist::{latency_histogram, Hist, Percentiles};
use crate::profile::{Badge, Kind, Rng};

/// Attack connections over all kinds, at most.
pub const MAX_ATTACK_CONNECTIONS: u64 = 20_000;
/// Between a close and the next connect, so that a server that closes at
/// once meets a bounded reconnect rate (10 a second per attacker).
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Backoff ceiling after failed connects.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long no-read and clone wait for their login's acknowledgement.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Attackers of a kind connect spread over this (clones: plus half a second
/// for the second of a pair).
const ATTACK_RAMP: Duration = Duration::from_secs(1);
/// trickle: one byte per this.
const TRICKLE_INTERVAL: Duration = Duration::from_millis(200);
/// clone: one heartbeat per this.
const CLONE_HEARTBEAT: Duration = Duration::from_secs(1);
/// Bytes per write of the flooding kinds.
const FLOOD_CHUNK: usize = 4096;
/// The first bytes of a login frame: start, length 13, protocol 0x01.
pub const SLOWLORIS_BYTES: [u8; 4] = [0x78, 0x78, 0x0D, 0x01];
/// Added to the attack thread's nice value.
const NICE_INCREMENT: libc::c_int = 10;
/// Keeps attackers' badge generators apart from honest ones'.
const SEED_SALT: u64 = 0xA77A_C4ED_0000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttackKind {
    /// The first bytes of a login, then silence.
    Slowloris,
    /// A valid login and valid frames, one byte every 200 ms.
    Trickle,
    /// 0x8A time requests as fast as possible, never logged in.
    PreloginFlood,
    /// Logged in, heartbeats as fast as possible, replies never read.
    NoRead,
    /// Two connections per IMEI, each logging in again when closed.
    Clone,
    /// Random bytes as fast as possible.
    Garbage,
}

impl AttackKind {
    pub const ALL: [AttackKind; 6] = [
        AttackKind::Slowloris,
        AttackKind::Trickle,
        AttackKind::PreloginFlood,
        AttackKind::NoRead,
        AttackKind::Clone,
        AttackKind::Garbage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Slowloris => "slowloris",
            AttackKind::Trickle => "trickle",
            AttackKind::PreloginFlood => "prelogin-flood",
            AttackKind::NoRead => "no-read",
            AttackKind::Clone => "clone",
            AttackKind::Garbage => "garbage",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What `--attack` asked for: connections per kind, in [`AttackKind::ALL`]
/// order, each kind at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttackPlan {
    pub kinds: Vec<(AttackKind, u64)>,
}

impl AttackPlan {
    /// `slowloris=300,trickle=100,...`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut kinds: Vec<(AttackKind, u64)> = Vec::new();
        let known = || {
            AttackKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, count) = part
                .split_once('=')
                .with_context(|| format!("--attack {part}: not KIND=N"))?;
            let (name, count) = (name.trim(), count.trim());
            let kind = AttackKind::from_name(name).with_context(|| {
                format!(
                    "--attack {part}: unknown kind {name:?} (kinds: {})",
                    known()
                )
            })?;
            let count: u64 = count.parse().with_context(|| {
                format!("--attack {part}: {count:?} is not a number of connections")
            })?;
            if count == 0 || count > MAX_ATTACK_CONNECTIONS {
                bail!("--attack {part}: connections outside 1..={MAX_ATTACK_CONNECTIONS}");
            }
            if kind == AttackKind::Clone && count % 2 != 0 {
                bail!("--attack {part}: clone connections come in pairs (one IMEI each), so N must be even");
            }
            if kinds.iter().any(|&(k, _)| k == kind) {
                bail!("--attack: {name} is given twice");
            }
            kinds.push((kind, count));
        }
        if kinds.is_empty() {
            bail!("--attack {s:?}: no KIND=N (kinds: {})", known());
        }
        let total: u64 = kinds.iter().map(|&(_, c)| c).sum();
        if total > MAX_ATTACK_CONNECTIONS {
            bail!("--attack: {total} connections in all, more than {MAX_ATTACK_CONNECTIONS}");
        }
        kinds.sort();
        Ok(Self { kinds })
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Connections over all kinds.
    pub fn total(&self) -> u64 {
        self.kinds.iter().map(|&(_, c)| c).sum()
    }

    pub fn count(&self, kind: AttackKind) -> u64 {
        self.kinds
            .iter()
            .find(|&&(k, _)| k == kind)
            .map_or(0, |&(_, c)| c)
    }

    /// The canonical `--attack` argument (for worker processes).
    pub fn to_arg(&self) -> String {
        self.kinds
            .iter()
            .map(|(k, c)| format!("{}={c}", k.name()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every attacker slot: (kind, index within the kind, index over the
    /// whole attack). Attacker `global` has the attack's IMEI `global`
    /// (a clone pair shares the IMEI of its first).
    fn attackers(&self) -> Vec<(AttackKind, u64, u64)> {
        let mut out = Vec::new();
        let mut global = 0;
        for &(kind, count) in &self.kinds {
            for i in 0..count {
                out.push((kind, i, global));
                global += 1;
            }
        }
        out
    }
}

/// Live counters of one kind.
#[derive(Default)]
struct KindStats {
    opened: AtomicU64,
    connect_failures: AtomicU64,
    logins: AtomicU64,
    login_failures: AtomicU64,
    server_closed: AtomicU64,
    closed_by_us: AtomicU64,
    still_open: AtomicU64,
    /// The oldest of those, µs since its connect.
    still_open_age_max: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    replies: AtomicU64,
    open: AtomicI64,
    /// Connect to server close, µs.
    close_time: Mutex<Option<Histogram<u64>>>,
}

/// Live counters of every kind of the attack.
pub struct AttackStats {
    plan: AttackPlan,
    kinds: Vec<KindStats>,
}

impl AttackStats {
    pub fn new(plan: &AttackPlan) -> Self {
        Self {
            plan: plan.clone(),
            kinds: AttackKind::ALL
                .iter()
                .map(|_| KindStats::default())
                .collect(),
        }
    }

    fn of(&self, kind: AttackKind) -> &KindStats {
        &self.kinds[kind.index()]
    }

    /// Counters only.
    pub fn progress(&self) -> Vec<KindSnapshot> {
        self.snapshot_with(false)
    }

    /// Counters and the close-time histograms.
    pub fn snapshot(&self) -> Vec<KindSnapshot> {
        self.snapshot_with(true)
    }

    fn snapshot_with(&self, hist: bool) -> Vec<KindSnapshot> {
        self.plan
            .kinds
            .iter()
            .map(|&(kind, connections)| {
                let k = self.of(kind);
                KindSnapshot {
                    kind: kind.name().to_string(),
                    connections,
                    opened: k.opened.load(Relaxed),
                    connect_failures: k.connect_failures.load(Relaxed),
                    logins: k.logins.load(Relaxed),
                    login_failures: k.login_failures.load(Relaxed),
                    server_closed: k.server_closed.load(Relaxed),
                    closed_by_us: k.closed_by_us.load(Relaxed),
                    still_open: k.still_open.load(Relaxed),
                    still_open_age_max_us: k.still_open_age_max.load(Relaxed),
                    open: k.open.load(Relaxed).max(0) as u64,
                    bytes_sent: k.bytes_sent.load(Relaxed),
                    bytes_received: k.bytes_received.load(Relaxed),
                    replies_received: k.replies.load(Relaxed),
                    close_time: if hist {
                        k.close_time
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .as_ref()
                            .map(Hist::of)
                            .unwrap_or_default()
                    } else {
                        Hist::default()
                    },
                }
            })
            .collect()
    }
}

/// One kind's counters in a snapshot (what a worker sends its parent).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct KindSnapshot {
    pub kind: String,
    /// Attack connections of this kind (`--attack KIND=N`).
    pub connections: u64,
    pub opened: u64,
    pub connect_failures: u64,
    pub logins: u64,
    pub login_failures: u64,
    pub server_closed: u64,
    pub closed_by_us: u64,
    pub still_open: u64,
    #[serde(default)]
    pub still_open_age_max_us: u64,
    /// Open right now (progress).
    pub open: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub replies_received: u64,
    pub close_time: Hist,
}

/// Adds `theirs` into `mine`, kind by kind.
pub fn merge(mine: &mut Vec<KindSnapshot>, theirs: &[KindSnapshot]) {
    for t in theirs {
        match mine.iter_mut().find(|m| m.kind == t.kind) {
            None => mine.push(t.clone()),
            Some(m) => {
                m.connections += t.connections;
                m.opened += t.opened;
                m.connect_failures += t.connect_failures;
                m.logins += t.logins;
                m.login_failures += t.login_failures;
                m.server_closed += t.server_closed;
                m.closed_by_us += t.closed_by_us;
                m.still_open += t.still_open;
                m.still_open_age_max_us = m.still_open_age_max_us.max(t.still_open_age_max_us);
                m.open += t.open;
                m.bytes_sent += t.bytes_sent;
                m.bytes_received += t.bytes_received;
                m.replies_received += t.replies_received;
                let mut h = m.close_time.to_histogram();
                let _ = h.add(t.close_time.to_histogram());
                m.close_time = Hist::of(&h);
            }
        }
    }
}

/// Connect-to-close times, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct CloseTimes {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One kind in the report.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Attack connections of this kind (`--attack KIND=N`).
    pub connections: u64,
    /// TCP connections established, reconnects included.
    pub opened: u64,
    pub connect_failures: u64,
    /// Login acknowledgements received (trickle, no-read, clone).
    pub logins: u64,
    /// Logins unanswered within 10 s (no-read, clone), then closed by us.
    pub login_failures: u64,
    /// Connections the server closed.
    pub server_closed: u64,
    /// Connections we closed before the end (after a login failure).
    pub closed_by_us: u64,
    /// Connections still open when the run ended (closed by us then).
    /// Kinds that reconnect always have some; how old the oldest was says
    /// whether any outlived a server deadline.
    pub still_open: u64,
    pub still_open_oldest_s: f64,
    /// From connect to the server's close.
    pub close_time_s: CloseTimes,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Whole frames received from the server.
    pub replies_received: u64,
}

impl KindReport {
    fn of(s: &KindSnapshot) -> Self {
        let h = s.close_time.to_histogram();
        let secs = |us: u64| us as f64 / 1e6;
        let empty = h.is_empty();
        Self {
            connections: s.connections,
            opened: s.opened,
            connect_failures: s.connect_failures,
            logins: s.logins,
            login_failures: s.login_failures,
            server_closed: s.server_closed,
            closed_by_us: s.closed_by_us,
            still_open: s.still_open,
            still_open_oldest_s: secs(s.still_open_age_max_us),
            close_time_s: CloseTimes {
                count: h.len(),
                p50: if empty {
                    0.0
                } else {
                    secs(h.value_at_quantile(0.5))
                },
                p99: if empty {
                    0.0
                } else {
                    secs(h.value_at_quantile(0.99))
                },
                max: if empty { 0.0 } else { secs(h.max()) },
            },
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            replies_received: s.replies_received,
        }
    }
}

/// Honest badges' latencies in one phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub reply_latency_us: Percentiles,
    pub login_latency_us: Percentiles,
}

/// The `attack` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    /// Seconds after the start of the run the attack began.
    pub start_s: f64,
    /// Attack connections over all kinds.
    pub connections: u64,
    /// The attackers' IMEIs (right after the honest ones).
    pub imei_first: String,
    pub imei_last: String,
    pub kinds: BTreeMap<String, KindReport>,
    /// Honest requests sent before the attack began (empty with
    /// --attack-start 0), and from then on.
    pub honest_before: Phase,
    pub honest_during: Phase,
}

impl AttackReport {
    pub fn new(
        start_s: f64,
        imei_first: String,
        imei_last: String,
        kinds: &[KindSnapshot],
        honest_before: Phase,
        honest_during: Phase,
    ) -> Self {
        Self {
            start_s,
            connections: kinds.iter().map(|k| k.connections).sum(),
            imei_first,
            imei_last,
            kinds: kinds
                .iter()
                .map(|k| (k.kind.clone(), KindReport::of(k)))
                .collect(),
            honest_before,
            honest_during,
        }
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "attack: {} connections from {:.1} s (IMEIs {}..{}); attackers are not counted above",
            self.connections, self.start_s, self.imei_first, self.imei_last
        );
        let _ = writeln!(
            o,
            "{:<15} {:>6} {:>8} {:>9} {:>7} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
            "kind",
            "conns",
            "opened",
            "conn-fail",
            "logins",
            "srv-close",
            "close p50",
            "close max",
            "still-open",
            "oldest",
            "bytes sent",
            "replies"
        );
        for kind in AttackKind::ALL {
            let Some(k) = self.kinds.get(kind.name()) else {
                continue;
            };
            let t = |v: f64, n: u64| {
                if n == 0 {
                    "-".to_string()
                } else {
                    format!("{v:.2} s")
                }
            };
            let _ = writeln!(
                o,
                "{:<15} {:>6} {:>8} {:>9} {:>7} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
                kind.name(),
                k.connections,
                k.opened,
                k.connect_failures,
                k.logins,
                k.server_closed,
                t(k.close_time_s.p50, k.close_time_s.count),
                t(k.close_time_s.max, k.close_time_s.count),
                k.still_open,
                t(k.still_open_oldest_s, k.still_open),
                k.bytes_sent,
                k.replies_received
            );
        }
        let p = |ph: &Phase| {
            let (r, l) = (&ph.reply_latency_us, &ph.login_latency_us);
            format!(
                "reply n={} p50 {} µs p99 {} µs p99.9 {} µs; login n={} p99 {} µs",
                r.count, r.p50, r.p99, r.p999, l.count, l.p99
            )
        };
        if self.honest_before.reply_latency_us.count + self.honest_before.login_latency_us.count > 0
        {
            let _ = writeln!(o, "honest before the attack: {}", p(&self.honest_before));
        }
        let _ = writeln!(o, "honest during the attack: {}", p(&self.honest_during));
        o
    }
}

/// Where and when the attackers of a process run.
pub struct AttackSetup {
    pub plan: AttackPlan,
    pub target: SocketAddr,
    pub sources: Vec<IpAddr>,
    /// Attackers take source addresses after the honest badges.
    pub source_offset: u64,
    /// The attack's IMEI `i` is `imei_base + i` (with its Luhn digit).
    pub imei_base: u64,
    pub start: Instant,
    pub end: Instant,
    pub seed: u64,
}

/// Starts the attack on a thread of its own; joins when the run ends.
pub fn spawn(
    setup: AttackSetup,
    stats: Arc<AttackStats>,
    stop: watch::Receiver<bool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("attack".into())
        .spawn(move || {
            lower_priority();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("badge-loadgen: the attack could not start its runtime: {e}");
                    return;
                }
            };
            let setup = Arc::new(setup);
            rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for (kind, i, global) in setup.plan.attackers() {
                    tasks.spawn(attacker(
                        setup.clone(),
                        stats.clone(),
                        kind,
                        i,
                        global,
                        stop.clone(),
                    ));
                }
                while tasks.join_next().await.is_some() {}
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
}

/// Raises this thread's nice value (Linux: per thread).
fn lower_priority() {
    // SAFETY: plain syscalls on this thread's id; failures are harmless.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + NICE_INCREMENT).min(19));
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Until the run is interrupted.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One attacker slot, from its start to the end of the run.
async fn attacker(
    setup: Arc<AttackSetup>,
    stats: Arc<AttackStats>,
    kind: AttackKind,
    i: u64,
    global: u64,
    mut stop: watch::Receiver<bool>,
) {
    let n = setup.plan.count(kind).max(1);
    let mut offset = ATTACK_RAMP.mul_f64(i as f64 / n as f64);
    let mut imei_index = global;
    if kind == AttackKind::Clone {
        // The second of a pair logs in half a second after the first, with its IMEI.
        offset = ATTACK_RAMP.mul_f64((i / 2 * 2) as f64 / n as f64);
        if i % 2 == 1 {
            offset += Duration::from_millis(500);
            imei_index -= 1;
        }
    }
    let start = setup.start + offset;
    if start >= setup.end {
        return;
    }
    tokio::select! {
        _ = sleep_until(start.into()) => {}
        _ = stopped(&mut stop) => return,
    }
    let imei = Imei::with_check_digit(setup.imei_base + imei_index)
        .expect("validated: the attack's IMEIs have 14 digits");
    let source = if setup.sources.is_empty() {
        None
    } else {
        let at = (setup.source_offset + global) % setup.sources.len() as u64;
        Some(setup.sources[at as usize])
    };
    let ks = stats.of(kind);
    tokio::select! {
        _ = sessions(&setup, ks, kind, global, imei, source) => {}
        _ = sleep_until(setup.end.into()) => {}
        _ = stopped(&mut stop) => {}
    }
}

/// How one connection of an attacker ended (when it did before the run).
enum Ended {
    ServerClosed,
    /// We gave up on it (a login never answered).
    WeClosed,
}

/// An open attack connection. Dropped without an end (the run ended while
/// it was open), it counts as still open.
struct Open<'a> {
    ks: &'a KindStats,
    at: Instant,
    /// The end of the run: a connection still open then is as old as it
    /// was at that moment, however late this thread gets to close it.
    end: Instant,
    ended: bool,
}

impl<'a> Open<'a> {
    fn new(ks: &'a KindStats, end: Instant) -> Self {
        ks.opened.fetch_add(1, Relaxed);
        ks.open.fetch_add(1, Relaxed);
        Self {
            ks,
            at: Instant::now(),
            end,
            ended: false,
        }
    }

    fn end(mut self, how: Ended) {
        self.ended = true;
        match how {
            Ended::ServerClosed => {
                self.ks.server_closed.fetch_add(1, Relaxed);
                let us = self.at.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                let mut h = self.ks.close_time.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.get_or_insert_with(latency_histogram).record(us.max(1));
            }
            Ended::WeClosed => {
                self.ks.closed_by_us.fetch_add(1, Relaxed);
            }
        }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.ks.open.fetch_sub(1, Relaxed);
        if !self.ended {
            self.ks.still_open.fetch_add(1, Relaxed);
            let age = Instant::now()
                .min(self.end)
                .saturating_duration_since(self.at);
            let us = age.as_micros().min(u128::from(u64::MAX)) as u64;
            self.ks.still_open_age_max.fetch_max(us, Relaxed);
        }
    }
}

/// Connect, misbehave until closed, pause, again; cancelled at the end.
async fn sessions(
    setup: &AttackSetup,
    ks: &KindStats,
    kind: AttackKind,
    global: u64,
    imei: Imei,
    source: Option<IpAddr>,
) {
    let mut badge = Badge::new(setup.seed ^ SEED_SALT, global, imei, Instant::now());
    let mut rng = Rng::new(setup.seed ^ SEED_SALT ^ global.wrapping_mul(0x9E37_79B9));
    let mut backoff = RECONNECT_PAUSE;
    loop {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, crate::net::connect(setup.target, source))
                .await
            {
                Ok(Ok(s)) => s,
                _ => {
                    ks.connect_failures.fetch_add(1, Relaxed);
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
        backoff = RECONNECT_PAUSE;
        let open = Open::new(ks, setup.end);
        let mut conn = AttackConn {
            stream,
            ks,
            rbuf: BytesMut::with_capacity(1024),
            decoder: FrameDecoder::new(FrameConfig {
                max_frame_len: 65_535 + 6,
                accept_bad_crc: true,
            }),
        };
        let how = match kind {
            AttackKind::Slowloris => conn.slowloris().await,
            AttackKind::Trickle => conn.trickle(&mut badge).await,
            AttackKind::PreloginFlood => conn.prelogin_flood().await,
            AttackKind::NoRead => conn.no_read(&mut badge).await,
            AttackKind::Clone => conn.clone_badge(&mut badge).await,
            AttackKind::Garbage => conn.garbage(&mut rng).await,
        };
        drop(conn);
        open.end(how);
        sleep(RECONNECT_PAUSE).await;
    }
}

struct AttackConn<'a> {
    stream: TcpStream,
    ks: &'a KindStats,
    rbuf: BytesMut,
    decoder: FrameDecoder,
}

/// Counts the whole frames in `rbuf` (logins among them) and drops them.
fn count_frames(ks: &KindStats, decoder: &mut FrameDecoder, rbuf: &mut BytesMut) -> bool {
    let mut pos = 0;
    let mut login = false;
    while let Some(f) = decoder.next_frame(rbuf, &mut pos) {
        ks.replies.fetch_add(1, Relaxed);
        if f.protocol == n::LOGIN {
            ks.logins.fetch_add(1, Relaxed);
            login = true;
        }
    }
    rbuf.advance(pos);
    if rbuf.len() > 70_000 {
        rbuf.clear();
    }
    login
}

/// Reads and counts until the server closes.
async fn read_until_closed(
    mut rd: ReadHalf<'_>,
    ks: &KindStats,
    decoder: &mut FrameDecoder,
    rbuf: &mut BytesMut,
) {
    loop {
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(len) => {
                ks.bytes_received.fetch_add(len as u64, Relaxed);
                count_frames(ks, decoder, rbuf);
            }
        }
    }
}

impl AttackConn<'_> {
    /// Writes all of `buf`, counting what went out; false once the server
    /// closed.
    async fn send(&mut self, buf: &[u8]) -> bool {
        write_all_counted(&mut self.stream, self.ks, buf).await
    }

    /// Sends a login and reads until it is acknowledged.
    async fn login(&mut self, badge: &mut Badge) -> Option<Ended> {
        let mut out = BytesMut::new();
        badge.login(1, &mut out);
        if !self.send(&out).await {
            return Some(Ended::ServerClosed);
        }
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        loop {
            let r = tokio::select! {
                r = self.stream.read_buf(&mut self.rbuf) => r,
                _ = sleep_until(deadline.into()) => {
                    self.ks.login_failures.fetch_add(1, Relaxed);
                    return Some(Ended::WeClosed);
                }
            };
            match r {
                Ok(0) | Err(_) => return Some(Ended::ServerClosed),
                Ok(len) => {
                    self.ks.bytes_received.fetch_add(len as u64, Relaxed);
                    if count_frames(self.ks, &mut self.decoder, &mut self.rbuf) {
                        return None;
                    }
                }
            }
        }
    }

    async fn slowloris(&mut self) -> Ended {
        if !self.send(&SLOWLORIS_BYTES).await {
            return Ended::ServerClosed;
        }
        let (rd, _wr) = self.stream.split();
        read_until_closed(rd, self.ks, &mut self.decoder, &mut self.rbuf).await;
        Ended::ServerClosed
    }

    async fn trickle(&mut self, badge: &mut Badge) -> Ended {
        let ks = self.ks;
        let (rd, mut wr) = self.stream.split();
        let reader = read_until_closed(rd, ks, &mut self.decoder, &mut self.rbuf);
        let writer = async {
            let mut queue = BytesMut::new();
            let mut serial: u16 = 0;
            let mut next = Instant::now();
            loop {
                if queue.is_empty() {
                    serial = serial.wrapping_add(1).max(1);
                    if serial == 1 {
                        badge.login(serial, &mut queue);
                    } else {
                        badge.build(
                            Kind::Heartbeat,
                            serial,
                            Instant::now(),
                            unix_now(),
                            &mut queue,
                        );
                    }
                }
                match wr.write(&queue[..1]).await {
                    Ok(1) => {
                        ks.bytes_sent.fetch_add(1, Relaxed);
                        queue.advance(1);
                    }
                    _ => return,
                }
                next += TRICKLE_INTERVAL;
                sleep_until(next.into()).await;
            }
        };
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
        Ended::ServerClosed
    }

    async fn prelogin_flood(&mut self) -> Ended {
        // 10-byte 0x8A requests, a chunk of them per write.
        let mut chunk = BytesMut::with_capacity(FLOOD_CHUNK + 16);
        let mut serial: u16 = 0;
        while chunk.len() + 10 <= FLOOD_CHUNK {
            serial += 1;
            Message::TimeSync2
                .encode(serial, &mut chunk)
                .expect("an 0x8A request fits a frame");
        }
        let ks = self.ks;
        let (rd, mut wr) = self.stream.split();
        let reader = read_until_closed(rd, ks, &mut self.decoder, &mut self.rbuf);
        let writer = async {
            let mut pos = 0;
            loop {
                match wr.write(&chunk[pos..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(len) => {
                        ks.bytes_sent.fetch_add(len as u64, Relaxed);
                        pos = (pos + len) % chunk.len();
                    }
                }
            }
        };
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
        Ended::ServerClosed
    }

    async fn no_read(&mut self, badge: &mut Badge) -> Ended {
        if let Some(how) = self.login(badge).await {
            return how;
        }
        // Heartbeats, each needing a reply, a chunk of them per write,
        // sent again and again; nothing is read any more.
        let mut chunk = BytesMut::with_capacity(FLOOD_CHUNK + 64);
        let mut serial: u16 = 1;
        while chunk.len() < FLOOD_CHUNK - 32 {
            serial += 1;
            badge.build(
                Kind::Heartbeat,
                serial,
                Instant::now(),
                unix_now(),
                &mut chunk,
            );
        }
        let mut pos = 0;
        loop {
            match self.stream.write(&chunk[pos..]).await {
                Ok(0) | Err(_) => return Ended::ServerClosed,
                Ok(len) => {
                    self.ks.bytes_sent.fetch_add(len as u64, Relaxed);
                    pos = (pos + len) % chunk.len();
                }
            }
        }
    }

    async fn clone_badge(&mut self, badge: &mut Badge) -> Ended {
        if let Some(how) = self.login(badge).await {
            return how;
        }
        let ks = self.ks;
        let (rd, mut wr) = self.stream.split();
        let reader = read_until_closed(rd, ks, &mut self.decoder, &mut self.rbuf);
        let writer = async {
            let mut serial: u16 = 1;
            let mut next = Instant::now() + CLONE_HEARTBEAT;
            let mut out = BytesMut::new();
            loop {
                sleep_until(next.into()).await;
                next += CLONE_HEARTBEAT;
                serial = serial.wrapping_add(1).max(1);
                out.clear();
                badge.build(
                    Kind::Heartbeat,
                    serial,
                    Instant::now(),
                    unix_now(),
                    &mut out,
                );
                if !write_all_counted(&mut wr, ks, &out).await {
                    return;
                }
            }
        };
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
        Ended::ServerClosed
    }

    async fn garbage(&mut self, rng: &mut Rng) -> Ended {
        let ks = self.ks;
        let (rd, mut wr) = self.stream.split();
        let reader = read_until_closed(rd, ks, &mut self.decoder, &mut self.rbuf);
        let writer = async {
            let mut chunk = vec![0u8; FLOOD_CHUNK];
            loop {
                for c in chunk.chunks_mut(8) {
                    let v = rng.next_u64().to_le_bytes();
                    c.copy_from_slice(&v[..c.len()]);
                }
                if !write_all_counted(&mut wr, ks, &chunk).await {
                    return;
                }
            }
        };
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
        Ended::ServerClosed
    }
}

async fn write_all_counted<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    ks: &KindStats,
    buf: &[u8],
) -> bool {
    let mut pos = 0;
    while pos < buf.len() {
        match w.write(&buf[pos..]).await {
            Ok(0) | Err(_) => return false,
            Ok(len) => {
                ks.bytes_sent.fetch_add(len as u64, Relaxed);
                pos += len;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_and_counts() {
        let p = AttackPlan::parse(
            "slowloris=300,trickle=100,prelogin-flood=2,no-read=20,clone=2,garbage=10",
        )
        .unwrap();
        assert_eq!(p.total(), 434);
        assert_eq!(p.count(AttackKind::NoRead), 20);
        assert_eq!(p.count(AttackKind::Clone), 2);
        assert_eq!(
            p.to_arg(),
            "slowloris=300,trickle=100,prelogin-flood=2,no-read=20,clone=2,garbage=10"
        );
        // Order and spaces do not matter; the canonical order is the kinds'.
        let q = AttackPlan::parse(" garbage = 1 , slowloris=2 ,").unwrap();
        assert_eq!(
            q.kinds,
            vec![(AttackKind::Slowloris, 2), (AttackKind::Garbage, 1)]
        );
        assert_eq!(AttackPlan::parse(&q.to_arg()).unwrap(), q);
    }

    #[test]
    fn refuses_what_is_not_a_bounded_attack() {
        let err = |s: &str| AttackPlan::parse(s).unwrap_err().to_string();
        assert!(err("slowlorix=1").contains("unknown kind"));
        assert!(err("flood=1").contains("prelogin-flood"));
        assert!(err("slowloris").contains("KIND=N"));
        assert!(err("slowloris=").contains("not a number"));
        assert!(err("slowloris=-1").contains("not a number"));
        assert!(err("slowloris=0").contains("1..="));
        assert!(err("slowloris=20001").contains("1..="));
        assert!(err("slowloris=10000,garbage=10001").contains("more than"));
        assert!(err("slowloris=1,slowloris=2").contains("twice"));
        assert!(err("clone=3").contains("pairs"));
        assert!(err("").contains("no KIND=N"));
        assert!(err(",").contains("no KIND=N"));
    }

    #[test]
    fn attackers_have_consecutive_indices_by_kind() {
        let p = AttackPlan::parse("clone=4,slowloris=2").unwrap();
        let a = p.attackers();
        assert_eq!(
            a,
            vec![
                (AttackKind::Slowloris, 0, 0),
                (AttackKind::Slowloris, 1, 1),
                (AttackKind::Clone, 0, 2),
                (AttackKind::Clone, 1, 3),
                (AttackKind::Clone, 2, 4),
                (AttackKind::Clone, 3, 5),
            ]
        );
    }

    #[test]
    fn snapshots_merge_by_kind() {
        let p = AttackPlan::parse("slowloris=2,garbage=1").unwrap();
        let s = AttackStats::new(&p);
        {
            let end = Instant::now() + Duration::from_secs(60);
            let o = Open::new(s.of(AttackKind::Slowloris), end);
            o.end(Ended::ServerClosed);
            let _still = Open::new(s.of(AttackKind::Slowloris), end);
        }
        let a = s.snapshot();
        let json = serde_json::to_string(&a).unwrap();
        let b: Vec<KindSnapshot> = serde_json::from_str(&json).unwrap();
        let mut m = a.clone();
        merge(&mut m, &b);
        let slow = m.iter().find(|k| k.kind == "slowloris").unwrap();
        assert_eq!(
            (
                slow.connections,
                slow.opened,
                slow.server_closed,
                slow.still_open,
                slow.open
            ),
            (4, 4, 2, 2, 0)
        );
        assert!(slow.still_open_age_max_us < 1_000_000);
        assert_eq!(slow.close_time.to_histogram().len(), 2);
        let r = KindReport::of(slow);
        assert_eq!(r.close_time_s.count, 2);
        assert!(r.close_time_s.max < 1.0);
    }
}
