# The DC cabinet's power modules: how many whole modules each dispenser gets. Pure: the cabinet's
# sequencing passes what each EV asks and what each dispenser holds, this returns the counts; it
# switches the contactor matrix (a module moves only after its dispenser ramped down).
#
# Fairness is counted in whole modules, the unit the matrix can move:
# - every active dispenser (its EV asks > 0) gets one module while modules last; when there are
#   more active dispensers than modules: the better rank first, then those already holding one
#   (no switching), then the lowest index;
# - the rest is filled level by level (max-min fair), a rank before the next: a module goes to
#   the dispenser with the fewest, up to the modules its EV can use fully, floor(demand / module);
# - only when every dispenser of the rank has those, a last module goes to those whose EV asks a
#   part of a module more (at most ceil(demand / module) in all): what one EV would leave unused
#   of a module goes to an EV that uses it whole;
# - fewest switchings: at each level ties go to the dispensers that hold that module now, and a
#   part-used last module stays where it is (moving it would change a share by less than one
#   module's worth of demand).
# allocate(d, allocate(d, c)) == allocate(d, c): a result is kept when nothing changes.

EPS = 1e-9


def _floor(x):
    return int(x + EPS)


def _ceil(x):
    k = int(x - EPS)
    return k + 1 if x - EPS > k else k


def allocate(demands_kw, current, modules, module_kw, prio=None):
    """Whole power modules per dispenser. demands_kw[i]: what dispenser i's EV asks now (0: no EV
    or not charging); current[i]: modules it holds now; modules: how many the cabinet has;
    module_kw: each module's power; prio: rank per dispenser, lower served first (None: all
    equal). Returns a list of module counts with sum <= modules."""
    n = len(demands_kw)
    if current is None:
        current = [0] * n
    if prio is None:
        prio = [0] * n
    alloc = [0] * n
    need = [0] * n    # modules that cover the demand: ceil
    whole = [0] * n   # modules the EV uses fully: floor, at least the guaranteed one
    active = []
    for i in range(n):
        d = demands_kw[i]
        if d > EPS:
            units = d / module_kw
            need[i] = _ceil(units)
            w = _floor(units)
            whole[i] = w if w > 0 else 1
            active.append(i)
    # One module per active dispenser while they last.
    if len(active) > modules:
        active.sort(key=lambda k: (prio[k], 0 if current[k] > 0 else 1, k))
        for i in active[:modules]:
            alloc[i] = 1
        return alloc
    for i in active:
        alloc[i] = 1
    left = modules - len(active)
    for rank in sorted(set(prio[i] for i in active)):
        if left <= 0:
            break
        group = [i for i in active if prio[i] == rank]
        # Level filling in whole modules: the fewest first, at a tie the one holding it now.
        while left > 0:
            best = -1
            for i in group:
                if alloc[i] >= whole[i]:
                    continue
                if (best < 0 or alloc[i] < alloc[best]
                        or (alloc[i] == alloc[best] and current[i] > alloc[i] and current[best] <= alloc[best])):
                    best = i
            if best < 0:
                break
            alloc[best] += 1
            left -= 1
        if left <= 0:
            break
        # Part-used last modules: kept where they are, then the largest remainder first.
        rest = [i for i in group if alloc[i] < need[i]]
        rest.sort(key=lambda k: (0 if current[k] > alloc[k] else 1, alloc[k] * module_kw - demands_kw[k], k))
        for i in rest[:left]:
            alloc[i] += 1
        left -= len(rest[:left])
    return alloc


def moves(current, target):
    """Module moves from one allocation to another: the modules each dispenser gains."""
    total = 0
    for c, t in zip(current, target):
        if t > c:
            total += t - c
    return total
