"""The contactor matrix on Modbus I/O modules (evse.matrix) against the virtual board's Waveshare
Modbus RTU IO 8CH (host_tools.sim.modbus.IoSlave, written from Waveshare's description): every
coil opened at start, a module closed onto a dispenser only once all its contacts read open, the
feedback from the auxiliary contacts, a silent module's contacts unknown, and the cabinet
(evse.dc.Cabinet) moving modules through it."""
import asyncio
import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import config, matrix, modbus
from evse.config import ConfigError
from host_tools.sim import modbus as sim
from host_tools.sim.world import World
from test_meters import Line
from virtual_clock import Clock

BOARD = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-dc2.json").read_text())


def board_with_matrix(addresses=(10,), dispensers=2):
    b = copy.deepcopy(BOARD)
    while len(b["guns"]) < dispensers:   # another dispenser, its meter at the next address
        gun = copy.deepcopy(b["guns"][-1])
        gun["meter"]["address"] += 1
        b["guns"].append(gun)
    b["cabinet"]["matrix"] = {"model": "waveshare_io8", "uart": 0, "addresses": list(addresses)}
    return b


class Rig:
    """sim-dc2's four modules and two dispensers, the matrix on one I/O module at address 10."""

    def __init__(self, addresses=(10,), dispensers=2):
        self.board = board_with_matrix(addresses, dispensers)
        self.world = World(self.board)
        buses = sim.buses_for(self.world, self.board)
        self.clock = Clock()
        self.line = Line(buses[0], self.clock)
        master = modbus.Master(self.line, 9600, timeout_ms=100, retries=0, ticks_ms=self.clock.ticks_ms,
                               sleep_ms=self.clock.sleep_ms)
        self.logged = []
        self.matrix = matrix.Matrix(master, list(addresses), 4, dispensers, self.clock.ticks_ms, self.logged.append)

    def step(self, n=1):
        for _ in range(n):
            asyncio.run(self.matrix.step())
            self.clock.ms += matrix.POLL_MS

    def feedback(self):
        return [self.matrix.module_feedback(m) for m in range(1, 5)]


def breaches(world):
    """The model's record of what the matrix must never do: a module closed onto two dispensers,
    or moved from one to another in one frame, and any move between two dispensers not via parked."""
    return [e for e in world.events if e["what"] in ("matrix_short", "matrix_swap")
            or (e["what"] == "module" and e["value"]["from"] and e["value"]["to"])]


def test_it_opens_every_coil_at_start_and_moves_modules_as_the_cabinet_asks():
    rig = Rig()
    rig.world.matrix.coils[3] = True        # a controller that rebooted left module 2 on dispenser 2
    rig.world.move_module(2, 2)
    assert rig.feedback() == [-1, -1, -1, -1]   # nothing read yet: unknown, not parked
    rig.matrix.set_module(2, 1)             # asked before the first turn: opens first all the same
    rig.step()
    assert rig.world.matrix.coils == [False] * 8 and rig.world.modules == [0, 0, 0, 0]
    assert rig.feedback() == [0, 0, 0, 0]
    rig.matrix.set_module(1, 1)
    rig.matrix.set_module(2, 2)
    rig.step()
    assert rig.world.modules == [1, 2, 0, 0] and rig.feedback() == [1, 2, 0, 0]
    assert not breaches(rig.world)
    assert rig.world.matrix.coils == [True, False, False, True, False, False, False, False]


def test_a_module_moved_straight_to_another_dispenser_opens_first_and_closes_a_turn_later():
    rig = Rig()
    rig.matrix.set_module(3, 1)
    rig.step(2)
    assert rig.world.modules[2] == 1
    events = len(rig.world.events)
    rig.matrix.set_module(3, 2)
    rig.step()
    assert rig.world.modules[2] == 0 and rig.feedback()[2] == 0   # break ...
    rig.step()
    assert rig.world.modules[2] == 2 and rig.feedback()[2] == 2   # ... before make
    moves = [e["value"] for e in rig.world.events[events:] if e["what"] == "module"]
    assert moves == [{"module": 3, "from": 1, "to": 0}, {"module": 3, "from": 0, "to": 2}]
    assert not breaches(rig.world)


@pytest.mark.parametrize("lost", ["the frame", "its answer"])
def test_a_lost_write_never_lets_the_next_one_swap_a_module_in_one_frame(lost):
    rig = Rig()
    rig.matrix.set_module(1, 1)
    rig.step(2)
    write = rig.line.write
    dropped = []

    def losing_the_first_open(buf):
        if buf[1] == 0x0F and not dropped:
            dropped.append(bytes(buf))
            if lost == "the frame":
                return len(buf)          # it never reached the device
            n = write(buf)               # it did, and its answer is lost
            rig.line.pending = None
            return n
        return write(buf)
    rig.line.write = losing_the_first_open
    rig.matrix.set_module(1, 2)
    rig.step(5)
    assert dropped and rig.world.modules[0] == 2 and not breaches(rig.world)


def test_a_welded_contact_keeps_the_module_off_the_other_dispenser():
    rig = Rig()
    rig.matrix.set_module(1, 1)
    rig.step(2)
    assert rig.world.modules[0] == 1
    rig.world.matrix.set = lambda first, bits: None   # the contactor no longer follows its coil
    rig.matrix.set_module(1, 2)
    for _ in range(5):
        rig.step()
        assert rig.matrix.coils[:2] == [False, False]   # module 1's coils: its weld kept, never dispenser 2
    assert rig.world.modules[0] == 1 and rig.feedback()[0] == 1


