"""The hardware around the virtual board's MCU: per gun a socket with a plug and cable, an EV
(AC: an onboard charger; DC: a battery that asks for power and tapers), a contactor with its
feedback contact, an RCD, a temperature sensor; on a DC board the cabinet's power modules and
their contactor matrix; and mains power.

The firmware reaches it through `hal/sim.py` (see `hal_request`); the rig control server and
people reach it through the ops in `host_tools.sim.control`. All times are the world's
monotonic milliseconds, so the rig's event log measures latencies the way a real rig would."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from host_tools.sim import power_modules
from host_tools.sim.modbus import FAULTS as METER_FAULTS

VOLTS_PER_PHASE = 230.0
# EV-side pilot levels (mV) seen on the high plateau, IEC 61851-1 Table A.4.
EV_LEVEL_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000, "E": 0, "F": -12000}
# Cable rating -> PP resistor, IEC 61851-1 Table B.2.
PILOT_ADC_GAIN = 0.1237       # the virtual board's pilot front end: mV at the ADC per mV of pilot ...
PILOT_ADC_OFFSET_MV = 1662    # ... and at 0 V (nominal 0.125 and 1650: the parts are off a little)
PP_OHMS = {13: 1500, 20: 680, 32: 220, 63: 100}
PP_OPEN_OHMS = 1_000_000
EV_SEES_PWM_MS = 500          # an EV needs this long to read a new duty
EV_STOPS_IN_C1_MS = 1500      # an EV opens S2 (C -> B) this long after the PWM is withdrawn
DC_VOLTS = 400.0              # a DC EV's battery voltage (for the DC current and the DC meter)
DC_RAMP_W_PER_S = 50_000.0    # a dispenser's converters change their power at most this fast
DC_TAPER_FROM_SOC = 80.0      # a DC EV asks its full power up to this SoC ...
DC_TAPER_TO = 0.2             # ... then less, linearly, down to this share of it at 100 %
DC_LOG_STEP_W = 1000.0        # a settled DC power this far from the last one logged is logged
DC_PRECHARGE_TOL_V = 20.0     # a DC EV closes its contactors within this of its battery (DIN 70121)
DC_OPEN_BELOW_A = 5.0         # ... and opens them below this current; above it: a break under load
DC_SLEW_V_PER_MS = 4.0        # the modules' output voltage changes this fast
IMD_SELF_TEST_MS = 1000.0     # the insulation monitor's self-test takes this long


def is_digital(duty_pm: int) -> bool:
    """5 %: digital communication (ISO 15118 / DIN 70121), IEC 61851-1 Table A.8 (3-7 %)."""
    return 30 <= duty_pm <= 70


def duty_to_amps(duty_pm: int) -> float:
    """The EV's reading of the pilot duty, IEC 61851-1 Table A.8."""
    if duty_pm < 80 or duty_pm > 970:
        return 0.0
    if duty_pm < 100:
        return 6.0
    if duty_pm <= 850:
        return duty_pm * 0.06
    if duty_pm <= 960:
        return (duty_pm / 10 - 64) * 2.5
    return 80.0


@dataclass
class EV:
    """An AC EV: onboard charger, battery, and how it reacts to the pilot."""

    max_a: float = 32.0
    phases: int = 3
    battery_kwh: float = 60.0
    soc: float = 30.0             # percent
    target_soc: float = 100.0
    response_s: float = 2.0       # 0-5 s to follow a new PWM offer (IEC 61851-1 A.5.1)
    start_delay_s: float = 1.0    # slow start: time from seeing PWM to asking for energy (B -> C)
    sleepy: bool = False          # asks only after a wake-up (PWM withdrawn, then offered again)
    ventilation: bool = False     # asks in state D instead of C
    force_a: float | None = None  # draws this much whatever the pilot says (a faulty EV)
    kind: str = "ac"              # "dc": charges through a DC gun, asking for power over the 5 % pilot
    max_kw: float = 150.0         # DC: the most power the battery takes (below 80 % SoC)
    battery_v: float = 400.0      # DC: the battery's voltage
    max_v: float = 450.0          # DC: the most voltage the EV takes (its ChargeParameterDiscovery)

    FIELDS = ("max_a", "phases", "battery_kwh", "soc", "target_soc", "response_s",
              "start_delay_s", "sleepy", "ventilation", "force_a", "kind", "max_kw", "battery_v", "max_v")

    def dc_target_w(self) -> float:
        """The power a DC EV asks for: max_kw up to 80 % SoC, then down linearly to 20 % of
        it at 100 %; nothing at or above target_soc."""
        if self.soc >= self.target_soc:
            return 0.0
        share = 1.0
        if self.soc > DC_TAPER_FROM_SOC:
            share -= (1 - DC_TAPER_TO) * (self.soc - DC_TAPER_FROM_SOC) / (100 - DC_TAPER_FROM_SOC)
        return self.max_kw * 1000 * share

    def update(self, params: dict) -> None:
        """Apply parameters all or nothing: a bad one leaves the EV as it was."""
        if not isinstance(params, dict):
            raise ValueError(f"EV parameters must be an object like {{\"max_a\": 16}}, not {params!r}")
        trial = EV(**{k: getattr(self, k) for k in self.FIELDS})
        trial._apply(params)
        for key in self.FIELDS:
            setattr(self, key, getattr(trial, key))

    def _apply(self, params: dict) -> None:
        for key, value in params.items():
            if key not in self.FIELDS:
                raise ValueError(f"unknown EV parameter '{key}'; known: {', '.join(self.FIELDS)}")
            current = getattr(self, key)
            if key == "force_a":
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not 0 <= value <= 200):
                    raise ValueError(f"EV parameter force_a must be null or 0..200 A, not {value!r}")
                value = None if value is None else float(value)
            elif key == "kind":
                if value not in ("ac", "dc"):
                    raise ValueError(f"EV parameter kind must be \"ac\" or \"dc\", not {value!r}")
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"EV parameter {key} must be true or false, not {value!r}")
            elif key == "phases":
                if value not in (1, 2, 3):
                    raise ValueError(f"EV parameter phases must be 1, 2 or 3, not {value!r}")
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"EV parameter {key} must be a number >= 0, not {value!r}")
                if key in ("soc", "target_soc") and value > 100:
                    raise ValueError(f"EV parameter {key} must be 0..100 %, not {value!r}")
                if key in ("battery_kwh", "max_a", "max_kw") and value == 0:
                    raise ValueError(f"EV parameter {key} must be above 0")
                if key in ("battery_v", "max_v") and not 150 <= value <= 1000:
                    raise ValueError(f"EV parameter {key} must be 150..1000 V, not {value!r}")
                if key == "response_s" and value > 5:
                    raise ValueError("EV parameter response_s must be 0..5 s (IEC 61851-1 A.5.1)")
                value = float(value)
            setattr(self, key, value)


