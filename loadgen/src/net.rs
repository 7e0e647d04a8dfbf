//! Opening the load generator's connections: from a chosen loopback
//! source address when there are several, each with its own ports.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// Connects, from `source` when given. IP_BIND_ADDRESS_NO_PORT lets the
/// kernel pick the port at connect time, per (source, destination) pair, so
/// each source address has its own ~28 000 ephemeral ports instead of
/// sharing one pool through bind().
pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(target).await?,
        Some(src) => {
            let socket = Socket::new(
                Domain::for_address(target),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_nonblocking(true)?;
            if src.is_ipv4() {
                let one: libc::c_int = 1;
                // SAFETY: a valid socket fd and a c_int option value of the right size.
                let rc = unsafe {
                    libc::setsockopt(
                        socket.as_raw_fd(),
                        libc::IPPROTO_IP,
                        libc::IP_BIND_ADDRESS_NO_PORT,
                        (&one as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            socket.bind(&SocketAddr::new(src, 0).into())?;
            let std_stream: std::net::TcpStream = socket.into();
            TcpSocket::from_std_stream(std_stream)
                .connect(target)
                .await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}
