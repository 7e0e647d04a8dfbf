//! One typed configuration: a TOML file, overridden by `BADGE_*` environment
//! variables, overridden by command-line flags. Validated once at start, with
//! the offending key and the reason in the error.
//!
//! Every section is defined here (the component sections in their own
//! files), so that this module depends on no component: each component is
//! handed its own section, and imports nothing else of the configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::frame::DEFAULT_MAX_FRAME;

pub use proxies::TrustedProxies;

/// The widest clock zone there is, minutes either side of UTC (UTC-12 to
/// UTC+14, taken as ±14 h): what a configured or stored zone may be.
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;

mod beacons;
mod events;
mod geo;
mod proxies;

pub use beacons::BeaconsConfig;
pub use events::{EventsConfig, WebhookConfig};
pub use geo::GeoConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct Config {
    pub server: ServerConfig,
    pub protocol: ProtocolConfig,
    pub sink: SinkConfig,
    pub clickhouse: ClickHouseConfig,
    pub log: LogConfig,
    pub logging: LoggingConfig,
    pub geo: GeoConfig,
    pub beacons: BeaconsConfig,
    pub events: EventsConfig,
    pub limits: LimitsConfig,
    pub control: ControlConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where badges connect.
    pub listen: SocketAddr,
    /// The control socket: `host:port` (loopback by default), or a Unix
    /// socket path (`/run/badge-ingest.sock` or `unix:/path`).
    pub control: String,
    /// Executors, one per core when 0.
    pub shards: usize,
    /// Connections over this are refused at accept. 0: the open-files limit
    /// less a reserve of 64 for everything else the process opens.
    pub max_connections: usize,
    /// Connections per peer IP; 0 turns the limit off.
    pub max_connections_per_ip: usize,
    /// Connections start with a PROXY protocol header (v1 or v2) giving the
    /// badge's address: the server runs behind a TCP load balancer.
    pub proxy_protocol: bool,
    /// Who may send that header (CIDRs or addresses); a connection from
    /// anywhere else, or with a malformed header, is refused and counted.
    pub trusted_proxies: TrustedProxies,
    /// A connection that has not logged in by then is closed.
    pub login_timeout_secs: u64,
    /// The badges' heartbeat interval; the idle timeout defaults to three of them.
    pub heartbeat_interval_secs: u64,
    /// Silence after which a connection is closed; 0 means 3 × heartbeat, at least 10 minutes.
    pub idle_timeout_secs: u64,
    /// How often each shard's single coarse timer checks for timeouts.
    pub timer_interval_ms: u64,
    /// io_uring submission queue entries per shard (the completion queue
    /// has four times as many): room for a send from every connection that
    /// answers in one turn of the shard.
    pub ring_depth: usize,
    /// Let the kernel back the heap with 2 MiB pages: about 30 MiB more
    /// resident at 1,000 badges (mimalloc's arena, a huge page for each
    /// thread's bit of it), for no CPU measured (README, "Tuning"). Off
    /// by default.
    pub transparent_huge_pages: bool,
    /// Receive buffers per shard, which the kernel fills as bytes arrive
    /// and the shard gives back once they are decoded (a power of two).
    pub read_buffers: u16,
    /// The size of each receive buffer.
    pub read_buffer: usize,
    /// A connection whose unsent replies exceed this is closed (the badge stopped reading).
    pub max_pending_output: usize,
    /// Seconds between one-line summaries in the log; 0 turns them off.
    pub summary_interval_secs: u64,
    /// Name of this server in the ingest key of every row.
    pub instance: String,
    /// Shared secret for the control socket; empty means none (loopback only).
    pub control_token: String,
    /// Commands queued per offline badge; more are refused.
    pub max_queued_commands: usize,
    /// A queued command not delivered by then expires.
    pub command_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Largest frame accepted, in bytes on the wire.
    pub max_frame: usize,
    /// Hand on frames with a wrong CRC (for models known to send them); still counted.
    pub accept_bad_crc: bool,
    /// The zone of a badge's clock when it says none in its login (and no
    /// override names it), minutes east of UTC (UTC+8, as the reference
    /// assumed for every badge).
    pub device_utc_offset_minutes: i32,
    /// Decode device times in the zone the badge gives in its login. Off:
    /// every badge without an override is in `device_utc_offset_minutes`,
    /// for fleets whose badges send a wrong zone.
    pub login_time_zone: bool,
    /// Per-IMEI zones, minutes east of UTC, before anything the badge says:
    /// `device_utc_offsets = { "860000000000017" = -300 }`.
    pub device_utc_offsets: std::collections::BTreeMap<String, i32>,
    /// A device time more than this many minutes ahead of the server's
    /// clock is not trusted: the server's time is stored instead, flagged
    /// `device_time_valid = 0`.
    pub max_future_minutes: u32,
    /// Also take per-IMEI zones from the `devices` table's
    /// `utc_offset_minutes` (after `device_utc_offsets`, before the login).
    pub zones_from_devices: bool,
    /// How often those are read again.
    pub zones_refresh_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Count records and drop them (for load tests of the server alone).
    Count,
    /// Append records as JSON lines to `sink.file`.
    File,
    /// Batch records into ClickHouse.
    ClickHouse,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// For `kind = "file"`.
    pub file: PathBuf,
    /// Commits handed from the shards' logs to the writer and not yet taken
    /// (about a millisecond of data each). When it is full the writer reads
    /// the commits it missed back from the log: nothing waits, nothing is lost.
    pub queue_capacity: usize,
    /// A batch is flushed at this many rows ...
    pub batch_rows: usize,
    /// ... or this many bytes ...
    pub batch_bytes: usize,
    /// ... or when its oldest row is this old.
    pub batch_age_ms: u64,
    /// Inserts of one table out at once. ClickHouse parses and writes an
    /// insert on one thread: a second in flight uses another core.
    pub inserts_in_flight: usize,
    /// Keep the raw frames in the `raw_frames` table.
    pub raw_frames: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Apply `schema/` at start.
    pub apply_schema: bool,
    /// Compress inserts: `lz4` (for a network in between) or `none` (for
    /// ClickHouse on the same host, where compressing only costs CPU twice).
    pub compression: String,
    /// ClickHouse settings sent with every insert and query, e.g.
    /// `insert_distributed_sync = "1"` for a cluster (see the README's
    /// "Scaling out"): an insert then returns once every shard has its rows.
    pub settings: std::collections::BTreeMap<String, String>,
}

