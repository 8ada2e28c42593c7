"""The virtual board's SECC: the EV's communication controller of an MCU board whose board file has
a "secc" section, on that UART's loopback port (EVSE_SIM_UART<n>), speaking docs/secc-link.md from
the SECC's side. Each gun's EV line comes from the world's EV (World.ev_says, what the sim HAL's G
answers) every PERIOD_S and at once when the EV's phase changes; the charger's lines it takes go to
the world (World.tell_ev, what the sim HAL's H does). Written from the document, apart from the
firmware's evse/hal/secc.py, so each checks the other's reading of it.

`fault` (rig op `secc`) makes it misbehave: "silent" sends nothing, "garbage" sends only noise and
lines whose checksum is wrong, about as many bytes as its lines would be."""

from __future__ import annotations

import random
import re
import select
import socket
import time
from functools import reduce

from host_tools.sim.loopback import LoopbackServer

PERIOD_S = 0.1        # docs/secc-link.md: each gun's EV line at least every 100 ms
STEP_S = 0.02         # the model looks at the world and the line this often
LINE_MAX = 80         # docs/secc-link.md: "$" up to the checksum's last digit
FAULTS = ("silent", "garbage")
STATES = ("idle", "cable_check", "precharge", "charging", "stopping", "weld_check", "done", "faulted")
_NUMBER = rb"(\d{1,5}(?:\.\d{1,2})?)"
CHARGER_LINE = re.compile(rb"\$(CS,(\d{1,5}),([a-z_]+),(-|valid|warning|fault)" + (rb"," + _NUMBER) * 5
                          + rb")\*([0-9A-Fa-f]{2})\r?")


def checksum(body: bytes) -> int:
    """NMEA 0183's: the XOR of the bytes between "$" and "*"."""
    return reduce(lambda x, c: x ^ c, body, 0)


def seal(body: bytes) -> bytes:
    return b"$%s*%02X\r\n" % (body, checksum(body))


def _field(value: float, decimals: int) -> str:
    """A number as the link writes it: 0 to 99999.99."""
    return f"{min(max(value, 0.0), 99999.99):.{decimals}f}"


def ev_body(gun: int, says: tuple | None) -> bytes:
    """A gun's EV line, without "$" and checksum, from World.ev_says."""
    if says is None:
        return b"EV,%d,-" % gun
    phase, battery_v, max_v, target_v, target_a, max_a, soc = says
    numbers = (_field(battery_v, 1), _field(max_v, 1), _field(target_v, 1), _field(target_a, 2),
               _field(max_a, 2), _field(min(soc, 100.0), 1))
    return ("EV,%d,%s,%s" % (gun, phase, ",".join(numbers))).encode()


class Secc:
    """The SECC's end of one connection: feed() what the controller sent, due() the EV lines."""

    def __init__(self, world, counts: dict):
        self.world = world
        self.counts = counts           # the server's
        self.rx = bytearray()
        self.phase: dict[int, str | None] = {}
        self.sent_s: dict[int, float] = {}
        self.noise_s = 0.0

    def feed(self, data: bytes, reports: dict) -> None:
        self.rx += data
        *lines, rest = bytes(self.rx).split(b"\n")
        self.rx = bytearray(rest if len(rest) <= LINE_MAX + 1 else b"")
        for line in lines:
            self._charger_line(line, reports)

    def _charger_line(self, line: bytes, reports: dict) -> None:
        line = line[line.rfind(b"$"):] if b"$" in line else b""
        if not line:
            return   # noise between lines
        m = CHARGER_LINE.fullmatch(line)
        guns = self.world.guns
        if (m is None or len(line.rstrip(b"\r")) > LINE_MAX or int(m[10], 16) != checksum(m[1])
                or not 1 <= int(m[2]) <= len(guns) or m[3].decode() not in STATES):
            self.counts["rejected"] += 1
            return
        self.counts["received"] += 1
        gun, state, isolation = int(m[2]), m[3].decode(), m[4].decode()
        reports[gun] = {"state": state, "isolation": None if isolation == "-" else isolation,
                        **{k: float(m[5 + n]) for n, k in
                           enumerate(("present_v", "present_a", "max_v", "max_a", "max_kw"))}}
        with self.world.lock:
            self.world.tell_ev(guns[gun - 1], state, reports[gun]["isolation"])

    def due(self, now_s: float, fault: str | None) -> bytes:
        """The lines to send now: a gun's EV line PERIOD_S after its last one, or at once when
        its phase changed; nothing while the board has no power (the SECC has none either)."""
        world = self.world
        out = []
        with world.lock:
            if not world.powered or fault == "silent":
                return b""
            for g in world.guns:
                says = world.ev_says(g)
                phase = says[0] if says else None
                if phase == self.phase.get(g.number, "") and now_s - self.sent_s.get(g.number, -1e9) < PERIOD_S:
                    continue
                self.phase[g.number] = phase
                self.sent_s[g.number] = now_s
                out.append(ev_body(g.number, says))
        if fault == "garbage":
            return b"".join(_garbage(body) for body in out)
        self.counts["sent"] += len(out)
        return b"".join(seal(body) for body in out)


def _garbage(body: bytes) -> bytes:
    """A line with its checksum wrong, and noise without a "$": nothing a parser may take."""
    noise = bytes(c for c in random.randbytes(len(body)) if c != 0x24)
    return b"$%s*%02X\r\n%s\n" % (body, checksum(body) ^ 0x5A, noise)


class SeccServer(LoopbackServer):
    """The SECC on a loopback port; `address` goes to the firmware as EVSE_SIM_UART<n>."""

    name = "secc"

    def __init__(self, world, host: str = "127.0.0.1"):
        self.world = world
        self.fault: str | None = None
        # Lines it took and dropped, lines it sent; bytes each way (what the link carries).
        self.counts = {"received": 0, "rejected": 0, "sent": 0, "bytes_in": 0, "bytes_out": 0}
        self.reports: dict[int, dict] = {}   # gun -> what its charger line said last
        LoopbackServer.__init__(self, host)

    def state(self) -> dict:
        return {"fault": self.fault, **self.counts, "reports": {str(g): r for g, r in sorted(self.reports.items())}}

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        secc = Secc(self.world, self.counts)
        try:
            while not self._closed:
                ready, _, _ = select.select([conn], [], [], STEP_S)
                if ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    self.counts["bytes_in"] += len(data)
                    if self.world.powered:
                        secc.feed(data, self.reports)
                out = secc.due(time.monotonic(), self.fault)
                if out:
                    conn.sendall(out)
                    self.counts["bytes_out"] += len(out)
        except OSError:
            pass
        finally:
            conn.close()
