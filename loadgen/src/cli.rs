//! Command line, its limits, and the settings a run is made of.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use badge_ingest::protocol::Imei;
use clap::{Parser, ValueEnum};

use crate::attack::AttackPlan;
use crate::profile::Profile;

/// Hard caps: every run is bounded in size and time.
pub const MAX_DEVICES: u64 = 200_000;
pub const MAX_DURATION_SECS: u64 = 3600;
pub const MAX_PROCS: u32 = 64;
/// --rate: frames per second per badge, at most.
pub const MAX_RATE: f64 = 1000.0;
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
    /// realistic: frames per second per badge, heartbeats included (about a fifth of
    /// the mix needs a reply) [default: 1].
    #[arg(long)]
    pub rate: Option<f64>,
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
    /// Hostile connections beside the badges, N per kind: slowloris, trickle,
    /// prelogin-flood, no-read, clone (N even: pairs sharing an IMEI), garbage. Each
    /// reconnects when closed, until the end of the run; loopback targets only, at most
    /// 20000 in all; reported apart, never counted as honest failures.
    #[arg(long, value_name = "KIND=N[,KIND=N...]")]
    pub attack: Option<String>,
    /// Seconds into the run the attack begins (0: with the first badges) [default: 0].
    #[arg(long, value_name = "SECS")]
    pub attack_start: Option<f64>,
    /// Source addresses of the attackers, as --source (loopback only), so that they
    /// do not share the badges' addresses [default: the badges' sources].
    #[arg(long, value_name = "ADDRS")]
    pub attack_source: Option<String>,

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
    /// Realistic: frames per second per badge.
    pub rate: f64,
    /// Hostile connections (empty without --attack).
    pub attack: AttackPlan,
    /// When the attack begins, from the start of the run.
    pub attack_start: Duration,
    /// The attackers' own source addresses (empty: the badges' sources).
    pub attack_sources: Vec<IpAddr>,
    pub attack_source_arg: Option<String>,
    /// Set in worker processes.
    pub worker: Option<(Slice, u64)>,
}

impl Settings {
    pub fn imei(&self, index: u64) -> Imei {
        Imei::with_check_digit(self.imei_base + index)
            .expect("validated: base + devices has 14 digits")
    }

    /// The first 14 IMEI digits of the attack's first connection: right
    /// after the whole run's badges.
    pub fn attack_imei_base(&self) -> u64 {
        self.imei_base + self.slice().total
    }

    pub fn attack_imei(&self, index: u64) -> Imei {
        Imei::with_check_digit(self.attack_imei_base() + index)
            .expect("validated: the attack's IMEIs have 14 digits")
    }

