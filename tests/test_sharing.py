"""The budget: within the limit during transitions, 0 or >= 6 A, no gun above its own limit."""
from hypothesis import given, settings, strategies as st

from evse import pilot
from evse.sharing import EV_FOLLOW_MS, Sharing, equal_split

limits_st = st.lists(st.sampled_from([0, 0, 6, 10, 13, 16, 20, 32]), min_size=1, max_size=8)


@given(limits_st, st.integers(0, 120))
def test_targets_respect_total_minimum_and_each_gun(limits, total):
    targets = equal_split(limits, total, 6)
    assert sum(targets) <= total + 1e-9
    for t, lim in zip(targets, limits):
        assert t == 0 or 6 <= t <= lim


@given(st.integers(1, 8), st.integers(6, 32), st.integers(6, 200))
def test_equal_evs_get_equal_shares(n, lim, total):
    targets = [t for t in equal_split([lim] * n, total, 6) if t > 0]
    assert not targets or max(targets) - min(targets) < 1e-9


def test_a_gun_with_a_low_limit_leaves_the_rest_to_the_others():
    assert equal_split([10, 32], 40, 6) == [10, 30]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(limits_st, st.integers(1, 3000)), min_size=1, max_size=30),
       st.integers(1, 8), st.integers(6, 80))
def test_offers_plus_what_evs_may_still_draw_never_exceed_the_limit(script, n, total):
    """EVs come, go and change what they can take. Each gun follows its allocation at most every
    5 s; an EV may draw its old offer for 5 s after a decrease. At every moment the sum of what
    the EVs may draw stays under the site limit."""
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
            alloc = sharing.update(now, total, limits, offered)
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
            assert sum(drawable) <= total + 1e-6, (now, drawable, total)
