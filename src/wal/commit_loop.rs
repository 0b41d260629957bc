//! The group-commit writer thread's loop: it takes appends off the queue,
//! plans them into writes (`Wal::plan`), starts each write alone on this
//! thread or through the ring (`alone.rs`), collects completions, and
//! resolves every append the durable mark has passed, in order. Purges run
//! between writes, once none is in flight.

use super::alone::{AlonePolicy, Candidate};
use super::gather::LentFrame;
use super::group::{Done, PurgeDone, Request, WRITE_BYTES_MAX};
use super::stages::{self, Stage};
use super::storage::{Completion, Storage};
use super::timeline;
use super::writer::{PlannedWrite, Wal, WalError};
use crate::ids::Lsn;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use rkyv::util::AlignedVec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the writer waits before trying again to make a segment ready
/// on a full disk, at first and at most.
const NO_SPACE_RETRY_MIN: Duration = Duration::from_millis(50);
const NO_SPACE_RETRY_MAX: Duration = Duration::from_secs(1);

/// An append planned into writes, waiting for its frames to be durable:
/// it resolves once the durable mark reaches `end` (one past its last frame).
struct Planned {
    done: Done,
    first: u64,
    end: u64,
    frames: Vec<AlignedVec>,
}

/// What the writer shares with the `GroupWal` handles, and its channels.
pub(super) struct Shared<'a> {
    pub depth: usize,
    pub queue: Receiver<Request>,
    pub purge_queue: Receiver<(Lsn, PurgeDone)>,
    /// Tells the preparer a prepared segment was taken.
    pub wake: Sender<()>,
    pub writes: &'a AtomicU64,
    pub waiting_for_space: &'a AtomicBool,
    pub notify: &'a Arc<Notify>,
    pub peak_in_flight: &'a AtomicU64,
}

/// Runs the writer until every `GroupWal` is dropped and nothing is left in
/// flight.
pub(super) fn run<S: Storage>(wal: Wal<S>, shared: Shared<'_>) {
    let mut writer = CommitLoop::new(wal, shared);
    loop {
        if writer.idle() && !writer.wait_for_work() {
            return;
        }
        writer.take_queued();
        writer.purge_if_drained();
        writer.start_writes();
        writer.collect_completions();
        writer.resolve_durable();
    }
}

/// The writer thread's state from one turn of `run` to the next.
struct CommitLoop<'a, S: Storage> {
    wal: Wal<S>,
    shared: Shared<'a>,
    /// Taken from the queue, not yet planned.
    held: Vec<Request>,
    /// Planned into writes, in `wal_seq` order, not yet resolved.
    planned: VecDeque<Planned>,
    in_flight: usize,
    policy: AlonePolicy,
    /// Every `GroupWal` is gone: end once nothing is left.
    closed: bool,
    /// Purges wait for the writes in flight; no write starts meanwhile.
    purges: Vec<(Lsn, PurgeDone)>,
}

