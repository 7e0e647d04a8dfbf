//! What the owner shard knows about a logged-in badge. Lives only on the
//! shard that owns the IMEI, so it needs no lock.

use std::net::SocketAddr;

use crate::protocol::message::{Login, Message};
use crate::protocol::Imei;

/// Which shard owns an IMEI: a keyed hash of it, modulo the shard count.
/// Keyed (the key is secret, kept beside the logs so that it survives
/// restarts), so that nobody who can pick IMEIs can aim every connection
/// at one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMap {
    key: [u8; 16],
    shards: usize,
}

impl ShardMap {
    pub fn new(key: [u8; 16], shards: usize) -> Self {
        Self {
            key,
            shards: shards.max(1),
        }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn owner(&self, imei: Imei) -> usize {
        use hmac::{Hmac, Mac};
        if self.shards == 1 {
            return 0;
        }
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&imei.as_u64().to_le_bytes());
        let digest = mac.finalize().into_bytes();
        let h = u64::from_le_bytes(digest[..8].try_into().expect("32 bytes"));
        (h % self.shards as u64) as usize
    }
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
            Message::Gps(g) => {
                if let Some(Ok(at)) = g.fix.coordinates() {
                    self.last_position = Some(at);
                }
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
    fn owners_spread_and_depend_on_the_key() {
        let a = ShardMap::new([1; 16], 4);
        let b = ShardMap::new([2; 16], 4);
        let mut counts = [0usize; 4];
        let mut differ = 0;
        for i in 0..4000u64 {
            let imei = Imei::with_check_digit(35_341_903_000_000 + i).unwrap();
            counts[a.owner(imei)] += 1;
            differ += usize::from(a.owner(imei) != b.owner(imei));
            assert_eq!(a.owner(imei), ShardMap::new([1; 16], 4).owner(imei));
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        // Another key sends about three quarters of the IMEIs elsewhere.
        assert!((2600..3400).contains(&differ), "{differ}");
        let imei: Imei = "353419032981446".parse().unwrap();
        assert_eq!(ShardMap::new([1; 16], 1).owner(imei), 0);
    }
}
