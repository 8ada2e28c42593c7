"""JSON lines, the shape of the rig protocol (docs/rig-protocol.md) and of the central system's
API (docs/csms.md): each request one line `{"op": NAME, ...}`, each reply one line
`{"ok": true, ...}` or `{"ok": false, "error": "<what and why>"}`.

`JsonLinesClient` is the client side, over TCP (`host:port`) or a serial port (a device path or a
pyserial URL: a real rig board speaks the protocol over its USB serial); `Router` is the server
side's table of ops and the wording of the replies to requests it cannot run."""

from __future__ import annotations

import json
import socket
import time
from typing import Callable

SERIAL_BAUD = 115200  # a USB CDC port ignores it; a UART bridge runs at MicroPython's default
SERIAL_POLL_S = 0.1   # one read's wait; changing a port's timeout reconfigures it (an RFC 2217 round trip)


def is_tcp_address(address: str) -> bool:
    """`host:port` (TCP), not a serial device path (/dev/ttyACM0, COM3) or a pyserial URL
    (rfc2217://host:port, socket://host:port)."""
    if "://" in address or "/" in address or "\\" in address:
        return False
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit())


class JsonLinesClient:
    """One connection to a server. `client.plug(gun=1)` is `client.request("plug", gun=1)`.

    `address` is `host:port` for TCP, anything else is opened with pyserial (`serial_for_url`:
    a device path or a URL). On a serial port a board may print other lines too (MicroPython's
    banner after a reset, a message before its first reply): while waiting for a reply, lines
    that are not a JSON object with an `ok` field are skipped.

    A subclass names its `error` (raised for an ok: false reply, a closed connection, or no reply
    in time on a serial port) and its `peer` (how that message names the server)."""

    error: type[Exception] = RuntimeError
    peer = "the server"

    def __init__(self, address: str, timeout_s: float = 10.0):
        self.address = address
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.port = None  # a pyserial port when the server is on a serial line
        if is_tcp_address(address):
            host, port = address.rsplit(":", 1)
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
            self.rfile = self.sock.makefile("rb")
        else:
            self.port = self._open_serial(address)

    def _open_serial(self, address: str):
        import serial  # only a serial peer needs pyserial
        try:
            port = serial.serial_for_url(address, SERIAL_BAUD, timeout=SERIAL_POLL_S)
        except (serial.SerialException, OSError, ValueError) as e:
            raise self.error(f"cannot open {self.peer} at {address}: {e}; give host:port for TCP, or a serial "
                             "device path or pyserial URL (rfc2217://host:port)") from None
        port.reset_input_buffer()  # what it printed before we came (a banner) is no reply
        return port

    def request(self, op: str, **fields) -> dict:
        """Send one op; return the reply, raising `error` when it says ok: false."""
        reply = self.raw({"op": op, **fields})
        if not reply.get("ok"):
            raise self.error(reply.get("error", "no error text"))
        return reply

    def raw(self, request: dict | bytes | str) -> dict:
        """Send one line as it is (a dict as its JSON) and return the reply, whatever it says."""
        line = request if isinstance(request, (bytes, str)) else json.dumps(request)
        if isinstance(line, str):
            line = line.encode()
        line = line.rstrip(b"\n") + b"\n"
        if self.port is not None:
            self.port.write(line)
            self.port.flush()
            return self._serial_reply()
        assert self.sock is not None
        self.sock.sendall(line)
        reply = self.rfile.readline()
        if not reply:
            raise self.error(f"{self.peer} closed the connection")
        return json.loads(reply)

    def _serial_reply(self) -> dict:
        deadline = time.monotonic() + self.timeout_s
        skipped: list[bytes] = []
        pending = b""
        while True:
            pending += self.port.read_until(b"\n")
            if pending.endswith(b"\n"):
                line, pending = pending.strip(), b""
                try:
                    reply = json.loads(line)
                except ValueError:
                    reply = None
                if isinstance(reply, dict) and "ok" in reply:
                    return reply
                if line:
                    skipped.append(line)
            elif time.monotonic() > deadline:
                seen = b" | ".join(s[:80] for s in skipped[-3:] + ([pending] if pending else []))
                raise self.error(f"no reply from {self.peer} at {self.address} within {self.timeout_s} s"
                                 + (f"; it printed only: {seen!r}" if seen else "; it printed nothing"))

    def __getattr__(self, op: str):
        if op.startswith("_"):
            raise AttributeError(op)
        return lambda **fields: self.request(op, **fields)

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
        if self.sock is not None:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OpError(ValueError):
    """A request an op refuses; the message names the field and what is allowed."""


class Refused(Exception):
    """A request line that names no op to run; `reply` is the error reply to send."""

    def __init__(self, error: str):
        super().__init__(error)
        self.reply = {"ok": False, "error": error}


# A field of the wrong type that no check in an op caught: still the request's fault.
WRONG_TYPE_ERRORS = (TypeError, AttributeError, KeyError, ValueError)


class Router:
    """The ops of a server, routed by name: `@router.op("plug")` registers a handler.

    `parse(line)` gives the op's name, its handler and the request, or raises Refused. When the
    handler raises one of `request_errors`, `refusal(name, e)` is the reply; any other exception
    is a bug in the server and is left to the caller."""

    def __init__(self, example_op: str, docs: str, user_errors: tuple[type[Exception], ...]):
        """`example_op` shows what a request looks like; `docs` is where the ops are described;
        `user_errors` carry a message written for the user, sent as it is."""
        self.ops: dict[str, Callable] = {}
        self.example_op, self.docs, self.user_errors = example_op, docs, user_errors
        self.request_errors = user_errors + WRONG_TYPE_ERRORS

    def op(self, name: str):
        def register(fn):
            self.ops[name] = fn
            return fn
        return register

    def parse(self, line: bytes | str) -> tuple[str, Callable, dict]:
        try:
            req = json.loads(line)
        except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
            text = line.decode(errors="replace") if isinstance(line, bytes) else line
            why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
            raise Refused(f"request is not JSON ({why}): {text.strip()[:80]}") from None
        if not isinstance(req, dict):
            raise Refused(f"request must be a JSON object like {{\"op\": \"{self.example_op}\"}}")
        name = req.get("op")
        if not isinstance(name, str) or name not in self.ops:
            raise Refused(f"unknown op {name!r}; known ops: {', '.join(sorted(self.ops))}")
        return name, self.ops[name], req

    def refusal(self, name: str, e: Exception) -> dict:
        if isinstance(e, self.user_errors):
            return {"ok": False, "error": f"{name}: {e}"}
        return {"ok": False, "error": f"{name}: a field has the wrong type ({e}); see {self.docs}"}
