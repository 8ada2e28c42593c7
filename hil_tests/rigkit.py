"""What HIL tests use to drive and measure the rig and the device under test: waiting for boot,
the rig's event log, the DUT's serial console as a technician's terminal sees it and its raw
REPL, and where a labgrid target says the two serial ports are."""
from __future__ import annotations

import json
import time

import serial

from host_tools.rig import Rig, RigError


def wait_booted(rig: Rig, timeout_s: float = 15) -> None:
    """The firmware is up when every pilot rests at +12 V (a real rig sees the same)."""
    try:
        rig.wait_for(lambda guns: all(g["duty"] == 100.0 for g in guns), timeout_s, what="pilots at +12 V after boot")
    except RigError as e:
        tail = rig.raw({"op": "console", "bytes": 1500})  # the virtual board keeps what it printed
        raise RigError(f"{e}\nthe board printed:\n{tail.get('text', '(not available on this rig)')}") from None


class Events:
    """The rig's event log from a point in time, for latency measurements."""

    def __init__(self, rig: Rig):
        self.rig = rig

    def since(self, t_ms: float) -> list[dict]:
        return self.rig.events(since_ms=t_ms)["events"]

    def first(self, t_ms: float, gun: int, what: str, value=None, timeout_s: float = 10) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            for e in self.since(t_ms):
                if e["gun"] == gun and e["what"] == what and (value is None or e["value"] == value):
                    return e
            if time.monotonic() > deadline:
                tail = self.rig.raw({"op": "console", "bytes": 600})  # the virtual board keeps what it printed
                raise AssertionError(f"no event {what}={value} on gun {gun} within {timeout_s} s; "
                                     f"events: {self.since(t_ms)[-15:]}; the board printed: "
                                     f"{tail.get('text', '(not available on this rig)')!r}")
            time.sleep(0.05)


def now_ms(rig: Rig) -> float:
    """The rig's clock now, less one 0.1 ms step of its rounding: an op sent right after this call
    can log its event within the same step, and `events(since_ms)` takes only later ones."""
    return rig.snapshot()["t_ms"] - 0.1


def start_charging(rig: Rig, events: Events, gun: int = 1, timeout_s: float = 10, **ev) -> float:
    """Plug an EV and wait until its contactor closes; returns the time of the close."""
    t = now_ms(rig)
    rig.plug(gun=gun, ev={"max_a": 32, "phases": 3, "response_s": 1, **ev})
    return events.first(t, gun, "contactor", "closed", timeout_s=timeout_s)["t_ms"]


class Dut:
    """The DUT's serial console: a device path (the virtual board's pty, /dev/ttyACM0) or a
    pyserial URL (rfc2217://host:port, as a labgrid exporter serves a remote board's port)."""

    def __init__(self, port: str):
        self.port = port
        self.ser = serial.serial_for_url(port, 115200, timeout=0.05)
        self.ser.reset_input_buffer()
        self.seen = bytearray()
        self.read_pos = 0  # read_until has consumed self.seen up to here

    def flush(self) -> None:
        """Forget everything received so far: the next read_until sees only what comes next."""
        self.ser.reset_input_buffer()
        self.seen += self.ser.read(self.ser.in_waiting or 0)
        self.read_pos = len(self.seen)

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def read_until(self, marker: bytes, timeout_s: float = 5) -> bytes:
        """Everything up to and including `marker`; fails after timeout_s."""
        start = self.read_pos
        deadline = time.monotonic() + timeout_s
        while True:
            idx = self.seen.find(marker, start)
            if idx >= 0:
                self.read_pos = idx + len(marker)  # what came after the marker is still unread
                return bytes(self.seen[start: self.read_pos])
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
        self.read_pos = len(self.seen)
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

    def config_get(self, key: str) -> str:
        """A setting as the console shows it (`config get KEY` -> `KEY = VALUE`)."""
        for _ in range(3):
            for line in self.command(f"config get {key}"):
                name, sep, value = line.partition(" =")
                if sep and name == key:
                    return value.strip()
        raise AssertionError(f"{self.port} did not answer config get {key}")

    def exec(self, code: str, timeout_s: float = 10) -> str:
        """Run `code` at the raw REPL (as mpremote does; Ctrl-C stops the firmware first, with
        every contactor open) and return what it printed; a Python error raises with its text.
        The firmware stays stopped: a test restarts it (`dut.write(b"\\x04")` at the friendly
        REPL, or the rig's next power cycle)."""
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        transport = SerialTransport(self.port, exclusive=False, timeout=0.5)
        try:
            transport.enter_raw_repl(soft_reset=False, timeout_overall=timeout_s)
            out, err = transport.exec_raw(code, timeout=timeout_s)
            transport.exit_raw_repl()
        except TransportError as e:
            raise AssertionError(f"{self.port}: no raw REPL ({e})") from None
        finally:
            transport.close()
        if err:
            raise AssertionError(f"{self.port}: {code!r} raised: {err.decode(errors='replace').strip()}")
        return out.decode(errors="replace")

    def close(self) -> None:
        self.ser.close()


# ---- labgrid: a target's resources say where the DUT's console and the rig are ---------------------
LABGRID_TARGET = "evse-rig"


def labgrid_target(env):
    """The target `evse-rig` of a labgrid environment (or its only target, whatever its name)."""
    targets = list(env.config.get_targets())
    name = LABGRID_TARGET if LABGRID_TARGET in targets else targets[0] if len(targets) == 1 else None
    if name is None:
        raise AssertionError(f"{env.config_file}: no target named {LABGRID_TARGET!r} (it has {targets}); "
                             "see hil_tests/labgrid/README.md")
    return name, env.get_target(name)


def labgrid_serial_url(target, name: str) -> str:
    """What pyserial opens for the target's serial resource `name`: a local port's device path
    (RawSerialPort, USBSerialPort), or for a port a labgrid exporter serves (NetworkSerialPort,
    through a RemotePlace) an rfc2217:// or socket:// URL, through labgrid's SSH proxy if one is set."""
    from labgrid.exceptions import NoResourceFoundError
    from labgrid.resource import NetworkSerialPort, SerialPort
    from labgrid.util.proxy import proxymanager
    try:
        res = target.get_resource(NetworkSerialPort, name=name)
    except NoResourceFoundError:
        try:
            res = target.get_resource(SerialPort, name=name)
        except NoResourceFoundError:
            names = sorted(r.name or type(r).__name__ for r in target.resources)
            raise AssertionError(f"labgrid target {target.name!r} has no serial resource named {name!r} "
                                 f"(it has {names}); the HIL suite needs 'dut' and 'rig', see "
                                 "hil_tests/labgrid/README.md") from None
        return res.port
    host, port = proxymanager.get_host_and_port(res)
    if res.protocol == "rfc2217":
        return f"rfc2217://{host}:{port}?ign_set_control"  # ser2net does not do modem control lines
    if res.protocol == "raw":
        return f"socket://{host}:{port}"
    raise AssertionError(f"labgrid resource {name!r}: unknown protocol {res.protocol!r} (rfc2217 or raw)")


def labgrid_ports(env) -> dict:
    """{"serial": the DUT's console, "control": the rig, "board": the target's option 'board' or None}."""
    name, target = labgrid_target(env)
    try:
        board = env.config.get_target_option(name, "board")
    except KeyError:
        board = None
    return {"serial": labgrid_serial_url(target, "dut"), "control": labgrid_serial_url(target, "rig"),
            "board": board, "labgrid_target": name}
