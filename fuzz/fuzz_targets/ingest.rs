//! Fuzzes the I/O-free ingest core (`badge_ingest::ingest`) the way the
//! server drives it: a badge's TCP stream is split into frames, each frame
//! goes to `Badge::on_frame` on its shard's `Ingest`, and the `Outcome` is
//! checked and carried out (replaced connections closed, handoffs moved to
//! the owner shard, lookups finished later), with a monotonic clock.
//!
//! Input: an 11-byte prefix of options (`Options::parse`), then the stream.
//! Two connection slots share the stream: bit `i % 32` of the slot mask
//! sends frame `i` to slot 1, so that a second connection can log in with
//! the same IMEI (replacement) or another. A slot whose connection closed
//! opens a new connection for its next frame.
//!
//! A small model (who owns which session, from which address, since when;
//! frames before login) predicts each decision, and `out.end` must be it:
//! a handoff for a login another shard owns (unless adopted, or always for
//! a rebind), `not_allowed`, `replace_refused`, `prelogin_budget`, or none.
//!
//! Invariants, per frame:
//! - nothing panics (debug assertions and overflow checks on, with `-a`);
//! - the replies, the acknowledgements held with lookups, and the frames
//!   that lookups and commands produce are whole good frames (CRC right,
//!   no garbage), with the right serial;
//! - `replied` counts the reply frames (not commands);
//! - before login, only a time request (0x1F, 0x8A) is answered, and no row,
//!   lookup or replacement comes out;
//! - a login with another IMEI first records the old session's logout
//!   (`imei_changed`), once, if the connection still owned it;
//! - with an `end`, nothing else comes out (but that logout row), and the
//!   connection is not logged in;
//! - a login is acknowledged first (0x01, empty, same serial); its row is a
//!   login or, exactly when the model says a session is replaced, a
//!   reconnect; only then can commands (0x80/0x82) follow, with serials
//!   1, 2, ... and one "sent" `command_log` row each;
//! - every row (stored or waiting for a lookup) is of the connection's IMEI,
//!   has the frame's time and the shard's ingest key;
//! - the expected immediate reply comes first, then at most the empty
//!   answer an address request or alarm owed;
//! - lookups only with a geo service, at most `max_pending` waiting; the
//!   acknowledgement is held with the first only with `hold_acks`;
//! - the counters add up: `records` is every row and lookup handed out,
//!   beacons known + unknown are the sightings, unknown beacons kept plus
//!   overflow are the unknown sightings.
//!
//! At the end every connection closes: a connection that still owns its
//! session records exactly one offline row, a replaced one none; then no
//! session is left and no lookup is pending.

#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use badge_ingest::config::Config;
use badge_ingest::ingest::{
    Badge, CloseReason, CommandError, CommandKind, CommandRequest, CommandStatus, End, Found,
    GeoSettings, Ingest, Lookup, Outcome, Owed, Settings, ShardMap,
};
use badge_ingest::protocol::number as n;
use badge_ingest::protocol::{Frame, FrameConfig, FrameDecoder, Imei, Message, Reply};
use badge_ingest::record::lookup::{
    Beacon, BeaconDirectory, Fix, FixSource, ImeiAllowlist, Language,
};
use badge_ingest::record::{enums, Record, Table};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// 2025-06-15T12:00:00Z.
const BASE_NOW: u32 = 1_749_988_800;
/// The IMEI of the seeds' logins; commands are queued for it before the
/// stream when the option is on.
const QUEUED_IMEI: u64 = 353_419_032_981_448;
/// Commands that may wait per badge; one more is refused.
const MAX_QUEUED: usize = 2;
/// The first command id (the server flag a 0x81 reply echoes).
const FIRST_COMMAND_ID: u32 = 100;
const PREFIX: usize = 11;
/// The key of the shard map (`ShardMap`): fixed, so that the seeds' logins
/// go to known shards.
const SHARD_KEY: [u8; 16] = [7; 16];
/// Large enough for any frame an encoder can build.
const MAX_ENCODED: usize = 65_541;

