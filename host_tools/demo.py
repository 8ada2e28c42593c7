"""`evsectl demo` (`make run`): a scripted day at a two-gun AC charger on the virtual board.

The virtual board runs in this process, connected over OCPP 1.6J to the development central
system (`evsectl csms`, a subprocess). The script plays the drivers (cars and RFID cards) through
the rig protocol, the technician through the serial console and the operator through the central
system's API, as people at a real site would, and shows what the rig measures and the OCPP
messages. Pauses scale with --speed; the firmware's own timing is real, so each step first
waits (up to STEP_TIMEOUT_S) for the charger to have done its part, then holds its pause."""

from __future__ import annotations

import io
import json
import re
import tempfile
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from rich.console import Console as Terminal, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from host_tools.console import Console, ConsoleError
from host_tools.csms.client import CsmsError, CsmsProcess
from host_tools.rig import Rig, RigError
from host_tools.sim.supervisor import VirtualBoard

REFRESH_S = 0.25
PLAIN_LINE_S = 1.0          # without a terminal (CI logs): one status line per second
STEP_TIMEOUT_S = 30.0       # real seconds: the firmware does not run faster with --speed
CONSOLE_LINES_SHOWN = 6
OCPP_LINES_SHOWN = 6
OFFER_ROUNDING_A = 0.5      # the duty has 0.1 % steps: an offer of 32 A reads 31.98 A
CAR_1 = {"max_a": 32, "phases": 3, "battery_kwh": 60, "soc": 20}
CAR_2 = {"max_a": 32, "phases": 3, "battery_kwh": 40, "soc": 50}
CARD_1, CARD_2 = "AA11", "BB22"   # cards the development central system accepts
AC8_CARS = [{"max_a": 32, "phases": 3, "battery_kwh": 60, "soc": 20}, {"max_a": 16, "phases": 1, "battery_kwh": 40, "soc": 30},
            {"max_a": 32, "phases": 1, "battery_kwh": 50, "soc": 40}, {"max_a": 32, "phases": 3, "battery_kwh": 75, "soc": 10},
            {"max_a": 16, "phases": 3, "battery_kwh": 40, "soc": 50}, {"max_a": 32, "phases": 3, "battery_kwh": 80, "soc": 25},
            {"max_a": 32, "phases": 1, "battery_kwh": 60, "soc": 35}, {"max_a": 16, "phases": 1, "battery_kwh": 30, "soc": 20}]
AC8_CARDS = ["CAR%d" % n for n in range(1, 9)]
DC_CARS = [{"kind": "dc", "max_kw": 150, "battery_kwh": 60, "soc": 20},
           {"kind": "dc", "max_kw": 50, "battery_kwh": 40, "soc": 30},
           {"kind": "dc", "max_kw": 350, "battery_kwh": 100, "soc": 10},
           {"kind": "dc", "max_kw": 100, "battery_kwh": 75, "soc": 70},
           {"kind": "dc", "max_kw": 120, "battery_kwh": 50, "soc": 25},
           {"kind": "dc", "max_kw": 75, "battery_kwh": 45, "soc": 40}]
FAULT_LINE = re.compile(r"gun (\d+): (fault|cleared) (\S+)$")


class DemoError(RuntimeError):
    pass


@dataclass
class Step:
    caption: str
    action: Callable[[], object] | None    # what the script does as the step starts
    reached: Callable[[list[dict]], bool]  # on the guns as the rig sees them
    waits_for: str                         # what `reached` means, for the timeout message
    hold_s: float                          # script seconds to watch once reached


@dataclass
class Fault:
    gun: int
    code: str
    at_s: float
    cleared_s: float | None = None


