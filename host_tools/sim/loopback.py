"""A server on a loopback TCP port that serves each connection in a thread of its own: the
virtual board's buses (RS-485, CAN), whose `address` goes to the firmware in its environment."""

from __future__ import annotations

import socket
import threading


class LoopbackServer:
    name = "loopback"

    def __init__(self, host: str = "127.0.0.1"):
        self._sock = socket.create_server((host, 0))
        self.address = "%s:%d" % (host, self._sock.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, name=self.name + "-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name=self.name, daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass
