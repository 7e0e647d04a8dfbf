#!/usr/bin/env bash
# The main job, end to end (README "Run it"): build; start a local
# ClickHouse; apply the schema; start the server; run 2,000 simulated badges
# for 30 s; print loadgen's summary, the server's stats and latency, the rows
# per table and a BI query answered by ClickHouse; stop everything.
#
# Environment: DEVICES (2000), DURATION (30), PROFILE (realistic), DATABASE (badges_demo).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES="${DEVICES:-2000}"
DURATION="${DURATION:-30}"
PROFILE="${PROFILE:-realistic}"
DATABASE="${DATABASE:-badges_demo}"
LISTEN=127.0.0.1:18841
CONTROL=127.0.0.1:18842
WORK=.data/demo
mkdir -p "$WORK"

# The schema check and the BI queries talk to ClickHouse with curl.
. scripts/packages.sh
need_package curl curl

echo "== building (release)"
cargo build --release --locked --workspace --quiet
BIN=target/release/badge-ingest
LOADGEN=target/release/badge-loadgen

echo "== starting ClickHouse"
started_ch=0
if ! scripts/clickhouse.sh status >/dev/null 2>&1; then
    scripts/clickhouse.sh start
    started_ch=1
fi
CH_URL="$(scripts/clickhouse.sh url)"

server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$started_ch" = 1 ]; then scripts/clickhouse.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "== applying the schema to database $DATABASE"
"$BIN" schema apply --clickhouse-url "$CH_URL" --database "$DATABASE"

echo "== starting badge-ingest on $LISTEN (control $CONTROL); log in $WORK/server.log"
rm -rf "$WORK/log"
"$BIN" serve --listen "$LISTEN" --control "$CONTROL" --clickhouse-url "$CH_URL" --database "$DATABASE" \
    --log-dir "$WORK/log" >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    "$BIN" ctl --control "$CONTROL" stats >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
    sleep 0.1
done

echo "== running $DEVICES badges ($PROFILE) for ${DURATION}s"
set +e
"$LOADGEN" --target "$LISTEN" --devices "$DEVICES" --duration "$DURATION" --ramp 5 --profile "$PROFILE" \
    --verify-clickhouse "$CH_URL" --database "$DATABASE"
loadgen_status=$?
set -e

echo
echo "== server stats"
"$BIN" ctl --control "$CONTROL" stats
echo "== server latency (µs)"
"$BIN" ctl --control "$CONTROL" latency

echo "== rows per table"
for t in device_events heartbeats locations alarms attendance bluetooth device_info command_log raw_frames; do
    printf '%-14s %s\n' "$t" "$(curl -s "$CH_URL/" --data-binary "SELECT count() FROM $DATABASE.$t")"
done
echo
scripts/bi-summary.sh "$CH_URL" "$DATABASE"

exit "$loadgen_status"
