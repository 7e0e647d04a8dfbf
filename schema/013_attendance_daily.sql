-- BI: attendance per badge and local calendar day, maintained by materialized views
-- from attendance (0xB0/0xB1) and bluetooth punches (0xB2).
-- day is the badge's LOCAL date: toDate(device_time + tz_offset_min * 60, 'UTC'),
-- so a 07:30 clock-in in UTC+8 (23:30 UTC the day before) counts for the right day.
-- Times stay UTC (DateTime('UTC')); the attendance_day view also gives local wall-clock
-- times. Read through attendance_day (or with *Merge and GROUP BY imei, day).
-- As with badge_latest, the MVs only see rows inserted after they were created.

CREATE TABLE IF NOT EXISTS {db}.attendance_daily
(
    day                  Date,
    imei                 UInt64,
    first_clock_in_state AggregateFunction(minIf, DateTime('UTC'), UInt8),
    last_clock_out_state AggregateFunction(maxIf, DateTime('UTC'), UInt8),
    first_punch_state    AggregateFunction(min, DateTime('UTC')),
    last_punch_state     AggregateFunction(max, DateTime('UTC')),
    clock_ins_state      AggregateFunction(countIf, UInt8),
    clock_outs_state     AggregateFunction(countIf, UInt8),
    bt_punches_state     AggregateFunction(countIf, UInt8),
    tz_offset_min_state  AggregateFunction(argMax, Int16, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (imei, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.attendance_daily_attendance_mv TO {db}.attendance_daily AS
SELECT
    toDate(device_time + tz_offset_min * 60, 'UTC')   AS day,
    imei,
    minIfState(device_time, kind = 'clock_in')        AS first_clock_in_state,
    maxIfState(device_time, kind = 'clock_out')       AS last_clock_out_state,
    minState(device_time)                             AS first_punch_state,
    maxState(device_time)                             AS last_punch_state,
    countIfState(kind = 'clock_in')                   AS clock_ins_state,
    countIfState(kind = 'clock_out')                  AS clock_outs_state,
    countIfState(toUInt8(0))                          AS bt_punches_state,
    argMaxState(tz_offset_min, device_time)           AS tz_offset_min_state
FROM {db}.attendance
GROUP BY day, imei;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.attendance_daily_bluetooth_mv TO {db}.attendance_daily AS
SELECT
    toDate(device_time + tz_offset_min * 60, 'UTC')   AS day,
    imei,
    minIfState(device_time, attendance = 'clock_in')  AS first_clock_in_state,
    maxIfState(device_time, attendance = 'clock_out') AS last_clock_out_state,
    minState(device_time)                             AS first_punch_state,
    maxState(device_time)                             AS last_punch_state,
    countIfState(attendance = 'clock_in')             AS clock_ins_state,
    countIfState(attendance = 'clock_out')            AS clock_outs_state,
    countIfState(toUInt8(1))                          AS bt_punches_state,
    argMaxState(tz_offset_min, device_time)           AS tz_offset_min_state
FROM {db}.bluetooth
WHERE kind = 'punch'
GROUP BY day, imei;

-- One row per badge and local day. first_clock_in / last_clock_out are UTC and
-- 1970-01-01 00:00:00 when there was none (see clock_ins / clock_outs); the *_local
-- columns are the same instants as the badge's wall-clock time.
CREATE VIEW IF NOT EXISTS {db}.attendance_day AS
SELECT
    day,
    imei,
    minIfMerge(first_clock_in_state)          AS first_clock_in,
    maxIfMerge(last_clock_out_state)          AS last_clock_out,
    minMerge(first_punch_state)               AS first_punch,
    maxMerge(last_punch_state)                AS last_punch,
    countIfMerge(clock_ins_state)             AS clock_ins,
    countIfMerge(clock_outs_state)            AS clock_outs,
    countIfMerge(bt_punches_state)            AS bt_punches,
    argMaxMerge(tz_offset_min_state)          AS tz_offset_min,
    if(clock_ins > 0, toDateTime(first_clock_in + tz_offset_min * 60, 'UTC'), toDateTime(0, 'UTC'))  AS first_clock_in_local,
    if(clock_outs > 0, toDateTime(last_clock_out + tz_offset_min * 60, 'UTC'), toDateTime(0, 'UTC')) AS last_clock_out_local
FROM {db}.attendance_daily
GROUP BY day, imei;
