//! The simulator's safety checks (DESIGN.md §3.8), run after every step.
//!
//! The checker watches what replicas *do* — the acks they send, the bases
//! they establish, the records they apply — and keeps its own account of what
//! was chosen, independent of what any replica believes.

use super::kv::{KvConflicts, KvState};
use crate::bitmap::TailBitmap;
use crate::core::{Config, Conflicts, Message, Nanos, Replica, WalEntry};
use crate::frame::Record;
use crate::ids::{LeaderId, Lsn, NodeId};
use std::collections::BTreeMap;

pub type Violation = String;

#[derive(Default)]
pub struct Checker {
    config: Option<Config>,
    /// Per leadership, the LSNs each replica acknowledged to it.
    acks: BTreeMap<LeaderId, BTreeMap<NodeId, TailBitmap>>,
    /// Per leadership, the content acknowledged at each LSN.
    acked_content: BTreeMap<LeaderId, BTreeMap<Lsn, Record>>,
    chosen_by: BTreeMap<LeaderId, TailBitmap>,
    /// Every chosen LSN, its one content, and the first leadership that chose it.
    pub chosen: BTreeMap<Lsn, (Record, LeaderId)>,
    /// Each leader's base, as it was when it became established.
    bases: BTreeMap<LeaderId, BTreeMap<Lsn, Record>>,
    /// Who established each LeaderId: (node, incarnation).
    established_by: BTreeMap<LeaderId, (NodeId, u64)>,
    max_committer: BTreeMap<NodeId, LeaderId>,
    /// Per node, (incarnation, greatest vote): a crash may lose a vote that
    /// was never durable, so it is checked within one incarnation.
    max_vote: BTreeMap<NodeId, (u64, LeaderId)>,
    /// Per node, what I3 already covered: (incarnation, log epoch, LSNs checked).
    i3_checked: BTreeMap<NodeId, (u64, u64, TailBitmap)>,
    /// Writes acknowledged to clients, per key: (when, LSN).
    acked_writes: BTreeMap<u64, Vec<(Nanos, Lsn)>>,
}

impl Checker {
    pub fn new(config: Config) -> Self {
        Checker {
            config: Some(config),
            ..Default::default()
        }
    }

    fn config(&self) -> &Config {
        self.config.as_ref().expect("configured")
    }

    pub fn leaders_established(&self) -> usize {
        self.bases.len()
    }

    /// Checks made at the moment `sender` produces `msg`: I1 for acks, I4
    /// for forwards.
    pub fn on_send<C: Conflicts>(
        &mut self,
        sender: &Replica<C>,
        msg: &Message,
    ) -> Result<(), Violation> {
        match msg {
            Message::Ack { leader, acked, .. } => self.on_ack(sender, *leader, acked),
            Message::Forward(f) if sender.established_leader() != Some(f.leader) => Err(format!(
                "I4: node {} forwarded as {:?} without being its established leader",
                sender.id(),
                f.leader
            )),
            _ => Ok(()),
        }
    }

    /// `writer` issued a WAL write; a merge frame of its own leadership
    /// records that leader's base.
    pub fn on_append<C: Conflicts>(
        &mut self,
        writer: &Replica<C>,
        incarnation: u64,
        entry: &WalEntry,
    ) -> Result<(), Violation> {
        let WalEntry::Base {
            committer,
            keep,
            records,
            ..
        } = entry
        else {
            return Ok(());
        };
        if committer.node != writer.id() {
            return Ok(());
        }
        // A merge frame: the log becomes the writer's records at `keep` plus `records`.
        let mut base: BTreeMap<Lsn, Record> = writer
            .log()
            .iter()
            .filter(|(lsn, _)| keep.contains(**lsn))
            .map(|(lsn, r)| (*lsn, r.clone()))
            .collect();
        for r in records {
            base.insert(r.lsn, r.clone());
        }
        // What it holds in its snapshot alone is in its base: the chosen records.
        for lsn in keep.intersection(writer.purged()).iter() {
            check_purged(&self.chosen, writer.id(), lsn)?;
            base.insert(lsn, self.chosen[&lsn].0.clone());
        }
        self.on_merge_frame(writer.id(), incarnation, *committer, base)
    }

    /// An ack left `sender` for leadership `c` (I1 is checked at the moment
    /// the ack is produced).
    fn on_ack<C: Conflicts>(
        &mut self,
        sender: &Replica<C>,
        c: LeaderId,
        acked: &TailBitmap,
    ) -> Result<(), Violation> {
        if sender.vote() != c || sender.committer() != c {
            return Err(format!(
                "I1: node {} acked {c:?} with vote {:?} committer {:?}",
                sender.id(),
                sender.vote(),
                sender.committer()
            ));
        }
        self.record_acks(sender, c, acked)
    }

