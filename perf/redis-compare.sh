#!/usr/bin/env bash
# redis-benchmark against a 3-replica `traft serve` cluster and against a
# local `redis-server --appendonly yes --appendfsync always`, in one run, on
# this machine's loopback, with data in temporary directories.
#
#   perf/redis-compare.sh [redis-benchmark arguments]
#   (default: -t set,get -c 50 -d 64 -n 200000)
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool not found (Debian: redis-server redis-tools)" >&2; exit 1; }
done
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(-t set,get -c 50 -d 64 -n 200000)
cargo build --release
traft=./target/release/traft
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

base=$((20000 + RANDOM % 20000))
peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
clients="1=127.0.0.1:$((base + 11)),2=127.0.0.1:$((base + 12)),3=127.0.0.1:$((base + 13))"
for id in 1 2 3; do
  "$traft" serve --id "$id" --peers "$peers" --client-peers "$clients" \
    --client-listen "127.0.0.1:$((base + 10 + id))" --data-dir "$work/traft-$id" \
    2>"$work/traft-$id.log" &
  pids+=($!)
done
leader=""
for _ in $(seq 1 200); do
  for id in 1 2 3; do
    if redis-cli -p $((base + 10 + id)) info 2>/dev/null | grep -q role:leader; then
      leader=$((base + 10 + id))
    fi
  done
  [[ -n "$leader" ]] && break
  sleep 0.05
done
[[ -n "$leader" ]] || { echo "no traft leader elected" >&2; cat "$work"/traft-*.log >&2; exit 1; }

echo "== traft serve, 3 replicas, durable WAL (leader at port $leader): redis-benchmark ${args[*]}"
redis-benchmark -p "$leader" -q "${args[@]}" 2>&1 | tr '\r' '\n' | grep 'requests per second'
for p in "${pids[@]}"; do kill "$p"; done
wait 2>/dev/null || true
pids=()

mkdir -p "$work/redis"
redis-server --port $((base + 20)) --appendonly yes --appendfsync always --save "" \
  --dir "$work/redis" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p $((base + 20)) ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "== redis-server, 1 node, appendfsync always: redis-benchmark ${args[*]}"
redis-benchmark -p $((base + 20)) -q "${args[@]}" 2>&1 | tr '\r' '\n' | grep 'requests per second'
