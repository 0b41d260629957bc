//! Union, intersection, difference and subset: one sweep over the word runs
//! of both inputs. Runs of fill words cost O(1) however long they are; runs of
//! words are plain slice loops that the compiler vectorizes.

use super::build::Builder;
use super::view::{BitmapView, Run};
use super::{TailBitmap, WORD_LIMIT};

/// The word indices where any input changes kind, ascending, ending at `WORD_LIMIT`.
pub(crate) fn sweep_points(inputs: &[BitmapView<'_>]) -> Vec<u64> {
    let mut points = Vec::with_capacity(inputs.len() * 4 + 2);
    points.push(0);
    for input in inputs {
        points.extend_from_slice(&input.boundary_array());
    }
    points.push(WORD_LIMIT);
    points.sort_unstable();
    points.dedup();
    points
}

/// The sweep points of two inputs, without allocating.
fn pair_points(a: BitmapView<'_>, b: BitmapView<'_>) -> ([u64; 10], usize) {
    let mut points = [0u64; 10];
    let (pa, pb) = (a.boundary_array(), b.boundary_array());
    points[1..5].copy_from_slice(&pa);
    points[5..9].copy_from_slice(&pb);
    points[9] = WORD_LIMIT;
    points.sort_unstable();
    let mut len = 1;
    for i in 1..points.len() {
        if points[i] != points[len - 1] {
            points[len] = points[i];
            len += 1;
        }
    }
    (points, len)
}

/// `op` applied word by word to `a` and `b`. `op` must map fill words to fill
/// words (`0`/`!0` to `0`/`!0`), as and, or and and-not do.
#[inline(always)]
fn combine(
    a: BitmapView<'_>,
    b: BitmapView<'_>,
    op: impl Fn(u64, u64) -> u64 + Copy,
) -> TailBitmap {
    let mut out = Builder::new();
    let (points, len) = pair_points(a, b);
    for span in points[..len].windows(2) {
        let (from, to) = (span[0], span[1]);
        let count = (to - from) as usize;
        match (a.run(from, to), b.run(from, to)) {
            (Run::Fill(x), Run::Fill(y)) => out.fill(op(x, y), to - from),
            (Run::Fill(x), Run::Words(ys)) => out.computed(count, |dst| {
                for (d, &y) in dst.iter_mut().zip(ys) {
                    *d = op(x, y);
                }
            }),
            (Run::Words(xs), Run::Fill(y)) => out.computed(count, |dst| {
                for (d, &x) in dst.iter_mut().zip(xs) {
                    *d = op(x, y);
                }
            }),
            (Run::Words(xs), Run::Words(ys)) => out.computed(count, |dst| {
                for ((d, &x), &y) in dst.iter_mut().zip(xs).zip(ys) {
                    *d = op(x, y);
                }
            }),
        }
    }
    out.finish()
}

/// True if `op(a, b)` is non-zero at some word.
#[inline(always)]
fn any(a: BitmapView<'_>, b: BitmapView<'_>, op: impl Fn(u64, u64) -> u64 + Copy) -> bool {
    let (points, len) = pair_points(a, b);
    for span in points[..len].windows(2) {
        let (from, to) = (span[0], span[1]);
        let hit = match (a.run(from, to), b.run(from, to)) {
            (Run::Fill(x), Run::Fill(y)) => op(x, y),
            (Run::Fill(x), Run::Words(ys)) => ys.iter().fold(0, |acc, &y| acc | op(x, y)),
            (Run::Words(xs), Run::Fill(y)) => xs.iter().fold(0, |acc, &x| acc | op(x, y)),
            (Run::Words(xs), Run::Words(ys)) => {
                xs.iter().zip(ys).fold(0, |acc, (&x, &y)| acc | op(x, y))
            }
        };
        if hit != 0 {
            return true;
        }
    }
    false
}

impl<'a> BitmapView<'a> {
    pub fn union(self, other: BitmapView<'_>) -> TailBitmap {
        combine(self, other, |x, y| x | y)
    }

    pub fn intersection(self, other: BitmapView<'_>) -> TailBitmap {
        combine(self, other, |x, y| x & y)
    }

    /// The LSNs of `self` not in `other`.
    pub fn difference(self, other: BitmapView<'_>) -> TailBitmap {
        combine(self, other, |x, y| x & !y)
    }

    pub fn is_subset(self, other: BitmapView<'_>) -> bool {
        // Most calls ask about sets near a shared tail: a prefix that reaches
        // past the other's answers at once.
        if self.first_unset() > other.first_unset() {
            return false;
        }
        !any(self, other, |x, y| x & !y)
    }
}

impl TailBitmap {
    pub fn union(&self, other: &TailBitmap) -> TailBitmap {
        self.view().union(other.view())
    }

    pub fn intersection(&self, other: &TailBitmap) -> TailBitmap {
        self.view().intersection(other.view())
    }

    /// The LSNs of `self` not in `other`.
    pub fn difference(&self, other: &TailBitmap) -> TailBitmap {
        self.view().difference(other.view())
    }

    /// True if every LSN of `self` is in `other`.
    pub fn is_subset(&self, other: &TailBitmap) -> bool {
        self.view().is_subset(other.view())
    }

    /// Adds every LSN of `other`.
    pub fn union_with(&mut self, other: &TailBitmap) {
        if !other.is_subset(self) {
            *self = self.union(other);
        }
    }
}
