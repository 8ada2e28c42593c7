"""The site's energy (issue 17, item 1): a grid meter fed through an API instead of read on a
line. A local device or a technician writes the connection's current at the console (`grid`),
the central system by DataTransfer GridMeter; the guns share what the building leaves, as with a
Modbus meter, and fall back when the feed stops for grid_stale_s. Bad readings are refused with
the reason and change nothing.

The board: sim-ac2-grid with {"feed": "api"} for its grid meter (two 32 A guns, a 40 A site)."""
import json
import time
from pathlib import Path

import pytest

from conftest import rig_and_console, run_sim

EV = {"max_a": 32, "phases": 3, "response_s": 1}
BOARDS = Path(__file__).resolve().parents[1] / "boards"
NAME = "sim-ac2-fed"


@pytest.fixture(scope="module")
def fed_board(request, tmp_path_factory, csms_server):
    board = json.loads((BOARDS / "sim-ac2-grid.json").read_text())
    board.update(name=NAME, grid_meter={"feed": "api"},
                 description="sim-ac2-grid whose grid meter is fed through the console or OCPP")
    path = tmp_path_factory.mktemp("fed") / f"{NAME}.json"
    path.write_text(json.dumps(board))
    yield from run_sim(request, str(path), tmp_path_factory.mktemp("fed-flash"), "--csms", csms_server.ws)


@pytest.fixture
def site(fed_board):
    yield from rig_and_console(fed_board)


def grid_status(dut):
    # The JSON line: a gun's state change may print after it.
    return json.loads(next(line for line in dut.command("status --json") if line.startswith("{"))).get("grid")


