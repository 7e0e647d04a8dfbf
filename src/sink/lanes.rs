//! Which rows each table still needs, from which shard, and from where:
//! the writers' bookkeeping, apart from the I/O so that it is tested alone.
//!
//! Each table has at most one open batch (rows being gathered) and up to
//! `sink.inserts_in_flight` in flight (being inserted, each under its own
//! [`BatchId`]): ClickHouse runs an insert on one thread, so a second one
//! in flight keeps the other core busy while the first is parsed and merged
//! into its views. Batches may go in out of order; a table's checkpoint
//! stays below the oldest row still out.
//!
//! Rows reach a table either from memory (the entries of each commit, the
//! normal case) or from the log: after a restart, after the table failed
//! to insert (its rows are in the log, so memory is not needed to keep
//! them), or after commits were missed (the queue to the writers was full). A table reads the log from its own
//! position, so one table's failures never hold another back; once it has
//! read everything up to the end the shard has announced, it takes its rows
//! from memory again.
//!
//! The checkpoint of a table in a shard's log is the position of its oldest
//! row not yet inserted: everything below it is safely in ClickHouse.

use std::time::{Duration, Instant};

use crate::log::format::Entry;
use crate::record::Table;

/// A batch of at least a tenth of the size limit that has not grown for
/// this long goes without waiting out its age: the burst that filled it is
/// over (a replay that read the log to its end, a fleet's backlog after an
/// outage), and its rows reach ClickHouse now instead of up to
/// `batch_age_ms` later. Longer than the log's hand-off of commits to the
/// writers (10 ms) and the writer's tick (20 ms), so a steady stream never
/// looks settled. A trickle never fills a tenth, so the age still decides
/// how often a quiet table is inserted into.
const SETTLED: Duration = Duration::from_millis(50);

/// When a batch is inserted.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rows: usize,
    pub bytes: usize,
    pub age: Duration,
    /// Batches of one table in flight at once.
    pub in_flight: usize,
}

/// Which batch of a table an insert carries: the writer's handle on it
/// while it is in flight.
pub type BatchId = u64;

/// One row of a batch: where it is in the payload, and where in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMark {
    pub offset: usize,
    pub shard: u16,
    pub lsn: u64,
}

/// Rows of one table, in RowBinary, end to end.
#[derive(Debug)]
pub struct Batch {
    pub table: Table,
    payload: Vec<u8>,
    /// The payload once the batch went out (shared with the insert).
    frozen: Option<bytes::Bytes>,
    pub rows: Vec<RowMark>,
    /// When the rows' frames were read (rows from memory only).
    pub received: Vec<Instant>,
    pub opened: Instant,
    /// When its last row was added.
    grew: Instant,
    /// Read back from the log (not from memory).
    pub replayed: bool,
}

impl Batch {
    fn new(table: Table, now: Instant, replayed: bool) -> Self {
        Self {
            table,
            payload: Vec::new(),
            frozen: None,
            rows: Vec::new(),
            received: Vec::new(),
            opened: now,
            grew: now,
            replayed,
        }
    }

    fn push(&mut self, shard: usize, lsn: u64, rowbinary: &[u8], now: Instant) {
        self.grew = now;
        self.rows.push(RowMark {
            offset: self.payload.len(),
            shard: shard as u16,
            lsn,
        });
        self.payload.extend_from_slice(rowbinary);
    }

    /// The RowBinary of rows `range`, shared without a copy.
    pub fn slice(&mut self, range: std::ops::Range<usize>) -> bytes::Bytes {
        let frozen = self
            .frozen
            .get_or_insert_with(|| bytes::Bytes::from(std::mem::take(&mut self.payload)));
        let start = self.rows[range.start].offset;
        let end = self.rows.get(range.end).map_or(frozen.len(), |r| r.offset);
        frozen.slice(start..end)
    }

    pub fn bytes(&self) -> usize {
        self.frozen.as_ref().map_or(self.payload.len(), |f| f.len())
    }

    /// The oldest row of `shard` in the batch.
    fn first_of(&self, shard: usize) -> Option<u64> {
        self.rows
            .iter()
            .filter(|r| usize::from(r.shard) == shard)
            .map(|r| r.lsn)
            .min()
    }

    fn full(&self, limits: &Limits) -> bool {
        self.rows.len() >= limits.rows || self.payload.len() >= limits.bytes
    }

    /// Big enough, and no longer growing: see [`SETTLED`].
    fn settled(&self, limits: &Limits, now: Instant) -> bool {
        let big = self.rows.len() * 10 >= limits.rows || self.payload.len() * 10 >= limits.bytes;
        big && now.duration_since(self.grew) >= SETTLED
    }
}

