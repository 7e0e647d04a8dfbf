//! Keeps the allowlist fresh: a thread of its own with a small runtime,
//! loading at start, every `limits.allowlist_refresh_secs`, and on request.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::logging::LogLimit;
use crate::protocol::Imei;

use super::{parse, Allowlist, AllowlistError, AllowlistSource, ImeiAllowlist, ReloadReply};

/// Bound on one load from ClickHouse: a server that accepts the connection
/// and never answers must not hold the refresher (or the start) forever.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Failed periodic reloads, at most one warning a minute (each is counted).
static FAILED_LOG: LogLimit = LogLimit::every(Duration::from_secs(60));

/// The current IMEIs of the table (and how many rows were not IMEIs).
///
/// Versions are picked with `argMax(..., updated_at) GROUP BY imei`, not
/// by trusting merges (as for `beacons`): until ReplacingMergeTree merges,
/// every version is there to read.
async fn load_table(
    client: &clickhouse::Client,
    database: &str,
) -> Result<(HashSet<u64>, usize), AllowlistError> {
    if database.is_empty()
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(AllowlistError::BadDatabase(database.to_string()));
    }
    let sql = format!(
        "SELECT imei FROM (SELECT imei, argMax(enabled, updated_at) AS enabled_now \
         FROM {database}.devices GROUP BY imei) WHERE enabled_now = 1"
    );
    let query = client.query(&sql).fetch_all::<String>();
    let rows = tokio::time::timeout(LOAD_TIMEOUT, query)
        .await
        .map_err(|_| AllowlistError::Timeout {
            database: database.to_string(),
            timeout: LOAD_TIMEOUT,
        })?
        .map_err(|error| AllowlistError::ClickHouse {
            database: database.to_string(),
            error,
        })?;
    let mut imeis = HashSet::with_capacity(rows.len());
    let mut skipped = 0;
    for row in &rows {
        match row.trim().parse::<Imei>() {
            Ok(imei) => {
                imeis.insert(imei.as_u64());
            }
            // No badge can log in with it: leaving it out loses nothing,
            // and one bad row must not freeze the list for everyone else.
            Err(e) => {
                if skipped == 0 {
                    tracing::warn!(database, imei = %row.escape_debug(), error = %e,
                        "allowlist: a row of the devices table is not an IMEI; left out");
                }
                skipped += 1;
            }
        }
    }
    Ok((imeis, skipped))
}

impl AllowlistSource {
    async fn fetch(&self) -> Result<(HashSet<u64>, usize), AllowlistError> {
        match self {
            // The refresher has its thread to itself: reading here blocks
            // nothing else.
            AllowlistSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| AllowlistError::Read {
                    path: path.clone(),
                    error,
                })?;
                let imeis = parse(&text).map_err(|lines| AllowlistError::BadLines {
                    path: path.clone(),
                    lines,
                })?;
                Ok((imeis, 0))
            }
            AllowlistSource::ClickHouse { client, database } => load_table(client, database).await,
        }
    }
}

impl Allowlist {
    /// Loads and publishes; on failure the list is left as it was.
    async fn refresh(&self) -> Result<usize, AllowlistError> {
        let Some(source) = &self.shared.source else {
            return Err(AllowlistError::NoSource);
        };
        match source.fetch().await {
            Ok((imeis, skipped)) => {
                let n = imeis.len();
                self.publish(imeis, skipped);
                if n == 0 {
                    tracing::warn!(%source, "the allowlist is empty: no badge may log in");
                } else {
                    tracing::info!(%source, imeis = n, skipped, "allowlist loaded");
                }
                Ok(n)
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }
}

/// Keeps an [`Allowlist`] fresh from its [`AllowlistSource`]. Dropping it
/// stops the thread (after the load in progress, if any); the list keeps
/// its last set, and `reload` then answers [`AllowlistError::Stopped`].
pub struct AllowlistRefresher {
    allowlist: Allowlist,
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AllowlistRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowlistRefresher")
            .field("allowlist", &self.allowlist)
            .finish_non_exhaustive()
    }
}

impl AllowlistRefresher {
    /// The allowlist `config.limits.allowlist` names, loaded, and its
    /// refresher started; `Ok(None)` when none is configured (every IMEI
    /// may log in). The first load is done before this returns, and if it
    /// fails (file missing, a bad line, ClickHouse down or without the
    /// table, no answer within 10 s) so does this, with the reason.
    pub fn start(config: &Config) -> Result<Option<Self>, AllowlistError> {
        match AllowlistSource::from_config(config) {
            None => Ok(None),
            Some(source) => Self::start_with(
                source,
                Duration::from_secs(config.limits.allowlist_refresh_secs),
            )
            .map(Some),
        }
    }

