"""HIL fixtures. By default the rig is the virtual board, started the way a user starts it
(`evsectl sim`); every test begins from a bare rig and a freshly powered board."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.rig import Rig
from rigkit import Dut, Events, wait_booted

BIN = Path(sys.executable).parent


def pytest_addoption(parser):
    parser.addoption("--board", default="sim-ac2", help="board file name (virtual board: a sim-* board)")
    parser.addoption("--heap", default=None, help="MicroPython heap of the virtual board (default: the board's, in words)")


def heap_args(request):
    heap = request.config.getoption("--heap")
    return ["--heap", heap] if heap else []


def run_sim(request, board_name, flash, *extra):
    """`evsectl sim` as a user starts it; yields its addresses (plus the flash folder) once, and
    stops it when the session is over."""
    proc = subprocess.Popen([str(BIN / "evsectl"), "sim", "--board", board_name, *heap_args(request),
                             "--flash", str(flash), *extra], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail("evsectl sim %s printed nothing" % " ".join(extra))
    info = json.loads(line)
    info["flash"] = flash
    yield info
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def board_name(request):
    return request.config.getoption("--board")


@pytest.fixture(scope="session")
def board(board_name):
    return json.loads((Path(__file__).resolve().parents[1] / "boards" / f"{board_name}.json").read_text())


@pytest.fixture(scope="session")
def virtual_board(request, board_name, tmp_path_factory):
    yield from run_sim(request, board_name, tmp_path_factory.mktemp("flash"))


def fresh_rig(address: str, now_ms=None) -> Rig:
    """The rig of a bare world and a factory-fresh board (no test inherits another's files),
    powered on and booted. `booted_ms`: the time on the clock `now_ms` as the power came on."""
    r = Rig(address)
    r.power(on=False)
    r.reset()
    r.factory()
    r.booted_ms = now_ms() if now_ms else None
    r.power(on=True)
    wait_booted(r)
    return r


@pytest.fixture
def rig(virtual_board):
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
def csms_server(tmp_path_factory):
    from host_tools.csms.client import CsmsProcess
    proc = CsmsProcess("--files", str(tmp_path_factory.mktemp("csms-files")))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def ocpp_board(request, board_name, tmp_path_factory, csms_server):
    for info in run_sim(request, board_name, tmp_path_factory.mktemp("ocpp-flash"), "--csms", csms_server.ws):
        info["cp"] = board_name  # the charge point identity the factory configured
        yield info


@pytest.fixture
def csms(csms_server):
    from host_tools.csms.client import CsmsClient
    client = CsmsClient(csms_server.api)
    client.set(boot_status="Accepted", interval=300, refuse=[])
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


@pytest.fixture
def ocpp_rig(ocpp_board, csms):
    """A factory-fresh board connected to the central system, its boot accepted."""
    r = fresh_rig(ocpp_board["control"], csms.now_ms)
    csms.wait("BootNotification", since_ms=r.booted_ms, timeout_s=20)
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
