//! Counters and latency histograms. Each shard owns its own (no atomics, no
//! sharing on the hot path); a snapshot is cloned out on request and
//! snapshots are merged for the totals.
//!
//! Every figure is defined once, in the [`figures!`] list below: its field
//! (for a counter of its own) or how it is computed from a snapshot, its
//! JSON key, its Prometheus name and kind, its help text, and where it
//! stands in the text of `stats`. That one list makes the [`Counters`]
//! struct, its merge across shards, and the [`FIGURES`] table from which
//! `stats` (text and JSON) and `/metrics` are rendered.

use hdrhistogram::Histogram;

use crate::protocol::FrameStats;

/// Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// How Prometheus sees a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (its Prometheus name ends in `_total`).
    Counter,
    /// A level that goes up and down.
    Gauge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The lines of `stats` text that figures stand in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// `shard N: ...`, one per shard.
    Shard,
    /// `total: ...`
    Total,
    /// `errors: ...`
    Errors,
    /// `limits: ...`: what the bounds on badge connections did.
    Limits,
    /// `geo: ...`
    Geo,
    /// The line of rows and queues (`records N ...`).
    Records,
    /// `events: ...`
    Events,
    /// `webhook URL: ...`, one per webhook.
    Webhook,
}

/// `label value` for each figure of `line`, space-separated.
pub fn text_line<T>(figures: &[Figure<T>], line: Line, of: &T) -> String {
    let mut out = String::new();
    for f in figures {
        for (l, label) in f.text {
            if *l == line {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(label);
                out.push(' ');
                out.push_str(&(f.get)(of).to_string());
            }
        }
    }
    out
}

/// The figures as a JSON object (dotted keys nested), into `map`.
pub fn json_into<T>(
    figures: &[Figure<T>],
    of: &T,
    map: &mut serde_json::Map<String, serde_json::Value>,
) {
    for f in figures {
        let value = serde_json::Value::from((f.get)(of));
        match f.key.split_once('.') {
            Some((group, key)) => {
                let entry = map
                    .entry(group)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(inner) = entry {
                    inner.insert(key.into(), value);
                }
            }
            None => {
                map.insert(f.key.into(), value);
            }
        }
    }
}

/// One figure of a snapshot of type `T`.
#[derive(Debug)]
pub struct Figure<T: 'static> {
    /// The JSON key; a dot nests it (`geo.lookups` is `{"geo":{"lookups":..}}`).
    pub key: &'static str,
    /// The Prometheus name without the `badge_` prefix; `None`: not exported
    /// on its own (a combined figure stands for it).
    pub prom: Option<&'static str>,
    pub kind: Kind,
    pub help: &'static str,
    /// The `stats` lines it stands in, and its label there.
    pub text: &'static [(Line, &'static str)],
    pub get: fn(&T) -> u64,
}

/// Builds [`Counters`] and [`FIGURES`] from one list. Each entry is a doc
/// line (the help text), then either `field:` for a counter of its own or
/// `name = |m| ...:` for a figure computed from a [`ShardMetrics`], then
/// kind, JSON key, Prometheus name (`-` for none) and `stats` placements.
macro_rules! figures {
    (@munch [$($acc:tt)*] [$($fig:tt)*]
        #[doc = $doc:literal] $name:ident: $kind:ident, $json:literal, $prom:tt, [$($line:ident $label:literal),*];
        $($rest:tt)*) => {
        figures!(@munch [$($acc)* ($name $doc)] [$($fig)* Figure {
            key: $json,
            prom: figures!(@prom $prom),
            kind: Kind::$kind,
            help: $doc,
            text: &[$((Line::$line, $label)),*],
            get: |m: &ShardMetrics| m.counters.$name,
        },] $($rest)*);
    };
    (@munch [$($acc:tt)*] [$($fig:tt)*]
        #[doc = $doc:literal] $name:ident = $get:expr => $kind:ident, $json:literal, $prom:tt, [$($line:ident $label:literal),*];
        $($rest:tt)*) => {
        figures!(@munch [$($acc)*] [$($fig)* Figure {
            key: $json,
            prom: figures!(@prom $prom),
            kind: Kind::$kind,
            help: $doc,
            text: &[$((Line::$line, $label)),*],
            get: $get,
        },] $($rest)*);
    };
    (@munch [$(($field:ident $fdoc:literal))*] [$($fig:tt)*]) => {
        /// A shard's counters: plain integers, touched only by the shard's
        /// own thread.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Counters {
            $(#[doc = $fdoc] pub $field: u64,)*
        }

        impl Counters {
            /// Adds another shard's counters to these.
            pub fn merge(&mut self, other: &Counters) {
                $(self.$field += other.$field;)*
            }
        }

        /// Every figure of a shard, in the order `stats` shows them.
        pub static FIGURES: &[Figure<ShardMetrics>] = &[$($fig)*];
    };
    (@prom -) => { None };
    (@prom $p:literal) => { Some($p) };
    ($($body:tt)*) => { figures!(@munch [] [] $($body)*); };
}

