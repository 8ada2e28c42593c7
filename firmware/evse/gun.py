# One charging gun: the IEC 61851-1 state machine around a control pilot, a contactor and the
# gun's safety sensors. Pure logic: the hardware comes in as `hal` (evse.hal interface) and the
# time as `now_ms`, so tests drive it with a model EV and hypothesis.
from micropython import const
from evse import pilot, ticks
from evse.pilot import DUTY_F_PM, DUTY_OFF_PM

# Timing, with the clause it comes from (IEC 61851-1:2017 unless noted).
TICK_MS = const(20)                 # control loop period: the default, and the most without an interlock
TICK_MIN_MS = const(10)
TICK_MAX_INTERLOCK_MS = const(40)   # with a hardware interlock (board "tick_ms": see config._check_tick)
DEBOUNCE_MS = const(300)            # new pilot state only after it held this long (A.4.3: 250-500 ms)
OPEN_CONFIRM_MS = const(15)         # opening paths skip the debounce; two samples in a row suffice:
                                    # this far apart, or the second read at once (Gun._read_again)
CLOSE_CONFIRM_MS = const(100)       # C (or D) read with PWM running and a good diode this long before
                                    # closing; with the debounce and the RCD test well inside the 3 s
                                    # from C2 to closed (Table A.6, seq. 7)
C1_OPEN_MS = const(6000)            # PWM withdrawn in C: open after 6 s at the latest (Table A.6, seq. 10.2)
PWM_CHANGE_MS = const(5000)         # PWM current changes at most every 5 s (A.5.1); the EV then has 5 s
F_STEP_MS = const(300)              # state F shown to the EV after a fault before the pilot rests at +12 V
RAISE_MIN_A = 0.5                   # a running offer rises by at least this much
ESTOP_HOLD_MS = const(1000)         # an emergency stop's fault stands at least this long, however short
                                    # the press: time for the charge point to end the session
WELD_CHECK_MS = const(150)          # contact of the auxiliary feedback settles before it is read
FEEDBACK_CLOSE_MS = const(300)      # a closing contactor must report closed within this time
OVERCURRENT_MS = const(7000)        # more than 110 % of the offer + 0.5 A for this long stops (A.5.1)
WAKEUP_AFTER_MS = const(30000)      # EV in B2 that does not ask for energy gets a wake-up (A.5.3)
WAKEUP_X1_MS = const(4000)          # ... PWM withdrawn for this long, then offered again
WAKEUP_ATTEMPTS = const(2)
SENSE_MS = const(250)               # temperature and current are read at this period
RCD_RELEASE_MS = const(100)         # an RCD module's output falls within this after its reset
INTERLOCK_CHECK_MS = const(150)     # a board's hardware interlock is proven by driving the coil this
                                    # long with the pilot at F: long enough for the contacts to close
                                    # if nothing held them (pull-in: tens of ms)
_INTERLOCK_PROVEN = const(-1)
_INTERLOCK_UNPROVEN = const(-2)
C_STOP_A = const(1)                 # in C1 the contactor opens early once the EV has stopped drawing

