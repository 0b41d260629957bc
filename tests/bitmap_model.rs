//! Every TailBitmap operation against a model: a `BTreeSet<u64>` of the LSNs
//! at or above a base `B`, plus whether all of `[0, B)` is in the set.
//!
//! Bases range over 0, unaligned small values, large values and the top of
//! the LSN space, so prefixes, gaps, unaligned offsets and LSNs near
//! `u64::MAX` are all exercised.

use proptest::prelude::*;
use std::collections::BTreeSet;
use traft::bitmap::AT_LEAST_INPUTS_MAX;
use traft::{TailBitmap, LSN_LIMIT};

/// LSNs above the base span `[B, B + SPAN)`.
const SPAN: u64 = 520;

#[derive(Clone, Debug)]
struct Model {
    base: u64,
    below: bool,
    above: BTreeSet<u64>,
}

impl Model {
    fn contains(&self, lsn: u64) -> bool {
        if lsn < self.base {
            self.below
        } else {
            self.above.contains(&(lsn - self.base))
        }
    }

    fn count(&self) -> u64 {
        (if self.below { self.base } else { 0 }) + self.above.len() as u64
    }

    fn max(&self) -> Option<u64> {
        match self.above.iter().next_back() {
            Some(&x) => Some(self.base + x),
            None if self.below && self.base > 0 => Some(self.base - 1),
            None => None,
        }
    }

    fn first_unset(&self) -> u64 {
        if !self.below && self.base > 0 {
            return 0;
        }
        let mut x = 0;
        while self.above.contains(&x) {
            x += 1;
        }
        self.base + x
    }

    fn combine(&self, other: &Model, below: bool, above: BTreeSet<u64>) -> Model {
        assert_eq!(self.base, other.base);
        Model {
            base: self.base,
            below,
            above,
        }
    }

    fn build(&self) -> TailBitmap {
        let mut bitmap = if self.below {
            TailBitmap::prefix(self.base)
        } else {
            TailBitmap::new()
        };
        for &x in &self.above {
            assert!(bitmap.insert(self.base + x).unwrap());
        }
        bitmap
    }
}

fn base() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1u64..200,
        (1u64..1000).prop_map(|k| k * 64),
        1_000u64..1_000_000_000_000,
        Just(LSN_LIMIT - SPAN),
        (SPAN..10_000).prop_map(|d| LSN_LIMIT - d),
    ]
}

/// A set shaped like the protocol's: often a run from the base, then a
/// ragged tail; sometimes sparse, sometimes dense.
fn above() -> impl Strategy<Value = BTreeSet<u64>> {
    (
        0..SPAN,
        prop::collection::btree_set(0..SPAN, 0..48),
        any::<bool>(),
    )
        .prop_map(|(run, extra, with_run)| {
            let mut set = extra;
            if with_run {
                set.extend(0..run.min(200));
            }
            set
        })
}

fn model_with(base: u64) -> impl Strategy<Value = Model> {
    (any::<bool>(), above()).prop_map(move |(below, above)| Model { base, below, above })
}

