"""Client of the rig protocol (JSON lines over TCP): the virtual board's control server, or a
real rig behind the same protocol."""

from __future__ import annotations

import json
import socket
import time


class RigError(RuntimeError):
    pass


class Rig:
    def __init__(self, address: str, timeout_s: float = 10.0):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.rfile = self.sock.makefile("rb")

    def request(self, op: str, **fields) -> dict:
        """Send one op; return the reply, raising RigError when it says ok: false."""
        reply = self.raw({"op": op, **fields})
        if not reply.get("ok"):
            raise RigError(reply.get("error", "no error text"))
        return reply

    def raw(self, request) -> dict:
        line = request if isinstance(request, (bytes, str)) else json.dumps(request)
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line.rstrip(b"\n") + b"\n")
        reply = self.rfile.readline()
        if not reply:
            raise RigError("the rig closed the connection")
        return json.loads(reply)

    def __getattr__(self, op: str):
        if op.startswith("_"):
            raise AttributeError(op)
        return lambda **fields: self.request(op, **fields)

    def guns(self) -> list[dict]:
        return self.request("snapshot")["guns"]

    def gun(self, n: int) -> dict:
        return self.guns()[n - 1]

    def wait_for(self, predicate, timeout_s: float = 10.0, period_s: float = 0.05, what: str = "condition"):
        """Poll the snapshot until predicate(guns) is true; return the guns."""
        deadline = time.monotonic() + timeout_s
        while True:
            guns = self.guns()
            if predicate(guns):
                return guns
            if time.monotonic() > deadline:
                raise RigError(f"timed out after {timeout_s} s waiting for {what}; last snapshot: {guns}")
            time.sleep(period_s)

    def close(self) -> None:
        self.sock.close()