fuzz_target!(|data: &[u8]| {
    let Some((prefix, stream)) = data.split_first_chunk::<PREFIX>() else {
        return;
    };
    let opts = Options::parse(prefix);
    let mut run = Run::new(opts);
    run.queue_offline_commands();

    let mut decoder = FrameDecoder::new(FrameConfig {
        accept_bad_crc: opts.accept_bad_crc,
        ..FrameConfig::default()
    });
    let mut pos = 0;
    let mut index = 0u32;
    while let Some(frame) = decoder.next_frame(stream, &mut pos) {
        run.now = run.now.saturating_add(opts.step);
        let slot = ((opts.mask >> (index % 32)) & 1) as usize;
        index += 1;
        run.frame(slot, &frame);
        if opts.expire {
            run.expire();
        }
        run.finish_lookups(opts.keep_pending);
    }
    run.close_all();
    run.finish_lookups(0);
    run.check_end();
});

#[derive(Clone, Copy, Debug)]
struct Options {
    accept_bad_crc: bool,
    geo: Option<GeoSettings>,
    hold_acks: bool,
    raw_frames: bool,
    queue_offline: bool,
    command_on_login: bool,
    expire: bool,
    shards: usize,
    shard: usize,
    /// Seconds the clock moves before each frame.
    step: u32,
    found_fix: bool,
    found_address: bool,
    huge_address: bool,
    missed: bool,
    /// Lookups left waiting after each frame.
    keep_pending: usize,
    unknown_max: usize,
    command_ttl: u64,
    /// Logins are checked against `allows`.
    allowlist: bool,
    /// Both slots connect from the same address (else 10.0.0.1 and .2).
    same_ip: bool,
    replace_min_interval: u32,
    prelogin_frames: u32,
    mask: u32,
}

impl Options {
    /// - byte 0: flags. bit 0 `accept_bad_crc`, 1 geo service, 2
    ///   `hold_acks`, 3 `raw_frames`, 4 queue commands for `QUEUED_IMEI`
    ///   before the stream, 5 send a command at each login, 6 expire
    ///   commands after each frame, 7 `geo.addresses`.
    /// - byte 1: shards `1 + (b & 3)`, this shard `(b >> 2 & 3) % shards`,
    ///   `geo.max_pending` `b >> 4`.
    /// - byte 2: clock step, `b * b` seconds per frame.
    /// - byte 3: what lookups find. bit 0 a fix, 1 an address, 2 (with 1) an
    ///   address too long for a reply, 3 deadline missed; `b >> 4` lookups
    ///   left pending after each frame.
    /// - byte 4: `unknown_beacons_max` `b & 15`, command ttl `(b >> 4) * 600` s.
    /// - byte 5: bit 0 an IMEI allowlist (`allows`), bit 1 both slots from
    ///   the same address; `replace_min_interval_secs` `(b >> 2) * 60`.
    /// - byte 6: `prelogin_frames`.
    /// - bytes 7..11: slot mask, little endian.
    fn parse(p: &[u8; PREFIX]) -> Self {
        let flags = p[0];
        let bit = |b: u8| flags & (1 << b) != 0;
        let shards = 1 + usize::from(p[1] & 3);
        Options {
            accept_bad_crc: bit(0),
            geo: bit(1).then_some(GeoSettings {
                max_pending: u64::from(p[1] >> 4),
                addresses: bit(7),
                language: Language::Chinese,
            }),
            hold_acks: bit(2),
            raw_frames: bit(3),
            queue_offline: bit(4),
            command_on_login: bit(5),
            expire: bit(6),
            shards,
            shard: usize::from((p[1] >> 2) & 3) % shards,
            step: u32::from(p[2]) * u32::from(p[2]),
            found_fix: p[3] & 1 != 0,
            found_address: p[3] & 2 != 0,
            huge_address: p[3] & 4 != 0,
            missed: p[3] & 8 != 0,
            keep_pending: usize::from(p[3] >> 4),
            unknown_max: usize::from(p[4] & 15),
            command_ttl: u64::from(p[4] >> 4) * 600,
            allowlist: p[5] & 1 != 0,
            same_ip: p[5] & 2 != 0,
            replace_min_interval: u32::from(p[5] >> 2) * 60,
            prelogin_frames: u32::from(p[6]),
            mask: u32::from_le_bytes([p[7], p[8], p[9], p[10]]),
        }
    }
}

/// Knows the beacons whose MAC is even; of those, the ones whose last byte
/// is 2 mod 4 have no position, and those with bit 3 set an address.
struct Directory;