    fn record_acks<C: Conflicts>(
        &mut self,
        sender: &Replica<C>,
        c: LeaderId,
        acked: &TailBitmap,
    ) -> Result<(), Violation> {
        let node = sender.id();
        let before = self
            .acks
            .get(&c)
            .and_then(|m| m.get(&node))
            .cloned()
            .unwrap_or_default();
        let fresh = acked.difference(&before);
        if fresh.is_empty() {
            return Ok(());
        }
        let contents = self.acked_content.entry(c).or_default();
        for lsn in fresh.iter() {
            let Some(record) = sender.log().get(&lsn) else {
                if sender.purged().contains(lsn) {
                    // Held as committed, in its snapshot alone: the chosen record.
                    check_purged(&self.chosen, node, lsn)?;
                    let chosen = self.chosen[&lsn].0.clone();
                    contents.entry(lsn).or_insert(chosen);
                    continue;
                }
                return Err(format!(
                    "node {node} acked LSN {lsn} to {c:?} without holding it"
                ));
            };
            match contents.get(&lsn) {
                Some(other) if other != record => {
                    return Err(format!(
                        "two contents acked to {c:?} at LSN {lsn}: {:?} and {:?}",
                        other.author, record.author
                    ))
                }
                Some(_) => {}
                None => {
                    contents.insert(lsn, record.clone());
                }
            }
        }
        self.acks
            .entry(c)
            .or_default()
            .insert(node, before.union(acked));
        self.update_chosen(c)
    }

