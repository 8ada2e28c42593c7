"""One/three-phase switching (issue 17, item 3): the pure PhaseSwitch against any sequence of
budgets, and the application that feeds it what one and three phases would give."""
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from evse import config, meters
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
def test_it_switches_only_open_held_and_capped(seq, max_switches):
    ps = PhaseSwitch()
    now = 0
    switches = 0           # decided this session
    held = None            # since when the model saw the condition hold
    for dt, plugged, open_, wants, on3, on1 in seq:
        now += dt
        before_target, before_phases = ps.target, ps.phases
        cond = wants and (on3 < MIN_A <= on1 if ps.phases == 3 and not ps.single_ev
                          else ps.phases == 1 and on3 >= MIN_A + EXTRA_A and 3 * on3 >= on1)
        to = ps.step(now, plugged, open_, wants, on3, on1, MIN_A, HOLD_MS, max_switches)
        if to:
            assert open_, "a phase contactor switched with the main contactor closed"
            assert ps.phases == to
        if not plugged:
            switches, held = 0, None
            assert ps.target == 0 and (ps.phases == 3 or not open_)
            continue
        if ps.target and not before_target:
            switches += 1
            assert held is not None and now - held >= HOLD_MS, "switched before the condition held"
            assert ps.target == (1 if before_phases == 3 else 3)
            held = None
        elif not before_target:
            held = (held if held is not None else now) if cond and switches < max_switches else None
        assert switches <= max_switches
        if before_target and ps.target == 0:
            assert ps.phases == before_target   # a switch ends on the phases it went for


def test_a_switch_withdraws_the_offer_waits_for_the_contactor_then_settles():
    ps = PhaseSwitch()
    assert ps.step(0, True, False, True, 4.0, 12.0, MIN_A, HOLD_MS, 4) == 0
    assert ps.step(HOLD_MS - 1, True, False, True, 4.0, 12.0, MIN_A, HOLD_MS, 4) == 0 and not ps.target
    assert ps.step(HOLD_MS, True, False, True, 4.0, 12.0, MIN_A, HOLD_MS, 4) == 0 and ps.target == 1
    assert ps.step(HOLD_MS + 5000, True, False, False, 0, 0, MIN_A, HOLD_MS, 4) == 0   # still closed
    assert ps.step(HOLD_MS + 6000, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 1 and ps.phases == 1
    assert ps.step(HOLD_MS + 6000 + SETTLE_MS - 1, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 0 and ps.target
    assert ps.step(HOLD_MS + 6000 + SETTLE_MS, True, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 0 and not ps.target
    # Unplugged, the next EV starts on three phases.
    assert ps.step(HOLD_MS + 20000, False, True, False, 0, 0, MIN_A, HOLD_MS, 4) == 3 and ps.phases == 3


def test_a_single_phase_ev_is_never_switched_and_three_phases_need_the_margin():
    ps = PhaseSwitch()
    ps.single_ev = True
    for t in range(0, 3 * HOLD_MS, 1000):
        ps.step(t, True, True, True, 4.0, 12.0, MIN_A, HOLD_MS, 4)
    assert ps.phases == 3 and not ps.target
    ps = PhaseSwitch()
    ps.phases = 1
    for t in range(0, 3 * HOLD_MS, 1000):
        ps.step(t, True, True, True, MIN_A + EXTRA_A - 0.1, 12.0, MIN_A, HOLD_MS, 4)
    assert not ps.target                      # 6.9 A on three: not enough over the minimum
    for t in range(3 * HOLD_MS, 5 * HOLD_MS, 1000):
        ps.step(t, True, True, True, 8.0, 30.0, MIN_A, HOLD_MS, 4)
    assert not ps.target                      # 3 x 8 A is less than 30 A on one phase


@pytest.fixture
def wallbox(tmp_path, monkeypatch):
    """sim-ac1-solar on FakeHal: one gun with a phase contactor, an EV asking, a grid reading."""
    monkeypatch.setattr(time, "ticks_ms", lambda: 0, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    from evse.app import App

    def make(building, **settings):
        b = json.loads((BOARDS / "sim-ac1-solar.json").read_text())
        cfg = config.Config(b, str(tmp_path))
        for key, value in settings.items():
            cfg.set(key, value)
        app = App(b, cfg, FakeHal(interlock=True), str(tmp_path))
        app.notes = []
        app.note = app.notes.append
        app.guns[0].state = "C2"
        reading = meters.Reading(3, False)
        reading.amps = list(building)
        reading.phase_w = [a * 230 for a in building]
        reading.power_w = sum(reading.phase_w)
        app.metering.grid_reading, app.metering.grid_ok_ms = reading, 0
        app.metering.grid_ok_ms = 0
        return app
    return make


def phase_drives(app):
    return [v for _, what, v in app.hal.calls if what == "phases"]


def test_a_short_budget_on_l2_and_l3_switches_the_gun_to_its_l1(wallbox):
    """The house takes 19 A on L2 and L3: of a 25 A connection less 2 A margin, three phases
    leave 4 A, L1 alone 18 A. After phase_switch_s the offer goes, the contactor opens, the phase
    contactor leaves L2 and L3 open, and after the settling the gun gets L1's 18 A."""
    app = wallbox([5.0, 19.0, 19.0], grid_limit_a=25, phase_switch_s=10)
    assert phase_drives(app) == [3]               # driven to three at boot
    g, ps = app.guns[0], app.phase_sw[0]
    now = 0
    while not ps.target:
        app.metering.grid_ok_ms = now
        app.share(now)
        assert g.allocation_a == 0                # 4 A on three phases: paused meanwhile
        now += 250
        assert now <= 10500
    assert now >= 10000
    app.share(now)
    assert g.allocation_a == 0 and phase_drives(app) == [3, 1]   # the contactor is open: switched
    assert app.phases(1) == 1 and app._loads[0] == (0,)
    now += SETTLE_MS
    app.metering.grid_ok_ms = now
    app.share(now)
    assert round(g.allocation_a) == 18
    assert any("switching to 1 phase" in n for n in app.notes), app.notes
    assert app.hal.__dict__.get("phases_under_load", 0) == 0


def test_a_switch_waits_for_the_main_contactor_to_open(wallbox):
    app = wallbox([5.0, 19.0, 19.0], grid_limit_a=25, phase_switch_s=10)
    g, ps = app.guns[0], app.phase_sw[0]
    g.contactor = True                            # an EV charging
    now = 0
    for now in range(0, 20000, 250):
        app.metering.grid_ok_ms = now
        app.share(now)
    assert ps.target == 1 and phase_drives(app) == [3] and g.allocation_a == 0
    g.contactor = False
    app.share(now + 250)
    assert phase_drives(app) == [3, 1]


def test_solar_on_one_phase_when_three_would_pause(wallbox):
    """2.5 kW exported: 3.6 A on each of three phases, 10.9 A on one."""
    app = wallbox([-3.6, -3.6, -3.6], grid_limit_a=25, phase_switch_s=10, solar_mode="on", solar_start_s=0)
    app.metering.grid_reading.power_w = -2500.0
    ps = app.phase_sw[0]
    for now in range(0, 11000, 250):
        app.metering.grid_ok_ms = now
        app.share(now)
    assert ps.target == 1
    app.share(11000)
    assert phase_drives(app) == [3, 1]
