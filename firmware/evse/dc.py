# DC charging: the DC gun (the pilot at 5 %, what the EV asks over its digital communication)
# and the cabinet controller, which switches whole power modules between the dispensers through
# the contactor matrix. The hardware comes in as `hal` (the DC power stage of evse.hal), the time
# as `now_ms`; how many modules each dispenser gets is evse.cabinet.allocate's choice.
#
# Sequencing, "lower first" (DESIGN.md, power sharing): a dispenser's power limit is never above
# min(modules connected to it, modules it is to keep) x module_kw, so
# - a dispenser that loses modules has its limit lowered at once to the modules it keeps;
# - a module leaves it (is parked) only once the power it delivers, read just before, is at or
#   below that; after RAMP_DOWN_MS the module is parked anyway, and that is logged;
# - a module is closed onto the dispenser that gains it once its feedback shows it parked, and
#   that dispenser's limit is raised only once the feedback shows the module connected;
# - a raise also waits while any dispenser still delivers above its limit, so the sum stays
#   under a cap on the total (site, ChargePointMaxProfile) through the transition too.
# Several modules may move at once; each goes through these steps on its own.
from micropython import const

from evse import cabinet, pilot, ticks
from evse.gun import Gun

CABINET_MS = const(100)      # the sequencing runs this often
ALLOCATE_MS = const(1000)    # the split is recomputed this often, and at once on an arrival or departure
RAMP_DOWN_MS = const(8000)   # a dispenser that has not ramped down by then loses the module anyway:
                             # converters ramp at 50 kW/s or faster, 300 kW come down in 6 s
FEEDBACK_MS = const(500)     # a module contactor whose feedback does not follow by then is reported
OVER_W = const(1000)         # a dispenser above 110 % of its limit + this for OVERCURRENT_MS stops
SETTLED_W = const(500)       # delivered within this of the limit counts as at the limit (meter noise)
NOMINAL_DC_V = const(400)    # a battery's voltage before the EV has said (for the offered current)
_ACTIVE = ("cable_check", "precharge", "charging", "stopping", "weld_check")


