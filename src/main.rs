//! `badge-ingest`: the server binary and its operator commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use badge_ingest::config::{AckMode, Config, SinkKind};
use badge_ingest::metrics::{Percentiles, ShardMetrics};
use badge_ingest::protocol::{number, FrameDecoder, Message};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ingestion server for KKS Bluetooth work badges (Concox GT06 protocol) into ClickHouse.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: accept badges, answer them, and store what they send.
    Serve(ServeArgs),
    /// Send one command to a running server's control socket (`ctl help` lists them).
    Ctl(CtlArgs),
    /// Manage the ClickHouse schema.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Manage the beacon registry (the `beacons` table).
    Beacons {
        #[command(subcommand)]
        command: BeaconsCommand,
    },
    /// Decode hex-encoded frames (for example from a capture) and print what they contain.
    Decode {
        /// Hex bytes; spaces are ignored. Several frames may follow each other.
        hex: Vec<String>,
    },
}

#[derive(Args)]
struct CtlArgs {
    /// The server's control socket: host:port or a Unix socket path. Give
    /// several (repeated, or comma-separated) for instances behind one
    /// balancer: commands about one badge go to the instance holding it,
    /// `stats` and `devices` are merged.
    #[arg(
        long,
        env = "BADGE_CONTROL",
        value_delimiter = ',',
        default_value = "127.0.0.1:8842"
    )]
    control: Vec<String>,
    /// A file of control addresses, one per line (`#` starts a comment),
    /// in place of --control.
    #[arg(long)]
    controls_file: Option<PathBuf>,
    /// Shared secret, when the server has one.
    #[arg(long, env = "BADGE_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The command and its arguments, e.g. `stats`, `send 353419032981446 WHERE#`,
    /// `watch [KIND...]` to stream live events, or `top` to refresh `stats` every second.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Create the database, tables and views of schema/ (idempotent).
    Apply {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Print the SQL that `apply` would run.
    Print {
        #[arg(long, env = "BADGE_DATABASE", default_value = "badges")]
        database: String,
    },
}

/// How `schema apply` and the `beacons` commands reach ClickHouse.
#[derive(Args)]
struct ClickHouseArgs {
    /// ClickHouse HTTP URL.
    #[arg(
        long,
        env = "BADGE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse_url: String,
    /// The database (`schema apply` creates it; it holds the `beacons` table).
    #[arg(long, env = "BADGE_DATABASE", default_value = "badges")]
    database: String,
}

impl ClickHouseArgs {
    fn config(self) -> anyhow::Result<Config> {
        let mut config = Config::default();
        config.clickhouse.url = self.clickhouse_url;
        config.clickhouse.database = self.database;
        config.validate()?;
        Ok(config)
    }
}

