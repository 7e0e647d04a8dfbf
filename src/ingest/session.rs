//! What the owner shard knows about a logged-in badge. Lives only on the
//! shard that owns the IMEI, so it needs no lock.

use std::net::SocketAddr;

use crate::protocol::message::{Login, Message};
use crate::protocol::Imei;

/// The shard that owns an IMEI: a stable hash of the IMEI, modulo the shard
/// count. Stable across restarts and builds (no random seed), so that logs
/// and tests can predict it.
pub fn owner_shard(imei: Imei, shards: usize) -> usize {
    // splitmix64 finaliser: spreads consecutive IMEIs evenly.
    let mut z = imei.as_u64().wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % shards.max(1) as u64) as usize
}

#[derive(Debug, Clone)]
pub struct Session {
    pub imei: Imei,
    /// The connection currently serving this badge. A late close of an
    /// older connection is recognised by a different id.
    pub conn_id: u64,
    pub peer: SocketAddr,
    pub login: Login,
    /// Unix seconds.
    pub logged_in_at: u32,
    pub last_frame_at: u32,
    pub battery: Option<u8>,
    /// (latitude, longitude) of the last GPS fix with coordinates.
    pub last_position: Option<(f64, f64)>,
    /// Serial numbers of server-initiated frames.
    downlink_serial: u16,
}

impl Session {
    pub fn new(imei: Imei, conn_id: u64, peer: SocketAddr, login: Login, now: u32) -> Self {
        Self {
            imei,
            conn_id,
            peer,
            login,
            logged_in_at: now,
            last_frame_at: now,
            battery: None,
            last_position: None,
            downlink_serial: 0,
        }
    }

    /// The next serial for a downlink frame, wrapping as the reference does.
    pub fn next_serial(&mut self) -> u16 {
        self.downlink_serial = self.downlink_serial.wrapping_add(1);
        self.downlink_serial
    }

    /// Keeps what the control socket shows about the badge up to date.
    pub fn observe(&mut self, message: &Message<'_>, now: u32) {
        self.last_frame_at = now;
        match message {
            Message::Heartbeat(h) => self.battery = Some(h.status.battery),
            Message::Gps(g) if g.fix.latitude_raw.get() != 0 || g.fix.longitude_raw.get() != 0 => {
                self.last_position = Some((g.fix.latitude(), g.fix.longitude()));
            }
            Message::Attendance(a) => {
                if let Some(b) = a.battery_percent() {
                    self.battery = Some(b);
                }
            }
            _ => {}
        }
    }
}

/// What the control socket shows of an online badge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceView {
    pub imei: String,
    pub online: bool,
    pub shard: usize,
    pub peer: String,
    pub device_type: u16,
    /// Unix seconds.
    pub logged_in_at: u32,
    pub last_frame_at: u32,
    pub battery: Option<u8>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

impl Session {
    pub fn view(&self, shard: usize) -> DeviceView {
        DeviceView {
            imei: self.imei.to_string(),
            online: true,
            shard,
            peer: self.peer.to_string(),
            device_type: self.login.type_code.unwrap_or(0),
            logged_in_at: self.logged_in_at,
            last_frame_at: self.last_frame_at,
            battery: self.battery,
            latitude: self.last_position.map(|p| p.0),
            longitude: self.last_position.map(|p| p.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_shard_is_stable_and_spreads() {
        let mut counts = [0usize; 4];
        for i in 0..4000u64 {
            let imei = Imei::with_check_digit(35_341_903_000_000 + i).unwrap();
            counts[owner_shard(imei, 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        let imei: Imei = "353419032981446".parse().unwrap();
        assert_eq!(owner_shard(imei, 1), 0);
        assert_eq!(owner_shard(imei, 7), owner_shard(imei, 7));
    }
}
