//! IMEIs that keep replacing each other's session from different
//! addresses: two badges with one cloned IMEI, or someone taking a badge
//! over. Each is counted; those replaced `threshold` times within a window
//! are listed (`clones` on the control socket).

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::protocol::Imei;

/// IMEIs tracked at most; beyond, new ones are not tracked until old
/// windows expire (the replacements are still counted).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone)]
struct Track {
    window_start: u32,
    in_window: u32,
    total: u64,
    last_at: u32,
    /// The address that was replaced and the one that replaced it, last time.
    peers: (IpAddr, IpAddr),
}

/// One shard's view of replacements, by IMEI.
#[derive(Debug)]
pub struct Clones {
    threshold: u32,
    window: u32,
    tracks: HashMap<Imei, Track>,
}

/// A listed IMEI, for `clones`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CloneView {
    pub imei: String,
    /// Replacements from another address within the current window.
    pub replacements: u32,
    /// Since it was first seen replaced.
    pub total: u64,
    pub last_at: u32,
    pub addresses: [String; 2],
}

impl Clones {
    pub fn new(threshold: u32, window_secs: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            window: window_secs.max(1),
            tracks: HashMap::new(),
        }
    }

    /// A session of `imei` at `old` was replaced by a login from `new`.
    /// Returns true when this makes the IMEI listed (once per window).
    pub fn replaced(&mut self, imei: Imei, old: IpAddr, new: IpAddr, now: u32) -> bool {
        if self.tracks.len() >= MAX_TRACKED && !self.tracks.contains_key(&imei) {
            let window = self.window;
            self.tracks
                .retain(|_, t| now.saturating_sub(t.window_start) < window);
            if self.tracks.len() >= MAX_TRACKED {
                return false;
            }
        }
        let t = self.tracks.entry(imei).or_insert(Track {
            window_start: now,
            in_window: 0,
            total: 0,
            last_at: now,
            peers: (old, new),
        });
        if now.saturating_sub(t.window_start) >= self.window {
            t.window_start = now;
            t.in_window = 0;
        }
        t.in_window += 1;
        t.total += 1;
        t.last_at = now;
        t.peers = (old, new);
        t.in_window == self.threshold
    }

    /// Listed IMEIs, most replaced first.
    pub fn list(&self, now: u32) -> Vec<CloneView> {
        let mut out: Vec<CloneView> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.in_window >= self.threshold && now.saturating_sub(t.window_start) < self.window
            })
            .map(|(imei, t)| CloneView {
                imei: imei.to_string(),
                replacements: t.in_window,
                total: t.total,
                last_at: t.last_at,
                addresses: [t.peers.0.to_string(), t.peers.1.to_string()],
            })
            .collect();
        out.sort_by(|a, b| {
            b.replacements
                .cmp(&a.replacements)
                .then(a.imei.cmp(&b.imei))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_after_threshold_replacements_in_a_window_and_forgotten_after() {
        let imei = Imei::with_check_digit(35_341_903_000_001).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut c = Clones::new(3, 60);
        assert!(!c.replaced(imei, a, b, 100));
        assert!(!c.replaced(imei, b, a, 110));
        assert!(c.list(110).is_empty());
        assert!(c.replaced(imei, a, b, 120), "third within 60 s: listed");
        assert!(!c.replaced(imei, b, a, 121), "announced once per window");
        let l = c.list(121);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].replacements, 4);
        assert_eq!(l[0].total, 4);
        assert_eq!(l[0].addresses, ["10.0.0.2".to_string(), "10.0.0.1".into()]);
        // The window ends: no longer listed, and a new window starts from one.
        assert!(c.list(160).is_empty());
        assert!(!c.replaced(imei, a, b, 200));
        assert_eq!(c.tracks[&imei].total, 5);
    }
}
