"""Every OCPP 1.6 request the central system can send, fuzzed through evse.ocpp.ops.dispatch (and
the frame parser in front of it): a request that fits the official JSON schema gets a CALLRESULT
that fits the response schema; a malformed one gets the CALLERROR its fault calls for (never
InternalError, which would be a handler bug) and changes nothing; whatever comes, the charge
point still answers, closes no contactor it was not asked to and keeps files that load again."""
import functools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import jsonschema
import ocpp.v16
import pytest
from hypothesis import given, settings, strategies as st

from evse import config
from evse.ocpp import keys, ops, ops_more, rpc
from evse.ocpp.clock import iso, parse_iso
from evse.ocpp.cp import ChargePoint
from evse.ocpp.ws import MAX_MESSAGE

SCHEMAS = Path(ocpp.v16.__file__).parent / "schemas"
ACTIONS = sorted(set(ops.HANDLERS) | set(ops.MORE))
GUNS = 2
NOW = parse_iso("2026-06-01T12:00:00Z")
DAY = 86400
TAGS = ("TAG1", "tag1", "TAG2", "BLOCKED", "NEW")  # idTags are case-insensitive: TAG1 == tag1
# The codes a malformed payload may get (OCPP-J 1.6 4.2.3). InternalError means a handler broke.
PROPER = ("FormationViolation", "ProtocolError", "TypeConstraintViolation", "PropertyConstraintViolation",
          "OccurenceConstraintViolation", "NotSupported", "NotImplemented")
CONNECTOR_FROM_1 = ("RemoteStartTransaction", "UnlockConnector")  # connector 0 is the whole charger


@functools.lru_cache(maxsize=None)
def schema(name):
    """The official schema, its "$ref"s to its own definitions inlined (the security
    whitepaper's schemas use them; the core ones do not)."""
    root = json.loads((SCHEMAS / (name + ".json")).read_text())

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                target = root
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target[part]
                return inline(target)
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node
    return inline(root)


def _tenths(validator, step, value, _schema):
    # jsonschema divides floats naively (0.3 / 0.1 != 3); the firmware floors limits to 0.1 itself.
    quotient = value / step if validator.is_type(value, "number") else 0
    if math.isfinite(quotient) and abs(round(quotient) - quotient) > 1e-6 * max(1, abs(quotient)):
        yield jsonschema.ValidationError("%r is not a multiple of %s" % (value, step))


def _date_time(text):
    parse_iso(text)  # ValueError: not an RFC 3339 date-time
    return text[10] in "Tt" and (text[-1] in "Zz" or text[-6] in "+-")


FORMATS = jsonschema.FormatChecker(())
FORMATS.checks("date-time", ValueError)(_date_time)
Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"multipleOf": _tenths})


@functools.lru_cache(maxsize=None)
def validator(name):
    return Validator(schema(name), format_checker=FORMATS)


def fits(value, name):
    return validator(name).is_valid(value)


# ---- payloads from the schemas ----------------------------------------------------------------------------
def date_times(wide):
    seconds = st.integers(parse_iso("0001-01-01T00:00:00Z"), parse_iso("9999-12-31T23:59:59Z")) if wide \
        else st.integers(NOW - 2 * DAY, NOW + 7 * DAY)
    # RFC 3339 spellings beyond our own: a fraction, a zone offset (the instant moves, the form is valid).
    return st.builds(lambda s, fraction, zone: iso(s)[:-1] + fraction + zone, seconds,
                     st.sampled_from(("", ".5", ".123456")), st.sampled_from(("Z", "Z", "+02:00", "-05:30")))


def sensible(action, name):
    """Values a real central system sends, so the handlers get past their range checks."""
    if name == "connectorId":
        return st.integers(1 if action in CONNECTOR_FROM_1 else 0, GUNS)
    if name in ("idTag", "parentIdTag"):
        return st.sampled_from(TAGS)
    if name == "key":
        return st.sampled_from(sorted(keys.KEYS)) | st.text(max_size=8)
    if name == "value":
        return st.sampled_from(("true", "false", "0", "60", "3600", "Energy.Active.Import.Register", "RST", "x"))
    if name in ("limit", "minChargingRate"):
        return st.integers(0, 640).map(lambda tenths: tenths / 10)
    if name == "numberPhases":
        return st.integers(1, 3)
    if name == "startPeriod":  # smart.validate wants 0, then increasing
        return st.sampled_from((0, 0, 1800, 3600))
    if name == "chargingProfilePurpose":  # a TxProfile needs a transaction, a ChargePointMaxProfile connector 0
        return st.sampled_from(("TxDefaultProfile", "TxDefaultProfile", "ChargePointMaxProfile", "TxProfile"))
    if name in ("stackLevel", "listVersion"):
        return st.integers(0, 8)
    if name in ("transactionId", "reservationId", "chargingProfileId", "id"):
        return st.sampled_from((1, 2, 7))  # the bench's transaction is 7, its profiles 1 and 2
    if name == "vendorId":
        return st.sampled_from(("evse", "other"))
    return None


def payloads(s, action, name="", wide=False):
    """Values that fit schema `s`: those a real central system sends and, with `wide`, field by
    field as often any other value the schema allows."""
    kind = s.get("type")
    if kind == "object":
        props = s.get("properties", {})
        need = s.get("required", [])
        return st.fixed_dictionaries(
            dict((k, payloads(props[k], action, k, wide)) for k in need),
            optional=dict((k, payloads(props[k], action, k, wide)) for k in props if k not in need))
    if kind == "array":  # an empty one is much like an absent one
        return st.lists(payloads(s["items"], action, name, wide), min_size=0 if wide else 1, max_size=3)
    usual = sensible(action, name)
    if usual is None:
        usual = scalars(s, False)
    return usual | scalars(s, True) if wide else usual


def scalars(s, wide):
    kind = s.get("type")
    if "enum" in s:
        return st.sampled_from(s["enum"])
    if kind == "integer":
        return st.integers(-2 ** 31, 2 ** 31) | st.integers(-2 ** 53, 2 ** 53) if wide else st.integers(0, 3 * DAY)
    if kind == "number":  # multipleOf 0.1; JSON 1e999 reads as infinity
        return st.integers(-10 ** 7, 10 ** 7).map(lambda tenths: tenths / 10) \
            | st.sampled_from((1e12, 1e30, 1e308, math.inf, -math.inf)) if wide else st.integers(0, 640)
    if s.get("format") == "date-time":
        return date_times(wide)
    if s.get("format") == "uri":
        return st.sampled_from(("ftp://csms.example/fw.bin", "https://csms.example/upload/"))
    chars = st.characters(codec="utf-8") if wide else st.characters(min_codepoint=32, max_codepoint=126)
    return st.text(chars, max_size=s.get("maxLength", 40))


