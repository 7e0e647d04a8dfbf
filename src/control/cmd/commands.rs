//! `commands IMEI`: a badge's recent and queued commands with their status.

use std::fmt;

use serde::Serialize;

use crate::ingest::CommandView;
use crate::server::ShardMsg;

use super::super::answer::{self, Answer};
use super::super::shards::{ask, parse_imei};
use super::super::Context;

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    let [imei] = args else {
        return answer::err("usage: commands IMEI");
    };
    let imei = parse_imei(imei)?;
    let shard = ctx.server.owner(imei);
    match ask(ctx, shard, |reply| ShardMsg::Commands { imei, reply }).await {
        Some(commands) => answer::ok(Commands {
            imei: imei.to_string(),
            commands,
        }),
        None => answer::err("the shard did not answer"),
    }
}

#[derive(Serialize)]
struct Commands {
    #[serde(skip)]
    imei: String,
    commands: Vec<CommandView>,
}

impl fmt::Display for CommandView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {:?} status {} created {} updated {} text {:?}",
            self.id,
            self.imei,
            self.kind,
            self.status.as_str(),
            self.created_at,
            self.updated_at,
            self.text
        )?;
        if !self.reply.is_empty() {
            write!(f, " reply {:?}", self.reply)?;
        }
        if !self.error.is_empty() {
            write!(f, " error {:?}", self.error)?;
        }
        Ok(())
    }
}

impl fmt::Display for Commands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.commands.is_empty() {
            return write!(f, "no commands for {}", self.imei);
        }
        for c in &self.commands {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}