@dataclass
class Gun:
    number: int
    has_pp: bool = True
    plugged: bool = False
    cable_a: int = 32
    ev: EV | None = None
    forced_state: str | None = None   # rig forces the EV side to a letter
    ev_letter: str = "A"              # the EV's own S2 choice: B or C/D
    diode_fault: bool = False
    duty_pm: int = -1                 # -1: not driven (firmware off)
    drive: bool = False               # the firmware's coil driver output
    coil: bool = False                # current through the coil: the driver's, unless the interlock cuts it
    coil_ms: float = -1e9             # when the coil last changed (for the mirror contact's timing)
    coil_was_on_ms: float = 0.0       # how long it had been energised when it was last released
    welded: bool = False
    contacts: bool = False            # main contacts, physically
    rcd_tripped: bool = False
    rcd_test_fails: bool = False
    rcd_test_passed: bool | None = None
    rcm: str = "ok"                   # the RCD module: "ok", "dead" (never trips), "stuck" (always tripped)
    temperature_c: float = 25.0
    amps: float = 0.0                 # per phase, drawn through the contacts
    energy_wh: float = 0.0
    target_a: float = 0.0
    target_at_ms: float = 0.0
    pwm_since_ms: float | None = None
    pwm_lost_ms: float | None = None
    saw_x1: bool = False              # a sleepy EV saw the PWM withdrawn
    last_letter: str = "A"
    meter_fault: str | None = None    # how the gun's Modbus meter misbehaves (modbus.FAULTS)
    dc_limit_w: int = 0               # DC: the power limit the firmware gave the dispenser
    dc_w: float = 0.0                 # DC: the power the dispenser delivers
    dc_ramping: bool = False          # DC: still on its way to what it may deliver
    dc_logged_w: float = 0.0          # DC: the power last logged as a dc_power event
    phases_on: int = 3                # a gun with a phase contactor: 1 while it leaves L2 and L3 open
    # DC through the IEC 61851-23 sequence (a cabinet on CAN):
    ev_phase: str | None = None       # what the EV asks for: cable_check, precharge, charge, stop
    ev_contactor: bool = False        # the EV's own contactors onto its battery
    out_v: float = 0.0                # the voltage at the gun (the cable side of the DC contactors)
    evse_state: str = "idle"          # the charger's sequence step, as it tells the EV (HAL H)
    evse_isolation: str | None = None  # ... and the cable check's result
    insulation_kohm: float = 5000.0   # the cable's insulation to PE (rig op insulation)
    imd_on: bool = False              # the insulation monitor measures (HAL O)
    imd_test_ms: float | None = None  # its self-test, running since
    imd_test_fails: bool = False      # rig op insulation self_test_fails
    imd_fault: str | None = None      # a Modbus monitor's line fault (rig op insulation imd_fault)