/// A batch out to ClickHouse.
#[derive(Debug)]
struct Flight {
    id: BatchId,
    batch: Batch,
    /// After a failure: when it is tried again.
    retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct TableState {
    open: Option<Batch>,
    /// In the order they went out.
    in_flight: Vec<Flight>,
    /// A batch failed and none has gone in since: no new batch goes out
    /// (ClickHouse is in trouble, and the rows are safe in the log).
    failing: bool,
    next_id: BatchId,
}

impl TableState {
    /// A failed batch waits for its retry: the table reads nothing more.
    fn waiting(&self) -> bool {
        self.in_flight.iter().any(|f| f.retry_at.is_some())
    }

    fn flight(&mut self, id: BatchId) -> Option<&mut Flight> {
        self.in_flight.iter_mut().find(|f| f.id == id)
    }

    fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.open
            .iter()
            .chain(self.in_flight.iter().map(|f| &f.batch))
    }
}

#[derive(Debug)]
struct ShardState {
    /// The end of what the shard has announced as durable.
    covered: u64,
    /// Per table: `None` while its rows come from memory, `Some(next)`
    /// while they come from the log, from `next` on.
    from_log: [Option<u64>; Table::COUNT],
    /// Likewise for the entries of queued commands.
    commands_from_log: Option<u64>,
}

/// What a chunk or a read of the log asks of the caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Queued-command entries, in order, with their shard.
    pub commands: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug)]
pub struct Lanes {
    shards: Vec<ShardState>,
    tables: Vec<TableState>,
    limits: Limits,
    /// Rows taken into batches, less those dropped to be read again.
    taken: [u64; Table::COUNT],
}

impl Lanes {
    /// `starts[s]` is where shard `s`'s log ends now, `checkpoints[s]` where
    /// each table (and the commands) of it must be read from.
    pub fn new(limits: Limits, starts: &[u64], checkpoints: &[([u64; Table::COUNT], u64)]) -> Self {
        let shards = starts
            .iter()
            .zip(checkpoints)
            .map(|(&covered, (tables, commands))| ShardState {
                covered,
                from_log: tables.map(|at| (at < covered).then_some(at)),
                commands_from_log: (*commands < covered).then_some(*commands),
            })
            .collect();
        Self {
            shards,
            tables: (0..Table::COUNT).map(|_| TableState::default()).collect(),
            limits,
            taken: [0; Table::COUNT],
        }
    }

    /// A commit's entries from memory, with the read times of its rows.
    #[allow(clippy::too_many_arguments)]
    pub fn chunk(
        &mut self,
        shard: usize,
        start: u64,
        end: u64,
        bytes: &[u8],
        received: &[Instant],
        now: Instant,
    ) -> Effects {
        let mut effects = Effects::default();
        let s = &mut self.shards[shard];
        if start > s.covered {
            // Commits were missed: what they held comes from the log.
            let gap = s.covered;
            for lane in s.from_log.iter_mut() {
                lane.get_or_insert(gap);
            }
            s.commands_from_log.get_or_insert(gap);
        } else if end <= s.covered {
            return effects;
        }
        let from_log = s.from_log;
        let commands_from_log = s.commands_from_log.is_some();
        let mut times = received.iter();
        for item in crate::log::format::entries(bytes) {
            let Ok((offset, entry)) = item else { break };
            let lsn = start + offset as u64;
            let time = matches!(entry, Entry::Row { .. })
                .then(|| times.next())
                .flatten();
            match entry {
                Entry::Row { table, rowbinary } if from_log[table.index()].is_none() => {
                    let t = &mut self.tables[table.index()];
                    let batch = t.open.get_or_insert_with(|| Batch::new(table, now, false));
                    batch.push(shard, lsn, rowbinary, now);
                    batch.received.extend(time);
                    self.taken[table.index()] += 1;
                }
                Entry::Commands(json) if !commands_from_log => {
                    effects.commands.push((shard, json.to_vec()));
                }
                _ => {}
            }
        }
        self.shards[shard].covered = end;
        // Memory is for a table that keeps up: one that gathers far more
        // than a batch while an insert is out reads the log instead.
        for table in Table::ALL {
            let t = &self.tables[table.index()];
            let over = t.open.as_ref().is_some_and(|b| {
                b.rows.len() >= 4 * self.limits.rows || b.payload.len() >= 4 * self.limits.bytes
            });
            if over {
                self.read_from_log(table);
            }
        }
        effects
    }

