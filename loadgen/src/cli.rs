//! Command line, its limits, and the settings a run is made of.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use badge_ingest::protocol::Imei;
use clap::{Parser, ValueEnum};

use crate::profile::Profile;

/// Hard caps: every run is bounded in size and time.
pub const MAX_DEVICES: u64 = 200_000;
pub const MAX_DURATION_SECS: u64 = 3600;
pub const MAX_PROCS: u32 = 64;
/// The first 14 digits (TAC + serial) of the first badge's IMEI: a TAC no
/// real badge model uses, so test rows are easy to tell apart.
pub const DEFAULT_IMEI_BASE: u64 = 86_999_900_000_000;

/// Simulates a fleet of KKS badges against a badge-ingest server and checks
/// every reply against the reference server's behaviour.
#[derive(Parser, Debug, Clone)]
#[command(name = "badge-loadgen", version, about)]
pub struct Cli {
    /// Server address, HOST:PORT. Loopback only unless --allow-remote.
    #[arg(long)]
    pub target: String,
    /// Badges, each with its own IMEI and TCP connection (at most 200000).
    #[arg(long, default_value_t = 100)]
    pub devices: u64,
    /// Seconds of traffic (at most 3600); then replies are drained and connections closed.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds over which badges connect [default: devices / 1000, at most a quarter of the duration].
    #[arg(long)]
    pub ramp: Option<f64>,
    #[arg(long, value_enum, default_value_t = ProfileArg::Realistic)]
    pub profile: ProfileArg,
    /// Heartbeat interval in seconds (jittered ±20 %).
    #[arg(long, default_value_t = 30)]
    pub heartbeat: u64,
    /// burst: reply-expecting frames in flight per connection.
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// reconnect-storm: reconnects per second over all badges [default: devices / 10].
    #[arg(long)]
    pub reconnect_rate: Option<f64>,
    /// Source addresses, round-robin per connection: a range (127.0.0.2-127.0.0.9),
    /// a comma-separated list, or one address. Needed beyond ~28000 connections.
    #[arg(long)]
    pub source: Option<String>,
    /// Worker processes, each with a slice of the badges (for more badges than one
    /// process may hold open files).
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Seed of the traffic generator (message mix, paths, timers).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First 14 IMEI digits of badge 0; badge i gets IMEI (base + i) with its Luhn digit.
    #[arg(long, default_value_t = DEFAULT_IMEI_BASE)]
    pub imei_base: u64,
    /// Allow a target (and ClickHouse) outside the loopback range.
    #[arg(long)]
    pub allow_remote: bool,
    /// After the run, count this run's rows in ClickHouse (HTTP URL) and compare.
    #[arg(long, value_name = "URL")]
    pub verify_clickhouse: Option<String>,
    /// ClickHouse database for --verify-clickhouse.
    #[arg(long, default_value = "badges")]
    pub database: String,
    /// Seconds a reply may take before it counts as missing.
    #[arg(long, default_value_t = 5.0)]
    pub reply_timeout: f64,

    /// Worker process: index of its first badge in the whole run.
    #[arg(long, hide = true)]
    pub worker_first: Option<u64>,
    /// Worker process: badges in the whole run.
    #[arg(long, hide = true)]
    pub worker_total: Option<u64>,
    /// Worker process: when the run starts, Unix milliseconds.
    #[arg(long, hide = true)]
    pub worker_epoch_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    Realistic,
    Burst,
    ReconnectStorm,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Realistic => Profile::Realistic,
            ProfileArg::Burst => Profile::Burst,
            ProfileArg::ReconnectStorm => Profile::ReconnectStorm,
        }
    }
}

