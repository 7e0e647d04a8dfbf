//! A shard's way into the sink queue. The queue is bounded and never
//! waited on by a thread: a full queue is backpressure. A connection holding
//! rows stops reading (TCP then pushes back on its badge), and rows made
//! outside any connection (command log rows) wait in order in a backlog.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::record::{Envelope, Record};
use crate::sink::SinkHandle;

pub(crate) struct RowQueue {
    sink: SinkHandle,
    /// Rows made outside a connection that the queue had no room for.
    backlog: RefCell<VecDeque<Envelope>>,
    /// Tasks waiting for room, and whether the one task that watches the
    /// queue for them is running.
    waiters: RefCell<Vec<Waker>>,
    watching: Cell<bool>,
    /// Times a row waited because the queue was full.
    pub full_waits: Cell<u64>,
}

impl RowQueue {
    pub fn new(sink: SinkHandle) -> Rc<Self> {
        Rc::new(Self {
            sink,
            backlog: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(Vec::new()),
            watching: Cell::new(false),
            full_waits: Cell::new(0),
        })
    }

    /// Queues a row now, or gives it back when the queue is full.
    // Giving the row back (not an error type) is the point: the caller keeps it.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, envelope: Envelope) -> Result<(), Envelope> {
        self.sink.try_send(envelope)
    }

    /// Queues a row made outside any connection, in order behind earlier
    /// ones still waiting for room.
    pub fn emit(&self, record: Record) {
        let envelope = Envelope {
            record,
            received: Instant::now(),
        };
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            backlog.push_back(envelope);
        } else if let Err(e) = self.sink.try_send(envelope) {
            backlog.push_back(e);
        }
    }

    /// Queues a row, waiting (and counting the wait) while the queue is
    /// full. For rows whose caller keeps them in order itself.
    pub async fn send(self: &Rc<Self>, mut envelope: Envelope) {
        while let Err(e) = self.sink.try_send(envelope) {
            envelope = e;
            self.full_waits.set(self.full_waits.get() + 1);
            self.room().await;
        }
    }

    /// Moves the backlog into the queue, waiting for room as needed.
    pub async fn drain_backlog(self: &Rc<Self>) {
        loop {
            let Some(envelope) = self.backlog.borrow_mut().pop_front() else {
                return;
            };
            if let Err(envelope) = self.sink.try_send(envelope) {
                self.backlog.borrow_mut().push_front(envelope);
                self.room().await;
            }
        }
    }

    /// Resolves when the queue has room again. One watcher task polls the
    /// queue while anyone waits, instead of every waiter on its own timer.
    async fn room(self: &Rc<Self>) {
        let mut registered = false;
        futures_lite::future::poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            self.waiters.borrow_mut().push(cx.waker().clone());
            if !self.watching.replace(true) {
                glommio::spawn_local(watch(self.clone())).detach();
            }
            Poll::Pending
        })
        .await
    }
}

/// Wakes the waiters once the queue has room for a burst.
async fn watch(queue: Rc<RowQueue>) {
    while !queue.waiters.borrow().is_empty() {
        glommio::timer::sleep(Duration::from_micros(500)).await;
        if queue.sink.has_room() {
            for waker in queue.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }
    queue.watching.set(false);
}