def requests(action, wide=False):
    return payloads(schema(action), action, wide=wide)


# ---- one fault in an otherwise good payload ----------------------------------------------------------------
WRONG = {"string": "1", "integer": 1, "number": 1.5, "boolean": True, "null": None, "array": [], "object": {}}
OTHER_NAMES = ("transactionId", "connectorId", "status", "idTag", "data", "Key", "")
BAD_DATES = ("yesterday", "", "2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-06-01 12:00:00Z",
             "2026-06-01T25:00:00Z", "2026-06-01T12:00:00+2")


def places(value, s, path=()):
    """(path, schema) of every value inside a payload, the payload itself first."""
    yield path, s
    if s.get("type") == "object":
        for k in value:
            yield from places(value[k], s["properties"][k], path + (k,))
    elif s.get("type") == "array":
        for i, item in enumerate(value):
            yield from places(item, s["items"], path + (i,))


def faults(s, path):
    """The faults a value of schema `s` can have: (what, the key to drop or a strategy of the
    wrong value, the CALLERROR code rpc.py maps that fault to)."""
    kind = s.get("type")
    found = []
    if kind == "object":
        props = s.get("properties", {})
        for k in s.get("required", ()):
            found.append(("drop " + k, k, "ProtocolError"))
        extra = st.sampled_from(OTHER_NAMES) | st.text(min_size=1, max_size=8)
        found.append(("extra", extra.filter(lambda k: k not in props), "FormationViolation"))
    wrong = [v for t, v in WRONG.items() if t != kind and not (kind == "number" and t == "integer")]
    # A payload that is not an object is a broken frame (rpc.parse says so too), not a bad field.
    found.append(("type", st.sampled_from(wrong), "FormationViolation" if not path else "TypeConstraintViolation"))
    if "maxLength" in s:
        most = s["maxLength"]
        long_text = (st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=most + 1, max_size=most + 9)
                     if most < 4000 else   # hypothesis makes no text that long: a run of one character
                     st.tuples(st.characters(min_codepoint=32, max_codepoint=126), st.integers(1, 9)).map(
                         lambda ck, most=most: ck[0] * (most + ck[1])))
        found.append(("long", long_text, "TypeConstraintViolation"))
    if "enum" in s:
        odd = st.sampled_from(s["enum"]).map(lambda v: v.lower()) | st.text(max_size=12)
        found.append(("enum", odd.filter(lambda v: v not in s["enum"]), "PropertyConstraintViolation"))
    if s.get("format") == "date-time":
        found.append(("date", st.sampled_from(BAD_DATES), "PropertyConstraintViolation"))
    if kind == "number":  # JSON 1e999 reads as infinity
        found.append(("infinite", st.sampled_from((math.inf, -math.inf)), "PropertyConstraintViolation"))
    return found


@st.composite
def malformed(draw, action):
    """(payload with exactly one fault, the code it must get, what the fault is)."""
    good = draw(requests(action))
    options = [(path, f) for path, s in places(good, schema(action)) for f in faults(s, path)]
    path, (what, new, code) = draw(st.sampled_from(options))
    bad = json.loads(json.dumps(good))
    parent = None
    here = bad
    for step in path:
        parent, here = here, here[step]
    if what.startswith("drop "):
        del here[new]
    elif what == "extra":
        here[draw(new)] = draw(st.sampled_from(list(WRONG.values())))
    elif path:
        parent[path[-1]] = draw(new)
    else:
        bad = draw(new)
    return bad, code, "%s at %s" % (what, "/".join(str(p) for p in path))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=8)


def near_payloads(action):
    """Objects with the action's own field names (and some others) holding any JSON."""
    names = list(schema(action).get("properties", ())) + list(OTHER_NAMES)
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=4), JSON, max_size=4)


# ---- a charge point on a bench -------------------------------------------------------------------------------
class Ticks:
    ms = 0


@pytest.fixture(scope="module", autouse=True)
def micropython_time():
    # cp.py and clock use MicroPython's time.ticks_*: a clock the tests advance.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "ticks_ms", lambda: Ticks.ms, raising=False)
        mp.setattr(time, "ticks_diff", lambda end, start: end - start, raising=False)
        mp.setattr(time, "ticks_add", lambda t, delta: t + delta, raising=False)
        yield


class FakeGun:
    def __init__(self, state, fault=None):
        self.state = state
        self.fault = fault
        self.max_a = 32
        self.current_a = 0.0
        self.temperature_c = 25.0
        self.contactor = False
        self.meter_ok = True

    def offered_a(self):
        return 16.0 if self.contactor else 0.0

    def ev_plugged(self):
        return self.state[0] in "BCD"

    def needs_technician(self):
        return self.fault in ("WELD", "CONTACTOR", "INTERLOCK")


class MemoryConfig(config.Config):
    """The controller's settings as evse.config checks them (the keys the charge point mirrors
    read and set them), kept in memory: a sim board whose site_limit_a is 63 A."""

    def __init__(self):
        board = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-ac2.json").read_text())
        board["site_limit_a"] = 63
        config.Config.__init__(self, board, "/nonexistent-fuzz-bench")

    def set(self, key, value):
        value = self.consistent(key, self.check(key, value))
        self.values = dict(self.values, **{key: value})
        return value


class FakeApp:
    """What ChargePoint asks of evse.app.App, and a record of what it asked."""

    def __init__(self, guns, unlock_result):
        self.guns = guns
        self.board = {"name": "fuzz bench", "guns": [{"max_a": 32}] * len(guns), "phases": 3}
        self.cfg = MemoryConfig()
        self.unlock_result = unlock_result
        self.reboots = []
        self.unlocks = []
        self.lines = []
        self.floors = []
        self.cabinet = None   # an AC bench; a DC one has a cabinet whose modules may be out of use

    def phases(self, n):
        return 3

    def reading(self, n):
        return None  # no meter: energy and power come from energy_wh and power_w

    def energy_wh(self, n):
        return 1000.0 * n

    def power_w(self, n):
        return 0.0

    def energy_floor(self, n, wh):
        self.floors.append((n, wh))

    def unlock(self, n):
        self.unlocks.append(n)
        return self.unlock_result

    def reboot(self, hard):
        self.reboots.append(hard)

    def log(self, text):
        self.lines.append(text)

    async def after_boot(self, cp):
        pass

    def client_csr(self):
        return None   # no key pair made at commissioning

    def client_cert_missing(self):
        return "it needs this charge point's certificate: set ocpp_cert and ocpp_key"


