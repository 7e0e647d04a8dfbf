//! Process limits and `--procs`: one process may only hold `ulimit -n`
//! sockets, so bigger runs re-execute this binary as worker processes, each
//! with a slice of the badges, and merge what they report.
//!
//! A worker writes one JSON object per line to stdout: `{"progress": …}`
//! every second (counters only) and `{"result": …}` at the end (with
//! histograms as (value, count) lists). Its stderr is the parent's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::cli::{Settings, Slice};
use crate::profile::Profile;
use crate::report::{Progress, Snapshot};

/// Descriptors a process needs besides its badges' sockets (runtime,
/// stdio, epoll, the ClickHouse check).
pub const FD_RESERVE: u64 = 64;

/// Raises the soft open-files limit to the hard one; returns the soft limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    r.rlim_cur
}

/// Ephemeral ports per (source address, destination) pair.
fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
            Some(it.next_back()? - it.next()? + 1)
        })
        .unwrap_or(28_232)
}

/// Refuses a run that the descriptor or port limits would break halfway,
/// and says what would make it fit.
pub fn check_limits(s: &Settings, nofile: u64) -> anyhow::Result<()> {
    let slice = s.slice();
    let procs = if s.worker.is_some() {
        1
    } else {
        u64::from(s.procs)
    };
    // The attackers run in the first (or only) process, beside its badges.
    let attackers = if s.worker.is_none() || s.runs_attack() {
        s.attack.total()
    } else {
        0
    };
    let per_proc = slice.count.div_ceil(procs) + attackers;
    let usable = nofile.saturating_sub(FD_RESERVE);
    if per_proc > usable {
        let needed_procs = s.devices.div_ceil(usable.max(1));
        bail!(
            "the open-file limit stops this run: ulimit -n is {nofile} per process, and {} devices{} in {procs} \
             process{} need {} descriptors each ({per_proc} sockets + {FD_RESERVE} reserved). \
             Use --procs {needed_procs} or more (at most {}), or raise the limit.",
            s.devices,
            if attackers > 0 {
                format!(" and {attackers} attack connections (all in the first process)")
            } else {
                String::new()
            },
            if procs == 1 { "" } else { "es" },
            per_proc + FD_RESERVE,
            crate::cli::MAX_PROCS
        );
    }
    let ports = ephemeral_ports();
    let addresses = s.sources.len().max(1) as u64;
    // Attackers from addresses of their own have those addresses' ports.
    let attack_ports = s.attack_sources.len() as u64 * ports;
    if s.worker.is_none() && s.attack.total() > attack_ports && attack_ports > 0 {
        bail!(
            "{} attack connections need more than the {attack_ports} ephemeral ports of --attack-source",
            s.attack.total()
        );
    }
    let connections = s.devices
        + if attack_ports > 0 {
            0
        } else {
            s.attack.total()
        };
    if s.worker.is_none() && connections > ports * addresses {
        bail!(
            "{connections} connections need more than the {ports} ephemeral ports of {addresses} source address{}: \
             give --source a range of at least {} addresses (e.g. --source 127.0.0.2-127.0.0.{})",
            if addresses == 1 { "" } else { "es" },
            connections.div_ceil(ports),
            1 + connections.div_ceil(ports)
        );
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerLine {
    Progress(Snapshot),
    Result(Snapshot),
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The command line of a worker for `slice`, starting at `epoch_ms`.
fn worker_args(s: &Settings, slice: Slice, epoch_ms: u64) -> Vec<String> {
    let profile = match s.profile {
        Profile::Realistic => "realistic",
        Profile::Burst => "burst",
        Profile::ReconnectStorm => "reconnect-storm",
    };
    let share = s.reconnect_rate * slice.count as f64 / slice.total as f64;
    let mut a: Vec<String> = vec![
        "--target".into(),
        s.target.to_string(),
        "--devices".into(),
        slice.count.to_string(),
        "--duration".into(),
        s.duration.as_secs().to_string(),
        "--ramp".into(),
        s.ramp.as_secs_f64().to_string(),
        "--profile".into(),
        profile.into(),
        "--heartbeat".into(),
        s.heartbeat.as_secs().to_string(),
        "--inflight".into(),
        s.inflight.to_string(),
        "--reconnect-rate".into(),
        share.max(1e-6).to_string(),
        "--seed".into(),
        s.seed.to_string(),
        "--imei-base".into(),
        s.imei_base.to_string(),
        "--reply-timeout".into(),
        s.reply_timeout.as_secs_f64().to_string(),
        "--worker-first".into(),
        slice.first.to_string(),
        "--worker-total".into(),
        slice.total.to_string(),
        "--worker-epoch-ms".into(),
        epoch_ms.to_string(),
    ];
    if let Some(src) = &s.source_arg {
        a.push("--source".into());
        a.push(src.clone());
    }
    if s.allow_remote {
        a.push("--allow-remote".into());
    }
    if s.profile == Profile::Realistic {
        a.push("--rate".into());
        a.push(s.rate.to_string());
    }
    if !s.attack.is_empty() {
        // Every worker knows when the attack begins (for its badges'
        // latencies); only the first runs the attackers.
        a.push("--attack".into());
        a.push(s.attack.to_arg());
        a.push("--attack-start".into());
        a.push(s.attack_start.as_secs_f64().to_string());
        if let Some(src) = &s.attack_source_arg {
            a.push("--attack-source".into());
            a.push(src.clone());
        }
    }
    a
}

#[derive(Default)]
struct WorkerState {
    progress: Option<Snapshot>,
    result: Option<Snapshot>,
    bad_lines: u64,
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Ctrl-C reaches the workers too (same process group); each drains and
/// reports. The parent must outlive them to read those reports, so it only
/// notes the interrupt. A handler (not SIG_IGN) is reset by exec, so the
/// workers still get the default until they install their own.
fn survive_interrupt() {
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// Runs the badges in `s.procs` worker processes and merges their results.
pub fn run_parent(s: &Settings) -> anyhow::Result<Snapshot> {
    let exe = std::env::current_exe().context("finding this program to start workers")?;
    survive_interrupt();
    let procs = u64::from(s.procs);
    // A moment for every worker to start before the first badge connects.
    let epoch_ms = unix_ms() + 500 + 20 * procs;
    let mut children: Vec<Child> = Vec::new();
    let states: Vec<Arc<Mutex<WorkerState>>> = (0..procs).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    let mut first = 0;
    for i in 0..procs {
        let count = s.devices / procs + u64::from(i < s.devices % procs);
        let slice = Slice {
            first,
            count,
            total: s.devices,
        };
        first += count;
        let mut child = match Command::new(&exe)
            .args(worker_args(s, slice, epoch_ms))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(e).context(format!("starting worker {i}"));
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let state = states[i as usize].clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(WorkerLine::Progress(p)) => st.progress = Some(p),
                    Ok(WorkerLine::Result(r)) => st.result = Some(r),
                    Err(_) => st.bad_lines += 1,
                }
            }
        }));
        children.push(child);
    }

    // Workers stop by themselves; this only catches one that hangs.
    let limit = Duration::from_millis(epoch_ms.saturating_sub(unix_ms()))
        + s.duration
        + 2 * s.reply_timeout
        + Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    let mut progress = Progress::new();
    let mut statuses: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    loop {
        std::thread::sleep(Duration::from_secs(1));
        for (c, st) in children.iter_mut().zip(statuses.iter_mut()) {
            if st.is_none() {
                *st = c.try_wait().ok().flatten();
            }
        }
        let mut merged = Snapshot::default();
        for st in &states {
            let st = st.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = st.result.as_ref().or(st.progress.as_ref()) {
                merged.merge(p);
            }
        }
        eprintln!("{}", progress.line(&merged, s.devices));
        if INTERRUPTED.swap(false, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("badge-loadgen: interrupted; waiting for the workers to drain and report");
        }
        if statuses.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() > deadline {
            for (i, (c, st)) in children.iter_mut().zip(&statuses).enumerate() {
                if st.is_none() {
                    eprintln!(
                        "badge-loadgen: worker {i} (pid {}) overran the run; killing it",
                        c.id()
                    );
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            break;
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let mut total = Snapshot::default();
    for (i, (st, status)) in states.iter().zip(&statuses).enumerate() {
        let st = st.lock().unwrap_or_else(|p| p.into_inner());
        match (&st.result, status) {
            (Some(r), Some(status)) if status.success() => total.merge(r),
            (_, status) => bail!(
                "worker {i} ended ({}) without a result{}",
                status.map_or("killed".to_string(), |s| s.to_string()),
                if st.bad_lines > 0 {
                    format!("; {} unreadable lines on its stdout", st.bad_lines)
                } else {
                    String::new()
                }
            ),
        }
    }
    Ok(total)
}
