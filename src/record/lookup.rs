//! The vocabulary of lookups: what a badge heard (cells and WiFi APs),
//! the position a provider gives back, the language of an address, and
//! the registry's entry for an installed beacon.
//!
//! Defined here, below the services that answer them (`geo`, `beacons`),
//! so that enriching a row ([`super::enrich`]) depends on no service.

use serde::{Deserialize, Serialize};

use crate::protocol::layout::{CellTower, Cells, Generation, MacAddr, MobileNetwork, WifiAp};

/// The radio of the cells in a query, as the Geolocation API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Radio {
    Gsm,
    Lte,
}

impl From<Generation> for Radio {
    fn from(g: Generation) -> Self {
        match g {
            Generation::G2 => Radio::Gsm,
            Generation::G4 => Radio::Lte,
        }
    }
}

/// What a badge heard: cells (main first) and WiFi APs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellQuery {
    pub network: MobileNetwork,
    pub radio: Radio,
    /// The serving cell first, then neighbours. Zero-filled slots are ignored.
    pub cells: Vec<CellTower>,
    /// MAC and signal in dBm (negative; 0 = unknown).
    pub wifi: Vec<(MacAddr, i8)>,
}

impl CellQuery {
    /// From a report's cell list, with the zero slots left out.
    pub fn from_cells(network: MobileNetwork, cells: Cells<'_>) -> Self {
        Self {
            network,
            radio: cells.generation().into(),
            cells: cells.iter().filter(|c| !c.is_empty()).collect(),
            wifi: Vec::new(),
        }
    }

    /// Adds a report's WiFi APs, their signal bytes read by [`wifi_dbm`].
    pub fn with_wifi(mut self, aps: &[WifiAp]) -> Self {
        self.wifi
            .extend(aps.iter().map(|ap| (ap.mac(), wifi_dbm(ap.rssi))));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.cells.iter().all(CellTower::is_empty) && self.wifi.is_empty()
    }
}

/// A WiFi signal byte as dBm. Firmwares send either the signed dBm value
/// (0x80..=0xFF) or its magnitude (e.g. 65 for -65 dBm); both read as the
/// same negative number. 0 stays 0, unknown.
pub fn wifi_dbm(raw: u8) -> i8 {
    if raw >= 0x80 {
        raw as i8
    } else {
        -(raw as i8)
    }
}

/// Where a position came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FixSource {
    Cell,
    Wifi,
}

/// A position without GPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    /// Radius in metres.
    pub accuracy_m: f64,
    pub source: FixSource,
}

/// The language of an address: Chinese answers 0x17, English 0x97.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Chinese,
    English,
}

impl Language {
    /// From an address request's language word: 2 is English, anything else
    /// Chinese (as the reply chosen for it).
    pub fn from_request(language: u16) -> Self {
        if language == 2 {
            Language::English
        } else {
            Language::Chinese
        }
    }

    /// The `accept-language` value.
    pub fn code(self) -> &'static str {
        match self {
            Language::Chinese => "zh",
            Language::English => "en",
        }
    }
}

/// What to ask the geo service for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoWant {
    /// The position, when the row has one (GPS, or a beacon's).
    pub position: Option<(f64, f64)>,
    /// What the badge heard, for rows without a position.
    pub query: Option<CellQuery>,
    /// Whether to ask for an address once there is a position.
    pub address: bool,
}

/// One installed beacon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beacon {
    /// The 48-bit MAC as an integer, the way [`MacAddr::to_u64`] reads it.
    ///
    /// [`MacAddr::to_u64`]: crate::protocol::layout::MacAddr::to_u64
    pub mac: u64,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub address: String,
    /// A retired beacon stays in the table (its history does) but is left
    /// out of lookups.
    pub active: bool,
}

impl Beacon {
    /// Whether `lat`/`lon` is a usable position: finite, in range, and not
    /// 0/0, which is how the table says "position unknown".
    pub fn has_position(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
            && !(self.lat == 0.0 && self.lon == 0.0)
    }

    /// What parsing checks, for beacons that come from elsewhere.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.mac == 0 || self.mac >> 48 != 0 {
            return Err(format!(
                "MAC {:#x} is not a 48-bit address other than 0",
                self.mac
            ));
        }
        if self.name.is_empty() {
            return Err("the name is empty".into());
        }
        if !self.lat.is_finite() || !(-90.0..=90.0).contains(&self.lat) {
            return Err(format!("lat {} is not between -90 and 90", self.lat));
        }
        if !self.lon.is_finite() || !(-180.0..=180.0).contains(&self.lon) {
            return Err(format!("lon {} is not between -180 and 180", self.lon));
        }
        Ok(())
    }
}

/// Where installed beacons are: what the shards ask for every sighting.
/// The beacon registry answers it; anything that knows beacons can.
pub trait BeaconDirectory: Send + Sync {
    fn beacon(&self, mac: u64) -> Option<std::sync::Arc<Beacon>>;
}

/// A directory that knows no beacon.
impl BeaconDirectory for () {
    fn beacon(&self, _: u64) -> Option<std::sync::Arc<Beacon>> {
        None
    }
}

/// Which badges may log in: what the shards ask at every login. The
/// allowlist answers it; without one, every IMEI may.
pub trait ImeiAllowlist: Send + Sync {
    fn allows(&self, imei: crate::protocol::Imei) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tower(lac: u32, cell_id: u64, rssi: u8) -> CellTower {
        CellTower { lac, cell_id, rssi }
    }

    #[test]
    fn wifi_signal_bytes_read_as_dbm_either_way() {
        assert_eq!(wifi_dbm(0xBF), -65);
        assert_eq!(wifi_dbm(65), -65);
        assert_eq!(wifi_dbm(0), 0);
        assert_eq!(wifi_dbm(0x80), -128);
    }

    #[test]
    fn queries_are_built_from_report_blocks() {
        use crate::protocol::layout::Cell2g;
        let cells = [
            Cell2g::new(9360, 4082, 60),
            Cell2g::new(0, 0, 0),
            Cell2g::new(9360, 4083, 20),
        ];
        let q = CellQuery::from_cells(MobileNetwork::new(460, 0), Cells::G2(&cells))
            .with_wifi(&[WifiAp::new([1, 2, 3, 4, 5, 6], 70)]);
        assert_eq!(q.radio, Radio::Gsm);
        assert_eq!(q.cells, vec![tower(9360, 4082, 60), tower(9360, 4083, 20)]);
        assert_eq!(q.wifi, vec![(MacAddr([1, 2, 3, 4, 5, 6]), -70)]);
        assert_eq!(Language::from_request(2), Language::English);
        assert_eq!(Language::from_request(1).code(), "zh");
    }

    #[test]
    fn positions_need_range_and_not_zero_zero() {
        let mut b = Beacon {
            mac: 1,
            name: "x".into(),
            lat: 22.5,
            lon: 114.0,
            address: String::new(),
            active: true,
        };
        assert!(b.has_position());
        b.lat = 0.0;
        assert!(b.has_position());
        b.lon = 0.0;
        assert!(!b.has_position());
        b.lat = f64::NAN;
        b.lon = 1.0;
        assert!(!b.has_position());
        b.lat = 91.0;
        assert!(!b.has_position());
        b.lat = -90.0;
        b.lon = 180.0;
        assert!(b.has_position());
    }
}
