//! Counters, latency histograms and the report.
//!
//! Device tasks update [`Stats`] (atomics, and histograms behind a few
//! mutexes); [`Stats::snapshot`] turns it into a plain, serialisable
//! [`Snapshot`], which is also what worker processes send their parent and
//! what the parent merges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use badge_ingest::protocol::number as n;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::attack::{AttackReport, KindSnapshot, Phase};
use crate::expect::{hex, Mismatch};
pub use crate::hist::{latency_histogram, Hist};

/// How many mismatches are printed in full.
pub const EXAMPLES: usize = 10;

/// Histogram shards: device tasks run on two threads, and a mutex per
/// shard keeps them from queueing on one lock.
const HIST_SHARDS: usize = 16;

fn per_protocol() -> Vec<AtomicU64> {
    (0..256).map(|_| AtomicU64::new(0)).collect()
}

/// Live counters of this process's devices.
pub struct Stats {
    pub sent: Vec<AtomicU64>,
    pub expected: Vec<AtomicU64>,
    pub received: Vec<AtomicU64>,
    pub mismatched: Vec<AtomicU64>,
    pub missing: Vec<AtomicU64>,
    pub kinds: Vec<AtomicU64>,
    /// Connections logged in right now.
    pub connected: AtomicI64,
    pub c: Counters<AtomicU64>,
    examples: Mutex<Vec<String>>,
    notes: Mutex<Vec<String>>,
    reply_latency: Vec<Mutex<Histogram<u64>>>,
    connect_latency: Mutex<Histogram<u64>>,
    login_latency: Mutex<Histogram<u64>>,
    /// When an attack begins: latencies of requests sent from then on are
    /// also kept apart.
    attack_from: Option<Instant>,
    reply_latency_attack: Vec<Mutex<Histogram<u64>>>,
    login_latency_attack: Mutex<Histogram<u64>>,
}

/// Scalar counters, as atomics while running and as numbers in a snapshot.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counters<T> {
    /// TCP connections established.
    pub connects: T,
    pub connect_failures: T,
    /// Logins acknowledged.
    pub logins: T,
    /// Logins unanswered or answered wrong.
    pub login_failures: T,
    /// Connections we closed (end of run or reconnect-storm).
    pub closes: T,
    /// Connections the server closed on us.
    pub server_closes: T,
    /// Closes where the server did not close its side within the deadline.
    pub close_timeouts: T,
    /// Reconnects asked for by the reconnect-storm profile.
    pub reconnects: T,
    /// Rows the server should write to `bluetooth` for what was sent.
    pub bluetooth_rows: T,
    /// 0x80 online commands received (and answered with 0x81).
    pub downlink_commands: T,
    /// 0x82 messages received.
    pub downlink_messages: T,
    /// ALARMSMS address replies after an alarm's 0x26.
    pub alarm_sms: T,
    pub bytes_sent: T,
    pub bytes_received: T,
    /// Badge tasks that panicked or were abandoned: a loadgen bug, never ignored.
    pub task_failures: T,
}

impl Counters<AtomicU64> {
    fn load(&self) -> Counters<u64> {
        Counters {
            connects: self.connects.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            logins: self.logins.load(Relaxed),
            login_failures: self.login_failures.load(Relaxed),
            closes: self.closes.load(Relaxed),
            server_closes: self.server_closes.load(Relaxed),
            close_timeouts: self.close_timeouts.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            bluetooth_rows: self.bluetooth_rows.load(Relaxed),
            downlink_commands: self.downlink_commands.load(Relaxed),
            downlink_messages: self.downlink_messages.load(Relaxed),
            alarm_sms: self.alarm_sms.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            task_failures: self.task_failures.load(Relaxed),
        }
    }
}

impl Counters<u64> {
    fn add(&mut self, o: &Counters<u64>) {
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.logins += o.logins;
        self.login_failures += o.login_failures;
        self.closes += o.closes;
        self.server_closes += o.server_closes;
        self.close_timeouts += o.close_timeouts;
        self.reconnects += o.reconnects;
        self.bluetooth_rows += o.bluetooth_rows;
        self.downlink_commands += o.downlink_commands;
        self.downlink_messages += o.downlink_messages;
        self.alarm_sms += o.alarm_sms;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.task_failures += o.task_failures;
    }
}

