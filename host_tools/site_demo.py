"""`evsectl demo --board SITE` (`make run BOARD=site-ac8x2`): a day at a site of several
controllers on one RS-485 site bus behind one grid connection, on the virtual site
(host_tools/sim/site.py).

The building follows the site file's day; cars come to the controllers' guns in the morning and
leave in the afternoon, and the coordinator shares what the building leaves of the connection
among every gun of every controller. The table shows each gun and the connection per phase; the
summary tells the energy per controller, the connection's peak and the time over it (the site's
overload accounting), and the site bus's frames and collisions. A script hour takes HOUR_S /
--speed real seconds; the firmware's own timing is real, so each step waits (up to
STEP_TIMEOUT_S) for the controllers to have done their part, and the script's clock stands
while it waits."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console as Terminal
from rich.table import Table
from rich.text import Text

from host_tools import demo
from host_tools.demo import AC8_CARS, STATE_STYLE, DemoError, clock, default_log
from host_tools.sim.site import PHASES, Site, building_at

HOUR_S = 8.0              # real seconds a script hour takes at --speed 1
START_HOUR = 6.0
END_HOUR = 19.0
REFRESH_S = 0.5
PLAIN_LINE_S = 2.0
STEP_TIMEOUT_S = 45.0     # real seconds: sharing among many guns takes some rounds of the site bus
BUILDING_STEP_A = 0.5     # the building is set again when its day has moved this far
BUILDING_GRACE_S = 5.0    # an EV may take 5 s to follow a lower offer (IEC 61851-1 A.5.1): time over
                          # the limit this soon after the building rose is told apart
FULL_HEADROOM_A = 8.0     # less than this left on a phase: no room for one more gun's 6 A beside the margin


@dataclass
class Step:
    hour: float
    caption: str
    action: Callable[[], object] | None
    reached: Callable[[dict], bool]   # on the site op's snapshot
    waits_for: str


def hhmm(hour: float) -> str:
    return "%02d:%02d" % divmod(int(round(hour * 60)) % 1440, 60)


class SiteDay:
    """The virtual site, the script's clock and what the summary reports."""

    def __init__(self, site: Site, log_file, speed: float):
        self.site = site
        self.log_file = log_file
        self.speed = speed
        self.started = time.monotonic()
        self._hour = START_HOUR           # the script's clock: it runs between steps, not while one waits
        self._ticked = time.monotonic()
        self.caption = "the controllers boot"
        self.snap: dict = site.snapshot()
        self.guns = [(k, g["gun"]) for k, b in enumerate(self.snap["boards"], 1) for g in b["guns"]]
        self.plugs: dict[int, int] = {}   # sessions per controller
        self.peak_a = [0.0, 0.0, 0.0]
        self._building = [-1.0, -1.0, -1.0]
        self._rose_s = float("-inf")        # when the building last rose on a phase
        self._over_seen_s = 0.0
        self.over_after_rise_s = 0.0        # of the time over the limit, this much came after the building rose
        self._next_tick = time.monotonic()
        self.log({"kind": "meta", "site": site.name, "limit_a": site.limit_a, "boards": len(site.boards),
                  "start_s": round(site.start_s, 2)})

    def hour(self) -> float:
        return self._hour

    def log(self, entry: dict) -> None:
        self.log_file.write(json.dumps(entry) + "\n")
        self.log_file.flush()

    def request(self, op: str, **fields) -> dict:
        reply = self.site.handle_line(json.dumps({"op": op, **fields}))
        if not reply["ok"]:
            raise DemoError(reply["error"])
        return reply

    def plug(self, guns: list[tuple[int, int]]) -> None:
        for n, (k, gun) in enumerate(guns):
            self.request("plug", board=k, gun=gun, ev=AC8_CARS[(k + gun + n) % len(AC8_CARS)])
            self.plugs[k] = self.plugs.get(k, 0) + 1

    def unplug(self, guns: list[tuple[int, int]]) -> None:
        for k, gun in guns:
            self.request("unplug", board=k, gun=gun)

    def gun(self, snap: dict, k: int, gun: int) -> dict:
        return snap["boards"][k - 1]["guns"][gun - 1]

    def script(self) -> list[Step]:
        guns, limit = self.guns, self.site.limit_a
        early, morning = guns[::3], [g for i, g in enumerate(guns) if i % 3]
        leave_first, leave_last = guns[::2], guns[1::2]

        def charging(which):
            # Every car charging, or the connection full: a gun the sharing pauses (below 6 A
            # is a pause, not less current) waits for room.
            return lambda snap: (all(self.gun(snap, k, g)["amps"] > 0 for k, g in which)
                                 or min(snap["headroom_a"]) < FULL_HEADROOM_A)

        def gone(which):
            return lambda snap: all(self.gun(snap, k, g)["state"] == "A" for k, g in which)

        return [
            Step(7, f"early cars at {len(early)} guns; the building is still quiet", lambda: self.plug(early),
                 charging(early), "current on every early car's gun (or the connection full)"),
            Step(9, f"the office opens: cars at every one of the {len(guns)} guns share the {limit:g} A connection "
                    "with the building", lambda: self.plug(morning), charging(guns),
                 "current on every gun (or the connection full)"),
            Step(12, "noon: the building's busiest hours; every gun's share goes down", None,
                 lambda snap: max(snap["total_a"]) <= limit, "the connection under its limit"),
            Step(15, f"{len(leave_first)} cars leave; the others take what they free", lambda: self.unplug(leave_first),
                 gone(leave_first), "their guns in state A"),
            Step(18, "the last cars leave", lambda: self.unplug(leave_last), gone(guns), "every gun in state A"),
        ]

    def play(self, view) -> None:
        self.view = view
        self.wait_for(lambda snap: all(g["state"] == "A" and b["firmware"] == "running"
                                       for b in snap["boards"] for g in b["guns"]), "every controller running")
        self.request("site", clear=True)   # the day's overloads count from here
        self._over_seen_s = 0.0
        self.started = time.monotonic()
        steps = self.script()
        for number, step in enumerate(steps, 1):
            while self.hour() < step.hour:
                self.tick(runs=True)
            self.caption = f"{hhmm(step.hour)} step {number}/{len(steps)}: {step.caption}"
            self.view.step_started(self)
            if step.action is not None:
                step.action()
            self.wait_for(step.reached, step.waits_for)
        while self.hour() < END_HOUR:
            self.tick(runs=True)

    def wait_for(self, reached: Callable[[dict], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        self.tick()
        while not reached(self.snap):
            if time.monotonic() > deadline:
                idle = ["controller %d gun %d %s offer %.1f A contactor %s%s" % (
                    b["board"], g["gun"], g["state"], g["offered_a"], "closed" if g["contactor"] else "open",
                    " fault " + g["fault"] if g["fault"] else "")
                    for b in self.snap["boards"] for g in b["guns"] if g["state"] != "A" and g["amps"] <= 0]
                raise DemoError(f"{self.caption}: no {what} within {STEP_TIMEOUT_S:.0f} s; connection "
                                f"{self.snap['total_a']} A, building {self.snap['building_a']} A; not drawing: "
                                f"{'; '.join(idle) or 'none'}")
            self.tick()

    def tick(self, runs: bool = False) -> None:
        """One refresh: the script's clock on (if it `runs`), the building as its day has it then,
        the site's snapshot and the view."""
        self._next_tick = max(self._next_tick + REFRESH_S, time.monotonic())
        time.sleep(max(0.0, self._next_tick - time.monotonic()))
        now = time.monotonic()
        if runs:
            self._hour += (now - self._ticked) * self.speed / HOUR_S
        self._ticked = now
        building = self.site.set_hour(self.hour()) if self.moved() else None
        self.snap = self.request("site")
        self.peak_a = [max(p, a) for p, a in zip(self.peak_a, self.snap["total_a"])]
        over_s = self.snap["violations"]["seconds_over"]
        if over_s > self._over_seen_s and now - self._rose_s <= BUILDING_GRACE_S:
            self.over_after_rise_s += over_s - self._over_seen_s
        self._over_seen_s = over_s
        self.log({"kind": "site", "hour": round(self.hour(), 3), "step": self.caption, **self.snap,
                  **({"building_set": building} if building else {})})
        self.view.update(self)

    def moved(self) -> bool:
        """The building's day has moved on enough to set it again."""
        now = building_at(self.site.spec["building"], self.hour())
        if max(abs(a - b) for a, b in zip(now, self._building)) < BUILDING_STEP_A:
            return False
        if any(a > b for a, b in zip(now, self._building)):
            self._rose_s = time.monotonic()
        self._building = now
        return True


def gun_table(day: SiteDay) -> Table:
    snap, limit = day.snap, day.site.limit_a
    site = [f"{hhmm(day.hour())}   connection"]
    for p, amps in enumerate(snap["total_a"]):
        site.append((f" {PHASES[p]} {amps:.1f} A", "bold red" if amps > limit else "bold"))
    over = snap["violations"]["seconds_over"]
    caption = Text.assemble(f"{day.caption}\n", *site, f" of {limit:g} A (building "
                            + " ".join(f"{a:.0f}" for a in snap["building_a"]) + " A); over it ",
                            (f"{over:.1f} s", "bold red" if over else "bold"),
                            f"; site bus {snap['line']['frames']} frames, {snap['line']['collisions']} collisions")
    table = Table(title=f"{day.site.name}: a day at the site", caption=caption, caption_justify="left")
    for column in ("controller", "gun", "state", "offered A", "drawn A", "kWh"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for b in snap["boards"]:
        for g in b["guns"]:
            table.add_row(str(b["board"]) if g["gun"] == 1 else "", str(g["gun"]),
                          Text(g["state"], style=STATE_STYLE.get(g["state"][0], "")),
                          f"{g['offered_a']:.1f}", f"{g['amps']:.1f}", f"{g['energy_wh'] / 1000:.2f}")
    return table


class LiveView(demo.LiveView):
    """The one-board day's live table, showing the site's."""

    def update(self, day: SiteDay) -> None:
        self.live.update(gun_table(day))


class PlainView:
    """Without a terminal: each step, and a line when the connection changed (at most every PLAIN_LINE_S)."""

    def __init__(self, terminal: Terminal):
        self.terminal = terminal
        self.last_s = -PLAIN_LINE_S
        self.last_line = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def step_started(self, day: SiteDay) -> None:
        self.say(f"== {day.caption}")

    def update(self, day: SiteDay) -> None:
        if time.monotonic() - self.last_s < PLAIN_LINE_S:
            return
        self.last_s = time.monotonic()
        snap = day.snap
        charging = sum(1 for b in snap["boards"] for g in b["guns"] if g["amps"] > 0)
        total = " ".join(f"{PHASES[p]} {a:.0f}" for p, a in enumerate(snap["total_a"]))
        line = (f"connection {total} A of {day.site.limit_a:g} A, {charging} guns charging, "
                f"over it {snap['violations']['seconds_over']:.1f} s")
        if line != self.last_line:
            self.last_line = line
            self.say(f"{hhmm(day.hour())}  {line}")

    def say(self, line: str) -> None:
        self.terminal.print(line, markup=False, highlight=False, soft_wrap=True)


def print_summary(terminal: Terminal, day: SiteDay) -> None:
    snap, site = day.snap, day.site

    def say(text):
        terminal.print(text, soft_wrap=True)
    elapsed = time.monotonic() - day.started
    say(f"[bold]The day at {site.name}[/] ({len(site.boards)} controllers, {len(day.guns)} guns, a {site.limit_a:g} A "
        f"connection) in {clock(elapsed)}, the site started in {site.start_s:.1f} s:")
    for b in snap["boards"]:
        role = " (coordinator)" if b["board"] == 1 else ""
        energy = sum(g["energy_wh"] for g in b["guns"]) / 1000
        say(f"  controller {b['board']} {b['name']}{role}: {day.plugs.get(b['board'], 0)} sessions, {energy:.2f} kWh")
    v = snap["violations"]
    within = "[bold]never over it[/]" if not v["seconds_over"] else \
        (f"[bold red]over it for {v['seconds_over']:.1f} s[/] (worst {v['worst_over_a']:.1f} A on {v['worst_phase']}), "
         f"{day.over_after_rise_s:.1f} s of it within {BUILDING_GRACE_S:g} s after the building rose (an EV may take "
         f"{BUILDING_GRACE_S:g} s to follow a lower offer, IEC 61851-1 A.5.1)")
    peaks = ", ".join(f"{PHASES[p]} {a:.1f} A" for p, a in enumerate(day.peak_a))
    say(f"  connection: peak {peaks} of {site.limit_a:g} A; {within}")
    say(f"  site bus: {snap['line']['frames']} frames, {snap['line']['collisions']} collisions")


def run(args) -> int:
    """evsectl demo for a site (host_tools/demo.py hands it over)."""
    if not args.speed > 0:
        print(f"evsectl demo: --speed must be a positive number like 1 or 4, not {args.speed}", file=sys.stderr)
        return 2
    if getattr(args, "security_profile", 0):
        print("evsectl demo: a site's day runs without a central system; leave out --security-profile", file=sys.stderr)
        return 2
    terminal = Terminal()
    log_path = Path(args.log or default_log(args.board))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        site = Site(args.board)
    except ValueError as e:
        print(f"evsectl demo: {e}", file=sys.stderr)
        return 2
    try:
        site.start()
        with log_path.open("w") as log_file:
            day = SiteDay(site, log_file, args.speed)
            with LiveView(terminal) if sys.stdout.isatty() else PlainView(terminal) as view:
                day.play(view)
            print_summary(terminal, day)
        terminal.print(f"  log: {log_path}", markup=False, highlight=False)
        if args.forever:
            terminal.print(f"\nThe virtual site keeps running; Ctrl-C ends it.\n  site control (JSON lines over TCP): "
                           f"{site.control_addr}\n" + "".join(
                               f"  controller {k}: serial {vb.serial_path}, rig control {vb.control_addr}\n"
                               for k, vb in enumerate(site.boards, 1)), markup=False, highlight=False, soft_wrap=True)
            while True:
                time.sleep(3600)
        return 0
    except KeyboardInterrupt:
        print("evsectl demo: interrupted; the virtual site is stopped", file=sys.stderr)
        return 130
    except DemoError as e:
        print(f"evsectl demo: {e}", file=sys.stderr)
        return 1
    finally:
        site.stop()
