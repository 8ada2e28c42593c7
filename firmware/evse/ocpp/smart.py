# OCPP 1.6 Smart Charging (spec 3.13, 5.5, 5.7, 5.16, 7.8-7.14): the charging profile store and
# the composite schedule. Pure: the caller passes the time, the transaction and the profiles.
#
# Profiles are kept as compact records (see compact()), not as the dicts they arrive in: times
# already parsed, periods in one flat list, so the every-second limit_at() parses nothing.
#
# Rules, and the choices the spec leaves open:
# - Within one purpose the leading profile at an instant is the one with the highest stackLevel
#   among those that apply then: inside validFrom..validTo (validTo excluded) and inside their
#   schedule (after its start, before start + duration). When the leader's duration has run
#   out, the next stack level shows through (3.13.2; CTT TC_072_CS).
# - TxProfile overrules TxDefaultProfile; a connector's own TxDefaultProfile overrules one
#   installed on connector 0 (which is the default for every connector); the limit is the
#   lowest of that and the leading ChargePointMaxProfile (3.13.5). All of this per instant.
# - ChargePointMaxProfile caps the whole charge point; for connector N it is applied as a cap
#   on that connector too, and connector 0's limit/composite is the ChargePointMaxProfile alone
#   (the site total the power sharing splits between the guns).
# - Relative profiles, and Absolute ones without startSchedule (7.13: "If absent the schedule
#   will be relative to start of charging"), start at tx_start_s; without a transaction they
#   are reported as if one started at the start of the composite (now_s).
# - Recurring profiles restart every day/week from their startSchedule and do not apply before
#   it; their duration, if any, counts from each restart.
# - Limits come out in the asked unit, W = A * voltage_v * phases, phases being the period's
#   numberPhases or the `phases` argument, floored to 0.1 (the schema's multipleOf) so a
#   conversion never rounds a limit up.
# - Where no profile applies there is no limit from OCPP: limit_at/composite report `max_a`
#   (the connector's rating) there, or, with max_a None, nothing (see composite()).
from micropython import const

from evse.ocpp.clock import parse_iso

# Above any charger's limit, in A or W; keeps limit * 10 * 230 V * 3 phases (_tenth, _convert)
# finite even in the 32-bit floats of the ESP32 port, where int() of inf raises.
LIMIT_MAX = 1e12

CP_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"

MAX_PER_CONNECTOR = const(8)
MAX_TOTAL = const(20)
MAX_PERIODS = const(24)  # reported as ChargingScheduleMaxPeriods
DAY_S = const(86400)
WEEK_S = const(604800)
_FOREVER = 1 << 62

# A compact record is a list (JSON on flash) with these fields.
R_CONNECTOR = const(0)
R_ID = const(1)
R_STACK = const(2)
R_PURPOSE = const(3)
R_KIND = const(4)
R_RECUR_S = const(5)  # 0, DAY_S or WEEK_S
R_FROM = const(6)  # epoch s or None
R_TO = const(7)
R_START = const(8)  # startSchedule epoch s; None: starts with the transaction
R_DURATION = const(9)  # s or None (the last period runs on)
R_UNIT = const(10)
R_PERIODS = const(11)  # [startPeriod, limit, numberPhases (0: not given), ...]
R_TX = const(12)  # transactionId or None


def _time(obj, key):
    text = obj.get(key)
    return None if text is None else parse_iso(text)


