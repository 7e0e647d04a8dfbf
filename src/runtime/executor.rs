//! Tasks, timers, and the loop that runs them and waits on the ring.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_task::{Runnable, Task};

use super::ring::Ring;
use super::Builder;

/// Tasks run between two looks at the ring: enough to batch the sends of
/// many connections into one submission, few enough that completions and
/// timers are not kept waiting behind a busy shard.
const BUDGET: usize = 256;

pub(crate) struct Executor {
    pub ring: Ring,
    local: RefCell<VecDeque<Runnable>>,
    remote: Arc<Remote>,
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_timer: Cell<u64>,
}

/// What other threads see of an executor: where they put the tasks they
/// wake, and how they wake it when it sleeps.
struct Remote {
    id: u64,
    queue: Mutex<Vec<Runnable>>,
    queued: AtomicUsize,
    sleeping: AtomicBool,
    /// An eventfd write is on its way: one is enough however many wake.
    notified: AtomicBool,
    /// The executor has ended: tasks woken now are forgotten, as their
    /// futures belong to a thread that is gone.
    closed: AtomicBool,
    eventfd: OwnedFd,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: Cell<*const Executor> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with this thread's executor. Panics off a runtime thread.
pub(crate) fn with<R>(f: impl FnOnce(&Executor) -> R) -> R {
    CURRENT.with(|c| {
        let p = c.get();
        assert!(!p.is_null(), "not on a runtime thread");
        // SAFETY: CURRENT is set only while `block_on` holds the executor
        // on this thread, and reset before it is dropped.
        f(unsafe { &*p })
    })
}

/// Like [`with`], but `None` once the executor is gone (values dropped
/// while a thread ends).
pub(crate) fn try_with<R>(f: impl FnOnce(&Executor) -> R) -> Option<R> {
    CURRENT.with(|c| {
        let p = c.get();
        // SAFETY: as in `with`.
        (!p.is_null()).then(|| f(unsafe { &*p }))
    })
}

/// Starts `future` on this thread's executor.
pub fn spawn_local<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let remote = with(|e| e.remote.clone());
    let schedule = move |runnable: Runnable| remote.schedule(runnable);
    let (runnable, task) = async_task::spawn_local(future, schedule);
    runnable.schedule();
    task
}

impl Remote {
    fn schedule(&self, runnable: Runnable) {
        if try_with(|e| e.remote.id == self.id).unwrap_or(false) {
            with(|e| e.local.borrow_mut().push_back(runnable));
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            std::mem::forget(runnable);
            return;
        }
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(runnable);
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && !self.notified.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: an 8-byte write from a live value to our eventfd.
            unsafe {
                libc::write(
                    self.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }
}

impl Executor {
    pub(crate) fn new(builder: &Builder) -> std::io::Result<Self> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is new and ours.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ring = Ring::new(
            builder.ring_entries,
            builder.buffers,
            builder.buffer_size,
            eventfd.as_raw_fd(),
        )?;
        Ok(Self {
            ring,
            local: RefCell::new(VecDeque::with_capacity(1024)),
            remote: Arc::new(Remote {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                queue: Mutex::new(Vec::new()),
                queued: AtomicUsize::new(0),
                sleeping: AtomicBool::new(false),
                notified: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                eventfd,
            }),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
        })
    }

    pub(crate) fn block_on<F>(self, future: F) -> F::Output
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        CURRENT.with(|c| c.set(&self as *const Executor));
        let main = spawn_local(future);
        loop {
            self.run_ready();
            if main.is_finished() {
                break;
            }
            self.turn();
        }
        // Everything left is dropped here, on its own thread.
        self.remote.closed.store(true, Ordering::Release);
        self.local.borrow_mut().clear();
        self.remote
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.timers.borrow_mut().clear();
        let out = poll_finished(main);
        self.ring.close();
        CURRENT.with(|c| c.set(std::ptr::null()));
        out
    }

    fn run_ready(&self) {
        for _ in 0..BUDGET {
            let next = self.local.borrow_mut().pop_front();
            match next {
                Some(r) => {
                    r.run();
                }
                None => {
                    if !self.take_remote() {
                        return;
                    }
                }
            }
        }
    }

    /// Moves what other threads woke to the local queue; false if nothing.
    fn take_remote(&self) -> bool {
        if self.remote.queued.load(Ordering::Acquire) == 0 {
            return false;
        }
        let woken =
            std::mem::take(&mut *self.remote.queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.remote.queued.fetch_sub(woken.len(), Ordering::AcqRel);
        let any = !woken.is_empty();
        self.local.borrow_mut().extend(woken);
        any
    }

    /// Submits what the tasks queued, waits if there is nothing to run,
    /// and wakes what completed or expired.
    fn turn(&self) {
        let busy =
            !self.local.borrow().is_empty() || self.remote.queued.load(Ordering::Acquire) > 0;
        if busy {
            self.ring.submit();
        } else {
            let timeout = self.next_timeout();
            self.remote.sleeping.store(true, Ordering::SeqCst);
            if self.remote.queued.load(Ordering::SeqCst) == 0 {
                self.ring.wait(timeout);
            }
            self.remote.sleeping.store(false, Ordering::Relaxed);
        }
        self.ring.reap();
        if self.ring.take_woken() {
            // The eventfd was read: the next wake-up needs a new write.
            self.remote.notified.store(false, Ordering::Release);
        }
        self.take_remote();
        self.fire_timers();
    }

    fn next_timeout(&self) -> Option<Duration> {
        let timers = self.timers.borrow();
        let (at, _) = timers.keys().next()?;
        Some(at.saturating_duration_since(Instant::now()))
    }

    fn fire_timers(&self) {
        let now = Instant::now();
        let due = {
            let mut timers = self.timers.borrow_mut();
            match timers.keys().next() {
                Some((at, _)) if *at <= now => {}
                _ => return,
            }
            let later = timers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *timers, later)
        };
        for (_, waker) in due {
            waker.wake();
        }
    }
}

fn poll_finished<T>(mut task: Task<T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut task).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the task is finished"),
    }
}

/// Waits until `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        at: Instant::now() + duration,
        key: None,
    }
}

/// The future of [`sleep`].
pub struct Sleep {
    at: Instant,
    key: Option<(Instant, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            if let Some(key) = self.key.take() {
                with(|e| e.timers.borrow_mut().remove(&key));
            }
            return Poll::Ready(());
        }
        let at = self.at;
        let key = *self.key.get_or_insert_with(|| {
            with(|e| {
                let id = e.next_timer.get();
                e.next_timer.set(id + 1);
                (at, id)
            })
        });
        with(|e| {
            let mut timers = e.timers.borrow_mut();
            match timers.get_mut(&key) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => *w = cx.waker().clone(),
                None => {
                    timers.insert(key, cx.waker().clone());
                }
            }
        });
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            try_with(|e| e.timers.borrow_mut().remove(&key));
        }
    }
}
