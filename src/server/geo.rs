//! The shard's side of the geo service: the lookups the core asked for.
//!
//! The reference geocoded inline, so one slow provider stalled the badge's
//! whole connection. Here each lookup becomes a small task on the shard:
//! it asks the geo service (which runs on its own tokio runtime) through
//! the non-blocking [`GeoHandle`](crate::geo::GeoHandle), waits at most the
//! deadline, hands what it found to the core, writes the reply the row owed
//! through the connection's downlink, and queues the row. The connection
//! meanwhile goes on reading, and so do all the other connections.
//!
//! How many rows may wait (`geo.max_pending`) is the core's decision; a
//! shutting-down shard waits for the tasks (each bounded by the deadline)
//! before it stops, so no accepted row is lost.

use std::rc::Rc;
use std::time::Instant;

use crate::ingest::{Found, Lookup};

use super::shard::Shard;

/// Starts the task for one lookup of connection `conn_id`.
pub(crate) fn start(shard: &Rc<Shard>, conn_id: u64, mut lookup: Lookup, received: Instant) {
    let Some(geo) = shard.geo.clone() else {
        unreachable!("the core asks for lookups only with a geo service");
    };
    if lookup.owed.is_some() {
        if let Some(conn) = shard.conns.borrow().get(&conn_id) {
            conn.owed.set(conn.owed.get() + 1);
        }
    }
    let deadline = shard.config.geo.deadline();
    let shard = shard.clone();
    crate::runtime::spawn_local(async move {
        let until = Instant::now() + deadline;
        let mut found = Found::default();
        if let Some(query) = lookup.want.query.clone() {
            match before(until, geo.locate(query)).await {
                Some(fix) => found.fix = fix,
                None => found.missed = true,
            }
        }
        let position = lookup.want.position.or(found.fix.map(|f| (f.lat, f.lon)));
        if let (Some((lat, lon)), false, true) = (position, found.missed, lookup.want.address) {
            match before(until, geo.address(lat, lon, lookup.language)).await {
                Some(a) => found.address = a.filter(|a| !a.is_empty()),
                None => found.missed = true,
            }
        }
        let owed = lookup.owed.is_some();
        // The held acknowledgement first, then the owed reply.
        let mut reply = std::mem::take(&mut lookup.ack);
        let record = shard
            .core
            .borrow_mut()
            .finish_lookup(lookup, found, &mut reply);
        let lsn = shard.store(&record, received);
        if shard.durable_acks && !reply.is_empty() {
            shard.log.durable(lsn).await;
        }
        match shard.conns.borrow().get(&conn_id) {
            Some(conn) => {
                if !reply.is_empty() {
                    conn.push_downlink(&reply);
                }
                if owed {
                    conn.owed.set(conn.owed.get().saturating_sub(1));
                }
            }
            None => shard.counters().geo_replies_orphaned += u64::from(!reply.is_empty()),
        }
        shard.core.borrow_mut().lookup_stored();
    })
    .detach();
}

/// `future`'s output, or `None` once `until` has passed. Dropping the
/// future tells the geo service the caller is gone.
async fn before<T>(until: Instant, future: impl std::future::Future<Output = T>) -> Option<T> {
    let left = until.saturating_duration_since(Instant::now());
    futures_lite::future::or(async { Some(future.await) }, async {
        crate::runtime::sleep(left).await;
        None::<T>
    })
    .await
}