    /// Whether this process runs the attackers: the only process, or the
    /// first worker.
    pub fn runs_attack(&self) -> bool {
        !self.attack.is_empty() && self.slice().first == 0
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
        let profile: Profile = self.profile.into();
        let rate = match self.rate {
            None => 1.0,
            Some(_) if profile != Profile::Realistic => {
                bail!("--rate is for the realistic profile")
            }
            Some(r) if !(r.is_finite() && r * self.heartbeat as f64 >= 1.0 && r <= MAX_RATE) => {
                bail!(
                    "--rate {r} is outside [1/heartbeat, {MAX_RATE}]: the heartbeats alone are one \
                     frame per --heartbeat ({} s)",
                    self.heartbeat
                )
            }
            Some(r) => r,
        };
        let attack = match &self.attack {
            Some(a) => AttackPlan::parse(a)?,
            None => AttackPlan::default(),
        };
        if !attack.is_empty() && !target.ip().is_loopback() {
            bail!(
                "--attack {}: hostile clients only go to a loopback target (127.0.0.0/8, ::1), \
                 --allow-remote or not",
                attack.to_arg()
            );
        }
        let attack_start = match self.attack_start {
            None => Duration::ZERO,
            Some(_) if attack.is_empty() => bail!("--attack-start needs --attack"),
            Some(t) if !(t >= 0.0 && t < self.duration as f64) => {
                bail!("--attack-start {t} must be at least 0 and less than the duration")
            }
            Some(t) => Duration::from_secs_f64(t),
        };
        let total = self.worker_total.unwrap_or(self.devices);
        let last_body = self
            .imei_base
            .checked_add(total - 1)
            .and_then(|b| b.checked_add(attack.total()));
        if self.imei_base < 10_000_000_000_000 || last_body.is_none_or(|b| b >= 100_000_000_000_000)
        {
            bail!(
                "--imei-base {} must have 14 digits, and so must base + devices + attack connections - 1",
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
            if (!self.allow_remote || !attack.is_empty()) && !s.is_loopback() {
                bail!("--source {s} is not a loopback address");
            }
        }
        let attack_sources = match &self.attack_source {
            None => Vec::new(),
            Some(_) if attack.is_empty() => bail!("--attack-source needs --attack"),
            Some(a) => parse_addresses("--attack-source", a)?,
        };
        for s in &attack_sources {
            if s.is_ipv4() != target.is_ipv4() {
                bail!("--attack-source {s} and --target {target} are not the same address family");
            }
            if !s.is_loopback() {
                bail!("--attack-source {s} is not a loopback address");
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
            profile,
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
            rate,
            attack,
            attack_start,
            attack_sources,
            attack_source_arg: self.attack_source.clone(),
            worker,
        })
    }
}

/// `127.0.0.2-127.0.0.9`, `127.0.0.2,127.0.0.3`, `::1` or `127.0.0.2`.
pub fn parse_sources(s: &str) -> anyhow::Result<Vec<IpAddr>> {
    parse_addresses("--source", s)
}

/// The addresses of `flag` (`--source`, `--attack-source`).
fn parse_addresses(flag: &str, s: &str) -> anyhow::Result<Vec<IpAddr>> {
    const MAX_SOURCES: u32 = 4096;
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("{flag} {part}: {a} is not an IPv4 address"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("{flag} {part}: {b} is not an IPv4 address"))?;
            let (lo, hi) = (u32::from(a), u32::from(b));
            if hi < lo {
                bail!("{flag} {part}: the range runs backwards");
            }
            if hi - lo >= MAX_SOURCES {
                bail!("{flag} {part}: more than {MAX_SOURCES} addresses");
            }
            out.extend((lo..=hi).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("{flag} {part}: not an IP address"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("{flag} {s}: no addresses");
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
    fn attack_options() {
        let t = ["--target", "127.0.0.1:1"];
        let with = |extra: &[&str]| {
            let mut a = t.to_vec();
            a.extend_from_slice(extra);
            cli(&a)
        };
        let s = with(&["--devices", "2000"]).unwrap();
        assert!(s.attack.is_empty() && !s.runs_attack());
        assert_eq!(s.attack_start, Duration::ZERO);

        let s = with(&[
            "--devices",
            "2000",
            "--attack",
            "slowloris=300,trickle=100,prelogin-flood=2,no-read=20,clone=2,garbage=10",
            "--attack-start",
            "5.5",
            "--duration",
            "40",
        ])
        .unwrap();
        assert_eq!(s.attack.total(), 434);
        assert_eq!(s.attack_start, Duration::from_millis(5500));
        assert!(s.runs_attack());
        // Attackers' IMEIs follow the honest ones: never the same.
        assert_eq!(s.attack_imei_base(), DEFAULT_IMEI_BASE + 2000);
        assert_eq!(
            s.attack_imei(0),
            Imei::with_check_digit(DEFAULT_IMEI_BASE + 2000).unwrap()
        );
        assert!(s.attack_imei(0).as_u64() > s.imei(1999).as_u64());

        assert!(
            with(&["--attack", "slowloris=1", "--attack-start", "10"]).is_err(),
            "start = duration"
        );
        assert!(with(&["--attack", "slowloris=1", "--attack-start", "-1"]).is_err());
        assert!(
            with(&["--attack-start", "1"]).is_err(),
            "start without an attack"
        );
        assert!(with(&["--attack", "tarpit=1"]).is_err());
        assert!(with(&["--attack", "clone=3"]).is_err());
        assert!(with(&["--attack", "garbage=20001"]).is_err());
        // The IMEI range must hold the attackers too.
        assert!(with(&["--imei-base", "99999999999000", "--devices", "1000"]).is_ok());
        assert!(with(&[
            "--imei-base",
            "99999999999000",
            "--devices",
            "1000",
            "--attack",
            "garbage=1"
        ])
        .is_err());
        // Loopback only, even with --allow-remote.
        let e = cli(&[
            "--target",
            "192.0.2.1:1",
            "--allow-remote",
            "--attack",
            "garbage=1",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(cli(&[
            "--target",
            "127.0.0.1:1",
            "--allow-remote",
            "--source",
            "192.0.2.1",
            "--attack",
            "garbage=1"
        ])
        .is_err());
        assert!(cli(&["--target", "[::1]:1", "--attack", "garbage=1"]).is_ok());
        // Attackers from addresses of their own.
        let s = with(&[
            "--attack",
            "garbage=1",
            "--attack-source",
            "127.0.0.2-127.0.0.3",
        ])
        .unwrap();
        assert_eq!(s.attack_sources.len(), 2);
        assert!(
            with(&["--attack-source", "127.0.0.2"]).is_err(),
            "without an attack"
        );
        assert!(with(&["--attack", "garbage=1", "--attack-source", "192.0.2.1"]).is_err());
        assert!(with(&["--attack", "garbage=1", "--attack-source", "::1"]).is_err());
    }

    #[test]
    fn rate_is_for_the_realistic_profile() {
        let t = ["--target", "127.0.0.1:1"];
        let with = |extra: &[&str]| {
            let mut a = t.to_vec();
            a.extend_from_slice(extra);
            cli(&a)
        };
        assert_eq!(with(&[]).unwrap().rate, 1.0);
        assert_eq!(with(&["--rate", "2.5"]).unwrap().rate, 2.5);
        assert!(with(&["--rate", "1", "--profile", "burst"]).is_err());
        assert!(
            with(&["--rate", "0.01"]).is_err(),
            "below one heartbeat per 30 s"
        );
        assert!(with(&["--rate", "0.1", "--heartbeat", "10"]).is_ok());
        assert!(with(&["--rate", "1001"]).is_err());
        assert!(with(&["--rate", "NaN"]).is_err());
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
