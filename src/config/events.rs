//! The `[events]` section: live events and webhooks.

use serde::{Deserialize, Serialize};

use crate::record::EventKind;

use super::{bad, ConfigError};

/// The `[events]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events between the sink writers and the dispatcher; more are dropped
    /// (counted), never waited for.
    pub queue: usize,
    /// Events a watcher may fall behind; one further behind is dropped.
    pub watcher_queue: usize,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            queue: 65_536,
            watcher_queue: 4096,
            webhooks: Vec::new(),
        }
    }
}

/// One `[[events.webhooks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where the batches are POSTed (http:// or https://).
    pub url: String,
    /// Event kinds to send; empty sends all.
    pub kinds: Vec<String>,
    /// HMAC-SHA256 key for `X-Badge-Signature`; empty: unsigned.
    pub secret: String,
    /// Events per POST ...
    pub batch_max: usize,
    /// ... or fewer, once the first of them has waited this long.
    pub batch_age_ms: u64,
    /// Events waiting for this webhook; more are dropped for it (counted).
    pub queue: usize,
    /// Bound on each POST, connecting included.
    pub timeout_ms: u64,
    /// Attempts after the first before a batch is given up.
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one, at most 30 s.
    pub backoff_ms: u64,
}

impl WebhookConfig {
    /// The longest wait between two retries.
    pub const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(30);
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            kinds: Vec::new(),
            secret: String::new(),
            batch_max: 100,
            batch_age_ms: 1000,
            queue: 10_000,
            timeout_ms: 5000,
            retries: 5,
            backoff_ms: 500,
        }
    }
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000_000).contains(&self.queue) {
            return bad("events.queue", "must be between 1 and 10000000");
        }
        if !(1..=1_000_000).contains(&self.watcher_queue) {
            return bad("events.watcher_queue", "must be between 1 and 1000000");
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            // The key is static; which entry is meant goes in the reason.
            let bad_hook = |key: &'static str, reason: String| {
                bad(key, format!("webhook {i} (`{}`): {reason}", hook.url))
            };
            if let Err(reason) = http_url(&hook.url) {
                return bad_hook("events.webhooks.url", reason);
            }
            if let Some(unknown) = hook.kinds.iter().find(|k| EventKind::parse(k).is_none()) {
                let known: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
                return bad_hook(
                    "events.webhooks.kinds",
                    format!(
                        "unknown kind `{unknown}` (known: {}; none for all)",
                        known.join(", ")
                    ),
                );
            }
            if !(1..=10_000).contains(&hook.batch_max) {
                return bad_hook(
                    "events.webhooks.batch_max",
                    "must be between 1 and 10000".into(),
                );
            }
            if hook.batch_age_ms > 600_000 {
                return bad_hook("events.webhooks.batch_age_ms", "at most 600000".into());
            }
            if !(1..=10_000_000).contains(&hook.queue) {
                return bad_hook(
                    "events.webhooks.queue",
                    "must be between 1 and 10000000".into(),
                );
            }
            if !(1..=600_000).contains(&hook.timeout_ms) {
                return bad_hook(
                    "events.webhooks.timeout_ms",
                    "must be between 1 and 600000".into(),
                );
            }
            if hook.retries > 100 {
                return bad_hook("events.webhooks.retries", "at most 100".into());
            }
            if !(1..=WebhookConfig::BACKOFF_CAP.as_millis() as u64).contains(&hook.backoff_ms) {
                return bad_hook(
                    "events.webhooks.backoff_ms",
                    "must be between 1 and 30000".into(),
                );
            }
        }
        Ok(())
    }
}

fn http_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("`{url}` must be an http:// or https:// URL"));
    }
    Ok(())
}