/// The badges one process simulates.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    /// Index of the first badge in the whole run.
    pub first: u64,
    pub count: u64,
    /// Badges in the whole run.
    pub total: u64,
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: SocketAddr,
    pub sources: Vec<IpAddr>,
    pub source_arg: Option<String>,
    pub devices: u64,
    pub duration: Duration,
    pub ramp: Duration,
    pub profile: Profile,
    pub heartbeat: Duration,
    pub inflight: usize,
    /// Reconnects per second over the whole run.
    pub reconnect_rate: f64,
    pub procs: u32,
    pub json: bool,
    pub seed: u64,
    pub imei_base: u64,
    pub allow_remote: bool,
    pub verify_clickhouse: Option<String>,
    pub database: String,
    pub reply_timeout: Duration,
    /// Set in worker processes.
    pub worker: Option<(Slice, u64)>,
}

impl Settings {
    pub fn imei(&self, index: u64) -> Imei {
        Imei::with_check_digit(self.imei_base + index)
            .expect("validated: base + devices has 14 digits")
    }

    /// This process's badges.
    pub fn slice(&self) -> Slice {
        match self.worker {
            Some((slice, _)) => slice,
            None => Slice {
                first: 0,
                count: self.devices,
                total: self.devices,
            },
        }
    }
}

impl Cli {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let target = self
            .target
            .to_socket_addrs()
            .with_context(|| format!("--target {}: not HOST:PORT", self.target))?
            .next()
            .with_context(|| format!("--target {} resolves to no address", self.target))?;
        if !self.allow_remote && !target.ip().is_loopback() {
            bail!(
                "--target {target} is not a loopback address (127.0.0.0/8, ::1); load is only sent to \
                 this machine unless --allow-remote is given"
            );
        }
        let is_worker = self.worker_first.is_some();
        // Workers get their slice's count in --devices; the cap is on the run.
        if self.devices == 0 || (!is_worker && self.devices > MAX_DEVICES) {
            bail!("--devices {} is outside 1..={MAX_DEVICES}", self.devices);
        }
        if self.duration == 0 || self.duration > MAX_DURATION_SECS {
            bail!(
                "--duration {} is outside 1..={MAX_DURATION_SECS} seconds",
                self.duration
            );
        }
        if self.heartbeat == 0 {
            bail!("--heartbeat must be at least 1 second");
        }
        if self.inflight == 0 || self.inflight > 1024 {
            bail!("--inflight {} is outside 1..=1024", self.inflight);
        }
        if self.procs == 0 || self.procs > MAX_PROCS {
            bail!("--procs {} is outside 1..={MAX_PROCS}", self.procs);
        }
        if u64::from(self.procs) > self.devices {
            bail!(
                "--procs {} is more than the {} devices",
                self.procs,
                self.devices
            );
        }
        if !(self.reply_timeout > 0.0 && self.reply_timeout <= 60.0) {
            bail!(
                "--reply-timeout {} is outside (0, 60] seconds",
                self.reply_timeout
            );
        }
        let total = self.worker_total.unwrap_or(self.devices);
        let last_body = self.imei_base.checked_add(total - 1);
        if self.imei_base < 10_000_000_000_000 || last_body.is_none_or(|b| b >= 100_000_000_000_000)
        {
            bail!(
                "--imei-base {} must have 14 digits, and so must base + devices - 1",
                self.imei_base
            );
        }
        let duration = Duration::from_secs(self.duration);
        let ramp = match self.ramp {
            Some(r) if !(0.0..=self.duration as f64).contains(&r) => {
                bail!("--ramp {r} must be between 0 and the duration")
            }
            Some(r) => Duration::from_secs_f64(r),
            // 1000 connects a second: a fleet coming online, not a thundering
            // herd (--ramp 0 for that), so the steady state dominates the figures.
            None => {
                Duration::from_secs_f64((total as f64 / 1000.0).min(self.duration as f64 / 4.0))
            }
        };
        let reconnect_rate = match self.reconnect_rate {
            Some(r) if !(r > 0.0 && r.is_finite()) => bail!("--reconnect-rate must be positive"),
            Some(r) => r,
            None => (total as f64 / 10.0).max(1.0),
        };
        let sources = match &self.source {
            Some(s) => parse_sources(s)?,
            None => Vec::new(),
        };
        for s in &sources {
            if s.is_ipv4() != target.is_ipv4() {
                bail!("--source {s} and --target {target} are not the same address family");
            }
            if !self.allow_remote && !s.is_loopback() {
                bail!("--source {s} is not a loopback address");
            }
        }
        if let Some(url) = &self.verify_clickhouse {
            if !url.starts_with("http://") {
                bail!("--verify-clickhouse {url}: only http:// URLs are supported");
            }
        }
        if self.database.is_empty()
            || !self
                .database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            bail!("--database {:?}: letters, digits and _ only", self.database);
        }
        let worker = match (self.worker_first, self.worker_total, self.worker_epoch_ms) {
            (Some(first), Some(total), Some(epoch)) => Some((
                Slice {
                    first,
                    count: self.devices,
                    total,
                },
                epoch,
            )),
            (None, None, None) => None,
            _ => bail!("--worker-first, --worker-total and --worker-epoch-ms go together"),
        };
        Ok(Settings {
            target,
            sources,
            source_arg: self.source.clone(),
            devices: self.devices,
            duration,
            ramp,
            profile: self.profile.into(),
            heartbeat: Duration::from_secs(self.heartbeat),
            inflight: self.inflight,
            reconnect_rate,
            procs: self.procs,
            json: self.json,
            seed: self.seed,
            imei_base: self.imei_base,
            allow_remote: self.allow_remote,
            verify_clickhouse: self.verify_clickhouse.clone(),
            database: self.database.clone(),
            reply_timeout: Duration::from_secs_f64(self.reply_timeout),
            worker,
        })
    }
}

