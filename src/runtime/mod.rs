//! The shards' runtime: one thread per core, each with its own io_uring
//! ring, a single-threaded executor and a timer list. Nothing is shared
//! between shard threads but the wake-ups other threads send in.
//!
//! Why not glommio any more: its reactor costs more per wake-up than a
//! whole frame does here. Each time a shard went idle it issued a
//! `membarrier` (an IPI to every core), cancelled and re-armed its
//! preemption timers, and its sockets were read and written with plain
//! `recv`/`send` calls after a readiness poll. Frames of 10,000 badges at
//! one a second arrive one at a time, so that cost was paid per frame.
//! Here a socket is read by a `recv` whose buffer the kernel picks from a
//! ring of buffers the shard provides (idle connections own no buffer),
//! replies go out as `send` entries submitted together with the next
//! wait, and an idle shard sleeps in a single `io_uring_enter`.
//!
//! - [`executor`]: tasks, timers, and the loop that runs them and waits.
//! - [`ring`]: the io_uring ring, its operations and the provided buffers.
//! - [`net`]: TCP listeners and streams on the ring.
//! - [`fs`]: the durable log's files: `O_DIRECT` writes and syncs on the ring.

mod executor;
pub mod fs;
pub mod net;
mod ring;

pub use async_task::Task;
pub use executor::{sleep, spawn_local, Sleep};

use std::future::Future;

/// How a runtime thread is made: its name, its core, and the sizes of its
/// ring and of its receive buffers.
#[derive(Clone, Debug)]
pub struct Builder {
    name: String,
    cpu: Option<usize>,
    ring_entries: u32,
    buffers: u16,
    buffer_size: usize,
}

impl Builder {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cpu: None,
            ring_entries: 1024,
            buffers: 64,
            buffer_size: 4096,
        }
    }

    /// Pins the thread to this core.
    pub fn pin(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Submission queue entries (the completion queue has four times as
    /// many, so that a burst of completions from every socket fits).
    pub fn ring_entries(mut self, n: u32) -> Self {
        self.ring_entries = n.clamp(8, 32_768).next_power_of_two();
        self
    }

    /// The receive buffers every socket of the thread reads into: `count`
    /// (a power of two) of `size` bytes.
    pub fn buffers(mut self, count: u16, size: usize) -> Self {
        self.buffers = count.clamp(2, 32_768).next_power_of_two();
        self.buffer_size = size.max(64);
        self
    }

    /// Starts the thread and runs `make()`'s future on it to its end.
    /// Fails if the ring cannot be set up (before anything runs).
    pub fn spawn<F, Fut, T>(self, make: F) -> std::io::Result<std::thread::JoinHandle<T>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                if let Some(cpu) = self.cpu {
                    pin_to(cpu);
                }
                let executor = match executor::Executor::new(&self) {
                    Ok(e) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        panic!("runtime not started");
                    }
                };
                executor.block_on(make())
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err(std::io::Error::other("runtime thread died at start")),
        }
    }
}

/// Receives on this runtime thread that found every receive buffer taken
/// and waited for one (0 off a runtime thread).
pub fn receive_buffer_waits() -> u64 {
    executor::try_with(|e| e.ring.bufs.waits()).unwrap_or(0)
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, error = %std::io::Error::last_os_error(), "cannot pin the thread to its core");
        }
    }
}
