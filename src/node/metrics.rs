//! Counters and latency histograms a node keeps about itself.

use crate::core::Message;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Live figures, updated by the node's threads.
pub struct Metrics {
    pub proposals: AtomicU64,
    pub reads: AtomicU64,
    /// WAL write requests submitted (one or more frames each).
    pub wal_submits: AtomicU64,
    pub wal_frames: AtomicU64,
    pub wal_bytes: AtomicU64,
    /// Records in the leader's batches.
    pub records_written: AtomicU64,
    /// Record batch frames encoded; used again in the same turn (the WAL
    /// and each follower share one encoding); appended as received from the
    /// leader.
    pub batches_encoded: AtomicU64,
    pub batches_reused: AtomicU64,
    pub batches_from_wire: AtomicU64,
    /// WAL purges run (each below a durable snapshot), and the segments
    /// they recycled.
    pub wal_purges: AtomicU64,
    pub wal_segments_purged: AtomicU64,
    pub applied: AtomicU64,
    pub messages_received: AtomicU64,
    /// Messages received and handed to the peer links, per kind
    /// (`Message::KINDS`).
    pub received_by_kind: [AtomicU64; Message::KINDS.len()],
    pub sent_by_kind: [AtomicU64; Message::KINDS.len()],
    /// Submit to durable, microseconds.
    pub wal_latency_us: Mutex<Histogram<u64>>,
    /// Records per WAL submit carrying records.
    pub batch_records: Mutex<Histogram<u64>>,
    /// A slot write (vote, committer copy) and its sync, microseconds: the
    /// node's loop waits for it.
    pub slot_latency_us: Mutex<Histogram<u64>>,
    /// A proposal's time in the node: taken to answered, microseconds.
    pub proposal_latency_us: Mutex<Histogram<u64>>,
    /// A read's time in the node, microseconds.
    pub read_latency_us: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            proposals: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            wal_submits: AtomicU64::new(0),
            wal_frames: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            batches_encoded: AtomicU64::new(0),
            batches_reused: AtomicU64::new(0),
            batches_from_wire: AtomicU64::new(0),
            wal_purges: AtomicU64::new(0),
            wal_segments_purged: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            received_by_kind: Default::default(),
            sent_by_kind: Default::default(),
            wal_latency_us: Mutex::new(histogram()),
            batch_records: Mutex::new(histogram()),
            slot_latency_us: Mutex::new(histogram()),
            proposal_latency_us: Mutex::new(histogram()),
            read_latency_us: Mutex::new(histogram()),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A copy of the figures at one moment.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    pub proposals: u64,
    pub reads: u64,
    pub wal_submits: u64,
    /// Durable writes (each one sync) the WAL writer made.
    pub wal_syncs: u64,
    pub wal_frames: u64,
    pub wal_bytes: u64,
    pub records_written: u64,
    pub batches_encoded: u64,
    pub batches_reused: u64,
    pub batches_from_wire: u64,
    pub wal_purges: u64,
    pub wal_segments_purged: u64,
    pub applied: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub received_by_kind: [u64; Message::KINDS.len()],
    pub sent_by_kind: [u64; Message::KINDS.len()],
    pub wal_p50_us: u64,
    pub wal_p99_us: u64,
    pub batch_records_mean: f64,
    pub proposal_p50_us: u64,
    pub proposal_p99_us: u64,
    pub read_p50_us: u64,
    pub read_p99_us: u64,
    pub slot_writes: u64,
    pub slot_p50_us: u64,
    pub slot_max_us: u64,
}

impl Metrics {
    pub fn record(histogram: &Mutex<Histogram<u64>>, value: u64) {
        if let Ok(mut h) = histogram.lock() {
            h.saturating_record(value.max(1));
        }
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let wal = self.wal_latency_us.lock().map(|h| h.clone()).ok();
        let batch = self.batch_records.lock().map(|h| h.mean()).unwrap_or(0.0);
        let quantiles = |h: &Mutex<Histogram<u64>>| {
            h.lock()
                .map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99)))
                .unwrap_or((0, 0))
        };
        let (proposal_p50_us, proposal_p99_us) = quantiles(&self.proposal_latency_us);
        let (read_p50_us, read_p99_us) = quantiles(&self.read_latency_us);
        let (slot_writes, slot_p50_us, slot_max_us) = self
            .slot_latency_us
            .lock()
            .map(|h| (h.len(), h.value_at_quantile(0.5), h.max()))
            .unwrap_or((0, 0, 0));
        MetricsSnapshot {
            proposals: load(&self.proposals),
            reads: load(&self.reads),
            wal_submits: load(&self.wal_submits),
            wal_frames: load(&self.wal_frames),
            wal_bytes: load(&self.wal_bytes),
            records_written: load(&self.records_written),
            batches_encoded: load(&self.batches_encoded),
            batches_reused: load(&self.batches_reused),
            batches_from_wire: load(&self.batches_from_wire),
            wal_purges: load(&self.wal_purges),
            wal_segments_purged: load(&self.wal_segments_purged),
            applied: load(&self.applied),
            messages_received: load(&self.messages_received),
            received_by_kind: self.received_by_kind.each_ref().map(load),
            sent_by_kind: self.sent_by_kind.each_ref().map(load),
            wal_p50_us: wal.as_ref().map_or(0, |h| h.value_at_quantile(0.5)),
            wal_p99_us: wal.as_ref().map_or(0, |h| h.value_at_quantile(0.99)),
            batch_records_mean: batch,
            proposal_p50_us,
            proposal_p99_us,
            read_p50_us,
            read_p99_us,
            slot_writes,
            slot_p50_us,
            slot_max_us,
            ..Default::default()
        }
    }
}
