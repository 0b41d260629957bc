#!/usr/bin/env bash
# Counts instructions of a short `traft bench` run with valgrind's callgrind:
# repeatable where timings are not, so two versions compare exactly.
#
#   perf/callgrind.sh [traft bench arguments]
#   perf/callgrind.sh --clients 16 --duration 1 --warmup 0
#
# Writes callgrind.out.<pid> here and prints the top functions by
# instructions (callgrind_annotate). Under valgrind everything runs ~50x
# slower on one core, so keep runs short and compare instruction counts,
# not throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not found (Debian: valgrind)" >&2; exit 1; }
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--clients 16 --duration 1 --warmup 0 --backend file)
cargo build --release
valgrind --tool=callgrind --dump-instr=no --collect-jumps=no \
  ./target/release/traft bench "${args[@]}"
latest="$(ls -t callgrind.out.* | head -1)"
callgrind_annotate "$latest" 2>/dev/null | head -40
echo "full profile: $latest (kcachegrind or callgrind_annotate)"