/// When an acknowledgement goes out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Once the rows it acknowledges are durable in the log (the default):
    /// nothing acknowledged is lost, whatever happens to the process.
    Durable,
    /// As soon as the frame is read; rows are durable within one commit
    /// interval. Lower latency, for who prefers it and says so.
    Received,
}

/// The `[log]` section: the durable log, one per shard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Under it, one directory per shard (`shard-N`).
    pub dir: PathBuf,
    pub ack: AckMode,
    /// At most one commit (write + fdatasync) per shard this often ...
    pub commit_interval_us: u64,
    /// ... or sooner, once this much is pending.
    pub commit_bytes: u64,
    /// A new segment file once one holds this much.
    pub segment_bytes: u64,
    /// What all shards' logs may hold together (what ClickHouse does not
    /// have yet); beyond it, the shards stop reading until it drains.
    pub max_bytes: u64,
}

/// The `[limits]` section: what a badge connection may cost, above all
/// before it has logged in. Every bound is counted when it acts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections not logged in yet, in the whole process; more are
    /// refused at accept.
    pub max_prelogin: usize,
    /// The same per peer IP; 0 turns it off.
    pub max_prelogin_per_ip: usize,
    /// Frames a connection may send before it logs in (time syncs, dropped
    /// frames); one more closes it.
    pub prelogin_frames: u32,
    /// Bytes a connection may send before it logs in; more close it.
    pub prelogin_bytes: usize,
    /// A frame begun and not finished within this closes the connection.
    pub partial_frame_timeout_secs: u64,
    /// Replies the badge does not take within this close the connection.
    pub write_timeout_secs: u64,
    /// The kernel's send buffer of a badge socket (`SO_SNDBUF`; 0: the
    /// kernel's own, which grows to megabytes). Replies are small: a small
    /// buffer keeps memory per badge low and lets a badge that stops
    /// reading reach the write deadline in seconds, not minutes.
    pub send_buffer: usize,
    /// Frames per second one connection may send, with a burst of one
    /// second's worth; beyond it the connection's reads pause. 0: no cap.
    pub max_frames_per_sec: u32,
    /// A live session is not replaced by a login from another address
    /// within this many seconds of its own login (that login is refused
    /// and counted). 0: a newer login always wins, as in the reference.
    pub replace_min_interval_secs: u64,
    /// An IMEI replaced from another address this many times ...
    pub clone_replacements: u32,
    /// ... within this many seconds is listed as cloned (`clones`).
    pub clone_window_secs: u64,
    /// Which IMEIs may log in: empty for all; a file of IMEIs (one per
    /// line, `#` comments); or `clickhouse` for the `devices` table.
    pub allowlist: String,
    /// How often the allowlist is read again; 0: at start and on
    /// `allowlist reload` only.
    pub allowlist_refresh_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_prelogin: 4096,
            max_prelogin_per_ip: 256,
            prelogin_frames: 16,
            prelogin_bytes: 16 * 1024,
            partial_frame_timeout_secs: 10,
            write_timeout_secs: 5,
            send_buffer: 16 * 1024,
            max_frames_per_sec: 2000,
            replace_min_interval_secs: 0,
            clone_replacements: 3,
            clone_window_secs: 600,
            allowlist: String::new(),
            allowlist_refresh_secs: 60,
        }
    }
}

