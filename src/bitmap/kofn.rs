//! "At least k of n": the commit rule. A bit is in the result iff it is in at
//! least `k` inputs, computed 64 LSNs per instruction with bit-sliced counters.

use super::build::Builder;
use super::ops::sweep_points;
use super::view::{BitmapView, Run};
use super::{TailBitmap, AT_LEAST_INPUTS_MAX};

/// Words counted together; the counter planes of one chunk stay in registers
/// or L1, and the fixed length lets every lane loop vectorize.
const CHUNK: usize = 8;
/// Bit planes of the per-bit counters: enough for `AT_LEAST_INPUTS_MAX`.
const PLANES: usize = 8;
const _: () = assert!(AT_LEAST_INPUTS_MAX < 1 << PLANES);

impl TailBitmap {
    /// The LSNs held by at least `k` of `inputs`.
    ///
    /// # Panics
    /// If `k` is 0 (the result would be every LSN), `k > inputs.len()`, or
    /// there are more than [`AT_LEAST_INPUTS_MAX`] inputs.
    pub fn at_least(k: usize, inputs: &[&TailBitmap]) -> TailBitmap {
        let views: Vec<BitmapView<'_>> = inputs.iter().map(|b| b.view()).collect();
        at_least_views(k, &views)
    }
}

pub fn at_least_views(k: usize, inputs: &[BitmapView<'_>]) -> TailBitmap {
    assert!(
        k >= 1 && k <= inputs.len(),
        "at_least: need 1 <= k <= n, got k={k} n={}",
        inputs.len()
    );
    assert!(
        inputs.len() <= AT_LEAST_INPUTS_MAX,
        "at_least: at most {AT_LEAST_INPUTS_MAX} inputs, got {}",
        inputs.len()
    );
    let mut out = Builder::new();
    let mut varying: Vec<&[u64]> = Vec::with_capacity(inputs.len());
    for span in sweep_points(inputs).windows(2) {
        let (from, to) = (span[0], span[1]);
        let mut ones = 0usize;
        varying.clear();
        for input in inputs {
            match input.run(from, to) {
                Run::Fill(0) => {}
                Run::Fill(_) => ones += 1,
                Run::Words(words) => varying.push(words),
            }
        }
        if ones >= k {
            out.fill(!0, to - from);
        } else if ones + varying.len() < k {
            out.fill(0, to - from);
        } else {
            let need = k - ones;
            out.computed((to - from) as usize, |dst| {
                count_at_least(need, &varying, dst)
            });
        }
    }
    out.finish()
}

/// `dst[i]` gets the bits set in at least `k` of `inputs[..][i]`.
fn count_at_least(k: usize, inputs: &[&[u64]], dst: &mut [u64]) {
    debug_assert!(k >= 1 && k <= inputs.len());
    if k == 1 {
        dst.copy_from_slice(inputs[0]);
        for input in &inputs[1..] {
            for (d, &x) in dst.iter_mut().zip(*input) {
                *d |= x;
            }
        }
        return;
    }
    if k == inputs.len() {
        dst.copy_from_slice(inputs[0]);
        for input in &inputs[1..] {
            for (d, &x) in dst.iter_mut().zip(*input) {
                *d &= x;
            }
        }
        return;
    }
    // Counter widths are a compile-time constant so the plane loops unroll
    // and the counters stay in registers.
    match usize::BITS - inputs.len().leading_zeros() {
        2 => count_chunks::<2>(k, inputs, dst),
        3 => count_chunks::<3>(k, inputs, dst),
        4 => count_chunks::<4>(k, inputs, dst),
        _ => count_chunks::<PLANES>(k, inputs, dst),
    }
}

/// Bit-sliced counting with `P` counter planes (`inputs.len() < 1 << P`).
fn count_chunks<const P: usize>(k: usize, inputs: &[&[u64]], dst: &mut [u64]) {
    debug_assert!(inputs.len() < 1 << P);
    for (chunk_index, dst) in dst.chunks_mut(CHUNK).enumerate() {
        let base = chunk_index * CHUNK;
        let len = dst.len();
        let mut counter = [[0u64; CHUNK]; P];
        for input in inputs {
            let mut carry = [0u64; CHUNK];
            carry[..len].copy_from_slice(&input[base..base + len]);
            // Ripple-carry add of one bit per lane into the counter planes.
            for plane in counter.iter_mut() {
                for (c, k) in plane.iter_mut().zip(carry.iter_mut()) {
                    let overflow = *c & *k;
                    *c ^= *k;
                    *k = overflow;
                }
            }
        }
        // counter >= k, from the most significant plane down.
        let mut greater = [0u64; CHUNK];
        let mut equal = [!0u64; CHUNK];
        for (bit, plane) in counter.iter().enumerate().rev() {
            if (k >> bit) & 1 == 1 {
                for (e, &c) in equal.iter_mut().zip(plane) {
                    *e &= c;
                }
            } else {
                for ((g, e), &c) in greater.iter_mut().zip(equal.iter_mut()).zip(plane) {
                    *g |= *e & c;
                    *e &= !c;
                }
            }
        }
        for (i, d) in dst.iter_mut().enumerate() {
            *d = greater[i] | equal[i];
        }
    }
}
