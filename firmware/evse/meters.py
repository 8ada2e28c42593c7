# Energy meter drivers over evse.modbus: a register map per model, read in a few contiguous
# blocks per poll, decoded into a small Reading (the OCPP measurands Energy.Active.Import.Register,
# Power.Active.Import, Current.Import and Voltage, per phase for AC).
#
# A board file names each gun's meter: "meter": {"model": "sdm630", "uart": 0, "address": 1}
# (optional "baud", default 9600); `check` validates that entry.
from micropython import const

from evse import modbus

# How a field is stored in the registers.
F32 = const(0)  # IEEE-754 float32, high word first (Eastron)
U32 = const(1)  # unsigned 32 bits, high word first
S16_DP = const(2)  # signed 16 bits, the next register its decimal point: value * 10^(dp - 3) (Acrel)
U16_DP = const(3)  # unsigned 16 bits, likewise

# A model: the function that reads it, the blocks one poll reads (start, count), and where each
# field of the Reading is: (attribute, phase index or None, register address, kind, scale).
#
# Eastron SDM630 (Modbus protocol V1.8 / "SDM630 Modbus V2", input registers 3X, float32 high
# word first, at most 40 parameters = 80 registers per request). Addresses as in Tasmota
# xnrg_10_sdm630.ino, reaper7/SDM_Energy_Meter SDM.h (SDM630_*), and SmartEVSE-3's meter table
# (row "Eastron3P": function 4, float32, V 0x0, A 0x6, W 0x34, kWh import 0x48 / export 0x4A).
#   0x0000/02/04 phase 1-3 line-to-neutral volts   0x0006/08/0A phase 1-3 current A
#   0x000C/0E/10 phase 1-3 active power W           0x0034 total system power W
#   0x0046 frequency Hz                             0x0048 import active energy kWh
#   0x004A export active energy kWh                 0x0156 total active energy kWh
# The second block spans parameters Eastron leaves undefined (0x0036, 0x003A, ...): the meter
# answers them and the driver ignores them, one request instead of three.
SDM630 = {
    "function": modbus.READ_INPUT, "phases": 3, "dc": False,
    "blocks": ((0x0000, 0x12), (0x0034, 0x16)),
    "fields": (("volts", 0, 0x0000, F32, 1), ("volts", 1, 0x0002, F32, 1), ("volts", 2, 0x0004, F32, 1),
               ("amps", 0, 0x0006, F32, 1), ("amps", 1, 0x0008, F32, 1), ("amps", 2, 0x000A, F32, 1),
               ("phase_w", 0, 0x000C, F32, 1), ("phase_w", 1, 0x000E, F32, 1), ("phase_w", 2, 0x0010, F32, 1),
               ("power_w", None, 0x0034, F32, 1), ("energy_wh", None, 0x0048, F32, 1000)),
}
# Eastron SDM120 (SDM120 protocol, input registers, float32): 0x0000 volts, 0x0006 current A,
# 0x000C active power W, 0x0046 frequency Hz, 0x0048 import active energy kWh, 0x004A export
# kWh, 0x0156 total kWh (reaper7/SDM_Energy_Meter SDM120CT_*; SmartEVSE-3 row "Eastron1P").
SDM120 = {
    "function": modbus.READ_INPUT, "phases": 1, "dc": False,
    "blocks": ((0x0000, 0x0E), (0x0048, 0x02)),
    "fields": (("volts", 0, 0x0000, F32, 1), ("amps", 0, 0x0006, F32, 1), ("phase_w", 0, 0x000C, F32, 1),
               ("power_w", None, 0x000C, F32, 1), ("energy_wh", None, 0x0048, F32, 1000)),
}
# Acrel DJSF1352-RN DC energy meter, holding registers (function 0x03; it implements 0x03 and
# 0x10 only). Map as read by EVerest's Acrel_DJSF1352_RN module (powermeterImpl.hpp PmRegisters,
# one read of 20 registers from 0x0000) and EN+'s meter_drv_djsf1352.h (register enum and
# captured frames):
#   0x0000 DC voltage (uint16)     0x0001 its decimal point DPT: V = value * 10^(DPT - 3)
#   0x0002 DC current (int16)      0x0003 its decimal point DCT: A = value * 10^(DCT - 3)
#   0x0004 broken-wire flag        0x0005 internal temperature, 0.1 degC
#   0x0008 power (int16)           0x0009 its decimal point DP: W = value * 10^(DP - 3)
#   0x000C-0D total import (forward) active energy, uint32 high word first
#   0x000E-0F total export (reverse) active energy      0x0010 voltage ratio, 0x0011 rated current
# Energy unit: EVerest publishes the raw count as Wh; Acrel's AC meters (DDSY1352, ADL400) count
# 0.01 kWh and one third-party tool assumes 0.1 Wh. We follow EVerest (1 Wh per count):
# DJSF_WH_PER_COUNT is the one place to change once checked against a real meter's display.
DJSF_WH_PER_COUNT = const(1)
DJSF1352 = {
    "function": modbus.READ_HOLDING, "phases": 1, "dc": True,
    "blocks": ((0x0000, 0x10),),
    "fields": (("volts", 0, 0x0000, U16_DP, 1), ("amps", 0, 0x0002, S16_DP, 1),
               ("power_w", None, 0x0008, S16_DP, 1), ("energy_wh", None, 0x000C, U32, DJSF_WH_PER_COUNT)),
}

