"""The site bench's upper bound (bench/site_day.py): per phase the room the building leaves the
guns, given the way that delivers the most power."""
from bench.site_day import VOLTS, upper_w


def snap(building, guns):
    return {"building_a": building, "boards": [{"board": 1, "guns": guns}]}


def test_the_bound_gives_the_tightest_phase_to_three_phase_evs_first():
    evs = {(1, 1): {"max_a": 32, "phases": 3}, (1, 2): {"max_a": 16, "phases": 1}}
    guns = [{"gun": 1, "state": "C2"}, {"gun": 2, "state": "C2"}]
    # L1: room 160 - 2 - 150 = 8 A: the three-phase EV's 8 A are 24 A of power; L2, L3 have room
    # but that EV draws alike on its three phases.
    assert upper_w(snap([150, 0, 0], guns), evs, 160) == 3 * 8 * VOLTS
    # Plenty of room: the EVs' own most, the single-phase one on L1.
    assert upper_w(snap([0, 0, 0], guns), evs, 160) == (3 * 32 + 16) * VOLTS
    # Room for the three-phase EV and 10 A more on L1: the single-phase EV takes those 10.
    assert upper_w(snap([116, 0, 0], guns), evs, 160) == (3 * 32 + 10) * VOLTS
    # An unplugged gun, or one nobody plugged in this day, wants nothing; a building over the
    # connection leaves no room, not less than none.
    guns[1]["state"] = "A"
    assert upper_w(snap([200, 0, 0], guns), evs, 160) == 0
    assert upper_w(snap([0, 0, 0], [{"gun": 3, "state": "C2"}]), evs, 160) == 0
