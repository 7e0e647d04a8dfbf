#!/usr/bin/env bash
# Rebuild the BI aggregates (badge_latest, attendance_daily) of a database from
# its row tables, once per ingest key.
#
#   scripts/rebuild-aggregates.sh DB              one node (schema/)
#   scripts/rebuild-aggregates.sh DB CLUSTER      a cluster (schema/cluster/), from any node
#
# Why: the materialized views fill the aggregates as rows arrive, so they count
# a row as often as it was inserted (a retried insert on one node), and on
# ClickHouse 18.16 a replica killed between a block's commit and its views'
# commit leaves the aggregates without that block (the retry is deduplicated,
# and 18.16 does not run the views for a deduplicated block). The row tables
# are right in both cases; this makes the aggregates agree with them.
#
# Stop the ingesters first (rows inserted while it runs may be counted twice
# or not at all). Every materialized view of DB is re-run over its source
# table, read through `LIMIT 1 BY ingest_instance, ingest_shard, ingest_seq`,
# after its target is emptied (TRUNCATE); the SELECTs are those of the views
# themselves (system.tables), so they cannot drift from the schema.
#
# TRUNCATE ... ON CLUSTER, not ALTER ... ON CLUSTER DROP PARTITION: 18.16 runs
# a distributed ALTER of a replicated table once per shard, and when both
# replicas of a shard take the task at the same moment, the second one's
# DDLWorker fails to create the task's `executed` node ("Node exists") and
# its thread ends, so that node runs no further ON CLUSTER statement until it
# is restarted (each one then times out, code 159). A TRUNCATE runs on every
# host, with no such step.
#
# Environment: BADGE_CH_URL (default: `scripts/clickhouse.sh url`).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
URL="${BADGE_CH_URL:-$("$SCRIPT_DIR/clickhouse.sh" url)}"
URL="${URL%/}"
DB="${1:-}"
CLUSTER="${2:-}"

die() { printf 'rebuild-aggregates: error: %s\n' "$*" >&2; exit 1; }
[[ "$DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "usage: $0 DB [CLUSTER]"
[[ -z "$CLUSTER" || "$CLUSTER" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad cluster name: $CLUSTER"

# sql SQL: run it, print the answer; fail with ClickHouse's words. Inserts
# reach every shard before returning, and are never taken for a retry of an
# earlier block (a rebuilt block may well equal one inserted before).
sql() {
    local body code
    body="$(mktemp)"
    code="$(printf '%s' "$1" | curl -sS -o "$body" -w '%{http_code}' --data-binary @- \
        "$URL/?insert_distributed_sync=1&insert_deduplicate=0")" || { rm -f "$body"; die "cannot reach $URL"; }
    if [[ "$code" != 200 ]]; then
        printf '%s\n' "$1" >&2
        cat "$body" >&2
        rm -f "$body"
        die "statement failed (HTTP $code)"
    fi
    cat "$body"
    rm -f "$body"
}

on_cluster=""
if [[ -n "$CLUSTER" ]]; then
    on_cluster=" ON CLUSTER $CLUSTER"
    hosts="$(sql "SELECT count() FROM system.clusters WHERE cluster = '$CLUSTER'")"
    [[ "$hosts" -gt 0 ]] || die "no cluster $CLUSTER at $URL"
fi

# name <TAB> create_table_query of every materialized view
views="$(sql "SELECT name, create_table_query FROM system.tables WHERE database = '$DB' AND engine = 'MaterializedView' ORDER BY name FORMAT TSVRaw")"
[[ -n "$views" ]] || die "no materialized views in $DB"

# 1. empty every target (each once, whichever views feed it)
targets="$(printf '%s\n' "$views" | sed -E 's/^[^\t]*\t.* TO '"$DB"'\.([A-Za-z0-9_]+) .*$/\1/' | sort -u)"
for target in $targets; do
    sql "TRUNCATE TABLE $DB.$target$on_cluster" >/dev/null
    printf 'emptied %s\n' "$target"
done

# 2. each view's SELECT again, over its source once per ingest key, into the
#    target (the Distributed table of the same name on a cluster, which
#    sends each badge's rows to its shard)
while IFS=$'\t' read -r name create; do
    target="$(printf '%s' "$create" | sed -E 's/^.* TO '"$DB"'\.([A-Za-z0-9_]+) .*$/\1/')"
    select="$(printf '%s' "$create" | sed -E 's/^.*\) AS (SELECT .*)$/\1/')"
    source="$(printf '%s' "$select" | sed -E 's/^.* FROM '"$DB"'\.([A-Za-z0-9_]+)( .*)?$/\1/')"
    if [[ -n "$CLUSTER" ]]; then
        target="${target%_local}"
        source="${source%_local}"
    fi
    once="(SELECT * FROM $DB.$source LIMIT 1 BY ingest_instance, ingest_shard, ingest_seq)"
    select="$(printf '%s' "$select" | sed -E 's/ FROM '"$DB"'\.[A-Za-z0-9_]+( |$)/ FROM '"${once//\//\\/}"'\1/')"
    sql "INSERT INTO $DB.$target $select" >/dev/null
    printf 'rebuilt %s from %s (%s)\n' "$target" "$source" "$name"
done <<<"$views"