impl BeaconDirectory for Directory {
    fn beacon(&self, mac: u64) -> Option<Arc<Beacon>> {
        if mac & 1 != 0 {
            return None;
        }
        let b = mac as u8;
        let (lat, lon) = if b % 4 == 2 {
            (0.0, 0.0)
        } else {
            (22.5 + f64::from(b) / 1000.0, 113.9 + f64::from(b) / 1000.0)
        };
        Some(Arc::new(Beacon {
            mac,
            name: "b".into(),
            lat,
            lon,
            address: if b & 8 != 0 { "Room".into() } else { String::new() },
            active: true,
        }))
    }
}

/// Refuses the IMEIs divisible by 5 (of the seeds', 123456789012345).
fn allows(imei: Imei) -> bool {
    imei.as_u64() % 5 != 0
}

struct Allowlist;

impl ImeiAllowlist for Allowlist {
    fn allows(&self, imei: Imei) -> bool {
        allows(imei)
    }
}

/// `INGEST_FUZZ_TRACE=1`: one line per frame on stderr (to read what a
/// crash or a seed does).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("INGEST_FUZZ_TRACE").is_some())
}

fn base_settings() -> &'static Settings {
    static BASE: OnceLock<Settings> = OnceLock::new();
    BASE.get_or_init(|| Settings::new(&Config::default(), 0, ShardMap::new(SHARD_KEY, 1)))
}

/// One connection.
struct Conn {
    badge: Badge,
    /// The shard it is on (after a handoff, the owner).
    core: usize,
    /// Handed over by another shard.
    adopted: bool,
    /// Decoded frames other than logins before login.
    prelogin: u32,
}

/// Who owns a session, in the model.
#[derive(Clone, Copy, Debug)]
struct Owner {
    conn: u64,
    ip: IpAddr,
    logged_in_at: u32,
}

/// The frames of `bytes`: all good, nothing else. (protocol, serial,
/// content) each.
fn frames_of(bytes: &[u8], what: &str) -> Vec<(u8, u16, Vec<u8>)> {
    let mut dec = FrameDecoder::new(FrameConfig {
        max_frame_len: MAX_ENCODED,
        accept_bad_crc: false,
    });
    let mut pos = 0;
    let mut frames = Vec::new();
    while let Some(f) = dec.next_frame(bytes, &mut pos) {
        assert!(f.crc_ok);
        frames.push((f.protocol, f.serial, f.content.to_vec()));
    }
    assert_eq!(
        pos,
        bytes.len(),
        "{what}: not whole frames: {:02X?}",
        bytes
    );
    assert_eq!(dec.stats.garbage_bytes, 0, "{what}: garbage {:02X?}", bytes);
    assert_eq!(dec.stats.rejected(), 0, "{what}: rejected {:02X?}", bytes);
    frames
}

fn is_command(protocol: u8) -> bool {
    protocol == n::ONLINE_COMMAND || protocol == n::MESSAGE
}

struct Run {
    opts: Options,
    map: ShardMap,
    now: u32,
    cores: Vec<Option<Ingest>>,
    ids: Arc<AtomicU32>,
    slots: [Option<Conn>; 2],
    next_conn: u64,
    /// Model of the sessions: (shard, IMEI) -> the connection that owns it.
    sessions: HashMap<(usize, u64), Owner>,
    /// Rows and lookups handed out per shard, for `counters.records`.
    records: Vec<u64>,
    /// Bluetooth sightings (rows with a MAC) per shard.
    sightings: Vec<u64>,
    /// Lookups in flight, per shard, oldest first.
    pending: Vec<Vec<Lookup>>,
    out: Outcome,
}

impl Run {
    fn new(opts: Options) -> Self {
        Run {
            opts,
            map: ShardMap::new(SHARD_KEY, opts.shards),
            now: BASE_NOW,
            cores: (0..opts.shards).map(|_| None).collect(),
            ids: Arc::new(AtomicU32::new(FIRST_COMMAND_ID)),
            slots: [None, None],
            next_conn: 1,
            sessions: HashMap::new(),
            records: vec![0; opts.shards],
            sightings: vec![0; opts.shards],
            pending: (0..opts.shards).map(|_| Vec::new()).collect(),
            out: Outcome::default(),
        }
    }

