"""What the central system knows: its settings, the id tags, the charge points it has seen, their
transactions and every frame exchanged. No sockets here; the OCPP operations (central.py) and the
API (api.py) change and read this model."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.csms.schema import FrameChecker, is_date_time

REGISTRATION_STATUSES = ("Accepted", "Pending", "Rejected")       # BootNotification.conf status
AUTHORIZATION_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")  # IdTagInfo
ID_TOKEN_MAX = 20            # OCPP 1.6 IdToken is a CiString20Type
INTERVAL_MAX_S = 2**31 - 1
DEFAULT_TAGS = {"AA11": {"status": "Accepted"}, "BB22": {"status": "Accepted"}, "BLOCKED1": {"status": "Blocked"}}
FRAMES_KEEP, FRAMES_DROP = 20000, 5000    # as the rig's event log: past 20000, drop the oldest 5000


class ModelError(ValueError):
    """Input a user got wrong; the message names the input and what is allowed."""


def parse_tag(id_tag: Any, info: Any, where: str) -> dict:
    """One tag's IdTagInfo, checked. `where` names the input in the error (a file, an API op)."""
    if not isinstance(id_tag, str) or not 1 <= len(id_tag) <= ID_TOKEN_MAX:
        raise ModelError(f"{where}: an idTag must be a string of 1..{ID_TOKEN_MAX} characters, not {id_tag!r}")
    if not isinstance(info, dict):
        raise ModelError(f"{where}: tag {id_tag!r} must be an object like {{\"status\": \"Accepted\"}}, not {info!r}")
    unknown = sorted(set(info) - {"status", "expiryDate", "parentIdTag"})
    if unknown:
        raise ModelError(f"{where}: tag {id_tag!r} has unknown field {unknown[0]!r}; known: status, expiryDate, parentIdTag")
    if info.get("status") not in AUTHORIZATION_STATUSES:
        raise ModelError(f"{where}: tag {id_tag!r}: status must be one of {', '.join(AUTHORIZATION_STATUSES)}, "
                         f"not {info.get('status')!r}")
    if "expiryDate" in info and not (isinstance(info["expiryDate"], str) and is_date_time(info["expiryDate"])):
        raise ModelError(f"{where}: tag {id_tag!r}: expiryDate must be an RFC 3339 time like "
                         f"\"2030-01-01T00:00:00Z\", not {info['expiryDate']!r}")
    parent = info.get("parentIdTag")
    if "parentIdTag" in info and not (isinstance(parent, str) and 1 <= len(parent) <= ID_TOKEN_MAX):
        raise ModelError(f"{where}: tag {id_tag!r}: parentIdTag must be a string of 1..{ID_TOKEN_MAX} characters, "
                         f"not {parent!r}")
    return dict(info)


def parse_tags(tags: Any, where: str) -> dict[str, dict]:
    if not isinstance(tags, dict):
        raise ModelError(f"{where}: tags must be a JSON object like {{\"AA11\": {{\"status\": \"Accepted\"}}}}, "
                         f"not {type(tags).__name__}")
    return {id_tag: parse_tag(id_tag, info, where) for id_tag, info in tags.items()}


def load_tags_file(path: str) -> dict[str, dict]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"--tags {path}: cannot read it ({e.strerror})")
    try:
        tags = json.loads(text)
    except ValueError as e:
        raise ModelError(f"--tags {path}: not JSON ({e}); write an object like {{\"AA11\": {{\"status\": \"Accepted\"}}}}")
    return parse_tags(tags, f"--tags {path}")


class Tags:
    def __init__(self, tags: dict[str, dict]):
        self.replace(tags)

    def replace(self, tags: dict[str, dict]) -> None:
        self.tags = dict(tags)
        # OCPP 1.6 IdToken: "a case insensitive string".
        self._by_key = {k.casefold(): v for k, v in self.tags.items()}

    def put(self, id_tag: str, info: dict) -> None:
        self.tags = {k: v for k, v in self.tags.items() if k.casefold() != id_tag.casefold()}
        self.tags[id_tag] = info
        self.replace(self.tags)

    def id_tag_info(self, id_tag: str) -> dict:
        """The IdTagInfo to answer for `id_tag`; unknown tags are Invalid."""
        return dict(self._by_key.get(id_tag.casefold(), {"status": "Invalid"}))


@dataclass
class Transaction:
    transaction_id: int
    cp: str
    connector_id: int
    id_tag: str
    meter_start: int
    start_time: str                 # the charge point's timestamp
    started_ms: float               # our clock
    id_tag_info: dict
    reservation_id: int | None = None
    meter_stop: int | None = None
    stop_time: str | None = None
    stopped_ms: float | None = None
    stop_reason: str | None = None
    stop_id_tag: str | None = None
    meter_values: list = field(default_factory=list)       # MeterValue objects, in arrival order
    transaction_data: list = field(default_factory=list)   # StopTransaction.transactionData

    def to_json(self) -> dict:
        return {"transactionId": self.transaction_id, "cp": self.cp, "connectorId": self.connector_id,
                "idTag": self.id_tag, "idTagInfo": self.id_tag_info, "reservationId": self.reservation_id,
                "meterStart": self.meter_start, "startTime": self.start_time, "started_ms": self.started_ms,
                "active": self.stopped_ms is None, "meterStop": self.meter_stop, "stopTime": self.stop_time,
                "stopped_ms": self.stopped_ms, "reason": self.stop_reason, "stopIdTag": self.stop_id_tag,
                "meterValues": self.meter_values, "transactionData": self.transaction_data}


