-- Position reports: GPS 0x22/0xA0, LBS 0x28/0x2E/0xA1, WiFi 0x2C/0xA2 and the
-- address requests 0x17/0x1A/0xA7 (which carry the same location payload).
-- device_time is the packet's own timestamp converted to UTC; when the packet has
-- none or it fails the sanity check, device_time = server_time and device_time_valid = 0.
-- lat/lon are not Nullable: has_position = 0 means "no position" (lat = lon = 0).
-- position_source says where lat/lon came from: the GPS fix, a cell or WiFi geolocation
-- (geo service), or a registered beacon. source = 'beacon' rows are written for a 0xB3
-- Bluetooth report whose strongest known beacon has a position (accuracy_m = 0).
-- position_source = 'invalid': the fix's coordinates are impossible (latitude
-- beyond 90 degrees, say, from a variant layout); has_position = 0 and lat = lon = 0.

CREATE TABLE IF NOT EXISTS {db}.locations_local ON CLUSTER '{cluster}'
(
    imei              UInt64,
    device_time       DateTime('UTC'),
    server_time       DateTime('UTC'),
    device_time_valid UInt8,
    protocol          UInt8,
    serial            UInt16,
    source            Enum8('gps' = 1, 'gps_4g' = 2, 'lbs' = 3, 'lbs_4g' = 4, 'wifi' = 5, 'wifi_4g' = 6,
                            'lbs_address_req' = 7, 'address_query' = 8, 'lbs_4g_address_req' = 9,
                            'beacon' = 10),
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
    realtime          UInt8,
    -- serving cell (2G: lac 16 bit, cell_id 24 bit; 4G: lac 32 bit, cell_id 64 bit)
    mcc               UInt16,
    mnc               UInt16,
    lac               UInt32,
    cell_id           UInt64,
    rssi              UInt8,
    -- GPS packets only
    report_mode       UInt8,
    mileage           UInt32,
    -- neighbour cells and WiFi access points (MAC as 48-bit integer, see MACNumToString)
    cells             Nested(lac UInt32, cell_id UInt64, rssi UInt8),
    wifi              Nested(mac UInt64, rssi UInt8),
    -- reverse-geocoded address, '' when unknown
    address           String,
    ingest_instance   String,
    ingest_shard      UInt16,
    ingest_seq        UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/locations', '{replica}')
PARTITION BY toYYYYMM(device_time)
ORDER BY (imei, device_time);

CREATE TABLE IF NOT EXISTS {db}.locations ON CLUSTER '{cluster}' AS {db}.locations_local
ENGINE = Distributed('{cluster}', '{db}', 'locations_local', cityHash64(imei));
