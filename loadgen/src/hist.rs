//! Latency histograms as the load generator keeps and sends them: the
//! bounds every histogram shares, and the (value, count) form a worker
//! process sends its parent. Apart from the reports, so that the honest
//! report and the attack report both use it without importing each other.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use badge_ingest::metrics::Percentiles;

pub fn latency_histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// A histogram as (value, count) pairs: what a worker sends its parent.
/// Each value is the highest equivalent value of its bucket, so recording
/// it again lands in the same bucket.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Hist(pub Vec<(u64, u64)>);

impl Hist {
    pub fn of(h: &Histogram<u64>) -> Self {
        Hist(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = latency_histogram();
        for &(v, c) in &self.0 {
            let _ = h.record_n(v, c);
        }
        h
    }
}
