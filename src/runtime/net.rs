//! TCP on the ring: accepts, receives into the provided buffers, sends.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use io_uring::{cqueue, opcode, squeue, types};

use super::executor::{try_with, with};
use super::ring::{self, Op, BUFFER_GROUP};

/// A listening socket, accepting through the ring.
pub struct TcpListener {
    fd: OwnedFd,
}

impl TcpListener {
    /// Listens on `addr` with `SO_REUSEPORT`, so that every shard has its
    /// own queue of new connections on the same port.
    pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<Self> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(Self { fd: socket.into() })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// The next connection, and who it is from.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let addr: Box<(libc::sockaddr_storage, libc::socklen_t)> = Box::new((
            unsafe { std::mem::zeroed() },
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        ));
        let mut addr = addr;
        let sqe = opcode::Accept::new(
            types::Fd(self.fd.as_raw_fd()),
            (&mut addr.0 as *mut libc::sockaddr_storage).cast(),
            &mut addr.1,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        let (res, _, owned) = ring::start(sqe, Some(addr)).await;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        // SAFETY: the kernel returned a new descriptor, now ours.
        let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
        let (storage, len) = *owned
            .and_then(|o| {
                o.downcast::<(libc::sockaddr_storage, libc::socklen_t)>()
                    .ok()
            })
            .expect("the accept's address");
        // SAFETY: the kernel wrote a socket address of `len` bytes.
        let peer = unsafe { socket2::SockAddr::new(std::mem::transmute_copy(&storage), len) };
        let peer = peer
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP peer"))?;
        Ok((stream, peer))
    }
}

/// A connected socket. Reading is one receive at a time, into a buffer
/// the kernel picks when bytes arrive: a connection that waits holds no
/// buffer. At most one receive and one send are in flight.
pub struct TcpStream {
    // Before `fd`: a receive in flight is cancelled before the close.
    recv: Option<Op>,
    fd: OwnedFd,
}

/// Received bytes, in one of the thread's receive buffers; the buffer goes
/// back to the kernel when this is dropped.
pub struct RecvBuf {
    ptr: *const u8,
    len: usize,
    bid: u16,
}

impl std::ops::Deref for RecvBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the buffer is ours (the kernel wrote `len` bytes to it and
        // will not again until it is given back in `drop`), and the memory
        // lives as long as the thread's ring.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        try_with(|e| e.ring.bufs.give_back(self.bid));
    }
}

impl From<OwnedFd> for TcpStream {
    /// Takes a connected socket (accepted here, or handed over by another
    /// shard). The ring needs it blocking: on a non-blocking socket a
    /// receive would fail with EAGAIN instead of waiting.
    fn from(fd: OwnedFd) -> Self {
        let _ = socket2::SockRef::from(&fd).set_nonblocking(false);
        Self { recv: None, fd }
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl TcpStream {
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        socket2::SockRef::from(&self.fd).set_tcp_nodelay(on)
    }

    /// Starts the next receive now, if none is in flight, so that it is
    /// submitted with what else goes out this turn (a send, say). Only for
    /// a connection that will read on: a receive taken and then cancelled
    /// would lose its bytes.
    pub fn arm_recv(&mut self) {
        if self.recv.is_none() {
            self.recv = Some(self.start_recv());
        }
    }

    fn start_recv(&self) -> Op {
        let size = with(|e| e.ring.bufs.size) as u32;
        let sqe = opcode::Recv::new(types::Fd(self.fd.as_raw_fd()), std::ptr::null_mut(), size)
            .buf_group(BUFFER_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT);
        ring::start(sqe, None)
    }

    /// The next bytes from the peer; `None` at its end.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RecvBuf>>> {
        loop {
            if self.recv.is_none() {
                self.recv = Some(self.start_recv());
            }
            let op = self.recv.as_mut().expect("set above");
            let (res, flags, _) = ready!(Pin::new(op).poll(cx));
            self.recv = None;
            let bid = cqueue::buffer_select(flags);
            if res == -libc::ENOBUFS {
                // Every buffer is held by a read being decoded: try again
                // once one comes back.
                if with(|e| e.ring.bufs.available()) > 0 {
                    continue;
                }
                with(|e| e.ring.bufs.wait(cx.waker()));
                return Poll::Pending;
            }
            if res < 0 {
                return Poll::Ready(Err(io::Error::from_raw_os_error(-res)));
            }
            return Poll::Ready(Ok(match bid {
                Some(bid) if res > 0 => {
                    let ptr = with(|e| e.ring.bufs.get(bid, res as usize).as_ptr());
                    Some(RecvBuf {
                        ptr,
                        len: res as usize,
                        bid,
                    })
                }
                Some(bid) => {
                    with(|e| e.ring.bufs.give_back(bid));
                    None
                }
                None => None,
            }));
        }
    }

    /// The next bytes from the peer, appended to `out`; 0 at its end.
    pub async fn recv_into(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let got = std::future::poll_fn(|cx| self.poll_recv(cx)).await?;
        Ok(got.map_or(0, |buf| {
            out.extend_from_slice(&buf);
            buf.len()
        }))
    }

    /// Sends `buf[from..]` (as much as the socket takes, waiting for room
    /// if it has none), and gives the buffer back with the count sent.
    pub async fn send(&self, buf: Vec<u8>, from: usize) -> (Vec<u8>, io::Result<usize>) {
        let data = &buf[from..];
        let sqe = opcode::Send::new(
            types::Fd(self.fd.as_raw_fd()),
            data.as_ptr(),
            data.len().min(u32::MAX as usize) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        let (res, _, owned) = ring::start_send(sqe, Some(Box::new(buf))).await;
        let buf = owned
            .and_then(|o| o.downcast::<Vec<u8>>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        if res < 0 {
            (buf, Err(io::Error::from_raw_os_error(-res)))
        } else {
            (buf, Ok(res as usize))
        }
    }

    /// Sends all of `buf`.
    pub async fn send_all(&self, buf: Vec<u8>) -> (Vec<u8>, io::Result<()>) {
        let mut buf = buf;
        let mut off = 0;
        while off < buf.len() {
            let (b, sent) = self.send(buf, off).await;
            buf = b;
            match sent {
                Ok(0) => return (buf, Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => off += n,
                Err(e) => return (buf, Err(e)),
            }
        }
        (buf, Ok(()))
    }

    /// Gives up the socket, for another shard to take over. A receive in
    /// flight is cancelled; callers hand off only between receives, so it
    /// has taken nothing.
    pub fn into_fd(self) -> OwnedFd {
        debug_assert!(self.recv.is_none(), "handed off with a receive in flight");
        let TcpStream { recv, fd } = self;
        drop(recv);
        fd
    }
}