@dataclass
class Record:
    """What the closing summary reports, gathered while the day plays."""
    peak_a: dict[int, float] = field(default_factory=dict)
    energy_wh: dict[int, float] = field(default_factory=dict)
    site_peak_a: float = 0.0
    faults: list[Fault] = field(default_factory=list)

    def add_snapshot(self, guns: list[dict]) -> None:
        for g in guns:
            self.peak_a[g["gun"]] = max(self.peak_a.get(g["gun"], 0.0), g["amps"])
            self.energy_wh[g["gun"]] = g["energy_wh"]
        self.site_peak_a = max(self.site_peak_a, drawn_a(guns))

    def add_console_line(self, line: str, at_s: float) -> None:
        """The firmware's own words on faults: `gun 2: fault RCD`, `gun 2: cleared RCD`."""
        match = FAULT_LINE.match(line)
        if not match:
            return
        gun, what, code = int(match.group(1)), match.group(2), match.group(3)
        if what == "fault":
            self.faults.append(Fault(gun, code, at_s))
            return
        for fault in self.faults:
            if fault.gun == gun and fault.code == code and fault.cleared_s is None:
                fault.cleared_s = at_s


def drawn_a(guns: list[dict]) -> float:
    """The site's current on its most loaded phase (the rig's per-phase view of each gun)."""
    return max(site_phase_a(guns))


def site_phase_a(guns: list[dict]) -> list[float]:
    """The site's current on L1, L2, L3: what its fuses see."""
    return [sum(g["phase_amps"][p] for g in guns) for p in range(3)]


def gun_phases(g: dict) -> str:
    """The site phases a gun's EV draws on: `L1 L2 L3`, or `L2` for a one-phase EV on a rotated gun."""
    return " ".join(f"L{p + 1}" for p in range(3) if g["phase_amps"][p] > 0.05) or "-"


def frame_line(f: dict) -> str | None:
    """A CALL as one short line: `charger -> StartTransaction connector 1 AA11`; answers and
    Heartbeats are left out."""
    frame = f["frame"]
    if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == 2) or frame[2] == "Heartbeat":
        return None
    payload = frame[3] if isinstance(frame[3], dict) else {}
    who = "charger -> CSMS" if f["dir"] == "in" else "CSMS -> charger"
    shown = [f"{key} {payload[key]}" for key in ("connectorId", "status", "idTag", "transactionId", "reason",
                                                  "meterStart", "meterStop") if key in payload]
    mark = "" if f["valid"] else "  INVALID: " + f.get("error", "")
    return f"{who}: {frame[2]} {', '.join(shown)}".rstrip() + mark


def clock(seconds: float) -> str:
    return "%d:%02d" % divmod(int(seconds), 60)


