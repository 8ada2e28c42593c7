"""Charging from the solar surplus (evse.solar, docs/grid.md): the guns take what the site exports
plus what they draw themselves plus the allowed import; a session starts only after the surplus
sufficed for the minimum current for solar_start_s, and pauses only after it fell short for
solar_stop_s, at the minimum meanwhile."""
from hypothesis import given, strategies as st

from evse.solar import ON, OFF, SHORT, VOLTS, Solar

MIN_A = 6
START_MS, STOP_MS = 60_000, 600_000

steps = st.lists(st.tuples(st.integers(min_value=0, max_value=120_000),           # ms since the last step
                           st.floats(min_value=-30_000, max_value=30_000),          # net power at the meter
                           st.floats(min_value=0, max_value=22_000),                # the guns' draw then
                           st.sampled_from([1, 2, 3])), min_size=1, max_size=60)


@given(steps, st.integers(min_value=0, max_value=5000))
def test_the_guns_take_no_more_than_the_surplus_start_late_and_stop_late(script, import_w):
    solar = Solar()
    now = 0
    enough_since = None     # when the surplus last began to suffice
    short_since = None      # when, once charging, it last began to fall short
    charging = False
    for dt, net_w, guns_w, phases in script:
        now += dt
        cap = solar.cap(now, net_w, guns_w, import_w, phases, MIN_A, START_MS, STOP_MS)
        surplus_a = (guns_w - net_w + import_w) / (VOLTS * phases)
        enough = surplus_a >= MIN_A
        enough_since = (enough_since if enough_since is not None else now) if enough else None
        if not charging:
            # a start needs the surplus to have sufficed at every step for START_MS
            started = enough and now - enough_since >= START_MS
            assert (cap > 0) == started, (now, cap, surplus_a)
            charging = started
            if started:
                assert cap == surplus_a and solar.state == ON
            continue
        if enough:
            short_since = None
            assert cap == surplus_a and solar.state == ON   # never more than the surplus
            continue
        short_since = now if short_since is None else short_since
        if now - short_since >= STOP_MS:
            assert cap == 0 and solar.state == OFF
            charging, short_since, enough_since = False, None, None
        else:
            assert cap == MIN_A and solar.state == SHORT      # the minimum while it is short


def test_no_reading_or_no_ev_pauses_at_once_and_starts_the_wait_again():
    solar = Solar()
    assert solar.cap(0, -5000, 0, 0, 3, MIN_A, START_MS, STOP_MS) == 0
    assert solar.cap(START_MS, -5000, 0, 0, 3, MIN_A, START_MS, STOP_MS) > 0
    assert solar.cap(START_MS + 1, None, 0, 0, 3, MIN_A, START_MS, STOP_MS) == 0 and solar.state == OFF
    assert solar.surplus_w is None
    assert solar.cap(START_MS + 2, -5000, 0, 0, 3, MIN_A, START_MS, STOP_MS) == 0   # the wait begins anew
    assert solar.cap(START_MS + 3, -5000, 0, 0, 0, MIN_A, START_MS, STOP_MS) == 0   # no gun wants power
    assert solar.surplus_w == 5000


def test_a_surplus_of_9_kw_gives_13_a_on_each_of_three_phases():
    solar = Solar()
    solar.cap(0, -9000, 0, 0, 3, MIN_A, 0, STOP_MS)
    assert round(solar.cap(1, -9000, 0, 0, 3, MIN_A, 0, STOP_MS), 1) == 13.0
    # The guns drawing 6 kW behind the meter that now exports 3 kW: still 9 kW for them.
    assert round(solar.cap(2, -3000, 6000, 0, 3, MIN_A, 0, STOP_MS), 1) == 13.0


def test_a_rebase_keeps_the_waits():
    solar = Solar()
    solar.cap(100_000, -9000, 0, 0, 3, MIN_A, START_MS, STOP_MS)
    solar.rebase(90_000)
    assert solar.cap(10_000 + START_MS - 1, -9000, 0, 0, 3, MIN_A, START_MS, STOP_MS) == 0
    assert solar.cap(10_000 + START_MS, -9000, 0, 0, 3, MIN_A, START_MS, STOP_MS) > 0