@st.composite
def benches(draw):
    """How the charger stands when the request comes."""
    return {"states": draw(st.tuples(st.sampled_from("ABC"), st.sampled_from("ABC"))),
            "fault": draw(st.sampled_from((None, None, "RCD"))),
            "tx_on_2": draw(st.booleans()),
            "clock_known": draw(st.booleans()),
            "stores": draw(st.booleans()),  # a local list and charging profiles already installed
            "unlock": draw(st.sampled_from((None, True, False)))}


def profile(pid, purpose, kind="Absolute", **extra):
    body = {"chargingProfileId": pid, "stackLevel": 1, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": {
                "chargingRateUnit": "A", "startSchedule": iso(NOW - DAY),
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}, {"startPeriod": 7 * 3600, "limit": 32}]}}
    body.update(extra)
    return body


def start(root, bench):
    states = list(bench["states"])
    if bench["tx_on_2"]:
        states[1] = "C"
        with open(os.path.join(root, "ocpp_tx.json"), "w") as f:
            json.dump({"2": {"id": 7, "tag": "TAG2", "start_s": NOW - 600, "meter_start": 0, "seen_s": NOW}}, f)
    app = FakeApp([FakeGun(states[0], bench["fault"]), FakeGun(states[1])], bench["unlock"])
    cp = load(app, root)
    if bench["clock_known"]:
        cp.clock.set(NOW)
    if bench["stores"]:
        cp.auth.send_local_list({"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
            {"idTag": "TAG1", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "BLOCKED", "idTagInfo": {"status": "Blocked"}}]})
        assert cp.profiles.install(0, profile(1, "TxDefaultProfile", "Recurring", recurrencyKind="Daily"))
        assert cp.profiles.install(0, profile(2, "ChargePointMaxProfile"))
    return cp, app


def load(app, root):
    cp = ChargePoint(app, root, "ws://csms.example/ocpp", "CP1", log=app.log)
    # These start asyncio tasks that go on the network: here they only note what they were asked.
    cp.started = []
    cp.start_firmware_update = lambda *args: cp.started.append(("firmware",) + args)
    cp.start_diagnostics = lambda *args: cp.started.append(("diagnostics",) + args) or "diagnostics-CP1.txt"
    cp.start_log = lambda *args: cp.started.append(("log",) + args) or "security-CP1.txt"
    return cp


def model(cp):
    """Everything a request may change, as comparable text."""
    return json.dumps([[[c.tx, c.tag, c.operative, c.scheduled, c.reservation] for c in cp.connectors],
                       cp.keys.values, cp.auth.version, cp.auth.list_entries(), cp.auth.cache, cp.profiles.items,
                       cp.pending_profile, len(cp.later), len(cp.outbox), cp._reset, cp.started],
                      sort_keys=True, default=repr)


def ask(cp, action, payload, uid="fz-1"):
    """The decoded answer to one CALL; the work it left for after the answer is done too."""
    text = ops.dispatch(cp, uid, action, payload)
    ops.after(cp, action)
    assert len(text) <= MAX_MESSAGE, (action, payload, text[:200])  # what the charger itself would take
    answer = json.loads(text)
    assert answer[1] == uid
    return answer


def serve(cp, text):
    """What cp._reader answers to one frame from the wire: the decoded answer, or None (dropped)."""
    try:
        msg = rpc.parse(text)
    except rpc.RpcError as e:
        return None if e.uid is None else json.loads(rpc.error(e.uid, e.code, e.description))
    if msg[0] != rpc.CALL:
        return None
    return ask(cp, msg[2], msg[3], msg[1])


def answers_result(answer, action):
    assert answer[0] == rpc.CALLRESULT, answer
    assert fits(answer[2], action + "Response"), (action, answer[2])


def answers_error(answer, codes=PROPER):
    assert answer[0] == rpc.CALLERROR and len(answer) == 5, answer
    assert answer[2] in codes, answer


def still_sane(cp, app, root):
    assert not [line for line in app.lines if "handler failed" in line or "ocpp: after" in line], app.lines
    answers_result(ask(cp, "GetConfiguration", {}), "GetConfiguration")
    for n in range(1, GUNS + 1):
        limit = cp.limit_a(n)  # the every-second cap of the control loop
        assert limit is None or 0 <= limit <= 32
    names = os.listdir(root)
    assert not [n for n in names if n.endswith((".bad", ".tmp"))], names
    for name in names:
        if name.endswith(".json"):
            with open(os.path.join(root, name)) as f:
                json.load(f)


# ---- the tests -------------------------------------------------------------------------------------------------
def test_every_handler_has_an_official_request_and_response_schema():
    for action in ACTIONS:
        assert (SCHEMAS / (action + ".json")).exists() and (SCHEMAS / (action + "Response.json")).exists(), action
    assert set(ops.TRIGGERABLE) == set(schema("TriggerMessage")["properties"]["requestedMessage"]["enum"])


@pytest.mark.parametrize("action", ACTIONS)
@settings(max_examples=10)
@given(data=st.data())
def test_the_generated_requests_fit_the_official_schema(action, data):
    # The fuzz below is only as good as this: every payload called valid is valid.
    payload = data.draw(requests(action) | requests(action, wide=True))
    assert fits(payload, action), payload


@pytest.mark.parametrize("action", ACTIONS)
@settings(max_examples=25, deadline=None)
@given(bench=benches(), data=st.data())
def test_a_request_a_csms_would_send_gets_a_result_that_fits_the_response_schema(action, bench, data):
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, bench)
        answers_result(ask(cp, action, data.draw(requests(action))), action)
        still_sane(cp, app, root)


@pytest.mark.parametrize("action", ACTIONS)
@settings(max_examples=25, deadline=None)
@given(bench=benches(), data=st.data())
def test_any_schema_valid_request_gets_a_result_or_property_constraint_violation(action, bench, data):
    # Valid by the schema but not for this charger (connector 7, a negative retry count): 1.6 4.2.3
    # "at least one field contains an invalid value".
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, bench)
        answer = ask(cp, action, data.draw(requests(action, wide=True)))
        if answer[0] == rpc.CALLERROR:
            answers_error(answer, ("PropertyConstraintViolation",))
        else:
            answers_result(answer, action)
        still_sane(cp, app, root)


