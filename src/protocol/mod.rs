//! The KKS / Concox GT06-family wire protocol.
//!
//! - [`frame`]: splits a byte stream into CRC-checked frames (`78 78` / `79 79`),
//!   resynchronising after garbage, and builds outgoing frames.
//! - [`layout`]: the fixed on-wire blocks shared by several messages
//!   (datetime, GPS fix, cell towers, WiFi APs, iBeacon records), as `zerocopy` structs.
//! - [`message`]: one file per message family; each defines its layout, its
//!   decoder and its encoder (the encoder is what `badge-loadgen` and the
//!   round-trip tests use).
//! - [`reply`]: every reply the server sends back, byte for byte as the reference server.
//! - [`downlink`]: server-initiated frames (0x80 online command, 0x82 message).
//!
//! Nothing here allocates per frame on the decode path: a [`Frame`] and a
//! [`Message`] borrow from the read buffer.

pub mod crc;
mod cursor;
pub mod downlink;
pub mod frame;
pub mod imei;
pub mod layout;
pub mod message;
pub mod number;
pub mod reply;

pub use frame::{Frame, FrameConfig, FrameDecoder, FrameStats, Marker};
pub use imei::Imei;
pub use message::{Message, MessageError};
pub use reply::Reply;
