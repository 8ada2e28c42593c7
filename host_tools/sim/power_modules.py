"""The virtual board's DC power modules on its CAN bus, each answering as its maker's protocol
document describes, written from those descriptions and not from the firmware's drivers
(evse/can/infy.py, winline.py), so a test of one against the other checks both.

- Infypower V1.13 (REG1K0100G and kin): identifier error[28:26] device[25:22] command[21:16]
  destination[15:8] source[7:0]; the controller is 0xF0; answers carry the command number back,
  from the module's address. 0x03: output V and A as two IEEE-754 floats; 0x04: byte 2 group,
  byte 4 temperature, bytes 5-7 status flags; 0x0A: max V, min V, max A x 10, rated W / 10 (u16
  each); 0x1A: byte 0 0 = on, 1 = off; 0x1C: V in mV and A in mA (u32 each). Without any message
  from the controller for 10 s the module turns its output off.
- Winline: identifier 0x060[28:20] point-to-point[19] destination[18:11] source[10:3] group[2:0];
  byte 0 the function (0x10 read, 0x03 set; answers 0x41 float, 0x42 integer), byte 1 the error
  code (0xF0 OK, 0xF2 an unknown register), bytes 2-3 the register, 4-7 the value. Registers
  0x01/0x02 output V/A, 0x11 rated W, 0x12 rated A (floats), 0x40 status (integer), 0x1B set
  current (A x 1024), 0x21 set voltage (float V), 0x30 on/off (0 on, 0x10000 off). Winline does not
  publish a timeout; the model uses Infypower's 10 s.

The world (host_tools/sim/world.py) decides what flows: a module delivers its share of what its
dispenser delivers, at most its setpoint's current and its rating. A rig can make a module
report a fault (`module_fault`) or fall silent (`module_silent`): deaf and mute, as with a broken
CAN wire, it keeps its last setpoint until its own 10 s without the controller turn it off."""

from __future__ import annotations

import select
import socket
import struct
from typing import Callable

from host_tools.sim.loopback import LoopbackServer

CONTROLLER = 0xF0
TIMEOUT_S = 10.0

# Infypower: status flag bits, bytes 5-7 as one 24-bit number (byte 5 high).
INFY_DC_OFF = 1 << 8
INFY_FAULTS = {"short": 1 << 0, "fault": 1 << 9, "protection": 1 << 10, "fan": 1 << 11,
               "overtemp": 1 << 12, "overvoltage": 1 << 13, "input_uv": 1 << 21, "input_ov": 1 << 22}
# Winline: status register bits.
WINLINE_DC_OFF = 1 << 22
WINLINE_FAULTS = {"short": 1 << 28, "fault": 1 << 0, "protection": 1 << 1, "fan": 1 << 27,
                  "overtemp": 1 << 30, "overvoltage": 1 << 31, "input_uv": 1 << 14, "input_ov": 1 << 9}
FAULT_NAMES = tuple(INFY_FAULTS)


class PowerModule:
    """What both makers' modules have: a setpoint, an output, a rating, faults and silence."""

    protocol = ""

    def __init__(self, number: int, address: int, rated_w: float, max_v: float = 1000.0, min_v: float = 150.0,
                 max_a: float | None = None):
        self.number = number        # 1.. in the board's order (the rig's name for it)
        self.address = address
        self.rated_w = rated_w
        self.max_v = max_v
        self.min_v = min_v
        self.max_a = max_a if max_a is not None else rated_w / 300.0   # full power from 300 V up
        self.on = False
        self.set_v = 0.0
        self.set_a = 0.0
        self.out_v = 0.0
        self.out_a = 0.0
        self.fault = None           # a FAULT_NAMES name, or None
        self.silent = False
        self.heard_s: float | None = None   # the controller's last message to it
        self.timed_out = 0          # times it turned off for want of the controller's messages
        self.frames_in = 0
        self.logged = None          # the state the world last logged (module_output events)

    def deliverable_w(self, volts: float) -> float:
        """The most it puts out now at `volts`."""
        if not self.on or self.fault is not None or volts < self.min_v:
            return 0.0
        return min(self.rated_w, min(self.set_a, self.max_a) * min(volts, self.set_v)) if self.set_v else 0.0

    def tick(self, now_s: float) -> None:
        if self.on and self.heard_s is not None and now_s - self.heard_s >= TIMEOUT_S:
            self.on = False
            self.timed_out += 1

    def answer(self, can_id: int, data: bytes, now_s: float) -> list[tuple[int, bytes]]:
        raise NotImplementedError


