//! Replays every input kept in `fuzz/corpus/<target>/` (what the fuzzers
//! found interesting) and `fuzz/regressions/<target>/` (every input that
//! once crashed a target) through the same entry points the fuzz targets
//! call, plus the built-in seeds.

use std::path::Path;

#[test]
fn seeds_pass_every_target() {
    for (name, bytes) in traft::fuzz::seeds() {
        let run = traft::fuzz::target(name).expect("a seed names a target");
        run(&bytes);
    }
}

#[test]
fn kept_corpus_passes_every_target() {
    let replayed = replay("fuzz/corpus");
    eprintln!("replayed {replayed} corpus inputs");
    assert!(replayed > 0, "the kept corpus is empty");
}

#[test]
fn inputs_that_once_crashed_pass() {
    let replayed = replay("fuzz/regressions");
    eprintln!("replayed {replayed} inputs that once crashed");
    assert!(replayed > 0, "no regression inputs kept");
}

/// Runs every file under `dir/<target>/` through that target.
fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut replayed = 0;
    for dir in std::fs::read_dir(&root).expect("fuzz/corpus exists") {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let run = traft::fuzz::target(&name)
            .unwrap_or_else(|| panic!("{} names no target", dir.display()));
        for input in std::fs::read_dir(&dir).unwrap() {
            let path = input.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{} fails {name}", path.display());
            replayed += 1;
        }
    }
    replayed
}
