#!/usr/bin/env bash
# Apply and check the ClickHouse schema in schema/ over the HTTP interface.
#
#   scripts/apply-schema-check.sh apply [DB]   apply schema/*.sql once to DB (default: badges)
#   scripts/apply-schema-check.sh check        fresh database, apply every file twice (must be
#                                              idempotent), insert sample rows, assert the
#                                              materialized views, run every ```sql block of
#                                              schema/README.md and compare each result with
#                                              readme_expected, drop the database
#   scripts/apply-schema-check.sh apply-cluster [DB [CLUSTER]]
#                                              apply schema/cluster/*.sql (CLUSTER default: badge,
#                                              substituted for {cluster})
#   scripts/apply-schema-check.sh check-cluster [CLUSTER]
#                                              `check` for schema/cluster/ on a server that has
#                                              ZooKeeper and CLUSTER (scripts/clickhouse.sh with
#                                              BADGE_CH_ZOOKEEPER gives a one-node cluster `badge`);
#                                              also compares every table's columns with schema/
#   scripts/apply-schema-check.sh split FILE   print the statements of FILE as the applier sees them
#
# Environment:
#   BADGE_CH_URL     ClickHouse HTTP URL (default: `scripts/clickhouse.sh url`)
#   BADGE_SCHEMA_DIR schema directory (default: <repo>/schema)
#   CHECK_DB         database used by `check` (default: badges_schema_check; dropped first!)
#   VERBOSE=1        print query results
#
# Statement format (what a Rust applier must do the same way): files are applied in
# file-name order; lines whose first non-blank characters are `--` are dropped; a
# statement ends with `;` at the end of a line; statements left empty are skipped;
# `{db}` is replaced by the database name. In schema/cluster/, `{cluster}` is replaced
# by the cluster name when one is given (apply-cluster, check-cluster do; 18.16 needs
# it), `{shard}` and `{replica}` are server macros and are never replaced.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
SCHEMA_DIR="${BADGE_SCHEMA_DIR:-$REPO_DIR/schema}"
URL="${BADGE_CH_URL:-$("$SCRIPT_DIR/clickhouse.sh" url)}"
URL="${URL%/}"
VERBOSE="${VERBOSE:-0}"
CLUSTER_NAME=""   # when set, substituted for {cluster}
CHECKING=0        # set by `check` and `check-cluster`

die() { printf 'apply-schema-check: error: %s\n' "$*" >&2; exit 1; }