figures! {
    /// Open badge connections.
    connections_open: Gauge, "connections", "connections", [Shard "connections", Total "connections"];
    /// Logged-in badges owned by the shard.
    sessions: Gauge, "sessions", "sessions", [Shard "sessions", Total "sessions"];
    /// Connections accepted.
    connections_accepted: Counter, "accepted", "connections_accepted_total", [Total "accepted"];
    /// Logins.
    logins: Counter, "logins", "logins_total", [Shard "logins", Total "logins"];
    /// Logins that replaced a live connection.
    reconnects: Counter, "reconnects", "reconnects_total", [Total "reconnects"];
    /// Connections handed to the shard that owns their IMEI.
    handoffs_out: Counter, "handoffs_out", "handoffs_out_total", [];
    /// Connections taken over from another shard.
    handoffs_in: Counter, "handoffs_in", "handoffs_in_total", [];
    /// Frames decoded.
    frames = |m| m.frames_total() => Counter, "frames", -, [Shard "frames", Total "frames"];
    /// Bytes read from badges.
    bytes_in: Counter, "bytes_in", "bytes_in_total", [Shard "bytes_in", Total "bytes_in"];
    /// Bytes written to badges.
    bytes_out: Counter, "bytes_out", "bytes_out_total", [Shard "bytes_out", Total "bytes_out"];
    /// Frames with a wrong CRC.
    crc_errors = |m| m.frame.bad_crc => Counter, "crc_errors", "crc_errors_total", [Shard "crc_errors", Errors "crc"];
    /// Times the frame decoder searched for the next start marker.
    resyncs = |m| m.frame.resyncs => Counter, "resyncs", "resyncs_total", [Shard "resyncs", Errors "resyncs"];
    /// Bytes skipped outside frames.
    garbage_bytes = |m| m.frame.garbage_bytes => Counter, "garbage_bytes", "garbage_bytes_total", [Errors "garbage_bytes"];
    /// Frames without their stop marker.
    bad_stop = |m| m.frame.bad_stop => Counter, "bad_stop", -, [Errors "bad_stop"];
    /// Frames with an impossible length.
    bad_length = |m| m.frame.bad_length => Counter, "bad_length", -, [Errors "bad_length"];
    /// Frames over the size limit.
    oversized = |m| m.frame.oversized => Counter, "oversized", -, [Errors "oversized"];
    /// Frames with a wrong stop marker, length, or over the size limit.
    bad_frames = |m| m.frame.bad_stop + m.frame.bad_length + m.frame.oversized
        => Counter, "bad_frames", "bad_frames_total", [];
    /// Frames whose content did not match its layout.
    decode_errors: Counter, "decode_errors", "decode_errors_total", [Errors "decode"];
    /// Frames dropped because they came before login.
    prelogin_drops: Counter, "prelogin_drops", "prelogin_drops_total", [Errors "prelogin_drops"];
    /// Connections closed for not logging in.
    login_timeouts: Counter, "login_timeouts", "login_timeouts_total", [Errors "login_timeouts"];
    /// Connections closed after silence.
    idle_timeouts: Counter, "idle_timeouts", "idle_timeouts_total", [Errors "idle_timeouts"];
    /// Connections closed because their badge stopped reading its replies.
    output_overflows: Counter, "output_overflows", "output_overflows_total", [Limits "output_overflows"];
    /// Connections closed because their replies were not taken in time.
    write_timeouts: Counter, "write_timeouts", "write_timeouts_total", [Limits "write_timeouts"];
    /// Connections closed with a frame begun and never finished.
    partial_timeouts: Counter, "partial_timeouts", "partial_frame_timeouts_total", [Limits "partial_timeouts"];
    /// Connections closed for too many frames or bytes before login.
    prelogin_budget_closes: Counter, "prelogin_budget_closes", "prelogin_budget_closes_total", [Limits "prelogin_budget"];
    /// Times a connection's reads paused at `limits.max_frames_per_sec`.
    rate_limited: Counter, "rate_limited", "rate_limited_total", [Limits "rate_limited"];
    /// Logins refused because the IMEI is not in the allowlist.
    logins_not_allowed: Counter, "logins_not_allowed", "logins_not_allowed_total", [Limits "not_allowed"];
    /// Sessions replaced by a login from another address.
    clone_replacements: Counter, "clone_replacements", "replacements_other_address_total", [Limits "replaced_other_address"];
    /// Such logins refused by `limits.replace_min_interval_secs`.
    replacements_refused: Counter, "replacements_refused", "replacements_refused_total", [Limits "replacements_refused"];
    /// Logins with another IMEI on a logged-in connection (rebound).
    rebinds: Counter, "rebinds", "rebinds_total", [Limits "rebinds"];
    /// Connections refused for coming from outside `server.trusted_proxies`.
    proxy_untrusted: Counter, "proxy_untrusted", "proxy_untrusted_total", [Limits "proxy_untrusted"];
    /// Connections closed for a malformed, too long or late PROXY header.
    proxy_bad_headers: Counter, "proxy_bad_headers", "proxy_bad_headers_total", [Limits "proxy_bad_header"];
    /// Receives that found every receive buffer taken and waited for one (often: raise `server.read_buffers`).
    recv_buffer_waits: Counter, "recv_buffer_waits", "receive_buffer_waits_total", [];
    /// Accepts that failed for lack of file descriptors.
    emfile: Counter, "emfile", "emfile_total", [Errors "emfile"];
    /// Accepts that failed for another reason.
    accept_errors: Counter, "accept_errors", "accept_errors_total", [];
    /// Connections refused by `server.max_connections`.
    connections_refused_limit: Counter, "refused_limit", -, [];
    /// Connections refused by `server.max_connections_per_ip`.
    connections_refused_per_ip: Counter, "refused_per_ip", -, [];
    /// Connections refused by `limits.max_prelogin`.
    connections_refused_prelogin: Counter, "refused_prelogin", -, [];
    /// Connections refused by `limits.max_prelogin_per_ip`.
    connections_refused_prelogin_per_ip: Counter, "refused_prelogin_per_ip", -, [];
    /// Connections refused by a limit.
    refused = |m| m.counters.connections_refused_limit + m.counters.connections_refused_per_ip
        + m.counters.connections_refused_prelogin + m.counters.connections_refused_prelogin_per_ip
        => Counter, "refused", "connections_refused_total", [Errors "refused"];
    /// Records handed to the sink.
    records: Counter, "records", "records_total", [Shard "records", Records "records"];
    /// Rows handed to the geo service.
    geo_lookups: Counter, "geo.lookups", "geo_lookups_total", [Geo "lookups"];
    /// Rows waiting for the geo service.
    geo_pending: Gauge, "geo.pending", "geo_pending", [Geo "pending"];
    /// Rows given a position from cells or WiFi.
    geo_positioned: Counter, "geo.positioned", "geo_positioned_total", [Geo "positioned"];
    /// Rows given an address.
    geo_addressed: Counter, "geo.addressed", "geo_addressed_total", [Geo "addressed"];
    /// Rows stored without the position or address they waited for.
    geo_unenriched: Counter, "geo.unenriched", "geo_unenriched_total", [Geo "unenriched"];
    /// Lookups cut short by the deadline.
    geo_deadline_missed: Counter, "geo.deadline_missed", "geo_deadline_missed_total", [Geo "deadline_missed"];
    /// Rows stored without a lookup because too many were waiting.
    geo_skipped: Counter, "geo.skipped", "geo_skipped_total", [Geo "skipped"];
    /// Address replies (0x17/0x97) sent with an address.
    geo_replies_with_address: Counter, "geo.replies_with_address", -, [Geo "replies_with_address"];
    /// Address replies sent with an empty address.
    geo_replies_empty: Counter, "geo.replies_empty", -, [Geo "replies_empty"];
    /// Address replies sent after a lookup (with or without an address).
    address_replies = |m| m.counters.geo_replies_with_address + m.counters.geo_replies_empty
        => Counter, "geo.address_replies", "address_replies_total", [];
    /// ALARMSMS replies sent after an alarm's acknowledgement.
    geo_alarm_sms: Counter, "geo.alarm_sms", "alarm_sms_total", [Geo "alarm_sms"];
    /// Late replies whose connection had gone.
    geo_replies_orphaned: Counter, "geo.replies_orphaned", "geo_replies_orphaned_total", [];
    /// Bluetooth rows whose beacon the registry knows.
    beacons_known: Counter, "beacons_known", "beacons_known_total", [Geo "beacons_known"];
    /// Bluetooth rows whose beacon the registry does not know.
    beacons_unknown: Counter, "beacons_unknown", "beacons_unknown_total", [Geo "beacons_unknown"];
}