class World:
    def __init__(self, board: dict):
        self.board = board
        self.guns = [Gun(i + 1, has_pp=bool(g.get("pp", False))) for i, g in enumerate(board["guns"])]
        self.lock = threading.RLock()
        self.t0 = time.monotonic()
        self.events: list[dict] = []
        self.powered = True
        self.firmware_running = False
        self.watchdog_ms = 0
        self.watchdog_fed_ms = 0.0
        self.net_up = True
        self.stall_ms = 0  # the firmware's next HAL request is answered this much later (rig op stall)
        # A board with a hardware interlock (board file "interlock": true): the coil driver is
        # enabled only while the pilot shows C or D and the RCD module is quiet.
        self.interlock = bool(board.get("interlock", False))
        # The emergency stop (board file "estop": true): its normally-closed contact is in series
        # with every contactor coil's supply, and a second contact is the firmware's input.
        self.has_estop = bool(board.get("estop", False))
        self.estop = False
        self.rcm_raised = lambda g: g.rcd_tripped or g.rcm == "stuck"  # an MCU front end sets its own
        self.swipes: list[tuple[int, str]] = []  # cards held to a reader, not yet read
        # A DC board's cabinet: where each power module is switched (a dispenser, 0 = parked).
        self.dc = board.get("kind") == "dc"
        cabinet = board.get("cabinet") or {}
        self.module_kw = float(cabinet.get("module_kw", 0))
        self.modules: list[int] = [0] * int(cabinet.get("modules", 0)) if self.dc else []
        # Its power modules on a CAN bus (board file cabinet.can): their setpoints, not the HAL's
        # power limit (op L), set what a dispenser can deliver.
        self.can = power_modules.Bus(power_modules.modules_for(board)) if self.dc and cabinet.get("can") else None
        # The building behind the site's connection (board file "grid_meter"): its load per site
        # phase, and the fault of the meter at the connection point (rig op grid).
        self.building_a = [0.0, 0.0, 0.0]
        self.pv_w = 0.0   # solar panels behind the connection: spread over the three phases
        self.grid_meter_fault: str | None = None
        # A site of several controllers behind one connection (host_tools/sim/site.py): what the
        # other controllers' guns draw per site phase, which this board's grid meter sees too.
        self.site_guns = None   # callable -> [L1, L2, L3] amps, or None on a board alone
        self.matrix = None   # a DC cabinet's contactor matrix on Modbus I/O modules (host_tools/sim/modbus.py IoMatrix)
        self._last_step_ms = self.now_ms()

    # ---- clock and log ------------------------------------------------------------------------
    def now_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def log(self, gun: int, what: str, value) -> None:
        self.events.append({"t_ms": round(self.now_ms(), 1), "gun": gun, "what": what, "value": value})
        if len(self.events) > 20000:
            del self.events[:5000]

    def gun(self, number) -> Gun:
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= len(self.guns):
            raise ValueError(f"gun must be 1..{len(self.guns)}, not {number!r}")
        return self.guns[number - 1]

    # ---- what the EV side shows ----------------------------------------------------------------
    def ev_side_letter(self, g: Gun) -> str:
        if g.forced_state:
            return g.forced_state
        if not g.plugged:
            return "A"
        return g.ev_letter

    def pilot_levels(self, g: Gun) -> tuple[int, int]:
        """High and low plateau in mV as the EVSE's pilot input measures them."""
        if g.duty_pm <= 0 or not self.powered:
            # Not driven, or driven to -12 V: nothing positive on the line.
            level = -12000 if g.duty_pm == 0 and self.powered else 0
            return level, level
        letter = self.ev_side_letter(g)
        high = EV_LEVEL_MV[letter]
        if letter in ("E", "F"):
            return high, high
        if g.duty_pm >= 1000:
            return high, high
        low = -12000
        if g.diode_fault and letter in "BCD":
            low = -high  # no diode: the EV's resistor loads the negative half too
        return high, low

    def rig_state(self, g: Gun) -> str:
        letter = self.ev_side_letter(g)
        if g.duty_pm == 0:
            return "F"
        if g.duty_pm < 0 or not self.powered:
            return letter  # the pilot is not driven: no 1/2 to tell
        if letter in "BC":
            return letter + ("2" if 0 < g.duty_pm < 1000 else "1")
        return letter

    # ---- physics -------------------------------------------------------------------------------
    def step(self) -> None:
        with self.lock:
            now = self.now_ms()
            dt_ms = now - self._last_step_ms
            self._last_step_ms = now
            if self.can is not None:
                self._step_modules(now)
            for g in self.guns:
                self._step_gun(g, now, dt_ms)
            if self.can is not None:
                self._module_outputs()
            self.apply_interlock()

    def _step_gun(self, g: Gun, now: float, dt_ms: float) -> None:
        ev = g.ev
        pwm = 0 < g.duty_pm < 1000 and self.powered
        # The EV's S2 switch.
        if g.plugged and ev is not None:
            if pwm:
                g.pwm_lost_ms = None
                if g.pwm_since_ms is None:
                    g.pwm_since_ms = now
                full = ev.soc >= ev.target_soc
                if self.can is not None and ev.kind == "dc" and (
                        g.ev_phase in ("cable_check", "precharge", "charge") or g.ev_contactor):
                    full = False   # a DC EV in a sequence ends it first: it opens, then leaves C (_ev_talks)
                awake = not ev.sleepy or g.saw_x1
                seen = now - g.pwm_since_ms >= max(EV_SEES_PWM_MS, ev.start_delay_s * 1000)
                want = "D" if ev.ventilation else "C"
                if full:
                    g.ev_letter = "B"
                elif awake and seen and (is_digital(g.duty_pm) if ev.kind == "dc" else duty_to_amps(g.duty_pm) > 0):
                    g.ev_letter = want
            else:
                if g.pwm_since_ms is not None:
                    g.saw_x1 = True
                g.pwm_since_ms = None
                if g.ev_letter in "CD":
                    if g.pwm_lost_ms is None:
                        g.pwm_lost_ms = now
                    elif now - g.pwm_lost_ms >= EV_STOPS_IN_C1_MS:
                        g.ev_letter = "B"
        if self.can is not None and ev is not None and ev.kind == "dc":
            self._ev_talks(g, ev)
        letter = self.ev_side_letter(g)
        state = self.rig_state(g)
        if state != g.last_letter:
            g.last_letter = state
            self.log(g.number, "ev_state", state)
        if self.dc:
            self._step_dc(g, letter, dt_ms)
            if self.can is not None:
                self._output_voltage(g, dt_ms)
            return
        # Current: the EV follows the offer after its response time.
        want_a = 0.0
        if ev is not None and g.contacts and letter in "CD" and self.powered:
            if ev.force_a is not None:
                want_a = ev.force_a
            elif pwm:
                want_a = min(ev.max_a, duty_to_amps(g.duty_pm))
                if ev.soc >= 95:  # the onboard charger tapers near full
                    want_a = min(want_a, max(1.0, ev.max_a * (100 - ev.soc) / 5))
        if want_a != g.target_a:
            g.target_a = want_a
            g.target_at_ms = now
        delay = 0.0 if ev is None or ev.force_a is not None else ev.response_s * 1000
        if not g.contacts or letter not in "CD" or not self.powered:
            g.amps = 0.0
        elif now - g.target_at_ms >= delay:
            g.amps = want_a  # the EV has followed the new offer
        if g.amps > 0 and ev is not None:
            watts = g.amps * VOLTS_PER_PHASE * self.phases_drawn(g)
            wh = watts * dt_ms / 3_600_000
            g.energy_wh += wh
            ev.soc = min(100.0, ev.soc + wh / (ev.battery_kwh * 10))

    def modules_on(self, number: int) -> int:
        return sum(1 for d in self.modules if d == number)

    def capacity_w(self, number: int) -> float:
        """What the modules switched to dispenser `number` can deliver (on a CAN cabinet: at their
        setpoints, at the battery's voltage)."""
        if self.can is not None:
            volts = self.dc_volts(self.guns[number - 1])
            return sum(m.deliverable_w(volts) for m in self.can.modules if self.modules[m.number - 1] == number)
        return self.modules_on(number) * self.module_kw * 1000

    def dc_volts(self, g: Gun) -> float:
        """The battery's voltage behind a dispenser (DC_VOLTS without a DC EV)."""
        return g.ev.battery_v if g.ev is not None and g.ev.kind == "dc" else DC_VOLTS

    def _step_modules(self, now: float) -> None:
        """The CAN modules' own clocks (10 s without the controller: off); a dispenser's limit
        is what its modules' setpoints give, logged as dc_limit when it changes."""
        self.can.tick(now / 1000)
        self._log_modules()

    def _log_modules(self) -> None:
        for m in self.can.modules:
            state = (m.on, round(m.set_v, 1), round(m.set_a, 1), m.fault, m.silent)
            if state != getattr(m, "logged", None):
                m.logged = state
                self.log(0, "module_output", {"module": m.number, "on": m.on, "set_v": state[1], "set_a": state[2],
                                              "fault": m.fault, "silent": m.silent})
        for g in self.guns:
            watts = int(self.capacity_w(g.number))
            if watts != g.dc_limit_w:
                g.dc_limit_w = watts
                self.log(g.number, "dc_limit", watts)

    def _module_outputs(self) -> None:
        """What each module reports: its share of its dispenser's power, by what it can give."""
        for m in self.can.modules:
            d = self.modules[m.number - 1]
            g = self.guns[d - 1] if d else None
            can = m.deliverable_w(self.dc_volts(g)) if g is not None else 0.0
            total = self.capacity_w(d) if d else 0.0
            share = g.dc_w * can / total if g is not None and total > 0 else 0.0
            m.out_v = g.out_v if m.on and g is not None and g.contacts else (m.set_v if m.on else 0.0)
            m.out_a = share / self.dc_volts(g) if g is not None else 0.0

    def can_exchange(self, can_id: int, data: bytes) -> list[tuple[int, bytes]]:
        """A frame from the firmware on the cabinet's CAN bus -> the modules' answers."""
        with self.lock:
            answers = self.can.exchange(can_id, data, self.now_ms() / 1000)
            self._log_modules()   # a new setpoint is the dispenser's limit from now on
            return answers

    def module(self, number) -> power_modules.PowerModule:
        if self.can is None:
            raise ValueError(f"board {self.board.get('name')} has no power modules on CAN (board file cabinet.can)")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= len(self.can.modules):
            raise ValueError(f"module must be 1..{len(self.can.modules)}, not {number!r}")
        return self.can.modules[number - 1]

    def modules_state(self) -> list[dict]:
        with self.lock:
            return [{"module": m.number, "address": m.address, "protocol": m.protocol,
                     "dispenser": self.modules[m.number - 1], "on": m.on, "set_v": round(m.set_v, 1),
                     "set_a": round(m.set_a, 2), "out_v": round(m.out_v, 1), "out_a": round(m.out_a, 2),
                     "fault": m.fault, "silent": m.silent, "timed_out": m.timed_out, "frames": m.frames_in}
                    for m in (self.can.modules if self.can is not None else [])]

    def _ev_talks(self, g: Gun, ev: EV) -> None:
        """A DC EV's side of the IEC 61851-23 sequence (the DIN 70121 / ISO 15118-2 requests, as
        far as the charger's sequence sees them) and its own contactors: the cable check; once
        the charger says it is done, the precharge; within 20 V of its battery it closes its
        contactors and asks for current; at its target it asks to stop, and opens its contactors
        below 5 A, then leaves C. No 5 % pilot: it stops talking and opens at once."""
        talking = (self.powered and g.plugged and is_digital(g.duty_pm) and g.ev_letter in "CD"
                   and not g.forced_state)
        phase = g.ev_phase
        if not talking:
            if phase is not None:
                g.ev_phase = None
                self._ev_contactor(g, False)
            return
        if phase is None:
            g.ev_phase = "cable_check"
        elif phase == "cable_check" and g.evse_isolation in ("valid", "warning"):
            g.ev_phase = "precharge"
        elif (phase == "precharge" and g.evse_state == "precharge" and g.contacts
              and abs(g.out_v - ev.battery_v) <= DC_PRECHARGE_TOL_V):
            self._ev_contactor(g, True)
            g.ev_phase = "charge"
        elif phase == "charge" and (ev.dc_target_w() <= 0 or g.evse_state in ("stopping", "faulted")):
            g.ev_phase = "stop"   # at its target, or told the charger stops: PowerDelivery(stop)
        elif phase == "stop" and g.amps < DC_OPEN_BELOW_A:
            if g.ev_contactor:
                self._ev_contactor(g, False)
            g.ev_letter = "B"   # done: it leaves C
        if phase != g.ev_phase:
            self.log(g.number, "ev_phase", g.ev_phase)

    def _ev_contactor(self, g: Gun, closed: bool) -> None:
        if g.ev_contactor == closed:
            return
        g.ev_contactor = closed
        self.log(g.number, "ev_contactor", "closed" if closed else "open")
        if not closed and g.amps >= DC_OPEN_BELOW_A:
            self.log(g.number, "dc_break", {"by": "ev", "amps": round(g.amps, 1)})

    def _output_voltage(self, g: Gun, dt_ms: float) -> None:
        """The voltage at the gun: the battery's while the EV's contactors are closed; with only
        the charger's closed, what its modules put out (they reach their setpoint at 4 kV/s); else
        the output discharges (below 60 V within about 300 ms)."""
        ev = g.ev
        if g.ev_contactor and ev is not None:
            g.out_v = ev.battery_v
            return
        target = None
        if g.contacts and self.powered:
            volts = [m.set_v for m in self.can.modules
                     if self.modules[m.number - 1] == g.number and m.on and m.fault is None and m.set_a > 0]
            target = max(volts) if volts else None
        if target is None:
            g.out_v = max(0.0, g.out_v - g.out_v * min(1.0, dt_ms / 100) - 0.1 * dt_ms)
        else:
            step = DC_SLEW_V_PER_MS * dt_ms
            g.out_v = min(target, g.out_v + step) if target > g.out_v else max(target, g.out_v - step)

    def imd_switch(self, g: Gun, on: bool, self_test: bool) -> None:
        """The insulation monitor starts or stops measuring; the front end's (HAL O) runs its
        self-test as it starts, a Modbus one when told (imd_self_test)."""
        if on and not g.imd_on:
            g.imd_test_ms = self.now_ms() if self_test else None
        if on != g.imd_on:
            self.log(g.number, "imd", "on" if on else "off")
        g.imd_on = on

    def imd_self_test(self, g: Gun) -> None:
        g.imd_test_ms = self.now_ms()
        self.log(g.number, "imd", "self_test")

    def imd_registers(self, g: Gun) -> dict:
        """A Modbus monitor's state for its register image (host_tools.sim.modbus)."""
        ohms, test = self.imd_reading(g)
        testing = g.imd_on and g.imd_test_ms is not None and test is None
        return {"on": g.imd_on, "testing": testing, "failed": g.imd_on and test is False, "ohms": ohms}

    def imd_reading(self, g: Gun) -> tuple[float | None, bool | None]:
        """(ohms or None, self-test: None running or not asked, True passed, False failed)."""
        if not g.imd_on:
            return None, None
        if g.imd_test_ms is not None:
            if self.now_ms() - g.imd_test_ms < IMD_SELF_TEST_MS:
                return None, None
            return (None if g.out_v < 50 else g.insulation_kohm * 1000.0), not g.imd_test_fails
        return (None if g.out_v < 50 else g.insulation_kohm * 1000.0), True

    def _step_dc(self, g: Gun, letter: str, dt_ms: float) -> None:
        """A dispenser: it delivers what the EV asks, within the firmware's limit and its modules'
        capacity, changing at DC_RAMP_W_PER_S; nothing while the contacts are open."""
        ev = g.ev
        flowing = ev is not None and ev.kind == "dc" and g.contacts and letter in "CD" and self.powered
        if self.can is not None:
            flowing = flowing and g.ev_contactor   # the sequence: only once the EV has closed onto it
        if not flowing:
            new = want = 0.0
        else:
            limit = g.dc_limit_w if self.can is None else float("inf")   # CAN: the capacity is the limit
            want = min(ev.dc_target_w(), limit, self.capacity_w(g.number))
            step = DC_RAMP_W_PER_S * dt_ms / 1000
            new = min(want, g.dc_w + step) if want > g.dc_w else max(want, g.dc_w - step)
        was_ramping, g.dc_ramping = g.dc_ramping, new != want
        g.dc_w = new
        g.amps = new / self.dc_volts(g)
        if ((was_ramping and not g.dc_ramping) or (new == 0 and g.dc_logged_w != 0)
                or (not g.dc_ramping and abs(new - g.dc_logged_w) >= DC_LOG_STEP_W)):
            g.dc_logged_w = new
            self.log(g.number, "dc_power", round(new))
        if new > 0 and ev is not None:
            wh = new * dt_ms / 3_600_000
            g.energy_wh += wh
            ev.soc = min(100.0, ev.soc + wh / (ev.battery_kwh * 10))

    def move_module(self, module: int, to: int) -> None:
        """The contactor matrix switches power module `module` (1..N) to dispenser `to` (0 parks
        it). Taking a module from a dispenser that delivers more than its other modules give is
        an arc across the opening contacts: logged as `arc`, and the power falls to what is left."""
        frm = self.modules[module - 1]
        if frm == to:
            return
        self.modules[module - 1] = to
        self.log(0, "module", {"module": module, "from": frm, "to": to})
        if frm:
            g = self.guns[frm - 1]
            left = self.capacity_w(frm)
            if g.dc_w > left + 1.0:
                self.log(frm, "arc", {"module": module, "power_w": round(g.dc_w), "capacity_w": round(left)})
                g.dc_w = left
                g.amps = left / DC_VOLTS

    def _dc_request(self, op: str, parts: list[str]) -> str:
        """The DC power stage's requests: E, L, D per gun; M, m per module."""
        if not self.dc:
            return f"!board {self.board.get('name')} is an AC board: it has no DC power stage"
        if op in "Mm":
            module = int(parts[1])
            if not 1 <= module <= len(self.modules):
                return f"!module must be 1..{len(self.modules)}, not {module}"
            if op == "m":
                return str(self.modules[module - 1])
            to = int(parts[2])
            if not 0 <= to <= len(self.guns):
                return f"!dispenser must be 0..{len(self.guns)} (0 parks the module), not {to}"
            self.move_module(module, to)
            return "ok"
        g = self.gun(int(parts[1]))
        if op in "GHUOJ":
            return self._sequence_request(op, g, parts)
        if op == "E":
            ev = g.ev
            if (not self.powered or ev is None or ev.kind != "dc" or not is_digital(g.duty_pm)
                    or self.ev_side_letter(g) not in "BCD"):
                return "-"  # no EV, or no 5 % pilot to talk over
            return f"{int(ev.dc_target_w())} {ev.soc:.1f}"
        if op == "L":
            watts = int(parts[2])
            if watts < 0:
                return f"!power limit must be >= 0 W, not {watts}"
            if self.can is not None:
                return "ok"   # the modules' setpoints are the limit (HAL safe() still sends 0)
            if watts != g.dc_limit_w:
                g.dc_limit_w = watts
                self.log(g.number, "dc_limit", watts)
            return "ok"
        return f"{g.dc_w:.0f}"  # D

    def ev_says(self, g: Gun) -> tuple | None:
        """What the EV's communication controller says in the IEC 61851-23 sequence (the sim HAL's
        G, the SECC model's EV lines): (phase, battery_v, max_v, target_v, target_a, max_a, soc),
        or None while it does not talk."""
        ev = g.ev
        if g.ev_phase is None or ev is None:
            return None
        charging = g.ev_phase == "charge"
        target_a = ev.dc_target_w() / ev.battery_v if charging else 0.0
        # DIN 70121: PreChargeReq asks for the battery's voltage; CurrentDemandReq for a
        # voltage limit a little under the EV's maximum.
        target_v = ev.max_v - 10 if charging else ev.battery_v
        max_a = ev.max_kw * 1000 / ev.battery_v
        return g.ev_phase, ev.battery_v, ev.max_v, target_v, target_a, max_a, ev.soc

    def tell_ev(self, g: Gun, state: str, isolation: str | None) -> None:
        """What the charger tells the EV (the sim HAL's H, the SECC model's charger lines): its
        sequence step and the cable check's result (valid, warning, fault or None)."""
        if state != g.evse_state:
            self.log(g.number, "evse_state", state)
        g.evse_state = state
        g.evse_isolation = isolation

    def _sequence_request(self, op: str, g: Gun, parts: list[str]) -> str:
        """The IEC 61851-23 sequence's requests (a cabinet on CAN): G the EV's communication, H
        the charger's report to the EV, U the voltage at the gun, O the insulation monitor on or
        off (on: its self-test first), J its reading."""
        if self.can is None:
            return f"!board {self.board.get('name')} runs no DC sequence (its cabinet has no CAN modules)"
        if op == "G":
            says = self.ev_says(g)
            if says is None:
                return "-"
            phase, battery_v, max_v, target_v, target_a, max_a, soc = says
            return f"{phase} {battery_v:.1f} {max_v:.1f} {target_v:.1f} {target_a:.2f} {max_a:.2f} {soc:.1f}"
        if op == "H":
            state, isolation = parts[2], parts[3]
            if isolation not in ("-", "valid", "warning", "fault"):
                return f"!isolation must be -, valid, warning or fault, not {isolation}"
            self.tell_ev(g, state, None if isolation == "-" else isolation)
            return "ok"
        if op == "U":
            return f"{g.out_v:.1f}"
        if op == "O":
            self.imd_switch(g, parts[2] == "1", self_test=True)
            return "ok"
        ohms, test = self.imd_reading(g)
        return f"{'-' if ohms is None else round(ohms)} {'-' if test is None else int(test)}"

    # ---- the HAL side ---------------------------------------------------------------------------
    def hal_request(self, line: str) -> str:
        """One request of the sim HAL's line protocol -> the reply line (without newline)."""
        parts = line.split()
        if not parts:
            return "!empty request"
        op = parts[0]
        with self.lock:
            try:
                if op == "w":
                    self.watchdog_fed_ms = self.now_ms()
                    return "ok"
                if op == "N":
                    return "1" if self.net_up else "0"
                if op == "Q":
                    return "1" if self.estop else "0"
                if op == "A":
                    if not self.swipes:
                        return "-"
                    gun, tag = self.swipes.pop(0)
                    return f"{gun} {tag}"
                if op == "W":
                    self.watchdog_ms = int(parts[1])
                    self.watchdog_fed_ms = self.now_ms()
                    return "ok"
                if op in ("E", "L", "D", "M", "m", "G", "H", "U", "O", "J"):
                    return self._dc_request(op, parts)
                g = self.gun(int(parts[1]))
                if op == "S":
                    high, low = self.pilot_levels(g)
                    return f"{high} {low}"
                if op == "V":
                    # The pilot ADC behind a front end a little off its nominal values, as parts
                    # are: what the technician's `calibrate` finds. Only a steady pilot is asked.
                    high, _ = self.pilot_levels(g)
                    return str(round(PILOT_ADC_OFFSET_MV + PILOT_ADC_GAIN * high))
                if op == "P":
                    duty = int(parts[2])
                    if not 0 <= duty <= 1000:
                        return f"!duty {duty} is outside 0..1000 per mille"
                    self.set_duty(g, duty)
                    return "ok"
                if op == "K":
                    if parts[2] not in ("0", "1"):
                        return f"!contactor must be 0 or 1, not {parts[2]!r}"
                    self.drive_coil(g, parts[2] == "1")
                    return "ok"
                if op == "Y":
                    return self.switch_phases(g, parts[2])
                if op == "F":
                    return "1" if g.contacts else "0"
                if op == "R":
                    return "1" if g.rcd_tripped or g.rcm == "stuck" else "0"
                if op == "T":
                    # The RCD module's test winding: the result is known at once here.
                    g.rcd_test_passed = not (g.rcd_test_fails or g.rcd_tripped or g.rcm != "ok")
                    return "ok"
                if op == "t":
                    if g.rcd_test_passed is None:
                        return "!no RCD self-test was started"
                    return "1" if g.rcd_test_passed else "0"
                if op == "Z":
                    if g.rcd_tripped:
                        g.rcd_tripped = False
                        self.log(g.number, "rcd", "reset")
                    return "ok"
                if op == "C":
                    return f"{g.temperature_c:.2f}"
                if op == "I":
                    return f"{g.amps:.2f}"
                if op == "X":
                    if not g.has_pp:
                        return "-"
                    return str(PP_OHMS.get(g.cable_a, PP_OPEN_OHMS) if g.plugged else PP_OPEN_OHMS)
            except (IndexError, ValueError) as e:
                return f"!bad request {line!r}: {e}"
        return f"!unknown request {op!r}"

    def meter_reading(self, g: Gun) -> dict:
        """What the gun's energy meter measures, per phase of the gun's supply. The meter sits
        upstream of the contactor: it sees the mains whenever the site is powered; the EV draws
        `amps` on each of its phases."""
        with self.lock:
            if self.dc:  # a DC meter on the dispenser's output
                volts = DC_VOLTS if self.powered and g.contacts and g.ev is not None else 0.0
                return {"volts": [volts], "amps": [g.dc_w / DC_VOLTS], "power_w": g.dc_w, "energy_wh": g.energy_wh}
            gun = self.board["guns"][g.number - 1]
            phases = gun.get("phases", self.board.get("phases", 3))
            drawn = self.phases_drawn(g)
            volts = [VOLTS_PER_PHASE if self.powered else 0.0] * phases
            amps = [g.amps if i < drawn else 0.0 for i in range(phases)]
            return {"volts": volts, "amps": amps, "power_w": sum(v * a for v, a in zip(volts, amps)),
                    "energy_wh": g.energy_wh}

    def grid_reading(self) -> dict:
        """What the grid meter at the site's connection point measures per phase: the building's
        load and every gun's draw on that site phase (in a site, the other controllers' guns too:
        site_guns), less what the solar panels make. As an
        SDM630 shows it: each phase's current as a magnitude, each phase's power and the total
        signed (negative while the site exports)."""
        with self.lock:
            volts = [VOLTS_PER_PHASE if self.powered else 0.0] * 3
            net = [a - self.pv_w / (3 * VOLTS_PER_PHASE) for a in self.building_a]
            for g in self.guns:
                for p, a in enumerate(self.site_phase_amps(g)):
                    net[p] += a
            if self.site_guns is not None:
                for p, a in enumerate(self.site_guns()):
                    net[p] += a
            phase_w = [v * a for v, a in zip(volts, net)]
            return {"volts": volts, "amps": [abs(a) for a in net], "phase_w": phase_w,
                    "power_w": sum(phase_w), "energy_wh": 0}

    def set_grid(self, building_a=None, fault="keep", pv_w=None) -> None:
        """The building's load per site phase (three amps), what its solar panels make (W), and/or
        the grid meter's fault (one of modbus.FAULTS, or None: it behaves); all or nothing."""
        if pv_w is not None and (isinstance(pv_w, bool) or not isinstance(pv_w, (int, float))
                                 or not 0 <= pv_w <= 1_000_000):
            raise ValueError(f"pv_w must be watts, 0..1000000, not {pv_w!r}")
        if building_a is not None:
            if not isinstance(building_a, list) or len(building_a) != 3 or not all(
                    isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a <= 10000 for a in building_a):
                raise ValueError(f"building_a must be three amps (L1, L2, L3), 0..10000, not {building_a!r}")
        if fault != "keep" and fault is not None and fault not in METER_FAULTS:
            raise ValueError(f"fault must be null or one of {', '.join(METER_FAULTS)}, not {fault!r}")
        with self.lock:
            if pv_w is not None:
                self.pv_w = float(pv_w)
                self.log(0, "pv_w", self.pv_w)
            if building_a is not None:
                self.building_a = [float(a) for a in building_a]
                self.log(0, "building_a", self.building_a)
            if fault != "keep" and fault != self.grid_meter_fault:
                self.grid_meter_fault = fault
                self.log(0, "grid_meter_fault", fault)

    def set_meter_fault(self, number, fault: str | None) -> None:
        """Make a gun's Modbus meter misbehave (one of modbus.FAULTS), or behave again (None)."""
        g = self.gun(number)
        if fault is not None and fault not in METER_FAULTS:
            raise ValueError(f"meter fault must be null or one of {', '.join(METER_FAULTS)}, not {fault!r}")
        with self.lock:
            if fault != g.meter_fault:
                g.meter_fault = fault
                self.log(g.number, "meter_fault", fault)

    def set_duty(self, g: Gun, duty_pm: int) -> None:
        """The pilot as the firmware drives it: per mille, 1000 steady +12 V, 0 steady -12 V,
        -1 not driven."""
        if duty_pm != g.duty_pm:
            g.duty_pm = duty_pm
            self.log(g.number, "duty", None if duty_pm < 0 else round(duty_pm / 10, 1))
            self.apply_interlock()

    def interlock_holds(self, g: Gun) -> bool:
        """The interlock enables the coil driver: the pilot's level is C or D (a comparator on the
        high plateau) and the RCD module's fault output is low."""
        if not self.interlock:
            return True
        return (self.powered and g.duty_pm > 0 and self.ev_side_letter(g) in "CD"
                and not self.rcm_raised(g))

    def apply_interlock(self) -> None:
        """The interlock acts in microseconds, whatever the firmware does: called after every
        change of the pilot, the EV or the RCD (rig ops, the physics step, the firmware's outputs),
        and of the emergency stop."""
        if self.interlock or self.has_estop:
            with self.lock:
                for g in self.guns:
                    self._energise(g, g.drive and self.coil_supplied(g))

    def coil_supplied(self, g: Gun) -> bool:
        """The coil driver has a supply: the emergency stop is not pressed, the interlock holds."""
        return not self.estop and self.interlock_holds(g)

    def drive_coil(self, g: Gun, on: bool) -> None:
        """The firmware's coil driver; the coil gets current if the interlock (if any) and the
        emergency stop let it."""
        if self.interlock and on != g.drive:
            self.log(g.number, "drive", "on" if on else "off")  # apart from the coil only here
        g.drive = on
        self._energise(g, on and self.coil_supplied(g))

    def _energise(self, g: Gun, on: bool) -> None:
        if on == g.coil:
            return
        now = self.now_ms()
        if not on:
            g.coil_was_on_ms = now - g.coil_ms
        g.coil, g.coil_ms = on, now
        if not on and g.drive:   # the interlock or the emergency stop, not the firmware, cut the coil
            self.log(g.number, "estop" if self.estop else "interlock", "open")
        self.log(g.number, "contactor", "closed" if on else "open")
        if on:
            g.contacts = True
        elif not g.welded:
            g.contacts = False
            if self.can is not None and g.ev_contactor and g.amps >= DC_OPEN_BELOW_A:
                self.log(g.number, "dc_break", {"by": "charger", "amps": round(g.amps, 1)})
            g.amps = 0.0
            if self.dc and g.dc_logged_w:
                g.dc_logged_w = 0.0
                self.log(g.number, "dc_power", 0)  # no power through open contacts, at once
            g.dc_w = 0.0
            g.dc_ramping = False
        else:
            self.log(g.number, "contacts", "welded closed")

    def firmware_gone(self) -> None:
        """The MCU stopped (power cut, reset): its outputs fall to their unpowered state."""
        with self.lock:
            self.firmware_running = False
            self.watchdog_ms = 0
            for g in self.guns:
                self.drive_coil(g, False)
                if g.duty_pm != -1:
                    g.duty_pm = -1
                    self.log(g.number, "duty", None)
                if g.dc_limit_w:
                    g.dc_limit_w = 0  # the converters lose their setpoint
                    self.log(g.number, "dc_limit", 0)
            for module in range(1, len(self.modules) + 1):
                self.move_module(module, 0)  # the matrix's coils are released too

    def take_stall(self) -> int:
        """The stall the rig asked for, once: the HAL server holds its next reply this long."""
        with self.lock:
            ms, self.stall_ms = self.stall_ms, 0
            return ms

    def watchdog_expired(self) -> bool:
        with self.lock:
            return bool(self.watchdog_ms) and self.now_ms() - self.watchdog_fed_ms > self.watchdog_ms

    # ---- the rig's view -------------------------------------------------------------------------
    def snapshot(self) -> list[dict]:
        with self.lock:
            out = []
            for g in self.guns:
                duty = None if g.duty_pm < 0 else round(g.duty_pm / 10, 1)
                pwm = 0 < g.duty_pm < 1000
                faults = [name for name, on in (("diode", g.diode_fault), ("rcd", g.rcd_tripped),
                                                ("weld", g.welded)) if on]
                phases = self.phases_drawn(g)
                out.append({
                    "gun": g.number, "state": self.rig_state(g), "duty": duty,
                    "offered_a": round(duty_to_amps(g.duty_pm), 2) if pwm else 0.0,
                    "contactor": g.contacts, "amps": round(g.amps, 2),
                    "power_w": round(g.amps * VOLTS_PER_PHASE * phases, 1),
                    "energy_wh": round(g.energy_wh, 2), "fault": ",".join(faults) or None,
                    "plugged": g.plugged, "temperature_c": g.temperature_c,
                    "soc": round(g.ev.soc, 2) if g.ev else None,
                    "phase_amps": [round(a, 2) for a in self.site_phase_amps(g)],
                })
                if self.board["guns"][g.number - 1].get("phase_switch"):
                    out[-1]["phases_on"] = g.phases_on
                if self.dc:
                    out[-1].update({
                        "power_w": round(g.dc_w, 1),
                        "modules": [m + 1 for m, d in enumerate(self.modules) if d == g.number],
                        "dc_limit_w": g.dc_limit_w,
                        "ev_target_w": round(g.ev.dc_target_w(), 1) if g.ev is not None else None,
                    })
                    if self.can is not None:
                        out[-1].update({"ev_phase": g.ev_phase, "ev_contactor": g.ev_contactor,
                                        "out_v": round(g.out_v, 1), "evse_state": g.evse_state,
                                        "isolation": g.evse_isolation, "insulation_kohm": g.insulation_kohm})
            return out

    def phases_drawn(self, g: Gun) -> int:
        """On how many phases the EV draws: its own, as many as the gun has (and its phase
        contactor connects)."""
        gun = self.board["guns"][g.number - 1]
        return min(g.ev.phases if g.ev else 0, gun.get("phases", self.board.get("phases", 3)), g.phases_on)

    def switch_phases(self, g: Gun, phases: str) -> str:
        """The firmware drives a gun's phase contactor (board guns[].phase_switch): 3 connects
        the gun's L2 and L3, 1 leaves them open. Switched with the main contacts closed it would
        break (or make) the EV's current under load: logged as `phases_under_load`, which a
        firmware must never cause."""
        if not self.board["guns"][g.number - 1].get("phase_switch"):
            return f"!gun {g.number} has no phase contactor"
        if phases not in ("1", "3"):
            return f"!phases must be 1 or 3, not {phases!r}"
        n = int(phases)
        if n != g.phases_on:
            if g.contacts:
                self.log(g.number, "phases_under_load", n)
            g.phases_on = n
            self.log(g.number, "phases", n)
        return "ok"

    def site_phase_amps(self, g: Gun) -> list[float]:
        """What the gun draws on each of the site's phases L1, L2, L3: its EV's amps on the
        gun's first phases (as many as both have), moved by the gun's phase rotation."""
        if self.dc:  # the cabinet's AC input for this dispenser's power, losses left out
            return [g.dc_w / (VOLTS_PER_PHASE * 3)] * 3
        rotation = self.board["guns"][g.number - 1].get("rotation", "L1L2L3")
        out = [0.0, 0.0, 0.0]
        for k in range(self.phases_drawn(g)):
            out[int(rotation[2 * k + 1]) - 1] += g.amps
        return out
