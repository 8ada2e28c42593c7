# Runs under the MicroPython unix port: the cost of the firmware's control tick and of one
# sharing cycle, each against a baseline measured in the same process.
import json
import time

import gc

from evse import gun as gun_mod
from evse.sharing import Sharing
from fake_rig import charging, make_gun

TICKS = 3000


def per_call_us(fn, n):
    t = time.ticks_us()
    for _ in range(n):
        fn()
    return time.ticks_diff(time.ticks_us(), t) / n


guns = []
for _ in range(2):
    g, hal = make_gun()
    charging(g, hal)
    guns.append((g, hal))


def tick():
    for g, hal in guns:
        hal.t_ms += gun_mod.TICK_MS
        g.step(hal.t_ms)


def hal_only():
    # Baseline: the same hardware reads a tick makes, without the state machine.
    for g, hal in guns:
        hal.t_ms += gun_mod.TICK_MS
        hal.sample_pilot(1)
        hal.rcd_tripped(1)
        hal.contactor_feedback(1)


sharing = Sharing(8)
limits = [32, 16, 0, 32, 10, 32, 0, 16]
offered = [0.0] * 8
clock = [0]


def share():
    clock[0] += 250
    sharing.update(clock[0], 63, limits, offered)


def equal_split(limits, total, min_a):
    # Baseline: the plainest sharing, the total split equally among the guns that want power.
    wanting = [lim for lim in limits if lim >= min_a]
    share = total / len(wanting) if wanting else 0
    return [min(lim, share) if lim >= min_a and share >= min_a else 0 for lim in limits]


def split_only():
    equal_split(limits, 63, 6)


def _live():
    gc.collect()
    return gc.mem_alloc()


tick_us = per_call_us(tick, TICKS)
base_us = per_call_us(hal_only, TICKS)
share_us = per_call_us(share, 2000)
split_us = per_call_us(split_only, 2000)
print(json.dumps({
    "tick_2_guns_us": round(tick_us, 1), "hal_reads_only_us": round(base_us, 1),
    "tick_vs_hal_reads_ratio": round(tick_us / base_us, 2),
    "tick_budget_used": round(tick_us / (gun_mod.TICK_MS * 1000), 4),
    "sharing_8_guns_us": round(share_us, 1), "equal_split_only_us": round(split_us, 1),
    "sharing_vs_split_ratio": round(share_us / split_us, 2),
    "heap_live_bytes": _live(), "heap_total_bytes": gc.mem_alloc() + gc.mem_free(),
}))
