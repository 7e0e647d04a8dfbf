#!/usr/bin/env bash
# Several instances behind a load balancer, end to end: a real HAProxy
# (Debian's haproxy, send-proxy-v2) in front of 2 badge-ingest instances,
# each with its own server.instance, both writing to a ClickHouse cluster of
# 2 shards x 2 replicas with ZooKeeper (scripts/ch-cluster.sh). badge-loadgen
# runs through HAProxy from several loopback source addresses; mid-run, one
# `ctl` given both control addresses sends a command to a badge on the
# second instance and prints its 0x81 reply. Then: loadgen's summary with
# every row verified in the cluster, the merged stats of both instances, rows
# per shard and replica, the badges' own addresses as the servers saw them,
# and what BI queries answer (scripts/bi-summary.sh). Everything it started is
# stopped at the end.
#
# Environment: DEVICES (2000), DURATION (30), SOURCES (127.0.0.2-127.0.0.9),
# DATABASE (badges_cluster_demo), ACK (durable; or received), BADGE_CLUSTER_PORT
# (18400, see ch-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES="${DEVICES:-2000}"
DURATION="${DURATION:-30}"
SOURCES="${SOURCES:-127.0.0.2-127.0.0.9}"
DATABASE="${DATABASE:-badges_cluster_demo}"
ACK="${ACK:-durable}"
FRONT=127.0.0.1:18850
WORK=.data/cluster-demo
mkdir -p "$WORK"

. scripts/packages.sh
need_package curl curl
need_package haproxy haproxy

echo "== building (release)"
cargo build --release --locked --workspace --quiet
BIN=target/release/badge-ingest
LOADGEN=target/release/badge-loadgen

echo "== starting the ClickHouse cluster (ZooKeeper, 2 shards x 2 replicas)"
started_cluster=0
if ! scripts/ch-cluster.sh status >/dev/null 2>&1; then
    scripts/ch-cluster.sh start
    started_cluster=1
fi
scripts/ch-cluster.sh nodes | while read -r n shard replica url native _; do
    echo "   node $n: shard $shard replica $replica, $url (native $native)"
done
NODE1="$(scripts/ch-cluster.sh url 1)"
NODE2="$(scripts/ch-cluster.sh url 2)"
NODE3="$(scripts/ch-cluster.sh url 3)"

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$started_cluster" = 1 ]; then scripts/ch-cluster.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "== applying schema/cluster/ to $DATABASE (twice: it is idempotent)"
BADGE_CH_URL="$NODE1" scripts/apply-schema-check.sh apply-cluster "$DATABASE" badge >/dev/null
BADGE_CH_URL="$NODE1" scripts/apply-schema-check.sh apply-cluster "$DATABASE" badge | tail -n 1

# Instance i listens on 188i1 (badges, PROXY protocol only) and 188i2
# (control), and writes through node 1 (instance 1) or node 3 (instance 2).
controls=()
for i in 1 2; do
    listen="127.0.0.1:188${i}1" control="127.0.0.1:188${i}2"
    url="$NODE1"
    [ "$i" = 2 ] && url="$NODE3"
    rm -rf "$WORK/log-$i"
    cat >"$WORK/instance-$i.toml" <<EOF
[server]
instance = "ingest-$i"
proxy_protocol = true
summary_interval_secs = 0

[clickhouse.settings]
insert_distributed_sync = "1"
EOF
    "$BIN" serve --config "$WORK/instance-$i.toml" --listen "$listen" --control "$control" \
        --clickhouse-url "$url" --database "$DATABASE" --log-dir "$WORK/log-$i" --ack "$ACK" \
        >"$WORK/instance-$i.log" 2>&1 &
    pids+=("$!")
    controls+=("$control")
    echo "== instance ingest-$i: badges $listen (PROXY v2), control $control, ClickHouse $url; log $WORK/instance-$i.log"
done
CONTROLS="${controls[0]},${controls[1]}"
for _ in $(seq 1 100); do
    "$BIN" ctl --control "$CONTROLS" stats >/dev/null 2>&1 && break
    sleep 0.1
done
"$BIN" ctl --control "$CONTROLS" stats >/dev/null || { tail -n 20 "$WORK"/instance-*.log; exit 1; }

cat >"$WORK/haproxy.cfg" <<EOF
global
    # two descriptors a connection: 8000 fits the open-files limit of 20000
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend badges
    bind $FRONT
    default_backend ingest
backend ingest
    balance leastconn
    server ingest-1 127.0.0.1:18811 send-proxy-v2
    server ingest-2 127.0.0.1:18821 send-proxy-v2
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/${FRONT%:*}/${FRONT#*:}") 2>/dev/null && break
    kill -0 "$haproxy_pid" 2>/dev/null || { cat "$WORK/haproxy.log"; echo "HAProxy did not start" >&2; exit 1; }
    sleep 0.1
done
echo "== HAProxy on $FRONT, leastconn over both instances, send-proxy-v2"

# Halfway through: a command to a badge that sits on instance 2, sent with
# both control addresses (ctl finds the instance), and its 0x81 reply.
(
    sleep $((DURATION / 2))
    imei="$("$BIN" ctl --control "$CONTROLS" devices 2>/dev/null |
        awk -v c="${controls[1]}" '$NF == c { print $1; exit }')"
    if [ -n "$imei" ]; then
        echo "== ctl --control $CONTROLS send --wait 5 $imei 'WHERE#'  (the badge is on ingest-2)"
        "$BIN" ctl --control "$CONTROLS" send --wait 5 "$imei" 'WHERE#' | sed 's/^/   /' || true
    else
        echo "== no badge online on ingest-2 to send a command to"
    fi
) &
command_pid=$!

echo "== running $DEVICES badges for ${DURATION}s through HAProxy from $SOURCES"
set +e
"$LOADGEN" --target "$FRONT" --devices "$DEVICES" --duration "$DURATION" --ramp 5 \
    --source "$SOURCES" --verify-clickhouse "$NODE2" --database "$DATABASE"
loadgen_status=$?
set -e
wait "$command_pid" || true

echo
echo "== both instances, merged (ctl --control $CONTROLS stats)"
"$BIN" ctl --control "$CONTROLS" stats
echo
echo "== rows per shard and replica (_local tables)"
printf '%-14s %10s %10s %10s %10s\n' table s1-r1 s1-r2 s2-r1 s2-r2
for t in device_events heartbeats locations alarms attendance bluetooth; do
    row=""
    while read -r _ _ _ url _; do
        row+="$(printf ' %10s' "$(curl -s "$url/" --data-binary "SELECT count() FROM $DATABASE.${t}_local")")"
    done < <(scripts/ch-cluster.sh nodes)
    printf '%-14s%s\n' "$t" "$row"
done
echo
echo "== the badges' own addresses, as both instances recorded them (device_events.peer_addr)"
curl -s "$NODE2/" --data-binary "SELECT ingest_instance, splitByChar(':', peer_addr)[1] AS badge_address, uniqExact(imei) AS badges FROM $DATABASE.device_events WHERE event = 'login' GROUP BY ingest_instance, badge_address ORDER BY ingest_instance, badge_address FORMAT PrettyCompactMonoBlock"
scripts/bi-summary.sh "$NODE2" "$DATABASE"

exit "$loadgen_status"
