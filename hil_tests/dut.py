"""The device under test seen through its serial port, as a technician's terminal sees it."""
from __future__ import annotations

import json
import time

import serial


class Dut:
    def __init__(self, port: str):
        self.port = port
        self.ser = serial.Serial(port, 115200, timeout=0.05)
        self.ser.reset_input_buffer()
        self.seen = bytearray()

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def read_until(self, marker: bytes, timeout_s: float = 5) -> bytes:
        """Everything up to and including `marker`; fails after timeout_s."""
        start = len(self.seen)
        deadline = time.monotonic() + timeout_s
        while True:
            idx = self.seen.find(marker, start)
            if idx >= 0:
                return bytes(self.seen[start: idx + len(marker)])
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.port}: no {marker!r} within {timeout_s} s; got {bytes(self.seen[start:])[-400:]!r}")
            self.seen += self.ser.read(4096)

    def command(self, line: str, timeout_s: float = 5) -> list[str]:
        """Send a console line; return the lines printed until the console goes quiet."""
        self.ser.reset_input_buffer()
        start = len(self.seen)
        self.ser.write(line.encode() + b"\r\n")
        deadline = time.monotonic() + timeout_s
        quiet_since = None
        while time.monotonic() < deadline:
            chunk = self.ser.read(4096)
            if chunk:
                self.seen += chunk
                quiet_since = None
            elif len(self.seen) > start:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.3:
                    break
        text = bytes(self.seen[start:]).decode(errors="replace")
        return [ln.strip() for ln in text.splitlines() if ln.strip()]

    def status(self) -> dict:
        for _ in range(3):
            for line in self.command("status --json"):
                if line.startswith("{"):
                    try:
                        return json.loads(line)
                    except ValueError:
                        pass  # a state-change line cut into it; ask again
        raise AssertionError(f"{self.port} did not answer status --json")

    def wait_status(self, predicate, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.status()
            if predicate(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"status never matched within {timeout_s} s: {s}")
            time.sleep(0.2)

    def close(self) -> None:
        self.ser.close()
