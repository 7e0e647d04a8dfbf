-- Beacon registry (not telemetry): where each iBeacon is installed.
-- Updated by inserting a new row with a later updated_at; read with FINAL (or
-- argMax(..., updated_at) GROUP BY mac) to get the current version of each beacon.
-- active = 0 retires a beacon without deleting its history.

CREATE TABLE IF NOT EXISTS {db}.beacons ON CLUSTER '{cluster}'
(
    mac        UInt64,
    name       String,
    lat        Float64,
    lon        Float64,
    address    String,
    active     UInt8,
    updated_at DateTime('UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/beacons', '{shard}-{replica}', updated_at)
ORDER BY mac;
