# The rig protocol of rig-pico (docs/rig-protocol.md): request lines in, one reply line each out.
# Pure logic: parsing, validation, the op table, the event log, duty -> amps, which resistors
# show which EV state, the simple EV and the duty meter. The hardware is an object passed in
# (hw.Hardware on the Pico, a fake in tests/rig_pico_fakes); its methods are named at Rig.
# Times are microseconds of the rig's own monotonic clock (hw.now_us, 0 at start); the event
# log and the replies give them as ms with one decimal, like the virtual board's world clock.
import json

from micropython import const

RIG_NAME = "rig-pico"
VERSION = "0.1.0"
DOCS = "docs/rig-protocol.md"

# ---- timing ------------------------------------------------------------------------------------
_STEADY_US = const(3000)  # no pilot edge for 3 periods of 1 kHz: the pilot is steady (no PWM)
_MIN_PERIOD_US = const(500)  # a period outside 0.5..2 ms is a glitch, not a 1 kHz PWM (Table A.7)
_MAX_PERIOD_US = const(2000)
_PERIODS = const(32)  # periods kept: a run's duty is the mean of its newest 32 (32 ms)
_BLOCK = const(8)  # the newest 8 periods are compared with the run before them
_STEP_PM = const(8)  # their mean 0.8 % or more away: a new duty (a run) began in them
_ANALYSE_EVERY = const(4)  # periods between two looks at the runs: the Pico's CPU is not free
_SPIKE_PM = const(15)  # a period 1.5 % off the plain mean is a late interrupt: left out
_SETTLED = const(32)  # a run of 32 periods is logged, dated from its first period
_DUTY_LOG_STEP_PM = const(5)  # ... when it differs from the duty logged before by 0.5 % or more
_DEBOUNCE_US = const(10000)  # the contactor feedback must hold 10 ms to count
_LEVEL_CHECK_US = const(20000)  # while the pilot is steady low, read its level every 20 ms
_DRIVEN_LOW_MV = const(-6000)  # a steady low below -6 V is the EVSE's -12 V (F); above, undriven
# The simple EV (as host_tools/sim/world.py's): it needs 0.5 s to read a new PWM, and opens S2
# (C -> B) 1.5 s after the PWM is withdrawn.
_EV_SEES_PWM_US = const(500000)
_EV_STOPS_IN_C1_US = const(1500000)

# ---- limits ------------------------------------------------------------------------------------
MAX_LINE = const(2048)  # longer request lines are refused (the Pico has about 190 KB of heap)
_OUT_BYTES = const(256)  # the reply buffer
LOG_MAX = const(1000)  # the newest 1000 events are kept (the virtual board keeps 20000)

# ---- the EV side of the pilot (IEC 61851-1 Annex A) --------------------------------------------
# Which switches show each state; diode_short is apart (op diode_fault).
SWITCHES = ("r2740", "r1300", "r270", "short_e")
PRESENT = {
    "A": (),                    # nothing connected: +12 V
    "B": ("r2740",),            # 2.74 kOhm: +9 V
    "C": ("r2740", "r1300"),    # 2.74 kOhm || 1.3 kOhm = 882 Ohm: +6 V
    "D": ("r2740", "r270"),     # 2.74 kOhm || 270 Ohm = 246 Ohm: +3 V
    "E": ("short_e",),          # pilot shorted to PE: 0 V
}
LETTERS = ("A", "B", "C", "D", "E", "F")
CABLES_A = (13, 20, 32, 63)  # PP ratings, IEC 61851-1 Table B.2

# The virtual board's EV parameters (host_tools/sim/world.py EV), in its order, with its defaults.
EV_FIELDS = ("max_a", "phases", "battery_kwh", "soc", "target_soc", "response_s",
             "start_delay_s", "sleepy", "ventilation", "force_a", "kind", "max_kw", "battery_v", "max_v")
EV_DEFAULTS = {"max_a": 32.0, "phases": 3, "battery_kwh": 60.0, "soc": 30.0, "target_soc": 100.0,
               "response_s": 2.0, "start_delay_s": 1.0, "sleepy": False, "ventilation": False,
               "force_a": None, "kind": "ac", "max_kw": 150.0, "battery_v": 400.0, "max_v": 450.0}
# What a rig that only switches resistors can honour; the others are checked and recorded.
EV_HONOURED = ("start_delay_s", "sleepy", "ventilation")