impl Stats {
    pub fn new() -> Self {
        Self::with_attack_from(None)
    }

    /// Stats of a run whose attack begins at `attack_from`.
    pub fn with_attack_from(attack_from: Option<Instant>) -> Self {
        Self {
            sent: per_protocol(),
            expected: per_protocol(),
            received: per_protocol(),
            mismatched: per_protocol(),
            missing: per_protocol(),
            kinds: Mismatch::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            connected: AtomicI64::new(0),
            c: Counters::default(),
            examples: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            reply_latency: (0..HIST_SHARDS)
                .map(|_| Mutex::new(latency_histogram()))
                .collect(),
            connect_latency: Mutex::new(latency_histogram()),
            login_latency: Mutex::new(latency_histogram()),
            attack_from,
            reply_latency_attack: (0..HIST_SHARDS)
                .map(|_| Mutex::new(latency_histogram()))
                .collect(),
            login_latency_attack: Mutex::new(latency_histogram()),
        }
    }

    fn during_attack(&self, sent_at: Instant) -> bool {
        self.attack_from.is_some_and(|t| sent_at >= t)
    }

    /// Counts a mismatch against `request` (the request's protocol, when
    /// known) and keeps the first few with their bytes.
    pub fn mismatch(
        &self,
        kind: Mismatch,
        request: Option<u8>,
        imei: u64,
        detail: &str,
        raw: &[u8],
    ) {
        self.kinds[kind.index()].fetch_add(1, Relaxed);
        if let Some(p) = request {
            let per = if kind.is_missing() {
                &self.missing
            } else {
                &self.mismatched
            };
            per[usize::from(p)].fetch_add(1, Relaxed);
        }
        let mut ex = self.examples.lock().unwrap_or_else(|p| p.into_inner());
        if ex.len() < EXAMPLES {
            let mut line = format!("{} imei {imei:015}", kind.name());
            if let Some(p) = request {
                let _ = write!(line, " request 0x{p:02X} ({})", n::name(p));
            }
            let _ = write!(line, ": {detail}");
            if !raw.is_empty() {
                const SHOWN: usize = 96;
                let _ = write!(line, "\n    bytes: {}", hex(&raw[..raw.len().min(SHOWN)]));
                if raw.len() > SHOWN {
                    let _ = write!(line, " … ({} bytes)", raw.len());
                }
            }
            ex.push(line);
        }
    }

    /// Keeps the first few connection-level problems (connect, login
    /// transport, lost connections), which are counted elsewhere.
    pub fn note(&self, imei: u64, detail: &str) {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if notes.len() < EXAMPLES {
            notes.push(format!("imei {imei:015}: {detail}"));
        }
    }

    /// The reply to a request sent at `sent_at` took `micros`.
    pub fn reply_latency(&self, device: u64, micros: u64, sent_at: Instant) {
        let shard = device as usize % HIST_SHARDS;
        let _ = self.reply_latency[shard]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(micros.max(1));
        if self.during_attack(sent_at) {
            let _ = self.reply_latency_attack[shard]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(micros.max(1));
        }
    }

    pub fn connect_latency(&self, micros: u64) {
        let _ = self
            .connect_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(micros.max(1));
    }

    pub fn login_latency(&self, micros: u64, sent_at: Instant) {
        let _ = self
            .login_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(micros.max(1));
        if self.during_attack(sent_at) {
            let _ = self
                .login_latency_attack
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(micros.max(1));
        }
    }

    /// Counters only (cheap; for the progress line).
    pub fn progress(&self) -> Snapshot {
        Snapshot {
            sent: load(&self.sent),
            expected: load(&self.expected),
            received: load(&self.received),
            mismatched: load(&self.mismatched),
            missing: load(&self.missing),
            kinds: load(&self.kinds),
            connected: self.connected.load(Relaxed).max(0) as u64,
            counters: self.c.load(),
            ..Snapshot::default()
        }
    }

