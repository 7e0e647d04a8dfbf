//! Counters and latency histograms. Each shard owns its own (no atomics, no
//! sharing on the hot path); a snapshot is cloned out on request and
//! snapshots are merged for the totals.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::protocol::FrameStats;

/// Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// A shard's counters.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    pub shard: usize,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused_limit: u64,
    pub connections_refused_per_ip: u64,
    pub logins: u64,
    pub reconnects: u64,
    pub sessions: u64,
    pub handoffs_out: u64,
    pub handoffs_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Frames by protocol number.
    pub frames: Box<[u64; 256]>,
    pub frame: FrameStats,
    /// Content that did not match its message's layout (kept as raw frames).
    pub decode_errors: u64,
    /// Frames other than login and time sync before login: dropped, no reply.
    pub prelogin_drops: u64,
    pub login_timeouts: u64,
    pub idle_timeouts: u64,
    pub output_overflows: u64,
    /// Times accept failed for lack of file descriptors.
    pub emfile: u64,
    pub accept_errors: u64,
    pub records: u64,
    /// Times a connection waited because the sink queue was full.
    pub sink_full_waits: u64,
    /// From the last byte of a frame read to its reply written, in µs.
    pub reply_latency: Histogram<u64>,
    pub geo: GeoCounters,
    /// Bluetooth rows whose beacon the registry knows, and does not.
    pub beacons_known: u64,
    pub beacons_unknown: u64,
}

/// What the shard asked of the geo service and what came of it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct GeoCounters {
    /// Rows (with or without a reply) handed to a lookup.
    pub lookups: u64,
    /// Rows given a position from cells or WiFi.
    pub positioned: u64,
    /// Rows given an address.
    pub addressed: u64,
    /// Rows stored without what they waited for: the deadline passed, or
    /// no provider knew.
    pub unenriched: u64,
    /// Of those, the ones the deadline cut short.
    pub deadline_missed: u64,
    /// Rows stored at once without a lookup: too many were waiting.
    pub skipped: u64,
    /// Address replies (0x17/0x97) with an address, and with an empty one.
    pub replies_with_address: u64,
    pub replies_empty: u64,
    /// ALARMSMS replies that followed an alarm's 0x26.
    pub alarm_sms: u64,
    /// Late replies whose connection had gone.
    pub replies_orphaned: u64,
    /// Lookups waiting now.
    pub pending: u64,
}

impl GeoCounters {
    fn merge(&mut self, o: &GeoCounters) {
        self.lookups += o.lookups;
        self.positioned += o.positioned;
        self.addressed += o.addressed;
        self.unenriched += o.unenriched;
        self.deadline_missed += o.deadline_missed;
        self.skipped += o.skipped;
        self.replies_with_address += o.replies_with_address;
        self.replies_empty += o.replies_empty;
        self.alarm_sms += o.alarm_sms;
        self.replies_orphaned += o.replies_orphaned;
        self.pending += o.pending;
    }
}

impl ShardMetrics {
    pub fn new(shard: usize) -> Self {
        Self {
            shard,
            connections_open: 0,
            connections_accepted: 0,
            connections_refused_limit: 0,
            connections_refused_per_ip: 0,
            logins: 0,
            reconnects: 0,
            sessions: 0,
            handoffs_out: 0,
            handoffs_in: 0,
            bytes_in: 0,
            bytes_out: 0,
            frames: Box::new([0; 256]),
            frame: FrameStats::default(),
            decode_errors: 0,
            prelogin_drops: 0,
            login_timeouts: 0,
            idle_timeouts: 0,
            output_overflows: 0,
            emfile: 0,
            accept_errors: 0,
            records: 0,
            sink_full_waits: 0,
            reply_latency: latency_histogram(),
            geo: GeoCounters::default(),
            beacons_known: 0,
            beacons_unknown: 0,
        }
    }

    /// Adds `other` into `self` (the shard id of `self` is kept).
    pub fn merge(&mut self, other: &ShardMetrics) {
        self.connections_open += other.connections_open;
        self.connections_accepted += other.connections_accepted;
        self.connections_refused_limit += other.connections_refused_limit;
        self.connections_refused_per_ip += other.connections_refused_per_ip;
        self.logins += other.logins;
        self.reconnects += other.reconnects;
        self.sessions += other.sessions;
        self.handoffs_out += other.handoffs_out;
        self.handoffs_in += other.handoffs_in;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (a, b) in self.frames.iter_mut().zip(other.frames.iter()) {
            *a += b;
        }
        self.frame.merge(&other.frame);
        self.decode_errors += other.decode_errors;
        self.prelogin_drops += other.prelogin_drops;
        self.login_timeouts += other.login_timeouts;
        self.idle_timeouts += other.idle_timeouts;
        self.output_overflows += other.output_overflows;
        self.emfile += other.emfile;
        self.accept_errors += other.accept_errors;
        self.records += other.records;
        self.sink_full_waits += other.sink_full_waits;
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.reply_latency.add(&other.reply_latency);
        self.geo.merge(&other.geo);
        self.beacons_known += other.beacons_known;
        self.beacons_unknown += other.beacons_unknown;
    }

    /// Totals over several shards.
    pub fn total(shards: &[ShardMetrics]) -> ShardMetrics {
        let mut total = ShardMetrics::new(usize::MAX);
        for s in shards {
            total.merge(s);
        }
        total
    }

    pub fn frames_total(&self) -> u64 {
        self.frames.iter().sum()
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={}µs p90={}µs p99={}µs p99.9={}µs max={}µs",
            self.count, self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}
