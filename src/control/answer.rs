//! What a control command answers: one value, shown as text for people
//! (its `Display`) or as one JSON line for programs (its `Serialize`), so
//! the two can never say different things.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// A command's answer: text and JSON from the same value.
pub trait Reply: fmt::Display + Send {
    fn to_json(&self) -> Value;
}

impl<T: fmt::Display + Serialize + Send> Reply for T {
    fn to_json(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|e| Value::String(format!("answer not serialisable: {e}")))
    }
}

/// A command that could not be carried out, with the reason shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

impl CommandError {
    pub fn new(message: impl Into<String>) -> Self {
        CommandError(message.into())
    }
}

pub type Answer = Result<Box<dyn Reply>, CommandError>;

pub fn ok(reply: impl Reply + 'static) -> Answer {
    Ok(Box::new(reply))
}

pub fn err(message: impl Into<String>) -> Answer {
    Err(CommandError::new(message))
}

/// The bytes sent back: text lines (errors as `error: ...`) or one JSON
/// line with `"ok"`, then the empty line that ends every answer.
pub fn render(answer: &Answer, as_json: bool) -> String {
    if as_json {
        let v = match answer {
            Ok(reply) => match reply.to_json() {
                Value::Object(mut map) => {
                    map.insert("ok".into(), Value::Bool(true));
                    Value::Object(map)
                }
                other => serde_json::json!({ "ok": true, "result": other }),
            },
            Err(e) => serde_json::json!({ "ok": false, "error": e.0 }),
        };
        return format!("{v}\n\n");
    }
    let body = match answer {
        Ok(reply) => reply.to_string(),
        Err(e) => format!("error: {}", e.0),
    };
    // An empty line inside an answer would end it early.
    let body: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
    format!("{}\n\n", body.join("\n"))
}

/// A short confirmation: `text` for people, `{key: value}` for programs.
#[derive(Debug)]
pub struct Done {
    pub text: String,
    pub json: Value,
}

impl Done {
    pub fn new(text: impl Into<String>, json: Value) -> Self {
        Done {
            text: text.into(),
            json,
        }
    }
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Done {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}
