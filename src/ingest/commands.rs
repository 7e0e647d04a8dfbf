//! Commands to badges (0x80 online command, 0x82 message), kept on the shard
//! that owns the IMEI: queued while the badge is offline, written when it
//! is online or logs in, matched to its 0x81 reply by the server flag.
//!
//! [`Commands`] owns the whole lifecycle. It does no I/O: it returns the
//! frames to write and the `command_log` rows (one per status change:
//! queued, sent, replied, expired, failed) for its caller to carry out.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::protocol::downlink::{DownlinkError, OnlineCommand, TextMessage};
use crate::protocol::number as n;
use crate::protocol::Imei;
use crate::record::{enums, CommandLogRow, IngestKeys, Record};

use super::session::Session;

/// Recent commands kept per badge for `commands IMEI`.
const RECENT: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    OnlineCommand,
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Queued,
    Sent,
    Replied,
    Expired,
    Failed,
}

impl CommandStatus {
    fn enum8(self) -> i8 {
        match self {
            CommandStatus::Queued => enums::STATUS_QUEUED,
            CommandStatus::Sent => enums::STATUS_SENT,
            CommandStatus::Replied => enums::STATUS_REPLIED,
            CommandStatus::Expired => enums::STATUS_EXPIRED,
            CommandStatus::Failed => enums::STATUS_FAILED,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Queued => "queued",
            CommandStatus::Sent => "sent",
            CommandStatus::Replied => "replied",
            CommandStatus::Expired => "expired",
            CommandStatus::Failed => "failed",
        }
    }

    /// No further change will come.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandStatus::Replied | CommandStatus::Expired | CommandStatus::Failed
        )
    }
}

/// A command as the control socket shows it (and as the log keeps it
/// while it is queued).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandView {
    /// Also the 4-byte server flag on the wire.
    pub id: u32,
    pub imei: String,
    pub kind: CommandKind,
    pub text: String,
    pub status: CommandStatus,
    /// Unix seconds.
    pub created_at: u32,
    pub updated_at: u32,
    pub serial: u16,
    pub reply: String,
    pub error: String,
}

/// Why a command was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("empty text")]
    Empty,
    #[error(transparent)]
    Unframable(#[from] DownlinkError),
    #[error("{max} commands already queued for {imei} (server.max_queued_commands)")]
    QueueFull { imei: Imei, max: usize },
}

/// A command as asked for on the control socket.
#[derive(Debug)]
pub struct CommandRequest {
    pub imei: Imei,
    pub kind: CommandKind,
    pub text: String,
    /// `send --wait`: the final status is sent here too.
    pub wait: Option<flume::Sender<CommandView>>,
}

/// A frame for the connection that serves a badge.
#[derive(Debug)]
pub struct Delivery {
    pub conn_id: u64,
    pub frame: BytesMut,
}

#[derive(Default)]
struct DeviceCommands {
    /// Waiting for the badge to come online, oldest first.
    queued: VecDeque<CommandView>,
    /// Sent, replied, expired or failed, newest last.
    recent: VecDeque<CommandView>,
}

/// All commands of the IMEIs one shard owns.
pub struct Commands {
    devices: HashMap<Imei, DeviceCommands>,
    /// `send --wait` callers, by command id.
    waiters: HashMap<u32, Vec<flume::Sender<CommandView>>>,
    /// Shared by all shards: a command id is the 4-byte server flag.
    ids: Arc<AtomicU32>,
    max_queued: usize,
    ttl: Duration,
    /// Badges whose queue changed since [`Commands::take_changes`].
    changed: BTreeSet<Imei>,
}

/// Frame bytes for one command.
fn encode(
    kind: CommandKind,
    id: u32,
    text: &str,
    serial: u16,
    out: &mut BytesMut,
) -> Result<(), DownlinkError> {
    match kind {
        CommandKind::OnlineCommand => OnlineCommand {
            server_flag: id,
            text,
        }
        .encode(serial, out),
        CommandKind::Message => TextMessage {
            server_flag: id,
            text,
        }
        .encode(serial, out),
    }
}

