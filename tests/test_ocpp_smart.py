"""OCPP 1.6 Smart Charging: which profiles a charge point accepts, how it stores them, and the
limit they set at each instant (GetCompositeSchedule and the every-second cap on a gun)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, strategies as st

from evse.ocpp import smart
from evse.ocpp.clock import iso, parse_iso

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

T = parse_iso("2026-11-24T10:00:00Z")
HOUR = 3600
DAY = 86400
CP_MAX, TX_DEFAULT, TX = "ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"


def profile(pid, purpose, stack, periods, kind="Absolute", start=None, duration=None, unit="A",
            valid_from=None, valid_to=None, recurrency=None, tx_id=None):
    """A csChargingProfiles object; periods as (startPeriod, limit[, numberPhases])."""
    schedule = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        dict({"startPeriod": p[0], "limit": p[1]}, **({"numberPhases": p[2]} if len(p) > 2 else {}))
        for p in periods]}
    if start is not None:
        schedule["startSchedule"] = iso(start) if isinstance(start, int) else start
    if duration is not None:
        schedule["duration"] = duration
    body = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": schedule}
    for key, value in (("validFrom", valid_from), ("validTo", valid_to)):
        if value is not None:
            body[key] = iso(value)
    if recurrency:
        body["recurrencyKind"] = recurrency
    if tx_id is not None:
        body["transactionId"] = tx_id
    return body


class Flash:
    """What the caller keeps on flash: the JSON text of the last save()."""

    def __init__(self):
        self.text = "[]"
        self.saves = 0

    def load(self):
        return json.loads(self.text)

    def save(self, records):
        self.text = json.dumps(records)
        self.saves += 1


def installed(*pairs, connectors=2, tx_ids=None):
    """A Profiles store with each (connector, profile) validated and installed."""
    store = smart.Profiles(Flash().load, Flash().save)
    for connector, body in pairs:
        tx_id = (tx_ids or {}).get(connector)
        assert smart.validate(connector, body, connectors, tx_id) is None, body
        assert store.install(connector, body)
    return store.items


def periods(schedule):
    return [(p["startPeriod"], p["limit"]) + ((p["numberPhases"],) if "numberPhases" in p else ())
            for p in schedule["chargingSchedulePeriod"]]


def value_at(schedule, offset):
    """The limit a composite schedule gives `offset` seconds after its start (None: none)."""
    if offset >= schedule["duration"]:
        return None
    found = None
    for p in schedule["chargingSchedulePeriod"]:
        if p["startPeriod"] <= offset:
            found = p["limit"]
    return found


# --- Hand-worked examples ---------------------------------------------------------------------

def test_a_higher_stack_level_leads_until_its_duration_ends_then_the_lower_one_shows_through():
    # OCPP 1.6 3.13.2 stacking, in the shape of the compliance test TC_072_CS: two
    # TxDefaultProfiles from the same start, the stack level 1 one only for 150 s.
    entries = installed(
        (1, profile(1, TX_DEFAULT, 0, [(0, 6), (100, 8), (200, 10)], start=T, duration=400)),
        (1, profile(2, TX_DEFAULT, 1, [(0, 10), (100, 7)], start=T, duration=150)))
    schedule = smart.composite(entries, 1, T, 400, "A")
    assert schedule["startSchedule"] == T and schedule["duration"] == 400
    assert schedule["chargingRateUnit"] == "A"
    assert periods(schedule) == [(0, 10), (100, 7), (150, 8), (200, 10)]
    assert smart.limit_at(entries, 1, T + 400) is None  # both durations are over


def test_a_one_day_exception_overrules_a_recurring_default_only_between_valid_from_and_valid_to():
    # 3.13.4: a daily default at stack level 0 (16 A, 8 A from 18:00 to 22:00) and, for one
    # holiday, a stack level 1 profile of 6 A valid from its midnight to the next.
    holiday = parse_iso("2026-12-25T00:00:00Z")
    entries = installed(
        (0, profile(1, TX_DEFAULT, 0, [(0, 16), (18 * HOUR, 8), (22 * HOUR, 16)], kind="Recurring",
                    recurrency="Daily", start="2026-01-01T00:00:00Z")),
        (0, profile(2, TX_DEFAULT, 1, [(0, 6)], start=holiday - DAY, valid_from=holiday,
                    valid_to=holiday + DAY)))
    schedule = smart.composite(entries, 1, holiday - DAY, 3 * DAY, "A")
    assert periods(schedule) == [(0, 16), (18 * HOUR, 8), (22 * HOUR, 16), (DAY, 6), (2 * DAY, 16),
                                 (2 * DAY + 18 * HOUR, 8), (2 * DAY + 22 * HOUR, 16)]


def test_tx_profile_overrules_tx_default_and_the_charge_point_max_caps_both():
    # 3.13.5 combining purposes: composite = min(ChargePointMax, TxProfile else TxDefault).
    tx_start = T
    entries = installed(
        (0, profile(1, CP_MAX, 0, [(0, 20)], start=T - DAY)),
        (1, profile(2, TX_DEFAULT, 0, [(0, 16), (HOUR, 10)], start=T)),
        (1, profile(3, TX, 0, [(0, 32), (1800, 6)], kind="Relative", duration=2700, tx_id=7)),
        tx_ids={1: 7})
    schedule = smart.composite(entries, 1, T, 2 * HOUR, "A", tx_start_s=tx_start)
    assert periods(schedule) == [(0, 20), (1800, 6), (2700, 16), (HOUR, 10)]


def test_tx_profile_may_raise_the_limit_above_the_tx_default():
    entries = installed((1, profile(1, TX_DEFAULT, 5, [(0, 10)], start=T)),
                        (1, profile(2, TX, 0, [(0, 16)], kind="Relative")), tx_ids={1: 1})
    assert smart.limit_at(entries, 1, T + 5, T) == 16


def test_a_relative_profile_runs_from_the_transaction_start():
    entries = installed((1, profile(1, TX_DEFAULT, 0, [(0, 10), (600, 16)], kind="Relative")))
    started_5_min_ago = smart.composite(entries, 1, T, 1200, "A", tx_start_s=T - 300)
    assert periods(started_5_min_ago) == [(0, 10), (300, 16)]
    no_transaction = smart.composite(entries, 1, T, 1200, "A")
    assert periods(no_transaction) == [(0, 10), (600, 16)]  # as if one started now
    assert smart.limit_at(entries, 1, T + 299, T - 300) == 10
    assert smart.limit_at(entries, 1, T + 300, T - 300) == 16


def test_an_absolute_profile_without_start_schedule_is_relative_to_the_start_of_charging():
    entries = installed((1, profile(1, TX_DEFAULT, 0, [(0, 10), (600, 16)], duration=900)))
    assert periods(smart.composite(entries, 1, T, 1200, "A", tx_start_s=T - 500, max_a=32)) == [
        (0, 10), (100, 16), (400, 32)]


def test_a_daily_window_crossing_midnight_applies_every_night():
    # A stack level 1 night limit from 22:00 for 8 h over an all-day 16 A default.
    entries = installed(
        (1, profile(1, TX_DEFAULT, 0, [(0, 16)], start=T - 30 * DAY)),
        (1, profile(2, TX_DEFAULT, 1, [(0, 6)], kind="Recurring", recurrency="Daily",
                    start="2026-11-20T22:00:00Z", duration=8 * HOUR)))
    start = parse_iso("2026-11-24T20:00:00Z")
    schedule = smart.composite(entries, 1, start, 2 * DAY, "A")
    assert periods(schedule) == [(0, 16), (2 * HOUR, 6), (10 * HOUR, 16), (26 * HOUR, 6), (34 * HOUR, 16)]
    assert smart.limit_at(entries, 1, parse_iso("2026-11-25T05:59:59Z")) == 6
    assert smart.limit_at(entries, 1, parse_iso("2026-11-25T06:00:00Z")) == 16


def test_a_daily_schedule_wraps_its_last_period_to_midnight():
    # The example profile many CSMS documents show: 15 A, 30 A from 20:00, 25 A from 22:00.
    entries = installed((0, profile(1, TX_DEFAULT, 1, [(0, 15), (72000, 30), (79200, 25)],
                                    kind="Recurring", recurrency="Daily", start="2021-01-01T00:00:00Z")))
    schedule = smart.composite(entries, 2, parse_iso("2026-11-24T21:00:00Z"), 4 * HOUR, "A")
    assert periods(schedule) == [(0, 30), (HOUR, 25), (3 * HOUR, 15)]


def test_a_weekly_profile_repeats_every_seven_days_and_not_before_its_start():
    monday = parse_iso("2026-11-23T00:00:00Z")
    entries = installed((1, profile(1, TX_DEFAULT, 0, [(0, 10)], kind="Recurring", recurrency="Weekly",
                                    start=monday, duration=DAY)))
    assert smart.limit_at(entries, 1, monday - 1) is None
    assert smart.limit_at(entries, 1, monday + 7 * DAY + 5) == 10
    assert smart.limit_at(entries, 1, monday + 8 * DAY) is None
    assert periods(smart.composite(entries, 1, monday, 14 * DAY, "A", max_a=32)) == [
        (0, 10), (DAY, 32), (7 * DAY, 10), (8 * DAY, 32)]


def test_valid_from_and_valid_to_cut_a_profile_off():
    entries = installed((0, profile(1, CP_MAX, 0, [(0, 10)], start=T - DAY, valid_from=T + 100,
                                    valid_to=T + 200)))
    assert periods(smart.composite(entries, 1, T, 300, "A", max_a=32)) == [(0, 32), (100, 10), (200, 32)]
    assert smart.limit_at(entries, 1, T + 99) is None
    assert smart.limit_at(entries, 1, T + 100) == 10
    assert smart.limit_at(entries, 1, T + 200) is None  # validTo is the first instant it is gone
    assert smart.limit_at(entries, 1, T + 200, None, 32) == 32  # no profile: the gun's rating


def test_without_max_a_the_composite_reports_only_what_profiles_say():
    entries = installed((0, profile(1, CP_MAX, 0, [(0, 10)], start=T - DAY, valid_from=T + 100,
                                    valid_to=T + 200)))
    schedule = smart.composite(entries, 1, T, 300, "A")
    assert periods(schedule) == [(100, 10)] and schedule["duration"] == 200
    assert smart.composite(installed(), 1, T, 300, "A")["chargingSchedulePeriod"] == []


def test_watts_become_amps_per_phase_at_230_v_and_back():
    entries = installed((1, profile(1, TX_DEFAULT, 0, [(0, 11000)], unit="W", start=T)))
    assert smart.limit_at(entries, 1, T) == 15.9  # 11000 / (230 * 3) = 15.94, floored
    assert smart.limit_at(entries, 1, T, phases=1) == 47.8
    amps = installed((1, profile(1, TX_DEFAULT, 0, [(0, 16, 1), (60, 16)], start=T)))
    assert periods(smart.composite(amps, 1, T, 120, "W")) == [(0, 3680, 1), (60, 11040)]
    assert periods(smart.composite(amps, 1, T, 120, "W", voltage_v=240)) == [(0, 3840, 1), (60, 11520)]


def test_a_charge_point_max_in_watts_caps_a_tx_default_in_amps():
    entries = installed((0, profile(1, CP_MAX, 0, [(0, 11040)], unit="W", start=T)),
                        (1, profile(2, TX_DEFAULT, 0, [(0, 20), (60, 10)], start=T)))
    assert periods(smart.composite(entries, 1, T, 120, "A")) == [(0, 16), (60, 10)]
    assert periods(smart.composite(entries, 1, T, 120, "W")) == [(0, 11040), (60, 6900)]


def test_connector_0_tx_default_applies_to_every_connector_without_its_own():
    entries = installed((0, profile(1, TX_DEFAULT, 0, [(0, 10)], start=T)),
                        (2, profile(2, TX_DEFAULT, 0, [(0, 16)], start=T, duration=60)))
    assert smart.limit_at(entries, 1, T) == 10
    assert smart.limit_at(entries, 2, T) == 16
    assert smart.limit_at(entries, 2, T + 60) == 10  # its own ended: the default again
    assert smart.limit_at(entries, 0, T) is None  # no ChargePointMaxProfile: no site limit


def test_connector_0_composite_is_the_charge_point_max_alone():
    entries = installed((0, profile(1, CP_MAX, 0, [(0, 40), (60, 32)], start=T)),
                        (1, profile(2, TX_DEFAULT, 0, [(0, 6)], start=T)))
    assert periods(smart.composite(entries, 0, T, 120, "A")) == [(0, 40), (60, 32)]
    assert periods(smart.composite(entries, 1, T, 120, "A")) == [(0, 6)]
    assert smart.limit_at(entries, 0, T + 60) == 32


# --- validate --------------------------------------------------------------------------------

GOOD = profile(1, TX_DEFAULT, 0, [(0, 16)], start=T)


@pytest.mark.parametrize("connector, body, tx_id, reason", [
    (0, profile(1, CP_MAX, 0, [(0, 16)], start=T), None, None),
    (1, GOOD, None, None),
    (1, profile(1, TX, 0, [(0, 16)], kind="Relative", tx_id=5), 5, None),
    (1, profile(1, TX, 0, [(0, 16)], kind="Relative"), 5, None),
    (3, GOOD, None, "connectorId 3 not in 0..2"),
    (1, profile(1, CP_MAX, 0, [(0, 16)]), None, "ChargePointMaxProfile only on connectorId 0"),
    (0, profile(1, TX, 0, [(0, 16)]), 5, "TxProfile needs a connectorId > 0"),
    (1, profile(1, TX, 0, [(0, 16)]), None, "TxProfile without a transaction on connector 1"),
    (1, profile(1, TX, 0, [(0, 16)], tx_id=4), 5, "TxProfile for transaction 4, connector 1 runs 5"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16)], kind="Recurring", start=T), None,
     "Recurring needs recurrencyKind Daily or Weekly"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16)], kind="Recurring", recurrency="Daily"), None,
     "Recurring needs chargingSchedule.startSchedule"),
    (1, profile(1, TX_DEFAULT, 0, [(5, 16)]), None, "startPeriods must be 0, then increasing (got 5)"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16), (60, 8), (60, 6)]), None,
     "startPeriods must be 0, then increasing (got 60)"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16), (60, -1)]), None, "limit must be 0..1e+12"),
    (1, profile(1, TX_DEFAULT, 0, [(0, float("inf"))]), None, "limit must be 0..1e+12"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16, 4)]), None, "numberPhases 4 not in 1..3"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16, 0)]), None, "numberPhases 0 not in 1..3"),
    (1, profile(1, TX_DEFAULT, -1, [(0, 16)]), None, "stackLevel must be >= 0"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16)], duration=-5), None, "duration -5 < 0"),
    (1, profile(1, TX_DEFAULT, 0, []), None, "no chargingSchedulePeriod"),
    (1, profile(1, TX_DEFAULT, 0, [(i * 60, 16) for i in range(25)]), None, "25 periods, at most 24"),
    (1, profile(1, TX_DEFAULT, 0, [(0, 16)], valid_from=T, valid_to=T), None, "validTo not after validFrom"),
])
def test_validate_names_the_reason_a_profile_is_rejected(connector, body, tx_id, reason):
    assert smart.validate(connector, body, 2, tx_id) == reason


def test_validate_rejects_a_malformed_timestamp_naming_it():
    body = profile(1, TX_DEFAULT, 0, [(0, 16)], start="2026-13-01T00:00:00Z")
    assert "2026-13-01T00:00:00Z" in smart.validate(1, body, 2)


def test_a_relative_profile_needs_no_start_schedule():
    assert smart.validate(1, profile(1, TX_DEFAULT, 0, [(0, 16)], kind="Relative"), 2) is None


# --- Profiles: install, replace, clear, persist ----------------------------------------------

def test_install_replaces_the_same_id_and_the_same_stack_level_and_purpose_on_that_connector():
    flash = Flash()
    store = smart.Profiles(flash.load, flash.save)
    assert store.install(1, profile(1, TX_DEFAULT, 0, [(0, 16)], start=T))
    assert store.install(1, profile(1, TX_DEFAULT, 3, [(0, 10)], start=T))  # same id
    assert [(r[smart.R_ID], r[smart.R_STACK]) for r in store.items] == [(1, 3)]
    assert store.install(1, profile(2, TX_DEFAULT, 3, [(0, 8)], start=T))  # same level+purpose
    assert [r[smart.R_ID] for r in store.items] == [2]
    assert store.install(2, profile(3, TX_DEFAULT, 3, [(0, 8)], start=T))  # other connector: kept
    assert store.install(1, profile(4, TX, 3, [(0, 8)], kind="Relative"))  # other purpose: kept
    assert sorted(r[smart.R_ID] for r in store.items) == [2, 3, 4]


def test_a_stored_record_the_limits_cannot_use_is_left_out_at_load():
    flash = Flash()
    store = smart.Profiles(flash.load, flash.save)
    store.install(1, profile(1, TX_DEFAULT, 0, [(0, 16)], start=T))
    good = store.items[0]
    huge = list(good)
    huge[smart.R_PERIODS] = [0, float("inf"), 0]
    flash.save([good, huge, [1, 2], "junk", list(good[:-1])])
    again = smart.Profiles(flash.load, flash.save)
    assert again.items == [good]
    assert smart.limit_at(again.items, 1, T + 10) == 16


def test_the_store_survives_a_restart_through_its_json_file():
    flash = Flash()
    store = smart.Profiles(flash.load, flash.save)
    store.install(0, profile(1, CP_MAX, 0, [(0, 20), (60, 10, 1)], unit="W", start=T, duration=600,
                             valid_from=T - 5, valid_to=T + DAY))
    store.install(1, profile(2, TX_DEFAULT, 1, [(0, 6)], kind="Recurring", recurrency="Weekly", start=T))
    again = smart.Profiles(flash.load, flash.save)
    assert again.items == store.items
    assert smart.composite(again.items, 1, T, DAY, "A") == smart.composite(store.items, 1, T, DAY, "A")


def test_install_refuses_past_the_per_connector_and_total_caps():
    store = smart.Profiles(list, lambda records: None, per_connector=3, total=5)
    for pid in range(3):
        assert store.install(1, profile(pid, TX_DEFAULT, pid, [(0, 16)], start=T))
    assert not store.install(1, profile(9, TX_DEFAULT, 9, [(0, 16)], start=T))
    assert store.install(1, profile(0, TX_DEFAULT, 7, [(0, 16)], start=T))  # a replacement fits
    assert store.install(2, profile(10, TX_DEFAULT, 0, [(0, 16)], start=T))
    assert store.install(2, profile(11, TX_DEFAULT, 1, [(0, 16)], start=T))
    assert not store.install(2, profile(12, TX_DEFAULT, 2, [(0, 16)], start=T))
    assert len(store.items) == 5


def test_a_failed_save_leaves_the_store_as_flash_has_it():
    def full(records):
        raise OSError(28, "ENOSPC")
    store = smart.Profiles(list, full)
    with pytest.raises(OSError):
        store.install(1, GOOD)
    assert store.items == []


def fresh_store():
    flash = Flash()
    store = smart.Profiles(flash.load, flash.save)
    store.install(0, profile(1, CP_MAX, 0, [(0, 40)], start=T))
    store.install(0, profile(2, TX_DEFAULT, 0, [(0, 16)], start=T))
    store.install(1, profile(3, TX_DEFAULT, 0, [(0, 16)], start=T))
    store.install(1, profile(4, TX_DEFAULT, 1, [(0, 16)], start=T))
    store.install(2, profile(5, TX, 1, [(0, 16)], kind="Relative"))
    return store


@pytest.mark.parametrize("criteria, removed", [
    ({"id": 4}, [4]),
    ({"id": 4, "connector_id": 2, "purpose": CP_MAX}, [4]),  # id wins over the other criteria
    ({"id": 99}, []),
    ({}, [1, 2, 3, 4, 5]),
    ({"connector_id": 1}, [3, 4]),
    ({"connector_id": 0, "purpose": TX_DEFAULT}, [2]),
    ({"purpose": TX_DEFAULT}, [2, 3, 4]),
    ({"stack_level": 1}, [4, 5]),
    ({"purpose": TX_DEFAULT, "stack_level": 1}, [4]),
    ({"connector_id": 2, "purpose": TX_DEFAULT}, []),
])
def test_clear_charging_profile_removes_by_id_or_by_every_criterion_given(criteria, removed):
    store = fresh_store()
    before = {r[smart.R_ID] for r in store.items}
    assert store.clear(**criteria) == bool(removed)
    assert sorted(before - {r[smart.R_ID] for r in store.items}) == removed


def test_tx_profiles_go_when_their_transaction_ends():
    store = fresh_store()
    assert store.remove_tx(2)
    assert 5 not in [r[smart.R_ID] for r in store.items]
    assert not store.remove_tx(1)


# --- Properties ------------------------------------------------------------------------------

WINDOW = 2 * DAY


def reference_profile_at(body, t, origin):
    """(limit, numberPhases, unit) of one profile at t, read straight from the spec text."""
    if "validFrom" in body and t < parse_iso(body["validFrom"]):
        return None
    if "validTo" in body and t >= parse_iso(body["validTo"]):
        return None
    schedule = body["chargingSchedule"]
    kind = body["chargingProfileKind"]
    start = origin if kind == "Relative" or "startSchedule" not in schedule else parse_iso(schedule["startSchedule"])
    if t < start:
        return None
    if kind == "Recurring":
        every = DAY if body["recurrencyKind"] == "Daily" else 7 * DAY
        while start + every <= t:
            start += every
    if "duration" in schedule and t - start >= schedule["duration"]:
        return None
    current = None
    for p in schedule["chargingSchedulePeriod"]:
        if p["startPeriod"] <= t - start:
            current = p
    return current["limit"], current.get("numberPhases", 0), schedule["chargingRateUnit"]


def reference_limit(pairs, connector, t, origin, unit="A", voltage=230, phases=3):
    def leading(candidates):
        best = None
        for c, body in candidates:
            hit = reference_profile_at(body, t, origin)
            if hit and (best is None or body["stackLevel"] > best[0]):
                best = (body["stackLevel"], hit)
        return best and best[1]

    def in_unit(hit):
        limit, n, from_unit = hit
        if from_unit == unit:
            return limit
        return limit * voltage * (n or phases) if unit == "W" else limit / (voltage * (n or phases))

    cap = leading([p for p in pairs if p[1]["chargingProfilePurpose"] == CP_MAX])
    tx = None
    if connector:
        tx = (leading([p for p in pairs if p[0] == connector and p[1]["chargingProfilePurpose"] == TX])
              or leading([p for p in pairs if p[0] == connector and p[1]["chargingProfilePurpose"] == TX_DEFAULT])
              or leading([p for p in pairs if p[0] == 0 and p[1]["chargingProfilePurpose"] == TX_DEFAULT]))
    values = [in_unit(h) for h in (cap, tx) if h]
    return int(min(values) * 10 + 1e-6) / 10 if values else None


@st.composite
def random_profile(draw, purpose=None):
    purpose = purpose or draw(st.sampled_from([CP_MAX, TX_DEFAULT, TX]))
    connector = {CP_MAX: 0, TX: 1}.get(purpose)
    if connector is None:
        connector = draw(st.sampled_from([0, 1, 2]))
    kind = draw(st.sampled_from(["Absolute", "Relative", "Recurring"]))
    unit = draw(st.sampled_from(["A", "W"]))
    starts = [0] + sorted(set(draw(st.lists(st.integers(1, 8 * HOUR), max_size=4))))
    rows = []
    for s in starts:
        limit = draw(st.integers(0, 640)) / 10 if unit == "A" else draw(st.integers(0, 4400)) * 10
        phases = draw(st.sampled_from([None, 1, 2, 3]))
        rows.append((s, limit) if phases is None else (s, limit, phases))
    start = None
    if kind == "Recurring" or (kind == "Absolute" and draw(st.booleans())):
        start = T + draw(st.integers(-2 * DAY, DAY))
    valid_from = valid_to = None
    if draw(st.booleans()):
        valid_from = T + draw(st.integers(-DAY, WINDOW))
    if draw(st.booleans()):
        valid_to = (valid_from or T - DAY) + draw(st.integers(1, 2 * WINDOW))
    body = profile(0, purpose, draw(st.integers(0, 4)), rows, kind=kind, start=start, unit=unit,
                   duration=draw(st.one_of(st.none(), st.integers(1, 2 * DAY))),
                   valid_from=valid_from, valid_to=valid_to,
                   recurrency=draw(st.sampled_from(["Daily", "Weekly"])) if kind == "Recurring" else None)
    return connector, body


@st.composite
def scenario(draw, min_size=0):
    pairs = draw(st.lists(random_profile(), min_size=min_size, max_size=6))
    kept = {}
    for pid, (connector, body) in enumerate(pairs):  # one per connector, purpose and level (5.16)
        body["chargingProfileId"] = pid
        kept[(connector, body["chargingProfilePurpose"], body["stackLevel"])] = (connector, body)
    pairs = list(kept.values())
    for connector, body in pairs:
        assert smart.validate(connector, body, 2, 1) is None, body
    entries = [smart.compact(connector, body) for connector, body in pairs]
    tx_start = draw(st.one_of(st.none(), st.integers(T - DAY, T + HOUR)))
    return pairs, entries, tx_start


instants = st.lists(st.integers(0, WINDOW - 1), min_size=1, max_size=20)


@given(scenario(), st.sampled_from([0, 1, 2]), instants, st.sampled_from([None, 32]))
def test_limit_at_equals_the_composite_at_every_instant_of_the_window(case, connector, offsets, max_a):
    pairs, entries, tx_start = case
    schedule = smart.composite(entries, connector, T, WINDOW, "A", tx_start_s=tx_start, max_a=max_a)
    breakpoints = [p["startPeriod"] for p in schedule["chargingSchedulePeriod"]]
    for offset in offsets + breakpoints + [max(b - 1, 0) for b in breakpoints]:
        limit = smart.limit_at(entries, connector, T + offset, T if tx_start is None else tx_start, max_a)
        reported = value_at(schedule, offset)
        if max_a is None and reported is None:
            continue  # outside what the schedule reports (documented): nothing to compare
        assert reported == limit, (offset, schedule)


@given(scenario(), st.sampled_from([0, 1, 2]), instants, st.sampled_from(["A", "W"]))
def test_the_composite_is_what_a_plain_reading_of_the_spec_gives(case, connector, offsets, unit):
    pairs, entries, tx_start = case
    origin = T if tx_start is None else tx_start
    schedule = smart.composite(entries, connector, T, WINDOW, unit, tx_start_s=tx_start, max_a=32)
    for offset in offsets:
        expected = reference_limit(pairs, connector, T + offset, origin, unit)
        rating = int((32 if unit == "A" else 32 * 230 * 3) * 10 + 1e-6) / 10
        if expected is None or expected > rating:   # none, or above the connector's rating: the rating
            expected = rating
        assert value_at(schedule, offset) == expected, offset


@given(random_profile(purpose=CP_MAX), scenario(), instants)
def test_the_composite_never_exceeds_the_charge_point_max_profile_in_force(cap_pair, case, offsets):
    pairs, entries, tx_start = case
    cap_pair[1]["stackLevel"] = 9  # above every random one: this is the one in force
    cap_pair[1]["chargingProfileId"] = 99
    entries = entries + [smart.compact(0, cap_pair[1])]
    origin = T if tx_start is None else tx_start
    for connector in (0, 1, 2):
        schedule = smart.composite(entries, connector, T, WINDOW, "A", tx_start_s=tx_start, max_a=80)
        for offset in offsets:
            hit = reference_profile_at(cap_pair[1], T + offset, origin)
            if hit is None:
                continue
            limit, n, unit = hit
            cap_a = limit if unit == "A" else limit / (230 * (n or 3))
            assert value_at(schedule, offset) <= cap_a + 1e-6


@given(st.lists(st.tuples(st.integers(0, 640), st.one_of(st.none(), st.integers(-DAY, WINDOW)),
                          st.one_of(st.none(), st.integers(1, WINDOW))), min_size=1, max_size=5),
       instants)
def test_the_highest_stack_level_in_force_wins(levels, offsets):
    pairs = []
    for stack, (tenths, valid_from, duration) in enumerate(levels):
        pairs.append((1, profile(stack, TX_DEFAULT, stack, [(0, tenths / 10)], start=T - DAY,
                                 valid_from=None if valid_from is None else T + valid_from,
                                 valid_to=None if valid_from is None or duration is None else T + valid_from + duration)))
    entries = installed(*pairs)
    for offset in offsets:
        in_force = [stack for stack, (_, valid_from, duration) in enumerate(levels)
                    if valid_from is None or (valid_from <= offset and (duration is None or offset < valid_from + duration))]
        expected = levels[max(in_force)][0] / 10 if in_force else None
        assert smart.limit_at(entries, 1, T + offset) == expected


@given(scenario(), st.sampled_from([0, 1, 2]), st.sampled_from(["A", "W"]), st.sampled_from([None, 32]))
def test_composite_periods_strictly_increase_and_neighbours_differ(case, connector, unit, max_a):
    pairs, entries, tx_start = case
    schedule = smart.composite(entries, connector, T, WINDOW, unit, tx_start_s=tx_start, max_a=max_a)
    rows = schedule["chargingSchedulePeriod"]
    starts = [p["startPeriod"] for p in rows]
    assert starts == sorted(set(starts))
    assert all(0 <= s < schedule["duration"] <= WINDOW for s in starts)
    assert all((a["limit"], a.get("numberPhases")) != (b["limit"], b.get("numberPhases"))
               for a, b in zip(rows, rows[1:]))
    if max_a is not None:
        assert starts[0] == 0 and schedule["duration"] == WINDOW
    assert all(round(p["limit"] * 10, 6) == int(round(p["limit"] * 10, 6)) for p in rows)  # multipleOf 0.1


# --- Under the real MicroPython -------------------------------------------------------------

MPY_SCRIPT = r"""
import gc, json
mem_alloc = getattr(gc, "mem_alloc", lambda: 0)  # MicroPython only
gc.collect()
before = mem_alloc()
from evse.ocpp import clock, smart
gc.collect()
print(json.dumps({"import_bytes": mem_alloc() - before}))

