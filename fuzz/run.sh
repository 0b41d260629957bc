#!/usr/bin/env bash
# Fuzzes every target (or those named) for TRAFT_FUZZ_SECS seconds each
# (default 600) with cargo-fuzz and libFuzzer, then shrinks each corpus.
# Needs a nightly toolchain; installs cargo-fuzz if it is missing. Inputs
# that crash a target land in fuzz/artifacts/<target>/; once fixed, copy
# them into fuzz/regressions/<target>/ (which shrinking leaves alone) so
# every test run replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${TRAFT_FUZZ_SECS:-600}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_stream wire_payload resp_stream wal_segments wal_payloads snapshot_file)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo run --quiet --example fuzz_seeds >/dev/null
for t in "${targets[@]}"; do
  echo "== $t: ${secs} s"
  log="fuzz/artifacts/$t.log"
  mkdir -p "fuzz/artifacts/$t"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tee "$log" | grep -E "^#[0-9]+ *(DONE|pulse)|stat::number_of_executed_units|crash-|panicked" || true
  cargo +nightly fuzz cmin "$t" "fuzz/corpus/$t" >/dev/null 2>&1 || true
  echo "   corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs; crashes: $(ls "fuzz/artifacts/$t" | grep -c '^crash-' || true)"
done