/// `127.0.0.2-127.0.0.9`, `127.0.0.2,127.0.0.3`, `::1` or `127.0.0.2`.
pub fn parse_sources(s: &str) -> anyhow::Result<Vec<IpAddr>> {
    const MAX_SOURCES: u32 = 4096;
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("--source {part}: {a} is not an IPv4 address"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("--source {part}: {b} is not an IPv4 address"))?;
            let (lo, hi) = (u32::from(a), u32::from(b));
            if hi < lo {
                bail!("--source {part}: the range runs backwards");
            }
            if hi - lo >= MAX_SOURCES {
                bail!("--source {part}: more than {MAX_SOURCES} addresses");
            }
            out.extend((lo..=hi).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("--source {part}: not an IP address"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("--source {s}: no addresses");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> anyhow::Result<Settings> {
        let mut argv = vec!["badge-loadgen"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)?.settings()
    }

    #[test]
    fn defaults_and_caps() {
        let s = cli(&["--target", "127.0.0.1:18850"]).unwrap();
        assert_eq!(
            (s.devices, s.duration.as_secs(), s.heartbeat.as_secs()),
            (100, 10, 30)
        );
        assert_eq!(s.profile, Profile::Realistic);
        assert!(s.imei(0).luhn_valid());
        assert!(cli(&["--target", "127.0.0.1:1", "--devices", "200001"]).is_err());
        assert!(cli(&["--target", "127.0.0.1:1", "--duration", "3601"]).is_err());
        assert!(cli(&[
            "--target",
            "127.0.0.1:1",
            "--devices",
            "200000",
            "--duration",
            "3600"
        ])
        .is_ok());
    }

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(cli(&["--target", "[::1]:18850"]).is_ok());
        assert!(cli(&["--target", "127.9.9.9:18850"]).is_ok());
        let e = cli(&["--target", "192.0.2.1:18850"]).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(cli(&["--target", "192.0.2.1:18850", "--allow-remote"]).is_ok());
        assert!(cli(&["--target", "127.0.0.1:1", "--source", "192.0.2.1"]).is_err());
    }

    #[test]
    fn source_ranges() {
        let v = parse_sources("127.0.0.2-127.0.0.9").unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(v[7], "127.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(parse_sources("127.0.0.2, 127.0.0.4").unwrap().len(), 2);
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("127.0.0.1-127.1.0.0").is_err());
        assert!(cli(&["--target", "[::1]:1", "--source", "127.0.0.2"]).is_err());
    }
}
