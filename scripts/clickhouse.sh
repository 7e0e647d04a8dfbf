#!/usr/bin/env bash
# Local, throw-away ClickHouse for development and tests of badge-ingest.
#
#   scripts/clickhouse.sh start    install (Debian package) if missing, write config, start, wait for /ping
#   scripts/clickhouse.sh stop     stop the server started by `start` (SIGTERM, bounded wait, then SIGKILL)
#   scripts/clickhouse.sh status   print state; exit 0 when running, 3 when not
#   scripts/clickhouse.sh url      print the HTTP URL (http://127.0.0.1:PORT)
#   scripts/clickhouse.sh pidfile  print the path of the server's pid file (tests kill it by PID)
#   scripts/clickhouse.sh client [ARGS...]   clickhouse-client on the native port, extra args passed through
#
# Environment:
#   BADGE_CH_DIR        data directory (default <repo>/.data/clickhouse); config, data, logs, pid all live here
#   BADGE_CH_HTTP_PORT  HTTP port       (default 18123)
#   BADGE_CH_TCP_PORT   native TCP port (default 19000)
#   BADGE_CH_START_TIMEOUT  seconds to wait for /ping after start (default 30)
#   BADGE_CH_USER       when run as root: run the server as this user instead (e.g. clickhouse)
#   BADGE_CH_ZOOKEEPER  optional HOST:PORT of a ZooKeeper: also configures a cluster
#                       `badge` (macros cluster/shard/replica, distributed DDL) so
#                       schema/cluster/ can be applied for real; by default it has one
#                       shard of one replica, this server
#   BADGE_CH_CLUSTER_NODES  with BADGE_CH_ZOOKEEPER: the cluster's native addresses,
#                       shards separated by `;`, replicas by `,`
#                       (e.g. "127.0.0.1:19001,127.0.0.1:19011;127.0.0.1:19021,127.0.0.1:19031")
#   BADGE_CH_SHARD, BADGE_CH_REPLICA  this server's {shard} and {replica} macros
#                       (default 01 and replica-01); scripts/ch-cluster.sh sets all three
#
# The server listens on 127.0.0.1 only; the `default` user has no password and is
# accepted from ::1 / 127.0.0.1 only. Server time zone is UTC.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"

DATA_DIR="${BADGE_CH_DIR:-$REPO_DIR/.data/clickhouse}"
HTTP_PORT="${BADGE_CH_HTTP_PORT:-18123}"
TCP_PORT="${BADGE_CH_TCP_PORT:-19000}"
INTERSERVER_PORT="${BADGE_CH_INTERSERVER_PORT:-19009}"
START_TIMEOUT="${BADGE_CH_START_TIMEOUT:-30}"
ZOOKEEPER="${BADGE_CH_ZOOKEEPER:-}"
STOP_TIMEOUT=30

