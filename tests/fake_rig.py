"""A HAL for the gun's unit tests: a model EV and hardware in plain Python, recording what the
gun asked of the hardware. The HIL suite runs the same logic against the virtual board."""
from evse import gun as gun_mod
from evse import pilot

# The same numbers as host_tools/sim/world.py: this module also runs under MicroPython (bench),
# where the CPython world cannot be imported.
LEVEL_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000, "E": 0, "F": -12000}

BOARD = {
    "name": "unit", "hal": "sim", "kind": "ac", "site_limit_a": 32,
    "guns": [{"max_a": 32, "pp": True, "ventilation": False}],
    "pilot": {"a_min_mv": 10500, "b_min_mv": 7500, "c_min_mv": 4500, "d_min_mv": 1500,
              "e_min_mv": -1500, "f_max_mv": -10500, "hysteresis_mv": 300, "diode_max_mv": -10500},
    "derate": {"steps": [[60, 75], [70, 50]], "stop_c": 80, "restart_c": 65},
    "fault_retry_s": 60,
}


class SilentLine:
    """An RS-485 line with nothing that answers."""

    def write(self, buf):
        return len(buf)

    def read(self, n=-1):
        return None

    def readinto(self, buf):
        return None


class FakeHal:
    def __init__(self, interlock=False):
        self.ev = "A"            # EV-side letter
        self.duty_pm = None
        self.coil = False
        self.welded = False
        self.diode_fault = False
        self.bad_diode_reads = 0     # this many next samples read a missing diode (a spike)
        self.pilot_reads = 0
        self.rcd = False
        self.rcd_test_ok = True
        self.rcd_test_ms = 60        # an RCD module's self-test takes tens of ms
        self._test_done_ms = 0
        self.closes = []             # (t_ms, EV letter, diode fault, RCD tripped) at each close
        self.temperature = 25.0
        self.amps = 0.0
        self.pp_ohms = 220
        self.calls = []          # (t_ms, what, value)
        self.t_ms = 0
        self.interlock = interlock  # a front end with a hardware interlock (interlock_holds)
        self.estop_pressed = False  # the emergency stop: its contact also cuts the coil's supply

    def uart(self, index, baudrate, parity=None):
        return SilentLine()

    def _rec(self, what, value):
        self.calls.append((self.t_ms, what, value))

    def set_pilot(self, gun, duty_pm):
        self.duty_pm = duty_pm
        self._rec("pilot", duty_pm)

    def sample_pilot(self, gun):
        self.pilot_reads += 1
        if self.duty_pm == 0:
            return -12000, -12000
        high = LEVEL_MV[self.ev]
        if self.ev in "EF" or self.duty_pm >= 1000:
            return high, high
        if self.bad_diode_reads and self.ev in "BCD":
            self.bad_diode_reads -= 1
            return high, -high
        return high, (-high if self.diode_fault and self.ev in "BCD" else -12000)

    adc_gain, adc_offset_mv = 0.1237, 1662   # a pilot front end a little off its nominal values

    def pilot_adc_mv(self, gun):
        return round(self.adc_offset_mv + self.adc_gain * self.sample_pilot(gun)[0])

    def proximity_ohms(self, gun):
        return self.pp_ohms if self.ev != "A" else 1000000

    def interlock_holds(self):
        """A front end with a hardware interlock: the coil gets current only while the pilot
        shows C or D (with the pilot driven) and the RCD is quiet."""
        return not self.interlock or (self.ev in "CD" and self.duty_pm and not self.rcd)

    def set_contactor(self, gun, closed):
        self.coil = closed
        self._rec("contactor", closed)
        if closed:  # every drive, also one an interlock would hold: the firmware's own decision
            self.closes.append((self.t_ms, self.ev, self.diode_fault, self.rcd))

    def set_phases(self, gun, phases):
        # A gun's phase contactor; the model EV then draws on that many phases.
        self._rec("phases", phases)
        self.phases_under_load = getattr(self, "phases_under_load", 0) + (1 if self.coil else 0)

    def contactor_feedback(self, gun):
        return (self.coil and not self.estop_pressed and (not self.interlock or self.interlock_holds())) or self.welded

    def estop(self):
        return self.estop_pressed

    def rcd_tripped(self, gun):
        return self.rcd

    def rcd_test_start(self, gun):
        self._test_done_ms = self.t_ms + self.rcd_test_ms

    def rcd_test_result(self, gun):
        if self.t_ms < self._test_done_ms:
            return None
        self._rec("rcd_test", self.rcd_test_ok)
        return self.rcd_test_ok

    def rcd_reset(self, gun):
        self.rcd = False

    def temperature_c(self, gun):
        return self.temperature

    def current_a(self, gun):
        return self.amps if (self.coil or self.welded) else 0.0


def make_gun(**gun_options):
    hal = FakeHal()
    board = dict(BOARD)
    board["guns"] = [dict(BOARD["guns"][0], **gun_options)]
    g = gun_mod.Gun(1, hal, board["guns"][0], board)
    g.allocation_a = 32
    return g, hal


def run(g, hal, ms):
    """Step the gun for `ms` milliseconds of model time."""
    end = hal.t_ms + ms
    while hal.t_ms < end:
        hal.t_ms += gun_mod.TICK_MS
        g.step(hal.t_ms)


def run_until(g, hal, predicate, limit_ms):
    """Step until predicate() holds; return the model time it took (or fail)."""
    start = hal.t_ms
    while hal.t_ms - start <= limit_ms:
        if predicate():
            return hal.t_ms - start
        hal.t_ms += gun_mod.TICK_MS
        g.step(hal.t_ms)
    raise AssertionError(f"not within {limit_ms} ms; state {g.state}, fault {g.fault}")


def charging(g, hal):
    """Plug, let the EV ask, and wait for the contactor."""
    hal.ev = "B"
    run_until(g, hal, lambda: g.state == "B2", 1000)
    hal.ev = "C"
    run_until(g, hal, lambda: g.contactor, 3000)
    hal.amps = pilot.duty_pm_to_amps(hal.duty_pm)
