# A DC cabinet's contactor matrix driven through Modbus RTU digital I/O modules, for a board
# whose MCU has no pins to spare for it (an RP2040 or ESP32 with two guns already uses most of
# its GPIOs): each matrix contactor's coil on a digital output, its auxiliary contact on the
# digital input of the same number. A board names them in its cabinet:
#   "matrix": {"model": "waveshare_io8", "uart": 1, "addresses": [10]}   (optional "baud", "parity")
# Waveshare Modbus RTU IO 8CH: 8 outputs (coils 0-7: function 0x01 read, 0x0F write) and 8
# inputs (discrete inputs 0-7: function 0x02); factory settings address 1, 9600 baud, 8N1.
# Contactor k (from 0) connects module k // n to dispenser k % n + 1 (n dispensers): module 1's
# contactors first; device j carries contactors 8j to 8j + 7.
#
# The cabinet (evse.dc.Cabinet) calls set_module and module_feedback as it calls a HAL's: no bus
# I/O there. The task run() writes what changed and reads the inputs every POLL_MS. A module is
# only ever closed onto a dispenser once its inputs show every contact of it open (break before
# make, whatever the cabinet asks). At start every coil is written open: what a controller that
# rebooted left closed is opened before anything else.
import asyncio
from micropython import const

from evse import modbus

MODELS = {"waveshare_io8": 8}   # model -> its outputs (and inputs)
POLL_MS = const(100)
LOST_MS = const(1000)    # no answer from a device for this long: its contacts are unknown


def check(entry, modules, dispensers):
    """A board file's cabinet.matrix, validated; ValueError naming the key and the fix."""
    if not isinstance(entry, dict):
        raise ValueError('cabinet.matrix must be an object like {"model": "waveshare_io8", "uart": 1, '
                         '"addresses": [10]}')
    per = MODELS.get(entry.get("model"))
    if per is None:
        raise ValueError("cabinet.matrix.model %r unknown: use %s" % (entry.get("model"), ", ".join(MODELS)))
    addresses = entry.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        raise ValueError("cabinet.matrix.addresses must be a list of the I/O modules' Modbus addresses")
    need = modules * dispensers
    if len(addresses) * per < need:
        raise ValueError("cabinet.matrix: %d modules x %d dispensers need %d contactors: %d %s of %d outputs "
                         "have %d; add addresses" % (modules, dispensers, need, len(addresses), entry["model"],
                                                     per, len(addresses) * per))
    from evse.meters import check_line
    for line in lines(entry):
        check_line(line, "matrix", "cabinet.matrix")
    return entry


def lines(entry):
    """Each of the matrix's devices as a Modbus line entry (uart, address, baud, parity)."""
    out = []
    for a in entry["addresses"]:
        line = dict(entry)
        line["address"] = a
        out.append(line)
    return out


class Matrix:
    """`master`: the Modbus master of the devices' line; `clock`: monotonic ms."""

    def __init__(self, master, addresses, modules, dispensers, clock, log=print, per=8):
        self.master = master
        self.addresses = addresses
        self.n = dispensers
        self.count = modules
        self.per = per
        self.clock = clock
        self.log = log
        self.want = [0] * modules          # the dispenser each module is commanded to (0 parked)
        size = len(addresses) * per
        self.coils = [False] * size        # the outputs as they should be now
        self.inputs = [False] * size       # the auxiliary contacts as last read
        self.written = [None] * len(addresses)   # the outputs each device last confirmed
        self.seen_ms = [None] * len(addresses)   # its last answer
        self.lost = [False] * len(addresses)
        self._started_ms = None
        self._reads = [modbus.read_request(a, modbus.READ_DISCRETE, 0, per) for a in addresses]

    # ---- what the cabinet calls (no I/O) --------------------------------------------------------
    def set_module(self, module, gun):
        self.want[module - 1] = gun

    def module_feedback(self, module):
        """The dispenser module `module`'s auxiliary contacts show it on, 0 parked; -1 unknown
        (its device is lost) or two closed at once: never what the cabinet commands."""
        k0 = (module - 1) * self.n
        found = 0
        for d in range(self.n):
            k = k0 + d
            if self.lost[k // self.per]:
                return -1
            if self.inputs[k]:
                if found:
                    return -1
                found = d + 1
        return found

    # ---- the task -------------------------------------------------------------------------------
    def _coils(self):
        # Each module's one coil, closed only once all its contacts read open (or it was closed).
        n = self.n
        for m in range(self.count):
            k0 = m * n
            target = self.want[m]
            closed_now = 0
            for d in range(n):
                if self.coils[k0 + d]:
                    closed_now = d + 1
            if target and closed_now != target:
                if closed_now or any(self.inputs[k0 + d] for d in range(n)):
                    target = 0       # open the other first; close at a later turn
            for d in range(n):
                self.coils[k0 + d] = target == d + 1

    async def step(self):
        """One turn: write each device's outputs that differ from what it confirmed, read its
        inputs."""
        now = self.clock()
        if self._started_ms is None:
            self._started_ms = now
        self._coils()
        per = self.per
        for j in range(len(self.addresses)):
            want = self.coils[j * per:(j + 1) * per]
            try:
                if want != self.written[j]:
                    await self.master.write_coils(self.addresses[j], 0, want)
                    self.written[j] = want
                data = await self.master.read(self._reads[j])
            except modbus.ModbusError as e:
                last = self._started_ms if self.seen_ms[j] is None else self.seen_ms[j]
                if not self.lost[j] and self.clock() - last >= LOST_MS:
                    self.lost[j] = True
                    self.written[j] = None   # written again, all of it, once it answers
                    self.log("matrix: I/O module %d does not answer (%s): its contactors are unknown"
                             % (self.addresses[j], e))
                continue
            for i in range(per):
                self.inputs[j * per + i] = modbus.bit(data, i) == 1
            self.seen_ms[j] = self.clock()
            if self.lost[j]:
                self.lost[j] = False
                self.log("matrix: I/O module %d answers again" % self.addresses[j])

    async def run(self):
        while True:
            await self.step()
            await asyncio.sleep_ms(POLL_MS)

    def rebase(self, d):
        from evse import ticks
        self._started_ms = ticks.back(self._started_ms, d)
        ticks.back_all(self.seen_ms, d)

    def status(self):
        return {"coils": [1 if c else 0 for c in self.coils], "inputs": [1 if i else 0 for i in self.inputs],
                "lost": [self.addresses[j] for j in range(len(self.addresses)) if self.lost[j]]}
