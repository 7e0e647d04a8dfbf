//! `watch [KIND...]`: live events as JSON lines until the client
//! disconnects. It streams instead of answering once, so the session hands
//! the connection over to it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::events::EventKind;

use super::super::answer::CommandError;
use super::super::Context;

/// The kinds named after `watch` (none: all of them).
pub fn kinds(args: &[&str]) -> Result<Vec<EventKind>, CommandError> {
    args.iter()
        .map(|k| {
            EventKind::parse(k).ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                CommandError::new(format!(
                    "unknown event kind `{k}` (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// Refuses one more watcher when there are enough: each costs the
/// dispatcher a send per event.
pub fn admit(ctx: &Context) -> Result<(), CommandError> {
    if ctx.events.stats().watchers >= MAX_WATCHERS {
        return Err(CommandError::new(format!(
            "too many watchers ({MAX_WATCHERS}); try again later"
        )));
    }
    Ok(())
}

/// How long one event line may take to reach a watcher before it is cut
/// off: a client that stopped reading would otherwise hold its session.
const WATCH_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Watchers at once over all control connections.
const MAX_WATCHERS: usize = 64;
/// The most event bytes gathered into one write to a watcher.
const WATCH_BATCH_BYTES: usize = 64 * 1024;

/// Streams events as JSON lines until the client disconnects. A watcher
/// that falls behind is dropped by the event bus (never slowing the
/// writers); it gets a notice line, then the empty line that ends every
/// answer, and the connection closes.
pub async fn stream<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    ctx: &Context,
    kinds: &[EventKind],
    reader: &mut BufReader<R>,
    write: &mut W,
) {
    let mut watcher = ctx.events.watch(kinds);
    let shown = if kinds.is_empty() {
        &EventKind::ALL[..]
    } else {
        kinds
    };
    let names: Vec<&str> = shown.iter().map(|k| k.name()).collect();
    let header = format!("{}\n", serde_json::json!({ "watching": names }));
    let sent = tokio::time::timeout(WATCH_WRITE_TIMEOUT, write.write_all(header.as_bytes())).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let mut discard = [0u8; 512];
    let mut batch = Vec::with_capacity(WATCH_BATCH_BYTES + 4096);
    loop {
        let line = tokio::select! {
            event = watcher.next() => event,
            // Anything the client sends is ignored; end of input ends the watch.
            read = reader.read(&mut discard) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        let Some(line) = line else {
            let notice = if watcher.dropped() {
                serde_json::json!({ "notice": "dropped: this watcher fell behind the event stream; watch again to resume" })
            } else {
                serde_json::json!({ "notice": "the server is shutting down" })
            };
            let end = format!("{notice}\n\n");
            let _ =
                tokio::time::timeout(WATCH_WRITE_TIMEOUT, write.write_all(end.as_bytes())).await;
            return;
        };
        // A burst goes out in one write, not one per event.
        batch.clear();
        batch.extend_from_slice(line.as_bytes());
        batch.push(b'\n');
        while batch.len() < WATCH_BATCH_BYTES {
            let Some(more) = watcher.try_next() else {
                break;
            };
            batch.extend_from_slice(more.as_bytes());
            batch.push(b'\n');
        }
        let sent = tokio::time::timeout(WATCH_WRITE_TIMEOUT, write.write_all(&batch)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
}