valid_db() { [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "invalid database name: $1"; }

# split FILE: statements NUL-separated on stdout
split_sql() {
    awk '
        /^[[:space:]]*--/ { next }
        {
            buf = buf $0 "\n"
            if ($0 ~ /;[[:space:]]*$/) {
                sub(/;[[:space:]]*\n$/, "\n", buf)
                if (buf ~ /[^[:space:]]/) printf "%s%c", buf, 0
                buf = ""
            }
        }
        END { if (buf ~ /[^[:space:]]/) printf "%s%c", buf, 0 }
    ' "$1"
}

# ```sql blocks of a markdown file, one block after another (statements still end in `;`)
sql_blocks() {
    awk '
        /^```sql[[:space:]]*$/ { inside = 1; next }
        /^```/ { if (inside) { inside = 0; print ""; } next }
        inside { print }
    ' "$1"
}

# run_sql SQL [QUERY_STRING]: POST one statement, print the body on success when VERBOSE=1
run_sql() {
    local sql="$1" qs="${2:-}" body code
    body="$(mktemp)"
    if ! code="$(printf '%s' "$sql" | curl -sS -o "$body" -w '%{http_code}' --data-binary @- "$URL/?$qs")"; then
        rm -f "$body"
        die "cannot reach ClickHouse at $URL (start it with scripts/clickhouse.sh start)"
    fi
    if [[ "$code" != 200 ]]; then
        printf '\n---- statement failed (HTTP %s) ----\n%s\n---- server said ----\n' "$code" "$sql" >&2
        cat "$body" >&2
        rm -f "$body"
        return 1
    fi
    if [[ "$VERBOSE" == 1 ]]; then cat "$body"; fi
    rm -f "$body"
}

# run_sql_output SQL [QUERY_STRING]: like run_sql, but prints the result; fails on an error answer
run_sql_output() {
    local sql="$1" qs="${2:-}" body code
    body="$(mktemp)"
    if ! code="$(printf '%s' "$sql" | curl -sS -o "$body" -w '%{http_code}' --data-binary @- "$URL/?$qs")"; then
        rm -f "$body"
        die "cannot reach ClickHouse at $URL (start it with scripts/clickhouse.sh start)"
    fi
    if [[ "$code" != 200 ]]; then
        printf '\n---- statement failed (HTTP %s) ----\n%s\n---- server said ----\n' "$code" "$sql" >&2
        cat "$body" >&2
        rm -f "$body"
        return 1
    fi
    cat "$body"
    rm -f "$body"
}

# query SQL [QUERY_STRING]: print the result (or the server's error text)
query() {
    printf '%s' "$1" | curl -sS --data-binary @- "$URL/?${2:-}"
}

# modified_already STMT: true when STMT is `ALTER TABLE db.t ON CLUSTER c
# MODIFY COLUMN ...` (nothing but MODIFY COLUMN clauses) and every host of the
# cluster already has each of those columns with exactly that type.
#
# Why: 18.16 runs a distributed ALTER of a replicated table once per shard,
# and when both replicas of a shard take the task at the same moment the
# second one's DDLWorker fails to create the task's `executed` node ("Node
# exists", then "Terminating" in its log) and its thread ends: that node runs
# no further ON CLUSTER statement until it is restarted, and each one times
# out (code 159). The cluster test hit it in 2 of 5 CI runs. A schema applied to
# new tables (already of the new types) then sends no such ALTER at all.
modified_already() {
    local flat db table rest name type hosts addresses have
    flat="$(printf '%s' "$1" | tr '\n' ' ' | sed -E 's/[[:space:]]+/ /g; s/^ //; s/ $//')"
    [[ "$flat" =~ ^ALTER\ TABLE\ ([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\ ON\ CLUSTER\ \'?[A-Za-z0-9_]+\'?\ (MODIFY\ COLUMN\ .*)$ ]] || return 1
    db="${BASH_REMATCH[1]}" table="${BASH_REMATCH[2]}" rest="${BASH_REMATCH[3]}"
    # the hosts, and their addresses for remote(), in one answer
    IFS=$'\t' read -r hosts addresses < <(run_sql_output "SELECT count(), arrayStringConcat(groupArray(concat(host_name, ':', toString(port))), ',') FROM system.clusters WHERE cluster = '$CLUSTER_NAME' FORMAT TSVRaw") || return 1
    [[ "$hosts" -gt 0 ]] || return 1
    while IFS= read -r clause; do
        clause="${clause#MODIFY COLUMN }"
        name="${clause%% *}" type="${clause#* }"
        [[ "$name" =~ ^[A-Za-z0-9_]+$ && -n "$type" && "$type" != "$clause" ]] || return 1
        type="${type//\'/\\\'}"
        have="$(run_sql_output "SELECT count() FROM remote('$addresses', system.columns) WHERE database = '$db' AND table = '$table' AND name = '$name' AND type = '$type'")" || return 1
        [[ "$have" == "$hosts" ]] || return 1
    done < <(printf '%s\n' "$rest" | sed 's/, MODIFY COLUMN /\n/g')
}

apply_file() {
    local db="$1" file="$2" stmt n=0 skipped=0
    while IFS= read -r -d '' stmt; do
        stmt="${stmt//\{db\}/$db}"
        if [[ -n "$CLUSTER_NAME" ]]; then stmt="${stmt//\{cluster\}/$CLUSTER_NAME}"; fi
        n=$((n + 1))
        if [[ -n "$CLUSTER_NAME" ]] && modified_already "$stmt"; then
            skipped=$((skipped + 1))
            # `check-cluster` still has ClickHouse check the statement: on
            # this node alone (a no-op, as the types are there already).
            if [[ "$CHECKING" == 1 ]]; then
                run_sql "${stmt/ ON CLUSTER \'$CLUSTER_NAME\'/}" || die "$file: statement $n failed (on this node)"
            fi
            continue
        fi
        run_sql "$stmt" || die "$file: statement $n failed"
    done < <(split_sql "$file")
    if [[ "$skipped" -gt 0 ]]; then
        printf '  %-28s %d statement(s), %d ALTER ON CLUSTER already in place\n' "$(basename "$file")" "$n" "$skipped"
    else
        printf '  %-28s %d statement(s)\n' "$(basename "$file")" "$n"
    fi
}

apply_all() {
    local db="$1" dir="${2:-$SCHEMA_DIR}" f found=0
    valid_db "$db"
    for f in "$dir"/[0-9]*.sql; do
        [[ -e "$f" ]] || continue
        found=1
        apply_file "$db" "$f"
    done
    [[ "$found" == 1 ]] || die "no schema files in $dir"
}

assert_eq() {
    local what="$1" sql="$2" want="$3" got
    got="$(query "$sql" "$CHECK_QS")"
    if [[ "$got" != "$want" ]]; then
        printf 'FAIL %s\n  query: %s\n  want: %s\n  got:  %s\n' "$what" "$sql" "$want" "$got" >&2
        FAILED=$((FAILED + 1))
    else
        printf 'ok   %s\n' "$what"
        PASSED=$((PASSED + 1))
    fi
}

sample_rows() {
    # Two badges on 2024-05-06. Badge 1 is in UTC+8 (clock-in 07:55 local = 23:55 UTC the
    # day before), badge 2 in UTC-5. Beacon AA:BB:CC:DD:EE:01 is in the registry.
    cat <<'EOF'
INSERT INTO beacons (mac, name, lat, lon, address, active, updated_at) VALUES
    (MACStringToNum('AA:BB:CC:DD:EE:01'), 'Gate A old name', 31.2301, 121.4701, 'Gate A', 1, '2024-05-01 00:00:00'),
    (MACStringToNum('AA:BB:CC:DD:EE:01'), 'Gate A', 31.2301, 121.4701, 'Gate A, Building 1', 1, '2024-05-02 00:00:00'),
    (MACStringToNum('AA:BB:CC:DD:EE:02'), 'Canteen', 31.2310, 121.4710, 'Canteen', 1, '2024-05-02 00:00:00');
INSERT INTO device_events (imei, server_time, event, protocol, serial, device_type, tz_offset_min, language, conn_id, peer_addr, reason, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-05 23:50:00', 'login', 1, 1, 4660, 480, 1, 1, '127.0.0.1:40001', '', 'check', 0, 1),
    (868120300000002, '2024-05-06 11:00:00', 'login', 1, 1, 4660, -300, 2, 2, '127.0.0.1:40002', '', 'check', 1, 1),
    (868120300000002, '2024-05-06 23:00:00', 'offline', 0, 0, 0, 0, 0, 2, '127.0.0.1:40002', 'heartbeat timeout', 'check', 1, 2);
INSERT INTO heartbeats (imei, server_time, protocol, serial, terminal_info, battery, gsm_signal, language, extension, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 08:00:00', 19, 2, 70, 90, 4, 0, '', 'check', 0, 2),
    (868120300000001, '2024-05-06 10:00:00', 54, 3, 64, 85, 3, 1, '', 'check', 0, 3),
    (868120300000002, '2024-05-06 12:00:00', 19, 2, 0, 40, 2, 0, '', 'check', 1, 3);
INSERT INTO locations (imei, device_time, server_time, device_time_valid, protocol, serial, source, has_position, lat, lon, position_source, accuracy_m, speed_kmh, course, satellites, gps_positioned, realtime, mcc, mnc, lac, cell_id, rssi, report_mode, mileage, cells.lac, cells.cell_id, cells.rssi, wifi.mac, wifi.rssi, address, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 01:00:00', '2024-05-06 01:00:02', 1, 34, 4, 'gps', 1, 31.2300, 121.4700, 'gps', 5, 3, 90, 9, 1, 1, 460, 0, 9520, 3671, 0, 0, 1200, [], [], [], [], [], 'Gate A, Building 1', 'check', 0, 4),
    (868120300000001, '2024-05-06 02:00:00', '2024-05-06 02:00:01', 1, 34, 5, 'gps', 1, 31.2311, 121.4712, 'gps', 5, 0, 0, 8, 1, 1, 460, 0, 9520, 3671, 0, 0, 1300, [], [], [], [], [], 'Canteen', 'check', 0, 5),
    (868120300000001, '2024-05-06 03:00:00', '2024-05-06 03:00:01', 1, 44, 6, 'wifi', 0, 0, 0, 'none', 0, 0, 0, 0, 0, 1, 460, 0, 9520, 3671, 40, 0, 0, [9520, 9521], [3672, 3673], [30, 20], [MACStringToNum('11:22:33:44:55:66')], [60], '', 'check', 0, 6),
    (868120300000002, '2024-05-06 12:30:00', '2024-05-06 12:30:01', 1, 40, 4, 'lbs', 1, 40.7128, -74.0060, 'cell', 550, 0, 0, 0, 0, 1, 310, 260, 1234, 99887766, 25, 0, 0, [1234], [99887767], [18], [], [], 'New York', 'check', 1, 4);
INSERT INTO alarms (imei, device_time, server_time, device_time_valid, protocol, serial, source, alarm_code, alarm_type, fence_id, has_position, lat, lon, position_source, accuracy_m, speed_kmh, course, satellites, gps_positioned, terminal_info, voltage_level, battery, gsm_signal, language, mcc, mnc, lac, cell_id, cells.lac, cells.cell_id, cells.rssi, wifi.mac, wifi.rssi, address, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 01:10:00', '2024-05-06 01:10:01', 1, 163, 7, 'single_fence', 1, 'sos', 0, 1, 31.23, 121.47, 'gps', 5, 0, 0, 7, 1, 0, 5, 85, 4, 1, 460, 0, 9520, 3671, [], [], [], [], [], 'Gate A', 'check', 0, 7),
    (868120300000001, '2024-05-06 01:40:00', '2024-05-06 01:40:01', 1, 164, 8, 'multi_fence', 19, 'fence_in', 3, 1, 31.23, 121.47, 'gps', 5, 0, 0, 7, 1, 0, 5, 85, 4, 1, 460, 0, 9520, 3671, [], [], [], [], [], 'Gate A', 'check', 0, 8),
    (868120300000002, '2024-05-06 12:40:05', '2024-05-06 12:40:05', 0, 165, 5, 'lbs', 1, 'sos', 0, 0, 0, 0, 'none', 0, 0, 0, 0, 0, 0, 3, 51, 2, 2, 310, 260, 1234, 99887766, [], [], [], [], [], '', 'check', 1, 5);
INSERT INTO attendance (imei, device_time, server_time, device_time_valid, tz_offset_min, protocol, serial, kind, gps_positioned, has_position, lat, lon, position_source, accuracy_m, speed_kmh, course, satellites, terminal_info, voltage_level, battery, gsm_signal, mcc, mnc, lac, cell_id, rssi, cells.lac, cells.cell_id, cells.rssi, wifi.mac, wifi.rssi, address, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-05 23:55:00', '2024-05-05 23:55:01', 1, 480, 176, 9, 'clock_in', 1, 1, 31.23, 121.47, 'gps', 5, 0, 0, 8, 4, 5, 85, 4, 460, 0, 9520, 3671, 40, [9520], [3672], [30], [MACStringToNum('11:22:33:44:55:66')], [60], 'Gate A', 'check', 0, 9),
    (868120300000001, '2024-05-06 10:05:00', '2024-05-06 10:05:01', 1, 480, 176, 10, 'clock_out', 1, 1, 31.23, 121.47, 'gps', 5, 0, 0, 8, 8, 5, 85, 4, 460, 0, 9520, 3671, 40, [], [], [], [], [], 'Gate A', 'check', 0, 10),
    (868120300000002, '2024-05-06 13:02:00', '2024-05-06 13:02:01', 1, -300, 177, 6, 'clock_in', 0, 0, 0, 0, 'none', 0, 0, 0, 0, 4, 3, 51, 2, 310, 260, 1234, 99887766, 25, [], [], [], [], [], '', 'check', 1, 6);
INSERT INTO bluetooth (imei, device_time, server_time, device_time_valid, tz_offset_min, protocol, serial, kind, attendance, terminal_info, beacon_index, beacon_count, is_best, mac, uuid, major, minor, rssi, battery, battery_unit, beacon_known, beacon_name, beacon_lat, beacon_lon, beacon_address, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 00:30:00', '2024-05-06 00:30:01', 1, 480, 178, 11, 'punch', 'clock_in', 4, 0, 1, 1, MACStringToNum('AA:BB:CC:DD:EE:01'), unhex('FDA50693A4E24FB1AFCFC6EB07647825'), 10001, 1, -62, 3.01, 'V', 1, 'Gate A', 31.2301, 121.4701, 'Gate A, Building 1', 'check', 0, 11),
    (868120300000001, '2024-05-06 04:00:00', '2024-05-06 04:00:02', 1, 480, 179, 12, 'location', 'none', 0, 0, 2, 1, MACStringToNum('AA:BB:CC:DD:EE:02'), unhex('FDA50693A4E24FB1AFCFC6EB07647825'), 10001, 2, -70, 87, 'percent', 1, 'Canteen', 31.2310, 121.4710, 'Canteen', 'check', 0, 12),
    (868120300000001, '2024-05-06 04:00:00', '2024-05-06 04:00:02', 1, 480, 179, 12, 'location', 'none', 0, 1, 2, 0, MACStringToNum('AA:BB:CC:DD:EE:09'), unhex('FDA50693A4E24FB1AFCFC6EB07647825'), 10001, 9, -90, 2.95, 'V', 0, '', 0, 0, '', 'check', 0, 13);
INSERT INTO device_info (imei, server_time, protocol, serial, sub_protocol, iccid, imsi, gps_status, payload, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-05 23:51:00', 148, 14, 10, '89860000000000000001', '460001234567890', 255, '', 'check', 0, 14),
    (868120300000001, '2024-05-06 02:00:00', 148, 15, 9, '', '', 3, '', 'check', 0, 15);
INSERT INTO command_log (imei, event_time, command_id, created_at, kind, command_type, text, status, protocol, serial, server_flag, reply_text, error, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 02:10:00', 42, '2024-05-06 02:10:00', 'online_command', 'config', 'TIMER,60#', 'queued', 0, 0, 0, '', '', 'check', 0, 16),
    (868120300000001, '2024-05-06 02:10:01', 42, '2024-05-06 02:10:00', 'online_command', 'config', 'TIMER,60#', 'sent', 128, 20, 0, '', '', 'check', 0, 17),
    (868120300000001, '2024-05-06 02:10:03', 42, '2024-05-06 02:10:00', 'online_command', 'config', 'TIMER,60#', 'replied', 129, 21, 0, 'TIMER=60 OK', '', 'check', 0, 18);
INSERT INTO raw_frames (imei, server_time, conn_id, direction, protocol, serial, frame, crc_ok, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 08:00:00', 1, 'in', 19, 2, unhex('78780A134604040001000266DE0D0A'), 1, 'check', 0, 19);
INSERT INTO heartbeats (imei, server_time, protocol, serial, terminal_info, battery, gsm_signal, language, extension, ingest_instance, ingest_shard, ingest_seq) VALUES
    (868120300000001, '2024-05-06 10:00:00', 54, 3, 64, 85, 3, 1, '', 'check', 0, 3);
EOF
}

# readme_expected N: what the Nth statement of the ```sql blocks of
# schema/README.md must return on the sample rows above: a mode line, then
# the expected TabSeparated result. Modes: `exact`; `sorted` (rows tied in
# the ORDER BY may come in any order); `fields=K` (only the first K columns:
# the rest depends on now()). Exits 1 for an N with no expectation, so a new
# example cannot pass unchecked.
readme_expected() {
    case "$1" in
        1) printf 'fields=10\n868120300000001\t1\t1\t31.2311\t121.4712\t2024-05-06 02:00:00\tgps\tCanteen\t85\t2024-05-06 10:00:00\n868120300000002\t0\t1\t40.7128\t-74.006\t2024-05-06 12:30:00\tcell\tNew York\t40\t2024-05-06 12:30:01' ;;
        2) printf 'exact\n868120300000001\t2024-05-06 10:00:00\tlogin\n868120300000002\t2024-05-06 12:30:01\toffline' ;;
        3) printf 'exact\n2024-05-06 01:00:00\t2024-05-06 09:00:00\tgps\tgps\t31.23\t121.47\t5\tGate A, Building 1\n2024-05-06 02:00:00\t2024-05-06 10:00:00\tgps\tgps\t31.2311\t121.4712\t5\tCanteen' ;;
        4) printf 'exact\n868120300000001\t2024-05-06 07:55:00\t2024-05-06 18:05:00\t2\t1\t1\t2024-05-05 23:55:00\t2024-05-06 10:05:00\n868120300000002\t2024-05-06 08:02:00\t0000-00-00 00:00:00\t1\t0\t0\t2024-05-06 13:02:00\t0000-00-00 00:00:00' ;;
        5) printf 'exact\n868120300000001\t2024-05-05 23:55:00\tclock_in\tbadge\tGate A\n868120300000001\t2024-05-06 00:30:00\tclock_in\tbeacon\tGate A\n868120300000001\t2024-05-06 10:05:00\tclock_out\tbadge\tGate A\n868120300000002\t2024-05-06 13:02:00\tclock_in\tbadge\t' ;;
        6) printf 'exact\n2024-05-06 01:00:00\tfence_in\tmulti_fence\t1\t1\n2024-05-06 01:00:00\tsos\tsingle_fence\t1\t1\n2024-05-06 12:00:00\tsos\tlbs\t1\t1' ;;
        # EE:09 and EE:02 were first seen in the same second.
        7) printf 'sorted\nAA:BB:CC:DD:EE:01\tGate A\t1\t2024-05-06 00:30:00\t2024-05-06 00:30:00\t-62\nAA:BB:CC:DD:EE:09\t\t1\t2024-05-06 04:00:00\t2024-05-06 04:00:00\t-90\nAA:BB:CC:DD:EE:02\tCanteen\t1\t2024-05-06 04:00:00\t2024-05-06 04:00:00\t-70' ;;
        8) printf 'exact\nAA:BB:CC:DD:EE:02\tCanteen\t31.231\t121.471\tCanteen\t2024-05-02 00:00:00\nAA:BB:CC:DD:EE:01\tGate A\t31.2301\t121.4701\tGate A, Building 1\t2024-05-02 00:00:00' ;;
        9) printf 'exact\n42\t868120300000001\tTIMER,60#\treplied\t2024-05-06 02:10:03\tTIMER=60 OK' ;;
        10) printf 'exact\n868120300000001\t2024-05-06 03:00:00\t11:22:33:44:55:66\t60' ;;
        11) printf 'exact\ncheck\t0\t3\t2' ;;
        12) printf 'exact\n868120300000001\t2024-05-06 08:00:00\t90\t4\n868120300000001\t2024-05-06 10:00:00\t85\t3\n868120300000002\t2024-05-06 12:00:00\t40\t2' ;;
        *) return 1 ;;
    esac
}

# readme_shape MODE: stdin to the form it is compared in. Zero times are
# spelt as 18.16 does (newer servers print the epoch).
readme_shape() {
    local mode="$1"
    sed 's/1970-01-01 00:00:00/0000-00-00 00:00:00/g' | case "$mode" in
        sorted) LC_ALL=C sort ;;
        fields=*) cut -f "1-${mode#fields=}" ;;
        *) cat ;;
    esac
}

