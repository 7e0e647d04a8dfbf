#!/usr/bin/env bash
# Per-frame cost, inserts and memory against their baselines, in one table.
#
#   scripts/bench.sh [compare] [e2e] [rss] [decode]      (all four by default)
#
# compare  ../shared/bench/gt06bench/compare.sh (paced: 10,000 badges x 1
#          frame/s; saturated: 1,000 connections x 16 in flight), the tokio
#          gt06-refsrv against badge-ingest --sink count, once with
#          --ack received and once with --ack durable (each run has its own
#          refsrv run, so every ratio is from one run).
# e2e      cargo bench --bench e2e (E2E_ROWS rows, default 2,000,000) against
#          clickhouse-client's own insert of the same rows; starts the
#          project's ClickHouse if it is not running.
# rss      server RSS with 1,000 and with 19,000 idle logged-in badges; the
#          slope between them is the memory per badge.
# decode   cargo bench --bench decode (framing + CRC, one core).
#
# Environment: PACED_SECS (30), SAT_SECS (15), E2E_ROWS (2000000),
# OUT (/tmp/bench/<time>). Run nothing else heavy meanwhile: two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${*:-compare e2e rss decode}
OUT=${OUT:-/tmp/bench/$(date +%Y%m%d-%H%M%S)}
export PACED_SECS=${PACED_SECS:-30} SAT_SECS=${SAT_SECS:-15}
E2E_ROWS=${E2E_ROWS:-2000000}
PORT=29302
CONTROL=127.0.0.1:29303
mkdir -p "$OUT"
. scripts/bench-common.sh

jv() { [ -s "$1" ] && sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'; }
ROWS=()
row() { ROWS+=("$(printf '| %-40s | %12s | %12s | %6s | %12s | %6s |' "$@")"); }

compare_part() {
    for ack in received durable; do
        rm -rf "$OUT/log-$ack"
        OUT="$OUT/compare-$ack" CARGO_TARGET_DIR=$TARGET PACED_SECS=$PACED_SECS SAT_SECS=$SAT_SECS \
            "$GT06/compare.sh" "$BIN serve --listen 127.0.0.1:$PORT --control $CONTROL --sink count --ack $ack --log-dir $OUT/log-$ack" "$PORT" \
            >"$OUT/compare-$ack.txt" 2>"$OUT/compare-$ack.log" || true
        rm -rf "$OUT/log-$ack"
    done
    local r=$OUT/compare-received d=$OUT/compare-durable k ref rec dur
    for spec in "paced CPU per frame, us|paced|server_cpu_us_per_frame" \
                "paced reply p50, us|paced|lat_p50_us" \
                "paced reply p99, us|paced|lat_p99_us" \
                "saturated frames/s|sat|reply_fps" \
                "saturated CPU per frame, us|sat|server_cpu_us_per_frame" \
                "RSS at the end of saturated, KiB|sat|server_rss_kib"; do
        IFS='|' read -r label sc k <<<"$spec"
        ref=$(jv "$r/$sc.ref.json" "$k"); rec=$(jv "$r/$sc.other.json" "$k")
        dref=$(jv "$d/$sc.ref.json" "$k"); dur=$(jv "$d/$sc.other.json" "$k")
        row "$label" "${ref:-n/a}" "${rec:-n/a}" "$(ratio "$rec" "$ref")" "${dur:-n/a}" "$(ratio "$dur" "$dref")"
    done
}

e2e_part() {
    local started=0 line
    if ! scripts/clickhouse.sh status >/dev/null 2>&1; then scripts/clickhouse.sh start >/dev/null; started=1; fi
    BADGE_BENCH_CLICKHOUSE_URL=$(scripts/clickhouse.sh url) BADGE_BENCH_ROWS=$E2E_ROWS \
        cargo bench --quiet --bench e2e >"$OUT/e2e.txt" 2>"$OUT/e2e.log" || true
    [ "$started" = 1 ] && scripts/clickhouse.sh stop >/dev/null
    line=$(grep '^e2e:' "$OUT/e2e.txt" | tail -1)
    local ours raw
    ours=$(sed -n 's/.*= \([0-9]*\) rows\/s end to end.*/\1/p' <<<"$line")
    raw=$(sed -n 's/.*s = \([0-9]*\) rows\/s; ratio.*/\1/p' <<<"$line")
    ROWS+=("$(printf '| %-40s | %12s | %12s | %6s | %12s | %6s |' "e2e rows/s into ClickHouse ($E2E_ROWS)" "${raw:-n/a}" "${ours:-n/a}" "$(ratio "$ours" "$raw")" "" "")")
}

# idle_rss N: the server's RSS (KiB) with N logged-in badges sending one
# heartbeat every 100 s.
idle_rss() {
    local n=$1 log=$OUT/rss-$1 srv
    rm -rf "$log.dir"
    "$BIN" serve --listen 127.0.0.1:$PORT --control $CONTROL --sink count --log-dir "$log.dir" >"$log.server.log" 2>&1 &
    srv=$!
    for _ in $(seq 300); do "$BIN" ctl --control $CONTROL stats >/dev/null 2>&1 && break; sleep 0.1; done
    "$LOAD" --target 127.0.0.1:$PORT --conns "$n" --rate 0.01 --duration 5 --warmup 2 --drain 0 \
        --server-pid "$srv" --json --quiet >"$log.json" 2>"$log.load.log" || true
    kill -TERM "$srv"; wait "$srv" 2>/dev/null || true
    rm -rf "$log.dir"
    jv "$log.json" server_rss_kib
}

rss_part() {
    local small big slope
    small=$(idle_rss 1000); big=$(idle_rss 19000)
    slope=$(awk -v a="$small" -v b="$big" 'BEGIN { if (a != "" && b != "") printf "%.0f", (b - a) * 1024 / 18000; else printf "n/a" }')
    row "RSS, 1,000 idle badges, KiB" "" "${small:-n/a}" "" "" ""
    row "RSS, 19,000 idle badges, KiB" "" "${big:-n/a}" "" "" ""
    row "RSS per idle badge (slope), bytes" "" "$slope" "" "" ""
}

decode_part() {
    cargo bench --quiet --bench decode -- elements/frames_only >"$OUT/decode.txt" 2>&1 || true
    local f
    f=$(awk '/elements\/frames_only/ { f = 1 } f && /thrpt:/ { print $4, $5; exit }' "$OUT/decode.txt")
    row "decode: framing + CRC, one core" "" "${f:-n/a}" "" "" ""
}

for part in $PARTS; do "${part}_part"; done

{
    echo "badge-ingest bench, $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD); ratios are badge-ingest / baseline in the same run"
    printf '| %-40s | %12s | %12s | %6s | %12s | %6s |\n' "measure" "baseline" "received" "ratio" "durable" "ratio"
    printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------------------------" "--------------" "--------------" "--------" "--------------" "--------"
    printf '%s\n' "${ROWS[@]}"
    echo "baseline: gt06-refsrv (tokio) for compare; clickhouse-client for e2e. Results in $OUT"
} | tee "$OUT/table.md"
