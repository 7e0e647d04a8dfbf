-- Brings tables created before geo enrichment to the types of 004-006 (cluster variant: the local
-- tables and their Distributed tables alike):
-- position_source names its cell-tower value 'cell' (it was 'lbs'; no row had
-- that value then, nothing wrote it), and locations.source gets 'beacon' for
-- the rows made from a Bluetooth report's best-known beacon.
-- The Distributed tables are altered without ON CLUSTER: ClickHouse refuses a
-- distributed ALTER of a table that is not replicated on a cluster whose shards
-- are (error 371). Their change is metadata only; apply this file on every node
-- that has the Distributed tables (the local tables are altered ON CLUSTER once).
-- Re-applying a MODIFY COLUMN with the type a column already has is a no-op,
-- so this file is idempotent like the rest; on tables created by the current
-- 004-006 it changes nothing.

ALTER TABLE {db}.locations_local ON CLUSTER '{cluster}'
    MODIFY COLUMN source Enum8('gps' = 1, 'gps_4g' = 2, 'lbs' = 3, 'lbs_4g' = 4, 'wifi' = 5, 'wifi_4g' = 6,
                               'lbs_address_req' = 7, 'address_query' = 8, 'lbs_4g_address_req' = 9,
                               'beacon' = 10),
    MODIFY COLUMN position_source Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5);

ALTER TABLE {db}.locations
    MODIFY COLUMN source Enum8('gps' = 1, 'gps_4g' = 2, 'lbs' = 3, 'lbs_4g' = 4, 'wifi' = 5, 'wifi_4g' = 6,
                               'lbs_address_req' = 7, 'address_query' = 8, 'lbs_4g_address_req' = 9,
                               'beacon' = 10),
    MODIFY COLUMN position_source Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5);

ALTER TABLE {db}.alarms_local ON CLUSTER '{cluster}'
    MODIFY COLUMN position_source Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5);

ALTER TABLE {db}.alarms
    MODIFY COLUMN position_source Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5);

ALTER TABLE {db}.attendance_local ON CLUSTER '{cluster}'
    MODIFY COLUMN position_source Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5);

ALTER TABLE {db}.attendance
    MODIFY COLUMN position_source Enum8('none' = 0, 'gps' = 1, 'cell' = 2, 'wifi' = 3, 'beacon' = 4, 'invalid' = 5);
