-- Server -> badge commands (online command 0x80, text message 0x82) and their replies (0x81).
-- Append-only: one row per state change of a command, all rows of a command share
-- command_id, kind, command_type, text and created_at. The current state of a command is
-- its row with the greatest event_time (argMax(status, event_time) GROUP BY command_id).

CREATE TABLE IF NOT EXISTS {db}.command_log_local ON CLUSTER '{cluster}'
(
    imei            UInt64,
    event_time      DateTime('UTC'),
    command_id      UInt64,
    created_at      DateTime('UTC'),
    kind            Enum8('online_command' = 1, 'message' = 2),
    -- application label, e.g. 'restart', 'config'
    command_type    String,
    text            String,
    status          Enum8('queued' = 1, 'sent' = 2, 'replied' = 3, 'expired' = 4, 'failed' = 5),
    -- frame of this step: 0x80/0x82 when sent, 0x81 when replied, 0 otherwise
    protocol        UInt8,
    serial          UInt16,
    server_flag     UInt32,
    reply_text      String,
    error           String,
    ingest_instance String,
    ingest_shard    UInt16,
    ingest_seq      UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/command_log', '{replica}')
PARTITION BY toYYYYMM(event_time)
ORDER BY (imei, event_time, command_id);

CREATE TABLE IF NOT EXISTS {db}.command_log ON CLUSTER '{cluster}' AS {db}.command_log_local
ENGINE = Distributed('{cluster}', '{db}', 'command_log_local', cityHash64(imei));