    fn core(&mut self, shard: usize) -> &mut Ingest {
        let opts = self.opts;
        let ids = &self.ids;
        let map = self.map;
        self.cores[shard].get_or_insert_with(|| {
            let mut s = base_settings().clone();
            s.shard = shard;
            s.map = map;
            s.geo = opts.geo;
            s.hold_acks = opts.hold_acks;
            s.raw_frames = opts.raw_frames;
            s.unknown_beacons_max = opts.unknown_max;
            s.max_queued_commands = MAX_QUEUED;
            s.command_ttl = Duration::from_secs(opts.command_ttl);
            s.replace_min_interval_secs = opts.replace_min_interval;
            s.prelogin_frames = opts.prelogin_frames;
            let mut core = Ingest::new(s, "fuzz", ids.clone(), Arc::new(Directory));
            if opts.allowlist {
                core.set_allowlist(Arc::new(Allowlist));
            }
            core
        })
    }

    /// Before the stream: commands for `QUEUED_IMEI` while it is offline,
    /// on the shard that owns it. Two wait; the third is refused.
    fn queue_offline_commands(&mut self) {
        if !self.opts.queue_offline {
            return;
        }
        let imei = Imei::new(QUEUED_IMEI).unwrap();
        let shard = self.map.owner(imei);
        let now = self.now;
        let requests = [
            (CommandKind::OnlineCommand, "WHERE#"),
            (CommandKind::Message, "好"),
            (CommandKind::OnlineCommand, "STATUS#"),
        ];
        for (i, (kind, text)) in requests.into_iter().enumerate() {
            let mut rows = Vec::new();
            let result = self.core(shard).submit(
                CommandRequest {
                    imei,
                    kind,
                    text: text.into(),
                    wait: None,
                },
                now,
                &mut rows,
            );
            self.records[shard] += rows.len() as u64;
            let statuses: Vec<i8> = rows.iter().map(command_status).collect();
            if i < MAX_QUEUED {
                let (view, delivery) = result.expect("queued");
                assert_eq!(view.status, CommandStatus::Queued);
                assert!(delivery.is_none());
                assert_eq!(statuses, [enums::STATUS_QUEUED]);
            } else {
                assert!(
                    matches!(result, Err(CommandError::QueueFull { .. })),
                    "{result:?}"
                );
                assert_eq!(statuses, [enums::STATUS_QUEUED, enums::STATUS_FAILED]);
            }
            check_rows(&rows, imei.as_u64(), now, shard, "submit");
        }
    }

    /// A new connection for `slot`, on this shard, not adopted.
    fn open(&mut self, slot: usize) {
        let id = self.next_conn;
        self.next_conn += 1;
        let host = if self.opts.same_ip { 1 } else { slot as u8 + 1 };
        let peer = SocketAddr::from(([10, 0, 0, host], 1000 + id as u16));
        self.slots[slot] = Some(Conn {
            badge: Badge::new(id, peer, false),
            core: self.opts.shard,
            adopted: false,
            prelogin: 0,
        });
    }

