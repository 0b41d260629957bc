#!/usr/bin/env bash
# Profiles a `traft bench` run and renders a flame graph.
#
#   perf/flamegraph.sh [OUT.svg] [-- traft bench arguments]
#   perf/flamegraph.sh flame.svg -- --clients 256 --duration 5
#
# Samples with the cpu-clock software event (hardware counters are not
# available on every VM) and DWARF call graphs, then folds the stacks and
# draws them with the `inferno` tools (installed with cargo if missing).
# Needs `perf` and permission to use it (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-flame.svg}"
shift || true
[[ "${1:-}" == "--" ]] && shift
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--clients 256 --duration 5)

command -v perf >/dev/null || { echo "perf not found (Debian: linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
  cargo install --locked inferno
fi
cargo build --release
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -o "$data/perf.data" \
  ./target/release/traft bench "${args[@]}"
perf script -i "$data/perf.data" | inferno-collapse-perf > "$data/folded"
inferno-flamegraph --title "traft bench ${args[*]}" < "$data/folded" > "$out"
echo "flame graph: $out"
echo "top frames (self time):"
perf report -i "$data/perf.data" --no-children --sort symbol -g none --percent-limit 1.5 2>/dev/null |
  grep -v '^#' | grep '%' | sed 's/ *- *- *$//' | head -20