def feed_until(rig, feed, building, done, timeout_s, what):
    """As a device on the site's connection would: every second, the building's current plus
    what the guns draw now on each site phase, written by `feed`, until done(guns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        guns = rig.guns()
        if done(guns):
            return guns
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s: {guns}")
        feed([round(b + sum(g["phase_amps"][p] for g in guns), 1) for p, b in enumerate(building)])
        time.sleep(1)


def plug_and_start(rig, dut, fallback_a=6):
    # The board is a charge point of the central system: a session needs a card. Until the
    # first reading the guns share grid_fallback_a (6 A): one charges, the other waits.
    for n, tag in ((1, "AA11"), (2, "BB22")):
        rig.plug(gun=n, ev=EV)
        rig.wait_for(lambda guns, n=n: guns[n - 1]["state"] == "B1", 10, what=f"gun {n} plugged")
        dut.command(f"start {n} {tag}")
    rig.wait_for(lambda guns: sorted(offers(guns)) == [0, fallback_a], 20, what=f"the {fallback_a} A of no reading yet")


def offers(guns):
    return [round(g["offered_a"]) for g in guns]


def test_a_fed_reading_at_the_console_shares_what_the_building_leaves_and_its_silence_falls_back(site):
    rig, dut = site
    assert "grid_limit_a = 40" in dut.command("config set grid_limit_a 40")
    assert "grid_stale_s = 5" in dut.command("config set grid_stale_s 5")   # its least: a shorter test
    assert grid_status(dut)["source"] == "feed"
    plug_and_start(rig, dut)

    def console(amps):
        reply = dut.command("grid " + " ".join(str(a) for a in amps))
        assert any(line.startswith("grid: connection") for line in reply), reply

    # The building takes 24 A on L1 and 10 on L2 and L3: L1 leaves 40 - 2 - 24 = 14 A, 7 A each.
    feed_until(rig, console, [24, 10, 10], lambda guns: offers(guns) == [7, 7], 30, "7 A each")
    status = grid_status(dut)
    assert not status["fallback"] and abs(status["building_a"][0] - 24) < 1.5, status
    assert any(line.startswith("grid (fed): connection 40 A, margin 2 A; building L1 2") for line in dut.command("status"))
    # The feed stops: after grid_stale_s (5 s) the guns share grid_fallback_a (6 A).
    rig.wait_for(lambda guns: sorted(offers(guns)) == [0, 6], 20, what="the 6 A fallback")
    assert grid_status(dut)["fallback"] is True
    assert any("grid meter: no reading for 5 s; the guns share 6 A per phase" in line for line in dut.command("log 20"))
    # It comes back with the building gone home: 19 A each again.
    # (within half an ampere: a running offer rises by 0.5 A at least, evse.gun RAISE_MIN_A)
    feed_until(rig, console, [0, 0, 0], lambda guns: all(abs(g["offered_a"] - 19) <= 0.55 for g in guns), 30,
               "19 A each again")
    assert any("grid meter: it answers again" in line for line in dut.command("log 20"))


def test_a_bad_reading_at_the_console_says_why_and_changes_nothing(site):
    rig, dut = site
    assert any(line.startswith("grid: connection 12.0 12.0 12.0 A taken") for line in dut.command("grid 12 12 12"))
    rig.wait_for(lambda guns: grid_status(dut)["building_a"] is not None, 5, period_s=0.3, what="the reading taken")
    before = grid_status(dut)
    for line, says in (("grid", "use: grid <L1_A>"), ("grid 10 ten 10", "'ten' is not a current in A"),
                       ("grid 10 10", "give the current of each of the site's 3 phase(s)"),
                       ("grid 10 10 10 10", "give the current of each of the site's 3 phase(s)"),
                       ("grid -10001 10 10", "a current is a number of A from -10000 (export) to 10000"),
                       ("grid 10 nan 10", "a current is a number of A from -10000 (export) to 10000"),
                       ("grid 10 10 99999", "a current is a number of A from -10000 (export) to 10000"),
                       ("grid 10 10 10 power sunny", "'sunny' is not a power in W"),
                       ("grid 10 10 10 power 1e9", "the power is a number of W from -10000000"),
                       ("grid power -300", "use: grid <L1_A>"),
                       ("grid 10 10 500", "L3 500 A is over 3 x the connection's 40 A")):
        reply = dut.command(line)
        assert any(says in r for r in reply), (line, reply)
    after = grid_status(dut)
    assert after["building_a"] == before["building_a"], (before, after)
    assert after["reading_age_ms"] >= before["reading_age_ms"], (before, after)   # no new reading taken
    # The virtual board's building is for a meter on a line: the rig says where a fed one's readings go.
    assert "write its readings at the console (grid)" in rig.raw({"op": "grid", "building_a": [1, 2, 3]})["error"]


def test_the_central_system_feeds_the_grid_meter_by_data_transfer(site, csms):
    rig, dut = site
    wait_online(csms)
    cp = NAME
    assert "grid_limit_a = 40" in dut.command("config set grid_limit_a 40")
    plug_and_start(rig, dut)

    def by_ocpp(amps):
        reply = csms.call("DataTransfer", {"vendorId": "evse", "messageId": "GridMeter",
                                           "data": json.dumps({"amps": amps})}, cp=cp)
        assert reply["payload"] == {"status": "Accepted"}, reply

    feed_until(rig, by_ocpp, [30, 5, 5], lambda guns: sorted(offers(guns)) == [0, 8], 30,
               "8 A on L1: one gun pauses, the other takes it")
    assert abs(grid_status(dut)["building_a"][0] - 30) < 1.5
    before = grid_status(dut)["building_a"]
    for data, says in (("not json", "syntax"), (json.dumps([1, 2, 3]), 'data must be {"amps"'),
                       (json.dumps({"amps": [1, 2]}), "site's 3 phase(s)"),
                       (json.dumps({"amps": [1, 2, "3"]}), "a current is a number"),
                       (json.dumps({"amps": [1, 2, 3], "volts": [230] * 3}), 'data must be {"amps"'),
                       (json.dumps({"amps": [1, 2, 3], "power_w": "lots"}), "the power is a number of W")):
        reply = csms.call("DataTransfer", {"vendorId": "evse", "messageId": "GridMeter", "data": data}, cp=cp)
        assert reply["payload"]["status"] == "Rejected" and says in reply["payload"]["data"], (data, reply)
    assert grid_status(dut)["building_a"] == before
    reply = csms.call("DataTransfer", {"vendorId": "evse", "messageId": "GridMeter",
                                       "data": json.dumps({"amps": [5, 5, 5], "power_w": -2500})}, cp=cp)
    assert reply["payload"] == {"status": "Accepted"}, reply
    assert "solar_mode = on" in dut.command("config set solar_mode on --yes")
    # The fed export, and what the guns drew as it came, is the surplus.
    rig.wait_for(lambda guns: ((grid_status(dut)["solar"] or {}).get("surplus_w") or 0) >= 2500, 10, period_s=0.3,
                 what="the fed export as the surplus")
    reply = csms.call("DataTransfer", {"vendorId": "evse", "messageId": "SolarPanel", "data": "{}"}, cp=cp)
    assert reply["payload"] == {"status": "UnknownMessageId"}, reply


def test_the_site_budget_is_read_and_set_as_configuration_keys_one_value_with_the_console(site, csms):
    rig, dut = site
    wait_online(csms)
    assert "grid_limit_a = 40" in dut.command("config set grid_limit_a 40")

    def keys(*names):
        reply = csms.call("GetConfiguration", {"key": list(names)}, cp=NAME)["payload"]
        return {k["key"]: k["value"] for k in reply["configurationKey"]}

    assert keys("SiteLimitA", "GridLimitA", "GridMarginA", "GridFallbackA", "GridStaleS") == {
        "SiteLimitA": "40", "GridLimitA": "40", "GridMarginA": "2", "GridFallbackA": "6", "GridStaleS": "11"}
    reply = csms.call("ChangeConfiguration", {"key": "GridFallbackA", "value": "10"}, cp=NAME)["payload"]
    assert reply == {"status": "Accepted"}
    assert "grid_fallback_a = 10" in dut.command("config get grid_fallback_a")
    # A fallback over the connection less its margin: refused, nothing changes.
    reply = csms.call("ChangeConfiguration", {"key": "GridFallbackA", "value": "39"}, cp=NAME)["payload"]
    assert reply == {"status": "Rejected"}
    assert keys("GridFallbackA") == {"GridFallbackA": "10"}
    assert any("ChangeConfiguration Rejected: GridFallbackA (grid_fallback_a): grid_fallback_a 39 is over" in line
               for line in dut.command("log 5")), dut.command("log 5")
    assert any("grid_fallback_a 39 is over grid_limit_a 40 less grid_margin_a 2" in line
               for line in dut.command("config set grid_fallback_a 39"))
    # With no reading, the guns share the new fallback: 10 A, 5 A each would pause both, so one takes it.
    plug_and_start(rig, dut, fallback_a=10)


def wait_online(csms):
    deadline = time.monotonic() + 30
    while not any(c["id"] == NAME and c["connected"] for c in csms.charge_points()):
        assert time.monotonic() < deadline, f"{NAME} did not connect: {csms.charge_points()}"
        time.sleep(0.2)
