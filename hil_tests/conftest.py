"""HIL fixtures. By default the rig is the virtual board, started the way a user starts it
(`evsectl sim`); every test begins from a bare rig and a freshly powered board.

The same tests run on a real rig: `--port` (the DUT's console) with `--rig-port` (the rig), or
`--lg-env ENV.yaml` (a labgrid target with the serial resources `dut` and `rig`). Then no virtual
board is started; tests marked `rig_ops(...)` skip when the rig's `info` does not list those ops,
tests marked `virtual_only(why)` and those that start a virtual board of their own skip.
hil_tests/labgrid/README.md tells the whole story."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from host_tools.rig import Rig
from host_tools.sim.supervisor import sim_process
from latency_lock import latency  # noqa: F401  (a fixture: measured windows never overlap)
from rigkit import Dut, Events, labgrid_ports, wait_booted

DEFAULT_BOARD = "sim-ac2"


def pytest_addoption(parser):
    group = parser.getgroup("evse-hil", "EVSE HIL: the board under test, its rig and the central system")
    group.addoption("--board", default=None,
                    help=f"board file name (default {DEFAULT_BOARD}, or the labgrid target's option 'board'; "
                         "virtual board: a sim-* board)")
    group.addoption("--power-cut-every-write", action="store_true",
                    help="test_power_cut_hil cuts the power at every block write of its session, not at a spread of them")
    group.addoption("--heap", default=None, help="MicroPython heap of the virtual board (default: the board's, in words)")
    group.addoption("--port", default=None,
                    help="the DUT's serial console on a real rig: a device path (/dev/ttyACM0) or a pyserial URL "
                         "(rfc2217://host:port); needs --rig-port; no virtual board is started")
    group.addoption("--rig-port", default=None,
                    help="the real rig: host:port (the rig protocol over TCP, as the virtual board's control server) "
                         "or a serial device path / pyserial URL (a rig board speaking it over USB serial); needs --port")
    group.addoption("--csms-api", default=None,
                    help="a running central system's API, host:port (the \"api\" evsectl csms prints): the OCPP tests "
                         "use it instead of starting evsectl csms")
    group.addoption("--csms-url", default=None,
                    help="that central system's ws:// URL as the board reaches it (default: the \"ws\" its API "
                         "reports); without --csms-api the OCPP tests skip")


def labgrid_env_file(config) -> str | None:
    """The labgrid environment the session runs on: --lg-env, or labgrid's LG_ENV."""
    return getattr(config.option, "lg_env", None) or os.environ.get("LG_ENV")


def real_rig_given(config) -> str | None:
    """How the session's real rig is given (for messages), or None when it runs on the virtual board."""
    if config.getoption("--port"):
        return f"--port {config.getoption('--port')} --rig-port {config.getoption('--rig-port')}"
    env_file = labgrid_env_file(config)
    return f"--lg-env {env_file}" if env_file else None


def pytest_configure(config):
    config.addinivalue_line("markers", "rig_ops(*ops): the test drives these rig ops; on a real rig whose info reply "
                                       "does not list them all, it is skipped")
    config.addinivalue_line("markers", "virtual_only(why): the test needs the virtual board itself; skipped on a real rig")
    config.addinivalue_line("markers", "meters: the test reads every gun's energy meter; skipped on a board without them")
    if bool(config.getoption("--port")) != bool(config.getoption("--rig-port")):
        raise pytest.UsageError("--port and --rig-port go together: the DUT's serial console and the rig that drives "
                                "it (host:port, or its serial port); give both, or neither for the virtual board")
    if config.getoption("--port") and not hasattr(config, "workerinput"):
        check_real_rig(config.getoption("--port"), config.getoption("--rig-port"))


def check_real_rig(port: str, rig_port: str) -> None:
    """Once, before any test: the DUT's console and the rig are there. Without them every test
    would fail on its own; one line says what is missing instead."""
    import os
    import socket
    if "://" not in port and not os.path.exists(port):
        raise pytest.UsageError(f"no serial port at {port} (--port, the DUT's console): is the board plugged in "
                                "and powered? (ls /dev/ttyACM* /dev/ttyUSB*)")
    from host_tools.jsonlines import is_tcp_address
    if is_tcp_address(rig_port):
        host, _, tcp = rig_port.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(tcp)), timeout=5).close()
        except OSError as e:
            raise pytest.UsageError(f"the rig at {rig_port} (--rig-port) does not answer: {e}; is its control "
                                    "server (evsectl sim, or the rig's exporter) running?") from None
    elif "://" not in rig_port and not os.path.exists(rig_port):
        raise pytest.UsageError(f"no serial port at {rig_port} (--rig-port, the rig board): is it plugged in?")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--power-cut-every-write"):   # about 15 s a cut, 255 cuts
        for item in items:
            if item.name.startswith("test_a_power_cut_at_any_write"):
                item.add_marker(pytest.mark.timeout(4 * 3600))
    name = config.getoption("--board")
    if name:
        board_file = Path(__file__).resolve().parents[1] / "boards" / f"{name}.json"
        guns = json.loads(board_file.read_text())["guns"] if board_file.is_file() else []
        if guns and not all(g.get("meter") for g in guns):
            skip = pytest.mark.skip(reason=f"board {name} has no energy meter on every gun (no \"meter\" in its board "
                                           "file); hil_tests/test_mcu_hil.py reads an RP2040 board's meters over its "
                                           "emulated UART")
            for item in items:
                if item.get_closest_marker("meters"):
                    item.add_marker(skip)
    given = real_rig_given(config)
    if not given:
        return
    for item in items:
        mark = item.get_closest_marker("virtual_only")
        if mark:
            why = mark.args[0] if mark.args else "it needs the virtual board"
            item.add_marker(pytest.mark.skip(reason=f"virtual board only ({why}); this session runs on a real rig ({given})"))


