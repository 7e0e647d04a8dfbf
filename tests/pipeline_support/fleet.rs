//! Badges that send every acknowledged message type in turn, as fast as
//! their replies come, and remember what was acknowledged; and the check
//! that all of it is in ClickHouse, once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use badge_ingest::protocol::Message;

use super::{expected_reply, imei, query, Badge, Samples};

/// One acknowledged frame: what must be in ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acked {
    pub table: &'static str,
    pub imei: u64,
    pub serial: u16,
    pub protocol: u8,
}

/// The table an acknowledged message's row goes to.
fn table_of(m: &Message<'_>) -> &'static str {
    match m {
        Message::Login(_) => "device_events",
        Message::Heartbeat(_) => "heartbeats",
        Message::Lbs(_) | Message::AddressRequest(_) => "locations",
        Message::Alarm(_) => "alarms",
        Message::Attendance(_) => "attendance",
        Message::BluetoothPunch(_) => "bluetooth",
        other => panic!("not an acknowledged row: {other:?}"),
    }
}

/// The first acknowledged message of each table among `messages`: sent
/// once by a badge, they leave it one row per table, so that no "latest"
/// of the BI views has two candidates in one second.
pub fn one_per_table<'a>(messages: Vec<Message<'a>>) -> Vec<Message<'a>> {
    let mut seen = Vec::new();
    messages
        .into_iter()
        .filter(|m| expected_reply(m).is_some() && !matches!(m, Message::Login(_)))
        .filter(|m| {
            let table = table_of(m);
            let new = !seen.contains(&table);
            seen.push(table);
            new
        })
        .collect()
}

/// Badges sending every acknowledged message in turn as fast as their
/// replies come, each remembering what was acknowledged, until the server
/// goes away or they are told to stop.
pub struct Fleet {
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Fleet {
    /// `badges` badges from IMEI number `first` on; each gives up when a
    /// reply takes longer than `patience`.
    pub fn start(addr: SocketAddr, first: u64, badges: u64, patience: Duration) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..badges)
            .map(|n| {
                let (acked, stop) = (acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    run_badge(addr, imei(first + n), patience, &acked, &stop)
                })
            })
            .collect();
        Self {
            acked,
            stop,
            threads,
        }
    }

    /// Waits for the badges to see their server gone (or stops them).
    pub fn finish(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a badge thread");
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

fn run_badge(
    addr: SocketAddr,
    imei: badge_ingest::protocol::Imei,
    patience: Duration,
    acked: &Mutex<Vec<Acked>>,
    stop: &AtomicBool,
) {
    let Ok(mut badge) = std::panic::catch_unwind(|| Badge::connect(addr, imei)) else {
        return;
    };
    badge.set_timeout(patience);
    let samples = Samples::new();
    let mut messages: Vec<Message<'_>> =
        vec![Message::Login(badge_ingest::protocol::message::Login {
            imei,
            type_code: Some(0x2404),
            tz_language: Some(badge_ingest::protocol::message::TzLanguage::new(480, 1)),
        })];
    messages.extend(
        samples
            .messages()
            .into_iter()
            .filter(|m| expected_reply(m).is_some()),
    );
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let m = &messages[i % messages.len()];
        i += 1;
        if i > 1 && matches!(m, Message::Login(_)) {
            continue;
        }
        // A dead server: the write or the read fails, and the badge stops.
        let Some(serial) = badge.try_exchange(m) else {
            return;
        };
        acked.lock().unwrap().push(Acked {
            table: table_of(m),
            imei: imei.as_u64(),
            serial,
            protocol: m.protocol(),
        });
        // Serials never wrap: each acknowledged frame has its own key.
        if badge.serial() >= 60_000 {
            return;
        }
    }
}

/// Distinct ingest keys per acknowledged frame found in ClickHouse.
pub fn stored(url: &str, db: &str) -> HashMap<Acked, u64> {
    let mut found = HashMap::new();
    for table in [
        "device_events",
        "heartbeats",
        "locations",
        "alarms",
        "attendance",
        "bluetooth",
    ] {
        let rows = query(
            url,
            &format!(
                "SELECT imei, serial, protocol, uniqExact(ingest_instance, ingest_shard, ingest_seq) \
                 FROM {db}.{table} GROUP BY imei, serial, protocol FORMAT TSV"
            ),
        );
        for line in rows.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let key = Acked {
                table,
                imei: f[0].parse().unwrap(),
                serial: f[1].parse().unwrap(),
                protocol: f[2].parse().unwrap(),
            };
            found.insert(key, f[3].parse().unwrap());
        }
    }
    found
}

/// What of `acked` is missing, and what is stored more than once (by key).
pub fn check(url: &str, db: &str, acked: &[Acked]) -> (Vec<Acked>, Vec<(Acked, u64)>) {
    let found = stored(url, db);
    let missing: Vec<Acked> = acked
        .iter()
        .filter(|a| !found.contains_key(a))
        .copied()
        .collect();
    // Logout and offline events share (serial 0, protocol 0): only what was
    // acknowledged is looked at.
    let twice: Vec<(Acked, u64)> = acked
        .iter()
        .filter_map(|a| found.get(a).filter(|n| **n > 1).map(|n| (*a, *n)))
        .collect();
    (missing, twice)
}

pub fn by_table(acked: &[Acked]) -> String {
    let mut n: HashMap<&str, usize> = HashMap::new();
    for a in acked {
        *n.entry(a.table).or_default() += 1;
    }
    let mut v: Vec<_> = n.into_iter().collect();
    v.sort();
    format!("{v:?}")
}
