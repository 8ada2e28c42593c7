"""The site's energy (issue 17, item 3): one/three-phase switching on a gun whose board has the
second contactor. The gun charges on its L1 alone when three phases cannot give the minimum
current but one can, and on three again when three give the minimum and a margin; it switches
only with the EV paused and the main contactor open, after phase_switch_s, at most
phase_switch_max times a session.

sim-ac1-solar: one 32 A gun with a phase contactor, a 25 A connection, an SDM630 grid meter and
solar panels behind it."""
import json
import time

import pytest

from conftest import rig_and_console, run_sim
from rigkit import Events, now_ms

EV = {"max_a": 32, "phases": 3, "response_s": 1}


@pytest.fixture(scope="module")
def wallbox_board(request, tmp_path_factory):
    yield from run_sim(request, "sim-ac1-solar", tmp_path_factory.mktemp("phases") / "flash")


@pytest.fixture
def wallbox(wallbox_board):
    yield from rig_and_console(wallbox_board)


def configure(rig, dut, switches):
    """A 25 A connection, switches after 10 s (the least), at most `switches` a session; the
    rig's events and the time from which the test's count."""
    for key, value in (("grid_limit_a", 25), ("phase_switch_s", 10), ("phase_switch_max", switches)):
        assert f"{key} = {value}" in dut.command(f"config set {key} {value} --yes")
    return Events(rig), now_ms(rig)


def gun_status(dut):
    return json.loads(next(line for line in dut.command("status --json") if line.startswith("{")))["guns"][0]


def switched_safely(events, since):
    """Every phase contactor switch came with the main contacts open, and none under load."""
    evs = events.since(since)
    assert not [e for e in evs if e["what"] == "phases_under_load"], evs
    return [e["value"] for e in evs if e["what"] == "phases"]


def on(phases, amps):
    return lambda guns: guns[0].get("phases_on") == phases and guns[0]["contactor"] and round(guns[0]["amps"]) == amps


@pytest.mark.slow
def test_the_house_on_l2_and_l3_moves_the_ev_to_l1_and_back_when_it_leaves(wallbox):
    rig, dut = wallbox
    events, t0 = configure(rig, dut, switches=4)
    rig.plug(gun=1, ev=EV)
    rig.wait_for(on(3, 23), 20, what="23 A on three phases (25 A less the 2 A margin)")
    # The house takes 19 A on L2 and L3 and 5 on L1: three phases would leave 4 A, L1 alone 18 A.
    rig.request("grid", building_a=[5, 19, 19])
    start = time.monotonic()
    rig.wait_for(on(1, 18), 45, what="18 A on L1 alone")
    took = time.monotonic() - start
    assert took >= 10, took     # phase_switch_s: the budget called for one phase that long first
    line = gun_status(dut)["phases"]
    assert line == {"on": 1, "switching_to": None, "switches": 1}, line
    assert any("gun 1: 1 phase; 1 of 4 switches this session" in s for s in dut.command("status"))
    # The house leaves: three phases give 23 A again, after phase_switch_s.
    rig.request("grid", building_a=[0, 0, 0])
    rig.wait_for(on(3, 23), 45, what="23 A on three phases again")
    assert switched_safely(events, t0) == [1, 3]
    log = "\n".join(dut.command("log 40"))
    assert "gun 1: switching to 1 phase" in log and "gun 1: phase contactor: 3 phases" in log, log


@pytest.mark.slow
def test_a_session_switches_at_most_phase_switch_max_times_and_a_new_ev_starts_on_three(wallbox):
    rig, dut = wallbox
    events, t0 = configure(rig, dut, switches=1)
    rig.request("grid", building_a=[5, 19, 19])
    rig.plug(gun=1, ev=EV)
    rig.wait_for(on(1, 18), 45, what="18 A on L1 alone")
    rig.request("grid", building_a=[0, 0, 0])
    time.sleep(16)   # phase_switch_s and more: the one switch of the session is used up
    guns = rig.guns()
    assert guns[0]["phases_on"] == 1 and guns[0]["contactor"], guns
    assert gun_status(dut)["phases"]["switches"] == 1
    rig.unplug(gun=1)
    rig.wait_for(lambda guns: guns[0].get("phases_on") == 3, 10, what="back on three once unplugged")
    rig.plug(gun=1, ev=EV)
    rig.wait_for(on(3, 23), 20, what="the next EV on three phases")
    assert switched_safely(events, t0) == [1, 3]


def test_bad_phase_settings_are_refused_and_change_nothing(wallbox):
    _, dut = wallbox
    before = dut.config_get("phase_switch_s")
    reply = "\n".join(dut.command("config set phase_switch_s 5 --yes"))
    assert "phase_switch_s = 5 is out of range: allowed 10..3600 s" in reply, reply
    reply = "\n".join(dut.command("config set phase_switch_max many --yes"))
    assert "phase_switch_max must be a whole number" in reply, reply
    assert dut.config_get("phase_switch_s") == before