    /// Everything, histograms included.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = self.progress();
        s.examples = self
            .examples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.notes = self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut reply = latency_histogram();
        for h in &self.reply_latency {
            let _ = reply.add(&*h.lock().unwrap_or_else(|p| p.into_inner()));
        }
        s.reply_latency = Hist::of(&reply);
        s.connect_latency = Hist::of(
            &self
                .connect_latency
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        s.login_latency = Hist::of(&self.login_latency.lock().unwrap_or_else(|p| p.into_inner()));
        let mut reply = latency_histogram();
        for h in &self.reply_latency_attack {
            let _ = reply.add(&*h.lock().unwrap_or_else(|p| p.into_inner()));
        }
        s.reply_latency_attack = Hist::of(&reply);
        s.login_latency_attack = Hist::of(
            &self
                .login_latency_attack
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        s
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn load(v: &[AtomicU64]) -> Vec<u64> {
    v.iter().map(|a| a.load(Relaxed)).collect()
}

/// Plain counters and histograms of a run or of part of it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Per protocol number (256 entries each): frames sent, replies expected,
    /// replies received, received but wrong, never received.
    pub sent: Vec<u64>,
    pub expected: Vec<u64>,
    pub received: Vec<u64>,
    pub mismatched: Vec<u64>,
    pub missing: Vec<u64>,
    /// Per [`Mismatch`] kind.
    pub kinds: Vec<u64>,
    pub connected: u64,
    pub counters: Counters<u64>,
    pub examples: Vec<String>,
    pub notes: Vec<String>,
    pub reply_latency: Hist,
    pub connect_latency: Hist,
    pub login_latency: Hist,
    /// Seconds from the start of the run to the end of traffic (shorter
    /// than the duration when interrupted).
    pub traffic_s: f64,
    /// The part of `reply_latency` and `login_latency` for requests sent
    /// once the attack had begun.
    #[serde(default)]
    pub reply_latency_attack: Hist,
    #[serde(default)]
    pub login_latency_attack: Hist,
    /// The attackers' counters, per kind (empty without --attack).
    #[serde(default)]
    pub attack: Vec<KindSnapshot>,
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl Snapshot {
    pub fn merge(&mut self, o: &Snapshot) {
        add_vec(&mut self.sent, &o.sent);
        add_vec(&mut self.expected, &o.expected);
        add_vec(&mut self.received, &o.received);
        add_vec(&mut self.mismatched, &o.mismatched);
        add_vec(&mut self.missing, &o.missing);
        add_vec(&mut self.kinds, &o.kinds);
        self.connected += o.connected;
        self.counters.add(&o.counters);
        self.traffic_s = self.traffic_s.max(o.traffic_s);
        for e in &o.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(e.clone());
            }
        }
        for e in &o.notes {
            if self.notes.len() < EXAMPLES {
                self.notes.push(e.clone());
            }
        }
        crate::attack::merge(&mut self.attack, &o.attack);
        for (mine, theirs) in [
            (&mut self.reply_latency, &o.reply_latency),
            (&mut self.connect_latency, &o.connect_latency),
            (&mut self.login_latency, &o.login_latency),
            (&mut self.reply_latency_attack, &o.reply_latency_attack),
            (&mut self.login_latency_attack, &o.login_latency_attack),
        ] {
            let mut h = mine.to_histogram();
            let _ = h.add(theirs.to_histogram());
            *mine = Hist::of(&h);
        }
    }

    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn received_total(&self) -> u64 {
        self.received.iter().sum()
    }

    pub fn sent_of(&self, protocols: &[u8]) -> u64 {
        protocols
            .iter()
            .map(|&p| self.sent.get(usize::from(p)).copied().unwrap_or(0))
            .sum()
    }

    pub fn kind(&self, k: Mismatch) -> u64 {
        self.kinds.get(k.index()).copied().unwrap_or(0)
    }

    pub fn mismatches(&self) -> u64 {
        Mismatch::ALL
            .iter()
            .filter(|k| !k.is_missing())
            .map(|&k| self.kind(k))
            .sum()
    }

    pub fn missing_replies(&self) -> u64 {
        Mismatch::ALL
            .iter()
            .filter(|k| k.is_missing())
            .map(|&k| self.kind(k))
            .sum()
    }

    /// Failures that make the run fail besides mismatches: devices that
    /// could not connect or log in, connections the server dropped.
    pub fn connection_errors(&self) -> u64 {
        let c = &self.counters;
        c.connect_failures + c.login_failures + c.server_closes + c.task_failures
    }

    pub fn errors(&self) -> u64 {
        self.mismatches() + self.missing_replies() + self.connection_errors()
    }
}

/// Latency percentiles in µs: the server's own type, so both report alike.
pub use crate::hist::Percentiles;

/// One aligned report line of percentiles.
fn aligned(p: &Percentiles) -> String {
    format!(
        "n={:<9} p50 {:>8} µs  p90 {:>8} µs  p99 {:>8} µs  p99.9 {:>8} µs  max {:>8} µs",
        p.count, p.p50, p.p90, p.p99, p.p999, p.max
    )
}

/// One protocol's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct TypeLine {
    pub protocol: String,
    pub name: &'static str,
    pub sent: u64,
    pub replies_expected: u64,
    pub replies_received: u64,
    pub mismatches: u64,
    pub missing: u64,
}

