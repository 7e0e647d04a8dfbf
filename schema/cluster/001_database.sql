-- badge-ingest ClickHouse schema, scale-out variant (shards x replicas).
-- Same tables, columns and views as ../0*.sql. Each telemetry table is a
-- Replicated*MergeTree `<table>_local` on every node plus a Distributed table with the
-- normal name, sharded by cityHash64(imei) so that all rows of one badge live on one
-- shard (the per-badge materialized views rely on that). beacons and devices are small
-- registries replicated in full to every node (no Distributed table); their replica name
-- is '{shard}-{replica}', as {replica} need only be unique within a shard.
-- Placeholders: `{db}` is substituted by the applier. `{cluster}` is substituted by the
-- applier when it is given a cluster name (required on 18.16, which does not expand
-- macros in ON CLUSTER / Distributed); otherwise the server expands it from <macros>.
-- `{shard}` and `{replica}` are always server macros. ON CLUSTER needs ZooKeeper
-- (<zookeeper> and <distributed_ddl> in the server config).
-- Write through the Distributed tables (or straight into <table>_local on the right
-- shard); the cluster definition should use <internal_replication>true</internal_replication>.

CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER '{cluster}';
