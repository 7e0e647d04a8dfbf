//! The control socket: a line protocol in the spirit of HAProxy's runtime
//! API, for operators and other systems. One command per line, one answer
//! per command, each answer ended by an empty line. Plain text for people,
//! or one JSON line when the command is prefixed with `json`. A plain HTTP
//! `GET /metrics` on the same socket answers in Prometheus text format.
//!
//! It runs on its own thread (a small tokio runtime) and reaches the shards
//! over their channels, so a slow control client never touches ingestion.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::allowlist::Allowlist;
use crate::config::{Config, ControlAddr};
use crate::server::ServerHandle;
use crate::sink::SinkStats;

mod answer;
pub mod client;
mod cmd;
pub(crate) mod figures;
pub mod fleet;
mod guard;
mod prometheus;
mod shards;
mod unix;

pub use guard::{ControlStats, CONTROL_FIGURES};
use guard::{Limits, Slot, Token};

/// The longest command line accepted; longer ones are answered with an error.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on control address {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The Unix socket path is taken by something that is not a stale
    /// socket, or the socket could not be made safely there.
    #[error("control socket {}: {reason}", path.display())]
    SocketPath {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("control runtime: {0}")]
    Runtime(std::io::Error),
}

/// What commands can see.
pub struct Context {
    pub server: ServerHandle,
    pub sink: Arc<SinkStats>,
    pub started: Instant,
    /// The token's digest, when one is set.
    token: Option<Token>,
    /// Geo service and beacon registry, for their commands.
    pub services: crate::server::Services,
    /// Live events, for `watch`.
    pub events: crate::events::Events,
    /// Which IMEIs may log in, for `allowlist`; `None`: all may.
    pub allowlist: Option<Allowlist>,
    /// The control socket's own counters.
    pub control_stats: ControlStats,
    /// Refused connections still being told so.
    refusing: std::sync::atomic::AtomicU64,
    /// Snapshots for the "last interval" latency figures, rotated every 10 s.
    windows: Mutex<Windows>,
}

/// The latencies kept: reply, insert, e2e, log commit.
pub const LATENCIES: usize = 4;

#[derive(Default)]
struct Windows {
    older: Option<(Instant, [Histogram<u64>; LATENCIES])>,
    newer: Option<(Instant, [Histogram<u64>; LATENCIES])>,
}

impl Context {
    pub fn new(server: ServerHandle, sink: Arc<SinkStats>, token: Option<String>) -> Arc<Self> {
        Self::with_services(
            server,
            sink,
            token,
            Default::default(),
            crate::events::Events::disabled(),
            None,
        )
    }

    pub fn with_services(
        server: ServerHandle,
        sink: Arc<SinkStats>,
        token: Option<String>,
        services: crate::server::Services,
        events: crate::events::Events,
        allowlist: Option<Allowlist>,
    ) -> Arc<Self> {
        Arc::new(Self {
            server,
            sink,
            started: Instant::now(),
            token: token.filter(|t| !t.is_empty()).map(|t| Token::new(&t)),
            services,
            events,
            allowlist,
            control_stats: ControlStats::default(),
            refusing: Default::default(),
            windows: Mutex::new(Windows::default()),
        })
    }
}

/// A running control socket.
pub struct ControlServer {
    pub addr: ControlAddr,
    /// The Unix socket file as made, so that only it is removed at the end.
    made: Option<unix::Identity>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let (ControlAddr::Unix(path), Some(made)) = (&self.addr, self.made) {
            unix::remove(path, made);
        }
    }
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Refuses, before anything else starts, a control address that [`start`]
/// would refuse for what is at its path (a Unix socket path taken by a
/// regular file, a directory, a live socket, ...). Touches nothing.
pub fn preflight(config: &Config) -> Result<(), ControlError> {
    match config.control_addr() {
        Ok(ControlAddr::Unix(path)) => unix::check(&path),
        _ => Ok(()),
    }
}

