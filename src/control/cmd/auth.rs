//! `auth TOKEN`: unlocks the other commands when the server has a token.
//! The session holds back the answer to a wrong one and counts it
//! ([`super::super::guard`]).

use serde_json::json;

use super::super::answer::{self, Answer, Done};
use super::super::guard::Token;

/// Whether `given` unlocks a server whose token is `token` (none: always).
/// The comparison takes the same time however much of `given` is right.
pub fn run(token: Option<&Token>, given: &str) -> Answer {
    match token {
        Some(t) if !t.matches(given.trim()) => answer::err("bad token"),
        _ => answer::ok(Done::new("authenticated", json!({ "authenticated": true }))),
    }
}
