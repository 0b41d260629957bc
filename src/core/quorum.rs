//! Membership configs as lists of voter sets, and the quorum rules over them
//! (DESIGN.md §1.5, §3.6). No code may assume a single voter set.

use crate::bitmap::TailBitmap;
use crate::ids::NodeId;
use rkyv::{Archive, Deserialize, Serialize};
use thiserror::Error;

/// The most voters one config may name (counters of the commit rule).
pub const CONFIG_VOTERS_MAX: usize = 64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("a config needs at least one voter set")]
    NoVoterSet,
    #[error("voter set {0} is empty")]
    EmptyVoterSet(usize),
    #[error("node {node} appears twice in voter set {set}")]
    DuplicateVoter { set: usize, node: NodeId },
    #[error("node {0} is both a voter and a learner")]
    LearnerVotes(NodeId),
    #[error("a config may name at most {CONFIG_VOTERS_MAX} voters")]
    TooManyVoters,
}

/// A membership config: voter sets (a quorum is a majority of *every* set)
/// and learners (receive the log, never vote).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    voter_sets: Vec<Vec<NodeId>>,
    learners: Vec<NodeId>,
}

impl Config {
    pub fn new(voter_sets: Vec<Vec<NodeId>>, learners: Vec<NodeId>) -> Result<Config, ConfigError> {
        if voter_sets.is_empty() {
            return Err(ConfigError::NoVoterSet);
        }
        let mut voter_sets = voter_sets;
        for (i, set) in voter_sets.iter_mut().enumerate() {
            if set.is_empty() {
                return Err(ConfigError::EmptyVoterSet(i));
            }
            set.sort_unstable();
            if let Some(pair) = set.windows(2).find(|p| p[0] == p[1]) {
                return Err(ConfigError::DuplicateVoter {
                    set: i,
                    node: pair[0],
                });
            }
        }
        let config = Config {
            voter_sets,
            learners,
        };
        if config.voters().len() > CONFIG_VOTERS_MAX {
            return Err(ConfigError::TooManyVoters);
        }
        if let Some(&node) = config.learners.iter().find(|&&l| config.is_voter(l)) {
            return Err(ConfigError::LearnerVotes(node));
        }
        Ok(config)
    }

    /// One voter set, no learners.
    pub fn uniform(voters: impl IntoIterator<Item = NodeId>) -> Result<Config, ConfigError> {
        Config::new(vec![voters.into_iter().collect()], Vec::new())
    }

    pub fn voter_sets(&self) -> &[Vec<NodeId>] {
        &self.voter_sets
    }

    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// Every voter of every set, ascending, once each.
    pub fn voters(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.voter_sets.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Everyone who receives the log: voters and learners.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all = self.voters();
        all.extend_from_slice(&self.learners);
        all.sort_unstable();
        all.dedup();
        all
    }

    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voter_sets.iter().any(|set| set.contains(&node))
    }

    /// True if the nodes for which `holds` is true form a majority of every set.
    pub fn is_quorum(&self, holds: impl Fn(NodeId) -> bool) -> bool {
        self.voter_sets
            .iter()
            .all(|set| set.iter().filter(|&&n| holds(n)).count() * 2 > set.len())
    }

    /// A change from `self` to `next` in one step is allowed iff they share a
    /// voter set (DESIGN.md §1.5).
    pub fn can_change_to(&self, next: &Config) -> bool {
        self.voter_sets
            .iter()
            .any(|set| next.voter_sets.iter().any(|other| other == set))
    }

    /// The LSNs a quorum holds: for every set, the LSNs in the `acked` sets
    /// of a majority of its members, intersected across sets. Members with no
    /// `acked` set count as holding nothing.
    pub fn chosen<'a>(&self, acked: impl Fn(NodeId) -> Option<&'a TailBitmap>) -> TailBitmap {
        let empty = TailBitmap::new();
        let mut result: Option<TailBitmap> = None;
        for set in &self.voter_sets {
            let inputs: Vec<&TailBitmap> =
                set.iter().map(|&n| acked(n).unwrap_or(&empty)).collect();
            let majority = TailBitmap::at_least(set.len() / 2 + 1, &inputs);
            result = Some(match result {
                None => majority,
                Some(r) => r.intersection(&majority),
            });
        }
        result.expect("a config has at least one voter set")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority_of_every_set() {
        let joint = Config::new(vec![vec![1, 2, 3], vec![3, 4, 5]], vec![]).unwrap();
        assert!(joint.is_quorum(|n| [1, 3, 4].contains(&n)));
        assert!(!joint.is_quorum(|n| [1, 2, 4].contains(&n)));
        assert!(!joint.is_quorum(|n| [1, 2].contains(&n)));
        assert_eq!(joint.voters(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn change_needs_a_shared_set() {
        let c1 = Config::uniform([1, 2, 3]).unwrap();
        let c12 = Config::new(vec![vec![1, 2, 3], vec![3, 4, 5]], vec![]).unwrap();
        let c2 = Config::uniform([5, 4, 3]).unwrap();
        assert!(c1.can_change_to(&c12));
        assert!(c12.can_change_to(&c2));
        assert!(!c1.can_change_to(&c2));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert_eq!(Config::new(vec![], vec![]), Err(ConfigError::NoVoterSet));
        assert_eq!(
            Config::new(vec![vec![1], vec![]], vec![]),
            Err(ConfigError::EmptyVoterSet(1))
        );
        assert_eq!(
            Config::new(vec![vec![1, 1]], vec![]),
            Err(ConfigError::DuplicateVoter { set: 0, node: 1 })
        );
        assert_eq!(
            Config::new(vec![vec![1, 2]], vec![2]),
            Err(ConfigError::LearnerVotes(2))
        );
    }

    #[test]
    fn chosen_intersects_set_majorities() {
        let joint = Config::new(vec![vec![1, 2, 3], vec![3, 4, 5]], vec![]).unwrap();
        let acked: Vec<TailBitmap> = vec![
            [10, 11].into_iter().collect(),     // 1
            [10, 12].into_iter().collect(),     // 2
            [11, 12, 13].into_iter().collect(), // 3
            [10, 13].into_iter().collect(),     // 4
            TailBitmap::new(),                  // 5
        ];
        let chosen = joint.chosen(|n| acked.get(n as usize - 1));
        // Set {1,2,3}: 10, 11, 12. Set {3,4,5}: 13 only.
        assert_eq!(chosen, TailBitmap::new());
        let chosen = Config::uniform([1, 2, 3])
            .unwrap()
            .chosen(|n| acked.get(n as usize - 1));
        assert_eq!(chosen, [10, 11, 12].into_iter().collect());
    }
}