class Day:
    """The virtual charger, the rig and the console, and where the script has got to."""

    def __init__(self, vb: VirtualBoard, cs: CsmsProcess, log_file: TextIO, speed: float, secure: Path | None = None):
        self.vb = vb
        self.secure = secure          # the day's PKI: security profile 3 before the day plays (secure_link)
        self.link = "security profile 0 (ws://, no authentication)"
        self._raised_ms = float("inf")   # when SecurityProfile 3 was set (secure_link)
        self.csms = cs.client()
        self.csms_ws = cs.ws
        self.cp_id = vb.board["name"]
        self.ocpp_lines: list[str] = []
        self._frames_since_ms = 0.0
        self.log_file = log_file
        self.speed = speed
        self.site_limit_a = vb.board["site_limit_a"]  # until the firmware tells its configured one
        self.started = time.monotonic()
        self.caption = "the charger boots"
        self.guns: list[dict] = []
        self.console_lines: list[str] = []
        self.record = Record()
        self.rig = Rig(vb.control_addr)
        # Shared: with --forever the user explores the same port with mpremote and evsectl.
        self.console = Console(vb.serial_path, on_event=self._console_line, exclusive=False)
        self._next_tick = time.monotonic()
        self.view: LiveView | PlainView | None = None
        self.screenshot: Path | None = None
        self.log({"kind": "meta", "board": self.cp_id, "site_limit_a": self.site_limit_a, "phases": vb.board["phases"]})

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def script(self) -> list[Step]:
        name = self.vb.board["name"]
        if name == "sim-ac8":
            return self.script_ac8()
        if name == "sim-dc2":
            return self.script_dc2()
        if name == "sim-dc6":
            return self.script_dc6()
        return self.script_ac2()

    def arrive(self, cars: dict[int, dict]) -> None:
        """Cars plug in at these guns, each driver showing card CARn."""
        self.csms.set(tags={f"CAR{n}": {"status": "Accepted"} for n in range(1, 9)})
        for n, ev in cars.items():
            self.rig.plug(gun=n, ev=ev)
            self.rig.rfid(gun=n, id_tag=f"CAR{n}")

    def script_dc2(self) -> list[Step]:
        """Two cars on one 160 kW cabinet of four 40 kW modules."""
        return [
            Step("a car that takes 150 kW plugs in (60 kWh at 20 %); the cabinet gives it all four modules",
                 lambda: self.arrive({1: DC_CARS[0]}), lambda guns: guns[0]["power_w"] > 100_000,
                 "more than 100 kW on gun 1", 15),
            Step("a 50 kW car plugs in at gun 2: one module moves over once gun 1 has ramped down",
                 lambda: self.arrive({2: DC_CARS[1]}),
                 lambda guns: len(guns[0]["modules"]) == 3 and len(guns[1]["modules"]) == 1 and guns[1]["power_w"] > 30_000,
                 "modules 3 and 1, power on gun 2", 20),
            Step("car 1 leaves; car 2 gets a second module for its 50 kW, the others are parked",
                 lambda: self.rig.unplug(gun=1), lambda guns: guns[0]["state"] == "A", "gun 1 in state A", 10),
            Step("car 2 leaves", lambda: self.rig.unplug(gun=2),
                 lambda guns: guns[1]["state"] == "A", "gun 2 in state A", 4),
        ]

    def script_dc6(self) -> list[Step]:
        """Six dispensers on a 360 kW cabinet of twelve 30 kW modules."""
        def powered(guns):
            return sum(1 for g in guns if g["power_w"] > 1000)

        return [
            Step("three cars arrive: the cabinet splits its twelve modules by what each asks",
                 lambda: self.arrive({1: DC_CARS[0], 2: DC_CARS[2], 3: DC_CARS[1]}),
                 lambda guns: powered(guns) >= 3, "three dispensers delivering", 20),
            Step("three more: every dispenser gets modules, moved only after the giving one ramped down",
                 lambda: self.arrive({4: DC_CARS[3], 5: DC_CARS[4], 6: DC_CARS[5]}),
                 lambda guns: powered(guns) >= 6, "six dispensers delivering", 25),
            Step("the 150 kW car and the 350 kW car leave; their modules go to the others",
                 lambda: (self.rig.unplug(gun=1), self.rig.unplug(gun=2)),
                 lambda guns: guns[0]["state"] == "A" and guns[1]["state"] == "A" and not guns[0]["modules"]
                 and not guns[1]["modules"], "guns 1 and 2 in state A with no module", 20),
            Step("the other cars leave", lambda: [self.rig.unplug(gun=n) for n in (3, 4, 5, 6)],
                 lambda guns: all(g["state"] == "A" for g in guns), "every gun in state A", 4),
        ]

    def script_ac8(self) -> list[Step]:
        """Eight cars under one 63 A fuse: they share per phase, the last ones wait, a cap from
        the central system, and the current follows the cars that leave."""
        site = self.site_limit_a
        self.csms.set(tags={**{card: {"status": "Accepted"} for card in AC8_CARDS}, CARD_1: {"status": "Accepted"}})

        def arrive(guns):
            for n in guns:
                self.rig.plug(gun=n, ev=AC8_CARS[n - 1])
                self.rig.rfid(gun=n, id_tag=AC8_CARDS[n - 1])

        def charging(guns):
            return sum(1 for g in guns if g["amps"] > 0)

        cap = {"connectorId": 0, "csChargingProfiles": {
            "chargingProfileId": 40, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 40}]}}}
        return [
            Step("six cars arrive, single- and three-phase, 16 and 32 A, each with its card",
                 lambda: arrive(range(1, 7)), lambda guns: charging(guns) >= 6, "six cars charging", 20),
            Step(f"two more: eight cars share the {site} A fuse per phase",
                 lambda: arrive((7, 8)), lambda guns: charging(guns) >= 7 and drawn_a(guns) > site * 0.8,
                 "seven or eight cars charging", 25),
            Step("the operator caps the charger at 40 A per phase (ChargePointMaxProfile)",
                 lambda: (self.csms.call("SetChargingProfile", cap, cp=self.cp_id), self.mark_cap(40)),
                 lambda guns: drawn_a(guns) <= 40, "the site under 40 A per phase", 15),
            Step("the cap is cleared; three three-phase cars leave and the others take their current",
                 lambda: (self.csms.call("ClearChargingProfile", {"id": 40}, cp=self.cp_id), self.mark_cap(None),
                          [self.rig.unplug(gun=n) for n in (1, 4, 6)]),
                 lambda guns: all(guns[n - 1]["state"] == "A" for n in (1, 4, 6)) and drawn_a(guns) > 40,
                 "guns 1, 4, 6 in state A and more than 40 A drawn", 20),
            Step("the other cars leave",
                 lambda: [self.rig.unplug(gun=n) for n in (2, 3, 5, 7, 8)],
                 lambda guns: all(g["state"] == "A" for g in guns), "every gun in state A", 4),
        ]

    def script_ac2(self) -> list[Step]:
        car_2_alone_a = min(CAR_2["max_a"], self.site_limit_a)
        return [
            Step(f"car 1 plugs in (32 A three-phase, 60 kWh at 20 %); its driver shows card {CARD_1}",
                 lambda: (self.rig.plug(gun=1, ev=CAR_1), self.rig.rfid(gun=1, id_tag=CARD_1)),
                 lambda guns: guns[0]["amps"] > 0, "current on gun 1", 25),
            Step(f"car 2 plugs in, card {CARD_2}; both share the {self.site_limit_a} A site limit",
                 lambda: (self.rig.plug(gun=2, ev=CAR_2), self.rig.rfid(gun=2, id_tag=CARD_2)),
                 lambda guns: guns[0]["amps"] > 0 and guns[1]["amps"] > 0, "current on both guns", 30),
            Step("car 1 leaves; its transaction ends, gun 2 gets the current it frees",
                 lambda: self.rig.unplug(gun=1),
                 lambda guns: (guns[0]["state"] == "A"
                               and guns[1]["offered_a"] >= car_2_alone_a - OFFER_ROUNDING_A),
                 f"gun 1 in state A and gun 2 offered {car_2_alone_a} A", 15),
            Step("gun 2: the RCD trips (residual current)",
                 lambda: self.rig.rcd_trip(gun=2),
                 lambda guns: not guns[1]["contactor"] and guns[1]["amps"] == 0, "gun 2's contactor to open", 8),
            Step("the technician types `fault clear 2` on the console",
                 lambda: self.console_command("fault clear 2"),
                 lambda guns: guns[1]["amps"] > 0, "current on gun 2 again", 15),
            Step("the operator stops gun 2's transaction from the central system (RemoteStopTransaction)",
                 self.remote_stop_gun_2,
                 lambda guns: guns[1]["amps"] == 0 and not guns[1]["contactor"], "gun 2's contactor to open", 4),
            Step("car 2 leaves",
                 lambda: self.rig.unplug(gun=2),
                 lambda guns: guns[1]["state"] == "A", "gun 2 in state A", 4),
        ]

    def remote_stop_gun_2(self) -> None:
        active = [t for t in self.csms.transactions(self.cp_id) if t["active"] and t["connectorId"] == 2]
        if not active:
            raise DemoError("the central system knows no transaction on gun 2 to stop")
        reply = self.csms.call("RemoteStopTransaction", {"transactionId": active[0]["transactionId"]}, cp=self.cp_id)
        if reply.get("payload", {}).get("status") != "Accepted":
            raise DemoError(f"RemoteStopTransaction was not accepted: {reply}")

    def play(self, view: LiveView | PlainView) -> None:
        self.view = view
        self.play_step(Step(self.caption, None, lambda guns: all(g["duty"] is not None for g in guns)
                            and self.ocpp_accepted(), "pilot driven and BootNotification accepted", 3))
        self.site_limit_a = self.console.status_json()["site_limit_a"]
        if self.secure:
            self.play_step(Step("the central system signs the charger's certificate; security profile 3",
                                self.secure_link, lambda guns: self.profile_3(), "a connection with its certificate", 1))
        steps = self.script()
        for number, step in enumerate(steps, 1):
            self.caption = f"step {number}/{len(steps)}: {step.caption}"
            self.play_step(step)
        # The last StopTransactions wait for the meters' next reading (about 1.5 s).
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while any(t["active"] for t in self.csms.transactions(self.cp_id)) and time.monotonic() < deadline:
            self.tick()

    def play_step(self, step: Step) -> None:
        self.view.step_started(self)
        if step.action is not None:
            step.action()
        deadline = time.monotonic() + STEP_TIMEOUT_S
        self.tick()
        while not step.reached(self.guns):
            if time.monotonic() > deadline:
                raise DemoError(f"{self.caption}: no {step.waits_for} within {STEP_TIMEOUT_S:.0f} s; "
                                f"the rig sees {self.guns}; the console said: {self.console_lines[-3:]}")
            self.tick()
        hold_until = time.monotonic() + step.hold_s / self.speed
        while time.monotonic() < hold_until:
            self.tick()

    def tick(self) -> None:
        """One refresh: wait for its time, then the rig's snapshot, the console, the view."""
        self._next_tick = max(self._next_tick + REFRESH_S, time.monotonic())
        time.sleep(max(0.0, self._next_tick - time.monotonic()))
        snapshot = self.rig.snapshot()
        self.guns = snapshot["guns"]
        self.record.add_snapshot(self.guns)
        self.log({"kind": "snapshot", "t_ms": snapshot["t_ms"], "step": self.caption, "guns": self.guns})
        self.console.poll()
        self.poll_ocpp()
        self.view.update(self)
        if self.screenshot and all(g["amps"] > 15 for g in self.guns):
            save_screenshot(self, self.screenshot)  # both cars sharing: the picture for the docs
            self.screenshot = None

    def mark_cap(self, limit_a: float | None) -> None:
        """The central system's cap on the charger from now (None: cleared), on the rig's clock,
        for the report to draw."""
        self.log({"kind": "cap", "t_ms": self.rig.request("snapshot")["t_ms"], "limit_a": limit_a})

    def secure_link(self) -> None:
        """ExtendedTriggerMessage SignChargePointCertificate: the charger sends the request made
        for its key (evsectl cert), the central system signs it (CertificateSigned); then
        SecurityProfile 3, and the charger connects again showing the certificate."""
        root = (self.secure / "cp-ca.pem").read_text()   # what the charger's certificate will chain to
        reply = self.csms.call("InstallCertificate", {"certificateType": "CentralSystemRootCertificate",
                                                      "certificate": root}, cp=self.cp_id)
        if reply.get("payload") != {"status": "Accepted"}:
            raise DemoError(f"the charger would not install the site's root certificate: {reply}")
        t = self.csms.now_ms()
        reply = self.csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}, cp=self.cp_id)
        if reply.get("payload") != {"status": "Accepted"}:
            raise DemoError(f"the charger would not send its certificate request: {reply}")
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not self.csms.answered("CertificateSigned", {"status": "Accepted"}, self.cp_id, t):
            if time.monotonic() > deadline:
                raise DemoError("the charger did not take the certificate the central system signed")
            self.tick()
        self._raised_ms = self.csms.now_ms()
        reply = self.csms.call("ChangeConfiguration", {"key": "SecurityProfile", "value": "3"}, cp=self.cp_id)
        if reply.get("payload") != {"status": "Accepted"}:
            raise DemoError(f"SecurityProfile 3 refused: {reply}")

    def profile_3(self) -> bool:
        cp = next((p for p in self.csms.charge_points() if p["id"] == self.cp_id), None)
        if cp is None or not cp["connected"] or cp["client_cert"] != self.cp_id or (cp["boot_ms"] or 0) < self._raised_ms:
            return False
        self.link = f"security profile 3 (wss://, the central system checked, the charger's certificate {cp['client_cert']!r} shown)"
        return True

    def ocpp_accepted(self) -> bool:
        return any(p["id"] == self.cp_id and p["connected"] and p["boot_status"] == "Accepted"
                   for p in self.csms.charge_points())

    def poll_ocpp(self) -> None:
        """The frames the central system logged since the last poll, one line per CALL."""
        frames = self.csms.frames(self.cp_id, since_ms=self._frames_since_ms)
        for f in frames:
            self._frames_since_ms = max(self._frames_since_ms, f["t_ms"])
            line = frame_line(f)
            if line:
                self.ocpp_lines.append(line)
                self.log({"kind": "ocpp", "t_ms": f["t_ms"], "line": line, "valid": f["valid"]})

    def console_command(self, line: str) -> None:
        self._console_line(f"> {line}")
        for answer in self.console.command(line):
            self._console_line(answer)

    def _console_line(self, line: str) -> None:
        self.console_lines.append(line)
        self.record.add_console_line(line, self.elapsed_s())

    def log(self, entry: dict) -> None:
        self.log_file.write(json.dumps(entry) + "\n")
        self.log_file.flush()

    def finish(self) -> list[dict]:
        """The rig's events into the log; returns them."""
        events = self.rig.events(since_ms=0)["events"]
        for event in events:
            self.log({"kind": "event", **event})
        return events

    def close(self) -> None:
        self.console.close()
        self.rig.close()
        self.csms.close()


