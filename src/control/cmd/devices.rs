//! `devices [--limit N]` and `device IMEI`: the badges online, from the
//! shards that own them.

use std::fmt;

use serde::Serialize;

use crate::server::{DeviceView, ShardMsg};

use super::super::answer::{self, Answer};
use super::super::shards::{ask, limit_arg, parse_imei};
use super::super::Context;

pub async fn list(ctx: &Context, args: &[&str]) -> Answer {
    let limit = limit_arg(args, "usage: devices [--limit N]")?;
    let mut devices: Vec<DeviceView> = Vec::new();
    for shard in 0..ctx.server.shards() {
        if let Some(v) = ask(ctx, shard, |reply| ShardMsg::Devices { limit, reply }).await {
            devices.extend(v);
        }
    }
    devices.sort_by(|a, b| a.imei.cmp(&b.imei));
    devices.truncate(limit);
    answer::ok(Devices { devices })
}

pub async fn one(ctx: &Context, args: &[&str]) -> Answer {
    let [imei] = args else {
        return answer::err("usage: device IMEI");
    };
    let imei = parse_imei(imei)?;
    let shard = ctx.server.owner(imei);
    match ask(ctx, shard, |reply| ShardMsg::Device { imei, reply }).await {
        Some(Some(device)) => answer::ok(Device { device }),
        Some(None) => answer::ok(Offline {
            device: OfflineView {
                imei: imei.to_string(),
                online: false,
                shard,
            },
        }),
        None => answer::err("the shard did not answer"),
    }
}

impl fmt::Display for DeviceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = match (self.latitude, self.longitude) {
            (Some(lat), Some(lon)) => format!("{lat:.6},{lon:.6}"),
            _ => "-".into(),
        };
        let battery = self.battery.map_or("-".into(), |b| format!("{b}%"));
        write!(
            f,
            "{} online shard {} peer {} type 0x{:04X} login {} last_frame {} battery {battery} position {position}",
            self.imei, self.shard, self.peer, self.device_type, self.logged_in_at, self.last_frame_at
        )
    }
}

#[derive(Serialize)]
struct Devices {
    devices: Vec<DeviceView>,
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.devices.is_empty() {
            return f.write_str("no badges online");
        }
        for d in &self.devices {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Device {
    device: DeviceView,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.device.fmt(f)
    }
}

#[derive(Serialize)]
struct OfflineView {
    imei: String,
    online: bool,
    shard: usize,
}

#[derive(Serialize)]
struct Offline {
    device: OfflineView,
}

impl fmt::Display for Offline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} offline (owner shard {})",
            self.device.imei, self.device.shard
        )
    }
}
