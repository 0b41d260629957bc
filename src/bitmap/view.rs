//! A borrowed TailBitmap, and how it reads as a sequence of word runs.

use super::{low_mask, BitmapError, TailBitmap, TAIL_WORDS_MAX, WORD_BITS, WORD_LIMIT};
use crate::ids::Lsn;

/// A TailBitmap by reference: an owned one or an archived one read in place.
#[derive(Clone, Copy)]
pub struct BitmapView<'a> {
    offset: u64,
    start: u64,
    words: &'a [u64],
    /// The bits below `offset` in the word holding `offset`, when that word is
    /// not among `words` (so a run can borrow it as a one-word slice).
    prefix_word: [u64; 1],
}

/// What a bitmap holds over a run of words: all zeros, all ones, or words.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Run<'a> {
    Fill(u64),
    Words(&'a [u64]),
}

impl<'a> BitmapView<'a> {
    #[inline]
    pub(crate) fn new(offset: u64, start: u64, words: &'a [u64]) -> Self {
        BitmapView {
            offset,
            start,
            words,
            prefix_word: [low_mask(offset % WORD_BITS)],
        }
    }

    pub fn first_unset(&self) -> Lsn {
        self.offset
    }

    fn prefix_word_index(&self) -> u64 {
        self.offset / WORD_BITS
    }

    fn end_word(&self) -> u64 {
        self.start + self.words.len() as u64
    }

    /// True if the word holding `offset` is `words[0]`.
    fn prefix_word_in_words(&self) -> bool {
        !self.words.is_empty() && self.start == self.prefix_word_index()
    }

    /// The word at index `word`.
    #[inline]
    pub(crate) fn word(&self, word: u64) -> u64 {
        if word < self.prefix_word_index() {
            !0
        } else if word >= self.start && word < self.end_word() {
            self.words[(word - self.start) as usize]
        } else if word == self.prefix_word_index() {
            self.prefix_word[0]
        } else {
            0
        }
    }

    pub fn contains(&self, lsn: Lsn) -> bool {
        lsn < self.offset || (self.word(lsn / WORD_BITS) >> (lsn % WORD_BITS)) & 1 == 1
    }

    pub fn count(&self) -> u64 {
        let ones: u64 = self.words.iter().map(|w| w.count_ones() as u64).sum();
        let counted_twice = if self.prefix_word_in_words() {
            self.offset % WORD_BITS
        } else {
            0
        };
        self.offset + ones - counted_twice
    }

    pub fn max(&self) -> Option<Lsn> {
        match self.words.last() {
            Some(&last) => {
                let word = self.end_word() - 1;
                Some(word * WORD_BITS + (WORD_BITS - 1 - last.leading_zeros() as u64))
            }
            None => self.offset.checked_sub(1),
        }
    }

