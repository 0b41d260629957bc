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
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            next: 0,
            offset: None,
            start: 0,
            words: Vec::new(),
            pending_zeros: 0,
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

    /// Consumes the leading words of `words` that change no stored word:
    /// all-ones words of the prefix, the word that ends it when it holds
    /// nothing past the offset, and zero words before the first stored word.
    /// Returns how many were consumed; `start` and `offset` are set as needed.
    fn consume_leading(&mut self, words: &[u64]) -> usize {
        let mut i = 0;
        if self.offset.is_none() {
            while i < words.len() && words[i] == !0 {
                i += 1;
            }
            self.next += i as u64;
            let Some(&word) = words.get(i) else {
                return i;
            };
            let offset = self.next * WORD_BITS + word.trailing_ones() as u64;
            self.offset = Some(offset);
            if word >> (offset % WORD_BITS) != 0 {
                self.start = self.next;
                return i;
            }
            i += 1;
            self.next += 1;
            self.start = self.next;
        }
        if self.words.is_empty() {
            let zeros = words[i..].iter().take_while(|&&w| w == 0).count();
            i += zeros;
            self.next += zeros as u64;
            self.start = self.next;
        }
        i
    }

    /// Pushes `count` words that `compute` writes into the slice it is given.
    pub(crate) fn computed(&mut self, count: usize, compute: impl FnOnce(&mut [u64])) {
        if self.offset.is_some() && !self.words.is_empty() {
            self.flush_zeros();
        }
        let len = self.words.len();
        self.words.resize(len + count, 0);
        compute(&mut self.words[len..]);
        if len > 0 {
            self.next += count as u64;
            return;
        }
        // Nothing stored yet: the new words may end the prefix or lead with zeros.
        let raw = std::mem::take(&mut self.words);
        let skip = self.consume_leading(&raw);
        self.next += (raw.len() - skip) as u64;
        self.words = raw;
        self.words.drain(..skip);
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