/// Checks a command before it is accepted, so a bad one fails at once.
fn validate(kind: CommandKind, text: &str) -> Result<(), CommandError> {
    if text.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(encode(kind, 0, text, 0, &mut BytesMut::new())?)
}

impl Commands {
    /// `ids` hands out command ids (the server flag) for every shard.
    pub fn new(ids: Arc<AtomicU32>, max_queued: usize, ttl: Duration) -> Self {
        Self {
            devices: HashMap::new(),
            waiters: HashMap::new(),
            ids,
            max_queued,
            ttl,
            changed: BTreeSet::new(),
        }
    }

    /// Takes back the queues kept from before a restart: what the log had.
    pub fn restore(&mut self, imei: Imei, queued: Vec<CommandView>) {
        if let Some(max) = queued.iter().map(|c| c.id).max() {
            self.ids.fetch_max(max.wrapping_add(1), Ordering::Relaxed);
        }
        self.devices.entry(imei).or_default().queued = queued.into();
    }

    /// The badges whose queue changed, each with its queue as it now is:
    /// `{"imei": "...", "queued": [...]}`, for the log to keep.
    pub fn take_changes(&mut self) -> Vec<String> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|imei| {
                let empty = VecDeque::new();
                let queued = self.devices.get(&imei).map_or(&empty, |d| &d.queued);
                serde_json::json!({ "imei": imei.to_string(), "queued": queued }).to_string()
            })
            .collect()
    }

    /// Accepts a command: written at once to an online badge (`session`),
    /// queued for an offline one (bounded), logged either way.
    pub fn submit(
        &mut self,
        request: CommandRequest,
        now: u32,
        session: Option<&mut Session>,
        keys: &mut IngestKeys,
        rows: &mut Vec<Record>,
    ) -> Result<(CommandView, Option<Delivery>), CommandError> {
        let CommandRequest {
            imei,
            kind,
            text,
            wait,
        } = request;
        validate(kind, &text)?;
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut command = CommandView {
            id,
            imei: imei.to_string(),
            kind,
            text,
            status: CommandStatus::Queued,
            created_at: now,
            updated_at: now,
            serial: 0,
            reply: String::new(),
            error: String::new(),
        };
        if let Some(w) = wait {
            self.waiters.entry(id).or_default().push(w);
        }
        if let Some(session) = session {
            let mut frame = BytesMut::new();
            let command = self.deliver(session, command, now, keys, rows, &mut frame);
            let delivery = (command.status == CommandStatus::Sent).then_some(Delivery {
                conn_id: session.conn_id,
                frame,
            });
            return Ok((command, delivery));
        }
        rows.push(log_row(imei, &command, now, keys));
        let device = self.devices.entry(imei).or_default();
        if device.queued.len() < self.max_queued {
            device.queued.push_back(command.clone());
            self.changed.insert(imei);
            return Ok((command, None));
        }
        command.status = CommandStatus::Failed;
        command.error = "queue full".into();
        self.remember(imei, &command);
        rows.push(log_row(imei, &command, now, keys));
        Err(CommandError::QueueFull {
            imei,
            max: self.max_queued,
        })
    }

    /// Writes the commands queued while the badge was away into `out`,
    /// after its login acknowledgement.
    pub fn deliver_queued(
        &mut self,
        session: &mut Session,
        now: u32,
        keys: &mut IngestKeys,
        rows: &mut Vec<Record>,
        out: &mut BytesMut,
    ) {
        let queued: Vec<CommandView> = match self.devices.get_mut(&session.imei) {
            Some(d) if !d.queued.is_empty() => d.queued.drain(..).collect(),
            _ => return,
        };
        self.changed.insert(session.imei);
        for command in queued {
            self.deliver(session, command, now, keys, rows, out);
        }
    }

    /// Encodes a command for the badge's connection and marks it sent (or
    /// failed, if it cannot be framed).
    fn deliver(
        &mut self,
        session: &mut Session,
        mut command: CommandView,
        now: u32,
        keys: &mut IngestKeys,
        rows: &mut Vec<Record>,
        out: &mut BytesMut,
    ) -> CommandView {
        let serial = session.next_serial();
        command.updated_at = now;
        match encode(command.kind, command.id, &command.text, serial, out) {
            Ok(()) => {
                command.serial = serial;
                command.status = CommandStatus::Sent;
            }
            Err(e) => {
                command.status = CommandStatus::Failed;
                command.error = e.to_string();
            }
        }
        self.remember(session.imei, &command);
        rows.push(log_row(session.imei, &command, now, keys));
        command
    }

    /// The badge's reply to command `flag`: the command's log row, now
    /// replied, if we sent it. The row carries the command's own kind,
    /// text and creation time.
    pub fn replied(
        &mut self,
        imei: Imei,
        flag: u32,
        text: &str,
        now: u32,
        keys: &mut IngestKeys,
    ) -> Option<Record> {
        let device = self.devices.get_mut(&imei)?;
        let command = device.recent.iter_mut().find(|c| c.id == flag)?;
        command.status = CommandStatus::Replied;
        command.reply = text.to_string();
        command.updated_at = now;
        let command = command.clone();
        self.remember(imei, &command);
        Some(log_row(imei, &command, now, keys))
    }

    /// Expires queued commands past their time to live (whole seconds, so
    /// a command lives at least the ttl), and forgets `send --wait` callers
    /// that gave up.
    pub fn expire(&mut self, now: u32, keys: &mut IngestKeys, rows: &mut Vec<Record>) {
        self.waiters.retain(|_, senders| {
            senders.retain(|s| !s.is_disconnected());
            !senders.is_empty()
        });
        let ttl = self.ttl.as_secs();
        let mut expired = Vec::new();
        for (imei, device) in self.devices.iter_mut() {
            while device
                .queued
                .front()
                .is_some_and(|c| u64::from(now.saturating_sub(c.created_at)) > ttl)
            {
                let mut c = device.queued.pop_front().expect("checked");
                c.status = CommandStatus::Expired;
                c.updated_at = now;
                expired.push((*imei, c));
            }
        }
        for (imei, c) in &expired {
            self.remember(*imei, c);
            self.changed.insert(*imei);
            rows.push(log_row(*imei, c, now, keys));
        }
        // Forget badges with nothing queued and no command changed within
        // the time to live, so the map does not grow with every IMEI ever
        // commanded.
        self.devices.retain(|_, d| {
            !d.queued.is_empty()
                || d.recent
                    .iter()
                    .any(|c| u64::from(now.saturating_sub(c.updated_at)) <= ttl)
        });
    }

    /// Newest first, queued ones included.
    pub fn list(&self, imei: Imei) -> Vec<CommandView> {
        let Some(d) = self.devices.get(&imei) else {
            return Vec::new();
        };
        let mut all: Vec<CommandView> = d.recent.iter().chain(d.queued.iter()).cloned().collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        all
    }

    /// Keeps a command that changed to a sent or final status; a final one
    /// is also told to its `send --wait` callers.
    fn remember(&mut self, imei: Imei, command: &CommandView) {
        let device = self.devices.entry(imei).or_default();
        if let Some(existing) = device.recent.iter_mut().find(|c| c.id == command.id) {
            *existing = command.clone();
        } else {
            device.recent.push_back(command.clone());
            if device.recent.len() > RECENT {
                device.recent.pop_front();
            }
        }
        if command.status.is_final() {
            for w in self.waiters.remove(&command.id).unwrap_or_default() {
                let _ = w.try_send(command.clone());
            }
        }
    }
}

