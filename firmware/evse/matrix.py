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
# closed onto a dispenser only once every other contactor of it is open by its device's own
# confirmation and an input read taken after that confirmation shows all its contacts open (break
# before make, whatever the cabinet asks, whatever frame was lost). At start every coil is written
# open and nothing closes before that write is confirmed: what a controller that rebooted left
# closed opens first. The HAL's safe() opens every coil (all_open), after the guns' contactors.
import asyncio
import struct
import time

from micropython import const

from evse import modbus

MODELS = {"waveshare_io8": 8}   # model -> its outputs (and inputs)
POLL_MS = const(100)
LOST_MS = const(1000)    # no answer from a device for this long: its contacts are unknown
_ANSWER_MS = const(30)   # a write's 8-byte echo at 9600 baud (9 ms) after the device's turnaround


def write_coils_request(slave, address, bits):
    """The request that sets coils from `address` to `bits` (each true or false) (0x0F)."""
    count = modbus.check_write(slave, address, len(bits), modbus.MAX_WRITE_BITS, "coil")
    size = (count + 7) // 8
    frame = bytearray(9 + size)
    struct.pack_into(">BBHHB", frame, 0, slave, modbus.WRITE_COILS, address, count, size)
    for i in range(count):
        if bits[i]:
            frame[7 + i // 8] |= 1 << (i % 8)   # the first coil in the lowest bit (6.11)
    return modbus.seal(frame)


def bit(data, i):
    """Bit i of a coil or discrete input read's data (the first in the lowest bit of byte 0)."""
    return (data[i // 8] >> (i % 8)) & 1


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
    for a in addresses:
        if addresses.count(a) > 1:
            raise ValueError("cabinet.matrix.addresses lists %r twice: each I/O module has an address of its own" % (a,))
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
        self.written = [None] * len(addresses)   # the outputs each device last confirmed (None: not known)
        self.fresh = [False] * len(addresses)    # its inputs were read after that confirmation
        self.seen_ms = [None] * len(addresses)   # its last answer
        self.lost = [False] * len(addresses)
        self._started_ms = None
        self._reads = [modbus.read_request(a, modbus.READ_DISCRETE, 0, per) for a in addresses]

    # ---- what the cabinet calls (no I/O) --------------------------------------------------------
    def set_module(self, module, gun):
        self.want[module - 1] = gun

    def module_feedback(self, module):
        """The dispenser module `module`'s auxiliary contacts show it on, 0 parked; -1 unknown
        (a device of it never answered, or is lost) or two closed at once: never what the
        cabinet commands."""
        k0 = (module - 1) * self.n
        found = 0
        for d in range(self.n):
            k = k0 + d
            j = k // self.per
            if self.lost[j] or self.seen_ms[j] is None:
                return -1
            if self.inputs[k]:
                if found:
                    return -1
                found = d + 1
        return found

    # ---- the task -------------------------------------------------------------------------------
    def _maybe_closed(self, k):
        # Contactor k's coil may be energised: so intended, or so confirmed, or its device's
        # outputs are not known.
        j = k // self.per
        written = self.written[j]
        return self.coils[k] or written is None or written[k - j * self.per]

    def _coils(self):
        # Each module's one coil. A coil already closed stays; a new one closes only once every
        # other coil of the module is open for sure and fresh inputs show all its contacts open.
        n, per = self.n, self.per
        for m in range(self.count):
            k0 = m * n
            target = self.want[m]
            if target and not self.coils[k0 + target - 1]:
                for d in range(n):
                    k = k0 + d
                    if (d != target - 1 and self._maybe_closed(k)) or self.inputs[k] or not self.fresh[k // per]:
                        target = 0   # open the rest first; close at a later turn
                        break
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
                    self.written[j] = None   # a write that fails may or may not have arrived
                    self.fresh[j] = False
                    await self.master.transact(write_coils_request(self.addresses[j], 0, want))
                    self.written[j] = want
                data = await self.master.read(self._reads[j])
            except modbus.ModbusError as e:
                last = self._started_ms if self.seen_ms[j] is None else self.seen_ms[j]
                self.fresh[j] = False
                if not self.lost[j] and self.clock() - last >= LOST_MS:
                    self.lost[j] = True
                    self.written[j] = None   # written again, all of it, once it answers
                    self.log("matrix: I/O module %d does not answer (%s): its contactors are unknown"
                             % (self.addresses[j], e))
                continue
            for i in range(per):
                self.inputs[j * per + i] = bit(data, i) == 1
            self.fresh[j] = self.written[j] is not None
            self.seen_ms[j] = self.clock()
            if self.lost[j]:
                self.lost[j] = False
                self.log("matrix: I/O module %d answers again" % self.addresses[j])

    def all_open(self):
        """Every coil open, at once and without waiting for answers (the HAL's safe(): the loop
        is stopped; the guns' contactors are open, so nothing flows through the matrix)."""
        stream = self.master.stream
        off = [False] * self.per
        for a in self.addresses:
            stream.write(write_coils_request(a, 0, off))
            time.sleep_ms(_ANSWER_MS)   # its answer passes before the next frame goes out

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
