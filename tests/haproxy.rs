//! Behind a real HAProxy (Debian's `haproxy`, which `scripts/test.sh`
//! installs) with `send-proxy-v2`: badges connecting from 127.0.0.5 and
//! 127.0.0.6 keep those addresses in `device_events.peer_addr`, and
//! `max_connections_per_ip` counts them, not the balancer.

mod pipeline_support;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use pipeline_support::*;

#[test]
#[cfg_attr(skip_clickhouse, ignore = "BADGE_TEST_SKIP_CLICKHOUSE=1")]
fn behind_haproxy_badges_keep_their_addresses_and_their_per_address_limit() {
    let url = clickhouse_url();
    let db = fresh_database(&url, "haproxy");
    let log = temp_dir("haproxy");
    let mut c = config(&url, &db, &log);
    c.server.proxy_protocol = true;
    c.server.max_connections_per_ip = 2;
    let running = start(c);

    let port = free_port();
    let cfg = log.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\nfrontend badges\n  bind 127.0.0.1:{port}\n  default_backend ingest\n\
             backend ingest\n  server s1 {} send-proxy-v2\n",
            running.addr()
        ),
    )
    .unwrap();
    let binary = std::env::var("BADGE_TEST_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let _haproxy = Killed::spawn(
        Command::new(&binary)
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "haproxy",
    );
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || TcpStream::connect(front)
            .is_ok()),
        "HAProxy did not listen"
    );

    let samples = Samples::new();
    let mut badges = Vec::new();
    for (n, ip) in [(41, "127.0.0.5"), (42, "127.0.0.5"), (43, "127.0.0.6")] {
        let mut b = Badge::over(connect_from(ip, front), imei(n));
        b.login();
        b.exchange(&samples.messages()[0]);
        badges.push(b);
    }
    // A third badge behind 127.0.0.5: over its limit of 2, however many
    // connections the balancer itself holds. The server closes it, and
    // HAProxy closes the client.
    let mut third = connect_from("127.0.0.5", front);
    let mut b = [0u8; 16];
    let _ = std::io::Write::write_all(&mut third, b"\x78\x78");
    assert!(matches!(
        std::io::Read::read(&mut third, &mut b),
        Ok(0) | Err(_)
    ));
    let refused = || {
        badge_ingest::metrics::ShardMetrics::total(&running.server.metrics())
            .counters
            .connections_refused_per_ip
    };
    assert!(
        wait_until(Duration::from_secs(5), || refused() == 1),
        "{}",
        refused()
    );
    drop(badges);
    running.stop();
    assert!(logs_fully_inserted(&log, 2), "every row is in ClickHouse");
    for (n, ip) in [(41, "127.0.0.5"), (42, "127.0.0.5"), (43, "127.0.0.6")] {
        let peer = query(
            &url,
            &format!(
                "SELECT peer_addr FROM {db}.device_events WHERE imei = {} AND protocol = 1",
                imei(n).as_u64()
            ),
        );
        assert!(peer.trim().starts_with(&format!("{ip}:")), "{n}: {peer}");
    }
}
