# The IEC 61851-23 charging sequence of one DC gun, as the charger runs it (Annex CC; the
# messages of DIN 70121 / ISO 15118-2 DC that drive it arrive through the HAL's EV-communication
# interface). Pure logic: `step` takes what the EV says and what the hardware measures, and sets
# what to command: the gun's DC contactors, the power modules' voltage and current, the insulation
# monitor on or off, what to tell the EV. Each step has its limit and a named fault.
#
#   IDLE --EV asks for the cable check--> CABLE_CHECK: the insulation monitor's self-test, then
#       the DC contactors close onto the cable (the EV's own are open) and the modules raise it
#       to the test voltage; the monitor's reading decides: fault below 100 ohm/V, warning below
#       500 ohm/V (IEC 61851-23 6.3.1.105; IEC 61557-8). Then the modules stop and the output
#       is discharged below 60 V, the contactors still closed.
#   PRECHARGE: the modules bring the output to the EV's battery voltage at <= 2 A; the EV closes
#       its contactors once they are within 20 V (DIN 70121: PreCharge), CHARGING follows when
#       the EV asks for current.
#   CHARGING: the current follows what the EV asks, changing at most RAMP_A_PER_S; the
#       insulation, the voltage (over the EV's maximum) and the current (over what was asked)
#       are watched all the time.
#   STOPPING: the EV is told, the current is ramped down; the contactors open only below
#       OPEN_BELOW_A once the EV has stopped (after STOP_TIMEOUT_MS the modules are turned off, and
#       a current still flowing after STOP_FORCE_MS is a fault), then WELD_CHECK: the output must
#       fall below SAFE_V within WELD_CHECK_MS, else a contactor (the charger's or the EV's) is
#       welded.
#   An emergency stop or a fault at any step: modules off and contactors open at once.
from micropython import const

from evse import ticks

IDLE = "idle"
CABLE_CHECK = "cable_check"
PRECHARGE = "precharge"
CHARGING = "charging"
STOPPING = "stopping"
WELD_CHECK = "weld_check"
DONE = "done"
FAULTED = "faulted"

ISO_FAULT_OHM_PER_V = const(100)    # IEC 61851-23 6.3.1.105: below this, an insulation fault
ISO_WARN_OHM_PER_V = const(500)     # below this a warning (IEC 61557-8's usual pre-warning)
SELF_TEST_MS = const(10000)         # the insulation monitor's self-test must end within this
UNWATCHED_MS = const(3000)          # the cable live and no insulation reading for this long: stop
CABLE_CHECK_MS = const(20000)       # the cable check (raise, settle, measure) within this
SETTLE_MS = const(1000)             # the monitor measures only once the test voltage has held this long
TEST_V_TOL = const(20)              # the output counts as at the test voltage within this
PRECHARGE_MAX_A = 2.0               # DIN 70121: the precharge current is at most 2 A
PRECHARGE_TOL_V = const(20)         # DIN 70121: the EV closes its contactors within 20 V of its battery
PRECHARGE_MS = const(7000)          # DIN 70121: PreCharge must end within 7 s
RAMP_A_PER_S = const(100)           # the current setpoint changes at most this fast (our default)
OVER_V = const(10)                  # output above the EV's maximum voltage by this: stop
OVER_A = const(10)                  # output above 110 % of what the EV asked + this ...
OVER_A_MS = const(500)              # ... for this long: stop
OPEN_BELOW_A = 5.0                  # the DC contactors open under this current (IEC 61851-23 CC)
STOP_RAMP_A_PER_S = const(1000)     # the ramp down at the end: 500 A in half a second
STOP_TIMEOUT_MS = const(3000)       # the EV has not stopped by then: the modules are turned off ...
STOP_FORCE_MS = const(4000)         # ... and if the current has still not fallen, a fault opens
SAFE_V = const(60)                  # IEC 61851-23: the output is safe to touch below 60 V ...
WELD_CHECK_MS = const(1000)         # ... within 1 s of the disconnection; not: welded contacts
DISCHARGE_MS = const(1000)          # after the cable check, the output below SAFE_V within this

