//! ClickHouse: the client, the schema, one insert of RowBinary rows, and
//! what a failed insert means (worth trying again, or never going in).
//!
//! Delivery is at-least-once: an insert whose outcome is unknown (a timeout
//! after sending) is tried again, so a rare duplicate is possible. Every row
//! carries its ingest key for finding those.

use std::time::Duration;

use bytes::Bytes;
use clickhouse::{Client, Compression};

use crate::config::Config;
use crate::record::*;

/// Largest piece handed to the client at once (one lz4 block each).
const SEND_CHUNK: usize = 1 << 20;

/// A client for ClickHouse 18.16 and later: plain RowBinary (18.16 predates
/// RowBinaryWithNamesAndTypes, which validation needs), lz4 compression.
pub fn client(config: &Config) -> Client {
    let c = &config.clickhouse;
    let compression = if c.compression == "none" {
        Compression::None
    } else {
        Compression::Lz4
    };
    let mut client = Client::default()
        .with_url(&c.url)
        .with_compression(compression)
        .with_validation(false);
    if c.user != "default" || !c.password.is_empty() {
        client = client.with_user(&c.user).with_password(&c.password);
    }
    for (name, value) in &c.settings {
        client = client.with_setting(name, value);
    }
    client
}

/// Turns the client's schema validation on for servers that support it
/// (the crate's validation needs RowBinaryWithNamesAndTypes and the modern
/// DESCRIBE; we require 24.x to be safe).
pub async fn client_for_server(
    config: &Config,
) -> Result<(Client, String), clickhouse::error::Error> {
    let client = client(config);
    let version: String = client.query("SELECT version()").fetch_one().await?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Ok((
        if major >= 24 {
            client.with_validation(true)
        } else {
            client
        },
        version,
    ))
}

/// Applies `schema/` to `database`; returns the number of statements run.
pub async fn apply_schema(
    config: &Config,
    database: &str,
) -> Result<usize, clickhouse::error::Error> {
    let client = client(config);
    let mut n = 0;
    for (_, sql) in super::schema::FILES {
        for statement in super::schema::statements(sql, database) {
            client.query(&statement).execute().await?;
            n += 1;
        }
    }
    Ok(n)
}

/// `INSERT INTO db.table (`a`, `b`, ...) FORMAT RowBinary`
pub fn insert_statement(database: &str, table: Table) -> String {
    let cols: Vec<String> = table.columns().iter().map(|c| format!("`{c}`")).collect();
    format!(
        "INSERT INTO {database}.{} ({}) FORMAT RowBinary",
        table.name(),
        cols.join(", ")
    )
}

/// Why an insert failed, and what that means for its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The network, a timeout, an overloaded or restarting server: the same
    /// rows may go in later.
    Retry(String),
    /// ClickHouse refuses some of these rows as they are (types, parsing,
    /// too many partitions): sent again they fail again, but others of the
    /// batch may go in.
    Permanent(String),
    /// The table lacks a column the rows have: every row of the batch is
    /// refused the same way, so splitting it would only cost inserts.
    Schema(String),
}

/// ClickHouse error codes that reject the rows themselves.
const PERMANENT_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS (a value outside an Enum8)
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    117, // INCORRECT_DATA
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

/// ClickHouse error codes that say the table and the rows disagree on
/// columns.
const SCHEMA_CODES: &[u32] = &[
    8,  // THERE_IS_NO_COLUMN
    10, // NOT_FOUND_COLUMN_IN_BLOCK
    16, // NO_SUCH_COLUMN_IN_TABLE
    47, // UNKNOWN_IDENTIFIER
];

/// What an insert error means. A missing table or database is not the
/// rows' fault: they wait (in the log) until the schema is there.
pub fn classify(e: &clickhouse::error::Error) -> Failure {
    use clickhouse::error::Error as E;
    let text = e.to_string();
    match e {
        E::BadResponse(body) => {
            let code = body
                .split("Code: ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse::<u32>().ok());
            let too_many_partitions = body.contains("Too many partitions");
            match code {
                Some(252) if too_many_partitions => Failure::Permanent(text),
                Some(c) if PERMANENT_CODES.contains(&c) => Failure::Permanent(text),
                Some(c) if SCHEMA_CODES.contains(&c) => Failure::Schema(text),
                _ => Failure::Retry(text),
            }
        }
        _ => Failure::Retry(text),
    }
}

/// One insert of `rows` rows of `table` (RowBinary, end to end).
pub async fn insert(
    client: &Client,
    statement: &str,
    payload: Bytes,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client
        .insert_formatted_with(statement.to_string())
        .with_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(30)));
    let mut at = 0;
    while at < payload.len() {
        let end = (at + SEND_CHUNK).min(payload.len());
        insert.send(payload.slice(at..end)).await?;
        at = end;
    }
    insert.end().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as E;

    #[test]
    fn rejected_rows_are_told_from_a_server_in_trouble() {
        let permanent = |body: &str| {
            matches!(
                classify(&E::BadResponse(body.into())),
                Failure::Permanent(_)
            )
        };
        let schema =
            |body: &str| matches!(classify(&E::BadResponse(body.into())), Failure::Schema(_));
        assert!(schema("Code: 16, e.displayText() = DB::Exception: No such column foo in table badges.device_info"));
        assert!(schema("Code: 16. DB::Exception: No such column iccid in table badges.device_info. (NO_SUCH_COLUMN_IN_TABLE)"));
        assert!(!permanent(
            "Code: 16. DB::Exception: No such column iccid in table badges.device_info"
        ));
        assert!(permanent(
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input"
        ));
        assert!(permanent("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)."));
        assert!(!permanent("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts"));
        assert!(!permanent(
            "Code: 60, e.displayText() = DB::Exception: Table badges.x doesn't exist"
        ));
        assert!(!permanent(
            "Code: 241, e.displayText() = DB::Exception: Memory limit (total) exceeded"
        ));
        assert!(!permanent("502 Bad Gateway"));
        assert!(matches!(classify(&E::TimedOut), Failure::Retry(_)));
    }
}
