//! The control commands, one file each (in the manner of mini-redis'
//! `cmd/`): each parses its own arguments and answers with one value that
//! is shown as text or JSON ([`super::answer`]). `watch` streams instead of
//! answering and lives in [`watch`]; `auth` and `quit` are the session's.

mod allowlist;
pub mod auth;
mod beacons;
mod clones;
mod commands;
mod devices;
mod geo;
pub mod help;
mod latency;
mod metrics;
mod rejected;
mod send;
mod stats;
pub mod watch;

use std::sync::Arc;

use crate::ingest::CommandKind;

use super::answer::{self, Answer};
use super::Context;

/// Runs one command line (without any `json` prefix).
pub async fn execute(ctx: &Arc<Context>, line: &str) -> Answer {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match verb {
        "help" => help::run(),
        "stats" => stats::run(ctx, &args).await,
        "latency" => latency::run(ctx, &args).await,
        "devices" => devices::list(ctx, &args).await,
        "device" => devices::one(ctx, &args).await,
        "send" => send::run(ctx, line, CommandKind::OnlineCommand).await,
        "message" => send::run(ctx, line, CommandKind::Message).await,
        "commands" => commands::run(ctx, &args).await,
        "geo" => geo::run(ctx, &args).await,
        "beacons" => beacons::run(ctx, &args).await,
        "metrics" => metrics::run(ctx, &args).await,
        "rejected" => rejected::run(ctx, &args).await,
        "allowlist" => allowlist::run(ctx, &args).await,
        "clones" => clones::run(ctx, &args).await,
        "" => answer::err("empty command"),
        _ => answer::err(format!("unknown command `{verb}`; try `help`")),
    }
}
