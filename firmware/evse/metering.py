# The guns' energy meters: one Modbus master per RS-485 UART, one driver per gun whose board
# entry names a meter, polled in turn every POLL_MS. The rest of the firmware reads the last
# plausible reading per gun; a meter that gives none for DEAD_MS marks its gun's meter_ok False
# (the gun then stops, or charges on and says so, per the config key meter_fault_stops).
#
# Plausibility: the import register never goes backwards (a reading that does is refused, and
# counts as no answer), and a reading is only taken when the meter answered whole.
import asyncio
from micropython import const

from evse import meters, modbus, ticks

POLL_MS = const(1000)
_PARITY = {"none": None, "even": 0, "odd": 1}   # machine.UART's parity argument
DEAD_MS = const(5000)
FEED_MAX_A = const(10000)      # a fed grid reading above this per phase is a typing error
FEED_MAX_W = const(10000000)   # and above this, in or out, the total power
IMPLAUSIBLE_X = const(3)       # a grid phase current over this x the connection: no reading


class _Fed:
    """A fed grid meter's reading: what the Modbus meter's Reading gives the sharing (power_w
    None when the feed did not give it)."""

    def __init__(self, amps, power_w):
        self.amps = amps
        self.power_w = power_w


class Metering:
    def __init__(self, hal, board, clock, log=print):
        self.log = log
        self._clock = clock             # monotonic milliseconds that do not wrap
        n = len(board["guns"])
        self.meters = [None] * n
        self.readings = [None] * n     # the last plausible meters.Reading per gun
        self.ok = [True] * n
        self.refused = [0] * n         # readings refused as implausible
        self.failures = [0] * n        # polls without a plausible reading
        self._last_ok_ms = [0] * n
        self._started = False
        self._why = [None] * n
        masters = {}

        def master(entry, kind):   # one Modbus master per UART, its devices sharing it
            m = masters.get(entry["uart"])
            if m is None:
                baud, parity = meters.LINES[kind]
                baud = entry.get("baud", baud)
                port = hal.uart(entry["uart"], baud, _PARITY[entry.get("parity", parity)])
                m = masters[entry["uart"]] = modbus.Master(port, baudrate=baud)
            return m

        def meter(entry):
            return meters.Meter(master(entry, "meter"), entry["model"], entry["address"])

        # The DC guns' insulation monitors (evse.imd): each polled by a task of its own.
        self.imds = [None] * n
        for i, gun in enumerate(board["guns"]):
            if "meter" in gun:
                self.meters[i] = meter(gun["meter"])
            if "imd" in gun:
                from evse.imd import Monitor
                self.imds[i] = Monitor(master(gun["imd"], "imd"), gun["imd"]["address"], clock, log,
                                       "gun %d: insulation monitor" % (i + 1))
        # A DC cabinet's contactor matrix on Modbus I/O modules (evse.matrix), polled by its task.
        self.matrix = None
        cab = board.get("cabinet") if board["kind"] == "dc" else None
        if cab and cab.get("matrix"):
            from evse.matrix import MODELS, Matrix
            entry = cab["matrix"]
            self.matrix = Matrix(master(entry, "matrix"), entry["addresses"], cab["modules"], n, clock, log,
                                 MODELS[entry["model"]])
        # The grid meter at the connection point: the building's load and the guns' together,
        # read from a Modbus meter ("meter") or written by the console or the central system
        # ("feed", feed_grid).
        self.grid = None
        self.grid_source = None
        self.grid_reading = None        # its last reading (.amps per site phase)
        self.grid_ok_ms = None          # when it was taken (None: never)
        self._site_phases = board.get("phases", 3)
        self.grid_limit_a = None        # the connection's limit (a function; the App sets it)
        self.grid_refused = 0           # grid readings refused as implausible
        self._grid_implausible = False
        entry = board.get("grid_meter")
        if entry is not None and "feed" in entry:
            self.grid_source = "feed"
        elif entry is not None:
            self.grid_source = "meter"
            self.grid = meter(entry)

    def fitted(self, n):
        return self.meters[n - 1] is not None

    def reading(self, n):
        return self.readings[n - 1]

    async def poll(self, n):
        """Reads gun n's meter once; True when the reading was plausible and taken."""
        i = n - 1
        meter = self.meters[i]
        try:
            r = await meter.read()
            last = self.readings[i]
            if last is not None and r.energy_wh < last.energy_wh:
                self.refused[i] += 1
                raise meters.MeterError("energy went back from %d to %d Wh; reading refused"
                                        % (last.energy_wh, r.energy_wh))
        except Exception as e:  # noqa: BLE001  (a UART's OSError, a MemoryError: no reading either)
            now = self._clock()   # after the read: the clock may have moved back meanwhile
            self.failures[i] += 1
            self._why[i] = str(e) if isinstance(e, (modbus.ModbusError, meters.MeterError)) else repr(e)
            if self.ok[i] and now - self._last_ok_ms[i] >= DEAD_MS:
                self.ok[i] = False
                self.log("gun %d: meter fault: %s" % (n, self._why[i]))
            return False
        self.readings[i] = r
        self._last_ok_ms[i] = self._clock()
        if not self.ok[i]:
            self.ok[i] = True
            self.log("gun %d: meter answers again" % n)
        return True

    async def poll_grid(self):
        """Reads the grid meter once; a failed read, or an implausible one, leaves the last
        reading to age."""
        try:
            r = await self.grid.read()
        except Exception:  # noqa: BLE001  (no answer, garbage, a MemoryError: no reading either)
            return False
        why = self.implausible(r.amps)
        if why:
            self.grid_refused += 1
            if not self._grid_implausible:
                self._grid_implausible = True
                self.log("grid meter: %s; refused until its readings are plausible again" % why)
            return False
        if self._grid_implausible:
            self._grid_implausible = False
            self.log("grid meter: its readings are plausible again")
        self.grid_reading = r
        self.grid_ok_ms = self._clock()
        return True

    def implausible(self, amps):
        """Why a grid reading cannot be the connection's current (a phase over IMPLAUSIBLE_X
        x its limit, in or out: its fuse would have blown), or None."""
        limit = None if self.grid_limit_a is None else self.grid_limit_a()
        if not limit:
            return None
        most = IMPLAUSIBLE_X * limit
        for p in range(len(amps)):
            if amps[p] > most or amps[p] < -most:
                return "L%d %.0f A is over %d x the connection's %d A" % (p + 1, amps[p], IMPLAUSIBLE_X, most // IMPLAUSIBLE_X)
        return None

    def feed_grid(self, amps, power_w=None):
        """A reading of the fed grid meter: the current at the connection per site phase (the
        building and the guns together, as a meter measures it; negative while that phase
        exports) and, if given, the total power there (negative while the site exports:
        solar_mode needs it). ValueError naming what is wrong, and nothing changes."""
        if self.grid_source != "feed":
            raise ValueError("this board's grid meter is %s" % (
                "a Modbus meter: it is read, not written" if self.grid_source else "not there (board file grid_meter)"))
        if not isinstance(amps, (list, tuple)) or len(amps) != self._site_phases:
            raise ValueError("give the current of each of the site's %d phase(s), in A" % self._site_phases)
        out = []
        for a in amps:
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not -FEED_MAX_A <= a <= FEED_MAX_A:
                raise ValueError("a current is a number of A from -%d (export) to %d, not %r" % (FEED_MAX_A, FEED_MAX_A, a))
            out.append(float(a))
        if power_w is not None and (isinstance(power_w, bool) or not isinstance(power_w, (int, float))
                                    or not -FEED_MAX_W <= power_w <= FEED_MAX_W):
            raise ValueError("the power is a number of W from -%d (export) to %d, not %r" % (FEED_MAX_W, FEED_MAX_W, power_w))
        why = self.implausible(out)
        if why:
            self.grid_refused += 1
            raise ValueError(why)
        self.grid_reading = _Fed(out, None if power_w is None else float(power_w))
        self.grid_ok_ms = self._clock()

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        ticks.back_all(self._last_ok_ms, d)
        self.grid_ok_ms = ticks.back(self.grid_ok_ms, d)
        for monitor in self.imds:
            if monitor is not None:
                monitor.rebase(d)
        if self.matrix is not None:
            self.matrix.rebase(d)

    def start(self, now_ms):
        """At boot: a meter has DEAD_MS from now to answer."""
        for i in range(len(self.meters)):
            self._last_ok_ms[i] = now_ms

    async def run(self):
        if not self._started:   # once: a restarted task must not give dead meters more time
            self._started = True
            self.start(self._clock())
        while True:
            for i in range(len(self.meters)):
                if self.meters[i] is not None:
                    await self.poll(i + 1)
            if self.grid is not None:
                await self.poll_grid()
            await asyncio.sleep_ms(POLL_MS)

