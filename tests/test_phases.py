"""One/three-phase switching (issue 17, item 3): the pure PhaseSwitch against any sequence of
budgets, and the application that feeds it what one and three phases would give."""
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from evse import config, meters, pilot
from evse import gun as gun_mod
from evse.phases import EXTRA_A, SETTLE_MS, PhaseSwitch
from fake_rig import FakeHal

BOARDS = Path(__file__).resolve().parents[1] / "boards"
HOLD_MS = 10000
MIN_A = 6

# Segments: a state that lasts some steps (a budget holds for a while, then moves).
MOSTLY = st.sampled_from([True] * 7 + [False])
AMPS = st.sampled_from([0.0, 4.0, 6.0, 6.9, 7.0, 12.0, 18.0, 30.0])
steps = st.lists(st.tuples(
    st.integers(min_value=1, max_value=12),             # steps this lasts
    st.integers(min_value=0, max_value=3000),           # ms between them
    MOSTLY,                                              # plugged
    st.booleans(),                                       # main contactor open
    MOSTLY,                                              # the gun wants power
    AMPS,                                                # on three phases it would get
    AMPS), max_size=40).map(lambda segs: [s[1:] for s in segs for _ in range(s[0])])


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(min_value=0, max_value=5))
def test_it_switches_only_when_safe_held_and_capped(seq, max_switches):
    ps = PhaseSwitch()
    now = 0
    switches = 0           # decided this session
    held = None            # since when the model saw the condition hold
    for dt, plugged, safe, wants, on3, on1 in seq:
        now += dt
        before_target, before_phases = ps.target, ps.phases
        cond = wants and (on3 < MIN_A <= on1 if ps.phases == 3 and not ps.single_ev
                          else ps.phases == 1 and on3 >= MIN_A + EXTRA_A and 3 * on3 >= on1)
        to = ps.step(now, plugged, safe, wants, on3, on1, MIN_A, HOLD_MS, max_switches)
        if to:
            assert safe, "a phase contactor switched while it was not safe"
            assert ps.phases == to
        if before_phases == 0:
            assert to in (0, 3) and (to == 3) == safe, "after a boot it is driven to three first, when safe"
        if not plugged:
            switches, held = 0, None
            assert ps.phases == 3 or ps.target == 3     # on three, or on its way there
            continue
        if ps.target and not before_target:
            if max_switches == 0:
                assert ps.target == 3 and before_phases == 1   # switching turned off: back to three
                continue
            switches += 1
            assert held is not None and now - held >= HOLD_MS, "switched before the condition held"
            assert ps.target == (1 if before_phases == 3 else 3)
            held = None
        elif not before_target:
            held = (held if held is not None else now) if cond and switches < max_switches else None
        assert switches <= max_switches
        if before_target and ps.target == 0:
            assert ps.phases == before_target   # a switch ends on the phases it went for