    /// [`Self::start`] for a given source; `refresh` zero: no periodic
    /// reloads, only requested ones.
    pub fn start_with(source: AllowlistSource, refresh: Duration) -> Result<Self, AllowlistError> {
        let (requests_tx, requests) = flume::unbounded::<ReloadReply>();
        let allowlist = Allowlist::new(Some(source), Some(requests_tx));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AllowlistError::Start)?;
        let (stop_tx, stop) = flume::bounded::<()>(1);
        let (first_tx, first) = std::sync::mpsc::sync_channel(1);
        let list = allowlist.clone();
        let thread = std::thread::Builder::new()
            .name("allowlist".into())
            .spawn(move || runtime.block_on(run(list, refresh, first_tx, requests, stop)))
            .map_err(AllowlistError::Start)?;
        match first.recv() {
            Ok(Ok(())) => Ok(Self {
                allowlist,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(AllowlistError::Stopped)
            }
        }
    }

    /// The list (for the control socket; cheap to clone).
    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    /// What the shards ask at every login.
    pub fn shared(&self) -> Arc<dyn ImeiAllowlist> {
        self.allowlist.shared()
    }
}

impl Drop for AllowlistRefresher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(
    list: Allowlist,
    refresh: Duration,
    first: std::sync::mpsc::SyncSender<Result<(), AllowlistError>>,
    requests: flume::Receiver<ReloadReply>,
    stop: flume::Receiver<()>,
) {
    if let Err(e) = list.refresh().await {
        let _ = first.send(Err(e));
        return;
    }
    let _ = first.send(Ok(()));
    let next = || (!refresh.is_zero()).then(|| tokio::time::Instant::now() + refresh);
    let mut due = next();
    loop {
        let timer = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.recv_async() => return,
            request = requests.recv_async() => {
                let Ok(reply) = request else { return };
                let result = list.refresh().await;
                if let Err(e) = &result {
                    tracing::warn!(error = %e, kept = list.len(),
                        "allowlist reload failed; keeping the previous one");
                }
                // The caller may have stopped waiting.
                let _ = reply.send(result);
                due = next();
            }
            _ = timer => {
                if let Err(e) = list.refresh().await {
                    if let Some(held_back) = FAILED_LOG.check() {
                        tracing::warn!(error = %e, kept = list.len(), held_back,
                            "allowlist reload failed; keeping the previous one");
                    }
                }
                due = next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn imei(n: u64) -> Imei {
        Imei::with_check_digit(86_120_000_000_000 + n).unwrap()
    }

    #[test]
    fn a_file_loads_reloads_and_keeps_its_set_when_a_reload_fails() {
        let dir = std::env::temp_dir().join(format!("badge-allowlist-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("allowed.txt");
        std::fs::write(&path, format!("{}\n{}\n", imei(1), imei(2))).unwrap();
        let r = AllowlistRefresher::start_with(AllowlistSource::File(path.clone()), Duration::ZERO)
            .unwrap();
        let list = r.allowlist().clone();
        assert_eq!(list.len(), 2);
        assert!(list.contains(imei(1)) && !list.contains(imei(3)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();

        std::fs::write(&path, format!("{}\n", imei(3))).unwrap();
        assert_eq!(rt.block_on(list.reload()).unwrap(), 1);
        assert!(list.contains(imei(3)) && !list.contains(imei(1)));

        std::fs::write(&path, format!("{}\nnope\n", imei(4))).unwrap();
        let e = rt.block_on(list.reload()).unwrap_err().to_string();
        assert!(
            e.contains("line 2: `nope`") && e.contains("allowed.txt"),
            "{e}"
        );
        assert!(list.contains(imei(3)) && !list.contains(imei(4)), "kept");
        assert_eq!(list.last_error().as_deref(), Some(e.as_str()));
        let c = list.counters();
        assert_eq!(c.loads.load(Ordering::Relaxed), 2);
        assert_eq!(c.load_failures.load(Ordering::Relaxed), 1);

        drop(r);
        assert!(matches!(
            rt.block_on(list.reload()),
            Err(AllowlistError::Stopped)
        ));
        assert!(
            list.contains(imei(3)),
            "the last set outlives the refresher"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_first_load_fails_the_start() {
        let missing = std::env::temp_dir().join("badge-allowlist-no-such-file.txt");
        let e = AllowlistRefresher::start_with(AllowlistSource::File(missing), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("allowlist file ") && e.contains("badge-allowlist-no-such-file.txt"),
            "{e}"
        );
    }
}
