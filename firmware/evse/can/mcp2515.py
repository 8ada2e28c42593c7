# The MCP2515 stand-alone CAN controller on SPI (Microchip DS20001801): the DC cabinet's CAN bus
# to its power modules on an RP2040 or an ESP32 (stock MicroPython drives no CAN peripheral on
# either). 29-bit extended frames only, the power modules' format. Polled, no INT pin: recv()
# asks the chip's status, one SPI transfer when nothing came in.
#
# The bus interface every CAN bus of the firmware gives (this driver, the virtual board's):
#   send(can_id, data) -> bool     queued for sending; False: no transmit buffer free (or bus-off)
#   recv() -> (can_id, bytes) | None  the next frame received, never blocks
#   poll(now_ms)                   upkeep, every few ms to 100 ms: transmit timeouts, receive
#                                  overruns, bus-off recovery, the error counters
#   stats() -> dict                state ("active", "warning", "passive", "bus-off"), tec, rec,
#                                  sent, received, tx_timeouts, rx_overruns, bus_offs, resets
from micropython import const

from evse import ticks

_RESET = const(0xC0)
_READ = const(0x03)
_WRITE = const(0x02)
_BIT_MODIFY = const(0x05)
_READ_STATUS = const(0xA0)
_RTS = const(0x80)            # | 1 << buffer
_LOAD_TX = const(0x40)        # | 2 * buffer: from TXBnSIDH
_READ_RX = const(0x90)        # | 4 * buffer: from RXBnSIDH, clears its RXnIF when CS rises

_CANSTAT = const(0x0E)
_CANCTRL = const(0x0F)
_TEC = const(0x1C)
_CNF3 = const(0x28)           # CNF3, CNF2, CNF1 at consecutive addresses
_CANINTE = const(0x2B)
_CANINTF = const(0x2C)
_EFLG = const(0x2D)
_TXB0CTRL = const(0x30)       # TXBnCTRL at 0x30, 0x40, 0x50
_RXB0CTRL = const(0x60)
_RXB1CTRL = const(0x70)
_RXF0 = const(0x00)           # RXF0-2 at 0x00, 0x04, 0x08; RXF3-5 at 0x10, 0x14, 0x18
_RXM0 = const(0x20)           # RXM0, RXM1 at 0x20, 0x24

_MODE_MASK = const(0xE0)
MODE_NORMAL = const(0x00)
MODE_LOOPBACK = const(0x40)
MODE_CONFIG = const(0x80)

_TXREQ = const(0x08)          # TXBnCTRL
_TXERR = const(0x10)
_EXIDE = const(0x08)          # SIDL: an extended identifier
_RX_ROLLOVER = const(0x04)    # RXB0CTRL.BUKT: a full RXB0 spills into RXB1
_EFLG_TXBO = const(0x20)
_EFLG_TXEP = const(0x10)
_EFLG_RXEP = const(0x08)
_EFLG_EWARN = const(0x01)
_EFLG_RXOVR = const(0xC0)     # RX1OVR, RX0OVR
_ERRIF = const(0x20)          # CANINTF

_TQ_PER_BIT = const(16)       # 1 sync + 5 propagation + 8 phase 1 + 2 phase 2: sampled at 87.5 %
_CNF2 = const(0xBC)           # BTLMODE, phase 1 = 8 TQ, propagation = 5 TQ (CiA 301's sample point)
_CNF3_PS2 = const(0x01)       # phase 2 = 2 TQ
TX_TIMEOUT_MS = const(100)    # a frame the chip still retries after this is aborted: no module acks it
BUS_OFF_RESET_MS = const(1000)  # the chip leaves bus-off by itself after 128 x 11 recessive bits
                                # (1.4 ms at 125 kbit/s); still there after this: reset it
_MODE_WAIT_MS = const(10)
_QUEUED = "queued"


class CanError(OSError):
    pass


def bit_timing(crystal_hz, bitrate):
    """(CNF1, CNF2, CNF3) for `bitrate` from the chip's `crystal_hz`: 16 time quanta a bit."""
    div = 2 * _TQ_PER_BIT * bitrate
    if bitrate <= 0 or crystal_hz % div or not 1 <= crystal_hz // div <= 64:
        raise ValueError("CAN bitrate %d: not reachable in %d time quanta from an MCP2515 crystal of %d Hz "
                         "(8 MHz gives 125 and 250 kbit/s, 16 MHz also 500)" % (bitrate, _TQ_PER_BIT, crystal_hz))
    return crystal_hz // div - 1, _CNF2, _CNF3_PS2


def encode_id(can_id):
    """SIDH, SIDL, EID8, EID0 of a 29-bit identifier."""
    return ((can_id >> 21) & 0xFF, ((can_id >> 13) & 0xE0) | _EXIDE | ((can_id >> 16) & 0x03),
            (can_id >> 8) & 0xFF, can_id & 0xFF)


