//! `geo` and `geo reload`: each provider's calls, hits, failures, breaker
//! and latency, the caches and the queue; reload reads the cell file again.

use std::fmt;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::geo::{BreakerState, GeoStats, PROVIDER_FIGURES};
use crate::metrics::Percentiles;

use super::super::answer::{self, Answer, Done};
use super::super::Context;

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    let Some(geo) = &ctx.services.geo else {
        return answer::err("no geo provider is configured (see [geo] in the configuration)");
    };
    match args {
        [] => answer::ok(Geo(geo.stats())),
        ["reload"] => match geo.reload_cell_db().await {
            Ok(info) => answer::ok(Done::new(
                format!("cell database reloaded: {} cells", info.cells),
                json!({ "cells": info.cells, "skipped": info.skipped }),
            )),
            Err(e) => answer::err(format!("cell database not reloaded: {e}")),
        },
        _ => answer::err("usage: geo | geo reload"),
    }
}

struct Geo(GeoStats);

fn breaker(state: BreakerState) -> String {
    format!("{state:?}").to_lowercase()
}

impl fmt::Display for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        for (name, p) in s.providers().into_iter().filter(|(_, p)| p.enabled) {
            write!(f, "{name}:")?;
            for figure in PROVIDER_FIGURES {
                write!(f, " {} {}", figure.key, (figure.get)(p))?;
            }
            writeln!(
                f,
                " breaker {} latency {}",
                breaker(p.breaker),
                Percentiles::of(&p.latency_us)
            )?;
        }
        writeln!(
            f,
            "queue_full {} outstanding {} cell_db_cells {} reloads {} reload_failures {}",
            s.queue_full,
            s.outstanding,
            s.cell_db_cells,
            s.cell_db_reloads,
            s.cell_db_reload_failures
        )
    }
}

impl Serialize for Geo {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = &self.0;
        let mut providers = Map::new();
        for (name, p) in s.providers().into_iter().filter(|(_, p)| p.enabled) {
            let mut figures = Map::new();
            crate::metrics::json_into(PROVIDER_FIGURES, p, &mut figures);
            figures.insert("breaker".into(), Value::String(breaker(p.breaker)));
            figures.insert("latency_us".into(), json!(Percentiles::of(&p.latency_us)));
            providers.insert(name.into(), Value::Object(figures));
        }
        json!({
            "providers": providers,
            "queue_full": s.queue_full,
            "outstanding": s.outstanding,
            "cell_db_cells": s.cell_db_cells,
            "cell_db_reloads": s.cell_db_reloads,
            "cell_db_reload_failures": s.cell_db_reload_failures,
        })
        .serialize(ser)
    }
}
