#!/usr/bin/env python3
"""Splits durable writes into phases as the block layer issues them.

Reads `perf script` output of `block:block_rq_issue` events (perf/wal-phases.sh
records them) and, per issuing thread and write size, times each cycle of

    data write issued -> flush issued -> next data write issued

On a disk without FUA every durable write is a data request and then a flush
(`FF`, issued by the kernel's flush machinery once the data is done). So:
- `write -> flush` is the device writing the data, its completion, and the
  kernel starting the flush;
- `flush -> next` is the device's flush, and everything between its end and
  the next write: the waiting thread's wake-up, and for the WAL the hand-offs
  between its threads.
The floor's writes come from the benchmark's main thread (`traft`), the
WAL's from its writer (`traft-wal`, or an io_uring worker `iou-wrk-*` when the
kernel hands a write to one). Meaningful for one write in flight at a time:
one appender, or the floor's single thread.
"""
import re
import sys
from collections import defaultdict

ISSUE = re.compile(
    r"^\s*(?P<comm>.+?)\s+\d+\s+\[\d+\]\s+(?P<t>[\d.]+):\s+block:block_rq_issue:"
    r"\s+\S+\s+(?P<rwbs>\S+)\s+(?P<bytes>\d+)"
)


# The largest write of a case: a 1 MiB append and the blocks around it.
MAX_WRITE = (1 << 20) + 2 * 4096


def who(comm):
    if comm.startswith("traft-wal") or comm.startswith("iou-wrk"):
        return "WAL"
    if comm == "traft":
        return "floor"
    return None


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main():
    # (who, bytes) -> lists of phase durations in µs
    phases = defaultdict(lambda: {"write -> flush": [], "flush -> next": [], "cycle": []})
    write = None  # (key, issued at)
    flush_at = None
    for line in sys.stdin:
        m = ISSUE.match(line)
        if not m:
            continue
        t = float(m["t"]) * 1e6
        rwbs, size = m["rwbs"], int(m["bytes"])
        if rwbs == "FF":
            if write is not None and flush_at is None:
                flush_at = t
                phases[write[0]]["write -> flush"].append(t - write[1])
            continue
        if not rwbs.startswith("W") or "M" in rwbs or not 4096 <= size <= MAX_WRITE:
            continue  # metadata, the journal, zero-filling
        key = (who(m["comm"]), size)
        if key[0] is None:
            continue
        if write is not None and write[0] == key and flush_at is not None:
            phases[key]["flush -> next"].append(t - flush_at)
            phases[key]["cycle"].append(t - write[1])
        write, flush_at = (key, t), None
    print(f"{'':6} {'bytes':>8} {'cycles':>7} | {'write -> flush':>20} | {'flush -> next':>20} | {'cycle':>20}")
    print(f"{'':6} {'':>8} {'':>7} | {'p50 µs':>9} {'p90 µs':>10} | {'p50 µs':>9} {'p90 µs':>10} | {'p50 µs':>9} {'p90 µs':>10}")
    for (name, size), ph in sorted(phases.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        n = len(ph["cycle"])
        if n < 10:
            continue
        cells = " | ".join(
            f"{pct(ph[p], 0.5):9.1f} {pct(ph[p], 0.9):10.1f}"
            for p in ("write -> flush", "flush -> next", "cycle")
        )
        print(f"{name:6} {size:8d} {n:7d} | {cells}")


if __name__ == "__main__":
    main()
