//! Keeps the allowlist fresh: a thread of its own with a small runtime,
//! loading at start, every `limits.allowlist_refresh_secs`, and on request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::logging::LogLimit;
use crate::protocol::Imei;
use crate::refresh::{Load, Refresher, Why};

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
    // Dropped first: it stops the thread while the list still lives.
    _thread: Refresher,
    allowlist: Allowlist,
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
        let load = AllowlistLoad {
            list: allowlist.clone(),
            refresh,
        };
        let thread = Refresher::start("allowlist", load, requests)?;
        Ok(Self {
            allowlist,
            _thread: thread,
        })
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

/// The allowlist's policy: a failed first load fails the start, and the
/// period is the same whether the last load worked or not.
struct AllowlistLoad {
    list: Allowlist,
    refresh: Duration,
}

impl Load for AllowlistLoad {
    type Error = AllowlistError;

    async fn load(&mut self, why: Why) -> Result<usize, AllowlistError> {
        let list = &self.list;
        let result = list.refresh().await;
        if let Err(e) = &result {
            match why {
                Why::Start => {}
                Why::Request => tracing::warn!(error = %e, kept = list.len(),
                    "allowlist reload failed; keeping the previous one"),
                Why::Timer => {
                    if let Some(held_back) = FAILED_LOG.check() {
                        tracing::warn!(error = %e, kept = list.len(), held_back,
                            "allowlist reload failed; keeping the previous one");
                    }
                }
            }
        }
        result
    }

    fn fails_start(&self, _: &AllowlistError) -> bool {
        true
    }

    fn next(&mut self, _ok: bool) -> Option<Duration> {
        (!self.refresh.is_zero()).then_some(self.refresh)
    }

    fn start_error(error: std::io::Error) -> AllowlistError {
        AllowlistError::Start(error)
    }

    fn stopped() -> AllowlistError {
        AllowlistError::Stopped
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