#[derive(Subcommand)]
enum BeaconsCommand {
    /// Check a CSV file of beacons and write it to the table as their
    /// current version. Header: mac,name,lat,lon[,address][,active]. Nothing
    /// is written if any line is bad.
    Import {
        /// The CSV file (`-` reads standard input).
        file: PathBuf,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Print the current version of every beacon in the table, retired
    /// ones included, as CSV that `import` reads back.
    List {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
}

/// Every option also reads a `BADGE_*` environment variable, and overrides
/// the config file; the file overrides the built-in defaults.
#[derive(Args)]
struct ServeArgs {
    /// TOML config file (see README, "Configuration").
    #[arg(long, env = "BADGE_CONFIG")]
    config: Option<PathBuf>,
    /// Address badges connect to [default 0.0.0.0:8841].
    #[arg(long, env = "BADGE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Control socket: host:port, or a Unix socket path [default 127.0.0.1:8842].
    #[arg(long, env = "BADGE_CONTROL")]
    control: Option<String>,
    /// Shared secret control clients must send with `auth TOKEN`.
    #[arg(long, env = "BADGE_CONTROL_TOKEN", hide_env_values = true)]
    control_token: Option<String>,
    /// Executors (one per core by default).
    #[arg(long, env = "BADGE_SHARDS")]
    shards: Option<usize>,
    /// Where records go: clickhouse, file or count.
    #[arg(long, env = "BADGE_SINK", value_parser = parse_sink)]
    sink: Option<SinkKind>,
    /// With --sink file: the JSON-lines file to append records to.
    #[arg(long, env = "BADGE_SINK_FILE")]
    sink_file: Option<PathBuf>,
    /// ClickHouse HTTP URL [default http://127.0.0.1:8123].
    #[arg(long, env = "BADGE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    /// ClickHouse database [default badges].
    #[arg(long, env = "BADGE_DATABASE")]
    database: Option<String>,
    /// Directory of the durable log (one subdirectory per shard) [default log].
    #[arg(long, env = "BADGE_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// When replies go out: `durable` (once the rows they acknowledge are
    /// synced to the log) or `received` (at once) [default durable].
    #[arg(long, env = "BADGE_ACK", value_parser = parse_ack)]
    ack: Option<AckMode>,
    /// Apply schema/ to ClickHouse before accepting badges.
    #[arg(long, env = "BADGE_APPLY_SCHEMA")]
    apply_schema: bool,
    /// Badge connections start with a PROXY protocol header (behind HAProxy).
    #[arg(long, env = "BADGE_PROXY_PROTOCOL")]
    proxy_protocol: bool,
    /// Log as JSON lines.
    #[arg(long, env = "BADGE_LOG_JSON")]
    log_json: bool,
}

fn parse_ack(s: &str) -> Result<AckMode, String> {
    match s {
        "durable" => Ok(AckMode::Durable),
        "received" => Ok(AckMode::Received),
        _ => Err("durable or received".into()),
    }
}

fn parse_sink(s: &str) -> Result<SinkKind, String> {
    match s {
        "clickhouse" => Ok(SinkKind::ClickHouse),
        "file" => Ok(SinkKind::File),
        "count" => Ok(SinkKind::Count),
        _ => Err("one of clickhouse, file, count".into()),
    }
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.server.listen = v;
        }
        if let Some(v) = &self.control {
            c.server.control = v.clone();
        }
        if let Some(v) = &self.control_token {
            c.server.control_token = v.clone();
        }
        if let Some(v) = self.shards {
            c.server.shards = v;
        }
        if let Some(v) = self.sink {
            c.sink.kind = v;
        }
        if let Some(v) = &self.sink_file {
            c.sink.file = v.clone();
        }
        if let Some(v) = &self.clickhouse_url {
            c.clickhouse.url = v.clone();
        }
        if let Some(v) = &self.database {
            c.clickhouse.database = v.clone();
        }
        if let Some(v) = &self.log_dir {
            c.log.dir = v.clone();
        }
        if let Some(v) = self.ack {
            c.log.ack = v;
        }
        if self.apply_schema {
            c.clickhouse.apply_schema = true;
        }
        if self.proxy_protocol {
            c.server.proxy_protocol = true;
        }
        if self.log_json {
            c.logging.json = true;
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Decode { hex } => decode(&hex.join("")),
        Command::Schema { command } => schema(command),
        Command::Beacons { command } => beacons(command),
        Command::Ctl(args) => ctl(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("badge-ingest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    use badge_ingest::config::ControlAddr;
    use badge_ingest::control::client::Client;
    let addrs = match &args.controls_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("{}", file.display()))?
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        None => args.control.clone(),
    };
    let timeout = std::time::Duration::from_secs(args.timeout.max(1));
    if addrs.len() > 1 {
        return ctl_fleet(&args, &addrs, timeout);
    }
    let Some(first) = addrs.first() else {
        bail!("no control address");
    };
    let addr = ControlAddr::parse(first).map_err(anyhow::Error::msg)?;
    if args.command.first().is_some_and(|c| c == "watch") {
        // Events may be minutes apart: no read timeout while watching.
        let forever = std::time::Duration::from_secs(365 * 86_400);
        let mut client = Client::connect(&addr, args.token.as_deref(), forever)?;
        let ok = client.stream(&args.command.join(" "), |line| println!("{line}"))?;
        if !ok {
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut client = Client::connect(&addr, args.token.as_deref(), timeout)?;
    if args.command == ["top"] {
        loop {
            let (ok, answer) = client.command("stats")?;
            // Clear the screen and home the cursor, like top.
            print!("\x1B[2J\x1B[H{first}  (badge-ingest ctl top, Ctrl-C to stop)\n{answer}");
            use std::io::Write as _;
            std::io::stdout().flush()?;
            if !ok {
                bail!("stats failed");
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let (ok, answer) = client.command(&args.command.join(" "))?;
    print!("{answer}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// `ctl` with several control addresses.
fn ctl_fleet(args: &CtlArgs, addrs: &[String], timeout: std::time::Duration) -> anyhow::Result<()> {
    use badge_ingest::config::ControlAddr;
    use badge_ingest::control::client::Client;
    use badge_ingest::control::fleet::Fleet;
    if matches!(
        args.command.first().map(String::as_str),
        Some("watch" | "top")
    ) {
        bail!("`watch` and `top` take one control address");
    }
    let mut instances = Vec::new();
    for a in addrs {
        let addr = ControlAddr::parse(a).map_err(anyhow::Error::msg)?;
        let client = Client::connect(&addr, args.token.as_deref(), timeout)
            .with_context(|| format!("control address {a}"))?;
        instances.push((a.clone(), client));
    }
    let (ok, answer) = Fleet::new(instances).command(&args.command.join(" "))?;
    print!("{answer}");
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

fn schema(command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Apply { clickhouse } => {
            let config = clickhouse.config()?;
            let n = apply_schema(&config)?;
            println!(
                "applied {n} statements to database {}",
                config.clickhouse.database
            );
        }
        SchemaCommand::Print { database } => {
            for (name, sql) in badge_ingest::sink::schema::FILES {
                println!("-- {name}");
                for statement in badge_ingest::sink::schema::statements(sql, &database) {
                    println!("{};", statement.trim_end());
                }
            }
        }
    }
    Ok(())
}

fn beacons(command: BeaconsCommand) -> anyhow::Result<()> {
    use badge_ingest::beacons;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        BeaconsCommand::Import { file, clickhouse } => {
            let config = clickhouse.config()?;
            // The whole file is checked before anything is written.
            let list = if file.as_os_str() == "-" {
                beacons::parse_csv(std::io::stdin().lock()).context("standard input")?
            } else {
                beacons::read_csv_file(&file)?
            };
            let database = &config.clickhouse.database;
            let client = badge_ingest::sink::clickhouse::client(&config);
            let n = rt
                .block_on(beacons::import(&client, database, &list))
                .with_context(|| {
                    format!(
                        "importing into {database}.beacons at {}",
                        config.clickhouse.url
                    )
                })?;
            println!("imported {n} beacons into {database}.beacons");
        }
        BeaconsCommand::List { clickhouse } => {
            let config = clickhouse.config()?;
            let database = &config.clickhouse.database;
            let client = badge_ingest::sink::clickhouse::client(&config);
            let list = rt
                .block_on(beacons::load(&client, database))
                .with_context(|| {
                    format!("reading {database}.beacons at {}", config.clickhouse.url)
                })?;
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record(["mac", "name", "lat", "lon", "address", "active"])?;
            for b in &list {
                out.write_record([
                    beacons::format_mac(b.mac),
                    b.name.clone(),
                    b.lat.to_string(),
                    b.lon.to_string(),
                    b.address.clone(),
                    u8::from(b.active).to_string(),
                ])?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

fn apply_schema(config: &Config) -> anyhow::Result<usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(badge_ingest::sink::clickhouse::apply_schema(
        config,
        &config.clickhouse.database,
    ))
    .with_context(|| format!("applying the schema at {}", config.clickhouse.url))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    badge_ingest::logging::init(&config.logging.filter, config.logging.json);
    badge_ingest::logging::abort_on_panic();
    if !config.server.transparent_huge_pages {
        // Before the shards and writers start: their heaps are what the
        // kernel would back with huge pages.
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only
        // how later page faults of this process are served.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
        }
    }
    if config.sink.kind == SinkKind::ClickHouse && config.clickhouse.apply_schema {
        let n = apply_schema(&config)?;
        tracing::info!(statements = n, database = %config.clickhouse.database, "schema applied");
    }
    let config = Arc::new(config);
    let app = badge_ingest::app::App::start(config.clone()).context("starting")?;

    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    let handle = signals.handle();
    let summary = spawn_summary(app.handle(), config.server.summary_interval_secs);
    let mut signals = signals;
    let signal = signals.forever().next();
    handle.close();
    tracing::info!(
        ?signal,
        "shutting down: closing connections and flushing records"
    );
    drop(summary);
    let uptime = app.uptime();
    let shards = app.shutdown().context("flushing the sink")?;
    let total = ShardMetrics::total(&shards);
    tracing::info!(
        uptime_s = uptime.as_secs(),
        connections = total.counters.connections_accepted,
        logins = total.counters.logins,
        frames = total.frames_total(),
        records = total.counters.records,
        crc_errors = total.frame.bad_crc,
        reply_latency = %Percentiles::of(&total.reply_latency),
        "stopped"
    );
    Ok(())
}

/// Logs a one-line summary every `secs` seconds until dropped.
fn spawn_summary(
    handle: badge_ingest::server::ServerHandle,
    secs: u64,
) -> Option<std::sync::mpsc::Sender<()>> {
    if secs == 0 {
        return None;
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("summary".into())
        .spawn(move || {
            let mut last_frames = 0;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(std::time::Duration::from_secs(secs))
            {
                let total = ShardMetrics::total(&handle.metrics());
                let frames = total.frames_total();
                tracing::info!(
                    connections = total.counters.connections_open,
                    sessions = total.counters.sessions,
                    frames_per_s = (frames - last_frames) / secs,
                    records = total.counters.records,
                    crc_errors = total.frame.bad_crc,
                    resyncs = total.frame.resyncs,
                    reply_latency = %Percentiles::of(&total.reply_latency),
                    "summary"
                );
                last_frames = frames;
            }
        })
        .ok()?;
    Some(stop)
}

fn decode(hex: &str) -> anyhow::Result<()> {
    let cleaned: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    if cleaned.len() % 2 != 0 {
        bail!("odd number of hex digits");
    }
    let bytes = (0..cleaned.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cleaned[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .context("not hex")?;
    let mut decoder = FrameDecoder::default();
    let mut frames = decoder.frames(&bytes);
    for frame in frames.by_ref() {
        println!(
            "frame 0x{:02X} ({}) serial {} crc {}",
            frame.protocol,
            number::name(frame.protocol),
            frame.serial,
            if frame.crc_ok { "ok" } else { "BAD" }
        );
        match Message::decode(&frame) {
            Ok(m) => println!("  {m:#?}"),
            Err(e) => println!("  error: {e}"),
        }
    }
    let left = bytes.len() - frames.consumed();
    let stats = &decoder.stats;
    println!(
        "{} frames, {} garbage bytes, {} bad CRC, {} bad stop, {} bad length, {} bytes incomplete",
        stats.frames, stats.garbage_bytes, stats.bad_crc, stats.bad_stop, stats.bad_length, left
    );
    Ok(())
}
