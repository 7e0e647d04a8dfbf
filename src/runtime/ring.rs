//! The io_uring ring of one runtime thread: operations as futures, and the
//! receive buffers the kernel picks from.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// user_data of the eventfd read that wakes a sleeping executor.
const WAKE: u64 = u64::MAX;
/// user_data of cancellations, whose completions say nothing we need.
const CANCEL: u64 = u64::MAX - 1;
/// Ring errors are not expected; if one repeats, once a second is enough.
static RING_LOG: crate::logging::LogLimit = crate::logging::LogLimit::per_second();
/// How long a wait that counts the sends just submitted may last.
const SEND_WAIT: Duration = Duration::from_millis(1);
/// The buffer group of the receive buffers.
pub(crate) const BUFFER_GROUP: u16 = 0;

/// Resources an operation uses until it completes (buffers, addresses):
/// kept here, not in the future, because a future may be dropped while
/// the kernel still writes to them.
pub(crate) type Owned = Box<dyn Any>;

enum Slot {
    Free,
    Waiting(Option<Waker>, Option<Owned>),
    Done(i32, u32, Option<Owned>),
    /// Its future was dropped: freed when the completion comes.
    Orphan(Option<Owned>),
}

pub(crate) struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    pub bufs: Buffers,
    wake_fd: RawFd,
    wake_buf: Box<Cell<u64>>,
    /// Sends queued since the last submission. A send to a socket with room
    /// completes while it is submitted, so a wait that counts them returns
    /// with the next event instead of at once (one `io_uring_enter` per
    /// frame instead of two).
    sends: Cell<u32>,
    woken: Cell<bool>,
}

