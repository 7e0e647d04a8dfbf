//! `BADGE_TEST_SKIP_CLICKHOUSE=1` turns on `cfg(skip_clickhouse)`, under
//! which the tests that need a real ClickHouse are marked `#[ignore]`: an
//! explicit opt-out shows in the harness as "ignored", never as "ok".
//! Without it a missing ClickHouse fails those tests.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_clickhouse)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=BADGE_TEST_SKIP_CLICKHOUSE");
    if std::env::var("BADGE_TEST_SKIP_CLICKHOUSE").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=skip_clickhouse");
    }
}
