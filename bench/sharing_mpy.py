# Runs under the MicroPython unix port: the firmware's allocators on inputs recorded by
# bench/sharing.py (one JSON array per line: "ac" + Sharing.update's arguments, or "dc" +
# cabinet.allocate's), each call timed alone, the garbage collector running as it would on a
# board. Prints the percentiles as one JSON line.
import json
import sys
import time
from array import array

import gc

from evse import cabinet
from evse.sharing import Sharing

ROUNDS = 3   # the recorded calls are replayed this often, each time from a fresh Sharing


def count(path):
    n = {"ac": 0, "dc": 0}
    with open(path) as f:
        for line in f:
            n[line[2:4]] += 1
    return n


def replay(path, times, base):
    """Replays every call once; call k's time in microseconds goes to times[kind][base[kind] + k]."""
    sharing = Sharing(8)
    k = {"ac": 0, "dc": 0}
    with open(path) as f:
        for line in f:
            call = json.loads(line)
            kind = call[0]
            if kind == "ac":
                now_ms, caps, limits, offered, loads, drawn, prio, since = call[1:]
                t = time.ticks_us()
                sharing.update(now_ms, caps, limits, offered, loads, drawn, prio, since)
                dt = time.ticks_diff(time.ticks_us(), t)
            else:
                demands, held, modules, module_kw = call[1:]
                t = time.ticks_us()
                cabinet.allocate(demands, held, modules, module_kw)
                dt = time.ticks_diff(time.ticks_us(), t)
            times[kind][base[kind] + k[kind]] = dt
            k[kind] += 1


def sort_in_place(a):
    """Shell sort of an array: sorted() would need a list as long again on a small heap."""
    n = len(a)
    gap = 1
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap:
        for i in range(gap, n):
            v = a[i]
            j = i
            while j >= gap and a[j - gap] > v:
                a[j] = a[j - gap]
                j -= gap
            a[j] = v
        gap //= 3


def summary(us):
    sort_in_place(us)
    n = len(us)
    if not n:
        return {"calls": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"calls": n, "p50_ms": us[n // 2] / 1000, "p99_ms": us[min(n - 1, n * 99 // 100)] / 1000,
            "max_ms": us[-1] / 1000}


path = sys.argv[1]
n = count(path)
times = {kind: array("I", bytes(4 * ROUNDS * n[kind])) for kind in n}
for r in range(ROUNDS):
    gc.collect()
    replay(path, times, {kind: r * n[kind] for kind in n})
out = {}
for kind in n:
    out[kind] = summary(times[kind])
    times[kind] = None
out["rounds"] = ROUNDS
out["heap_bytes"] = gc.mem_alloc() + gc.mem_free()
print(json.dumps(out))
