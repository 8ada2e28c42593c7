"""Client of the rig protocol (docs/rig-protocol.md): the virtual board's control server over TCP
(`Rig("127.0.0.1:PORT")`), or a real rig board speaking the same JSON lines over its USB serial
(`Rig("/dev/ttyACM1")`, or a pyserial URL such as `Rig("rfc2217://host:port")`)."""

from __future__ import annotations

import time

from host_tools.jsonlines import JsonLinesClient


class RigError(RuntimeError):
    pass


class Rig(JsonLinesClient):
    error = RigError
    peer = "the rig"

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
