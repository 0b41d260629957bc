//! Worker threads that run ready records and confirmed reads.

use super::{apply_command, StateMachine};
use crate::core::ProposalId;
use crate::ids::Lsn;
use crossbeam::channel::{bounded, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

/// Jobs waiting for a worker, at most; the node blocks beyond it.
pub const APPLY_QUEUE_MAX: usize = 65_536;

pub enum ApplyJob {
    /// A committed record whose deps are applied.
    Record { lsn: Lsn, cmd: Vec<u8> },
    /// A confirmed read whose keys' last writes are applied.
    Read { id: ProposalId, cmd: Vec<u8> },
}

/// What a job gave, sent back to the node.
pub enum Applied {
    Record { lsn: Lsn, result: Vec<u8> },
    Read { id: ProposalId, result: Vec<u8> },
}

/// A fixed set of apply threads sharing one queue.
pub struct ApplyPool {
    jobs: Option<Sender<ApplyJob>>,
    workers: Vec<JoinHandle<()>>,
}

impl ApplyPool {
    pub fn start<S: StateMachine>(
        sm: Arc<S>,
        workers: usize,
        name: &str,
        results: UnboundedSender<Applied>,
    ) -> ApplyPool {
        assert!(workers > 0, "an apply pool needs a worker");
        let (jobs, queue) = bounded::<ApplyJob>(APPLY_QUEUE_MAX);
        let workers = (0..workers)
            .map(|i| {
                let (sm, queue, results) = (sm.clone(), queue.clone(), results.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-apply-{i}"))
                    .spawn(move || {
                        for job in queue {
                            if results.send(run(&*sm, job)).is_err() {
                                return; // the node is gone
                            }
                        }
                    })
                    .expect("spawn an apply thread")
            })
            .collect();
        ApplyPool {
            jobs: Some(jobs),
            workers,
        }
    }

    pub fn submit(&self, job: ApplyJob) {
        let jobs = self.jobs.as_ref().expect("the pool runs until dropped");
        // Fails only once every worker is gone, which happens only after
        // the node dropped its result receiver: nobody waits any more.
        let _ = jobs.send(job);
    }
}

impl Drop for ApplyPool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Runs one job on the calling thread.
pub fn run<S: StateMachine>(sm: &S, job: ApplyJob) -> Applied {
    match job {
        ApplyJob::Record { lsn, cmd } => Applied::Record {
            lsn,
            result: apply_command(sm, &cmd),
        },
        ApplyJob::Read { id, cmd } => Applied::Read {
            id,
            result: sm.read(&cmd),
        },
    }
}