# ---- what the person watching sees ------------------------------------------------------------
STATE_STYLE = {"A": "dim", "B": "yellow", "C": "bold green", "D": "green", "E": "bold red", "F": "bold red"}


def gun_table(day: Day) -> Table:
    phases = site_phase_a(day.guns)
    site = [f"{clock(day.elapsed_s())}   site"]
    for p, amps in enumerate(phases):
        site.append((f" L{p + 1} {amps:.1f} A", "bold red" if amps > day.site_limit_a else "bold"))
    # The caption wraps at the table's width, as the table is narrower than a wide terminal.
    caption = Text.assemble(f"{day.caption}\n", *site, f" of {day.site_limit_a} A per phase")
    table = Table(title=f"{day.vb.board['name']}: a day at the charger", caption=caption,
                  caption_justify="left")
    dc = day.vb.board["kind"] == "dc"
    columns = (("gun", "state", "modules", "limit kW", "asks kW", "kW", "SoC %", "kWh") if dc else
               ("gun", "state", "duty %", "offered A", "drawn A", "on", "kW", "kWh"))
    for column in columns:
        table.add_column(column, justify="left" if column == "state" else "right")
    for g in day.guns:
        state = Text(g["state"] + (f" ({g['fault']})" if g["fault"] else ""),
                     style="bold red" if g["fault"] else STATE_STYLE.get(g["state"][0], ""))
        if dc:
            asks = "-" if g["ev_target_w"] is None else f"{g['ev_target_w'] / 1000:.0f}"
            soc = "-" if g["soc"] is None else f"{g['soc']:.0f}"
            table.add_row(str(g["gun"]), state, " ".join(str(m) for m in g["modules"]) or "-",
                          f"{g['dc_limit_w'] / 1000:.0f}", asks, f"{g['power_w'] / 1000:.1f}", soc,
                          f"{g['energy_wh'] / 1000:.2f}")
            continue
        duty = "-" if g["duty"] in (None, 0.0, 100.0) else f"{g['duty']:.1f}"
        table.add_row(str(g["gun"]), state, duty, f"{g['offered_a']:.1f}", f"{g['amps']:.1f}", gun_phases(g),
                      f"{g['power_w'] / 1000:.1f}", f"{g['energy_wh'] / 1000:.2f}")
    return table


