#!/usr/bin/env bash
# Times each durable write of `traft bench wal` as the block layer issues it,
# the WAL's beside the floor's of the same run: how long the device takes
# over the data and the flush, and how long the software takes between one
# write's flush and the next write (perf/wal-phases.py says how).
#
#   perf/wal-phases.sh [traft bench wal arguments]
#   perf/wal-phases.sh --bytes 262144 --appenders 1 --kind threads --rounds 2
#
# Records only `block:block_rq_issue` (cheap: a few events per write), so the
# run itself is barely slowed. Meaningful for one appender. Needs `perf` and
# permission for tracepoints (root, or kernel.perf_event_paranoid <= -1).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf not found (Debian: linux-perf)" >&2; exit 1; }
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--bytes 262144 --appenders 1 --kind threads --rounds 2)
cargo build --release
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
perf record -q -m 32M -e block:block_rq_issue -a -o "$data/perf.data" -- \
  ./target/release/traft bench wal "${args[@]}"
perf script -i "$data/perf.data" 2>/dev/null | python3 perf/wal-phases.py
