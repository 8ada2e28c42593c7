"""The site's energy (issue 17, item 1): a grid meter at the connection point measures the
building and the guns together; the guns share the connection less the building's load less a
margin, per phase, updated at every reading, lowering first; a silent grid meter falls back to
grid_fallback_a within grid_stale_s, says so, and the guns get the room back when it answers.

sim-ac2-grid: two 32 A guns, a 40 A site, an SDM630 at the connection (UART 0, address 10)."""
import json
import time

import pytest

from conftest import rig_and_console, run_sim

EV = {"max_a": 32, "phases": 3, "response_s": 1}


@pytest.fixture(scope="module")
def grid_board(request, tmp_path_factory):
    yield from run_sim(request, "sim-ac2-grid", tmp_path_factory.mktemp("grid") / "flash")


@pytest.fixture
def site(grid_board):
    yield from rig_and_console(grid_board)


def grid_status(dut):
    # The JSON line: a gun's state change may print after it.
    return json.loads(next(line for line in dut.command("status --json") if line.startswith("{"))).get("grid")


def test_the_guns_share_what_the_building_leaves_of_the_connection_and_fall_back_when_the_meter_is_silent(site):
    rig, dut = site
    assert "grid_limit_a = 40" in dut.command("config set grid_limit_a 40")
    rig.plug(gun=1, ev=EV)
    rig.plug(gun=2, ev=EV)
    # No building load: 40 A less the 2 A margin, shared: 19 A each.
    rig.wait_for(lambda guns: [round(g["offered_a"]) for g in guns] == [19, 19], 20, what="19 A each")
    # The building takes 24 A on L1 and 10 on L2 and L3: L1 leaves 14 A, 7 A each.
    rig.request("grid", building_a=[24, 10, 10])
    rig.wait_for(lambda guns: [round(g["offered_a"]) for g in guns] == [7, 7], 20, what="7 A each")
    status = grid_status(dut)
    assert not status["fallback"] and abs(status["building_a"][0] - 24) < 1.5, status
    # The meter goes silent: after grid_stale_s (11 s) the guns share grid_fallback_a (6 A: one
    # gun pauses, the other takes the 6 A), and the console says why.
    rig.request("grid", fault="silent")
    rig.wait_for(lambda guns: sorted(round(g["offered_a"]) for g in guns) == [0, 6], 25, what="the 6 A fallback")
    assert grid_status(dut)["fallback"] is True
    assert any("grid meter: no reading for 11 s; the guns share 6 A per phase" in line for line in dut.command("log 20"))
    # It answers again, the building has gone home: 19 A each again.
    rig.request("grid", building_a=[0, 0, 0], fault=None)
    rig.wait_for(lambda guns: [round(g["offered_a"]) for g in guns] == [19, 19], 30, what="19 A each again")
    assert any("grid meter: it answers again" in line for line in dut.command("log 20"))
    assert "grid: connection 40 A, margin 2 A; building L1 0.0 L2 0.0 L3 0.0 A" in dut.command("status")


def test_the_grid_op_says_what_is_wrong_and_changes_nothing(site):
    rig, _ = site
    for fields, says in (({}, "give building_a"), ({"building_a": [1, 2]}, "three amps"),
                         ({"fault": "smoke"}, "fault must be null or one of"),
                         ({"pv_w": -5, "building_a": [1, 1, 1]}, "pv_w must be watts")):
        reply = rig.raw({"op": "grid", **fields})
        assert says in reply["error"], reply


