//! Delivery to one webhook: a task on the events runtime that drains the
//! webhook's own bounded queue in batches, one POST at a time (which keeps
//! the events in order), retrying a failed POST with exponential backoff.
//! A webhook that is down or slow fills only its own queue; the dispatcher
//! never waits for it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{EventKind, WebhookConfig, LOG_EVERY};
use crate::logging::LogLimit;

/// The longest wait between two attempts, however many came before.
const BACKOFF_CAP: Duration = WebhookConfig::BACKOFF_CAP;

pub(super) const SIGNATURE_HEADER: &str = "X-Badge-Signature";

/// One webhook's counters.
///
/// Every event accepted into the queue (`queued`) ends as exactly one of
/// `delivered` or `failed` (given up after the retries, or still undelivered
/// when the shutdown grace ran out), or is still in `queue_len` or in the
/// batch being posted. Events refused because the queue was full are
/// `overflow`, never `queued`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookStats {
    /// The URL, with any password in it replaced.
    pub url: String,
    pub queued: u64,
    pub delivered: u64,
    /// POST requests sent, retries included.
    pub posts: u64,
    /// Attempts after the first of a batch.
    pub retries: u64,
    pub failed: u64,
    pub overflow: u64,
    /// Events waiting in the queue (not counting the batch being posted).
    pub queue_len: u64,
}

/// One configured webhook and its counters, shared by the dispatcher (which
/// fills its queue), its delivery task and [`super::Events::stats`].
pub(super) struct Hook {
    /// For stats and logs.
    pub(super) display_url: String,
    target: reqwest::Url,
    pub(super) mask: u8,
    secret: Option<Vec<u8>>,
    batch_max: usize,
    batch_age: Duration,
    pub(super) queue: usize,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    queued: AtomicU64,
    /// Taken out of the queue by the delivery task; `queued - dequeued` is
    /// the queue length without holding a sender (which would keep the
    /// queue open past shutdown).
    dequeued: AtomicU64,
    delivered: AtomicU64,
    posts: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    overflow: AtomicU64,
    overflow_log: LogLimit,
    failure_log: LogLimit,
}

