# A DC gun's insulation monitor on Modbus RTU, for the IEC 61851-23 sequence (evse.dcseq): the
# cable check's self-test and reading, and the watch while charging. A board names it per gun:
#   "imd": {"model": "isocha425", "uart": 1, "address": 3}   (optional "baud", "parity")
#
# Bender ISOMETER isoCHA425HV, its holding registers as Bender's manual gives them and EVerest's
# Bender_isoCHA425HV module reads them:
#   1000-1003  R_F, the insulation resistance: float32 (high word first); then AT&T: in the high
#              byte the alarm (bits 0-2: 0 none, 1 prewarning, 2 device error, 4 warning,
#              5 alarm) and the test (bits 6-7: 1 internal, 2 external: a self-test runs); in the
#              low byte R&U: the unit (bits 0-4, 2 = ohm) and the validity (bits 6-7: 1 the true
#              value is smaller, 2 it is bigger, 3 invalid); then the channel's description
#   3026       1: measure, 0: stop
#   8005       0x5445 ("TE") written: the self-test starts
# Factory settings: address 3, 19200 baud, 8 data bits, even parity, 1 stop bit.
import asyncio
from micropython import const

from evse import modbus, ticks

MODELS = ("isocha425",)
POLL_MS = const(500)     # the monitor updates its reading about once a second
LOST_MS = const(3000)    # on and no answer for this long: the monitor is lost
FRESH_MS = const(1500)   # a reading older than this is none
STOP_RETRY_MS = const(10000)   # a stop the monitor did not answer is tried again after this
_R_F = const(1000)
_MEASURE = const(3026)
_TEST = const(8005)
_TEST_WORD = const(0x5445)
_DEVICE_ERROR = const(2)
_INVALID = const(3)


def check(entry):
    """A board file's imd entry, validated; ValueError naming the key and the fix."""
    if not isinstance(entry, dict):
        raise ValueError('imd must be an object like {"model": "isocha425", "uart": 1, "address": 3}')
    if entry.get("model") not in MODELS:
        raise ValueError("imd model %r unknown: use %s" % (entry.get("model"), ", ".join(MODELS)))
    from evse.meters import check_line
    return check_line(entry, "imd")


