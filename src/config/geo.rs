//! The `[geo]` section: positions without GPS and addresses.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::lookup::Language;

use super::{bad, ConfigError};

/// The `[geo]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeoConfig {
    /// An OpenCellID-format CSV, loaded at start and on reload. Used first.
    pub cell_db: Option<PathBuf>,
    /// The Geolocation-API endpoint, e.g.
    /// `https://www.googleapis.com/geolocation/v1/geolocate`; empty: off.
    pub geolocation_url: String,
    /// Sent as `?key=`; empty: none.
    pub geolocation_key: String,
    /// The whole reverse endpoint, e.g. `https://nominatim.openstreetmap.org/reverse`
    /// (the query string is added); empty: off.
    pub reverse_url: String,
    /// Bound on each provider call.
    pub timeout_ms: u64,
    /// HTTP calls in flight per provider.
    pub concurrency: usize,
    /// Entries per cache (positions, addresses); 0 turns caching off.
    pub cache_entries: usize,
    pub cache_ttl_secs: u64,
    /// Consecutive failures (errors or timeouts) that open a provider's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before one probe.
    pub breaker_cooldown_secs: u64,
    /// Lookups accepted and not yet answered; more are refused at the handle.
    pub queue: usize,
    /// How long an address request (0x17/0x1A/0xA7) waits for its address
    /// before it is answered with an empty one, and how long a stored row
    /// waits for its position and address before it is stored without.
    pub deadline_ms: u64,
    /// Rows (and address replies) waiting for the geo service per shard;
    /// beyond this a row is stored at once without enrichment, and counted.
    pub max_pending: usize,
    /// Whether rows that have a position (GPS, or one found from cells) are
    /// also given an address. Off: only address requests and alarms ask
    /// for one, which spares a rate-limited reverse provider.
    pub addresses: bool,
    /// The language of stored addresses (`zh` or `en`). Address requests
    /// use their own, alarms their language byte.
    pub language: String,
}

impl Default for GeoConfig {
    fn default() -> Self {
        Self {
            cell_db: None,
            geolocation_url: String::new(),
            geolocation_key: String::new(),
            reverse_url: String::new(),
            timeout_ms: 2000,
            concurrency: 16,
            cache_entries: 100_000,
            cache_ttl_secs: 86_400,
            breaker_failures: 5,
            breaker_cooldown_secs: 30,
            queue: 4096,
            deadline_ms: 3000,
            max_pending: 4096,
            addresses: true,
            language: "zh".into(),
        }
    }
}

impl GeoConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Whether any provider is configured; without one the server answers
    /// address requests at once with an empty address, as the reference
    /// does when its geocoder is off.
    pub fn enabled(&self) -> bool {
        self.cell_db.is_some() || !self.geolocation_url.is_empty() || !self.reverse_url.is_empty()
    }

    /// The language of stored addresses.
    pub fn stored_language(&self) -> Language {
        if self.language == "en" {
            Language::English
        } else {
            Language::Chinese
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn url_ok(url: &str) -> Result<(), String> {
            let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(format!("`{url}` must be an http:// or https:// URL"));
            }
            Ok(())
        }
        if self
            .cell_db
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return bad("geo.cell_db", "must name a file (or be left out)");
        }
        if !self.geolocation_url.is_empty() {
            if let Err(reason) = url_ok(&self.geolocation_url) {
                return bad("geo.geolocation_url", reason);
            }
        } else if !self.geolocation_key.is_empty() {
            return bad(
                "geo.geolocation_key",
                "is set but geo.geolocation_url is empty",
            );
        }
        if !self.reverse_url.is_empty() {
            if let Err(reason) = url_ok(&self.reverse_url) {
                return bad("geo.reverse_url", reason);
            }
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return bad("geo.timeout_ms", "must be between 1 and 60000");
        }
        if !(1..=4096).contains(&self.concurrency) {
            return bad("geo.concurrency", "must be between 1 and 4096");
        }
        if self.cache_entries > 100_000_000 {
            return bad("geo.cache_entries", "at most 100000000");
        }
        if self.cache_ttl_secs == 0 {
            return bad(
                "geo.cache_ttl_secs",
                "must be at least 1 (cache_entries = 0 turns caching off)",
            );
        }
        if self.breaker_failures == 0 {
            return bad("geo.breaker_failures", "must be at least 1");
        }
        if self.breaker_cooldown_secs == 0 {
            return bad("geo.breaker_cooldown_secs", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return bad("geo.queue", "must be between 1 and 1000000");
        }
        if !(1..=60_000).contains(&self.deadline_ms) {
            return bad("geo.deadline_ms", "must be between 1 and 60000");
        }
        if !(1..=1_000_000).contains(&self.max_pending) {
            return bad("geo.max_pending", "must be between 1 and 1000000");
        }
        if !matches!(self.language.as_str(), "zh" | "en") {
            return bad("geo.language", "must be `zh` or `en`");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        GeoConfig::default().validate().unwrap();
        let c: GeoConfig = toml::from_str("timeout_ms = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `geo.timeout_ms`"), "{e}");
        let c: GeoConfig = toml::from_str("reverse_url = \"ftp://x/reverse\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `geo.reverse_url`"), "{e}");
        let c: GeoConfig = toml::from_str("geolocation_key = \"k\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("config key `geo.geolocation_key`"), "{e}");
        let e = toml::from_str::<GeoConfig>("timeout = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
        let c: GeoConfig = toml::from_str(
            "cell_db = \"/var/lib/cells.csv\"\ngeolocation_url = \"https://example.invalid/geolocate\"\nqueue = 8",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.queue, 8);
        assert_eq!(c.timeout_ms, 2000);
    }
}