# Faults: the name the log and OCPP's vendorErrorCode carry.
ISO_SELF_TEST = "ISO_SELF_TEST"     # the insulation monitor failed or did not end its self-test
ISOLATION = "ISOLATION"             # insulation below 100 ohm/V (cable check or while charging)
IMD_LOST = "IMD"                    # the insulation monitor is lost, in a device error, or gives no reading
CABLE_CHECK_TIMEOUT = "CABLE_CHECK_TIMEOUT"
PRECHARGE_FAIL = "PRECHARGE"        # the output did not reach the battery's voltage in time
OVERVOLTAGE = "DC_OVERVOLTAGE"
OVERCURRENT = "DC_OVERCURRENT"
DC_WELD = "DC_WELD"                 # the output stayed live after the contactors opened
NOT_DISCHARGED = "NOT_DISCHARGED"   # the output stayed above 60 V after the cable check
STOP_FAILED = "DC_STOP"             # the current did not fall at the end of the session
EMERGENCY = "ESTOP"


class Ev:
    """What the EV's communication controller says, updated in place each tick (no allocation):
    `talking` False while it says nothing; `phase` the step it asks for ("cable_check",
    "precharge", "charge", "stop"); its battery's voltage now, the most it takes (V), the voltage
    and current it asks for now."""

    def __init__(self):
        self.talking = False
        self.phase = None
        self.battery_v = 0.0
        self.max_v = 0.0
        self.target_v = 0.0
        self.target_a = 0.0
        self.max_a = 0.0
        self.soc = None


class Measured:
    """What the gun's hardware measures, updated in place each tick: the output's voltage at the
    gun (the cable side of the DC contactors) and current, the contactors' feedback, the
    insulation monitor (`iso_ohm` None while it has no reading; `self_test`: None running, True
    passed, False failed; `imd_lost`: it stopped answering or reports a device error), the
    emergency stop, and `ready`: the session is authorized and the
    dispenser has power to give (a module and a limit above 0); the cable check waits for it."""

    def __init__(self):
        self.ready = True
        self.out_v = 0.0
        self.out_a = 0.0
        self.contactor = False
        self.iso_ohm = None
        self.self_test = None
        self.imd_lost = False
        self.estop = False


