"""evsectl: the host tool for the EV charger controller."""

from __future__ import annotations

import argparse
import os
import sys


def cmd_sim(args) -> int:
    from host_tools.sim.supervisor import run_foreground
    return run_foreground(args)


def cmd_csms(args) -> int:
    from host_tools.csms.server import run_foreground
    return run_foreground(args)


def cmd_demo(args) -> int:
    from host_tools.demo import run
    return run(args)


def cmd_report(args) -> int:
    from host_tools.report import run
    return run(args)


def cmd_config(args) -> int:
    from host_tools.config_cmd import run
    return run(args)


def cmd_status(args) -> int:
    from host_tools.console import status
    return status(args)


def cmd_monitor(args) -> int:
    from host_tools.console import monitor
    return monitor(args)


def cmd_logs(args) -> int:
    from host_tools.console import logs
    return logs(args)


def cmd_console(args) -> int:
    from host_tools.console import interactive
    return interactive(args)


def cmd_cert(args) -> int:
    from host_tools.certs import cmd_cert as run
    return run(args)


def cmd_boards(args) -> int:
    from host_tools.sim.supervisor import board_and_site_list
    for line in board_and_site_list():
        print(line)
    return 0


PORT_ENV = "EVSECTL_PORT"
PORT_HELP = (f"serial port (default: ${PORT_ENV}, else the only board found; a virtual board that evsectl sim "
             "runs counts)")


def add_port(parser, nested=False) -> None:
    """-p/--port, from $EVSECTL_PORT by default. `nested`: on a sub-subcommand too, so the option
    goes before or after it (`config --port P set ...` and `config set ... --port P`)."""
    default = argparse.SUPPRESS if nested else os.environ.get(PORT_ENV) or None
    parser.add_argument("-p", "--port", default=default, help=PORT_HELP)


def add_board(parser, **kw) -> None:
    parser.add_argument("-b", "--board", **kw)


LOG_LINES_MAX = 200   # the firmware's log command: log [n] with n 1..200