@dataclass
class ChargePointRecord:
    id: str
    connected: bool = False
    remote: str | None = None
    connected_ms: float | None = None
    disconnected_ms: float | None = None
    client_cert: str | None = None        # security profile 3: the common name of its certificate
    boot: dict | None = None              # the last BootNotification payload
    boot_status: str | None = None        # what we answered to it
    boot_ms: float | None = None
    last_heartbeat_ms: float | None = None
    connectors: dict[int, dict] = field(default_factory=dict)   # connectorId -> last StatusNotification
    firmware_status: str | None = None
    diagnostics_status: str | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "connected": self.connected, "remote": self.remote,
                "connected_ms": self.connected_ms, "disconnected_ms": self.disconnected_ms,
                "client_cert": self.client_cert, "boot": self.boot, "boot_status": self.boot_status, "boot_ms": self.boot_ms,
                "last_heartbeat_ms": self.last_heartbeat_ms,
                "connectors": {str(k): v for k, v in sorted(self.connectors.items())},
                "firmware_status": self.firmware_status, "diagnostics_status": self.diagnostics_status}


class FrameLog:
    """Every frame in and out, with the verdict of the independent schema check. Lives on the
    event loop; `wait_for` wakes on each new frame."""

    def __init__(self, clock):
        self.clock = clock
        self.frames: list[dict] = []
        self.total = 0                # frames ever recorded; frames[0] is number total - len(frames)
        self._new_frame = asyncio.Event()

    def record(self, cp: str, direction: str, text: str | bytes, checker: FrameChecker) -> dict:
        verdict = checker.check(direction, text)
        entry = {"t_ms": self.clock(), "cp": cp, "dir": direction, "frame": verdict.frame,
                 "action": verdict.action, "valid": verdict.error is None}
        if verdict.error is not None:
            entry["error"] = verdict.error
        self.frames.append(entry)
        self.total += 1
        if len(self.frames) > FRAMES_KEEP:
            del self.frames[:FRAMES_DROP]
        self._new_frame.set()
        self._new_frame = asyncio.Event()
        return entry

    def select(self, cp: str | None = None, since_ms: float = 0) -> list[dict]:
        return [f for f in self.frames if f["t_ms"] > since_ms and (cp is None or f["cp"] == cp)]

    def find_call(self, cp: str, direction: str, uid: str) -> dict | None:
        """The latest CALL with this uid."""
        for f in reversed(self.frames):
            fr = f["frame"]
            if f["cp"] == cp and f["dir"] == direction and isinstance(fr, list) and len(fr) > 1 \
                    and fr[0] == 2 and fr[1] == uid:
                return f
        return None

    def find_answer(self, cp: str, uid: str, after_ms: float) -> dict | None:
        """The charge point's CALLRESULT or CALLERROR for our CALL `uid`."""
        for f in reversed(self.frames):
            fr = f["frame"]
            if f["t_ms"] >= after_ms and f["cp"] == cp and f["dir"] == "in" and isinstance(fr, list) \
                    and len(fr) > 1 and fr[0] in (3, 4) and fr[1] == uid:
                return f
        return None

    async def wait_for(self, predicate, since_ms: float, timeout_s: float) -> dict | None:
        """The first frame after `since_ms` that satisfies `predicate`, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen = self.total - len(self.frames)
        while True:
            first = self.total - len(self.frames)
            for f in self.frames[max(0, seen - first):]:
                if f["t_ms"] > since_ms and predicate(f):
                    return f
            seen = self.total
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._new_frame.wait(), left)
            except TimeoutError:
                return None


class Settings:
    def __init__(self, tags: dict[str, dict]):
        self.boot_status = "Accepted"
        self.interval_s = 300
        self.tags = Tags(tags)
        self.refuse: set[str] = set()   # actions answered with a CALLERROR, of code refuse_code
        self.refuse_code = "InternalError"   # or NotImplemented: a central system that lacks them
        self.signer = None   # host_tools.certs.Signer: signs the CSRs of SignCertificate (--tls-client-ca-key)


class CentralModel:
    def __init__(self, tags: dict[str, dict], clock):
        self.clock = clock
        self.settings = Settings(tags)
        self.charge_points: dict[str, ChargePointRecord] = {}
        self.transactions: list[Transaction] = []
        self._next_transaction_id = 1
        self.frames = FrameLog(clock)

    def charge_point(self, cp: str) -> ChargePointRecord:
        if cp not in self.charge_points:
            self.charge_points[cp] = ChargePointRecord(cp)
        return self.charge_points[cp]

    def transaction(self, cp: str, transaction_id: Any) -> Transaction | None:
        for tx in reversed(self.transactions):
            if tx.cp == cp and tx.transaction_id == transaction_id:
                return tx
        return None

    def start_transaction(self, cp: str, payload: dict) -> Transaction:
        """A new transaction; or, for a StartTransaction the same as one already taken (the same
        charge point, connector, card, meterStart and timestamp), that one again: a charge point
        sends a transaction message again when a power cut took its answer (at least once), and
        gets the id it was given."""
        id_tag = payload["idTag"]
        same = (cp, payload["connectorId"], id_tag, payload["meterStart"], payload["timestamp"])
        for tx in self.transactions:   # a repeat comes before its transaction's stop
            if tx.stopped_ms is None and (tx.cp, tx.connector_id, tx.id_tag, tx.meter_start, tx.start_time) == same:
                return tx
        tx = Transaction(self._next_transaction_id, cp, payload["connectorId"], id_tag, payload["meterStart"],
                         payload["timestamp"], self.clock(), self.settings.tags.id_tag_info(id_tag),
                         payload.get("reservationId"))
        self._next_transaction_id += 1
        self.transactions.append(tx)
        return tx
