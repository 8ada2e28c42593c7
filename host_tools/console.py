"""The firmware's serial console as host tools use it: send a command line, read its answer.

The firmware also prints a line of its own on every gun event ("gun 1: B2 -> C2  offer 32.0 A",
on a DC dispenser "gun 1: B2 -> C2  limit 150.0 kW", "gun 2: fault RCD"); such lines can arrive at any time, also in the middle of an answer, so they
are told apart by their form and handed to `on_event` instead of being taken for the answer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Callable

from host_tools import ports
from rich import box
from rich.console import Console as Terminal
from rich.table import Table

READ_POLL_S = 0.05          # how long one read waits for the first byte
REPLY_GAP_S = 0.2           # the firmware prints an answer at once: this much quiet ends it
STATUS_TIMEOUT_S = 3.0
DUTY_OFF_PM = 1000          # 100 % = no PWM (IEC 61851-1 A.5.1)
# The lines evse.app prints on its own: a state change, or a contactor/fault/cleared/wakeup event.
EVENT_LINE = re.compile(r"gun \d+: (\S+ -> \S+  (offer|limit) |contactor |fault |cleared |wakeup )")
REPL_PROMPT = b">>> "
BANNER = re.compile(rb"evse \S+ on \S+: \d+ guns")   # what evse.app prints as it starts
WAKE_S = 15.0               # a soft reset until the firmware's banner, on a slow board


class ConsoleError(RuntimeError):
    pass


class Console:
    def __init__(self, port: str, on_event: Callable[[str], None] | None = None, exclusive: bool = True):
        """`on_event(line)` gets every line the firmware prints on its own (gun events, its boot
        banner), not as the answer to a command. Without `exclusive` the port stays open to other
        programs (mpremote, evsectl) meanwhile."""
        self.port = port
        self.on_event = on_event
        try:
            self.serial = ports.open_port(port, READ_POLL_S, exclusive)
        except ports.PortError as e:
            raise ConsoleError(str(e)) from None
        self._partial = bytearray()

    def poll(self) -> None:
        """Hand what the firmware printed since the last read to `on_event`; never waits."""
        for line in self._receive(wait=False):
            self._event(line)

    def command(self, line: str, timeout_s: float = 2.0) -> list[str]:
        """Send one command line; return the answer's lines (empty when none came in timeout_s).
        A firmware stopped at the MicroPython REPL (Ctrl-C, an mpremote session) is started
        again first (wake)."""
        answer = self._command(line, timeout_s)
        if self._at_repl(answer):
            if not self.wake():
                raise ConsoleError(f"{self.port}: the charger firmware is not running (the MicroPython REPL "
                                   "answers, and Ctrl-D did not start it)")
            answer = self._command(line, max(timeout_s, WAKE_S / 3))   # the firmware's first answer is slow
        return answer

    def _at_repl(self, answer: list[str]) -> bool:
        return self._partial.endswith(REPL_PROMPT) or any(t.startswith(">>> ") for t in answer)

    def wake(self) -> bool:
        """Ctrl-D at the REPL: a soft reset, and main.py starts the charger again, as after a
        flash. True once its banner came (said on stderr); False in maintenance mode or silence."""
        self.serial.write(b"\x04")
        seen = bytearray()
        deadline = time.monotonic() + WAKE_S
        while time.monotonic() < deadline:
            seen += self.serial.read(self.serial.in_waiting or 1)
            if b"maintenance mode" in seen:
                print(f"evsectl: {self.port}: the board is in maintenance mode (the file `maintenance` on it): "
                      "the charger does not run; remove the file and reset it", file=sys.stderr)
                return False
            if BANNER.search(seen) and seen.endswith(b"\n"):
                print(f"evsectl: {self.port}: the charger firmware was stopped at the MicroPython REPL; "
                      "started it again (Ctrl-D)", file=sys.stderr)
                time.sleep(REPLY_GAP_S)   # its console task starts right after the banner
                self._partial = bytearray()
                return True
        return False

    def _command(self, line: str, timeout_s: float) -> list[str]:
        self.poll()  # what came before the command is not its answer
        self.serial.write(line.encode() + b"\r\n")
        answer: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for text in self._receive(wait=True):
                if text == line and not answer:
                    continue   # the firmware's echo (`echo on`) of the command
                if EVENT_LINE.match(text):
                    self._event(text)
                else:
                    answer.append(text)
                    deadline = min(deadline, time.monotonic() + REPLY_GAP_S)
        return answer

    def status_json(self, timeout_s: float = STATUS_TIMEOUT_S) -> dict:
        """The firmware's `status --json`, parsed."""
        for text in self.command("status --json", timeout_s):
            if text.startswith("{"):
                try:
                    return json.loads(text)
                except ValueError as e:
                    raise ConsoleError(f"{self.port} answered `status --json` with broken JSON ({e}): "
                                       f"{text[:80]}") from None
        raise ConsoleError(f"{self.port} does not answer `status --json`: is the charger firmware running? "
                           "(at the REPL? press Ctrl-D to soft-reset)")

    def close(self) -> None:
        self.serial.close()

    def _event(self, line: str) -> None:
        if self.on_event is not None and line:
            self.on_event(line)

    def _receive(self, wait: bool) -> list[str]:
        """The complete lines received so far; with `wait`, waits up to READ_POLL_S for data."""
        waiting = self.serial.in_waiting
        if waiting or wait:
            self._partial += self.serial.read(waiting or 1)
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        return [line.decode(errors="replace").rstrip("\r") for line in lines]


