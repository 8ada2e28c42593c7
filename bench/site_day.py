"""`make bench`'s site section: a day at the virtual site site-ac8x2 (8 controllers of 2 guns on a
160 A connection that a depot's building shares, its load profile from the site file), played as
`make run BOARD=site-ac8x2` plays it (host_tools/site_demo.py), twice, each holding its noon for
HOLD_S real seconds: with the coordinator, and with the coordinator off, when the nodes share
their fallback.

For each: the energy the EVs took, against an upper bound for the same samples (per phase, the
connection less its margin less the building, shared among the plugged EVs, each at its most,
the way that gives the most power), the seconds a phase was over the connection (target 0), and
the site bus's frames and collisions. The noon hold's energy without the coordinator against with
it is the fallback's cost."""

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
NOON = 12.0
HOLD_S = 40.0             # real seconds the day holds at noon (the coordinator off, in the second day)


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
    margin), shared the way that gives the most power. A three-phase EV draws alike on its three
    phases, so the three-phase EVs take as much as the tightest phase and their own most allow
    (an ampere there is three phases' worth), and the single-phase EVs what is left on theirs."""
    three = 0.0
    single = [0.0, 0.0, 0.0]
    for b in snap["boards"]:
        for g in b["guns"]:
            ev = evs.get((b["board"], g["gun"]))
            if ev is None or g["state"] == "A":
                continue
            if ev["phases"] == 3:
                three += ev["max_a"]
            else:
                single[0] += ev["max_a"]   # the sites' guns have no rotation: a one-phase EV is on L1
    room = [max(0.0, limit_a - MARGIN_A - a) for a in snap["building_a"]]
    t = min(min(room), three)
    return (3 * t + sum(min(r - t, s) for r, s in zip(room, single))) * VOLTS


class BenchDay(SiteDay):
    """The demo's day, the EVs it plugs remembered for the bound, and at noon a hold of HOLD_S real
    seconds (the script's hour lasts HOUR_S / SPEED: too short for a node to miss its coordinator),
    with the coordinator off for it if `outage`."""

    def __init__(self, site: Site, outage: bool):
        SiteDay.__init__(self, site, io.StringIO(), SPEED)
        self.outage = outage
        self.evs: dict = {}
        self.bound = Bound(site.limit_a)
        self.hold = {}

    def plug(self, guns):
        for n, (k, gun) in enumerate(guns):
            self.evs[(k, gun)] = AC8_CARS[(k + gun + n) % len(AC8_CARS)]
        SiteDay.plug(self, guns)

    def energy_wh(self) -> float:
        return sum(g["energy_wh"] for b in self.snap["boards"] for g in b["guns"])

    def script(self):
        def start():
            self.hold.update(start_s=time.monotonic(), start_wh=self.energy_wh(), start_bound_wh=self.bound.wh)
            if self.outage:
                self.request("power", board=1, on=False)

        def end():
            self.hold.update(wh=self.energy_wh() - self.hold["start_wh"],
                             bound_wh=self.bound.wh - self.hold["start_bound_wh"])
            if self.outage:
                self.request("power", board=1, on=True)
        steps = SiteDay.script(self)
        what = "the coordinator off" if self.outage else "the coordinator on"
        steps += [Step(NOON, f"{HOLD_S:g} s at noon, {what}", start,
                       lambda snap: time.monotonic() - self.hold["start_s"] >= HOLD_S, f"{HOLD_S:g} s"),
                  Step(NOON, "the hold ends", end,
                       lambda snap: snap["boards"][0]["firmware"] == "running", "the coordinator running")]
        steps.sort(key=lambda step: step.hour)
        return steps


def play(outage: bool) -> dict:
    site = Site(SITE)
    try:
        site.start()
        day = BenchDay(site, outage)
        with QuietView() as view:
            day.play(view)
        snap = day.snap
        wh = day.energy_wh()
        return {"energy_kwh": round(wh / 1000, 3), "upper_bound_kwh": round(day.bound.wh / 1000, 3),
                "of_bound": round(wh / day.bound.wh, 3) if day.bound.wh else None,
                "hold_wh": round(day.hold["wh"], 2), "hold_bound_wh": round(day.hold["bound_wh"], 2),
                "violation_s": snap["violations"]["seconds_over"], "worst_over_a": snap["violations"]["worst_over_a"],
                "over_after_building_rose_s": round(day.over_after_rise_s, 2),
                "peak_a": [round(a, 1) for a in day.peak_a], "frames": snap["line"]["frames"],
                "collisions": snap["line"]["collisions"], "real_s": round(time.monotonic() - day.started, 1)}
    finally:
        site.stop()


def run() -> dict:
    normal = play(False)
    outage = play(True)
    cost = round(1 - outage["hold_wh"] / normal["hold_wh"], 3) if normal["hold_wh"] else None
    out = {"site": SITE, "speed": SPEED, "hold_s": HOLD_S, "normal": normal, "coordinator_off_at_noon": outage,
           "fallback_cost_of_energy": cost}
    for name, r in (("a normal day", normal), (f"the coordinator off {HOLD_S:g} s at noon", outage)):
        print(f"site day ({SITE}, {name}): {r['energy_kwh']:.2f} kWh to the EVs = {r['of_bound']:.0%} of the "
              f"{r['upper_bound_kwh']:.2f} kWh the connection left them at most; over the connection "
              f"{r['violation_s']:.1f} s (target 0; {r['over_after_building_rose_s']:.1f} s of it within 5 s after the "
              f"building rose); peak {r['peak_a']} A; site bus {r['frames']} frames, {r['collisions']} collisions")
    if cost is not None:
        print(f"site day: the fallback's cost: {normal['hold_wh']:.0f} Wh in the {HOLD_S:g} s at noon with the "
              f"coordinator, {outage['hold_wh']:.0f} Wh without it ({cost:.0%} less; the nodes share "
              f"site_fallback_a after site_lost_s, the coordinator's own guns stop)")
    return out
