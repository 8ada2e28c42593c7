# Control pilot arithmetic and classification, IEC 61851-1 Annex A. Pure: no hardware, time passed in.
from micropython import const

from evse import ticks

# Duty cycle in per mille (0..1000). 1000 = steady +12 V (no PWM), 0 = steady -12 V (state F).
DUTY_OFF_PM = const(1000)
DUTY_F_PM = const(0)
DUTY_DIGITAL_PM = const(50)  # 5 %: digital communication required (ISO 15118 / DIN 70121), Table A.8
MIN_A = const(6)  # lowest current a PWM may offer, Table A.7
MAX_A = const(80)

# Table A.7: 6 A <= I <= 51 A: duty % = I / 0.6; 51 A < I <= 80 A: duty % = I / 2.5 + 64.
_LOW_RANGE_TOP_PM = const(850)  # 85 % = 51 A


def amps_to_duty_pm(amps):
    """Per-mille duty that offers at most `amps` (clamped to 6..80 A).

    Rounds down so that the EV never reads more than asked. Just above 51 A the upper formula
    gives 85 % or less, which the EV reads with the lower one; there the offer stays at 85 %
    (51 A) so the duty never falls while the amps rise. The first duty of the upper range,
    85.1 %, means 52.75 A."""
    if amps < MIN_A:
        amps = MIN_A
    elif amps > MAX_A:
        amps = MAX_A
    if amps <= 51:
        return int(amps * 1000 / 60 + 1e-6)
    pm = int((amps / 2.5 + 64) * 10 + 1e-6)
    return pm if pm > _LOW_RANGE_TOP_PM else _LOW_RANGE_TOP_PM


def duty_pm_to_amps(pm):
    """Current an EV reads from a duty (Table A.8). 0 = charging not allowed; digital is 0 too."""
    if pm < 80 or pm > 970:
        return 0.0  # < 8 %: not allowed or digital (3..7 %); > 97 %: not allowed
    if pm < 100:
        return 6.0  # 8 % <= duty < 10 %
    if pm <= _LOW_RANGE_TOP_PM:
        return pm * 0.06
    if pm <= 960:
        return (pm / 10 - 64) * 2.5
    return 80.0


def is_digital(pm):
    return 30 <= pm <= 70


# Pilot high-plateau classes. 'X' = a level between the bands (treated like E by the gun).
LETTERS = "ABCDEF"


def thresholds(board_pilot):
    """Band edges in mV from a board's "pilot" section, highest first.

    Returns a tuple (a_min, b_min, c_min, d_min, e_min, f_max, hysteresis, diode_max)."""
    p = board_pilot
    return (p["a_min_mv"], p["b_min_mv"], p["c_min_mv"], p["d_min_mv"], p["e_min_mv"],
            p["f_max_mv"], p["hysteresis_mv"], p["diode_max_mv"])


def classify(high_mv, prev, thr):
    """Letter for a high-plateau voltage. Boundaries move by the hysteresis in favour of `prev`,
    so a level sitting on a band edge does not toggle between two states."""
    h = thr[6]
    for i in range(5):  # thr[0..4]: A|B, B|C, C|D, D|E, E|(gap); no slice: the tick allocates nothing here
        edge = thr[i]
        upper = LETTERS[i]
        lower = LETTERS[i + 1]
        if prev == upper:
            edge -= h
        elif prev == lower:
            edge += h
        if high_mv >= edge:
            return upper
    if high_mv <= thr[5] + (h if prev == "F" else 0):
        return "F"
    return "X"


_ABOVE_ALL_MV = const(1 << 29)  # above any pilot level: no upper edge (a small int on every port)


def band(letter, thr):
    """(lo, hi): classify(v, letter, thr) is `letter` for every lo <= v < hi, the hysteresis
    included; the control tick tests this before it classifies (the level rarely leaves its
    band). A, B, C, D and E have one; for F and X, (0, 0): an empty band, classify decides."""
    i = LETTERS.find(letter)
    if not 0 <= i < 5:
        return 0, 0
    h = thr[6]
    hi = _ABOVE_ALL_MV
    for j in range(i):   # every upper edge classify tests before it gets to this letter
        edge = thr[j] + (h if j == i - 1 else 0)
        if edge < hi:
            hi = edge
    return thr[i] - h, hi


def diode_ok(low_mv, thr):
    """While PWM runs the low plateau must reach -12 V; a shorted or missing EV diode pulls it up."""
    return low_mv <= thr[7]


class Debounce:
    """Reports a new value only after it has been seen continuously for `hold_ms`."""

    def __init__(self, hold_ms, value):
        self.hold_ms = hold_ms
        self.stable = value
        self._candidate = value
        self._since_ms = 0

    def feed(self, value, now_ms):
        if value == self.stable:
            self._candidate = value
            return self.stable
        if value != self._candidate:
            self._candidate = value
            self._since_ms = now_ms
        elif now_ms - self._since_ms >= self.hold_ms:
            self.stable = value
        return self.stable

    def force(self, value):
        self.stable = self._candidate = value

    def rebase(self, d):
        self._since_ms = ticks.back(self._since_ms, d)