/// The final report: what is printed, and what `--json` prints as one object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub profile: &'static str,
    pub devices: u64,
    pub procs: u32,
    pub seed: u64,
    pub imei_first: String,
    pub imei_last: String,
    pub duration_s: f64,
    /// Seconds of traffic the rates are over (the duration unless interrupted).
    pub traffic_s: f64,
    pub frames_sent: u64,
    pub frames_per_s: f64,
    pub replies_received: u64,
    pub replies_per_s: f64,
    pub by_type: Vec<TypeLine>,
    pub mismatches: u64,
    pub missing_replies: u64,
    pub mismatch_kinds: BTreeMap<&'static str, u64>,
    pub first_mismatches: Vec<String>,
    pub connection_problems: Vec<String>,
    pub counters: Counters<u64>,
    pub reply_latency_us: Percentiles,
    pub connect_latency_us: Percentiles,
    pub login_latency_us: Percentiles,
    /// Hostile clients beside the honest badges (--attack); never part of
    /// the figures above or of `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::verification::Verification>,
    pub ok: bool,
}

pub struct RunInfo {
    pub target: String,
    pub profile: &'static str,
    pub devices: u64,
    pub procs: u32,
    pub seed: u64,
    pub imei_first: String,
    pub imei_last: String,
    pub duration_s: f64,
    /// With --attack: when it began (s into the run) and its IMEI range.
    pub attack: Option<(f64, String, String)>,
}

/// Honest latencies before and from an attack's start: `during` is kept
/// apart, `before` is the rest.
fn phases(s: &Snapshot) -> (Phase, Phase) {
    let all_reply = s.reply_latency.to_histogram();
    let all_login = s.login_latency.to_histogram();
    let during_reply = s.reply_latency_attack.to_histogram();
    let during_login = s.login_latency_attack.to_histogram();
    let mut before_reply = all_reply.clone();
    let mut before_login = all_login.clone();
    // Every value of `during` was recorded in the whole too, in the same bucket.
    let _ = before_reply.subtract(&during_reply);
    let _ = before_login.subtract(&during_login);
    (
        Phase {
            reply_latency_us: Percentiles::of(&before_reply),
            login_latency_us: Percentiles::of(&before_login),
        },
        Phase {
            reply_latency_us: Percentiles::of(&during_reply),
            login_latency_us: Percentiles::of(&during_login),
        },
    )
}

