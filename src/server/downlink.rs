//! Commands to badges (0x80 online command, 0x82 message), kept on the shard
//! that owns the IMEI: queued while the badge is offline, written when it
//! is online or logs in, matched to its 0x81 reply by the server flag.
//!
//! Every status change (queued, sent, replied, expired, failed) becomes a
//! `command_log` row.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;

use crate::protocol::downlink::{OnlineCommand, TextMessage};
use crate::protocol::number as n;
use crate::protocol::Imei;
use crate::record::{enums, CommandLogRow, Record};

/// Recent commands kept per badge for `commands IMEI`.
const RECENT: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    OnlineCommand,
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// A command as the control socket shows it.
#[derive(Debug, Clone, Serialize)]
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

#[derive(Default)]
struct DeviceCommands {
    /// Waiting for the badge to come online, oldest first.
    queued: VecDeque<CommandView>,
    /// Sent, replied, expired or failed, newest last.
    recent: VecDeque<CommandView>,
}

/// All commands of the IMEIs one shard owns.
#[derive(Default)]
pub struct Downlinks {
    devices: HashMap<Imei, DeviceCommands>,
    /// `send --wait` callers, by command id.
    waiters: HashMap<u32, Vec<flume::Sender<CommandView>>>,
}

/// Frame bytes for one command.
pub fn encode(
    kind: CommandKind,
    id: u32,
    text: &str,
    serial: u16,
    out: &mut BytesMut,
) -> Result<(), String> {
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
    .map_err(|e| e.to_string())
}

/// Checks a command before it is accepted, so a bad one fails at once.
pub fn validate(kind: CommandKind, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty text".into());
    }
    encode(kind, 0, text, 0, &mut BytesMut::new())
}

impl Downlinks {
    pub fn new_command(
        imei: Imei,
        id: u32,
        kind: CommandKind,
        text: String,
        now: u32,
    ) -> CommandView {
        CommandView {
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
        }
    }

    /// Queues a command for an offline badge. Fails when its queue is full.
    pub fn enqueue(
        &mut self,
        imei: Imei,
        command: CommandView,
        max_queued: usize,
    ) -> Result<(), CommandView> {
        let device = self.devices.entry(imei).or_default();
        if device.queued.len() >= max_queued {
            return Err(command);
        }
        device.queued.push_back(command);
        Ok(())
    }

    /// Takes the queued commands of a badge that just logged in.
    pub fn take_queued(&mut self, imei: Imei) -> Vec<CommandView> {
        self.devices
            .get_mut(&imei)
            .map(|d| d.queued.drain(..).collect())
            .unwrap_or_default()
    }

    /// Remembers a command that changed to a final or sent status.
    pub fn remember(&mut self, imei: Imei, command: &CommandView) {
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

    pub fn wait(&mut self, id: u32, waiter: flume::Sender<CommandView>) {
        self.waiters.entry(id).or_default().push(waiter);
    }

    /// The badge's reply to command `flag`: the command, now replied, if we sent it.
    pub fn replied(&mut self, imei: Imei, flag: u32, text: &str, now: u32) -> Option<CommandView> {
        let device = self.devices.get_mut(&imei)?;
        let command = device.recent.iter_mut().find(|c| c.id == flag)?;
        command.status = CommandStatus::Replied;
        command.reply = text.to_string();
        command.updated_at = now;
        let command = command.clone();
        self.remember(imei, &command);
        Some(command)
    }

    /// Queued commands past their time to live (whole seconds, so a command
    /// lives at least `ttl`). Also forgets `send --wait` callers that gave up.
    pub fn expire(&mut self, now: u32, ttl: Duration) -> Vec<(Imei, CommandView)> {
        self.waiters.retain(|_, senders| {
            senders.retain(|s| !s.is_disconnected());
            !senders.is_empty()
        });
        let mut expired = Vec::new();
        for (imei, device) in self.devices.iter_mut() {
            while device
                .queued
                .front()
                .is_some_and(|c| u64::from(now.saturating_sub(c.created_at)) > ttl.as_secs())
            {
                let mut c = device.queued.pop_front().expect("checked");
                c.status = CommandStatus::Expired;
                c.updated_at = now;
                expired.push((*imei, c));
            }
        }
        for (imei, c) in &expired {
            self.remember(*imei, c);
        }
        // Forget badges with nothing queued and no command changed within
        // the time to live, so the map does not grow with every IMEI ever
        // commanded.
        self.devices.retain(|_, d| {
            !d.queued.is_empty()
                || d.recent
                    .iter()
                    .any(|c| u64::from(now.saturating_sub(c.updated_at)) <= ttl.as_secs())
        });
        expired
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
}

/// The `command_log` row for a command's current status.
pub fn log_row(
    imei: Imei,
    command: &CommandView,
    now: u32,
    instance: &'static str,
    shard: u16,
    seq: u64,
) -> Record {
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
        ingest_instance: instance,
        ingest_shard: shard,
        ingest_seq: seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_bound_expiry_and_reply_matching() {
        let imei: Imei = "353419032981446".parse().unwrap();
        let mut d = Downlinks::default();
        for id in 1..=2 {
            d.enqueue(
                imei,
                Downlinks::new_command(imei, id, CommandKind::OnlineCommand, "WHERE#".into(), 100),
                2,
            )
            .unwrap();
        }
        let third = Downlinks::new_command(imei, 3, CommandKind::OnlineCommand, "X".into(), 100);
        assert!(d.enqueue(imei, third, 2).is_err());
        let expired = d.expire(160, Duration::from_secs(60));
        assert!(expired.is_empty());
        let expired = d.expire(161, Duration::from_secs(60));
        assert_eq!(expired.len(), 2);
        assert!(expired
            .iter()
            .all(|(_, c)| c.status == CommandStatus::Expired));

        let mut sent = Downlinks::new_command(imei, 9, CommandKind::Message, "hi".into(), 200);
        sent.status = CommandStatus::Sent;
        d.remember(imei, &sent);
        let (tx, rx) = flume::bounded(1);
        d.wait(9, tx);
        assert!(d.replied(imei, 8, "no", 201).is_none());
        let replied = d.replied(imei, 9, "OK", 202).unwrap();
        assert_eq!(
            (replied.status, replied.reply.as_str()),
            (CommandStatus::Replied, "OK")
        );
        assert_eq!(rx.try_recv().unwrap().status, CommandStatus::Replied);
        assert_eq!(d.list(imei).first().unwrap().id, 9);

        // A caller that stopped waiting is forgotten at the next tick.
        let (tx, rx) = flume::bounded(1);
        d.wait(10, tx);
        drop(rx);
        d.expire(300, Duration::from_secs(60));
        assert!(d.waiters.is_empty());
        // Nothing queued and nothing recent within the time to live: forgotten.
        assert!(d.list(imei).is_empty());
    }

    #[test]
    fn validation_rejects_what_cannot_be_framed() {
        assert!(validate(CommandKind::OnlineCommand, "WHERE#").is_ok());
        assert!(validate(CommandKind::OnlineCommand, &"x".repeat(250)).is_err());
        assert!(validate(CommandKind::Message, "").is_err());
        assert!(validate(CommandKind::Message, &"好".repeat(1000)).is_ok());
    }
}