    pub fn iter(&self) -> Iter<'a> {
        Iter {
            prefix: 0..self.offset,
            view: *self,
            next_tail: self.offset,
        }
    }

    pub fn iter_tail(&self) -> Iter<'a> {
        Iter {
            prefix: 0..0,
            view: *self,
            next_tail: self.offset,
        }
    }

    pub fn to_owned(&self) -> TailBitmap {
        TailBitmap::from_parts(self.offset, self.start, self.words.to_vec())
    }

    /// The word indices where what this bitmap holds changes kind, ascending:
    /// the prefix ends, the word holding `offset`, the tail words start and end.
    pub(crate) fn boundary_array(&self) -> [u64; 4] {
        let pw = self.prefix_word_index();
        [pw, pw + 1, self.start, self.end_word()]
    }

    /// What the bitmap holds over words `[from, to)`, a range on which it does
    /// not change kind (no boundary lies strictly inside it).
    #[inline]
    pub(crate) fn run(&self, from: u64, to: u64) -> Run<'_> {
        debug_assert!(from < to && to <= WORD_LIMIT);
        let pw = self.prefix_word_index();
        if to <= pw {
            Run::Fill(!0)
        } else if from >= self.start && to <= self.end_word() {
            let lo = (from - self.start) as usize;
            Run::Words(&self.words[lo..lo + (to - from) as usize])
        } else if from == pw {
            debug_assert_eq!(to, pw + 1);
            Run::Words(&self.prefix_word)
        } else {
            Run::Fill(0)
        }
    }

    /// Checks the canonical form (see [`TailBitmap`]) and the size limits of
    /// bitmaps read from outside.
    pub fn check_canonical(&self) -> Result<(), BitmapError> {
        use BitmapError::NotCanonical;
        if self.words.len() > TAIL_WORDS_MAX {
            return Err(BitmapError::TailTooLong {
                words: self.words.len(),
            });
        }
        let pw = self.prefix_word_index();
        let Some(&last) = self.words.last() else {
            return if self.start == pw {
                Ok(())
            } else {
                Err(NotCanonical("empty tail must start at the prefix word"))
            };
        };
        if self.start < pw {
            return Err(NotCanonical("tail starts inside the prefix"));
        }
        if self.start >= WORD_LIMIT || WORD_LIMIT - self.start < self.words.len() as u64 {
            return Err(NotCanonical("tail reaches past the last LSN"));
        }
        if self.end_word() == WORD_LIMIT && last >> 63 != 0 {
            return Err(NotCanonical("LSN u64::MAX is set"));
        }
        if last == 0 {
            return Err(NotCanonical("trailing zero word"));
        }
        let first = self.words[0];
        if self.start == pw {
            let below = low_mask(self.offset % WORD_BITS);
            if first & below != below {
                return Err(NotCanonical("bits below the offset are not set"));
            }
            if (first >> (self.offset % WORD_BITS)) & 1 != 0 {
                return Err(NotCanonical("offset is not the first unset LSN"));
            }
            if first >> (self.offset % WORD_BITS) == 0 {
                return Err(NotCanonical("first word holds nothing past the offset"));
            }
        } else if first == 0 {
            return Err(NotCanonical("leading zero word"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for BitmapView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[0,{})", self.offset)?;
        let mut tail = self.iter_tail().peekable();
        if tail.peek().is_some() {
            write!(f, "+{{")?;
            for (i, lsn) in tail.take(32).enumerate() {
                if i > 0 {
                    write!(f, ",")?;
                }
                write!(f, "{lsn}")?;
            }
            if self.count() - self.offset > 32 {
                write!(f, ",…")?;
            }
            write!(f, "}}")?;
        }
        Ok(())
    }
}

/// Iterator over the LSNs of a bitmap, ascending.
pub struct Iter<'a> {
    prefix: std::ops::Range<u64>,
    view: BitmapView<'a>,
    /// The next LSN at or above `offset` to look at.
    next_tail: u64,
}

impl Iterator for Iter<'_> {
    type Item = Lsn;

    fn next(&mut self) -> Option<Lsn> {
        if let Some(lsn) = self.prefix.next() {
            return Some(lsn);
        }
        let view = &self.view;
        let end_word = view.end_word();
        loop {
            let word_index = self.next_tail / WORD_BITS;
            if view.words.is_empty() || word_index >= end_word {
                return None;
            }
            let word_index = word_index.max(view.start);
            let skip = if word_index * WORD_BITS >= self.next_tail {
                0
            } else {
                self.next_tail % WORD_BITS
            };
            let bits = (view.words[(word_index - view.start) as usize] >> skip) << skip;
            if bits != 0 {
                let lsn = word_index * WORD_BITS + bits.trailing_zeros() as u64;
                // Cannot overflow: LSN u64::MAX is never set.
                self.next_tail = lsn + 1;
                return Some(lsn);
            }
            match (word_index + 1).checked_mul(WORD_BITS) {
                Some(next) => self.next_tail = next,
                None => return None,
            }
        }
    }
}