fn models(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Model>> {
    base().prop_flat_map(move |b| prop::collection::vec(model_with(b), n.clone()))
}

fn assert_same(bitmap: &TailBitmap, model: &Model) {
    bitmap.check_canonical().unwrap();
    assert_eq!(bitmap.count(), model.count(), "count of {bitmap:?}");
    assert_eq!(bitmap.max(), model.max(), "max of {bitmap:?}");
    assert_eq!(
        bitmap.first_unset(),
        model.first_unset(),
        "first_unset of {bitmap:?}"
    );
    let tail: Vec<u64> = bitmap.iter_tail().collect();
    let first_unset = model.first_unset();
    let model_tail: Vec<u64> = model
        .above
        .iter()
        .map(|&x| model.base + x)
        .filter(|&lsn| lsn >= first_unset)
        .collect();
    assert_eq!(tail, model_tail, "tail of {bitmap:?}");
    if model.base < 5_000 {
        let all: Vec<u64> = bitmap.iter().collect();
        let model_all: Vec<u64> = (0..model.base + SPAN)
            .filter(|&l| model.contains(l))
            .collect();
        assert_eq!(all, model_all);
    }
    // The canonical form makes equality structural.
    assert_eq!(bitmap, &model.build());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn insert_contains_count_max_iter(model in base().prop_flat_map(model_with)) {
        let bitmap = model.build();
        assert_same(&bitmap, &model);
        for lsn in model.base.saturating_sub(70)..model.base.saturating_add(SPAN + 70) {
            prop_assert_eq!(bitmap.contains(lsn), model.contains(lsn), "lsn {}", lsn);
        }
        // Inserting in another order gives the same canonical bitmap.
        let mut reversed = if model.below { TailBitmap::prefix(model.base) } else { TailBitmap::new() };
        for &x in model.above.iter().rev() {
            reversed.insert(model.base + x).unwrap();
        }
        prop_assert_eq!(&reversed, &bitmap);
    }

    #[test]
    fn insert_reports_novelty(model in base().prop_flat_map(model_with), x in 0..SPAN) {
        let mut bitmap = model.build();
        let fresh = !model.contains(model.base + x);
        prop_assert_eq!(bitmap.insert(model.base + x).unwrap(), fresh);
        let mut after = model.clone();
        after.above.insert(x);
        assert_same(&bitmap, &after);
    }

    #[test]
    fn union_intersection_difference_subset(pair in models(2..3)) {
        let (a, b) = (&pair[0], &pair[1]);
        let (x, y) = (a.build(), b.build());
        let union = a.combine(b, a.below || b.below, a.above.union(&b.above).copied().collect());
        let inter = a.combine(b, a.below && b.below, a.above.intersection(&b.above).copied().collect());
        let diff = a.combine(b, a.below && !b.below, a.above.difference(&b.above).copied().collect());
        assert_same(&x.union(&y), &union);
        assert_same(&x.intersection(&y), &inter);
        assert_same(&x.difference(&y), &diff);
        let subset = (!a.below || b.below || a.base == 0) && a.above.is_subset(&b.above);
        prop_assert_eq!(x.is_subset(&y), subset);
        prop_assert!(x.intersection(&y).is_subset(&x));
        prop_assert!(x.is_subset(&x.union(&y)));
        let mut z = x.clone();
        z.union_with(&y);
        prop_assert_eq!(z, x.union(&y));
    }

    #[test]
    fn at_least_k_of_n(inputs in models(1..8), k_seed in any::<usize>()) {
        let k = 1 + k_seed % inputs.len();
        let built: Vec<TailBitmap> = inputs.iter().map(Model::build).collect();
        let refs: Vec<&TailBitmap> = built.iter().collect();
        let below = inputs.iter().filter(|m| m.below).count() >= k;
        let above = (0..SPAN)
            .filter(|x| inputs.iter().filter(|m| m.above.contains(x)).count() >= k)
            .collect();
        let model = Model { base: inputs[0].base, below, above };
        assert_same(&TailBitmap::at_least(k, &refs), &model);
    }

    #[test]
    fn at_least_many_inputs_counts_past_one_plane(base in base(), rows in prop::collection::vec(prop::collection::btree_set(0..200u64, 0..150), 20..40), k_seed in any::<usize>()) {
        // Many inputs over the same words make the counters use several planes.
        let k = 1 + k_seed % rows.len();
        let models: Vec<Model> = rows.into_iter().map(|above| Model { base, below: false, above }).collect();
        let built: Vec<TailBitmap> = models.iter().map(Model::build).collect();
        let refs: Vec<&TailBitmap> = built.iter().collect();
        let above = (0..SPAN).filter(|x| models.iter().filter(|m| m.above.contains(x)).count() >= k).collect();
        assert_same(&TailBitmap::at_least(k, &refs), &Model { base, below: false, above });
    }
}

#[test]
fn lsn_limit_is_refused_not_wrapped() {
    let mut bitmap = TailBitmap::new();
    assert!(bitmap.insert(LSN_LIMIT).is_err());
    assert!(bitmap.insert(LSN_LIMIT - 1).unwrap());
    assert_eq!(bitmap.max(), Some(LSN_LIMIT - 1));
    let mut all = TailBitmap::prefix(LSN_LIMIT - 1);
    all.insert(LSN_LIMIT - 1).unwrap();
    assert_eq!(all.first_unset(), LSN_LIMIT);
    assert_eq!(all.count(), u64::MAX);
    assert_eq!(all.max(), Some(LSN_LIMIT - 1));
    assert_eq!(all.tail_words(), 0);
    assert_eq!(all.union(&bitmap), all);
    assert_eq!(bitmap.difference(&all), TailBitmap::new());
    assert!(all.difference(&bitmap).contains(LSN_LIMIT - 2));
    assert_eq!(TailBitmap::at_least(2, &[&all, &bitmap, &all]), all);
}

#[test]
fn empty_sets() {
    let empty = TailBitmap::new();
    assert!(empty.is_empty());
    assert_eq!(empty.max(), None);
    assert_eq!(empty.count(), 0);
    assert_eq!(empty.iter().next(), None);
    assert!(empty.is_subset(&empty));
    assert_eq!(TailBitmap::prefix(0), empty);
    assert_eq!(TailBitmap::at_least(1, &[&empty, &empty]), empty);
    let some: TailBitmap = [3, 70, 1000].into_iter().collect();
    assert!(empty.is_subset(&some));
    assert!(!some.is_subset(&empty));
    assert_eq!(some.union(&empty), some);
    assert_eq!(some.intersection(&empty), empty);
    assert_eq!(some.difference(&empty), some);
}

#[test]
#[should_panic(expected = "at_least")]
fn at_least_zero_is_refused() {
    TailBitmap::at_least(0, &[&TailBitmap::new()]);
}

#[test]
#[should_panic(expected = "at_least")]
fn at_least_too_many_inputs_is_refused() {
    let one = TailBitmap::new();
    let inputs = vec![&one; AT_LEAST_INPUTS_MAX + 1];
    TailBitmap::at_least(1, &inputs);
}

#[test]
fn far_apart_sets_stay_small() {
    // A set far above the prefix is kept as a gap, not as zero words.
    let far: TailBitmap = [1 << 40, (1 << 40) + 3].into_iter().collect();
    assert_eq!(far.tail_words(), 1);
    let prefix = TailBitmap::prefix(1 << 20);
    let union = prefix.union(&far);
    assert_eq!(union.tail_words(), 1);
    assert_eq!(union.count(), (1 << 20) + 2);
    // accepted − req.accepted: what a voter holds that a candidate lacks.
    let held = TailBitmap::prefix(1_000_000);
    let lacking = TailBitmap::prefix(999_990);
    let send = held.difference(&lacking);
    assert_eq!(
        send.iter().collect::<Vec<_>>(),
        (999_990..1_000_000).collect::<Vec<_>>()
    );
    assert!(send.tail_words() <= 2);
}