def validate(connector_id, profile, connectors, tx_id=None):
    """None when SetChargingProfile may install `profile` (a csChargingProfiles object that
    passed the JSON schema) on `connector_id`, else a short reason (the answer is Rejected).
    `tx_id`: the transactionId running on that connector, None when there is none."""
    if not 0 <= connector_id <= connectors:
        return "connectorId %d not in 0..%d" % (connector_id, connectors)
    purpose = profile.get("chargingProfilePurpose")
    if purpose == CP_MAX:
        if connector_id != 0:
            return "ChargePointMaxProfile only on connectorId 0"
    elif purpose == TX:
        if connector_id == 0:
            return "TxProfile needs a connectorId > 0"
        if tx_id is None:
            return "TxProfile without a transaction on connector %d" % connector_id
        want = profile.get("transactionId")
        if want is not None and want != tx_id:
            return "TxProfile for transaction %s, connector %d runs %s" % (want, connector_id,
                                                                           tx_id)
    elif purpose != TX_DEFAULT:
        return "chargingProfilePurpose %s" % purpose
    if profile.get("stackLevel", -1) < 0:
        return "stackLevel must be >= 0"
    kind = profile.get("chargingProfileKind")
    schedule = profile.get("chargingSchedule") or {}
    if kind == "Recurring":
        if profile.get("recurrencyKind") not in ("Daily", "Weekly"):
            return "Recurring needs recurrencyKind Daily or Weekly"
        if schedule.get("startSchedule") is None:
            return "Recurring needs chargingSchedule.startSchedule"
    elif kind not in ("Absolute", "Relative"):
        return "chargingProfileKind %s" % kind
    try:
        valid_from = _time(profile, "validFrom")
        valid_to = _time(profile, "validTo")
        _time(schedule, "startSchedule")
    except ValueError as e:
        return str(e)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        return "validTo not after validFrom"
    if schedule.get("chargingRateUnit") not in ("A", "W"):
        return "chargingRateUnit must be A or W"
    duration = schedule.get("duration")
    if duration is not None and duration < 0:
        return "duration %d < 0" % duration
    periods = schedule.get("chargingSchedulePeriod") or ()
    if not periods:
        return "no chargingSchedulePeriod"
    if len(periods) > MAX_PERIODS:
        return "%d periods, at most %d" % (len(periods), MAX_PERIODS)
    previous = None
    for period in periods:
        start = period.get("startPeriod", -1)
        if start != 0 if previous is None else start <= previous:
            return "startPeriods must be 0, then increasing (got %d)" % start
        previous = start
        limit = period.get("limit", -1)
        if not 0 <= limit <= LIMIT_MAX:  # JSON 1e999 reads as infinity
            return "limit must be 0..%g" % LIMIT_MAX
        phases = period.get("numberPhases")
        if phases is not None and not 1 <= phases <= 3:
            return "numberPhases %d not in 1..3" % phases
    return None


def compact(connector_id, profile):
    """The record this module keeps of a validated csChargingProfiles object."""
    schedule = profile["chargingSchedule"]
    kind = profile["chargingProfileKind"]
    recur_s = 0
    if kind == "Recurring":
        recur_s = WEEK_S if profile.get("recurrencyKind") == "Weekly" else DAY_S
    flat = []
    for period in schedule["chargingSchedulePeriod"]:
        flat.append(period["startPeriod"])
        flat.append(period["limit"])
        flat.append(period.get("numberPhases") or 0)
    return [connector_id, profile["chargingProfileId"], profile["stackLevel"],
            profile["chargingProfilePurpose"], kind, recur_s,
            _time(profile, "validFrom"), _time(profile, "validTo"),
            None if kind == "Relative" else _time(schedule, "startSchedule"),
            schedule.get("duration"), schedule["chargingRateUnit"], flat,
            profile.get("transactionId")]


def _sound(record):
    """A stored record the limit computation can use: the shape compact() gives, finite limits."""
    try:
        flat = record[R_PERIODS]
        return len(record) == R_PERIODS + 2 and all(0 <= flat[k] <= LIMIT_MAX for k in range(1, len(flat), 3))
    except (TypeError, IndexError):
        return False


