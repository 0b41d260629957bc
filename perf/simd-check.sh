#!/usr/bin/env bash
# Shows that the TailBitmap word loops compile to packed SIMD instructions:
# counts packed (xmm/ymm) integer instructions in each hot function of the
# release bench binary. A count of 0 would mean the loop runs a word at a time.
set -eu
cd "$(dirname "$0")/.."
cargo bench --bench bitmap --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/ | grep -E '^bitmap-[0-9a-f]+$' | head -1)
asm=$(mktemp)
trap 'rm -f "$asm"' EXIT
objdump -d --no-show-raw-insn -C "target/release/deps/$bin" > "$asm"
printf '%-44s %8s %8s\n' function packed total
for f in 'BitmapView>::union' 'BitmapView>::intersection' 'BitmapView>::difference' \
         'BitmapView>::is_subset' 'TailBitmap>::at_least>' ; do
  body=$(awk -v f="$f" 'index($0, f) && />:$/ {on=1; next} on && /^$/ {on=0} on {print}' "$asm")
  packed=$(grep -cE '\s(v?p(or|and|andn|xor)|v?movdq[au]|v?pcmpeq[bdq]|v?ptest)\s' <<<"$body" || true)
  total=$(grep -c . <<<"$body" || true)
  printf '%-44s %8s %8s\n' "$f" "$packed" "$total"
done
