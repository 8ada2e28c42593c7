"""The DC cabinet's module allocation: whole modules, one per active dispenser while they last,
max-min fair in whole modules of demand, ranks served in order, no idle module while an EV asks
for more, and the fewest module moves among the allocations that are equally fair."""
import itertools

from hypothesis import given, settings, strategies as st

from evse.cabinet import allocate, moves


def need(d, kw):
    """Modules that cover a demand (integers here, so no float doubt)."""
    return -(-d // kw) if d > 0 else 0


def whole(d, kw):
    """Modules an EV uses fully; the first one is guaranteed anyway."""
    return max(1, d // kw) if d > 0 else 0


@st.composite
def cabinets(draw, max_n=8, max_modules=16):
    kw = draw(st.sampled_from([20, 25, 30, 40, 50]))
    n = draw(st.integers(1, max_n))
    # Exact multiples of a module, a bit above and below them, and anything.
    demand = st.one_of(st.just(0), st.integers(1, 12).map(lambda k: k * kw),
                       st.integers(1, 12).map(lambda k: k * kw + 1), st.integers(1, 12).map(lambda k: k * kw - 1),
                       st.integers(1, 400))
    demands = draw(st.lists(demand, min_size=n, max_size=n))
    modules = draw(st.integers(0, max_modules))
    current = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    prio = draw(st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    return demands, current, modules, kw, prio


def ranks(prio, n):
    return [0] * n if prio is None else prio


def guaranteed_order(demands, current, prio):
    """Who gets the first modules when there are fewer modules than active dispensers."""
    p = ranks(prio, len(demands))
    active = [i for i, d in enumerate(demands) if d > 0]
    return sorted(active, key=lambda k: (p[k], 0 if current[k] > 0 else 1, k))


def is_fair(demands, x, current, modules, kw, prio):
    """The rules of evse.cabinet, stated on a result rather than computed: bounds, the guaranteed
    module, no idle module while an EV asks for more, max-min fairness in whole modules."""
    n = len(demands)
    p = ranks(prio, n)
    if len(x) != n or sum(x) > modules or any(c < 0 for c in x):
        return False
    if any(x[i] > need(demands[i], kw) for i in range(n)):
        return False
    order = guaranteed_order(demands, current, prio)
    if len(order) > modules:
        return all(x[i] == (1 if i in order[:modules] else 0) for i in range(n))
    if any(x[i] < 1 for i in order):
        return False
    if sum(x) < modules and any(x[i] < need(demands[i], kw) for i in range(n)):
        return False   # an idle module while an EV could use it
    for i in order:
        if x[i] < need(demands[i], kw):
            # A better-ranked EV asks for more: worse ranks have only their guaranteed module.
            if any(x[j] > 1 for j in order if p[j] > p[i]):
                return False
        if x[i] < whole(demands[i], kw):
            # It could use a whole module more: no dispenser of its rank has two more than it, or
            # a part-used module.
            for j in order:
                if p[j] == p[i] and (x[j] > x[i] + 1 or x[j] > whole(demands[j], kw)):
                    return False
    return True


@given(cabinets())
def test_whole_modules_within_the_cabinet_and_within_what_each_ev_asks(cab):
    demands, current, modules, kw, prio = cab
    x = allocate(demands, current, modules, kw, prio)
    assert len(x) == len(demands) and all(isinstance(c, int) and c >= 0 for c in x)
    assert sum(x) <= modules
    for c, d in zip(x, demands):
        assert c <= need(d, kw)
        assert d > 0 or c == 0


@given(cabinets())
def test_every_active_dispenser_has_a_module_while_modules_last(cab):
    demands, current, modules, kw, prio = cab
    x = allocate(demands, current, modules, kw, prio)
    active = [i for i, d in enumerate(demands) if d > 0]
    if modules >= len(active):
        assert all(x[i] >= 1 for i in active)
    else:
        # Better rank first, then those that hold a module now, then the lowest index.
        chosen = guaranteed_order(demands, current, prio)[:modules]
        assert [i for i in range(len(x)) if x[i]] == sorted(chosen) and max(x, default=0) <= 1


@given(cabinets())
def test_no_module_idles_while_an_ev_asks_for_more(cab):
    demands, current, modules, kw, prio = cab
    x = allocate(demands, current, modules, kw, prio)
    if sum(x) < modules:
        assert x == [need(d, kw) for d in demands]


@given(cabinets())
def test_max_min_fair_in_whole_modules_and_ranks_in_order(cab):
    """A dispenser whose EV could use a whole module more has no one of its rank with two modules
    more than it, nor with a part-used module; a worse rank has only its guaranteed module while a
    better-ranked EV asks for more."""
    demands, current, modules, kw, prio = cab
    assert is_fair(demands, allocate(demands, current, modules, kw, prio), current, modules, kw, prio)


@given(cabinets())
def test_equal_demands_of_equal_rank_get_equal_counts_within_one_module(cab):
    demands, current, modules, kw, prio = cab
    x = allocate(demands, current, modules, kw, prio)
    p = ranks(prio, len(demands))
    for i, j in itertools.combinations(range(len(demands)), 2):
        if demands[i] == demands[j] > 0 and p[i] == p[j] and modules >= sum(1 for d in demands if d > 0):
            assert abs(x[i] - x[j]) <= 1


@given(cabinets())
def test_a_result_is_kept_when_nothing_changes(cab):
    demands, current, modules, kw, prio = cab
    x = allocate(demands, current, modules, kw, prio)
    assert allocate(demands, x, modules, kw, prio) == x


@settings(max_examples=300)
@given(cabinets(max_n=4, max_modules=7))
def test_the_fewest_moves_among_the_equally_fair_allocations(cab):
    """Against every allocation of a small cabinet: the result is fair, and no fair allocation
    needs fewer module moves from what the dispensers hold now."""
    demands, current, modules, kw, prio = cab
    x = allocate(demands, current, modules, kw, prio)
    fair = [list(y) for y in itertools.product(*(range(need(d, kw) + 1) for d in demands))
            if is_fair(demands, list(y), current, modules, kw, prio)]
    assert x in fair
    assert moves(current, x) == min(moves(current, y) for y in fair)


@given(cabinets(max_n=4, max_modules=7))
def test_an_equally_fair_allocation_held_now_is_kept(cab):
    """Whatever fair allocation the dispensers hold (ties broken any way), nothing moves."""
    demands, _, modules, kw, prio = cab
    for y in itertools.product(*(range(need(d, kw) + 1) for d in demands)):
        y = list(y)
        if is_fair(demands, y, y, modules, kw, prio):
            assert allocate(demands, y, modules, kw, prio) == y


def test_moves_counts_the_modules_each_dispenser_gains():
    assert moves([3, 1], [2, 2]) == 1
    assert moves([2, 2, 2], [2, 2, 2]) == 0
    assert moves([0, 0, 4], [2, 2, 0]) == 4
    assert moves([0, 0], [1, 1]) == 2   # switched in from idle
    assert moves([2, 2], [1, 1]) == 0   # released to idle


# ---- worked examples ---------------------------------------------------------------------------
# sim-dc2: 4 x 40 kW. 150 kW and 50 kW: one each, then the 150 kW EV uses two more whole (3 x 40 =
# 120 <= 150); a second module for the 50 kW EV would deliver 10 kW of its 40: it goes to the
# other EV, which uses it fully. [3, 1] delivers 120 + 40 = 160 kW; [2, 2] would deliver 130.
def test_dc2_a_150_kw_and_a_50_kw_ev_get_three_and_one_modules():
    assert allocate([150, 50], [0, 0], 4, 40) == [3, 1]


def test_dc2_a_part_used_module_moves_to_an_ev_that_uses_it_whole():
    assert allocate([150, 50], [2, 2], 4, 40) == [3, 1]


def test_dc2_equal_evs_keep_the_split_they_have():
    assert allocate([150, 150], [3, 1], 4, 40) == [2, 2]   # 3:1 is not within one module: fixed
    assert allocate([150, 100], [0, 0], 4, 40) == [2, 2]
    # 100 kW and 100 kW on 5 modules: 2 + 2 used whole, the fifth part-used by either; it stays.
    assert allocate([100, 100], [2, 3], 5, 40) == [2, 3]
    assert allocate([100, 100], [3, 2], 5, 40) == [3, 2]


def test_dc2_one_ev_gets_what_it_asks_and_no_more():
    assert allocate([150, 0], [2, 2], 4, 40) == [4, 0]
    assert allocate([90, 0], [0, 0], 4, 40) == [3, 0]     # ceil(90 / 40); the fourth idles
    assert allocate([0, 0], [2, 2], 4, 40) == [0, 0]


# sim-dc6: 12 x 30 kW, six dispensers.
def test_dc6_six_hungry_evs_get_two_modules_each():
    assert allocate([350] * 6, [0] * 6, 12, 30) == [2] * 6


def test_dc6_a_new_ev_takes_modules_from_the_ones_with_most():
    before = allocate([350] * 5 + [0], [0] * 6, 12, 30)
    assert before == [3, 3, 2, 2, 2, 0]
    after = allocate([350] * 6, before, 12, 30)
    assert after == [2] * 6 and moves(before, after) == 2


def test_dc6_a_small_ev_keeps_one_module_and_the_rest_fills_level_by_level():
    # 50 kW uses one 30 kW module whole; 20 kW more is less than a module's worth while the big
    # EVs could use whole ones. The others: one each, then level by level.
    x = allocate([350, 150, 50, 0, 100, 200], [0] * 6, 12, 30)
    assert x == [3, 3, 1, 0, 3, 2]


def test_dc6_ties_at_a_level_go_to_the_dispensers_that_hold_the_module():
    # 3 modules for 4 hungry EVs above level 2: the ones holding a third module keep it.
    x = allocate([350, 150, 50, 0, 100, 200], [2, 3, 1, 0, 3, 3], 12, 30)
    assert x == [2, 3, 1, 0, 3, 3]
    # Two hold a third: they keep it; the last goes to the lowest index.
    x = allocate([350, 150, 50, 0, 100, 200], [2, 3, 1, 0, 2, 3], 12, 30)
    assert x == [3, 3, 1, 0, 2, 3]


def test_dc6_a_tapering_ev_gives_up_a_module_it_cannot_use_fully():
    # 119 kW uses three 30 kW modules whole; its fourth goes to an EV that uses one whole.
    assert allocate([119, 350], [4, 8], 12, 30) == [3, 9]
    # ... but keeps it when no one else can use it.
    assert allocate([119, 200], [4, 7], 12, 30) == [4, 7]


def test_dc6_part_used_modules_go_to_the_largest_remainder_and_stay_there():
    # Both use 2 x 20 kW whole; one module left: 55 kW asks 15 more, 45 kW 5 more.
    assert allocate([45, 55], [0, 0], 5, 20) == [2, 3]
    # The 45 kW EV holds it now: moving it would raise the other by less than a module: it stays.
    assert allocate([45, 55], [3, 2], 5, 20) == [3, 2]


def test_dc6_priority_serves_the_better_rank_before_the_others():
    x = allocate([350, 350, 350], [0, 0, 0], 12, 30, prio=[1, 0, 1])
    assert x == [1, 10, 1]
    # A better rank gets its part-used module before a worse rank gets a whole one.
    assert allocate([100, 350], [0, 0], 6, 30, prio=[0, 1]) == [4, 2]


def test_more_active_dispensers_than_modules():
    # Two modules, three EVs: the better rank, then the one that holds a module, then the lowest index.
    assert allocate([50, 50, 50], [0, 0, 1], 2, 30) == [1, 0, 1]
    assert allocate([50, 50, 50], [0, 0, 1], 2, 30, prio=[1, 0, 1]) == [0, 1, 1]
    assert allocate([50, 50, 50], [0, 0, 0], 0, 30) == [0, 0, 0]
