"""A site's RS-485 bus: one half-duplex multi-drop line that several virtual boards share, as
the controllers of a site share one pair of wires (host_tools/sim/site.py).

Each member is a board's UART: the firmware's sim HAL opens it as a loopback TCP connection to
`address` (EVSE_SIM_UART<n>) carrying raw bytes both ways. A board that reboots connects again;
a connection that closes takes its half-sent frame with it.

The model, simple on purpose:
- a member's bytes make one frame until FRAME_SILENCE_S passes without more (t3.5 of Modbus RTU,
  as the meters' bus server ends a request: host_tools/sim/modbus.py);
- a frame is on the wire from its first byte's arrival (or, if the member's transmitter still
  sends its previous frame, from that one's end) until its last byte's arrival plus its own
  transmission time at the line's baudrate, 10 bits a byte (start, 8 data, stop);
- every frame reaches every other member, never its sender (RS-485 transceivers hear the line;
  the sender's receiver is off while it drives it). It is held back until it has left the wire
  and COLLISION_WINDOW_S more, so a frame that overlaps it on the wire can still spoil it;
- two frames of different members that overlap on the wire collide: each reaches the others
  XORed with the other's bytes (with its CRC broken if the XOR happens to keep it whole), as
  two drivers fighting over the pair give receivers noise;
- a member that does not read loses what does not fit its socket's buffer, as a UART overrun
  loses bytes;
- while `powered()` is false the line delivers nothing (the site's power is cut).

Counters: `frames` sent on the line, `collisions` the frames among them that were spoilt.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Callable

from host_tools.sim.loopback import LoopbackServer
from host_tools.sim.modbus import FRAME_SILENCE_S, crc16

BITS_PER_BYTE = 10            # start bit, 8 data bits, stop bit (Modbus RTU's 8N1)
COLLISION_WINDOW_S = 0.003    # a frame waits this long after leaving the wire before it is delivered
RECENT_S = 1.0                # delivered frames kept this long to spoil a later one they overlap


class _Member:
    """One board's UART on the line, and the frame it is sending."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.partial = bytearray()   # the frame on its way: bytes since the last silence
        self.start_s = 0.0           # when that frame went onto the wire
        self.last_s = 0.0            # when its last byte came
        self.free_s = 0.0            # when the transmitter finishes its previous frame


class _Frame:
    def __init__(self, sender: _Member, data: bytes, start_s: float, end_s: float):
        self.sender = sender
        self.data = data
        self.start_s, self.end_s = start_s, end_s
        self.due_s = 0.0
        self.noise: bytearray | None = None   # what collided with it, XORed together

    def overlaps(self, start_s: float, end_s: float) -> bool:
        return self.start_s < end_s and start_s < self.end_s

    def spoil(self, other: bytes) -> None:
        if self.noise is None:
            self.noise = bytearray(len(self.data))
        for i in range(min(len(self.data), len(other))):
            self.noise[i] ^= other[i]

    def received(self) -> bytes:
        """What receivers hear: the frame, or the frame with the noise of a collision on it."""
        if self.noise is None:
            return self.data
        out = bytes(a ^ b for a, b in zip(self.data, self.noise))
        if out == self.data or (len(out) >= 4 and crc16(out[:-2]) == struct.unpack("<H", out[-2:])[0]):
            out = out[:-1] + bytes((out[-1] ^ 0x01,))   # the noise never leaves a frame that checks
        return out


class SiteLine(LoopbackServer):
    """The line on a loopback TCP port: `address` goes to each member board as EVSE_SIM_UART<n>."""

    name = "site-line"

    def __init__(self, baud: int = 38400, powered: Callable[[], bool] = lambda: True, host: str = "127.0.0.1"):
        if isinstance(baud, bool) or not isinstance(baud, int) or not 1200 <= baud <= 1_000_000:
            raise ValueError(f"the line's baudrate must be 1200..1000000, not {baud!r}")
        self.baud = baud
        self.powered = powered
        self.frames = 0
        self.collisions = 0
        self._members: list[_Member] = []
        self._pending: list[_Frame] = []   # ended, waiting out their collision window
        self._recent: list[_Frame] = []    # delivered, still able to spoil a late overlapping frame
        self._cond = threading.Condition()
        LoopbackServer.__init__(self, host)
        threading.Thread(target=self._deliver, name="site-line-deliver", daemon=True).start()

    def counters(self) -> dict:
        with self._cond:
            return {"frames": self.frames, "collisions": self.collisions, "members": len(self._members),
                    "baud": self.baud}

    def wire_s(self, nbytes: int) -> float:
        """How long nbytes take on the wire."""
        return nbytes * BITS_PER_BYTE / self.baud

    # ---- the members' side ----------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        member = _Member(conn)
        with self._cond:
            self._members.append(member)
        try:
            while not self._closed:
                ready, _, _ = select.select([conn], [], [], FRAME_SILENCE_S if member.partial else 0.5)
                if ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    now = time.monotonic()
                    with self._cond:
                        if not member.partial:
                            member.start_s = max(now, member.free_s)
                        member.partial += data
                        member.last_s = now
                elif member.partial:
                    self._end_frame(member)
        except OSError:
            pass
        finally:
            with self._cond:
                self._members.remove(member)
            conn.close()

    def _end_frame(self, member: _Member) -> None:
        """The silence after a member's bytes ended its frame: it waits out its window."""
        now = time.monotonic()
        with self._cond:
            data, member.partial = bytes(member.partial), bytearray()
            if not self.powered():
                return
            end_s = max(member.start_s, member.last_s) + self.wire_s(len(data))
            frame = _Frame(member, data, member.start_s, end_s)
            member.free_s = end_s
            for other in self._pending + self._recent:
                if other.sender is not member and other.overlaps(frame.start_s, frame.end_s):
                    self._collide(frame, other.data)
                    self._collide(other, data)
            frame.due_s = max(now, end_s) + COLLISION_WINDOW_S
            self._pending.append(frame)
            self.frames += 1
            self._cond.notify()

    def _collide(self, frame: _Frame, other: bytes) -> None:
        if frame.noise is None:
            self.collisions += 1
        frame.spoil(other)

    # ---- delivery ---------------------------------------------------------------------------------
    def _deliver(self) -> None:
        while not self._closed:
            with self._cond:
                now = time.monotonic()
                due = [f for f in self._pending if f.due_s <= now]
                if not due:
                    wait = min((f.due_s for f in self._pending), default=now + 0.5) - now
                    self._cond.wait(max(wait, 0.0005))
                    continue
                for frame in due:
                    # Another member still sending a frame that began while this one was on the
                    # wire: both are spoilt (the other when it ends, against this one in _recent).
                    for m in self._members:
                        if m is not frame.sender and m.partial and m.start_s < frame.end_s:
                            self._collide(frame, bytes(m.partial))
                    self._pending.remove(frame)
                    self._recent.append(frame)
                self._recent = [f for f in self._recent if f.end_s > now - RECENT_S]
                members = list(self._members)
                powered = self.powered()
            for frame in due if powered else ():
                data = frame.received()
                for m in members:
                    if m is not frame.sender:
                        try:
                            m.conn.send(data, socket.MSG_DONTWAIT)
                        except OSError:
                            pass   # full (an overrun) or gone (a board that reset)

    def close(self) -> None:
        LoopbackServer.close(self)
        with self._cond:
            for m in self._members:
                try:
                    m.conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._cond.notify()
