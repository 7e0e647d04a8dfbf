-- Connection lifecycle of each badge, written by the ingester (server-side events).
-- login:     0x01 login packet accepted (device_type, tz_offset_min, language decoded from it)
-- logout:    the server closed the session on purpose (shutdown, replaced by a newer login, ...)
-- offline:   the connection was lost or timed out
-- reconnect: a login for an IMEI that still had a live connection (the old one is closed)
-- There is no device clock in these events: time column is server_time (UTC).

CREATE TABLE IF NOT EXISTS {db}.device_events_local ON CLUSTER '{cluster}'
(
    imei            UInt64,
    server_time     DateTime('UTC'),
    event           Enum8('login' = 1, 'logout' = 2, 'offline' = 3, 'reconnect' = 4),
    -- login packet fields (0 when the event is not a login/reconnect)
    protocol        UInt8,
    serial          UInt16,
    device_type     UInt16,
    tz_offset_min   Int16,
    language        UInt8,
    -- connection
    conn_id         UInt64,
    peer_addr       String,
    reason          String,
    -- ingest key: (ingest_instance, ingest_shard, ingest_seq) is unique per written row;
    -- ingest_shard is also the worker shard that owned the connection
    ingest_instance String,
    ingest_shard    UInt16,
    ingest_seq      UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/device_events', '{replica}')
PARTITION BY toYYYYMM(server_time)
ORDER BY (imei, server_time);

CREATE TABLE IF NOT EXISTS {db}.device_events ON CLUSTER '{cluster}' AS {db}.device_events_local
ENGINE = Distributed('{cluster}', '{db}', 'device_events_local', cityHash64(imei));
