"""Drives host_tools/interop/csms.js: an OCPP 1.6J central system on ocpp-rpc (Node.js), with its
strict schema validation on, independent of `evsectl csms`. `make` installs its pinned package
(host_tools/interop/package-lock.json) with `npm ci`."""
import json
import subprocess
import threading
import time
from pathlib import Path

DIR = Path(__file__).resolve().parents[1] / "host_tools" / "interop"


class NodeCsms:
    def __init__(self, port: int = 0):
        if not (DIR / "node_modules" / "ocpp-rpc").is_dir():
            raise RuntimeError(f"{DIR}/node_modules lacks ocpp-rpc: run `make setup` (npm ci there)")
        self.proc = subprocess.Popen(["node", str(DIR / "csms.js"), str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[dict] = []       # every line it printed, with "t" (time.monotonic()) added
        self._cond = threading.Condition()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self.wait(lambda m: "listening" in m, 10)["listening"]

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            msg["t"] = time.monotonic()
            with self._cond:
                self.lines.append(msg)
                self._cond.notify_all()

    def wait(self, match, timeout_s: float, since: float = 0.0, what: str = "a line") -> dict:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for m in self.lines:
                    if m["t"] >= since and match(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"the ocpp-rpc central system: no {what} within {timeout_s} s; "
                                         f"it printed {self.lines[-10:]}")
                self._cond.wait(left)

    def wait_call(self, method: str, timeout_s: float, since: float = 0.0, **params) -> dict:
        """The first call `method` from the charge point since `since` whose params hold `params`:
        its line, {"in": method, "params": {...}, "answer": what the central system answered}."""
        return self.wait(lambda m: m.get("in") == method and all(m["params"].get(k) == v for k, v in params.items()),
                         timeout_s, since, what=f"{method} {params or ''}")

    def calls(self, method: str, since: float = 0.0) -> list[dict]:
        with self._cond:
            return [m["params"] for m in self.lines if m.get("in") == method and m["t"] >= since]

    def invalid(self) -> list[dict]:
        """Every strict-mode failure: a frame of either side that broke the OCPP 1.6 schemas."""
        with self._cond:
            return [m for m in self.lines if "invalid" in m]

    def command(self, timeout_s: float = 30, **cmd) -> dict:
        self._next += 1
        cmd["id"] = n = self._next
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = self.wait(lambda m: m.get("id") == n, timeout_s, what=f"answer to {cmd}")
        if "error" in reply:
            raise AssertionError(f"{cmd}: {reply['error']}")
        return reply["result"]

    def call(self, method: str, **params) -> dict:
        """A call to the charge point; its answer (validated by ocpp-rpc)."""
        return self.command(call=method, params=params)

    def now(self) -> float:
        return time.monotonic()

    def stop(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
