//! Live events: records pushed, as they are written, to watchers on the
//! control socket and to webhooks.
//!
//! ```text
//! sink writer ─publish─▶ bounded queue ─▶ dispatcher ─┬─▶ watcher channels (bounded, try_send)
//!   (JSON built here)     (try_send)      (own thread) └─▶ webhook queues (bounded, try_send)
//!                                                             └─▶ one delivery task per webhook
//! ```
//!
//! **Ingestion is never slowed.** [`Events::publish`] is one atomic load
//! when nobody is interested in the record's kind; otherwise it builds the
//! event line once and `try_send`s it. Every queue after it is bounded and
//! filled with `try_send`: a full publish queue drops the event (counted),
//! a watcher whose channel is full is dropped (it asked for a live feed
//! and is no longer live), and a full webhook queue drops the event for
//! that webhook only.
//!
//! Kinds: `status` (device events), `location`, `alarm`, `attendance`,
//! `bluetooth` and `command` (command status changes); other tables make no
//! event. The line: `{"kind":..,"imei":"<15 digits>","time":"<RFC 3339>",
//! ..every column of the row..}`, with `"status":"online"|"offline"` for
//! status events, the ingest key left out, and a row's own `kind` column
//! renamed `<kind>_kind`. A webhook gets `{"events":[..]}`, signed with
//! `X-Badge-Signature: sha256=<hex HMAC-SHA256 of the body>` when it has a
//! secret.

mod json;
mod webhook;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::config::ConfigError;
pub use crate::config::{EventsConfig, WebhookConfig};
use crate::logging::LogLimit;
use crate::metrics::{Figure, Kind, Line};

/// How often a repeated events warning is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
pub use crate::record::EventKind;
use crate::record::Record;

pub use webhook::WebhookStats;

use webhook::Hook;

/// How long [`Events::shutdown`] lets webhooks deliver what is queued.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Events the dispatcher takes off its queue per lock of the watcher list.
const DISPATCH_BATCH: usize = 256;

/// The kind as a bit of a watcher's or webhook's interest mask.
pub(crate) fn bit(kind: EventKind) -> u8 {
    1 << kind as u8
}

/// The set of `kinds` as bits; empty means all.
pub(crate) fn mask(kinds: &[EventKind]) -> u8 {
    let kinds = if kinds.is_empty() {
        &EventKind::ALL[..]
    } else {
        kinds
    };
    kinds.iter().fold(0, |m, k| m | bit(*k))
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("events runtime: {0}")]
    Runtime(std::io::Error),
    #[error("events thread: {0}")]
    Thread(std::io::Error),
    #[error("webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The event bus's figures, for `stats` and `/metrics`.
pub static EVENT_FIGURES: &[Figure<EventStats>] = &[
    Figure {
        key: "published",
        prom: Some("events_published_total"),
        kind: Kind::Counter,
        help: "Live events handed to watchers and webhooks.",
        text: &[(Line::Events, "published")],
        get: |e| e.published,
    },
    Figure {
        key: "dropped",
        prom: Some("events_dropped_total"),
        kind: Kind::Counter,
        help: "Live events dropped because the event queue was full.",
        text: &[(Line::Events, "dropped")],
        get: |e| e.dropped,
    },
    Figure {
        key: "watchers",
        prom: Some("event_watchers"),
        kind: Kind::Gauge,
        help: "Control-socket watchers now.",
        text: &[(Line::Events, "watchers")],
        get: |e| e.watchers as u64,
    },
    Figure {
        key: "watchers_dropped",
        prom: Some("event_watchers_dropped_total"),
        kind: Kind::Counter,
        help: "Watchers dropped for falling behind.",
        text: &[(Line::Events, "watchers_dropped")],
        get: |e| e.watchers_dropped,
    },
];

