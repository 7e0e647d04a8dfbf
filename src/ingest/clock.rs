//! Which zone a badge's clock is in, so that its device times are stored
//! in true UTC. The reference decoded every badge's time as UTC+8 while
//! storing the zone each badge gives in its login; a badge elsewhere had
//! every fix hours off.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::ProtocolConfig;
use crate::protocol::Imei;

/// Per-IMEI zones that change while the server runs (the `devices`
/// table's, kept by [`crate::zones`]).
pub type ZoneTable = Arc<ArcSwap<HashMap<Imei, i32>>>;

/// The zones of a fleet's clocks, minutes east of UTC.
#[derive(Debug, Clone)]
pub struct ClockZones {
    /// For a badge that says none, and has no override.
    default: i32,
    /// Whether the zone a badge gives in its login is believed.
    from_login: bool,
    /// Per IMEI from the config, before anything else.
    overrides: Arc<HashMap<Imei, i32>>,
    /// Per IMEI from the `devices` table, before what the badge says.
    table: Option<ZoneTable>,
    /// A device time further ahead of the server's clock is not trusted.
    pub max_future_secs: u32,
}

impl ClockZones {
    /// From a validated configuration (IMEIs that do not parse are left
    /// out; validation refuses them).
    pub fn new(config: &ProtocolConfig) -> Self {
        let overrides = config
            .device_utc_offsets
            .iter()
            .filter_map(|(imei, minutes)| Some((imei.parse().ok()?, *minutes)))
            .collect();
        Self {
            default: config.device_utc_offset_minutes,
            from_login: config.login_time_zone,
            overrides: Arc::new(overrides),
            table: None,
            max_future_secs: config.max_future_minutes * 60,
        }
    }

    /// Also look zones up in `table` (after the config's).
    pub fn set_table(&mut self, table: ZoneTable) {
        self.table = Some(table);
    }

    /// The zone of `imei`'s clock, given the one its login named (if any).
    pub fn offset_minutes(&self, imei: Imei, login: Option<i16>) -> i32 {
        if let Some(minutes) = self.overrides.get(&imei) {
            return *minutes;
        }
        if let Some(minutes) = self
            .table
            .as_ref()
            .and_then(|t| t.load().get(&imei).copied())
        {
            return minutes;
        }
        match login {
            Some(minutes) if self.from_login => i32::from(minutes),
            _ => self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_then_the_login_then_the_fleet_default() {
        let listed = Imei::with_check_digit(35_341_903_000_001).unwrap();
        let other = Imei::with_check_digit(35_341_903_000_002).unwrap();
        let mut config = ProtocolConfig::default();
        config.device_utc_offsets.insert(listed.to_string(), -300);
        let zones = ClockZones::new(&config);
        assert_eq!(zones.offset_minutes(listed, Some(330)), -300);
        assert_eq!(zones.offset_minutes(other, Some(330)), 330);
        assert_eq!(zones.offset_minutes(other, Some(0)), 0);
        assert_eq!(zones.offset_minutes(other, None), 480);
        config.login_time_zone = false;
        let zones = ClockZones::new(&config);
        assert_eq!(zones.offset_minutes(other, Some(330)), 480);
        assert_eq!(zones.offset_minutes(listed, Some(330)), -300);
        assert_eq!(zones.max_future_secs, 15 * 60);
        // The devices table's come after the config's, before the login's.
        let mut zones = ClockZones::new(&ProtocolConfig {
            device_utc_offsets: config.device_utc_offsets.clone(),
            ..ProtocolConfig::default()
        });
        let table: ZoneTable = Arc::new(ArcSwap::from_pointee(HashMap::from([
            (listed, 60),
            (other, 90),
        ])));
        zones.set_table(table.clone());
        assert_eq!(zones.offset_minutes(listed, Some(330)), -300);
        assert_eq!(zones.offset_minutes(other, Some(330)), 90);
        table.store(Arc::new(HashMap::new()));
        assert_eq!(zones.offset_minutes(other, Some(330)), 330);
    }
}
