"""Commands typed on the central system's stdin: `<Action> <json payload>` sends that CALL, and a
few short aliases build the common ones. `parse_command` is pure; `read_terminal` feeds it stdin."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import threading
from dataclasses import dataclass

from host_tools.csms import schema

HELP = """commands (prefix any with @IDENTITY to pick a charge point; default: the most recent one):
  <Action> <json payload>       send any CALL, e.g. RemoteStartTransaction {"connectorId": 1, "idTag": "AA11"}
  start <connector> <idTag>     RemoteStartTransaction
  stop <transactionId>          RemoteStopTransaction
  reset soft|hard               Reset
  trigger <Message> [connector] TriggerMessage, e.g. trigger StatusNotification 1
  limit <connector> <amps>      SetChargingProfile: a TxDefaultProfile of <amps> A (connector 0: all)
  help                          this text"""
# One profile id for `limit`, so that each new limit replaces the last (OCPP 1.6 section 3.13.2).
LIMIT_PROFILE_ID = 1


class CommandError(ValueError):
    pass


@dataclass
class Command:
    cp: str | None
    action: str
    payload: dict


def _int(text: str, what: str, usage: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, not {text!r}; usage: {usage}")


def _start(args: list[str]) -> tuple[str, dict]:
    return "RemoteStartTransaction", {"connectorId": _int(args[0], "connector", ALIASES["start"][0]), "idTag": args[1]}


def _stop(args: list[str]) -> tuple[str, dict]:
    return "RemoteStopTransaction", {"transactionId": _int(args[0], "transactionId", ALIASES["stop"][0])}


def _reset(args: list[str]) -> tuple[str, dict]:
    kind = args[0].lower()
    if kind not in ("soft", "hard"):
        raise CommandError(f"reset is soft or hard, not {args[0]!r}; usage: {ALIASES['reset'][0]}")
    return "Reset", {"type": kind.capitalize()}


def _trigger(args: list[str]) -> tuple[str, dict]:
    payload: dict = {"requestedMessage": args[0]}
    if len(args) > 1:
        payload["connectorId"] = _int(args[1], "connector", ALIASES["trigger"][0])
    return "TriggerMessage", payload


def _limit(args: list[str]) -> tuple[str, dict]:
    usage = ALIASES["limit"][0]
    connector = _int(args[0], "connector", usage)
    try:
        amps = float(args[1])
    except ValueError:
        raise CommandError(f"amps must be a number, not {args[1]!r}; usage: {usage}")
    limit = int(amps) if amps.is_integer() else amps
    # Relative: the periods count from the start of each transaction, so no clock is involved.
    profile = {"chargingProfileId": LIMIT_PROFILE_ID, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "A",
                                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}
    return "SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile}


# name -> (usage, least arguments, most arguments, builder)
ALIASES = {
    "start": ("start <connector> <idTag>", 2, 2, _start),
    "stop": ("stop <transactionId>", 1, 1, _stop),
    "reset": ("reset soft|hard", 1, 1, _reset),
    "trigger": ("trigger <Message> [connector]", 1, 2, _trigger),
    "limit": ("limit <connector> <amps>", 2, 2, _limit),
}
_ACTIONS_BY_KEY = {a.casefold(): a for a in schema.FROM_CENTRAL_SYSTEM}


def parse_command(line: str) -> Command | None:
    """A typed line -> the CALL to send; None for a blank line or `help`. Raises CommandError."""
    text = line.strip()
    cp: str | None = None
    if text.startswith("@"):
        cp, _, text = text[1:].partition(" ")
        text = text.strip()
        if not cp:
            raise CommandError("write @IDENTITY before the command, like @CP1 reset soft")
    if not text or text.split()[0] in ("help", "?"):
        return None
    word, _, rest = text.partition(" ")
    if word in ALIASES:          # lower case; "Reset {...}" is the action
        usage, least, most, build = ALIASES[word]
        args = rest.split()
        if not least <= len(args) <= most:
            raise CommandError(f"usage: {usage}")
        return Command(cp, *build(args))
    action = _ACTIONS_BY_KEY.get(word.casefold())
    if action is None:
        if word in schema.FROM_CHARGE_POINT:
            raise CommandError(f"{word} is sent by charge points, not by the central system")
        near = difflib.get_close_matches(word, [*ALIASES, *schema.FROM_CENTRAL_SYSTEM], n=3)
        hint = f" Did you mean {' or '.join(near)}?" if near else ""
        raise CommandError(f"unknown command {word!r}.{hint} Type help for the list.")
    try:
        payload = json.loads(rest) if rest.strip() else {}
    except ValueError as e:
        raise CommandError(f"{action}: the payload is not JSON ({e}); write it like {action} {{\"connectorId\": 1}}")
    if not isinstance(payload, dict):
        raise CommandError(f"{action}: the payload must be a JSON object, not {rest.strip()}")
    return Command(cp, action, payload)


async def run_command(central, line: str) -> None:
    from host_tools.csms.model import ModelError
    from host_tools.csms.server import DEFAULT_CALL_TIMEOUT_S, CallFailed
    try:
        command = parse_command(line)
        if command is None:
            if line.strip():
                for help_line in HELP.splitlines():
                    central.say(help_line)
            return
        reply = await central.call(command.cp, command.action, command.payload, DEFAULT_CALL_TIMEOUT_S)
    except (CommandError, ModelError, CallFailed) as e:
        central.say(f"command {line.strip()!r}: {e}")
        return
    answer = reply.get("payload", reply.get("call_error"))
    central.say(f"{reply['cp']} answered {command.action}: {json.dumps(answer)}")


def read_terminal(central, loop: asyncio.AbstractEventLoop) -> None:
    """Read stdin in a thread; each line becomes a command on the loop. EOF ends the terminal only.
    os.read, not sys.stdin: a thread blocked in sys.stdin would hold its lock at interpreter exit."""
    def reader():
        pending = b""
        while True:
            try:
                chunk = os.read(0, 4096)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                asyncio.run_coroutine_threadsafe(run_command(central, line.decode(errors="replace")), loop)
    threading.Thread(target=reader, name="csms-terminal", daemon=True).start()
