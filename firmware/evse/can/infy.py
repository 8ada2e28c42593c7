# Infypower's CAN protocol V1.13 (REG1K0100G, REG1K0135G, REG1K070G and kin): 125 kbit/s,
# 29-bit identifiers, big-endian payloads of 8 bytes. The identifier:
#   [28:26] error code (replies: 0 normal, 2 command invalid, 3 data invalid, 7 starting up)
#   [25:22] device: 0x0A one module, 0x0B a group
#   [21:16] command
#   [15:8]  destination: a module 0x00-0x3E, 0x3F all; the controller 0xF0
#   [7:0]   source
# A module answers a command with the same command number, to the controller, from its address.
# It turns its output off after 10 s without the controller's messages (the polls keep it on).
# The codec for evse.can.modules: frames to ask, frames to set, what an answer says.
import struct

from micropython import const

NAME = "infy"
CONTROLLER = const(0xF0)
_SINGLE = const(0x0A)
_READ_VI = const(0x03)          # float V, float I
_READ_STATUS = const(0x04)      # byte 2 group, byte 4 temperature (int8 C), bytes 5-7 flags
_READ_RATINGS = const(0x0A)     # u16 max V, u16 min V, u16 max I (0.1 A), u16 rated power (10 W)
_ON_OFF = const(0x1A)           # byte 0: 0 on, 1 off
_SET_VI = const(0x1C)           # u32 mV, u32 mA
MIN_SET_A = 1.0                 # a module does not take a current of 0: below this it is off
ACCEPT = (0xFF00, CONTROLLER << 8)   # the controller's filter: frames to 0xF0
_ZERO = bytes(8)

# Bytes 5-7 of a status answer as one 24-bit number (byte 5 the high byte): bits that take a
# module out of the allocation, each with the name a technician reads in the log and in OCPP's
# vendorErrorCode ("infy:" and the flags in hex).
FAULTS = (
    (0x000001, "output short circuit"),
    (0x000200, "module fault"),
    (0x000400, "module protection"),
    (0x000800, "fan fault"),
    (0x001000, "over-temperature"),
    (0x002000, "output over-voltage"),
    (0x008000, "CAN communication interrupted"),
    (0x020000, "address used twice on the bus"),
    (0x080000, "input phase lost"),
    (0x200000, "input under-voltage"),
    (0x400000, "input over-voltage"),
    (0x800000, "PFC side off"),
)
OFF_FLAG = 0x000100             # byte 6 bit 0: the DC side is off


def can_id(command, destination, source=CONTROLLER, device=_SINGLE, error=0):
    return (error << 26) | (device << 22) | (command << 16) | (destination << 8) | source


def split_id(ident):
    """(error, device, command, destination, source)."""
    return (ident >> 26) & 0x07, (ident >> 22) & 0x0F, (ident >> 16) & 0x3F, (ident >> 8) & 0xFF, ident & 0xFF


def reads(address, first):
    """The frames that poll a module; `first`: also its ratings (once, after it is found)."""
    out = [(can_id(_READ_VI, address), _ZERO), (can_id(_READ_STATUS, address), _ZERO)]
    if first:
        out.append((can_id(_READ_RATINGS, address), _ZERO))
    return out


def sets(address, on, volts, amps):
    """The frames that set a module's output: on with `volts` and `amps`, or off."""
    if not on:
        return [(can_id(_ON_OFF, address), b"\x01" + _ZERO[:7])]
    return [(can_id(_SET_VI, address), struct.pack(">II", int(volts * 1000), int(amps * 1000))),
            (can_id(_ON_OFF, address), _ZERO)]


def all_off():
    """Every module on the bus off: the broadcast address."""
    return [(can_id(_ON_OFF, 0x3F), b"\x01" + _ZERO[:7])]


def parse(ident, data):
    """What a module's answer says: (address, field, value) with field "vi" ((V, A)), "status"
    ((flags, group, temperature C)), "ratings" ((max V, min V, max A, rated W)), "refused"
    (the error code) or "ack"; None for a frame that is not a module's answer to us."""
    error, device, command, destination, source = split_id(ident)
    if destination != CONTROLLER or device != _SINGLE or len(data) != 8:
        return None
    if error:
        return source, "refused", error
    if command == _READ_VI:
        return source, "vi", struct.unpack(">ff", data)
    if command == _READ_STATUS:
        temp = data[4] - 256 if data[4] > 127 else data[4]
        return source, "status", ((data[5] << 16) | (data[6] << 8) | data[7], data[2], temp)
    if command == _READ_RATINGS:
        vmax, vmin, imax, power = struct.unpack(">HHHH", data)
        return source, "ratings", (vmax, vmin, imax / 10, power * 10)
    if command in (_ON_OFF, _SET_VI):
        return source, "ack", command
    return None


def vendor_code(flags):
    return "infy:%06x" % flags
