//! The PROXY protocol (v1 text and v2 binary, as HAProxy's `send-proxy`
//! and `send-proxy-v2` write it) in front of the badge port: behind a load
//! balancer every connection comes from the balancer, and the header at the
//! start of the stream says which badge it carries. The client address
//! from the header is then the connection's peer everywhere: rows, logs,
//! limits and `devices`. A header is taken only from `trusted_proxies`
//! ([`crate::config::TrustedProxies`]): from anyone else it would let a
//! badge claim any address.

use std::net::SocketAddr;

use ppp::{v1, v2, HeaderResult, PartialResult};

/// The longest header accepted: a v2 header with IPv6 addresses is 52
/// bytes, a v1 one at most 107; this leaves room for the TLVs a balancer
/// adds, and bounds what a trusted but broken proxy can make us buffer.
pub const MAX_HEADER: usize = 1024;

/// What the start of a proxied stream holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of the header yet.
    Incomplete,
    /// A whole header of `len` bytes. `client` is `None` for one that
    /// names no client (v1 `UNKNOWN`, v2 `LOCAL`: the balancer's own health
    /// checks), which then stands for itself.
    Header {
        client: Option<SocketAddr>,
        len: usize,
    },
    Malformed(String),
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= MAX_HEADER {
            Parsed::Malformed(format!("no whole header in {MAX_HEADER} bytes"))
        } else {
            Parsed::Incomplete
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => Parsed::Header {
            client: match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                v1::Addresses::Unknown => None,
            },
            len: h.header.len(),
        },
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, &h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (v2::Command::Proxy, _) => None,
            };
            Parsed::Header {
                client,
                len: h.len(),
            }
        }
        HeaderResult::V1(Err(e)) => Parsed::Malformed(format!("v1: {e}")),
        HeaderResult::V2(Err(e)) => Parsed::Malformed(format!("v2: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 PROXY header over TCP/IPv4, then `rest`.
    pub fn v2_ipv4(src: [u8; 4], port: u16, rest: &[u8]) -> Vec<u8> {
        let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 12]);
        b.extend_from_slice(&src);
        b.extend_from_slice(&[127, 0, 0, 1]);
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(&8841u16.to_be_bytes());
        b.extend_from_slice(rest);
        b
    }

    #[test]
    fn v1_and_v2_headers_give_the_client_and_their_length() {
        let v1 = b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 8841\r\n\x78\x78";
        assert_eq!(
            parse(v1),
            Parsed::Header {
                client: Some("127.0.0.5:40000".parse().unwrap()),
                len: v1.len() - 2
            }
        );
        let v6 = b"PROXY TCP6 ::1 ::1 40000 8841\r\n";
        assert_eq!(
            parse(v6),
            Parsed::Header {
                client: Some("[::1]:40000".parse().unwrap()),
                len: v6.len()
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                client: None,
                len: 15
            }
        );
        let v2 = v2_ipv4([127, 0, 0, 6], 40001, b"\x78\x78");
        assert_eq!(
            parse(&v2),
            Parsed::Header {
                client: Some("127.0.0.6:40001".parse().unwrap()),
                len: 28
            }
        );
    }

    #[test]
    fn a_partial_header_waits_and_garbage_is_malformed() {
        assert_eq!(parse(b"PROXY TCP4 127.0.0.5"), Parsed::Incomplete);
        assert_eq!(
            parse(&v2_ipv4([127, 0, 0, 6], 1, b"")[..20]),
            Parsed::Incomplete
        );
        assert!(matches!(
            parse(b"\x78\x78\x11\x01\x03\x53"),
            Parsed::Malformed(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 999.0.0.5 127.0.0.1 1 2\r\n"),
            Parsed::Malformed(_)
        ));
        // Never-ending v1 text: refused once the cap is reached.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(MAX_HEADER, b'1');
        assert!(matches!(parse(&long), Parsed::Malformed(_)));
    }
}