/// The `[control]` section: bounds on the control socket's clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Control connections at once; more are refused.
    pub max_connections: usize,
    /// A connection that sends no command for this long is closed
    /// (`watch` streams are exempt while they stream).
    pub idle_timeout_secs: u64,
    /// With a token set: a connection that has not authenticated within
    /// this is closed.
    pub auth_timeout_secs: u64,
    /// Permissions of a Unix control socket, octal.
    pub socket_mode: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            max_connections: 32,
            idle_timeout_secs: 600,
            auth_timeout_secs: 10,
            socket_mode: "0600".into(),
        }
    }
}

impl ControlConfig {
    /// `socket_mode` as permission bits.
    pub fn mode(&self) -> Result<u32, String> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("`{}` is not an octal mode like 0600", self.socket_mode))
    }
}

/// The `[logging]` section: what the process says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A `RUST_LOG`-style filter; `RUST_LOG` overrides it.
    pub filter: String,
    /// JSON lines for log shippers instead of text.
    pub json: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8841".parse().expect("literal"),
            control: "127.0.0.1:8842".into(),
            shards: 0,
            max_connections: 0,
            max_connections_per_ip: 0,
            proxy_protocol: false,
            trusted_proxies: TrustedProxies::default(),
            login_timeout_secs: 15,
            heartbeat_interval_secs: 180,
            idle_timeout_secs: 0,
            timer_interval_ms: 1000,
            ring_depth: 4096,
            transparent_huge_pages: false,
            read_buffers: 256,
            read_buffer: 4096,
            max_pending_output: 64 * 1024,
            summary_interval_secs: 60,
            instance: default_instance(),
            control_token: String::new(),
            max_queued_commands: 16,
            command_ttl_secs: 86_400,
        }
    }
}

fn default_instance() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "badge-ingest".into())
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            accept_bad_crc: false,
            device_utc_offset_minutes: 8 * 60,
            login_time_zone: true,
            device_utc_offsets: Default::default(),
            max_future_minutes: 15,
            zones_from_devices: false,
            zones_refresh_secs: 60,
        }
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            kind: SinkKind::ClickHouse,
            file: PathBuf::from("records.jsonl"),
            queue_capacity: 1024,
            batch_rows: 50_000,
            batch_bytes: 16 * 1024 * 1024,
            batch_age_ms: 1000,
            inserts_in_flight: 2,
            raw_frames: false,
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "badges".into(),
            user: "default".into(),
            password: String::new(),
            apply_schema: false,
            compression: "lz4".into(),
            settings: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("log"),
            ack: AckMode::Durable,
            commit_interval_us: 1000,
            commit_bytes: 1 << 20,
            segment_bytes: 64 << 20,
            max_bytes: 10 << 30,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
        }
    }
}

/// Where the control socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ControlAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(ControlAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(ControlAddr::Unix(PathBuf::from(s)));
        }
        s.parse()
            .map(ControlAddr::Tcp)
            .map_err(|_| format!("`{s}` is neither host:port nor a socket path"))
    }
}

impl std::fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlAddr::Tcp(a) => write!(f, "{a}"),
            ControlAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bad value: its key and why.