    fn frame(&mut self, slot: usize, frame: &Frame<'_>) {
        if self.slots[slot].is_none() {
            self.open(slot);
        }
        let message = Message::decode(frame);
        let now = self.now;
        let opts = self.opts;
        let (shard, conn_id, adopted, before, peer) = {
            let c = self.slots[slot].as_ref().unwrap();
            (c.core, c.badge.conn_id(), c.adopted, c.badge.imei(), c.badge.peer())
        };
        let login = match &message {
            Ok(Message::Login(l)) => Some(l.imei),
            _ => None,
        };
        let rebind = matches!((before, login), (Some(a), Some(b)) if a != b);

        // What the core must decide, from the model.
        let map = self.map;
        let expected = if let Some(b) = login.filter(|&b| before != Some(b)) {
            let owner = map.owner(b);
            if owner != shard && (rebind || !adopted) {
                Some(End::Handoff { owner })
            } else if opts.allowlist && !allows(b) {
                Some(End::Close(CloseReason::NotAllowed))
            } else if self.sessions.get(&(shard, b.as_u64())).is_some_and(|o| {
                o.conn != conn_id
                    && o.ip != peer.ip()
                    && opts.replace_min_interval > 0
                    && now.saturating_sub(o.logged_in_at) < opts.replace_min_interval
            }) {
                Some(End::Close(CloseReason::ReplaceRefused))
            } else {
                None
            }
        } else if before.is_none() && matches!(message, Ok(ref m) if !matches!(m, Message::Login(_)))
        {
            let c = self.slots[slot].as_mut().unwrap();
            c.prelogin += 1;
            (c.prelogin > opts.prelogin_frames).then_some(End::Close(CloseReason::PreloginBudget))
        } else {
            None
        };

        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.core(shard);
        let core = self.cores[shard].as_mut().unwrap();
        let frames_before = core.frames.iter().sum::<u64>();
        let prelogin_before = core.counters.prelogin_drops;
        let conn = self.slots[slot].as_mut().unwrap();
        conn.badge.on_frame(frame, now, core, &mut out);
        let after = conn.badge.imei();
        let frames_now = core.frames.iter().sum::<u64>();
        if trace() {
            eprintln!(
                "t={now} slot={slot} conn={conn_id} shard={shard} {:02X} {:?} -> {:?} end={:?} \
                 replies={} rows={:?} lookups={} replaced={:?}",
                frame.protocol,
                before.map(|i| i.as_u64()),
                after.map(|i| i.as_u64()),
                out.end,
                out.replies.len(),
                out.rows.iter().map(|r| r.table().name()).collect::<Vec<_>>(),
                out.lookups.len(),
                out.replaced,
            );
        }
        assert_eq!(out.end, expected, "decision on {message:?}, logged in as {before:?}");

        let replies = frames_of(&out.replies, "replies");
        let counted = replies.iter().filter(|r| !is_command(r.0)).count() as u64;
        assert_eq!(out.replied, counted, "replied for {replies:02X?}");
        self.records[shard] += (out.rows.len() + out.lookups.len()) as u64;

        // A login with another IMEI first ends the old IMEI's session.
        let mut rows = &out.rows[..];
        if rebind {
            let a = before.unwrap();
            let owned = self
                .sessions
                .get(&(shard, a.as_u64()))
                .is_some_and(|o| o.conn == conn_id);
            if owned {
                self.sessions.remove(&(shard, a.as_u64()));
                let Some((first, rest)) = rows.split_first() else {
                    panic!("no logout row on a rebind");
                };
                check_rows(std::slice::from_ref(first), a.as_u64(), now, shard, "rebind");
                let Record::DeviceEvents(row) = first else {
                    panic!("rebind row {first:?}");
                };
                assert_eq!(
                    (row.event, row.reason.as_str(), row.conn_id),
                    (enums::EVENT_LOGOUT, "imei_changed", conn_id)
                );
                assert!(core.device(a).is_none(), "the old session is left");
                rows = rest;
            }
        }

        if let Some(end) = out.end {
            // Nothing but the rebind's row: no reply, lookup or replacement.
            assert!(rows.is_empty(), "rows with {end:?}: {rows:?}");
            assert!(replies.is_empty(), "replies with {end:?}: {replies:02X?}");
            assert!(out.lookups.is_empty() && out.replaced.is_empty());
            assert_eq!(after, None, "{end:?} left the connection logged in");
            let handoff = matches!(end, End::Handoff { .. });
            assert_eq!(frames_now, frames_before + u64::from(!handoff), "frame count");
            self.out = out;
            self.check_counters(shard);
            match end {
                End::Handoff { owner } => {
                    // The owner adopts the socket and reads the frame again.
                    self.slots[slot] = Some(Conn {
                        badge: Badge::new(conn_id, peer, true),
                        core: owner,
                        adopted: true,
                        prelogin: 0,
                    });
                    self.frame(slot, frame);
                }
                End::Close(reason) => self.close(slot, reason),
            }
            return;
        }
        assert_eq!(frames_now, frames_before + 1, "frame counted once");

        let Some(imei) = after else {
            // Not logged in.
            assert!(login.is_none(), "a login left the connection logged out");
            assert_eq!(before, None, "logged out without a login");
            assert!(out.rows.is_empty(), "rows before login: {:?}", out.rows);
            assert!(out.lookups.is_empty() && out.replaced.is_empty());
            match &message {
                Ok(Message::TimeSync(_) | Message::TimeSync2) => {
                    assert_eq!(replies.len(), 1);
                    assert!(matches!(replies[0].0, n::TIME_SYNC | n::TIME_SYNC_2));
                    assert_eq!(replies[0].1, frame.serial);
                }
                Ok(_) => {
                    assert!(replies.is_empty(), "reply before login: {replies:02X?}");
                    assert_eq!(core.counters.prelogin_drops, prelogin_before + 1);
                }
                Err(_) => assert!(replies.is_empty(), "reply before login: {replies:02X?}"),
            }
            self.out = out;
            self.check_counters(shard);
            return;
        };

        // Logged in: every row is this badge's, stamped now, this shard's.
        check_rows(rows, imei.as_u64(), now, shard, "rows");
        for l in &out.lookups {
            check_rows(std::slice::from_ref(&l.row), imei.as_u64(), now, shard, "lookup");
        }
        self.sightings[shard] += rows
            .iter()
            .filter(|r| matches!(r, Record::Bluetooth(b) if b.mac != 0))
            .count() as u64;

        if let Some(b) = login {
            assert_eq!(imei, b, "logged in as another IMEI");
            // Acknowledged first, then what was queued.
            assert!(!replies.is_empty(), "login not acknowledged");
            assert_eq!(replies[0], (n::LOGIN, frame.serial, vec![]), "login ack");
            let commands = &replies[1..];
            for (i, c) in commands.iter().enumerate() {
                assert!(is_command(c.0), "after the login ack: {c:02X?}");
                assert_eq!(usize::from(c.1), i + 1, "downlink serials");
            }
            let Some((Record::DeviceEvents(row), command_rows)) =
                rows.split_first().map(|(f, r)| (f, r))
            else {
                panic!("login rows: {rows:?}");
            };
            assert!(out.lookups.is_empty());
            let old = self.sessions.insert(
                (shard, imei.as_u64()),
                Owner {
                    conn: conn_id,
                    ip: peer.ip(),
                    logged_in_at: now,
                },
            );
            let replaced = old.map(|o| o.conn).filter(|&o| o != conn_id);
            assert_eq!(out.replaced, replaced.into_iter().collect::<Vec<_>>());
            let event = if replaced.is_some() {
                enums::EVENT_RECONNECT
            } else {
                enums::EVENT_LOGIN
            };
            assert_eq!((row.event, row.serial), (event, frame.serial));
            for r in command_rows {
                let s = command_status(r);
                assert!(
                    s == enums::STATUS_SENT || s == enums::STATUS_FAILED,
                    "command row {r:?}"
                );
            }
            let sent = command_rows
                .iter()
                .filter(|r| command_status(r) == enums::STATUS_SENT)
                .count();
            assert_eq!(sent, commands.len(), "a sent row per command frame");
            let view = core.device(imei).expect("a session after login");
            assert_eq!(view.peer, peer.to_string());
            assert_eq!(view.logged_in_at, now);
        } else {
            assert_eq!(before, Some(imei));
            assert!(out.replaced.is_empty());
            assert!(replies.iter().all(|r| !is_command(r.0)), "{replies:02X?}");
            // The frames for this frame, in order: what went out now, and
            // what is held with the first lookup.
            let held = out.lookups.first().map_or(&[][..], |l| &l.ack[..]);
            if !opts.hold_acks {
                assert!(out.lookups.iter().all(|l| l.ack.is_empty()));
            }
            for l in out.lookups.iter().skip(1) {
                assert!(l.ack.is_empty(), "ack held twice");
            }
            let mut all = frames_of(held, "held ack");
            if !all.is_empty() {
                assert!(replies.is_empty(), "held and sent: {replies:02X?}");
            }
            all.extend(replies.iter().cloned());
            for r in &all {
                assert_eq!(r.1, frame.serial, "reply serial {r:02X?}");
            }
            let expected = match &message {
                Ok(Message::AddressRequest(req)) if opts.geo.is_none() => {
                    Some(Reply::address(req, "").protocol())
                }
                Ok(Message::AddressRequest(_)) => None,
                Ok(m) => Reply::immediate(m, i64::from(now)).map(|r| r.protocol()),
                Err(_) => None,
            };
            let mut rest = &all[..];
            if let Some(p) = expected {
                assert_eq!(all.first().map(|r| r.0), Some(p), "immediate reply");
                rest = &all[1..];
            }
            // Apart from it, only the empty answer a lookup owed.
            let owes = matches!(
                message,
                Ok(Message::AddressRequest(_) | Message::Alarm(_))
            );
            assert!(rest.len() <= usize::from(owes), "extra replies: {all:02X?}");
            for r in rest {
                assert!(
                    matches!(r.0, n::LBS_ADDRESS_REQUEST | n::ADDRESS_REPLY_EN),
                    "{r:02X?}"
                );
            }
            if message.is_err() {
                assert_eq!(rows.len(), 1);
                assert_eq!(rows[0].table(), Table::RawFrames);
            }
        }
        match opts.geo {
            None => assert!(out.lookups.is_empty()),
            Some(geo) => assert!(core.counters.geo_pending <= geo.max_pending),
        }
        for l in &out.lookups {
            assert!(matches!(
                l.row.table(),
                Table::Locations | Table::Alarms | Table::Attendance
            ));
            assert_eq!(l.serial, frame.serial);
        }
        self.check_counters(shard);

        let replaced = std::mem::take(&mut out.replaced);
        self.pending[shard].extend(out.lookups.drain(..));
        self.out = out;
        for old in replaced {
            let s = self
                .slots
                .iter()
                .position(|c| c.as_ref().is_some_and(|c| c.badge.conn_id() == old))
                .expect("replaced an open connection");
            let c = self.slots[s].as_ref().unwrap();
            assert_eq!((c.core, c.badge.imei()), (shard, Some(imei)));
            self.close(s, CloseReason::Replaced);
        }
        if opts.command_on_login && login.is_some() {
            self.command_online(shard, imei, conn_id);
        }
    }