@pytest.mark.parametrize("action", ACTIONS)
@settings(max_examples=30, deadline=None)
@given(bench=benches(), data=st.data())
def test_a_request_with_one_fault_gets_the_callerror_of_that_fault_and_changes_nothing(action, bench, data):
    payload, code, what = data.draw(malformed(action))
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, bench)
        before = model(cp)
        answer = ask(cp, action, payload)
        assert answer[0] == rpc.CALLERROR and answer[2] == code, (what, payload, answer)
        assert model(cp) == before, (what, payload)
        still_sane(cp, app, root)


@settings(max_examples=150, deadline=None)
@given(bench=benches(), data=st.data())
def test_any_json_payload_gets_a_result_only_if_it_fits_the_schema_else_a_proper_callerror(bench, data):
    action = data.draw(st.sampled_from(ACTIONS + ["Heartbeat", "BootNotification", "Nonsense", ""]))
    payload = data.draw(near_payloads(action) if action in ACTIONS else JSON)
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, bench)
        answer = ask(cp, action, payload)
        if action not in ACTIONS:
            answers_error(answer, ("NotImplemented", "NotSupported", "FormationViolation"))
        elif fits(payload, action):
            if answer[0] == rpc.CALLERROR:
                answers_error(answer, ("PropertyConstraintViolation",))
            else:
                answers_result(answer, action)
        else:
            answers_error(answer)
        still_sane(cp, app, root)


FRAMES = (st.text(max_size=40)
          | st.lists(JSON, max_size=5).map(json.dumps)
          | st.builds(lambda uid, action, payload: json.dumps([2, uid, action, payload]),
                      st.text(max_size=40), st.sampled_from(ACTIONS) | st.text(max_size=8), JSON)
          | st.sampled_from(ACTIONS).flatmap(lambda a: requests(a).map(lambda p: json.dumps([2, "u1", a, p]))))


@settings(max_examples=200, deadline=None)
@given(bench=benches(), text=FRAMES)
def test_any_frame_from_the_wire_is_answered_with_a_result_or_a_proper_callerror_or_dropped(bench, text):
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, bench)
        answer = serve(cp, text)
        if answer is not None and answer[0] == rpc.CALLERROR:
            answers_error(answer)
        still_sane(cp, app, root)


def calls():
    """(action, payload): half of them as a CSMS would send, the others odd or broken."""
    return st.sampled_from(ACTIONS).flatmap(lambda a: st.tuples(st.just(a), st.one_of(
        requests(a), requests(a), requests(a, wide=True), malformed(a).map(lambda case: case[0]))))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(bench=benches(), run=st.lists(calls(), min_size=2, max_size=10))
def test_a_run_of_good_and_bad_requests_leaves_a_charge_point_that_works_and_reloads_the_same(bench, run):
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, bench)
        reset_accepted = False
        for i, (action, payload) in enumerate(run):
            charging = [cp.may_charge(n) for n in range(1, GUNS + 1)]
            answer = ask(cp, action, payload, "fz-%d" % i)
            if answer[0] == rpc.CALLERROR:
                answers_error(answer)
            else:
                answers_result(answer, action)
            accepted = answer[0] == rpc.CALLRESULT and answer[2].get("status") == "Accepted"
            reset_accepted |= action == "Reset" and accepted
            Ticks.ms += 1000
            cp.supervise()  # the charger's next second: an EV plugged in starts its transaction
            for n in range(1, GUNS + 1):
                # Only a transaction (an accepted RemoteStart, or one already running) closes a contactor.
                if cp.may_charge(n) and not charging[n - 1]:
                    assert action == "RemoteStartTransaction" and accepted, (n, action, payload, answer)
                app.guns[n - 1].contactor = cp.may_charge(n)
            assert reset_accepted or not app.reboots
            still_sane(cp, app, root)
        again = load(FakeApp(app.guns, None), root)  # a reboot: everything stored loads back
        for c, d in zip(cp.connectors, again.connectors):
            assert c.operative == d.operative
            assert (c.tx or {}).get("id") == (d.tx or {}).get("id")
        assert again.keys.values == cp.keys.values
        assert (again.auth.version, again.auth.list_entries()) == (cp.auth.version, cp.auth.list_entries())
        assert again.profiles.items == cp.profiles.items
        assert len(again.journal) == len(cp.journal)


# ---- what the fuzz found ---------------------------------------------------------------------------------------
BENCH = {"states": ("C", "A"), "fault": None, "tx_on_2": False, "clock_known": True, "stores": False, "unlock": None}


def test_another_card_at_a_connector_reserved_without_a_parent_is_refused_without_asking():
    # OCTT TC_046_1: no Authorize.req for a card that cannot match the reservation.
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, dict(BENCH, states=("A", "A")))
        cp.online = True
        answer = ask(cp, "ReserveNow", {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z",
                                        "idTag": "AA11", "reservationId": 3})
        assert answer[2] == {"status": "Accepted"}, answer
        cp.outbox.clear()
        cp.swipe(1, "BB22")
        assert not [m for m in cp.outbox if m[0] == "Authorize"] and cp.connectors[1].tag is None
        assert any("reserved for another card; BB22 refused" in line for line in app.lines)
        cp.swipe(1, "AA11")   # the reserved card is asked about as before
        assert [m[1] for m in cp.outbox if m[0] == "Authorize"] == [{"idTag": "AA11"}]


@pytest.mark.parametrize("parent, stops", [("P1", True), ("P2", False), (None, False)])
def test_another_card_of_the_transactions_group_ends_it_after_an_authorize(parent, stops):
    # OCTT TC_069: a card the charger does not know is asked about; the same parentIdTag ends it.
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, dict(BENCH, states=("C", "A")))
        cp.online = True
        c = cp.connectors[1]
        c.tx = {"id": 5, "tag": "AA11", "parent": "P1", "start_s": NOW - 60, "meter_start": 0}
        cp.outbox.clear()
        cp.swipe(1, "BB22")
        asked = [m for m in cp.outbox if m[0] == "Authorize"]
        assert [m[1] for m in asked] == [{"idTag": "BB22"}]
        info = {"status": "Accepted", **({"parentIdTag": parent} if parent else {})}
        asked[0][2]({"idTagInfo": info})
        assert (c.tx is None or c.stopping is not None) == stops
        if stops:
            assert ("StopTransaction", 5, "Local") in _queued(cp)