class Sequence:
    """One DC gun's sequence. After each step(): `contactor` (close the DC contactors), `set_v`,
    `set_a` (the modules' output; 0 A: off), `imd_on` (the insulation monitor measures),
    `isolation` ("valid", "warning", "fault" or None: what the EV is told), `state`, `fault`."""

    def __init__(self, gun_max_v, gun_max_a, ramp_a_per_s=RAMP_A_PER_S):
        self.gun_max_v = gun_max_v
        self.gun_max_a = gun_max_a
        self.ramp = ramp_a_per_s
        self.state = IDLE
        self.fault = None
        self.since_ms = 0          # when the state began
        self.mark_ms = None        # a step's own timer (settled since, over-current since)
        self.contactor = False
        self.set_v = 0.0
        self.set_a = 0.0
        self.imd_on = False
        self.isolation = None
        self.iso_ohm_per_v = None  # the cable check's result
        self.test_v = 0.0
        self._last_ms = None
        self._tested = False       # the self-test passed in this cable check
        self._unwatched_ms = None  # live with no insulation reading since

    def _go(self, state, now_ms):
        self.state = state
        self.since_ms = now_ms
        self.mark_ms = None

    def _trip(self, fault, now_ms):
        # Modules off and contactors open at once, whatever the current: a fault does not wait.
        self.fault = fault
        self.contactor = False
        self.set_v = 0.0
        self.set_a = 0.0
        self.imd_on = False
        if fault in (ISOLATION, ISO_SELF_TEST):
            self.isolation = "fault"
        self._go(FAULTED, now_ms)

    def abort(self, why, now_ms):
        """The gun faulted on its own (the EV left, an RCD, an over-current): everything off."""
        self._trip(why, now_ms)

    def reset(self, now_ms):
        """A new session may start (the EV left, or a fault was cleared)."""
        self.fault = None
        self.isolation = None
        self.iso_ohm_per_v = None
        self.contactor = False
        self.set_v = self.set_a = 0.0
        self.imd_on = False
        self._go(IDLE, now_ms)

    def stop(self, now_ms):
        """The charger ends the session (a stop from the central system, a lost authorization):
        the EV is told (the step it sees is "stopping"), the current ramped down, and the checks,
        as when the EV asks."""
        if self.state in (CABLE_CHECK, PRECHARGE):
            self._open(now_ms)
        elif self.state == CHARGING:
            self._go(STOPPING, now_ms)

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        self.since_ms = ticks.back(self.since_ms, d)
        self.mark_ms = ticks.back(self.mark_ms, d)
        self._last_ms = ticks.back(self._last_ms, d)
        self._unwatched_ms = ticks.back(self._unwatched_ms, d)

    def _open(self, now_ms):
        self.set_a = 0.0
        self.set_v = 0.0
        self.contactor = False
        self.imd_on = False
        self._go(WELD_CHECK, now_ms)

    def step(self, now_ms, ev, m):
        dt_ms = 0 if self._last_ms is None else now_ms - self._last_ms
        self._last_ms = now_ms
        if m.estop and self.state not in (IDLE, DONE, FAULTED):
            self._trip(EMERGENCY, now_ms)
            return
        state = self.state
        if self.imd_on and state in (CABLE_CHECK, PRECHARGE, CHARGING, STOPPING) and m.self_test is not False:
            # No insulation watch, no voltage on the cable: a monitor lost, or one that gives no
            # reading while the cable is live onto the battery or on its way there (the cable
            # check's own measurement has CABLE_CHECK_MS: a monitor may take seconds to settle).
            live = state == CHARGING or (state != CABLE_CHECK and m.out_v > SAFE_V)
            if not live or m.iso_ohm is not None:
                self._unwatched_ms = None
            elif self._unwatched_ms is None:
                self._unwatched_ms = now_ms
            if m.imd_lost or (self._unwatched_ms is not None and now_ms - self._unwatched_ms >= UNWATCHED_MS):
                self._trip(IMD_LOST, now_ms)
                return
        if state == IDLE:
            if ev.talking and ev.phase == "cable_check" and m.ready:
                self.test_v = min(ev.max_v, self.gun_max_v)
                self._tested = False
                self.imd_on = True
                self._go(CABLE_CHECK, now_ms)
        elif state == CABLE_CHECK:
            self._cable_check(now_ms, ev, m)
        elif state == PRECHARGE:
            self._precharge(now_ms, ev, m)
        elif state == CHARGING:
            self._charging(now_ms, dt_ms, ev, m)
        elif state == STOPPING:
            self._stopping(now_ms, dt_ms, ev, m)
        elif state == WELD_CHECK:
            if m.out_v < SAFE_V and not m.contactor:
                self._go(DONE, now_ms)
            elif now_ms - self.since_ms >= WELD_CHECK_MS:
                self._trip(DC_WELD, now_ms)
        if self.state in (PRECHARGE, CHARGING) and (not ev.talking or ev.phase == "stop"):
            self.stop(now_ms)

    def _cable_check(self, now_ms, ev, m):
        if not ev.talking or ev.phase == "stop":
            self._open(now_ms)
            return
        if now_ms - self.since_ms >= CABLE_CHECK_MS + (SELF_TEST_MS if not self._tested else 0):
            self._trip(CABLE_CHECK_TIMEOUT, now_ms)
            return
        if not self._tested:
            # The monitor's self-test first, with no voltage on the cable.
            if m.self_test is False:
                self._trip(ISO_SELF_TEST, now_ms)
            elif m.self_test is True:
                self._tested = True
                self.since_ms = now_ms
            elif now_ms - self.since_ms >= SELF_TEST_MS:
                self._trip(ISO_SELF_TEST, now_ms)
            return
        if self.iso_ohm_per_v is not None:
            # Measured: the modules off and the output discharged below 60 V (the contactors stay
            # closed), then the precharge when the EV asks for it.
            self.set_a = 0.0
            self.set_v = 0.0
            if m.out_v < SAFE_V:
                # The cable check is finished: only now is the EV told its result.
                self.isolation = "warning" if self.iso_ohm_per_v < ISO_WARN_OHM_PER_V else "valid"
                if ev.phase == "precharge":
                    self._go(PRECHARGE, now_ms)
            elif now_ms - self.mark_ms >= DISCHARGE_MS:
                self._trip(NOT_DISCHARGED, now_ms)
            return
        self.contactor = True
        self.set_v = self.test_v
        self.set_a = PRECHARGE_MAX_A
        if not m.contactor or abs(m.out_v - self.test_v) > TEST_V_TOL:
            self.mark_ms = None
            return
        if self.mark_ms is None:
            self.mark_ms = now_ms
        if now_ms - self.mark_ms < SETTLE_MS or m.iso_ohm is None:
            return
        per_v = m.iso_ohm / self.test_v
        if per_v < ISO_FAULT_OHM_PER_V:
            self._trip(ISOLATION, now_ms)
            return
        self.iso_ohm_per_v = per_v
        self.mark_ms = now_ms   # the discharge's timer

    def _precharge(self, now_ms, ev, m):
        # The EV closes its contactors within 20 V of its battery (its own check) and asks for
        # current: the charger sees that as the phase "charge".
        self.contactor = True
        self.set_v = min(ev.target_v or ev.battery_v, self.gun_max_v)
        self.set_a = PRECHARGE_MAX_A
        if ev.phase == "charge":
            self._go(CHARGING, now_ms)
        elif now_ms - self.since_ms >= PRECHARGE_MS:
            self._trip(PRECHARGE_FAIL, now_ms)

    def _stopping(self, now_ms, dt_ms, ev, m):
        # Ramped down; the contactors open below OPEN_BELOW_A once the EV has stopped too (it
        # opens its own below that current) or says nothing more. After STOP_TIMEOUT_MS the
        # modules are turned off; a current that still flows after STOP_FORCE_MS is a fault.
        waited = now_ms - self.since_ms
        step = STOP_RAMP_A_PER_S * dt_ms / 1000
        self.set_a = self.set_a - step if self.set_a > step else 0.0
        if waited >= STOP_TIMEOUT_MS:
            self.set_a = 0.0
        ev_done = not ev.talking or ev.phase == "stop" or waited >= STOP_TIMEOUT_MS
        if m.out_a < OPEN_BELOW_A and ev_done:
            self._open(now_ms)
        elif waited >= STOP_FORCE_MS:
            self._trip(STOP_FAILED, now_ms)

    def _charging(self, now_ms, dt_ms, ev, m):
        self.contactor = True
        self.set_v = min(ev.target_v, ev.max_v, self.gun_max_v)
        self._ramp_to(min(ev.target_a, self.gun_max_a), dt_ms)
        if m.out_v > ev.max_v + OVER_V:
            self._trip(OVERVOLTAGE, now_ms)
            return
        if m.out_a > ev.target_a * 1.1 + OVER_A and m.out_a > self.set_a * 1.1 + OVER_A:
            if self.mark_ms is None:
                self.mark_ms = now_ms
            elif now_ms - self.mark_ms >= OVER_A_MS:
                self._trip(OVERCURRENT, now_ms)
                return
        else:
            self.mark_ms = None
        if m.iso_ohm is not None and m.out_v > SAFE_V and m.iso_ohm / m.out_v < ISO_FAULT_OHM_PER_V:
            self._trip(ISOLATION, now_ms)

    def _ramp_to(self, amps, dt_ms):
        step = self.ramp * dt_ms / 1000
        if amps > self.set_a + step:
            self.set_a += step
        elif amps < self.set_a - step:
            self.set_a -= step
        else:
            self.set_a = amps
