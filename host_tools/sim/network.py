"""The virtual board's uplink: a TCP relay between the firmware and the central system that a
test can cut or slow down (rig op `net`), the way a rural site loses its network.

While the link is down, nothing passes in either direction and nothing is closed on the board's
side: the firmware sees a half-open connection and must notice it by itself (ping timeout).
The central system's side is closed, as its server notices a dead peer sooner or later. When
the link comes back, the connections of the outage are reset and new ones pass again."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque


class Uplink:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.up = True
        self.delay_ms = 0
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, name="uplink-accept", daemon=True).start()

    def set(self, up: bool, delay_ms: int | None = None) -> None:
        with self._lock:
            if delay_ms is not None:
                self.delay_ms = delay_ms
            if up == self.up:
                return
            self.up = up
            links = list(self._links)
        for link in links:
            if up:
                if link.outage:
                    link.close()  # a connection from before or during the outage is stale
            else:
                link.cut()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            link = _Link(self, conn)
            with self._lock:
                self._links = [ln for ln in self._links if not ln.closed] + [link]
            link.start()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
        for link in list(self._links):
            link.close()


class _Link:
    """One firmware connection and its relay to the central system."""

    def __init__(self, uplink: Uplink, board_side: socket.socket):
        self.uplink = uplink
        self.board_side = board_side
        self.csms_side: socket.socket | None = None
        self.outage = False
        self.closed = False
        self._to_csms: deque = deque()
        self._to_board: deque = deque()
        self._wake = threading.Condition()

    def start(self) -> None:
        if not self.uplink.up:
            self.outage = True  # accepted but silent: the connection attempt times out
        else:
            try:
                self.csms_side = socket.create_connection(self.uplink.upstream, timeout=5)
                self.csms_side.settimeout(None)
            except OSError:
                self.close()  # the central system is not there: the board sees the connection drop
                return
        threading.Thread(target=self._read, args=(self.board_side, self._to_csms), daemon=True).start()
        if self.csms_side is not None:
            threading.Thread(target=self._read, args=(self.csms_side, self._to_board), daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self, sock: socket.socket, queue: deque) -> None:
        while not self.closed:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not self.outage:
                    self.close()
                return
            if self.outage:
                continue  # the link is down: bytes go nowhere
            with self._wake:
                queue.append((time.monotonic() + self.uplink.delay_ms / 1000, data))
                self._wake.notify()

    def _write(self) -> None:
        while not self.closed:
            with self._wake:
                self._wake.wait(0.05)
                ready = []
                now = time.monotonic()
                for queue, target in ((self._to_csms, self.csms_side), (self._to_board, self.board_side)):
                    while queue and queue[0][0] <= now:
                        ready.append((target, queue.popleft()[1]))
            for target, data in ready:
                if self.outage or target is None:
                    continue
                try:
                    target.sendall(data)
                except OSError:
                    self.close()
                    return

    def cut(self) -> None:
        self.outage = True
        with self._wake:
            self._to_csms.clear()
            self._to_board.clear()
        if self.csms_side is not None:
            try:
                self.csms_side.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        for sock in (self.board_side, self.csms_side):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay thread blocked in recv
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