class InfyModule(PowerModule):
    protocol = "infy"

    def _id(self, command: int, error: int = 0) -> int:
        return error << 26 | 0x0A << 22 | command << 16 | CONTROLLER << 8 | self.address

    def flags(self) -> int:
        f = 0 if self.on else INFY_DC_OFF
        if self.fault is not None:
            f |= INFY_FAULTS[self.fault]
        return f

    def answer(self, can_id: int, data: bytes, now_s: float) -> list[tuple[int, bytes]]:
        device = (can_id >> 22) & 0x0F
        command = (can_id >> 16) & 0x3F
        destination = (can_id >> 8) & 0xFF
        source = can_id & 0xFF
        if source != CONTROLLER or destination not in (self.address, 0x3F) or device != 0x0A or self.silent:
            return []
        self.frames_in += 1
        self.heard_s = now_s
        if len(data) != 8:
            return [(self._id(command, error=3), bytes(8))]
        if command == 0x03:
            return [(self._id(0x03), struct.pack(">ff", self.out_v, self.out_a))]
        if command == 0x04:
            f = self.flags()
            return [(self._id(0x04), bytes((0, 0, 0, 0, 35, (f >> 16) & 0xFF, (f >> 8) & 0xFF, f & 0xFF)))]
        if command == 0x0A:
            return [(self._id(0x0A), struct.pack(">HHHH", int(self.max_v), int(self.min_v), int(self.max_a * 10),
                                                 int(self.rated_w / 10)))]
        if command == 0x1A:
            self.on = data[0] == 0x00 and self.fault is None
            return [(self._id(0x1A), bytes(8))]
        if command == 0x1C:
            mv, ma = struct.unpack(">II", data)
            if not self.min_v * 1000 <= mv <= self.max_v * 1000:
                return [(self._id(0x1C, error=3), bytes(8))]
            self.set_v, self.set_a = mv / 1000, ma / 1000
            return [(self._id(0x1C), bytes(8))]
        return [(self._id(command, error=2), bytes(8))]


class WinlineModule(PowerModule):
    protocol = "winline"

    def _id(self) -> int:
        return 0x060 << 20 | 1 << 19 | CONTROLLER << 11 | self.address << 3

    def flags(self) -> int:
        f = 0 if self.on else WINLINE_DC_OFF
        if self.fault is not None:
            f |= WINLINE_FAULTS[self.fault]
        return f

    def answer(self, can_id: int, data: bytes, now_s: float) -> list[tuple[int, bytes]]:
        if (can_id >> 20) & 0x1FF != 0x060 or (can_id >> 3) & 0xFF != CONTROLLER:
            return []
        point_to_point = (can_id >> 19) & 1
        destination = (can_id >> 11) & 0xFF
        if self.silent or not (point_to_point and destination == self.address
                               or not point_to_point and destination == 0xFF):
            return []
        self.frames_in += 1
        self.heard_s = now_s
        if len(data) != 8:
            return []
        function, register = data[0], int.from_bytes(data[2:4], "big")
        if function == 0x10:
            floats = {0x01: self.out_v, 0x02: self.out_a, 0x11: self.rated_w, 0x12: self.max_a}
            if register in floats:
                return [(self._id(), bytes((0x41, 0xF0)) + data[2:4] + struct.pack(">f", floats[register]))]
            if register == 0x40:
                return [(self._id(), bytes((0x42, 0xF0)) + data[2:4] + struct.pack(">I", self.flags()))]
            return [(self._id(), bytes((0x42, 0xF2)) + data[2:4] + bytes(4))]
        if function == 0x03:
            if register == 0x21:
                volts = struct.unpack(">f", data[4:8])[0]
                if not self.min_v <= volts <= self.max_v:
                    return [(self._id(), bytes((0x41, 0xF3)) + data[2:8])]
                self.set_v = volts
                return [(self._id(), bytes((0x41, 0xF0)) + data[2:8])]
            if register == 0x1B:
                self.set_a = int.from_bytes(data[4:8], "big") / 1024
                return [(self._id(), bytes((0x42, 0xF0)) + data[2:8])]
            if register == 0x30:
                self.on = int.from_bytes(data[4:8], "big") == 0 and self.fault is None
                return [(self._id(), bytes((0x42, 0xF0)) + data[2:8])]
            return [(self._id(), bytes((0x42, 0xF2)) + data[2:8])]
        return []


