"""The HIL suite's options for a real rig (--port, --rig-port, --lg-env, --csms-api/--csms-url),
proved against the real virtual board: pytest runs a few hil_tests in a subprocess with the
virtual board's pty as the DUT's console and its control server as the rig, either over TCP or
behind a serial line (a new pty bridged to the control server), the way a rig board speaks the
rig protocol over its USB serial. The serial rig, like a real one, does not have every op of the
virtual board: the tests that need the missing ones must be skipped, and the rest must pass.

Also: the rig client over a serial line (junk lines skipped, a silent rig named), and the labgrid
environment files in hil_tests/labgrid/ loaded with labgrid itself."""
from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial
import serial.rfc2217

from host_tools.jsonlines import is_tcp_address
from host_tools.rig import Rig, RigError
from host_tools.sim.supervisor import sim_process

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LABGRID = REPO / "hil_tests" / "labgrid"
BANNER = b"MicroPython v1.25.0 on 2025-04-15; Raspberry Pi Pico with RP2040\r\nType \"help()\" for more information.\r\n"

# A rig board without the virtual board's flash programmer, mains relay, weld injection and console tap.
HIDDEN_OPS = ("factory", "power", "weld", "console")

PASSING = "test_cable_rating_caps_the_offer"                      # plug + snapshot: every rig has them
NEEDS_WELD = "test_welded_contactor_is_reported_after_it_should_have_opened"
VIRTUAL_ONLY = "test_heap_is_as_small_as_the_board_s"
USES_DUT = "test_status_answers_while_charging_goes_on"           # the DUT's console through --port
OWN_BOARD = "test_sim_dc2"                                        # starts a virtual board sim-dc2 of its own
OCPP = "test_remote_start_is_rejected_on_a_busy_or_unknown_connector"  # needs the central system
HIL_FILES = ["hil_tests/test_pilot_hil.py", "hil_tests/test_console_hil.py", "hil_tests/test_dc_hil.py",
             "hil_tests/test_ocpp_core_hil.py"]


class LineServer:
    """The far end of a pty, as a board on USB serial: `answer(line)` gives the bytes to send
    back for each request line (None: say nothing)."""

    def __init__(self, answer):
        self.answer = answer
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # a USB CDC port: bytes as they are, no echo, no CR/LF games
        self.path = os.ttyname(self.slave)
        self.requests: list[bytes] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        pending = b""
        while not self.stopping:
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                pending += os.read(self.master, 4096)
            except OSError:
                return
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if not line.strip():
                    continue
                self.requests.append(line)
                out = self.answer(line)
                while out:
                    out = out[os.write(self.master, out):]

    def close(self):
        self.stopping = True
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


class SerialRig(LineServer):
    """A rig board on a serial line, played by the virtual board's control server over TCP. It
    leaves `hidden` ops out of its info reply and refuses them, and prints MicroPython's banner
    before its reply to info, as a board just reset does."""

    def __init__(self, control: str, hidden=HIDDEN_OPS):
        self.hidden = set(hidden)
        host, port = control.rsplit(":", 1)
        self.tcp = socket.create_connection((host, int(port)), timeout=30)
        self.replies = self.tcp.makefile("rb")
        super().__init__(self._relay)

    def _relay(self, line: bytes) -> bytes:
        try:
            op = json.loads(line).get("op")
        except (ValueError, AttributeError):
            op = None
        if op in self.hidden:
            return json.dumps({"ok": False, "error": f"unknown op {op!r}"}).encode() + b"\r\n"
        self.tcp.sendall(line + b"\n")
        reply = self.replies.readline()
        if op == "info":
            info = json.loads(reply)
            info["ops"] = [o for o in info["ops"] if o not in self.hidden]
            return BANNER + json.dumps(info).encode() + b"\r\n"
        return reply.rstrip(b"\n") + b"\r\n"

    def ops_asked(self) -> set:
        return {json.loads(line).get("op") for line in self.requests}

    def close(self):
        super().close()
        self.tcp.close()


