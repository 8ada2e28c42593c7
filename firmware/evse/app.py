# The application: guns, sharing, console and watchdog as asyncio tasks. Whatever ends it
# (an exception, Ctrl-C, a soft reset), every contactor opens and every pilot goes safe first.
import sys
import time

import asyncio

import evse
from evse import VERSION, config, slices, store, ticks
from evse import hal as hal_mod
from evse.gun import Gun, TICK_MS  # noqa: F401  (the App's parts: evse.appinit makes them at boot)
from evse.log import Log  # noqa: F401
from evse.sharing import Sharing  # noqa: F401

SHARE_MS = 250        # the budget is recomputed at least this often, and at once on a change
OCPP_MS = 250         # the charge point looks at the guns and the card readers this often
CAN_MS = 10           # a DC cabinet's CAN bus is served this often (evse.can.modules: one module a turn)
VOLTS = 230           # nominal phase voltage, for energy where a gun has no meter
DRAWING_A = 1.0      # a phase carrying this much is one the EV draws on
ENERGY_FILE = "energy.json"   # the estimated registers of guns without a meter
INTEGRATE_MS = 100            # the estimated registers grow this often
ENERGY_SAVE_MS = 60000        # ... written this often while they grow, and when a session ends
FAULTS_FILE = "faults.json"   # the guns' faults, so that a latched one survives a reboot
WATCHDOG_FEED_MS = 500
CONSOLE_LINE_MAX = 200
RESTART_MS = 1000     # a task that failed starts again after this pause
UNSURE_MS = 4000      # after a gun's offer or contactor changes, what its EV draws is not known for this long
LOG_QUEUE_MAX = 32    # log lines waiting for the flash task; beyond, they are counted as lost


def _unsure(g, now_ms):
    """Whether the gun's offer or contactor changed in the last UNSURE_MS: its EV may draw
    anything up to the offer, whatever its meter said last."""
    return (now_ms - g.duty_changed_ms < UNSURE_MS
            or g.closed_ms is not None and now_ms - g.closed_ms < UNSURE_MS)


def site_phase(gun, k):
    """The site phase (0, 1, 2) on the gun's phase k (0 = its L1), by the gun's rotation."""
    return int(gun.get("rotation", "L1L2L3")[2 * k + 1]) - 1


def gun_loads(gun):
    """The site phases a gun's EV may load: all three, or the one on the gun's L1."""
    if gun.get("phases", 3) == 3:
        return (0, 1, 2)
    return (site_phase(gun, 0),)


def phases_wanted(limits, loads):
    """How many site phases the guns that want power (limit > 0) load."""
    seen = 0
    for lim, phases in zip(limits, loads):
        if lim:
            for p in phases:
                seen |= 1 << p
    return (seen & 1) + (seen >> 1 & 1) + (seen >> 2 & 1)


