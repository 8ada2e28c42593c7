"""Client of the rig protocol (docs/rig-protocol.md): the virtual board's control server over TCP
(`Rig("127.0.0.1:PORT")`), or a real rig board speaking the same JSON lines over its USB serial
(`Rig("/dev/ttyACM1")`, or a pyserial URL such as `Rig("rfc2217://host:port")`)."""

from __future__ import annotations

import time

from host_tools.jsonlines import JsonLinesClient


class RigError(RuntimeError):
    pass


SLOW_OP_S = 90.0   # an op that programs the flash (factory) on a loaded machine: tens of seconds


class Rig(JsonLinesClient):
    error = RigError
    peer = "the rig"

    def factory(self) -> dict:
        """Erase the flash and program the firmware again (virtual board): the reply may take
        longer than the other ops' 10 s when the machine is busy."""
        return self.slow("factory")

    def slow(self, op: str, **fields) -> dict:
        """An op whose reply may take up to SLOW_OP_S."""
        saved = self.timeout_s
        self.timeout_s = SLOW_OP_S
        if self.sock is not None:
            self.sock.settimeout(SLOW_OP_S)
        try:
            return self.request(op, **fields)
        finally:
            self.timeout_s = saved
            if self.sock is not None:
                self.sock.settimeout(saved)

    def supported_ops(self) -> set[str]:
        """The ops this rig runs, as its `info` reply lists them (empty when it lists none)."""
        return set(self.request("info").get("ops") or ())

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
