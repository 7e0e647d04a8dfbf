//! `badge-ingest ctl` with the control addresses of two instances: `send`
//! reaches a badge on the other instance and returns its 0x81 reply,
//! `devices` and `stats` are merged, a badge online nowhere is an error,
//! and the addresses can come from a file.

mod pipeline_support;

use std::process::Command;
use std::sync::Arc;

use badge_ingest::app::App;
use badge_ingest::config::{ControlAddr, SinkKind};
use badge_ingest::protocol::message::CommandReply;
use badge_ingest::protocol::Message;
use pipeline_support::*;

fn instance() -> App {
    let mut c = loopback_config(2);
    c.sink.kind = SinkKind::Count;
    c.validate().unwrap();
    App::start(Arc::new(c)).expect("starts")
}

fn control(app: &App) -> String {
    let ControlAddr::Tcp(a) = app.control_addr() else {
        panic!("a TCP control socket")
    };
    a.to_string()
}

/// `badge-ingest ctl ARGS...`: whether it succeeded, and what it printed.
fn ctl(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_badge-ingest"))
        .arg("ctl")
        .args(["--timeout", "20"])
        .args(args)
        .output()
        .expect("ctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn one_ctl_reaches_badges_on_either_instance_and_merges_the_rest() {
    let (a, b) = (instance(), instance());
    let both = format!("{},{}", control(&a), control(&b));
    let mut on_b = Badge::connect(b.local_addr(), imei(91));
    on_b.login();
    let mut on_a = Badge::connect(a.local_addr(), imei(92));
    on_a.login();

    // send --wait through the first address list: the badge is on B.
    let target = imei(91).to_string();
    let waiting = {
        let both = both.clone();
        std::thread::spawn(move || {
            ctl(&[
                "--control",
                &both,
                "send",
                "--wait",
                "10",
                &target,
                "WHERE#",
            ])
        })
    };
    let (protocol, _, content) = on_b.reply_frame();
    assert_eq!(protocol, 0x80);
    let flag = u32::from_be_bytes(content[1..5].try_into().unwrap());
    on_b.send(&Message::CommandReply(CommandReply {
        length: (4 + 6 + 2) as u8,
        server_flag: flag,
        text: b"N22,E114",
        language: Some(1),
    }));
    let (ok, answer) = waiting.join().unwrap();
    assert!(ok, "{answer}");
    assert_eq!(answer, format!("{flag} replied N22,E114\n"));

    // devices: both badges, each with its instance.
    let (ok, devices) = ctl(&[
        "--control",
        &control(&a),
        "--control",
        &control(&b),
        "devices",
    ]);
    assert!(ok, "{devices}");
    for (n, app) in [(91, &b), (92, &a)] {
        let line = devices
            .lines()
            .find(|l| l.starts_with(&imei(n).to_string()))
            .unwrap_or_else(|| panic!("{n} not listed:\n{devices}"));
        assert!(
            line.ends_with(&format!(" instance {}", control(app))),
            "{line}"
        );
    }
    // stats: each instance, and the totals of both.
    let (ok, stats) = ctl(&["--control", &both, "json", "stats"]);
    assert!(ok, "{stats}");
    let v: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(v["total"]["logins"], 2, "{v}");
    assert_eq!(v["instances"].as_object().unwrap().len(), 2);
    let (ok, text) = ctl(&["--control", &both, "stats"]);
    assert!(
        ok && text.contains("== all 2 instances: connections 2 sessions 2 logins 2"),
        "{text}"
    );

    // Online nowhere: an error, nothing queued anywhere.
    let (ok, answer) = ctl(&["--control", &both, "send", &imei(93).to_string(), "WHERE#"]);
    assert!(
        !ok && answer.contains("online on none of the 2 instances"),
        "{answer}"
    );

    // The addresses from a file.
    let file = temp_dir("fleet").join("controls.txt");
    std::fs::write(
        &file,
        format!(
            "# the fleet\n{}\n\n{}  # second\n",
            control(&a),
            control(&b)
        ),
    )
    .unwrap();
    let (ok, devices) = ctl(&["--controls-file", file.to_str().unwrap(), "devices"]);
    assert!(ok && devices.lines().count() == 2, "{devices}");

    drop((on_a, on_b));
    shutdown_app(a).expect("stops");
    shutdown_app(b).expect("stops");
}