def live_view(day: Day, height: int | None = None) -> Group:
    """The table, then the OCPP and console panels; in a terminal of `height` rows the panels
    get what the table leaves (an 80 x 24 one shows every part, with fewer lines each)."""
    shown_ocpp, shown_console = OCPP_LINES_SHOWN, CONSOLE_LINES_SHOWN
    if height is not None:
        table_rows = len(day.guns) + 7   # title, header, rules, two caption lines
        spare = max(2, (height - table_rows - 4) // 2)   # each panel has two border rows
        shown_ocpp, shown_console = min(shown_ocpp, spare), min(shown_console, spare)
    # The board reaches the central system through the virtual board's uplink (its link can be
    # cut and delayed by the rig op `net`): so the two addresses differ.
    console = Panel(Text("\n".join(day.console_lines[-shown_console:]), no_wrap=True, overflow="ellipsis"),
                    title=f"console {day.vb.serial_path}", title_align="left")
    ocpp = Panel(Text("\n".join(day.ocpp_lines[-shown_ocpp:]), no_wrap=True, overflow="ellipsis"),
                 title=f"OCPP 1.6J, central system {day.csms_ws} (the board reaches it through the rig's uplink)",
                 title_align="left")
    return Group(gun_table(day), ocpp, console)


def save_screenshot(day: Day, path: Path) -> None:
    shot = Terminal(record=True, width=92, file=io.StringIO())
    shot.print(live_view(day))
    shot.save_svg(str(path), title="make run")


class LiveView:
    """A table that refreshes in place, with the last console lines under it."""

    def __init__(self, terminal: Terminal):
        self.live = Live(console=terminal, refresh_per_second=1 / REFRESH_S)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)

    def step_started(self, day: Day) -> None:
        pass  # the table's caption names the step

    def update(self, day: Day) -> None:
        self.live.update(live_view(day, self.live.console.size.height))