impl Report {
    pub fn new(info: RunInfo, s: &Snapshot) -> Self {
        let mut by_type = Vec::new();
        for p in 0..256usize {
            let get = |v: &Vec<u64>| v.get(p).copied().unwrap_or(0);
            let line = TypeLine {
                protocol: format!("0x{p:02X}"),
                name: n::name(p as u8),
                sent: get(&s.sent),
                replies_expected: get(&s.expected),
                replies_received: get(&s.received),
                mismatches: get(&s.mismatched),
                missing: get(&s.missing),
            };
            if line.sent + line.replies_received + line.mismatches + line.missing > 0 {
                by_type.push(line);
            }
        }
        let mismatch_kinds = Mismatch::ALL
            .iter()
            .filter(|&&k| s.kind(k) > 0)
            .map(|&k| (k.name(), s.kind(k)))
            .collect();
        let traffic_s = if s.traffic_s > 0.0 {
            s.traffic_s.min(info.duration_s)
        } else {
            info.duration_s
        };
        let secs = traffic_s.max(1e-3);
        let ok = s.errors() == 0;
        let attack = info.attack.map(|(start_s, first, last)| {
            let (before, during) = phases(s);
            AttackReport::new(start_s, first, last, &s.attack, before, during)
        });
        Report {
            target: info.target,
            profile: info.profile,
            devices: info.devices,
            procs: info.procs,
            seed: info.seed,
            imei_first: info.imei_first,
            imei_last: info.imei_last,
            duration_s: info.duration_s,
            traffic_s,
            frames_sent: s.sent_total(),
            frames_per_s: s.sent_total() as f64 / secs,
            replies_received: s.received_total(),
            replies_per_s: s.received_total() as f64 / secs,
            by_type,
            mismatches: s.mismatches(),
            missing_replies: s.missing_replies(),
            mismatch_kinds,
            first_mismatches: s.examples.clone(),
            connection_problems: s.notes.clone(),
            counters: s.counters.clone(),
            reply_latency_us: Percentiles::of(&s.reply_latency.to_histogram()),
            connect_latency_us: Percentiles::of(&s.connect_latency.to_histogram()),
            login_latency_us: Percentiles::of(&s.login_latency.to_histogram()),
            attack,
            verify: None,
            ok,
        }
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "badge-loadgen: {} devices, profile {}, {:.1} s{} against {} ({} process{}, seed {}, IMEIs {}..{})",
            self.devices,
            self.profile,
            self.duration_s,
            if self.traffic_s + 0.5 < self.duration_s { format!(" (interrupted after {:.1} s)", self.traffic_s) } else { String::new() },
            self.target,
            self.procs,
            if self.procs == 1 { "" } else { "es" },
            self.seed,
            self.imei_first,
            self.imei_last
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<6} {:<24} {:>11} {:>11} {:>11} {:>10} {:>9}",
            "proto", "message", "sent", "replies exp", "replies rcv", "mismatch", "missing"
        );
        for l in &self.by_type {
            let _ = writeln!(
                o,
                "{:<6} {:<24} {:>11} {:>11} {:>11} {:>10} {:>9}",
                l.protocol,
                l.name,
                l.sent,
                l.replies_expected,
                l.replies_received,
                l.mismatches,
                l.missing
            );
        }
        let sum = |f: fn(&TypeLine) -> u64| self.by_type.iter().map(f).sum::<u64>();
        let _ = writeln!(
            o,
            "{:<6} {:<24} {:>11} {:>11} {:>11} {:>10} {:>9}",
            "",
            "total",
            sum(|l| l.sent),
            sum(|l| l.replies_expected),
            sum(|l| l.replies_received),
            sum(|l| l.mismatches),
            sum(|l| l.missing)
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "throughput: {:.0} frames/s sent, {:.0} replies/s received ({} frames, {} replies)",
            self.frames_per_s, self.replies_per_s, self.frames_sent, self.replies_received
        );
        let _ = writeln!(o, "reply latency:   {}", aligned(&self.reply_latency_us));
        let _ = writeln!(o, "connect latency: {}", aligned(&self.connect_latency_us));
        let _ = writeln!(o, "login latency:   {}", aligned(&self.login_latency_us));
        let c = &self.counters;
        let _ = writeln!(
            o,
            "connections: {} connected, {} connect failures, {} logins, {} login failures, {} closed by us, {} closed by the server, {} reconnects, {} close timeouts",
            c.connects, c.connect_failures, c.logins, c.login_failures, c.closes, c.server_closes, c.reconnects, c.close_timeouts
        );
        let _ = writeln!(
            o,
            "downlink: {} online commands (answered 0x81), {} messages, {} alarm address replies; {} bytes sent, {} bytes received",
            c.downlink_commands, c.downlink_messages, c.alarm_sms, c.bytes_sent, c.bytes_received
        );
        if self.mismatch_kinds.is_empty() {
            let _ = writeln!(o, "mismatches: none; missing replies: none");
        } else {
            let kinds: Vec<String> = self
                .mismatch_kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                o,
                "MISMATCHES: {} wrong, {} missing ({})",
                self.mismatches,
                self.missing_replies,
                kinds.join(", ")
            );
            for e in &self.first_mismatches {
                let _ = writeln!(o, "  {e}");
            }
        }
        if !self.connection_problems.is_empty() {
            let _ = writeln!(
                o,
                "connection problems (first {}):",
                self.connection_problems.len()
            );
            for e in &self.connection_problems {
                let _ = writeln!(o, "  {e}");
            }
        }
        if let Some(a) = &self.attack {
            let _ = writeln!(o);
            o.push_str(&a.text());
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(o);
            o.push_str(&v.text());
        }
        let _ = writeln!(o, "result: {}", if self.ok { "OK" } else { "FAILED" });
        o
    }
}