def period(start, limit):
    return {"startPeriod": start, "limit": limit}

T = clock.parse_iso("2026-11-24T10:00:00.5+00:00")
saved = []
store = smart.Profiles(lambda: [], saved.append)
cp_max = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
          "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "W",
          "startSchedule": "2026-11-24T11:00:00+01:00", "chargingSchedulePeriod": [period(0, 11040)]}}
night = {"chargingProfileId": 2, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
         "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
         "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": "2026-11-20T22:00:00Z",
                              "duration": 28800, "chargingSchedulePeriod": [period(0, 6)]}}
default = {"chargingProfileId": 3, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
           "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A",
           "chargingSchedulePeriod": [period(0, 32), {"startPeriod": 3600, "limit": 10, "numberPhases": 1}]}}
tx = {"chargingProfileId": 4, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "transactionId": 7,
      "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A", "duration": 1800,
      "chargingSchedulePeriod": [period(0, 13)]}}
for connector, body in ((0, cp_max), (1, night), (0, default), (1, tx)):
    print(json.dumps({"validate": smart.validate(connector, body, 2, 7), "install": store.install(connector, body)}))
gc.collect()
limits = [smart.limit_at(store.items, c, T + s, T) for c in (0, 1, 2) for s in (0, 1799, 1800, 3600, 43200, 72000)]
print(json.dumps({"limits": limits}))
for connector in (0, 1, 2):
    for unit in ("A", "W"):
        print(json.dumps(smart.composite(store.items, connector, T, 86400, unit, tx_start_s=T, max_a=32)))
