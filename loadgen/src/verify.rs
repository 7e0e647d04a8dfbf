//! `--verify-clickhouse`: did every frame of the run become the rows it should?
//!
//! For each table, the rows of this run's IMEIs and time window are counted
//! by distinct ingest key `(ingest_instance, ingest_shard, ingest_seq)` and
//! must be exactly what `src/record/build.rs` makes of the frames that were
//! sent: one row lost is a failure even when an at-least-once duplicate of
//! another row makes the plain row count come out right. Rows beyond one per
//! key are reported next to it as duplicate rows; delivery is at least
//! once, so they are not a failure.
//!
//! The window starts at [`start_of_window`], a whole second taken before
//! the first badge connects: every row of an earlier run over the same IMEIs
//! is stamped before it, so none is counted here. That needs the server to
//! stamp `server_time` with the same clock as this host (true on loopback)
//! and no other run over the same IMEIs at the same time.
//!
//! ClickHouse is spoken to over plain HTTP/1.1 (a few lines over a
//! TcpStream), which works with every server version from 18.16 on and
//! needs no client library.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use badge_ingest::protocol::number as n;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::Snapshot;
pub use crate::verification::{TableCheck, Verification};

/// ClickHouse inserts are batched and asynchronous: counts are polled until
/// they match or this passes.
pub const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_secs(1);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds what a misbehaving server can make us buffer.
const MAX_RESPONSE: usize = 1 << 20;

/// The table, the column that holds the server's time, an extra condition,
/// and the rows expected.
struct Expectation {
    table: &'static str,
    time_column: &'static str,
    filter: &'static str,
    rows: u64,
}

/// What the frames sent should have produced (see `src/record/build.rs`).
fn expectations(s: &Snapshot) -> Vec<Expectation> {
    let e = |table, rows| Expectation {
        table,
        time_column: "server_time",
        filter: "",
        rows,
    };
    vec![
        // A login row per login, and a logout/offline row when that connection ends.
        e("device_events", 2 * s.sent_of(&[n::LOGIN])),
        e("heartbeats", s.sent_of(&[n::HEARTBEAT, n::HEARTBEAT_EXT])),
        e(
            "locations",
            s.sent_of(&[
                n::GPS,
                n::GPS_4G,
                n::LBS_MULTI,
                n::LBS_MULTI_REPLY,
                n::LBS_4G,
                n::WIFI,
                n::WIFI_4G,
                n::LBS_ADDRESS_REQUEST,
                n::ADDRESS_QUERY,
                n::LBS_4G_ADDRESS_REQUEST,
            ]),
        ),
        e(
            "alarms",
            s.sent_of(&[
                n::ALARM_SINGLE_FENCE,
                n::ALARM_MULTI_FENCE,
                n::ALARM_LBS_4G,
                n::ALARM_WIFI,
            ]),
        ),
        e("attendance", s.sent_of(&[n::ATTENDANCE, n::ATTENDANCE_4G])),
        // One per punch, one per beacon of each 0xB3, one for an 0xB3 with none.
        e("bluetooth", s.counters.bluetooth_rows),
        e("device_info", s.sent_of(&[n::GENERAL_INFO])),
        // One 'replied' row per 0x81 (carrying the command's protocol when
        // the server matched it to its command); the server's own rows for
        // queued and sent commands are not ours to count.
        Expectation {
            table: "command_log",
            time_column: "event_time",
            filter: " AND status = 'replied'",
            rows: s.sent_of(&[n::ONLINE_COMMAND_REPLY]),
        },
    ]
}

/// `http://[user[:password]@]host[:port][/]`
struct Url {
    host: String,
    port: u16,
    auth: Option<String>,
}