class Profiles:
    """The installed profiles, as compact records in `items`, saved through `save(list)` after
    every change and read back with `load() -> list` (the caller maps both to a JSON file)."""

    def __init__(self, load, save, per_connector=MAX_PER_CONNECTOR, total=MAX_TOTAL):
        self._save = save
        self.per_connector = per_connector
        self.total = total
        # What flash holds is checked again: a bad record is left out, never a crash every second.
        self.items = [r for r in (load() or ()) if _sound(r)]

    def _store(self, kept):
        self._save(kept)  # flash first: if that fails, RAM still holds what flash holds
        self.items = kept

    def install(self, connector_id, profile):
        """Install a validated profile. It replaces the one with the same chargingProfileId, and
        the one with the same stackLevel and purpose on the same connector (5.16). False when
        the store is full (answer Rejected)."""
        record = compact(connector_id, profile)
        kept = []
        on_connector = 0
        for r in self.items:
            if r[R_ID] == record[R_ID] or (r[R_CONNECTOR] == connector_id
                                           and r[R_STACK] == record[R_STACK]
                                           and r[R_PURPOSE] == record[R_PURPOSE]):
                continue
            kept.append(r)
            if r[R_CONNECTOR] == connector_id:
                on_connector += 1
        if len(kept) >= self.total or on_connector >= self.per_connector:
            return False
        kept.append(record)
        self._store(kept)
        return True

    def clear(self, id=None, connector_id=None, purpose=None, stack_level=None):
        """ClearChargingProfile (5.5): with `id` only that profile, whatever the other criteria;
        else every profile matching all criteria given (none given: all). True if any went
        (Accepted), False if none matched (Unknown)."""
        kept = []
        for r in self.items:
            if id is not None:
                hit = r[R_ID] == id
            else:
                hit = ((connector_id is None or r[R_CONNECTOR] == connector_id)
                       and (purpose is None or r[R_PURPOSE] == purpose)
                       and (stack_level is None or r[R_STACK] == stack_level))
            if not hit:
                kept.append(r)
        if len(kept) == len(self.items):
            return False
        self._store(kept)
        return True

    def remove_tx(self, connector_id):
        """Drop the connector's TxProfiles: they end with their transaction (3.13.1)."""
        return self.clear(connector_id=connector_id, purpose=TX)


def _locate(r, t, origin):
    """(index of the period of record r in force at t, or -1; the next instant after t at which
    that can change)."""
    valid_from = r[R_FROM]
    if valid_from is not None and t < valid_from:
        return -1, valid_from
    valid_to = r[R_TO]
    if valid_to is None:
        valid_to = _FOREVER
    elif t >= valid_to:
        return -1, _FOREVER
    base = r[R_START]
    if base is None:
        base = origin
    recur_s = r[R_RECUR_S]
    wrap = _FOREVER
    if recur_s and t >= base:
        base += (t - base) // recur_s * recur_s
        wrap = base + recur_s
    if t < base:
        return -1, base if base < valid_to else valid_to
    end = wrap
    duration = r[R_DURATION]
    if duration is not None and base + duration < end:
        end = base + duration
    if t >= end:
        return -1, wrap if wrap < valid_to else valid_to
    # The last period whose startPeriod <= t - base: binary search over the flat triples.
    periods = r[R_PERIODS]
    offset = t - base
    lo = 0
    hi = len(periods) // 3 - 1
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if periods[mid * 3] <= offset:
            lo = mid
        else:
            hi = mid - 1
    i = lo * 3
    if i + 3 < len(periods) and base + periods[i + 3] < end:
        end = base + periods[i + 3]
    return i, end if end < valid_to else valid_to


def _convert(limit, from_unit, to_unit, phases, voltage_v):
    if from_unit == to_unit:
        return limit
    if to_unit == "W":
        return limit * voltage_v * phases
    return limit / (voltage_v * phases)


def _tenth(value):
    # Floor to the schema's 0.1 step; the epsilon keeps 16.0 * 10 = 159.99999 at 16.0.
    return int(value * 10 + 1e-6) / 10


