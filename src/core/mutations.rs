//! Test-only switches that each remove one rule, so the simulator can show
//! the rule is needed (SCENARIOS.md). All off in production.

/// Which rules are removed. `Default` is the protocol as designed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// N8a: count vote replies addressed to an earlier campaign.
    pub accept_stale_replies: bool,
    /// H11: fill holes with no-ops that depend on nothing.
    pub noop_empty_deps: bool,
    /// H7a: a repeated base forward drops again what the first one kept.
    pub redo_base_drop: bool,
    /// H6: resume, after a restart, the leadership held before it.
    pub resume_leadership: bool,
    /// H9b: a write does not depend on the reads of its keys since the last write.
    pub deps_ignore_reads: bool,
    /// L2: never resend an LSN whose forward was lost.
    pub no_retransmit: bool,
    /// H1: seed a new leader's `acked[f]` from the vote replies.
    pub seed_acked_from_votes: bool,
    /// S2: report `committed` before it is durable, and install a base
    /// forward whatever `committed` it assumed.
    pub volatile_committed: bool,
    /// Classic Raft's one vote per term instead of greater-or-equal voting.
    /// Not a mutant: the baseline the "less conflict" measurement compares to.
    pub classic_vote: bool,
}

/// Every mutant: (scenario id, name, the rule it removes).
pub const MUTANTS: &[(&str, &str, &str)] = &[
    (
        "N8a",
        "accept-stale-replies",
        "a reply names the LeaderId it answers; stale ones are ignored",
    ),
    (
        "H11",
        "noop-empty-deps",
        "a no-op's deps are every earlier LSN",
    ),
    (
        "H7a",
        "redo-base-drop",
        "a base forward that arrives again drops nothing",
    ),
    (
        "H6",
        "resume-leadership",
        "a replica never resumes a LeaderId it held before a restart",
    ),
    (
        "H9b",
        "deps-ignore-reads",
        "a write depends on every read of its keys since the last write",
    ),
    (
        "L2",
        "no-retransmit",
        "an LSN is resent after the retransmit timeout or a later echo",
    ),
    (
        "H1",
        "seed-acked-from-votes",
        "acked sets are never seeded from vote replies",
    ),
    (
        "S2",
        "volatile-committed",
        "committed is reported only once durable; a base needs the assumed committed",
    ),
];

impl Mutations {
    /// The `committed` a replica reports: durable, unless the S2 mutant.
    pub(crate) fn reported_committed<'a>(
        &self,
        durable: &'a crate::TailBitmap,
        in_memory: &'a crate::TailBitmap,
    ) -> &'a crate::TailBitmap {
        if self.volatile_committed {
            in_memory
        } else {
            durable
        }
    }

    /// The mutant with this scenario id or name.
    pub fn by_name(name: &str) -> Option<Mutations> {
        let (id, _, _) = MUTANTS
            .iter()
            .find(|(id, n, _)| id.eq_ignore_ascii_case(name) || *n == name)?;
        let mut m = Mutations::default();
        match *id {
            "N8a" => m.accept_stale_replies = true,
            "H11" => m.noop_empty_deps = true,
            "H7a" => m.redo_base_drop = true,
            "H6" => m.resume_leadership = true,
            "H9b" => m.deps_ignore_reads = true,
            "L2" => m.no_retransmit = true,
            "H1" => m.seed_acked_from_votes = true,
            "S2" => m.volatile_committed = true,
            _ => return None,
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_mutant_has_a_switch() {
        for (id, name, _) in MUTANTS {
            let by_id = Mutations::by_name(id).expect("listed id resolves");
            assert_ne!(by_id, Mutations::default(), "{id} switches something");
            assert_eq!(Mutations::by_name(name), Some(by_id));
        }
    }
}
