#!/usr/bin/env python3
"""Turns criterion's results (target/criterion) into the README's tables.

Usage: cargo bench --bench bitmap && cargo bench --bench frame
       python3 perf/bench-table.py [bitmap|frame]

Each cell is the median time per operation with its median absolute deviation;
ratios are median over median, taken from the same run.
"""
import json
import os
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(__file__), "..", "target", "criterion")


def load(group):
    results = {}
    base = os.path.join(ROOT, group)
    for dirpath, _dirs, files in os.walk(base):
        if "benchmark.json" in files and os.path.basename(dirpath) == "new":
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bench = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            results[(bench["function_id"], bench["value_str"])] = (
                est["median"]["point_estimate"],
                est["median_abs_dev"]["point_estimate"],
                bench.get("throughput"),
            )
    return results


def fmt_ns(ns):
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"


def cell(r):
    median, mad, _ = r
    return f"{fmt_ns(median)} ±{100 * mad / median:.0f}%"


def bitmap():
    results = load("bitmap")
    rows = defaultdict(dict)
    for (function, case), r in results.items():
        op, imp = function.rsplit("/", 1)
        rows[(op, case)][imp] = r
    order = ["union", "intersection", "difference", "is_subset", "2-of-3", "3-of-5"]
    cases = ["ragged-1w", "ragged-8w", "ragged-64w", "sparse-10k"]
    print("| op | shape | TailBitmap | roaring | BTreeSet | bit by bit | roaring ÷ Tail | BTreeSet ÷ Tail | bit by bit ÷ Tail |")
    print("|---|---|---|---|---|---|---|---|---|")
    for op in order:
        for case in cases:
            imps = rows.get((op, case))
            if not imps or "tail" not in imps:
                continue
            tail = imps["tail"][0]
            def col(name):
                return cell(imps[name]) if name in imps else "—"
            def ratio(name):
                return f"{imps[name][0] / tail:.1f}×" if name in imps else "—"
            print(f"| {op} | {case} | {col('tail')} | {col('roaring')} | {col('btree')} | {col('bitwise')} "
                  f"| {ratio('roaring')} | {ratio('btree')} | {ratio('bitwise')} |")


def frame():
    results = load("frame")
    print("| records | frame bytes | encode | validate | encode + validate | MB/s (enc+val) | records/s (enc+val) |")
    print("|---|---|---|---|---|---|---|")
    for records in ["1", "64", "1024"]:
        enc = results.get(("encode", records))
        val = results.get(("validate", records))
        both = results.get(("encode+validate", records))
        if not (enc and val and both):
            continue
        size = both[2]["Bytes"]
        seconds = both[0] / 1e9
        print(f"| {records} | {size} | {cell(enc)} | {cell(val)} | {cell(both)} "
              f"| {size / seconds / 1e6:,.0f} | {int(records) / seconds:,.0f} |")


if __name__ == "__main__":
    which = sys.argv[1:] or ["bitmap", "frame"]
    for w in which:
        {"bitmap": bitmap, "frame": frame}[w]()
        print()
