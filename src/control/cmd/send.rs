//! `send [--wait SECS] IMEI TEXT` (0x80 online command) and `message IMEI
//! TEXT` (0x82 message): handed to the shard that owns the badge, which
//! writes it at once or queues it until the badge logs in.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::ingest::{CommandKind, CommandRequest, CommandView};
use crate::server::ShardMsg;

use super::super::answer::{self, Answer};
use super::super::shards::{ask, parse_imei};
use super::super::Context;

/// The longest `send --wait`.
const MAX_WAIT_SECS: u64 = 300;

/// TEXT is the rest of the line, spaces included.
pub async fn run(ctx: &Context, line: &str, kind: CommandKind) -> Answer {
    let usage = match kind {
        CommandKind::OnlineCommand => "usage: send [--wait SECS] IMEI TEXT",
        CommandKind::Message => "usage: message IMEI TEXT",
    };
    let mut rest = line
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r)
        .trim_start();
    let mut wait = None;
    if kind == CommandKind::OnlineCommand {
        if let Some(after) = rest.strip_prefix("--wait") {
            let after = after.trim_start();
            let (secs, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            match secs.parse::<u64>() {
                Ok(s) if (1..=MAX_WAIT_SECS).contains(&s) => wait = Some(Duration::from_secs(s)),
                _ => return answer::err(format!("--wait takes seconds from 1 to {MAX_WAIT_SECS}")),
            }
            rest = tail.trim_start();
        }
    }
    let Some((imei, text)) = rest.split_once(char::is_whitespace) else {
        return answer::err(usage);
    };
    let text = text.trim();
    if text.is_empty() {
        return answer::err(usage);
    }
    let imei = parse_imei(imei)?;
    let shard = ctx.server.owner(imei);
    let (wait_tx, wait_rx) = flume::bounded(1);
    let text = text.to_string();
    let request = CommandRequest {
        imei,
        kind,
        text,
        wait: wait.map(|_| wait_tx),
    };
    let accepted = ask(ctx, shard, |reply| ShardMsg::Command { request, reply }).await;
    let command = match accepted {
        Some(Ok(c)) => c,
        Some(Err(e)) => return answer::err(e.to_string()),
        None => return answer::err("the shard did not answer"),
    };
    let Some(wait) = wait else {
        return answer::ok(Accepted { command });
    };
    match tokio::time::timeout(wait, wait_rx.recv_async()).await {
        Ok(Ok(done)) => answer::ok(Finished { command: done }),
        _ => answer::ok(TimedOut {
            command,
            timed_out: true,
            waited: wait.as_secs(),
        }),
    }
}

/// Accepted: sent at once or queued.
#[derive(Serialize)]
struct Accepted {
    command: CommandView,
}

impl fmt::Display for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.command.id, self.command.status.as_str())
    }
}

/// Replied, expired or failed within `--wait`.
#[derive(Serialize)]
struct Finished {
    command: CommandView,
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.command.id, self.command.status.as_str())?;
        // The reply text only when there is one (no trailing space for expired or failed).
        if !self.command.reply.is_empty() {
            write!(f, " {}", self.command.reply)?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct TimedOut {
    command: CommandView,
    timed_out: bool,
    #[serde(skip)]
    waited: u64,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (no reply within {}s)",
            self.command.id,
            self.command.status.as_str(),
            self.waited
        )
    }
}
