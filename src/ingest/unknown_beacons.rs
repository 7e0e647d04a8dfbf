//! Sightings of beacons the registry does not know, kept per shard by
//! the ingest core and merged by the control socket on request.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A MAC the registry did not know, as seen by one shard (or several, merged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownBeacon {
    pub mac: u64,
    /// Sightings.
    pub count: u64,
    /// Unix seconds.
    pub first_seen: u32,
    pub last_seen: u32,
    /// The badge of the latest sighting.
    pub last_imei: u64,
    /// The strongest signal in dBm (the highest value); 0 if none was known.
    pub best_rssi: i8,
}

impl UnknownBeacon {
    fn absorb(&mut self, other: &UnknownBeacon) {
        self.count += other.count;
        self.first_seen = self.first_seen.min(other.first_seen);
        if other.last_seen >= self.last_seen {
            self.last_seen = other.last_seen;
            self.last_imei = other.last_imei;
        }
        self.best_rssi = better_rssi(self.best_rssi, other.best_rssi);
    }
}

/// 0 means unknown, so it loses to any reading.
fn better_rssi(a: i8, b: i8) -> i8 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.max(b),
    }
}

/// One shard's record of unknown beacons. Not shared between threads on
/// purpose: each shard updates its own without synchronization, and the
/// control socket merges their [`snapshot`](Self::snapshot)s on request.
#[derive(Debug)]
pub struct UnknownBeacons {
    max: usize,
    // SipHash, not a cheaper hash: the keys are whatever badges send.
    entries: HashMap<u64, UnknownBeacon>,
    overflow: u64,
}

impl UnknownBeacons {
    /// Keeps at most `max` MACs; sightings of more are only counted.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            entries: HashMap::new(),
            overflow: 0,
        }
    }

    /// Counts one sighting of `mac` (which the caller found unknown) by the
    /// badge `imei` at `now_unix`; `rssi` in dBm, 0 if unknown.
    pub fn seen(&mut self, mac: u64, imei: u64, rssi: i8, now_unix: u32) {
        let sighting = UnknownBeacon {
            mac,
            count: 1,
            first_seen: now_unix,
            last_seen: now_unix,
            last_imei: imei,
            best_rssi: rssi,
        };
        let full = self.entries.len() >= self.max;
        match self.entries.entry(mac) {
            Entry::Occupied(mut e) => e.get_mut().absorb(&sighting),
            Entry::Vacant(_) if full => self.overflow += 1,
            Entry::Vacant(e) => {
                e.insert(sighting);
            }
        }
    }

    /// The MACs kept, in no particular order (see [`Self::merge`]).
    pub fn snapshot(&self) -> Vec<UnknownBeacon> {
        self.entries.values().cloned().collect()
    }

    /// Adds `other` (a shard's snapshot) to `into`: the same MAC seen by two
    /// shards becomes one entry with the counts summed. Leaves `into` sorted
    /// by count, most seen first (then by MAC).
    pub fn merge(into: &mut Vec<UnknownBeacon>, other: Vec<UnknownBeacon>) {
        let mut at: HashMap<u64, usize> =
            into.iter().enumerate().map(|(i, u)| (u.mac, i)).collect();
        for u in other {
            match at.entry(u.mac) {
                Entry::Occupied(e) => into[*e.get()].absorb(&u),
                Entry::Vacant(e) => {
                    e.insert(into.len());
                    into.push(u);
                }
            }
        }
        into.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.mac.cmp(&b.mac)));
    }

    /// Drops the MACs that are `known` now (after a reload of the
    /// registry), which also makes room for new ones.
    pub fn forget(&mut self, known: impl Fn(u64) -> bool) {
        self.entries.retain(|mac, _| !known(*mac));
    }

    /// MACs kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sightings of MACs not kept because the tracker was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_beacons_keep_first_last_and_best() {
        let mut u = UnknownBeacons::new(10);
        u.seen(7, 100, -80, 1000);
        u.seen(7, 200, 0, 1005);
        u.seen(7, 300, -60, 1003);
        let s = u.snapshot();
        assert_eq!(
            s,
            vec![UnknownBeacon {
                mac: 7,
                count: 3,
                first_seen: 1000,
                last_seen: 1005,
                last_imei: 200,
                best_rssi: -60,
            }]
        );
        u.seen(8, 1, -70, 1010);
        u.forget(|mac| mac == 7);
        assert_eq!(u.snapshot().iter().map(|b| b.mac).collect::<Vec<_>>(), [8]);
    }
}
