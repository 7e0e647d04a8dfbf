//! A tiny HTTP/1.1 server on 127.0.0.1 that stands in for geo providers
//! and webhook receivers: one thread per connection, `Connection: close`,
//! every request recorded, answers chosen by a handler.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered; 0 while the handler has not answered yet.
    pub status: u16,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter (the values used here need no percent-decoding).
    pub fn query(&self, key: &str) -> Option<String> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The events of a webhook POST (`{"events":[...]}`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).expect("a JSON body");
        v["events"].as_array().expect("an events array").clone()
    }
}

pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

pub fn answer(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        body: body.into(),
        delay: Duration::ZERO,
    }
}

pub type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

pub struct FakeServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (seen, handler) = (seen.clone(), handler.clone());
                    std::thread::spawn(move || serve_one(stream, &seen, &*handler));
                }
            }
        });
        Self { addr, seen, stop }
    }

    /// Answers the `n`th request (from 0) with `status(n)` and `{}`: a
    /// webhook receiver that fails the first tries.
    pub fn answering_in_turn(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Self {
        let count = std::sync::atomic::AtomicUsize::new(0);
        Self::start(move |_| answer(status(count.fetch_add(1, Ordering::SeqCst)), "{}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_one(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let request = Seen {
        method,
        target,
        headers,
        body,
        status: 0,
    };
    // Recorded before answering, so a request the client gave up on counts.
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    let a = handler(&request);
    seen.lock().unwrap()[index].status = a.status;
    std::thread::sleep(a.delay);
    let response = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        a.status,
        a.body.len(),
        a.body
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A handler's way to hold its answer until the test opens the gate:
/// "the provider has not answered yet" by construction, not by a delay
/// that a loaded machine may outlast.
#[derive(Clone, Default)]
pub struct Gate(Arc<GateInner>);

#[derive(Default)]
pub struct GateInner {
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks until [`Gate::open`] (or at most a minute, a backstop for a
    /// test that failed before opening it).
    pub fn wait(&self) {
        let open = self.0.open.lock().unwrap();
        let _ = self
            .0
            .opened
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open)
            .unwrap();
    }

    pub fn open(&self) {
        *self.0.open.lock().unwrap() = true;
        self.0.opened.notify_all();
    }
}
