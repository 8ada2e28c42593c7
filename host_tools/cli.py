"""evsectl: the host tool for the EV charger controller."""

from __future__ import annotations

import argparse
import sys


def cmd_sim(args) -> int:
    from host_tools.sim.supervisor import run_foreground
    return run_foreground(args)


def cmd_demo(args) -> int:
    from host_tools.demo import run
    return run(args)


def cmd_status(args) -> int:
    from host_tools.console import status
    return status(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evsectl", description="Flash, configure, monitor and test the EV charger controller.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sim", help="run the virtual board in the foreground",
                       description="Run the virtual board. Prints one JSON line "
                                   '{"serial": PTY, "control": HOST:PORT} and runs until SIGINT/SIGTERM.')
    s.add_argument("--board", default="sim-ac2", help="board file name in boards/ (default sim-ac2)")
    s.add_argument("--heap", default="192K", help="MicroPython heap size, as on the board (default 192K)")
    s.add_argument("--flash", default=None, help="folder for the flash image (default: a fresh temporary one)")
    s.add_argument("--csms", default=None, help="ws:// URL of a central system")
    s.add_argument("--echo", action="store_true", help="copy the board's serial output to stderr")
    s.set_defaults(func=cmd_sim)

    d = sub.add_parser("demo", help="play a scripted day on the virtual board (make run)")
    d.add_argument("--board", default="sim-ac2")
    d.add_argument("--forever", action="store_true", help="after the day, keep the virtual charger up")
    d.add_argument("--speed", type=float, default=1.0, help="time scale of the script's pauses (tests use more)")
    d.add_argument("--log", default="run-out/session.jsonl", help="where to write the rig's log")
    d.set_defaults(func=cmd_demo)

    st = sub.add_parser("status", help="print the board's status (status --json on its console)")
    st.add_argument("--port", required=True, help="serial port (a virtual board's pty counts)")
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    st.set_defaults(func=cmd_status)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
