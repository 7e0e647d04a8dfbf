//! `badge-loadgen`: simulates a fleet of KKS badges against a badge-ingest
//! server, checks every reply, and reports throughput and latency.
//!
//! - `cli`: options, caps and validation
//! - `profile`: what a badge sends and when
//! - `device`: one badge's connection loop
//! - `attack`: hostile clients beside the badges
//! - `expect`: what each request must get back
//! - `report`: counters, histograms, the report
//! - `procs`: descriptor limits and worker processes
//! - `verify`: row counts in ClickHouse after the run

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tokio::task::JoinSet;

mod attack;
mod cli;
mod device;
mod expect;
mod hist;
mod net;
mod procs;
mod profile;
mod report;
mod verification;
mod verify;

use cli::{Cli, Settings};
use device::{DeviceSpec, Shared};
use profile::Plan;
use report::{Progress, Report, RunInfo, Snapshot, Stats};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a run that could not start (bad options, limits).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("badge-loadgen: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Ok(true) when every reply arrived and was right (and ClickHouse, if
/// asked, had every row).
fn run(cli: &Cli) -> anyhow::Result<bool> {
    let s = cli.settings()?;
    let nofile = procs::raise_nofile();
    procs::check_limits(&s, nofile)?;

    if let Some((_, epoch_ms)) = s.worker {
        let snapshot = run_local(&s, epoch_ms, Output::JsonLines)?;
        print_line(&procs::WorkerLine::Result(snapshot))?;
        return Ok(true);
    }

    let since_unix = if s.verify_clickhouse.is_some() {
        // Rows of earlier runs over the same IMEIs are stamped before it.
        verify::start_of_window()
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    let snapshot = if s.procs > 1 {
        procs::run_parent(&s)?
    } else {
        run_local(&s, procs::unix_ms(), Output::Stderr)?
    };
    let mut report = Report::new(
        RunInfo {
            target: s.target.to_string(),
            profile: s.profile.name(),
            devices: s.devices,
            procs: s.procs,
            seed: s.seed,
            imei_first: s.imei(0).to_string(),
            imei_last: s.imei(s.devices - 1).to_string(),
            duration_s: s.duration.as_secs_f64(),
            attack: (!s.attack.is_empty()).then(|| {
                (
                    s.attack_start.as_secs_f64(),
                    s.attack_imei(0).to_string(),
                    s.attack_imei(s.attack.total() - 1).to_string(),
                )
            }),
        },
        &snapshot,
    );
    if let Some(url) = &s.verify_clickhouse {
        eprintln!(
            "badge-loadgen: checking rows in ClickHouse (up to {:?})",
            verify::DEADLINE
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let v = rt.block_on(verify::verify(
            url,
            &s.database,
            s.allow_remote,
            s.imei(0).as_u64(),
            s.imei(s.devices - 1).as_u64(),
            since_unix,
            &snapshot,
            verify::DEADLINE,
        ));
        report.ok &= v.ok;
        report.verify = Some(v);
    }
    if s.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}

/// Where the once-a-second progress goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// A human line on stderr.
    Stderr,
    /// A JSON line on stdout, for the parent process.
    JsonLines,
}

fn print_line(line: &procs::WorkerLine) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Runs this process's badges, starting at `epoch_ms` (Unix milliseconds).
fn run_local(s: &Settings, epoch_ms: u64, output: Output) -> anyhow::Result<Snapshot> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let snapshot = rt.block_on(run_devices(s, epoch_ms, output));
    // Tasks still blocked (only after an overrun) are abandoned, not awaited.
    rt.shutdown_timeout(Duration::from_secs(1));
    snapshot
}

async fn run_devices(s: &Settings, epoch_ms: u64, output: Output) -> anyhow::Result<Snapshot> {
    let slice = s.slice();
    let t0 = Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(procs::unix_ms()));
    let end = t0 + s.duration;
    let attack_from = (!s.attack.is_empty()).then(|| t0 + s.attack_start);
    let stats = Arc::new(Stats::with_attack_from(attack_from));
    let shared = Arc::new(Shared {
        target: s.target,
        sources: s.sources.clone(),
        stats: stats.clone(),
        plan: Plan {
            profile: s.profile,
            heartbeat: s.heartbeat,
            end,
            duration: s.duration,
            reconnect_mean_secs: slice.total as f64 / s.reconnect_rate,
            rate: s.rate,
        },
        reply_timeout: s.reply_timeout,
        inflight: s.inflight,
        seed: s.seed,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Held here until every badge is done, so that no receiver ever sees a
    // closed channel (which would read as "stop").
    let stop_tx = Arc::new(stop_tx);
    let mut stopped = stop_rx.clone();
    let interrupt = stop_tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("badge-loadgen: interrupted; draining replies and closing connections");
            let _ = interrupt.send(true);
        }
    });

    // Only the process that runs the attackers reports on them.
    let no_attack = attack::AttackPlan::default();
    let attack_stats = Arc::new(attack::AttackStats::new(if s.runs_attack() {
        &s.attack
    } else {
        &no_attack
    }));
    let attack_thread = if s.runs_attack() {
        let setup = attack::AttackSetup {
            plan: s.attack.clone(),
            target: s.target,
            // Their own addresses, or the badges' after the last badge.
            sources: if s.attack_sources.is_empty() {
                s.sources.clone()
            } else {
                s.attack_sources.clone()
            },
            source_offset: if s.attack_sources.is_empty() {
                slice.total
            } else {
                0
            },
            imei_base: s.attack_imei_base(),
            start: t0 + s.attack_start,
            end,
            seed: s.seed,
        };
        Some(
            attack::spawn(setup, attack_stats.clone(), stop_rx.clone())
                .context("starting the attack thread")?,
        )
    } else {
        None
    };

    let mut tasks = JoinSet::new();
    for j in 0..slice.count {
        let index = slice.first + j;
        let offset = s.ramp.mul_f64(index as f64 / slice.total as f64);
        let spec = DeviceSpec {
            index,
            imei: s.imei(index),
            start: t0 + offset,
        };
        tasks.spawn(device::run(shared.clone(), spec, stop_rx.clone()));
    }
    drop(stop_rx);

    // Badges stop by themselves after the duration, the drain and the
    // close; this only guards against one that never does.
    let hard_stop = end + 2 * s.reply_timeout + Duration::from_secs(30);
    let mut abandoned = false;
    let mut stopped_at: Option<Instant> = None;
    let mut progress = Progress::new();
    let mut tick =
        tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Err(e)) if e.is_panic() => {
                    stats.note(0, &format!("a badge task panicked: {e}"));
                    stats.c.task_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Some(_) => {}
            },
            _ = stopped.changed(), if stopped_at.is_none() => {
                stopped_at = Some(Instant::now().min(end));
            }
            _ = tick.tick() => {
                let mut now = stats.progress();
                now.attack = attack_stats.progress();
                match output {
                    Output::Stderr => eprintln!("{}", progress.line(&now, slice.count)),
                    Output::JsonLines => print_line(&procs::WorkerLine::Progress(now))?,
                }
                if Instant::now() > hard_stop && !abandoned {
                    abandoned = true;
                    stats.note(0, &format!("{} badges had not finished 30 s after the run; abandoned", tasks.len()));
                    stats.c.task_failures.fetch_add(tasks.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    tasks.abort_all();
                }
            }
        }
    }
    if let Some(t) = attack_thread {
        // Attackers stop at the end of traffic (or on the interrupt), long
        // before the badges' drain is over; joining off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    drop(stop_tx);
    let mut snapshot = stats.snapshot();
    snapshot.attack = attack_stats.snapshot();
    let traffic_end = if *stopped.borrow_and_update() {
        stopped_at.unwrap_or(end)
    } else {
        end
    };
    snapshot.traffic_s = traffic_end.saturating_duration_since(t0).as_secs_f64();
    Ok(snapshot)
}