fn parse_url(url: &str) -> anyhow::Result<Url> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') {
        bail!("{url}: give the server only (http://host:port); the database goes in --database");
    }
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(base64(a.as_bytes())), h),
        None => (None, rest),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .with_context(|| format!("{url}: unclosed ["))?;
        match after.strip_prefix(':') {
            Some(p) => (h, p),
            None if after.is_empty() => (h, "8123"),
            None => bail!("{url}: unexpected {after:?} after the address"),
        }
    } else {
        hostport.rsplit_once(':').unwrap_or((hostport, "8123"))
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("{url}: bad port {port}"))?;
    Ok(Url {
        host: host.to_string(),
        port,
        auth,
    })
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(v >> (18 - 6 * i) & 0x3F) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A minimal ClickHouse HTTP client: one POST per query, connection closed after.
struct Client {
    addr: SocketAddr,
    url: Url,
    database: String,
}

impl Client {
    async fn query(&self, sql: &str) -> anyhow::Result<String> {
        tokio::time::timeout(HTTP_TIMEOUT, self.query_inner(sql))
            .await
            .with_context(|| {
                format!(
                    "ClickHouse at {} did not answer within {HTTP_TIMEOUT:?}",
                    self.addr
                )
            })?
    }

    async fn query_inner(&self, sql: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to ClickHouse at {}", self.addr))?;
        let mut req = format!(
            "POST /?database={} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.database,
            self.url.host,
            self.url.port,
            sql.len()
        );
        if let Some(a) = &self.url.auth {
            let _ = write!(req, "Authorization: Basic {a}\r\n");
        }
        req.push_str("\r\n");
        req.push_str(sql);
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE {
                bail!("ClickHouse response over {MAX_RESPONSE} bytes");
            }
        }
        parse_response(&buf)
    }
}

/// Status, headers and body (plain or chunked) of an HTTP/1.1 response read to EOF.
fn parse_response(buf: &[u8]) -> anyhow::Result<String> {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("ClickHouse answered without a complete HTTP header")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let raw = &buf[head_end + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    let body = String::from_utf8_lossy(&body).into_owned();
    if code != 200 {
        bail!("ClickHouse answered {status}: {}", body.trim());
    }
    Ok(body)
}

fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Sleeps until the next whole second of this host's clock and returns it
/// (Unix seconds), for the start of the run's window. Rows are stamped in
/// whole seconds when their frame is read: anything an earlier run sent,
/// before this process even started, is stamped before the returned second,
/// and everything this run sends after it, at or after it.
pub fn start_of_window() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let next = Duration::from_secs(now.as_secs() + 1);
    std::thread::sleep(next.saturating_sub(now));
    next.as_secs() as i64
}