# Runs every statement of the ```sql blocks of schema/README.md and compares
# its result with readme_expected. A missing README, no statements, or a
# statement count that differs from the expectations is a failure too.
check_readme_examples() {
    local readme="$SCHEMA_DIR/README.md" tmp stmt n=0 spec mode want got
    if [[ ! -f "$readme" ]]; then
        printf 'FAIL no %s\n' "$readme" >&2
        FAILED=$((FAILED + 1))
        return
    fi
    tmp="$(mktemp)"
    sql_blocks "$readme" >"$tmp"
    while IFS= read -r -d '' stmt; do
        stmt="${stmt//\{db\}/$CHECK_DB}"
        n=$((n + 1))
        if ! spec="$(readme_expected "$n")"; then
            printf 'FAIL README statement %d has no expected result in %s (readme_expected)\n%s\n' \
                "$n" "${BASH_SOURCE[0]}" "$stmt" >&2
            FAILED=$((FAILED + 1))
            continue
        fi
        mode="${spec%%$'\n'*}"
        want="$(printf '%s\n' "${spec#*$'\n'}" | readme_shape "$mode")"
        if ! got="$(run_sql_output "$stmt" "$CHECK_QS")"; then
            FAILED=$((FAILED + 1))
            continue
        fi
        got="$(printf '%s\n' "$got" | readme_shape "$mode")"
        if [[ "$got" != "$want" ]]; then
            printf 'FAIL README statement %d (%s)\n%s\n  want:\n%s\n  got:\n%s\n' \
                "$n" "$mode" "$stmt" "$want" "$got" >&2
            FAILED=$((FAILED + 1))
        else
            printf 'ok   README statement %d: %d row(s)\n' "$n" "$(printf '%s\n' "$got" | grep -c .)"
            PASSED=$((PASSED + 1))
        fi
    done < <(split_sql "$tmp")
    rm -f "$tmp"
    if [[ "$n" == 0 ]]; then
        printf 'FAIL no sql statements in %s\n' "$readme" >&2
        FAILED=$((FAILED + 1))
    elif readme_expected "$((n + 1))" >/dev/null; then
        printf 'FAIL %s has %d sql statement(s), but there are expected results for more\n' \
            "$readme" "$n" >&2
        FAILED=$((FAILED + 1))
    fi
}

# cmd_check [CLUSTER]: without CLUSTER checks schema/, with it schema/cluster/
cmd_check() {
    local dir="$SCHEMA_DIR" on_cluster=""
    CHECK_DB="${CHECK_DB:-badges_schema_check}"
    valid_db "$CHECK_DB"
    CHECK_QS="database=$CHECK_DB"
    if [[ -n "${1:-}" ]]; then
        valid_db "$1"
        CLUSTER_NAME="$1"
        dir="$SCHEMA_DIR/cluster"
        on_cluster=" ON CLUSTER $CLUSTER_NAME"
        # inserts into Distributed tables reach the shards (and fire their MVs) before returning
        CHECK_QS="database=$CHECK_DB&insert_distributed_sync=1"
    fi
    PASSED=0
    FAILED=0
    CHECKING=1
    echo "ClickHouse $(query 'SELECT version()') at $URL, database $CHECK_DB, schema $dir"
    run_sql "DROP DATABASE IF EXISTS $CHECK_DB$on_cluster" >/dev/null

    echo "apply #1"
    apply_all "$CHECK_DB" "$dir"
    local tables1 tables2
    tables1="$(query "SELECT name, engine FROM system.tables WHERE database = '$CHECK_DB' ORDER BY name")"
    echo "apply #2 (must be a no-op)"
    apply_all "$CHECK_DB" "$dir" >/dev/null
    tables2="$(query "SELECT name, engine FROM system.tables WHERE database = '$CHECK_DB' ORDER BY name")"
    if [[ "$tables1" != "$tables2" ]]; then
        printf 'FAIL second apply changed the table list\n' >&2
        FAILED=$((FAILED + 1))
    else
        printf 'ok   idempotent (%d objects)\n' "$(printf '%s\n' "$tables1" | grep -c .)"
        PASSED=$((PASSED + 1))
    fi
    if [[ "$VERBOSE" == 1 ]]; then printf '%s\n' "$tables1"; fi

    echo "sample rows"
    local tmp stmt
    tmp="$(mktemp)"
    sample_rows >"$tmp"
    while IFS= read -r -d '' stmt; do
        run_sql "$stmt" "$CHECK_QS" || { rm -f "$tmp"; die "sample insert failed"; }
    done < <(split_sql "$tmp")
    rm -f "$tmp"

    # the last sample insert repeats heartbeat (check, 0, 3): a retried insert
    assert_eq "duplicate found by ingest key" \
        "SELECT ingest_instance, ingest_shard, ingest_seq, count() FROM heartbeats GROUP BY ingest_instance, ingest_shard, ingest_seq HAVING count() > 1" \
        "$(printf 'check\t0\t3\t2')"
    assert_eq "dedupe with LIMIT 1 BY" \
        "SELECT count() FROM (SELECT * FROM heartbeats LIMIT 1 BY ingest_instance, ingest_shard, ingest_seq)" "3"
    assert_eq "heartbeat ALIAS bits" \
        "SELECT gps_positioned, charging, acc_on, armed FROM heartbeats WHERE imei = 868120300000001 AND serial = 2" \
        "$(printf '1\t0\t1\t1')"
    assert_eq "badge_now position = latest positioned location" \
        "SELECT imei, lat, lon, pos_time, position_source, address FROM badge_now ORDER BY imei" \
        "$(printf '868120300000001\t31.2311\t121.4712\t2024-05-06 02:00:00\tgps\tCanteen\n868120300000002\t40.7128\t-74.006\t2024-05-06 12:30:00\tcell\tNew York')"
    assert_eq "badge_now battery/online/login fields" \
        "SELECT imei, battery, gsm_signal, heartbeat_time, session_event, online, device_type, tz_offset_min, language, iccid, imsi, last_seen FROM badge_now ORDER BY imei" \
        "$(printf '868120300000001\t85\t3\t2024-05-06 10:00:00\tlogin\t1\t4660\t480\t1\t89860000000000000001\t460001234567890\t2024-05-06 10:00:00\n868120300000002\t40\t2\t2024-05-06 12:00:00\toffline\t0\t4660\t-300\t2\t\t\t2024-05-06 12:30:01')"
    assert_eq "attendance_day uses the badge's local day" \
        "SELECT day, imei, first_clock_in, toUInt32(last_clock_out) = 0 ? 'none' : toString(last_clock_out), clock_ins, clock_outs, bt_punches, first_clock_in_local, toUInt32(last_clock_out_local) FROM attendance_day ORDER BY imei, day" \
        "$(printf '2024-05-06\t868120300000001\t2024-05-05 23:55:00\t2024-05-06 10:05:00\t2\t1\t1\t2024-05-06 07:55:00\t1715018700\n2024-05-06\t868120300000002\t2024-05-06 13:02:00\tnone\t1\t0\t0\t2024-05-06 08:02:00\t0')"
    assert_eq "beacons FINAL keeps the latest version" \
        "SELECT MACNumToString(mac), name FROM beacons FINAL ORDER BY mac" \
        "$(printf 'AA:BB:CC:DD:EE:01\tGate A\nAA:BB:CC:DD:EE:02\tCanteen')"
    assert_eq "Nested columns round-trip" \
        "SELECT cells.cell_id, arrayMap(m -> MACNumToString(m), wifi.mac) FROM locations WHERE source = 'wifi'" \
        "$(printf '[3672,3673]\t[%s]' "'11:22:33:44:55:66'")"

    echo "README examples"
    check_readme_examples
    if [[ -n "$on_cluster" ]]; then
        compare_with_single_node
    fi

    if [[ "${KEEP_DB:-0}" != 1 ]]; then
        run_sql "DROP DATABASE IF EXISTS $CHECK_DB$on_cluster" >/dev/null
    fi
    echo "$PASSED passed, $FAILED failed"
    [[ "$FAILED" == 0 ]]
}

# columns_sig DB TABLE WITH_KEYS: query giving one line describing all columns of DB.TABLE
columns_sig() {
    local extra="''"
    if [[ "$3" == 1 ]]; then
        extra="concat(' p', toString(is_in_partition_key), ' s', toString(is_in_sorting_key))"
    fi
    printf "SELECT groupArray(concat(name, ' ', type, ' ', default_kind, ' ', default_expression, %s)) FROM system.columns WHERE database = '%s' AND table = '%s'" \
        "$extra" "$1" "$2"
}

# The tables schema/cluster/ replicates whole to every node (no Distributed).
registry() { [[ "$1" == beacons || "$1" == devices ]]; }

# Cluster check: every table of schema/ must have the same columns (DESCRIBE) as its
# counterpart in schema/cluster/, both the Distributed table and <table>_local.
compare_with_single_node() {
    local single="${CHECK_DB}_single" name engine kind cl_name saved="$CLUSTER_NAME"
    CLUSTER_NAME=""
    run_sql "DROP DATABASE IF EXISTS $single" >/dev/null
    apply_all "$single" "$SCHEMA_DIR" >/dev/null
    CLUSTER_NAME="$saved"
    while IFS=$'\t' read -r name engine; do
        [[ -n "$name" ]] || continue
        case "$engine" in
            MaterializedView) kind="mv" ;;
            View) kind=view ;;
            *) kind=table ;;
        esac
        for cl_name in "$name" "${name}_local"; do
            if [[ "$kind" != table && "$cl_name" == *_local ]]; then continue; fi
            # the registries are replicated whole, without a _local table
            if registry "$name" && [[ "$cl_name" == *_local ]]; then continue; fi
            if [[ "$kind" == mv ]]; then
                # compare the target the MV writes to: same name in both
                assert_eq "$cl_name exists in cluster schema" \
                    "SELECT count() FROM system.tables WHERE database = '$CHECK_DB' AND name = '$cl_name'" "1"
                continue
            fi
            local keys=0
            # sorting/partition keys are compared for the MergeTree tables (not Distributed/View)
            if [[ "$kind" == table ]] && { [[ "$cl_name" == *_local ]] || registry "$name"; }; then keys=1; fi
            assert_eq "columns of $cl_name match schema/$name" \
                "$(columns_sig "$CHECK_DB" "$cl_name" "$keys")" \
                "$(query "$(columns_sig "$single" "$name" "$keys")")"
        done
    done < <(query "SELECT name, engine FROM system.tables WHERE database = '$single' ORDER BY name")
    run_sql "DROP DATABASE IF EXISTS $single" >/dev/null
}

main() {
    local sub="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$sub" in
        apply)
            local db="${1:-badges}"
            echo "applying $SCHEMA_DIR to database $db at $URL"
            apply_all "$db"
            ;;
        check) cmd_check ;;
        check-cluster) cmd_check "${1:-badge}" ;;
        apply-cluster)
            local db="${1:-badges}"
            CLUSTER_NAME="${2:-badge}"
            valid_db "$CLUSTER_NAME"
            echo "applying $SCHEMA_DIR/cluster to database $db on cluster $CLUSTER_NAME at $URL"
            apply_all "$db" "$SCHEMA_DIR/cluster"
            ;;
        split)
            [[ $# -eq 1 ]] || die "usage: $0 split FILE"
            local stmt i=0
            while IFS= read -r -d '' stmt; do
                i=$((i + 1))
                printf -- '-- [%d]\n%s\n' "$i" "$stmt"
            done < <(split_sql "$1")
            ;;
        *)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
            exit 2
            ;;
    esac
}

main "$@"
