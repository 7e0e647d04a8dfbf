//! One connection's frames: login, replies, rows, beacons, command replies
//! and the rows that wait for a lookup.

use std::net::SocketAddr;

use crate::logging::LogLimit;
use crate::protocol::message::Login;
use crate::protocol::{Frame, Imei, Message, Reply};
use crate::record::{enrich, enums, Record, RecordContext, Records, Table};

use super::outcome::{CloseReason, End, Lookup, Outcome, Owed};
use super::session::Session;
use super::Ingest;

/// Undecodable frames are logged at most once a second per process.
static DECODE_LOG: LogLimit = LogLimit::per_second();
/// So are refused logins, rebinds and suspected clones.
static IDENTITY_LOG: LogLimit = LogLimit::per_second();

/// The state of one badge connection.
#[derive(Debug)]
pub struct Badge {
    conn_id: u64,
    peer: SocketAddr,
    /// Set once logged in.
    imei: Option<Imei>,
    /// Handed over by another shard: its first login is not handed off again.
    adopted: bool,
    /// Frames before login, against `Settings::prelogin_frames`.
    prelogin_frames: u32,
    /// The zone its login gave its clock, minutes east of UTC.
    login_zone: Option<i16>,
}

impl Badge {
    pub fn new(conn_id: u64, peer: SocketAddr, adopted: bool) -> Self {
        Self {
            conn_id,
            peer,
            imei: None,
            adopted,
            prelogin_frames: 0,
            login_zone: None,
        }
    }

    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn imei(&self) -> Option<Imei> {
        self.imei
    }

