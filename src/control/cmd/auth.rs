//! `auth TOKEN`: unlocks the other commands when the server has a token.

use serde_json::json;

use super::super::answer::{self, Answer, Done};

/// Whether `given` unlocks a server whose token is `token` (none: always).
pub fn run(token: Option<&str>, given: &str) -> Answer {
    match token {
        Some(t) if t != given.trim() => answer::err("bad token"),
        _ => answer::ok(Done::new("authenticated", json!({ "authenticated": true }))),
    }
}