impl Ring {
    pub fn new(
        entries: u32,
        buffers: u16,
        buffer_size: usize,
        wake_fd: RawFd,
    ) -> std::io::Result<Self> {
        // COOP_TASKRUN: completions are run when we enter the kernel anyway,
        // instead of interrupting the thread (the one setup flag that
        // counted in the measurements of ../shared/research).
        let uring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)?;
        let bufs = Buffers::new(&uring, buffers, buffer_size)?;
        let ring = Self {
            uring: RefCell::new(uring),
            slots: RefCell::new(Vec::with_capacity(1024)),
            free: RefCell::new(Vec::new()),
            bufs,
            wake_fd,
            wake_buf: Box::new(Cell::new(0)),
            sends: Cell::new(0),
            woken: Cell::new(false),
        };
        ring.arm_wake();
        Ok(ring)
    }

    fn arm_wake(&self) {
        let sqe = opcode::Read::new(types::Fd(self.wake_fd), self.wake_buf.as_ptr().cast(), 8)
            .build()
            .user_data(WAKE);
        self.push(sqe);
    }

    fn push(&self, sqe: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points to is kept alive by its
            // slot (or by the ring itself) until its completion is reaped.
            if unsafe { self.uring.borrow_mut().submission().push(&sqe) }.is_ok() {
                return;
            }
            // The queue is full: hand it to the kernel now. A kernel that
            // holds completions we have not taken refuses (EBUSY) until we
            // take them.
            if !self.submit_queued() {
                self.reap();
            }
        }
    }

    /// Submits what is queued; false if the kernel first wants the
    /// completions taken (EBUSY).
    fn submit_queued(&self) -> bool {
        match self.uring.borrow_mut().submit() {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => false,
            Err(e) => {
                if let Some(suppressed) = RING_LOG.check() {
                    tracing::error!(error = %e, suppressed, "io_uring submit failed");
                }
                true
            }
        }
    }

    /// Queues `sqe` (submitted with the next wait), keeping `owned` alive
    /// until it completes.
    pub fn start(&self, sqe: squeue::Entry, owned: Option<Owned>) -> Op {
        let id = {
            let mut slots = self.slots.borrow_mut();
            match self.free.borrow_mut().pop() {
                Some(id) => {
                    slots[id] = Slot::Waiting(None, owned);
                    id
                }
                None => {
                    slots.push(Slot::Waiting(None, owned));
                    slots.len() - 1
                }
            }
        };
        self.push(sqe.user_data(id as u64));
        Op { id: Some(id) }
    }

    fn poll_op(&self, id: usize, cx: &Context<'_>) -> Poll<(i32, u32, Option<Owned>)> {
        let mut slots = self.slots.borrow_mut();
        match &mut slots[id] {
            Slot::Waiting(w, _) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Slot::Done(..) => {
                let Slot::Done(res, flags, owned) = std::mem::replace(&mut slots[id], Slot::Free)
                else {
                    unreachable!()
                };
                self.free.borrow_mut().push(id);
                Poll::Ready((res, flags, owned))
            }
            Slot::Free | Slot::Orphan(_) => unreachable!("polled an operation that is gone"),
        }
    }

    fn drop_op(&self, id: usize) {
        let done = {
            let mut slots = self.slots.borrow_mut();
            match std::mem::replace(&mut slots[id], Slot::Free) {
                Slot::Waiting(_, owned) => {
                    slots[id] = Slot::Orphan(owned);
                    false
                }
                Slot::Done(_, flags, owned) => {
                    self.release(flags, owned);
                    true
                }
                other => {
                    slots[id] = other;
                    false
                }
            }
        };
        if done {
            self.free.borrow_mut().push(id);
        } else {
            // Not done yet: ask the kernel to end it early.
            self.push(
                opcode::AsyncCancel::new(id as u64)
                    .build()
                    .user_data(CANCEL),
            );
        }
    }

    /// Like [`Ring::start`], for a send expected to complete as it is submitted.
    pub fn start_send(&self, sqe: squeue::Entry, owned: Option<Owned>) -> Op {
        self.sends.set(self.sends.get() + 1);
        self.start(sqe, owned)
    }

    /// What a completion nobody will take held: its resources, and the
    /// receive buffer the kernel filled, which goes back unread.
    fn release(&self, flags: u32, owned: Option<Owned>) {
        drop(owned);
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.bufs.give_back(bid);
        }
    }

    /// Hands the queued entries to the kernel without waiting (and runs
    /// completions the kernel deferred to us).
    pub fn submit(&self) {
        self.sends.set(0);
        let due = {
            let mut uring = self.uring.borrow_mut();
            let sq = uring.submission();
            !sq.is_empty() || sq.taskrun()
        };
        if due {
            self.submit_queued();
        }
    }

    /// Submits and sleeps until a completion comes, or `timeout` passes.
    pub fn wait(&self, timeout: Option<Duration>) {
        let sends = self.sends.replace(0) as usize;
        // A send that found the socket full completes later: the bound
        // keeps the events behind it from waiting long for it.
        let timeout = match (sends, timeout) {
            (0, t) => t,
            (_, t) => Some(t.map_or(SEND_WAIT, |t| t.min(SEND_WAIT))),
        };
        let uring = self.uring.borrow_mut();
        let result = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                uring.submitter().submit_with_args(1 + sends, &args)
            }
            None => uring.submitter().submit_and_wait(1),
        };
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                _ => {
                    if let Some(suppressed) = RING_LOG.check() {
                        tracing::error!(error = %e, suppressed, "io_uring wait failed");
                    }
                }
            }
        }
    }

    /// Takes every completion and wakes its task.
    pub fn reap(&self) {
        let mut wakers: Vec<Waker> = Vec::new();
        let mut rearm = false;
        {
            let mut uring = self.uring.borrow_mut();
            let mut slots = self.slots.borrow_mut();
            let mut free = self.free.borrow_mut();
            for cqe in uring.completion() {
                let ud = cqe.user_data();
                if ud == WAKE {
                    self.woken.set(true);
                    rearm = true;
                    continue;
                }
                if ud == CANCEL {
                    continue;
                }
                let id = ud as usize;
                let (res, flags) = (cqe.result(), cqe.flags());
                if cqueue::buffer_select(flags).is_some() {
                    self.bufs.taken();
                }
                match std::mem::replace(&mut slots[id], Slot::Free) {
                    Slot::Waiting(w, owned) => {
                        slots[id] = Slot::Done(res, flags, owned);
                        if let Some(w) = w {
                            wakers.push(w);
                        }
                    }
                    Slot::Orphan(owned) => {
                        self.release(flags, owned);
                        free.push(id);
                    }
                    other => slots[id] = other,
                }
            }
        }
        if rearm {
            self.arm_wake();
        }
        for w in wakers {
            w.wake();
        }
    }

    /// Whether the wake-up eventfd was read since the last call (by any
    /// reap, also one a full queue forced in the middle of a turn).
    pub fn take_woken(&self) -> bool {
        self.woken.replace(false)
    }

    /// At the end of the thread: waits (briefly) for the operations still
    /// in flight, so that no buffer is freed under the kernel.
    pub fn close(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let busy = self
                .slots
                .borrow()
                .iter()
                .any(|s| matches!(s, Slot::Waiting(..) | Slot::Orphan(_)));
            if !busy || std::time::Instant::now() >= deadline {
                break;
            }
            let ids: Vec<usize> = self
                .slots
                .borrow()
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Slot::Waiting(..)))
                .map(|(i, _)| i)
                .collect();
            for id in ids {
                self.drop_op(id);
            }
            self.wait(Some(Duration::from_millis(10)));
            self.reap();
        }
    }
}