def _limit(items, connector_id, t, origin, unit, voltage_v, phases):
    """(limit in `unit` at t or None, numberPhases of the period that set it or 0, the next
    instant at which the answer may change)."""
    until = _FOREVER
    cap_stack = tx_stack = own_stack = all_stack = -1
    cap = tx = own = default = None
    cap_i = tx_i = own_i = all_i = 0
    for r in items:
        purpose = r[R_PURPOSE]
        on = r[R_CONNECTOR]
        if purpose != CP_MAX and (connector_id == 0 or (on != connector_id and not (
                on == 0 and purpose == TX_DEFAULT))):
            continue
        i, next_t = _locate(r, t, origin)
        if next_t < until:
            until = next_t
        if i < 0:
            continue
        stack = r[R_STACK]
        if purpose == CP_MAX:
            if stack > cap_stack:
                cap, cap_i, cap_stack = r, i, stack
        elif purpose == TX:
            if stack > tx_stack:
                tx, tx_i, tx_stack = r, i, stack
        elif on == 0:
            if stack > all_stack:
                default, all_i, all_stack = r, i, stack
        elif stack > own_stack:
            own, own_i, own_stack = r, i, stack
    if tx is None:
        tx, tx_i = (own, own_i) if own is not None else (default, all_i)
    if cap is None:
        if tx is None:
            return None, 0, until
        return _value(tx, tx_i, unit, phases, voltage_v), tx[R_PERIODS][tx_i + 2], until
    cap_limit = _value(cap, cap_i, unit, phases, voltage_v)
    if tx is not None:
        tx_limit = _value(tx, tx_i, unit, phases, voltage_v)
        if tx_limit <= cap_limit:
            return tx_limit, tx[R_PERIODS][tx_i + 2], until
    return cap_limit, cap[R_PERIODS][cap_i + 2], until


def _value(r, i, unit, phases, voltage_v):
    periods = r[R_PERIODS]
    return _convert(periods[i + 1], r[R_UNIT], unit, periods[i + 2] or phases, voltage_v)


def limit_at(items, connector_id, now_s, tx_start_s=None, max_a=None, voltage_v=230, phases=3):
    """The cap in amps per phase (floored to 0.1) that the profiles set on the connector at
    now_s, at most max_a; where none applies, max_a (None: no cap). Equal to composite(items, connector_id,
    start, duration, "A", tx_start_s, max_a) at now_s; with no transaction Relative profiles
    start at now_s, so pass the composite's start as tx_start_s to compare one without."""
    limit = _limit(items, connector_id, now_s, now_s if tx_start_s is None else tx_start_s,
                   "A", voltage_v, phases)[0]
    if limit is None:
        return None if max_a is None else _tenth(max_a)
    limit = _tenth(limit)
    return limit if max_a is None or limit <= _tenth(max_a) else _tenth(max_a)   # never above the rating


def composite(items, connector_id, now_s, duration_s, unit, tx_start_s=None, max_a=None,
              voltage_v=230, phases=3):
    """GetCompositeSchedule (5.7): the schedule from now_s for duration_s seconds as
    {"startSchedule": now_s, "duration": s, "chargingRateUnit": unit,
     "chargingSchedulePeriod": [{"startPeriod": s, "limit": x[, "numberPhases": n]}, ...]},
    periods strictly increasing and no two neighbours equal.
    Where no profile applies the limit is max_a (the connector's rating, converted to `unit`),
    and no limit is above it.
    With max_a None nothing is made up instead: periods begin at the first instant a profile
    applies, and the schedule (its "duration") ends where none applies any more; an empty
    period list means no profile applies in the window."""
    unit = unit or "A"
    if duration_s < 0:
        duration_s = 0
    origin = now_s if tx_start_s is None else tx_start_s
    end_s = now_s + duration_s
    fill = None if max_a is None else _tenth(_convert(max_a, "A", unit, phases, voltage_v))
    periods = []
    last_limit = last_phases = None
    t = now_s
    while t < end_s:
        limit, limit_phases, until = _limit(items, connector_id, t, origin, unit, voltage_v,
                                            phases)
        if limit is None:
            if fill is None:
                if periods:
                    end_s = t  # no profile from here on: the schedule ends
                    break
                t = until
                continue
            limit, limit_phases = fill, 0
        else:
            limit = _tenth(limit)
            if fill is not None and limit > fill:
                limit = fill   # a profile above the connector's rating: the rating
        if limit != last_limit or limit_phases != last_phases:
            period = {"startPeriod": t - now_s, "limit": limit}
            if limit_phases:
                period["numberPhases"] = limit_phases
            periods.append(period)
            last_limit, last_phases = limit, limit_phases
        t = until
    return {"startSchedule": now_s, "duration": end_s - now_s, "chargingRateUnit": unit,
            "chargingSchedulePeriod": periods}