class PtyPort(serial.Serial):
    """A pty opened as a serial port: it has no modem lines for an RFC 2217 client to read or set."""
    cts = dsr = ri = cd = False

    def _update_dtr_state(self):
        pass

    def _update_rts_state(self):
        pass


class Rfc2217Server:
    """A serial port served over RFC 2217 on 127.0.0.1, as ser2net serves a labgrid exporter's
    USB serial ports: one client at a time, for as many clients as come."""

    def __init__(self, device: str):
        self.port = PtyPort(device, 115200, timeout=0.05)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.tcp_port = self.listener.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            conn.settimeout(0.1)
            manager = serial.rfc2217.PortManager(self.port, SimpleNamespace(write=conn.sendall))
            done = threading.Event()

            def port_to_client():
                while not done.is_set():
                    try:
                        data = self.port.read(4096)
                        if data:
                            conn.sendall(b"".join(manager.escape(data)))
                    except (OSError, serial.SerialException):
                        return
            pump = threading.Thread(target=port_to_client, daemon=True)
            pump.start()
            while not self.stopping:
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.port.write(b"".join(manager.filter(data)))
            done.set()
            pump.join(1)
            conn.close()

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.listener.close()
        self.port.close()


@contextlib.contextmanager
def evsectl_sim(flash: Path, *extra: str):
    """`evsectl sim` as hil_tests/conftest.py's run_sim starts it; yields its addresses."""
    with sim_process("sim-ac2", flash, *extra) as info:
        yield info


@pytest.fixture(scope="module")
def virtual_board(tmp_path_factory):
    with evsectl_sim(tmp_path_factory.mktemp("flash")) as info:
        yield info


@pytest.fixture(scope="module")
def csms():
    from host_tools.csms.client import CsmsProcess
    with CsmsProcess() as proc:
        yield proc


@pytest.fixture
def serial_rig(virtual_board):
    bridge = SerialRig(virtual_board["control"])
    yield bridge
    bridge.close()


def hil(*args: str, timeout_s: float = 120, env: dict | None = None) -> tuple[dict, str]:
    """pytest on hil_tests in a subprocess; returns the counts of its summary and its output."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LG_") and k != "PYTEST_ADDOPTS"}, **(env or {})}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    out = r.stdout + r.stderr
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed|errors?|deselected)", out)}
    return counts, out


def subset(*names: str) -> list[str]:
    return [*HIL_FILES, "-k", " or ".join(names)]


# ---- the rig client on a serial line --------------------------------------------------------------
def test_tcp_addresses_and_serial_ports_are_told_apart():
    assert is_tcp_address("127.0.0.1:4000") and is_tcp_address("rig.lab:4000") and is_tcp_address("[::1]:4000")
    for serial_port in ("/dev/ttyACM1", "/dev/pts/3", "COM3", "rfc2217://rig.lab:4001", "socket://rig.lab:4001",
                        "rig.lab:port"):
        assert not is_tcp_address(serial_port), serial_port


def test_a_rig_on_serial_skips_the_banner_and_echoes_and_answers():
    reply = {"ok": True, "t_ms": 1.0, "board": "rig-pico", "ops": ["info", "snapshot"]}
    # After a reset: the banner, a REPL prompt, the request echoed, a stray line, then the reply.
    board = LineServer(lambda line: BANNER + b">>> \r\n" + line + b"\r\nrig: read\r\n" + json.dumps(reply).encode() + b"\r\n")
    try:
        with Rig(board.path, timeout_s=5) as rig:
            assert rig.supported_ops() == {"info", "snapshot"}
            assert rig.raw(b'{"op": "info"}')["board"] == "rig-pico"
        assert len(board.requests) == 2
    finally:
        board.close()


def test_a_silent_rig_on_serial_is_named_with_what_it_printed():
    board = LineServer(lambda line: b"Traceback (most recent call last):\r\nrig: no such pin")  # no newline at the end
    try:
        with Rig(board.path, timeout_s=0.5) as rig:
            with pytest.raises(RigError, match=r"no reply from the rig at /dev/.* within 0.5 s; it printed only: .*Traceback.*no such pin"):
                rig.snapshot()
    finally:
        board.close()


def test_a_rig_port_that_does_not_exist_is_named():
    with pytest.raises(RigError, match="cannot open the rig at /dev/no-such-rig"):
        Rig("/dev/no-such-rig")


# ---- the HIL suite on a "real" rig: the virtual board behind the options --------------------------
def test_port_and_serial_rig_port_run_the_suite_and_skip_what_the_rig_lacks(virtual_board, serial_rig):
    counts, out = hil(*subset(PASSING, USES_DUT, NEEDS_WELD, VIRTUAL_ONLY, OWN_BOARD, OCPP),
                      "--port", virtual_board["serial"], "--rig-port", serial_rig.path)
    assert counts.get("passed") == 2 and counts.get("skipped") == 4 and "failed" not in counts, out
    assert "does not list the op(s) weld in its info reply" in out, out
    assert "virtual board only (the unix port's heap" in out, out
    assert "starts a virtual board sim-dc2 of its own; this session runs on a real rig" in out, out
    assert "on a real rig the OCPP tests need a running central system" in out, out
    # Every request went through the serial line; the fallback of a rig without factory and power.
    asked = serial_rig.ops_asked()
    assert {"info", "reset", "snapshot", "plug", "events"} <= asked and not asked & {"factory", "power", "weld"}


def test_lg_env_takes_the_ports_from_the_labgrid_target(virtual_board, serial_rig, tmp_path):
    env_file = tmp_path / "env.yaml"
    env_file.write_text(f"""targets:
  evse-rig:
    options:
      board: sim-ac2
    resources:
      - RawSerialPort:
          name: dut
          port: {virtual_board["serial"]}
      - RawSerialPort:
          name: rig
          port: {serial_rig.path}
