//! `BADGE_TEST_SKIP_CLICKHOUSE=1` turns on `cfg(skip_clickhouse)`, under
//! which the test of `--verify-clickhouse` against a real ClickHouse is
//! marked `#[ignore]`: an explicit opt-out shows as "ignored", never as
//! "ok". Without it a missing ClickHouse fails that test.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_clickhouse)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=BADGE_TEST_SKIP_CLICKHOUSE");
    if std::env::var("BADGE_TEST_SKIP_CLICKHOUSE").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=skip_clickhouse");
    }
}
