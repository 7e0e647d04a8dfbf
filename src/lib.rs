//! badge-ingest: an ingestion engine for fleets of KKS Bluetooth work badges.
//!
//! Badges speak the Concox GT06-family binary protocol over TCP. Data flows one
//! way: socket → [`protocol::frame`] → [`protocol::message`] → record → batch →
//! ClickHouse, and back only for replies ([`protocol::reply`]) and commands
//! ([`protocol::downlink`]).
//!
//! The [`protocol`] module is pure: bytes in, typed messages out; typed replies
//! in, bytes out. It does no I/O and reads no clock, so every part of it can be
//! tested and fuzzed in isolation.

pub mod app;
pub mod beacons;
pub mod config;
pub mod control;
pub mod events;
pub mod geo;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod record;
pub mod server;
pub mod sink;
