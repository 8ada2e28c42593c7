"""HIL fixtures. By default the rig is the virtual board, started the way a user starts it
(`evsectl sim`); every test begins from a bare rig and a freshly powered board."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.rig import Rig

BIN = Path(sys.executable).parent


def pytest_addoption(parser):
    parser.addoption("--board", default="sim-ac2", help="board file name (virtual board: a sim-* board)")
    parser.addoption("--heap", default="192K", help="MicroPython heap of the virtual board")


@pytest.fixture(scope="session")
def board_name(request):
    return request.config.getoption("--board")


@pytest.fixture(scope="session")
def board(board_name):
    return json.loads((Path(__file__).resolve().parents[1] / "boards" / f"{board_name}.json").read_text())


@pytest.fixture(scope="session")
def virtual_board(request, board_name, tmp_path_factory):
    flash = tmp_path_factory.mktemp("flash")
    proc = subprocess.Popen([str(BIN / "evsectl"), "sim", "--board", board_name, "--heap",
                             request.config.getoption("--heap"), "--flash", str(flash)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail("evsectl sim printed nothing")
    info = json.loads(line)
    info["flash"] = flash
    yield info
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_booted(rig: Rig, timeout_s: float = 15) -> None:
    """The firmware is up when every pilot rests at +12 V (a real rig sees the same)."""
    rig.wait_for(lambda guns: all(g["duty"] == 100.0 for g in guns), timeout_s, what="pilots at +12 V after boot")


@pytest.fixture
def rig(virtual_board):
    r = Rig(virtual_board["control"])
    r.power(on=False)
    r.reset()
    r.power(on=True)
    wait_booted(r)
    yield r
    r.close()


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
                raise AssertionError(f"no event {what}={value} on gun {gun} within {timeout_s} s; "
                                     f"events: {self.since(t_ms)[-15:]}")
            time.sleep(0.05)


@pytest.fixture
def events(rig):
    return Events(rig)


def now_ms(rig: Rig) -> float:
    return rig.snapshot()["t_ms"]


def start_charging(rig: Rig, events: Events, gun: int = 1, **ev) -> float:
    """Plug an EV and wait until its contactor closes; returns the time of the close."""
    t = now_ms(rig)
    rig.plug(gun=gun, ev={"max_a": 32, "phases": 3, "response_s": 1, **ev})
    return events.first(t, gun, "contactor", "closed")["t_ms"]


@pytest.fixture
def dut(virtual_board, rig):
    from dut import Dut
    d = Dut(virtual_board["serial"])
    yield d
    d.close()
