//! `metrics`: the Prometheus text, as `GET /metrics` serves it.

use serde_json::json;

use super::super::answer::{self, Answer, Done};
use super::super::{prometheus, Context};

pub async fn run(ctx: &Context, args: &[&str]) -> Answer {
    if !args.is_empty() {
        return answer::err("metrics takes no arguments");
    }
    let text = prometheus::render(ctx).await;
    answer::ok(Done::new(text.clone(), json!({ "metrics": text })))
}
