# OCPP-J 1.6 RPC framing (OCPP-J 1.6 section 4) and the payload checks the handlers use.
# Pure: no sockets, no clock; imports under CPython too.
import json

from micropython import const

CALL = const(2)
CALLRESULT = const(3)
CALLERROR = const(4)

# OCPP-J 1.6 section 4.1.4: a message id is at most 36 characters (room for a UUID).
UID_MAX = const(36)

# The ten CallError codes of OCPP-J 1.6 section 4.2.3, spelled as in 1.6 (errata 5.1 and 5.2:
# "Occurence" and "FormationViolation" stay; 2.0.1 renamed them).
CODES = ("NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
         "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
         "TypeConstraintViolation", "GenericError")

# Which CallError a violated JSON-schema keyword gives. Mirrors mobilityhouse ocpp
# (messages._validate_payload), the library of our development CSMS, so the firmware and the
# CSMS answer a bad payload alike:
#   required             -> ProtocolError ("Payload for Action is incomplete")
#   type, maxLength      -> TypeConstraintViolation (CiString25Type etc. are 1.6 data types)
#   additionalProperties -> FormationViolation (mobilityhouse says "FormatViolation", the 2.0.1
#                           name; 1.6 calls it FormationViolation)
# Where mobilityhouse falls through to its catch-all "FormatViolation" (enum, minimum, maximum)
# we follow the 1.6 definition instead: "syntactically correct but at least one field contains
# an invalid value" is PropertyConstraintViolation. A list longer than allowed breaks the field's
# cardinality (1.6 part 1, "0..*"): OccurenceConstraintViolation.
_MISSING = "ProtocolError"
_TYPE = "TypeConstraintViolation"
_TOO_LONG = "TypeConstraintViolation"
_EXTRA = "FormationViolation"
_VALUE = "PropertyConstraintViolation"
_TOO_MANY = "OccurenceConstraintViolation"


class RpcError(Exception):
    """A message or payload the peer got wrong. `uid` is the id of the CALL to answer with a
    CALLERROR; None means there is nothing to answer (drop the frame)."""

    def __init__(self, code, description, uid=None):
        super().__init__("%s: %s" % (code, description))
        self.code = code
        self.description = description
        self.uid = uid


def _dumps(msg):
    return json.dumps(msg, separators=(",", ":"))


def call(uid, action, payload):
    return _dumps([CALL, uid, action, payload])


def result(uid, payload):
    return _dumps([CALLRESULT, uid, payload])


def error(uid, code, description="", details=None):
    return _dumps([CALLERROR, uid, code, description, {} if details is None else details])


def call_uid(head):
    """The unique id of a CALL from the first bytes of its frame (the rest may be cut off), or
    None if they are not the start of one."""
    found = head_uid(head)
    return found[1] if found is not None and found[0] == CALL else None


def head_uid(head):
    """(message type, unique id) from the first bytes of a frame (the rest may be cut off), or
    None if they are not the start of an OCPP-J message."""
    i = _skip_ws(head, 0)
    if i >= len(head) or head[i] != 91:  # '['
        return None
    i = _skip_ws(head, i + 1)
    if i >= len(head) or head[i] not in b"234":
        return None
    kind = head[i] - 48
    i = _skip_ws(head, i + 1)
    if i >= len(head) or head[i] != 44:  # ','
        return None
    i = _skip_ws(head, i + 1)
    if i >= len(head) or head[i] != 34:  # '"'
        return None
    end = head.find(b'"', i + 1)
    if end < 0 or b"\\" in head[i + 1:end]:  # an escaped id: not worth decoding JSON for
        return None
    try:
        uid = head[i + 1:end].decode()
    except UnicodeError:
        return None
    return (kind, uid) if len(uid) <= UID_MAX else None


def _skip_ws(b, i):
    while i < len(b) and b[i] in b" \t\r\n":
        i += 1
    return i


# Boot-random prefix + counter: ids stay unique across reconnects and reboots, and short.
_uid_prefix = None
_uid_count = 0


def new_uid():
    global _uid_prefix, _uid_count
    if _uid_prefix is None:
        try:
            from os import urandom
            raw = urandom(3)
            _uid_prefix = "%02x%02x%02x" % (raw[0], raw[1], raw[2])
        except (ImportError, AttributeError):
            from random import getrandbits
            _uid_prefix = "%06x" % getrandbits(24)
    _uid_count += 1
    return "%s-%d" % (_uid_prefix, _uid_count)


