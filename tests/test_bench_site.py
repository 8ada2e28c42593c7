"""The site bench's upper bound (bench/site_day.py): per phase the room the building leaves the
guns, no more than the plugged EVs could draw there."""
from bench.site_day import MARGIN_A, VOLTS, upper_w


def snap(building, guns):
    return {"building_a": building, "boards": [{"board": 1, "guns": guns}]}


def test_the_bound_is_the_room_or_what_the_evs_could_draw_whichever_is_less():
    evs = {(1, 1): {"max_a": 32, "phases": 3}, (1, 2): {"max_a": 16, "phases": 1}}
    guns = [{"gun": 1, "state": "C2"}, {"gun": 2, "state": "C2"}]
    # L1: room 160 - 2 - 150 = 8 A; L2, L3: room 158 A, the three-phase EV draws 32 there.
    assert upper_w(snap([150, 0, 0], guns), evs, 160) == (8 + 32 + 32) * VOLTS
    # Plenty of room: the EVs' own most, the single-phase one on L1.
    assert upper_w(snap([0, 0, 0], guns), evs, 160) == (48 + 32 + 32) * VOLTS
    # An unplugged gun, or one nobody plugged in this day, wants nothing; a building over the
    # connection leaves no room, not less than none.
    guns[1]["state"] = "A"
    assert upper_w(snap([200, 0, 0], guns), evs, 160) == (0 + 32 + 32) * VOLTS
    assert upper_w(snap([0, 0, 0], [{"gun": 3, "state": "C2"}]), evs, 160) == 0
    assert MARGIN_A == 2.0
