"""The rig protocol of the virtual board: every request gets one reply, bad ones a clear error."""
import json
from pathlib import Path

from hypothesis import given, settings, strategies as st

from host_tools.sim import control
from host_tools.sim.world import World

BOARD = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-ac2.json").read_text())


class FakeBoard:
    serial_path = "/dev/null"

    def __init__(self):
        self.power = []

    def set_power(self, on):
        self.power.append(on)

    def firmware_state(self):
        return "running"


json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(control.OPS) + ["nope"]),
       st.dictionaries(st.sampled_from(["gun", "ev", "on", "state", "celsius", "cable_a", "since_ms", "max_a",
                                        "soc", "force_a", "battery_kwh", "phases"]), json_values, max_size=4))
def test_any_request_gets_exactly_one_reply_and_never_breaks_the_world(op, fields):
    world = World(BOARD)
    reply = control.handle_line(world, json.dumps({"op": op, **fields}), FakeBoard())
    assert isinstance(reply["ok"], bool)
    assert reply["ok"] or reply["error"]
    world.step()  # the physics still runs after whatever was accepted
    world.step()


@given(st.binary(max_size=40))
def test_garbage_lines_get_an_error(line):
    reply = control.handle_line(World(BOARD), line, FakeBoard())
    assert reply["ok"] is False or isinstance(json.loads(line), dict)


def test_a_bad_ev_parameter_changes_nothing():
    world = World(BOARD)
    b = FakeBoard()
    assert control.handle_line(world, '{"op": "plug", "gun": 1, "ev": {"max_a": 16}}', b)["ok"]
    reply = control.handle_line(world, '{"op": "ev", "gun": 1, "max_a": 20, "battery_kwh": 0}', b)
    assert not reply["ok"] and "battery_kwh must be above 0" in reply["error"]
    assert world.guns[0].ev.max_a == 16


def test_unplug_takes_the_ev_away():
    world = World(BOARD)
    b = FakeBoard()
    control.handle_line(world, '{"op": "plug", "gun": 2}', b)
    assert control.handle_line(world, '{"op": "unplug", "gun": 2}', b)["ok"]
    assert world.snapshot()[1]["soc"] is None
    reply = control.handle_line(world, '{"op": "unplug", "gun": 2}', b)
    assert reply["error"] == "unplug: gun 2 is not plugged"
    assert "has no EV" in control.handle_line(world, '{"op": "ev", "gun": 2, "max_a": 8}', b)["error"]


def test_hal_requests_out_of_range_are_refused():
    world = World(BOARD)
    assert world.hal_request("P 1 1500").startswith("!duty 1500")
    assert world.hal_request("K 1 x").startswith("!contactor must be 0 or 1")
    assert world.hal_request("S 3").startswith("!bad request")
    assert world.hal_request("B 1").startswith("!unknown request")


def test_reset_returns_every_meter_to_answering():
    world = World(BOARD)
    board = FakeBoard()
    board.uplink = None
    assert control.handle_line(world, '{"op": "meter", "gun": 1, "fault": "silent"}', board)["ok"]
    assert world.guns[0].meter_fault == "silent"
    assert control.handle_line(world, '{"op": "reset"}', board)["ok"]
    assert world.guns[0].meter_fault is None


def test_reset_takes_the_building_its_panels_and_its_meters_fault_away():
    """A test that left the sun shining or the building loaded must not lend it to the next
    (the grid HIL tests share one virtual board)."""
    board_file = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-ac2-grid.json").read_text())
    world = World(board_file)
    board = FakeBoard()
    board.uplink = None
    assert control.handle_line(world, '{"op": "grid", "building_a": [30, 1, 2], "pv_w": 2000, "fault": "silent"}',
                               board)["ok"]
    assert control.handle_line(world, '{"op": "reset"}', board)["ok"]
    assert world.building_a == [0.0, 0.0, 0.0] and world.pv_w == 0.0 and world.grid_meter_fault is None
    assert world.grid_reading()["power_w"] == 0.0
