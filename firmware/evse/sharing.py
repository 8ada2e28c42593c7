# One power budget for all guns. Pure: the app passes the limits and the offers, this returns
# an allocation per gun that keeps the sum under the site limit during transitions too:
# a gun that lowers its offer keeps its old value "committed" until its EV had time to follow,
# and raises only come out of what is left (lower first, wait, then raise).
from micropython import const

EV_FOLLOW_MS = const(5000)  # an EV has 5 s to follow a lower PWM offer (IEC 61851-1 A.5.1)


def equal_split(limits, total_a, min_a):
    """Targets per gun: the total shared equally, no gun above its own limit (water-filling);
    when the total cannot give every wanting gun `min_a`, the last guns pause (0)."""
    n = len(limits)
    targets = [0.0] * n
    wanting = [i for i in range(n) if limits[i] >= min_a]
    while wanting and total_a / len(wanting) < min_a:
        wanting.pop()
    remaining = total_a
    # Water-filling: guns whose own limit is under the equal share take their limit first.
    for i in sorted(wanting, key=lambda k: limits[k]):
        share = remaining / len(wanting)
        give = limits[i] if limits[i] < share else share
        targets[i] = give
        remaining -= give
        wanting.remove(i)
    return targets


class Sharing:
    def __init__(self, guns, min_a=6):
        self.min_a = min_a
        # Per gun the offers of the last EV_FOLLOW_MS as [start_ms, amps]; an EV may still draw
        # any of them, so the highest is "committed" until it has been gone for EV_FOLLOW_MS.
        self._offers = [[[0, 0.0]] for _ in range(guns)]
        self.committed = [0.0] * guns

    def _commit(self, i, now_ms, offered_a):
        offers = self._offers[i]
        if offers[-1][1] != offered_a:
            offers.append([now_ms, offered_a])
        while len(offers) > 1 and now_ms - offers[1][0] >= EV_FOLLOW_MS:
            offers.pop(0)  # that offer ended long enough ago for the EV to have followed
        top = 0.0
        for start, amps in offers:
            if amps > top:
                top = amps
        self.committed[i] = top
        return top

    def update(self, now_ms, total_a, limits, offered):
        """Allocation per gun. `limits`: what each gun could take now (0 = not charging);
        `offered`: what each pilot offers now."""
        n = len(limits)
        committed = [self._commit(i, now_ms, offered[i]) for i in range(n)]
        targets = equal_split(limits, total_a, self.min_a)
        budget = total_a - sum(committed)
        alloc = [0.0] * n
        for i in range(n):
            if targets[i] <= committed[i]:
                alloc[i] = targets[i]
                continue
            extra = targets[i] - committed[i]
            if extra > budget:
                extra = budget if budget > 0 else 0.0
            give = committed[i] + extra
            if give < self.min_a:
                give = 0.0
                extra = 0.0
            alloc[i] = give
            budget -= extra
        return alloc
