#!/usr/bin/env bash
# The project's test command (README "Run the tests", and what .ci/run calls).
# Starts a throwaway ClickHouse on loopback (installing Debian's package if
# needed; also Debian's prometheus, haproxy and systemd-analyze for the
# scrape, balancer and unit tests), runs every Rust test against it, checks
# the schema and the README's BI queries on it, and stops ClickHouse again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "test.sh: cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# The schema check and the BI queries talk to ClickHouse with curl.
. scripts/packages.sh
need_package curl curl

# tests/prometheus_scrape.rs runs a real Prometheus, tests/haproxy.rs a real
# HAProxy; tests/deploy.rs checks the systemd unit with systemd-analyze.
need_package prometheus prometheus
need_package haproxy haproxy
need_package systemd-analyze systemd
# tests/cluster.rs: scripts/ch-cluster.sh runs Debian's ZooKeeper (and installs it
# itself if need be; done here so that no test waits on apt)
need_package /usr/share/java/zookeeper.jar zookeeper

# What CI runs runs everything: an opt-out left in the environment must not
# turn the ClickHouse tests into "ignored" here (build.rs reads it).
unset BADGE_TEST_SKIP_CLICKHOUSE

started_here=0
if ! scripts/clickhouse.sh status >/dev/null 2>&1; then
    scripts/clickhouse.sh start
    started_here=1
fi
cleanup() { if [ "$started_here" = 1 ]; then scripts/clickhouse.sh stop >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

export BADGE_TEST_CLICKHOUSE_URL="$(scripts/clickhouse.sh url)"
export BADGE_TEST_CLICKHOUSE_PID_FILE="$(scripts/clickhouse.sh pidfile 2>/dev/null || true)"

scripts/apply-schema-check.sh check
cargo test --workspace --locked -- --test-threads 2
