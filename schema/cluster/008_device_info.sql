-- General information 0x94. sub_protocol 0x0A carries IMSI + ICCID, 0x00 ICCID (legacy),
-- 0x09 the GPS module status. Other sub-protocols keep only the raw payload.
-- gps_status: 0 off, 1 searching, 2 2D fix, 3 3D fix, 4 sleep, 255 not present.

CREATE TABLE IF NOT EXISTS {db}.device_info_local ON CLUSTER '{cluster}'
(
    imei            UInt64,
    server_time     DateTime('UTC'),
    protocol        UInt8,
    serial          UInt16,
    sub_protocol    UInt8,
    iccid           String,
    imsi            String,
    gps_status      UInt8,
    -- raw content after the sub-protocol byte
    payload         String,
    ingest_instance String,
    ingest_shard    UInt16,
    ingest_seq      UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/device_info', '{replica}')
PARTITION BY toYYYYMM(server_time)
ORDER BY (imei, server_time);

CREATE TABLE IF NOT EXISTS {db}.device_info ON CLUSTER '{cluster}' AS {db}.device_info_local
ENGINE = Distributed('{cluster}', '{db}', 'device_info_local', cityHash64(imei));