/// Binds the control socket (so that errors come back at once) and serves it.
pub fn start(config: &Config, ctx: Arc<Context>) -> Result<ControlServer, ControlError> {
    let addr = config.control_addr().map_err(|e| ControlError::Bind {
        addr: config.server.control.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    let bind_err = |source| ControlError::Bind {
        addr: addr.to_string(),
        source,
    };
    let limits = Limits::new(&config.control);
    let (listener, bound, made) = match &addr {
        ControlAddr::Tcp(a) => {
            let l = std::net::TcpListener::bind(a).map_err(bind_err)?;
            let local = l.local_addr().map_err(bind_err)?;
            (Listener::Tcp(l), ControlAddr::Tcp(local), None)
        }
        ControlAddr::Unix(path) => {
            let mode = config
                .control
                .mode()
                .map_err(|reason| ControlError::SocketPath {
                    path: path.clone(),
                    reason: format!("control.socket_mode: {reason}"),
                })?;
            let (l, made) = unix::bind(path, mode)?;
            (Listener::Unix(l), addr.clone(), Some(made))
        }
    };
    // From here on a failure must not leave our socket file behind.
    let cleanup = |e: std::io::Error| {
        if let (ControlAddr::Unix(path), Some(made)) = (&addr, made) {
            unix::remove(path, made);
        }
        ControlError::Runtime(e)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(cleanup)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || rt.block_on(serve(listener, ctx, limits, stop_rx)))
        .map_err(cleanup)?;
    tracing::info!(control = %bound, max_connections = limits.max_connections, "control socket listening");
    Ok(ControlServer {
        addr: bound,
        made,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn serve(
    listener: Listener,
    ctx: Arc<Context>,
    limits: Limits,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let rotate = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let current = shards::histograms(&ctx).await;
                let mut w = ctx.windows.lock().unwrap_or_else(|p| p.into_inner());
                w.older = w.newer.take();
                w.newer = Some((Instant::now(), current));
            }
        }
    });
    match listener {
        Listener::Tcp(l) => {
            let _ = l.set_nonblocking(true);
            let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    accepted = l.accept() => if let Ok((s, _)) = accepted {
                        admit(s, &ctx, limits);
                    },
                }
            }
        }
        Listener::Unix(l) => {
            let _ = l.set_nonblocking(true);
            let Ok(l) = tokio::net::UnixListener::from_std(l) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    accepted = l.accept() => if let Ok((s, _)) = accepted {
                        admit(s, &ctx, limits);
                    },
                }
            }
        }
    }
    rotate.abort();
}

/// Refused connections being told so at once; beyond this many they are
/// dropped without a word, so that a flood costs no more than the cap.
const MAX_REFUSING: u64 = 64;

/// Starts a session for a new connection, or refuses it when
/// `control.max_connections` are open: one line, then close.
fn admit<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    ctx: &Arc<Context>,
    limits: Limits,
) {
    let stats = &ctx.control_stats;
    ControlStats::add(&stats.accepted);
    if let Some(slot) = Slot::take(ctx, limits.max_connections) {
        tokio::spawn(session(stream, ctx.clone(), limits, slot));
        return;
    }
    ControlStats::add(&stats.refused);
    if let Some(held_back) = guard::REFUSED_LOG.check() {
        tracing::warn!(
            max_connections = limits.max_connections,
            held_back,
            "control connection refused: too many control connections"
        );
    }
    use std::sync::atomic::Ordering::Relaxed;
    if ctx.refusing.fetch_add(1, Relaxed) >= MAX_REFUSING {
        ctx.refusing.fetch_sub(1, Relaxed);
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let (mut read, mut write) = tokio::io::split(stream);
        farewell(&mut write, "error: too many control connections\n\n").await;
        // Take what the client sent before it saw the refusal, briefly:
        // closing with unread bytes would reset the connection, and the
        // client could lose the line before reading it.
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
            let mut sink = [0u8; 4096];
            let mut total = 0;
            while total < MAX_LINE {
                match read.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        ctx.refusing.fetch_sub(1, Relaxed);
    });
}

/// Why a session was closed by the server rather than by its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Idle,
    AuthTimeout,
}

/// How long the server's own last words to a client may take to go out.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells the client why it is being closed, if it is still listening.
async fn farewell<W: AsyncWrite + Unpin>(write: &mut W, text: &str) {
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        write.write_all(text.as_bytes()).await?;
        write.shutdown().await
    })
    .await;
}