class DcGun(Gun):
    """A DC dispenser's gun: the IEC 61851-1 state machine with the pilot at 5 % (digital
    communication, Table A.8) while charging is allowed, and 100 % (no PWM) while not. Its power
    comes from the cabinet's modules; the EV says what it wants through `hal.ev_demand`."""

    wakeup_attempts = 0  # the PWM wake-up (A.5.3) is for basic charging: a DC EV talks instead

    def __init__(self, number, hal, gun_board, board):
        Gun.__init__(self, number, hal, gun_board, board)
        self.max_a = None      # guns[].max_a is the sequence's DC current: no AC rating caps its profiles
        self.max_w = int(gun_board["max_kw"] * 1000)
        self.allowed = False   # enabled and authorized: the app sets it
        self.demand_w = 0      # what the EV asks now; 0 while it does not talk
        self.soc = None        # its state of charge, %, while it talks (MeterValues SoC)
        self.dc_w = 0.0        # what the dispenser delivers now
        self.limit_w = 0       # the dispenser's power limit, as the cabinet set it
        self.modules = 0       # modules connected to it (their feedback)
        # A cabinet on CAN sets its modules' voltage and current: the gun runs the IEC 61851-23
        # sequence (evse.dcseq), which also decides when its DC contactors close and open.
        self.seq = None
        if (board.get("cabinet") or {}).get("can"):
            from evse import dcseq
            self.seq = dcseq.Sequence(gun_board.get("max_v", 1000), gun_board.get("max_a", 500))
            self.ev = dcseq.Ev()
            self.measured = dcseq.Measured()
            self._imd = False        # the insulation monitor as last commanded: off at boot
            # A Modbus monitor (board "imd", evse.imd) the App hands over; else the HAL's.
            self.imd = None
            if "imd" not in gun_board:
                hal.imd_enable(number, False)
            self._reported = None    # (step, isolation) last told the EV
            self._now_ms = 0

    def limit_a(self):
        return 0.0  # no AC offer: the power is the cabinet's

    def offer_text(self):
        return "limit %.1f kW" % (self.limit_w / 1000)   # a DC dispenser's offer is power

    def offered_a(self):
        """The DC current the dispenser's limit allows at the EV's voltage (NOMINAL_DC_V until
        current flows); 0 while charging is not allowed."""
        if not self.allowed or self.state not in ("B2", "C2", "D"):
            return 0.0
        volts = self.dc_w / self.current_a if self.current_a >= 1 else NOMINAL_DC_V
        return self.limit_w / volts

    def power_cap_w(self):
        """Most this dispenser may deliver now: its rating, derated by its temperature."""
        return self.max_w * self.derate_pct // 100

    def _sense(self):
        Gun._sense(self)
        if self.seq is not None:
            self._sequence(self._now_ms)
            return
        demand = self.hal.ev_demand(self.n)
        if demand is None:
            self.demand_w = 0
            self.soc = None
        else:
            self.demand_w = demand[0]
            self.soc = demand[1]
        self.dc_w = self.hal.dc_power(self.n)

    def step(self, now_ms):
        if self.seq is None:
            Gun.step(self, now_ms)
            return
        self._now_ms = now_ms
        Gun.step(self, now_ms)
        self._follow(now_ms)

    def _sequence(self, now_ms):
        # Every SENSE_MS: what the EV says and the hardware measures, one step of the sequence.
        hal = self.hal
        n = self.n
        ev = self.ev
        m = self.measured
        seq = self.seq
        hal.ev_comm(n, ev)
        self.dc_w = hal.dc_power(n)
        m.out_v = hal.dc_voltage(n)
        m.out_a = self.current_a
        m.contactor = self.contactor
        m.estop = self.estop
        if self.imd is not None:
            self.imd.read(m, now_ms)
        elif self._imd:
            hal.imd_read(n, m)
            m.imd_lost = False
        else:
            m.iso_ohm = None
            m.self_test = None
            m.imd_lost = False
        state = seq.state
        if ev.talking and ev.phase != "stop" and state not in ("done", "faulted"):
            # What it asks while charging; its most before (the cabinet gives it modules for the
            # cable check and the precharge too).
            self.demand_w = int((ev.target_a if ev.phase == "charge" else ev.max_a) * ev.battery_v)
            self.soc = ev.soc
        elif state not in ("stopping", "weld_check"):   # the ramp down keeps its modules
            self.demand_w = 0
            self.soc = ev.soc if ev.talking else None
        if not (self.allowed and self.enabled):
            seq.stop(now_ms)   # a stop from the central system, a lost authorization: ramped down
        m.ready = self.allowed and self.enabled and self.modules > 0 and self.limit_w > 0
        was = seq.fault
        seq.step(now_ms, ev, m)
        if seq.fault is not None and was is None and self.fault is None and seq.fault != "ESTOP":
            self._trip(seq.fault, now_ms)   # the gun's own estop trip covers ESTOP

    def winding_down(self):
        """The sequence ramps down or checks after a stop: the dispenser keeps its modules."""
        return self.seq is not None and self.seq.state in ("stopping", "weld_check")

    def rebase(self, d):
        Gun.rebase(self, d)
        if self.seq is not None:
            self.seq.rebase(d)

    def _run(self, now_ms, letter):
        # Disabled at the console (stop, or not enabled) during a session: the sequence ramps down
        # and opens, with the pilot at 5 % (_offer_pm), instead of opening under load.
        if self.seq is not None and not self.enabled and self.seq.state in _ACTIVE:
            self.enabled = True
            try:
                Gun._run(self, now_ms, letter)
            finally:
                self.enabled = False
            return
        Gun._run(self, now_ms, letter)

    def _follow(self, now_ms):
        # Each tick: the contactors open when the sequence says; the monitor and the EV told.
        seq = self.seq
        if self.contactor and not seq.contactor:
            self._open(now_ms)
        if self.fault is not None and seq.state not in ("idle", "done", "faulted"):
            seq.abort(self.fault, now_ms)   # a fault of the gun's own (the EV left, an RCD, ...)
        elif seq.state == "faulted" and self.fault is None:
            seq.reset(now_ms)   # the fault was cleared
        elif seq.state == "done" and self.state[0] in "AB":
            seq.reset(now_ms)
        if seq.imd_on != self._imd:
            self._imd = seq.imd_on
            if self.imd is not None:
                self.imd.enable(seq.imd_on, now_ms)
            else:
                self.hal.imd_enable(self.n, seq.imd_on)
        if self._reported is None or self._reported[0] != seq.state or self._reported[1] != seq.isolation:
            self._reported = (seq.state, seq.isolation)
            self.hal.ev_report(self.n, seq.state, seq.isolation)

    def _close(self, now_ms):
        if self.seq is not None and not self.seq.contactor:
            return   # the sequence closes the DC contactors (its cable check), not the EV's C
        Gun._close(self, now_ms)

    def _offer_pm(self, now_ms):
        if self.allowed:
            return pilot.DUTY_DIGITAL_PM
        seq = self.seq
        if seq is not None and seq.state in _ACTIVE:
            return pilot.DUTY_DIGITAL_PM   # talking on while the sequence ramps down and checks
        return pilot.DUTY_OFF_PM

    def dispense(self):
        """(volts, amps, present volts) the sequence asks of the modules, or None without one."""
        seq = self.seq
        if seq is None:
            return None
        present = self.measured.out_v if self.measured.out_v > 50 else seq.set_v
        return seq.set_v, seq.set_a, present

    def _overdrawn(self):
        # The converters deliver more than they were told: A.5.1's 110 % + a margin, in watts.
        return self.dc_w > self.limit_w * 1.1 + OVER_W

    def status(self):
        s = Gun.status(self)
        if self.seq is not None:
            s["dc_step"] = self.seq.state
            s["isolation"] = self.seq.isolation
            s["out_v"] = round(self.measured.out_v, 1)
        s["modules"] = self.modules
        s["dc_w"] = int(self.dc_w)
        s["limit_w"] = self.limit_w
        s["demand_w"] = self.demand_w
        s["soc"] = self.soc
        return s