/// Each webhook's figures (labelled by its URL in `/metrics`).
pub static WEBHOOK_FIGURES: &[Figure<WebhookStats>] = &[
    Figure {
        key: "delivered",
        prom: Some("webhook_delivered_total"),
        kind: Kind::Counter,
        help: "Events a webhook accepted.",
        text: &[(Line::Webhook, "delivered")],
        get: |w| w.delivered,
    },
    Figure {
        key: "failed",
        prom: Some("webhook_failed_total"),
        kind: Kind::Counter,
        help: "Events given up after every retry.",
        text: &[(Line::Webhook, "failed")],
        get: |w| w.failed,
    },
    Figure {
        key: "posts",
        prom: Some("webhook_posts_total"),
        kind: Kind::Counter,
        help: "POSTs sent.",
        text: &[(Line::Webhook, "posts")],
        get: |w| w.posts,
    },
    Figure {
        key: "retries",
        prom: Some("webhook_retries_total"),
        kind: Kind::Counter,
        help: "POSTs retried.",
        text: &[(Line::Webhook, "retries")],
        get: |w| w.retries,
    },
    Figure {
        key: "overflow",
        prom: Some("webhook_overflow_total"),
        kind: Kind::Counter,
        help: "Events dropped because the webhook's queue was full.",
        text: &[(Line::Webhook, "overflow")],
        get: |w| w.overflow,
    },
    Figure {
        key: "queue_len",
        prom: Some("webhook_queue"),
        kind: Kind::Gauge,
        help: "Events waiting for the webhook.",
        text: &[(Line::Webhook, "queue")],
        get: |w| w.queue_len,
    },
];

/// A snapshot of the counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventStats {
    /// Events accepted into the dispatcher queue.
    pub published: u64,
    /// Events refused because the dispatcher queue was full.
    pub dropped: u64,
    /// Events in the dispatcher queue now.
    pub queue_len: usize,
    /// Watchers attached now.
    pub watchers: usize,
    /// Watchers dropped for falling `watcher_queue` events behind.
    pub watchers_dropped: u64,
    pub webhooks: Vec<WebhookStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can leave them half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One event on its way to the dispatcher.
struct Event {
    kind: EventKind,
    line: Arc<str>,
}

struct WatcherState {
    dropped: AtomicBool,
}

/// The dispatcher's end of a watcher.
struct Slot {
    id: u64,
    mask: u8,
    tx: mpsc::Sender<Arc<str>>,
    state: Arc<WatcherState>,
}

struct Registry {
    next_id: u64,
    watchers: Vec<Slot>,
    /// No more watchers, no more publishing: set by shutdown.
    closed: bool,
}

struct Shared {
    /// The kinds someone wants, as [`EventKind::bit`]s: the one thing
    /// `publish` reads when nobody does. Written under the registry lock.
    interest: AtomicU8,
    hooks_mask: u8,
    watcher_queue: usize,
    registry: Mutex<Registry>,
    hooks: Vec<Arc<Hook>>,
    published: AtomicU64,
    dropped: AtomicU64,
    dropped_log: LogLimit,
    watchers_dropped: AtomicU64,
    stopping: AtomicBool,
    stop: Notify,
}

impl Shared {
    fn new(config: &EventsConfig, hooks: Vec<Arc<Hook>>, closed: bool) -> Self {
        let shared = Self {
            interest: AtomicU8::new(0),
            hooks_mask: hooks.iter().fold(0, |m, h| m | h.mask),
            watcher_queue: config.watcher_queue,
            registry: Mutex::new(Registry {
                next_id: 0,
                watchers: Vec::new(),
                closed,
            }),
            hooks,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_log: LogLimit::every(LOG_EVERY),
            watchers_dropped: AtomicU64::new(0),
            stopping: AtomicBool::new(closed),
            stop: Notify::new(),
        };
        shared.refresh_interest(&lock(&shared.registry));
        shared
    }

    fn refresh_interest(&self, registry: &Registry) {
        let mask = if registry.closed {
            0
        } else {
            registry
                .watchers
                .iter()
                .fold(self.hooks_mask, |m, w| m | w.mask)
        };
        self.interest.store(mask, Ordering::Release);
    }

