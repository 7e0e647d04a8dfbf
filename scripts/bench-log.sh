#!/usr/bin/env bash
# What the durable log costs and what it buys, measured on this machine.
#
#   scripts/bench-log.sh [ack] [replay] [kill] [disk]   (the first three by default)
#
# ack     log.ack = "durable" against "received", alternating, RUNS times each
#         (fresh server per run, --sink count so that only the log differs):
#         10,000 badges at 1 frame/s (PACED_SECS) and 1,000 connections x 16
#         frames in flight (SAT_SECS). Medians: reply p99, server CPU per
#         frame, saturated frames/s, and the durable/received ratios.
# replay  A simulated outage: ClickHouse unreachable while saturating load
#         fills the log with BACKLOG rows (36,000,000 = 10,000 badges x 1
#         frame/s x 1 hour); then a restart with ClickHouse back and 10,000
#         badges at 1 frame/s arriving meanwhile. Drain rate = rows replayed /
#         time until the writers are back on memory; against the arrival rate.
# kill    The SIGKILL crash tests: durable (must lose nothing) and the same
#         kills with ack = "received" (reports what is lost).
# disk    The disk alone (not part of the default): DISK_SECS of 8 KiB
#         O_DIRECT|O_DSYNC overwrites of a zero-filled file in the log's
#         filesystem, about 1,250 a second like one shard's commits; the
#         latency percentiles. A reply waits for its commit, so this tail is
#         the floor of the durable reply tail.
#
# Environment: RUNS (3), PACED_SECS (30), SAT_SECS (15), BACKLOG (36000000),
# OUT (/tmp/bench-log/<time>). Needs ../shared/bench/gt06bench (the load
# generator) and starts its own ClickHouse (scripts/clickhouse.sh) for replay.
# Run nothing else heavy meanwhile: two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PARTS=${*:-ack replay kill}
RUNS=${RUNS:-3}
PACED_SECS=${PACED_SECS:-30}
SAT_SECS=${SAT_SECS:-15}
BACKLOG=${BACKLOG:-36000000}
OUT=${OUT:-/tmp/bench-log/$(date +%Y%m%d-%H%M%S)}
LISTEN=127.0.0.1:29202
CONTROL=127.0.0.1:29203
mkdir -p "$OUT"
. scripts/bench-common.sh

SRV=
stop() {
    [ -n "$SRV" ] || return 0
    kill -TERM "$SRV" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SRV" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
    SRV=
}
trap stop EXIT

# serve LOGFILE ARGS...: starts the server, waits for its control socket.
serve() {
    local log=$1; shift
    "$BIN" serve --listen "$LISTEN" --control "$CONTROL" "$@" >"$log" 2>&1 &
    SRV=$!
    for _ in $(seq 300); do
        "$BIN" ctl --control "$CONTROL" stats >/dev/null 2>&1 && return 0
        kill -0 "$SRV" 2>/dev/null || { tail -5 "$log" >&2; exit 1; }
        sleep 0.1
    done
    echo "server did not start" >&2; exit 1
}

