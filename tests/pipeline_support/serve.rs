//! `badge-ingest serve`, the real binary, as a child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The server process, killed if the test ends without it having exited.
pub struct Serve {
    pub child: Child,
    /// Its log lines (stderr), as they come.
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serve {
    pub fn start(args: &[&str], config: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_badge-ingest"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--shards", "2", "--log-json"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Nothing from the caller's environment may change the server under test.
        for (key, _) in std::env::vars() {
            if key.starts_with("BADGE_") && !key.starts_with("BADGE_TEST_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("badge-ingest serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            log,
            seen: Vec::new(),
        }
    }

    /// The `fields` of the first log line with this message, within `within`.
    pub fn wait_log(&mut self, message: &str, within: Duration) -> serde_json::Value {
        let fields = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|v| v["fields"]["message"] == message)
                .map(|v| v["fields"].clone())
        };
        if let Some(f) = self.seen.iter().find_map(|l| fields(l)) {
            return f;
        }
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let found = fields(&line);
                    self.seen.push(line);
                    if let Some(f) = found {
                        return f;
                    }
                }
                Err(_) => panic!(
                    "no {message:?} in the server's log within {within:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// The exit code, or a failure (with the log) after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= end {
                while let Ok(line) = self.log.try_recv() {
                    self.seen.push(line);
                }
                panic!(
                    "the server did not exit within {within:?} of the signal:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The listen address in a "listening for badges" log line.
pub fn listen_addr(fields: &serde_json::Value) -> std::net::SocketAddr {
    fields["listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {fields}"))
}

/// The control address in a "control socket listening" log line.
pub fn control_addr(fields: &serde_json::Value) -> std::net::SocketAddr {
    fields["control"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no control address in {fields}"))
}

/// A client of the control socket's line protocol.
pub struct Ctl {
    reader: BufReader<std::net::TcpStream>,
}

impl Ctl {
    pub fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = std::net::TcpStream::connect(addr).expect("the control socket answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// One whole answer (up to the empty line).
    pub fn ask(&mut self, command: &str) -> String {
        use std::io::Write;
        writeln!(self.reader.get_mut(), "{command}").unwrap();
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("an answer within 10 s");
            assert!(n > 0, "control socket closed");
            let line = line.trim_end();
            if line.is_empty() {
                return out.join("\n");
            }
            out.push(line.to_string());
        }
    }
}
