//! `traft bench`: a replicated, durable cluster on loopback under
//! closed-loop clients — each client proposes a SET, waits for its result,
//! and proposes the next.

use super::latency_histogram;
use crate::apply::KvCommand;
use crate::core::{Params, Rng};
use crate::ids::NodeId;
use crate::node::{LocalCluster, MetricsSnapshot, NodeConfig, NodeError};
use crate::wal::Backend;
use hdrhistogram::Histogram;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ClusterBenchConfig {
    pub replicas: usize,
    /// Closed-loop clients per case.
    pub clients: usize,
    pub value_size: usize,
    /// Keys are drawn uniformly from this many.
    pub keys: u64,
    pub duration: Duration,
    /// Not measured, before each case.
    pub warmup: Duration,
    /// Every record depends on every earlier one (in-order Raft).
    pub strict: bool,
    pub backend: Backend,
    pub apply_workers: usize,
}

pub struct ClusterBenchReport {
    pub ops: u64,
    /// Proposals refused or of unknown outcome (leader changes); retried.
    pub errors: u64,
    pub elapsed: Duration,
    /// Per-operation latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// The leader's figures over the measured interval.
    pub leader: MetricsSnapshot,
    /// WAL syncs of every replica over the measured interval.
    pub syncs_all: u64,
}

impl ClusterBenchReport {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
}

/// A running cluster to measure several client counts against.
pub struct BenchCluster {
    cluster: Arc<LocalCluster>,
}

impl BenchCluster {
    pub fn start(dir: &Path, config: &ClusterBenchConfig) -> Result<BenchCluster, NodeError> {
        let (strict, backend, workers) = (config.strict, config.backend, config.apply_workers);
        let cluster = LocalCluster::start(config.replicas, dir, |c: &mut NodeConfig| {
            c.params = Params {
                strict,
                ..Params::default()
            };
            c.store.backend = backend;
            c.apply_workers = workers;
        })?;
        cluster
            .wait_leader(Duration::from_secs(30))
            .ok_or_else(|| NodeError::Start("no leader within 30 s".into()))?;
        Ok(BenchCluster {
            cluster: Arc::new(cluster),
        })
    }

    pub fn shutdown(self) -> Result<(), NodeError> {
        match Arc::try_unwrap(self.cluster) {
            Ok(cluster) => cluster.shutdown(),
            Err(_) => Err(NodeError::Failed("clients still hold the cluster".into())),
        }
    }

    /// One case: `config.clients` closed-loop clients for the warmup and
    /// then the measured duration.
    pub fn run(&self, config: &ClusterBenchConfig) -> Result<ClusterBenchReport, NodeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| NodeError::Start(format!("client runtime: {e}")))?;
        let start = Instant::now();
        let measure_from = start + config.warmup;
        let end = measure_from + config.duration;
        let cluster = &self.cluster;
        let metrics = |c: &LocalCluster| -> Vec<MetricsSnapshot> {
            (1..=c.len() as NodeId)
                .map(|id| c.node(id).map(|n| n.metrics()).unwrap_or_default())
                .collect()
        };
        let value = vec![b'v'; config.value_size];
        let local = tokio::task::LocalSet::new();
        let before = Rc::new(std::cell::RefCell::new(None));
        let outcome = local.block_on(&runtime, async {
            let tasks: Vec<_> = (0..config.clients)
                .map(|c| {
                    let value = value.clone();
                    let before = before.clone();
                    let cluster = cluster.clone();
                    let keys = config.keys;
                    async move {
                        let mut rng = Rng::new(0x5eed ^ c as u64);
                        let mut latency = latency_histogram();
                        let (mut ops, mut errors) = (0u64, 0u64);
                        let mut leader = cluster.wait_leader(Duration::from_secs(10));
                        loop {
                            let now = Instant::now();
                            if now >= end {
                                break;
                            }
                            if now >= measure_from && before.borrow().is_none() {
                                *before.borrow_mut() = Some((now, metrics(&cluster)));
                            }
                            let Some(node) = leader.and_then(|id| cluster.node(id)) else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                leader = cluster.wait_leader(Duration::ZERO);
                                continue;
                            };
                            let key = format!("key:{:012}", rng.next_u64() % keys);
                            let cmd = KvCommand::Set {
                                key: key.into_bytes(),
                                value: value.clone(),
                            }
                            .encode();
                            let sent = Instant::now();
                            match node.propose(cmd).await {
                                Ok(_) => {
                                    if sent >= measure_from {
                                        ops += 1;
                                        latency.saturating_record(sent.elapsed().as_nanos() as u64);
                                    }
                                }
                                Err(NodeError::Failed(e)) => return Err(NodeError::Failed(e)),
                                Err(_) => {
                                    errors += 1;
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                    leader = cluster.wait_leader(Duration::ZERO);
                                }
                            }
                        }
                        Ok((ops, errors, latency))
                    }
                })
                .map(tokio::task::spawn_local)
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.map_err(|e| NodeError::Failed(e.to_string()))?);
            }
            Ok::<_, NodeError>(results)
        })?;
        let after = metrics(cluster);
        let finished = Instant::now();
        let (measured_at, before) = before
            .borrow_mut()
            .take()
            .unwrap_or_else(|| (measure_from, vec![MetricsSnapshot::default(); after.len()]));
        let mut latency = latency_histogram();
        let (mut ops, mut errors) = (0, 0);
        for r in outcome {
            let (o, e, h) = r?;
            ops += o;
            errors += e;
            latency.add(&h).expect("same histogram bounds");
        }
        let leader = cluster
            .wait_leader(Duration::ZERO)
            .map(|id| id as usize - 1)
            .unwrap_or(0);
        let delta = |a: &MetricsSnapshot, b: &MetricsSnapshot| MetricsSnapshot {
            proposals: a.proposals - b.proposals,
            wal_submits: a.wal_submits - b.wal_submits,
            wal_syncs: a.wal_syncs - b.wal_syncs,
            wal_frames: a.wal_frames - b.wal_frames,
            wal_bytes: a.wal_bytes - b.wal_bytes,
            records_written: a.records_written - b.records_written,
            messages_sent: a.messages_sent - b.messages_sent,
            messages_received: a.messages_received - b.messages_received,
            ..a.clone()
        };
        let syncs_all = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.wal_syncs - b.wal_syncs)
            .sum();
        Ok(ClusterBenchReport {
            ops,
            errors,
            elapsed: finished.duration_since(measured_at.max(measure_from)),
            latency,
            leader: delta(&after[leader], &before[leader]),
            syncs_all,
        })
    }
}
