"""OCPP-J 1.6 RPC framing and payload checks: every error path, fuzzing, round trips, agreement
with the mobilityhouse validator of our development CSMS, and the same answers under MicroPython."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, _validate_payload

from evse.ocpp import rpc
from evse.ocpp.rpc import CALL, CALLERROR, CALLRESULT, CODES, RpcError, need, only, opt, parse

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

UID36 = "u" * 36
UID37 = "u" * 37

# (frame, code, uid the caller answers with a CALLERROR, or None: drop the frame)
BAD_FRAMES = [
    ("", "FormationViolation", None),
    ("[2, \"a\", \"Reset\"", "FormationViolation", None),
    ("\xff\xfe", "FormationViolation", None),
    ("{\"a\": 1}", "FormationViolation", None),
    ("\"text\"", "FormationViolation", None),
    ("42", "FormationViolation", None),
    ("null", "FormationViolation", None),
    ("[]", "FormationViolation", None),
    ("[\"2\", \"a\", \"Reset\", {}]", "FormationViolation", None),
    ("[2.0, \"a\", \"Reset\", {}]", "FormationViolation", None),
    ("[true, \"a\", \"Reset\", {}]", "FormationViolation", None),
    ("[5, \"a\", \"Reset\", {}]", "FormationViolation", None),  # 4.1.3: unknown type, ignored
    ("[1, \"a\", {}]", "FormationViolation", None),
    ("[2]", "FormationViolation", None),
    ("[2, 17, \"Reset\", {}]", "FormationViolation", None),
    ("[2, null, \"Reset\", {}]", "FormationViolation", None),
    ("[2, \"\", \"Reset\", {}]", "FormationViolation", None),
    ("[2, \"%s\", \"Reset\", {}]" % UID37, "FormationViolation", UID37),  # 4.1.4: max 36
    ("[2, \"a\"]", "ProtocolError", "a"),
    ("[2, \"a\", \"Reset\"]", "ProtocolError", "a"),
    ("[2, \"a\", \"Reset\", {}, {}]", "FormationViolation", "a"),
    ("[2, \"a\", 7, {}]", "FormationViolation", "a"),
    ("[2, \"a\", \"\", {}]", "FormationViolation", "a"),
    ("[2, \"a\", \"Reset\", []]", "FormationViolation", "a"),
    ("[2, \"a\", \"Reset\", null]", "FormationViolation", "a"),
    ("[2, \"a\", \"Reset\", \"{}\"]", "FormationViolation", "a"),
    # A broken CALLRESULT or CALLERROR is never answered (1.6 has no error for a response).
    ("[3, \"%s\", {}]" % UID37, "FormationViolation", None),
    ("[3, \"a\"]", "ProtocolError", None),
    ("[3, \"a\", {}, {}]", "FormationViolation", None),
    ("[3, \"a\", []]", "FormationViolation", None),
    ("[4, \"a\", \"GenericError\", \"\"]", "ProtocolError", None),
    ("[4, \"a\", \"GenericError\", \"\", {}, 1]", "FormationViolation", None),
    ("[4, \"a\", 3, \"\", {}]", "FormationViolation", None),
    ("[4, \"a\", \"GenericError\", null, {}]", "FormationViolation", None),
    ("[4, \"a\", \"GenericError\", \"\", []]", "FormationViolation", None),
]


@pytest.mark.parametrize("frame, code, uid", BAD_FRAMES)
def test_a_bad_frame_raises_the_spec_code_and_the_uid_to_answer(frame, code, uid):
    with pytest.raises(RpcError) as e:
        parse(frame)
    assert (e.value.code, e.value.uid) == (code, uid)
    assert e.value.description and e.value.code in CODES


@pytest.mark.parametrize("frame, expected", [
    ('[2,"19223201","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]',
     (CALL, "19223201", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})),
    ('[2, "%s", "Heartbeat", {}]' % UID36, (CALL, UID36, "Heartbeat", {})),
    ('[3,"19223201",{"status":"Accepted","interval":300}]',
     (CALLRESULT, "19223201", {"status": "Accepted", "interval": 300})),
    ('[4,"1","NotImplemented","no such action",{}]',
     (CALLERROR, "1", "NotImplemented", "no such action", {})),
    # Unknown codes from newer CSMSs (2.0.1 spellings) still fail the pending call.
    ('[4,"1","FormatViolation","",{"why":1}]', (CALLERROR, "1", "FormatViolation", "", {"why": 1})),
])
def test_good_frames_parse_to_tuples(frame, expected):
    assert parse(frame) == expected


def test_builders_write_compact_json_that_parses_back():
    assert rpc.call("7", "Heartbeat", {}) == '[2,"7","Heartbeat",{}]'
    assert rpc.result("7", {"currentTime": "2024-01-01T00:00:00Z"}) == \
        '[3,"7",{"currentTime":"2024-01-01T00:00:00Z"}]'
    assert rpc.error("7", "NotImplemented") == '[4,"7","NotImplemented","",{}]'
    assert rpc.error("7", "GenericError", "full", {"n": 1}) == '[4,"7","GenericError","full",{"n":1}]'


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
OBJECTS = st.dictionaries(st.text(max_size=12), JSON, max_size=5)
UIDS = st.text(min_size=1, max_size=36)


@given(UIDS, st.text(min_size=1, max_size=40), OBJECTS)
def test_call_round_trips(uid, action, payload):
    assert parse(rpc.call(uid, action, payload)) == (CALL, uid, action, payload)


@given(UIDS, OBJECTS)
def test_result_round_trips(uid, payload):
    assert parse(rpc.result(uid, payload)) == (CALLRESULT, uid, payload)


@given(UIDS, st.sampled_from(CODES), st.text(max_size=60), st.none() | OBJECTS)
def test_error_round_trips(uid, code, description, details):
    assert parse(rpc.error(uid, code, description, details)) == \
        (CALLERROR, uid, code, description, {} if details is None else details)


def parse_is_total(text):
    """parse either returns a well-formed tuple or raises RpcError: nothing else, ever."""
    try:
        msg = parse(text)
    except RpcError as e:
        assert e.code in CODES and isinstance(e.description, str)
        assert e.uid is None or (isinstance(e.uid, str) and e.uid)
        return None
    assert isinstance(msg, tuple) and msg[0] in (CALL, CALLRESULT, CALLERROR)
    assert isinstance(msg[1], str) and 0 < len(msg[1]) <= 36
    assert len(msg) == {CALL: 4, CALLRESULT: 3, CALLERROR: 5}[msg[0]]
    assert isinstance(msg[-1], dict)
    assert all(isinstance(part, str) for part in msg[2:-1])
    return msg


@given(st.text())
def test_parse_of_any_text_is_a_tuple_or_rpcerror(text):
    parse_is_total(text)


@given(st.binary())
def test_parse_of_any_bytes_from_the_wire_is_a_tuple_or_rpcerror(data):
    parse_is_total(data.decode("utf-8", "replace"))


NEAR_VALID = st.tuples(
    st.sampled_from([2, 3, 4, 5, 0, -1, 2.0, "2", True, None]),
    st.one_of(UIDS, st.text(min_size=37, max_size=50), st.just(""), JSON),
    JSON | st.sampled_from(["Reset", "GenericError", ""]),
    JSON | OBJECTS,
    JSON | OBJECTS,
).flatmap(lambda t: st.integers(0, 6).map(lambda n: list(t)[:n] + [None] * max(0, n - 5)))


@settings(max_examples=300)
@given(NEAR_VALID)
def test_parse_of_near_valid_frames_is_a_tuple_or_rpcerror(frame):
    parse_is_total(json.dumps(frame))


def test_deeply_nested_json_is_refused_not_a_crash():
    with pytest.raises(RpcError) as e:
        parse("[" * 100000 + "]" * 100000)
    assert e.value.code == "FormationViolation"


def test_new_uid_is_short_and_unique():
    uids = [rpc.new_uid() for _ in range(2000)]
    assert len(set(uids)) == len(uids)
    assert all(len(u) <= 36 for u in uids) and uids[0].split("-")[0] == uids[-1].split("-")[0]


# --- payload checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload, kind, kw, code, words", [
    ({}, int, {}, "ProtocolError", "connectorId is required"),
    ({"connectorId": "1"}, int, {}, "TypeConstraintViolation", "connectorId must be integer"),
    ({"connectorId": True}, int, {}, "TypeConstraintViolation", "connectorId must be integer"),
    ({"connectorId": 1.5}, int, {}, "TypeConstraintViolation", "connectorId must be integer"),
    ({"connectorId": 3}, int, {"lo": 0, "hi": 2}, "PropertyConstraintViolation", "at most 2"),
    ({"connectorId": -1}, int, {"lo": 0}, "PropertyConstraintViolation", "at least 0"),
    ({"connectorId": "x" * 21}, str, {"maxlen": 20}, "TypeConstraintViolation", "longer than 20"),
    ({"connectorId": "Hard2"}, str, {"choices": ("Hard", "Soft")}, "PropertyConstraintViolation",
     "one of Hard, Soft"),
    ({"connectorId": 1}, bool, {}, "TypeConstraintViolation", "must be boolean"),
    ({"connectorId": "1.0"}, float, {}, "TypeConstraintViolation", "must be number"),
    ({"connectorId": False}, float, {}, "TypeConstraintViolation", "must be number"),
    ({"connectorId": float("nan")}, float, {}, "PropertyConstraintViolation", "NaN"),
    ({"connectorId": []}, dict, {}, "TypeConstraintViolation", "must be object"),
    ({"connectorId": {}}, list, {}, "TypeConstraintViolation", "must be array"),
    ({"connectorId": [1, 2, 3]}, list, {"maxlen": 2}, "OccurenceConstraintViolation", "more than 2"),
])
def test_need_names_the_field_and_gives_the_code(payload, kind, kw, code, words):
    with pytest.raises(RpcError) as e:
        need(payload, "connectorId", kind, **kw)
    assert e.value.code == code and words in e.value.description
    assert e.value.uid is None  # the dispatcher fills in the CALL's id


def test_need_and_opt_return_checked_values():
    p = {"n": 3, "f": 2, "s": "Soft", "b": False, "d": {}, "l": [1]}
    assert need(p, "n", int, lo=0, hi=3) == 3
    assert need(p, "f", float, lo=0.5) == 2
    assert need(p, "s", str, maxlen=20, choices=("Hard", "Soft")) == "Soft"
    assert need(p, "b", bool) is False
    assert need(p, "d", dict) == {} and need(p, "l", list, maxlen=1) == [1]
    assert opt(p, "missing", int) is None and opt(p, "missing", int, 60) == 60
    assert opt(p, "n", int, 60, hi=5) == 3
    with pytest.raises(RpcError) as e:
        opt(p, "s", int, 0)
    assert e.value.code == "TypeConstraintViolation"


def test_only_refuses_fields_the_schema_does_not_have():
    only({"type": "Soft"}, ("type",))
    with pytest.raises(RpcError) as e:
        only({"type": "Soft", "when": 1}, ("type",))
    assert e.value.code == "FormationViolation" and "when" in e.value.description


KINDS = [(int, {}), (int, {"lo": 0, "hi": 10}), (float, {"lo": 0}), (str, {"maxlen": 3}),
         (str, {"choices": ("A", "B")}), (bool, {}), (dict, {}), (list, {"maxlen": 2})]


@given(JSON, st.sampled_from(KINDS))
def test_need_returns_a_value_of_the_kind_or_raises_rpcerror(value, kind_kw):
    kind, kw = kind_kw
    try:
        got = need({"k": value}, "k", kind, **kw)
    except RpcError as e:
        assert e.code in CODES and e.description.startswith("k ")
        return
    assert got is value and isinstance(got, (int, float) if kind is float else kind)
    assert not isinstance(got, bool) or kind is bool


# --- agreement with the development CSMS's validator (mobilityhouse ocpp) ---------------------

def change_configuration(p):
    only(p, ("key", "value"))
    need(p, "key", str, maxlen=50)
    need(p, "value", str, maxlen=500)


def reset(p):
    only(p, ("type",))
    need(p, "type", str, choices=("Hard", "Soft"))


def get_configuration(p):
    only(p, ("key",))
    for key in opt(p, "key", list, []):
        if not isinstance(key, str) or len(key) > 50:
            raise RpcError("TypeConstraintViolation", "key entries must be strings of at most 50")


def mobilityhouse_code(action, payload):
    try:
        _validate_payload(Call("1", action, payload), "1.6")
    except OCPPError as e:
        return {"FormatViolation": "FormationViolation"}.get(e.code, e.code)  # 2.0.1 -> 1.6 name
    return None


def our_code(handler, payload):
    try:
        handler(payload)
    except RpcError as e:
        return e.code
    return None


@pytest.mark.parametrize("action, handler, payload", [
    ("ChangeConfiguration", change_configuration, {"key": "HeartbeatInterval", "value": "60"}),
    ("ChangeConfiguration", change_configuration, {"value": "60"}),
    ("ChangeConfiguration", change_configuration, {"key": 5, "value": "60"}),
    ("ChangeConfiguration", change_configuration, {"key": "k" * 51, "value": "60"}),
    ("ChangeConfiguration", change_configuration, {"key": "k", "value": "v" * 501}),
    ("ChangeConfiguration", change_configuration, {"key": "k", "value": "v", "extra": 1}),
    ("Reset", reset, {"type": "Soft"}),
    ("Reset", reset, {}),
    ("Reset", reset, {"type": 1}),
    ("Reset", reset, {"type": "Soft", "at": 1}),
    ("GetConfiguration", get_configuration, {}),
    ("GetConfiguration", get_configuration, {"key": ["a", "b"]}),
    ("GetConfiguration", get_configuration, {"key": "a"}),
    ("GetConfiguration", get_configuration, {"key": ["k" * 51]}),
])
def test_payload_codes_agree_with_the_mobilityhouse_validator(action, handler, payload):
    assert our_code(handler, payload) == mobilityhouse_code(action, payload)


def test_a_value_outside_an_enum_is_property_constraint_where_mobilityhouse_says_format():
    # The one deliberate difference: 1.6 4.2.3 defines PropertyConstraintViolation as "at least one
    # field contains an invalid value"; mobilityhouse's catch-all gives the 2.0.1 FormatViolation.
    assert mobilityhouse_code("Reset", {"type": "Hard2"}) == "FormationViolation"
    assert our_code(reset, {"type": "Hard2"}) == "PropertyConstraintViolation"


# --- the same answers under the real MicroPython ----------------------------------------------

def test_micropython_parses_every_table_frame_like_cpython(tmp_path):
    frames = [f for f, _, _ in BAD_FRAMES if f not in ("\xff\xfe",)]
    frames += [rpc.call("1", "Heartbeat", {}), rpc.result("x" * 36, {"a": [1, 2.5, None, True, "é"]}),
               rpc.error("2", "GenericError", "d", {"k": {"n": [1]}}), json.dumps([2, "u", "A", {"é": "ü"}])]
    cases = tmp_path / "frames.json"
    cases.write_text(json.dumps(frames))
    env = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen")
    r = subprocess.run([MICROPYTHON, str(REPO / "tests" / "ocpp_mpy" / "rpc_parse.py"), str(cases)],
                       capture_output=True, text=True, env=env, timeout=20)
    got = [json.loads(line) for line in r.stdout.splitlines()]
    expected = []
    for frame in frames:
        try:
            expected.append(["ok"] + list(parse(frame)))
        except RpcError as e:
            expected.append(["error", e.code, e.uid])
    assert got == expected, r.stderr


@given(uid=st.text(st.characters(blacklist_characters='"\\', whitelist_categories=("L", "N", "P", "S", "Zs")),
                   min_size=1, max_size=36),
       spaces=st.sampled_from(["", " ", "\n  "]), cut=st.integers(0, 200))
def test_call_uid_finds_the_id_of_a_call_cut_anywhere_after_it(uid, spaces, cut):
    frame = ("[%s2,%s%s,%s\"DataTransfer\",{\"data\":\"%s\"}]" % (spaces, spaces, json.dumps(uid, ensure_ascii=False),
                                                             spaces, "z" * 100)).encode()
    end = frame.index(json.dumps(uid, ensure_ascii=False).encode()) + len(json.dumps(uid, ensure_ascii=False).encode())
    head = frame[:end + cut]
    assert rpc.call_uid(head) == uid
    assert rpc.call_uid(frame[:end - 1]) is None            # its id cut: nothing to answer


@given(st.binary(max_size=80))
def test_call_uid_of_any_bytes_is_none_or_a_short_id(head):
    uid = rpc.call_uid(head)
    assert uid is None or (isinstance(uid, str) and len(uid) <= 36 and head.lstrip().startswith(b"["))


def test_call_uid_leaves_an_escaped_or_overlong_id_alone():
    assert rpc.call_uid(b'[2,"a\\u0041b","Reset"') is None and rpc.call_uid(b'[2,"' + b"x" * 37 + b'",') is None


def test_call_uid_is_none_for_results_and_errors():
    assert rpc.call_uid(b'[3,"abc",{}]') is None and rpc.call_uid(b'[4,"abc","GenericError"') is None


def test_head_uid_tells_a_result_or_error_from_a_call_cut_short():
    assert rpc.head_uid(b'[3,"ab-1",{"idTagInfo":') == (3, "ab-1")
    assert rpc.head_uid(b' [ 4 , "x" , "GenericError"') == (4, "x")
    assert rpc.head_uid(b'[2,"c7","DataTransfer",{') == (2, "c7")
    assert rpc.head_uid(b'[5,"c7"') is None and rpc.head_uid(b'{"a":') is None and rpc.head_uid(b'[3,"ab') is None