def test_solar_mode_charges_from_the_export_starts_after_its_delay_and_pauses_after_its_stop_delay(site):
    """SmartEVSE's solar mode: the guns take what the site exports plus what they draw; a start
    waits solar_start_s of enough surplus, a shortfall holds the minimum for solar_stop_s."""
    rig, dut = site
    # A 16 A connection: the export itself (16 A a phase) is room the guns may use on top.
    for line in ("config set grid_limit_a 16", "config set solar_mode on", "config set solar_start_s 5",
                 "config set solar_stop_s 12"):
        assert " = " in dut.command(line)[-1], line
    rig.plug(gun=1, ev=EV)
    rig.plug(gun=2, ev=EV)
    rig.wait_for(lambda guns: all(g["state"] == "B1" for g in guns), 10, what="both waiting")
    time.sleep(2)
    assert [g["offered_a"] for g in rig.guns()] == [0, 0]                   # no sun: nothing
    assert grid_status(dut)["solar"]["state"] == "waiting"
    # 11 kW of sun: 16 A on each phase, 8 A for each gun, once it has lasted 5 s.
    rig.request("grid", pv_w=11040)
    sun = time.monotonic()
    rig.wait_for(lambda guns: [round(g["offered_a"]) for g in guns] == [8, 8], 30, what="8 A each from the sun")
    assert time.monotonic() - sun >= 5 - 1, "started before solar_start_s"
    assert any("solar: the surplus has sufficed for 5 s: charging" in line for line in dut.command("log 20"))
    status = grid_status(dut)
    assert status["solar"]["state"] == "charging" and abs(status["solar"]["surplus_w"] - 11040) < 600, status
    # A cloud: 2 kW is short of two 6 A sessions (or one): the minimum for 12 s, then a pause.
    # (Longer than the 5 s a running PWM offer holds after a change: the minimum is seen.)
    rig.request("grid", pv_w=2000)
    cloud = time.monotonic()
    rig.wait_for(lambda guns: sorted(round(g["offered_a"]) for g in guns) == [0, 6], 20, what="the minimum")
    assert any(line.startswith("solar: short of the minimum") for line in dut.command("status"))
    rig.wait_for(lambda guns: [g["offered_a"] for g in guns] == [0, 0], 30, what="the pause")
    assert time.monotonic() - cloud >= 12 - 1, "paused before solar_stop_s"
    assert any("solar: the guns pause until the surplus suffices" in line for line in dut.command("log 20"))


def test_a_30_a_building_step_on_one_phase_is_under_the_connection_within_the_evs_response_time(site):
    """Issue 17's done-when: the building steps up by 30 A on L1; the guns' offers fall within a
    round of the meters and a sharing step (and the 5 s a running PWM offer holds, when it changed
    just before), and the guns' draw on L1 plus the building is under the connection within the
    EVs' response time after that."""
    rig, dut = site
    assert "grid_limit_a = 40" in dut.command("config set grid_limit_a 40")
    rig.plug(gun=1, ev=EV)
    rig.plug(gun=2, ev=EV)
    t_plug = rig.snapshot()["t_ms"]
    rig.wait_for(lambda guns: [round(g["amps"]) for g in guns] == [19, 19], 20, what="19 A drawn by each")
    # A running PWM offer changes at most every 5 s (gun.PWM_CHANGE_MS, IEC 61851-1 A.5.1): a
    # step within 5 s of the last change waits for that too. Measured here: the grid's own path.
    last_duty = max(e["t_ms"] for e in rig.events(since_ms=t_plug)["events"] if e["what"] == "duty")
    while rig.snapshot()["t_ms"] < last_duty + 5100:
        time.sleep(0.05)
    t0 = rig.snapshot()["t_ms"]
    rig.request("grid", building_a=[30, 0, 0])
    lowered = {}
    while len(lowered) < 2:
        for e in rig.events(since_ms=t0)["events"]:
            if e["what"] == "duty" and e["gun"] not in lowered and (e["value"] is None or not 31.6 <= e["value"] < 100):
                lowered[e["gun"]] = e["t_ms"] - t0   # 31.6 % is 19 A; 100 %: paused
        assert rig.snapshot()["t_ms"] - t0 < 5000, f"the offers did not fall: {rig.events(since_ms=t0)['events']}"
        time.sleep(0.05)
    # The meters' round (the grid meter after the guns', then 1 s of rest), the sharing's step
    # (0.25 s), the gun's tick: the firmware's part.
    assert max(lowered.values()) <= 2500, lowered   # 1.0-1.5 s here; room for a loaded machine
    # The EVs follow within their response time (1 s here, IEC 61851-1 allows them 5 s).
    rig.wait_for(lambda guns: 30 + sum(g["phase_amps"][0] for g in guns) <= 40, 10, period_s=0.05,
                 what="L1 under the connection")
    under_ms = rig.snapshot()["t_ms"] - t0
    assert under_ms <= max(lowered.values()) + EV["response_s"] * 1000 + 500, (under_ms, lowered)