def fill(needs, total):
    """Max-min fair split of `total` over `needs` (each gets at most its need)."""
    out = [0] * len(needs)
    todo = [i for i in range(len(needs)) if needs[i] > 0]
    left = total
    while todo and left > 0:
        share = left // len(todo)
        done = [i for i in todo if needs[i] - out[i] <= share]
        if not done:
            for i in todo:
                out[i] += share
            break
        for i in done:
            left -= needs[i] - out[i]
            out[i] = needs[i]
            todo.remove(i)
    return out


class Cabinet:
    """The cabinet's modules and contactor matrix. `step` every CABINET_MS with, per dispenser,
    what its EV asks (W, 0 for none), its cap (W) and what it delivers (W), the cap on the total
    (W) and the ranks (None: all equal). Dispensers are the guns, 1..n; modules 1..N."""

    def __init__(self, hal, board, log=print, matrix=None):
        cab = board["cabinet"]
        self.hal = hal
        # The contactor matrix: set_module, module_feedback (-1: unknown). The HAL's, or Modbus
        # I/O modules (evse.matrix, board file cabinet.matrix).
        self.matrix = hal if matrix is None else matrix
        if matrix is not None and hasattr(hal, "safe_hooks"):
            hal.matrix_off = matrix.all_open   # safe(): the matrix opens after the guns' contactors
        self.log = log
        self.count = cab["modules"]
        self.module_kw = cab["module_kw"]
        self.module_w = int(cab["module_kw"] * 1000)
        n = len(board["guns"])
        self.n = n
        # Power modules on CAN (board file cabinet.can): their setpoints carry each dispenser's
        # limit, and a module that reports a fault or falls silent is out of the allocation.
        self.stage = None
        can = cab.get("can")
        if can:
            from evse.can import modules
            codec = _codec(can["protocol"])
            self.stage = modules.Modules(hal.can(0), codec, can.get("addresses") or list(range(self.count)), log,
                                         self._module_changed, int(can.get("timeout_s", 10) * 1000))
            if hasattr(hal, "safe_hooks"):   # every evse.hal.Base has them
                hal.safe_hooks.append(self.stage.all_off)   # safe(): modules off before the contactors open
        self._out_ms = [None] * self.count   # since when a module out of use still sits on a dispenser
        self.dispense = [None] * n   # per dispenser: its gun's sequence's (V, A, present V), the app sets it
        # Modules per dispenser: the commanded position of each module (0 parked), and what its
        # feedback contacts show. At boot the matrix is taken as it is found.
        self.fb = [self.matrix.module_feedback(m + 1) for m in range(self.count)]
        self.cmd = [f if f > 0 else 0 for f in self.fb]   # unknown: a Modbus matrix opens every coil at start
        self.held = self.counts(self.fb)
        self.target = [0] * n
        self.limit_w = [0] * n
        for d in range(n):
            self._set_limit(d, 0)
        self.moves = 0                  # module switchings, parks and closes
        self.forced = 0                 # modules parked before their dispenser had ramped down
        self._commanded_ms = [0] * self.count
        self._stuck = [False] * self.count
        self._lowered_ms = [None] * n   # since when a dispenser waits to ramp down for a module
        self._over_ms = None            # since when some dispenser delivers above its limit
        self._active = None
        self._allocated_ms = None

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        ticks.back_all(self._commanded_ms, d)
        ticks.back_all(self._lowered_ms, d)
        ticks.back_all(self._out_ms, d)
        if self.stage is not None:
            self.stage.rebase(d)
        self._over_ms = ticks.back(self._over_ms, d)
        self._allocated_ms = ticks.back(self._allocated_ms, d)

    def counts(self, where, usable=None):
        out = [0] * self.n
        for m in range(len(where)):
            g = where[m]
            if g > 0 and (usable is None or usable[m]):
                out[g - 1] += 1
        return out

    def usable(self):
        """Per module: in use (without CAN every module is)."""
        stage = self.stage
        return [stage is None or stage.usable(m) for m in range(self.count)]

    def _module_changed(self, k, module):
        self._allocated_ms = None   # allocate again at the next step, with or without it

    def step(self, now_ms, demands_w, caps_w, delivered_w, total_w, prio=None):
        hal = self.hal
        n = self.n
        fb = self.fb
        matrix = self.matrix
        for m in range(self.count):
            fb[m] = matrix.module_feedback(m + 1)
        usable = self.usable()
        # What each dispenser has connected in use that stays. One commanded away whose contacts
        # have not opened yet does not count: a limit raised on it would flow through contacts
        # about to open (an EV that asks again within the feedback's lag).
        cmd = self.cmd
        held = self.held = self.counts([fb[m] if fb[m] == cmd[m] else 0 for m in range(self.count)], usable)
        self._check_feedback(now_ms)
        asks = [demands_w[d] if demands_w[d] < caps_w[d] else caps_w[d] for d in range(n)]
        active = [a > 0 for a in asks]
        if active != self._active or self._allocated_ms is None or now_ms - self._allocated_ms >= ALLOCATE_MS:
            self._active = active
            self._allocated_ms = now_ms
            # Every module takes part even under a cap on the total: the limits keep to the cap,
            # and whole modules split more evenly.
            self.target = cabinet.allocate([a / 1000 for a in asks], self.counts(self.cmd, usable), sum(usable),
                                           self.module_kw, prio)
        target = self.target

        # The limits: the modules connected and staying, the dispenser's cap, the total's share.
        want = [0] * n
        for d in range(n):
            k = held[d] if held[d] < target[d] else target[d]
            w = k * self.module_w
            want[d] = int(w if w < caps_w[d] else caps_w[d])
        if sum(want) > total_w:
            first = fill([asks[d] if asks[d] < want[d] else want[d] for d in range(n)], int(total_w))
            more = fill([want[d] - first[d] for d in range(n)], int(total_w) - sum(first))
            want = [first[d] + more[d] for d in range(n)]
        self._apply(now_ms, want, delivered_w)
        self._park_unusable(now_ms, usable)

        # Modules leaving a dispenser: those not connected yet go back at once, nothing flows
        # through them; connected ones once the dispenser has ramped down to what stays.
        for d in range(n):
            g = d + 1
            mine = [m for m in range(self.count) if self.cmd[m] == g and usable[m]]
            surplus = len(mine) - target[d]
            if surplus <= 0:
                self._lowered_ms[d] = None
                continue
            for m in reversed(mine):
                if surplus and fb[m] != g and fb[m] >= 0:   # unknown (-1): it may carry current
                    self._command(m, 0, now_ms)
                    surplus -= 1
            if not surplus:
                continue
            if self._lowered_ms[d] is None:
                self._lowered_ms[d] = now_ms
            keep_w = target[d] * self.module_w
            delivered = hal.dc_power(g)
            # On CAN the leaving modules must also have said they put out nothing since they
            # were told to turn off.
            if delivered > keep_w or not self._leaving_quiet(mine, g, surplus):
                if now_ms - self._lowered_ms[d] < RAMP_DOWN_MS:
                    continue
                self.forced += 1
                if delivered > keep_w:
                    self.log("cabinet: dispenser %d still delivers %d W, above the %d W its other modules give, "
                             "%d ms after its limit was lowered: a module is parked anyway"
                             % (g, delivered, keep_w, now_ms - self._lowered_ms[d]))
                else:
                    self.log("cabinet: a module leaving dispenser %d has not said it is off %d ms after it was "
                             "told to: it is parked anyway" % (g, now_ms - self._lowered_ms[d]))
            for m in reversed(mine):
                if surplus and fb[m] == g:
                    self._command(m, 0, now_ms)
                    surplus -= 1
            self._lowered_ms[d] = None

        # Parked modules (their feedback says so) go to the dispensers that gain.
        have = self.counts(self.cmd, usable)
        for m in range(self.count):
            if self.cmd[m] or fb[m] or not usable[m]:
                continue
            for d in range(n):
                if have[d] < target[d]:
                    self._command(m, d + 1, now_ms)
                    have[d] += 1
                    break

        if self.stage is not None:
            self._setpoints(usable)

    def _leaving_quiet(self, mine, g, surplus):
        if self.stage is None:
            return True
        for m in reversed(mine):
            if surplus and self.fb[m] == g:
                if not self.stage.quiet(m):
                    return False
                surplus -= 1
        return True

    def _park_unusable(self, now_ms, usable):
        # A module out of use no longer counts in its dispenser's limit (lowered above). One that
        # still answers leaves once it has said it puts out no current and its dispenser is down
        # to its limit (as any leaving module).
        # A silent one may be deaf too and still put out its last setpoint (the others carry the
        # rest of the limit, _setpoints): it leaves once its own timeout has surely turned it off
        # (evse.can.modules.Modules.deaf_off).
        stage = self.stage
        for m in range(self.count):
            g = self.cmd[m]
            if usable[m] or not g:
                self._out_ms[m] = None
                continue
            if self._out_ms[m] is None:
                self._out_ms[m] = now_ms
            if stage.silent(m):
                if not stage.deaf_off(m, now_ms):
                    continue
            elif not stage.quiet(m) or self.hal.dc_power(g) > self.limit_w[g - 1] + SETTLED_W:
                if now_ms - self._out_ms[m] < RAMP_DOWN_MS:
                    continue
                self.forced += 1
                self.log("cabinet: dispenser %d has not come down to its limit, or module %d has not said it is "
                         "off, %d ms after the module went out of use: it is parked anyway"
                         % (g, m + 1, now_ms - self._out_ms[m]))
            self._command(m, 0, now_ms)
            self._out_ms[m] = None

    def _setpoints(self, usable):
        # Each dispenser's limit split evenly over the modules in use that stay on it (their
        # feedback shows them there; of more than its target, the first: the last ones leave),
        # less what a silent module on it may still put out, each at most its rating; every
        # other module off, so the ones staying carry the limit before a module leaves.
        fb = self.fb
        cmd = self.cmd
        stage = self.stage
        top_a = self.module_w / NOMINAL_DC_V
        amps = [0.0] * self.count
        volts = [NOMINAL_DC_V] * self.n
        for d in range(self.n):
            g = d + 1
            keep = [m for m in range(self.count) if fb[m] == g and cmd[m] == g and usable[m]][:self.target[d]]
            if not keep:
                continue
            stray = 0.0
            for m in range(self.count):
                if fb[m] == g and not usable[m]:
                    stray += stage.stray_a(m)
            ask = self.dispense[d]
            if ask is None:
                volts[d], total = NOMINAL_DC_V, self.limit_w[d] / NOMINAL_DC_V
            else:   # the gun's sequence: its voltage, its current within the limit at the present voltage
                volts[d], total = ask[0], self.limit_w[d] / ask[2] if ask[2] > 0 else 0.0
                if ask[1] < total:
                    total = ask[1]
                if volts[d] <= 0:
                    total = 0.0
            total -= stray
            # A module takes no less than its protocol's least current: a small one (a cable
            # check's 2 A) goes to as few modules as carry it.
            least = stage.codec.MIN_SET_A
            if total < least * len(keep):
                keep = keep[:max(1, int(total / least))]
            per = total / len(keep)
            per = 0.0 if per < 0 else top_a if per > top_a else per
            for m in keep:
                amps[m] = per
        for m in range(self.count):
            g = fb[m]
            stage.set(m, volts[g - 1] if g > 0 else NOMINAL_DC_V, amps[m])

    def _apply(self, now_ms, want, delivered_w):
        limit = self.limit_w
        over = False
        for d in range(self.n):
            if want[d] < limit[d]:
                self._set_limit(d, want[d])   # lower first, at once
            if delivered_w[d] > limit[d] + SETTLED_W:
                over = True
        if over:
            if self._over_ms is None:
                self._over_ms = now_ms
            if now_ms - self._over_ms < RAMP_DOWN_MS:
                return  # raises wait for the others to come down
        else:
            self._over_ms = None
        for d in range(self.n):
            if want[d] > limit[d]:
                self._set_limit(d, want[d])

    def _set_limit(self, d, w):
        if self.stage is None:
            self.hal.set_dc_power(d + 1, w)
        self.limit_w[d] = w

    def _command(self, m, g, now_ms):
        self.matrix.set_module(m + 1, g)
        self.cmd[m] = g
        self._commanded_ms[m] = now_ms
        self._stuck[m] = False
        self.moves += 1

    def _check_feedback(self, now_ms):
        for m in range(self.count):
            if self.cmd[m] == self.fb[m] or self._stuck[m] or now_ms - self._commanded_ms[m] < FEEDBACK_MS:
                continue
            self._stuck[m] = True
            self.log("cabinet: module %d does not follow: commanded to %s, its feedback shows %s"
                     % (m + 1, _where(self.cmd[m]), _where(self.fb[m])))


