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
];

impl Mutations {
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
            _ => return None,
        }
        Some(m)
    }
}