MODELS = {"sdm630": SDM630, "sdm120": SDM120, "djsf1352": DJSF1352}
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400)
PARITIES = ("none", "even", "odd")


class MeterError(modbus.ModbusError):
    """The meter answered, but with a value that cannot be a measurement (NaN, negative energy)."""


class Reading:
    """One poll of a meter. AC: volts and amps per phase (L1, L2, L3); DC: one of each."""

    def __init__(self, phases, dc):
        self.energy_wh = 0  # Energy.Active.Import.Register, whole Wh
        self.power_w = 0.0  # Power.Active.Import; negative while exporting
        self.volts = [0.0] * phases  # Voltage (L-N per phase on AC)
        self.amps = [0.0] * phases  # Current.Import per phase (a magnitude)
        self.phase_w = [0.0] * phases  # active power per phase, negative while exporting (SDM630)
        self.dc = dc


def check(meter):
    """A board file's meter entry, validated; ValueError naming the key and the fix."""
    if not isinstance(meter, dict):
        raise ValueError('meter must be an object like {"model": "sdm630", "uart": 0, "address": 1}')
    model = meter.get("model")
    if model not in MODELS:
        raise ValueError("meter model %r unknown: use %s" % (model, ", ".join(sorted(MODELS))))
    return check_line(meter, "meter")


# Each kind of Modbus device's factory line settings (baud, parity), what an entry without
# "baud" or "parity" runs at: the meters', Bender's isoCHA425HV's, Waveshare's I/O modules'.
LINES = {"meter": (9600, "none"), "imd": (19200, "even"), "matrix": (9600, "none")}


def check_line(entry, kind, what=None):
    """A Modbus device entry's address, uart, baud and parity (defaults: LINES[kind]),
    validated; `what` (else the kind) names the device in the ValueError."""
    what = what or kind
    baud, parity = LINES[kind]
    address = entry.get("address")
    if not isinstance(address, int) or isinstance(address, bool) or not 1 <= address <= 247:
        raise ValueError("%s address must be the Modbus slave address 1..247, not %r" % (what, address))
    uart = entry.get("uart")
    if not isinstance(uart, int) or isinstance(uart, bool) or uart < 0:
        raise ValueError("%s uart must be the index of the board's RS-485 UART, not %r" % (what, uart))
    baud = entry.get("baud", baud)
    if not isinstance(baud, int) or isinstance(baud, bool) or baud not in BAUDRATES:
        raise ValueError("%s baud %r: use one of %s" % (what, baud, ", ".join(str(b) for b in BAUDRATES)))
    parity = entry.get("parity", parity)
    if parity not in PARITIES:
        raise ValueError("%s parity %r: use %s" % (what, parity, ", ".join(PARITIES)))
    return entry


class Meter:
    """A meter on a modbus.Master's bus. `await read()` polls it: a new Reading, or raises
    modbus.ModbusError (no answer, garbled answer, refusal) or MeterError."""

    def __init__(self, master, model, address):
        if model not in MODELS:
            raise ValueError("meter model %r unknown: use %s" % (model, ", ".join(sorted(MODELS))))
        spec = MODELS[model]
        self.master = master
        self.model = model
        self.address = address
        self.phases = spec["phases"]
        self.dc = spec["dc"]
        self._blocks = spec["blocks"]
        # One request and one buffer per block, built once: a poll allocates little.
        self._requests = [modbus.read_request(address, spec["function"], start, count) for start, count in self._blocks]
        self._buffers = [bytearray(2 * count) for _, count in self._blocks]
        # Each field as (attribute, phase, register, buffer, offset in it, kind, scale); every
        # kind spans two registers.
        self._fields = []
        for attr, phase, register, kind, scale in spec["fields"]:
            for i, (start, count) in enumerate(self._blocks):
                if start <= register and register + 2 <= start + count:
                    self._fields.append((attr, phase, register, self._buffers[i], register - start, kind, scale))
                    break
            else:
                raise ValueError("%s map: register 0x%04x is outside its blocks" % (model, register))

    async def read(self):
        for i in range(len(self._requests)):
            await self.master.read(self._requests[i], self._buffers[i])
        reading = Reading(self.phases, self.dc)
        for attr, phase, register, regs, reg, kind, scale in self._fields:
            value = self._decode(register, regs, reg, kind) * scale
            if phase is None:
                setattr(reading, attr, value)
            else:
                getattr(reading, attr)[phase] = value
        if reading.energy_wh < 0:
            raise MeterError("%s at %d: negative energy register %r" % (self.model, self.address, reading.energy_wh))
        reading.energy_wh = int(round(reading.energy_wh))
        return reading

    def _decode(self, register, regs, reg, kind):
        if kind == F32:
            value = modbus.float32(regs, reg)
            if value - value != 0:  # NaN or infinite
                raise MeterError("%s at %d: register 0x%04x holds no number" % (self.model, self.address, register))
            return value
        if kind == U32:
            return modbus.uint32(regs, reg)
        value = float(modbus.int16(regs, reg) if kind == S16_DP else modbus.uint16(regs, reg))
        point = modbus.uint16(regs, reg + 1)
        if point > 6:
            raise MeterError("%s at %d: decimal point %d at register 0x%04x is out of range"
                             % (self.model, self.address, point, register + 1))
        return value * 10 ** (point - 3) if point >= 3 else value / 10 ** (3 - point)