print(json.dumps({"iso": [clock.iso(T), clock.iso(0), clock.iso(4102444799)],
                  "parsed": [clock.parse_iso("2000-02-29T23:59:59Z"), clock.parse_iso("2026-11-24T10:00:00.5-05:30")],
                  "aligned": clock.aligned_after(T, 900)}))
print(json.dumps({"stored": json.loads(json.dumps(saved[-1])) == store.items}))
try:
    clock.parse_iso("2026-13-24T10:00:00Z")
except ValueError as e:
    print(json.dumps({"error": str(e)}))
"""


def run_example(argv, env):
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_micropython_computes_the_same_schedules_as_cpython(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(MPY_SCRIPT)
    firmware = str(REPO / "firmware")
    mpy = run_example([MICROPYTHON, "-X", "heapsize=96K", str(script)],
                      dict(os.environ, MICROPYPATH=firmware + ":.frozen"))
    shim = tmp_path / "cpython" / "micropython.py"
    shim.parent.mkdir()
    shim.write_text("def const(value):\n    return value\n")
    cpy = run_example([sys.executable, "-S", str(script)],
                      dict(os.environ, PYTHONPATH=f"{shim.parent}:{firmware}"))
    assert mpy[1:] == cpy[1:]
    # Compiled from source on the 64-bit unix port (8-byte words; 4 on the MCU): both modules.
    assert mpy[0]["import_bytes"] < 20 * 1024, mpy[0]
    assert all(line == {"validate": None, "install": True} for line in mpy[1:5])
    # Hand-worked: CP max 11040 W = 16 A (3 phases); TxProfile 13 A for 30 min, then the
    # Relative default (32 A, 10 A on one phase from 1 h), the daily night limit (6 A) from 22:00.
    assert mpy[5]["limits"] == [16, 16, 16, 16, 16, 16,
                                13, 13, 16, 10, 6, 10,
                                16, 16, 16, 10, 10, 10]
    assert [(p["startPeriod"], p["limit"]) for p in mpy[8]["chargingSchedulePeriod"]] == [
        (0, 13), (1800, 16), (3600, 10), (43200, 6), (72000, 10)]
    assert mpy[-1]["error"].startswith("timestamp '2026-13-24T10:00:00Z': month 13")
