"""DC boards on the virtual board: the pilot at 5 %, whole power modules shared between the
dispensers, and a module that moves only after its dispenser has ramped down (rig events). A car
takes 8-9 s to full power through the cable check, the precharge and the ramp: waits of 20 s.

Each DC board runs in its own virtual board for this module (the session's board is --board's);
every test starts from a bare rig and a freshly powered, factory-fresh board."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import fresh_rig, run_sim
from host_tools.rig import Rig
from rigkit import Dut, Events, now_ms
BOARDS = Path(__file__).resolve().parents[1] / "boards"


def dc_ev(max_kw, soc=20, **more):
    return {"kind": "dc", "max_kw": max_kw, "soc": soc, "battery_kwh": 60, "start_delay_s": 0.5, **more}


def start_board(request, tmp_path_factory, name):
    for info in run_sim(request, name, tmp_path_factory.mktemp(name)):
        info["board"] = json.loads((BOARDS / f"{name}.json").read_text())
        yield info


@pytest.fixture(scope="module")
def dc2_board(request, tmp_path_factory):
    yield from start_board(request, tmp_path_factory, "sim-dc2")


@pytest.fixture(scope="module")
def dc6_board(request, tmp_path_factory):
    yield from start_board(request, tmp_path_factory, "sim-dc6")


@pytest.fixture(scope="module")
def dcmcu_board(request, tmp_path_factory):
    """The DC controller on an MCU: the firmware as it runs on a Pico 2 W, on the emulated chip."""
    yield from start_board(request, tmp_path_factory, "rp2350-pico2-w-dc2")


def fresh(info) -> Rig:
    r = fresh_rig(info["control"])
    r.board = info["board"]
    return r


@pytest.fixture
def dc2(dc2_board):
    r = fresh(dc2_board)
    yield r
    r.close()


@pytest.fixture
def dc6(dc6_board):
    r = fresh(dc6_board)
    yield r
    r.close()


@pytest.fixture
def dcmcu(dcmcu_board):
    r = fresh(dcmcu_board)
    yield r
    r.close()


def replay(rig: Rig, since_ms: float, start: dict) -> int:
    """Replays the rig's log from `start` (a snapshot): every module switched off a dispenser
    only after its power had come down to what its other modules give (the last `dc_power`
    event of that dispenser) and after its limit was lowered to that (`dc_limit`); no limit
    ever above the modules connected, none summing above the cabinet; no arc. Returns the
    number of modules taken off a dispenser."""
    cab = rig.board["cabinet"]
    module_w = cab["module_kw"] * 1000
    where = list(start["modules"])
    power = {g["gun"]: g["power_w"] for g in start["guns"]}
    limit = {g["gun"]: g["dc_limit_w"] for g in start["guns"]}
    taken = 0
    for e in rig.events(since_ms=since_ms)["events"]:
        what, gun, value = e["what"], e["gun"], e["value"]
        assert what != "arc", f"a module was switched under load: {e}"
        if what == "dc_power":
            power[gun] = value
        elif what == "dc_limit":
            limit[gun] = value
            connected = where.count(gun) * module_w
            assert value <= connected, f"gun {gun}'s limit {value} W is above its modules' {connected} W: {e}"
            assert sum(limit.values()) <= cab["modules"] * module_w
        elif what == "module":
            frm = value["from"]
            where[value["module"] - 1] = value["to"]
            if frm:
                left = where.count(frm) * module_w
                assert power[frm] <= left, f"module {value['module']} left gun {frm} at {power[frm]} W > {left} W"
                assert limit[frm] <= left, f"module {value['module']} left gun {frm} before its limit was lowered"
                taken += 1
    return taken


def start(rig: Rig) -> tuple[float, dict]:
    s = rig.snapshot()
    return s["t_ms"] - 0.1, s


def kw(guns, n):
    return guns[n - 1]["power_w"] / 1000


@pytest.mark.slow
def test_sim_dc2_a_150_kw_and_a_50_kw_car_share_the_160_kw_by_3_and_1_modules(dc2, dc2_board, latency):
    t, s0 = start(dc2)
    events = Events(dc2)
    dc2.plug(gun=1, ev=dc_ev(150))
    guns = dc2.wait_for(lambda g: kw(g, 1) >= 150, 20, what="car 1 at 150 kW")
    # Alone it holds every module (150 kW needs four of 40 kW), behind a 5 % pilot.
    assert len(guns[0]["modules"]) == 4 and guns[0]["duty"] == 5.0 and guns[0]["state"] == "C2"

    dc2.plug(gun=2, ev=dc_ev(50))
    guns = dc2.wait_for(lambda g: [len(x["modules"]) for x in g] == [3, 1] and kw(g, 2) >= 40 and kw(g, 1) <= 120,
                        20, what="modules 3 and 1, car 2 at 40 kW")
    assert (kw(guns, 1), kw(guns, 2)) == (120, 40)
    assert replay(dc2, t, s0) == 1

    # The firmware's console shows the modules, the DC power, the SoC and the DC meters' energy.
    dut = Dut(dc2_board["serial"])
    try:
        # the DC meters are read once a second: car 2's first watt-hour takes its time
        status = dut.wait_status(lambda s: all(g["energy_wh"] > 0 for g in s["guns"]), 5)["guns"]
    finally:
        dut.close()
    assert [g["modules"] for g in status] == [3, 1]
    assert status[0]["dc_w"] == 120000 and status[0]["soc"] >= 20 and status[0]["duty_pm"] == 50

    # The safety path does not wait for a ramp: unplugged, the contactor opens within 100 ms,
    # and the freed module goes back to the car that still charges.
    with latency():
        t_unplug = now_ms(dc2)
        dc2.unplug(gun=2)
        opened = events.first(t_unplug, 2, "contactor", "open")
    assert opened["t_ms"] - events.first(t_unplug, 2, "unplug")["t_ms"] <= 100
    dc2.wait_for(lambda g: len(g[0]["modules"]) == 4 and kw(g, 1) >= 150, 20, what="car 1 back at 150 kW")
    replay(dc2, t, s0)


@pytest.mark.slow
def test_sim_dc6_cars_come_and_go_and_a_module_moves_only_after_its_dispenser_ramped_down(dc6, latency):
    t, s0 = start(dc6)
    for gun in (1, 2):
        dc6.plug(gun=gun, ev=dc_ev(150))
    dc6.wait_for(lambda g: kw(g, 1) >= 150 and kw(g, 2) >= 150, 20, what="cars 1 and 2 at 150 kW")

    # A third car: all twelve modules are used, and one of the 150 kW cars gives one up.
    dc6.plug(gun=3, ev=dc_ev(100))
    guns = dc6.wait_for(lambda g: sum(len(x["modules"]) for x in g) == 12 and kw(g, 3) >= 90,
                        20, what="car 3 charging on all 12 modules")
    assert sorted(len(x["modules"]) for x in guns[:3]) == [3, 4, 5]

    # A fourth: two modules for its 60 kW, taken from cars at full power.
    dc6.plug(gun=4, ev=dc_ev(60))
    guns = dc6.wait_for(lambda g: kw(g, 4) >= 60 and [len(x["modules"]) for x in g][:4] in ([4, 3, 3, 2], [3, 4, 3, 2]),
                        20, what="car 4 at 60 kW")
    assert sum(x["power_w"] for x in guns) <= 360000

    # Car 1 leaves: its contactor opens within 100 ms, its modules go to those that ask for more.
    events = Events(dc6)
    with latency():
        t_unplug = now_ms(dc6)
        dc6.unplug(gun=1)
        opened = events.first(t_unplug, 1, "contactor", "open")
    assert opened["t_ms"] - events.first(t_unplug, 1, "unplug")["t_ms"] <= 100
    guns = dc6.wait_for(lambda g: kw(g, 2) >= 150 and kw(g, 3) >= 100, 20, what="cars 2 and 3 at full power")
    assert [len(x["modules"]) for x in guns][1:4] == [5, 4, 2]

    taken = replay(dc6, t, s0)
    assert taken >= 3
    assert all(g["energy_wh"] > 0 for g in guns[:4])


def module_line(dut: Dut, number: int) -> str:
    """The `modules` console line of module `number`."""
    return [line for line in dut.command("modules") if line.split()[:1] == [str(number)]][0]


def on_modules(rig: Rig, gun: int) -> list[int]:
    return [m["module"] for m in rig.modules()["modules"] if m["dispenser"] == gun and m["on"]]


@pytest.mark.slow
def test_infy_modules_on_sim_dc2_carry_the_limit_and_a_faulty_one_is_taken_out_and_back(dc2, dc2_board):
    t, s0 = start(dc2)
    dc2.plug(gun=1, ev=dc_ev(150))
    dc2.wait_for(lambda g: kw(g, 1) >= 150, 20, what="car 1 at 150 kW")
    # What the EV asks (375 A at its battery's 400 V, up to 440 V) goes to the four modules over CAN.
    modules = dc2.modules()["modules"]
    assert [(m["dispenser"], m["on"], m["set_v"], m["set_a"]) for m in modules] == [(1, True, 440.0, 93.75)] * 4
    assert {m["protocol"] for m in modules} == {"infy"} and all(m["frames"] > 0 for m in modules)

    dc2.module_fault(module=2, code="fan")
    guns = dc2.wait_for(lambda g: g[0]["modules"] == [1, 3, 4] and kw(g, 1) >= 119, 10,
                        what="module 2 out, car 1 at 120 kW on three")
    assert kw(guns, 1) == 120
    dut = Dut(dc2_board["serial"])
    try:
        assert "fan fault" in module_line(dut, 2) and "parked" in module_line(dut, 2)
        can = json.loads(dut.command("status --json")[0])["can"]
        assert can["protocol"] == "infy" and can["modules"][1]["fault"] == "fan fault"
        dc2.module_fault(module=2, code=None)
        dc2.wait_for(lambda g: len(g[0]["modules"]) == 4 and kw(g, 1) >= 150, 10, what="module 2 back, 150 kW")
        assert module_line(dut, 2).split()[-1] == "ok"
    finally:
        dut.close()
    replay(dc2, t, s0)


@pytest.mark.slow
def test_the_modbus_io_module_of_sim_dc2s_matrix_moves_its_modules_and_no_power_flows_while_it_is_silent(dc2, dc2_board):
    """sim-dc2's matrix contactors hang on a Waveshare Modbus RTU IO 8CH: the modules move only
    through its outputs, and contacts the firmware cannot read carry no power."""
    t, s0 = start(dc2)
    dc2.plug(gun=1, ev=dc_ev(100))
    guns = dc2.wait_for(lambda g: kw(g, 1) >= 99, 20, what="car 1 at 100 kW")
    moves = [e for e in dc2.events(since_ms=t)["events"] if e["what"] == "module"]
    assert {e["value"]["to"] for e in moves} == {1} and len(guns[0]["modules"]) == 3
    t_silent = now_ms(dc2)
    dc2.matrix_fault(fault="silent")
    # Its contacts unknown after 1 s: the modules on them get no setpoint, the car no power.
    guns = dc2.wait_for(lambda g: kw(g, 1) == 0, 5, what="no power while the matrix is unknown")
    dut = Dut(dc2_board["serial"])
    try:
        assert any("matrix: I/O module 10 does not answer" in line for line in dut.command("log 50"))
    finally:
        dut.close()
    assert not [e for e in dc2.events(since_ms=t_silent)["events"] if e["what"] in ("arc", "matrix_short")]
    dc2.matrix_fault(fault=None)
    dc2.wait_for(lambda g: kw(g, 1) >= 99, 20, what="car 1 back at 100 kW")
    assert not [e for e in dc2.events(since_ms=t)["events"] if e["what"] in ("arc", "matrix_short")]
    dc2.unplug(gun=1)
    replay(dc2, t, s0)


@pytest.mark.slow
def test_winline_modules_on_sim_dc6_a_silent_one_is_taken_out_and_an_idle_one_carries_its_share(dc6, dc6_board):
    t, s0 = start(dc6)
    for gun in (1, 2):
        dc6.plug(gun=gun, ev=dc_ev(150))
    guns = dc6.wait_for(lambda g: kw(g, 1) >= 150 and kw(g, 2) >= 150, 20, what="cars 1 and 2 at 150 kW")
    idle = [m["module"] for m in dc6.modules()["modules"] if not m["dispenser"]]
    assert len(idle) == 2 and {m["protocol"] for m in dc6.modules()["modules"]} == {"winline"}
    silent = guns[0]["modules"][0]

    dc6.module_silent(module=silent, on=True)
    # Out of use after 3 s without an answer, but deaf too: it puts out its last setpoint until
    # its own 10 s without the controller turn it off. Only then is it parked (no arc), and car 1
    # gets an idle module in its place.
    guns = dc6.wait_for(lambda g: silent not in g[0]["modules"] and len(g[0]["modules"]) == 5 and kw(g, 1) >= 150,
                        25, what="the silent module replaced")
    assert set(guns[0]["modules"]) & set(idle) and kw(guns, 2) >= 150
    state = [m for m in dc6.modules()["modules"] if m["module"] == silent][0]
    assert state["dispenser"] == 0 and not state["on"] and state["timed_out"] == 1
    dut = Dut(dc6_board["serial"])
    try:
        assert module_line(dut, silent).split()[-1] == "silent"
        dc6.module_silent(module=silent, on=False)
        dut.wait_status(lambda s: s["can"]["modules"][silent - 1]["silent"] is False, 5)
    finally:
        dut.close()
    replay(dc6, t, s0)



def sequence_events(rig: Rig, since_ms: float, gun: int) -> list[tuple[float, str, object]]:
    return [(e["t_ms"], e["what"], e["value"]) for e in rig.events(since_ms=since_ms)["events"]
            if e["gun"] == gun and e["what"] in ("evse_state", "ev_contactor", "contactor", "imd", "ev_phase",
                                                 "dc_break", "fault")]


def first(events, what, value=None):
    found = [t for t, w, v in events if w == what and (value is None or v == value)]
    assert found, f"no {what} {value} among the events: {events}"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("board", ["dc2", "dc6", "dcmcu"])
def test_a_dc_session_goes_through_cable_check_precharge_ramp_and_shutdown(board, request):
    rig = request.getfixturevalue(board)
    t, _ = start(rig)
    # 1 % of a 5 kWh battery to go at up to 100 kW: the car stops by itself within seconds.
    rig.plug(gun=1, ev=dc_ev(100, soc=79, battery_kwh=5, target_soc=80, battery_v=380, max_v=420))
    rig.wait_for(lambda g: g[0]["state"] == "B2" and g[0]["ev_phase"] is None and g[0]["soc"] >= 80, 40,
                 what="the session over")
    rig.wait_for(lambda g: g[0]["evse_state"] == "idle" or g[0]["evse_state"] == "done", 5, what="the sequence done")
    # A Modbus monitor (sim-dc6) hears its "off" at its task's next poll, on a line it shares.
    deadline = time.monotonic() + 5
    while True:
        ev = sequence_events(rig, t, 1)
        if any(w == "imd" and v == "off" and e >= first(ev, "ev_phase", "cable_check") for e, w, v in ev) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # From the EV's first request: the board may still report the end of the test before.
    ev = [e for e in ev if e[0] >= first(ev, "ev_phase", "cable_check")]
    steps = [v for _, w, v in ev if w == "evse_state"]
    assert steps[:5] == ["cable_check", "precharge", "charging", "stopping", "weld_check"], ev
    # The monitor is on for the cable check (its self-test first, 1 s), the contactors close onto
    # the cable, and the EV closes its own only after the precharge brought the cable to its 380 V.
    t_imd, t_closed = first(ev, "imd", "on"), first(ev, "contactor", "closed")
    t_pre, t_ev = first(ev, "evse_state", "precharge"), first(ev, "ev_contactor", "closed")
    assert t_imd <= t_closed < t_pre < t_ev
    assert t_ev - t_pre <= 7000                       # DIN 70121: the precharge within 7 s
    # Shutdown: the EV opens below 5 A, the charger after it or with it, nothing broke under load.
    t_stop, t_open = first(ev, "evse_state", "stopping"), first(ev, "contactor", "open")
    assert t_stop <= first(ev, "ev_contactor", "open") and t_stop < t_open
    assert not [e for e in ev if e[1] == "dc_break"], ev
    assert first(ev, "imd", "off") >= t_stop
    if rig.board["guns"][0].get("imd"):   # a Modbus monitor: its self-test asked by the firmware
        assert first(ev, "imd", "on") <= first(ev, "imd", "self_test") < t_closed
    dut = Dut(request.getfixturevalue(board + "_board")["serial"])
    try:
        gun = dut.status()["guns"][0]
    finally:
        dut.close()
    assert gun["fault"] is None and gun["dc_step"] in ("done", "idle") and gun["isolation"] in ("valid", None)


@pytest.mark.slow
def test_an_insulation_fault_in_the_cable_check_stops_before_the_battery_is_connected(dc2, dc2_board):
    t, _ = start(dc2)
    dc2.insulation(gun=1, kohm=30)     # 30 kohm at the 450 V test: 67 ohm/V, under 100 ohm/V
    dc2.plug(gun=1, ev=dc_ev(100))
    dut = Dut(dc2_board["serial"])
    try:
        status = dut.wait_status(lambda s: s["guns"][0]["fault"] == "ISOLATION", 15)["guns"][0]
    finally:
        dut.close()
    assert status["isolation"] == "fault" and not status["contactor"]
    ev = sequence_events(dc2, t, 1)
    assert not [e for e in ev if e[1] == "ev_contactor" and e[2] == "closed"], ev   # never onto the battery
    assert dc2.gun(1)["isolation"] == "fault"          # the EV was told
    dc2.unplug(gun=1)
    dc2.insulation(gun=1, kohm=5000)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["dc2", "dc6"])   # the front end's monitor; a Bender on Modbus
def test_an_insulation_drop_while_charging_opens_within_a_second(board, request):
    rig = request.getfixturevalue(board)
    t, _ = start(rig)
    rig.plug(gun=1, ev=dc_ev(100))
    rig.wait_for(lambda g: kw(g, 1) >= 99, 20, what="car 1 at 100 kW")
    t_drop = now_ms(rig)
    rig.insulation(gun=1, kohm=20)     # 20 kohm at 400 V: 50 ohm/V
    opened = Events(rig).first(t_drop, 1, "contactor", "open")
    assert opened["t_ms"] - t_drop <= 1000
    assert rig.wait_for(lambda g: g[0]["isolation"] == "fault" and g[0]["power_w"] == 0, 5, what="stopped")
    rig.unplug(gun=1)
    rig.insulation(gun=1, kohm=5000)


@pytest.mark.slow
def test_a_modbus_insulation_monitor_that_fails_its_self_test_or_falls_silent_stops_the_gun(dc6, dc6_board):
    """sim-dc6's dispensers each have a Bender isoCHA425HV on RS-485: the firmware starts it and
    its self-test over Modbus, and a monitor it cannot hear is no monitor."""
    t, _ = start(dc6)
    dc6.insulation(gun=2, self_test_fails=True)
    dc6.plug(gun=2, ev=dc_ev(100))
    dut = Dut(dc6_board["serial"])
    try:
        status = dut.wait_status(lambda s: s["guns"][1]["fault"] == "ISO_SELF_TEST", 15)["guns"][1]
        assert not status["contactor"]
        ev = sequence_events(dc6, t, 2)
        imd = [v for _, w, v in ev if w == "imd"]     # an "off" may still end the gun's last session
        assert "on" in imd and imd[imd.index("on"):][:2] == ["on", "self_test"], ev   # as the firmware told it
        assert not [e for e in ev if e[1] == "contactor" and e[2] == "closed"], ev   # no voltage on the cable
        dc6.unplug(gun=2)
        dc6.insulation(gun=2, self_test_fails=False)

        # Charging, the monitor falls silent: within its 3 s and a poll the gun stops on "IMD".
        dc6.plug(gun=1, ev=dc_ev(100))
        dc6.wait_for(lambda g: kw(g, 1) >= 99, 20, what="car 1 at 100 kW")
        t_silent = now_ms(dc6)
        dc6.insulation(gun=1, imd_fault="silent")
        opened = Events(dc6).first(t_silent, 1, "contactor", "open", timeout_s=10)
        assert opened["t_ms"] - t_silent <= 4500
        assert dut.wait_status(lambda s: s["guns"][0]["fault"] == "IMD", 5)["guns"][0]["contactor"] is False
        assert "insulation monitor: lost" in "\n".join(dut.command("log"))
    finally:
        dut.close()
    dc6.unplug(gun=1)
    dc6.insulation(gun=1, imd_fault=None)



@pytest.mark.slow
def test_a_stop_at_the_console_ramps_down_and_no_contactor_opens_under_load(dc2, dc2_board):
    t, _ = start(dc2)
    dc2.plug(gun=1, ev=dc_ev(100))
    dc2.wait_for(lambda g: kw(g, 1) >= 99, 20, what="car 1 at 100 kW")
    dut = Dut(dc2_board["serial"])
    try:
        t_stop = now_ms(dc2)
        dut.command("stop 1")
        guns = dc2.wait_for(lambda g: not g[0]["contactor"] and not g[0]["ev_contactor"]
                            and g[0]["evse_state"] != "stopping", 10, what="both open, the stop's checks begun")
    finally:
        dut.close()
    ev = [e for e in sequence_events(dc2, t_stop, 1)]
    # The EV was told (the 5 % stays on meanwhile), asked to stop, and both sides opened below 5 A.
    assert [v for _, w, v in ev if w == "evse_state"][:2] == ["stopping", "weld_check"], ev
    assert first(ev, "ev_phase", "stop") < first(ev, "contactor", "open")
    assert not [e for e in ev if e[1] == "dc_break"], ev
    assert guns[0]["power_w"] == 0
    dc2.unplug(gun=1)
