//! `server.transparent_huge_pages` reaches the kernel: the real binary
//! runs with THP disabled for itself (`THP_enabled: 0` in
//! /proc/PID/status) by default and when the config says false, and with
//! THP allowed when it says true.

mod pipeline_support;

use std::time::Duration;

use pipeline_support::serve::Serve;
use pipeline_support::*;

fn thp_enabled(huge_pages: Option<bool>) -> String {
    let dir = temp_dir("huge-pages");
    let config = dir.join("serve.toml");
    let setting = huge_pages
        .map(|on| format!("transparent_huge_pages = {on}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[server]\nsummary_interval_secs = 0\n{setting}\n[log]\ndir = {:?}\nsegment_bytes = 8388608\n",
            dir.join("log")
        ),
    )
    .unwrap();
    let mut serve = Serve::start(&["--sink", "count"], &config);
    serve.wait_log("listening for badges", Duration::from_secs(30));
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.child.id())).unwrap();
    // What happens at a stop is tested elsewhere (serve_signals.rs).
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled")
        .trim()
        .to_string()
}

#[test]
fn huge_pages_are_off_unless_the_config_turns_them_on() {
    assert_eq!(thp_enabled(Some(false)), "0");
    assert_eq!(thp_enabled(None), "0");
    assert_eq!(thp_enabled(Some(true)), "1");
}
