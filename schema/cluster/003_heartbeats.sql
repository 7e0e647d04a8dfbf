-- Heartbeats 0x13 and extended heartbeats 0x36. No device clock in the packet: server_time only.
-- terminal_info is stored raw; the ALIAS columns decode its bits as documented by the
-- reference server (bit 7 power cut, bit 6 GPS positioned, bits 5-4 work status,
-- bit 3 charging, bit 2 ACC, bit 1 armed). ALIAS columns are computed at read time
-- and are not part of INSERTs.

CREATE TABLE IF NOT EXISTS {db}.heartbeats_local ON CLUSTER '{cluster}'
(
    imei             UInt64,
    server_time      DateTime('UTC'),
    protocol         UInt8,
    serial           UInt16,
    terminal_info    UInt8,
    battery          UInt8,
    gsm_signal       UInt8,
    -- 0x36 only: 2-byte language field (0x0001 Chinese, 0x0002 English), 0 for 0x13
    language         UInt16,
    -- 0x36 only: raw extension bytes after the language field
    extension        String,
    ingest_instance  String,
    ingest_shard     UInt16,
    ingest_seq       UInt64,
    power_cut        UInt8 ALIAS bitAnd(bitShiftRight(terminal_info, 7), 1),
    gps_positioned   UInt8 ALIAS bitAnd(bitShiftRight(terminal_info, 6), 1),
    work_status      UInt8 ALIAS bitAnd(bitShiftRight(terminal_info, 4), 3),
    charging         UInt8 ALIAS bitAnd(bitShiftRight(terminal_info, 3), 1),
    acc_on           UInt8 ALIAS bitAnd(bitShiftRight(terminal_info, 2), 1),
    armed            UInt8 ALIAS bitAnd(bitShiftRight(terminal_info, 1), 1)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/heartbeats', '{replica}')
PARTITION BY toYYYYMM(server_time)
ORDER BY (imei, server_time);

CREATE TABLE IF NOT EXISTS {db}.heartbeats ON CLUSTER '{cluster}' AS {db}.heartbeats_local
ENGINE = Distributed('{cluster}', '{db}', 'heartbeats_local', cityHash64(imei));