/// Polls ClickHouse until every table has exactly the expected distinct
/// ingest keys, one has more (waiting cannot fix that), or `deadline` passes.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    url: &str,
    database: &str,
    allow_remote: bool,
    imei_lo: u64,
    imei_hi: u64,
    since_unix: i64,
    snapshot: &Snapshot,
    deadline: Duration,
) -> Verification {
    let started = Instant::now();
    let exp = expectations(snapshot);
    let mut v = Verification {
        url: url.to_string(),
        database: database.to_string(),
        imei_lo,
        imei_hi,
        since_unix,
        tables: exp
            .iter()
            .map(|e| TableCheck {
                table: e.table,
                expected: e.rows,
                found: 0,
                duplicate_rows: 0,
            })
            .collect(),
        waited_s: 0.0,
        error: None,
        ok: false,
    };
    let client = match client(url, database, allow_remote).await {
        Ok(c) => c,
        Err(e) => {
            v.error = Some(format!("{e:#}"));
            return v;
        }
    };
    loop {
        let mut failed = None;
        for (e, t) in exp.iter().zip(v.tables.iter_mut()) {
            let sql = format!(
                "SELECT uniqExact(ingest_instance, ingest_shard, ingest_seq), count() FROM {} \
                 WHERE imei BETWEEN {imei_lo} AND {imei_hi} AND {} >= toDateTime({since_unix}){} \
                 FORMAT TabSeparated",
                e.table, e.time_column, e.filter
            );
            match client.query(&sql).await.and_then(|body| {
                let parsed = body.trim().split_once('\t').and_then(|(keys, rows)| {
                    Some((keys.parse::<u64>().ok()?, rows.parse::<u64>().ok()?))
                });
                parsed
                    .with_context(|| format!("counts of {} are not two numbers: {body:?}", e.table))
            }) {
                Ok((keys, rows)) => {
                    t.found = keys;
                    t.duplicate_rows = rows.saturating_sub(keys);
                }
                Err(err) => {
                    failed = Some(format!("{err:#}"));
                    break;
                }
            }
        }
        v.error = failed;
        let exact = v.error.is_none() && v.tables.iter().all(|t| t.found == t.expected);
        let too_many = v.tables.iter().any(|t| t.found > t.expected);
        if exact || too_many || started.elapsed() + POLL > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    v.waited_s = started.elapsed().as_secs_f64();
    v.ok = v.error.is_none() && v.tables.iter().all(|t| t.found == t.expected);
    v
}

async fn client(url: &str, database: &str, allow_remote: bool) -> anyhow::Result<Client> {
    let parsed = parse_url(url)?;
    let addr = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
        .await
        .with_context(|| format!("resolving {}", parsed.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", parsed.host))?;
    if !allow_remote && !addr.ip().is_loopback() {
        bail!("ClickHouse at {addr} is not on loopback; pass --allow-remote to use it");
    }
    Ok(Client {
        addr,
        url: parsed,
        database: database.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:18123/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.auth.is_none()),
            ("127.0.0.1", 18123, true)
        );
        let u = parse_url("http://default:pw@localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 8123));
        assert_eq!(u.auth.as_deref(), Some("ZGVmYXVsdDpwdw=="));
        let u = parse_url("http://[::1]:8123").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8123));
        assert!(parse_url("https://x").is_err());
        assert!(parse_url("http://x:1/?database=a").is_err());
    }

    #[test]
    fn responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n42\n";
        assert_eq!(parse_response(plain).unwrap(), "42\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n42\n\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), "42\n");
        let err = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno table!";
        assert!(parse_response(err)
            .unwrap_err()
            .to_string()
            .contains("no table!"));
    }

    #[test]
    fn expected_rows_follow_the_record_builder() {
        let mut s = Snapshot {
            sent: vec![0; 256],
            ..Snapshot::default()
        };
        s.sent[usize::from(n::LOGIN)] = 3;
        s.sent[usize::from(n::GPS)] = 10;
        s.sent[usize::from(n::ADDRESS_QUERY)] = 1;
        s.sent[usize::from(n::TIME_SYNC)] = 5;
        s.counters.bluetooth_rows = 7;
        let rows: Vec<(&str, u64)> = expectations(&s).iter().map(|e| (e.table, e.rows)).collect();
        assert!(rows.contains(&("device_events", 6)));
        assert!(rows.contains(&("locations", 11)));
        assert!(rows.contains(&("bluetooth", 7)));
        // Time syncs store nothing.
        assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), 6 + 11 + 7);
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot HTTP server that answers every query with a chunked count,
    /// the way ClickHouse 18.16 does, and hands back the request it saw.
    async fn fake_clickhouse(listener: TcpListener, answer: &'static str) -> String {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{answer}\r\n0\r\n\r\n",
            answer.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&req).into_owned()
    }

    #[tokio::test]
    async fn a_query_goes_out_as_a_post_and_its_chunked_answer_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(fake_clickhouse(listener, "1234\n"));
        let client = client(&format!("http://{addr}"), "badges", false)
            .await
            .unwrap();
        let body = client
            .query("SELECT count() FROM heartbeats FORMAT TabSeparated")
            .await
            .unwrap();
        assert_eq!(body, "1234\n");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /?database=badges HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("SELECT count() FROM heartbeats FORMAT TabSeparated"));
    }

    #[tokio::test]
    async fn a_remote_clickhouse_needs_allow_remote() {
        let e = client("http://192.0.2.1:8123", "badges", false)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("--allow-remote"), "{e}");
    }
}

/// `verify()` against the real ClickHouse of `scripts/test.sh`, on rows
/// written by hand: it must count ingest keys, not rows, and only this run's.
#[cfg(test)]
mod against_clickhouse {
    use super::*;

    const IMEI: u64 = 868_120_300_000_001;

