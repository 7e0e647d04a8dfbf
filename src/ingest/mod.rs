//! The ingest core: what the server decides for every frame, with no I/O
//! and no clock (time is passed in), so that all of it is tested without
//! sockets.
//!
//! ```text
//!   server (sockets) ──frame──▶ Badge::on_frame(frame, now, &mut Ingest, &mut Outcome)
//!                                   │ login state, sessions, replies, rows,
//!                                   │ beacons, commands, geo routing
//!   server ◀──────────Outcome───────┘ replies · rows · lookups · replaced · end
//! ```
//!
//! - [`Badge`]: one connection's state (before and after login).
//! - [`Ingest`]: one shard's state: the sessions of the IMEIs it owns, their
//!   [`Commands`], unknown beacons, its counters and its ingest keys.
//! - [`Outcome`]: what to do, in order; the replies acknowledge the rows.
//!
//! The server (`crate::server`) only reads, feeds the core, carries out the
//! outcome, and hands sockets to the shard that owns their IMEI.

mod badge;
mod clock;
mod clones;
mod commands;
mod deadlines;
mod outcome;
mod session;
mod unknown_beacons;

use indexmap::IndexMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::config::Config;
use crate::metrics::Counters;
use crate::protocol::Imei;
use crate::record::enrich;
use crate::record::lookup::{BeaconDirectory, ImeiAllowlist, Language};
use crate::record::{IngestKeys, Record};

pub use badge::Badge;
pub use clock::{ClockZones, ZoneTable};
pub use clones::{CloneView, Clones};
pub use commands::{
    CommandError, CommandKind, CommandRequest, CommandStatus, CommandView, Commands, Delivery,
};
pub use deadlines::{Deadlines, Liveness};
pub use outcome::{CloseReason, End, Found, Lookup, Outcome, Owed};
pub use session::{DeviceView, Session, ShardMap};
pub use unknown_beacons::{UnknownBeacon, UnknownBeacons};

/// What the core of one shard needs to know, built once from the
/// configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub shard: usize,
    /// Which shard owns which IMEI.
    pub map: ShardMap,
    /// The zones badges' clocks are in.
    pub clocks: ClockZones,
    /// Also keep every decoded frame in `raw_frames`.
    pub raw_frames: bool,
    /// Lookups for positions and addresses; `None` without a provider.
    pub geo: Option<GeoSettings>,
    pub unknown_beacons_max: usize,
    pub max_queued_commands: usize,
    pub command_ttl: Duration,
    pub deadlines: Deadlines,
    /// Acknowledgements wait for their rows to be durable (`log.ack =
    /// "durable"`): the reply to a frame whose row waits for a lookup then
    /// waits with it, instead of going out at once.
    pub hold_acks: bool,
    /// Frames a connection may send before it logs in.
    pub prelogin_frames: u32,
    /// A live session is not replaced from another address sooner than
    /// this after its login (0: always replaced).
    pub replace_min_interval_secs: u32,
    pub clone_replacements: u32,
    pub clone_window_secs: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct GeoSettings {
    /// Rows waiting for a lookup per shard; beyond, stored at once.
    pub max_pending: u64,
    /// Whether rows with a position are also given an address.
    pub addresses: bool,
    /// The language of stored addresses.
    pub language: Language,
}

impl Settings {
    pub fn new(config: &Config, shard: usize, map: ShardMap) -> Self {
        Self {
            shard,
            map,
            clocks: ClockZones::new(&config.protocol),
            raw_frames: config.sink.raw_frames,
            geo: config.geo.enabled().then(|| GeoSettings {
                max_pending: config.geo.max_pending as u64,
                addresses: config.geo.addresses,
                language: config.geo.stored_language(),
            }),
            unknown_beacons_max: config.beacons.unknown_max,
            max_queued_commands: config.server.max_queued_commands,
            command_ttl: Duration::from_secs(config.server.command_ttl_secs),
            deadlines: Deadlines {
                login: Duration::from_secs(config.server.login_timeout_secs),
                idle: config.idle_timeout(),
                partial_frame: Duration::from_secs(config.limits.partial_frame_timeout_secs),
                write: Duration::from_secs(config.limits.write_timeout_secs),
            },
            hold_acks: config.log.ack == crate::config::AckMode::Durable,
            prelogin_frames: config.limits.prelogin_frames,
            replace_min_interval_secs: config.limits.replace_min_interval_secs as u32,
            clone_replacements: config.limits.clone_replacements,
            clone_window_secs: config.limits.clone_window_secs as u32,
        }
    }
}

/// One shard's ingest state. Lives on the shard's thread only.
pub struct Ingest {
    settings: Settings,
    /// Dense (an index table over a vector of entries), not a `HashMap`,
    /// whose buckets are on average a third empty and still paid for by
    /// every idle badge.
    sessions: IndexMap<Imei, Session>,
    commands: Commands,
    pub counters: Counters,
    /// Frames by protocol number.
    pub frames: Box<[u64; 256]>,
    unknown_beacons: UnknownBeacons,
    keys: IngestKeys,
    beacons: Arc<dyn BeaconDirectory>,
    /// Who may log in; everyone without one.
    allowlist: Option<Arc<dyn ImeiAllowlist>>,
    /// IMEIs that keep replacing each other from different addresses.
    clones: Clones,
    /// Reused for the rows of one frame.
    scratch: Vec<Record>,
}