""")
    counts, out = hil(*subset(PASSING, NEEDS_WELD, OCPP), "--lg-env", str(env_file), "--csms-url", "ws://127.0.0.1:9/ocpp")
    assert counts.get("passed") == 1 and counts.get("skipped") == 2 and "failed" not in counts, out
    assert "does not list the op(s) weld" in out, out
    assert "--csms-url ws://127.0.0.1:9/ocpp without --csms-api" in out, out
    assert len(serial_rig.requests) > 5


def free_tcp_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def labgrid_client(lg_env: dict, *args: str) -> str:
    r = subprocess.run([str(BIN / "labgrid-client"), *args], env={**os.environ, **lg_env},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"labgrid-client {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


@pytest.mark.slow
def test_lg_env_remote_yaml_reaches_a_rig_exported_through_a_coordinator(virtual_board, serial_rig, tmp_path):
    """hil_tests/labgrid/README.md's flow: an exporter announces the two serial ports (served
    over RFC 2217, as ser2net does) to a coordinator; the CI job reserves a place by its tags,
    locks it, and runs the suite with remote.yaml."""
    servers = [Rfc2217Server(virtual_board["serial"]), Rfc2217Server(serial_rig.path)]
    coordinator = f"127.0.0.1:{free_tcp_port()}"
    (tmp_path / "exporter.yaml").write_text("evse-rig-1:\n" + "".join(
        f"  {name}:\n    cls: NetworkSerialPort\n    host: 127.0.0.1\n    port: {server.tcp_port}\n"
        for name, server in (("dut", servers[0]), ("rig", servers[1]))))
    procs = [subprocess.Popen([str(BIN / "labgrid-coordinator"), "-l", coordinator], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        lg = {"LG_COORDINATOR": coordinator}
        deadline = time.monotonic() + 15
        while True:  # the exporter gives up on a coordinator that is not listening yet
            try:
                socket.create_connection(("127.0.0.1", int(coordinator.rsplit(":", 1)[1])), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and procs[0].poll() is None, "labgrid-coordinator did not start"
                time.sleep(0.1)
        procs.append(subprocess.Popen([str(BIN / "labgrid-exporter"), "-c", coordinator, "-n", "hil-exporter",
                                       str(tmp_path / "exporter.yaml")], cwd=tmp_path,
                                      stdout=open(tmp_path / "exporter.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while "hil-exporter/evse-rig-1/NetworkSerialPort" not in subprocess.run(
                [str(BIN / "labgrid-client"), "resources"], env={**os.environ, **lg}, capture_output=True,
                text=True, timeout=30).stdout:
            assert time.monotonic() < deadline, (tmp_path / "exporter.log").read_text()
            time.sleep(0.3)
        labgrid_client(lg, "-p", "evse-rig-1", "create")
        labgrid_client(lg, "-p", "evse-rig-1", "add-match", "hil-exporter/evse-rig-1/NetworkSerialPort/*")
        labgrid_client(lg, "-p", "evse-rig-1", "set-tags", "rig=evse-ac2")
        token = re.search(r"LG_TOKEN=(\S+)", labgrid_client(lg, "reserve", "--wait", "--shell", "rig=evse-ac2")).group(1)
        lg.update(LG_TOKEN=token, LG_PLACE="+")
        labgrid_client(lg, "lock")
        counts, out = hil(*subset(PASSING, NEEDS_WELD), "--lg-env", str(LABGRID / "remote.yaml"),
                          "--board", "sim-ac2", env=lg)
        assert counts.get("passed") == 1 and counts.get("skipped") == 1 and "failed" not in counts, out
        assert "the rig at rfc2217://127.0.0.1:" in out and "does not list the op(s) weld" in out, out
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in servers:
            server.close()


def test_rig_port_over_tcp_runs_what_the_virtual_board_lists_and_the_ocpp_tests_skip_on_a_dut_without_csms(
        virtual_board, csms):
    counts, out = hil(*subset(PASSING, NEEDS_WELD, OCPP), "--port", virtual_board["serial"],
                      "--rig-port", virtual_board["control"], "--csms-api", csms.api)
    assert counts.get("passed") == 2 and counts.get("skipped") == 1 and "failed" not in counts, out
    assert f"configure it for {csms.ws} (evsectl config --port {virtual_board['serial']} set ocpp_url" in out, out


def test_csms_api_runs_the_ocpp_tests_on_a_dut_configured_for_that_central_system(csms, tmp_path):
    """The DUT configured for the central system (a virtual board started with --csms), behind a
    serial rig without power and factory: the OCPP fixture waits for the board's connection
    instead of a boot, and the tests of free charging skip."""
    with evsectl_sim(tmp_path / "flash", "--csms", csms.ws) as board:
        bridge = SerialRig(board["control"])
        try:
            counts, out = hil(*subset(OCPP, PASSING), "--port", board["serial"], "--rig-port", bridge.path,
                              "--csms-api", csms.api)
        finally:
            bridge.close()
    assert counts.get("passed") == 1 and counts.get("skipped") == 1 and "failed" not in counts, out
    assert "the DUT is configured for a central system (ocpp_url = ws://127.0.0.1:" in out, out


def test_port_without_rig_port_is_a_usage_error():
    counts, out = hil("hil_tests/test_pilot_hil.py", "--port", "/dev/ttyACM0", timeout_s=60)
    assert "--port and --rig-port go together" in out and not counts.get("passed"), out


# ---- labgrid's own loader on the environment and exporter files ----------------------------------
def test_local_env_gives_the_dut_and_rig_ports():
    sys.path.insert(0, str(REPO / "hil_tests"))
    try:
        from rigkit import labgrid_ports
    finally:
        sys.path.remove(str(REPO / "hil_tests"))
    from labgrid import Environment
    env = Environment(str(LABGRID / "local.yaml"))
    try:
        ports = labgrid_ports(env)
    finally:
        env.cleanup()
    assert ports["serial"].startswith("/dev/serial/by-id/") and ports["control"].startswith("/dev/serial/by-id/")
    assert ports["serial"] != ports["control"] and ports["board"] == "rp2040-pico"
    assert (REPO / "boards" / f"{ports['board']}.json").exists()


def test_remote_env_names_the_reserved_place(monkeypatch):
    from labgrid.config import Config
    from labgrid.factory import target_factory
    monkeypatch.setenv("LG_PLACE", "+")
    config = Config(str(LABGRID / "remote.yaml"))
    resources, drivers = target_factory.normalize_config(config.get_targets()["evse-rig"])
    assert resources == {"RemotePlace": {"+": ({},)}} and not drivers  # a RemotePlace is named after its place
    assert config.get_target_option("evse-rig", "board") == "rp2040-pico"


def test_exporter_config_exports_two_usb_serial_ports_that_labgrid_knows():
    import attr
    from labgrid.remote.config import ResourceConfig
    from labgrid.remote.exporter import exports
    from labgrid.resource.udev import USBSerialPort
    data = ResourceConfig(str(LABGRID / "exporter.yaml"), {"env": {}, "isolated": False, "hostname": "h", "name": "h"}).data
    group = data["evse-rig-1"]
    assert {k for k in group if k != "location"} == {"dut", "rig"}
    fields = {f.name for f in attr.fields(USBSerialPort)}
    for name in ("dut", "rig"):
        params = dict(group[name])
        assert params.pop("cls") == "USBSerialPort" and "USBSerialPort" in exports
        assert set(params) <= fields, set(params) - fields


@pytest.mark.parametrize("port, rig_port, message", [
    ("/dev/ttyNOPE0", "127.0.0.1:9", "ERROR: no serial port at /dev/ttyNOPE0 (--port, the DUT's console)"),
    ("/dev/null", "127.0.0.1:1", "ERROR: the rig at 127.0.0.1:1 (--rig-port) does not answer"),
    ("/dev/null", "/dev/ttyNOPE1", "ERROR: no serial port at /dev/ttyNOPE1 (--rig-port, the rig board)"),
])
def test_a_rig_that_is_not_there_stops_the_suite_at_once_with_one_line(port, rig_port, message):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "hil_tests/test_pilot_hil.py",
                           "--port", port, "--rig-port", rig_port], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 4 and message in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "passed" not in done.stdout


PARALLEL_TESTS = '''
import os, time, pytest

def record(what):
    start = time.time()
    time.sleep(0.3)
    with open(os.environ["SPANS"], "a") as f:
        f.write("%s %s %f %f\\n" % (what, os.environ["PYTEST_XDIST_WORKER"], start, time.time()))

@pytest.mark.parametrize("i", range(4))
def test_timed(i, latency):
    with latency():
        record("latency")

@pytest.mark.xdist_group("g")
@pytest.mark.parametrize("i", range(4))
def test_grouped(i):
    record("group")
'''


def test_make_tests_parallel_runs_keep_latency_tests_apart_and_groups_on_one_worker(tmp_path):
    """What make test's speed rests on: measured windows (`with latency():`) never overlap, across
    workers and processes (hil_tests/latency_lock.py), and an xdist_group runs on one worker (pytest-xdist
    --dist loadgroup, which a pytest upgrade can break without a word)."""
    (tmp_path / "test_parallel.py").write_text(PARALLEL_TESTS)
    spans = tmp_path / "spans"
    env = dict(os.environ, SPANS=str(spans), EVSE_LATENCY_LOCK=str(tmp_path / "lock"),
               PYTHONPATH=str(REPO / "hil_tests"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "latency_lock",
                           "-n", "3", "--dist", "loadgroup", "test_parallel.py"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in spans.read_text().splitlines()]
    timed = sorted((float(a), float(b)) for what, _, a, b in rows if what == "latency")
    assert len(timed) == 4 and all(end <= start for (_, end), (start, _) in zip(timed, timed[1:])), timed
    assert len({worker for what, worker, _, _ in rows if what == "group"}) == 1, rows
