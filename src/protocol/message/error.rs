//! Why content did not decode, and the hex shown for raw byte fields:
//! shared by every message's decoder, and by the cursor they read with.

use std::fmt;

/// Content that does not match its message's layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: {kind} at content offset {offset}")]
pub struct MessageError {
    /// The message being decoded, e.g. "attendance".
    pub message: &'static str,
    pub offset: usize,
    pub kind: MessageErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageErrorKind {
    #[error("{field} truncated ({needed} bytes needed, {available} left)")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{field} invalid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

/// Hex for debug output of raw byte fields.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}
