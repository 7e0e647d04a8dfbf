//! The shard's side of the geo service: rows that lack a position or an
//! address, and address requests and alarms that are answered with one.
//!
//! The reference geocoded inline, so one slow provider stalled the badge's
//! whole connection. Here each such row becomes a small task on the shard:
//! it asks the geo service (which runs on its own tokio runtime) through
//! the non-blocking [`GeoHandle`], waits at most the deadline, then writes
//! the reply it owes through the connection's downlink and queues the row,
//! with or without what it waited for. The connection meanwhile goes on
//! reading, and so do all the other connections of the shard.
//!
//! The tasks are bounded (`geo.max_pending` per shard); beyond that a row
//! is queued at once without enrichment and counted, and a shutting-down
//! shard waits for the tasks (each bounded by the deadline) before it
//! stops, so no accepted row is lost.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::geo::{GeoHandle, Language};
use crate::protocol::Reply;
use crate::record::enrich::{self, GeoWant};
use crate::record::Envelope;

use super::shard::Shard;

/// The reply a lookup owes a badge once it is done.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owed {
    /// 0x17 (Chinese) or 0x97 (English) with the address, or empty when
    /// none came in time.
    Address { english: bool },
    /// The ALARMSMS 0x17 that follows an alarm's 0x26; only sent when an
    /// address was found, as in the reference.
    AlarmSms,
}

/// Where an owed reply goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyTo {
    pub conn_id: u64,
    pub serial: u16,
    pub owed: Owed,
}

// Giving the row back (not an error type) is the point: the caller queues it.
#[allow(clippy::result_large_err)]
/// Starts the lookup for one row, or gives the row back (with the owed
/// reply written at once, empty) when there is nothing to look up or too
/// many lookups are waiting.
pub(crate) fn enrich(
    shard: &Rc<Shard>,
    geo: &GeoHandle,
    mut envelope: Envelope,
    reply: Option<ReplyTo>,
) -> Result<(), Envelope> {
    let config = &shard.config.geo;
    let language = match reply {
        Some(ReplyTo {
            owed: Owed::Address { english: true },
            ..
        }) => Language::English,
        Some(ReplyTo {
            owed: Owed::Address { english: false },
            ..
        }) => Language::Chinese,
        _ => enrich::language(&envelope.record, config.stored_language()),
    };
    // Rows that owe a reply want an address whatever `geo.addresses` says.
    let want = enrich::want(&mut envelope.record, config.addresses || reply.is_some());
    let Some(want) = want else {
        if let Some(r) = reply {
            answer(shard, r, None);
        }
        return Err(envelope);
    };
    {
        let mut m = shard.metrics.borrow_mut();
        if m.counters.geo_pending >= config.max_pending as u64 {
            m.counters.geo_skipped += 1;
            m.counters.geo_unenriched += 1;
            drop(m);
            if let Some(r) = reply {
                answer(shard, r, None);
            }
            return Err(envelope);
        }
        m.counters.geo_pending += 1;
        m.counters.geo_lookups += 1;
    }
    if let Some(r) = reply {
        if let Some(conn) = shard.conns.borrow().get(&r.conn_id) {
            conn.owed.set(conn.owed.get() + 1);
        }
    }
    let task = lookup(
        shard.clone(),
        geo.clone(),
        envelope,
        want,
        language,
        reply,
        config.deadline(),
    );
    glommio::spawn_local(task).detach();
    Ok(())
}

async fn lookup(
    shard: Rc<Shard>,
    geo: GeoHandle,
    mut envelope: Envelope,
    want: GeoWant,
    language: Language,
    reply: Option<ReplyTo>,
    deadline: Duration,
) {
    let until = Instant::now() + deadline;
    let mut missed = false;
    let mut fix = None;
    if let Some(query) = want.query {
        match before(until, geo.locate(query)).await {
            Some(f) => fix = f,
            None => missed = true,
        }
    }
    let position = want.position.or(fix.map(|f| (f.lat, f.lon)));
    let mut address = None;
    if let (Some((lat, lon)), false, true) = (position, missed, want.address) {
        match before(until, geo.address(lat, lon, language)).await {
            Some(a) => address = a.filter(|a| !a.is_empty()),
            None => missed = true,
        }
    }
    if let Some(r) = reply {
        answer(&shard, r, address.as_deref());
        if let Some(conn) = shard.conns.borrow().get(&r.conn_id) {
            conn.owed.set(conn.owed.get().saturating_sub(1));
        }
    }
    {
        let mut m = shard.metrics.borrow_mut();
        m.counters.geo_positioned += u64::from(fix.is_some());
        m.counters.geo_addressed += u64::from(address.is_some());
        let wanted_fix = want.position.is_none();
        if (wanted_fix && fix.is_none()) || (want.address && address.is_none()) {
            m.counters.geo_unenriched += 1;
        }
        m.counters.geo_deadline_missed += u64::from(missed);
    }
    enrich::apply(&mut envelope.record, fix, address.as_deref());
    // The row counts against `max_pending` until the sink takes it: with
    // the sink full, rows wait here (bounded), and further rows go back to
    // their connections, which then stop reading (backpressure).
    shard.send(envelope).await;
    shard.metrics.borrow_mut().counters.geo_pending -= 1;
}

/// `future`'s output, or `None` once `until` has passed. Dropping the
/// future tells the geo service the caller is gone.
async fn before<T>(until: Instant, future: impl std::future::Future<Output = T>) -> Option<T> {
    let left = until.saturating_duration_since(Instant::now());
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(left).await;
        None
    })
    .await
}

/// Writes an owed reply through the connection's downlink, if it is still
/// there.
fn answer(shard: &Shard, to: ReplyTo, address: Option<&str>) {
    let reply = match to.owed {
        Owed::Address { english } => Reply::Address {
            english,
            alarm: false,
            address: address.unwrap_or(""),
            phone: "",
        },
        Owed::AlarmSms => match address {
            Some(a) => Reply::alarm_address(a),
            None => return,
        },
    };
    let mut frame = bytes::BytesMut::with_capacity(64);
    // An address over the 64 KiB content limit is a provider's nonsense;
    // the reply then goes out empty rather than not at all.
    if reply.encode(to.serial, &mut frame).is_err() {
        frame.clear();
        let empty = Reply::Address {
            english: matches!(to.owed, Owed::Address { english: true }),
            alarm: matches!(to.owed, Owed::AlarmSms),
            address: "",
            phone: "",
        };
        if empty.encode(to.serial, &mut frame).is_err() {
            return;
        }
    }
    let delivered = match shard.conns.borrow().get(&to.conn_id) {
        Some(conn) => {
            conn.push_downlink(&frame);
            true
        }
        None => false,
    };
    let mut m = shard.metrics.borrow_mut();
    match (to.owed, address.is_some()) {
        (Owed::AlarmSms, _) => m.counters.geo_alarm_sms += 1,
        (Owed::Address { .. }, true) => m.counters.geo_replies_with_address += 1,
        (Owed::Address { .. }, false) => m.counters.geo_replies_empty += 1,
    }
    m.counters.geo_replies_orphaned += u64::from(!delivered);
}
