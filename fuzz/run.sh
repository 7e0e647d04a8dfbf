#!/usr/bin/env bash
# Seeds the corpora and runs both fuzz targets (decode, then ingest), nice'd,
# for SECONDS in total, then prints a summary: target, executions, exec/s,
# corpus files, crashes.
#
#   fuzz/run.sh SECONDS            # one target after the other, SECONDS/2 each
#   FUZZ_PARALLEL=1 fuzz/run.sh S  # both at once, S each (uses 2 cores)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). With a stable toolchain,
# RUSTC_BOOTSTRAP=1 (set here) turns on the nightly flags cargo-fuzz uses.
# Logs and the summary go to fuzz/logs/; crashes to fuzz/artifacts/<target>/.
set -euo pipefail

usage() { echo "usage: $0 SECONDS" >&2; exit 2; }
[[ $# -eq 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
total=$1

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
targets=(decode ingest)
parallel=${FUZZ_PARALLEL:-0}
if [[ $parallel == 1 ]]; then
  per=$total
else
  per=$(( total / ${#targets[@]} ))
  (( per > 0 )) || per=1
fi
rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-2048}
stamp=$(date +%Y%m%d-%H%M%S)
logs=fuzz/logs
mkdir -p "$logs"

echo "== seeding fuzz/corpus/{decode,ingest}" >&2
nice -n 19 cargo run --quiet --manifest-path fuzz/Cargo.toml --release \
  --example seed_corpus -- fuzz/corpus/decode fuzz/corpus/ingest

echo "== building (-a: debug assertions and overflow checks)" >&2
nice -n 19 cargo fuzz build -a

# Artifacts present before this run, so that only new ones are reported.
declare -A before
for t in "${targets[@]}"; do
  mkdir -p "fuzz/artifacts/$t"
  before[$t]=$(ls "fuzz/artifacts/$t" | sort | tr '\n' ' ')
done

run_target() {
  local t=$1 log=$logs/$t-$stamp.log
  echo "== $t for ${per}s, log $log" >&2
  # A crash stops libFuzzer with a non-zero status; the other target still runs.
  nice -n 19 cargo fuzz run -a "$t" -- \
    -max_total_time="$per" -rss_limit_mb="$rss_limit_mb" -print_final_stats=1 \
    >"$log" 2>&1 || echo "$t: libFuzzer exited with status $? (see $log)" >&2
}

if [[ $parallel == 1 ]]; then
  pids=()
  for t in "${targets[@]}"; do run_target "$t" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
else
  for t in "${targets[@]}"; do run_target "$t"; done
fi

summary=$logs/summary-$stamp.txt
{
  printf '%-8s %12s %8s %8s %8s  %s\n' target executions exec/s corpus crashes "new artifacts"
  for t in "${targets[@]}"; do
    log=$logs/$t-$stamp.log
    execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | tail -1 | awk '{print $2}')
    rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | tail -1 | awk '{print $2}')
    # Without final stats (a crash), the last status line: "#N ... exec/s: R".
    if [[ -z $execs ]]; then
      execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
      rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    fi
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    new=()
    for f in $(ls "fuzz/artifacts/$t" | sort); do
      [[ " ${before[$t]} " == *" $f "* ]] || new+=("fuzz/artifacts/$t/$f")
    done
    printf '%-8s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" \
      "${#new[@]}" "${new[*]:-}"
  done
} | tee "$summary"
echo "summary: $summary" >&2
