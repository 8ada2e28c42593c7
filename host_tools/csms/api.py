"""The central system's local API: JSON lines over TCP, one reply per request, like the rig
protocol (docs/rig-protocol.md). One function per op, routed by a table; docs/csms.md describes
every op.

Request `{"op": NAME, ...}`; reply `{"ok": true, "t_ms": ..., ...}` or `{"ok": false, "error": ...}`."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
import traceback

from host_tools.csms.model import (INTERVAL_MAX_S, REGISTRATION_STATUSES, ModelError, parse_tag,
                                   parse_tags)
from host_tools.csms.schema import FROM_CHARGE_POINT
from host_tools.csms.server import DEFAULT_CALL_TIMEOUT_S, CallFailed, CentralSystem
from host_tools.jsonlines import OpError, Refused, Router

ROUTER = Router("charge_points", "docs/csms.md", user_errors=(OpError, ModelError, CallFailed))
OPS, op = ROUTER.ops, ROUTER.op
LINE_MAX = 1 << 20          # a request line longer than 1 MiB is refused
TIMEOUT_MAX_S = 3600.0
ANSWER_WAIT_S = 5.0   # `wait`: how long a CALL that has arrived may wait for its answer


def _cp(req: dict) -> str | None:
    cp = req.get("cp")
    if cp is not None and not isinstance(cp, str):
        raise OpError(f"'cp' must be a charge point identity like \"CP1\", not {cp!r}")
    return cp


def _number(req: dict, key: str, default: float, lo: float, hi: float, what: str) -> float:
    value = req.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise OpError(f"'{key}' must be {what} in {lo:g}..{hi:g}, not {value!r}")
    return float(value)


def _since_ms(req: dict) -> float:
    value = req.get("since_ms", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OpError(f"'since_ms' must be a number of milliseconds, not {value!r}")
    return float(value)


def _action(req: dict) -> str:
    action = req.get("action")
    if not isinstance(action, str) or not action:
        raise OpError(f"'action' must be an OCPP action name like \"BootNotification\", not {action!r}")
    return action


@op("info")
def info(central: CentralSystem, req: dict) -> dict:
    settings = central.model.settings
    return {**central.addresses, "ops": sorted(OPS), "boot_status": settings.boot_status,
            "interval": settings.interval_s, "tags": settings.tags.tags, "refuse": sorted(settings.refuse),
            "files": str(central.files.root) if central.files else None,
            "basic_auth": sorted(central.basic_auth), "tls": central.ssl_context is not None,
            "refusals": list(central.refusals)}


@op("charge_points")
def charge_points(central: CentralSystem, req: dict) -> dict:
    return {"charge_points": [cp.to_json() for cp in central.model.charge_points.values()]}


@op("frames")
def frames(central: CentralSystem, req: dict) -> dict:
    return {"frames": central.model.frames.select(_cp(req), _since_ms(req))}


@op("transactions")
def transactions(central: CentralSystem, req: dict) -> dict:
    cp = _cp(req)
    return {"transactions": [tx.to_json() for tx in central.model.transactions if cp is None or tx.cp == cp]}


@op("call")
async def call(central: CentralSystem, req: dict) -> dict:
    timeout_s = _number(req, "timeout_s", DEFAULT_CALL_TIMEOUT_S, 0.1, TIMEOUT_MAX_S, "a number of seconds")
    return await central.call(_cp(req), _action(req), req.get("payload", {}), timeout_s)


@op("set")
def set_(central: CentralSystem, req: dict) -> dict:
    known = ("boot_status", "interval", "tags", "tag", "refuse", "refuse_code", "basic_auth")
    if not any(k in req for k in known):
        raise OpError(f"give at least one of {', '.join(known)}")
    settings = central.model.settings
    # Check everything first: a request with one bad field changes nothing.
    boot_status = req.get("boot_status", settings.boot_status)
    if boot_status not in REGISTRATION_STATUSES:
        raise OpError(f"'boot_status' must be one of {', '.join(REGISTRATION_STATUSES)}, not {boot_status!r}")
    interval = req.get("interval", settings.interval_s)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 0 <= interval <= INTERVAL_MAX_S:
        raise OpError(f"'interval' must be an integer number of seconds in 0..{INTERVAL_MAX_S}, not {interval!r}")
    tags = parse_tags(req["tags"], "'tags'") if "tags" in req else None
    tag = None
    if "tag" in req:
        if not isinstance(req["tag"], dict):
            raise OpError(f"'tag' must be an object like {{\"id\": \"CC33\", \"status\": \"Accepted\"}}, not {req['tag']!r}")
        fields = dict(req["tag"])
        id_tag = fields.pop("id", None)
        tag = (id_tag, parse_tag(id_tag, fields, "'tag'"))
    refuse = req.get("refuse", sorted(settings.refuse))
    if not isinstance(refuse, list) or not all(isinstance(a, str) and a in FROM_CHARGE_POINT for a in refuse):
        raise OpError(f"'refuse' must be a list of actions a charge point sends "
                      f"({', '.join(sorted(FROM_CHARGE_POINT))}), not {refuse!r}")
    refuse_code = req.get("refuse_code", settings.refuse_code)
    if refuse_code not in ("InternalError", "NotImplemented"):
        raise OpError(f"'refuse_code' must be InternalError or NotImplemented, not {refuse_code!r}")
    basic_auth = req.get("basic_auth", central.basic_auth)
    if not isinstance(basic_auth, dict) or not all(isinstance(k, str) and k and isinstance(v, str) and v
                                                   for k, v in basic_auth.items()):
        raise OpError("'basic_auth' must be an object of identity: password (security profile 1; {} turns it "
                      f"off), not {basic_auth!r}")
    settings.boot_status, settings.interval_s = boot_status, interval
    settings.refuse = set(refuse)
    settings.refuse_code = refuse_code
    central.basic_auth = dict(basic_auth)
    if tags is not None:
        settings.tags.replace(tags)
    if tag is not None:
        settings.tags.put(*tag)
    changed = {k: req[k] for k in known if k in req}
    if "basic_auth" in changed:   # the log names who must log in, never a password
        changed["basic_auth"] = sorted(basic_auth)
    central.say(f"set {json.dumps(changed)}")
    return {}


@op("disconnect")
async def disconnect(central: CentralSystem, req: dict) -> dict:
    return {"cp": await central.disconnect(_cp(req))}


@op("wait")
async def wait(central: CentralSystem, req: dict) -> dict:
    cp, action, since_ms = _cp(req), _action(req), _since_ms(req)
    timeout_s = _number(req, "timeout_s", 10.0, 0, TIMEOUT_MAX_S, "a number of seconds")

    def sent_by_charge_point(f: dict) -> bool:
        fr = f["frame"]
        return f["dir"] == "in" and (cp is None or f["cp"] == cp) and isinstance(fr, list) and len(fr) > 2 \
            and fr[0] == 2 and fr[2] == action

    started = time.monotonic()
    frame = await central.model.frames.wait_for(sent_by_charge_point, since_ms, timeout_s)
    if frame is None:
        raise OpError(f"no {action} from {cp or 'any charge point'} after t_ms {since_ms:g} within {timeout_s:g} s")

    def its_answer(f: dict) -> bool:
        fr = f["frame"]
        return f["dir"] == "out" and f["cp"] == frame["cp"] and isinstance(fr, list) and len(fr) > 1 \
            and fr[0] in (3, 4) and fr[1] == frame["frame"][1]

    # The frame is logged as it arrives, before its handler runs: the caller is told of it once it
    # is answered, when what the handler keeps (a transaction's stop, say) can be read. A link that
    # drops first leaves it unanswered: it is returned all the same.
    left_s = max(0.0, min(ANSWER_WAIT_S, timeout_s - (time.monotonic() - started)))
    await central.model.frames.wait_for(its_answer, frame["t_ms"] - 1, left_s)
    return {"frame": frame}


@op("uploads")
def uploads(central: CentralSystem, req: dict) -> dict:
    if central.files is None:
        raise OpError("this central system has no file service")
    return {"dir": str(central.files.uploads_dir), "uploads": central.files.uploads()}


async def handle_line(central: CentralSystem, line: bytes | str) -> dict:
    """One request line -> one reply object. Never raises: bad input is an error reply."""
    try:
        name, fn, req = ROUTER.parse(line)
    except Refused as e:
        return e.reply
    try:
        reply = fn(central, req)
        if inspect.isawaitable(reply):
            reply = await reply
    except ROUTER.request_errors as e:
        return ROUTER.refusal(name, e)
    except Exception as e:   # our bug: say so, keep serving
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": f"{name}: internal error in evsectl csms ({e!r}); please report it"}
    return {"ok": True, "t_ms": central.now_ms(), **reply}


async def _serve_client(central: CentralSystem, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pending, skipping = b"", False
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if skipping:          # the rest of a line that was too long
                    skipping = False
                    continue
                if line.strip():
                    reply = await handle_line(central, line)
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
            if len(pending) > LINE_MAX:
                if not skipping:
                    reply = {"ok": False, "error": f"request line longer than {LINE_MAX} bytes; not read"}
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
                pending, skipping = b"", True
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    except asyncio.CancelledError:
        return    # shutting down with this client still connected
    finally:
        writer.close()


async def serve_api(central: CentralSystem, port: int) -> asyncio.Server:
    """The API listens on 127.0.0.1 only: `call` can make a charger do anything."""
    return await asyncio.start_server(lambda r, w: _serve_client(central, r, w), "127.0.0.1", port)