class PlainView:
    """Without a terminal: one plain line per second, and each step and console line as it comes."""

    def __init__(self, terminal: Terminal):
        self.terminal = terminal
        self.printed_lines = 0
        self.printed_ocpp = 0
        self.last_line_s = -PLAIN_LINE_S
        self.last_guns = None   # a line only when the guns changed: a CI log is read, not watched

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def step_started(self, day: Day) -> None:
        self.say(f"== {clock(day.elapsed_s())} {day.caption}")

    def update(self, day: Day) -> None:
        for line in day.console_lines[self.printed_lines:]:
            self.say(f"   console: {line}")
        self.printed_lines = len(day.console_lines)
        for line in day.ocpp_lines[self.printed_ocpp:]:
            self.say(f"   ocpp: {line}")
        self.printed_ocpp = len(day.ocpp_lines)
        now_s = day.elapsed_s()
        if now_s - self.last_line_s < PLAIN_LINE_S:
            return
        self.last_line_s = now_s
        # Whole amps and kW: the line changes when the guns do, not with every tenth of an amp.
        if day.vb.board["kind"] == "dc":
            guns = " | ".join(f"gun {g['gun']} {g['state']:<3} {len(g['modules'])} mod {g['power_w'] / 1000:4.0f} kW"
                              for g in day.guns)
        else:
            guns = " | ".join(f"gun {g['gun']} {g['state']:<5} offer {g['offered_a']:3.0f} A drawn {g['amps']:3.0f} A "
                              f"{gun_phases(g)}" for g in day.guns)
        site = " ".join(f"L{p + 1} {a:.0f}" for p, a in enumerate(site_phase_a(day.guns)))
        line = f"{guns} | site {site} A of {day.site_limit_a} A"
        if line != self.last_guns:
            self.last_guns = line
            self.say(f"{clock(now_s)}  {line}")

    def say(self, line: str) -> None:
        self.terminal.print(line, markup=False, highlight=False, soft_wrap=True)


