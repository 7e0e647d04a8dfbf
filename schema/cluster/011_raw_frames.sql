-- Optional audit trail: every frame as received ('in') or sent ('out'), bytes as-is
-- (start marker to stop marker). imei = 0 before the connection has logged in.

CREATE TABLE IF NOT EXISTS {db}.raw_frames_local ON CLUSTER '{cluster}'
(
    imei            UInt64,
    server_time     DateTime('UTC'),
    conn_id         UInt64,
    direction       Enum8('in' = 1, 'out' = 2),
    protocol        UInt8,
    serial          UInt16,
    frame           String,
    crc_ok          UInt8,
    ingest_instance String,
    ingest_shard    UInt16,
    ingest_seq      UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/raw_frames', '{replica}')
PARTITION BY toYYYYMM(server_time)
ORDER BY (imei, server_time);

CREATE TABLE IF NOT EXISTS {db}.raw_frames ON CLUSTER '{cluster}' AS {db}.raw_frames_local
ENGINE = Distributed('{cluster}', '{db}', 'raw_frames_local', cityHash64(imei));