@pytest.mark.parametrize("connector", [0, GUNS + 1, 99])
def test_unlock_of_a_connector_the_charger_does_not_have_is_not_supported_and_changes_nothing(connector):
    # OCTT TC_031: a valid request for an unknown connector gets status NotSupported, not a CALLERROR.
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, BENCH)
        before = model(cp)
        answer = ask(cp, "UnlockConnector", {"connectorId": connector})
        assert answer[0] == rpc.CALLRESULT and answer[2] == {"status": "NotSupported"}, answer
        assert model(cp) == before and app.unlocks == []
        still_sane(cp, app, root)


@pytest.mark.parametrize("limit", [1e308, math.inf])
def test_a_limit_beyond_the_floats_of_the_board_is_refused_and_the_every_second_cap_still_computes(limit):
    # It was installed, and smart._tenth then raised OverflowError in cp.limit_a (the control
    # loop's cap) and in GetCompositeSchedule. JSON 1e999 reads as infinity.
    body = profile(5, "TxDefaultProfile")
    body["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = limit
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, BENCH)
        answer = ask(cp, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": body})
        answers_error(answer, ("PropertyConstraintViolation",))
        assert "limit" in answer[3] and cp.profiles.items == []
        still_sane(cp, app, root)


def test_a_composite_schedule_asked_for_years_is_cut_to_what_fits_in_one_message():
    # A daily profile repeats its periods every day: 10**9 s of them made a 900 kB answer.
    with tempfile.TemporaryDirectory() as root:
        cp, app = start(root, dict(BENCH, stores=True))
        answer = ask(cp, "GetCompositeSchedule", {"connectorId": 1, "duration": 10 ** 9})
        answers_result(answer, "GetCompositeSchedule")
        assert answer[2]["chargingSchedule"]["duration"] == ops_more.COMPOSITE_MAX_S
        assert len(answer[2]["chargingSchedule"]["chargingSchedulePeriod"]) == 4  # 16 A, 32 A, 16 A, 32 A


def test_a_power_module_out_of_use_shows_on_connector_0_with_its_vendor_code_and_clears(tmp_path):
    class Stage:
        out = (2, "infy:000800", "fan fault")

        def faulty(self):
            return self.out

    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    app.cabinet = type("Cabinet", (), {"stage": Stage()})()
    cp = load(app, str(tmp_path))

    def sent():
        said = [m[1] for m in cp.outbox if m[0] == "StatusNotification" and m[1]["connectorId"] == 0]
        cp.outbox.clear()
        return said

    cp._statuses(False)
    assert [(s["status"], s["errorCode"], s["vendorErrorCode"]) for s in sent()] == [
        ("Available", "OtherError", "infy:000800")]
    cp._statuses(False)
    assert sent() == []                                   # once per change
    app.cabinet.stage.out = (3, "infy:silent", "not answering")
    cp._statuses(False)
    assert [s["vendorErrorCode"] for s in sent()] == ["infy:silent"]
    app.cabinet.stage.out = None
    cp._statuses(False)
    assert [(s["status"], s["errorCode"], "vendorErrorCode" in s) for s in sent()] == [("Available", "NoError", False)]


def test_a_full_local_list_is_checked_and_stored_in_steps_with_the_same_answer(tmp_path):
    # The charge point's reader lets the event loop run at each step: 50 entries at once held
    # it about a second at RP2040 speed.
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    entries = [{"idTag": "TAG%02d" % k, "idTagInfo": {"status": "Accepted", "expiryDate": iso(NOW + DAY)}}
               for k in range(cp.keys.get("SendLocalListMaxLength"))]
    work = ops.steps(cp, "u1", "SendLocalList", {"listVersion": 4, "updateType": "Full",
                                                 "localAuthorizationList": entries})
    taken = 0
    while True:
        try:
            next(work)
            taken += 1
            # Before the commit the old (empty) list is the list; from it on, the new one, whole.
            now = cp.clock.now()
            found = [cp.auth.lookup(e["idTag"], now) is not None for e in entries]
            assert found == [cp.auth.version == 4] * len(entries)
        except StopIteration as e:
            answer = json.loads(e.value)
            break
    n = len(entries)
    assert answer == [3, "u1", {"status": "Accepted"}] and cp.auth.version == 4 and len(cp.auth.list_entries()) == n
    assert taken >= n + n // 2
    too_long = ops.dispatch(cp, "u2", "SendLocalList", {"listVersion": 5, "updateType": "Full",
                                                        "localAuthorizationList": entries + entries[:1]})
    assert json.loads(too_long)[2] == {"status": "Failed"} and cp.auth.version == 4


def test_no_heap_for_a_frame_closes_the_link_at_once_rather_than_leaving_it_deaf(tmp_path):
    import asyncio
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    said = []
    cp.log = said.append

    class Link:
        async def recv(self):
            raise MemoryError("memory allocation failed, allocating 1192 bytes")
    asyncio.run(cp._reader(Link()))   # the reader ends, and the session learns why now
    assert cp._dead.startswith("the reader failed: MemoryError") and cp._reply_event.is_set()
    assert said == ["ocpp: the link's reader failed (MemoryError('memory allocation failed, allocating 1192 bytes'))"
                    "; connecting again"]


def test_an_answer_too_big_for_the_charger_fails_its_call_at_once_and_a_call_gets_a_callerror(tmp_path):
    import asyncio
    from evse.ocpp import ws as wsmod
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    sent = []

    async def send_text(text):
        sent.append(json.loads(text))
    cp._send_text = send_text
    cp._await_uid = "ours-1"

    class Link:
        max_message = 8192
        heads = [b'[3,"ours-1",{"idTagInfo":{"status":"Accep', b'[2,"theirs-9","DataTransfer",{"vendorId":"x"']

        async def recv(self):
            if not self.heads:
                raise OSError("end of the test")
            raise wsmod.WsTooBig(20000, self.heads.pop(0))
    asyncio.run(cp._reader(Link()))   # it ends when the link does, and says so to the session
    assert cp._dead == "the link closed: end of the test"
    assert cp._reply_event.is_set() and cp._reply[0] == 4 and cp._reply[1][0] == "FormationViolation"
    assert sent == [[4, "theirs-9", "FormationViolation",
                     "message of 20000 bytes or more is over this charger's 8192-byte limit", {}]]


def test_a_stop_that_fails_to_reach_the_journal_is_tried_again_and_never_lost(tmp_path):
    """A MemoryError (or a full flash) while a StopTransaction is written leaves the transaction
    stopping: the next round of supervise writes it, and the transaction ends only then."""
    gun, cp, c = _charging(tmp_path, "C")
    tx_id = c.tx["id"]
    gun.contactor = True
    assert cp.stop_tx(c, "Remote") and c.stopping is not None    # waits for the contactor
    gun.contactor, gun.state = False, "B"
    cp.supervise()                                               # sees the contactor open
    _stop_fails_once(cp)
    Ticks.ms += 2000                                             # the meter has settled
    with pytest.raises(MemoryError):
        cp.supervise()
    assert c.tx is not None and c.tx["id"] == tx_id and c.stopping is not None
    cp.supervise()
    assert c.tx is None and c.stopping is None
    assert _queued(cp) == [("StartTransaction", None, None), ("StopTransaction", tx_id, "Remote")]


def _charging(root, state):
    """Gun 1 in `state` with a transaction started on it (no meter: FakeApp.reading is None)."""
    gun = FakeGun(state)
    cp = load(FakeApp([gun, FakeGun("A")], None), str(root))
    cp.clock.set(NOW)
    c = cp.connectors[1]
    cp.start_tx(c, "TAG1")
    return gun, cp, c


def _stop_fails_once(cp):
    """The next StopTransaction the journal is given raises MemoryError, as on a full heap."""
    real_append = cp.journal.append
    failing = [MemoryError("memory allocation failed, allocating 4097 bytes")]

    def append(action, payload, tx_id=None):
        if action == "StopTransaction" and failing:
            raise failing.pop()
        return real_append(action, payload, tx_id)
    cp.journal.append = append


def _queued(cp):
    """The transaction messages in the journal, in order (its security events left out)."""
    out = []
    while (entry := cp.journal.peek()) is not None:
        if entry[1] != "SecurityEventNotification":
            out.append((entry[1], entry[2].get("transactionId"), entry[2].get("reason")))
        cp.journal.confirm(entry[0])
    return out


def test_a_stop_of_a_paused_session_that_fails_to_reach_the_journal_is_tried_again(tmp_path):
    """The contactor is open already and the gun has no meter: the stop is written at once. If
    that fails, the transaction is stopping (no charging), and supervise writes the stop."""
    _, cp, c = _charging(tmp_path, "B")
    tx_id = c.tx["id"]
    _stop_fails_once(cp)
    with pytest.raises(MemoryError):
        cp.stop_tx(c, "Remote")
    assert c.tx is not None and c.stopping is not None and not cp.may_charge(1)
    cp.supervise()
    assert c.tx is None and c.stopping is None
    assert _queued(cp) == [("StartTransaction", None, None), ("StopTransaction", tx_id, "Remote")]


def test_a_transaction_whose_stop_is_queued_is_not_stopped_or_resumed_again_after_a_power_cut(tmp_path):
    """The StopTransaction reached the journal and the power went before the transactions file
    was written: after the reboot the transaction is over, with one stop queued, not two."""
    gun, cp, c = _charging(tmp_path, "B")
    tx_file = os.path.join(str(tmp_path), "ocpp_tx.json")
    with open(tx_file) as f:
        before = f.read()
    cp.stop_tx(c, "Local")
    with open(tx_file, "w") as f:
        f.write(before)                                   # the cut: the file still has it
    app = FakeApp([FakeGun("B"), FakeGun("A")], None)
    again = load(app, str(tmp_path))
    again.clock.set(NOW)
    again.recover()
    assert again.connectors[1].tx is None
    assert [q[0] for q in _queued(again)] == ["StartTransaction", "StopTransaction"]
    assert any("had ended; its stop is queued" in line for line in app.lines)
    with open(tx_file) as f:
        assert json.load(f) == {}                          # and the next reboot does not see it again


def test_a_start_confirmed_just_before_a_power_cut_gives_the_resumed_transaction_its_real_id(tmp_path):
    """The journal wrote the StartTransaction's real id and the power went before the
    transactions file took it: after the reboot the connector has the real id, in RAM and in
    the file, and a stop goes out under it."""
    gun, cp, c = _charging(tmp_path, "C")
    local = c.tx["id"]
    start = cp.journal.peek()
    assert start[1] == "StartTransaction" and local < 0
    cp.journal.append("MeterValues", {"connectorId": 1, "transactionId": local, "meterValue": []})
    cp.journal.confirm(start[0], {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}})   # the cut
    app = FakeApp([FakeGun("C"), FakeGun("A")], None)
    again = load(app, str(tmp_path))
    assert again.connectors[1].tx["id"] == 4711
    with open(os.path.join(str(tmp_path), "ocpp_tx.json")) as f:
        assert json.load(f)["1"]["id"] == 4711
    again.clock.set(NOW)
    again.stop_tx(again.connectors[1], "Local")
    assert [q[:2] for q in _queued(again)] == [("MeterValues", 4711), ("StopTransaction", 4711)]