    fn dispatch(&self, events: &[Event], hook_queues: &[mpsc::Sender<Arc<str>>]) {
        for event in events {
            let bit = bit(event.kind);
            for (hook, queue) in self.hooks.iter().zip(hook_queues) {
                if hook.mask & bit != 0 {
                    hook.offer(queue, &event.line);
                }
            }
        }
        let mut registry = lock(&self.registry);
        if registry.watchers.is_empty() {
            return;
        }
        let before = registry.watchers.len();
        for event in events {
            let bit = bit(event.kind);
            registry.watchers.retain(|w| {
                if w.mask & bit == 0 {
                    return true;
                }
                match w.tx.try_send(Arc::clone(&event.line)) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Before the sender goes, so that the watcher that
                        // sees its channel end knows why.
                        w.state.dropped.store(true, Ordering::Release);
                        self.watchers_dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            watcher = w.id,
                            behind = self.watcher_queue,
                            "event watcher too slow; dropped"
                        );
                        false
                    }
                    // Its `Watcher` is being dropped and will find no slot.
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        if registry.watchers.len() != before {
            self.refresh_interest(&registry);
        }
    }

    /// Ends every watcher's feed (after what it was sent) and refuses new ones.
    fn close_watchers(&self) {
        let mut registry = lock(&self.registry);
        registry.closed = true;
        registry.watchers.clear();
        self.refresh_interest(&registry);
    }

    fn stats(&self, queue_len: usize) -> EventStats {
        EventStats {
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queue_len,
            watchers: lock(&self.registry).watchers.len(),
            watchers_dropped: self.watchers_dropped.load(Ordering::Relaxed),
            webhooks: self.hooks.iter().map(|h| h.stats()).collect(),
        }
    }
}

/// The dispatcher: runs until [`Events::shutdown`] or until every
/// [`Events`] is gone, then hands on what was queued and gives the webhooks
/// [`SHUTDOWN_GRACE`] to deliver it.
async fn run(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Event>,
    hook_queues: Vec<mpsc::Sender<Arc<str>>>,
    deliveries: Vec<tokio::task::JoinHandle<()>>,
) {
    let mut batch = Vec::with_capacity(DISPATCH_BATCH);
    // The flag, not only the notification, ends the loop: a notification
    // may arrive while the loop is between two waits.
    while !shared.stopping.load(Ordering::Acquire) {
        tokio::select! {
            biased;
            () = shared.stop.notified() => break,
            n = queue.recv_many(&mut batch, DISPATCH_BATCH) => {
                if n == 0 {
                    break;
                }
                shared.dispatch(&batch, &hook_queues);
                batch.clear();
            }
        }
    }
    // What was published before the stop still goes out.
    queue.close();
    while queue.recv_many(&mut batch, DISPATCH_BATCH).await > 0 {
        shared.dispatch(&batch, &hook_queues);
        batch.clear();
    }
    shared.close_watchers();
    // Closing the webhook queues lets each delivery task post its last
    // batch at once and end.
    drop(hook_queues);
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for (delivery, hook) in deliveries.into_iter().zip(&shared.hooks) {
        let abort = delivery.abort_handle();
        if tokio::time::timeout_at(deadline, delivery).await.is_err() {
            abort.abort();
            let undelivered = hook.abandon_rest();
            tracing::warn!(url = %hook.display_url, undelivered,
                "webhook not done within the shutdown grace; the rest counts as failed");
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` for [`Events::disabled`].
    queue: Option<mpsc::Sender<Event>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The event bus. Cheap to clone; once every clone is dropped the
/// dispatcher stops as on [`Events::shutdown`], without anyone waiting for it.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("enabled", &self.inner.queue.is_some())
            .field(
                "interest",
                &self.inner.shared.interest.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Validates `config` and starts the dispatcher on a thread of its own
    /// (`events`, a current-thread tokio runtime) with one delivery task per
    /// webhook.
    pub fn start(config: &EventsConfig) -> Result<Events, EventsError> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(EventsError::Runtime)?;
        let hooks: Vec<Arc<Hook>> = config
            .webhooks
            .iter()
            .map(|c| Arc::new(Hook::new(c)))
            .collect();
        let client = if hooks.is_empty() {
            None
        } else {
            let _in_runtime = runtime.enter();
            Some(webhook::client()?)
        };
        let shared = Arc::new(Shared::new(config, hooks, false));
        let mut hook_queues = Vec::with_capacity(shared.hooks.len());
        let mut deliveries = Vec::with_capacity(shared.hooks.len());
        for hook in &shared.hooks {
            let client = client.clone().expect("built when there are webhooks");
            let (tx, rx) = mpsc::channel(hook.queue);
            hook_queues.push(tx);
            deliveries.push(runtime.spawn(webhook::deliver(Arc::clone(hook), rx, client)));
            tracing::info!(url = %hook.display_url, "webhook configured");
        }
        let (tx, rx) = mpsc::channel(config.queue);
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    runtime.block_on(run(shared, rx, hook_queues, deliveries));
                    // A webhook's DNS lookup may still sit in a blocking
                    // thread; the grace is over, do not wait for it.
                    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
                }
            })
            .map_err(EventsError::Thread)?;
        Ok(Events {
            inner: Arc::new(Inner {
                shared,
                queue: Some(tx),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// A bus with nothing behind it: no thread, no queue. `publish` is one
    /// atomic load and never sends; `watch` hands out watchers that end at
    /// once (as after a shutdown). For tests, and for running without
    /// events; a server that may get watchers later should `start` with
    /// the default config (one thread, no webhooks) instead.
    pub fn disabled() -> Events {
        Events {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(&EventsConfig::default(), Vec::new(), true)),
                queue: None,
                thread: Mutex::new(None),
            }),
        }
    }

    /// Offers `record` to the bus; never blocks. Called by the sink writers
    /// for every record.
    pub fn publish(&self, record: &Record) {
        let shared = &self.inner.shared;
        let interest = shared.interest.load(Ordering::Relaxed);
        if interest == 0 {
            return;
        }
        let Some(kind) = record.event_kind() else {
            return;
        };
        if interest & bit(kind) == 0 {
            return;
        }
        let Some(queue) = &self.inner.queue else {
            return;
        };
        let line = match json::event_line(kind, record) {
            Ok(line) => line,
            Err(error) => {
                // Rows are plain data; this would be a bug, not a condition.
                if shared.dropped_log.check().is_some() {
                    tracing::error!(%error, table = record.table().name(), "event not serialisable");
                }
                return;
            }
        };
        match queue.try_send(Event { kind, line }) {
            Ok(()) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(held) = shared.dropped_log.check() {
                    tracing::warn!(
                        dropped = total,
                        not_logged = held,
                        "event queue full; events dropped"
                    );
                }
            }
            // Shut down: nobody is listening any more.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// A live feed of the events of `kinds` (all when empty), from now on.
    pub fn watch(&self, kinds: &[EventKind]) -> Watcher {
        let shared = &self.inner.shared;
        let mut registry = lock(&shared.registry);
        if registry.closed {
            return Watcher::ended();
        }
        let (tx, rx) = mpsc::channel(shared.watcher_queue);
        let state = Arc::new(WatcherState {
            dropped: AtomicBool::new(false),
        });
        let id = registry.next_id;
        registry.next_id += 1;
        registry.watchers.push(Slot {
            id,
            mask: mask(kinds),
            tx,
            state: Arc::clone(&state),
        });
        shared.refresh_interest(&registry);
        Watcher {
            rx,
            state,
            id,
            shared: Some(Arc::clone(shared)),
        }
    }

    pub fn stats(&self) -> EventStats {
        let queue_len = self
            .inner
            .queue
            .as_ref()
            .map_or(0, |q| q.max_capacity() - q.capacity());
        self.inner.shared.stats(queue_len)
    }

    /// Stops publishing at once, hands what is queued to the watchers and
    /// webhooks, ends every watcher's feed, and waits (blocking, at most
    /// about [`SHUTDOWN_GRACE`]) for the webhooks to deliver; async code
    /// should call it through `spawn_blocking`. Further calls, from any
    /// clone, return at once.
    pub fn shutdown(&self) {
        let shared = &self.inner.shared;
        {
            let mut registry = lock(&shared.registry);
            registry.closed = true;
            shared.refresh_interest(&registry);
        }
        shared.stopping.store(true, Ordering::Release);
        shared.stop.notify_one();
        let thread = lock(&self.inner.thread).take();
        if let Some(thread) = thread {
            // Joining itself would never return.
            if thread.thread().id() != std::thread::current().id() && thread.join().is_err() {
                tracing::error!("the events dispatcher panicked");
            }
        }
    }
}

/// A live subscription; dropping it unsubscribes.
pub struct Watcher {
    rx: mpsc::Receiver<Arc<str>>,
    state: Arc<WatcherState>,
    id: u64,
    /// `None` for a watcher that ended before it began.
    shared: Option<Arc<Shared>>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("id", &self.id)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    fn ended() -> Self {
        let (_, rx) = mpsc::channel(1);
        Self {
            rx,
            state: Arc::new(WatcherState {
                dropped: AtomicBool::new(false),
            }),
            id: u64::MAX,
            shared: None,
        }
    }

    /// The next event, one JSON object without a newline. `None` once the
    /// watcher was dropped for being slow ([`Self::dropped`]) or the bus
    /// shut down. Cancel-safe; any executor will do.
    pub async fn next(&mut self) -> Option<Arc<str>> {
        // What is still buffered is stale by now: a dropped watcher ends at once.
        if self.dropped() {
            return None;
        }
        self.rx.recv().await
    }

    /// An event already waiting, without waiting for one: lets a reader
    /// write a burst of events in one go.
    pub fn try_next(&mut self) -> Option<Arc<str>> {
        if self.dropped() {
            return None;
        }
        self.rx.try_recv().ok()
    }

    /// Whether the bus dropped this watcher for falling behind.
    pub fn dropped(&self) -> bool {
        self.state.dropped.load(Ordering::Acquire)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        let mut registry = lock(&shared.registry);
        if let Some(i) = registry.watchers.iter().position(|w| w.id == self.id) {
            registry.watchers.swap_remove(i);
            shared.refresh_interest(&registry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_is_shared_across_threads_and_watchers_move_into_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let events = Events::disabled();
        send_sync(&events);
        let mut w = events.watch(&[]);
        send(&w.next());
        send(&w);
    }

    #[test]
    fn kinds_round_trip_by_name_and_make_a_mask() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()), Some(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(EventKind::parse("Status"), None);
        assert_eq!(mask(&[]), 0b11_1111);
        assert_eq!(mask(&[EventKind::Status, EventKind::Command]), 0b10_0001);
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        EventsConfig::default().validate().unwrap();
        let c: EventsConfig = toml::from_str(
            "watcher_queue = 10\n[[webhooks]]\nurl = \"https://example.invalid/hook\"\nkinds = [\"alarm\", \"status\"]\nsecret = \"s\"",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.webhooks[0].batch_max, 100);
        assert_eq!(c.queue, 65_536);
        for (toml, key) in [
            ("queue = 0", "events.queue"),
            ("watcher_queue = 0", "events.watcher_queue"),
            ("[[webhooks]]\nurl = \"\"", "events.webhooks.url"),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nbatch_max = 0",
                "events.webhooks.batch_max",
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nqueue = 0",
                "events.webhooks.queue",
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\ntimeout_ms = 0",
                "events.webhooks.timeout_ms",
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nretries = 1000",
                "events.webhooks.retries",
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nbackoff_ms = 0",
                "events.webhooks.backoff_ms",
            ),
            (
                "[[webhooks]]\nurl = \"http://h/\"\nbatch_age_ms = 3600000",
                "events.webhooks.batch_age_ms",
            ),
        ] {
            let c: EventsConfig = toml::from_str(toml).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("config key `{key}`")), "{toml}: {e}");
        }
        let e =
            toml::from_str::<EventsConfig>("[[webhooks]]\nurl = \"http://h/\"\nsecrett = \"x\"")
                .unwrap_err()
                .to_string();
        assert!(e.contains("secrett"), "{e}");
    }

    #[test]
    fn a_disabled_bus_has_no_interest_and_ends_watchers_at_once() {
        let events = Events::disabled();
        assert_eq!(events.inner.shared.interest.load(Ordering::Relaxed), 0);
        let mut w = events.watch(&[]);
        assert_eq!(futures_lite::future::block_on(w.next()), None);
        assert!(!w.dropped());
        assert_eq!(events.stats().watchers, 0);
        events.shutdown();
    }

    #[test]
    fn interest_follows_watchers_and_webhooks() {
        let events = Events::start(&EventsConfig::default()).unwrap();
        let interest = || events.inner.shared.interest.load(Ordering::Relaxed);
        assert_eq!(interest(), 0);
        let a = events.watch(&[EventKind::Alarm]);
        let b = events.watch(&[EventKind::Status]);
        assert_eq!(interest(), bit(EventKind::Alarm) | bit(EventKind::Status));
        drop(a);
        assert_eq!(interest(), bit(EventKind::Status));
        assert_eq!(events.stats().watchers, 1);
        drop(b);
        assert_eq!(interest(), 0);
        events.shutdown();
        // After a shutdown nobody can make publishing cost anything again.
        let _c = events.watch(&[]);
        assert_eq!(interest(), 0);
        events.shutdown();
    }
}
