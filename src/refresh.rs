//! The mechanism shared by the refreshers ([`crate::allowlist`],
//! [`crate::beacons`]): a thread of its own with a current-thread tokio
//! runtime that loads at start, when a period is due, and on request, and
//! stops when the [`Refresher`] is dropped. What to load, how failures are
//! taken and when the next load is due are the [`Load`]'s.

use std::future::Future;
use std::thread::JoinHandle;
use std::time::Duration;

/// Why a load is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// The first one, before [`Refresher::start`] returns.
    Start,
    /// Asked for; its result is answered to whoever asked.
    Request,
    /// The period was due.
    Timer,
}

/// What a [`Refresher`] runs, and its policy.
pub(crate) trait Load: Send + 'static {
    type Error: Send + 'static;

    /// Loads and publishes; answers how many entries were loaded.
    fn load(&mut self, why: Why) -> impl Future<Output = Result<usize, Self::Error>>;

    /// Whether a failed first load fails the start (else the thread runs on).
    fn fails_start(&self, error: &Self::Error) -> bool;

    /// After a load that succeeded (`ok`) or not, how long until the next
    /// periodic one; `None`: only on request.
    fn next(&mut self, ok: bool) -> Option<Duration>;

    /// The thread or its runtime could not be made.
    fn start_error(error: std::io::Error) -> Self::Error;

    /// The thread ended before answering the first load.
    fn stopped() -> Self::Error;
}

/// Where a refresher answers a requested load.
pub(crate) type Reply<E> = flume::Sender<Result<usize, E>>;

/// A running refresher thread. Dropping it stops the thread (after the load
/// in progress, if any) and waits for it.
pub(crate) struct Refresher {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Refresher {
    /// Starts a thread named `name` running `load`, with loads requested on
    /// `requests`. The first load is done before this returns; if it fails
    /// and [`Load::fails_start`] says so, so does this, with its error.
    pub(crate) fn start<L: Load>(
        name: &str,
        load: L,
        requests: flume::Receiver<Reply<L::Error>>,
    ) -> Result<Self, L::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(L::start_error)?;
        let (stop_tx, stop) = flume::bounded::<()>(1);
        let (first_tx, first) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || runtime.block_on(run(load, first_tx, requests, stop)))
            .map_err(L::start_error)?;
        match first.recv() {
            Ok(Ok(())) => Ok(Self {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(L::stopped())
            }
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run<L: Load>(
    mut load: L,
    first: std::sync::mpsc::SyncSender<Result<(), L::Error>>,
    requests: flume::Receiver<Reply<L::Error>>,
    stop: flume::Receiver<()>,
) {
    let ok = match load.load(Why::Start).await {
        Ok(_) => true,
        Err(e) if load.fails_start(&e) => {
            let _ = first.send(Err(e));
            return;
        }
        Err(_) => false,
    };
    let _ = first.send(Ok(()));
    let next = |load: &mut L, ok: bool| {
        load.next(ok)
            .map(|after| tokio::time::Instant::now() + after)
    };
    let mut due = next(&mut load, ok);
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
                let result = load.load(Why::Request).await;
                let ok = result.is_ok();
                // The caller may have stopped waiting.
                let _ = reply.send(result);
                due = next(&mut load, ok);
            }
            _ = timer => {
                let ok = load.load(Why::Timer).await.is_ok();
                due = next(&mut load, ok);
            }
        }
    }
}