def heap_args(request):
    heap = request.config.getoption("--heap")
    return ["--heap", heap] if heap else []


def run_sim(request, board_name, flash, *extra):
    """`evsectl sim` as a user starts it; yields its addresses (plus the flash folder) once, and
    stops it when the session is over. On a real rig the test that wants it is skipped: it tests
    the firmware on a virtual board of its own, not the rig."""
    given = real_rig_given(request.config)
    if given:
        pytest.skip(f"starts a virtual board {board_name} of its own; this session runs on a real rig ({given})")
    with sim_process(board_name, flash, *heap_args(request), *extra) as info:
        info["flash"] = flash
        info["virtual"] = True
        yield info


@pytest.fixture(scope="session")
def real_rig(request):
    """The real rig's addresses, {"serial": the DUT's console, "control": the rig, "virtual": False},
    from --port/--rig-port or the labgrid target; None when the session runs on the virtual board."""
    config = request.config
    if config.getoption("--port"):
        return {"serial": config.getoption("--port"), "control": config.getoption("--rig-port"), "virtual": False,
                "board": None}
    if labgrid_env_file(config):
        return {**labgrid_ports(request.getfixturevalue("env")), "virtual": False}
    return None


@pytest.fixture(scope="session")
def board_name(request, real_rig):
    return request.config.getoption("--board") or (real_rig or {}).get("board") or DEFAULT_BOARD


@pytest.fixture(scope="session")
def board(board_name):
    return json.loads((Path(__file__).resolve().parents[1] / "boards" / f"{board_name}.json").read_text())


@pytest.fixture(scope="session")
def virtual_board(request, board_name, tmp_path_factory, real_rig):
    """The board under test: {"serial": its console, "control": its rig}. A virtual board started
    for the session, or on a real rig the ports given ("virtual": False, no "flash")."""
    if real_rig:
        yield real_rig
        return
    yield from run_sim(request, board_name, tmp_path_factory.mktemp("flash"))


@pytest.fixture(scope="session")
def real_rig_ops(real_rig):
    """The ops the real rig lists in its info reply (None on the virtual board: it has them all)."""
    if not real_rig:
        return None
    with Rig(real_rig["control"]) as r:
        return r.supported_ops()


@pytest.fixture(autouse=True)
def needs_rig_ops(request):
    """Skips a test marked rig_ops(...) on a real rig that does not list those ops."""
    wanted = {op for mark in request.node.iter_markers("rig_ops") for op in mark.args}
    if not wanted or not real_rig_given(request.config):
        return
    listed = request.getfixturevalue("real_rig_ops")
    missing = sorted(wanted - listed)
    if missing:
        rig = request.getfixturevalue("real_rig")["control"]
        pytest.skip(f"the rig at {rig} does not list the op(s) {', '.join(missing)} in its info reply "
                    f"(it lists {', '.join(sorted(listed)) or 'none'}); this test drives them")


def fresh_rig(address: str, now_ms=None) -> Rig:
    """The rig of a bare world and a factory-fresh board (no test inherits another's files),
    powered on and booted. `booted_ms`: the time on the clock `now_ms` as the power came on.

    A real rig without the `power` op (a mains relay) or `factory` (a flash programmer) does what
    it can: its `reset` gives a bare rig, and the board keeps running as it is (`rebooted` False,
    `booted_ms` the time of the reset); either way the test starts once every pilot rests at +12 V."""
    r = Rig(address)
    ops = r.supported_ops()
    r.rebooted = "power" in ops
    if r.rebooted:
        r.power(on=False)
    r.reset()
    if "factory" in ops:
        r.factory()
    r.booted_ms = now_ms() if now_ms else None
    if r.rebooted:
        r.power(on=True)
    wait_booted(r)
    return r


def rig_and_console(started: dict):
    """For a fixture of a board a module started itself (run_sim): its bare rig and freshly
    booted board, and its console; both closed afterwards."""
    from rigkit import Dut, wait_booted
    rig = fresh_rig(started["control"])
    wait_booted(rig)
    dut = Dut(started["serial"])
    yield rig, dut
    rig.close()
    dut.close()


