#!/usr/bin/env bash
# What the geo service, live events and webhooks cost under load, measured
# side by side: the same loadgen run (DEVICES badges, realistic profile,
# DURATION s, every reply and every ClickHouse row checked) against the
# server without them ("base") and with them ("geo": cell file, reverse
# geocoding for every positioned row, a webhook for every event and a
# `watch` client), ROUNDS times alternately. Prints per run the server's
# CPU, its reply latency, and the geo/event counters.
#
#   scripts/geo-load.sh            DEVICES=2000 DURATION=30 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES="${DEVICES:-2000}"; DURATION="${DURATION:-30}"; ROUNDS="${ROUNDS:-3}"
PROVIDER_PORT=18080; LISTEN=127.0.0.1:19841; CONTROL=127.0.0.1:19842
cargo build --release --locked --workspace --quiet
BIN=target/release/badge-ingest; LOADGEN=target/release/badge-loadgen
scripts/clickhouse.sh start >/dev/null
CH="$(scripts/clickhouse.sh url)"
WORK="$(mktemp -d /tmp/badge-geo-load.XXXXXX)"
python3 scripts/fake-geo-provider.py "$PROVIDER_PORT" >"$WORK/provider.log" 2>&1 &
provider=$!
server=""; watcher=""
cleanup() {
    for p in $watcher $server $provider; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

run() {
    local mode=$1 dir="$WORK/$1.$2" db="geoload_$1"
    mkdir -p "$dir"
    curl -s "$CH/" --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null
    "$BIN" schema apply --clickhouse-url "$CH" --database "$db" >/dev/null
    cat >"$dir/config.toml" <<TOML
[server]
listen = "$LISTEN"
control = "$CONTROL"
summary_interval_secs = 0
[clickhouse]
url = "$CH"
database = "$db"
[log]
dir = "$dir/log"
TOML
    if [ "$mode" = geo ]; then
        cat >>"$dir/config.toml" <<TOML
[geo]
cell_db = "$PWD/tests/fixtures/cells.csv"
reverse_url = "http://127.0.0.1:$PROVIDER_PORT/reverse"
[[events.webhooks]]
url = "http://127.0.0.1:$PROVIDER_PORT/hook"
secret = "load"
TOML
    fi
    "$BIN" serve --config "$dir/config.toml" >"$dir/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do "$BIN" ctl --control "$CONTROL" stats >/dev/null 2>&1 && break; sleep 0.1; done
    watcher=""
    if [ "$mode" = geo ]; then
        "$BIN" ctl --control "$CONTROL" watch >"$dir/watch.jsonl" 2>&1 &
        watcher=$!
    fi
    local t0 t1
    t0=$(awk '{print $14+$15}' "/proc/$server/stat")
    "$LOADGEN" --target "$LISTEN" --devices "$DEVICES" --duration "$DURATION" --ramp 5 --profile realistic \
        --verify-clickhouse "$CH" --database "$db" >"$dir/loadgen.txt" 2>&1 || echo "loadgen failed: see $dir/loadgen.txt"
    t1=$(awk '{print $14+$15}' "/proc/$server/stat")
    local hz; hz=$(getconf CLK_TCK)
    printf '%-4s round %s: server CPU %3d%% of a core | %s | loadgen: %s\n' "$mode" "$2" \
        $(( (t1 - t0) * 100 / hz / DURATION )) \
        "$("$BIN" ctl --control "$CONTROL" latency reply | head -1)" \
        "$(grep -E '^result' "$dir/loadgen.txt" || echo 'no result')"
    if [ "$mode" = geo ]; then
        "$BIN" ctl --control "$CONTROL" stats | grep -E '^(geo|events|webhook)' | sed 's/^/     /'
    fi
    [ -n "$watcher" ] && kill "$watcher" 2>/dev/null || true
    kill -TERM "$server"; wait "$server" || true
    server=""
}

for round in $(seq "$ROUNDS"); do
    run base "$round"
    run geo "$round"
done
echo "details in $WORK"
