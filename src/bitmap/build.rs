//! Builds a canonical TailBitmap from a left-to-right stream of word runs, so
//! that set operations never materialize the prefix or a leading gap.

use super::{TailBitmap, WORD_BITS, WORD_LIMIT};

pub(crate) struct Builder {
    /// Index of the next word to be pushed.
    next: u64,
    /// `None` while every word pushed so far was all ones (still in the prefix).
    offset: Option<u64>,
    start: u64,
    words: Vec<u64>,
    /// Zero words after `words`, kept back until a non-zero word follows.
    pending_zeros: u64,
    scratch: Vec<u64>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            next: 0,
            offset: None,
            start: 0,
            words: Vec::new(),
            pending_zeros: 0,
            scratch: Vec::new(),
        }
    }

    /// Pushes `count` words, each `fill` (all zeros or all ones).
    pub(crate) fn fill(&mut self, fill: u64, count: u64) {
        debug_assert!(fill == 0 || fill == !0);
        if count == 0 {
            return;
        }
        if fill == 0 {
            self.zeros(count);
        } else {
            self.ones(count);
        }
    }

    fn ones(&mut self, count: u64) {
        if self.offset.is_none() {
            self.next += count;
            return;
        }
        self.flush_zeros();
        self.words
            .extend(std::iter::repeat_n(!0u64, count as usize));
        self.next += count;
    }

    fn zeros(&mut self, count: u64) {
        match self.offset {
            None => {
                self.offset = Some(self.next * WORD_BITS);
                self.start = self.next + count;
            }
            Some(_) if self.words.is_empty() => self.start += count,
            Some(_) => self.pending_zeros += count,
        }
        self.next += count;
    }

    fn flush_zeros(&mut self) {
        if self.pending_zeros > 0 {
            let zeros = self.pending_zeros as usize;
            self.words.resize(self.words.len() + zeros, 0);
            self.pending_zeros = 0;
        }
    }

    /// Pushes words as they are.
    pub(crate) fn words(&mut self, mut words: &[u64]) {
        while self.offset.is_none() {
            let Some((&word, rest)) = words.split_first() else {
                return;
            };
            words = rest;
            if word == !0 {
                self.next += 1;
                continue;
            }
            let offset = self.next * WORD_BITS + word.trailing_ones() as u64;
            self.offset = Some(offset);
            if word >> (offset % WORD_BITS) != 0 {
                self.start = self.next;
                self.words.push(word);
            } else {
                self.start = self.next + 1;
            }
            self.next += 1;
        }
        if self.words.is_empty() {
            let zeros = words.iter().take_while(|&&w| w == 0).count();
            self.start += zeros as u64;
            self.next += zeros as u64;
            words = &words[zeros..];
        }
        if words.is_empty() {
            return;
        }
        self.flush_zeros();
        self.words.extend_from_slice(words);
        self.next += words.len() as u64;
    }

    /// Pushes `count` words that `compute` writes into the slice it is given.
    pub(crate) fn computed(&mut self, count: usize, compute: impl FnOnce(&mut [u64])) {
        if self.offset.is_some() && !self.words.is_empty() {
            self.flush_zeros();
            let len = self.words.len();
            self.words.resize(len + count, 0);
            compute(&mut self.words[len..]);
            self.next += count as u64;
        } else {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.resize(count, 0);
            compute(&mut scratch);
            self.words(&scratch);
            self.scratch = scratch;
        }
    }

    pub(crate) fn finish(mut self) -> TailBitmap {
        let offset = match self.offset {
            Some(offset) => offset,
            None => {
                assert!(self.next < WORD_LIMIT, "LSN u64::MAX can never be set");
                self.next * WORD_BITS
            }
        };
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        if self.words.is_empty() {
            self.start = offset / WORD_BITS;
        }
        TailBitmap::from_parts(offset, self.start, self.words)
    }
}