    /// Drops what a table gathered in memory (not what it has in flight):
    /// its rows come from the log, each shard's from the first it dropped,
    /// or from the announced end.
    fn read_from_log(&mut self, table: Table) {
        let i = table.index();
        for shard in 0..self.shards.len() {
            let open_first = self.tables[i].open.as_ref().and_then(|b| b.first_of(shard));
            let s = &mut self.shards[shard];
            // Rows read back into the open batch are read again too.
            s.from_log[i] = match (s.from_log[i], open_first) {
                (Some(next), Some(first)) => Some(next.min(first)),
                (Some(next), None) => Some(next),
                (None, first) => Some(first.unwrap_or(s.covered)),
            };
        }
        if let Some(dropped) = self.tables[i].open.take() {
            self.taken[i] -= dropped.rows.len() as u64;
        }
    }

    /// Rows taken into batches of `table` so far (less those dropped to be
    /// read from the log again).
    pub fn taken(&self, table: Table) -> u64 {
        self.taken[table.index()]
    }

    /// The tables whose open batch should be inserted now.
    pub fn due(&self, now: Instant, closing: bool) -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|t| {
                let s = &self.tables[t.index()];
                s.in_flight.len() < self.limits.in_flight
                    && !s.failing
                    && s.open.as_ref().is_some_and(|b| {
                        !b.rows.is_empty()
                            && (closing
                                || b.full(&self.limits)
                                || b.settled(&self.limits, now)
                                || now.duration_since(b.opened) >= self.limits.age)
                    })
            })
            .collect()
    }

    /// The open batch of `table` goes out (if there is room in flight).
    pub fn take(&mut self, table: Table) -> Option<(BatchId, &mut Batch)> {
        let t = &mut self.tables[table.index()];
        if t.in_flight.len() >= self.limits.in_flight {
            return None;
        }
        let batch = t.open.take()?;
        let id = t.next_id;
        t.next_id += 1;
        t.in_flight.push(Flight {
            id,
            batch,
            retry_at: None,
        });
        t.in_flight.last_mut().map(|f| (id, &mut f.batch))
    }

    pub fn in_flight(&mut self, table: Table, id: BatchId) -> Option<&mut Batch> {
        self.tables[table.index()].flight(id).map(|f| &mut f.batch)
    }

    /// Batch `id` is in ClickHouse (or set aside): the table's checkpoints
    /// move past it, up to the oldest row still out.
    pub fn inserted(&mut self, table: Table, id: BatchId) -> Option<Batch> {
        let t = &mut self.tables[table.index()];
        let at = t.in_flight.iter().position(|f| f.id == id)?;
        t.failing = false;
        Some(t.in_flight.remove(at).batch)
    }

    /// Batch `id` failed but may succeed later: it is tried again after
    /// `retry`, no new batch goes out until one goes in, and the table reads
    /// its further rows from the log.
    pub fn failed(&mut self, table: Table, id: BatchId, now: Instant, retry: Duration) {
        let t = &mut self.tables[table.index()];
        if let Some(f) = t.flight(id) {
            f.retry_at = Some(now + retry);
        }
        t.failing = true;
        self.read_from_log(table);
    }

    /// The failed batches of `table` whose retry is due; they count as
    /// going out again from now.
    pub fn retries_due(&mut self, table: Table, now: Instant) -> Vec<BatchId> {
        self.tables[table.index()]
            .in_flight
            .iter_mut()
            .filter(|f| f.retry_at.is_some_and(|at| now >= at))
            .map(|f| {
                f.retry_at = None;
                f.id
            })
            .collect()
    }

    /// When the first batch waiting after a failure may be tried again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.tables
            .iter()
            .flat_map(|t| t.in_flight.iter().filter_map(|f| f.retry_at))
            .min()
    }

    /// Where shard `shard`'s log should be read from next, if anywhere: the
    /// lowest position of a table (or the commands) that reads the log and
    /// has room for more rows.
    pub fn wants_log(&mut self, shard: usize) -> Option<u64> {
        // A lane with nothing left to read takes memory again.
        self.caught_up(shard);
        let s = &self.shards[shard];
        let tables = Table::ALL
            .iter()
            .filter(|t| self.takes_from_log(shard, **t))
            .filter_map(|t| s.from_log[t.index()]);
        tables
            .chain(s.commands_from_log)
            .min()
            .filter(|at| *at < s.covered)
    }

    /// Whether `table` would take rows read from `shard`'s log now.
    fn takes_from_log(&self, shard: usize, table: Table) -> bool {
        let t = &self.tables[table.index()];
        self.shards[shard].from_log[table.index()].is_some()
            && t.open.as_ref().is_none_or(|b| !b.full(&self.limits))
            && !t.waiting()
    }

    /// Where reading shard `shard`'s log must stop: the end it announced.
    pub fn covered(&self, shard: usize) -> u64 {
        self.shards[shard].covered
    }

    /// One entry read from the log at `lsn`, `len` bytes long. Returns
    /// `false` when reading should stop for now (a batch filled up).
    pub fn replayed(
        &mut self,
        shard: usize,
        lsn: u64,
        len: usize,
        entry: Entry<'_>,
        now: Instant,
        effects: &mut Effects,
    ) -> bool {
        let end = lsn + len as u64;
        for table in Table::ALL {
            let i = table.index();
            if !self.takes_from_log(shard, table) {
                continue;
            }
            let next = self.shards[shard].from_log[i].expect("reads the log");
            if next > lsn {
                continue;
            }
            if let Entry::Row {
                table: t,
                rowbinary,
            } = entry
            {
                if t == table {
                    self.tables[i]
                        .open
                        .get_or_insert_with(|| Batch::new(table, now, true))
                        .push(shard, lsn, rowbinary, now);
                    self.taken[i] += 1;
                }
            }
            self.shards[shard].from_log[i] = Some(end);
        }
        let s = &mut self.shards[shard];
        if let Some(next) = s.commands_from_log {
            if next <= lsn {
                if let Entry::Commands(json) = entry {
                    effects.commands.push((shard, json.to_vec()));
                }
                s.commands_from_log = Some(end);
            }
        }
        self.caught_up(shard);
        Table::ALL
            .iter()
            .filter(|t| self.shards[shard].from_log[t.index()].is_some())
            .all(|t| {
                self.tables[t.index()]
                    .open
                    .as_ref()
                    .is_none_or(|b| !b.full(&self.limits))
            })
    }

    /// Reading reached `at`, the end of what the shard announced: every
    /// lane that was reading has read up to it.
    pub fn read_to(&mut self, shard: usize, at: u64) {
        for table in Table::ALL {
            if self.takes_from_log(shard, table) {
                let lane = self.shards[shard].from_log[table.index()]
                    .as_mut()
                    .expect("reads");
                *lane = (*lane).max(at);
            }
        }
        let s = &mut self.shards[shard];
        if let Some(c) = s.commands_from_log.as_mut() {
            *c = (*c).max(at);
        }
        self.caught_up(shard);
    }

    /// The log up to `at` is lost (a damaged segment moved aside): every
    /// lane that would read it, reading or not, goes on from `at`.
    pub fn skipped_to(&mut self, shard: usize, at: u64) {
        let s = &mut self.shards[shard];
        for lane in s.from_log.iter_mut().flatten() {
            if *lane < at {
                *lane = at;
            }
        }
        if let Some(c) = s.commands_from_log.as_mut() {
            if *c < at {
                *c = at;
            }
        }
        self.caught_up(shard);
    }

    /// Lanes that have read up to the announced end take memory again.
    fn caught_up(&mut self, shard: usize) {
        let s = &mut self.shards[shard];
        let covered = s.covered;
        for lane in s.from_log.iter_mut() {
            if lane.is_some_and(|next| next >= covered) {
                *lane = None;
            }
        }
        if s.commands_from_log.is_some_and(|next| next >= covered) {
            s.commands_from_log = None;
        }
    }

    /// The oldest row of `table` from `shard` not yet inserted (or where
    /// reading would start, or the announced end).
    pub fn checkpoint(&self, shard: usize, table: Table) -> u64 {
        let s = &self.shards[shard];
        let t = &self.tables[table.index()];
        let base = s.from_log[table.index()].unwrap_or(s.covered);
        t.batches()
            .filter_map(|b| b.first_of(shard))
            .fold(base, u64::min)
    }

    /// Where the queued commands are known up to.
    pub fn commands_checkpoint(&self, shard: usize) -> u64 {
        let s = &self.shards[shard];
        s.commands_from_log.unwrap_or(s.covered)
    }

    /// Rows gathered or in flight, for the stats.
    pub fn pending_rows(&self) -> usize {
        self.tables
            .iter()
            .flat_map(TableState::batches)
            .map(|b| b.rows.len())
            .sum()
    }

    /// Whether everything announced is inserted.
    pub fn idle(&self) -> bool {
        self.pending_rows() == 0
            && self
                .shards
                .iter()
                .all(|s| s.from_log.iter().all(Option::is_none))
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format;
    use crate::record::{HeartbeatRow, LocationRow, Record};

    fn limits() -> Limits {
        Limits {
            rows: 3,
            bytes: 1 << 20,
            age: Duration::from_secs(1),
            in_flight: 1,
        }
    }

    fn heartbeat() -> Record {
        Record::Heartbeats(HeartbeatRow {
            imei: 1,
            server_time: 2,
            protocol: 0x13,
            serial: 3,
            terminal_info: 4,
            battery: 5,
            gsm_signal: 6,
            language: 1,
            extension: String::new(),
            ingest_instance: "h",
            ingest_shard: 0,
            ingest_seq: 0,
        })
    }

    fn location() -> Record {
        let row = LocationRow {
            imei: 1,
            device_time: 0,
            server_time: 0,
            device_time_valid: 0,
            protocol: 0x22,
            serial: 1,
            source: 1,
            has_position: 0,
            lat: 0.0,
            lon: 0.0,
            position_source: 0,
            accuracy_m: 0.0,
            speed_kmh: 0,
            course: 0,
            satellites: 0,
            gps_positioned: 0,
            realtime: 0,
            mcc: 0,
            mnc: 0,
            lac: 0,
            cell_id: 0,
            rssi: 0,
            report_mode: 0,
            mileage: 0,
            cells_lac: vec![],
            cells_cell_id: vec![],
            cells_rssi: vec![],
            wifi_mac: vec![],
            wifi_rssi: vec![],
            address: String::new(),
            ingest_instance: "h",
            ingest_shard: 0,
            ingest_seq: 0,
        };
        Record::Locations(row)
    }

    /// A commit of `records` starting at `start`: (bytes, end, positions).
    fn commit(start: u64, records: &[Record]) -> (Vec<u8>, u64, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut at = Vec::new();
        for r in records {
            let lsn = start + bytes.len() as u64;
            at.push(lsn);
            format::push_row(&mut bytes, r, lsn).unwrap();
        }
        let end = start + bytes.len() as u64;
        (bytes, end, at)
    }

    fn fresh(start: u64) -> Lanes {
        Lanes::new(limits(), &[start], &[([start; Table::COUNT], start)])
    }

    /// One shard's lanes from position 0, under `limits`.
    fn fresh_with(limits: Limits) -> Lanes {
        Lanes::new(limits, &[0], &[([0; Table::COUNT], 0)])
    }

    #[test]
    fn rows_from_memory_are_batched_and_checkpoints_follow_the_inserts() {
        let now = Instant::now();
        let mut l = fresh(100);
        let (bytes, end, at) = commit(100, &[heartbeat(), location(), heartbeat()]);
        l.chunk(0, 100, end, &bytes, &[], now);
        assert_eq!(l.checkpoint(0, Table::Heartbeats), at[0]);
        assert_eq!(l.checkpoint(0, Table::Locations), at[1]);
        // A table without rows is done up to the end.
        assert_eq!(l.checkpoint(0, Table::Alarms), end);
        assert!(l.due(now, false).is_empty(), "neither full nor old");
        let later = now + Duration::from_secs(2);
        assert_eq!(
            l.due(later, false),
            vec![Table::Heartbeats, Table::Locations]
        );
        let (id, batch) = l.take(Table::Heartbeats).unwrap();
        assert_eq!(batch.rows.len(), 2);
        assert_eq!(
            l.checkpoint(0, Table::Heartbeats),
            at[0],
            "in flight is not in"
        );
        l.inserted(Table::Heartbeats, id).unwrap();
        assert_eq!(l.checkpoint(0, Table::Heartbeats), end);
        assert_eq!(l.checkpoint(0, Table::Locations), at[1]);
    }

    #[test]
    fn a_big_batch_that_stopped_growing_goes_before_its_age() {
        let now = Instant::now();
        let mut l = fresh_with(Limits {
            rows: 20,
            ..limits()
        });
        // Two heartbeats (a tenth of 20) and one location row.
        let (b1, e1, _) = commit(0, &[heartbeat(), location()]);
        l.chunk(0, 0, e1, &b1, &[], now);
        let (b2, e2, _) = commit(e1, &[heartbeat()]);
        let grew = now + Duration::from_millis(30);
        l.chunk(0, e1, e2, &b2, &[], grew);
        assert!(
            l.due(grew + SETTLED - Duration::from_millis(1), false)
                .is_empty(),
            "still growing a moment ago"
        );
        assert_eq!(
            l.due(grew + SETTLED, false),
            vec![Table::Heartbeats],
            "settled; the single location row is too small to go early"
        );
        assert_eq!(
            l.due(now + Duration::from_secs(1), false),
            vec![Table::Heartbeats, Table::Locations],
            "the age sends any batch"
        );
    }

    #[test]
    fn a_failing_table_reads_the_log_while_the_others_go_on_from_memory() {
        let now = Instant::now();
        let mut l = fresh(0);
        let (b1, e1, a1) = commit(0, &[heartbeat(), location()]);
        l.chunk(0, 0, e1, &b1, &[], now);
        let (id, _) = l.take(Table::Heartbeats).unwrap();
        l.failed(Table::Heartbeats, id, now, Duration::from_secs(5));
        let (b2, e2, a2) = commit(e1, &[heartbeat(), location()]);
        l.chunk(0, e1, e2, &b2, &[], now);
        // Heartbeats: the failed batch waits; the new row is left to the log.
        assert_eq!(l.checkpoint(0, Table::Heartbeats), a1[0]);
        assert!(l.tables[Table::Heartbeats.index()].open.is_none());
        // Locations gathered both rows from memory.
        assert_eq!(
            l.tables[Table::Locations.index()]
                .open
                .as_ref()
                .unwrap()
                .rows
                .len(),
            2
        );
        assert_eq!(l.wants_log(0), None, "paused: not read yet");
        assert!(l
            .retries_due(Table::Heartbeats, now + Duration::from_secs(4))
            .is_empty());
        assert_eq!(
            l.retries_due(Table::Heartbeats, now + Duration::from_secs(5)),
            vec![id]
        );
        l.inserted(Table::Heartbeats, id).unwrap();
        // The retry went in: the log is read from after it.
        assert_eq!(l.wants_log(0), Some(e1));
        let mut fx = Effects::default();
        for (lsn, entry) in format::entries(&b2).map(|e| e.unwrap()) {
            let len = format::read(&b2[lsn..]).unwrap().unwrap().1;
            assert!(l.replayed(0, e1 + lsn as u64, len, entry, now, &mut fx));
        }
        let hb = l.tables[Table::Heartbeats.index()].open.as_ref().unwrap();
        assert_eq!(
            (hb.rows.len(), hb.rows[0].lsn, hb.replayed),
            (1, a2[0], true)
        );
        // Caught up: memory again.
        assert_eq!(l.wants_log(0), None);
        assert!(l.shards[0].from_log.iter().all(Option::is_none));
        assert_eq!(l.checkpoint(0, Table::Heartbeats), a2[0]);
    }

    #[test]
    fn reading_the_log_for_one_table_never_moves_a_paused_one_past_its_rows() {
        let now = Instant::now();
        let (bytes, end, at) = commit(0, &[heartbeat(), location(), heartbeat()]);
        let mut l = Lanes::new(limits(), &[end], &[([0; Table::COUNT], end)]);
        // Heartbeats fail and wait; locations read the log meanwhile.
        l.tables[Table::Heartbeats.index()].in_flight.push(Flight {
            id: 0,
            batch: Batch::new(Table::Heartbeats, now, true),
            retry_at: Some(now + Duration::from_secs(60)),
        });
        let mut fx = Effects::default();
        let mut pos = 0;
        while let Ok(Some((entry, len))) = format::read(&bytes[pos..]) {
            l.replayed(0, pos as u64, len, entry, now, &mut fx);
            pos += len;
        }
        l.read_to(0, end);
        assert_eq!(l.checkpoint(0, Table::Locations), at[1]);
        assert_eq!(
            l.checkpoint(0, Table::Heartbeats),
            0,
            "its rows are still to read"
        );
        assert_eq!(l.shards[0].from_log[Table::Heartbeats.index()], Some(0));
    }

    #[test]
    fn missed_commits_are_read_from_the_log() {
        let now = Instant::now();
        let mut l = fresh(0);
        let (b1, e1, _) = commit(0, &[heartbeat()]);
        let (_b2, e2, a2) = commit(e1, &[heartbeat()]);
        let (b3, e3, _) = commit(e2, &[heartbeat()]);
        l.chunk(0, 0, e1, &b1, &[], now);
        // The second never arrived.
        l.chunk(0, e2, e3, &b3, &[], now);
        assert_eq!(l.covered(0), e3);
        assert_eq!(l.wants_log(0), Some(e1));
        // Memory rows from before the gap stay in their batch.
        assert_eq!(
            l.tables[Table::Heartbeats.index()]
                .open
                .as_ref()
                .unwrap()
                .rows
                .len(),
            1
        );
        assert_eq!(l.checkpoint(0, Table::Heartbeats), 0);
        let (id, _) = l.take(Table::Heartbeats).unwrap();
        l.inserted(Table::Heartbeats, id).unwrap();
        assert_eq!(l.checkpoint(0, Table::Heartbeats), a2[0]);
    }

    #[test]
    fn after_a_restart_each_table_reads_from_its_own_checkpoint() {
        let now = Instant::now();
        let (bytes, end, at) = commit(0, &[heartbeat(), location(), heartbeat()]);
        let mut cp = [end; Table::COUNT];
        cp[Table::Heartbeats.index()] = at[2];
        cp[Table::Locations.index()] = 0;
        let mut l = Lanes::new(limits(), &[end], &[(cp, end)]);
        assert_eq!(l.wants_log(0), Some(0));
        let mut fx = Effects::default();
        let mut pos = 0;
        while let Ok(Some((entry, len))) = format::read(&bytes[pos..]) {
            l.replayed(0, pos as u64, len, entry, now, &mut fx);
            pos += len;
        }
        let hb = l.tables[Table::Heartbeats.index()].open.as_ref().unwrap();
        assert_eq!(
            hb.rows.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            vec![at[2]]
        );
        let loc = l.tables[Table::Locations.index()].open.as_ref().unwrap();
        assert_eq!(
            loc.rows.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            vec![at[1]]
        );
        assert!(l.wants_log(0).is_none());
        // Nothing more to read: a lane left behind by damage moves on.
        let mut l = Lanes::new(limits(), &[end], &[([0; Table::COUNT], 0)]);
        l.skipped_to(0, end);
        assert!(l.idle());
    }

    #[test]
    fn a_full_batch_stops_the_reading_and_slices_keep_row_bounds() {
        let now = Instant::now();
        let records: Vec<Record> = (0..5).map(|_| heartbeat()).collect();
        let (bytes, end, at) = commit(0, &records);
        let mut cp = [end; Table::COUNT];
        cp[Table::Heartbeats.index()] = 0;
        let mut l = Lanes::new(limits(), &[end], &[(cp, end)]);
        let mut fx = Effects::default();
        let mut pos = 0;
        let mut read = 0;
        while let Ok(Some((entry, len))) = format::read(&bytes[pos..]) {
            read += 1;
            let go_on = l.replayed(0, pos as u64, len, entry, now, &mut fx);
            pos += len;
            if !go_on {
                break;
            }
        }
        assert_eq!(read, 3, "the batch holds 3 rows");
        assert_eq!(l.wants_log(0), None, "full: no more reading");
        let (id, b) = l.take(Table::Heartbeats).unwrap();
        let one = b.slice(1..2).len();
        assert_eq!(b.slice(0..3).len(), 3 * one);
        assert_eq!(b.bytes(), 3 * one);
        l.inserted(Table::Heartbeats, id).unwrap();
        assert_eq!(l.wants_log(0), Some(at[3]));
    }

    #[test]
    fn a_second_batch_goes_out_while_the_first_is_in_flight_and_may_go_in_first() {
        let now = Instant::now();
        let mut l = fresh_with(Limits {
            in_flight: 2,
            ..limits()
        });
        let records: Vec<Record> = (0..7).map(|_| heartbeat()).collect();
        let (bytes, end, at) = commit(0, &records);
        l.chunk(0, 0, end, &bytes, &[], now);
        // 7 rows, batches of 3 were gathered in one: one open batch of 7.
        let (first, _) = l.take(Table::Heartbeats).unwrap();
        assert!(l.take(Table::Heartbeats).is_none(), "nothing open");
        let (b2, e2, a2) = commit(end, &records[..3]);
        l.chunk(0, end, e2, &b2, &[], now);
        assert_eq!(l.due(now, false), vec![Table::Heartbeats], "full, and room");
        let (second, _) = l.take(Table::Heartbeats).unwrap();
        assert_ne!(first, second);
        let (b3, e3, a3) = commit(e2, &records[..3]);
        l.chunk(0, e2, e3, &b3, &[], now);
        assert!(l.due(now, false).is_empty(), "two in flight: no room");
        // The second goes in first: the checkpoint waits for the first.
        let b = l.inserted(Table::Heartbeats, second).unwrap();
        assert_eq!(b.rows[0].lsn, a2[0]);
        assert_eq!(l.checkpoint(0, Table::Heartbeats), at[0]);
        assert_eq!(l.due(now, false), vec![Table::Heartbeats]);
        l.inserted(Table::Heartbeats, first).unwrap();
        assert_eq!(l.checkpoint(0, Table::Heartbeats), a3[0], "the open batch");
        // A failure stops new batches until something goes in.
        let (third, _) = l.take(Table::Heartbeats).unwrap();
        l.failed(Table::Heartbeats, third, now, Duration::from_secs(1));
        let (b4, e4, _) = commit(e3, &records[..3]);
        l.chunk(0, e3, e4, &b4, &[], now);
        assert!(
            l.due(now, false).is_empty(),
            "failing, and its rows wait in the log"
        );
        assert_eq!(l.next_retry(), Some(now + Duration::from_secs(1)));
        assert_eq!(
            l.retries_due(Table::Heartbeats, now + Duration::from_secs(1)),
            vec![third]
        );
        assert_eq!(l.next_retry(), None);
        l.inserted(Table::Heartbeats, third).unwrap();
        assert_eq!(
            l.checkpoint(0, Table::Heartbeats),
            e3,
            "read from the log next"
        );
        assert_eq!(l.wants_log(0), Some(e3));
        assert!(l.inserted(Table::Heartbeats, third).is_none(), "once");
    }

    /// Every row of two shards' logs, through chunks, failures, retries,
    /// missed chunks, replays and batches going in out of order, is inserted
    /// exactly once, and no checkpoint ever passes a row not yet in.
    #[test]
    fn every_row_goes_in_once_whatever_fails() {
        const SHARDS: usize = 2;
        for seed in 0..300u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            // Each shard's log starts elsewhere, as real ones do.
            let base = [1000u64, 5_000_000];
            let mut logs: Vec<Vec<u8>> = vec![Vec::new(); SHARDS];
            let mut chunks = Vec::new();
            let mut all = Vec::new();
            for _ in 0..80 {
                let s = (next() % SHARDS as u64) as usize;
                let start = base[s] + logs[s].len() as u64;
                for _ in 0..(next() % 7) {
                    let r = if next() % 3 == 0 {
                        location()
                    } else {
                        heartbeat()
                    };
                    let lsn = base[s] + logs[s].len() as u64;
                    all.push((r.table(), s, lsn));
                    format::push_row(&mut logs[s], &r, lsn).unwrap();
                }
                chunks.push((s, start, base[s] + logs[s].len() as u64));
            }
            let checkpoints = base.map(|b| ([b; Table::COUNT], b));
            let limits = Limits {
                in_flight: 1 + (seed % 3) as usize,
                ..limits()
            };
            let mut l = Lanes::new(limits, &base, &checkpoints);
            let mut inserted = Vec::new();
            let mut now = Instant::now();
            let mut chunks = chunks.into_iter();
            let mut turns = 0;
            loop {
                turns += 1;
                assert!(turns < 20_000, "seed {seed}: no end");
                now += Duration::from_millis(300);
                let fed = match chunks.next() {
                    Some((s, start, end)) => {
                        // Some chunks never arrive (the queue was full).
                        if next() % 5 != 0 {
                            let bytes =
                                &logs[s][(start - base[s]) as usize..(end - base[s]) as usize];
                            l.chunk(s, start, end, bytes, &[], now);
                        }
                        true
                    }
                    None => false,
                };
                if !fed {
                    for s in 0..SHARDS {
                        let end = base[s] + logs[s].len() as u64;
                        if l.covered(s) < end {
                            // The last chunk went missing: the end is announced still.
                            l.chunk(s, end, end, &[], &[], now);
                        }
                    }
                }
                for table in l.due(now, !fed) {
                    l.take(table);
                }
                for table in Table::ALL {
                    // As the writer does: a retry goes out, and its outcome
                    // comes a turn later.
                    let retried = l.retries_due(table, now);
                    let out: Vec<BatchId> = l.tables[table.index()]
                        .in_flight
                        .iter()
                        .filter(|f| f.retry_at.is_none() && !retried.contains(&f.id))
                        .map(|f| f.id)
                        .collect();
                    for id in out {
                        // Outcomes come in any order.
                        match next() % 4 {
                            0 if fed => l.failed(table, id, now, Duration::from_millis(500)),
                            1 => {}
                            _ => {
                                let b = l.inserted(table, id).unwrap();
                                inserted.extend(
                                    b.rows.iter().map(|r| (table, usize::from(r.shard), r.lsn)),
                                );
                            }
                        }
                    }
                }
                let done: std::collections::HashSet<_> = inserted.iter().copied().collect();
                for &(table, s, lsn) in &all {
                    if !done.contains(&(table, s, lsn)) {
                        assert!(l.checkpoint(s, table) <= lsn, "seed {seed}: passed a row");
                    }
                }
                for s in 0..SHARDS {
                    let Some(from) = l.wants_log(s) else { continue };
                    let until = l.covered(s);
                    let mut fx = Effects::default();
                    let mut pos = (from - base[s]) as usize;
                    let mut stopped = false;
                    while base[s] + (pos as u64) < until {
                        let (entry, len) = format::read(&logs[s][pos..]).unwrap().unwrap();
                        let go_on = l.replayed(s, base[s] + pos as u64, len, entry, now, &mut fx);
                        pos += len;
                        if !go_on {
                            stopped = true;
                            break;
                        }
                    }
                    if !stopped {
                        l.read_to(s, until);
                    }
                }
                if !fed && l.idle() {
                    break;
                }
            }
            inserted.sort();
            let mut want = all.clone();
            want.sort();
            assert_eq!(inserted, want, "seed {seed}");
            for s in 0..SHARDS {
                for t in Table::ALL {
                    assert_eq!(
                        l.checkpoint(s, t),
                        base[s] + logs[s].len() as u64,
                        "seed {seed}"
                    );
                }
            }
        }
    }
}
