-- Alarms: single fence 0xA3, multi fence 0xA4, LBS 0xA5, WiFi 0xA9.
-- 0xA5 has no device clock: device_time = server_time, device_time_valid = 0.
-- alarm_type is the reference server's name for alarm_code ('unknown_0xNN' if unmapped).
-- voltage_level is the raw 0..6 level; battery is the derived percentage (level * 17, max 100).

CREATE TABLE IF NOT EXISTS {db}.alarms_local ON CLUSTER '{cluster}'
(
    imei              UInt64,
    device_time       DateTime('UTC'),
    server_time       DateTime('UTC'),
    device_time_valid UInt8,
    protocol          UInt8,
    serial            UInt16,
    source            Enum8('single_fence' = 1, 'multi_fence' = 2, 'lbs' = 3, 'wifi' = 4),
    alarm_code        UInt8,
    alarm_type        String,
    -- 0xA4 only, 0 otherwise
    fence_id          UInt8,
    -- position
    has_position      UInt8,
    lat               Float64,
    lon               Float64,
    position_source   Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5),
    accuracy_m        Float32,
    speed_kmh         UInt16,
    course            UInt16,
    satellites        UInt8,
    gps_positioned    UInt8,
    -- status
    terminal_info     UInt8,
    voltage_level     UInt8,
    battery           UInt8,
    gsm_signal        UInt8,
    language          UInt8,
    -- serving cell and (0xA9) the other cells / WiFi access points
    mcc               UInt16,
    mnc               UInt16,
    lac               UInt32,
    cell_id           UInt64,
    cells             Nested(lac UInt32, cell_id UInt64, rssi UInt8),
    wifi              Nested(mac UInt64, rssi UInt8),
    address           String,
    ingest_instance   String,
    ingest_shard      UInt16,
    ingest_seq        UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/alarms', '{replica}')
PARTITION BY toYYYYMM(device_time)
ORDER BY (imei, device_time);

CREATE TABLE IF NOT EXISTS {db}.alarms ON CLUSTER '{cluster}' AS {db}.alarms_local
ENGINE = Distributed('{cluster}', '{db}', 'alarms_local', cityHash64(imei));
