# Wall time for OCPP: timestamps as the Central System sends them (RFC 3339), and a clock that
# the Central System sets (BootNotification.conf / Heartbeat.conf currentTime) and a monotonic
# millisecond counter keeps running. Epoch seconds here are Unix (1970) UTC on every port: the
# boards' own time.mktime counts from 2000, so the calendar arithmetic is our own.
from micropython import const

DAY_S = const(86400)
_DIGITS = "0123456789"


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days):
    """(year, month, day) of a day count since 1970-01-01; the inverse of days_from_civil."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


def _days_in_month(year, month):
    if month == 2:
        return 29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _bad(text, why):
    return ValueError("timestamp %r: %s; expected e.g. 2026-11-24T10:00:00Z" % (text, why))


def _number(text, at, width):
    # ASCII digits only: int() would also take other scripts' digits and signs.
    value = 0
    for i in range(at, at + width):
        if i >= len(text) or text[i] not in _DIGITS:
            raise _bad(text, "want %d digits at position %d" % (width, at))
        value = value * 10 + ord(text[i]) - 48
    return value


def _expect(text, at, chars):
    if at >= len(text) or text[at] not in chars:
        raise _bad(text, "want %r at position %d" % (chars[0], at))


def parse_iso(text):
    """Epoch seconds (UTC) of `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`; the fraction is
    dropped (rounded towards the past). Without a zone the time is taken as UTC, which is what
    OCPP 1.6 requires every timestamp to be. Raises ValueError naming the text otherwise."""
    year = _number(text, 0, 4)
    _expect(text, 4, "-")
    month = _number(text, 5, 2)
    _expect(text, 7, "-")
    day = _number(text, 8, 2)
    _expect(text, 10, "Tt")
    hour = _number(text, 11, 2)
    _expect(text, 13, ":")
    minute = _number(text, 14, 2)
    _expect(text, 16, ":")
    second = _number(text, 17, 2)
    if not 1 <= month <= 12:
        raise _bad(text, "month %d" % month)
    if not 1 <= day <= _days_in_month(year, month):
        raise _bad(text, "day %d" % day)
    # RFC 3339 5.6: second 60 is a leap second; it counts as the next minute's first second.
    if hour > 23 or minute > 59 or second > 60:
        raise _bad(text, "time of day")
    at = 19
    n = len(text)
    if at < n and text[at] == ".":
        at += 1
        start = at
        while at < n and text[at] in _DIGITS:
            at += 1
        if at == start:
            raise _bad(text, "no digits after '.'")
    offset_s = 0
    if at < n:
        sign = text[at]
        if sign in "Zz":
            at += 1
        elif sign in "+-":
            off_h = _number(text, at + 1, 2)
            _expect(text, at + 3, ":")
            off_m = _number(text, at + 4, 2)
            if off_h > 23 or off_m > 59:
                raise _bad(text, "zone offset")
            offset_s = (off_h * 60 + off_m) * 60
            if sign == "-":
                offset_s = -offset_s
            at += 6
        else:
            raise _bad(text, "want Z or +HH:MM at position %d" % at)
    if at != n:
        raise _bad(text, "unexpected text at position %d" % at)
    return (days_from_civil(year, month, day) * DAY_S + (hour * 60 + minute) * 60 + second
            - offset_s)


def iso(epoch_s):
    """`YYYY-MM-DDTHH:MM:SSZ` of whole epoch seconds."""
    days = epoch_s // DAY_S
    rest = epoch_s - days * DAY_S
    year, month, day = civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (year, month, day, rest // 3600, rest // 60 % 60,
                                                 rest % 60)


def aligned_after(epoch_s, interval_s):
    """The first clock-aligned boundary after `epoch_s`: boundaries are at midnight (UTC) +
    k * interval_s, and every midnight is one (OCPP 1.6 ClockAlignedDataInterval: "evenly spaced
    intervals per day, starting at 00:00:00"), so a last interval of a day may be shorter.
    None when interval_s <= 0 (0 switches clock-aligned meter values off)."""
    if interval_s <= 0:
        return None
    midnight = epoch_s - epoch_s % DAY_S
    boundary = midnight + ((epoch_s - midnight) // interval_s + 1) * interval_s
    if boundary > midnight + DAY_S:
        boundary = midnight + DAY_S
    return boundary


class Clock:
    """Wall time = the last time the Central System told us + the monotonic time since.
    `ticks_diff` must be the port's wrap-aware difference (time.ticks_diff on MicroPython);
    every now() re-anchors, so the counter may wrap any number of times as long as now() is
    called more often than every half wrap period (6 days for 30-bit ticks)."""

    def __init__(self, ticks_ms, ticks_diff=None):
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff or _plain_diff
        self._mark_ms = ticks_ms()
        self._carry_ms = 0
        self._epoch_s = 0  # seconds since boot until set(): a guess, see `known`
        self._known = False

    @property
    def known(self):
        """True once the Central System has told us the time."""
        return self._known

    def set(self, epoch_s):
        self._mark_ms = self._ticks_ms()
        self._carry_ms = 0
        self._epoch_s = epoch_s
        self._known = True

    def now(self):
        """Epoch seconds; never goes backwards between two set() calls."""
        mark = self._ticks_ms()
        elapsed_ms = self._ticks_diff(mark, self._mark_ms) + self._carry_ms
        whole_s = elapsed_ms // 1000
        self._epoch_s += whole_s
        self._carry_ms = elapsed_ms - whole_s * 1000
        self._mark_ms = mark
        return self._epoch_s

    def next_aligned(self, interval_s):
        """Epoch seconds of the next ClockAlignedDataInterval boundary (None: interval 0)."""
        return aligned_after(self.now(), interval_s)


def _plain_diff(end, start):
    return end - start
