//! The `[beacons]` section: the beacon registry.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{bad, ConfigError};

/// The `[beacons]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconsConfig {
    /// Load a registry at all. With the default `true`, the registry is read
    /// from `file` when one is set, else from the `beacons` table when
    /// `sink.kind = "clickhouse"`; with another sink and no file there is
    /// nothing to read it from and it stays off (see `App::start`).
    pub enabled: bool,
    /// A CSV file (the format of `badge-ingest beacons import`) to read
    /// instead of the ClickHouse table.
    pub file: Option<PathBuf>,
    /// Seconds between reloads; 0: only at start and on `reload`.
    pub refresh_secs: u64,
    /// Unknown beacons each shard keeps track of; sightings of further ones
    /// are only counted (`UnknownBeacons::overflow`).
    pub unknown_max: usize,
}

impl Default for BeaconsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: None,
            refresh_secs: 60,
            unknown_max: 10_000,
        }
    }
}

impl BeaconsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return bad("beacons.file", "must name a file (or be left out)");
        }
        if self.refresh_secs > 86_400 {
            return bad(
                "beacons.refresh_secs",
                "at most 86400 (0 reloads only at start and on request)",
            );
        }
        if self.unknown_max > 10_000_000 {
            return bad("beacons.unknown_max", "at most 10000000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_valid_and_bad_values_name_their_key() {
        let c = BeaconsConfig::default();
        c.validate().unwrap();
        assert!(c.enabled);
        assert_eq!((c.refresh_secs, c.unknown_max), (60, 10_000));
        let c: BeaconsConfig = toml::from_str("file = \"\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `beacons.file`"), "{e}");
        let c: BeaconsConfig = toml::from_str("refresh_secs = 100000").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `beacons.refresh_secs`"), "{e}");
        assert!(toml::from_str::<BeaconsConfig>("refresh = 5").is_err());
        let c: BeaconsConfig =
            toml::from_str("file = \"/etc/beacons.csv\"\nrefresh_secs = 0").unwrap();
        c.validate().unwrap();
    }
}
