//! `TailBitmap`: a set of LSNs stored as "every LSN below `offset`" plus a
//! short window of 64-bit words (DESIGN.md §2).
//!
//! Almost every set in the protocol — `accepted`, `committed`, `applied`,
//! `deps`, the acked sets a leader counts — is a long all-ones prefix plus a
//! ragged tail, so the prefix is compressed into `offset` and the tail lives in
//! a few words. The words are aligned to absolute multiples of 64 so that two
//! bitmaps combine word by word without shifting, and the loops over them are
//! plain slice loops the compiler turns into SIMD.
//!
//! Every bitmap is kept *canonical* (see [`TailBitmap::check_canonical`]), so
//! equal sets have equal representations and `==` is structural.

mod archived;
mod build;
mod extent;
mod kofn;
mod ops;
mod view;

pub use extent::{Extent, LSN_REACH};
pub use view::BitmapView;

use crate::ids::{is_valid_lsn, Lsn, LSN_LIMIT};
use rkyv::{Archive, Deserialize, Serialize};
use thiserror::Error;

/// Bits per word.
pub(crate) const WORD_BITS: u64 = 64;
/// Word indices are `< WORD_LIMIT`: the word holding LSN `u64::MAX - 1` is the last.
pub(crate) const WORD_LIMIT: u64 = 1 << 58;
/// The most tail words a bitmap read from a socket, a WAL or a snapshot may
/// carry (8 MiB, 64 Mi LSNs). Bitmaps built in memory are not limited: their
/// size follows from the sets the caller combines.
pub const TAIL_WORDS_MAX: usize = 1 << 20;
/// The most inputs [`TailBitmap::at_least`] takes (counters are 8 bit planes).
pub const AT_LEAST_INPUTS_MAX: usize = 255;

/// Why a bitmap operation or a decoded bitmap was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BitmapError {
    #[error("LSN {0} is out of range (LSNs are below {LSN_LIMIT})")]
    LsnOutOfRange(u64),
    #[error("bitmap tail of {words} words exceeds the limit of {TAIL_WORDS_MAX}")]
    TailTooLong { words: usize },
    #[error("bitmap is not canonical: {0}")]
    NotCanonical(&'static str),
}

/// A set of LSNs: all of `[0, offset)`, plus the set bits of `words`, where
/// `words[i]` holds LSNs `[(start + i) * 64, (start + i + 1) * 64)`.
///
/// Canonical form (kept by every operation):
/// - `offset` is the first LSN not in the set;
/// - if `start == offset / 64` and `words` is not empty, `words[0]` has every
///   bit below `offset % 64` set and at least one bit above it;
/// - if `start > offset / 64`, `words[0] != 0` (bits between are absent);
/// - the last word is not zero; an empty `words` has `start == offset / 64`.
#[derive(Archive, Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Default)]
#[rkyv(bytecheck(verify))]
pub struct TailBitmap {
    offset: u64,
    start: u64,
    words: Vec<u64>,
}

/// `(1 << n) - 1` for `n < 64`.
#[inline(always)]
pub(crate) const fn low_mask(n: u64) -> u64 {
    debug_assert!(n < 64);
    (1u64 << n) - 1
}

impl TailBitmap {
    /// The empty set.
    pub const fn new() -> Self {
        TailBitmap {
            offset: 0,
            start: 0,
            words: Vec::new(),
        }
    }

    /// Every LSN below `end`: `[0, end)`.
    pub const fn prefix(end: Lsn) -> Self {
        TailBitmap {
            offset: end,
            start: end / WORD_BITS,
            words: Vec::new(),
        }
    }