def _codec(protocol):
    if protocol == "infy":
        from evse.can import infy
        return infy
    from evse.can import winline
    return winline


def _where(g):
    return "dispenser %d" % g if g > 0 else "parked" if g == 0 else "unknown (its I/O module is lost, or two contacts closed)"


def share(app, now_ms):
    """A DC board: the cabinet's modules and each dispenser's power limit from what each EV
    asks, capped by the dispenser's rating and the central system's profiles; the total by
    the cabinet, the site and the ChargePointMaxProfile. An OCPP limit in A is taken as the
    charger's AC input: W = A x 230 V x the board's phases (a limit set in W comes back
    as it was, floored to 0.1 A)."""
    from evse.app import VOLTS   # loaded: App calls this
    volts_total = VOLTS * app.phases(0)
    total_w = app.cfg.get("site_limit_a") * volts_total
    charger_a = app.smart_a[0]
    if charger_a is not None and charger_a * volts_total < total_w:
        total_w = charger_a * volts_total
    policy = app.cfg.get("sharing_policy")
    demands, caps, delivered, prio = [], [], [], []
    for g in app.guns:
        g.allowed = g.enabled and app.permit[g.n]
        cap = g.power_cap_w()
        if g.allowed:
            smart_a = app.smart_a[g.n]
            if smart_a is not None and smart_a * VOLTS * app.phases(g.n) < cap:
                cap = smart_a * VOLTS * app.phases(g.n)
        asks = g.demand_w if (g.allowed and g.wants_power()) or g.winding_down() else 0
        if asks and app._since[g.n - 1] is None:
            app._since[g.n - 1] = now_ms
        elif not asks:
            app._since[g.n - 1] = None
        demands.append(asks)
        caps.append(cap)
        delivered.append(g.dc_w)
        prio.append(app._rank(g, policy))
    if policy == "fifo":
        prio = [now_ms if t is None else t for t in app._since]
    cab = app.cabinet
    for g in app.guns:
        cab.dispense[g.n - 1] = g.dispense()
    cab.step(now_ms, demands, caps, delivered, total_w, prio)
    for g in app.guns:
        g.modules = cab.held[g.n - 1]
        g.limit_w = cab.limit_w[g.n - 1]
