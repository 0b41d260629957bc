//! TailBitmap against `BTreeSet<u64>` and `roaring` doing the same work, on
//! the shapes the protocol produces: a long prefix plus a ragged tail, and a
//! sparse tail of ~10k LSNs. Also k-of-n word-wise against bit by bit.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use roaring::RoaringTreemap;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Duration;
use traft::TailBitmap;

/// Deterministic xorshift, so every run measures the same sets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const PREFIX: u64 = 100_000;

/// `[0, prefix)` plus each LSN of the next `tail_words * 64` with probability
/// 1/`sparsity`.
fn shape(rng: &mut Rng, prefix: u64, tail_words: u64, sparsity: u64) -> Vec<u64> {
    let mut lsns: Vec<u64> = (0..prefix).collect();
    lsns.extend((prefix + 1..prefix + tail_words * 64).filter(|_| rng.next() % sparsity == 0));
    lsns
}

struct Case {
    name: String,
    sets: Vec<Vec<u64>>,
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    for tail_words in [1u64, 8, 64] {
        cases.push(Case {
            name: format!("ragged-{tail_words}w"),
            // Replicas a little apart: prefixes differ by up to 3 words.
            sets: (0..5)
                .map(|i| shape(&mut rng, PREFIX - i * 61, tail_words, 2))
                .collect(),
        });
    }
    cases.push(Case {
        name: "sparse-10k".into(),
        sets: (0..5)
            .map(|i| shape(&mut rng, PREFIX - i * 61, 10_000, 64))
            .collect(),
    });
    cases
}

struct Forms {
    tail: Vec<TailBitmap>,
    btree: Vec<BTreeSet<u64>>,
    roaring: Vec<RoaringTreemap>,
}

fn forms(case: &Case) -> Forms {
    Forms {
        tail: case
            .sets
            .iter()
            .map(|s| s.iter().copied().collect())
            .collect(),
        btree: case
            .sets
            .iter()
            .map(|s| s.iter().copied().collect())
            .collect(),
        roaring: case
            .sets
            .iter()
            .map(|s| s.iter().copied().collect())
            .collect(),
    }
}

fn configure(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("bitmap");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group
}

fn binary_ops(c: &mut Criterion) {
    let mut group = configure(c);
    for case in cases() {
        let f = forms(&case);
        let (ta, tb) = (&f.tail[0], &f.tail[1]);
        let (ba, bb) = (&f.btree[0], &f.btree[1]);
        let (ra, rb) = (&f.roaring[0], &f.roaring[1]);
        let id = |op: &str, imp: &str| BenchmarkId::new(format!("{op}/{imp}"), &case.name);
        group.bench_function(id("union", "tail"), |b| {
            b.iter(|| black_box(ta).union(black_box(tb)))
        });
        group.bench_function(id("union", "btree"), |b| {
            b.iter(|| {
                black_box(ba)
                    .union(black_box(bb))
                    .copied()
                    .collect::<BTreeSet<u64>>()
            })
        });
        group.bench_function(id("union", "roaring"), |b| {
            b.iter(|| black_box(ra) | black_box(rb))
        });
        group.bench_function(id("intersection", "tail"), |b| {
            b.iter(|| black_box(ta).intersection(black_box(tb)))
        });
        group.bench_function(id("intersection", "btree"), |b| {
            b.iter(|| {
                black_box(ba)
                    .intersection(black_box(bb))
                    .copied()
                    .collect::<BTreeSet<u64>>()
            })
        });
        group.bench_function(id("intersection", "roaring"), |b| {
            b.iter(|| black_box(ra) & black_box(rb))
        });
        group.bench_function(id("difference", "tail"), |b| {
            b.iter(|| black_box(ta).difference(black_box(tb)))
        });
        group.bench_function(id("difference", "btree"), |b| {
            b.iter(|| {
                black_box(ba)
                    .difference(black_box(bb))
                    .copied()
                    .collect::<BTreeSet<u64>>()
            })
        });
        group.bench_function(id("difference", "roaring"), |b| {
            b.iter(|| black_box(ra) - black_box(rb))
        });
        // Subset on a pair where the answer needs the whole tail: a ∩ b ⊆ a.
        let (ti, bi, ri) = (ta.intersection(tb), ba & bb, ra & rb);
        group.bench_function(id("is_subset", "tail"), |b| {
            b.iter(|| black_box(&ti).is_subset(black_box(ta)))
        });
        group.bench_function(id("is_subset", "btree"), |b| {
            b.iter(|| black_box(&bi).is_subset(black_box(ba)))
        });
        group.bench_function(id("is_subset", "roaring"), |b| {
            b.iter(|| black_box(&ri).is_subset(black_box(ra)))
        });
    }
    group.finish();
}

/// Union over every k-subset of intersections: the set-algebra way to ask
/// "in at least k of n", for the libraries without a counting operation.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m >> i & 1 == 1).collect())
        .collect()
}

fn btree_at_least(k: usize, sets: &[&BTreeSet<u64>]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for subset in subsets(sets.len(), k) {
        let mut inter: BTreeSet<u64> = sets[subset[0]].clone();
        for &i in &subset[1..] {
            inter = inter.intersection(sets[i]).copied().collect();
        }
        out.extend(inter);
    }
    out
}

fn roaring_at_least(k: usize, sets: &[&RoaringTreemap]) -> RoaringTreemap {
    let mut out = RoaringTreemap::new();
    for subset in subsets(sets.len(), k) {
        let mut inter = sets[subset[0]].clone();
        for &i in &subset[1..] {
            inter &= sets[i];
        }
        out |= inter;
    }
    out
}

/// Bit by bit: the loop the word-wise version replaces.
fn bitwise_at_least(k: usize, sets: &[&TailBitmap]) -> TailBitmap {
    let lo = sets.iter().map(|s| s.first_unset()).min().unwrap();
    let hi = sets.iter().filter_map(|s| s.max()).max().unwrap_or(0);
    let mut out = TailBitmap::prefix(lo);
    for lsn in lo..=hi {
        if sets.iter().filter(|s| s.contains(lsn)).count() >= k {
            out.insert(lsn).unwrap();
        }
    }
    out
}

fn at_least(c: &mut Criterion) {
    let mut group = configure(c);
    for case in cases() {
        let f = forms(&case);
        for (k, n) in [(2usize, 3usize), (3, 5)] {
            let tail: Vec<&TailBitmap> = f.tail[..n].iter().collect();
            let btree: Vec<&BTreeSet<u64>> = f.btree[..n].iter().collect();
            let roaring: Vec<&RoaringTreemap> = f.roaring[..n].iter().collect();
            let expect = TailBitmap::at_least(k, &tail);
            assert_eq!(bitwise_at_least(k, &tail), expect);
            assert!(btree_at_least(k, &btree).into_iter().eq(expect.iter()));
            assert!(roaring_at_least(k, &roaring).iter().eq(expect.iter()));
            let op = format!("{k}-of-{n}");
            let id = |imp: &str| BenchmarkId::new(format!("{op}/{imp}"), &case.name);
            group.bench_function(id("tail"), |b| {
                b.iter(|| TailBitmap::at_least(k, black_box(&tail)))
            });
            group.bench_function(id("bitwise"), |b| {
                b.iter(|| bitwise_at_least(k, black_box(&tail)))
            });
            group.bench_function(id("btree"), |b| {
                b.iter(|| btree_at_least(k, black_box(&btree)))
            });
            group.bench_function(id("roaring"), |b| {
                b.iter(|| roaring_at_least(k, black_box(&roaring)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, binary_ops, at_least);
criterion_main!(benches);
