# Winline's CAN protocol for its charging modules (UR100030-SW, UR100040 and kin): 125 kbit/s,
# 29-bit identifiers:
#   [28:20] protocol number 0x060
#   [19]    1: to or from one module; 0: to a group or all
#   [18:11] destination: a module 0x00-0x3F, 0xFF all, 0xFE a group; the controller 0xF0
#   [10:3]  source
#   [2:0]   group 0-7
# Payload: byte 0 the function (0x10 read, 0x03 set; answers: 0x41 a float value, 0x42 an integer),
# byte 1 the error code in answers (0xF0 OK), bytes 2-3 the register, 4-7 the value, big-endian.
# The codec for evse.can.modules, as evse.can.infy.
import struct

from micropython import const

NAME = "winline"
CONTROLLER = const(0xF0)
_PROTOCOL = const(0x060)
_READ = const(0x10)
_SET = const(0x03)
_FLOAT = const(0x41)
_INT = const(0x42)
_OK = const(0xF0)
_V_OUT = const(0x0001)          # float V
_I_OUT = const(0x0002)          # float A
_RATED_W = const(0x0011)        # float W
_RATED_A = const(0x0012)        # float A
_SET_A = const(0x001B)          # integer, A x 1024
_SET_V = const(0x0021)          # float V
_ON_OFF = const(0x0030)         # integer: 0 on, 0x00010000 off
_STATUS = const(0x0040)         # integer: flags
MIN_SET_A = 0.5
ACCEPT = (0xFF << 11, CONTROLLER << 11)   # the controller's filter: frames to 0xF0

# Status register bits that take a module out of the allocation, with their names.
FAULTS = (
    (1 << 0, "module fault"),
    (1 << 1, "module protection"),
    (1 << 3, "internal communication failure"),
    (1 << 4, "input wiring error"),
    (1 << 7, "DC-DC over-voltage"),
    (1 << 8, "PFC voltage abnormal"),
    (1 << 9, "AC over-voltage"),
    (1 << 14, "AC under-voltage"),
    (1 << 16, "CAN communication failure"),
    (1 << 27, "fan fault"),
    (1 << 28, "output short circuit"),
    (1 << 30, "over-temperature"),
    (1 << 31, "output over-voltage"),
)
OFF_FLAG = 1 << 22              # the DC-DC stage is off


def can_id(destination, source=CONTROLLER, group=0, point_to_point=1):
    return (_PROTOCOL << 20) | (point_to_point << 19) | (destination << 11) | (source << 3) | group


def split_id(ident):
    """(protocol, point to point, destination, source, group)."""
    return (ident >> 20) & 0x1FF, (ident >> 19) & 1, (ident >> 11) & 0xFF, (ident >> 3) & 0xFF, ident & 0x07


def _frame(address, function, register, value=b"\x00\x00\x00\x00"):
    return can_id(address), bytes((function, 0, register >> 8, register & 0xFF)) + value


def reads(address, first):
    out = [_frame(address, _READ, _V_OUT), _frame(address, _READ, _I_OUT), _frame(address, _READ, _STATUS)]
    if first:
        out.append(_frame(address, _READ, _RATED_W))
    return out


def sets(address, on, volts, amps):
    if not on:
        return [_frame(address, _SET, _ON_OFF, struct.pack(">I", 0x10000))]
    return [_frame(address, _SET, _SET_V, struct.pack(">f", volts)),
            _frame(address, _SET, _SET_A, struct.pack(">I", int(amps * 1024))),
            _frame(address, _SET, _ON_OFF, struct.pack(">I", 0))]


def all_off():
    """Every module on the bus off: a broadcast (not point to point, to 0xFF)."""
    return [(can_id(0xFF, point_to_point=0), bytes((_SET, 0, 0, _ON_OFF)) + struct.pack(">I", 0x10000))]


def parse(ident, data):
    """As evse.can.infy.parse: "v" and "a" come in answers of their own, so a "vi" is made of
    whichever came last (None for the other)."""
    protocol, _, destination, source, _ = split_id(ident)
    if protocol != _PROTOCOL or destination != CONTROLLER or len(data) != 8:
        return None
    if data[1] != _OK:
        return source, "refused", data[1]
    register = (data[2] << 8) | data[3]
    if data[0] == _FLOAT:
        value = struct.unpack_from(">f", data, 4)[0]
        if register == _V_OUT:
            return source, "v", value
        if register == _I_OUT:
            return source, "a", value
        if register == _RATED_W:
            return source, "ratings", (None, None, None, value)
        return source, "ack", register
    if data[0] == _INT:
        value = struct.unpack_from(">I", data, 4)[0]
        if register == _STATUS:
            return source, "status", (value, None, None)
        return source, "ack", register
    return None


def vendor_code(flags):
    return "winline:%08x" % flags