    /// A borrowed view, the form every set operation works on.
    #[inline]
    pub fn view(&self) -> BitmapView<'_> {
        BitmapView::new(self.offset, self.start, &self.words)
    }

    /// The first LSN not in the set; every LSN below it is in the set.
    #[inline]
    pub fn first_unset(&self) -> Lsn {
        self.offset
    }

    /// True if no LSN is in the set.
    pub fn is_empty(&self) -> bool {
        self.offset == 0 && self.words.is_empty()
    }

    /// Words kept beyond the prefix (the memory the set costs).
    pub fn tail_words(&self) -> usize {
        self.words.len()
    }

    pub fn contains(&self, lsn: Lsn) -> bool {
        self.view().contains(lsn)
    }

    /// The number of LSNs in the set.
    pub fn count(&self) -> u64 {
        self.view().count()
    }

    /// The greatest LSN in the set.
    pub fn max(&self) -> Option<Lsn> {
        self.view().max()
    }

    /// Adds `lsn`; returns whether it was absent.
    pub fn insert(&mut self, lsn: Lsn) -> Result<bool, BitmapError> {
        if !is_valid_lsn(lsn) {
            return Err(BitmapError::LsnOutOfRange(lsn));
        }
        if self.contains(lsn) {
            return Ok(false);
        }
        let word = lsn / WORD_BITS;
        let bit = 1u64 << (lsn % WORD_BITS);
        let prefix_word = self.offset / WORD_BITS;
        let prefix_bits = low_mask(self.offset % WORD_BITS);
        if self.words.is_empty() {
            self.start = word;
            let below = if word == prefix_word { prefix_bits } else { 0 };
            self.words.push(below | bit);
        } else if word < self.start {
            // Grow at the front; `word >= prefix_word` because `lsn >= offset`.
            let grow = (self.start - word) as usize;
            self.words.splice(0..0, std::iter::repeat_n(0, grow));
            self.start = word;
            if word == prefix_word {
                self.words[0] = prefix_bits;
            }
            self.words[0] |= bit;
        } else {
            let index = (word - self.start) as usize;
            if index >= self.words.len() {
                self.words.resize(index + 1, 0);
            }
            self.words[index] |= bit;
        }
        if lsn == self.offset {
            self.compact();
        }
        debug_assert!(self.check_canonical().is_ok());
        Ok(true)
    }

    /// Adds every LSN in `[0, end)`.
    pub fn insert_prefix(&mut self, end: Lsn) {
        if end > self.offset {
            *self = self.union(&TailBitmap::prefix(end));
        }
    }

    /// Iterates the set in increasing order (the prefix first, lazily).
    pub fn iter(&self) -> view::Iter<'_> {
        self.view().iter()
    }

    /// Iterates only the LSNs at or above [`first_unset`](Self::first_unset).
    pub fn iter_tail(&self) -> view::Iter<'_> {
        self.view().iter_tail()
    }

    /// Folds leading all-ones words into `offset`, drops words that carry no
    /// LSN at or above it, and trims trailing zero words.
    fn compact(&mut self) {
        let prefix_word = self.offset / WORD_BITS;
        if !self.words.is_empty() && self.start == prefix_word {
            let full = self.words.iter().take_while(|&&w| w == !0).count();
            if full == self.words.len() {
                let end_word = self.start + full as u64;
                assert!(end_word < WORD_LIMIT, "LSN {LSN_LIMIT} can never be set");
                self.offset = end_word * WORD_BITS;
                self.words.clear();
            } else {
                let first = self.words[full];
                self.offset = (self.start + full as u64) * WORD_BITS + first.trailing_ones() as u64;
                let mut drop = full;
                if first >> (self.offset % WORD_BITS) == 0 {
                    // Only the prefix lives in that word: the tail starts later.
                    drop += 1;
                    while drop < self.words.len() && self.words[drop] == 0 {
                        drop += 1;
                    }
                }
                self.words.drain(..drop);
                self.start += drop as u64;
            }
        }
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        if self.words.is_empty() {
            self.start = self.offset / WORD_BITS;
        }
    }

    /// Checks the canonical form; every bitmap read from outside goes through it.
    pub fn check_canonical(&self) -> Result<(), BitmapError> {
        self.view().check_canonical()
    }

    pub(crate) fn from_parts(offset: u64, start: u64, words: Vec<u64>) -> Self {
        let bitmap = TailBitmap {
            offset,
            start,
            words,
        };
        debug_assert!(
            bitmap.check_canonical().is_ok(),
            "{:?}",
            bitmap.check_canonical()
        );
        bitmap
    }
}

impl std::fmt::Debug for TailBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.view(), f)
    }
}

impl FromIterator<Lsn> for TailBitmap {
    /// Builds a set from LSNs; panics on `LSN_LIMIT` (use `insert` to handle it).
    fn from_iter<I: IntoIterator<Item = Lsn>>(iter: I) -> Self {
        let mut bitmap = TailBitmap::new();
        for lsn in iter {
            bitmap.insert(lsn).expect("LSN out of range");
        }
        bitmap
    }
}

impl From<BitmapView<'_>> for TailBitmap {
    fn from(view: BitmapView<'_>) -> Self {
        view.to_owned()
    }
}