fn bad(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.into(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The shard count with 0 resolved to the number of cores.
    pub fn shards(&self) -> usize {
        if self.server.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.server.shards
        }
    }

    pub fn control_addr(&self) -> Result<ControlAddr, String> {
        ControlAddr::parse(&self.server.control)
    }

    pub fn idle_timeout(&self) -> Duration {
        let secs = if self.server.idle_timeout_secs == 0 {
            (3 * self.server.heartbeat_interval_secs).max(600)
        } else {
            self.server.idle_timeout_secs
        };
        Duration::from_secs(secs)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.shards > 1024 {
            return bad("server.shards", "at most 1024");
        }
        if s.login_timeout_secs == 0 {
            return bad("server.login_timeout_secs", "must be at least 1");
        }
        if s.heartbeat_interval_secs == 0 {
            return bad("server.heartbeat_interval_secs", "must be at least 1");
        }
        if !(10..=60_000).contains(&s.timer_interval_ms) {
            return bad("server.timer_interval_ms", "must be between 10 and 60000");
        }
        if !(1..=32_768).contains(&s.ring_depth) {
            return bad("server.ring_depth", "must be between 1 and 32768");
        }
        if !(2..=32_768).contains(&s.read_buffers) || !s.read_buffers.is_power_of_two() {
            return bad(
                "server.read_buffers",
                "must be a power of two between 2 and 32768",
            );
        }
        if !(512..=1 << 20).contains(&s.read_buffer) {
            return bad(
                "server.read_buffer",
                "must be between 512 and 1048576 bytes",
            );
        }
        if s.max_pending_output < 1024 {
            return bad("server.max_pending_output", "must be at least 1024");
        }
        if s.max_queued_commands == 0 || s.max_queued_commands > 10_000 {
            return bad("server.max_queued_commands", "must be between 1 and 10000");
        }
        if s.command_ttl_secs == 0 {
            return bad("server.command_ttl_secs", "must be at least 1");
        }
        let l = &self.limits;
        if l.max_prelogin == 0 {
            return bad("limits.max_prelogin", "must be at least 1");
        }
        if l.partial_frame_timeout_secs == 0 {
            return bad("limits.partial_frame_timeout_secs", "must be at least 1");
        }
        if l.write_timeout_secs == 0 {
            return bad("limits.write_timeout_secs", "must be at least 1");
        }
        if l.clone_replacements == 0 || l.clone_window_secs == 0 {
            return bad(
                "limits.clone_replacements",
                "it and limits.clone_window_secs must be at least 1",
            );
        }
        let c = &self.control;
        if c.max_connections == 0 {
            return bad("control.max_connections", "must be at least 1");
        }
        if c.idle_timeout_secs == 0 || c.auth_timeout_secs == 0 {
            return bad(
                "control.idle_timeout_secs",
                "it and control.auth_timeout_secs must be at least 1",
            );
        }
        if let Err(reason) = c.mode() {
            return bad("control.socket_mode", reason);
        }
        let control = match self.control_addr() {
            Ok(c) => c,
            Err(reason) => return bad("server.control", reason),
        };
        if matches!(control, ControlAddr::Tcp(a) if !a.ip().is_loopback())
            && s.control_token.is_empty()
        {
            return bad(
                "server.control",
                "a control socket outside loopback needs server.control_token (anyone who reaches it can command badges)",
            );
        }
        if s.instance.is_empty() || s.instance.len() > 64 {
            return bad("server.instance", "must be 1 to 64 characters");
        }
        let p = &self.protocol;
        if !(64..=65_541).contains(&p.max_frame) {
            return bad(
                "protocol.max_frame",
                "must be between 64 and 65541 (the largest 79 79 frame)",
            );
        }
        if p.device_utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            return bad(
                "protocol.device_utc_offset_minutes",
                "must be within ±840 (UTC-14 to UTC+14)",
            );
        }
        for (imei, minutes) in &p.device_utc_offsets {
            if imei.parse::<crate::protocol::Imei>().is_err() {
                return bad(
                    "protocol.device_utc_offsets",
                    format!("{imei:?} is not an IMEI"),
                );
            }
            if minutes.abs() > MAX_UTC_OFFSET_MINUTES {
                return bad(
                    "protocol.device_utc_offsets",
                    format!("{imei}: {minutes} is not within ±840 (UTC-14 to UTC+14)"),
                );
            }
        }
        if p.max_future_minutes > 24 * 60 {
            return bad(
                "protocol.max_future_minutes",
                "must be at most 1440 (a day)",
            );
        }
        let k = &self.sink;
        if k.queue_capacity < 16 {
            return bad("sink.queue_capacity", "must be at least 16");
        }
        if k.batch_rows == 0 {
            return bad("sink.batch_rows", "must be at least 1");
        }
        if k.batch_bytes < 4096 {
            return bad("sink.batch_bytes", "must be at least 4096");
        }
        if k.batch_age_ms == 0 {
            return bad("sink.batch_age_ms", "must be at least 1");
        }
        if !(1..=16).contains(&k.inserts_in_flight) {
            return bad("sink.inserts_in_flight", "must be between 1 and 16");
        }
        if k.kind == SinkKind::File && k.file.as_os_str().is_empty() {
            return bad("sink.file", "must name a file when sink.kind = \"file\"");
        }
        let c = &self.clickhouse;
        if k.kind == SinkKind::ClickHouse
            && !(c.url.starts_with("http://") || c.url.starts_with("https://"))
        {
            return bad("clickhouse.url", "must start with http:// or https://");
        }
        if c.database.is_empty()
            || !c
                .database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad(
                "clickhouse.database",
                "must be letters, digits and underscores",
            );
        }
        if !matches!(c.compression.as_str(), "lz4" | "none") {
            return bad("clickhouse.compression", "must be \"lz4\" or \"none\"");
        }
        if let Some(name) = c.settings.keys().find(|name| {
            name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }) {
            return bad(
                "clickhouse.settings",
                format!("{name:?} is not a setting name (lowercase letters, digits, underscores)"),
            );
        }
        let l = &self.log;
        if l.dir.as_os_str().is_empty() {
            return bad("log.dir", "must name a directory");
        }
        if !(10..=1_000_000).contains(&l.commit_interval_us) {
            return bad("log.commit_interval_us", "must be between 10 and 1000000");
        }
        if !(4096..=(64 << 20)).contains(&l.commit_bytes) {
            return bad("log.commit_bytes", "must be between 4096 and 67108864");
        }
        if !((1 << 20)..=(16 << 30)).contains(&l.segment_bytes) {
            return bad("log.segment_bytes", "must be between 1 MiB and 16 GiB");
        }
        if l.max_bytes < 2 * l.segment_bytes * self.shards() as u64 {
            return bad(
                "log.max_bytes",
                "must hold at least two segments per shard (log.segment_bytes)",
            );
        }
        self.geo.validate()?;
        self.beacons.validate()?;
        self.events.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_listen_where_the_readme_says() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8841");
        assert_eq!(c.server.control, "127.0.0.1:8842");
        assert_eq!(c.control_addr().unwrap().to_string(), "127.0.0.1:8842");
        assert_eq!(c.idle_timeout(), Duration::from_secs(600));
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let c: Config = toml::from_str("[server]\nring_depth = 0\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `server.ring_depth`"), "{e}");
        let e = toml::from_str::<Config>("[server]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = toml::from_str::<Config>("[server]\nlisen = \"1.2.3.4:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        for n in ["0", "17"] {
            let c: Config = toml::from_str(&format!("[sink]\ninserts_in_flight = {n}\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with("config key `sink.inserts_in_flight`"), "{e}");
        }
        assert_eq!(Config::default().sink.inserts_in_flight, 2);
    }

    #[test]
    fn clickhouse_settings_and_huge_pages_are_read() {
        let c: Config = toml::from_str(
            "[clickhouse.settings]\ninsert_distributed_sync = \"1\"\ninsert_quorum = \"2\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.clickhouse.settings["insert_distributed_sync"], "1");
        assert!(!c.server.transparent_huge_pages, "off by default");
        let c: Config = toml::from_str("[server]\ntransparent_huge_pages = true\n").unwrap();
        assert!(c.server.transparent_huge_pages);
        let c: Config = toml::from_str("[clickhouse.settings]\n\"a=b&c\" = \"1\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `clickhouse.settings`"), "{e}");
    }

    #[test]
    fn per_imei_clock_zones_are_read_and_checked() {
        let c: Config = toml::from_str(
            "[protocol]\ndevice_utc_offsets = { \"353419030000019\" = -300, \"353419030000027\" = 330 }\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.protocol.device_utc_offsets["353419030000019"], -300);
        for (text, says) in [
            ("{ \"12345\" = 60 }", "not an IMEI"),
            ("{ \"353419030000019\" = 900 }", "±840"),
        ] {
            let c: Config =
                toml::from_str(&format!("[protocol]\ndevice_utc_offsets = {text}\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("protocol.device_utc_offsets") && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn control_outside_loopback_needs_a_token() {
        let mut c = Config::default();
        c.server.control = "0.0.0.0:8842".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("control_token"), "{e}");
        c.server.control_token = "s3cret".into();
        c.validate().unwrap();
        c.server.control = "unix:/tmp/x.sock".into();
        assert_eq!(
            c.control_addr().unwrap(),
            ControlAddr::Unix("/tmp/x.sock".into())
        );
        c.server.control = "nonsense".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn idle_timeout_follows_the_heartbeat() {
        let mut c = Config::default();
        c.server.heartbeat_interval_secs = 300;
        assert_eq!(c.idle_timeout(), Duration::from_secs(900));
        c.server.idle_timeout_secs = 30;
        assert_eq!(c.idle_timeout(), Duration::from_secs(30));
    }
}