# Fault codes and how each one clears.
CLEAR_COMMAND = const(0)  # only a technician command clears it
CLEAR_UNPLUG = const(1)   # clears when the EV is unplugged (state A), or by command
CLEAR_DELAY = const(2)    # clears by itself after the board's retry delay, or by command
CLEAR_COOL = const(3)     # clears when the temperature is back below the restart level
CLEAR_LEAVE_D = const(4)  # clears when the EV leaves state D
CLEAR_METER = const(5)    # clears when the energy meter answers again
CLEAR_RELEASE = const(6)  # clears when the emergency stop is released
FAULTS = {
    "RCD": CLEAR_DELAY,          # residual current >= 6 mA DC / 30 mA AC
    "RCD_TEST": CLEAR_UNPLUG,    # RCD self-test before closing failed
    "DIODE": CLEAR_UNPLUG,       # low plateau not at -12 V while PWM runs
    "WELD": CLEAR_COMMAND,       # feedback contact still closed after opening
    "CONTACTOR": CLEAR_COMMAND,  # feedback contact did not close
    "OVERCURRENT": CLEAR_DELAY,
    "OVERTEMP": CLEAR_COOL,
    "VENT": CLEAR_LEAVE_D,       # EV asks for ventilation the site does not have
    "PILOT": CLEAR_UNPLUG,       # pilot level outside every band
    "METER": CLEAR_METER,        # the energy meter stopped answering (if meter_fault_stops)
    "INTERLOCK": CLEAR_COMMAND,  # the hardware interlock let the contactor close with the pilot at F
    "ESTOP": CLEAR_RELEASE,      # the emergency stop is pressed: every gun, every session ends
    # A DC gun's IEC 61851-23 sequence (evse.dcseq):
    "ISOLATION": CLEAR_UNPLUG,   # insulation below 100 ohm/V: in the cable check or while charging
    "ISO_SELF_TEST": CLEAR_DELAY,  # the insulation monitor's self-test failed
    "IMD": CLEAR_DELAY,          # the insulation monitor stopped answering or reports a device error
    "CABLE_CHECK_TIMEOUT": CLEAR_UNPLUG,
    "PRECHARGE": CLEAR_UNPLUG,   # the output did not reach the battery's voltage in time
    "DC_OVERVOLTAGE": CLEAR_UNPLUG,
    "DC_OVERCURRENT": CLEAR_DELAY,
    "DC_WELD": CLEAR_COMMAND,    # the output stayed live after the contactors opened
    "NOT_DISCHARGED": CLEAR_COMMAND,  # the output stayed above 60 V after the cable check
    "DC_STOP": CLEAR_DELAY,      # the current did not fall at the end of a session
}


