# Charging from the site's solar surplus (docs/grid.md): what the grid meter says leaves the site,
# plus what the guns draw (they are behind the meter too), plus an import the owner allows, is
# the guns' budget. It starts a session only once the surplus has sufficed for the minimum current
# for a while, and stops it only once it has fallen short for a while, charging at the minimum
# meanwhile: clouds do not switch the contactors every minute.
from micropython import const

VOLTS = const(230)
OFF = "waiting"            # no surplus enough yet: the guns pause
ON = "charging"
SHORT = "short"            # on, the surplus below the minimum: the minimum, for solar_stop_s at most


class Solar:
    def __init__(self):
        self.state = OFF
        self.since_ms = None       # when the surplus first sufficed (OFF), or first fell short (SHORT)
        self.surplus_w = None      # at the last reading: what the guns may take, W (None: not known)

    def cap(self, now_ms, net_w, guns_w, import_w, phases, min_a, start_ms, stop_ms):
        """Amps per site phase the guns may take now. net_w: the grid meter's total power at its
        last reading (negative: export; None: not known), guns_w: what the guns drew then,
        import_w: what may come from the grid on top, phases: how many site phases the guns
        that want power load (0: none wants it), min_a: the minimum current of a session."""
        if net_w is None or not phases:
            self.surplus_w = None if net_w is None else guns_w - net_w + import_w
            self._to(OFF, None)
            return 0.0
        self.surplus_w = guns_w - net_w + import_w
        cap = self.surplus_w / (VOLTS * phases)
        if cap < 0:
            cap = 0.0
        enough = cap >= min_a
        if self.state == OFF:
            if not enough:
                self.since_ms = None
            elif self.since_ms is None:
                self.since_ms = now_ms
            elif now_ms - self.since_ms >= start_ms:
                self._to(ON, None)
                return cap
            return 0.0
        if enough:
            self._to(ON, None)
            return cap
        if self.state == ON:
            self._to(SHORT, now_ms)
        if now_ms - self.since_ms >= stop_ms:
            self._to(OFF, None)
            return 0.0
        return float(min_a)

    def reset(self):
        """Solar mode off: switched on again, it waits for the surplus afresh."""
        self._to(OFF, None)
        self.surplus_w = None

    def _to(self, state, since_ms):
        self.state = state
        self.since_ms = since_ms

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        if self.since_ms is not None:
            self.since_ms -= d
