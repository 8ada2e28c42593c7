"""Clients of the development central system: `CsmsClient` speaks its API (JSON lines over TCP),
`CsmsProcess` runs `evsectl csms` as a subprocess for tests."""

from __future__ import annotations

import collections
import json
import queue
import signal
import subprocess
import threading

from host_tools import installed_tool
from host_tools.jsonlines import JsonLinesClient


class CsmsError(RuntimeError):
    pass


class CsmsClient(JsonLinesClient):
    error = CsmsError
    peer = "the central system"

    def request(self, op: str, **fields) -> dict:
        """Send one op; return the reply, raising CsmsError when it says ok: false."""
        # An op that waits (wait, call) may take its timeout_s before it replies.
        waits_s = fields.get("timeout_s")
        if not isinstance(waits_s, (int, float)) or isinstance(waits_s, bool):
            waits_s = {"call": 30, "wait": 10}.get(op, 0)
        self.sock.settimeout(self.timeout_s + waits_s)
        return super().request(op, **fields)

    # helpers ------------------------------------------------------------------------------------

    def call(self, action: str, payload: dict | None = None, cp: str | None = None, timeout_s: float = 30) -> dict:
        """Send a CALL to a charge point; the reply has `payload`, or `call_error`."""
        return self.request("call", action=action, payload=payload or {}, cp=cp, timeout_s=timeout_s)

    def wait(self, action: str, cp: str | None = None, since_ms: float = 0, timeout_s: float = 10) -> dict:
        """The first `action` CALL a charge point sent after `since_ms`; waits up to `timeout_s`."""
        return self.request("wait", action=action, cp=cp, since_ms=since_ms, timeout_s=timeout_s)["frame"]

    def frames(self, cp: str | None = None, since_ms: float = 0) -> list[dict]:
        return self.request("frames", cp=cp, since_ms=since_ms)["frames"]

    def invalid_frames(self, cp: str | None = None, direction: str | None = "in", since_ms: float = 0) -> list[dict]:
        """Frames that are not valid OCPP 1.6; by default those the charge points sent."""
        return [f for f in self.frames(cp, since_ms) if not f["valid"] and direction in (None, f["dir"])]

    def transactions(self, cp: str | None = None) -> list[dict]:
        return self.request("transactions", cp=cp)["transactions"]

    def charge_points(self) -> list[dict]:
        return self.request("charge_points")["charge_points"]

    def now_ms(self) -> float:
        return self.request("info")["t_ms"]

    def answered(self, action: str, payload: dict, cp: str | None = None, since_ms: float = 0) -> bool:
        """Whether the charge point answered a CALL `action` this central system sent it after
        since_ms (CertificateSigned after a SignCertificate, say) with `payload`."""
        frames = self.frames(cp, since_ms)
        sent = {f["frame"][1] for f in frames if f["dir"] == "out" and f["frame"][0] == 2 and f["frame"][2] == action}
        return any(f["dir"] == "in" and f["frame"][0] == 3 and f["frame"][1] in sent and f["frame"][2] == payload
                   for f in frames)


def evsectl_path() -> str:
    found = installed_tool("evsectl")
    if not found:
        raise CsmsError("evsectl is not installed: run `make setup`")
    return found


class CsmsProcess:
    """`evsectl csms --port 0 --api-port 0 ARGS...` in a subprocess. `addresses` is its first line;
    `lines` keeps the last 5000 lines of its log; `write(line)` types a terminal command."""

    def __init__(self, *args: str, stdin_commands: bool = False, start_timeout_s: float = 15):
        command = [evsectl_path(), "csms", "--port", "0", "--api-port", "0", *args]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE if stdin_commands else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: collections.deque[str] = collections.deque(maxlen=5000)
        self.stderr: collections.deque[str] = collections.deque(maxlen=500)
        first: queue.Queue = queue.Queue()

        def drain_stdout():
            for n, line in enumerate(self.proc.stdout):
                if n == 0:
                    first.put(line)
                self.lines.append(line.rstrip("\n"))
            first.put("")

        threading.Thread(target=drain_stdout, daemon=True).start()
        stderr = self.proc.stderr
        assert stderr is not None
        threading.Thread(target=lambda: self.stderr.extend(stderr), daemon=True).start()
        try:
            line = first.get(timeout=start_timeout_s)
        except queue.Empty:
            line = ""
        try:
            self.addresses: dict = json.loads(line)
        except ValueError:
            self.stop()
            raise CsmsError(f"evsectl csms did not start: first line {line!r}; stderr: {''.join(self.stderr)[-2000:]}")
        self.ws, self.api, self.http = self.addresses["ws"], self.addresses["api"], self.addresses["http"]

    def client(self, timeout_s: float = 10.0) -> CsmsClient:
        return CsmsClient(self.api, timeout_s)

    def write(self, line: str) -> None:
        """Type a terminal command (start it with stdin_commands=True)."""
        assert self.proc.stdin is not None, "start CsmsProcess with stdin_commands=True to type commands"
        self.proc.stdin.write(line.rstrip("\n") + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout_s: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin:
            self.proc.stdin.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
