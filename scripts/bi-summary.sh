#!/usr/bin/env bash
# What a BI user sees after a run: five badges from badge_now and attendance
# per day, as ClickHouse (one node or a cluster's Distributed tables) answers.
#
#   scripts/bi-summary.sh URL DATABASE
set -euo pipefail
URL="${1:?usage: $0 URL DATABASE}"
DATABASE="${2:?usage: $0 URL DATABASE}"
[[ "$DATABASE" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "bi-summary: bad database name: $DATABASE" >&2; exit 2; }
q() { curl -sS --fail-with-body "$URL/" --data-binary "$1"; }

echo "== BI: where are five badges now, and their battery (view badge_now)"
q "SELECT imei, round(lat, 5) AS lat, round(lon, 5) AS lon, position_source, battery, session_event FROM $DATABASE.badge_now ORDER BY imei LIMIT 5 FORMAT PrettyCompactMonoBlock"
echo "== BI: attendance per day (view attendance_day)"
q "SELECT day, count() AS badges, sum(clock_ins) AS clock_ins, sum(clock_outs) AS clock_outs, sum(bt_punches) AS bt_punches FROM $DATABASE.attendance_day GROUP BY day ORDER BY day FORMAT PrettyCompactMonoBlock"