    fn clickhouse_url() -> String {
        match std::env::var("BADGE_TEST_CLICKHOUSE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "BADGE_TEST_CLICKHOUSE_URL is not set: run the tests with scripts/test.sh \
                 (or set BADGE_TEST_SKIP_CLICKHOUSE=1 to have this test reported as ignored)"
            ),
        }
    }

    async fn fresh_database(url: &str) -> (Client, String) {
        let db = format!("t_verify_{}", std::process::id());
        let mut config = badge_ingest::config::Config::default();
        config.clickhouse.url = url.to_string();
        let admin = client(url, "default", false).await.unwrap();
        admin
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        badge_ingest::sink::clickhouse::apply_schema(&config, &db)
            .await
            .expect("schema applies");
        (client(url, &db, false).await.unwrap(), db)
    }

    /// One row of `table` at `time` with ingest key (`instance`, 0, `seq`).
    async fn row(c: &Client, table: &str, time: i64, instance: &str, seq: u64) {
        c.query(&format!(
            "INSERT INTO {table} (imei, server_time, ingest_instance, ingest_shard, ingest_seq) \
             VALUES ({IMEI}, {time}, '{instance}', 0, {seq})"
        ))
        .await
        .unwrap();
    }

    fn check<'a>(v: &'a Verification, table: &str) -> &'a TableCheck {
        v.tables.iter().find(|t| t.table == table).unwrap()
    }

    #[tokio::test]
    #[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
    async fn a_missing_row_fails_even_when_a_duplicate_makes_up_the_count() {
        let url = clickhouse_url();
        let (c, db) = fresh_database(&url).await;
        let since = 1_700_000_000;
        // One login (a login and a logout row) and three heartbeats sent.
        let mut snapshot = Snapshot {
            sent: vec![0; 256],
            ..Snapshot::default()
        };
        snapshot.sent[usize::from(n::LOGIN)] = 1;
        snapshot.sent[usize::from(n::HEARTBEAT)] = 3;
        let run = |deadline| verify(&url, &db, false, IMEI, IMEI, since, &snapshot, deadline);

        // An earlier run over the same IMEI, stamped before the window.
        row(&c, "device_events", since - 1, "old", 1).await;
        row(&c, "heartbeats", since - 1, "old", 2).await;
        // This run: both device events; heartbeat 4 lost, heartbeat 3 twice.
        row(&c, "device_events", since, "this", 1).await;
        row(&c, "device_events", since + 5, "this", 5).await;
        row(&c, "heartbeats", since + 1, "this", 2).await;
        row(&c, "heartbeats", since + 2, "this", 3).await;
        row(&c, "heartbeats", since + 2, "this", 3).await;

        let v = run(Duration::from_secs(2)).await;
        assert!(!v.ok, "{}", v.text());
        assert_eq!(v.error, None, "{}", v.text());
        let h = check(&v, "heartbeats");
        assert_eq!(
            (h.expected, h.found, h.duplicate_rows),
            (3, 2, 1),
            "{}",
            v.text()
        );
        let d = check(&v, "device_events");
        assert_eq!(
            (d.expected, d.found, d.duplicate_rows),
            (2, 2, 0),
            "{}",
            v.text()
        );
        assert!(v.text().contains("SHORT"), "{}", v.text());

        // The lost one arrives: exact, with the duplicate reported, not failed.
        row(&c, "heartbeats", since + 3, "this", 4).await;
        let v = run(Duration::from_secs(2)).await;
        assert!(v.ok, "{}", v.text());
        let h = check(&v, "heartbeats");
        assert_eq!((h.found, h.duplicate_rows), (3, 1), "{}", v.text());

        // A key too many fails too, at once: waiting cannot remove it.
        row(&c, "heartbeats", since + 4, "this", 6).await;
        let v = run(Duration::from_secs(30)).await;
        assert!(!v.ok, "{}", v.text());
        assert_eq!(check(&v, "heartbeats").found, 4, "{}", v.text());
        assert!(v.waited_s < 10.0, "{}", v.text());

        c.query(&format!("DROP DATABASE {db}")).await.unwrap();
    }
}
