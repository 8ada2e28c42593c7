# One/three-phase switching (docs/grid.md): a gun whose board has a second contactor, the one
# that connects its L2 and L3, charges on one phase when the budget per phase cannot give the
# minimum current on three but can on one, and goes back to three when three can give the
# minimum plus a margin again. A switch waits until the condition has held `hold_ms`, comes at
# most `max_switches` times a session, and happens only with the EV paused and the main
# contactor open: the offer is withdrawn, the EV stops, the main contactor opens, the phase
# contactor switches, and after SETTLE_MS the offer comes back. Pure: the app steps it.
from micropython import const

from evse import ticks
from evse.pilot import DUTY_OFF_PM
from evse.sharing import RESUME_EXTRA_A, fill

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
        contactor is open and proven so, no offer runs and no fault stands (_safe below);
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


# ---- the application's side: what one and three phases would give, and when to switch ----------
def switch(app, now_ms, site, limits, loads, prio, solar_on):
    """The guns with a phase contactor (evse.phases): each compares what it would get on
    three phases and on one, and switches when one suits for phase_switch_s; a gun that is
    switching gets no offer (its limit here 0) until its phase contactor has switched and
    settled. `loads` follows what is switched."""
    from evse.app import gun_loads, site_phase   # the application is loaded: it calls this
    cfg = app.cfg
    min_a = cfg.get("min_current_a")
    max_switches = cfg.get("phase_switch_max")
    if not isinstance(site, list):
        site = [site, site, site]
    for i in range(len(app.guns)):
        ps = app.phase_sw[i]
        if ps is None:
            continue
        g, gun = app.guns[i], app.board["guns"][i]
        one = (site_phase(gun, 0),)
        wants = limits[i] > 0 and not ps.target and ps.may_switch(max_switches)
        on3 = on1 = 0.0
        floor = min_a + (RESUME_EXTRA_A if app.sharing.paused[i] else 0.0)
        if wants:
            if ps.phases == 3 and len(loads[i]) == 1:
                ps.single_ev = True   # seen drawing on one phase of three: an EV with one
            # The gun's own limit on each phase count: a smart-charging limit in W gives
            # three times the amps on one phase.
            base = g.limit_a()
            if base > cfg.get("gun_max_a"):
                base = cfg.get("gun_max_a")
            lim3, lim1 = base, base
            a3, a1 = app.smart_3p_a[g.n], app.smart_1p_a[g.n]
            if a3 is not None and a3 < base:
                lim3 = a3
            if a1 is not None and a1 < base:
                lim1 = a1
            on3 = _would_get(app, i, gun_loads(gun), lim3, site, limits, loads, prio, solar_on)
            on1 = _would_get(app, i, one, lim1, site, limits, loads, prio, solar_on)
        before = ps.target
        to = ps.step(now_ms, g.ev_plugged(), _safe(app, g), wants, on3, on1, floor,
                     cfg.get("phase_switch_s") * 1000, max_switches)
        if ps.target and not before and wants:
            app.note("gun %d: switching to %d phase%s (%.1f A on three, %.1f A on one): the EV pauses"
                     % (g.n, ps.target, "" if ps.target == 1 else "s", on3, on1))
        if to:
            app.hal.set_phases(g.n, to)
            app._loads[i] = loads[i] = one if to == 1 else gun_loads(gun)
            app.note("gun %d: phase contactor: %d phase%s" % (g.n, to, "" if to == 1 else "s"))
        if ps.target:
            limits[i] = 0


def _safe(app, g):
    """A gun's phase contactor may switch: its main contactor released, found open by the
    weld check and by its mirror contact, no PWM offer running (the EV cannot close it
    meanwhile), no fault and no interlock proof driving the coil."""
    return (not g.contactor and g.opened_ms is None and g.fault is None and g.duty_pm == DUTY_OFF_PM
            and g._interlock_ms < 0 and not app.hal.contactor_feedback(g.n))


def _would_get(app, i, phases, limit, site, limits, loads, prio, solar_on):
    """What gun i would get per phase if its EV loaded `phases` with `limit` as its own: the
    budget filled as the sharing fills it (no transition, no pause), under solar_mode the
    surplus spread as evse.grid.solar_caps spreads it."""
    loads = list(loads)
    loads[i] = phases
    limits = list(limits)
    limits[i] = limit
    caps = site
    if solar_on:
        from evse.app import VOLTS, phases_wanted
        n = phases_wanted(limits, loads)
        surplus = app.solar.surplus_w
        cap = surplus / (VOLTS * n) if surplus is not None and n and surplus > 0 else 0.0
        caps = [cap if cap < site[p] else site[p] for p in range(3)]
    return fill(limits, loads, caps, prio)[i]
