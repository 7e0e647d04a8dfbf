//! Cache keys: what makes two lookups the same question.

use crate::protocol::layout::MacAddr;
use crate::record::lookup::{CellQuery, Language, Radio};

/// The position cache key: the set of cells and APs, without their signals,
/// so a badge standing still hits the cache while its signals flicker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LocateKey {
    radio: Radio,
    cells: Box<[(u16, u16, u32, u64)]>,
    wifi: Box<[MacAddr]>,
}

impl LocateKey {
    pub(super) fn new(q: &CellQuery) -> Self {
        let n = q.network;
        let mut cells: Vec<_> = q
            .cells
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| (n.mcc, n.mnc, c.lac, c.cell_id))
            .collect();
        cells.sort_unstable();
        cells.dedup();
        let mut wifi: Vec<_> = q.wifi.iter().map(|(mac, _)| *mac).collect();
        wifi.sort_unstable();
        wifi.dedup();
        Self {
            radio: q.radio,
            cells: cells.into(),
            wifi: wifi.into(),
        }
    }
}

/// The address cache key: the position on a 1e-4° grid (about 11 m).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct AddressKey {
    lat: i32,
    lon: i32,
    pub(super) lang: Language,
}

impl AddressKey {
    const GRID: f64 = 1e4;

    pub(super) fn new(lat: f64, lon: f64, lang: Language) -> Self {
        Self {
            lat: (lat * Self::GRID).round() as i32,
            lon: (lon * Self::GRID).round() as i32,
            lang,
        }
    }

    pub(super) fn lat(&self) -> f64 {
        f64::from(self.lat) / Self::GRID
    }

    pub(super) fn lon(&self) -> f64 {
        f64::from(self.lon) / Self::GRID
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::layout::{CellTower, MobileNetwork};

    fn tower(lac: u32, cell_id: u64, rssi: u8) -> CellTower {
        CellTower { lac, cell_id, rssi }
    }

    #[test]
    fn the_position_key_ignores_signal_order_and_empty_slots() {
        let net = MobileNetwork::new(460, 0);
        let mac = |b| MacAddr([0, 0, 0, 0, 0, b]);
        let a = CellQuery {
            network: net,
            radio: Radio::Gsm,
            cells: vec![tower(1, 2, 50), tower(1, 3, 20)],
            wifi: vec![(mac(1), -60), (mac(2), -70)],
        };
        let b = CellQuery {
            network: net,
            radio: Radio::Gsm,
            cells: vec![tower(1, 3, 90), tower(0, 0, 0), tower(1, 2, 10)],
            wifi: vec![(mac(2), -50), (mac(1), -80)],
        };
        assert_eq!(LocateKey::new(&a), LocateKey::new(&b));
        let c = CellQuery {
            radio: Radio::Lte,
            ..b.clone()
        };
        assert_ne!(LocateKey::new(&a), LocateKey::new(&c));
        let d = CellQuery {
            network: MobileNetwork::new(460, 1),
            ..b
        };
        assert_ne!(LocateKey::new(&a), LocateKey::new(&d));
    }

    #[test]
    fn the_address_key_is_a_1e4_degree_grid_per_language() {
        let k = AddressKey::new(22.543_12, 113.941_86, Language::Chinese);
        assert_eq!(k, AddressKey::new(22.543_14, 113.941_94, Language::Chinese));
        assert_ne!(k, AddressKey::new(22.543_12, 113.941_86, Language::English));
        assert_ne!(k, AddressKey::new(22.543_2, 113.941_86, Language::Chinese));
        assert_eq!((k.lat(), k.lon()), (22.5431, 113.9419));
        let s = AddressKey::new(-33.868_84, -151.209_3, Language::English);
        assert_eq!((s.lat(), s.lon()), (-33.8688, -151.2093));
    }
}
