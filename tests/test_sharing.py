"""The budget: within every phase's limit during transitions too, 0 or >= 6 A, no gun above its
own limit, max-min fair among equals, ranks served in order, what an EV does not draw reclaimed."""
from hypothesis import given, settings, strategies as st

from evse import pilot
from evse.sharing import (EV_FOLLOW_MS, RECLAIM_AFTER_MS, RESUME_EXTRA_A, Sharing, fill,
                          pause_until_all_fit)

EPS = 1e-6
THREE = (0, 1, 2)
LOADS = st.sampled_from([THREE, THREE, (0,), (1,), (2,)])   # three-phase EVs and single-phase ones
wants_st = st.lists(st.sampled_from([0, 0, 6, 10, 13, 16, 20, 32]), min_size=1, max_size=8)


@st.composite
def sites(draw, max_guns=8):
    wants = draw(st.lists(st.sampled_from([0, 6, 10, 13, 16, 20, 32]), min_size=1, max_size=max_guns))
    n = len(wants)
    loads = draw(st.lists(LOADS, min_size=n, max_size=n))
    caps = draw(st.lists(st.integers(0, 120), min_size=3, max_size=3))
    prio = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return wants, loads, caps, prio


def per_phase(alloc, loads):
    used = [0.0, 0.0, 0.0]
    for a, phases in zip(alloc, loads):
        for p in phases:
            used[p] += a
    return used


@given(sites())
def test_filling_stays_within_every_phase_and_every_want(site):
    wants, loads, caps, prio = site
    alloc = fill(wants, loads, caps, prio)
    assert all(u <= c + EPS for u, c in zip(per_phase(alloc, loads), caps))
    assert all(0 <= a <= w + EPS for a, w in zip(alloc, wants))


@given(sites())
def test_filling_is_max_min_fair_and_leaves_no_headroom_unused(site):
    """A gun given less than it wants is stopped by a full phase, and on that phase no gun of its
    rank or a later one got more than it did (max-min fairness); nothing it could use is idle."""
    wants, loads, caps, prio = site
    alloc = fill(wants, loads, caps, prio)
    used = per_phase(alloc, loads)
    for i, (a, w) in enumerate(zip(alloc, wants)):
        if a >= w - EPS:
            continue
        full = [p for p in loads[i] if used[p] >= caps[p] - 1e-4]
        assert full, (i, alloc, used, caps)
        assert any(all(alloc[j] <= a + 1e-4 for j in range(len(wants))
                       if p in loads[j] and prio[j] >= prio[i]) for p in full), (i, alloc)


@given(st.integers(1, 8), st.integers(6, 32), st.integers(0, 200))
def test_equal_evs_get_equal_shares(n, want, cap):
    alloc = fill([want] * n, [THREE] * n, [cap] * 3, [0] * n)
    assert max(alloc) - min(alloc) < 1e-9


def test_a_gun_that_takes_less_leaves_the_rest_to_the_others():
    assert fill([10, 32], [THREE, THREE], [40] * 3, [0, 0]) == [10, 30]


def test_single_phase_evs_on_different_phases_do_not_share():
    # Three 32 A single-phase EVs, one per phase, under 32 A per phase: each gets all of its phase.
    assert fill([32, 32, 32], [(0,), (1,), (2,)], [32] * 3, [0, 0, 0]) == [32, 32, 32]
    # A three-phase EV beside a single-phase one on L1: L1 is shared, the three-phase EV is held
    # to its L1 share.
    assert fill([32, 32], [THREE, (0,)], [32] * 3, [0, 0]) == [16, 16]


def test_a_lower_rank_is_served_before_a_higher_one():
    assert fill([32, 32, 32], [THREE] * 3, [40] * 3, [1, 0, 1]) == [4, 32, 4]


@given(sites(), st.lists(st.integers(0, 10**6), min_size=8, max_size=8))
def test_every_gun_gets_nothing_or_at_least_its_floor(site, since):
    wants, loads, caps, prio = site
    floors = [6.0] * len(wants)
    alloc = pause_until_all_fit(wants, loads, caps, prio, since[:len(wants)], floors)
    assert all(a <= EPS or a >= 6 - EPS for a in alloc)
    assert all(u <= c + EPS for u, c in zip(per_phase(alloc, loads), caps))


