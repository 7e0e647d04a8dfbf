//! `clones`: IMEIs whose sessions keep being replaced by logins from other
//! addresses (`limits.clone_replacements` within `limits.clone_window_secs`):
//! two badges with one cloned IMEI, or someone taking badges over.

use std::fmt;

use serde::Serialize;

use crate::ingest::CloneView;
use crate::server::ShardMsg;

use super::super::answer::{self, Answer};
use super::super::shards::ask;
use super::super::Context;

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    if !args.is_empty() {
        return answer::err("clones takes no arguments");
    }
    let mut clones = Vec::new();
    for shard in 0..ctx.server.shards() {
        if let Some(v) = ask(ctx, shard, ShardMsg::Clones).await {
            clones.extend(v);
        }
    }
    clones.sort_by(|a: &CloneView, b| {
        b.replacements
            .cmp(&a.replacements)
            .then(a.imei.cmp(&b.imei))
    });
    answer::ok(Clones { clones })
}

#[derive(Serialize)]
struct Clones {
    clones: Vec<CloneView>,
}

impl fmt::Display for Clones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.clones.is_empty() {
            return write!(
                f,
                "no IMEI replaced from other addresses often enough to list"
            );
        }
        for (i, c) in self.clones.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{} replaced {} times in the window ({} in all), last at {} between {} and {}",
                c.imei, c.replacements, c.total, c.last_at, c.addresses[0], c.addresses[1]
            )?;
        }
        Ok(())
    }
}