def test_a_power_loss_stop_bills_the_last_energy_and_time_the_session_was_told(tmp_path):
    """The estimated register lost its last minutes with the power (or a meter has not been read
    yet after the reboot): the PowerLoss stop still reports what the last MeterValues said, at
    that time, and the register starts again from there."""
    gun, cp, c = _charging(tmp_path, "C")
    assert cp.keys.change("MeterValueSampleInterval", "10") == "Accepted"
    cp.app.energy_wh = lambda n: 1000.0 * n + 350
    cp.clock.set(NOW + 25)
    cp.supervise()
    sample = [q for q in _queued(cp) if q[0] == "MeterValues"]
    assert len(sample) == 1
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    app.energy_wh = lambda n: 0.0                     # the register as it came back from the cut
    again = load(app, str(tmp_path))
    assert app.floors == [(1, 1350)]
    again.clock.set(NOW + 3600)
    again.recover()
    stop = again.journal.peek()
    while stop[1] != "StopTransaction":
        again.journal.confirm(stop[0])
        stop = again.journal.peek()
    assert stop[2]["reason"] == "PowerLoss" and stop[2]["meterStop"] == 1350
    assert stop[2]["timestamp"] == iso(NOW + 25)


def test_the_rarely_used_methods_load_for_their_call_and_go_after_it(tmp_path):
    import sys
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    assert "evse.ocpp.cpmore" not in sys.modules   # the boot's key checks and changes let it go too
    assert cp.link_state() == "offline (not connected yet)"
    assert cp.boot_payload()["chargePointSerialNumber"] == cp.cp_id
    assert "evse.ocpp.cpmore" not in sys.modules
    with pytest.raises(AttributeError, match="no_such_method"):
        cp.no_such_method()
    from evse.ocpp import cp as cp_mod, cpmore   # each name _RARE lists is one of cpmore's functions
    assert set(cp_mod._RARE) == {name for name in dir(cpmore) if callable(getattr(cpmore, name))
                                 and getattr(getattr(cpmore, name), "__module__", None) == cpmore.__name__}
    sys.modules.pop("evse.ocpp.cpmore")