impl Ingest {
    /// `command_ids` is shared by every shard: a command id is the 4-byte
    /// server flag a badge echoes.
    pub fn new(
        settings: Settings,
        instance: &'static str,
        command_ids: Arc<AtomicU32>,
        beacons: Arc<dyn BeaconDirectory>,
    ) -> Self {
        Self {
            commands: Commands::new(
                command_ids,
                settings.max_queued_commands,
                settings.command_ttl,
            ),
            unknown_beacons: UnknownBeacons::new(settings.unknown_beacons_max),
            keys: IngestKeys::new(instance, settings.shard as u16),
            sessions: IndexMap::new(),
            counters: Counters::default(),
            frames: Box::new([0; 256]),
            beacons,
            allowlist: None,
            clones: Clones::new(settings.clone_replacements, settings.clone_window_secs),
            scratch: Vec::new(),
            settings,
        }
    }

    /// Only the IMEIs `allowlist` allows may log in from now on.
    pub fn set_allowlist(&mut self, allowlist: Arc<dyn ImeiAllowlist>) {
        self.allowlist = Some(allowlist);
    }

    /// IMEIs replaced from another address often enough to look cloned.
    pub fn clones(&self, now: u32) -> Vec<CloneView> {
        self.clones.list(now)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counters with the sessions gauge brought up to date.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.sessions = self.sessions.len() as u64;
        c
    }

    /// A command (0x80) or message (0x82) for a badge this shard owns:
    /// the frame to write when it is online, and its log rows in `rows`.
    pub fn submit(
        &mut self,
        request: CommandRequest,
        now: u32,
        rows: &mut Vec<Record>,
    ) -> Result<(CommandView, Option<Delivery>), CommandError> {
        let before = rows.len();
        let session = self.sessions.get_mut(&request.imei);
        let result = self
            .commands
            .submit(request, now, session, &mut self.keys, rows);
        self.counters.records += (rows.len() - before) as u64;
        result
    }

    /// Expires queued commands (the coarse timer's tick).
    pub fn expire_commands(&mut self, now: u32, rows: &mut Vec<Record>) {
        let before = rows.len();
        self.commands.expire(now, &mut self.keys, rows);
        self.counters.records += (rows.len() - before) as u64;
    }

    pub fn commands(&self, imei: Imei) -> Vec<CommandView> {
        self.commands.list(imei)
    }

    /// Queues kept from before a restart, by IMEI: each a JSON list of
    /// commands (as [`Self::take_queue_changes`] gave them). A queue that
    /// does not read is reported and left out.
    pub fn restore_commands<'a>(
        &mut self,
        queues: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) {
        for (imei, json) in queues {
            let parsed = imei
                .parse::<Imei>()
                .map_err(|e| e.to_string())
                .and_then(|i| {
                    serde_json::from_str::<Vec<CommandView>>(json)
                        .map(|q| (i, q))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((imei, queued)) => self.commands.restore(imei, queued),
                Err(error) => {
                    tracing::error!(imei, %error, "a queued command kept from before does not read; left out")
                }
            }
        }
    }

    /// The badges whose command queue changed, for the log to keep.
    pub fn take_queue_changes(&mut self) -> Vec<String> {
        self.commands.take_changes()
    }

    pub fn device(&self, imei: Imei) -> Option<DeviceView> {
        self.sessions
            .get(&imei)
            .map(|s| s.view(self.settings.shard))
    }

    pub fn devices(&self, limit: usize) -> Vec<DeviceView> {
        self.sessions
            .values()
            .take(limit)
            .map(|s| s.view(self.settings.shard))
            .collect()
    }

    /// Beacons heard that the registry does not know (those it learnt
    /// since are forgotten first), and how many sightings were not kept.
    pub fn unknown_beacons(&mut self) -> (Vec<UnknownBeacon>, u64) {
        let beacons = &self.beacons;
        self.unknown_beacons
            .forget(|mac| beacons.beacon(mac).is_some());
        (
            self.unknown_beacons.snapshot(),
            self.unknown_beacons.overflow(),
        )
    }

    /// A lookup is done: its row with what was found, and the reply it
    /// owed appended to `reply` (if any is owed after all). The row keeps
    /// its place in `geo.max_pending` until [`Self::lookup_stored`].
    pub fn finish_lookup(&mut self, lookup: Lookup, found: Found, reply: &mut BytesMut) -> Record {
        let Lookup {
            mut row,
            want,
            owed,
            serial,
            ..
        } = lookup;
        let c = &mut self.counters;
        c.geo_positioned += u64::from(found.fix.is_some());
        c.geo_addressed += u64::from(found.address.is_some());
        let wanted_fix = want.position.is_none();
        if (wanted_fix && found.fix.is_none()) || (want.address && found.address.is_none()) {
            c.geo_unenriched += 1;
        }
        c.geo_deadline_missed += u64::from(found.missed);
        if let Some(owed) = owed {
            self.answer(owed, serial, found.address.as_deref(), reply);
        }
        enrich::apply(&mut row, found.fix, found.address.as_deref());
        row
    }

    /// A looked-up row was taken by the sink: its slot is free again.
    pub fn lookup_stored(&mut self) {
        self.counters.geo_pending -= 1;
    }

    /// An owed reply, counted by what it says.
    fn answer(&mut self, owed: Owed, serial: u16, address: Option<&str>, out: &mut BytesMut) {
        if !owed.encode(serial, address, out) {
            return;
        }
        let c = &mut self.counters;
        match (owed, address.is_some()) {
            (Owed::AlarmSms, _) => c.geo_alarm_sms += 1,
            (Owed::Address { .. }, true) => c.geo_replies_with_address += 1,
            (Owed::Address { .. }, false) => c.geo_replies_empty += 1,
        }
    }
}

#[cfg(test)]
mod tests;
