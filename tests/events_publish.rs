//! `Events::publish` drops instead of waiting when the dispatcher does not
//! keep up. The dispatcher is held still for real (inside its own warning
//! about a slow watcher, by a tracing layer of this test), so the publishes
//! that return, return while their consumer provably takes nothing.
//!
//! A binary of its own: the layer is the process's global subscriber and
//! must see only this test's dispatcher thread.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use badge_ingest::events::{Events, EventsConfig};
use badge_ingest::record::{enums, DeviceEventRow, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

fn status(t: u32) -> Record {
    Record::DeviceEvents(DeviceEventRow {
        imei: 860_000_000_000_001,
        server_time: t,
        event: enums::EVENT_LOGIN,
        protocol: 0x01,
        serial: 1,
        device_type: 0x3610,
        tz_offset_min: 480,
        language: 2,
        conn_id: 42,
        peer_addr: "10.1.2.3:40000".into(),
        reason: String::new(),
        ingest_instance: "events-test",
        ingest_shard: 1,
        ingest_seq: u64::from(t),
    })
}

#[derive(Default)]
struct Hold {
    armed: bool,
    held: bool,
    release: bool,
}

/// Blocks the `events` thread in the first warning it logs once armed,
/// until released.
#[derive(Clone, Default)]
struct HoldDispatcher(Arc<(Mutex<Hold>, Condvar)>);

impl HoldDispatcher {
    fn arm(&self) {
        self.0 .0.lock().unwrap().armed = true;
    }

    fn wait_held(&self, within: Duration) -> bool {
        let (m, cv) = &*self.0;
        let (s, _) = cv
            .wait_timeout_while(m.lock().unwrap(), within, |s| !s.held)
            .unwrap();
        s.held
    }

    fn is_held(&self) -> bool {
        self.0 .0.lock().unwrap().held
    }

    fn release(&self) {
        let (m, cv) = &*self.0;
        m.lock().unwrap().release = true;
        cv.notify_all();
    }
}

impl<S: Subscriber> Layer<S> for HoldDispatcher {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() != Level::WARN
            || std::thread::current().name() != Some("events")
        {
            return;
        }
        let (m, cv) = &*self.0;
        let mut s = m.lock().unwrap();
        if !s.armed {
            return;
        }
        s.armed = false;
        s.held = true;
        cv.notify_all();
        while !s.release {
            s = cv.wait(s).unwrap();
        }
        s.held = false;
    }
}

#[test]
fn a_full_publish_queue_drops_and_counts_instead_of_waiting() {
    let hold = HoldDispatcher::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(hold.clone()))
        .unwrap();

    const QUEUE: usize = 64;
    const N: u64 = 10_000;
    let events = Events::start(&EventsConfig {
        queue: QUEUE,
        watcher_queue: 1,
        ..EventsConfig::default()
    })
    .unwrap();
    // Never read: its one slot takes the first event, the second one makes
    // the dispatcher drop it and warn, and the warning is where it is held.
    let _stuck = events.watch(&[]);
    hold.arm();
    events.publish(&status(0));
    events.publish(&status(1));
    assert!(
        hold.wait_held(Duration::from_secs(10)),
        "the dispatcher never warned about the stuck watcher: {:?}",
        events.stats()
    );

    // The dispatcher took both events before it stopped, so the queue is
    // empty: exactly QUEUE publishes fit, every later one must be dropped
    // at once. A publish that waited for room would never return.
    let (done_tx, done) = std::sync::mpsc::channel();
    let publisher = std::thread::spawn({
        let events = events.clone();
        move || {
            for t in 0..N {
                events.publish(&status(2 + t as u32));
            }
            let _ = done_tx.send(());
        }
    });
    let returned = done.recv_timeout(Duration::from_secs(30));
    let still_held = hold.is_held();
    hold.release();
    assert!(
        returned.is_ok(),
        "publish waited: {N} publishes did not return within 30 s while the dispatcher was held"
    );
    assert!(still_held, "the dispatcher was released early");
    publisher.join().unwrap();

    let s = events.stats();
    assert_eq!(
        (s.published, s.dropped),
        (2 + QUEUE as u64, N - QUEUE as u64),
        "{s:?}"
    );
    events.shutdown();
}