MODELS = {"infy": InfyModule, "winline": WinlineModule}


def modules_for(board: dict) -> list[PowerModule]:
    """The board's modules (its "cabinet": {"can": {"protocol", "addresses"}}), numbered from 1."""
    cabinet = board.get("cabinet") or {}
    can = cabinet.get("can")
    if not can:
        return []
    model = MODELS[can["protocol"]]
    addresses = can.get("addresses") or list(range(cabinet["modules"]))
    return [model(k + 1, a, cabinet["module_kw"] * 1000.0) for k, a in enumerate(addresses)]


class Bus:
    """The modules on one CAN bus: a frame from the controller reaches every module; their
    answers come back in order. `acked` is False when no module is there to acknowledge it."""

    def __init__(self, modules: list[PowerModule]):
        self.modules = modules
        self.frames = 0

    def exchange(self, can_id: int, data: bytes, now_s: float) -> list[tuple[int, bytes]]:
        self.frames += 1
        out: list[tuple[int, bytes]] = []
        for m in self.modules:
            out += m.answer(can_id, data, now_s)
        return out

    def tick(self, now_s: float) -> None:
        for m in self.modules:
            m.tick(now_s)


class CanServer(LoopbackServer):
    """The cabinet's CAN bus on a loopback TCP port (EVSE_SIM_CAN0 for the firmware's sim HAL):
    one frame a line each way, "IDHEX DATAHEX" (8 hex digits of identifier, up to 16 of data).
    Every frame from the firmware goes to `exchange`, and the modules' answers come back."""

    name = "can"

    def __init__(self, exchange: Callable[[int, bytes], list[tuple[int, bytes]]], host: str = "127.0.0.1"):
        self.exchange = exchange
        self.bad_lines = 0
        LoopbackServer.__init__(self, host)

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        try:
            while not self._closed:
                ready, _, _ = select.select([conn], [], [], 0.5)
                if not ready:
                    continue
                data = conn.recv(4096)
                if not data:
                    return
                pending += data
                *lines, pending = pending.split(b"\n")
                out = []
                for line in lines:
                    parts = line.split()
                    try:
                        can_id = int(parts[0], 16)
                        payload = bytes.fromhex(parts[1].decode()) if len(parts) > 1 else b""
                        if not 0 <= can_id < 1 << 29 or len(payload) > 8:
                            raise ValueError
                    except (ValueError, IndexError):
                        self.bad_lines += 1
                        continue
                    for ident, answer in self.exchange(can_id, payload):
                        out.append(b"%08x %s\n" % (ident, answer.hex().encode()))
                if out:
                    conn.sendall(b"".join(out))
        except OSError:
            pass
        finally:
            conn.close()
