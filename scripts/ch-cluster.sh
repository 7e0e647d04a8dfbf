#!/usr/bin/env bash
# A real ClickHouse cluster on loopback for schema/cluster/: Debian's ZooKeeper
# and 2 shards x 2 replicas of ClickHouse (4 servers), each started by
# scripts/clickhouse.sh with its own directory, ports and macros.
#
#   scripts/ch-cluster.sh start            install (Debian packages) if missing, start ZooKeeper and
#                                          every node not running, wait until each answers
#   scripts/ch-cluster.sh stop             stop every node, then ZooKeeper
#   scripts/ch-cluster.sh status           one line per process; exit 0 when all run, 3 otherwise
#   scripts/ch-cluster.sh nodes            one line per node: NODE SHARD REPLICA HTTP_URL NATIVE_ADDR PIDFILE
#   scripts/ch-cluster.sh url [NODE]       HTTP URL of NODE (default 1)
#   scripts/ch-cluster.sh start-node NODE  start one node (after kill-node)
#   scripts/ch-cluster.sh kill-node NODE   SIGKILL one node, as a crash would
#
# Nodes are numbered 1..4: node 1 and 2 are the replicas of shard 1, 3 and 4
# of shard 2. The cluster is called `badge` (as schema/cluster/ expects).
#
# Environment:
#   BADGE_CLUSTER_DIR   where everything lives (default <repo>/.data/ch-cluster)
#   BADGE_CLUSTER_PORT  first port (default 18400): ZooKeeper on PORT+5, node N on
#                       PORT+10N (HTTP), PORT+10N+1 (native), PORT+10N+2 (interserver)
#   BADGE_CLUSTER_SHARDS, BADGE_CLUSTER_REPLICAS   layout (default 2 and 2)
#   BADGE_CH_START_TIMEOUT  seconds a node may take to answer (default 120: a node
#                       killed with SIGKILL and started again waits until ZooKeeper
#                       expires its old session, up to 30 s or more, before it loads
#                       its replicated tables)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
DIR="${BADGE_CLUSTER_DIR:-$REPO_DIR/.data/ch-cluster}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
BASE="${BADGE_CLUSTER_PORT:-18400}"
SHARDS="${BADGE_CLUSTER_SHARDS:-2}"
REPLICAS="${BADGE_CLUSTER_REPLICAS:-2}"
NODES=$((SHARDS * REPLICAS))
ZK_PORT=$((BASE + 5))
ZK_DIR="$DIR/zookeeper"
ZK_PID="$ZK_DIR/zookeeper.pid"
ZK_JAR=/usr/share/java/zookeeper.jar
ZK_START_TIMEOUT=60

log() { printf 'ch-cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$BASE" =~ ^[0-9]+$ ]] && (( BASE > 0 && BASE + 10 * NODES + 2 < 65536 )) ||
    die "BADGE_CLUSTER_PORT out of range: $BASE"
(( SHARDS >= 1 && REPLICAS >= 1 )) || die "need at least one shard and one replica"

http_port() { echo $((BASE + 10 * $1)); }
tcp_port() { echo $((BASE + 10 * $1 + 1)); }
shard_of() { echo $((($1 - 1) / REPLICAS + 1)); }
replica_of() { echo $((($1 - 1) % REPLICAS + 1)); }

valid_node() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= NODES )) || die "no node ${1:-} (1..$NODES)"
}

# "a,b;c,d": replicas of a shard separated by commas, shards by semicolons
topology() {
    local s r out="" n
    for ((s = 1; s <= SHARDS; s++)); do
        [[ -n "$out" ]] && out+=";"
        for ((r = 1; r <= REPLICAS; r++)); do
            n=$(((s - 1) * REPLICAS + r))
            (( r > 1 )) && out+=","
            out+="127.0.0.1:$(tcp_port "$n")"
        done
    done
    echo "$out"
}

# clickhouse.sh for node $1, with the rest of the arguments
node() {
    local n="$1"
    shift
    BADGE_CH_DIR="$DIR/node-$n" \
        BADGE_CH_HTTP_PORT="$(http_port "$n")" \
        BADGE_CH_TCP_PORT="$(tcp_port "$n")" \
        BADGE_CH_INTERSERVER_PORT=$((BASE + 10 * n + 2)) \
        BADGE_CH_ZOOKEEPER="127.0.0.1:$ZK_PORT" \
        BADGE_CH_CLUSTER_NODES="$(topology)" \
        BADGE_CH_SHARD="$(printf '%02d' "$(shard_of "$n")")" \
        BADGE_CH_REPLICA="replica-$(printf '%02d' "$(replica_of "$n")")" \
        BADGE_CH_START_TIMEOUT="${BADGE_CH_START_TIMEOUT:-120}" \
        "$SCRIPT_DIR/clickhouse.sh" "$@"
}

