"""Several controllers, one connection (issue 17, item 2; docs/site.md): virtual sites of two-gun
controllers on one simulated RS-485 site bus behind one grid connection, its meter at the
coordinator (controller 1). What the site op measures is the connection: the building plus every
gun's current, per phase, sampled every 100 ms, with the seconds over the limit counted.

site-ac3: 3 controllers, 6 guns, a 63 A connection (margin 2 A), site_fallback_a 36 (12 A for
each controller). site-ac8x2: 8 controllers, 16 guns, 160 A."""
import json
import time

import pytest

from conftest import run_sim
from host_tools.rig import Rig

# A minute or two each (`slow`: handed out first); the three on site-ac3 share its boards.
pytestmark = [pytest.mark.virtual_only("a site of virtual boards on one simulated line"), pytest.mark.slow]
ON_SITE3 = pytest.mark.xdist_group("site-ac3")

EV = {"max_a": 32, "phases": 3, "response_s": 1}


def offers(rig):
    return [round(g["offered_a"], 1) for b in rig.site()["boards"] for g in b["guns"]]


def wait(rig, predicate, timeout_s, what):
    """Polls the site op until predicate(snapshot); returns it and the seconds it took."""
    start = time.monotonic()
    while True:
        snap = rig.site()
        if predicate(snap):
            return snap, time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; offers "
                                 f"{[[g['offered_a'] for g in b['guns']] for b in snap['boards']]}, total "
                                 f"{snap['total_a']}, building {snap['building_a']}")
        time.sleep(0.2)


def guns(snap):
    return [g for b in snap["boards"] for g in b["guns"]]


def each_near(amps, tolerance=0.6):
    return lambda snap: all(abs(g["offered_a"] - amps) <= tolerance for g in guns(snap))


def each_draws(amps, tolerance=0.6):
    return lambda snap: all(abs(g["amps"] - amps) <= tolerance for g in guns(snap))


def steady(rig, amps, timeout_s, what):
    """Every EV draws `amps`, and every offer has held A.5.1's 5 s: the next change may come at once."""
    wait(rig, each_draws(amps), timeout_s, what)
    time.sleep(5.5)


@pytest.fixture(scope="module")
def site3(request, tmp_path_factory):
    yield from run_sim(request, "site-ac3", tmp_path_factory.mktemp("site3"))


@pytest.fixture
def rig3(site3):
    r = Rig(site3["control"])
    r.reset()
    r.building(building_a=[10, 10, 10])
    yield r
    r.close()


def plug_all(rig, controllers):
    for k in range(1, controllers + 1):
        for gun in (1, 2):
            rig.plug(board=k, gun=gun, ev=EV)


@ON_SITE3
def test_the_site_shares_one_connection_and_follows_a_30_a_step_of_the_building(rig3, latency):
    plug_all(rig3, 3)
    # 63 A less the 2 A margin less the building's 10: 51 A for six guns, 8.5 A each.
    steady(rig3, 8.5, 60, "8.5 A on each of the six guns")
    rig3.site(clear=True)
    with latency():
        rig3.building(building_a=[40, 10, 10])   # +30 A on L1: 21 A left there, three guns pause
        snap, took_s = wait(rig3, lambda s: s["total_a"][0] <= 63, 20, "L1 back under the connection")
    settled, _ = wait(rig3, lambda s: sorted(round(g["offered_a"]) for g in guns(s)) == [0, 0, 0, 7, 7, 7], 20,
                      "three guns at 7 A, three paused")
    # Over the limit only until the EVs followed: the grid meter's second, a site cycle, a node's
    # sharing step, the EVs' 1 s: 2-4 s measured alone, 2.0-4.6 s with the machine loaded far
    # beyond make test (three busy loops beside the site, on two cores, eight runs).
    print("L1 under the connection %.1f s after the step" % took_s)
    assert took_s < 8, took_s
    rig3.site(clear=True)
    time.sleep(10)
    snap = rig3.site()
    # Once the EVs followed, never over (1 A for a second was seen under load while a node's
    # arrival, read in whole seconds, made another gun the one to pause from read to read).
    assert snap["violations"]["seconds_over"] == 0, snap["violations"]
    assert snap["line"]["collisions"] == 0, snap["line"]


