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

use crate::config::{Config, ControlAddr};
use crate::server::ServerHandle;
use crate::sink::SinkStats;

mod answer;
pub mod client;
mod cmd;
mod prometheus;
mod shards;

/// The longest command line accepted; longer ones are answered with an error.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on control address {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("control runtime: {0}")]
    Runtime(std::io::Error),
}

/// What commands can see.
pub struct Context {
    pub server: ServerHandle,
    pub sink: Arc<SinkStats>,
    pub started: Instant,
    pub token: Option<String>,
    /// Geo service and beacon registry, for their commands.
    pub services: crate::server::Services,
    /// Live events, for `watch`.
    pub events: crate::events::Events,
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
        )
    }

    pub fn with_services(
        server: ServerHandle,
        sink: Arc<SinkStats>,
        token: Option<String>,
        services: crate::server::Services,
        events: crate::events::Events,
    ) -> Arc<Self> {
        Arc::new(Self {
            server,
            sink,
            started: Instant::now(),
            token: token.filter(|t| !t.is_empty()),
            services,
            events,
            windows: Mutex::new(Windows::default()),
        })
    }
}

/// A running control socket.
pub struct ControlServer {
    pub addr: ControlAddr,
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
        if let ControlAddr::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
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
    let (listener, bound) = match &addr {
        ControlAddr::Tcp(a) => {
            let l = std::net::TcpListener::bind(a).map_err(bind_err)?;
            let local = l.local_addr().map_err(bind_err)?;
            (Listener::Tcp(l), ControlAddr::Tcp(local))
        }
        ControlAddr::Unix(path) => {
            // A socket file left by a crashed run would make bind fail.
            if std::os::unix::net::UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
            let l = std::os::unix::net::UnixListener::bind(path).map_err(bind_err)?;
            (Listener::Unix(l), addr.clone())
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ControlError::Runtime)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || rt.block_on(serve(listener, ctx, stop_rx)))
        .map_err(ControlError::Runtime)?;
    tracing::info!(control = %bound, "control socket listening");
    Ok(ControlServer {
        addr: bound,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn serve(
    listener: Listener,
    ctx: Arc<Context>,
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
                        tokio::spawn(session(s, ctx.clone()));
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
                        tokio::spawn(session(s, ctx.clone()));
                    },
                }
            }
        }
    }
    rotate.abort();
}

/// One control client: lines in, answers out, until it disconnects.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(stream: S, ctx: Arc<Context>) {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut authed = ctx.token.is_none();
    let mut first = true;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if n > MAX_LINE {
            let _ = write.write_all(b"error: line too long\n\n").await;
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if first && text.starts_with("GET ") {
            // Prometheus scrape: drain the request headers, answer, close.
            // Bounded like command lines: at most 100 headers of MAX_LINE bytes.
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
                    Ok(_) => {}
                }
            }
            let response = if !authed {
                http(
                    403,
                    "text/plain",
                    "auth token required; use the line protocol with `auth TOKEN`\n",
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
        let answer = if let Some(token) = command.strip_prefix("auth ") {
            let answer = cmd::auth::run(ctx.token.as_deref(), token);
            authed |= answer.is_ok();
            answer
        } else if !authed {
            answer::err("auth required: send `auth TOKEN` first")
        } else if command == "quit" || command == "exit" {
            return;
        } else if command == "watch" || command.starts_with("watch ") {
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