/// One operation in flight: its completion `(result, flags, owned)`.
pub(crate) struct Op {
    id: Option<usize>,
}

impl Future for Op {
    type Output = (i32, u32, Option<Owned>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id.expect("polled after completion");
        let done = super::executor::with(|e| e.ring.poll_op(id, cx));
        if done.is_ready() {
            self.id = None;
        }
        done
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            super::executor::try_with(|e| e.ring.drop_op(id));
        }
    }
}

/// Starts an operation on this thread's ring.
pub(crate) fn start(sqe: squeue::Entry, owned: Option<Owned>) -> Op {
    super::executor::with(|e| e.ring.start(sqe, owned))
}

/// Starts a send on this thread's ring.
pub(crate) fn start_send(sqe: squeue::Entry, owned: Option<Owned>) -> Op {
    super::executor::with(|e| e.ring.start_send(sqe, owned))
}

/// The receive buffers: a provided-buffer ring the kernel takes from at
/// each receive, and we give back to once the bytes are decoded.
pub(crate) struct Buffers {
    ring: *mut types::BufRingEntry,
    ring_len: usize,
    mask: u16,
    tail: Cell<u16>,
    mem: Box<[u8]>,
    pub size: usize,
    /// Buffers the kernel may still take.
    available: Cell<usize>,
    /// Receives that found none left and waited.
    waits: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Buffers {
    fn new(uring: &IoUring, count: u16, size: usize) -> std::io::Result<Self> {
        let ring_len = (count as usize * std::mem::size_of::<types::BufRingEntry>()).max(4096);
        // SAFETY: an anonymous private mapping; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let bufs = Self {
            ring: ptr.cast(),
            ring_len,
            mask: count - 1,
            tail: Cell::new(0),
            mem: vec![0u8; count as usize * size].into_boxed_slice(),
            size,
            available: Cell::new(0),
            waits: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        };
        // SAFETY: the mapping lives as long as `bufs`, and is unregistered
        // with the ring (the ring closes first) before it is unmapped.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ptr as u64, count, BUFFER_GROUP, 0)?;
        }
        for bid in 0..count {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    /// The bytes of buffer `bid`.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.mem[start..start + len.min(self.size)]
    }

    pub fn give_back(&self, bid: u16) {
        let tail = self.tail.get();
        // SAFETY: the index is masked into the ring, and the entry's
        // address is a buffer of ours, `size` bytes long.
        unsafe {
            let entry = &mut *self.ring.add((tail & self.mask) as usize);
            entry.set_addr(self.mem.as_ptr().add(bid as usize * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
            let tail_ptr = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail_ptr).store(tail.wrapping_add(1), Ordering::Release);
        }
        self.tail.set(tail.wrapping_add(1));
        self.available.set(self.available.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn taken(&self) {
        self.available.set(self.available.get().saturating_sub(1));
    }

    pub fn available(&self) -> usize {
        self.available.get()
    }

    /// Receives so far that found every buffer taken.
    pub fn waits(&self) -> u64 {
        self.waits.get()
    }

    /// Wakes `waker` when a buffer comes back.
    pub fn wait(&self, waker: &Waker) {
        self.waits.set(self.waits.get() + 1);
        self.waiters.borrow_mut().push(waker.clone());
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of this length.
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}
