-- badge-ingest ClickHouse schema, single node.
-- Applied in file-name order. `{db}` is substituted by the applier (default: badges).
-- Statements end with `;` at the end of a line. Lines starting with `--` are comments.
-- Every statement is CREATE ... IF NOT EXISTS, so applying twice is a no-op.
-- Runs on ClickHouse 18.16 (Debian bookworm) and current releases.

CREATE DATABASE IF NOT EXISTS {db};