class Monitor:
    """One insulation monitor. The control tick calls enable() and read() (no bus I/O there,
    and read() judges how old the monitor's answers are, so a stalled or failing task cannot
    hand the sequence an old reading); the task run() does the bus work. In read():
    `self_test` None (not asked, or running), True passed, False failed; `imd_lost` when the
    monitor has not answered for LOST_MS while on, or reports a device error; `iso_ohm` only
    from an answer younger than FRESH_MS."""

    def __init__(self, master, address, clock, log=print, name="imd"):
        self.master = master
        self.address = address
        self.clock = clock        # monotonic ms (the App's)
        self.log = log
        self.name = name
        self.want = False         # what the sequence asks
        self.on = None            # what the monitor was last told (None: not known, at boot)
        self.ohm = None           # its last valid reading ...
        self.ohm_ms = None        # ... taken then
        self.self_test = None
        self.error = None         # a device error it reports, or None
        self.lost = False         # said so in the log (read() decides what the sequence sees)
        self._session = 0         # counts enable() changes: an answer to an older one is dropped
        self._testing = 0         # 0 no test asked; 1 asked, not yet seen running; 2 seen running
        self._ask_test = False    # the self-test is still to be asked
        self._ok_ms = None        # when it last answered while on (or was switched on)
        self._stop_retry_ms = None   # a failed stop is tried again from then
        self._request = modbus.read_request(address, modbus.READ_HOLDING, _R_F, 4)
        self._regs = bytearray(8)

    def enable(self, on, now_ms):
        """now_ms: the control tick's time (not clock(): that may rebase in the middle of it)."""
        if on != self.want:
            self.want = on
            self._session += 1
            self.self_test = None
            self.ohm = None
            self.ohm_ms = None
            self.error = None
            self.lost = False
            self._testing = 0
            self._ask_test = on and self.on is True   # on again before it was told off: test again
            self._ok_ms = now_ms if on else None
            self._stop_retry_ms = None

    def read(self, m, now):
        """Into the sequence's dcseq.Measured: iso_ohm, self_test, imd_lost; now: the tick's time."""
        if not self.want:
            m.iso_ohm = None
            m.self_test = None
            m.imd_lost = False
            return
        m.iso_ohm = self.ohm if self.ohm_ms is not None and now - self.ohm_ms < FRESH_MS else None
        m.self_test = self.self_test
        silent = self._ok_ms is not None and now - self._ok_ms >= LOST_MS
        m.imd_lost = silent or self.error is not None
        if silent and not self.lost:
            self.lost = True
            self.log("%s: lost (no answer for %d ms)" % (self.name, now - self._ok_ms))

    def rebase(self, d):
        self._ok_ms = ticks.back(self._ok_ms, d)
        self.ohm_ms = ticks.back(self.ohm_ms, d)
        self._stop_retry_ms = ticks.back(self._stop_retry_ms, d)

    async def run(self):
        while True:
            await self.step()
            await asyncio.sleep_ms(POLL_MS)

    async def step(self):
        """One turn: tell the monitor what the sequence wants, then read it while it measures."""
        session = self._session
        want = self.want
        if want != self.on:
            if not want and self._stop_retry_ms is not None and self.clock() - self._stop_retry_ms < 0:
                return   # a monitor that did not take the stop is not asked every turn: the line is shared
            try:
                await self.master.write_registers(self.address, _MEASURE, (1 if want else 0,))
            except modbus.ModbusError as e:
                self.on = None   # it may have taken the command and lost only the answer
                if not want:
                    self._stop_retry_ms = self.clock() + STOP_RETRY_MS
                elif session == self._session:
                    self._no_answer(str(e))
                return
            self.on = want   # what the monitor now does, whatever the sequence asks meanwhile
            if session != self._session:
                return
            self._answered()
            self._ask_test = want
        if not want:
            return
        try:
            if self._ask_test:
                # Measuring: the self-test first (the sequence waits for its result). Asked
                # again next turn if its answer was lost: a second ask starts it over.
                await self.master.write_registers(self.address, _TEST, (_TEST_WORD,))
                if session != self._session:
                    return
                self._answered()
                self._ask_test = False
                self._testing = 1
            await self.master.read(self._request, self._regs)
        except modbus.ModbusError as e:
            if session == self._session:
                self._no_answer(str(e))
            return
        if session != self._session:
            return   # the sequence changed its mind meanwhile: this answer is not for it
        self._answered()
        self._take(self._regs)

    def _answered(self):
        self._ok_ms = self.clock()
        if self.lost:
            self.lost = False
            self.log("%s: answers again" % self.name)

    def _no_answer(self, why):
        if not self.lost and self._ok_ms is not None and self.clock() - self._ok_ms >= LOST_MS:
            self.lost = True
            self.log("%s: lost (%s)" % (self.name, why))

    def _take(self, regs):
        at_t = regs[4]
        r_u = regs[5]
        alarm = at_t & 7
        test = at_t >> 6
        valid = r_u >> 6
        if test:
            if self._testing == 1:
                self._testing = 2
            return
        if self._testing:
            if self._testing == 2:   # the test ran and is over: a device error says it failed
                self.self_test = alarm != _DEVICE_ERROR
                self._testing = 0
                if not self.self_test:
                    self.log("%s: self-test failed (device error)" % self.name)
            return
        if alarm == _DEVICE_ERROR:
            if self.error is None:
                self.error = "device error"
                self.log("%s: reports a device error" % self.name)
            return
        if self.error is not None:
            self.error = None
            self.log("%s: device error cleared" % self.name)
        if valid == _INVALID or (r_u & 0x1F) != 2:
            return   # no reading: the one before ages out (FRESH_MS), the sequence judges the gap
        value = modbus.float32(regs, 0)
        if value - value == 0 and value >= 0:
            self.ohm = value
            self.ohm_ms = self.clock()