# Ops of the virtual board that a rig without those circuits cannot do.
VIRTUAL_ONLY = ("console", "cut_at_write", "estop", "factory", "flash_writes", "grid", "insulation", "matrix_fault",
                "meter", "module_fault", "module_silent", "modules", "net", "rcd_module", "rcd_test_fail", "rcd_trip",
                "rfid", "secc", "stall", "temperature", "weld")


class OpError(ValueError):
    """A request the op refuses; the message names the field and what is allowed."""


class NotSupported(OpError):
    """A request the virtual board runs and this rig cannot; the message says so, so that host
    tests can skip."""


class Fixed:
    """A number sent with a fixed count of decimals: `value` in units of 10**-places. Times and
    duties go out exactly, whatever the precision of the port's floats."""

    def __init__(self, value, places):  # type: (int, int) -> None
        self.value = value
        self.places = places

    def text(self):  # type: () -> str
        v = self.value
        sign = "-" if v < 0 else ""
        if v < 0:
            v = -v
        if self.places == 1:
            return "%s%d.%d" % (sign, v // 10, v % 10)
        return "%s%d.%02d" % (sign, v // 100, v % 100)


class EventLog:
    """The newest LOG_MAX events, oldest first, as (t tenths of ms, gun, what, value). A ring
    allocated once at start: a list that grows would need ever larger free blocks of the heap."""

    def __init__(self):
        self.ring = [None] * LOG_MAX  # type: list
        self.first = 0  # where the oldest event is
        self.count = 0

    def add(self, event):
        """Insert in time order: an event dated back (an edge) goes before any later one."""
        ring = self.ring
        if self.count == LOG_MAX:  # full: the oldest goes
            ring[self.first] = None
            self.first = (self.first + 1) % LOG_MAX
            self.count -= 1
        pos = self.count
        t = event[0]
        while pos and ring[(self.first + pos - 1) % LOG_MAX][0] > t:
            ring[(self.first + pos) % LOG_MAX] = ring[(self.first + pos - 1) % LOG_MAX]
            pos -= 1
        ring[(self.first + pos) % LOG_MAX] = event
        self.count += 1

    def since(self, after):
        """The events with t > after (tenths of ms), oldest first, one at a time."""
        ring, first = self.ring, self.first
        for k in range(self.count):
            event = ring[(first + k) % LOG_MAX]
            if event[0] > after:
                yield event


class Events:
    """Events that go out as a list of event objects, read from the log as they are written."""

    def __init__(self, log, after):
        self.log = log
        self.after = after


def show(value):
    """A value as an error message shows it (Python's repr), cut short when long."""
    try:
        text = repr(value)
    except Exception:  # nested too deep for the stack
        return "(a value nested too deep to show)"
    return text if len(text) <= 100 else text[:97] + "..."


def offered_centiamps(duty_pm):  # type: (int) -> int
    """The current an EV reads from a duty, in 0.01 A (IEC 61851-1 Table A.8; the same as
    host_tools/sim/world.duty_to_amps)."""
    if duty_pm < 80 or duty_pm > 970:
        return 0
    if duty_pm < 100:
        return 600
    if duty_pm <= 850:
        return duty_pm * 6  # A = duty % * 0.6
    if duty_pm <= 960:
        return (duty_pm - 640) * 25  # A = (duty % - 64) * 2.5
    return 8000


def pilot_mv(raw_u16, cal):  # type: (int, dict) -> int
    """An ADC reading (read_u16) of the pilot divider as the pilot's voltage in mV: the pin sees
    offset_mv + gain * pilot_mv (wiring.py "pilot_adc")."""
    pin_mv = raw_u16 * cal["vref_mv"] / 65535
    return int(round((pin_mv - cal["offset_mv"]) / cal["gain"]))


def plateaus(raws):
    """The high and low plateau of a burst of reads spanning a PWM period: the 2nd highest and
    2nd lowest read, so one spike or one read on an edge is ignored."""
    hi1 = hi2 = -1
    lo1 = lo2 = 1 << 20
    for v in raws:
        if v > hi1:
            hi2 = hi1
            hi1 = v
        elif v > hi2:
            hi2 = v
        if v < lo1:
            lo2 = lo1
            lo1 = v
        elif v < lo2:
            lo2 = v
    return hi2, lo2


def exact_tenths(line, key, value):
    """floor(value * 10) for the number `key` has in the request text, read from its digits:
    a port with single-precision floats (the Pico's) cannot hold 1234567.8 ms. Falls back to the
    float for forms it does not read (exponents) or when the text does not match the value."""
    fallback = int(value * 10 // 1)
    at = line.find('"%s"' % key)
    if at < 0:
        return fallback
    at = line.find(":", at) + 1
    while at < len(line) and line[at] in " \t":
        at += 1
    end = at
    while end < len(line) and line[end] in "-0123456789.":
        end += 1
    digits = line[at:end]
    negative = digits.startswith("-")
    whole, _, frac = digits.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or line[end:end + 1] in ("e", "E"):
        return fallback
    tenths = int(whole) * 10 + (int(frac[0]) if frac else 0)
    rest = frac[1:].strip("0") != ""
    if negative:
        tenths = -tenths - (1 if rest else 0)  # floor: -0.15 -> -2 tenths
    if abs(tenths - fallback) > 1 + abs(fallback) // 1000000:
        return fallback  # the text is another key's (a duplicate): trust the parser
    return tenths


def ev_update(ev, params):
    """EV parameters with `params` applied, all or nothing, checked as the virtual board checks
    them (host_tools/sim/world.py EV.update): the same error texts."""
    if not isinstance(params, dict):
        raise OpError('EV parameters must be an object like {"max_a": 16}, not %s' % show(params))
    new = dict(ev)
    for key in params:
        value = params[key]
        if key not in EV_DEFAULTS:
            raise OpError("unknown EV parameter %s; known: %s" % (show(key), ", ".join(EV_FIELDS)))
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if key == "force_a":
            if value is not None and (not number or not 0 <= value <= 200):
                raise OpError("EV parameter force_a must be null or 0..200 A, not %s" % show(value))
            value = None if value is None else float(value)
        elif key == "kind":
            if value not in ("ac", "dc"):
                raise OpError('EV parameter kind must be "ac" or "dc", not %s' % show(value))
        elif key in ("sleepy", "ventilation"):
            if not isinstance(value, bool):
                raise OpError("EV parameter %s must be true or false, not %s" % (key, show(value)))
        elif key == "phases":
            if value not in (1, 2, 3):  # by value, as the virtual board: 1.0 and true pass as 1
                raise OpError("EV parameter phases must be 1, 2 or 3, not %s" % show(value))
            value = int(value)
        else:
            if not number or value < 0:
                raise OpError("EV parameter %s must be a number >= 0, not %s" % (key, show(value)))
            if key in ("soc", "target_soc") and value > 100:
                raise OpError("EV parameter %s must be 0..100 %%, not %s" % (key, show(value)))
            if key in ("battery_kwh", "max_a", "max_kw") and value == 0:
                raise OpError("EV parameter %s must be above 0" % key)
            if key in ("battery_v", "max_v") and not 150 <= value <= 1000:
                raise OpError("EV parameter %s must be 150..1000 V, not %s" % (key, show(value)))
            if key == "response_s" and value > 5:
                raise OpError("EV parameter response_s must be 0..5 s (IEC 61851-1 A.5.1)")
            value = float(value)
        new[key] = value
    return new


# ---- measuring -----------------------------------------------------------------------------------
class DutyMeter:
    """The pilot's duty from the comparator's edges, stamped in µs. Each complete period (rise,
    fall, rise) gives a duty. Periods at one duty form a run; the duty is the mean of the run's
    newest 32 periods, late interrupts (spikes) left out. A run ends when the mean of the newest
    8 periods is 0.8 % or more away from the run before them: the new run begins at the first
    of them nearer the new mean. No edge for 3 ms: the pilot is steady, 100 % when high, 0 %
    when low."""

    def __init__(self, now_us):
        self.rise = None  # type: int | None
        self.fall = None  # type: int | None
        self.level = -1
        self.last_edge = now_us  # no verdict before 3 ms have passed
        self.pm = [0] * _PERIODS
        self.at = [0] * _PERIODS  # when each period began
        self.n = 0  # periods measured since the pilot was last steady
        self.run = 0  # the number (0..n-1) of the current run's first period
        self.since = now_us  # when the current run began
        self.value = None  # type: int | None  # the current run's duty
        self.seen = 0  # periods analysed

    def lost(self):  # type: () -> None
        """Edges were lost (the ring overflowed): the period in progress is unreliable."""
        self.rise = self.fall = None
        self.level = -1

    def edge(self, t_us, level):  # type: (int, int) -> None
        if level == self.level:  # two edges of one kind: one was missed between them
            self.rise = self.fall = None
        self.level = level
        self.last_edge = t_us
        if not level:
            self.fall = t_us
            return
        rise, fall = self.rise, self.fall
        if rise is not None and fall is not None and rise < fall:
            period = t_us - rise
            if _MIN_PERIOD_US <= period <= _MAX_PERIOD_US:
                k = self.n % _PERIODS
                self.pm[k] = (1000 * (fall - rise) + period // 2) // period
                self.at[k] = rise
                if self.n == 0:
                    self.since = rise
                self.n += 1
        self.rise = t_us

    def _mean(self, first, last):
        """Mean duty of periods first..last-1, without those _SPIKE_PM off the plain mean."""
        pm = self.pm
        total = 0
        for j in range(first, last):
            total += pm[j % _PERIODS]
        centre = total // (last - first)
        total = count = 0
        for j in range(first, last):
            v = pm[j % _PERIODS]
            if -_SPIKE_PM <= v - centre <= _SPIKE_PM:
                total += v
                count += 1
        return (total + count // 2) // count if count else centre

    def _analyse(self):
        n = self.n
        if n - self.seen < _ANALYSE_EVERY:
            return
        self.seen = n
        start = self.run if self.run > n - _PERIODS else n - _PERIODS
        if n - start < _BLOCK:
            return  # a fresh PWM: too few periods yet
        block_start = n - _BLOCK
        if block_start - start >= _BLOCK:
            block = self._mean(block_start, n)
            before = self._mean(start, block_start)
            if not -_STEP_PM < block - before < _STEP_PM:
                j = block_start
                while j < n - 1 and abs(self.pm[j % _PERIODS] - block) >= abs(self.pm[j % _PERIODS] - before):
                    j += 1
                self.run = start = j
                self.since = self.at[j % _PERIODS]
        self.value = self._mean(start, n)

    def read(self, now_us, level):
        """(duty_pm, since_us, settled): the duty, when its run began, and whether the run is
        long enough to log; None while a PWM is starting."""
        if now_us - self.last_edge >= _STEADY_US:
            self.n = self.run = self.seen = 0
            self.value = None
            return (1000 if level else 0), self.last_edge, True
        self._analyse()
        if self.value is None:
            return None
        return self.value, self.since, self.n - self.run >= _SETTLED


class Debounce:
    """A contact from its stamped edges: a change counts once it has held _DEBOUNCE_US, dated
    from the edge that began it (bounces within the time start it again)."""

    def __init__(self, level):
        self.stable = level
        self.level = level
        self.since = None  # type: int | None

    def lost(self):  # type: () -> None
        pass  # the level read at every tick catches up

    def edge(self, t_us, level):  # type: (int, int) -> None
        self.level = level
        if level == self.stable:
            self.since = None
        elif self.since is None:
            self.since = t_us

    def update(self, now_us, level):
        """The time of a change that has just held long enough, or None."""
        if level != self.level:  # an edge the ring has not given yet
            self.edge(now_us, level)
        if self.since is not None and now_us - self.since >= _DEBOUNCE_US:
            self.stable = self.level
            since, self.since = self.since, None
            return since
        return None


class Gun:
    def __init__(self, number, now_us, contactor):
        self.number = number
        self.plugged = False
        self.cable_a = 32
        self.ev = None  # type: dict | None  # the EV's parameters while plugged
        self.forced = None  # type: str | None  # a letter forced by ev_state
        self.ev_letter = "A"  # the simple EV's own choice: B, C or D
        self.diode_fault = False
        self.shown = None  # type: str | None  # the letter the switches show now
        self.meter = DutyMeter(now_us)
        self.duty_pm = None  # type: int | None  # measured; None before the first verdict
        self.logged_pm = None  # type: int | None  # the duty of the last duty event
        self.logged_since = None  # type: int | None  # the start of the last run considered
        self.low_driven = True  # a steady low pilot is the EVSE's -12 V
        self.level_at = None  # type: int | None
        self.feedback = Debounce(contactor)
        self.last_state = "A"
        self.pwm_since = None  # type: int | None
        self.pwm_lost = None  # type: int | None
        self.saw_x1 = False  # a sleepy EV saw the PWM withdrawn

    def letter(self):  # type: () -> str
        if self.forced:
            return self.forced
        return self.ev_letter if self.plugged else "A"


# ---- the rig ---------------------------------------------------------------------------------------
class Rig:
    """The protocol's state and ops over a hardware object `hw` with:
      guns (int), now_us(), has_switch(gun, name), set_switch(gun, name, closed),
      pilot_level(gun) (comparator, 0/1), drain_pilot(gun, sink), pilot_steady(gun) (mean raw),
      pilot_burst(gun) (raw reads over one period), feedback_closed(gun), drain_feedback(gun, sink)
      (sinks get edge(t_us, level) and lost()), has_power_relay, set_power(on)."""

    def __init__(self, hw, wiring):
        self.hw = hw
        self.cal = wiring["pilot_adc"]
        now = hw.now_us()
        self.guns = [Gun(n, now, 1 if hw.feedback_closed(n) else 0) for n in range(1, hw.guns + 1)]
        self.events = EventLog()
        self.powered = True
        self.last_error = None  # type: str | None
        self.ops = sorted(n for n in OPS if n != "power" or hw.has_power_relay)
        self.virtual_only = sorted(n for n in VIRTUAL_ONLY + ("power",) if n not in self.ops)
        self.safe()

    # ---- log ----------------------------------------------------------------------------------
    def log_at(self, t_us, gun, what, value):
        """Log an event at t_us, which may lie a few ms back (an edge): the log stays in order."""
        self.events.add((t_us // 100, gun, what, value))

    def log(self, gun, what, value):
        self.log_at(self.hw.now_us(), gun, what, value)

    def note_error(self, where, e):
        """A failure outside any request (a tick): logged once per distinct message."""
        text = "%s: %s: %s" % (where, type(e).__name__, e)
        if text != self.last_error:
            self.last_error = text
            self.log(0, "rig_error", text)

    # ---- measuring and the simple EV, every pass of the main loop ----------------------------
    def tick(self):  # type: () -> None
        for g in self.guns:
            self._measure(g)
            self._ev_step(g, self.hw.now_us())
            self._show(g)
            state = self.state(g)
            if state != g.last_state:
                g.last_state = state
                self.log(g.number, "ev_state", state)

    def _measure(self, g):
        hw, n = self.hw, g.number
        hw.drain_pilot(n, g.meter)
        now = hw.now_us()
        verdict = g.meter.read(now, hw.pilot_level(n))
        if verdict is not None:
            pm, since, settled = verdict
            g.duty_pm = pm
            if settled and since != g.logged_since:  # a new run: log it if it moved the duty
                g.logged_since = since
                old = g.logged_pm
                if (old is None or (old == 0) != (pm == 0) or (old == 1000) != (pm == 1000)
                        or not -_DUTY_LOG_STEP_PM < pm - old < _DUTY_LOG_STEP_PM):
                    g.logged_pm = pm
                    self.log_at(since, n, "duty", Fixed(pm, 1))
        if g.duty_pm != 0:
            g.level_at = None
        elif g.level_at is None or now - g.level_at >= _LEVEL_CHECK_US:
            g.level_at = now
            g.low_driven = pilot_mv(hw.pilot_steady(n), self.cal) <= _DRIVEN_LOW_MV
        hw.drain_feedback(n, g.feedback)
        changed = g.feedback.update(hw.now_us(), 1 if hw.feedback_closed(n) else 0)
        if changed is not None:
            self.log_at(changed, n, "contactor", "closed" if g.feedback.stable else "open")

    def _ev_step(self, g, now):
        """The EV's S2 switch, as the virtual board's EV moves it (World._step_gun), for what a
        resistor rig can honour: start_delay_s, sleepy, ventilation."""
        ev = g.ev
        if not g.plugged or ev is None:
            return
        pm = g.duty_pm
        if pm is not None and 0 < pm < 1000:
            g.pwm_lost = None
            if g.pwm_since is None:
                g.pwm_since = now
            awake = not ev["sleepy"] or g.saw_x1
            seen = now - g.pwm_since >= max(_EV_SEES_PWM_US, ev["start_delay_s"] * 1000000)
            if awake and seen and offered_centiamps(pm) > 0:
                g.ev_letter = "D" if ev["ventilation"] else "C"
        else:
            if g.pwm_since is not None:
                g.saw_x1 = True
            g.pwm_since = None
            if g.ev_letter in ("C", "D"):
                if g.pwm_lost is None:
                    g.pwm_lost = now
                elif now - g.pwm_lost >= _EV_STOPS_IN_C1_US:
                    g.ev_letter = "B"

    def _show(self, g):
        """Switch the resistors to the gun's letter: close the new ones first, then open the old
        ones, so that D -> C never passes through B (a charger opens at once on B)."""
        letter = g.letter()
        if letter == g.shown:
            return
        hw, n = self.hw, g.number
        want = PRESENT[letter]
        for name in want:
            hw.set_switch(n, name, True)
        for name in SWITCHES:
            if name not in want and hw.has_switch(n, name):
                hw.set_switch(n, name, False)
        g.shown = letter

    def state(self, g):  # type: (Gun) -> str
        """The snapshot's state, as the virtual board's rig_state: B and C get 2 while PWM runs
        and 1 without; F while the EVSE holds -12 V; the bare letter while the pilot is undriven."""
        letter = g.letter()
        pm = g.duty_pm
        if pm is None:
            return letter
        if pm == 0:
            return "F" if g.low_driven else letter
        if letter in ("B", "C"):
            return letter + ("2" if pm < 1000 else "1")
        return letter

    def levels_mv(self, g):
        """The pilot's high and low plateau in mV: from a burst over one period while PWM runs,
        else the steady level twice."""
        pm = g.duty_pm
        if pm is not None and 0 < pm < 1000:
            hi, lo = plateaus(self.hw.pilot_burst(g.number))
            return pilot_mv(hi, self.cal), pilot_mv(lo, self.cal)
        mv = pilot_mv(self.hw.pilot_steady(g.number), self.cal)
        return mv, mv

    def safe(self):  # type: () -> None
        """Every switch open: no EV, no forced state, no diode fault. On start and on reset."""
        for g in self.guns:
            g.plugged, g.ev, g.ev_letter, g.forced = False, None, "A", None
            g.pwm_since = g.pwm_lost = None
            g.saw_x1 = g.diode_fault = False
            self.hw.set_switch(g.number, "diode_short", False)
            self._show(g)

    # ---- requests ---------------------------------------------------------------------------
    def handle_line(self, line):
        """One request line (bytes) -> the reply (a dict), or None for a blank line."""
        line = line.strip()
        if not line:
            return None
        try:
            text = line.decode()
        except UnicodeError:
            shown = "".join(chr(b) if b < 128 else "\ufffd" for b in line)
            return {"ok": False, "error": "request is not JSON (not UTF-8 text): %s" % shown[:80]}
        try:
            req = json.loads(text)
        except Exception as e:  # ValueError; anything else the parser raises is the line's fault too
            return {"ok": False, "error": "request is not JSON (%s): %s" % (e, text[:80])}
        if not isinstance(req, dict):
            return {"ok": False, "error": 'request must be a JSON object like {"op": "snapshot"}'}
        name = req.get("op")
        if name in self.virtual_only:
            return {"ok": False, "error": self.not_supported(name)}
        if not isinstance(name, str) or name not in self.ops:
            return {"ok": False, "error": "unknown op %s; known ops: %s" % (show(name), ", ".join(self.ops))}
        try:
            reply = OPS[name](self, req, text)
        except OpError as e:
            return {"ok": False, "error": "%s: %s" % (name, e)}
        except (TypeError, AttributeError, KeyError, ValueError) as e:
            return {"ok": False, "error": "%s: a field has the wrong type (%s); see %s" % (name, e, DOCS)}
        except Exception as e:  # a bug or a hardware fault: answered and logged, never fatal
            self.note_error(name, e)
            return {"ok": False, "error": "%s: %s failed (%s: %s); the rig runs on, see its events" % (
                name, RIG_NAME, type(e).__name__, e)}
        reply["ok"] = True
        reply["t_ms"] = Fixed(self.hw.now_us() // 100, 1)
        return reply

    def not_supported(self, name):  # type: (str) -> str
        if name == "power":
            return 'power: not supported on %s without a mains relay (set "power_relay" in wiring.py)' % RIG_NAME
        return "%s: not supported on %s (it needs the virtual board)" % (name, RIG_NAME)

    def gun(self, req):  # type: (dict) -> Gun
        number = req.get("gun")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(self.guns):
            raise OpError("gun must be 1..%d, not %s" % (len(self.guns), show(number)))
        return self.guns[number - 1]


def _flag(req, key):
    value = req.get(key)
    if not isinstance(value, bool):
        raise OpError("'%s' must be true or false, not %s" % (key, show(value)))
    return value


# ---- the ops: one function each, routed by the table OPS ------------------------------------------
def op_info(rig, req, line):
    return {"rig": RIG_NAME, "version": VERSION, "guns": len(rig.guns), "ops": rig.ops,
            "virtual_only": rig.virtual_only, "events_max": LOG_MAX}


def op_snapshot(rig, req, line):
    guns = []
    for g in rig.guns:
        pm = g.duty_pm
        high_mv, low_mv = rig.levels_mv(g)
        guns.append({
            "gun": g.number, "state": rig.state(g),
            "duty": None if pm is None else Fixed(pm, 1),
            "offered_a": Fixed(offered_centiamps(pm) if pm is not None and 0 < pm < 1000 else 0, 2),
            "contactor": bool(g.feedback.stable), "plugged": g.plugged,
            "fault": "diode" if g.diode_fault else None,
            "pilot_high_v": Fixed((high_mv + 50) // 100, 1), "pilot_low_v": Fixed((low_mv + 50) // 100, 1),
        })
    reply = {"guns": guns}
    if rig.hw.has_power_relay:
        reply["powered"] = rig.powered
    return reply


def op_events(rig, req, line):
    since = req.get("since_ms", 0)
    if isinstance(since, bool) or not isinstance(since, (int, float)):
        raise OpError("'since_ms' must be a number of milliseconds, not %s" % show(since))
    if since - since != 0:  # 1e999 parses as infinity
        after = -1 if since < 0 else 1 << 62
    else:
        after = exact_tenths(line, "since_ms", since) if "since_ms" in req else -1
    return {"events": Events(rig.events, after)}


def op_plug(rig, req, line):
    g = rig.gun(req)
    cable = req.get("cable_a", 32)
    if isinstance(cable, bool) or not isinstance(cable, int) or cable not in CABLES_A:
        raise OpError("'cable_a' must be one of [13, 20, 32, 63] (IEC 61851-1 Table B.2), not %s" % show(cable))
    ev = ev_update(EV_DEFAULTS, req.get("ev") or {})
    if ev["kind"] != "ac":
        raise NotSupported('an EV of "kind": "dc" is not supported on %s (it talks over the 5 %% pilot '
                           'to a DC charger; it needs the virtual board)' % RIG_NAME)
    if ev["force_a"] is not None:
        raise NotSupported("EV parameter force_a is not supported on %s (the rig draws no current; "
                           "it needs the virtual board)" % RIG_NAME)
    if g.plugged:
        raise OpError("gun %d is already plugged; unplug it first" % g.number)
    g.ev, g.cable_a, g.plugged = ev, cable, True
    g.ev_letter, g.pwm_since, g.pwm_lost, g.saw_x1, g.forced = "B", None, None, False, None
    rig._show(g)
    rig.log(g.number, "plug", {"cable_a": cable, "max_a": ev["max_a"], "phases": ev["phases"]})
    return {}


def op_unplug(rig, req, line):
    g = rig.gun(req)
    if not g.plugged:
        raise OpError("gun %d is not plugged" % g.number)
    if g.forced:
        rig.log(g.number, "ev_forced", "auto")
    g.plugged, g.ev, g.ev_letter, g.forced = False, None, "A", None
    rig._show(g)
    rig.log(g.number, "unplug", None)
    return {}


def op_ev_state(rig, req, line):
    g = rig.gun(req)
    state = req.get("state")
    if state is None or state == "auto":
        g.forced = None
    elif isinstance(state, str) and state in LETTERS:
        if state == "F":
            raise NotSupported("state F is not supported on %s (only the EVSE drives the pilot to -12 V; "
                               "it needs the virtual board)" % RIG_NAME)
        if state == "E" and not rig.hw.has_switch(g.number, "short_e"):
            raise NotSupported('state E is not supported on %s without a "short_e" switch for gun %d '
                               "in wiring.py (or use the virtual board)" % (RIG_NAME, g.number))
        g.forced = state
    else:
        raise OpError("'state' must be one of A, B, C, D, E, F or \"auto\", not %s" % show(state))
    rig._show(g)
    rig.log(g.number, "ev_forced", g.forced or "auto")
    return {}


def op_ev(rig, req, line):
    g = rig.gun(req)
    if g.ev is None:
        raise OpError("gun %d has no EV; plug one first" % g.number)
    params = {}
    for key in req:
        if key not in ("op", "gun"):
            params[key] = req[key]
    if "kind" in params and params["kind"] != g.ev["kind"]:
        raise OpError('an EV cannot change its kind while plugged; unplug it and plug one with "kind": %s'
                      % show(params["kind"]))
    new = ev_update(g.ev, params)
    for key in sorted(params):
        if key not in EV_HONOURED and key != "kind":
            raise NotSupported("EV parameter %s is not supported on %s (the rig has no battery and draws no "
                               "current; it honours %s; it needs the virtual board)"
                               % (key, RIG_NAME, ", ".join(EV_HONOURED)))
    g.ev = new
    rig.log(g.number, "ev", params)
    return {}


def op_diode_fault(rig, req, line):
    g = rig.gun(req)
    g.diode_fault = _flag(req, "on")
    rig.hw.set_switch(g.number, "diode_short", g.diode_fault)
    rig.log(g.number, "diode_fault", g.diode_fault)
    return {}


def op_power(rig, req, line):
    on = _flag(req, "on")
    if on != rig.powered:
        rig.hw.set_power(on)
        rig.powered = on
        rig.log(0, "power", "on" if on else "off")
    return {}


def op_reset(rig, req, line):
    rig.safe()
    rig.log(0, "reset", None)
    return {}


OPS = {
    "diode_fault": op_diode_fault, "ev": op_ev, "ev_state": op_ev_state, "events": op_events,
    "info": op_info, "plug": op_plug, "power": op_power, "reset": op_reset, "snapshot": op_snapshot,
    "unplug": op_unplug,
}


# ---- replies out ----------------------------------------------------------------------------------
_FIRST_KEYS = ("ok", "t_ms", "error", "gun")


def write_json(value, put):
    """Write `value` as JSON through put(str), piece by piece: a long events reply is never one
    string in memory. Fixed numbers go out as their digits; Events as event objects."""
    if value is None:
        put("null")
    elif value is True:
        put("true")
    elif value is False:
        put("false")
    elif isinstance(value, Fixed):
        put(value.text())
    elif isinstance(value, str):
        put(json.dumps(value))
    elif isinstance(value, float):
        put(json.dumps(value) if value == value and value - value == 0 else "null")  # no NaN, inf in JSON
    elif isinstance(value, int):
        put("%d" % value)
    elif isinstance(value, dict):
        put("{")
        keys = [k for k in _FIRST_KEYS if k in value] + sorted(k for k in value if k not in _FIRST_KEYS)
        for i, key in enumerate(keys):
            if i:
                put(", ")
            put(json.dumps(key))
            put(": ")
            write_json(value[key], put)
        put("}")
    elif isinstance(value, (list, tuple)):
        put("[")
        for i, item in enumerate(value):
            if i:
                put(", ")
            write_json(item, put)
        put("]")
    elif isinstance(value, Events):
        put("[")
        comma = False
        for t, gun, what, v in value.log.since(value.after):
            put(', {"t_ms": ' if comma else '{"t_ms": ')
            comma = True
            put(Fixed(t, 1).text())
            put(', "gun": %d, "what": ' % gun)
            put(json.dumps(what))
            put(', "value": ')
            write_json(v, put)
            put("}")
        put("]")
    else:
        put(json.dumps(str(value)))


class Server:
    """The serial side: bytes in (feed), one reply line out per request line (write(bytes)),
    and tick() between. Nothing a request or a tick raises ends it (KeyboardInterrupt does)."""

    def __init__(self, rig, write):
        self.rig = rig
        self.write = write
        self.buf = bytearray()
        self.too_long = False
        # Replies go out through one buffer allocated at start: a long reply needs no large
        # free block of the heap (after hours of events the heap is in small pieces).
        self._out = bytearray(_OUT_BYTES)
        self._out_len = 0

    def feed(self, data):
        for b in data:
            if b == 10:  # \n
                self._line()
            elif not self.too_long:
                if len(self.buf) >= MAX_LINE:
                    self.too_long = True
                else:
                    self.buf.append(b)

    def _line(self):
        line, self.buf = bytes(self.buf), bytearray()
        if self.too_long:
            self.too_long = False
            shown = "".join(chr(b) if 32 <= b < 127 else "\ufffd" for b in line[:80])
            reply = {"ok": False, "error": "request is not JSON (longer than %d bytes): %s" % (MAX_LINE, shown)}
        else:
            try:
                reply = self.rig.handle_line(line)
            except Exception as e:  # the parsing itself failed (out of memory): still one reply
                reply = {"ok": False, "error": "%s failed on a request (%s: %s)" % (RIG_NAME, type(e).__name__, e)}
        if reply is not None:
            self.send(reply)

    def _put(self, text):
        data = text.encode()
        if self._out_len + len(data) > _OUT_BYTES:
            self._flush()
        if len(data) >= _OUT_BYTES:
            self.write(data)
            return
        self._out[self._out_len:self._out_len + len(data)] = data
        self._out_len += len(data)

    def _flush(self):
        if self._out_len:
            self.write(memoryview(self._out)[:self._out_len])
            self._out_len = 0

    def send(self, reply):
        try:
            write_json(reply, self._put)
            self._put("\n")
            self._flush()
        except Exception as e:
            self._out_len = 0
            # Part of the line may be out: end it, then one line the host can read.
            self.write(('\n{"ok": false, "error": %s}\n' % json.dumps(
                "%s could not write its reply (%s: %s)" % (RIG_NAME, type(e).__name__, e))).encode())

    def tick(self):
        try:
            self.rig.tick()
        except Exception as e:
            try:
                self.rig.note_error("tick", e)
            except Exception:
                pass  # out of memory even for that: the next tick tries again