@pytest.fixture(scope="session")
def dut_ocpp_url(real_rig):
    """On a real rig: the central system the DUT is configured for (its ocpp_url; "" for none),
    asked once on its console. The suite leaves the DUT's configuration as it is."""
    if not real_rig:
        return None
    dut = Dut(real_rig["serial"])
    try:
        return dut.config_get("ocpp_url")
    finally:
        dut.close()


@pytest.fixture
def rig(virtual_board, real_rig, request):
    if real_rig:
        url = request.getfixturevalue("dut_ocpp_url")
        if url:
            pytest.skip(f"the DUT is configured for a central system (ocpp_url = {url}): it charges only inside a "
                        "transaction, and this test needs free charging; run it in a session with ocpp_url empty "
                        f"(evsectl config --port {real_rig['serial']} set ocpp_url '')")
    r = fresh_rig(virtual_board["control"])
    yield r
    r.close()


@pytest.fixture
def events(rig):
    return Events(rig)


@pytest.fixture
def dut(virtual_board, rig):
    d = Dut(virtual_board["serial"])
    yield d
    d.close()


# ---- OCPP: the development central system and a virtual board connected to it -------------------
@pytest.fixture(scope="session")
def csms_server(request, tmp_path_factory, real_rig):
    """The central system: `evsectl csms` started for the session, or the running one at
    --csms-api (its ws URL from --csms-url, else the one its API reports)."""
    api, url = request.config.getoption("--csms-api"), request.config.getoption("--csms-url")
    if api:
        from host_tools.csms.client import CsmsClient
        with CsmsClient(api) as client:
            ws = url or client.request("info")["ws"]
        yield SimpleNamespace(api=api, ws=ws)
        return
    if url:
        pytest.skip(f"--csms-url {url} without --csms-api: the OCPP tests drive the central system through its API; "
                    "give --csms-api HOST:PORT too (the \"api\" address evsectl csms prints on its first line)")
    if real_rig:
        pytest.skip("on a real rig the OCPP tests need a running central system that the DUT is configured for: "
                    "give --csms-api HOST:PORT (and --csms-url if the DUT reaches it at another address)")
    from host_tools.csms.client import CsmsProcess
    proc = CsmsProcess("--files", str(tmp_path_factory.mktemp("csms-files")))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def ocpp_board(request, board_name, tmp_path_factory, csms_server, real_rig):
    """A board connected to the central system: a virtual board started with `--csms`, or on a
    real rig the board under test, which must be configured for it (its ocpp_url)."""
    if real_rig:
        url = request.getfixturevalue("dut_ocpp_url")
        if not url:
            pytest.skip(f"the DUT has no central system configured (ocpp_url is empty): configure it for "
                        f"{csms_server.ws} (evsectl config --port {real_rig['serial']} set ocpp_url {csms_server.ws}, "
                        "and ocpp_id) to run the OCPP tests")
        yield {**real_rig, "cp": None}
        return
    for info in run_sim(request, board_name, tmp_path_factory.mktemp("ocpp-flash"), "--csms", csms_server.ws):
        info["cp"] = board_name  # the charge point identity the factory configured
        yield info


@pytest.fixture
def csms(csms_server):
    from host_tools.csms.client import CsmsClient
    client = CsmsClient(csms_server.api)
    from host_tools.csms.model import DEFAULT_TAGS
    # Each test meets the central system as the last one found it, but for these settings.
    client.set(boot_status="Accepted", interval=300, refuse=[], tags=DEFAULT_TAGS)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def every_frame_valid(request):
    """In every test that talks to the central system, every frame the board sends validates
    against the official OCPP 1.6 schemas."""
    if "csms" not in request.fixturenames:
        yield
        return
    csms = request.getfixturevalue("csms")
    t = csms.now_ms()
    yield
    bad = csms.invalid_frames(since_ms=t)
    assert not bad, f"frames from the board that fail the OCPP 1.6 schemas: {bad[:3]}"


def wait_connected(csms, timeout_s: float = 30) -> dict:
    """A board that was not rebooted: wait until the central system has it connected."""
    deadline = time.monotonic() + timeout_s
    while True:
        connected = [cp for cp in csms.charge_points() if cp["connected"]]
        if connected:
            return connected[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no charge point connected to the central system within {timeout_s} s: "
                                 f"{csms.charge_points()}")
        time.sleep(0.2)


@pytest.fixture
def ocpp_rig(ocpp_board, csms):
    """A factory-fresh board connected to the central system, its boot accepted (on a real rig
    without `power`: the board as it runs, connected)."""
    r = fresh_rig(ocpp_board["control"], csms.now_ms)
    if r.rebooted:
        csms.wait("BootNotification", since_ms=r.booted_ms, timeout_s=20)
    else:
        wait_connected(csms)
    yield r
    r.close()


@pytest.fixture
def ocpp_dut(ocpp_board, ocpp_rig):
    d = Dut(ocpp_board["serial"])
    yield d
    d.close()


@pytest.fixture
def ocpp_events(ocpp_rig):
    return Events(ocpp_rig)