/// The once-a-second line on stderr.
pub struct Progress {
    last: Option<Snapshot>,
    start: std::time::Instant,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            last: None,
            start: std::time::Instant::now(),
        }
    }

    pub fn line(&mut self, now: &Snapshot, devices: u64) -> String {
        let (sent, rcv) = match &self.last {
            Some(l) => (
                now.sent_total() - l.sent_total().min(now.sent_total()),
                now.received_total() - l.received_total().min(now.received_total()),
            ),
            None => (now.sent_total(), now.received_total()),
        };
        let mut line = format!(
            "[{:>5.0}s] connected {:>6}/{devices}  sent {:>7}/s  replies {:>7}/s  errors {} (mismatch {}, missing {}, connection {})",
            self.start.elapsed().as_secs_f64(),
            now.connected,
            sent,
            rcv,
            now.errors(),
            now.mismatches(),
            now.missing_replies(),
            now.connection_errors()
        );
        if !now.attack.is_empty() {
            let open: u64 = now.attack.iter().map(|k| k.open).sum();
            let closed: u64 = now.attack.iter().map(|k| k.server_closed).sum();
            let _ = write!(line, "  attack: {open} open, {closed} closed by the server");
        }
        self.last = Some(now.clone());
        line
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip_through_a_snapshot() {
        let stats = Stats::new();
        for v in [1u64, 10, 100, 1_000, 10_000, 123_456] {
            stats.reply_latency(v, v, Instant::now());
        }
        stats.mismatch(Mismatch::Timeout, Some(n::HEARTBEAT), 1, "late", &[]);
        let a = stats.snapshot();
        let json = serde_json::to_string(&a).unwrap();
        let b: Snapshot = serde_json::from_str(&json).unwrap();
        let mut merged = a.clone();
        merged.merge(&b);
        let h = merged.reply_latency.to_histogram();
        assert_eq!(h.len(), 12);
        assert_eq!(h.max(), a.reply_latency.to_histogram().max());
        assert_eq!(merged.missing_replies(), 2);
        assert_eq!(merged.missing[usize::from(n::HEARTBEAT)], 2);
        assert_eq!(merged.examples.len(), 2);
    }

    #[test]
    fn latencies_are_split_at_the_attack_start() {
        let start = Instant::now();
        let before = start - std::time::Duration::from_secs(1);
        let stats = Stats::with_attack_from(Some(start));
        for v in [100u64, 200, 300] {
            stats.reply_latency(v, v, before);
        }
        for v in [10_000u64, 20_000] {
            stats.reply_latency(v, v, start);
        }
        stats.login_latency(500, before);
        stats.login_latency(50_000, start + std::time::Duration::from_secs(1));
        // Through a worker's JSON and a merge, as with --procs.
        let a = stats.snapshot();
        let b: Snapshot = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let mut merged = Snapshot::default();
        merged.merge(&b);
        let (pre, during) = phases(&merged);
        assert_eq!(pre.reply_latency_us.count, 3);
        assert!(pre.reply_latency_us.max < 400);
        assert_eq!(during.reply_latency_us.count, 2);
        assert!(during.reply_latency_us.p50 >= 9_990);
        assert_eq!(
            (pre.login_latency_us.count, during.login_latency_us.count),
            (1, 1)
        );
        assert_eq!(merged.reply_latency.to_histogram().len(), 5);
        // Without an attack nothing is kept apart.
        let plain = Stats::new();
        plain.reply_latency(1, 100, before);
        assert_eq!(phases(&plain.snapshot()).1.reply_latency_us.count, 0);
    }
}