    /// A command for a badge that is online: written at once.
    fn command_online(&mut self, shard: usize, imei: Imei, conn_id: u64) {
        let now = self.now;
        let mut rows = Vec::new();
        let (view, delivery) = self
            .core(shard)
            .submit(
                CommandRequest {
                    imei,
                    kind: CommandKind::OnlineCommand,
                    text: "WHERE#".into(),
                    wait: None,
                },
                now,
                &mut rows,
            )
            .expect("a command for an online badge");
        self.records[shard] += rows.len() as u64;
        check_rows(&rows, imei.as_u64(), now, shard, "online command");
        assert_eq!(view.status, CommandStatus::Sent);
        assert_eq!(
            rows.iter().map(command_status).collect::<Vec<_>>(),
            [enums::STATUS_SENT]
        );
        let delivery = delivery.expect("delivered");
        assert_eq!(delivery.conn_id, conn_id);
        let frames = frames_of(&delivery.frame, "command");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, n::ONLINE_COMMAND);
        assert_eq!(&frames[0].2[1..5], &view.id.to_be_bytes()[..], "server flag");
        self.check_counters(shard);
    }

    /// The coarse timer: queued commands past their ttl expire.
    fn expire(&mut self) {
        let now = self.now;
        for shard in 0..self.opts.shards {
            let Some(core) = self.cores[shard].as_mut() else {
                continue;
            };
            let mut rows = Vec::new();
            core.expire_commands(now, &mut rows);
            for r in &rows {
                assert_eq!(command_status(r), enums::STATUS_EXPIRED);
                assert_eq!(r.time(), now);
                assert_eq!(r.ingest_seq().0 as usize, shard);
            }
            self.records[shard] += rows.len() as u64;
            self.check_counters(shard);
        }
    }

    /// The lookups beyond the `keep` newest of each shard are done.
    fn finish_lookups(&mut self, keep: usize) {
        let opts = self.opts;
        for shard in 0..opts.shards {
            let n = self.pending[shard].len().saturating_sub(keep);
            for lookup in self.pending[shard].drain(..n).collect::<Vec<_>>() {
                let core = self.cores[shard].as_mut().unwrap();
                let found = Found {
                    fix: opts.found_fix.then_some(Fix {
                        lat: 22.54,
                        lon: 114.05,
                        accuracy_m: 550.0,
                        source: FixSource::Cell,
                    }),
                    address: opts.found_address.then(|| {
                        if opts.huge_address {
                            "街".repeat(40_000)
                        } else {
                            "深圳市南山区".to_string()
                        }
                    }),
                    missed: opts.missed,
                };
                let (imei, table, serial, owed) =
                    (lookup.row.imei(), lookup.row.table(), lookup.serial, lookup.owed);
                let mut bytes = BytesMut::new();
                bytes.extend_from_slice(&lookup.ack);
                let ack = frames_of(&lookup.ack, "held ack").len();
                let row = core.finish_lookup(lookup, found.clone(), &mut bytes);
                core.lookup_stored();
                assert_eq!((row.imei(), row.table()), (imei, table));
                let frames = frames_of(&bytes, "lookup reply");
                let answer = &frames[ack..];
                assert!(frames.iter().all(|f| f.1 == serial), "{frames:02X?}");
                match owed {
                    None => assert!(answer.is_empty(), "{answer:02X?}"),
                    Some(Owed::Address { english }) => {
                        let p = if english {
                            n::ADDRESS_REPLY_EN
                        } else {
                            n::LBS_ADDRESS_REQUEST
                        };
                        assert_eq!(answer.len(), 1);
                        assert_eq!(answer[0].0, p);
                    }
                    Some(Owed::AlarmSms) => {
                        assert_eq!(answer.len(), usize::from(found.address.is_some()));
                        assert!(answer.iter().all(|f| f.0 == n::LBS_ADDRESS_REQUEST));
                    }
                }
            }
        }
    }

    /// The connection in `slot` ended for `reason`.
    fn close(&mut self, slot: usize, reason: CloseReason) {
        let conn = self.slots[slot].take().expect("open");
        let mut badge = conn.badge;
        let shard = conn.core;
        let now = self.now;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let imei = badge.imei();
        let owns = imei.is_some_and(|i| {
            self.sessions
                .get(&(shard, i.as_u64()))
                .is_some_and(|o| o.conn == badge.conn_id())
        });
        badge.on_close(reason, now, self.core(shard), &mut out);
        assert!(out.replies.is_empty() && out.lookups.is_empty());
        assert!(out.replaced.is_empty() && out.end.is_none());
        if owns {
            let imei = imei.unwrap();
            self.sessions.remove(&(shard, imei.as_u64()));
            check_rows(&out.rows, imei.as_u64(), now, shard, "close");
            let [Record::DeviceEvents(row)] = &out.rows[..] else {
                panic!("close rows {:?}", out.rows);
            };
            let event = match reason {
                CloseReason::Shutdown | CloseReason::ImeiChanged | CloseReason::OutputOverflow => {
                    enums::EVENT_LOGOUT
                }
                _ => enums::EVENT_OFFLINE,
            };
            assert_eq!((row.event, row.reason.as_str()), (event, reason.as_str()));
            assert_eq!(row.conn_id, badge.conn_id());
            assert!(self.core(shard).device(imei).is_none());
        } else {
            assert!(out.rows.is_empty(), "a replaced connection went offline");
        }
        self.records[shard] += out.rows.len() as u64;
        self.out = out;
        self.check_counters(shard);
    }

    fn close_all(&mut self) {
        for slot in 0..2 {
            if self.slots[slot].is_some() {
                self.close(slot, CloseReason::PeerClosed);
            }
        }
    }

    fn check_counters(&mut self, shard: usize) {
        let records = self.records[shard];
        let sightings = self.sightings[shard];
        let max = self.opts.unknown_max;
        let core = self.core(shard);
        let c = &core.counters;
        assert_eq!(c.records, records, "records counted");
        assert_eq!(c.beacons_known + c.beacons_unknown, sightings, "sightings");
        let unknown = c.beacons_unknown;
        let (kept, overflow) = core.unknown_beacons();
        assert!(kept.len() <= max);
        assert_eq!(
            kept.iter().map(|b| b.count).sum::<u64>() + overflow,
            unknown,
            "unknown beacons"
        );
    }

    fn check_end(&mut self) {
        assert!(self.sessions.is_empty());
        for shard in 0..self.opts.shards {
            if self.cores[shard].is_none() {
                continue;
            }
            self.check_counters(shard);
            let core = self.core(shard);
            assert_eq!(core.counters.geo_pending, 0, "lookups left pending");
            assert_eq!(core.counters().sessions, 0, "sessions left");
            assert!(core.devices(8).is_empty());
        }
    }
}

fn command_status(r: &Record) -> i8 {
    match r {
        Record::CommandLog(c) => c.status,
        other => panic!("not a command_log row: {other:?}"),
    }
}

fn check_rows(rows: &[Record], imei: u64, now: u32, shard: usize, what: &str) {
    for r in rows {
        assert_eq!(r.imei(), imei, "{what}: row of another IMEI: {r:?}");
        assert_eq!(r.time(), now, "{what}: row time: {r:?}");
        assert_eq!(usize::from(r.ingest_seq().0), shard, "{what}: shard: {r:?}");
    }
}