def test_a_silent_io_module_makes_its_contacts_unknown_then_is_rewritten_when_it_answers():
    rig = Rig()
    rig.matrix.set_module(4, 2)
    rig.step()
    rig.world.matrix.fault = "silent"
    steps = 0
    while rig.feedback()[3] != -1:
        rig.step()
        steps += 1
        assert steps < 30
    assert matrix.LOST_MS <= steps * (matrix.POLL_MS + 100) <= matrix.LOST_MS + 2 * (matrix.POLL_MS + 100)
    assert rig.logged[-1].startswith("matrix: I/O module 10 does not answer")
    rig.world.matrix.coils = [False] * 8      # it lost power meanwhile: every output dropped
    rig.world.move_module(4, 0)
    rig.world.matrix.fault = None
    rig.step()
    assert rig.feedback() == [0, 0, 0, 2] and rig.world.modules == [0, 0, 0, 2]
    assert rig.logged[-1] == "matrix: I/O module 10 answers again"


def test_six_dispensers_span_two_io_modules():
    rig = Rig(addresses=(10, 11), dispensers=3)   # 4 x 3 = 12 contactors: module 3's on both devices
    rig.matrix.set_module(3, 3)                   # contactor 8: device 11's first output
    rig.matrix.set_module(2, 1)
    rig.step()                                    # the first turn opens all and reads
    assert rig.world.modules == [0, 0, 0, 0]
    rig.step()
    assert rig.world.modules == [0, 1, 3, 0] and rig.feedback() == [0, 1, 3, 0]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 2)), max_size=30))
def test_whatever_the_cabinet_asks_no_module_ever_ties_two_dispensers_together(commands):
    rig = Rig()
    for module, gun in commands:
        rig.matrix.set_module(module, gun)
        rig.step()
        assert all(f in (0, 1, 2) for f in rig.feedback())
    rig.step(2)
    want = {}
    for module, gun in commands:
        want[module] = gun
    assert all(rig.world.modules[m - 1] == want.get(m, 0) for m in range(1, 5))
    assert not breaches(rig.world)


def test_the_cabinet_moves_modules_through_the_matrix():
    from evse.dc import Cabinet
    rig = Rig()

    class Hal:   # the rest of a DC board's HAL the cabinet asks: no matrix here
        safe_hooks = []

        def dc_power(self, gun):
            return 0.0

        def set_dc_power(self, gun, w):
            pass
    board = copy.deepcopy(rig.board)
    del board["cabinet"]["can"]   # the limits through the HAL: this test is about the modules' moves
    cab = Cabinet(Hal(), board, rig.logged.append, rig.matrix)
    for _ in range(30):
        cab.step(rig.clock.ms, [100000, 40000], [160000, 160000], [0, 0], 160000)
        rig.step()
    assert rig.world.modules.count(1) == 3 and rig.world.modules.count(2) == 1
    assert cab.held == [3, 1] and cab.limit_w == [120000, 40000]   # what its modules give


@pytest.mark.parametrize("change, error", [
    (lambda m: m.update(model="relay8"), "board cabinet.matrix.model 'relay8' unknown: use waveshare_io8"),
    (lambda m: m.update(addresses=[]), "board cabinet.matrix.addresses must be a list"),
    (lambda m: m.update(addresses=[0]), "board cabinet.matrix address must be the Modbus slave address 1..247"),
    (lambda m: m.update(baud=1234), "board cabinet.matrix baud 1234: use one of"),
    (lambda m: m.update(addresses=[2]), "board cabinet.matrix device 1: address 2 on UART 0 is guns[1].meter's too"),
    (lambda m: m.update(addresses=[10, 10]), "board cabinet.matrix.addresses lists 10 twice"),
    (lambda m: m.update(parity="even"), "board cabinet.matrix device 1: UART 0 runs at 9600 baud, parity none for guns[0].meter"),
])
def test_a_bad_matrix_entry_is_refused_with_a_clear_error(change, error):
    b = board_with_matrix()
    change(b["cabinet"]["matrix"])
    with pytest.raises(ConfigError) as e:
        config.check_board(b)
    assert str(e.value).startswith(error), str(e.value)


def test_too_few_outputs_for_the_matrix_are_refused():
    b = board_with_matrix()
    b["cabinet"]["modules"] = 5
    b["cabinet"]["can"]["addresses"] = [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="5 modules x 2 dispensers need 10 contactors: 1 waveshare_io8 of 8 outputs"):
        config.check_board(b)
    config.check_board(board_with_matrix())


def test_safe_opens_the_matrix_after_the_guns_contactors():
    rig = Rig()
    rig.matrix.set_module(1, 1)
    rig.step(2)
    from evse.hal import Base
    order = []

    class Hal(Base):
        def set_contactor(self, gun, closed):
            order.append(("contactor", gun, closed))

        def set_pilot(self, gun, duty):
            pass

        def set_dc_power(self, gun, w):
            pass

        def set_module(self, module, gun):
            order.append(("hal matrix", module, gun))
    hal = Hal(rig.board)
    write = rig.line.write
    rig.line.write = lambda buf: (order.append(("io", buf[0], buf[1])), write(buf))[1]
    hal.matrix_off = rig.matrix.all_open
    hal.safe()
    assert order == [("contactor", 1, False), ("contactor", 2, False), ("io", 10, 0x0F)]
    assert rig.world.modules == [0, 0, 0, 0]


def test_a_cabinet_on_an_ac_board_is_refused():
    b = json.loads((BOARD.get("__path__") or (Path(__file__).resolve().parents[1] / "boards" / "sim-ac2.json")).read_text())
    b["cabinet"] = {"matrix": {"model": "waveshare_io8", "uart": 0, "addresses": [10]}}
    with pytest.raises(ConfigError, match="board cabinet: power modules and their matrix are for a board of kind dc"):
        config.check_board(b)
