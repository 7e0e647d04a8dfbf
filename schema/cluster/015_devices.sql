-- Device allowlist (not telemetry): which badges may log in, read by the
-- ingester when limits.allowlist = "clickhouse" (at start, every
-- limits.allowlist_refresh_secs, and on the control command `allowlist reload`).
-- Updated by inserting a new row with a later updated_at; the current version of
-- each IMEI is argMax(enabled, updated_at) GROUP BY imei (or FINAL).
-- enabled = 0 revokes a badge without deleting its history.
-- imei is the 15 (or 16) decimal digits as text; rows that are not are left out.
-- utc_offset_minutes: the zone of the badge's clock, minutes east of UTC (UTC-5 =
-- -300), read when protocol.zones_from_devices is on (NULL: the login's zone);
-- like enabled, the current value is argMax(utc_offset_minutes, updated_at).
-- Small and read whole by every ingester: replicated to every node, not sharded.

CREATE TABLE IF NOT EXISTS {db}.devices ON CLUSTER '{cluster}'
(
    imei       String,
    enabled    UInt8,
    note       String,
    updated_at DateTime('UTC'),
    utc_offset_minutes Nullable(Int16)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/devices', '{shard}-{replica}', updated_at)
ORDER BY imei;