/// A shard's figures: its counters, what its frame decoder counted, frames
/// by protocol, and the reply latency.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    /// The shard, or `usize::MAX` for a total.
    pub shard: usize,
    pub counters: Counters,
    /// Frames by protocol number.
    pub frames: Box<[u64; 256]>,
    pub frame: FrameStats,
    /// From the last byte of a frame read to its reply written, in µs.
    pub reply_latency: Histogram<u64>,
}

impl ShardMetrics {
    pub fn new(shard: usize) -> Self {
        Self {
            shard,
            counters: Counters::default(),
            frames: Box::new([0; 256]),
            frame: FrameStats::default(),
            reply_latency: latency_histogram(),
        }
    }

    /// Adds `other` into `self` (the shard id of `self` is kept).
    pub fn merge(&mut self, other: &ShardMetrics) {
        self.counters.merge(&other.counters);
        for (a, b) in self.frames.iter_mut().zip(other.frames.iter()) {
            *a += b;
        }
        self.frame.merge(&other.frame);
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.reply_latency.add(&other.reply_latency);
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
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_has_a_unique_key_and_prometheus_name() {
        let mut keys = std::collections::HashSet::new();
        let mut proms = std::collections::HashSet::new();
        for f in FIGURES {
            assert!(keys.insert(f.key), "key {} twice", f.key);
            assert!(!f.help.trim().is_empty(), "{} has no help", f.key);
            if let Some(p) = f.prom {
                assert!(proms.insert(p), "prometheus name {p} twice");
                assert_eq!(
                    p.ends_with("_total"),
                    f.kind == Kind::Counter,
                    "{p}: counters end in _total, gauges do not"
                );
            }
        }
    }

    #[test]
    fn merging_adds_every_counter() {
        let mut a = ShardMetrics::new(0);
        a.counters.logins = 2;
        a.counters.geo_pending = 1;
        a.frames[0x13] = 5;
        a.frame.bad_crc = 1;
        let mut b = ShardMetrics::new(1);
        b.counters.logins = 3;
        b.counters.connections_refused_per_ip = 4;
        b.frames[0x13] = 1;
        let total = ShardMetrics::total(&[a, b]);
        let get = |key: &str| (FIGURES.iter().find(|f| f.key == key).unwrap().get)(&total);
        assert_eq!(get("logins"), 5);
        assert_eq!(get("geo.pending"), 1);
        assert_eq!(get("frames"), 6);
        assert_eq!(get("crc_errors"), 1);
        assert_eq!(get("refused"), 4);
    }
}