jv() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -1; }
# stat PATH: one figure of `json stats`, e.g. .total.frames or .log_bytes
stat() { "$BIN" ctl --control "$CONTROL" json stats | jq -r "$1"; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

ack_part() {
    echo "== ack: durable vs received, $RUNS runs each, --sink count"
    for run in $(seq "$RUNS"); do
        for mode in durable received; do
            for sc in paced sat; do
                rm -rf "$OUT/log"
                serve "$OUT/$sc.$mode.$run.server.log" --sink count --ack "$mode" --log-dir "$OUT/log"
                case $sc in
                    paced) args="--conns 10000 --rate 1 --duration $PACED_SECS";;
                    sat) args="--conns 1000 --saturate --inflight 16 --duration $SAT_SECS";;
                esac
                # shellcheck disable=SC2086
                "$LOAD" --target "$LISTEN" $args --server-pid "$SRV" --json --quiet --label "$sc.$mode.$run" \
                    >"$OUT/$sc.$mode.$run.json" 2>"$OUT/$sc.$mode.$run.load.log" || true
                # The server's own view: from a frame read to its reply written
                # (the load generator adds its own scheduling), and the commits.
                "$BIN" ctl --control "$CONTROL" json latency >"$OUT/$sc.$mode.$run.latency.json"
                stop
                printf '  run %s %-8s %-5s p99 %8s us (server %6s us, commit %5s us)  cpu/frame %8s us  frames/s %10s  mismatches %s unanswered %s\n' \
                    "$run" "$mode" "$sc" "$(jv "$OUT/$sc.$mode.$run.json" lat_p99_us)" \
                    "$(jq "(.reply.interval.percentiles.p99 // .reply.since_start.p99)" "$OUT/$sc.$mode.$run.latency.json")" \
                    "$(jq "(.commit.interval.percentiles.p99 // .commit.since_start.p99)" "$OUT/$sc.$mode.$run.latency.json")" \
                    "$(jv "$OUT/$sc.$mode.$run.json" server_cpu_us_per_frame)" "$(jv "$OUT/$sc.$mode.$run.json" reply_fps)" \
                    "$(jv "$OUT/$sc.$mode.$run.json" mismatches)" "$(jv "$OUT/$sc.$mode.$run.json" unanswered)"
                sleep 1
            done
        done
    done
    ratio() { # ratio SCENARIO KEY: median over runs of durable/received
        for run in $(seq "$RUNS"); do
            awk -v d="$(jv "$OUT/$1.durable.$run.json" "$2")" -v r="$(jv "$OUT/$1.received.$run.json" "$2")" \
                'BEGIN { if (r + 0 > 0) printf "%.3f\n", d / r }'
        done | median
    }
    med() { for run in $(seq "$RUNS"); do jv "$OUT/$1.$2.$run.json" "$3"; done | median; }
    smed() { for run in $(seq "$RUNS"); do jq "$3" "$OUT/$1.$2.$run.latency.json"; done | median; }
    echo "  medians                         durable     received   durable/received"
    printf '  paced server reply p99 us %10s   %10s\n' "$(smed paced durable "(.reply.interval.percentiles.p99 // .reply.since_start.p99)")" "$(smed paced received "(.reply.interval.percentiles.p99 // .reply.since_start.p99)")"
    printf '  paced log commit p99 us   %10s   %10s\n' "$(smed paced durable "(.commit.interval.percentiles.p99 // .commit.since_start.p99)")" "$(smed paced received "(.commit.interval.percentiles.p99 // .commit.since_start.p99)")"
    printf '  paced reply p99 us        %10s   %10s   %s\n' "$(med paced durable lat_p99_us)" "$(med paced received lat_p99_us)" "$(ratio paced lat_p99_us)"
    printf '  paced server CPU us/frame %10s   %10s   %s\n' "$(med paced durable server_cpu_us_per_frame)" "$(med paced received server_cpu_us_per_frame)" "$(ratio paced server_cpu_us_per_frame)"
    printf '  paced server CPU %%        %10s   %10s   %s\n' "$(med paced durable server_cpu_pct)" "$(med paced received server_cpu_pct)" "$(ratio paced server_cpu_pct)"
    printf '  sat frames/s              %10s   %10s   %s\n' "$(med sat durable reply_fps)" "$(med sat received reply_fps)" "$(ratio sat reply_fps)"
    printf '  sat reply p99 us          %10s   %10s   %s\n' "$(med sat durable lat_p99_us)" "$(med sat received lat_p99_us)" "$(ratio sat lat_p99_us)"
}

replay_part() {
    echo "== replay: $BACKLOG rows logged during an outage, drained with 10,000 badges at 1 frame/s arriving"
    started_ch=0
    if ! scripts/clickhouse.sh status >/dev/null 2>&1; then scripts/clickhouse.sh start >/dev/null; started_ch=1; fi
    local url db=bench_replay
    url=$(scripts/clickhouse.sh url)
    rm -rf "$OUT/replay-log"
    # The outage: nothing listens on port 9.
    serve "$OUT/replay.down.log" --sink clickhouse --clickhouse-url http://127.0.0.1:9 --database "$db" \
        --log-dir "$OUT/replay-log"
    "$LOAD" --target "$LISTEN" --conns 1000 --saturate --inflight 16 --gps-ratio 0.5 --duration 3600 \
        --quiet --json >/dev/null 2>"$OUT/replay.down.load.log" &
    local load=$! t0=$SECONDS frames=0
    while [ "${frames:-0}" -lt "$BACKLOG" ]; do
        sleep 2
        kill -0 "$load" 2>/dev/null || { echo "load generator stopped:" >&2; cat "$OUT/replay.down.load.log" >&2; exit 1; }
        frames=$(stat .total.frames)
    done
    kill -TERM "$load" 2>/dev/null; wait "$load" 2>/dev/null || true
    frames=$(stat .total.frames)
    local bytes; bytes=$(stat .log_bytes)
    echo "  outage: $frames frames logged in $((SECONDS - t0)) s, log $((bytes / 1048576)) MiB"
    stop
    "$BIN" schema apply --clickhouse-url "$url" --database "$db" >/dev/null
    # ClickHouse back; badges arrive meanwhile.
    local t1; t1=$(date +%s.%N)
    serve "$OUT/replay.up.log" --sink clickhouse --clickhouse-url "$url" --database "$db" --log-dir "$OUT/replay-log"
    "$LOAD" --target "$LISTEN" --conns 10000 --rate 1 --duration 3600 --imei-base 5000000 --quiet --json \
        >/dev/null 2>"$OUT/replay.up.load.log" &
    load=$!
    local replayed=0 last=-1 last_at=$t1 arrived0 arrived1
    arrived0=$(stat .total.frames)
    while :; do
        sleep 1
        replayed=$(stat .replayed_rows)
        if [ "$replayed" -gt "$last" ]; then last=$replayed; last_at=$(date +%s.%N); continue; fi
        # Nothing more read back for 3 s: every table takes memory again.
        awk -v a="$last_at" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - a > 3) }' && break
    done
    arrived1=$(stat .total.frames)
    local now; now=$(date +%s.%N)
    kill -TERM "$load" 2>/dev/null; wait "$load" 2>/dev/null || true
    stop
    local stored
    stored=$(curl -s "$url/" --data-binary "SELECT (SELECT count() FROM $db.heartbeats) + (SELECT count() FROM $db.locations)")
    awk -v rows="$last" -v t1="$t1" -v t="$last_at" -v a0="$arrived0" -v a1="$arrived1" -v now="$now" -v f="$frames" -v s="$stored" 'BEGIN {
        d = t - t1; arr = (a1 - a0) / (now - t1);
        printf "  drained %d rows in %.1f s: %.0f rows/s; arrival %.0f frames/s; drain/arrival %.1fx\n", rows, d, rows / d, arr, (rows / d) / arr;
        printf "  ClickHouse holds %d heartbeat+location rows for %d frames logged in the outage (plus the arrivals)\n", s, f }'
    curl -s "$url/" --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null
    if [ "$started_ch" = 1 ]; then scripts/clickhouse.sh stop >/dev/null; fi
}

