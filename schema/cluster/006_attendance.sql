-- Attendance punches 0xB0 (2G cells) and 0xB1 (4G cells).
-- kind comes from terminal_info bits 5-2 (0b0010 = clock_out, otherwise clock_in).
-- tz_offset_min is the badge's time zone (minutes east of UTC, from its last login, 0 if
-- unknown); it is only used to compute the badge's local calendar day (attendance_daily).

CREATE TABLE IF NOT EXISTS {db}.attendance_local ON CLUSTER '{cluster}'
(
    imei              UInt64,
    device_time       DateTime('UTC'),
    server_time       DateTime('UTC'),
    device_time_valid UInt8,
    tz_offset_min     Int16,
    protocol          UInt8,
    serial            UInt16,
    kind              Enum8('clock_in' = 1, 'clock_out' = 2),
    -- position
    gps_positioned    UInt8,
    has_position      UInt8,
    lat               Float64,
    lon               Float64,
    position_source   Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5),
    accuracy_m        Float32,
    speed_kmh         UInt16,
    course            UInt16,
    satellites        UInt8,
    -- status
    terminal_info     UInt8,
    voltage_level     UInt8,
    battery           UInt8,
    gsm_signal        UInt8,
    -- serving cell, neighbour cells, WiFi access points
    mcc               UInt16,
    mnc               UInt16,
    lac               UInt32,
    cell_id           UInt64,
    rssi              UInt8,
    cells             Nested(lac UInt32, cell_id UInt64, rssi UInt8),
    wifi              Nested(mac UInt64, rssi UInt8),
    address           String,
    ingest_instance   String,
    ingest_shard      UInt16,
    ingest_seq        UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/attendance', '{replica}')
PARTITION BY toYYYYMM(device_time)
ORDER BY (imei, device_time);

CREATE TABLE IF NOT EXISTS {db}.attendance ON CLUSTER '{cluster}' AS {db}.attendance_local
ENGINE = Distributed('{cluster}', '{db}', 'attendance_local', cityHash64(imei));