def test_the_console_shows_the_link_as_the_firmware_knows_it(tmp_path):
    from evse import cli as console_cli
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    app.cp, app.cfg = cp, {}
    assert cp.link_state() == "offline (not connected yet)"
    cp.why_offline, cp.retry_at_ms = "cannot connect: [Errno 111] ECONNREFUSED", Ticks.ms + 12000
    assert cp.link_state() == "offline (cannot connect: [Errno 111] ECONNREFUSED), next try in 12 s"
    assert cp.link() == {"state": "offline", "why": "cannot connect: [Errno 111] ECONNREFUSED", "next_try_s": 12}

    class Ws:
        last_rx_ms = Ticks.ms - 31000
    cp.ws, cp.connected, cp.online = Ws(), True, True
    assert cp.link() == {"state": "online", "boot": None, "last_frame_s": 31}
    lines = console_cli._ocpp(app, [], False)
    assert lines[0] == "ocpp: CP1 to ws://csms.example/ocpp: online, last frame received 31 s ago"
    assert lines[1] == "ocpp: 0 transaction messages in the journal, 0 others waiting"
    cp.start_tx(cp.connectors[1], "TAG1")
    assert console_cli._ocpp(app, [], False)[1] == "ocpp: 1 transaction message in the journal, 0 others waiting"


def test_clock_aligned_values_go_out_without_a_transaction_or_sampled_data(tmp_path):
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    cp.clock.set(NOW)
    cp.online = True
    assert cp.keys.change("ClockAlignedDataInterval", "60") == "Accepted"
    assert cp.keys.change("MeterValueSampleInterval", "0") == "Accepted"
    assert cp.keys.change("MeterValuesAlignedData", "Energy.Active.Import.Register") == "Accepted"
    cp.supervise()                      # the next boundary is set
    cp.clock.set(NOW + 61)
    cp.supervise()
    assert [m for m in cp.outbox if m[0] == "MeterValues"], cp.outbox


def test_a_session_resumed_at_boot_is_not_ended_before_the_pilot_has_been_read(tmp_path):
    with open(os.path.join(str(tmp_path), "ocpp_tx.json"), "w") as f:
        json.dump({"1": {"id": 7, "tag": "TAG1", "start_s": NOW - 600, "meter_start": 0, "seen_s": NOW}}, f)
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)   # at boot the pilot reads "A" until debounced
    cp = load(app, str(tmp_path))
    cp.clock.set(NOW)
    assert cp.keys.change("ResumeTransactionOnBoot", "true") == "Accepted"
    cp.recover()
    cp.supervise()
    assert cp.connectors[1].tx is not None
    app.guns[0].state = "C2"            # read: the EV is there
    Ticks.ms += 2000
    cp.supervise()
    assert cp.connectors[1].tx is not None
    app.guns[0].state = "A"             # now it leaves
    cp.supervise()
    assert cp.connectors[1].tx is None


@pytest.mark.parametrize("url, ca, missing, why", [
    ("ws://csms.example/ocpp", b"CA", None, "needs TLS"),
    ("wss://csms.example/ocpp", None, None, "needs the central system's CA"),
    ("wss://csms.example/ocpp", b"", None, "needs the central system's CA"),   # its file is missing
    ("wss://csms.example/ocpp", b"CA", "it needs this charge point's certificate: set ocpp_cert and ocpp_key",
     "set ocpp_cert and ocpp_key"),
    ("wss://csms.example/ocpp", b"CA", "ocpp_key file cp.key is missing", "ocpp_key file cp.key is missing"),
    ("wss://csms.example/ocpp", b"CA", None, None)])
def test_security_profile_3_needs_wss_a_ca_and_the_charge_point_s_certificate(tmp_path, url, ca, missing, why):
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    app.client_cert_missing = lambda: missing
    cp = ChargePoint(app, str(tmp_path), url, "CP1", ca_der=ca, log=app.log)
    status = cp.keys.change("SecurityProfile", "3")
    if why is None:
        assert status == "Accepted" and cp.keys.get("SecurityProfile") == 3
    else:
        assert status == "Rejected" and why in cp.keys.last_error, cp.keys.last_error
        assert cp.keys.get("SecurityProfile") == 0


