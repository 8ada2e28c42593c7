"""An MCP2515 CAN controller as the virtual board's SPI sees it, from Microchip's data sheet
(DS20001801): its register file, the SPI instructions (section 12), transmit and receive
buffers with the acceptance masks and filters (section 4), the error counters and bus-off
(section 6), the modes (section 10). Written from the data sheet, not from the firmware's driver
(evse/can/mcp2515.py), so a test of one against the other checks both.

`transfer(data)` is one SPI transaction (chip select low to high): the bytes clocked in, the bytes
clocked out; `select()`, `clock(data)` (any number of times) and `deselect()` are the same in
pieces, as a chip select pin and several SPI calls make it (host_tools/sim/frontend.py). Frames
the chip sends go to `on_send(can_id, data)`, which says whether a node acknowledged them;
`deliver(can_id, data)` puts a frame from the bus in front of the filters. Standard (11-bit)
frames and remote frames are not modelled: the power modules use neither."""

from __future__ import annotations

import threading
from typing import Callable

CANSTAT, CANCTRL, TEC, REC = 0x0E, 0x0F, 0x1C, 0x1D
CNF3, CNF2, CNF1, CANINTE, CANINTF, EFLG = 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D
TXBCTRL = (0x30, 0x40, 0x50)
RXBCTRL = (0x60, 0x70)
FILTERS = (0x00, 0x04, 0x08, 0x10, 0x14, 0x18)   # RXF0..RXF5; RXF0-1 go with RXB0
MASKS = (0x20, 0x24)
CONFIG, NORMAL, SLEEP, LOOPBACK, LISTEN = 0x80, 0x00, 0x20, 0x40, 0x60

# EFLG bits
RX1OVR, RX0OVR, TXBO, TXEP, RXEP, TXWAR, RXWAR, EWARN = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
# CANINTF bits
RX0IF, RX1IF, TX0IF, ERRIF = 0x01, 0x02, 0x04, 0x20
# TXBnCTRL bits
ABTF, MLOA, TXERR, TXREQ = 0x40, 0x20, 0x10, 0x08
EXIDE = 0x08

# Bits of the registers that software may write (the rest are read-only or cleared by the chip).
_CONFIG_ONLY = set(range(0x00, 0x0C)) | set(range(0x10, 0x1C)) | set(range(0x20, 0x2B))
_BIT_MODIFIABLE = {0x0C, 0x0D, CANCTRL, CNF3, CNF2, CNF1, CANINTE, CANINTF, EFLG,
                   0x30, 0x40, 0x50, 0x60, 0x70}


def id_bytes(can_id: int) -> bytes:
    """SIDH, SIDL, EID8, EID0 of an extended identifier, as the data sheet lays them out (3.0)."""
    sid = can_id >> 18           # the standard part: ID28..ID18
    eid = can_id & 0x3FFFF       # the extension: ID17..ID0
    return bytes((sid >> 3, ((sid & 0x07) << 5) | EXIDE | (eid >> 16), (eid >> 8) & 0xFF, eid & 0xFF))


def id_of(raw: bytes) -> int | None:
    sidh, sidl, eid8, eid0 = raw
    if not sidl & EXIDE:
        return None
    return (((sidh << 3) | (sidl >> 5)) << 18) | ((sidl & 0x03) << 16) | (eid8 << 8) | eid0