def test_the_latest_arrival_pauses_first_among_equals():
    # 16 A per phase for three EVs: not 6 A each; the one that came last waits.
    alloc = pause_until_all_fit([16, 16, 16], [THREE] * 3, [16] * 3, [0] * 3, [300, 100, 200], [6] * 3)
    assert alloc == [0, 8, 8]


def run(sharing, steps, **inputs):
    """`steps` cycles of 1 s with fixed inputs; the pilots follow the allocation at once."""
    offered = inputs.pop("offered")
    now = inputs.pop("now", 0)
    alloc = None
    for _ in range(steps):
        now += 1000
        alloc = sharing.update(now, offered=offered, **inputs)
        offered[:] = alloc
    return alloc, now


def test_what_an_ev_does_not_draw_goes_to_the_others_and_comes_back_when_it_draws_again():
    sharing = Sharing(2)
    offered = [0.0, 0.0]
    drawn = [10.0, 32.0]   # gun 1's EV takes 10 A whatever it is offered
    alloc, now = run(sharing, 3, caps=40, limits=[32, 32], offered=offered, drawn=drawn)
    assert alloc == [20, 20]
    alloc, now = run(sharing, RECLAIM_AFTER_MS // 1000 + 8, caps=40, limits=[32, 32], offered=offered,
                     drawn=drawn, now=now)
    assert alloc == [12, 28]   # 10 A drawn + the margin; the rest to gun 2
    drawn[0] = 12.0             # gun 1's EV draws what it is offered again: the cap goes
    alloc, _ = run(sharing, 8, caps=40, limits=[32, 32], offered=offered, drawn=drawn, now=now)
    assert alloc == [20, 20]


def test_a_paused_gun_resumes_only_above_the_minimum_plus_the_hysteresis():
    sharing = Sharing(3)
    offered = [0.0, 0.0, 0.0]
    alloc, now = run(sharing, 2, caps=17, limits=[32, 32, 32], offered=offered, since=[0, 1, 2])
    assert alloc[2] == 0 and sharing.paused[2]
    # 18 A would give each 6 A: enough to start, not enough to resume.
    alloc, now = run(sharing, 12, caps=18, limits=[32, 32, 32], offered=offered, since=[0, 1, 2], now=now)
    assert alloc[2] == 0
    alloc, now = run(sharing, 12, caps=3 * (6 + RESUME_EXTRA_A), limits=[32, 32, 32], offered=offered,
                     since=[0, 1, 2], now=now)
    assert alloc == [7, 7, 7] and not sharing.paused[2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(wants_st, st.integers(1, 3000)), min_size=1, max_size=30),
       st.integers(1, 8), st.lists(st.integers(6, 80), min_size=3, max_size=3), st.data())
def test_offers_plus_what_evs_may_still_draw_never_exceed_any_phase(script, n, caps, data):
    """EVs come, go and change what they can take. Each gun follows its allocation at most every
    5 s; an EV may draw its old offer for 5 s after a decrease. At every moment the sum of what
    the EVs may draw stays under every phase's limit."""
    loads = data.draw(st.lists(LOADS, min_size=n, max_size=n))
    prio = data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    sharing = Sharing(n)
    now = 0
    offered = [0.0] * n
    changed_ms = [-10**9] * n
    history = [[] for _ in range(n)]  # (t, offer) per gun
    for limits, dt in script:
        limits = (limits * n)[:n]
        end = now + dt
        while now < end:
            now += 250
            alloc = sharing.update(now, caps, limits, offered, loads=loads, drawn=offered, prio=prio)
            for i, a in enumerate(alloc):
                assert a == 0 or a >= 6
                assert a <= max(limits[i], 0) + 1e-9 or a <= offered[i]
                want = pilot.duty_pm_to_amps(pilot.amps_to_duty_pm(a)) if a >= 6 else 0.0
                if want != offered[i] and (now - changed_ms[i] >= 5000 or want < offered[i] and want == 0):
                    offered[i] = want
                    changed_ms[i] = now
                    history[i].append((now, want))
            # What each EV may draw now: the highest offer of the last EV_FOLLOW_MS.
            drawable = []
            for i in range(n):
                recent = [o for t, o in history[i] if now - t < EV_FOLLOW_MS] + [offered[i]]
                earlier = [o for t, o in history[i] if now - t >= EV_FOLLOW_MS]
                if earlier:
                    recent.append(earlier[-1])
                drawable.append(max(recent))
            used = per_phase(drawable, loads)
            assert all(u <= c + 1e-6 for u, c in zip(used, caps)), (now, drawable, caps)