@ON_SITE3
def test_a_silent_grid_meter_drops_the_site_to_its_fallback(rig3):
    plug_all(rig3, 3)
    wait(rig3, each_near(8.5), 60, "8.5 A each")
    rig3.grid(board=1, fault="silent")
    # grid_stale_s (11 s): the whole site shares grid_fallback_a, 6 A per phase: one gun.
    wait(rig3, lambda s: sorted(round(g["offered_a"]) for g in guns(s)) == [0, 0, 0, 0, 0, 6], 40,
         "one gun at the 6 A fallback")
    rig3.grid(board=1, fault=None)
    wait(rig3, each_near(8.5), 60, "8.5 A each again")


@ON_SITE3
def test_nodes_without_their_coordinator_fall_back_and_its_reboot_overshoots_nothing(rig3):
    plug_all(rig3, 3)
    wait(rig3, each_near(8.5), 60, "8.5 A each")
    rig3.site(clear=True)
    rig3.power(board=1, on=False)
    # site_lost_s (10 s): each node shares its 12 A, 6 A a gun; the coordinator's guns are off.
    wait(rig3, lambda s: [round(g["offered_a"]) for g in guns(s)] == [0, 0, 6, 6, 6, 6], 40,
         "the nodes on their fallback")
    rig3.power(board=1, on=True)
    wait(rig3, each_near(8.5), 90, "8.5 A each after the coordinator's reboot")
    snap = rig3.site()
    assert snap["violations"]["seconds_over"] == 0, snap["violations"]


@pytest.fixture(scope="module")
def site8(request, tmp_path_factory):
    yield from run_sim(request, "site-ac8x2", tmp_path_factory.mktemp("site8"))


def test_eight_controllers_share_160_a_and_a_coordinator_reboot_overshoots_nothing(site8):
    rig = Rig(site8["control"])
    try:
        rig.reset()
        rig.building(building_a=[40, 40, 40])
        plug_all(rig, 8)
        # 160 A less 2 less 40: 118 A for 16 guns, 7.4 A each.
        wait(rig, each_near(7.4), 90, "7.4 A on each of the 16 guns")
        rig.site(clear=True)
        rig.power(board=1, on=False)
        time.sleep(3)
        rig.power(board=1, on=True)
        # Back to sharing, every gun charging: the coordinator's own too (they waited at 0 A for
        # 90 s under load while a node's caps were rewritten every second, docs/site.md).
        wait(rig, lambda s: all(g["offered_a"] >= 6 for g in guns(s)), 60,
             "every gun charging again after the coordinator's reboot")
        snap = rig.site()
        assert snap["violations"]["seconds_over"] == 0, snap["violations"]
    finally:
        rig.close()


def test_two_controllers_on_one_address_and_two_coordinators_are_named_and_overshoot_nothing(tmp_path):
    from host_tools.sim.site import Site, read_site
    spec = read_site("site-ac3")
    spec["controllers"][2]["config"] = {"site_address": 2}   # controller 3 set to node 2's address
    spec["controllers"].append({"board": "sim-ac2-grid", "config": dict(spec["controllers"][0]["config"])})
    site = Site(spec, flash_dir=str(tmp_path)).start()
    rig = Rig(site.control_addr)
    try:
        rig.building(building_a=[10, 10, 10])
        plug_all(rig, 4)
        time.sleep(30)
        snap = rig.site()
        assert snap["violations"]["seconds_over"] == 0, snap["violations"]
        said = [vb.console.decode(errors="replace") for vb in site.boards]
        both = said[0] + said[3]
        assert "another coordinator on the line" in both, both[-2000:]
        # The two node 2s pause, whichever coordinator goes on.
        assert "two controllers" in said[1] + said[2] or "another controller answers as address 2" in said[1] + said[2]
        assert [g["offered_a"] for b in snap["boards"][1:3] for g in b["guns"]] == [0, 0, 0, 0], snap["boards"]
    finally:
        rig.close()
        site.stop()
    assert json.dumps(snap)   # the snapshot is plain JSON for a report
