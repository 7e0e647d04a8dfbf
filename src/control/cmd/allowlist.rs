//! `allowlist` and `allowlist reload`: which IMEIs may log in, where they
//! come from, how loading has gone, and loading them again now.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::allowlist::{Allowlist, ALLOWLIST_FIGURES};
use crate::metrics::{json_into, text_line, Line};

use super::super::answer::{self, Answer, Done};
use super::super::Context;

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    match args {
        [] => match &ctx.allowlist {
            None => answer::ok(Done::new(
                "no allowlist (limits.allowlist is empty): every IMEI may log in",
                json!({ "configured": false }),
            )),
            Some(list) => answer::ok(Status(list.clone())),
        },
        ["reload"] => {
            let Some(list) = &ctx.allowlist else {
                return answer::err("no allowlist is configured (limits.allowlist)");
            };
            match list.reload().await {
                Ok(n) => answer::ok(Done::new(
                    format!("allowlist reloaded: {n} IMEIs"),
                    json!({ "entries": n }),
                )),
                Err(e) => answer::err(format!(
                    "allowlist not reloaded (the previous one stays, {} IMEIs): {e}",
                    list.len()
                )),
            }
        }
        _ => answer::err("usage: allowlist | allowlist reload"),
    }
}

/// The figures of `list` as one JSON object (`{"entries": .., ...}`).
pub fn figures_json(list: &Allowlist) -> Value {
    let mut map = Map::new();
    json_into(ALLOWLIST_FIGURES, list.counters(), &mut map);
    map.remove("allowlist").unwrap_or(Value::Null)
}

/// `label value ...` of `list`'s figures, as in `stats`.
pub fn figures_text(list: &Allowlist) -> String {
    text_line(ALLOWLIST_FIGURES, Line::Total, list.counters())
}

struct Status(Allowlist);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = &self.0;
        let source = list
            .source()
            .map_or("a fixed list".into(), |s| s.to_string());
        write!(
            f,
            "allowlist: {} IMEIs from {source}\n{}",
            list.len(),
            figures_text(list)
        )?;
        if let Some(e) = list.last_error() {
            write!(f, "\nlast_error: {e}")?;
        }
        Ok(())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let list = &self.0;
        let mut v = figures_json(list);
        if let Value::Object(map) = &mut v {
            map.insert("configured".into(), json!(true));
            map.insert("source".into(), json!(list.source().map(|s| s.to_string())));
            map.insert("last_error".into(), json!(list.last_error()));
        }
        v.serialize(s)
    }
}
