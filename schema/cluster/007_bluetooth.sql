-- Bluetooth: punch 0xB2 (one beacon, with clock_in/clock_out) and location 0xB3
-- (up to N beacons). One row per beacon; beacon_index/beacon_count give its place in
-- the packet, is_best marks the strongest beacon with a known position (0xB3).
-- A 0xB3 that lists no beacon writes one row with beacon_count = 0 and mac = 0, so the report is not lost.
-- beacon_* columns are copied from the beacon registry at ingest time when the MAC is
-- known (beacon_known = 1); the registry itself is the `beacons` table.

CREATE TABLE IF NOT EXISTS {db}.bluetooth_local ON CLUSTER '{cluster}'
(
    imei              UInt64,
    device_time       DateTime('UTC'),
    server_time       DateTime('UTC'),
    device_time_valid UInt8,
    tz_offset_min     Int16,
    protocol          UInt8,
    serial            UInt16,
    kind              Enum8('punch' = 1, 'location' = 2),
    -- punch only ('none' for location rows)
    attendance        Enum8('none' = 0, 'clock_in' = 1, 'clock_out' = 2),
    terminal_info     UInt8,
    beacon_index      UInt8,
    beacon_count      UInt8,
    is_best           UInt8,
    -- iBeacon advertisement
    mac               UInt64,
    uuid              FixedString(16),
    major             UInt16,
    minor             UInt16,
    rssi              Int8,
    battery           Float32,
    battery_unit      Enum8('unknown' = 0, 'V' = 1, 'percent' = 2),
    -- from the registry (beacons) when known
    beacon_known      UInt8,
    beacon_name       String,
    beacon_lat        Float64,
    beacon_lon        Float64,
    beacon_address    String,
    ingest_instance   String,
    ingest_shard      UInt16,
    ingest_seq        UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/bluetooth', '{replica}')
PARTITION BY toYYYYMM(device_time)
ORDER BY (imei, device_time);

CREATE TABLE IF NOT EXISTS {db}.bluetooth ON CLUSTER '{cluster}' AS {db}.bluetooth_local
ENGINE = Distributed('{cluster}', '{db}', 'bluetooth_local', cityHash64(imei));
