//! What `deploy/` ships is valid: the systemd unit passes `systemd-analyze
//! verify` (with its binary path pointed at the one just built).

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/badge-ingest.service"
    ))
    .unwrap();
    for key in [
        "LimitNOFILE=",
        "LimitMEMLOCK=",
        "Restart=always",
        "ExecStart=",
    ] {
        assert!(unit.contains(key), "the unit has no {key}");
    }
    let dir = std::env::temp_dir().join(format!("badge-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("badge-ingest.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/badge-ingest",
            env!("CARGO_BIN_EXE_badge-ingest"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze ({e}): scripts/test.sh installs it"));
    let _ = std::fs::remove_dir_all(&dir);
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
