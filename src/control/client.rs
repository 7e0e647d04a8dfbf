//! `badge-ingest ctl`: send one command to the control socket and print the answer.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::config::ControlAddr;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the control socket at {addr}: {source} (is badge-ingest serve running?)"
    )]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
}

trait Stream: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> Stream for T {}

pub struct Client {
    reader: BufReader<Box<dyn Stream>>,
}

impl Client {
    pub fn connect(
        addr: &ControlAddr,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream: Box<dyn Stream> = match addr {
            ControlAddr::Tcp(a) => {
                let s = std::net::TcpStream::connect_timeout(a, Duration::from_secs(5))
                    .map_err(connect_err)?;
                s.set_read_timeout(Some(timeout))?;
                Box::new(s)
            }
            ControlAddr::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p).map_err(connect_err)?;
                s.set_read_timeout(Some(timeout))?;
                Box::new(s)
            }
        };
        let mut client = Self {
            reader: BufReader::new(stream),
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let (ok, answer) = client.command(&format!("auth {token}"))?;
            if !ok {
                return Err(ClientError::Refused(answer));
            }
        }
        Ok(client)
    }

    /// Sends one command; returns whether it succeeded and the answer's text.
    pub fn command(&mut self, line: &str) -> Result<(bool, String), ClientError> {
        let stream = self.reader.get_mut();
        stream.write_all(line.trim().as_bytes())?;
        stream.write_all(b"\n")?;
        stream.flush()?;
        let mut answer = String::new();
        loop {
            let mut l = String::new();
            if self.reader.read_line(&mut l)? == 0 || l == "\n" {
                break;
            }
            answer.push_str(&l);
        }
        let json_error = answer.starts_with('{') && answer.contains("\"ok\":false");
        Ok((!answer.starts_with("error:") && !json_error, answer))
    }

    /// Sends a streaming command (`watch`) and hands each line to `line`
    /// until the server ends the answer or closes. Returns whether the
    /// stream ended without an error answer.
    pub fn stream(
        &mut self,
        command: &str,
        mut line: impl FnMut(&str),
    ) -> Result<bool, ClientError> {
        let stream = self.reader.get_mut();
        stream.write_all(command.trim().as_bytes())?;
        stream.write_all(b"\n")?;
        stream.flush()?;
        let mut ok = true;
        loop {
            let mut l = String::new();
            if self.reader.read_line(&mut l)? == 0 || l == "\n" {
                return Ok(ok);
            }
            if l.starts_with("error:") {
                ok = false;
            }
            line(l.trim_end());
        }
    }
}
