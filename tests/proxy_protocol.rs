//! The PROXY protocol on the badge port, over real sockets: v1 and v2
//! headers give the badge's address to the session, the rows and the
//! per-address limits; a sender outside `server.trusted_proxies` and a
//! malformed header are refused and counted.

mod pipeline_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use badge_ingest::app::App;
use badge_ingest::config::{Config, SinkKind};
use badge_ingest::metrics::ShardMetrics;
use pipeline_support::*;

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 8841\r\n").into_bytes()
}

/// A v2 header as a balancer writes it (the parser crate's own builder).
fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    use ppp::v2::{Builder, Command, IPv4, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        IPv4::new(client, [127, 0, 0, 1], port, 8841),
    )
    .build()
    .unwrap()
}

fn login_frame(imei: badge_ingest::protocol::Imei) -> Vec<u8> {
    use badge_ingest::protocol::message::{Login, TzLanguage};
    let mut out = bytes::BytesMut::new();
    badge_ingest::protocol::Message::Login(Login {
        imei,
        type_code: Some(0x2404),
        tz_language: Some(TzLanguage::new(480, 1)),
    })
    .encode(1, &mut out)
    .unwrap();
    out.to_vec()
}

fn app(tweak: impl FnOnce(&mut Config)) -> App {
    let mut c = loopback_config(2);
    c.sink.kind = SinkKind::Count;
    c.server.proxy_protocol = true;
    tweak(&mut c);
    c.validate().unwrap();
    App::start(Arc::new(c)).expect("starts")
}

fn counters(app: &App) -> badge_ingest::metrics::Counters {
    ShardMetrics::total(&app.handle().metrics()).counters
}

/// Whether the server closes a connection that sent `bytes`, without a
/// byte of answer.
fn closed_after(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn v1_and_v2_headers_give_the_badges_address_everywhere() {
    let app = app(|_| {});
    let mut a = Badge::connect_with(app.local_addr(), imei(61), &v1("127.0.0.5", 40005));
    a.login();
    let mut b = Badge::connect_with(app.local_addr(), imei(62), &v2([127, 0, 0, 6], 40006));
    b.login();
    // A frame in the same packet as the header is read too.
    let mut hello = v1("127.0.0.7", 40007);
    hello.extend_from_slice(&login_frame(imei(63)));
    let mut c = Badge::connect_with(app.local_addr(), imei(63), &hello);
    assert_eq!(c.reply().0, 0x01);
    let mut ctl = Control::connect(&app);
    let devices = ctl.ask("devices");
    for (device, peer) in [
        (61, "127.0.0.5:40005"),
        (62, "127.0.0.6:40006"),
        (63, "127.0.0.7:40007"),
    ] {
        let line = devices
            .lines()
            .find(|l| l.contains(&imei(device).to_string()))
            .unwrap_or_else(|| panic!("{device} not listed:\n{devices}"));
        assert!(line.contains(peer), "{line}");
    }
    assert_eq!(counters(&app).logins, 3);
    drop((a, b, c, ctl));
    shutdown_app(app).expect("stops");
}

#[test]
fn the_per_address_limit_counts_the_badges_address_not_the_proxys() {
    let app = app(|c| c.server.max_connections_per_ip = 1);
    let mut a = Badge::connect_with(app.local_addr(), imei(71), &v1("127.0.0.5", 1));
    a.login();
    // Another badge behind the same address: refused.
    assert!(closed_after(app.local_addr(), &v1("127.0.0.5", 2)));
    // One behind another address: taken.
    let mut b = Badge::connect_with(app.local_addr(), imei(72), &v2([127, 0, 0, 6], 3));
    b.login();
    assert_eq!(counters(&app).connections_refused_per_ip, 1);
    drop((a, b));
    shutdown_app(app).expect("stops");
}

#[test]
fn untrusted_senders_and_malformed_headers_are_refused_and_counted() {
    let strict =
        app(|c| c.server.trusted_proxies = vec!["127.0.0.2/32".to_string()].try_into().unwrap());
    // From 127.0.0.1, not trusted: closed even with a good header.
    assert!(closed_after(strict.local_addr(), &v1("127.0.0.5", 1)));
    assert!(wait_until(Duration::from_secs(5), || counters(&strict)
        .proxy_untrusted
        == 1));
    shutdown_app(strict).expect("stops");

    let app = app(|_| {});
    let mut login_only = Vec::new();
    login_only.extend_from_slice(&login_frame(imei(81)));
    for bad in [
        login_only,
        b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n".to_vec(),
        b"PROXY TCP4 127.0.0.5 127.0.0.1 1"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'1', 2000))
            .collect(),
    ] {
        assert!(closed_after(app.local_addr(), &bad), "{bad:?}");
    }
    assert!(wait_until(Duration::from_secs(5), || counters(&app)
        .proxy_bad_headers
        == 3));
    assert_eq!(counters(&app).logins, 0);
    shutdown_app(app).expect("stops");
}