class Gun:
    wakeup_attempts = WAKEUP_ATTEMPTS  # a subclass whose EV wakes by other means sets 0

    def __init__(self, number, hal, gun_board, board):
        self.n = number  # 1-based, as on the charger's label
        self.hal = hal
        self.max_a = gun_board.get("max_a")  # None on a DC gun: its power comes from the cabinet
        self.has_pp = gun_board.get("pp", False)
        self.ventilation = gun_board.get("ventilation", False)
        self.thr = pilot.thresholds(board["pilot"])
        self.derate = board["derate"]["steps"]  # [[celsius, percent], ...] ascending
        self.stop_c = board["derate"]["stop_c"]
        self.restart_c = board["derate"]["restart_c"]
        self.fault_retry_ms = board.get("fault_retry_s", 60) * 1000
        # A hardware interlock in the front end enables the coil driver only while the pilot
        # shows C or D and the RCM is quiet: whatever the loop does, the contactor opens within
        # microseconds of the EV leaving C/D or an RCD trip. It is proven at boot and after every
        # session (in A), before the next can close: see _check_interlock.
        self.interlock = board.get("interlock", False)
        self.estop = False   # the board's emergency stop, as the application last read it
        self._held = None    # (code, since ms): the fault an emergency stop took over, back at its release
        # _INTERLOCK_PROVEN, _INTERLOCK_UNPROVEN, or the time the proof began. One attribute: each
        # one more on a Gun slows every lookup of the tick (MicroPython's instance map).
        self._interlock_ms = _INTERLOCK_UNPROVEN if self.interlock else _INTERLOCK_PROVEN
        self.state = "A"
        self.letter = pilot.Debounce(DEBOUNCE_MS, "A")
        self.fault = None
        # When the fault began; after an RCD fault, when the module was reset (its output may take
        # RCD_RELEASE_MS to fall, and a trip read before then is not acted on).
        self.fault_since_ms = -RCD_RELEASE_MS
        self.contactor = False
        # Pending weld check: one at boot too, WELD_CHECK_MS in (a coil driven until a soft reset
        # has let go by then) and before anything is offered (the pilot's debounce takes longer),
        # so contacts welded before a power cut are found before the next EV.
        self.opened_ms = 0
        self.closed_ms = None
        self.allocation_a = 0.0  # from the power sharing
        self.meter_ok = True     # from the metering: False while the gun's meter does not answer
        self.meter_stops = True  # a meter that does not answer stops charging (billing needs it)
        self.enabled = True
        self.cable_a = None
        self.temperature_c = 25.0
        self.current_a = 0.0
        self.derate_pct = 100
        # The guns sense in turn, not all in one tick: the tick that senses is the longest, and
        # with 8 guns in step it was nearly 2 x the usual one. Each senses on its own grid, SENSE_MS
        # apart from its phase, so a stall of the loop does not bring them into step; all of them
        # sense on the first tick (PP, temperature and current are known before anything else).
        self._sensed_ms = (number - 1) % 8 * (SENSE_MS // 8) - 2 * SENSE_MS
        self._raw = "A"
        self._band = pilot.band("A", self.thr)   # the levels that keep _raw as it is (pilot.band)
        self._raw_since_ms = 0
        self._c1_since_ms = None
        self._b2_since_ms = None
        self._wakeups = 0
        self._x1_until_ms = None
        self._charged = False
        self._over_since_ms = None
        self._diode_bad = 0
        self._c_pwm_since_ms = None  # since when a fresh sample read C/D with PWM and a good diode
        self._rcd_testing = False
        self._resync = False         # the next fresh sample sets the pilot state without debounce
        self.events = []  # (kind, text) for the console and the log, drained by the app
        self.hal.set_contactor(number, False)
        self.hal.set_pilot(number, DUTY_OFF_PM)
        self.duty_pm = DUTY_OFF_PM
        self.duty_changed_ms = -PWM_CHANGE_MS
        self._over = (-1, 0.5)        # (duty, over-current limit in A) of _overdrawn
        self._offer = (None, 0, 0)    # (allocation, limit, duty) of _offer_pm

    # ---- what the outside world asks -------------------------------------------------------
    def offered_a(self):
        """Current the pilot offers now (0 when no PWM runs)."""
        return pilot.duty_pm_to_amps(self.duty_pm) if self.state in ("B2", "C2", "D") else 0.0

    def limit_a(self):
        """Most this gun could offer now: its rating, the cable, the temperature."""
        cap = self.max_a
        if self.cable_a is not None and self.cable_a < cap:
            cap = self.cable_a
        if self.derate_pct == 100:
            return cap   # no float made on every tick
        return cap * self.derate_pct / 100

    def ev_plugged(self):
        """An EV is at the gun, by the pilot as debounced, in a fault too (state FAULT)."""
        return self.letter.stable in "BCD"

    def needs_technician(self):
        """A fault only a technician's command clears (a weld, a contactor that failed): no
        session goes on here until then."""
        return self.fault is not None and FAULTS.get(self.fault) == CLEAR_COMMAND

    def wants_power(self):
        return self.enabled and self.fault is None and self.state[0] in "BCD"

    def clear_fault(self, now_ms):
        """Technician command: clears any latched fault. A welded contact stays reported if
        the feedback still shows it closed, an emergency stop while it is pressed."""
        if self.fault is None:
            return False
        if self.fault == "WELD" and self.hal.contactor_feedback(self.n):
            return False
        if self.fault == "ESTOP" and self.estop:
            return False
        self._clear(now_ms)
        return True

    def restore_fault(self, code, now_ms):
        """A fault latched before a reboot (the application keeps them on flash) stands again,
        with its clearing rule; a delay to clear starts afresh. False for a code not known."""
        if not isinstance(code, str) or code not in FAULTS:
            return False
        if self.fault is None:
            self._trip(code, now_ms)
            self._resync = True   # the pilot as it reads after the F step, not the boot's "A"
        return True

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks): every time kept here moves with it."""
        back = ticks.back
        self.fault_since_ms = back(self.fault_since_ms, d)
        self.opened_ms = back(self.opened_ms, d)
        self.closed_ms = back(self.closed_ms, d)
        self.duty_changed_ms = back(self.duty_changed_ms, d)
        self._sensed_ms = back(self._sensed_ms, d)
        self._raw_since_ms = back(self._raw_since_ms, d)
        self._c1_since_ms = back(self._c1_since_ms, d)
        self._b2_since_ms = back(self._b2_since_ms, d)
        self._x1_until_ms = back(self._x1_until_ms, d)
        self._over_since_ms = back(self._over_since_ms, d)
        self._c_pwm_since_ms = back(self._c_pwm_since_ms, d)
        if self._interlock_ms >= 0:  # a proof under way (the negative values are its states)
            self._interlock_ms = back(self._interlock_ms, d)
        self.letter.rebase(d)

    # ---- the control step ------------------------------------------------------------------
    def step(self, now_ms):
        late = now_ms - self._sensed_ms
        if late >= SENSE_MS:
            self._sensed_ms = now_ms - late % SENSE_MS   # back on its grid
            self._sense()
        mv = self.hal.sample_pilot(self.n)   # indexed, not unpacked: a HAL may hand back one array
        high_mv = mv[0]
        diode = mv[1] <= self.thr[7]         # pilot.diode_ok: the low plateau reaches -12 V

        # The pilot means nothing while this side drives -12 V (state F step).
        duty = self.duty_pm
        pwm_on = 0 < duty < DUTY_OFF_PM
        deb = self.letter
        if duty != DUTY_F_PM:
            raw = self._raw
            band = self._band
            if not band[0] <= high_mv < band[1]:   # the level left its band: classify it afresh
                raw = pilot.classify(high_mv, raw, self.thr)
                if raw != self._raw:
                    self._raw = raw
                    self._raw_since_ms = now_ms
                self._band = pilot.band(raw, self.thr)
            if self._resync:
                # After a fault the last reading is stale (the F step hid the EV): start afresh.
                self._resync = False
                deb.force(raw)
            if raw == deb.stable:   # Debounce.feed's first case, without the call
                deb._candidate = raw
                letter = raw
            else:
                letter = deb.feed(raw, now_ms)
            # D asks for ventilation: on a gun without it, D is no state to charge in.
            no_vent = raw == "D" and not self.ventilation
            if pwm_on and diode and raw in "CD" and not no_vent:
                if self._c_pwm_since_ms is None:
                    self._c_pwm_since_ms = now_ms
            else:
                self._c_pwm_since_ms = None
            if (letter != raw and letter in "CD" and (raw not in "CD" or no_vent)
                    and (now_ms - self._raw_since_ms >= OPEN_CONFIRM_MS
                         or self.contactor and self._read_again(raw) is not None)):
                if raw not in "CD":
                    # Opening paths skip the debounce (A.4.3): EV left C/D, or the pilot broke.
                    deb.force(raw)
                    letter = raw
                elif no_vent:
                    # The interlock passes D: the loop opens, as fast as for leaving C, but the
                    # VENT fault waits for the debounce (a short dip to the D level is no fault);
                    # no close while it lasts (_c_pwm_since_ms stays None).
                    self._open(now_ms)
        else:
            letter = deb.stable
            self._c_pwm_since_ms = None

        if self.estop and self.fault != "ESTOP" and FAULTS.get(self.fault) != CLEAR_COMMAND:
            self._estop_trip(now_ms)   # over a fault that clears by itself; a weld stays shown
        if self.fault is None:
            self._check_safety(now_ms, letter, diode, pwm_on)
        if self.fault is not None:
            self._in_fault(now_ms, letter)
        else:
            self._run(now_ms, letter)
        if self.opened_ms is not None:
            self._check_weld(now_ms)

    # ---- internals ---------------------------------------------------------------------------
    def _sense(self):
        hal = self.hal
        n = self.n
        self.temperature_c = hal.temperature_c(n)
        self.current_a = hal.current_a(n)
        self._update_derate()
        if self.has_pp:
            self.cable_a = cable_rating_a(hal.proximity_ohms(n))

    def _overdrawn(self):
        """The EV draws more than the pilot offers: 110 % of the offer + 0.5 A (A.5.1). The
        limit is worked out when the duty changes, not on every tick (a float is an allocation)."""
        over = self._over
        pm = self.duty_pm
        if over[0] != pm:
            offered = pilot.duty_pm_to_amps(pm) if 0 < pm < DUTY_OFF_PM else 0.0
            over = self._over = (pm, offered * 1.1 + 0.5)
        return self.current_a > over[1]

    def _offer_pm(self, now_ms):
        """The duty to show an EV in B, C or D: what the sharing allows, capped by this gun's own
        limits, as a PWM current; no PWM below 6 A or during a wake-up's x1 step. The duty is
        worked out when the allocation or the limit changes, not on every tick."""
        if self._x1_until_ms is not None:
            if now_ms < self._x1_until_ms:
                return DUTY_OFF_PM
            self._x1_until_ms = None
        offer = self.allocation_a
        lim = self.limit_a()
        memo = self._offer
        if memo[0] is not offer or memo[1] != lim:
            pm = DUTY_OFF_PM
            capped = lim if offer > lim else offer
            if capped >= pilot.MIN_A:
                pm = pilot.amps_to_duty_pm(capped)
            memo = self._offer = (offer, lim, pm)
        return memo[2]

    def _read_again(self, raw):
        """An opening path's second sample, at once rather than a tick later: with a 40 ms tick
        two ticks and the contactor's drop-out would leave little of the 100 ms. The pilot read
        afresh if its high plateau still reads `raw`, else None (a spike)."""
        mv = self.hal.sample_pilot(self.n)
        return mv if pilot.classify(mv[0], raw, self.thr) == raw else None

    def _diode_read_again(self):
        mv = self._read_again(self._raw)   # the same state: a missing diode, not a level moving
        return mv is not None and mv[1] > self.thr[7]

    def _check_safety(self, now_ms, letter, diode, pwm_on):
        # diode: the low plateau reached -12 V (pilot.diode_ok); pwm_on: PWM ran as sampled
        hal = self.hal
        if hal.rcd_tripped(self.n) and now_ms - self.fault_since_ms >= RCD_RELEASE_MS:
            self._trip("RCD", now_ms)
            return
        if pwm_on and letter in "BCD" and self._raw in "BCD":
            # (a pilot shorted to PE reads 0 V on both plateaus: state E, whose opening path runs)
            if diode:
                self._diode_bad = 0
            else:
                self._diode_bad += 1
                if self._diode_bad >= 2 or self._diode_read_again():
                    self._trip("DIODE", now_ms)
                    return
        if letter == "X" and self._raw == "X" and now_ms - self._raw_since_ms >= DEBOUNCE_MS:
            self._trip("PILOT", now_ms)
            return
        if letter == "D" and not self.ventilation:
            self._trip("VENT", now_ms)
            return
        if self.temperature_c >= self.stop_c:
            self._trip("OVERTEMP", now_ms)
            return
        if not self.meter_ok and self.meter_stops:
            self._trip("METER", now_ms)
            return
        if self.contactor:
            if self.closed_ms is not None and now_ms - self.closed_ms >= FEEDBACK_CLOSE_MS:
                if not hal.contactor_feedback(self.n):
                    self._feedback_lost(now_ms)
                    return
            if self._overdrawn():
                if self._over_since_ms is None:
                    self._over_since_ms = now_ms
                elif now_ms - self._over_since_ms >= OVERCURRENT_MS:
                    self._trip("OVERCURRENT", now_ms)
                    return
            else:
                self._over_since_ms = None
        else:
            self._over_since_ms = None

    def _run(self, now_ms, letter):
        if self._interlock_ms != _INTERLOCK_PROVEN and letter not in "EX":
            if self._check_interlock(now_ms):
                return  # the check holds the pilot at F meanwhile
        if letter in "AEFX":
            # No EV, or a broken pilot: open, rest at +12 V and wait.
            self._open(now_ms)
            self._drive(DUTY_OFF_PM, now_ms, True)
            self._rcd_testing = False
            if letter == "A":
                if self.interlock and (self.state != "A" or self._charged):
                    self._interlock_ms = _INTERLOCK_UNPROVEN  # the session is over: prove it again
                self._charged = False
                self._wakeups = 0
                self._b2_since_ms = None
                self._x1_until_ms = None
            self._set_state("E" if letter == "X" else letter)
            return
        if not self.enabled:
            self._open(now_ms)
            self._drive(DUTY_F_PM, now_ms, True)
            self._set_state("F")
            return
        # B, C or D: offer what this gun may give now.
        pm = self._offer_pm(now_ms)
        if pm != self.duty_pm:   # _drive's own first test, without the call on a steady tick
            self._drive(pm, now_ms, False)
        pwm_on = self.duty_pm < DUTY_OFF_PM
        if letter == "B":
            self._open(now_ms)
            self._c1_since_ms = None
            self._rcd_testing = False
            if pwm_on:
                if self._b2_since_ms is None:
                    self._b2_since_ms = now_ms
                elif (not self._charged and self._wakeups < self.wakeup_attempts
                      and now_ms - self._b2_since_ms >= WAKEUP_AFTER_MS):
                    # The EV sees PWM and still does not ask: x2 -> x1 -> x2 wakes sleeping EVs.
                    self._wakeups += 1
                    self._b2_since_ms = None
                    self._x1_until_ms = now_ms + WAKEUP_X1_MS
                    self.events.append(("wakeup", "wake-up sequence %d" % self._wakeups))
            else:
                self._b2_since_ms = None
            self._set_state("B2" if pwm_on else "B1")
            return
        # C, or D with ventilation: the EV asks for energy.
        self._b2_since_ms = None
        self._charged = True
        if pwm_on:
            self._c1_since_ms = None
            if not self.contactor:
                self._close(now_ms)
                if self.fault is not None:
                    return  # the RCD self-test failed: the fault state stands
            state = "C2" if letter == "C" else "D"
            if state != self.state:
                self._set_state(state)
        else:
            self._rcd_testing = False
            if self.contactor:
                if self._c1_since_ms is None:
                    self._c1_since_ms = now_ms
                elif (now_ms - self._c1_since_ms >= C1_OPEN_MS
                      or (self.current_a < C_STOP_A and now_ms - self._c1_since_ms >= SENSE_MS * 2)):
                    self._open(now_ms)
            self._set_state("C1" if letter == "C" else "D")

    def _in_fault(self, now_ms, letter):
        self._open(now_ms)
        if self._interlock_ms >= 0:
            self._interlock_release()
        if now_ms - self.fault_since_ms < F_STEP_MS:
            self._drive(DUTY_F_PM, now_ms, True)
        else:
            self._drive(DUTY_OFF_PM, now_ms, True)
        if now_ms - self.fault_since_ms < F_STEP_MS:
            return  # the EV sees the whole F step before anything clears
        rule = FAULTS[self.fault]
        if self._resync:
            pass   # the pilot is not read yet (a restored fault): nothing clears on a stale letter
        elif rule == CLEAR_UNPLUG and letter == "A" and self.duty_pm == DUTY_OFF_PM:
            self._clear(now_ms)
        elif rule == CLEAR_DELAY and now_ms - self.fault_since_ms >= self.fault_retry_ms:
            # An RCD fault clears with a reset of the module (in _clear); if the residual current
            # persists, the module trips again and so does the gun, for another retry delay.
            self._clear(now_ms)
        elif rule == CLEAR_COOL and self.temperature_c < self.restart_c:
            self._clear(now_ms)
        elif rule == CLEAR_LEAVE_D and letter != "D" and self.duty_pm == DUTY_OFF_PM:
            self._clear(now_ms)
        elif rule == CLEAR_METER and (self.meter_ok or not self.meter_stops):   # or the site charges on without it
            self._clear(now_ms)
        elif rule == CLEAR_RELEASE and not self.estop and now_ms - self.fault_since_ms >= ESTOP_HOLD_MS:
            held = self._held
            self._held = None
            self._clear(now_ms)
            if held is not None:   # the fault underneath stands again, with its own clock
                self._trip(held[0], now_ms)
                self.fault_since_ms = held[1]

    def _trip(self, code, now_ms):
        self._open(now_ms)
        self.fault = code
        self.fault_since_ms = now_ms
        self._drive(DUTY_F_PM, now_ms, True)
        self._set_state("FAULT")
        self.events.append(("fault", code))

    def _clear(self, now_ms):
        code = self.fault
        self.fault = None
        if code == "RCD":
            self.hal.rcd_reset(self.n)
            # A module's output may take up to RCD_RELEASE_MS to fall after its reset; the
            # contactor stays open meanwhile (a close needs a passing self-test first).
            self.fault_since_ms = now_ms
        self._diode_bad = 0
        self._over_since_ms = None
        self._rcd_testing = False
        self._resync = True
        self.events.append(("cleared", code))
        # Re-enter through the pilot as it reads now.
        self._set_state(self.letter.stable if self.letter.stable in "AEF" else "B1")

    def _drive(self, duty_pm, now_ms, urgent):
        if duty_pm == self.duty_pm:
            return
        # A running PWM offer changes (or is withdrawn) at most every PWM_CHANGE_MS; starting
        # an offer and the safety paths (urgent) never wait.
        running = 0 < self.duty_pm < DUTY_OFF_PM
        if running and not urgent and now_ms - self.duty_changed_ms < PWM_CHANGE_MS:
            return
        if (running and 0 < duty_pm < DUTY_OFF_PM and duty_pm > self.duty_pm
                and pilot.duty_pm_to_amps(duty_pm) - pilot.duty_pm_to_amps(self.duty_pm) < RAISE_MIN_A):
            # A raise under half an ampere is not worth the 5 s it would hold the offer: a lowering
            # (a building that steps up) would wait for them. The sharing's small swings (a
            # meter's reading a second behind an EV that ramps) settle this way too.
            return
        self.duty_pm = duty_pm
        self.duty_changed_ms = now_ms
        self.hal.set_pilot(self.n, duty_pm)

    def _close(self, now_ms):
        if self.contactor:
            return
        if self.opened_ms is not None:
            return  # wait for the weld check of the last opening
        if self._c_pwm_since_ms is None or now_ms - self._c_pwm_since_ms < CLOSE_CONFIRM_MS:
            return  # not yet seen asking with PWM running and its diode in place
        if self._interlock_ms != _INTERLOCK_PROVEN:
            return  # the interlock is proven first
        # An RCD self-test before every close (IEC 62955 / 61851-1 8.5); it runs over several
        # ticks so that the other guns keep their 100 ms meanwhile.
        if not self._rcd_testing:
            self._rcd_testing = True
            self.hal.rcd_test_start(self.n)
        passed = self.hal.rcd_test_result(self.n)
        if passed is None:
            return
        self._rcd_testing = False
        if not passed:
            self._trip("RCD_TEST", now_ms)
            return
        self.contactor = True
        self.closed_ms = now_ms
        self.hal.set_contactor(self.n, True)
        self.events.append(("contactor", "closed"))

    def _feedback_lost(self, now_ms):
        """The mirror contact reads open while the coil is driven. With an interlock that is the
        interlock acting on the EV leaving C/D (the loop learns of it after the contactor opened);
        the pilot, sampled before the feedback was read, is looked at again. An emergency stop
        cuts the coil too, maybe since the application read its input this tick: it is read
        again. Otherwise the contactor failed."""
        if self.hal.estop():
            self.estop = True   # the application's next read says the same to every gun
            self._estop_trip(now_ms)
            return
        if self.interlock:
            if pilot.classify(self.hal.sample_pilot(self.n)[0], self._raw, self.thr) not in "CD":
                self._open(now_ms)
                return
        self._trip("CONTACTOR", now_ms)

    def _estop_trip(self, now_ms):
        if self.fault is not None:
            self._held = (self.fault, self.fault_since_ms)
        self._trip("ESTOP", now_ms)

    def _check_interlock(self, now_ms):
        """Prove the interlock: with the pilot held at F (-12 V, which no interlock takes for C/D)
        the coil is driven, and the mirror contact must stay open. Runs at boot and in A after a
        session, so an EV rarely sees it; where one is plugged it sees a short F, as at boot. True
        while the check runs."""
        if self._interlock_ms == _INTERLOCK_UNPROVEN:
            if self.contactor or self.opened_ms is not None:
                return False  # a weld check is pending: the feedback must be free first
            self._interlock_ms = now_ms
            self._drive(DUTY_F_PM, now_ms, True)
            self.hal.set_contactor(self.n, True)
            return True
        if now_ms - self._interlock_ms < INTERLOCK_CHECK_MS:
            return True
        closed = self.hal.contactor_feedback(self.n)
        self._interlock_release()
        if self.hal.estop():
            return True    # the button held the coil without supply: no proof; it starts again
        if closed:
            self.opened_ms = now_ms  # and the weld check follows this unintended close
            self._trip("INTERLOCK", now_ms)
            return True
        self._interlock_ms = _INTERLOCK_PROVEN
        return False

    def _interlock_release(self):
        self._interlock_ms = _INTERLOCK_UNPROVEN
        self.hal.set_contactor(self.n, False)

    def _open(self, now_ms):
        if not self.contactor:
            return
        self.contactor = False
        self.closed_ms = None
        self.hal.set_contactor(self.n, False)
        self.opened_ms = now_ms
        self._c1_since_ms = None
        self.events.append(("contactor", "open"))

    def _check_weld(self, now_ms):
        if self.opened_ms is None or now_ms - self.opened_ms < WELD_CHECK_MS:
            return
        self.opened_ms = None
        if self.hal.contactor_feedback(self.n):
            if self.fault != "WELD":
                self._trip("WELD", now_ms)

    def _update_derate(self):
        t = self.temperature_c
        pct = 100
        for step in self.derate:
            # 2 degC of hysteresis on the way down keeps a sensor on an edge from toggling.
            edge = step[0] - (2 if self.derate_pct <= step[1] else 0)
            if t >= edge:
                pct = step[1]
        self.derate_pct = pct

    def _set_state(self, state):
        if state != self.state:
            old = self.state
            self.state = state
            self.events.append(("state", "%s -> %s  %s" % (old, state, self.offer_text())))

    def offer_text(self):
        """What the gun offers, for its state-change line."""
        return "offer %.1f A" % self.offered_a()

    def status(self):
        return {
            "gun": self.n, "state": self.state, "duty_pm": self.duty_pm,
            "offered_a": round(self.offered_a(), 2), "contactor": self.contactor,
            "current_a": round(self.current_a, 2), "temperature_c": round(self.temperature_c, 1),
            "derate_pct": self.derate_pct, "cable_a": self.cable_a, "fault": self.fault,
            "allocation_a": round(self.allocation_a, 2), "enabled": self.enabled,
        }


# PP resistor to cable rating, IEC 61851-1 Table B.2 (with the usual tolerance bands).
_PP_BANDS = ((1000, 2200, 13), (470, 1000, 20), (150, 470, 32), (75, 150, 63))


def cable_rating_a(ohms):
    """Cable current rating from the proximity resistor; None when no valid cable is inserted."""
    if ohms is None:
        return None
    for lo, hi, amps in _PP_BANDS:
        if lo <= ohms < hi:
            return amps
    return 0  # open or out of band: no cable, offer nothing