    fn update_chosen(&mut self, c: LeaderId) -> Result<(), Violation> {
        let acks = &self.acks[&c];
        let chosen = self.config().chosen(|n| acks.get(&n));
        let before = self.chosen_by.get(&c).cloned().unwrap_or_default();
        let fresh = chosen.difference(&before);
        self.chosen_by.insert(c, chosen);
        for lsn in fresh.iter() {
            let record = self.acked_content[&c][&lsn].clone();
            match self.chosen.get(&lsn) {
                Some((other, under)) if *other != record => {
                    return Err(format!(
                        "two values chosen at LSN {lsn}: {:?} under {under:?}, {:?} under {c:?}",
                        other.author, record.author
                    ));
                }
                Some(_) => {}
                None => {
                    self.chosen.insert(lsn, (record.clone(), c));
                }
            }
            for (k, base) in self.bases.range(c..) {
                if *k > c && base.get(&lsn) != Some(&record) {
                    return Err(format!(
                        "LSN {lsn} chosen under {c:?} is missing from the base of later leader {k:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A replica issued the merge frame of leadership `c`: `base` is the log
    /// it makes. LeaderIds are unique, and the base holds every earlier choice.
    fn on_merge_frame(
        &mut self,
        node: NodeId,
        incarnation: u64,
        c: LeaderId,
        base: BTreeMap<Lsn, Record>,
    ) -> Result<(), Violation> {
        if let Some(&(by, inc)) = self.established_by.get(&c) {
            if (by, inc) != (node, incarnation) {
                return Err(format!(
                    "LeaderId {c:?} used twice: node {by} incarnation {inc}, node {node} incarnation {incarnation}"
                ));
            }
            if self.bases.get(&c) != Some(&base) {
                return Err(format!("leader {c:?} wrote two different merge frames"));
            }
            return Ok(());
        }
        self.established_by.insert(c, (node, incarnation));
        for (lsn, (record, under)) in &self.chosen {
            if *under < c && base.get(lsn) != Some(record) {
                return Err(format!(
                    "leader {c:?} merged a base without LSN {lsn}, chosen under {under:?}"
                ));
            }
        }
        self.bases.insert(c, base);
        Ok(())
    }

    /// Checks one replica after it took a step.
    pub fn after_step<C: Conflicts>(
        &mut self,
        replica: &Replica<C>,
        incarnation: u64,
    ) -> Result<(), Violation> {
        let node = replica.id();
        // I2: committer <= vote, and committer never decreases, across recoveries too.
        if replica.committer() > replica.vote() {
            return Err(format!(
                "I2: node {node} has committer {:?} above vote {:?}",
                replica.committer(),
                replica.vote()
            ));
        }
        let max = self.max_committer.entry(node).or_default();
        if replica.committer() < *max {
            return Err(format!(
                "I2: node {node} committer fell from {max:?} to {:?}",
                replica.committer()
            ));
        }
        *max = replica.committer();
        // The vote never decreases.
        let max = self.max_vote.entry(node).or_default();
        if max.0 == incarnation && replica.vote() < max.1 {
            return Err(format!(
                "vote fell: node {node} from {:?} to {:?}",
                max.1,
                replica.vote()
            ));
        }
        *max = (incarnation, replica.vote());
        if let Some((c, own)) = replica.own_acked() {
            if !own.is_empty() {
                let own = own.clone();
                self.record_acks(replica, c, &own)?;
            }
        }
        self.check_i3(replica, incarnation)
    }

    /// I3: a replica whose committer is `c` holds every record of `c`'s base
    /// and nothing outside `c`'s log.
    fn check_i3<C: Conflicts>(
        &mut self,
        replica: &Replica<C>,
        incarnation: u64,
    ) -> Result<(), Violation> {
        let c = replica.committer();
        if c == LeaderId::ZERO {
            return Ok(());
        }
        // Between base frames the log only grows: check only what is new.
        let epoch = (incarnation, replica.log_epoch());
        let checked = match self.i3_checked.get(&replica.id()) {
            Some((inc, ep, checked)) if (*inc, *ep) == epoch => {
                if checked == replica.accepted() {
                    return Ok(());
                }
                Some(checked.clone())
            }
            _ => None,
        };
        let Some(base) = self.bases.get(&c) else {
            return Err(format!(
                "node {} has committer {c:?}, which never wrote a merge frame",
                replica.id()
            ));
        };
        let log = replica.log();
        let purged = replica.purged();
        if checked.is_none() {
            for (lsn, record) in base {
                if log.get(lsn) != Some(record) && !purged.contains(*lsn) {
                    return Err(format!(
                        "I3: node {} (committer {c:?}) lacks base LSN {lsn}",
                        replica.id()
                    ));
                }
            }
        }
        let fresh = match &checked {
            Some(done) => replica.accepted().difference(done),
            None => replica.accepted().clone(),
        };
        for lsn in fresh.iter() {
            let Some(record) = log.get(&lsn) else {
                if purged.contains(lsn) {
                    check_purged(&self.chosen, replica.id(), lsn)?;
                    continue;
                }
                return Err(format!(
                    "node {} accepts LSN {lsn} without holding it",
                    replica.id()
                ));
            };
            let in_base = base.get(&lsn) == Some(record);
            let own = record.author == c && !base.contains_key(&lsn);
            if !in_base && !own {
                return Err(format!(
                    "I3: node {} (committer {c:?}) holds {:?}'s record at LSN {lsn}, outside c's log",
                    replica.id(),
                    record.author
                ));
            }
        }
        self.i3_checked
            .insert(replica.id(), (epoch.0, epoch.1, replica.accepted().clone()));
        Ok(())
    }

    /// A client was told its proposal of `cmd` landed at `lsn` and was
    /// applied, at time `now`: that must be what was chosen there.
    pub fn on_reply(&mut self, lsn: Lsn, cmd: &[u8], now: Nanos) -> Result<(), Violation> {
        let Some((record, _)) = self.chosen.get(&lsn) else {
            return Err(format!("a client was answered for LSN {lsn}, never chosen"));
        };
        if record.cmd != cmd {
            return Err(format!(
                "lost acknowledged write: a client was told {:?} landed at LSN {lsn}, but {:?} was chosen there",
                super::kv::KvOp::decode(cmd),
                super::kv::KvOp::decode(&record.cmd)
            ));
        }
        let class = KvConflicts.classify(&record.cmd);
        if !class.read_only {
            for key in class.keys {
                self.acked_writes.entry(key).or_default().push((now, lsn));
            }
        }
        Ok(())
    }

    /// `node` served a read of `cmd`, invoked at `invoked`, from the state
    /// of `applied`: it must see every write to its keys acknowledged
    /// before the read was invoked (no stale read).
    pub fn on_read(
        &self,
        node: NodeId,
        cmd: &[u8],
        invoked: Nanos,
        applied: &TailBitmap,
    ) -> Result<(), Violation> {
        for key in KvConflicts.classify(cmd).keys {
            let acked = self
                .acked_writes
                .get(&key)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for &(when, lsn) in acked {
                if when < invoked && !applied.contains(lsn) {
                    return Err(format!(
                        "stale read: node {node} served a read of key {key} invoked at t={:.3}s without LSN {lsn}, acknowledged at t={:.3}s",
                        invoked as f64 / 1e9,
                        when as f64 / 1e9
                    ));
                }
            }
        }
        Ok(())
    }

    /// A read of `cmd` handed out at `applied` returned `result`: it must be
    /// what that state holds (one apply is atomic with respect to a read).
    pub fn on_read_result(
        &self,
        node: NodeId,
        cmd: &[u8],
        result: &[u8],
        applied: &TailBitmap,
    ) -> Result<(), Violation> {
        let expected = self.serial_state(applied)?.apply(cmd);
        if expected != result {
            return Err(format!(
                "torn read: node {node} served {:?} as {result:?}; the state it was handed out at holds {expected:?}",
                super::kv::KvOp::decode(cmd)
            ));
        }
        Ok(())
    }

    /// A replica is about to apply `record`: it must be the chosen one.
    pub fn on_apply(&self, node: NodeId, record: &Record) -> Result<(), Violation> {
        match self.chosen.get(&record.lsn) {
            Some((chosen, _)) if chosen == record => Ok(()),
            Some((chosen, _)) => Err(format!(
                "node {node} applies a record at LSN {} (by {:?}) other than the chosen one (by {:?})",
                record.lsn, record.author, chosen.author
            )),
            None => Err(format!(
                "node {node} applies LSN {}, which was never chosen",
                record.lsn
            )),
        }
    }

    /// The state after applying `lsns` serially in LSN order.
    pub fn serial_state(&self, lsns: &TailBitmap) -> Result<KvState, Violation> {
        let mut state = KvState::default();
        for lsn in lsns.iter() {
            let Some((record, _)) = self.chosen.get(&lsn) else {
                return Err(format!("LSN {lsn} applied but never chosen"));
            };
            state.apply(&record.cmd);
        }
        Ok(state)
    }

    /// For chosen interfering records `i < j`, `i` is in the transitive
    /// dependency closure of `j` (DESIGN.md §3.4).
    pub fn check_dependency_closure(&self) -> Result<(), Violation> {
        let classify = |r: &Record| {
            if r.cmd.is_empty() {
                Default::default()
            } else {
                KvConflicts.classify(&r.cmd)
            }
        };
        let closures = self.closures();
        // Per key, walking up: the last write must be in the closure, and for
        // a write every read since it too; by induction that covers every
        // interfering pair.
        let mut last_write: BTreeMap<u64, Lsn> = BTreeMap::new();
        let mut reads_since: BTreeMap<u64, Vec<Lsn>> = BTreeMap::new();
        let mut last_barrier: Option<Lsn> = None;
        for (&j, (record, _)) in &self.chosen {
            let class = classify(record);
            // Undecidable while a dependency is not chosen yet: such a record
            // is only tracked (every applied record's closure is known).
            let closure = closures.get(&j);
            let holds = |i: Lsn| -> Result<(), Violation> {
                match closure {
                    Some(c) if !c.contains(i) => Err(format!(
                        "dependency closure: LSN {i} interferes with {j} but is not in its closure"
                    )),
                    _ => Ok(()),
                }
            };
            if let Some(b) = last_barrier {
                holds(b)?;
            }
            if class.barrier {
                if closure.is_some_and(|c| c != &TailBitmap::prefix(j)) {
                    return Err(format!(
                        "dependency closure: barrier {j} does not cover every earlier LSN"
                    ));
                }
                last_barrier = Some(j);
            }
            for key in &class.keys {
                if let Some(&w) = last_write.get(key) {
                    holds(w)?;
                }
                let reads = reads_since.entry(*key).or_default();
                if class.read_only {
                    reads.push(j);
                } else {
                    for &r in reads.iter() {
                        holds(r)?;
                    }
                    reads.clear();
                    last_write.insert(*key, j);
                }
            }
        }
        Ok(())
    }

    /// The transitive dependency closure of every chosen record whose
    /// closure is known: every dependency above its deps' prefix is chosen,
    /// with a known closure. (Commit is out of order: a chosen record may
    /// depend on one not chosen yet, whose content, and so whose deps, may
    /// still become a no-op's.) A prefix needs no walk: its records' deps lie
    /// below them.
    pub fn closures(&self) -> BTreeMap<Lsn, TailBitmap> {
        let mut closures: BTreeMap<Lsn, TailBitmap> = BTreeMap::new();
        'records: for (&lsn, (record, _)) in &self.chosen {
            let mut closure = record.deps.clone();
            for dep in record.deps.iter_tail() {
                match closures.get(&dep) {
                    Some(c) => closure.union_with(c),
                    None => continue 'records,
                }
            }
            closures.insert(lsn, closure);
        }
        closures
    }

    /// What applying each chosen record returns in a serial apply of all
    /// chosen records in LSN order (equal to applying just its closure, once
    /// the closure check holds).
    pub fn serial_results(&self) -> BTreeMap<Lsn, Vec<u8>> {
        let mut state = KvState::default();
        self.chosen
            .iter()
            .map(|(&lsn, (record, _))| (lsn, state.apply(&record.cmd)))
            .collect()
    }
}

/// A replica holds `lsn` in its snapshot alone: only a chosen LSN may be.
fn check_purged(
    chosen: &BTreeMap<Lsn, (Record, LeaderId)>,
    node: crate::ids::NodeId,
    lsn: Lsn,
) -> Result<(), Violation> {
    if chosen.contains_key(&lsn) {
        Ok(())
    } else {
        Err(format!(
            "node {node} purged LSN {lsn}, which was never chosen"
        ))
    }
}