def _log_lines(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= LOG_LINES_MAX:
        raise argparse.ArgumentTypeError(f"a number of lines 1..{LOG_LINES_MAX}, not {text!r}")
    return n


def version() -> str:
    from host_tools.flash import firmware_version
    return firmware_version()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evsectl", description="Flash, configure, monitor and test the EV charger controller.")
    p.add_argument("--version", action="version", version=f"evsectl {version()}")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("sim", help="run the virtual board in the foreground",
                       description="Run the virtual board. Prints one JSON line "
                                   '{"serial": PTY, "control": HOST:PORT} and runs until SIGINT/SIGTERM. A site '
                                   "(boards/sites/, e.g. site-ac3) runs its controllers on one RS-485 site bus and "
                                   'prints {"site", "control": HOST:PORT, "line", "boards": [{"board": K, "name", '
                                   '"serial", "control"}]} (docs/rig-protocol.md, A virtual site).')
    add_board(s, default="sim-ac2",
                   help="board file name in boards/ or a path (default sim-ac2); rp2040-pico and esp32-devkitc run the "
                        "firmware as evsectl flash installs it, on an emulated MCU and front end; a site's name in "
                        "boards/sites/ runs the site")
    s.add_argument("--heap", default=None, help="MicroPython heap size (default: an MCU board's real heap at the measured 32/64-bit ratios with its code and the emulated silicon; a sim board: twice heap_kb plus the code; docs/boards.md)")
    s.add_argument("--flash", default=None, help="folder for the flash image (default: a fresh temporary one)")
    s.add_argument("--csms", default=None, help="ws:// or wss:// URL of a central system")
    s.add_argument("--put", action="append", default=[], metavar="FILE",
                   help="also put this file on the fresh flash, under its own name (a CA or a certificate); repeatable")
    s.add_argument("--config", default=None, metavar="FILE",
                   help="settings (a JSON object, as `evsectl config export` writes) the fresh flash's config.json starts with")
    s.add_argument("--echo", action="store_true", help="copy the board's serial output to stderr")
    s.set_defaults(func=cmd_sim)

    c = sub.add_parser("csms", help="run a development central system (OCPP 1.6 JSON) in the foreground",
                       description="Run a central system for development and tests. Prints one JSON line "
                                   '{"ws": URL, "api": HOST:PORT, "http": URL}, then a log of every frame; '
                                   "lines typed on stdin are commands (type help). Runs until SIGINT/SIGTERM. "
                                   "See docs/csms.md.")
    c.add_argument("--host", default="127.0.0.1", help="address of the OCPP and HTTP servers (default 127.0.0.1)")
    c.add_argument("--port", type=int, default=9000, help="OCPP WebSocket port; 0 picks a free one (default 9000)")
    c.add_argument("--api-port", type=int, default=0, help="API port on 127.0.0.1; 0 picks a free one (default 0)")
    c.add_argument("--http-port", type=int, default=0, help="HTTP file service port; 0 picks a free one (default 0)")
    c.add_argument("--tags", default=None, help='JSON file {"idTag": {"status": "Accepted", ...}} (default AA11, BB22 '
                                                "Accepted, BLOCKED1 Blocked)")
    c.add_argument("--files", default=None, help="folder served at /files/, uploads go to its uploads/ (default: a temporary one)")
    c.add_argument("--basic-auth", nargs="+", action="extend", metavar="ID:PASSWORD",
                   help="security profile 1: charge points must log in with HTTP Basic auth")
    c.add_argument("--tls-cert", default=None, help="security profile 2: serve wss:// with this certificate (PEM)")
    c.add_argument("--tls-key", default=None, help="the private key of --tls-cert (PEM)")
    c.add_argument("--tls-client-ca-key", default=None,
                   help="the private key of --tls-client-ca (PEM): sign the CSRs charge points send (SignCertificate) "
                        "and send them the certificate (CertificateSigned)")
    c.add_argument("--tls-client-ca", default=None,
                   help="security profile 3: ask each charge point for its certificate, signed by this CA (PEM); "
                        "one that shows a certificate must be named (common name) as its identity")
    c.set_defaults(func=cmd_csms)

    d = sub.add_parser("demo", help="play a scripted day on the virtual board (make run)",
                       description="Start the virtual board and a central system, and play a scripted day: cars "
                                   "come, share the site limit, taper and leave, the central system caps the "
                                   "charger; each step is captioned and the guns' table redrawn. make run runs it.")
    add_board(d, default="sim-ac2", help="board file name in boards/ (default sim-ac2; evsectl boards lists them), "
                                         "or a site in boards/sites/ (site-ac8x2: a day at eight controllers on one "
                                         "site bus)")
    d.add_argument("--forever", action="store_true", help="after the day, keep the virtual charger up")
    d.add_argument("--speed", type=float, default=1.0, help="time scale of the script's pauses (tests use more)")
    d.add_argument("--security-profile", type=int, choices=(0, 3), default=0,
                   help="3: the central system on wss:// with a site PKI made for the day; the charger gets its "
                        "certificate over OCPP and connects with it (security profile 3) before the day plays")
    d.add_argument("--log", default=None, help="where to write the rig's log (default run-out/BOARD/session.jsonl, "
                                                 "with the report and screenshot beside it)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("report", help="draw a PNG of a demo log: current and power per gun against the site limit, "
                                      "energy per session",
                       description="Draw one PNG of a rig log (evsectl demo writes run-out/BOARD/session.jsonl): the current "
                                   "per gun (A per phase, stacked) and the current its pilot offered, against the site "
                                   "limit; the power per gun (kW, stacked) against the limit x 230 V x phases; when "
                                   "each contactor was closed and faults; the energy of each session (plug-in to "
                                   "unplug), measured and billed over OCPP; the script's steps as numbered lines. "
                                   "Prints the PNG's path. Exit 1: the log cannot be read as one; exit 2: a file or "
                                   "option cannot be used.")
    r.add_argument("log", metavar="LOG", help="the JSON-lines log, e.g. run-out/BOARD/session.jsonl")
    r.add_argument("-o", "--output", metavar="OUT.png", default=None,
                   help="the PNG to write (default: report.png next to the log)")
    add_board(r, metavar="B", default=None,
                   help="board file name in boards/ (or a path to one) for the site limit and phases "
                        "(default: the board the log names)")
    r.add_argument("--limit-a", metavar="A", type=float, default=None,
                   help="site limit in A per phase (default: the board's site_limit_a)")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("config", help="get, set, export or import the board's settings over its console",
                       description="The board's settings through its console; the firmware validates them. "
                                   "--port and --yes go before or after the action.")
    yes_help = "also while a session runs (the console asks for it)"
    add_port(c)
    c.add_argument("--yes", action="store_true", help=yes_help)
    actions = c.add_subparsers(dest="action", required=True)
    g = actions.add_parser("get", help="one setting")
    g.add_argument("key")
    s_ = actions.add_parser("set", help="one setting, validated and stored on the board")
    s_.add_argument("key")
    s_.add_argument("value")
    e = actions.add_parser("export", help="every setting as one JSON object, for the next board")
    e.add_argument("file", nargs="?", help="write it here (default: print it)")
    e.add_argument("--identity", action="store_true",
                   help="also the charger's own name, ocpp_id and ocpp_url (a backup of this charger, not a "
                        "template: two chargers with one identity fight over one OCPP connection)")
    i = actions.add_parser("import", help="check every key of a JSON object written by export, then set all "
                                          "or nothing")
    i.add_argument("file")
    for action in (g, s_, e, i):
        add_port(action, nested=True)
        action.add_argument("--yes", action="store_true", default=argparse.SUPPRESS, help=yes_help)
    c.set_defaults(func=cmd_config)

    st = sub.add_parser("status", help="print the board's status (status --json on its console)",
                        description="Asks the board's console for its status once and prints it: each gun's "
                                    "state, offer, contactor, current, energy and fault, the site limit and the "
                                    "firmware's timing; --json prints the console's JSON as it came.")
    add_port(st)
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    st.set_defaults(func=cmd_status)

    m = sub.add_parser("monitor", help="a live table of every gun, with the board's events under it",
                       description="Asks the board for its status every --interval seconds and shows every "
                                   "gun (state, PWM duty, offer, contactor, current, temperature, fault) and "
                                   "the last events it printed. Ctrl-C ends it.")
    add_port(m)
    m.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    m.add_argument("--events", type=int, default=8, help="how many recent events to show (default 8)")
    m.add_argument("--count", type=int, default=None, help="stop after this many refreshes (default: run on)")
    m.set_defaults(func=cmd_monitor)

    lg = sub.add_parser("logs", help="the board's log on flash (faults, meter and OCPP events)",
                        description="Prints the last lines of the log the firmware keeps on flash; with "
                                    "--follow, then every event line the board prints until Ctrl-C.")
    add_port(lg)
    lg.add_argument("-n", "--lines", type=_log_lines, default=20, help="how many lines (1..200, default 20)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing the board's events")
    lg.set_defaults(func=cmd_logs)

    cn = sub.add_parser("console", help="an interactive terminal on the board's console (mpremote repl)",
                        description="The board's serial console in this terminal: the charger's commands "
                                    "(type help) while it charges; Ctrl-C stops the firmware safely and gives "
                                    "the MicroPython REPL, Ctrl-D restarts it; Ctrl-] leaves.")
    add_port(cn)
    cn.set_defaults(func=cmd_console)

    ce = sub.add_parser("cert", help="make a charge point's key pair and certificate request (security profile 3)",
                        description="Commissioning: a private key (DER) and a certificate signing request (PEM) "
                                    "whose common name is the charge point's identity. Put both on the board "
                                    "(ocpp_key, ocpp_csr); the central system signs the request when it asks for it.")
    ce.add_argument("--identity", required=True, help="the charge point's OCPP identity (its ocpp_id)")
    ce.add_argument("--out", default=".", help="folder for cp.key and cp.csr (default: here)")
    ce.add_argument("--organization", default=None, help="the subject's organization (O), e.g. the operator")
    ce.add_argument("--rsa", action="store_true", help="an RSA 2048 key instead of EC P-256")
    ce.set_defaults(func=cmd_cert)

    b = sub.add_parser("boards", help="list the board files: MCU, guns, heap, how the firmware is installed",
                       description="Every board file in boards/, one line each: its name, the MCU, the guns, "
                                   "the heap it leaves and the install it needs (docs/boards.md); then, after a "
                                   "blank line, every site in boards/sites/: its controllers, guns and connection.")
    b.set_defaults(func=cmd_boards)

    from host_tools import flash, install_mp
    flash.add_parser(sub)
    install_mp.add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:   # bare evsectl: the help, not an error
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
