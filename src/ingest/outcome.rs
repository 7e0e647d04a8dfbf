//! What the ingest core decided for a read's frames, for the server to
//! carry out: bytes to write, rows to store, lookups to start, connections
//! to close, and whether this connection goes on.

use bytes::BytesMut;

use crate::protocol::Reply;
use crate::record::enrich::GeoWant;
use crate::record::lookup::Language;
use crate::record::Record;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    IoError,
    LoginTimeout,
    IdleTimeout,
    /// A newer login of the same IMEI took over.
    Replaced,
    /// The badge logged in again with another IMEI on the same connection.
    ImeiChanged,
    /// Replies piled up because the badge stopped reading.
    OutputOverflow,
    /// Replies not taken within `limits.write_timeout_secs`.
    WriteTimeout,
    /// A frame begun and not finished within `limits.partial_frame_timeout_secs`.
    PartialFrameTimeout,
    /// Too many frames or bytes before logging in.
    PreloginBudget,
    /// The IMEI is not in the allowlist.
    NotAllowed,
    /// A login from another address tried to replace a session too soon.
    ReplaceRefused,
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::IoError => "io_error",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Replaced => "replaced",
            CloseReason::ImeiChanged => "imei_changed",
            CloseReason::OutputOverflow => "output_overflow",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::PartialFrameTimeout => "partial_frame_timeout",
            CloseReason::PreloginBudget => "prelogin_budget",
            CloseReason::NotAllowed => "not_allowed",
            CloseReason::ReplaceRefused => "replace_refused",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What becomes of the connection after this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Move the socket, with the bytes from this frame on, to the shard
    /// that owns the IMEI; it decodes (and counts) the frame there.
    Handoff {
        owner: usize,
    },
    Close(CloseReason),
}

/// The reply a lookup owes a badge once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// 0x17 (Chinese) or 0x97 (English) with the address, or empty when
    /// none came in time.
    Address { english: bool },
    /// The ALARMSMS 0x17 that follows an alarm's 0x26; only sent when an
    /// address was found, as in the reference.
    AlarmSms,
}

impl Owed {
    /// Appends the reply for `address` to `out`; `false` when none is owed
    /// after all (an ALARMSMS without an address).
    pub fn encode(self, serial: u16, address: Option<&str>, out: &mut BytesMut) -> bool {
        let reply = match self {
            Owed::Address { english } => Reply::Address {
                english,
                alarm: false,
                address: address.unwrap_or(""),
                phone: "",
            },
            Owed::AlarmSms => match address {
                Some(a) => Reply::alarm_address(a),
                None => return false,
            },
        };
        let start = out.len();
        if reply.encode(serial, out).is_ok() {
            return true;
        }
        // An address over the 64 KiB content limit is a provider's nonsense;
        // the reply then goes out empty rather than not at all.
        out.truncate(start);
        let empty = Reply::Address {
            english: self == Owed::Address { english: true },
            alarm: self == Owed::AlarmSms,
            address: "",
            phone: "",
        };
        empty.encode(serial, out).is_ok()
    }
}

/// A row that waits for a position or an address before it is stored.
#[derive(Debug)]
pub struct Lookup {
    pub row: Record,
    pub want: GeoWant,
    pub language: Language,
    /// The reply that waits with it, to the frame with this serial.
    pub owed: Option<Owed>,
    pub serial: u16,
    /// The frame's acknowledgement, when it must wait until the row is
    /// durable (`Settings::hold_acks`): it goes out before the owed reply.
    pub ack: BytesMut,
}

/// What a lookup found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub fix: Option<crate::record::lookup::Fix>,
    pub address: Option<String>,
    /// The deadline cut it short.
    pub missed: bool,
}

/// The core's answer to one read, reused from read to read (so that the
/// hot path allocates nothing once the buffers have grown).
///
/// Order is meaningful: `replies` acknowledge the frames whose rows are in
/// `rows`, in the same order. A server that acknowledges only what is safe
/// on disk holds `replies` until every row of `rows` is durable.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Bytes for this badge in wire order: replies, and the commands
    /// queued for it, delivered right after its login acknowledgement.
    pub replies: BytesMut,
    /// Replies in `replies`, for the reply-latency histogram.
    pub replied: u64,
    /// Rows to store.
    pub rows: Vec<Record>,
    /// Rows that wait for a lookup first.
    pub lookups: Vec<Lookup>,
    /// Connections to close: a newer login of their badge came here.
    pub replaced: Vec<u64>,
    /// Set when this connection must not be read any further.
    pub end: Option<End>,
}

impl Outcome {
    pub fn clear(&mut self) {
        self.replies.clear();
        self.replied = 0;
        self.rows.clear();
        self.lookups.clear();
        self.replaced.clear();
        self.end = None;
    }

    pub(super) fn reply(&mut self, reply: &Reply<'_>, serial: u16) {
        // Replies are small and bounded; encoding can only fail for a
        // content over 64 KiB, which no immediate reply reaches.
        if reply.encode(serial, &mut self.replies).is_ok() {
            self.replied += 1;
        }
    }
}
