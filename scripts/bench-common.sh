# Sourced by the bench scripts, from the project's root: the tools they
# need and the release builds of the server and of the load generator in
# ../shared/bench/gt06bench. Sets ROOT, GT06, TARGET, BIN and LOAD.
ROOT=$(pwd)
GT06=${GT06:-$ROOT/../shared/bench/gt06bench}
TARGET=${CARGO_TARGET_DIR_GT06:-/tmp/gt06bench-target}
ulimit -n 20000
. scripts/packages.sh
need_package jq jq
need_package curl curl
cargo build --release --locked --quiet
cargo build --release --quiet --manifest-path "$GT06/Cargo.toml" --target-dir "$TARGET"
BIN=$ROOT/target/release/badge-ingest
LOAD=$TARGET/release/gt06-load
