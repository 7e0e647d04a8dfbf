//! badge-ingest: an ingestion engine for fleets of KKS Bluetooth work badges.
//!
//! Badges speak the Concox GT06-family binary protocol over TCP. Data flows one
//! way: socket ([`server`]) → [`protocol::frame`] → [`protocol::message`] →
//! the ingest core ([`ingest`]) → [`record`] → batch ([`sink`]) → ClickHouse,
//! and back only for replies ([`protocol::reply`]) and commands
//! ([`protocol::downlink`]).
//!
//! [`protocol`] and [`ingest`] are pure: bytes and frames in, decisions out,
//! no I/O and no clock (time is passed in), so every part of them can be
//! tested and fuzzed without sockets.

pub mod allowlist;
pub mod app;
pub mod beacons;
pub mod config;
pub mod control;
pub mod events;
pub mod geo;
pub mod ingest;
pub mod log;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod record;
mod refresh;
pub mod runtime;
pub mod server;
pub mod sink;
pub mod zones;