class Mcp2515:
    def __init__(self, on_send: Callable[[int, bytes], bool] | None = None):
        self.on_send = on_send or (lambda can_id, data: True)
        self.regs = bytearray(128)
        self.lock = threading.RLock()   # transfer() holds it across select, clock, deselect
        self._mosi = bytearray()   # the instruction so far, while selected
        self.transfers = 0
        self.reset()

    # ---- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        self.regs[:] = bytes(128)
        self.regs[CANSTAT] = CONFIG
        self.regs[CANCTRL] = 0x87    # REQOP = configuration, CLKEN, CLKPRE = /8 (reset values)
        self.tec = 0
        self.rec = 0

    @property
    def mode(self) -> int:
        return self.regs[CANSTAT] & 0xE0

    def _set_mode(self, requested: int) -> None:
        # Leaving configuration mode needs a bit timing (CNF1-3 written); a request for sleep or
        # listen-only is taken as is. The chip switches at once here (no frame in progress).
        self.regs[CANSTAT] = (self.regs[CANSTAT] & 0x1F) | requested

    def _flags(self) -> None:
        e = self.regs[EFLG] & (RX1OVR | RX0OVR)
        if self.tec >= 256:
            e |= TXBO
        if self.tec >= 128:
            e |= TXEP
        if self.rec >= 128:
            e |= RXEP
        if self.tec >= 96:
            e |= TXWAR
        if self.rec >= 96:
            e |= RXWAR
        if self.tec >= 96 or self.rec >= 96:
            e |= EWARN
        self.regs[EFLG] = e
        self.regs[TEC] = min(self.tec, 255)
        self.regs[REC] = min(self.rec, 255)

    # ---- the SPI side ----------------------------------------------------------------------
    def transfer(self, data: bytes) -> bytes:
        """One whole transaction: chip select low, `data` clocked in, chip select high."""
        with self.lock:
            self.select()
            out = self.clock(data)
            self.deselect()
            return out

    def select(self) -> None:
        """Chip select falls: a new instruction begins."""
        with self.lock:
            self._mosi = bytearray()

    def clock(self, data: bytes) -> bytes:
        """Bytes clocked in while selected -> the bytes the chip clocks out meanwhile. A byte out
        depends only on the bytes in before it, so an instruction may come in several pieces
        (an SPI write of the instruction, then a read of its answer)."""
        with self.lock:
            before = len(self._mosi)
            self._mosi += data
            return self._miso(bytes(self._mosi))[before:]

    def deselect(self) -> None:
        """Chip select rises: the instruction takes effect (nothing it answered depends on it)."""
        with self.lock:
            data, self._mosi = bytes(self._mosi), bytearray()
            self.transfers += 1
            self._execute(data)

    def _miso(self, data: bytes) -> bytes:
        out = bytearray(len(data))
        op = data[0] if data else None
        if op == 0x03:                                       # READ from an address, auto-increment
            for k in range(2, len(data)):
                out[k] = self.regs[(data[1] + k - 2) & 0x7F]
        elif op is not None and op & 0xF9 == 0x90:           # READ RX BUFFER: 0x90, 92, 94, 96
            start = RXBCTRL[(op >> 2) & 1] + (1 if not op & 0x02 else 6)
            for k in range(1, len(data)):
                out[k] = self.regs[(start + k - 1) & 0x7F]
        elif op == 0xA0:                                     # READ STATUS
            intf = self.regs[CANINTF]
            status = intf & (RX0IF | RX1IF)
            for n in range(3):
                if self.regs[TXBCTRL[n]] & TXREQ:
                    status |= 0x04 << (2 * n)
                if intf & (TX0IF << n):
                    status |= 0x08 << (2 * n)
            for k in range(1, len(data)):
                out[k] = status
        return bytes(out)                                    # RX STATUS (not used by us): zeros

    def _execute(self, data: bytes) -> None:
        if not data:
            return
        op = data[0]
        if op == 0xC0:                                       # RESET
            self.reset()
        elif op == 0x02 and len(data) >= 2:                  # WRITE
            a = data[1]
            for k in range(2, len(data)):
                self._write((a + k - 2) & 0x7F, data[k])
        elif op == 0x05 and len(data) >= 4:                  # BIT MODIFY
            a, mask, value = data[1], data[2], data[3]
            if a in _BIT_MODIFIABLE:
                self._write(a, (self.regs[a] & ~mask) | (value & mask))
        elif op & 0xF9 == 0x90:                              # READ RX BUFFER: its RXnIF clears
            self.regs[CANINTF] &= ~(RX0IF << ((op >> 2) & 1))
        elif op & 0xF8 == 0x40:                              # LOAD TX BUFFER: 0x40..0x45
            n = (op >> 1) & 0x03
            if n < 3:
                start = TXBCTRL[n] + (1 if not op & 0x01 else 6)
                for k in range(1, len(data)):
                    self.regs[(start + k - 1) & 0x7F] = data[k]
        elif op & 0xF8 == 0x80:                              # RTS: 0x81, 0x82, 0x84 and sums
            for n in range(3):
                if op & (1 << n):
                    self.regs[TXBCTRL[n]] |= TXREQ
            self._transmit()

    def _write(self, a: int, value: int) -> None:
        mode = self.mode
        if a in _CONFIG_ONLY and mode != CONFIG:
            return              # filters, masks and bit timing are writable in configuration mode only
        if a == CANCTRL:
            self.regs[CANCTRL] = value
            requested = value & 0xE0
            if requested != mode:
                if requested != CONFIG and mode == CONFIG and not self.regs[CNF1] | self.regs[CNF2]:
                    pass        # no bit timing: the request waits (the chip would not sync to the bus)
                else:
                    self._set_mode(requested)
            if value & 0x10:    # ABAT: abort all pending transmissions
                for n in range(3):
                    if self.regs[TXBCTRL[n]] & TXREQ:
                        self.regs[TXBCTRL[n]] = (self.regs[TXBCTRL[n]] & ~TXREQ) | ABTF
            return
        if a in (CANSTAT, TEC, REC):
            return
        if a == EFLG:
            self.regs[EFLG] &= value | 0x3F   # only RX0OVR and RX1OVR can be cleared
            return
        if a in TXBCTRL:
            was = self.regs[a]
            self.regs[a] = (was & (ABTF | MLOA | TXERR)) | (value & 0x0B)
            if was & TXREQ and not value & TXREQ:
                self.regs[a] |= ABTF    # aborted by software
            if value & TXREQ and not was & TXREQ:
                self._transmit()
            return
        self.regs[a] = value

    # ---- the bus side ----------------------------------------------------------------------
    def pending(self) -> list[tuple[int, int, bytes]]:
        """(buffer, identifier, data) of each frame waiting to go out."""
        out = []
        for n in range(3):
            base = TXBCTRL[n]
            if self.regs[base] & TXREQ:
                can_id = id_of(bytes(self.regs[base + 1:base + 5]))
                size = min(self.regs[base + 5] & 0x0F, 8)
                out.append((n, can_id, bytes(self.regs[base + 6:base + 6 + size])))
        return out

    def _transmit(self) -> None:
        # One attempt per pending buffer, the highest priority (TXP, then buffer number) first.
        if self.mode not in (NORMAL, LOOPBACK) or self.tec >= 256:
            return
        order = sorted(self.pending(), key=lambda p: (-(self.regs[TXBCTRL[p[0]]] & 0x03), -p[0]))
        for n, can_id, data in order:
            if can_id is None:
                continue            # a standard frame: not modelled
            base = TXBCTRL[n]
            if self.mode == LOOPBACK:
                acked = True
                self._receive(can_id, data)
            else:
                acked = self.on_send(can_id, data)
            if acked:
                self.regs[base] &= ~(TXREQ | TXERR | MLOA)
                self.regs[CANINTF] |= TX0IF << n
                self.tec = max(0, self.tec - 1)
            else:                   # an acknowledgement error: the chip keeps retrying this one,
                self.regs[base] |= TXERR   # and the frames behind it wait
                self.regs[CANINTF] |= ERRIF
                self.tec += 8
                if self.tec >= 256:
                    for k in range(3):
                        self.regs[TXBCTRL[k]] &= ~TXREQ
                self._flags()
                return
            self._flags()

    def retry(self) -> None:
        """The chip's automatic retransmission of what is still pending (the bus server calls it
        every few ms, as the bus is free again)."""
        with self.lock:
            self._transmit()

    def recover(self) -> None:
        """128 x 11 recessive bits seen: bus-off ends (section 6.6)."""
        with self.lock:
            if self.tec >= 256:
                self.tec = 0
                self.rec = 0
                self._flags()

    def deliver(self, can_id: int, data: bytes) -> None:
        with self.lock:
            if self.mode in (NORMAL, LISTEN):
                self._receive(can_id, data)

    def _accepted(self, buffer: int, raw: bytes) -> bool:
        rxm = (self.regs[RXBCTRL[buffer]] >> 5) & 0x03
        if rxm == 0x03:
            return True             # masks and filters off: any frame
        mask = self.regs[MASKS[buffer]:MASKS[buffer] + 4]
        filters = FILTERS[:2] if buffer == 0 else FILTERS[2:]
        for f in filters:
            filt = self.regs[f:f + 4]
            if not filt[1] & EXIDE:
                continue            # a filter for standard frames
            if all((raw[k] ^ filt[k]) & mask[k] & (0xE3 if k == 1 else 0xFF) == 0 for k in range(4)):
                return True
        return False

    def _receive(self, can_id: int, data: bytes) -> None:
        raw = id_bytes(can_id)
        if self._accepted(0, raw):
            n = 0
            if self.regs[CANINTF] & RX0IF:
                if not self.regs[RXBCTRL[0]] & 0x04:
                    self.regs[EFLG] |= RX0OVR
                    return
                n = 1               # BUKT: a frame for a full RXB0 rolls over into RXB1
        elif self._accepted(1, raw):
            n = 1
        else:
            return
        if n == 1 and self.regs[CANINTF] & RX1IF:
            self.regs[EFLG] |= RX1OVR
            return
        base = RXBCTRL[n]
        self.regs[base + 1:base + 5] = raw
        self.regs[base + 5] = len(data)
        self.regs[base + 6:base + 6 + len(data)] = data
        self.regs[CANINTF] |= RX0IF << n
        self.rec = max(0, self.rec - 1)