def booted():
    """A PhaseSwitch whose boot drive to three is done."""
    ps = PhaseSwitch()
    assert ps.step(0, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 3
    ps.step(SETTLE_MS, True, True, False, 0, 0, MIN_A, HOLD_MS, 4)
    assert ps.phases == 3 and not ps.target
    return ps


def test_a_switch_waits_until_safe_then_settles():
    ps = booted()
    t = SETTLE_MS
    assert ps.step(t, True, False, True, 4.0, 12.0, MIN_A, HOLD_MS, 4) == 0
    assert ps.step(t + HOLD_MS - 1, True, False, True, 4.0, 12.0, MIN_A, HOLD_MS, 4) == 0 and not ps.target
    assert ps.step(t + HOLD_MS, True, False, True, 4.0, 12.0, MIN_A, HOLD_MS, 4) == 0 and ps.target == 1
    assert ps.step(t + HOLD_MS + 5000, True, False, False, 0, 0, MIN_A, HOLD_MS, 4) == 0   # not safe yet
    t += HOLD_MS + 6000
    assert ps.step(t, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 1 and ps.phases == 1
    assert ps.step(t + SETTLE_MS - 1, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 0 and ps.target
    assert ps.step(t + SETTLE_MS, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 0 and not ps.target
    # Unplugged, the next EV starts on three phases.
    assert ps.step(t + 20000, False, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 3 and ps.phases == 3


def test_a_single_phase_ev_is_never_switched_and_three_phases_need_the_margin():
    ps = booted()
    ps.single_ev = True
    for t in range(0, 3 * HOLD_MS, 1000):
        ps.step(t, True, True, True, 4.0, 12.0, MIN_A, HOLD_MS, 4)
    assert ps.phases == 3 and not ps.target
    ps = booted()
    ps.phases = 1
    for t in range(0, 3 * HOLD_MS, 1000):
        ps.step(t, True, True, True, MIN_A + EXTRA_A - 0.1, 12.0, MIN_A, HOLD_MS, 4)
    assert not ps.target                      # 6.9 A on three: not enough over the minimum
    for t in range(3 * HOLD_MS, 5 * HOLD_MS, 1000):
        ps.step(t, True, True, True, 8.0, 30.0, MIN_A, HOLD_MS, 4)
    assert not ps.target                      # 3 x 8 A is less than 30 A on one phase


@pytest.fixture
def wallbox(tmp_path, monkeypatch):
    """sim-ac1-solar on FakeHal, stepped as the control and sharing tasks step it: one gun with a
    phase contactor, an EV in C, a grid reading at every tick."""
    t = [0]
    monkeypatch.setattr(time, "ticks_ms", lambda: t[0], raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    from evse.app import App

    def make(building, **settings):
        b = json.loads((BOARDS / "sim-ac1-solar.json").read_text())
        cfg = config.Config(b, str(tmp_path))
        for key, value in settings.items():
            cfg.set(key, value)
        hal = FakeHal(interlock=True)
        hal.rcd_test_ms = 0
        app = App(b, cfg, hal, str(tmp_path))
        app.notes = []
        app.note = app.notes.append
        hal.ev = "C"

        def run(ms, amps=None):
            end = t[0] + ms
            while t[0] < end:
                t[0] += 20
                hal.t_ms = t[0]
                hal.amps = (amps if amps is not None else pilot.duty_pm_to_amps(hal.duty_pm)
                            if 0 < (hal.duty_pm or 0) < 1000 else 0.0)
                # The meter at the connection sees the house and what the EV draws on its phases.
                drawn = hal.amps if hal.coil else 0.0
                ev = [drawn, drawn if app.phases(1) == 3 else 0.0, drawn if app.phases(1) == 3 else 0.0]
                reading = meters.Reading(3, False)
                reading.amps = [b + e for b, e in zip(building, ev)]
                reading.phase_w = [a * 230 for a in reading.amps]
                reading.power_w = sum(reading.phase_w)
                app.metering.grid_reading, app.metering.grid_ok_ms = reading, app.now_ms
                app.step()
        app.run = run
        return app
    return make


def phase_drives(app):
    return [v for _, what, v in app.hal.calls if what == "phases"]


def test_a_short_budget_on_l2_and_l3_switches_the_gun_to_its_l1_only_once_the_contactor_is_proven_open(wallbox):
    """The house takes 19 A on L2 and L3: of a 25 A connection less 2 A margin, three phases
    leave 4 A, L1 alone 18 A. After phase_switch_s the offer goes, the EV stops, the contactor
    opens and its weld check passes, then the phase contactor leaves L2 and L3 open, and after
    the settling the gun charges on L1's 18 A."""
    app = wallbox([5.0, 19.0, 19.0], grid_limit_a=25, phase_switch_s=10)
    g, hal = app.guns[0], app.hal
    app.run(1000)
    assert phase_drives(app) == [3] and not g.contactor    # driven to three before any offer
    app.run(9000)
    assert not g.contactor and app.phase_sw[0].target == 0   # 4 A on three: paused, holding its 10 s
    app.run(15000)
    assert phase_drives(app) == [3, 1] and app.phases(1) == 1 and app._loads[0] == (0,)
    assert g.contactor and round(g.allocation_a) == 18
    assert hal.__dict__.get("phases_under_load", 0) == 0
    assert any("switching to 1 phase" in n for n in app.notes), app.notes


def on_l1(wallbox):
    """Charging on L1 alone at 18 A: the house loads L2 and L3 (its list moves it)."""
    building = [5.0, 19.0, 19.0]
    app = wallbox(building, grid_limit_a=25, phase_switch_s=10)
    app.run(25000)
    assert app.phases(1) == 1 and app.guns[0].contactor and round(app.guns[0].allocation_a) == 18
    return app, building


def test_a_charging_ev_pauses_and_its_contactor_opens_and_proves_open_before_the_switch(wallbox):
    """Back to three phases from a session charging on one: the offer goes first, the EV stops,
    the contactor opens and its weld check passes, and only then the phase contactor switches."""
    app, building = on_l1(wallbox)
    g, hal = app.guns[0], app.hal
    building[:] = [0.0, 0.0, 0.0]      # the house leaves: three phases give 23 A
    app.run(30000)
    assert phase_drives(app) == [3, 1, 3] and g.contactor and round(g.allocation_a) == 23
    switched = [t for t, what, v in hal.calls if what == "phases"][-1]
    opened = max(t for t, what, v in hal.calls if what == "contactor" and v is False and t < switched)
    offer_off = max(t for t, what, v in hal.calls if what == "pilot" and v == pilot.DUTY_OFF_PM and t < switched)
    assert offer_off <= opened and switched - opened >= gun_mod.WELD_CHECK_MS, (offer_off, opened, switched)
    assert hal.__dict__.get("phases_under_load", 0) == 0


def test_welded_contacts_never_see_the_phase_contactor_switch(wallbox):
    app, building = on_l1(wallbox)
    g, hal = app.guns[0], app.hal
    hal.welded = True                  # the main contacts will weld as they open
    building[:] = [0.0, 0.0, 0.0]
    app.run(40000)
    assert g.fault == "WELD" and phase_drives(app) == [3, 1], (g.fault, phase_drives(app))


def test_solar_on_one_phase_when_three_would_pause_and_the_offer_comes_back_after_the_settling(wallbox):
    """2.5 kW exported: 3.6 A on each of three phases, 10.9 A on one. The switch does not set the
    solar start delay going again."""
    building = [-3.6, -3.6, -3.6]
    app = wallbox(building, grid_limit_a=25, phase_switch_s=10, solar_mode="on", solar_start_s=30)
    g = app.guns[0]
    app.run(45000)        # the surplus never sufficed on three phases: no start yet, then the switch
    assert phase_drives(app) == [3, 1]
    switched = [t for t, what, v in app.hal.calls if what == "phases"][-1]
    app.run(switched + SETTLE_MS + 6000 - app.hal.t_ms)
    assert g.contactor and round(g.allocation_a) == 11, (g.allocation_a, app.notes)


def test_a_power_limit_from_the_central_system_counts_three_times_on_one_phase(wallbox):
    """A 3 kW TxProfile: 4.3 A on each of three phases (a pause), 13 A on one."""
    app = wallbox([0.0, 0.0, 0.0], grid_limit_a=25, phase_switch_s=10)

    class CentralSystem:
        def may_charge(self, n):
            return True

        def session_tag(self, n):
            return None

        def limit_a(self, n, phases=None):
            return None if n == 0 else 3000 / (230 * (phases or app.phases(n)))
    app.cp = CentralSystem()
    for _ in range(40):
        app.grant()
        app.run(1000)
    assert phase_drives(app) == [3, 1] and round(app.guns[0].allocation_a) == 13
