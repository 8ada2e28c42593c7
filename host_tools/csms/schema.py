"""Is a frame valid OCPP-J 1.6? Decided here, on its own, from the official JSON schemas that ship
with the `ocpp` package, so the frame log's verdict never depends on what the library accepted:
the library checks no `format` (date-time, uri) and answers a bad frame with its own errors.

One `FrameChecker` per WebSocket connection: it remembers the open CALLs of both sides so that a
CALLRESULT is checked against `<Action>Response.json` of the CALL it answers (matched by uid)."""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import ocpp
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match

SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"
ACTIONS = frozenset(p.stem for p in SCHEMA_DIR.glob("*.json") if not p.stem.endswith("Response"))

CALL, CALLRESULT, CALLERROR = 2, 3, 4
FRAME_LENGTH = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}
FRAME_SHAPE = {CALL: "[2, UniqueId, Action, {payload}]", CALLRESULT: "[3, UniqueId, {payload}]",
               CALLERROR: "[4, UniqueId, errorCode, errorDescription, {errorDetails}]"}
# OCPP-J 1.6 section 4.1.4: a message id is at most 36 characters (room for a UUID).
UID_MAX = 36
# The ten CallError codes of OCPP-J 1.6 section 4.2.3, spelled as in 1.6 ("FormationViolation",
# "Occurence"); 2.0.1 renamed two of them.
CALL_ERROR_CODES = ("NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
                    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                    "TypeConstraintViolation", "GenericError")
# Who may send which CALL: OCPP 1.6 sections 4 (charge point) and 5 (central system), and the
# security whitepaper edition 2 for the security extension. DataTransfer goes both ways.
FROM_CHARGE_POINT = frozenset({
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
    "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification",
    "StopTransaction", "LogStatusNotification", "SecurityEventNotification", "SignCertificate",
    "SignedFirmwareStatusNotification"})
FROM_CENTRAL_SYSTEM = (ACTIONS - FROM_CHARGE_POINT) | {"DataTransfer"}
SENDER = {"in": "the charge point", "out": "the central system"}
OTHER = {"in": "out", "out": "in"}

