"""`evsectl config --port P get KEY | set KEY VALUE | export [FILE] | import FILE`: the board's
settings through its console (the firmware's `config` command validates and stores them).

`export` writes every setting as one JSON object; `import` sets each key of such an object (an
empty text by resetting the key to its default, which is then empty) and stops at the first one
the board refuses, naming it and the keys already set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from host_tools.console import Console, ConsoleError, open_console


class ConfigCommandError(RuntimeError):
    pass


def _ask(console: Console, line: str) -> list[str]:
    answer = [text for text in console.command(line) if text.strip()]
    if not answer:
        raise ConfigCommandError(f"{console.port} does not answer `{line}`: is the charger firmware running?")
    refusal = next((text for text in answer if text.startswith("config") and ":" in text.split("=")[0]), None)
    if refusal:
        raise ConfigCommandError(refusal)
    return answer


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
            print("\n".join(_ask(console, f"config set {args.key} {args.value}{yes}")))
        elif args.action == "export":
            text = json.dumps(read_all(console), indent=2, sort_keys=True) + "\n"
            if args.file:
                Path(args.file).write_text(text)
            else:
                sys.stdout.write(text)
        else:
            try:
                wanted = json.loads(Path(args.file).read_text())
            except OSError as e:
                raise ConfigCommandError(f"cannot read {args.file}: {e.strerror}") from None
            except ValueError as e:
                raise ConfigCommandError(f"{args.file} is not JSON ({e}); write it with `evsectl config export`") from None
            if not isinstance(wanted, dict):
                raise ConfigCommandError(f"{args.file} must hold one JSON object of settings, like {{\"site_limit_a\": 32}}")
            done = []
            for key, value in wanted.items():
                if not isinstance(value, (int, str)) or isinstance(value, bool) or " " in str(value):
                    raise ConfigCommandError(f"{key}: {value!r} is not a setting value (a whole number or a word)"
                                             + (f"; already set: {', '.join(done)}" if done else ""))
                # An empty text cannot be typed: the settings that may be empty are so by default.
                line = f"config reset {key}" if value == "" else f"config set {key} {value}"
                try:
                    _ask(console, line + yes)
                except ConfigCommandError as e:
                    raise ConfigCommandError(f"{e}" + (f"; already set: {', '.join(done)}" if done else "; nothing was set")) from None
                done.append(key)
            print(f"set {len(done)} setting{'s' if len(done) != 1 else ''}: {', '.join(done)}")
    except (ConfigCommandError, ConsoleError) as e:
        print(f"evsectl config: {e}", file=sys.stderr)
        return 1
    finally:
        console.close()
    return 0