kill_part() {
    echo "== kill: SIGKILL under load, durable (must lose nothing) and received (what it loses)"
    started_ch=0
    if ! scripts/clickhouse.sh status >/dev/null 2>&1; then scripts/clickhouse.sh start >/dev/null; started_ch=1; fi
    BADGE_TEST_CLICKHOUSE_URL=$(scripts/clickhouse.sh url) BADGE_TEST_CLICKHOUSE_PID_FILE=$(scripts/clickhouse.sh pidfile) \
        cargo test --release --locked --quiet --test crash -- --include-ignored --test-threads 1 --nocapture \
        sigkill 2>&1 | grep -E "^round|ack=received|^test |test result" | sed 's/^/  /'
    if [ "$started_ch" = 1 ]; then scripts/clickhouse.sh stop >/dev/null; fi
}

disk_part() {
    echo "== disk: 8 KiB O_DSYNC overwrites for ${DISK_SECS:-20} s"
    mkdir -p "$ROOT/.data"
    python3 - "$ROOT/.data/bench-dsync.tmp" "${DISK_SECS:-20}" <<'PY'
import mmap, os, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT)
zeros = mmap.mmap(-1, 1 << 20)
for i in range(64):
    os.pwrite(fd, zeros, i << 20)
os.fsync(fd)
os.close(fd)
fd = os.open(path, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
block = mmap.mmap(-1, 8192)
lat, off, end = [], 0, time.time() + secs
while time.time() < end:
    t = time.perf_counter()
    os.pwrite(fd, block, off)
    lat.append((time.perf_counter() - t) * 1e6)
    off = (off + 4096) % (60 << 20)
    time.sleep(0.0008)
os.close(fd)
os.unlink(path)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print("  %d writes: p50 %.0f us, p90 %.0f, p99 %.0f, p99.9 %.0f, max %.0f"
      % (len(lat), q(0.5), q(0.9), q(0.99), q(0.999), lat[-1]))
PY
}

for part in $PARTS; do
    case $part in
        ack) ack_part ;;
        replay) replay_part ;;
        kill) kill_part ;;
        disk) disk_part ;;
        *) echo "unknown part $part (ack, replay, kill, disk)" >&2; exit 2 ;;
    esac
done
echo "results in $OUT"
