"""`evsectl config --port P get KEY | set KEY VALUE | export [FILE] | import FILE`: the board's
settings through its console (the firmware's `config` command validates and stores them).

`export` writes every setting as one JSON object, for the next board: without the charger's own
identity (IDENTITY: its name, OCPP identity and certificate, which two chargers must not share) unless
--identity. `import` is all or nothing: the board checks every key of the file first (`config
check`: unknown keys, ranges, keys that must fit the board such as priority_guns) and every
refusal is named; only then is each key set (an empty text by resetting the key to its default,
which is then empty), and should a set still fail, the keys set before it go back to what they
were."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from host_tools.console import Console, ConsoleError, open_console


IDENTITY = ("name", "ocpp_id", "ocpp_url", "ocpp_cert", "ocpp_key")   # a certificate is one charger's


class ConfigCommandError(RuntimeError):
    pass


def _ask(console: Console, line: str) -> list[str]:
    answer = [text for text in console.command(line) if text.strip()]
    if not answer:
        raise ConfigCommandError(f"{console.port} does not answer `{line}`: is the charger firmware running?")
    refusal = next((text for text in answer if text.startswith("config") and ":" in text.split("=")[0]), None)
    if refusal:
        raise ConfigCommandError(refusal[len("config: "):] if refusal.startswith("config: ") else refusal)
    return answer


def _line(key, value, yes=""):
    # An empty text cannot be typed: the settings that may be empty are so by default.
    return f"config reset {key}{yes}" if value == "" else f"config set {key} {value}{yes}"


def import_file(console: Console, path: str, yes: str) -> list[str]:
    """All or nothing (see the module's help); the keys set."""
    try:
        wanted = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigCommandError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigCommandError(f"{path} is not JSON ({e}); write it with `evsectl config export`") from None
    if not isinstance(wanted, dict):
        raise ConfigCommandError(f"{path} must hold one JSON object of settings, like {{\"site_limit_a\": 32}}")
    refused = []
    for key, value in wanted.items():
        if not isinstance(value, (int, str)) or isinstance(value, bool) or "\n" in str(value):
            refused.append(f"{key}: {value!r} is not a setting value (a whole number or a text)")
            continue
        if value == "":
            continue   # a reset: every known key may go back to its default
        try:
            _ask(console, f"config check {key} {value}")
        except ConfigCommandError as e:
            refused.append(str(e))
    if refused:
        raise ConfigCommandError(f"{path}: nothing was set; the board refuses " + "; ".join(refused))
    before = read_all(console)
    done = []
    try:
        for key, value in wanted.items():
            done.append(key)   # before the answer: a set whose answer was lost may have been stored
            _ask(console, _line(key, value, yes))
    except (ConfigCommandError, ConsoleError) as e:
        lost = []
        for key in reversed(done):
            try:
                _ask(console, _line(key, before.get(key, ""), " --yes"))
            except (ConfigCommandError, ConsoleError) as again:
                lost.append(f"{key} ({again})")
        back = (f"the {len(done) - 1} key(s) set before it are back as they were" if not lost else
                f"and {', '.join(lost)} could not be put back: see `evsectl config export`")
        raise ConfigCommandError(f"{e}; {back}") from None
    return done


def _value(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def read_all(console: Console) -> dict:
    settings = {}
    for text in _ask(console, "config list"):
        key, sep, value = text.partition(" = ")
        if sep:
            settings[key] = _value(value)
    return settings


def run(args) -> int:
    console = open_console("config", args.port)
    if console is None:
        return 1
    yes = " --yes" if getattr(args, "yes", False) else ""
    try:
        if args.action == "get":
            print("\n".join(_ask(console, f"config get {args.key}")))
        elif args.action == "set":
            print("\n".join(_ask(console, _line(args.key, args.value, yes))))   # "" resets to the default
        elif args.action == "export":
            settings = read_all(console)
            if not getattr(args, "identity", False):
                settings = {k: v for k, v in settings.items() if k not in IDENTITY}
            text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
            if args.file:
                Path(args.file).write_text(text)
            else:
                sys.stdout.write(text)
        else:
            done = import_file(console, args.file, yes)
            print(f"set {len(done)} setting{'s' if len(done) != 1 else ''}: {', '.join(done)}")
    except (ConfigCommandError, ConsoleError) as e:
        print(f"evsectl config: {e}", file=sys.stderr)
        return 1
    finally:
        console.close()
    return 0