/// One control client: lines in, answers out, until it disconnects, falls
/// silent for `control.idle_timeout_secs`, or (with a token) has not
/// authenticated within `control.auth_timeout_secs`.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    ctx: Arc<Context>,
    limits: Limits,
    _slot: Slot,
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut authed = ctx.token.is_none();
    // The auth timeout counts the client's time only: the delays imposed on
    // wrong tokens push it back by as much.
    let mut auth_deadline = tokio::time::Instant::now() + limits.auth;
    let mut wrong_tokens = 0u32;
    let mut first = true;
    let mut line = Vec::new();
    loop {
        line.clear();
        let idle_deadline = tokio::time::Instant::now() + limits.idle;
        let (deadline, why) = if !authed && auth_deadline < idle_deadline {
            (auth_deadline, Closed::AuthTimeout)
        } else {
            (idle_deadline, Closed::Idle)
        };
        let read = tokio::time::timeout_at(
            deadline,
            (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await;
        let n = match read {
            Err(_) => {
                close_for(&ctx, why, &mut write).await;
                return;
            }
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        if n > MAX_LINE {
            let _ = write.write_all(b"error: line too long\n\n").await;
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if first && text.starts_with("GET ") {
            // Prometheus scrape: drain the request headers, answer, close.
            // Bounded like command lines: at most 100 headers of MAX_LINE
            // bytes, all within the idle timeout. With a token set, the
            // scrape gives it as `Authorization: Bearer TOKEN`.
            let mut bearer = None;
            let drained = tokio::time::timeout(limits.idle, async {
                let mut header = Vec::new();
                for _ in 0..100 {
                    header.clear();
                    match (&mut reader)
                        .take(MAX_LINE as u64)
                        .read_until(b'\n', &mut header)
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header.trim_ascii().is_empty() => break,
                        Ok(_) => {
                            if let Some(token) = bearer_token(&header) {
                                bearer = Some(token);
                            }
                        }
                    }
                }
            })
            .await;
            if drained.is_err() {
                ControlStats::add(&ctx.control_stats.idle_closes);
                return;
            }
            if let (Some(given), Some(token)) = (&bearer, ctx.token.as_ref()) {
                if token.matches(given) {
                    authed = true;
                } else {
                    ControlStats::add(&ctx.control_stats.wrong_tokens);
                }
            }
            let response = if !authed {
                http(
                    403,
                    "text/plain",
                    "auth token required: send `Authorization: Bearer TOKEN`\n",
                )
            } else if text.starts_with("GET /metrics") {
                http(
                    200,
                    "text/plain; version=0.0.4",
                    &prometheus::render(&ctx).await,
                )
            } else {
                http(404, "text/plain", "only /metrics is served here\n")
            };
            let _ = write.write_all(response.as_bytes()).await;
            let _ = write.shutdown().await;
            return;
        }
        first = false;
        if text.is_empty() {
            continue;
        }
        let (json, command) = match text.strip_prefix("json ") {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let answer = if let Some(given) = command.strip_prefix("auth ") {
            let answer = cmd::auth::run(ctx.token.as_ref(), given);
            if answer.is_ok() {
                authed = true;
            } else {
                wrong_tokens += 1;
                let stats = &ctx.control_stats;
                ControlStats::add(&stats.wrong_tokens);
                if let Some(held_back) = guard::WRONG_TOKEN_LOG.check() {
                    tracing::warn!(
                        attempt = wrong_tokens,
                        held_back,
                        total = stats
                            .wrong_tokens
                            .load(std::sync::atomic::Ordering::Relaxed),
                        "wrong control token"
                    );
                }
                let delay = guard::backoff(wrong_tokens);
                tokio::time::sleep(delay).await;
                auth_deadline += delay;
                if wrong_tokens >= guard::MAX_WRONG_TOKENS {
                    ControlStats::add(&stats.wrong_token_closes);
                    let last = answer::err(format!(
                        "bad token; {wrong_tokens} wrong tokens, closing the connection"
                    ));
                    farewell(&mut write, &answer::render(&last, json)).await;
                    return;
                }
            }
            answer
        } else if !authed {
            answer::err("auth required: send `auth TOKEN` first")
        } else if command == "quit" || command == "exit" {
            return;
        } else if command == "watch" || command.starts_with("watch ") {
            // Exempt from the idle timeout while it streams: it ends when
            // the client goes, and the session with it.
            let args: Vec<&str> = command.split_whitespace().skip(1).collect();
            match cmd::watch::kinds(&args).and_then(|k| cmd::watch::admit(&ctx).map(|()| k)) {
                Ok(kinds) => {
                    cmd::watch::stream(&ctx, &kinds, &mut reader, &mut write).await;
                    return;
                }
                Err(e) => Err(e),
            }
        } else {
            cmd::execute(&ctx, command).await
        };
        if write
            .write_all(answer::render(&answer, json).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Counts and explains a close for silence or for not authenticating.
async fn close_for<W: AsyncWrite + Unpin>(ctx: &Context, why: Closed, write: &mut W) {
    let stats = &ctx.control_stats;
    let text = match why {
        Closed::Idle => {
            ControlStats::add(&stats.idle_closes);
            "error: idle timeout (control.idle_timeout_secs), closing the connection\n\n"
        }
        Closed::AuthTimeout => {
            ControlStats::add(&stats.auth_timeouts);
            if let Some(held_back) = guard::AUTH_TIMEOUT_LOG.check() {
                tracing::warn!(
                    held_back,
                    "control connection closed: no valid `auth` in time"
                );
            }
            "error: auth timeout (control.auth_timeout_secs), closing the connection\n\n"
        }
    };
    farewell(write, text).await;
}

/// The token of an `Authorization: Bearer TOKEN` header line.
fn bearer_token(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.trim();
    let (name, value) = line.split_once(':')?;
    if !name.trim().eq_ignore_ascii_case("authorization") {
        return None;
    }
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn http(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        _ => "Not Found",
    };
    format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