log() { printf 'clickhouse.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for p in "$HTTP_PORT" "$TCP_PORT"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]] || (( p < 1 || p > 65535 )); then
        die "invalid port: $p"
    fi
done
[[ "$HTTP_PORT" != "$TCP_PORT" ]] || die "BADGE_CH_HTTP_PORT and BADGE_CH_TCP_PORT must differ"
if [[ -n "$ZOOKEEPER" && ! "$ZOOKEEPER" =~ ^[^:]+:[0-9]+$ ]]; then
    die "BADGE_CH_ZOOKEEPER must be HOST:PORT, got: $ZOOKEEPER"
fi

# Absolute path without requiring the directory to exist yet.
case "$DATA_DIR" in
    /*) ;;
    *) DATA_DIR="$PWD/$DATA_DIR" ;;
esac
DATA_DIR="${DATA_DIR%/}"

ETC_DIR="$DATA_DIR/etc"
DB_DIR="$DATA_DIR/db"
LOG_DIR="$DATA_DIR/log"
RUN_DIR="$DATA_DIR/run"
CONFIG_FILE="$ETC_DIR/config.xml"
USERS_FILE="$ETC_DIR/users.xml"
PID_FILE="$RUN_DIR/clickhouse-server.pid"
LOG_FILE="$LOG_DIR/clickhouse-server.log"
ERR_LOG="$LOG_DIR/clickhouse-server.err.log"
STDERR_LOG="$LOG_DIR/stderr.log"
URL="http://127.0.0.1:$HTTP_PORT"

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

server_bin() {
    if command -v clickhouse-server >/dev/null 2>&1; then
        command -v clickhouse-server
    elif [[ -x /usr/sbin/clickhouse-server ]]; then
        echo /usr/sbin/clickhouse-server
    elif command -v clickhouse >/dev/null 2>&1; then
        # single-binary builds: `clickhouse server ...`
        echo "$(command -v clickhouse) server"
    else
        return 1
    fi
}

client_bin() {
    if command -v clickhouse-client >/dev/null 2>&1; then
        command -v clickhouse-client
    elif command -v clickhouse >/dev/null 2>&1; then
        echo "$(command -v clickhouse) client"
    else
        return 1
    fi
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

ensure_installed() {
    if server_bin >/dev/null && client_bin >/dev/null; then
        return 0
    fi
    log "installing clickhouse-server clickhouse-client (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    # The package's postinst tries to start the service via invoke-rc.d; without an
    # init system that start is refused/fails harmlessly, we start our own instance.
    if ! as_root apt-get install -y -q clickhouse-server clickhouse-client >/dev/null; then
        log "apt-get install failed, refreshing package lists and retrying"
        as_root apt-get update -q >/dev/null
        as_root apt-get install -y -q clickhouse-server clickhouse-client >/dev/null
    fi
    server_bin >/dev/null || die "clickhouse-server still not found after install"
    client_bin >/dev/null || die "clickhouse-client still not found after install"
}

# HTTP GET against the local server; prints the body, fails on non-200.
http_get() {
    local path="$1"
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 5 "$URL$path"
    else
        local line status body
        exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" || return 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
        IFS= read -r -t 5 line <&3 || { exec 3<&-; return 1; }
        status="$(printf '%s' "$line" | awk '{print $2}')"
        # skip headers
        while IFS= read -r -t 5 line <&3; do
            line="${line%$'\r'}"
            [[ -z "$line" ]] && break
        done
        body="$(cat <&3)"
        exec 3<&-
        [[ "$status" == 200 ]] || return 1
        printf '%s\n' "$body"
    fi
}

ping_ok() {
    local out
    out="$(http_get /ping 2>/dev/null)" || return 1
    [[ "$out" == "Ok." ]]
}

port_in_use() {
    # succeeds when something accepts connections on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Succeeds when process $1 owns the listening socket on 127.0.0.1:$2 (or when that
# cannot be determined because /proc is not readable). Guards against another
# server on the same port answering our /ping while ours is still starting/dying.
pid_listens_on() {
    local pid="$1" port="$2" hexport inodes inode fd
    [[ -r /proc/net/tcp && -d "/proc/$pid/fd" ]] || return 0
    hexport="$(printf '%04X' "$port")"
    # local_address 0100007F:PORT (127.0.0.1) or 00000000:PORT, state 0A = LISTEN
    inodes="$(awk -v p=":$hexport" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)"
    [[ -n "$inodes" ]] || return 1
    for fd in "/proc/$pid/fd"/*; do
        for inode in $inodes; do
            if [[ "$(readlink "$fd" 2>/dev/null)" == "socket:[$inode]" ]]; then
                return 0
            fi
        done
    done
    return 1
}

read_pid() {
    [[ -s "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    echo "$pid"
}

pid_is_ours() {
    # alive and really a clickhouse server using our config (not a recycled pid)
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$CONFIG_FILE"
}

running_pid() {
    local pid
    pid="$(read_pid)" || return 1
    pid_is_ours "$pid" || return 1
    echo "$pid"
}

ERR_LOG_OFFSET=0   # bytes of the error log that predate this start; not shown again

show_logs() {
    if [[ -s "$STDERR_LOG" ]]; then
        log "---- last lines of $STDERR_LOG ----"
        tail -n 30 "$STDERR_LOG" >&2
    fi
    if [[ -s "$ERR_LOG" ]]; then
        log "---- last lines of $ERR_LOG (this start) ----"
        tail -c "+$((ERR_LOG_OFFSET + 1))" "$ERR_LOG" | tail -n 30 >&2
    fi
}

# Which user runs the server. Debian's 18.16 runs fine as root (checked), and
# newer releases started as root only switch to the owner of the data directory,
# so by default the server runs as whoever calls this script. Set BADGE_CH_USER
# (e.g. to `clickhouse`, created by the Debian package) to run it unprivileged
# when calling as root; the data directory is then chown'd to that user.
run_user() {
    local want="${BADGE_CH_USER:-}"
    if [[ -n "$want" && $EUID -eq 0 ]]; then
        id -u "$want" >/dev/null 2>&1 || die "BADGE_CH_USER=$want: no such user"
        echo "$want"
    else
        id -un
    fi
}

# Extra config for BADGE_CH_ZOOKEEPER: the cluster `badge` (one node by default).
cluster_config() {
    [[ -n "$ZOOKEEPER" ]] || return 0
    local zk_host="${ZOOKEEPER%:*}" zk_port="${ZOOKEEPER##*:}"
    local nodes="${BADGE_CH_CLUSTER_NODES:-127.0.0.1:$TCP_PORT}" shard replica
    cat <<EOF

    <!-- BADGE_CH_ZOOKEEPER: the cluster for schema/cluster/ -->
    <zookeeper>
        <node>
            <host>$zk_host</host>
            <port>$zk_port</port>
        </node>
    </zookeeper>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
    <!-- A replica only becomes active (and so can apply a replicated ALTER)
         with an interserver port, even when it has no peer to fetch from;
         its peers fetch parts from it there. -->
    <!-- After a crash (kill -9) a replica may hold parts of an insert that
         never reached ZooKeeper, so never confirmed to the client (which
         sends it again). By default a replica whose parts differ that much
         from ZooKeeper's refuses to start; this lets it set them aside in
         detached/ and fetch from its peer instead. -->
    <merge_tree>
        <replicated_max_ratio_of_wrong_parts>1</replicated_max_ratio_of_wrong_parts>
    </merge_tree>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>$INTERSERVER_PORT</interserver_http_port>
    <remote_servers>
        <badge>
EOF
    local shards replicas
    IFS=';' read -r -a shards <<<"$nodes"
    for shard in "${shards[@]}"; do
        printf '            <shard>\n                <internal_replication>true</internal_replication>\n'
        IFS=',' read -r -a replicas <<<"$shard"
        for replica in "${replicas[@]}"; do
            [[ "$replica" =~ ^[^:]+:[0-9]+$ ]] || die "BADGE_CH_CLUSTER_NODES: bad address $replica"
            printf '                <replica>\n                    <host>%s</host>\n                    <port>%s</port>\n                </replica>\n' \
                "${replica%:*}" "${replica##*:}"
        done
        printf '            </shard>\n'
    done
    cat <<EOF
        </badge>
    </remote_servers>
    <macros>
        <cluster>badge</cluster>
        <shard>${BADGE_CH_SHARD:-01}</shard>
        <replica>${BADGE_CH_REPLICA:-replica-01}</replica>
    </macros>
EOF
}

write_config() {
    mkdir -p "$ETC_DIR" "$DB_DIR" "$LOG_DIR" "$RUN_DIR" \
        "$DATA_DIR/tmp" "$DATA_DIR/user_files" "$DATA_DIR/format_schemas"

    cat >"$CONFIG_FILE" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/clickhouse.sh; rewritten on every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$LOG_FILE</log>
        <errorlog>$ERR_LOG</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>

    <listen_host>127.0.0.1</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$TCP_PORT</tcp_port>

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>

    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>

    <path>$DB_DIR/</path>
    <tmp_path>$DATA_DIR/tmp/</tmp_path>
    <user_files_path>$DATA_DIR/user_files/</user_files_path>
    <format_schema_path>$DATA_DIR/format_schemas/</format_schema_path>

    <users_config>$USERS_FILE</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>

    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>

    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>

    <!-- dev instance: allow dropping tables of any size -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
$(cluster_config)
</yandex>
EOF

    cat >"$USERS_FILE" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by scripts/clickhouse.sh; rewritten on every start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>

    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>

    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        if ping_ok && pid_listens_on "$pid" "$HTTP_PORT"; then
            echo "clickhouse already running (pid $pid) at $URL"
            return 0
        fi
        log "pid $pid is alive but $URL/ping does not answer yet; waiting"
    else
        ensure_installed
        # 18.16 refuses to start when the pid file exists ("Pid file exists, should not start daemon").
        rm -f "$PID_FILE"

        local p
        for p in "$HTTP_PORT" "$TCP_PORT"; do
            if port_in_use "$p"; then
                die "port 127.0.0.1:$p is already in use by another process (set BADGE_CH_HTTP_PORT / BADGE_CH_TCP_PORT)"
            fi
        done

        write_config
        : >"$STDERR_LOG"
        ERR_LOG_OFFSET="$(stat -c %s "$ERR_LOG" 2>/dev/null || echo 0)"

        local user srv
        user="$(run_user)"
        srv="$(server_bin)"
        if [[ "$user" != "$(id -un)" ]]; then
            chown -R "$user:" "$DATA_DIR"
        fi

        local cmd
        read -r -a cmd <<<"$srv"   # "$srv" may be "clickhouse server"
        cmd+=("--config-file=$CONFIG_FILE" --daemon "--pid-file=$PID_FILE")
        (
            cd "$DATA_DIR"
            if [[ "$user" != "$(id -un)" ]]; then
                if command -v runuser >/dev/null 2>&1; then
                    exec runuser -u "$user" -- "${cmd[@]}"
                else
                    exec su -s /bin/sh "$user" -c "$(printf '%q ' "${cmd[@]}")"
                fi
            else
                exec "${cmd[@]}"
            fi
        ) </dev/null >>"$STDERR_LOG" 2>&1 || {
            show_logs
            die "clickhouse-server --daemon failed"
        }
    fi

    # --daemon returns 0 even if the server dies right after (e.g. port taken),
    # so require a live pid from our pid file AND a good /ping.
    local deadline=$((SECONDS + START_TIMEOUT)) seen_pid=""
    while (( SECONDS < deadline )); do
        if ! pid="$(read_pid)"; then
            # the server removes its pid file when it exits
            if [[ -n "$seen_pid" ]]; then
                show_logs
                die "clickhouse-server (pid $seen_pid) exited during startup"
            fi
        else
            seen_pid="$pid"
            if ! kill -0 "$pid" 2>/dev/null; then
                show_logs
                die "clickhouse-server (pid $pid) exited during startup"
            fi
            if ping_ok && pid_listens_on "$pid" "$HTTP_PORT"; then
                echo "clickhouse started (pid $pid) at $URL (native port $TCP_PORT, data $DATA_DIR)"
                return 0
            fi
        fi
        sleep 0.5
    done
    show_logs
    if pid="$(read_pid)" && kill -0 "$pid" 2>/dev/null; then
        log "killing pid $pid that did not become ready"
        kill -TERM "$pid" 2>/dev/null || true
    fi
    die "clickhouse did not answer $URL/ping with 'Ok.' within ${START_TIMEOUT}s"
}

cmd_stop() {
    local pid
    if ! pid="$(read_pid)"; then
        echo "clickhouse not running (no pid file at $PID_FILE)"
        return 0
    fi
    if ! pid_is_ours "$pid"; then
        echo "clickhouse not running (stale pid file, pid $pid)"
        rm -f "$PID_FILE"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill -0 "$pid" 2>/dev/null && die "could not stop pid $pid"
    rm -f "$PID_FILE"
    echo "clickhouse stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if ping_ok && pid_listens_on "$pid" "$HTTP_PORT"; then
            echo "running (pid $pid) at $URL, native port $TCP_PORT, data $DATA_DIR"
            return 0
        fi
        echo "starting or unhealthy (pid $pid alive, $URL/ping not answering)"
        return 3
    fi
    echo "stopped (data $DATA_DIR)"
    return 3
}

cmd_client() {
    local cli
    cli="$(client_bin)" || die "clickhouse-client not installed (run: $0 start)"
    # shellcheck disable=SC2086  # $cli may be "clickhouse client"
    exec $cli --host 127.0.0.1 --port "$TCP_PORT" "$@"
}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

main() {
    local sub="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$sub" in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        url) echo "$URL" ;;
        pidfile) echo "$PID_FILE" ;;
        client) cmd_client "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
