//! The active beacons by MAC, published as immutable snapshots: a lookup
//! on a shard is one atomic load and one hash lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::Beacon;

struct Snapshot {
    by_mac: HashMap<u64, Arc<Beacon>>,
    loaded_at: Option<SystemTime>,
    generation: u64,
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// Serializes writers only, so that generations are never reused;
    /// readers never touch it.
    writer: Mutex<()>,
}

/// The active beacons by MAC. Cheap to clone; every clone sees the same
/// registry.
#[derive(Clone)]
pub struct BeaconRegistry {
    shared: Arc<Shared>,
}

impl Default for BeaconRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BeaconRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.current.load();
        f.debug_struct("BeaconRegistry")
            .field("beacons", &s.by_mac.len())
            .field("generation", &s.generation)
            .finish()
    }
}

impl BeaconRegistry {
    /// An empty registry (never loaded: [`Self::loaded_at`] is `None`).
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Snapshot {
                    by_mac: HashMap::new(),
                    loaded_at: None,
                    generation: 0,
                }),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Publishes `beacons` as the whole registry; inactive ones are left
    /// out. A MAC listed twice keeps its last entry.
    pub fn replace(&self, beacons: Vec<Beacon>) {
        let by_mac: HashMap<u64, Arc<Beacon>> = beacons
            .into_iter()
            .filter(|b| b.active)
            .map(|b| (b.mac, Arc::new(b)))
            .collect();
        let _one_writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.shared.current.load().generation + 1;
        self.shared.current.store(Arc::new(Snapshot {
            by_mac,
            loaded_at: Some(SystemTime::now()),
            generation,
        }));
    }

    /// The active beacon with this MAC. Lock-free, and allocation-free once
    /// the thread has done its first lookup (arc-swap registers each thread
    /// once): safe to call on a shard for every sighting.
    pub fn get(&self, mac: u64) -> Option<Arc<Beacon>> {
        self.shared.current.load().by_mac.get(&mac).cloned()
    }

    /// Whether an active beacon has this MAC (no reference count touched).
    pub fn contains(&self, mac: u64) -> bool {
        self.shared.current.load().by_mac.contains_key(&mac)
    }

    /// Active beacons.
    pub fn len(&self) -> usize {
        self.shared.current.load().by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the current snapshot was published; `None` before the first.
    pub fn loaded_at(&self) -> Option<SystemTime> {
        self.shared.current.load().loaded_at
    }

    /// Changes with every [`Self::replace`]: a shard that remembers it can
    /// tell cheaply when to call `UnknownBeacons::forget`.
    pub fn generation(&self) -> u64 {
        self.shared.current.load().generation
    }
}

impl crate::record::lookup::BeaconDirectory for BeaconRegistry {
    fn beacon(&self, mac: u64) -> Option<Arc<Beacon>> {
        self.get(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(mac: u64, name: &str, active: bool) -> Beacon {
        Beacon {
            mac,
            name: name.into(),
            lat: 22.5,
            lon: 114.0,
            address: String::new(),
            active,
        }
    }

    #[test]
    fn the_registry_serves_active_beacons_of_the_latest_snapshot() {
        let r = BeaconRegistry::new();
        assert!(r.is_empty());
        assert_eq!(r.loaded_at(), None);
        assert_eq!(r.generation(), 0);
        r.replace(vec![beacon(1, "one", true), beacon(2, "two", false)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(1).unwrap().name, "one");
        assert!(r.get(2).is_none());
        assert!(r.loaded_at().is_some());
        let held = r.get(1).unwrap();
        let clone = r.clone();
        clone.replace(vec![beacon(2, "two", true)]);
        assert_eq!(r.generation(), 2);
        assert!(r.get(1).is_none());
        assert!(r.contains(2));
        // A reader of the old snapshot keeps what it has.
        assert_eq!(held.name, "one");
    }
}