def gun_table(status: dict) -> Table:
    uptime_s = status.get("uptime_ms", 0) / 1000
    table = Table(title=f"{status.get('board')} · site limit {status.get('site_limit_a')} A · up {uptime_s:.0f} s",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column in ("gun", "state", "duty %", "offer A", "contactor", "drawn A", "temp °C", "derate %",
                   "cable A"):
        table.add_column(column, justify="left" if column in ("state", "contactor") else "right")
    table.add_column("fault", no_wrap=True)  # a code a technician looks up: never cut
    for gun in status.get("guns", []):
        duty_pm = gun["duty_pm"]
        table.add_row(
            str(gun["gun"]), gun["state"],
            f"{duty_pm / 10:.1f}" if 0 < duty_pm < DUTY_OFF_PM else "-",
            f"{gun['offered_a']:.1f}", "closed" if gun["contactor"] else "open",
            f"{gun['current_a']:.1f}", f"{gun['temperature_c']:.1f}", str(gun["derate_pct"]),
            str(gun["cable_a"] or "-"), gun["fault"] or "-")
    return table


def open_console(command: str, port: str | None, on_event=None) -> Console | None:
    """The console of --port or of the only board found; None after printing why not."""
    try:
        return Console(ports.resolve(port), on_event)
    except (ports.PortError, ConsoleError) as e:
        print(f"evsectl {command}: {e}", file=sys.stderr)
        return None


def status(args) -> int:
    """`evsectl status [--port P] [--json]`."""
    console = open_console("status", args.port)
    if console is None:
        return 1
    try:
        board_status = console.status_json()
        # With OCPP, the link in the firmware's own words: the first line of its `ocpp` command.
        link = [line for line in console.command("ocpp") if line.startswith("ocpp: ")][:1] \
            if board_status.get("ocpp") and not args.json else []
    except ConsoleError as e:
        print(f"evsectl status: {e}", file=sys.stderr)
        return 1
    finally:
        console.close()
    if args.json:
        print(json.dumps(board_status))
    else:
        Terminal().print(gun_table(board_status))
        for line in link:
            print(line)
    return 0


def monitor(args) -> int:
    """`evsectl monitor`: the gun table, refreshed every --interval seconds, with the board's last
    events under it; Ctrl-C ends it (--count N after N refreshes)."""
    from collections import deque

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    recent: deque[str] = deque(maxlen=args.events)
    console = open_console("monitor", args.port, on_event=lambda line: recent.append(f"{time.strftime('%H:%M:%S')}  {line}"))
    if console is None:
        return 1
    terminal = Terminal()

    def view(board_status: dict):
        return Group(gun_table(board_status), Text("\n".join(recent) or "(no events yet)", style="dim"))
    try:
        board_status = console.status_json()
        shown = 1
        with Live(view(board_status), console=terminal, auto_refresh=False) as live:
            while args.count is None or shown < args.count:
                time.sleep(args.interval)
                board_status = console.status_json()
                live.update(view(board_status), refresh=True)
                shown += 1
    except ConsoleError as e:
        print(f"evsectl monitor: {e}", file=sys.stderr)
        return 1
    finally:
        console.close()
    return 0


def logs(args) -> int:
    """`evsectl logs [-n N] [--follow]`: the last lines of the board's log on flash; with --follow,
    then every event line the board prints, until Ctrl-C."""
    console = open_console("logs", args.port, on_event=lambda line: print(line, flush=True))
    if console is None:
        return 1
    try:
        answer = [line for line in console.command(f"log {args.lines}") if line.strip()]
        if not answer:
            print(f"evsectl logs: {console.port} does not answer `log`: is the charger firmware running?",
                  file=sys.stderr)
            return 1
        if answer[0].startswith("log: use"):   # the firmware refused the count
            print(f"evsectl logs: {answer[0]}", file=sys.stderr)
            return 2
        for line in answer:
            print(line, flush=True)
        while args.follow:
            console.poll()
            time.sleep(READ_POLL_S)
    finally:
        console.close()
    return 0


def interactive(args) -> int:
    """`evsectl console`: mpremote's terminal on the board's console (type `help`; Ctrl-] leaves)."""
    from host_tools import installed_tool

    try:
        port = ports.resolve(args.port)
        ports.check_free(port)
    except ports.PortError as e:
        print(f"evsectl console: {e}", file=sys.stderr)
        return 1
    mpremote = installed_tool("mpremote")
    if mpremote is None:
        print("evsectl console: mpremote is not installed: run `make setup`", file=sys.stderr)
        return 1
    # The firmware echoes what is typed while this terminal is on it (a program's commands have no echo).
    echo(port, True)
    print(f"evsectl console: {port}; type help for the charger's commands, Ctrl-] to leave", flush=True)
    import signal

    def leave(signum, frame):   # the terminal closed, or a kill: echo goes off all the same
        raise SystemExit(128 + signum)
    handlers = {s: signal.signal(s, leave) for s in (signal.SIGHUP, signal.SIGTERM)}
    try:
        return subprocess.call([mpremote, "connect", port, "repl"])
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        echo(port, False)


def echo(port: str, on: bool) -> None:
    """The firmware's `echo on|off`; a firmware that is not running (at the REPL, mid-reset) is
    left as it is: its console starts with echo off."""
    try:
        console = Console(port)
    except ConsoleError:
        return
    try:
        console._command("echo " + ("on" if on else "off"), 1.0)
    finally:
        console.close()