/// The `command_log` row for a command's current status.
fn log_row(imei: Imei, command: &CommandView, now: u32, keys: &mut IngestKeys) -> Record {
    Record::CommandLog(CommandLogRow {
        imei: imei.as_u64(),
        event_time: now,
        command_id: u64::from(command.id),
        created_at: command.created_at,
        kind: match command.kind {
            CommandKind::OnlineCommand => enums::COMMAND_ONLINE,
            CommandKind::Message => enums::COMMAND_MESSAGE,
        },
        command_type: String::new(),
        text: command.text.clone(),
        status: command.status.enum8(),
        protocol: match command.kind {
            CommandKind::OnlineCommand => n::ONLINE_COMMAND,
            CommandKind::Message => n::MESSAGE,
        },
        serial: command.serial,
        server_flag: command.id,
        reply_text: command.reply.clone(),
        error: command.error.clone(),
        ingest_instance: keys.instance,
        ingest_shard: keys.shard,
        ingest_seq: keys.next_seq(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::Login;

    fn imei() -> Imei {
        "353419032981446".parse().unwrap()
    }

    fn commands(max_queued: usize) -> Commands {
        Commands::new(
            Arc::new(AtomicU32::new(1)),
            max_queued,
            Duration::from_secs(60),
        )
    }

    fn req(
        kind: CommandKind,
        text: impl Into<String>,
        wait: Option<flume::Sender<CommandView>>,
    ) -> CommandRequest {
        CommandRequest {
            imei: imei(),
            kind,
            text: text.into(),
            wait,
        }
    }

    fn session() -> Session {
        let login = Login {
            imei: imei(),
            type_code: None,
            tz_language: None,
        };
        Session::new(imei(), 7, "127.0.0.1:9".parse().unwrap(), login, 100)
    }

    fn statuses(rows: &[Record]) -> Vec<i8> {
        rows.iter()
            .map(|r| match r {
                Record::CommandLog(c) => c.status,
                other => panic!("not a command log row: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn queued_for_an_offline_badge_within_a_bound_then_expired() {
        let mut c = commands(2);
        let mut keys = IngestKeys::new("t", 0);
        let mut rows = Vec::new();
        for text in ["WHERE#", "STATUS#"] {
            let (view, delivery) = c
                .submit(
                    req(CommandKind::OnlineCommand, text, None),
                    100,
                    None,
                    &mut keys,
                    &mut rows,
                )
                .unwrap();
            assert_eq!(view.status, CommandStatus::Queued);
            assert!(delivery.is_none());
        }
        let full = c
            .submit(
                req(CommandKind::OnlineCommand, "X", None),
                100,
                None,
                &mut keys,
                &mut rows,
            )
            .unwrap_err();
        assert_eq!(
            full,
            CommandError::QueueFull {
                imei: imei(),
                max: 2
            }
        );
        assert_eq!(
            statuses(&rows),
            [
                enums::STATUS_QUEUED,
                enums::STATUS_QUEUED,
                enums::STATUS_QUEUED,
                enums::STATUS_FAILED
            ]
        );
        rows.clear();
        c.expire(160, &mut keys, &mut rows);
        assert!(rows.is_empty(), "a command lives the whole ttl");
        c.expire(161, &mut keys, &mut rows);
        assert_eq!(
            statuses(&rows),
            [enums::STATUS_EXPIRED, enums::STATUS_EXPIRED]
        );
    }

    #[test]
    fn delivered_at_login_after_the_ack_and_matched_to_the_reply() {
        let mut c = commands(4);
        let mut keys = IngestKeys::new("t", 0);
        let mut rows = Vec::new();
        let (tx, rx) = flume::bounded(1);
        let (queued, _) = c
            .submit(
                req(CommandKind::OnlineCommand, "WHERE#", Some(tx)),
                100,
                None,
                &mut keys,
                &mut rows,
            )
            .unwrap();
        let mut s = session();
        let mut out = BytesMut::new();
        c.deliver_queued(&mut s, 101, &mut keys, &mut rows, &mut out);
        // 78 78, length, 0x80: the online command, with the id as server flag.
        assert_eq!(&out[..4], &[0x78, 0x78, out[2], 0x80]);
        assert_eq!(&out[5..9], &queued.id.to_be_bytes());
        assert_eq!(statuses(&rows), [enums::STATUS_QUEUED, enums::STATUS_SENT]);
        assert!(c
            .replied(imei(), queued.id + 1, "no", 102, &mut keys)
            .is_none());
        let Some(Record::CommandLog(row)) = c.replied(imei(), queued.id, "OK", 102, &mut keys)
        else {
            panic!("the reply matches the command");
        };
        assert_eq!(
            (row.status, row.reply_text.as_str()),
            (enums::STATUS_REPLIED, "OK")
        );
        assert_eq!(
            (row.protocol, row.text.as_str()),
            (n::ONLINE_COMMAND, "WHERE#")
        );
        assert_eq!(rx.try_recv().unwrap().status, CommandStatus::Replied);
        assert_eq!(c.list(imei()).first().unwrap().reply, "OK");
    }

    #[test]
    fn an_online_badge_gets_its_command_at_once_and_idle_state_is_forgotten() {
        let mut c = commands(4);
        let mut keys = IngestKeys::new("t", 0);
        let mut rows = Vec::new();
        let mut s = session();
        let (view, delivery) = c
            .submit(
                req(CommandKind::Message, "好", None),
                200,
                Some(&mut s),
                &mut keys,
                &mut rows,
            )
            .unwrap();
        assert_eq!(view.status, CommandStatus::Sent);
        let delivery = delivery.expect("online");
        assert_eq!((delivery.conn_id, delivery.frame[3]), (7, 0x82));
        // A caller that stopped waiting is forgotten at the next tick, and so
        // is a badge with nothing queued or recent within the ttl.
        let (tx, rx) = flume::bounded(1);
        c.waiters.entry(99).or_default().push(tx);
        drop(rx);
        c.expire(300, &mut keys, &mut rows);
        assert!(c.waiters.is_empty());
        assert!(c.list(imei()).is_empty());
    }

    #[test]
    fn queues_are_kept_and_restored_across_a_restart() {
        let mut c = commands(4);
        let mut keys = IngestKeys::new("t", 0);
        let mut rows = Vec::new();
        c.submit(
            req(CommandKind::OnlineCommand, "WHERE#", None),
            100,
            None,
            &mut keys,
            &mut rows,
        )
        .unwrap();
        let changes = c.take_changes();
        assert_eq!(changes.len(), 1);
        assert!(c.take_changes().is_empty(), "told once");
        let v: serde_json::Value = serde_json::from_str(&changes[0]).unwrap();
        assert_eq!(v["imei"], imei().to_string());
        let queued: Vec<CommandView> = serde_json::from_value(v["queued"].clone()).unwrap();
        // A new process: the queue comes back, and new ids do not repeat.
        let mut again = Commands::new(Arc::new(AtomicU32::new(1)), 4, Duration::from_secs(60));
        again.restore(imei(), queued);
        let mut s = session();
        let mut out = BytesMut::new();
        again.deliver_queued(&mut s, 101, &mut keys, &mut rows, &mut out);
        assert_eq!(out[3], 0x80, "delivered after the restart");
        let emptied: serde_json::Value = serde_json::from_str(&again.take_changes()[0]).unwrap();
        assert_eq!(emptied["queued"], serde_json::json!([]));
        let (next, _) = again
            .submit(
                req(CommandKind::Message, "hi", None),
                102,
                None,
                &mut keys,
                &mut rows,
            )
            .unwrap();
        assert!(next.id > 1, "ids go on after the restored ones");
    }

    #[test]
    fn what_cannot_be_framed_is_refused_before_it_is_queued() {
        let mut c = commands(4);
        let mut keys = IngestKeys::new("t", 0);
        let mut rows = Vec::new();
        let mut submit = |kind, text: String| {
            c.submit(req(kind, text, None), 1, None, &mut keys, &mut rows)
                .map(|(v, _)| v.status)
        };
        assert!(submit(CommandKind::OnlineCommand, "x".repeat(250)).is_err());
        assert_eq!(
            submit(CommandKind::Message, String::new()),
            Err(CommandError::Empty)
        );
        assert_eq!(
            submit(CommandKind::Message, "好".repeat(1000)),
            Ok(CommandStatus::Queued)
        );
        assert_eq!(rows.len(), 1, "refused commands leave no row");
    }
}