def print_summary(terminal: Terminal, day: Day, events: list[dict]) -> None:
    record = day.record

    def say(text):
        terminal.print(text, soft_wrap=True)   # one line each, however wide the terminal
    pace = "the script's pauses at their real length" if day.speed == 1 else \
        f"the script's pauses {day.speed:g} x shorter; the firmware's own timing is real"
    say(f"[bold]The day in {clock(day.elapsed_s())}[/] (--speed {day.speed:g}: {pace}):")
    for gun in sorted(record.peak_a):
        sessions = sum(1 for e in events if e["what"] == "plug" and e["gun"] == gun)
        say(f"  gun {gun}: {sessions} session{'s' if sessions != 1 else ''}, "
            f"{record.energy_wh[gun] / 1000:.2f} kWh delivered, peak {record.peak_a[gun]:.1f} A")
    within = "within" if record.site_peak_a <= day.site_limit_a else "[bold red]ABOVE[/]"
    say(f"  site: peak {record.site_peak_a:.1f} A, {within} the {day.site_limit_a} A limit")
    for t in day.csms.transactions(day.cp_id):
        energy = "" if t["meterStop"] is None else f", {(t['meterStop'] - t['meterStart']) / 1000:.2f} kWh"
        ended = "still running" if t["active"] else f"stopped: {t['reason'] or 'Local'}"
        say(f"  OCPP transaction {t['transactionId']}: connector {t['connectorId']}, card {t['idTag']}{energy}, {ended}")
    say(f"  OCPP link: {day.link}")
    invalid = day.csms.invalid_frames(day.cp_id)
    say(f"  OCPP frames from the charger: {'all valid' if not invalid else f'[bold red]{len(invalid)} INVALID[/]'}"
        " against the OCPP 1.6 schemas")
    if not record.faults:
        say("  faults: none")
    for fault in record.faults:
        cleared = "not cleared" if fault.cleared_s is None else f"cleared at {clock(fault.cleared_s)}"
        say(f"  fault: gun {fault.gun} {fault.code} at {clock(fault.at_s)}, {cleared}")