impl<'a, S: Storage> CommitLoop<'a, S> {
    fn new(mut wal: Wal<S>, mut shared: Shared<'a>) -> Self {
        if wal.storage_mut().pipeline().is_none() {
            shared.depth = 1;
        }
        CommitLoop {
            wal,
            shared,
            held: Vec::new(),
            planned: VecDeque::new(),
            in_flight: 0,
            policy: AlonePolicy::default(),
            closed: false,
            purges: Vec::new(),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.held.is_empty() && self.purges.is_empty()
    }

    /// Sleeps until an append or a purge comes; false once there will be
    /// none.
    fn wait_for_work(&mut self) -> bool {
        if self.closed {
            return false;
        }
        crossbeam::channel::select! {
            recv(self.shared.queue) -> request => match request {
                Ok(request) => {
                    stages::mark(Stage::Taken);
                    self.held.push(request);
                    true
                }
                Err(_) => false,
            },
            recv(self.shared.purge_queue) -> purge => match purge {
                Ok(purge) => {
                    self.purges.push(purge);
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// Everything already queued, without waiting.
    fn take_queued(&mut self) {
        loop {
            match self.shared.queue.try_recv() {
                Ok(request) => {
                    stages::mark(Stage::Taken);
                    self.held.push(request);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.purges.extend(self.shared.purge_queue.try_iter());
    }

    fn purge_if_drained(&mut self) {
        if self.in_flight == 0 {
            for (below, done) in self.purges.drain(..) {
                done(self.wal.purge(below));
            }
        }
    }

    /// What was taken joins one write (up to `WRITE_BYTES_MAX`) once a
    /// write may start; the rest, the next.
    fn start_writes(&mut self) {
        while self.purges.is_empty() && !self.held.is_empty() && self.in_flight < self.shared.depth
        {
            let segment = self.wal.segment();
            let group = take_group(&mut self.held);
            let queue = &self.shared.queue;
            match plan_group(&mut self.wal, group, queue, self.shared.waiting_for_space) {
                Ok((requests, writes_planned)) => {
                    // On this thread, blocking it (alone.rs), or through
                    // the ring.
                    let alone = self.policy.alone(Candidate {
                        in_flight: self.in_flight,
                        held: self.held.len(),
                        writes: writes_planned.len(),
                        appends: requests.len(),
                        bytes: writes_planned.first().map_or(0, |w| w.bytes.len()),
                    });
                    // Counted on the group's first write.
                    let mut appends = requests.len();
                    self.planned.extend(requests);
                    let count = writes_planned.len() as u64;
                    self.shared.writes.fetch_add(count, Ordering::Relaxed);
                    for write in writes_planned {
                        self.start_write(write, alone, std::mem::take(&mut appends));
                    }
                }
                Err((group, error)) => fail_all(group.into_iter().map(|r| r.done), error),
            }
            if self.wal.segment() != segment {
                let _ = self.shared.wake.try_send(()); // it took a prepared segment
            }
        }
        let in_flight = self.in_flight as u64;
        self.shared
            .peak_in_flight
            .fetch_max(in_flight, Ordering::Relaxed);
    }

    /// One planned write, carrying `appends` appends' first frames, made
    /// `alone` on this thread or handed to the ring.
    fn start_write(&mut self, write: PlannedWrite, alone: bool, appends: usize) {
        let (id, segment) = (write.id, write.segment);
        stages::mark(Stage::Started);
        let bytes = write.bytes.len();
        let pipeline = self.wal.storage_mut().pipeline().filter(|_| !alone);
        let result = match pipeline {
            // Its completion comes from `collect_completions`.
            Some(pipeline) => {
                timeline::started(id, appends, bytes, false);
                let notify = self.shared.notify.clone();
                match pipeline.start(id, segment, write.offset, write.bytes, notify) {
                    Ok(()) => {
                        self.in_flight += 1;
                        self.policy.started(self.in_flight);
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            None => {
                let pieces = write.bytes.pieces();
                stages::mark(Stage::Issued);
                timeline::started(id, appends, bytes, true);
                let result = self
                    .wal
                    .storage_mut()
                    .write_alone(segment, write.offset, &pieces);
                stages::mark(Stage::Written);
                timeline::done(id);
                self.policy.written_alone(!self.shared.queue.is_empty());
                drop(pieces);
                give_back(&mut self.planned, self.wal.write_over(write.bytes));
                result
            }
        };
        if let Err(e) = self.wal.completed(id, result) {
            fail_all(self.planned.drain(..).map(|p| p.done), e);
        }
    }

    /// Waits for at least one write in flight to complete, if any is.
    fn collect_completions(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        let done = self
            .wal
            .storage_mut()
            .pipeline()
            .expect("writes in flight only with a pipeline")
            .wait(self.shared.notify);
        stages::mark(Stage::Collected);
        for Completion { id, result, bytes } in done {
            timeline::done(id);
            self.in_flight -= 1;
            give_back(&mut self.planned, self.wal.write_over(bytes));
            if let Err(e) = self.wal.completed(id, result) {
                fail_all(self.planned.drain(..).map(|p| p.done), e);
            }
        }
        if self.in_flight == 0 {
            let waiting = !self.held.is_empty() || !self.shared.queue.is_empty();
            self.policy.drained(waiting);
        }
    }

    /// Resolves, in order, every append the durable mark has passed.
    fn resolve_durable(&mut self) {
        let mark = self.wal.durable_mark();
        let mut resolved = 0;
        while self.planned.front().is_some_and(|p| p.end <= mark) {
            resolved += 1;
            let p = self.planned.pop_front().expect("checked");
            stages::mark(Stage::Resolved);
            debug_assert!(
                p.frames.iter().all(|f| !f.is_empty()),
                "an append resolves with every frame lent to its writes back"
            );
            (p.done)(Ok(p.first), p.frames);
        }
        if resolved > 0 {
            self.policy.resolved(resolved);
        }
    }
}

/// Hands frames lent to a write that is over back to their appends; the
/// frames of an append that failed meanwhile go.
fn give_back(planned: &mut VecDeque<Planned>, lent: Vec<LentFrame>) {
    for LentFrame { wal_seq, frame } in lent {
        let owner = planned
            .iter_mut()
            .find(|p| (p.first..p.end).contains(&wal_seq));
        if let Some(p) = owner {
            p.frames[(wal_seq - p.first) as usize] = frame;
        }
    }
}

/// The first requests of `held` whose frames fit one write of
/// `WRITE_BYTES_MAX` (at least one request, however large).
fn take_group(held: &mut Vec<Request>) -> Vec<Request> {
    let mut bytes = 0;
    let fit = held
        .iter()
        .position(|r| {
            bytes += r.frames.iter().map(|f| f.len()).sum::<usize>();
            bytes > WRITE_BYTES_MAX
        })
        .map_or(held.len(), |i| i.max(1));
    let rest = held.split_off(fit);
    std::mem::replace(held, rest)
}

/// Plans one write of every frame of `group`, waiting for space for a new
/// segment if the disk is full (taking in what arrives meanwhile; nothing
/// resolves, so nothing is acknowledged).
#[allow(clippy::type_complexity)]
fn plan_group<S: Storage>(
    wal: &mut Wal<S>,
    mut group: Vec<Request>,
    queue: &Receiver<Request>,
    waiting_for_space: &AtomicBool,
) -> Result<(Vec<Planned>, Vec<PlannedWrite>), (Vec<Request>, WalError)> {
    let mut frames: Vec<AlignedVec> = Vec::new();
    let mut counts = Vec::with_capacity(group.len());
    for request in &mut group {
        counts.push(request.frames.len() as u64);
        frames.append(&mut request.frames);
    }
    let mut retry = NO_SPACE_RETRY_MIN;
    let result = loop {
        match wal.plan(&mut frames) {
            Err(WalError::NoSpaceForSegment { segment, source }) => {
                if !waiting_for_space.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "no space for WAL segment {segment} ({source}): appends wait until there is"
                    );
                }
                match queue.recv_timeout(retry) {
                    Ok(mut request) => {
                        counts.push(request.frames.len() as u64);
                        frames.append(&mut request.frames);
                        group.push(request);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        break Err(WalError::NoSpaceForSegment { segment, source })
                    }
                }
                retry = (retry * 2).min(NO_SPACE_RETRY_MAX);
            }
            other => break other,
        }
    };
    if waiting_for_space.swap(false, Ordering::Relaxed) {
        tracing::info!("WAL space is back: appends resume");
    }
    match result {
        Ok((mut seq, writes)) => {
            let mut frames = frames.into_iter();
            let requests = group
                .into_iter()
                .zip(counts)
                .map(|(request, count)| {
                    let first = seq;
                    seq += count;
                    Planned {
                        done: request.done,
                        first,
                        end: seq,
                        frames: frames.by_ref().take(count as usize).collect(),
                    }
                })
                .collect();
            Ok((requests, writes))
        }
        Err(error) => Err((group, error)),
    }
}

/// Resolves every waiting append with `error` (the first) or a failure
/// naming it (the rest): none of them can become durable.
fn fail_all(dones: impl IntoIterator<Item = Done>, error: WalError) {
    let reason = error.to_string();
    let mut first = Some(error);
    for done in dones {
        let e = first
            .take()
            .unwrap_or_else(|| WalError::Failed(reason.clone()));
        done(Err(e), Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::wal::frame_of;

    fn request(bytes: usize) -> Request {
        Request {
            frames: vec![frame_of(bytes)],
            done: Box::new(|_, _| {}),
        }
    }

    #[test]
    fn a_write_takes_requests_up_to_its_byte_limit_and_at_least_one() {
        let third = WRITE_BYTES_MAX / 3;
        let mut held: Vec<Request> = (0..4).map(|_| request(third)).collect();
        assert_eq!(take_group(&mut held).len(), 3);
        assert_eq!(held.len(), 1);
        let mut held = vec![request(2 * WRITE_BYTES_MAX), request(100)];
        assert_eq!(take_group(&mut held).len(), 1, "a large request goes alone");
        assert_eq!(take_group(&mut held).len(), 1);
        assert!(held.is_empty());
    }
}
