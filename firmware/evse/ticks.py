# The control path's millisecond count (App.clock) runs from boot. On a 32-bit port an int at or
# above 2^30 is an object on the heap, and every subtraction with one allocates: the count would
# leave the small ints after 12.4 days. At REBASE_AT_MS (6.2 days) the count and every time
# stored from it move back by REBASE_MS together (each holder's rebase(d)): the differences the
# timers look at stay the same, and every number stays small, for any uptime.
from micropython import const

REBASE_AT_MS = const(1 << 29)
REBASE_MS = const(1 << 28)
FLOOR_MS = const(-(1 << 28))  # a time older than this stays here: still 6.2 days before now


def back(t, d):
    """A time from the count, moved back by d; None stays None."""
    if t is None:
        return None
    t -= d
    return t if t > FLOOR_MS else FLOOR_MS


def back_all(times, d):
    """back() for each item of a list of times, in place."""
    for i in range(len(times)):
        times[i] = back(times[i], d)
