#!/usr/bin/env bash
# Shows that the TailBitmap word loops compile to packed SIMD instructions:
# counts packed (xmm/ymm) integer instructions in each hot function of the
# release bench binary. A count of 0 would mean the loop runs a word at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench bitmap --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/ | grep -E '^bitmap-[0-9a-f]+$' | head -1)
bin="target/release/deps/$bin"
printf '%-70s %8s %8s\n' function packed total
for f in 'BitmapView>::union' 'BitmapView>::intersection' 'BitmapView>::difference' \
         'BitmapView>::is_subset' 'kofn::count_at_least'; do
  body=$(objdump -d --no-show-raw-insn -C "$bin" |
    awk -v f="$f" 'index($0, f) && />:$/ {on=1; next} on && /^$/ {exit} on {print}')
  packed=$(grep -cE '\s(v?p(or|and|andn|xor)|v?movdq[au]|v?pcmpeqq|v?ptest)\s' <<<"$body" || true)
  total=$(grep -c . <<<"$body" || true)
  printf '%-70s %8s %8s\n' "$f" "$packed" "$total"
done
