"""`make bench`'s site section: a day at the virtual site site-ac8x2 (8 controllers of 2 guns on a
160 A connection that a depot's building shares, its load profile from the site file), played as
`make run BOARD=site-ac8x2` plays it (host_tools/site_demo.py), twice: as it is, and with the
coordinator off for the noon hour, when the nodes share their fallback.

For each: the energy the EVs took, against an upper bound for the same samples (per phase, the
connection less its margin less the building, capped by what the plugged EVs could draw on it:
every car at its most, single-phase cars on L1), the seconds a phase was over the connection
(target 0), and the site bus's frames and collisions. The outage's energy against the normal
day's is the fallback's cost."""

from __future__ import annotations

import io
import time

from host_tools.demo import AC8_CARS
from host_tools.sim.site import Site
from host_tools.site_demo import SiteDay, Step

SITE = "site-ac8x2"
SPEED = 2.0
VOLTS = 230.0
MARGIN_A = 2.0            # the coordinator's grid_margin_a (its default)
OUTAGE = (12.0, 13.0)     # script hours the coordinator is off in the second day


class QuietView:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def step_started(self, day) -> None:
        pass

    def update(self, day) -> None:
        day.bound.sample(day)


class Bound:
    """The upper bound's integral over the day's samples (real seconds: the EVs' energy is counted
    in the virtual board's real time)."""

    def __init__(self, limit_a: float):
        self.limit_a = limit_a
        self.wh = 0.0
        self.last_s: float | None = None

    def sample(self, day) -> None:
        now = time.monotonic()
        if self.last_s is not None:
            self.wh += upper_w(day.snap, day.evs, self.limit_a) * (now - self.last_s) / 3600
        self.last_s = now


def upper_w(snap: dict, evs: dict, limit_a: float) -> float:
    """What the site could deliver now at most: per phase the room the building leaves (less the
    margin), but no more than the plugged EVs could draw there."""
    demand = [0.0, 0.0, 0.0]
    for b in snap["boards"]:
        for g in b["guns"]:
            ev = evs.get((b["board"], g["gun"]))
            if ev is None or g["state"] == "A":
                continue
            for p in range(ev["phases"]):
                demand[p] += ev["max_a"]
    room = [max(0.0, limit_a - MARGIN_A - a) for a in snap["building_a"]]
    return sum(min(r, d) for r, d in zip(room, demand)) * VOLTS


class BenchDay(SiteDay):
    """The demo's day, the EVs it plugs remembered for the bound; with `outage`, the coordinator
    off for those script hours."""

    def __init__(self, site: Site, outage: tuple | None):
        SiteDay.__init__(self, site, io.StringIO(), SPEED)
        self.outage = outage
        self.evs: dict = {}
        self.bound = Bound(site.limit_a)

    def plug(self, guns):
        for n, (k, gun) in enumerate(guns):
            self.evs[(k, gun)] = AC8_CARS[(k + gun + n) % len(AC8_CARS)]
        SiteDay.plug(self, guns)

    def script(self):
        steps = SiteDay.script(self)
        if self.outage:
            off, on = self.outage
            steps += [Step(off, "the coordinator goes off: the nodes share their fallback",
                           lambda: self.request("power", board=1, on=False), lambda snap: True, "-"),
                      Step(on, "the coordinator is back", lambda: self.request("power", board=1, on=True),
                           lambda snap: snap["boards"][0]["firmware"] == "running", "the coordinator running")]
            steps.sort(key=lambda s: s.hour)
        return steps


def play(outage: tuple | None) -> dict:
    site = Site(SITE)
    try:
        site.start()
        day = BenchDay(site, outage)
        with QuietView() as view:
            day.play(view)
        snap = day.snap
        wh = sum(g["energy_wh"] for b in snap["boards"] for g in b["guns"])
        return {"energy_kwh": round(wh / 1000, 3), "upper_bound_kwh": round(day.bound.wh / 1000, 3),
                "of_bound": round(wh / day.bound.wh, 3) if day.bound.wh else None,
                "violation_s": snap["violations"]["seconds_over"], "worst_over_a": snap["violations"]["worst_over_a"],
                "over_after_building_rose_s": round(day.over_after_rise_s, 2),
                "peak_a": [round(a, 1) for a in day.peak_a], "frames": snap["line"]["frames"],
                "collisions": snap["line"]["collisions"], "real_s": round(time.monotonic() - day.started, 1)}
    finally:
        site.stop()


def run() -> dict:
    normal = play(None)
    outage = play(OUTAGE)
    cost = round(1 - outage["energy_kwh"] / normal["energy_kwh"], 3) if normal["energy_kwh"] else None
    out = {"site": SITE, "speed": SPEED, "normal": normal, "coordinator_off_noon_hour": outage,
           "fallback_cost_of_energy": cost}
    for name, r in (("a normal day", normal), ("the coordinator off 12:00-13:00", outage)):
        print(f"site day ({SITE}, {name}): {r['energy_kwh']:.2f} kWh to the EVs = {r['of_bound']:.0%} of the "
              f"{r['upper_bound_kwh']:.2f} kWh the connection left them at most; over the connection "
              f"{r['violation_s']:.1f} s (target 0; {r['over_after_building_rose_s']:.1f} s of it within 5 s after the "
              f"building rose); peak {r['peak_a']} A; site bus {r['frames']} frames, {r['collisions']} collisions")
    if cost is not None:
        print(f"site day: the fallback's cost: {cost:.1%} of the day's energy for an hour without the coordinator")
    return out