def decode_id(sidh, sidl, eid8, eid0):
    """The 29-bit identifier; None for a standard (11-bit) frame."""
    if not sidl & _EXIDE:
        return None
    return (sidh << 21) | ((sidl & 0xE0) << 13) | ((sidl & 0x03) << 16) | (eid8 << 8) | eid0


class Mcp2515:
    """One MCP2515. `spi`: a machine.SPI (mode 0, up to 10 MHz); `cs`: its chip select Pin;
    `sleep_ms`: the board's (set-up only; poll() takes the control clock's now_ms). `accept`: (mask, id) of the extended frames to take
    (a frame is taken when id & mask == the id's bits under the mask), None: every frame."""

    def __init__(self, spi, cs, sleep_ms, crystal_hz=8000000, bitrate=125000, accept=None):
        self._spi = spi
        self._cs = cs
        self._sleep_ms = sleep_ms
        self._timing = bit_timing(crystal_hz, bitrate)
        self._accept = accept
        self._out = bytearray(14)
        self._in = bytearray(14)
        self._mv_out = memoryview(self._out)
        self._mv_in = memoryview(self._in)
        self._txp = [3, 3, 3]                # per transmit buffer: its frame's priority (TXP)
        self._sent_ms = [None, None, None]   # per transmit buffer: when poll() first saw its frame
        #                                      queued (_QUEUED until then), None: free
        self._bus_off_ms = None
        self.sent = 0
        self.received = 0
        self.tx_timeouts = 0
        self.rx_overruns = 0
        self.bus_offs = 0
        self.resets = 0
        self.tec = 0
        self.rec = 0
        self.eflg = 0
        cs.init(cs.OUT, value=1)
        self.start()

    # ---- SPI transfers: CS low, the instruction and its bytes, CS high ---------------------
    def _xfer(self, n):
        self._cs(0)
        try:
            self._spi.write_readinto(self._mv_out[:n], self._mv_in[:n])
        finally:
            self._cs(1)

    def _send(self, n):
        # An instruction that answers nothing: write() does not collect what comes back.
        self._cs(0)
        try:
            self._spi.write(self._mv_out[:n])
        finally:
            self._cs(1)

    def _command(self, instruction):
        self._out[0] = instruction
        self._send(1)

    def _read(self, address):
        out = self._out
        out[0] = _READ
        out[1] = address
        out[2] = 0
        self._xfer(3)
        return self._in[2]

    def _write(self, address, *values):
        out = self._out
        out[0] = _WRITE
        out[1] = address
        for k in range(len(values)):
            out[2 + k] = values[k]
        self._send(2 + len(values))

    def _modify(self, address, mask, value):
        out = self._out
        out[0] = _BIT_MODIFY
        out[1] = address
        out[2] = mask
        out[3] = value
        self._send(4)

    def _status(self):
        out = self._out
        out[0] = _READ_STATUS
        out[1] = 0
        self._xfer(2)
        return self._in[1]

    def _mode(self, mode):
        self._modify(_CANCTRL, _MODE_MASK, mode)
        tries = _MODE_WAIT_MS
        while self._read(_CANSTAT) & _MODE_MASK != mode:
            tries -= 1
            if tries < 0:
                raise CanError("MCP2515: does not enter mode 0x%02x (CANSTAT 0x%02x): check its SPI wiring, "
                               "chip select and crystal" % (mode, self._read(_CANSTAT)))
            self._sleep_ms(1)

    # ---- set-up -----------------------------------------------------------------------------
    def start(self, mode=MODE_NORMAL):
        """Reset the chip, set the bit timing and the acceptance filters, enter `mode`. CanError
        when the chip does not answer as an MCP2515."""
        self._command(_RESET)
        self._sleep_ms(2)   # the oscillator's start-up: 128 cycles after the reset (DS 8.0)
        if self._read(_CANSTAT) & _MODE_MASK != MODE_CONFIG:
            raise CanError("MCP2515: no answer on SPI after its reset (CANSTAT 0x%02x): check its wiring, "
                           "chip select and supply" % self._read(_CANSTAT))
        cnf1, cnf2, cnf3 = self._timing
        self._write(_CNF3, cnf3, cnf2, cnf1)
        self._write(_CANINTE, 0)   # polled
        mask, want = self._accept if self._accept else (0, 0)
        m = encode_id(mask)
        f = encode_id(want)
        for reg in (_RXM0, _RXM0 + 4):
            # the mask's EXIDE bit is unused; the filters' EXIDE takes extended frames only
            self._write(reg, m[0], m[1] & ~_EXIDE, m[2], m[3])
        for reg in (_RXF0, _RXF0 + 4, _RXF0 + 8, 0x10, 0x14, 0x18):
            self._write(reg, f[0], f[1], f[2], f[3])
        self._write(_RXB0CTRL, _RX_ROLLOVER)   # RXM = 00: the filters decide
        self._write(_RXB1CTRL, 0)
        self._sent_ms = [None, None, None]
        self._bus_off_ms = None
        self._mode(mode)

    # ---- frames ------------------------------------------------------------------------------
    def send(self, can_id, data):
        """Queue a frame in a free transmit buffer; False when all three are busy or the bus is
        off. The chip retries it until a node acknowledges it (poll() aborts it after
        TX_TIMEOUT_MS)."""
        if self._bus_off_ms is not None:
            return False
        status = self._status()
        free = -1
        prio = 3
        for k in range(3):
            if status & (0x04 << (2 * k)):   # TXBnCTRL.TXREQ mirrored in bits 2, 4, 6
                if self._txp[k] <= prio:
                    prio = self._txp[k] - 1   # below every frame still waiting
            elif free < 0:
                free = k
        if free < 0 or prio < 0:
            return False   # no buffer, or no priority left to keep the order: after the others
        n = free
        out = self._out
        out[0] = _LOAD_TX | (2 * n)
        out[1], out[2], out[3], out[4] = encode_id(can_id)
        size = len(data)
        if size > 8:
            raise ValueError("a CAN frame carries at most 8 bytes, not %d" % size)
        out[5] = size
        for k in range(size):
            out[6 + k] = data[k]
        self._send(6 + size)
        # At equal priority the chip sends the highest-numbered buffer first (DS 3.2): each frame
        # gets a lower TXP than those still waiting, so they go out in the order given.
        self._write(_TXB0CTRL + 16 * n, prio)
        self._txp[n] = prio
        self._command(_RTS | (1 << n))
        self._sent_ms[n] = _QUEUED
        self.sent += 1
        return True

    def recv(self):
        status = self._status()
        if status & 0x01:
            n = 0
        elif status & 0x02:
            n = 1
        else:
            return None
        out = self._out
        out[0] = _READ_RX | (4 * n)
        for k in range(1, 14):
            out[k] = 0
        self._xfer(14)
        b = self._in
        can_id = decode_id(b[1], b[2], b[3], b[4])
        if can_id is None:
            return None   # a standard frame through a mask that lets one by: not ours
        self.received += 1
        return can_id, bytes(self._mv_in[6:6 + min(b[5] & 0x0F, 8)])

    # ---- upkeep --------------------------------------------------------------------------------
    def poll(self, now_ms):
        eflg = self.eflg = self._read(_EFLG)
        self.tec = self._read(_TEC)
        self.rec = self._read(_TEC + 1)
        if eflg & _EFLG_RXOVR:
            self.rx_overruns += 1
            self._modify(_EFLG, _EFLG_RXOVR, 0)
        if eflg & _EFLG_TXBO:
            if self._bus_off_ms is None:
                self._bus_off_ms = now_ms
                self.bus_offs += 1
            elif now_ms - self._bus_off_ms >= BUS_OFF_RESET_MS:
                self.resets += 1
                self.start()
            return
        self._bus_off_ms = None
        if self._read(_CANINTF) & _ERRIF:
            self._modify(_CANINTF, _ERRIF, 0)
        for n in range(3):
            since = self._sent_ms[n]
            if since is None:
                continue
            ctrl = _TXB0CTRL + 16 * n
            if not self._read(ctrl) & _TXREQ:
                self._sent_ms[n] = None
            elif since is _QUEUED:
                self._sent_ms[n] = now_ms
            elif now_ms - since >= TX_TIMEOUT_MS:
                self._modify(ctrl, _TXREQ, 0)   # abort: nothing acknowledges it
                self._sent_ms[n] = None
                self.tx_timeouts += 1

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        for n in range(3):
            if self._sent_ms[n] is not _QUEUED:
                self._sent_ms[n] = ticks.back(self._sent_ms[n], d)
        self._bus_off_ms = ticks.back(self._bus_off_ms, d)

    def state(self):
        eflg = self.eflg
        if eflg & _EFLG_TXBO:
            return "bus-off"
        if eflg & (_EFLG_TXEP | _EFLG_RXEP):
            return "passive"
        if eflg & _EFLG_EWARN:
            return "warning"
        return "active"

    def stats(self):
        return {"state": self.state(), "tec": self.tec, "rec": self.rec, "sent": self.sent,
                "received": self.received, "tx_timeouts": self.tx_timeouts, "rx_overruns": self.rx_overruns,
                "bus_offs": self.bus_offs, "resets": self.resets}

    def deinit(self):
        try:
            self._mode(MODE_CONFIG)   # off the bus
        except OSError:
            pass
