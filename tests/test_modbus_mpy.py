"""The Modbus master and the meter drivers under the real MicroPython, through the sim HAL's UART,
against the virtual board's RS-485 bus server fed by the world: the same path the firmware will
take on the virtual board, faults on the line included."""
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.sim import modbus as sim
from host_tools.sim.world import EV, World

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
CLIENT = REPO / "tests" / "modbus_mpy" / "meter_client.py"
BOARD = json.loads((REPO / "boards" / "sim-ac2.json").read_text())


class Client:
    """meter_client.py under MicroPython: one command in, one JSON answer out."""

    def __init__(self, uart0):
        env = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen", EVSE_SIM_UART0=uart0)
        self.proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=256K", str(CLIENT)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""

    def ask(self, command, timeout_s=10.0):
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.out:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.proc.kill()
                raise AssertionError(f"{command!r}: no answer; stderr: {self.proc.stderr.read().decode()}")
            self.out += chunk
        line, self.out = self.out.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        try:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


@pytest.fixture
def rig():
    world = World(BOARD)
    buses = sim.start_buses(world, BOARD)
    client = Client(buses[0].address)
    yield world, client
    client.close()
    for bus in buses.values():
        bus.close()


def test_micropython_reads_the_worlds_meters_over_the_sim_bus_and_survives_a_faulty_line(rig):
    world, client = rig
    g1 = world.guns[0]
    g1.ev, g1.amps, g1.energy_wh = EV(phases=3), 16.0, 1234.4

    kind, r1 = client.ask("read 1 sdm630")
    assert kind == "reading", r1
    assert r1["volts"] == [230.0] * 3 and r1["amps"] == [16.0] * 3
    assert r1["power_w"] == 11040.0 and r1["energy_wh"] == 1234 and r1["dc"] is False
    # What one poll of two blocks allocates, on this 64-bit host (half of it on a 32-bit MCU).
    assert r1["alloc_bytes"] < 5000
    kind, r2 = client.ask("read 2 sdm630")
    assert kind == "reading" and r2["amps"] == [0.0] * 3 and r2["energy_wh"] == 0

    expected = {"garbage": "FrameError", "bad_crc": "FrameError", "silent": "Timeout", "busy": "ExceptionResponse"}
    for fault, error in expected.items():
        world.set_meter_fault(1, fault)
        answer = client.ask("read 1 sdm630")
        assert answer[:2] == ["error", error] and "slave 1" in answer[2], (fault, answer)
        assert client.ask("read 2 sdm630")[0] == "reading"  # the other meter on the bus is fine
    world.set_meter_fault(1, None)
    g1.energy_wh = 2000.0
    kind, r1 = client.ask("read 1 sdm630")
    assert kind == "reading" and r1["energy_wh"] == 2000
    counters = client.ask("read 7 sdm630")[3]  # nobody at address 7
    assert counters["timeouts"] >= 4 and counters["bad_frames"] >= 4 and counters["refusals"] >= 2

    world.powered = False  # a site power cut takes the meters' supply too
    assert client.ask("read 1 sdm630")[:2] == ["error", "Timeout"]
    world.powered = True

    assert client.ask("uart 3") == ["error", "OSError", 'the virtual board has no UART 3: give a gun of the '
                                                        'board file a "meter" or an "imd" with "uart": 3']


def test_garbage_never_crashes_the_frame_checker_under_micropython(rig):
    _, client = rig
    kind, kinds = client.ask("fuzz 4000")
    assert kind == "fuzz" and not [k for k in kinds if k.startswith("crash")], kinds
    assert kinds.get("accepted", 0) == 0 and kinds["FrameError"] == 4000