def test_a_refused_security_profile_change_is_a_security_event_and_changes_nothing(tmp_path):
    app = FakeApp([FakeGun("A"), FakeGun("A")], None)
    app.client_cert_missing = lambda: None
    cp = ChargePoint(app, str(tmp_path), "wss://csms.example/ocpp", "CP1", ca_der=b"CA", log=app.log)
    assert cp.keys.change("SecurityProfile", "3") == "Accepted"
    before = len(cp._events_due)
    answer = json.loads(ops.dispatch(cp, "d1", "ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}))
    assert answer[2] == {"status": "Rejected"} and cp.keys.get("SecurityProfile") == 3
    line = cp._events_due[before][0]
    assert line.startswith("ReconfigurationOfSecurityParameters: SecurityProfile 2 refused: ") and "raised" in line


def test_smart_charging_code_is_held_only_while_a_profile_is_installed_or_waits_for_its_transaction(tmp_path,
                                                                                                 monkeypatch):
    """evse.ocpp.smart (about 18 KiB of a board's heap as .mpy) loads with the first profile and
    goes with the last, after the central system's request (cp._answer) or the transaction's end;
    without a profile each gun's cap is its rating, as smart.limit_at gives it."""
    import asyncio
    import sys
    monkeypatch.setattr(asyncio, "sleep_ms", lambda ms: asyncio.sleep(ms / 1000), raising=False)   # MicroPython's
    import evse
    evse.unload("evse.ocpp.smart")
    gun = FakeGun("B")
    app = FakeApp([gun, FakeGun("A")], None)
    cp = load(app, str(tmp_path))
    cp.clock.set(NOW)
    sent = []

    async def send_text(text):
        sent.append(json.loads(text))
    cp._send_text = send_text

    def answer(action, payload):
        asyncio.run(cp._answer([2, "u1", action, payload]))
        return sent.pop()[2]

    def loaded():
        return "evse.ocpp.smart" in sys.modules

    assert not loaded() and (cp.limit_a(1), cp.limit_a(0)) == (32.0, None)
    for action, payload in (("GetCompositeSchedule", {"connectorId": 1, "duration": 3600}),
                            ("ClearChargingProfile", {}), ("ReserveNow", {
                                "connectorId": 2, "expiryDate": iso(NOW + 600), "idTag": "AA11", "reservationId": 3})):
        assert answer(action, payload)["status"] in ("Accepted", "Unknown") and not loaded(), action
    daily = profile(1, "TxDefaultProfile", "Recurring", recurrencyKind="Daily")   # 16 A at NOW
    assert answer("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": daily}) == {"status": "Accepted"}
    assert loaded() and cp.limit_a(1) == 16.0
    evse.unload("evse.ocpp.smart")
    again = load(FakeApp([FakeGun("A"), FakeGun("A")], None), str(tmp_path))   # a boot with it stored
    again.clock.set(NOW)
    assert loaded() and again.limit_a(1) == 16.0
    assert answer("ClearChargingProfile", {"id": 1}) == {"status": "Accepted"}
    assert not loaded() and cp.limit_a(1) == 32.0
    # A remote start's TxProfile waits for its transaction, and ends with it.
    tx_profile = profile(2, "TxProfile", "Recurring", recurrencyKind="Daily")
    assert answer("RemoteStartTransaction", {"connectorId": 1, "idTag": "TAG1", "chargingProfile": tx_profile}) \
        == {"status": "Accepted"}
    assert loaded() and cp.pending_profile is not None
    cp.start_tx(cp.connectors[1], "TAG1")
    assert loaded() and [r[1] for r in cp.profiles.items] == [2] and cp.limit_a(1) == 16.0
    cp.stop_tx(cp.connectors[1], "Local", when_s=NOW)
    assert not loaded() and cp.limit_a(1) == 32.0
    # One whose EV never comes (ConnectionTimeOut), or whose card the central system refuses,
    # lets it go too.
    c2 = cp.connectors[2]
    for ends in ("timeout", "refused"):
        fresh = profile(3, "TxProfile", "Recurring", recurrencyKind="Daily")
        assert answer("RemoteStartTransaction", {"connectorId": 2, "idTag": "AA11", "chargingProfile": fresh}) \
            == {"status": "Accepted"}
        assert loaded() and cp.pending_profile[0] == 2, ends
        if ends == "timeout":
            c2.tag_since_ms -= 10 ** 6
            cp.supervise()
            assert c2.tag is None
        else:
            cp._authorize_reply(c2, "AA11", {"idTagInfo": {"status": "Invalid"}})
            c2.tag = None
        assert not loaded() and cp.pending_profile is None, ends


def test_a_getlog_of_an_empty_log_is_refused_without_loading_the_update_code(tmp_path):
    """GetLog of a log with nothing in it answers Rejected (no file name) and loads nothing: the
    upload's code (evse.ocpp.fw) goes only with the upload it was loaded for (evse.update_job)."""
    import sys
    import evse
    evse.unload(*evse.UPDATE_MODULES)
    cp = ChargePoint(FakeApp([FakeGun("A"), FakeGun("A")], None), str(tmp_path), "ws://csms.example/ocpp", "CP1")
    assert cp.security_log().files() == []   # the boot's event is still on its way to flash
    assert cp.start_log("SecurityLog", 7, "ftp://csms.example/logs", 1, 60) is None
    assert "evse.ocpp.fw" not in sys.modules and cp.log_request_id is None


def test_the_code_that_changes_keys_and_the_local_list_loads_for_a_request_and_goes_after_it(tmp_path, monkeypatch):
    """evse.ocpp.keyset (Change/GetConfiguration, the keys' checks) and evse.ocpp.authlist
    (SendLocalList) load for the central system's request, in a step before the handler's, and
    go after it, refused or not; the boot loads keyset for ocpp.json's values and lets it go."""
    import asyncio
    import sys
    monkeypatch.setattr(asyncio, "sleep_ms", lambda ms: asyncio.sleep(ms / 1000), raising=False)   # MicroPython's
    import evse
    evse.unload("evse.ocpp.keyset", "evse.ocpp.authlist")
    cp = load(FakeApp([FakeGun("A")], None), str(tmp_path))
    sent = []

    async def send_text(text):
        sent.append(json.loads(text))
    cp._send_text = send_text
    seen = []
    from evse import slices
    run_async = slices.run_async

    def observed(gen):   # which of the two is loaded at each step of the request
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value
            seen.append(tuple(m for m in ("evse.ocpp.keyset", "evse.ocpp.authlist") if m in sys.modules))
            yield
    monkeypatch.setattr(slices, "run_async", lambda gen, *a, **k: run_async(observed(gen), *a, **k))

    def answer(action, payload):
        asyncio.run(cp._answer([2, "u1", action, payload]))
        return sent.pop()

    def loaded():
        return [m for m in ("evse.ocpp.keyset", "evse.ocpp.authlist") if m in sys.modules]

    assert answer("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "77"})[2] == {"status": "Accepted"}
    assert not loaded() and ("evse.ocpp.keyset",) in seen
    assert answer("GetConfiguration", {"key": ["HeartbeatInterval"]})[2]["configurationKey"][0]["value"] == "77"
    assert answer("ChangeConfiguration", {"key": "HeartbeatInterval"})[0] == 4 and not loaded()   # refused first
    seen.clear()
    entries = [{"idTag": "T%d" % k, "idTagInfo": {"status": "Accepted"}} for k in range(3)]
    assert answer("SendLocalList", {"listVersion": 2, "updateType": "Full", "localAuthorizationList": entries})[2] \
        == {"status": "Accepted"}
    assert not loaded() and ("evse.ocpp.authlist",) in seen
    again = load(FakeApp([FakeGun("A")], None), str(tmp_path))   # a boot with the key stored
    assert again.keys.get("HeartbeatInterval") == 77 and again.auth.version == 2 and not loaded()


def test_the_boot_takes_the_central_system_s_interval_and_stores_what_the_key_allows(tmp_path, monkeypatch):
    import asyncio
    monkeypatch.setattr(asyncio, "sleep_ms", lambda ms: asyncio.sleep(ms / 1000), raising=False)   # MicroPython's
    cp = load(FakeApp([FakeGun("A")], None), str(tmp_path))
    seen = []
    for interval in (90, 100000, 90, 300):   # 100000 s is over the key's 86400: used, not stored
        async def call(action, payload, interval=interval):
            return {"status": "Accepted", "currentTime": iso(NOW), "interval": interval}
        cp.call = call
        asyncio.run(cp._boot())
        seen.append((cp.heartbeat_s, cp.keys.get("HeartbeatInterval")))
    assert seen == [(90, 90), (100000, 90), (90, 90), (300, 300)]