    /// One frame: what to reply, store, look up, close or hand off goes
    /// into `out`, after what earlier frames of the read put there. After
    /// `out.end` is set, no further frame of this connection is fed.
    pub fn on_frame(&mut self, frame: &Frame<'_>, now: u32, core: &mut Ingest, out: &mut Outcome) {
        let message = Message::decode(frame);
        if let Ok(Message::Login(login)) = &message {
            if self.imei != Some(login.imei) {
                let owner = core.settings.map.owner(login.imei);
                // A re-login with another IMEI moves even an adopted
                // connection: the owner of the new IMEI is another shard.
                let rebind = self.imei.is_some();
                if owner != core.settings.shard && (rebind || !self.adopted) {
                    if rebind {
                        self.rebind(core, login.imei, now, out);
                    }
                    // The owner decodes the login again and counts it there.
                    out.end = Some(End::Handoff { owner });
                    return;
                }
            }
        }
        core.frames[usize::from(frame.protocol)] += 1;
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                core.counters.decode_errors += 1;
                if let Some(suppressed) = DECODE_LOG.check() {
                    tracing::warn!(shard = core.settings.shard, peer = %self.peer, imei = ?self.imei, error = %e, suppressed, "undecodable frame kept raw");
                }
                // Kept, not lost: the raw frame goes to the audit table.
                if let Some(imei) = self.imei {
                    let row = self.records(core, imei, frame.serial, now).raw_frame(frame);
                    self.store(core, row, out);
                }
                return;
            }
        };

        let Some(imei) = self.imei else {
            if !matches!(message, Message::Login(_)) {
                self.prelogin_frames += 1;
                if self.prelogin_frames > core.settings.prelogin_frames {
                    core.counters.prelogin_budget_closes += 1;
                    out.end = Some(End::Close(CloseReason::PreloginBudget));
                    return;
                }
            }
            match message {
                Message::Login(login) => self.login(core, login, frame.serial, now, out),
                // The reference answers time requests from anyone.
                Message::TimeSync(_) | Message::TimeSync2 => {
                    if let Some(reply) = Reply::immediate(&message, i64::from(now)) {
                        out.reply(&reply, frame.serial);
                    }
                }
                _ => core.counters.prelogin_drops += 1,
            }
            return;
        };

        if let Message::Login(login) = message {
            if login.imei != imei {
                self.rebind(core, login.imei, now, out);
            }
            // A repeated login on the same connection is acknowledged and
            // recorded again; one with another IMEI binds the connection to it.
            self.login(core, login, frame.serial, now, out);
            return;
        }

        if let Some(session) = core.sessions.get_mut(&imei) {
            session.observe(&message, now);
        }
        let reply = match &message {
            // Without a geo service, answered at once with an empty address
            // (as the reference does when its geocoder is off); with one, the
            // row's lookup answers.
            Message::AddressRequest(req) if core.settings.geo.is_none() => {
                Some(Reply::address(req, ""))
            }
            Message::AddressRequest(_) => None,
            other => Reply::immediate(other, i64::from(now)),
        };
        let reply_at = out.replies.len();
        if let Some(reply) = reply {
            out.reply(&reply, frame.serial);
        }
        self.rows(core, imei, frame, &message, now);
        let lookups_before = out.lookups.len();
        // The reply an address request or alarm owes waits with its row.
        let mut owed = match &message {
            Message::AddressRequest(req) => Some(Owed::Address {
                english: req.wants_english(),
            }),
            Message::Alarm(_) => Some(Owed::AlarmSms),
            _ => None,
        };
        let mut rows = std::mem::take(&mut core.scratch);
        for row in rows.drain(..) {
            let looked_up = core.settings.geo.is_some()
                && matches!(
                    row.table(),
                    Table::Locations | Table::Alarms | Table::Attendance
                );
            if looked_up {
                self.route(core, row, owed.take(), frame.serial, out);
            } else {
                self.store(core, row, out);
            }
        }
        core.scratch = rows;
        // An acknowledgement promises the row is kept: when the row waits
        // for a lookup before it is logged, so does its acknowledgement.
        if core.settings.hold_acks
            && out.lookups.len() > lookups_before
            && out.replies.len() > reply_at
        {
            let ack = out.replies.split_off(reply_at);
            out.replied -= 1;
            out.lookups[lookups_before].ack = ack;
        }
    }

    /// The rows of one decoded message, into `core.scratch`.
    fn rows(
        &self,
        core: &mut Ingest,
        imei: Imei,
        frame: &Frame<'_>,
        message: &Message<'_>,
        now: u32,
    ) {
        let mut rows = std::mem::take(&mut core.scratch);
        let ctx = self.context(core, imei, frame.serial, now);
        if let Message::CommandReply(reply) = message {
            // Matched by the server flag we put in the command; the row then
            // carries the command's own kind, text and creation time.
            let text = reply.text_lossy();
            if let Some(row) =
                core.commands
                    .replied(imei, reply.server_flag, &text, now, &mut core.keys)
            {
                rows.push(row);
            }
        }
        let mut builder = Records {
            ctx,
            keys: &mut core.keys,
        };
        if rows.is_empty() {
            builder.message(frame, message, &mut |r| rows.push(r));
        }
        if matches!(
            message,
            Message::BluetoothPunch(_) | Message::BluetoothLocation(_)
        ) {
            let beacons = &core.beacons;
            let unknown_beacons = &mut core.unknown_beacons;
            let mut unknown = 0;
            let best = enrich::beacons(
                &mut rows,
                |mac| beacons.beacon(mac),
                |row| {
                    unknown += 1;
                    unknown_beacons.seen(row.mac, imei.as_u64(), row.rssi, now);
                },
            );
            let sightings = rows
                .iter()
                .filter(|r| matches!(r, Record::Bluetooth(b) if b.mac != 0))
                .count() as u64;
            core.counters.beacons_known += sightings - unknown;
            core.counters.beacons_unknown += unknown;
            if let Some((i, beacon)) = best {
                if let Record::Bluetooth(row) = &rows[i] {
                    let location =
                        builder.beacon_location(row, beacon.lat, beacon.lon, &beacon.address);
                    rows.push(location);
                }
            }
        }
        if core.settings.raw_frames && !matches!(message, Message::Unknown { .. }) {
            rows.push(builder.raw_frame(frame));
        }
        core.scratch = rows;
    }

    /// A row that may gain a position or an address: a lookup when there
    /// is something to look up and room to wait, else stored at once (with
    /// the reply it owed, empty).
    fn route(
        &self,
        core: &mut Ingest,
        mut row: Record,
        owed: Option<Owed>,
        serial: u16,
        out: &mut Outcome,
    ) {
        let geo = core.settings.geo.expect("routed only with a geo service");
        let language = match owed {
            Some(Owed::Address { english: true }) => crate::record::lookup::Language::English,
            Some(Owed::Address { english: false }) => crate::record::lookup::Language::Chinese,
            _ => enrich::language(&row, geo.language),
        };
        // Rows that owe a reply want an address whatever `geo.addresses` says.
        let want = enrich::want(&mut row, geo.addresses || owed.is_some());
        let full = core.counters.geo_pending >= geo.max_pending;
        let Some(want) = want.filter(|_| !full) else {
            if full {
                core.counters.geo_skipped += 1;
                core.counters.geo_unenriched += 1;
            }
            if let Some(owed) = owed {
                let before = out.replies.len();
                core.answer(owed, serial, None, &mut out.replies);
                out.replied += u64::from(out.replies.len() > before);
            }
            self.store(core, row, out);
            return;
        };
        core.counters.geo_pending += 1;
        core.counters.geo_lookups += 1;
        core.counters.records += 1;
        out.lookups.push(Lookup {
            row,
            want,
            language,
            owed,
            serial,
            ack: bytes::BytesMut::new(),
        });
    }

    fn store(&self, core: &mut Ingest, row: Record, out: &mut Outcome) {
        core.counters.records += 1;
        out.rows.push(row);
    }

    fn context(&self, core: &Ingest, imei: Imei, serial: u16, now: u32) -> RecordContext {
        RecordContext {
            imei,
            server_time: now,
            device_offset_minutes: core.settings.clocks.offset_minutes(imei, self.login_zone),
            max_future_secs: core.settings.clocks.max_future_secs,
            serial,
            conn_id: self.conn_id,
        }
    }

    fn records<'a>(&self, core: &'a mut Ingest, imei: Imei, serial: u16, now: u32) -> Records<'a> {
        Records {
            ctx: self.context(core, imei, serial, now),
            keys: &mut core.keys,
        }
    }

    /// A login on the owner shard: a newer connection of the same IMEI
    /// replaces the older one, as in the reference. Commands queued while
    /// the badge was away follow its acknowledgement.
    fn login(&mut self, core: &mut Ingest, login: Login, serial: u16, now: u32, out: &mut Outcome) {
        let imei = login.imei;
        if core.allowlist.as_ref().is_some_and(|l| !l.allows(imei)) {
            core.counters.logins_not_allowed += 1;
            if let Some(suppressed) = IDENTITY_LOG.check() {
                tracing::warn!(shard = core.settings.shard, peer = %self.peer, %imei, suppressed, "login refused: IMEI not in the allowlist");
            }
            out.end = Some(End::Close(CloseReason::NotAllowed));
            return;
        }
        let mut event = enums::EVENT_LOGIN;
        if let Some(old) = core.sessions.get(&imei) {
            if old.conn_id != self.conn_id {
                let (old_ip, new_ip) = (old.peer.ip(), self.peer.ip());
                if old_ip != new_ip {
                    core.counters.clone_replacements += 1;
                    let listed = core.clones.replaced(imei, old_ip, new_ip, now);
                    if listed {
                        if let Some(suppressed) = IDENTITY_LOG.check() {
                            tracing::warn!(shard = core.settings.shard, %imei, old = %old_ip, new = %new_ip, suppressed, "IMEI keeps replacing itself from different addresses: cloned badge or takeover (see `clones`)");
                        }
                    }
                    let min = core.settings.replace_min_interval_secs;
                    if min > 0 && now.saturating_sub(old.logged_in_at) < min {
                        core.counters.replacements_refused += 1;
                        out.end = Some(End::Close(CloseReason::ReplaceRefused));
                        return;
                    }
                }
                out.replaced.push(old.conn_id);
                event = enums::EVENT_RECONNECT;
                core.counters.reconnects += 1;
            }
        }
        core.counters.logins += 1;
        self.imei = Some(imei);
        self.login_zone = login.tz_language.map(|t| t.offset_minutes());
        let peer = self.peer.to_string();
        let row = self
            .records(core, imei, serial, now)
            .login(&login, event, &peer, "");
        self.store(core, row, out);
        out.reply(
            &Reply::immediate(&Message::Login(login), i64::from(now))
                .expect("logins are acknowledged"),
            serial,
        );
        let session = Session::new(imei, self.conn_id, self.peer, login, now);
        let (at, _) = core.sessions.insert_full(imei, session);
        let session = &mut core.sessions[at];
        let before = out.rows.len();
        core.commands.deliver_queued(
            session,
            now,
            &mut core.keys,
            &mut out.rows,
            &mut out.replies,
        );
        core.counters.records += (out.rows.len() - before) as u64;
    }

    /// A login with another IMEI on a logged-in connection: the session of
    /// the old IMEI ends here (the reference rebinds the connection).
    fn rebind(&mut self, core: &mut Ingest, new: Imei, now: u32, out: &mut Outcome) {
        core.counters.rebinds += 1;
        if let Some(suppressed) = IDENTITY_LOG.check() {
            tracing::info!(shard = core.settings.shard, peer = %self.peer, old = ?self.imei, %new, suppressed, "connection logged in again with another IMEI: rebound");
        }
        self.end_session(CloseReason::ImeiChanged, now, core, out);
        self.imei = None;
    }

    /// The connection ended: records how, unless a newer login of its
    /// IMEI replaced it (the badge is not offline then).
    pub fn on_close(
        &mut self,
        reason: CloseReason,
        now: u32,
        core: &mut Ingest,
        out: &mut Outcome,
    ) {
        self.end_session(reason, now, core, out);
    }

    fn end_session(&self, reason: CloseReason, now: u32, core: &mut Ingest, out: &mut Outcome) {
        let Some(imei) = self.imei else { return };
        if core
            .sessions
            .get(&imei)
            .is_none_or(|s| s.conn_id != self.conn_id)
        {
            return;
        }
        core.sessions.swap_remove(&imei);
        let event = match reason {
            CloseReason::Shutdown | CloseReason::ImeiChanged | CloseReason::OutputOverflow => {
                enums::EVENT_LOGOUT
            }
            _ => enums::EVENT_OFFLINE,
        };
        let peer = self.peer.to_string();
        let row = self
            .records(core, imei, 0, now)
            .disconnect(event, &peer, reason.as_str());
        self.store(core, row, out);
    }
}
