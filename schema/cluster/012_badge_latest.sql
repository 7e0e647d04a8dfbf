-- BI: latest known state of each badge, maintained incrementally by materialized views.
-- badge_latest holds partial aggregate states (AggregatingMergeTree, one row per badge
-- after merges); ALWAYS read it through the badge_now view (or with the *Merge
-- functions and GROUP BY imei), never with plain SELECT *.
-- Fed by four MVs: positions from locations (has_position = 1), battery/GSM from
-- heartbeats, session state and login fields from device_events, ICCID/IMSI from
-- device_info. ClickHouse 18.16 requires every MV feeding a table to produce every
-- column of it, so each MV fills the columns it does not own with empty states
-- (xxxStateIf(..., 0)). State columns end in _state so that the view's aliases never
-- shadow them.
-- The MVs only see rows inserted after they exist: after creating them on a database
-- that already holds data, backfill on each shard with INSERT INTO badge_latest_local
-- SELECT ... (same SELECTs as below, for older partitions).
-- Cluster: the MVs run on the node that receives a block for <table>_local and write to
-- badge_latest_local of the same shard; badge_now reads the Distributed badge_latest.

CREATE TABLE IF NOT EXISTS {db}.badge_latest_local ON CLUSTER '{cluster}'
(
    imei                  UInt64,
    -- server_time of the last location, heartbeat or login/reconnect
    last_seen_state       AggregateFunction(max, DateTime('UTC')),
    -- last position, by device_time
    pos_time_state        AggregateFunction(max, DateTime('UTC')),
    lat_state             AggregateFunction(argMax, Float64, DateTime('UTC')),
    lon_state             AggregateFunction(argMax, Float64, DateTime('UTC')),
    position_source_state AggregateFunction(argMax, String, DateTime('UTC')),
    accuracy_m_state      AggregateFunction(argMax, Float32, DateTime('UTC')),
    address_state         AggregateFunction(argMax, String, DateTime('UTC')),
    -- last heartbeat, by server_time
    heartbeat_time_state  AggregateFunction(max, DateTime('UTC')),
    battery_state         AggregateFunction(argMax, UInt8, DateTime('UTC')),
    gsm_signal_state      AggregateFunction(argMax, UInt8, DateTime('UTC')),
    -- last connection event, by server_time
    session_time_state    AggregateFunction(max, DateTime('UTC')),
    session_event_state   AggregateFunction(argMax, String, DateTime('UTC')),
    peer_addr_state       AggregateFunction(argMax, String, DateTime('UTC')),
    -- from the last login
    device_type_state     AggregateFunction(argMax, UInt16, DateTime('UTC')),
    tz_offset_min_state   AggregateFunction(argMax, Int16, DateTime('UTC')),
    language_state        AggregateFunction(argMax, UInt8, DateTime('UTC')),
    -- from the last 0x94 that carried them
    iccid_state           AggregateFunction(argMax, String, DateTime('UTC')),
    imsi_state            AggregateFunction(argMax, String, DateTime('UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{db}/badge_latest', '{replica}')
ORDER BY imei;

CREATE TABLE IF NOT EXISTS {db}.badge_latest ON CLUSTER '{cluster}' AS {db}.badge_latest_local
ENGINE = Distributed('{cluster}', '{db}', 'badge_latest_local', cityHash64(imei));

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.badge_latest_locations_mv ON CLUSTER '{cluster}'
TO {db}.badge_latest_local AS
SELECT
    imei,
    maxState(server_time)                                     AS last_seen_state,
    maxStateIf(device_time, has_position = 1)                 AS pos_time_state,
    argMaxStateIf(lat, device_time, has_position = 1)         AS lat_state,
    argMaxStateIf(lon, device_time, has_position = 1)         AS lon_state,
    argMaxStateIf(toString(position_source), device_time, has_position = 1) AS position_source_state,
    argMaxStateIf(accuracy_m, device_time, has_position = 1)  AS accuracy_m_state,
    argMaxStateIf(address, device_time, has_position = 1)     AS address_state,
    maxStateIf(server_time, 0)                                AS heartbeat_time_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS battery_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS gsm_signal_state,
    maxStateIf(server_time, 0)                                AS session_time_state,
    argMaxStateIf('', server_time, 0)                         AS session_event_state,
    argMaxStateIf('', server_time, 0)                         AS peer_addr_state,
    argMaxStateIf(toUInt16(0), server_time, 0)                AS device_type_state,
    argMaxStateIf(toInt16(0), server_time, 0)                 AS tz_offset_min_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS language_state,
    argMaxStateIf('', server_time, 0)                         AS iccid_state,
    argMaxStateIf('', server_time, 0)                         AS imsi_state
FROM {db}.locations_local
GROUP BY imei;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.badge_latest_heartbeats_mv ON CLUSTER '{cluster}'
TO {db}.badge_latest_local AS
SELECT
    imei,
    maxState(server_time)                                     AS last_seen_state,
    maxStateIf(server_time, 0)                                AS pos_time_state,
    argMaxStateIf(toFloat64(0), server_time, 0)               AS lat_state,
    argMaxStateIf(toFloat64(0), server_time, 0)               AS lon_state,
    argMaxStateIf('', server_time, 0)                         AS position_source_state,
    argMaxStateIf(toFloat32(0), server_time, 0)               AS accuracy_m_state,
    argMaxStateIf('', server_time, 0)                         AS address_state,
    maxState(server_time)                                     AS heartbeat_time_state,
    argMaxState(battery, server_time)                         AS battery_state,
    argMaxState(gsm_signal, server_time)                      AS gsm_signal_state,
    maxStateIf(server_time, 0)                                AS session_time_state,
    argMaxStateIf('', server_time, 0)                         AS session_event_state,
    argMaxStateIf('', server_time, 0)                         AS peer_addr_state,
    argMaxStateIf(toUInt16(0), server_time, 0)                AS device_type_state,
    argMaxStateIf(toInt16(0), server_time, 0)                 AS tz_offset_min_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS language_state,
    argMaxStateIf('', server_time, 0)                         AS iccid_state,
    argMaxStateIf('', server_time, 0)                         AS imsi_state
FROM {db}.heartbeats_local
GROUP BY imei;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.badge_latest_events_mv ON CLUSTER '{cluster}'
TO {db}.badge_latest_local AS
SELECT
    imei,
    maxStateIf(server_time, event IN ('login', 'reconnect'))  AS last_seen_state,
    maxStateIf(server_time, 0)                                AS pos_time_state,
    argMaxStateIf(toFloat64(0), server_time, 0)               AS lat_state,
    argMaxStateIf(toFloat64(0), server_time, 0)               AS lon_state,
    argMaxStateIf('', server_time, 0)                         AS position_source_state,
    argMaxStateIf(toFloat32(0), server_time, 0)               AS accuracy_m_state,
    argMaxStateIf('', server_time, 0)                         AS address_state,
    maxStateIf(server_time, 0)                                AS heartbeat_time_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS battery_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS gsm_signal_state,
    maxState(server_time)                                     AS session_time_state,
    argMaxState(toString(event), server_time)                 AS session_event_state,
    argMaxState(peer_addr, server_time)                       AS peer_addr_state,
    argMaxStateIf(device_type, server_time, event IN ('login', 'reconnect'))   AS device_type_state,
    argMaxStateIf(tz_offset_min, server_time, event IN ('login', 'reconnect')) AS tz_offset_min_state,
    argMaxStateIf(language, server_time, event IN ('login', 'reconnect'))      AS language_state,
    argMaxStateIf('', server_time, 0)                         AS iccid_state,
    argMaxStateIf('', server_time, 0)                         AS imsi_state
FROM {db}.device_events_local
GROUP BY imei;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.badge_latest_device_info_mv ON CLUSTER '{cluster}'
TO {db}.badge_latest_local AS
SELECT
    imei,
    maxStateIf(server_time, 0)                                AS last_seen_state,
    maxStateIf(server_time, 0)                                AS pos_time_state,
    argMaxStateIf(toFloat64(0), server_time, 0)               AS lat_state,
    argMaxStateIf(toFloat64(0), server_time, 0)               AS lon_state,
    argMaxStateIf('', server_time, 0)                         AS position_source_state,
    argMaxStateIf(toFloat32(0), server_time, 0)               AS accuracy_m_state,
    argMaxStateIf('', server_time, 0)                         AS address_state,
    maxStateIf(server_time, 0)                                AS heartbeat_time_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS battery_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS gsm_signal_state,
    maxStateIf(server_time, 0)                                AS session_time_state,
    argMaxStateIf('', server_time, 0)                         AS session_event_state,
    argMaxStateIf('', server_time, 0)                         AS peer_addr_state,
    argMaxStateIf(toUInt16(0), server_time, 0)                AS device_type_state,
    argMaxStateIf(toInt16(0), server_time, 0)                 AS tz_offset_min_state,
    argMaxStateIf(toUInt8(0), server_time, 0)                 AS language_state,
    argMaxStateIf(iccid, server_time, iccid != '')            AS iccid_state,
    argMaxStateIf(imsi, server_time, imsi != '')              AS imsi_state
FROM {db}.device_info_local
GROUP BY imei;

-- One row per badge. Times are UTC; a zero time (1970-01-01 00:00:00) means "never".
-- online: the last connection event is login/reconnect (the ingester writes
-- offline/logout when a connection ends or times out).
CREATE VIEW IF NOT EXISTS {db}.badge_now ON CLUSTER '{cluster}' AS
SELECT
    imei,
    maxMerge(last_seen_state)                 AS last_seen,
    maxMerge(pos_time_state)                  AS pos_time,
    toUInt32(pos_time) > 0                    AS has_position,
    argMaxMerge(lat_state)                    AS lat,
    argMaxMerge(lon_state)                    AS lon,
    argMaxMerge(position_source_state)        AS position_source,
    argMaxMerge(accuracy_m_state)             AS accuracy_m,
    argMaxMerge(address_state)                AS address,
    maxMerge(heartbeat_time_state)            AS heartbeat_time,
    argMaxMerge(battery_state)                AS battery,
    argMaxMerge(gsm_signal_state)             AS gsm_signal,
    maxMerge(session_time_state)              AS session_time,
    argMaxMerge(session_event_state)          AS session_event,
    session_event IN ('login', 'reconnect')   AS online,
    argMaxMerge(peer_addr_state)              AS peer_addr,
    argMaxMerge(device_type_state)            AS device_type,
    argMaxMerge(tz_offset_min_state)          AS tz_offset_min,
    argMaxMerge(language_state)               AS language,
    argMaxMerge(iccid_state)                  AS iccid,
    argMaxMerge(imsi_state)                   AS imsi
FROM {db}.badge_latest
GROUP BY imei;
