"""The virtual board's RS-485 buses: Modbus RTU slaves with the register maps of real meters
(Eastron SDM630 and SDM120, Acrel DJSF1352-RN), of an insulation monitor (Bender isoCHA425HV)
and of digital I/O modules driving a DC cabinet's contactor matrix (Waveshare Modbus RTU IO 8CH),
fed by the world's physics.

The firmware's sim HAL opens UART n as a loopback TCP connection to the address in the
environment variable EVSE_SIM_UART<n>; the connection carries the raw RTU bytes both ways. The
bus server ends a frame at the silence after it (t3.5, Modbus over Serial Line 2.5.1.1), offers
it to every slave on the bus, and sends back the one answer. A slave ignores frames with a bad
CRC or for another address, like a real one (Serial Line 2.4.1).

The maps here are transcribed from the meters' protocol documents independently of the
firmware's drivers (evse/meters.py), so a test of one against the other checks both.

Faults a rig can inject per meter (`Slave.fault` returns one of FAULTS or None):
  silent   the meter does not answer (unpowered, wrong address, broken wire)
  garbage  random bytes instead of an answer (a collision, a wrong baudrate)
  bad_crc  the right answer with one bit flipped on the line
  busy     exception 06, server device busy
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from typing import Callable

from host_tools.sim.loopback import LoopbackServer

FAULTS = ("silent", "garbage", "bad_crc", "busy")
FRAME_SILENCE_S = 0.004  # t3.5 at 9600 baud: 3.5 characters of 11 bits
RESPONSE_S = 0.005  # how long a meter takes to start answering
MAX_FRAME = 256

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, BUSY = 1, 2, 3, 6

# A measurement, as the world reports it for one gun's meter:
#   {"volts": [V per phase], "amps": [A per phase], "power_w": W, "energy_wh": Wh}
Measure = Callable[[], dict]


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit (Serial Line 6.2.2), independent of the firmware's table."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def seal(body: bytes) -> bytes:
    """The frame: body + CRC, low byte first."""
    return bytes(body) + struct.pack("<H", crc16(body))


def exception_frame(slave: int, function: int, code: int) -> bytes:
    return seal(bytes((slave, function | 0x80, code)))


# ---- register images: {register address: 16-bit word} -------------------------------------------

def _f32(words: dict, address: int, value: float) -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    words[address], words[address + 1] = high, low


def _u32(words: dict, address: int, value: int) -> None:
    value &= 0xFFFFFFFF
    words[address], words[address + 1] = value >> 16, value & 0xFFFF


def _clamp(value: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(value))))


def _phases(values: list, n: int) -> list[float]:
    return [float(values[i]) if i < len(values) else 0.0 for i in range(n)]


def sdm630_inputs(m: dict) -> dict:
    """Eastron SDM630 input registers (3X, function 04), float32 high word first: Eastron
    "SDM630 Modbus Protocol" parameter table (30001 = address 0x0000)."""
    v, a = _phases(m["volts"], 3), _phases(m["amps"], 3)
    # A resistive load: power factor 1; a phase that exports (a grid meter behind solar
    # panels: "phase_w" signed) shows its power negative, its current as a magnitude.
    p = _phases(m["phase_w"], 3) if "phase_w" in m else [v[i] * a[i] for i in range(3)]
    w: dict = {}
    for i in range(3):
        _f32(w, 0x0000 + 2 * i, v[i])  # phase 1-3 line to neutral volts
        _f32(w, 0x0006 + 2 * i, a[i])  # phase 1-3 current
        _f32(w, 0x000C + 2 * i, p[i])  # phase 1-3 active power W
        _f32(w, 0x0012 + 2 * i, abs(p[i]))  # phase 1-3 apparent power VA
        _f32(w, 0x0018 + 2 * i, 0.0)  # phase 1-3 reactive power VAr
        _f32(w, 0x001E + 2 * i, 1.0)  # phase 1-3 power factor
    _f32(w, 0x002A, sum(v) / 3)  # average line to neutral volts
    _f32(w, 0x002E, sum(a) / 3)  # average line current
    _f32(w, 0x0030, sum(a))  # sum of line currents
    _f32(w, 0x0034, float(m["power_w"]))  # total system power W
    _f32(w, 0x0038, float(m["power_w"]))  # total system VA
    _f32(w, 0x003C, 0.0)  # total system VAr
    _f32(w, 0x003E, 1.0)  # total system power factor
    _f32(w, 0x0046, 50.0)  # frequency Hz
    _f32(w, 0x0048, m["energy_wh"] / 1000)  # import active energy kWh
    _f32(w, 0x004A, 0.0)  # export active energy kWh
    _f32(w, 0x0156, m["energy_wh"] / 1000)  # total active energy kWh
    return w


def sdm120_inputs(m: dict) -> dict:
    """Eastron SDM120 input registers, float32: "SDM120 Modbus Protocol" parameter table."""
    v, a = _phases(m["volts"], 1)[0], _phases(m["amps"], 1)[0]
    w: dict = {}
    _f32(w, 0x0000, v)  # voltage
    _f32(w, 0x0006, a)  # current
    _f32(w, 0x000C, float(m["power_w"]))  # active power W
    _f32(w, 0x0012, v * a)  # apparent power VA
    _f32(w, 0x0018, 0.0)  # reactive power VAr
    _f32(w, 0x001E, 1.0)  # power factor
    _f32(w, 0x0046, 50.0)  # frequency Hz
    _f32(w, 0x0048, m["energy_wh"] / 1000)  # import active energy kWh
    _f32(w, 0x004A, 0.0)  # export active energy kWh
    _f32(w, 0x0156, m["energy_wh"] / 1000)  # total active energy kWh
    return w


# Acrel DJSF1352-RN: decimal points chosen by the meter's range (a 1000 V / 300 A meter):
# V = value * 10^(DPT-3), so DPT 2 = 0.1 V; DCT 2 = 0.1 A; DP 4 = 10 W.
DJSF_DPT, DJSF_DCT, DJSF_DP = 2, 2, 4
DJSF_WH_PER_COUNT = 1  # energy register unit, as EVerest's Acrel_DJSF1352_RN module reads it


def djsf1352_holding(m: dict) -> dict:
    """Acrel DJSF1352-RN holding registers (function 03), as EVerest's Acrel_DJSF1352_RN and
    EN+'s meter_drv_djsf1352 read them: value + decimal-point pairs, uint32 energy high word first."""
    volts, amps = _phases(m["volts"], 1)[0], _phases(m["amps"], 1)[0]
    w: dict = {}
    w[0x0000] = _clamp(volts * 10 ** (3 - DJSF_DPT), 0, 0xFFFF)  # DC voltage
    w[0x0001] = DJSF_DPT
    w[0x0002] = _clamp(amps * 10 ** (3 - DJSF_DCT), -0x8000, 0x7FFF) & 0xFFFF  # DC current, signed
    w[0x0003] = DJSF_DCT
    w[0x0004] = 0  # broken-wire detection: 0 = intact
    w[0x0005] = 250  # internal temperature 25.0 degC
    w[0x0008] = _clamp(float(m["power_w"]) / 10 ** (DJSF_DP - 3), -0x8000, 0x7FFF) & 0xFFFF  # power, signed
    w[0x0009] = DJSF_DP
    _u32(w, 0x000C, int(m["energy_wh"] // DJSF_WH_PER_COUNT))  # total import (forward) active energy
    _u32(w, 0x000E, 0)  # total export (reverse) active energy
    w[0x0010] = 1  # voltage transformation ratio
    w[0x0011] = 300  # rated primary current A
    w[0x0012] = 0  # switch I/O status
    w[0x0013] = 0  # alarm status
    w[0x0023] = 0x0103  # software version
    return w


# Bender ISOMETER isoCHA425HV, a DC insulation monitor (Bender's manual, "Modbus register
# assignment"): R_F at 1000-1003 as float32 high word first, AT&T word (high byte: alarm bits 0-2,
# 2 = device error; test bits 6-7, 2 = external test running), R&U (low byte: unit bits 0-4,
# 2 = ohm; validity bits 6-7, 3 = invalid), channel description 71 (insulation fault). Holding
# 3000-3028 its settings (3026: 1 measure, 0 stop); 8005 = 0x5445 starts the self-test.
IMD_R_F, IMD_MEASURE, IMD_TEST, IMD_TEST_WORD = 1000, 3026, 8005, 0x5445
IMD_OHM, IMD_INVALID, IMD_DEVICE_ERROR, IMD_EXTERNAL_TEST, IMD_CHANNEL_RF = 2, 3 << 6, 2, 2 << 6, 71


def isocha425_holding(m: dict) -> dict:
    """m: {"on": measuring, "testing": a self-test runs, "failed": the last one failed,
    "ohms": the reading or None}."""
    w: dict = {}
    ohms = m["ohms"] if m["on"] and not m["testing"] and not m["failed"] else None
    _f32(w, IMD_R_F, 0.0 if ohms is None else float(ohms))
    at_t = IMD_EXTERNAL_TEST if m["testing"] else (IMD_DEVICE_ERROR if m["failed"] else 0)
    w[IMD_R_F + 2] = (at_t << 8) | IMD_OHM | (IMD_INVALID if ohms is None else 0)
    w[IMD_R_F + 3] = IMD_CHANNEL_RF
    w[IMD_MEASURE] = 1 if m["on"] else 0
    return w


class Model:
    """What one meter model answers: per function a register image (or a store) and its span."""

    def __init__(self, name: str, inputs=None, input_span: int = 0, measured_holding=None,
                 holding_span: int = 0, holding: dict | None = None, writable: range | set | None = None,
                 max_read: int = 125):
        self.name = name
        self.inputs = inputs  # Measure -> words, for function 04
        self.input_span = input_span
        self.measured_holding = measured_holding  # Measure -> words, for function 03
        self.holding_span = holding_span
        self.holding = holding or {}  # configuration holding registers (initial words)
        self.writable = writable or range(0)
        self.max_read = max_read


# Eastron: holding registers are configuration, float32 (system type 3 = 3P4W, node address,
# baud code 2 = 9600); at most 40 parameters (80 registers) per request.
MODELS = {
    "sdm630": Model("sdm630", inputs=sdm630_inputs, input_span=0x0200, holding_span=0x0100,
                    holding={0x0006: 0x4040, 0x0007: 0, 0x001C: 0x4000, 0x001D: 0}, writable=range(0, 0x0100),
                    max_read=80),
    "sdm120": Model("sdm120", inputs=sdm120_inputs, input_span=0x0200, holding_span=0x0100,
                    holding={0x001C: 0x4000, 0x001D: 0}, writable=range(0, 0x0100), max_read=80),
    # Function 0x10 only reaches the clock (0x001E-0x0020: year/month, day/hour, minute/second).
    "djsf1352": Model("djsf1352", measured_holding=djsf1352_holding, holding_span=0x0030,
                      holding={0x001E: 0x1901, 0x001F: 0x0100, 0x0020: 0x0000}, writable=range(0x001E, 0x0021)),
    # 3000-3028 (settings) and 8005 (the self-test) take writes; a write acts through ImdSlave.
    "isocha425": Model("isocha425", measured_holding=isocha425_holding, holding_span=9900,
                       writable=set(range(3000, 3029)) | {IMD_TEST}),
    # Coils and discrete inputs only (IoSlave): no registers.
    "waveshare_io8": Model("waveshare_io8"),
}


class Slave:
    """One meter on a bus: answers the requests addressed to it from its model's register map."""

    def __init__(self, model: str, address: int, measure: Measure, fault: Callable[[], str | None] = lambda: None):
        if model not in MODELS:
            raise ValueError(f"meter model {model!r} unknown to the virtual board: use {', '.join(sorted(MODELS))}")
        if not 1 <= address <= 247:
            raise ValueError(f"meter address must be 1..247, not {address!r}")
        self.model = MODELS[model]
        self.address = address
        self.measure = measure
        self.fault = fault
        self.holding = dict(self.model.holding)
        self.requests = 0  # frames addressed to this meter
        self._random = random.Random(address)

    def handle(self, frame: bytes) -> bytes | None:
        """The answer to one frame on the bus, or None (not for us, corrupted, or silent)."""
        if len(frame) < 4 or crc16(frame[:-2]) != frame[-2] | (frame[-1] << 8):
            return None  # a slave discards a frame with a bad CRC
        if frame[0] != self.address:
            return None
        self.requests += 1
        fault = self.fault()
        if fault == "silent":
            return None
        if fault == "garbage":
            return bytes(self._random.randrange(256) for _ in range(self._random.randrange(1, 40)))
        if fault == "busy":
            return exception_frame(self.address, frame[1], BUSY)
        reply = self._answer(frame)
        if fault == "bad_crc":
            reply = reply[:-1] + bytes((reply[-1] ^ 0x01,))
        return reply

    def _answer(self, frame: bytes) -> bytes:
        function = frame[1]
        if function in (0x03, 0x04):
            if len(frame) != 8:
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            start, count = struct.unpack(">HH", frame[2:6])
            if not 1 <= count <= min(125, self.model.max_read):
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            if function == 0x04:
                if self.model.inputs is None:
                    return exception_frame(self.address, function, ILLEGAL_FUNCTION)
                span, words = self.model.input_span, self.model.inputs(self.measure())
            else:
                span, words = self.model.holding_span, dict(self.holding)
                if self.model.measured_holding is not None:
                    words.update(self.model.measured_holding(self.measure()))
            if start + count > span:
                return exception_frame(self.address, function, ILLEGAL_ADDRESS)
            # Registers inside the span that the map leaves undefined read as 0.
            data = b"".join(struct.pack(">H", words.get(start + i, 0)) for i in range(count))
            return seal(bytes((self.address, function, 2 * count)) + data)
        if function == 0x10:
            if len(frame) < 9:
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            start, count, nbytes = struct.unpack(">HHB", frame[2:7])
            if not 1 <= count <= 123 or nbytes != 2 * count or len(frame) != 9 + nbytes:
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            if start not in self.model.writable or start + count - 1 not in self.model.writable:
                return exception_frame(self.address, function, ILLEGAL_ADDRESS)
            for i in range(count):
                self.holding[start + i] = struct.unpack(">H", frame[7 + 2 * i:9 + 2 * i])[0]
            return seal(frame[:6])
        return exception_frame(self.address, function, ILLEGAL_FUNCTION)


class ImdSlave(Slave):
    """An isoCHA425HV: what it writes to 3026 and 8005 switches the world's monitor of its gun."""

    def __init__(self, address: int, world, gun):
        Slave.__init__(self, "isocha425", address, measure=lambda: world.imd_registers(gun),
                       fault=lambda: gun.imd_fault)
        self.world = world
        self.gun = gun

    def _answer(self, frame: bytes) -> bytes:
        reply = Slave._answer(self, frame)
        if frame[1] == 0x10 and reply[1] == 0x10:
            start, count = struct.unpack(">HH", frame[2:6])
            for i in range(count):
                value = struct.unpack(">H", frame[7 + 2 * i:9 + 2 * i])[0]
                if start + i == IMD_MEASURE:
                    self.world.imd_switch(self.gun, value == 1, self_test=False)
                elif start + i == IMD_TEST and value == IMD_TEST_WORD and self.gun.imd_on:
                    self.world.imd_self_test(self.gun)
        return reply


class IoMatrix:
    """A DC cabinet's contactor matrix on Waveshare Modbus RTU IO 8CH modules (board file
    cabinet.matrix), as Waveshare's wiki gives the module: 8 digital outputs read as coils
    (function 0x01) and set one (0x05: 0xFF00 on, 0x0000 off) or many at a time (0x0F), 8
    digital inputs read as discrete inputs (0x02), all from address 0. Output k of device j
    drives contactor 8j + k, which connects module (8j + k) // n to dispenser (8j + k) % n + 1 of
    n; input k is that contactor's auxiliary contact. The world's matrix follows the coils: a
    module with no coil on is parked, one with two on ties two dispensers together (logged as
    `matrix_short`; the first one counts), and one frame that opens a module's contactor and
    closes another of it is logged as `matrix_swap` (no break before the make)."""

    PER = 8

    def __init__(self, world, dispensers: int):
        self.world = world
        self.n = dispensers
        self.coils = [False] * (self.PER * ((len(world.modules) * dispensers + self.PER - 1) // self.PER))
        self.fault: str | None = None      # how the I/O modules misbehave on the line (FAULTS)

    def inputs(self) -> list[bool]:
        return [k // self.n < len(self.world.modules) and self.world.modules[k // self.n] == k % self.n + 1
                for k in range(len(self.coils))]

    def set(self, first: int, bits: list[bool]) -> None:
        before = list(self.coils)
        self.coils[first:first + len(bits)] = bits
        for m in range(len(self.world.modules)):
            was = [d + 1 for d in range(self.n) if before[m * self.n + d]]
            closed = [d + 1 for d in range(self.n) if self.coils[m * self.n + d]]
            if len(closed) > 1:
                self.world.log(0, "matrix_short", {"module": m + 1, "dispensers": closed})
            elif was and closed and was != closed:
                # One frame opened a contactor and closed another of the module: no break
                # between them, the two dispensers touch while the contacts move.
                self.world.log(0, "matrix_swap", {"module": m + 1, "from": was[0], "to": closed[0]})
            self.world.move_module(m + 1, closed[0] if closed else 0)


class IoSlave(Slave):
    """Device j (from 0) of an IoMatrix."""

    def __init__(self, address: int, matrix: IoMatrix, j: int):
        if not 1 <= address <= 247:
            raise ValueError(f"I/O module address must be 1..247, not {address!r}")
        self.model = MODELS["waveshare_io8"]
        self.address = address
        self.fault = lambda: matrix.fault
        self.holding = {}
        self.requests = 0
        self._random = random.Random(address)
        self.matrix = matrix
        self.first = j * IoMatrix.PER

    def _answer(self, frame: bytes) -> bytes:
        function, per = frame[1], IoMatrix.PER
        if function in (0x01, 0x02, 0x05) and len(frame) != 8:
            return exception_frame(self.address, function, ILLEGAL_VALUE)
        if function in (0x01, 0x02):
            start, count = struct.unpack(">HH", frame[2:6])
            if not 1 <= count <= 2000:
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            if start + count > per:
                return exception_frame(self.address, function, ILLEGAL_ADDRESS)
            with self.matrix.world.lock:
                states = self.matrix.coils if function == 0x01 else self.matrix.inputs()
                bits = states[self.first + start:self.first + start + count]
            packed = bytearray((count + 7) // 8)
            for i, on in enumerate(bits):
                packed[i // 8] |= on << (i % 8)
            return seal(bytes((self.address, function, len(packed))) + bytes(packed))
        if function == 0x05:
            start, value = struct.unpack(">HH", frame[2:6])
            if value not in (0x0000, 0xFF00):
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            if start >= per:
                return exception_frame(self.address, function, ILLEGAL_ADDRESS)
            with self.matrix.world.lock:
                self.matrix.set(self.first + start, [value == 0xFF00])
            return seal(frame[:6])
        if function == 0x0F:
            if len(frame) < 10:
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            start, count, nbytes = struct.unpack(">HHB", frame[2:7])
            if not 1 <= count <= 1968 or nbytes != (count + 7) // 8 or len(frame) != 9 + nbytes:
                return exception_frame(self.address, function, ILLEGAL_VALUE)
            if start + count > per:
                return exception_frame(self.address, function, ILLEGAL_ADDRESS)
            bits = [bool((frame[7 + i // 8] >> (i % 8)) & 1) for i in range(count)]
            with self.matrix.world.lock:
                self.matrix.set(self.first + start, bits)
            return seal(frame[:6])
        return exception_frame(self.address, function, ILLEGAL_FUNCTION)


class Bus:
    """One RS-485 line with its slaves. `powered`: the meters have supply (a site power cut
    silences them); `lock`: held while a slave reads the world."""

    def __init__(self, slaves: list[Slave], powered: Callable[[], bool] = lambda: True, lock=None):
        self.slaves = slaves
        self.powered = powered
        self.lock = lock or threading.RLock()

    def exchange(self, frame: bytes) -> bytes | None:
        with self.lock:
            if not self.powered():
                return None
            answers = [a for a in (s.handle(frame) for s in self.slaves) if a is not None]
        if len(answers) > 1:  # two meters on one address: their answers collide on the line
            return bytes(x ^ y for x, y in zip(answers[0], answers[1]))
        return answers[0] if answers else None


class BusServer(LoopbackServer):
    """A bus on a loopback TCP port; `address` goes to the firmware as EVSE_SIM_UART<n>."""

    name = "rs485"

    def __init__(self, bus: Bus, host: str = "127.0.0.1"):
        self.bus = bus
        LoopbackServer.__init__(self, host)

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = bytearray()
        try:
            while not self._closed:
                ready, _, _ = select.select([conn], [], [], FRAME_SILENCE_S if frame else 0.5)
                if ready:
                    data = conn.recv(512)
                    if not data:
                        return
                    frame += data
                    continue
                if not frame:
                    continue
                # The silence ended a frame; an over-long one is noise no slave takes.
                request, frame = bytes(frame), bytearray()
                answer = self.bus.exchange(request) if len(request) <= MAX_FRAME else None
                if answer:
                    time.sleep(RESPONSE_S)
                    conn.sendall(answer)
        except OSError:
            pass
        finally:
            conn.close()



def buses_for(world, board: dict) -> dict[int, Bus]:
    """One Bus per UART the board's devices hang on: the guns' meters ("meter": {"model",
    "uart", "address"}) each reading its gun in the world, the DC guns' insulation monitors
    ("imd"), and the grid meter."""
    slaves: dict[int, list[Slave]] = {}
    seen: dict[tuple[int, int], str] = {}
    name = board.get("name")

    def place(what: str, entry: dict, make) -> None:
        where = f"board {name} {what}"
        uart, address = entry.get("uart"), entry.get("address")
        if (uart, address) in seen:
            raise ValueError(f"{where}: address {address} on UART {uart} is taken by {seen[uart, address]}")
        seen[uart, address] = what
        try:
            slave = make(address)
        except ValueError as e:
            raise ValueError(f"{where}: {e}")
        slaves.setdefault(uart, []).append(slave)

    for i, gun in enumerate(board["guns"]):
        meter = gun.get("meter")
        if meter is None:
            continue
        where = f"board {name} guns[{i}].meter"
        if not isinstance(meter, dict):
            raise ValueError(f"{where} must be an object like {{\"model\": \"sdm630\", \"uart\": 0, \"address\": 1}}")
        uart, address = meter.get("uart"), meter.get("address")
        if isinstance(uart, bool) or not isinstance(uart, int) or uart < 0:
            raise ValueError(f"{where}.uart must be a UART index >= 0, not {uart!r}")
        if isinstance(address, bool) or not isinstance(address, int) or not 1 <= address <= 247:
            raise ValueError(f"{where}.address must be 1..247, not {address!r}")
        g = world.guns[i]
        place(f"guns[{i}].meter", meter, lambda a, g=g, model=meter.get("model"): Slave(
            model, a, measure=lambda: world.meter_reading(g), fault=lambda: g.meter_fault))
    for i, gun in enumerate(board["guns"]):   # the DC guns' insulation monitors
        if gun.get("imd") is not None:
            place(f"guns[{i}].imd", gun["imd"], lambda a, g=world.guns[i]: ImdSlave(a, world, g))
    matrix = (board.get("cabinet") or {}).get("matrix")
    if matrix is not None:   # the DC cabinet's contactor matrix on I/O modules
        world.matrix = IoMatrix(world, len(board["guns"]))
        for j, address in enumerate(matrix.get("addresses") or []):
            place(f"cabinet.matrix device {j + 1}", dict(matrix, address=address),
                  lambda a, j=j: IoSlave(a, world.matrix, j))
    grid = board.get("grid_meter")
    if grid is not None and "feed" not in grid:   # the meter at the site's connection point: the building and the guns
        place("grid_meter", grid, lambda a: Slave(grid.get("model"), a, measure=world.grid_reading,
                                                  fault=lambda: world.grid_meter_fault))
    return {uart: Bus(group, powered=lambda: world.powered, lock=world.lock) for uart, group in slaves.items()}


def start_buses(world, board: dict) -> dict[int, BusServer]:
    """The board's buses served on loopback ports, by UART index."""
    return {uart: BusServer(bus) for uart, bus in buses_for(world, board).items()}
