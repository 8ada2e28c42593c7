"""The bench's DC pieces: the mixed fleet's curves, and the cabinet with its modules on CAN in the
loop (bench/dc_can.py), which must deliver through the modules' setpoints and see what it claims
to measure."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import sharing
from bench.dc_can import CanLoop

CURVES = sharing.FLEET_SLOW + sharing.FLEET_FAST


@given(st.sampled_from(CURVES), st.floats(0.0, 1.0))
def test_a_fleet_car_takes_what_its_curve_gives_between_the_points(model, soc):
    ev = sharing.CurveEv(__import__("random").Random(0), 0, model)
    ev.soc = soc
    points = model[2]
    for s, kw in points:
        if abs(soc * 100 - s) < 1e-9:
            assert ev.accept_kw() == pytest.approx(kw)
    below = max(p for p in points if p[0] <= soc * 100)
    above = min((p for p in points if p[0] >= soc * 100), default=below)
    assert min(below[1], above[1]) - 1e-9 <= ev.accept_kw() <= max(below[1], above[1]) + 1e-9


def test_the_mixed_fleet_has_cars_on_both_sides_of_a_dispensers_static_share():
    share_kw = sharing.MODULES // sharing.DISPENSERS * sharing.MODULE_KW
    assert all(max(kw for _, kw in m[2]) < share_kw for m in sharing.FLEET_SLOW)
    assert all(max(kw for _, kw in m[2]) > share_kw for m in sharing.FLEET_FAST)
    evs = sharing.dc_mixed_evs(1, 12)
    slow = sum(1 for ev in evs if ev.max_kw < share_kw)
    assert 0.35 < slow / len(evs) < 0.65


@pytest.mark.parametrize("protocol", ["winline", "infy"])
def test_the_cabinet_on_can_delivers_through_the_modules_setpoints(protocol):
    loop = CanLoop(protocol, 6, 12, 30, 300)
    for _ in range(5):
        assert loop.second([0] * 6) == [0] * 6          # the modules found, nothing asked
    for _ in range(20):
        power = loop.second([150, 50, 0, 0, 0, 0])
    assert power[0] == pytest.approx(150, abs=0.5) and power[1] == pytest.approx(50, abs=0.5)
    on = [m for m in loop.modules if m.on]
    assert sum(m.set_a for m in on) * 400 >= 199e3        # the setpoints carry it
    assert loop.latencies_ms and max(loop.latencies_ms) < 1000
    for _ in range(20):
        power = loop.second([0, 50, 0, 0, 0, 0])
    assert power[0] == 0 and power[1] == pytest.approx(50, abs=0.5)
    figures = loop.figures(45 / 3600)
    assert figures["arcs"] == 0 and figures["module_on_switches_per_h"] > 0


@pytest.mark.parametrize("load_kw", [100, 30])   # above and below what the other modules give
def test_a_module_taken_off_under_current_counts_as_an_arc(load_kw):
    loop = CanLoop("infy", 2, 4, 40, 160)
    for _ in range(15):
        loop.second([load_kw, 0])
    k = next(k for k in range(4) if loop.fb[k] == 1 and loop.modules[k].out_a > 1)
    loop.command(k, 0)      # the matrix told behind the firmware's back
    loop.second([load_kw, 0])
    assert loop.arcs == 1
