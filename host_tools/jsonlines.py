"""JSON lines over TCP, the shape of the rig protocol (docs/rig-protocol.md) and of the central
system's API (docs/csms.md): each request one line `{"op": NAME, ...}`, each reply one line
`{"ok": true, ...}` or `{"ok": false, "error": "<what and why>"}`.

`JsonLinesClient` is the client side; `Router` is the server side's table of ops and the wording
of the replies to requests it cannot run."""

from __future__ import annotations

import json
import socket
from typing import Callable


class JsonLinesClient:
    """One connection to a server. `client.plug(gun=1)` is `client.request("plug", gun=1)`.

    A subclass names its `error` (raised for an ok: false reply or a closed connection) and its
    `peer` (how that message names the server)."""

    error: type[Exception] = RuntimeError
    peer = "the server"

    def __init__(self, address: str, timeout_s: float = 10.0):
        host, port = address.rsplit(":", 1)
        self.timeout_s = timeout_s
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.rfile = self.sock.makefile("rb")

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
        self.sock.sendall(line.rstrip(b"\n") + b"\n")
        reply = self.rfile.readline()
        if not reply:
            raise self.error(f"{self.peer} closed the connection")
        return json.loads(reply)

    def __getattr__(self, op: str):
        if op.startswith("_"):
            raise AttributeError(op)
        return lambda **fields: self.request(op, **fields)

    def close(self) -> None:
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