# JSON Schema draft 4 `date-time` is RFC 3339 section 5.6: a time offset is required.
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt]([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?"
                      r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$")
# RFC 3986 section 3: scheme ":" and then only characters a URI may hold (or %XX escapes).
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time")
def is_date_time(text: Any) -> bool:
    if not isinstance(text, str):
        return True  # `format` constrains strings only
    m = _RFC3339.match(text)
    if not m:
        return False
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


@FORMATS.checks("uri")
def is_uri(text: Any) -> bool:
    return not isinstance(text, str) or bool(_URI.match(text))


@lru_cache(maxsize=None)
def validator(schema_name: str) -> Draft4Validator:
    # Decimals on both sides, so that `multipleOf: 0.1` (charging schedules) holds for 21.4,
    # which as a binary float is not a multiple of 0.1.
    schema = json.loads((SCHEMA_DIR / f"{schema_name}.json").read_text(encoding="utf-8-sig"),
                        parse_float=Decimal)
    return Draft4Validator(schema, format_checker=FORMATS)


def payload_error(schema_name: str, payload: Any) -> str | None:
    """Why `payload` (parsed with Decimal floats) breaks `<schema_name>.json`, or None."""
    error = best_match(validator(schema_name).iter_errors(payload))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    message = re.sub(r"Decimal\('([^']*)'\)", r"\1", error.message)
    return f"{schema_name}: {where}: {message}"


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse(text: str, exact: bool = False) -> Any:
    """JSON as RFC 8259 has it (no NaN or Infinity); `exact` keeps decimals as Decimal."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=Decimal if exact else float)


@dataclass
class Verdict:
    frame: Any               # the parsed frame, or the text when it is not JSON
    action: str | None       # the CALL's action; for a CALLRESULT/CALLERROR, the action it answers
    error: str | None        # None when the frame is valid OCPP-J 1.6


class FrameChecker:
    """Checks the frames of one connection in the order they were sent, in both directions.
    "in" is charge point -> central system, "out" is central system -> charge point."""

    def __init__(self):
        self.open_calls: dict[tuple[str, str], str] = {}   # (direction of the CALL, uid) -> action

    def check(self, direction: str, text: str | bytes) -> Verdict:
        binary = isinstance(text, bytes)
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        try:
            frame, exact = parse(text), parse(text, exact=True)
        except ValueError as e:
            return Verdict(text, None, f"not JSON ({e})")
        # A binary frame is still read (the library answers it), so its CALL is matched as usual.
        action, error = self._check(direction, frame, exact)
        if binary:
            error = "a binary WebSocket frame; OCPP-J 1.6 section 3 sends text frames" + (f"; and {error}" if error else "")
        return Verdict(frame, action, error)

    def _check(self, direction: str, frame: Any, exact: Any) -> tuple[str | None, str | None]:
        if not isinstance(frame, list) or not frame:
            return None, "an OCPP-J message is a JSON array like [2, UniqueId, Action, {payload}] (OCPP-J 1.6 section 4.1)"
        kind = frame[0]
        if isinstance(kind, bool) or kind not in FRAME_LENGTH:
            return None, f"MessageTypeId must be 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR), not {kind!r}"
        if len(frame) != FRAME_LENGTH[kind]:
            return None, f"this message has {len(frame)} elements; it must be {FRAME_SHAPE[kind]}"
        uid = frame[1]
        key = json.dumps(uid)       # any JSON value: an answer must echo even a bad UniqueId
        uid_error = None if isinstance(uid, str) and len(uid) <= UID_MAX else \
            f"UniqueId must be a string of at most {UID_MAX} characters (OCPP-J 1.6 section 4.1.4), not {uid!r}"
        if kind == CALL:
            action, error = self._check_call(direction, key, frame[2], exact[3])
            return action, uid_error or error
        action = self.open_calls.pop((OTHER[direction], key), None)
        if action is None:
            what = "CALLRESULT" if kind == CALLRESULT else "CALLERROR"
            return None, uid_error or f"{what} with UniqueId {uid!r} answers no open CALL from {SENDER[OTHER[direction]]}"
        if kind == CALLRESULT:
            if not isinstance(exact[2], dict):
                return action, f"the CALLRESULT payload must be a JSON object, not {frame[2]!r}"
            if action not in ACTIONS:
                return action, f"a CALLRESULT to {action!r}, which is not an OCPP 1.6 action (answer NotSupported)"
            return action, payload_error(action + "Response", exact[2])
        code, description, details = frame[2:]
        if code not in CALL_ERROR_CODES:
            return action, (f"errorCode {code!r} is not an OCPP-J 1.6 code (section 4.2.3): "
                            f"{', '.join(CALL_ERROR_CODES)}")
        if not isinstance(description, str):
            return action, f"errorDescription must be a string, not {description!r}"
        if not isinstance(details, dict):
            return action, f"errorDetails must be a JSON object, not {details!r}"
        return action, None

    def _check_call(self, direction: str, key: str, action: Any, payload: Any) -> tuple[str | None, str | None]:
        if (direction, key) in self.open_calls:
            return None, f"UniqueId {key} is already used by a CALL that has no answer yet"
        # Registered even when it is bad: the other side answers it, usually with a CALLERROR.
        self.open_calls[(direction, key)] = action if isinstance(action, str) else json.dumps(action)
        if not isinstance(action, str) or action not in ACTIONS:
            return None, f"Action {action!r} is not an OCPP 1.6 action"
        allowed = FROM_CHARGE_POINT if direction == "in" else FROM_CENTRAL_SYSTEM
        if action not in allowed:
            return action, f"{action} is not sent by {SENDER[direction]} (OCPP 1.6 sections 4 and 5)"
        if not isinstance(payload, dict):
            return action, f"the CALL payload must be a JSON object, not {payload!r}"
        return action, payload_error(action, payload)