def parse(text):
    """One OCPP-J message: (2, uid, action, payload), (3, uid, payload) or
    (4, uid, code, description, details). Raises RpcError.

    Choices, OCPP-J 1.6 section 4:
    - not JSON, not an array, no integer message type: FormationViolation (not the PDU
      structure); nothing can be answered, uid None.
    - a message type other than 2, 3, 4: 4.1.3 says the message SHALL be ignored, so uid None.
    - only a CALL is answered with a CALLERROR (1.6 has no error for a result), so `uid` is set
      only for a CALL whose id could be read; a broken CALLRESULT/CALLERROR is dropped and the
      pending call times out.
    - a CALL with elements missing is "incomplete": ProtocolError (as mobilityhouse's unpack);
      extra elements, a non-string action or a non-object payload: FormationViolation.
    - an id longer than 36 characters is answered (4.2.3 names "unique identifier too long"
      among the CALLERROR cases): FormationViolation with that id."""
    try:
        msg = json.loads(text)
    except (ValueError, TypeError, RuntimeError, MemoryError):
        # ValueError: bad JSON; RuntimeError: CPython RecursionError on deep nesting.
        raise RpcError("FormationViolation", "message is not JSON")
    if not isinstance(msg, list):
        raise RpcError("FormationViolation", "message is not a JSON array")
    n = len(msg)
    kind = msg[0] if n else None
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise RpcError("FormationViolation", "message type is not an integer")
    if kind not in (CALL, CALLRESULT, CALLERROR):
        raise RpcError("FormationViolation", "unknown message type %d" % kind)
    uid = msg[1] if n > 1 else None
    if not isinstance(uid, str) or not uid:
        raise RpcError("FormationViolation", "message id is not a non-empty string")
    answer = uid if kind == CALL else None
    if len(uid) > UID_MAX:
        raise RpcError("FormationViolation", "message id longer than %d characters" % UID_MAX,
                       answer)
    want = 4 if kind == CALL else 3 if kind == CALLRESULT else 5
    if n < want:
        raise RpcError("ProtocolError", "message has %d elements, needs %d" % (n, want), answer)
    if n > want:
        raise RpcError("FormationViolation", "message has %d elements, needs %d" % (n, want),
                       answer)
    if kind == CALL:
        action = msg[2]
        if not isinstance(action, str) or not action:
            raise RpcError("FormationViolation", "action is not a non-empty string", uid)
        if not isinstance(msg[3], dict):
            raise RpcError("FormationViolation", "payload of %s is not an object" % action, uid)
        return (CALL, uid, action, msg[3])
    if kind == CALLRESULT:
        if not isinstance(msg[2], dict):
            raise RpcError("FormationViolation", "result payload is not an object")
        return (CALLRESULT, uid, msg[2])
    code, description, details = msg[2], msg[3], msg[4]
    if not isinstance(code, str) or not isinstance(description, str):
        raise RpcError("FormationViolation", "error code or description is not a string")
    if not isinstance(details, dict):
        raise RpcError("FormationViolation", "error details are not an object")
    return (CALLERROR, uid, code, description, details)


# Payload checks. `kind` is a Python type: int, float, str, bool, dict or list.
_KIND_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object",
               list: "array"}


def _is(value, kind):
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _check(key, value, kind, lo, hi, maxlen, choices):
    if not _is(value, kind):
        raise RpcError(_TYPE, "%s must be %s" % (key, _KIND_NAMES.get(kind, "valid")))
    if kind is float and value != value:
        raise RpcError(_VALUE, "%s must be a number, not NaN" % key)
    if maxlen is not None and len(value) > maxlen:
        if kind is list:
            raise RpcError(_TOO_MANY, "%s has more than %d entries" % (key, maxlen))
        raise RpcError(_TOO_LONG, "%s is longer than %d characters" % (key, maxlen))
    if lo is not None and value < lo:
        raise RpcError(_VALUE, "%s must be at least %s" % (key, lo))
    if hi is not None and value > hi:
        raise RpcError(_VALUE, "%s must be at most %s" % (key, hi))
    if choices is not None and value not in choices:
        raise RpcError(_VALUE, "%s must be one of %s" % (key, ", ".join([str(c) for c in choices])))
    return value


def need(p, key, kind, lo=None, hi=None, maxlen=None, choices=None):
    """The required field `key` of payload `p`, checked. maxlen: characters for a string
    (CiString20/25/50/255/500), entries for a list."""
    if key not in p:
        raise RpcError(_MISSING, "%s is required" % key)
    return _check(key, p[key], kind, lo, hi, maxlen, choices)


def opt(p, key, kind, default=None, lo=None, hi=None, maxlen=None, choices=None):
    """The optional field `key` of payload `p`, checked, or `default` when absent."""
    if key not in p:
        return default
    return _check(key, p[key], kind, lo, hi, maxlen, choices)


def only(p, keys):
    """Every 1.6 schema says additionalProperties: false; a field not in `keys` is refused."""
    for key in p:
        if key not in keys:
            raise RpcError(_EXTRA, "unexpected field %s" % key)
