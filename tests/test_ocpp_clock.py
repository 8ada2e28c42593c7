"""OCPP wall time: RFC 3339 timestamps in and out, a clock the Central System sets and the
monotonic counter keeps running, and the ClockAlignedDataInterval boundaries."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from evse.ocpp.clock import Clock, aligned_after, iso, parse_iso

Y2000 = 946684800
Y2100 = 4102444800


@pytest.mark.parametrize("text, expected", [
    ("2026-11-24T10:00:00Z", 1795514400),
    ("2026-11-24T10:00:00.123Z", 1795514400),
    ("2026-11-24T10:00:00+01:00", 1795514400 - 3600),
    ("2026-11-24T10:00:00.5-05:30", 1795514400 + 5 * 3600 + 1800),
    ("2026-11-24t10:00:00z", 1795514400),
    ("2026-11-24T10:00:00", 1795514400),  # no zone: UTC, as OCPP 1.6 wants every time to be
    ("1970-01-01T00:00:00Z", 0),
    ("2000-02-29T23:59:59Z", 951868799),
    ("2016-12-31T23:59:60Z", 1483228800),  # a leap second is the next minute's first second
])
def test_parse_iso_reads_the_timestamps_ocpp_sends(text, expected):
    assert parse_iso(text) == expected


@pytest.mark.parametrize("text", [
    "2026-13-24T10:00:00Z", "2026-00-24T10:00:00Z", "2026-02-29T10:00:00Z", "2100-02-29T00:00:00Z",
    "2026-04-31T10:00:00Z", "2026-11-24 10:00:00Z", "2026-11-24", "2026-11-24T24:00:00Z",
    "2026-11-24T10:60:00Z", "2026-11-24T10:00:61Z", "2026-11-24T10:00:00.Z", "2026-11-24T10:00:00+1:00",
    "2026-11-24T10:00:00+01", "2026-11-24T10:00:00+01:00x", "2026-11-24T10:00:00ZZ", "26-11-24T10:00:00Z",
    "2026-11-24T10:00:00 Z", "", "２０２６-11-24T10:00:00Z", "2026-1a-24T10:00:00Z", "+026-11-24T10:00:00Z",
])
def test_parse_iso_rejects_malformed_timestamps_with_a_message_naming_the_text(text):
    with pytest.raises(ValueError) as err:
        parse_iso(text)
    assert repr(text) in str(err.value)


@given(st.integers(Y2000, Y2100 - 1))
def test_parse_iso_of_iso_is_the_identity_from_2000_to_2099(epoch_s):
    text = iso(epoch_s)
    assert len(text) == 20 and text.endswith("Z")
    assert parse_iso(text) == epoch_s


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30)),
       st.integers(-23 * 60 - 59, 23 * 60 + 59), st.booleans())
def test_parse_iso_agrees_with_cpython_datetime_for_any_offset_and_fraction(moment, offset_min, fraction):
    zone = timezone(timedelta(minutes=offset_min))
    aware = moment.replace(tzinfo=zone)
    text = aware.isoformat(timespec="microseconds" if fraction else "seconds")
    if offset_min == 0 and fraction:
        text = text.replace("+00:00", "Z")
    assert parse_iso(text) == int(aware.timestamp() // 1)
    assert iso(parse_iso(text)) == aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.text())
def test_parse_iso_answers_garbage_with_value_error_only(text):
    try:
        result = parse_iso(text)
    except ValueError:
        return
    assert isinstance(result, int)


@given(st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,3})?([Zz]|[+-][0-9]{2}:[0-9]{2})?\Z"))
def test_parse_iso_answers_near_misses_with_an_epoch_or_value_error_only(text):
    try:
        assert isinstance(parse_iso(text), int)
    except ValueError:
        pass


class Ticks:
    """A monotonic millisecond counter that wraps like MicroPython's (30 bits)."""
    PERIOD = 1 << 30

    def __init__(self, start=0):
        self.ms = start

    def __call__(self):
        return self.ms % self.PERIOD

    @classmethod
    def diff(cls, end, start):
        return ((end - start + cls.PERIOD // 2) & (cls.PERIOD - 1)) - cls.PERIOD // 2


def test_clock_counts_from_boot_until_the_central_system_sets_it():
    ticks = Ticks()
    clock = Clock(ticks, Ticks.diff)
    assert not clock.known
    ticks.ms += 2500
    assert clock.now() == 2
    clock.set(1795514400)
    assert clock.known
    assert clock.now() == 1795514400
    ticks.ms += 999
    assert clock.now() == 1795514400
    ticks.ms += 1
    assert clock.now() == 1795514401


def test_clock_keeps_the_sub_second_remainder_between_calls():
    ticks = Ticks()
    clock = Clock(ticks, Ticks.diff)
    clock.set(1000)
    for _ in range(10):
        ticks.ms += 300
        clock.now()
    assert clock.now() == 1003  # 3000 ms, not 10 * 0 s


def test_clock_runs_on_across_many_wraps_of_the_tick_counter():
    ticks = Ticks(start=Ticks.PERIOD - 5000)
    clock = Clock(ticks, Ticks.diff)
    clock.set(1795514400)
    total_ms = 0
    for _ in range(200):  # 200 * 3 days = 48 wraps of the 12.4-day counter
        ticks.ms += 3 * 86400 * 1000 + 7
        total_ms += 3 * 86400 * 1000 + 7
        clock.now()
    assert clock.now() == 1795514400 + total_ms // 1000


@pytest.mark.parametrize("now, interval, expected", [
    ("2026-11-24T10:00:00Z", 900, "2026-11-24T10:15:00Z"),
    ("2026-11-24T10:14:59Z", 900, "2026-11-24T10:15:00Z"),
    ("2026-11-24T23:59:00Z", 900, "2026-11-25T00:00:00Z"),
    ("2026-11-24T23:30:00Z", 7 * 3600, "2026-11-25T00:00:00Z"),  # 21:00 was the last; midnight restarts
    ("2026-11-24T00:00:00Z", 86400, "2026-11-25T00:00:00Z"),
])
def test_next_aligned_is_the_next_boundary_of_intervals_that_start_at_midnight(now, interval, expected):
    ticks = Ticks()
    clock = Clock(ticks, Ticks.diff)
    clock.set(parse_iso(now))
    assert iso(clock.next_aligned(interval)) == expected


def test_clock_aligned_interval_zero_means_off():
    assert aligned_after(1795514400, 0) is None


@given(st.integers(Y2000, Y2100), st.integers(1, 2 * 86400))
def test_aligned_boundaries_come_after_now_at_most_one_interval_later_on_the_day_grid(now, interval):
    boundary = aligned_after(now, interval)
    assert now < boundary <= now + interval
    since_midnight = boundary % 86400
    assert since_midnight % interval == 0 or since_midnight == 0
