//! How far apart the LSNs a replica holds lie. A `TailBitmap` keeps every
//! word between its lowest stored word and its greatest LSN, so a set that
//! takes an LSN far past what it holds grows by the whole gap: one record
//! at LSN 2^60 in a forward or a WAL frame would cost an allocation of
//! 2^54 words. Inputs are checked against `LSN_REACH` before they are used.

use super::{TailBitmap, TAIL_WORDS_MAX, WORD_BITS};
use crate::ids::Lsn;

/// The most LSNs, from the lowest one a replica stores in a bitmap word to
/// the greatest it holds, that it takes: as many as one bitmap carries on
/// the wire or in a WAL frame (`TAIL_WORDS_MAX` words, 64 Mi LSNs, 8 MiB).
/// A message or WAL frame reaching further is refused as invalid; a replica
/// further behind the log than this needs a snapshot.
pub const LSN_REACH: Lsn = TAIL_WORDS_MAX as Lsn * WORD_BITS;

/// The lowest and greatest LSN among sets and single LSNs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    range: Option<(Lsn, Lsn)>,
}

impl Extent {
    pub fn lsn(&mut self, lsn: Lsn) -> &mut Self {
        self.range = Some(match self.range {
            None => (lsn, lsn),
            Some((lo, hi)) => (lo.min(lsn), hi.max(lsn)),
        });
        self
    }

    /// A set's stored words and greatest LSN (its compressed prefix costs
    /// nothing and is left out).
    pub fn set(&mut self, set: &TailBitmap) -> &mut Self {
        if let Some(max) = set.max() {
            let low = if set.words.is_empty() {
                max
            } else {
                set.start * super::WORD_BITS
            };
            self.lsn(low).lsn(max);
        }
        self
    }

    /// True while one bitmap holding the lowest and the greatest LSN fits
    /// in `TAIL_WORDS_MAX` words (so every set within them does).
    pub fn within_reach(&self) -> bool {
        self.range
            .is_none_or(|(lo, hi)| hi / WORD_BITS - lo / WORD_BITS < TAIL_WORDS_MAX as Lsn)
    }

    pub fn range(&self) -> Option<(Lsn, Lsn)> {
        self.range
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_lsn_is_out_of_reach_and_a_compressed_prefix_is_not() {
        let mut near = Extent::default();
        near.set(&TailBitmap::prefix(5 * LSN_REACH))
            .lsn(5 * LSN_REACH + 3);
        assert!(near.within_reach());
        let held: TailBitmap = [7u64, 9].into_iter().collect();
        let mut edge = Extent::default();
        edge.set(&held).lsn(LSN_REACH - 1);
        assert!(edge.within_reach(), "the last LSN one bitmap can hold");
        let mut far = held.clone();
        far.insert(LSN_REACH - 1).unwrap();
        assert!(far.check_canonical().is_ok(), "a bitmap that far is valid");
        let mut beyond = Extent::default();
        beyond.set(&held).lsn(LSN_REACH);
        assert!(!beyond.within_reach());
        assert_eq!(beyond.range(), Some((0, LSN_REACH)));
    }
}