class App:
    def __init__(self, board, cfg, hal, root="/"):
        evse.call_and_let_go("evse.appinit", "init", self, board, cfg, hal, root)   # once, at boot

    def grid_cap_a(self):
        """What the grid meter's budget is checked against: grid_limit_a, not less than the
        board's own site limit (a central system may lower grid_limit_a, which must not make a
        building's real load look like a meter's fault)."""
        return max(self.cfg.get("grid_limit_a"), self.board["site_limit_a"])

    def client_cert_missing(self):
        """Why SecurityProfile 3 could not connect for want of this charge point's certificate
        (ocpp_cert, ocpp_key not set, or a file missing), or None. Reads no key."""
        for setting in ("ocpp_cert", "ocpp_key"):
            name = self.cfg.get(setting)
            if not name:
                return "it needs this charge point's certificate: set ocpp_cert and ocpp_key"
            if not store.exists(store.join(self.root, name)):
                return "%s file %s is missing" % (setting, name)
        return None

    def client_csr(self):
        """The certificate request (PEM text) made at commissioning for ocpp_key, or None."""
        name = self.cfg.get("ocpp_csr")
        if not name or not self.cfg.get("ocpp_key"):
            return None
        try:
            with open(store.join(self.root, name)) as f:
                text = f.read()
        except OSError:
            return None
        return text if "CERTIFICATE REQUEST-----" in text else None

    def client_cert(self):
        """SecurityProfile 3: (certificate, private key) as DER bytes from the files ocpp_cert and
        ocpp_key name; None when either is not set. Read at each connect, and let go once the
        handshake has used them. A missing file is an OSError naming it (never the key's bytes)."""
        cert, key = self.cfg.get("ocpp_cert"), self.cfg.get("ocpp_key")
        if not cert or not key:
            return None
        out = []
        for setting, name in (("ocpp_cert", cert), ("ocpp_key", key)):
            try:
                with open(store.join(self.root, name), "rb") as f:
                    out.append(f.read())
            except OSError:
                raise OSError("%s file %s is missing" % (setting, name))
        return out[0], out[1]


    def note(self, text):
        """A line for the console and, through the flash task, the log on flash; never raises (a
        task that notes an error must not die of the note: a MemoryError here would end it for
        good)."""
        try:
            print(text)
            if len(self._log_queue) < LOG_QUEUE_MAX:
                self._log_queue.append(text)
            else:
                self.log.lost_line()
            self._flash_due.set()
        except Exception:  # noqa: BLE001
            pass


    def write_flash(self, lines=LOG_QUEUE_MAX):
        """What the other tasks left for the flash: the guns' faults when they changed, up to
        `lines` log lines, then, when no line is left, the energy registers. Never raises."""
        if self._faults_due:
            self._faults_due = False
            lines -= 1   # a write of its own (a step of the flash task)
            try:
                store.write_json(store.join(self.root, FAULTS_FILE),
                                 dict((str(g.n), g.fault) for g in self.guns if g.fault is not None))
            except Exception as e:  # noqa: BLE001  (tried again with the next write; said once)
                self._faults_due = True
                if not self._faults_failing:
                    self._faults_failing = True
                    self.note("faults: cannot save them (%s); trying again" % e)
            else:
                self._faults_failing = False
        q = self._log_queue
        while q and lines > 0:
            lines -= 1
            try:
                self.log.write(q.pop(0))
            except Exception:  # noqa: BLE001  (Log.write counts its own failures)
                pass
        snap = self._energy_saved
        if not q and snap is not self._energy_written:
            self._energy_written = snap
            try:
                store.write_json(store.join(self.root, ENERGY_FILE), [round(e, 1) for e in snap])
            except Exception as e:  # noqa: BLE001
                self.note("energy: cannot save the registers (%s)" % e)

    async def flash(self):
        # A line per step: each is a littlefs append (an erase, tens of ms on an RP2040).
        while True:
            await self._flash_due.wait()
            self._flash_due.clear()
            while self._log_queue:
                start = time.ticks_ms()
                self.write_flash(1)
                self.took("flash", time.ticks_diff(time.ticks_ms(), start))
                await asyncio.sleep_ms(0)
            start = time.ticks_ms()
            self.write_flash(0)   # the registers
            self.took("flash", time.ticks_diff(time.ticks_ms(), start))

    def grant(self):
        """The charge point's word for the control path: who may charge, the smart-charging caps
        and the sessions' cards, as plain values. Runs in the OCPP task. An exception inside OCPP
        withdraws every permit (the guns stop safely) and is logged once."""
        cp = self.cp
        try:
            for n in range(1, len(self.guns) + 1):
                self.permit[n] = cp.may_charge(n)
                self.tags[n] = cp.session_tag(n)
            failing, self._grant_failing = self._grant_failing, False
            if failing:
                self.note("ocpp: the charge point answers again; permits restored")
        except Exception as e:
            for n in range(len(self.permit)):
                self.permit[n] = False
            if not self._grant_failing:
                self._grant_failing = True
                self.note("ocpp: asking the charge point who may charge failed (%r): every gun stops" % e)
        for n in range(len(self.smart_a)):
            self.smart_a[n] = self._smart_a(n)
            if n and self.phase_sw[n - 1] is not None:
                self.smart_1p_a[n] = self._smart_a(n, 1)
                self.smart_3p_a[n] = self._smart_a(n, 3)

    def took(self, task, ms):
        """A task's step took ms: kept if it is the slowest of that task so far."""
        if ms > self.slowest_ms.get(task, -1):
            self.slowest_ms[task] = ms

    def timing_clear(self):
        self.worst_gap_ms = 0
        self.slowest_ms = {}

    # ---- what the charge point asks of the charger -----------------------------------------------
    def phases(self, n):
        if n == 0:
            return self.board.get("phases", 3)
        ps = self.phase_sw[n - 1]
        if ps is not None:
            return ps.phases
        return self.board["guns"][n - 1].get("phases", self.board.get("phases", 3))

    def reading(self, n):
        """Gun n's last plausible meter reading (evse.meters.Reading), or None."""
        return self.metering.reading(n) if self.metering is not None else None

    def energy_wh(self, n):
        """Gun n's import register: its meter's, else the estimate."""
        r = self.reading(n)
        return r.energy_wh if r is not None else self._energy_wh[n - 1]

    def energy_floor(self, n, wh):
        """Gun n's estimated register is at least wh (what a session was told before a reboot),
        and is written so."""
        if wh > self._energy_wh[n - 1]:
            self._energy_wh[n - 1] = float(wh)
            self._energy_saved = list(self._energy_wh)
            self._flash_due.set()

    def power_w(self, n):
        r = self.reading(n)
        if r is not None:
            return r.power_w
        g = self.guns[n - 1]
        return self._estimated_w(g)

    def _contactors(self):
        closed = 0
        bit = 1
        for g in self.guns:
            if g.contactor:
                closed |= bit
            bit <<= 1
        return closed

    def _estimated_w(self, g):
        """What gun g delivers where it has no meter: the dispenser's DC power, or the current
        at the nominal voltage."""
        if not g.contactor:
            return 0.0
        if self.cabinet is not None:
            return g.dc_w
        return g.current_a * VOLTS * self.phases(g.n)

    def unlock(self, n):
        # None: the gun has no lock actuator (a tethered cable or a socket without one).
        return None

    def reboot(self, hard):
        self.hal.safe()
        if self.cp is not None:   # the journal's batched confirmations and drops, before a planned reset
            try:
                self.cp.journal.sync()
            except Exception as e:  # noqa: BLE001  (the reset goes on: at worst a message goes twice)
                print("reboot: journal not synced (%r)" % (e,))
        self.hal.reset(hard)

    async def after_boot(self, cp):
        # Once per boot (a session starts at every connect): the report of an update the
        # reboot finished, read with the update code, which goes again unless a job runs.
        if self._boot_reported:
            return
        self._boot_reported = True
        from evse.ocpp import fwboot
        status = fwboot.boot_report(self.root)
        evse.update_job(0)
        if status:
            cp.firmware_status = status
            from evse.ocpp.cp import FW_REQUEST_FILE
            path = store.join(self.root, FW_REQUEST_FILE)
            signed = store.read_json(path, None)
            if isinstance(signed, dict) and isinstance(signed.get("requestId"), int):
                cp.send("SignedFirmwareStatusNotification", {"status": status, "requestId": signed["requestId"]})
                store.remove(path)
            else:
                cp.send("FirmwareStatusNotification", {"status": status})
            if status == "Installed":
                cp.security_event("FirmwareUpdated", "evse %s installed" % evse.VERSION)

    def clock(self):
        """The control path's monotonic millisecond count; unlike ticks_ms it does not wrap, and
        it stays a small int for any uptime (evse.ticks)."""
        t = time.ticks_ms()
        self.now_ms += time.ticks_diff(t, self._last_ticks)
        self._last_ticks = t
        if self.now_ms >= ticks.REBASE_AT_MS:
            self.rebase(ticks.REBASE_MS)
        return self.now_ms

    def rebase(self, d):
        """Moves the count and every time taken from it back by d; uptime_ms() stays true."""
        self.now_ms -= d
        self._rebased += d
        back = ticks.back
        self._shared_ms = back(self._shared_ms, d)
        self._stepped_ms = back(self._stepped_ms, d)
        self._energy_saved_ms = back(self._energy_saved_ms, d)
        ticks.back_all(self._since, d)
        for g in self.guns:
            g.rebase(d)
        self.sharing.rebase(d)
        if self.cabinet is not None:
            self.cabinet.rebase(d)
        if self.metering is not None:
            self.metering.rebase(d)
        if self.solar is not None:
            self.solar.rebase(d)
        for ps in self.phase_sw:
            if ps is not None:
                ps.rebase(d)
        if self.site is not None:
            self.site.rebase(d)

    def stamp(self):
        """The time a log line gets: the wall clock (UTC) once OCPP has set it, else the time
        since boot, so a technician reads either without a tick counter."""
        cp = getattr(self, "cp", None)   # a line noted while the application starts
        if cp is not None and cp.clock.known:
            from evse.ocpp import clock
            return clock.iso(cp.clock.now())
        ms = self.uptime_ms()
        return "up %d:%02d:%02d.%d" % (ms // 3600000, ms // 60000 % 60, ms // 1000 % 60, ms // 100 % 10)

    def uptime_ms(self):
        """Since boot (for the console: past 12 days a number the heap holds, once per ask)."""
        return self._rebased + self.now_ms

    def share(self, now_ms):
        """share_steps at once (tests, the bench, step())."""
        slices.run(self.share_steps(now_ms))

    def share_steps(self, now_ms):
        """The budget per phase (the site's, under the central system's ChargePointMaxProfile),
        what each gun may take (its own limits, its authorization and TxProfile), which phases
        its EV loads, what it draws, and the policy's ranks -> each gun's allocation. A generator
        that yields between the sharing's stages (a site's coordinator shares 16 guns or more)."""
        if self.cabinet is not None:
            from evse import dc   # loaded at boot on a DC board
            dc.share(self, now_ms)
            return
        cfg = self.cfg
        cap = cfg.get("gun_max_a")
        site = cfg.get("site_limit_a")
        charger_a = self.smart_a[0]
        if charger_a is not None and charger_a < site:
            site = charger_a
        policy = cfg.get("sharing_policy")
        limits, offered, drawn, prio = [], [], [], []
        for g in self.guns:
            lim = g.limit_a() if g.wants_power() else 0
            if lim:
                if not self.permit[g.n]:
                    lim = 0
                else:
                    smart_a = self.smart_a[g.n]
                    if smart_a is not None and smart_a < lim:
                        lim = smart_a
            limits.append(lim if lim < cap else cap)
            if lim and self._since[g.n - 1] is None:
                self._since[g.n - 1] = now_ms
            elif not lim:
                self._since[g.n - 1] = None
            offer = g.offered_a()
            offered.append(offer)
            if g.contactor and g.state[0] in "CD":
                drawn.append(g.current_a)
            elif g.state[0] == "B":
                drawn.append(0.0)   # connected, not asking (not yet, or full): its offer sits idle
            else:
                drawn.append(offer)
            prio.append(self._rank(g, policy))
        since = [now_ms if t is None else t for t in self._since]
        loads = self._loads_now()
        site_bus = self.site
        if site_bus is not None:
            if site_bus.coordinates:
                loads = list(loads)
                site_bus.extend(now_ms, limits, offered, drawn, loads, prio, since)
            else:   # a node: what its guns want goes to the coordinator, whose caps come back
                site_bus.report = [(limits[i], self.sharing.committed[i], offered[i], drawn[i],
                                    g.current_a if g.contactor else 0.0, loads[i], prio[i],
                                    None if self._since[i] is None else (now_ms - self._since[i]) // 1000,
                                    g.contactor and _unsure(g, now_ms))
                                   for i, g in enumerate(self.guns)]
                site = site_bus.budget(now_ms, site, limits)
        if policy == "fifo":
            prio = since
        grid = self.metering is not None and self.metering.grid_source is not None
        solar_on = grid and cfg.get("solar_mode") == "on"
        if grid:
            from evse import grid as budget   # loaded at boot on a board with a grid meter
            site = budget.caps(self, now_ms, site, loads)
        wanting = limits
        if self.phase_sw.count(None) < len(self.phase_sw):
            wanting = list(limits)   # a gun that is switching still counts for the solar surplus
            from evse import phases   # loaded at boot on a board with a phase contactor
            phases.switch(self, now_ms, site, limits, loads, prio, solar_on)
        if grid:
            if solar_on:
                site = budget.solar_caps(self, now_ms, site, wanting, loads)
            elif self.solar.state != "waiting" or self.solar.since_ms is not None:
                self.solar.reset()   # switched on again, it waits solar_start_s afresh
        if site_bus is not None and site_bus.coordinates:
            site = site_bus.reserve(site if isinstance(site, list) else [site] * 3, now_ms)
        rebased = self._rebased
        alloc = yield from self.sharing.steps(now_ms, site, limits, offered, loads, drawn, prio, since)
        now_ms -= self._rebased - rebased   # the clock rebased between the steps: its times moved
        if site_bus is not None and site_bus.coordinates:
            site_bus.place(now_ms, alloc, len(self.guns))
            if site_bus.holds(now_ms):
                # Until the nodes' caps are known; or for good, with another coordinator on the
                # line, whose sharing does not count these guns.
                alloc = [0.0] * len(self.guns)
        for g, a in zip(self.guns, alloc):
            g.allocation_a = a

    def _loads_now(self):
        """The site phases each gun loads: what its meter sees drawn while it charges (a
        single-phase EV on a three-phase gun loads one), else all the gun has."""
        loads = self._loads
        if self.metering is None:
            return loads
        out = list(loads)
        for g in self.guns:
            r = self.reading(g.n)
            if r is None or r.dc or not g.contactor or g.state[0] not in "CD":
                continue
            gun = self.board["guns"][g.n - 1]
            seen = tuple(site_phase(gun, k) for k in range(len(r.amps)) if r.amps[k] >= DRAWING_A)
            if seen:
                out[g.n - 1] = seen
        return out

    def _smart_a(self, n, phases=None):
        """The central system's cap on gun n (0: the charger), None for none; 0 A when it cannot
        be computed, which stops the gun safely and is logged once."""
        if self.cp is None:
            return None
        try:
            limit = self.cp.limit_a(n) if phases is None else self.cp.limit_a(n, phases)
        except Exception as e:
            if n not in self._smart_failing:
                self._smart_failing.add(n)
                self.note("ocpp: the smart-charging limit of %s failed (%r): 0 A"
                          % ("gun %d" % n if n else "the charger", e))
            return 0
        self._smart_failing.discard(n)
        return limit

    def _rank(self, g, policy):
        if policy != "priority":
            return 0
        if str(g.n) in self.cfg.get("priority_guns").split(","):
            return 0
        tag = self.tags[g.n]
        return 0 if tag is not None and tag in self.cfg.get("priority_tags").split(",") else 1

    def step(self):
        """One control tick with its share, in the order the two tasks run them (tests, bench)."""
        now = self.clock()
        if self._share_due(now):
            self.share(now)
        self._control_step(now)

    def _share_due(self, now):
        """At once when a gun starts or stops wanting power, else every share_ms."""
        wanting = 0
        bit = 1
        for g in self.guns:
            if g.wants_power():
                wanting |= bit
            bit <<= 1
        if wanting != self._wanting or now - self._shared_ms >= self.share_ms:
            self._wanting = wanting
            self._shared_ms = now
            return True
        return False

    def _control_step(self, now):
        # The estimated registers every INTEGRATE_MS, not every tick (their floats were a fifth
        # of the tick's cost), and at once when a contactor opens or closes: a session's last
        # interval, up to INTEGRATE_MS (0.6 Wh at 22 kW), is counted at 0 W as the tick's was.
        closed = self._contactors()
        if now - self._stepped_ms >= INTEGRATE_MS or closed != self._closed:
            self.integrate(now, now - self._stepped_ms)
            self._stepped_ms = now
            self._closed = closed
        if self.metering is not None:
            stops = self.cfg.get("meter_fault") == "stop"
            for g in self.guns:
                if self.metering.fitted(g.n):
                    g.meter_ok = self.metering.ok[g.n - 1]
                    g.meter_stops = stops
        if self.has_estop:
            pressed = self.hal.estop()
            if pressed != self.estop:
                self.estop = pressed
                self.note("emergency stop pressed: every gun stops" if pressed else "emergency stop released")
                for g in self.guns:
                    g.estop = pressed
        for g in self.guns:
            g.step(now)
            if g.events:
                for kind, text in g.events:
                    if kind == "state":
                        if g.state == "B1" and not self.permit[g.n]:
                            text += "  (waiting for a card, or a remote start)"
                        print("gun %d: %s" % (g.n, text))
                    else:  # faults and their clearing also go to the log on flash
                        if kind == "fault" or kind == "cleared":
                            self._faults_due = True   # noted below: the flash task runs
                        self.note("gun %d: %s %s" % (g.n, kind, text))
                g.events.clear()
        self.ticks += 1

    async def control(self):
        # The sharing runs in a task of its own that this one wakes: with 8 guns it costs more
        # than a tick's budget at RP2040 speed, and a gun's safety never waits for it (an
        # allocation only lowers or raises an offer; a new EV has none until it is shared).
        last = time.ticks_ms()
        while True:
            start = time.ticks_ms()
            gap = time.ticks_diff(start, last)
            last = start
            if gap > self.worst_gap_ms:
                self.worst_gap_ms = gap
            if self._share_error is not None:
                raise self._share_error
            now = self.clock()
            self._control_step(now)
            if self._share_due(now):
                self._share_now.set()
            self.took("control", time.ticks_diff(time.ticks_ms(), start))
            await asyncio.sleep_ms(self.tick_ms)

    async def sharer(self):
        # Not restarted: a bug in the sharing (on DC boards the modules' moves and feedback too)
        # stops the charger safe, as when it ran in the control tick. The control task raises it.
        try:
            while True:
                await self._share_now.wait()
                self._share_now.clear()
                await slices.run_async(self.share_steps(self.now_ms), self._took_share)
        except Exception as e:  # noqa: BLE001
            self._share_error = e

    def _took_share(self, ms):
        self.took("share", ms)

    async def can_bus(self):
        stage = self.cabinet.stage
        while True:
            start = time.ticks_ms()
            stage.step(self.now_ms)
            self.took("can", time.ticks_diff(time.ticks_ms(), start))
            await asyncio.sleep_ms(CAN_MS)

    async def ocpp(self):
        cp = self.cp
        while True:
            start = time.ticks_ms()
            try:
                card = self.hal.rfid_read()
                if card is not None:
                    cp.swipe(card[0], card[1])
                cp.supervise()
            except Exception as e:  # a bug in the OCPP part never stops the guns
                self.note("ocpp: supervise failed: %r" % e)
            self.grant()
            self.took("ocpp", time.ticks_diff(time.ticks_ms(), start))
            await asyncio.sleep_ms(OCPP_MS)

    def integrate(self, now_ms, dt_ms):
        """The estimated registers of guns without a meter; on flash every ENERGY_SAVE_MS while
        they grow and as soon as a contactor opens, so a power cut loses little."""
        opened = False
        for g in self.guns:
            if self.reading(g.n) is not None:
                continue
            if g.contactor:
                self._energy_wh[g.n - 1] += self._estimated_w(g) * dt_ms / 3600000
            elif self._energy_wh[g.n - 1] != self._energy_saved[g.n - 1]:
                opened = True
        if self._energy_wh != self._energy_saved and (opened or now_ms - self._energy_saved_ms >= ENERGY_SAVE_MS):
            self._energy_saved = list(self._energy_wh)   # the flash task writes it, not this tick
            self._energy_saved_ms = now_ms
            self._flash_due.set()

    async def watchdog(self):
        seen = -1
        while True:
            # Fed only while the control loop is alive: a stuck loop resets the board.
            if self.ticks != seen:
                seen = self.ticks
                self.hal.watchdog_feed()
            await asyncio.sleep_ms(WATCHDOG_FEED_MS)

    async def console(self):
        reader = asyncio.StreamReader(sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin)
        line = bytearray()
        overflow = False
        prev = 0
        while True:
            # One byte per wake-up: a stream read of more blocks the whole loop (and with it the
            # control of the guns) until that many bytes arrive, e.g. while a technician types.
            data = await reader.read(1)
            if not data:
                await asyncio.sleep_ms(200)
                continue
            for b in data:
                prev, b_prev = b, prev
                if b == 8 or b == 127:   # Backspace (a terminal sends DEL): the last character goes
                    if line and not overflow:
                        line = line[:-1]
                        self._echo("\b \b")
                    continue
                # A terminal's Enter sends CR, a script LF, some both: any of them ends the line.
                if b != 13 and b != 10:
                    if len(line) < CONSOLE_LINE_MAX:
                        line.append(b)
                        if 32 <= b < 127:
                            self._echo(chr(b))
                    else:
                        overflow = True
                    continue
                if b == 13 or b_prev != 13:   # CR LF is one Enter
                    self._echo("\r\n")
                if overflow:
                    print("console: line longer than %d characters ignored" % CONSOLE_LINE_MAX)
                elif line:
                    start = time.ticks_ms()
                    self.answer(bytes(line))
                    self.took("console", time.ticks_diff(time.ticks_ms(), start))
                line = bytearray()
                overflow = False

    def _echo(self, text):
        if self.console_echo:
            sys.stdout.write(text)

    def answer(self, raw):
        try:
            text = raw.decode().strip()
        except UnicodeError:
            print("console: input is not text; try: help")
            return
        try:
            from evse import cli   # at the first command: a charger nobody types at keeps its heap
            for out in cli.handle(self, text):
                print(out)
        except MemoryError:  # the console stays: the next command may find the memory
            print("console: out of memory answering that; the charger runs on")

    def start_selftest(self):
        from evse import cli   # the console's: loaded, the command came through it
        asyncio.create_task(cli.selftest(self))

    def later_reboot(self):
        async def reboot():
            await asyncio.sleep_ms(200)  # the reply leaves the serial port first
            self.reboot(True)
        asyncio.create_task(reboot())

    async def keep(self, name, task):
        """Runs task() for ever: an exception in it (a MemoryError too) is logged, counted in
        `timing`, and the task starts again after RESTART_MS. No task dies silently."""
        while True:
            try:
                await task()
                why = "ended"
            except Exception as e:  # noqa: BLE001  (a cancel is no Exception: it ends this too)
                why = "failed (%r)" % (e,) if not isinstance(e, MemoryError) else "ran out of memory"
                if isinstance(e, MemoryError) and self.cp is not None:
                    try:   # the event must not end the task it reports (keep restarts it)
                        self.cp.security_event("MemoryExhaustion", "the task %s ran out of memory" % name)
                    except Exception:  # noqa: BLE001
                        pass
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.note("%s: the task %s; started again in %d ms" % (name, why, RESTART_MS))
            await asyncio.sleep_ms(RESTART_MS)

    async def run(self):
        # Started here, not in its task: if the watchdog cannot start, nothing charges.
        self.hal.watchdog_start(self.board.get("watchdog_ms", 5000))
        # The control task is not restarted (nor the sharing, whose exception it raises): its
        # exception ends run(), main() makes every gun safe, and the watchdog resets a board.
        control = asyncio.create_task(self.control())
        task = asyncio.create_task
        task(self.sharer())
        task(self.keep("watchdog", self.watchdog))
        task(self.keep("flash", self.flash))
        task(self.keep("console", self.console))
        if self.metering is not None:
            task(self.keep("metering", self.metering.run))
            for i, monitor in enumerate(self.metering.imds):
                if monitor is not None:
                    task(self.keep("imd%d" % (i + 1), monitor.run))
            if self.metering.matrix is not None:
                task(self.keep("matrix", self.metering.matrix.run))
        if self.cabinet is not None and self.cabinet.stage is not None:
            task(self.keep("can", self.can_bus))
        if self.site is not None:
            task(self.keep("site", self.site.run))
        if self.cp is not None:
            try:
                self.cp.recover()   # once: not again when the OCPP task restarts
            except Exception as e:  # noqa: BLE001
                self.note("ocpp: recovering the transactions of before the reboot failed: %r" % (e,))
            task(self.keep("ocpp", self.ocpp))
            task(self.keep("link", self.cp.run))
        await control


MAINTENANCE_FILE = "maintenance"


def main(root="/", hal=None):
    """Run the charger from the board and config files under `root`; `hal` replaces the board's
    own hardware (tests)."""
    board = config.load_board(root)
    cfg = config.Config(board, root, checked=True)
    evse.settle()   # between the charger's parts at boot (evse.settle says why)
    if str(cfg.get("ocpp_url")).startswith("wss://"):
        from evse.ocpp import ws
        ws.reserve_tls()   # the TLS context, made while the heap is in one piece
    if hal is None:
        hal = hal_mod.open_board(board)
    if store.exists(store.join(root, MAINTENANCE_FILE)):
        # A hardware watchdog cannot be stopped once started: to work on the files of a board,
        # it boots with the guns safe and no charger (and no watchdog) running.
        hal.safe()
        print("evse: maintenance mode (the file %s exists): not charging; remove it and reset to charge"
              % MAINTENANCE_FILE)
        hal.deinit()
        return
    cab = board.get("cabinet")
    print("evse %s on %s: %d guns, site limit %d A%s" % (
        VERSION, board["name"], len(board["guns"]), cfg.get("site_limit_a"),
        ", cabinet %d x %s kW" % (cab["modules"], cab["module_kw"]) if board["kind"] == "dc" else ""))
    app = None
    interrupted = False
    try:
        evse.settle()
        app = App(board, cfg, hal, root)
        # The console's names, loaded at its first command, interned now that the App stands:
        # before it, that code's load and let-go left the ESP32-WROOM's heap in pieces under
        # 1 KB where the journal's index wanted its blocks.
        evse.preload_names("evse.cli", "evse.console")
        evse.settle()
        asyncio.run(app.run())
    except KeyboardInterrupt:
        interrupted = True   # a technician's Ctrl-C: no traceback, the next step instead
    finally:
        hal.safe()
        print("evse: stopped; contactors open, pilots at -12 V")
        if app is not None:
            if app._energy_wh != app._energy_saved:
                app._energy_saved = list(app._energy_wh)   # the registers as they are now
            app.write_flash()   # the lines that said why, and the registers
        hal.deinit()
    if interrupted:
        # An MCU's hardware watchdog, started in run(), cannot be stopped; a sim board's stops with
        # its HAL link (docs/virtual-board.md).
        wd = "" if board["hal"] == "sim" else \
            ", and the watchdog resets the board within %d s" % (board.get("watchdog_ms", 5000) // 1000)
        print("evse: Ctrl-C: at the MicroPython REPL; Ctrl-D restarts the charger%s" % wd)