ensure_zookeeper() {
    [[ -f "$ZK_JAR" ]] && command -v java >/dev/null && return 0
    log "installing zookeeper (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q zookeeper >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q zookeeper >/dev/null; }
    [[ -f "$ZK_JAR" ]] || die "no $ZK_JAR after installing zookeeper"
}

# Serving sessions, not only up: `ruok` says imok while ZooKeeper still loads
# its data, and a ClickHouse that connects then fails its handshake (and
# 18.16 may abort on it).
zk_ok() {
    local answer
    answer="$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf 'srvr' >&3 && timeout 2 cat <&3) 2>/dev/null)" ||
        return 1
    [[ "$answer" == *"Mode: standalone"* ]]
}

zk_pid() {
    [[ -s "$ZK_PID" ]] || return 1
    local pid
    pid="$(cat "$ZK_PID")"
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$ZK_DIR/zoo.cfg" || return 1
    echo "$pid"
}

zk_start() {
    if zk_pid >/dev/null && zk_ok; then return 0; fi
    ensure_zookeeper
    mkdir -p "$ZK_DIR/data"
    cat >"$ZK_DIR/zoo.cfg" <<EOF
# Generated by scripts/ch-cluster.sh; rewritten on every start.
tickTime=2000
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
autopurge.purgeInterval=1
# A throwaway cluster on the disk the ingesters' logs are on: ZooKeeper's
# fsync of every transaction (each insert block is one) would compete with
# the logs' commits and hold every acknowledgement behind it.
forceSync=no
EOF
    (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT") 2>/dev/null &&
        die "port 127.0.0.1:$ZK_PORT is already in use (set BADGE_CLUSTER_PORT)"
    setsid java -Xms64m -Xmx256m -Dzookeeper.log.dir="$ZK_DIR" -Dzookeeper.root.logger=INFO,CONSOLE \
        -cp "/etc/zookeeper/conf:$ZK_JAR" org.apache.zookeeper.server.ZooKeeperServerMain "$ZK_DIR/zoo.cfg" \
        </dev/null >"$ZK_DIR/zookeeper.out" 2>&1 &
    echo $! >"$ZK_PID"
    local deadline=$((SECONDS + ZK_START_TIMEOUT))
    until zk_ok; do
        if ! kill -0 "$(cat "$ZK_PID")" 2>/dev/null; then
            tail -n 30 "$ZK_DIR/zookeeper.out" >&2
            die "ZooKeeper exited during startup"
        fi
        (( SECONDS < deadline )) || { tail -n 30 "$ZK_DIR/zookeeper.out" >&2; die "ZooKeeper did not answer within ${ZK_START_TIMEOUT}s"; }
        sleep 0.3
    done
    echo "zookeeper started (pid $(cat "$ZK_PID")) on 127.0.0.1:$ZK_PORT"
}

zk_stop() {
    local pid
    pid="$(zk_pid)" || { rm -f "$ZK_PID"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$ZK_PID"
    echo "zookeeper stopped (pid $pid)"
}

cmd_start() {
    zk_start
    local n
    for ((n = 1; n <= NODES; n++)); do
        node "$n" start | sed "s/^/node $n: /"
    done
}

cmd_stop() {
    local n
    for ((n = 1; n <= NODES; n++)); do
        node "$n" stop | sed "s/^/node $n: /"
    done
    zk_stop
}

cmd_status() {
    local n rc=0
    if zk_pid >/dev/null && zk_ok; then
        echo "zookeeper: running (pid $(zk_pid)) on 127.0.0.1:$ZK_PORT"
    else
        echo "zookeeper: stopped"
        rc=3
    fi
    for ((n = 1; n <= NODES; n++)); do
        printf 'node %d (shard %d replica %d): ' "$n" "$(shard_of "$n")" "$(replica_of "$n")"
        node "$n" status || rc=3
    done
    return "$rc"
}

cmd_nodes() {
    local n
    for ((n = 1; n <= NODES; n++)); do
        printf '%d %d %d http://127.0.0.1:%d 127.0.0.1:%d %s\n' "$n" "$(shard_of "$n")" "$(replica_of "$n")" \
            "$(http_port "$n")" "$(tcp_port "$n")" "$(node "$n" pidfile)"
    done
}

cmd_kill_node() {
    valid_node "${1:-}"
    local pidfile pid
    pidfile="$(node "$1" pidfile)"
    pid="$(tr -dc '0-9' <"$pidfile" 2>/dev/null)" || true
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || die "node $1 is not running"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    echo "node $1 killed (pid $pid)"
}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

sub="${1:-}"
[[ $# -gt 0 ]] && shift
case "$sub" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    nodes) cmd_nodes ;;
    url) valid_node "${1:-1}"; echo "http://127.0.0.1:$(http_port "${1:-1}")" ;;
    start-node) valid_node "${1:-}"; zk_start >/dev/null; node "$1" start ;;
    kill-node) cmd_kill_node "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
