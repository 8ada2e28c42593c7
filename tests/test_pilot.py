"""Duty <-> amps (IEC 61851-1 Tables A.7/A.8), classification and debounce."""
import pytest
from hypothesis import example, given, strategies as st

from evse import pilot

BOARD_PILOT = {"a_min_mv": 10500, "b_min_mv": 7500, "c_min_mv": 4500, "d_min_mv": 1500,
               "e_min_mv": -1500, "f_max_mv": -10500, "hysteresis_mv": 300, "diode_max_mv": -10500}
THR = pilot.thresholds(BOARD_PILOT)
amps = st.floats(min_value=6, max_value=80, allow_nan=False)


@pytest.mark.parametrize("a, pm", [(6, 100), (10, 166), (16, 266), (32, 533), (51, 850), (52, 850), (80, 960)])
def test_duty_for_known_currents(a, pm):
    assert pilot.amps_to_duty_pm(a) == pm


@pytest.mark.parametrize("pm, a", [(100, 6.0), (90, 6.0), (533, 31.98), (850, 51.0), (900, 65.0), (960, 80.0),
                                   (965, 80.0), (50, 0.0), (20, 0.0), (990, 0.0), (1000, 0.0)])
def test_amps_an_ev_reads_from_duty(pm, a):
    assert pilot.duty_pm_to_amps(pm) == pytest.approx(a)


@given(amps)
@example(52.625)
@example(52.75)
def test_round_trip_never_offers_more_than_asked_and_loses_little(a):
    back = pilot.duty_pm_to_amps(pilot.amps_to_duty_pm(a))
    assert back <= a + 1e-9
    # Resolution: 0.06 A per per-mille up to 51 A, 0.25 A above; the upper range's first duty
    # above 85 % is 85.1 % = 52.75 A, so 51..52.75 A reads as 51 A.
    assert back >= a - (0.06 if a <= 51 else 1.75 if a < 52.75 else 0.25) - 1e-9


@given(amps, amps)
def test_duty_rises_with_current(a, b):
    lo, hi = min(a, b), max(a, b)
    assert pilot.amps_to_duty_pm(lo) <= pilot.amps_to_duty_pm(hi)


@given(st.integers(80, 970), st.integers(80, 970))
def test_read_current_rises_with_duty(p, q):
    lo, hi = min(p, q), max(p, q)
    assert pilot.duty_pm_to_amps(lo) <= pilot.duty_pm_to_amps(hi)


@given(st.floats(-100, 5.99), st.floats(80.01, 1000))
def test_offers_clamp_to_the_pwm_range(low, high):
    assert pilot.amps_to_duty_pm(low) == 100
    assert pilot.amps_to_duty_pm(high) == 960


def test_five_percent_means_digital_communication():
    assert pilot.is_digital(pilot.DUTY_DIGITAL_PM)
    assert pilot.duty_pm_to_amps(pilot.DUTY_DIGITAL_PM) == 0.0
    assert not pilot.is_digital(100)


BANDS = [("A", 10500, 14000), ("B", 7500, 10500), ("C", 4500, 7500), ("D", 1500, 4500),
         ("E", -1500, 1500), ("X", -10500, -1500), ("F", -14000, -10500)]


@given(st.sampled_from(BANDS), st.data(), st.sampled_from("ABCDEFX"))
def test_levels_well_inside_a_band_classify_to_it_whatever_came_before(band, data, prev):
    letter, lo, hi = band
    mv = data.draw(st.integers(lo + 301, hi - 301))
    assert pilot.classify(mv, prev, THR) == letter


@given(st.integers(0, 299))
def test_hysteresis_keeps_the_previous_state_on_a_band_edge(offset):
    edge = BOARD_PILOT["b_min_mv"]  # the B | C edge
    assert pilot.classify(edge + offset, "C", THR) == "C"
    assert pilot.classify(edge - offset, "B", THR) == "B"


def test_hysteresis_edges_exactly():
    edge = BOARD_PILOT["b_min_mv"]
    assert pilot.classify(edge + 299, "C", THR) == "C"
    assert pilot.classify(edge + 300, "C", THR) == "B"
    assert pilot.classify(edge - 300, "B", THR) == "B"
    assert pilot.classify(edge - 301, "B", THR) == "C"


# Thresholds as a board might set them: descending, with gaps as small as the hysteresis or none.
thresholds = st.lists(st.integers(-14000, 14000), min_size=6, max_size=6, unique=True).map(
    lambda edges: tuple(sorted(edges, reverse=True))).flatmap(
    lambda edges: st.tuples(st.just(edges), st.integers(0, 1000), st.integers(-14000, 0)).map(
        lambda t: t[0] + (t[1], t[2])))


@given(thresholds, st.sampled_from("ABCDEFX"), st.integers(-20000, 20000) | st.floats(-20000, 20000))
def test_a_level_inside_its_letter_s_band_classifies_to_that_letter(thr, letter, mv):
    # The control tick skips classify while the level stays in the band of the last letter.
    lo, hi = pilot.band(letter, thr)
    if lo <= mv < hi:
        assert pilot.classify(mv, letter, thr) == letter


@given(thresholds, st.sampled_from("ABCDE"))
def test_the_band_of_a_letter_is_not_empty_when_classify_can_keep_it(thr, letter):
    lo, hi = pilot.band(letter, thr)
    if pilot.classify(lo, letter, thr) == letter:
        assert lo < hi


@pytest.mark.parametrize("low, ok", [(-12000, True), (-10500, True), (-10400, False), (-9000, False), (0, False)])
def test_diode_check_needs_the_low_plateau_at_minus_12v(low, ok):
    assert pilot.diode_ok(low, THR) is ok


@given(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(1, 200)), max_size=60))
def test_debounce_reports_a_value_exactly_when_it_held_for_the_hold_time(samples):
    d = pilot.Debounce(300, "A")
    now, reported = 0, "A"
    run_value, run_start = "A", 0
    for value, dt in samples:
        now += dt
        if value != run_value:
            run_value, run_start = value, now
        out = d.feed(value, now)
        if out != reported:
            assert out == run_value and now - run_start >= 300
            reported = out
        if now - run_start >= 300:
            assert out == run_value
