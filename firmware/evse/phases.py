# One/three-phase switching (docs/grid.md): a gun whose board has a second contactor, the one
# that connects its L2 and L3, charges on one phase when the budget per phase cannot give the
# minimum current on three but can on one, and goes back to three when three can give the
# minimum plus a margin again. A switch waits until the condition has held `hold_ms`, comes at
# most `max_switches` times a session, and happens only with the EV paused and the main
# contactor open: the offer is withdrawn, the EV stops, the main contactor opens, the phase
# contactor switches, and after SETTLE_MS the offer comes back. Pure: the app steps it.
from micropython import const

from evse import ticks

SETTLE_MS = const(3000)   # the phase contactor switched: the offer comes back after this
EXTRA_A = 1.0             # back to three phases only at min_a + this on each (hysteresis)


class PhaseSwitch:
    """One gun's phases (3 or 1; 0 until the phase contactor was first driven, after a boot).
    `target` is the phases it is switching to (0: none): while it is set the gun's offer is
    withdrawn."""

    def __init__(self):
        self.phases = 0
        self.target = 3            # a boot drives it to three before the first offer
        self.switches = 0          # this session (since the EV was plugged)
        self.single_ev = False     # the EV drew on one phase of three: no switch helps it
        self.since_ms = None       # since when the condition to switch has held
        self.switched_ms = None    # when the phase contactor switched, during a switch

    def may_switch(self, max_switches):
        """Whether a switch could still come this session (else what-ifs are not worth working out)."""
        return self.switches < max_switches and not (self.phases == 3 and self.single_ev)

    def step(self, now_ms, plugged, safe, wants, on3, on1, floor_a, hold_ms, max_switches):
        """One sharing step. plugged: an EV at the gun (the debounced pilot); safe: the main
        contactor is open and proven so, no offer runs and no fault stands (App._phase_safe);
        on3 / on1: what the gun would get per phase on three / one phase now, only read when it
        `wants` power; floor_a: the least the sharing gives it (the minimum, or more to resume).
        Returns the phases the phase contactor must be driven to now (3 or 1), or 0."""
        if not plugged:
            self.switches = 0
            self.single_ev = False
            self.since_ms = None
            if self.target != (3 if self.phases != 3 else 0):
                # The next EV starts on three (a switch under way for the last one is off).
                self.target = 3 if self.phases != 3 else 0
                self.switched_ms = None
            wants = False
        elif max_switches == 0 and self.phases == 1 and not self.target:
            self.target = 3       # switching was turned off: back to three at once
        if self.target:
            if self.switched_ms is None:
                if not safe:
                    return 0      # the EV has not paused yet, or the contacts are not proven open
                self.switched_ms = now_ms
                self.phases = self.target
                return self.target
            if now_ms - self.switched_ms >= SETTLE_MS:
                self.target = 0
                self.switched_ms = None
            return 0
        want = 0
        if wants and self.may_switch(max_switches):
            if self.phases == 3:
                if on3 < floor_a <= on1:
                    want = 1
            elif on3 >= floor_a + EXTRA_A and 3 * on3 >= on1:
                want = 3
        if not want:
            self.since_ms = None
        elif self.since_ms is None:
            self.since_ms = now_ms
        elif now_ms - self.since_ms >= hold_ms:
            self.since_ms = None
            self.target = want
            self.switches += 1
        return 0

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        self.since_ms = ticks.back(self.since_ms, d)
        self.switched_ms = ticks.back(self.switched_ms, d)
