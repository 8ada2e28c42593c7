# One power budget for all guns. Pure: the app passes the limits and what each gun and EV does,
# this returns an allocation per gun (amps per phase) that
# - stays within every phase's budget, during transitions too: a gun that lowers its offer keeps
#   its old value "committed" until its EV had time to follow, and raises only come out of what
#   is left (lower first, wait, then raise);
# - is max-min fair among guns of equal rank (progressive filling over the phases each gun
#   loads), serves lower ranks first (fifo, priority), and gives what an EV does not draw to the
#   others (reclaim);
# - is 0 or at least min_a: when the budget cannot give every gun min_a, the last-ranked gun on
#   the short phase pauses; a paused gun resumes only at min_a + RESUME_EXTRA_A (hysteresis).
from micropython import const

from evse import slices, ticks

EV_FOLLOW_MS = const(5000)       # an EV has 5 s to follow a lower PWM offer (IEC 61851-1 A.5.1)
RECLAIM_MARGIN_A = 2.0           # an EV drawing this much under its offer ...
RECLAIM_AFTER_MS = const(10000)  # ... for this long gets drawn + margin; the rest goes to others
RESUME_EXTRA_A = 1.0
PHASES = (0, 1, 2)
EPS = 1e-6


def fill(wants, loads, caps, prio):
    """Progressive filling: every gun of the best rank (lowest `prio`) rises at the same pace
    until it has what it wants or a phase it loads is full; then the next rank shares what is
    left. `caps`: amps per phase. Returns the amps per gun."""
    n = len(wants)
    alloc = [0.0] * n
    left = list(caps)
    ranks = sorted(set(prio[i] for i in range(n) if wants[i] > EPS))
    for rank in ranks:
        rising = [i for i in range(n) if prio[i] == rank and wants[i] > EPS]
        while rising:
            users = [0, 0, 0]
            for i in rising:
                for p in loads[i]:
                    users[p] += 1
            step = min(wants[i] - alloc[i] for i in rising)
            for p in PHASES:
                if users[p] and left[p] / users[p] < step:
                    step = left[p] / users[p]
            if step < 0:
                step = 0.0
            for i in rising:
                alloc[i] += step
                for p in loads[i]:
                    left[p] -= step
            rising = [i for i in rising if alloc[i] < wants[i] - EPS
                      and all(left[p] > EPS for p in loads[i])]
    return alloc


def pause_until_all_fit(wants, loads, caps, prio, since, floors):
    """Fills; while a gun gets less than its floor, pauses the last-ranked gun (highest prio,
    then latest arrival) among those that load its phases, and fills again. Returns the amps
    per gun: each 0 or at least its floor."""
    return slices.run(pausing(wants, loads, caps, prio, since, floors))


def pausing(wants, loads, caps, prio, since, floors):
    """pause_until_all_fit, yielding after each fill (a site's 16 guns: a fill is about 25 ms at
    RP2040 speed, and a short budget pauses one gun per fill)."""
    wants = list(wants)
    while True:
        alloc = fill(wants, loads, caps, prio)
        yield
        short = [i for i in range(len(wants)) if wants[i] > EPS and alloc[i] < floors[i] - EPS]
        if not short:
            return alloc
        phases = set()
        for i in short:
            for p in loads[i]:
                phases.add(p)
        victim = -1
        for i in range(len(wants)):
            if wants[i] <= EPS or not any(p in phases for p in loads[i]):
                continue
            if victim < 0 or (prio[i], since[i]) > (prio[victim], since[victim]):
                victim = i
        wants[victim] = 0.0


class Sharing:
    def __init__(self, guns, min_a=6):
        self.min_a = min_a
        # Per gun the offers of the last EV_FOLLOW_MS as [start_ms, amps]; an EV may still draw
        # any of them, so the highest is "committed" until it has been gone for EV_FOLLOW_MS.
        self._offers = [[[0, 0.0]] for _ in range(guns)]
        self.committed = [0.0] * guns
        self.paused = [False] * guns      # wanted power but was given none
        self._under_since = [None] * guns  # since when the EV draws well under its offer
        self.reclaimed = [None] * guns    # the cap reclaim set, or None

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        for offers in self._offers:
            for o in offers:
                o[0] = ticks.back(o[0], d)
        ticks.back_all(self._under_since, d)

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

    def _reclaim(self, i, now_ms, limit, offered, drawn):
        # What the gun should be given at most: its limit, or what its EV draws plus a margin
        # once it has drawn well under the offer for a while; as it draws up to that, the cap goes.
        if drawn is None or limit <= 0 or offered <= 0:
            self._under_since[i] = None
            self.reclaimed[i] = None
            return limit
        cap = self.reclaimed[i]
        if cap is not None and drawn >= cap - RECLAIM_MARGIN_A / 2:
            cap = None
            self._under_since[i] = None
        if drawn < offered - RECLAIM_MARGIN_A:
            if self._under_since[i] is None:
                self._under_since[i] = now_ms
            elif now_ms - self._under_since[i] >= RECLAIM_AFTER_MS:
                cap = drawn + RECLAIM_MARGIN_A
        else:
            self._under_since[i] = None
        if cap is not None and cap < self.min_a:
            cap = self.min_a
        self.reclaimed[i] = cap
        return limit if cap is None or cap > limit else cap

    def update(self, now_ms, caps, limits, offered, loads=None, drawn=None, prio=None, since=None):
        """Allocation per gun (steps, taken at once)."""
        return slices.run(self.steps(now_ms, caps, limits, offered, loads, drawn, prio, since))

    def steps(self, now_ms, caps, limits, offered, loads=None, drawn=None, prio=None, since=None):
        """Allocation per gun, as a generator that yields between its stages (slices.run_async),
        so that no step of a site's sharing holds the loop long. `caps`: amps per phase (or one number for all three); `limits`:
        what each gun could take now (0 = not charging); `offered`: what each pilot offers now;
        `loads`: the phases each gun's EV loads (default all three); `drawn`: what each EV draws
        (None: unknown, no reclaim); `prio`: rank per gun, lower served first (default all
        equal: fair); `since`: arrival per gun, the later pauses first among equals."""
        n = len(limits)
        if not isinstance(caps, (list, tuple)):
            caps = (caps, caps, caps)
        if loads is None:
            loads = [PHASES] * n
        if prio is None:
            prio = [0] * n
        if since is None:
            since = list(range(n))
        committed = [self._commit(i, now_ms, offered[i]) for i in range(n)]
        wants = [self._reclaim(i, now_ms, limits[i], offered[i], None if drawn is None else drawn[i])
                 for i in range(n)]
        floors = [self.min_a + (RESUME_EXTRA_A if self.paused[i] else 0.0) for i in range(n)]
        yield
        targets = yield from pausing(wants, loads, caps, prio, since, floors)
        # Lower first: a lowered gun keeps its committed amps in the budget until its EV followed.
        left = list(caps)
        for i in range(n):
            for p in loads[i]:
                left[p] -= committed[i]
        alloc = [0.0] * n
        order = sorted(range(n), key=lambda k: (prio[k], since[k]))
        for i in order:
            self.paused[i] = wants[i] > EPS and targets[i] <= EPS
            if targets[i] <= committed[i]:
                alloc[i] = targets[i]
                continue
            extra = targets[i] - committed[i]
            for p in loads[i]:
                if left[p] < extra:
                    extra = left[p] if left[p] > 0 else 0.0
            give = committed[i] + extra
            if give < self.min_a:
                give = 0.0
                extra = 0.0
            alloc[i] = give
            for p in loads[i]:
                left[p] -= extra
        return alloc