impl Hook {
    /// From a validated config.
    pub(super) fn new(config: &WebhookConfig) -> Self {
        let target = reqwest::Url::parse(&config.url).expect("validated");
        let mut shown = target.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("redacted"));
        }
        let kinds: Vec<EventKind> = config
            .kinds
            .iter()
            .map(|k| EventKind::parse(k).expect("validated"))
            .collect();
        Self {
            display_url: shown.to_string(),
            target,
            mask: super::mask(&kinds),
            secret: (!config.secret.is_empty()).then(|| config.secret.as_bytes().to_vec()),
            batch_max: config.batch_max,
            batch_age: Duration::from_millis(config.batch_age_ms),
            queue: config.queue,
            timeout: Duration::from_millis(config.timeout_ms),
            retries: config.retries,
            backoff: Duration::from_millis(config.backoff_ms),
            queued: AtomicU64::new(0),
            dequeued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            overflow_log: LogLimit::every(LOG_EVERY),
            failure_log: LogLimit::every(LOG_EVERY),
        }
    }

    /// Hands one event to the queue; never waits.
    pub(super) fn offer(&self, tx: &mpsc::Sender<Arc<str>>, event: &Arc<str>) {
        match tx.try_send(Arc::clone(event)) {
            Ok(()) => {
                self.queued.fetch_add(1, Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = self.overflow.fetch_add(1, Relaxed) + 1;
                if let Some(held) = self.overflow_log.check() {
                    tracing::warn!(url = %self.display_url, overflow = total, not_logged = held,
                        "webhook queue full; events dropped for this webhook");
                }
            }
            // Only at shutdown, after the delivery task has gone.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Counts what is still queued or in flight as failed; for a shutdown
    /// that ran out of time.
    pub(super) fn abandon_rest(&self) -> u64 {
        let done = self.delivered.load(Relaxed) + self.failed.load(Relaxed);
        let rest = self.queued.load(Relaxed).saturating_sub(done);
        self.failed.fetch_add(rest, Relaxed);
        rest
    }

    pub(super) fn stats(&self) -> WebhookStats {
        let queued = self.queued.load(Relaxed);
        WebhookStats {
            url: self.display_url.clone(),
            queued,
            delivered: self.delivered.load(Relaxed),
            posts: self.posts.load(Relaxed),
            retries: self.retried.load(Relaxed),
            failed: self.failed.load(Relaxed),
            overflow: self.overflow.load(Relaxed),
            queue_len: queued.saturating_sub(self.dequeued.load(Relaxed)),
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(BACKOFF_CAP)
    }
}

/// The client all webhooks share. Redirects are not followed: a POST
/// redirected is a GET (or a resend to somewhere else), neither of which a
/// receiver that moved should get silently; a 3xx counts as a failure.
pub(super) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("badge-ingest/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub(super) fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// `{"events":[...]}` of the event lines.
fn body(batch: &[Arc<str>]) -> Vec<u8> {
    let len = batch.iter().map(|e| e.len() + 1).sum::<usize>() + 12;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"events\":[");
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event.as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

/// The delivery task: returns once the queue is closed and drained.
pub(super) async fn deliver(
    hook: Arc<Hook>,
    mut queue: mpsc::Receiver<Arc<str>>,
    client: reqwest::Client,
) {
    let mut batch = Vec::with_capacity(hook.batch_max.min(1024));
    loop {
        if queue.recv_many(&mut batch, hook.batch_max).await == 0 {
            return;
        }
        let deadline = Instant::now() + hook.batch_age;
        while batch.len() < hook.batch_max {
            let room = hook.batch_max - batch.len();
            match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                // Closed: what is there goes now, the shutdown is waiting.
                Ok(_) => break,
                Err(_) => break,
            }
        }
        hook.dequeued.fetch_add(batch.len() as u64, Relaxed);
        post(&hook, &client, &batch).await;
        batch.clear();
    }
}

async fn post(hook: &Hook, client: &reqwest::Client, batch: &[Arc<str>]) {
    let events = batch.len() as u64;
    let body = bytes::Bytes::from(body(batch));
    let signature = hook.secret.as_deref().map(|s| signature(s, &body));
    let mut retry = 0;
    loop {
        hook.posts.fetch_add(1, Relaxed);
        let mut request = client
            .post(hook.target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(hook.timeout)
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        // The answer's body is not read: only the status matters, and an
        // endless body must not hold the queue.
        let error = match request.send().await {
            Ok(response) if response.status().is_success() => {
                hook.delivered.fetch_add(events, Relaxed);
                return;
            }
            Ok(response) => format!("HTTP status {}", response.status().as_u16()),
            Err(e) if e.is_timeout() => format!("no answer within {:?}", hook.timeout),
            Err(e) => error_chain(&e),
        };
        if retry >= hook.retries {
            let total = hook.failed.fetch_add(events, Relaxed) + events;
            if let Some(held) = hook.failure_log.check() {
                tracing::warn!(url = %hook.display_url, events, attempts = retry + 1, %error,
                    failed_total = total, not_logged = held, "webhook batch given up");
            }
            return;
        }
        let wait = hook.backoff(retry);
        tracing::debug!(url = %hook.display_url, %error, ?wait, "webhook POST failed; retrying");
        retry += 1;
        hook.retried.fetch_add(1, Relaxed);
        tokio::time::sleep(wait).await;
    }
}

/// reqwest's own message names the URL only; the cause (refused, reset,
/// DNS) is in the sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_batch_body_wraps_the_lines_in_an_events_array() {
        let batch: Vec<Arc<str>> = vec![r#"{"a":1}"#.into(), r#"{"b":2}"#.into()];
        let v: serde_json::Value = serde_json::from_slice(&body(&batch)).unwrap();
        assert_eq!(v, serde_json::json!({"events": [{"a": 1}, {"b": 2}]}));
        assert_eq!(body(&[]), b"{\"events\":[]}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_passwords_stay_out_of_stats() {
        let hook = Hook::new(&WebhookConfig {
            url: "https://user:hunter2@example.invalid/hook".into(),
            backoff_ms: 500,
            ..WebhookConfig::default()
        });
        let waits: Vec<u64> = (0..8).map(|r| hook.backoff(r).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
        assert_eq!(hook.backoff(u32::MAX), BACKOFF_CAP);
        assert!(
            !hook.display_url.contains("hunter2"),
            "{}",
            hook.display_url
        );
        assert_eq!(hook.mask, crate::events::mask(&[]));
    }
}