def print_hand_over(terminal: Terminal, vb: VirtualBoard, cs: CsmsProcess) -> None:
    host, port = vb.control_addr.rsplit(":", 1)
    terminal.print(
        "\nThe virtual charger keeps running; Ctrl-C ends it.\n"
        f"  central system: OCPP at {cs.ws}, API (JSON lines over TCP) at {cs.api}\n"
        f"    printf '{{\"op\": \"transactions\"}}\\n' | nc -q1 {cs.api.replace(':', ' ')}\n"
        f"  serial console: {vb.serial_path}\n"
        f"    mpremote connect {vb.serial_path} exec \"print(6*7)\"\n"
        "    (mpremote stops the charger application; Ctrl-D at the REPL starts it again)\n"
        f"  rig control (JSON lines over TCP): {vb.control_addr}\n"
        f"    printf '{{\"op\": \"plug\", \"gun\": 1}}\\n' | nc -q1 {host} {port}\n"
        f"    .venv/bin/python -c \"from host_tools.rig import Rig; print(Rig('{vb.control_addr}').guns())\"",
        markup=False, highlight=False, soft_wrap=True)


def default_log(board: str) -> Path:
    """run-out/BOARD/session.jsonl: each board keeps its day (log, report, screenshot)."""
    return Path("run-out") / Path(board).stem / "session.jsonl"


def run(args) -> int:
    from host_tools.sim.site import site_path
    if site_path(args.board) is not None:   # a site of several controllers: its own day
        from host_tools import site_demo
        return site_demo.run(args)
    if not args.speed > 0:
        print(f"evsectl demo: --speed must be a positive number like 1 or 4, not {args.speed}", file=sys.stderr)
        return 2
    terminal = Terminal()
    log_path = Path(args.log or default_log(args.board))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    secure = getattr(args, "security_profile", 0) == 3
    pki = tempfile.TemporaryDirectory(prefix="evse-demo-pki-") if secure else None
    if secure:
        from host_tools.certs import site_pki
        from host_tools.sim.supervisor import load_board
        cs = CsmsProcess(*site_pki(Path(pki.name), load_board(args.board)["name"]))
    else:
        cs = CsmsProcess()
    vb = None
    day = None
    try:
        if secure:
            put = [str(Path(pki.name) / n) for n in ("ca.der", "cp.key", "cp.csr")]
            vb = VirtualBoard(args.board, csms_url=cs.ws, put=put,
                              config={"ocpp_ca": "ca.der", "ocpp_key": "cp.key", "ocpp_csr": "cp.csr"}).start()
        else:
            vb = VirtualBoard(args.board, csms_url=cs.ws).start()
        with log_path.open("w") as log_file:
            day = Day(vb, cs, log_file, args.speed, Path(pki.name) if secure else None)
            day.screenshot = log_path.parent / "make-run.svg"
            with LiveView(terminal) if sys.stdout.isatty() else PlainView(terminal) as view:
                day.play(view)
            print_summary(terminal, day, day.finish())
        from host_tools.report import report_line  # matplotlib loads only once the day has played
        terminal.print(f"  report: {report_line(log_path)}", markup=False, highlight=False)
        if args.forever:
            day.close()  # the serial port is the user's now
            day = None
            print_hand_over(terminal, vb, cs)
            while True:
                time.sleep(3600)
        return 0
    except KeyboardInterrupt:
        print("evsectl demo: interrupted; the virtual board is stopped", file=sys.stderr)
        return 130
    except (DemoError, RigError, ConsoleError, CsmsError) as e:
        print(f"evsectl demo: {e}", file=sys.stderr)
        return 1
    finally:
        if day is not None:
            day.close()
        if vb is not None:
            vb.stop()
        cs.stop()
        if pki is not None:
            pki.cleanup()
