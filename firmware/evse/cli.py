# The technician's command line on the serial console, while charging goes on. One line in,
# reply lines out; never raises on what is typed. A command that would change how a running
# session charges refuses, naming the gun and the reason, unless the line ends with --yes.
from evse import config, console, store

COMMANDS = (
    ("help", "help [command]", "what the commands do; help config lists every setting"),
    ("status", "status [--json]", "the charger and every gun; --json for tools"),
    ("guns", "guns", "one line per gun: state, offer, current, power, energy, session"),
    ("config", "config get <key> | set <key> <value> | check <key> <value> | list | reset <key|all>", "the settings"),
    ("meter", "meter", "each gun's energy meter: register, power, volts and amps per phase"),
    ("grid", "grid <L1_A> [<L2_A> <L3_A>] [power <W>]",
     "a reading of a fed grid meter: the current at the connection per site phase, the guns' included, "
     "and the total power there (negative: export)"),
    ("modules", "modules", "a DC cabinet's power modules on CAN: setpoint, output, fault, and the bus's counters"),
    ("start", "start <gun> [idTag]", "start a session: with OCPP as if the card was shown"),
    ("stop", "stop <gun>", "end the gun's session (OCPP reason Local)"),
    ("fault", "fault list | fault clear <gun|all>", "the guns' faults"),
    ("log", "log [n]", "the last n lines of the log on flash (default 20)"),
    ("ocpp", "ocpp", "the link to the central system and the messages waiting"),
    ("selftest", "selftest", "RCD test, contactor feedback, meters, network (no gun may be charging)"),
    ("timing", "timing [clear]", "the worst gap between control ticks and each task's slowest step; clear starts anew"),
    ("calibrate", "calibrate <gun> [<high_mv> <low_mv>] [save]",
     "fit the pilot ADC's gain and offset at +12 V and -12 V (gun unplugged); save writes board.json"),
    ("reboot", "reboot", "restart the controller"),
    ("echo", "echo [on|off]", "echo what is typed, Backspace too (evsectl console turns it on; a reboot turns it off)"),
)
# Settings whose change alters a session that is running.
SESSION_KEYS = ("site_limit_a", "grid_limit_a", "grid_margin_a", "grid_fallback_a", "grid_stale_s",
                "solar_mode", "solar_import_w", "solar_start_s", "solar_stop_s", "phase_switch_s", "phase_switch_max",
                "site_address", "site_nodes", "site_fallback_a", "site_lost_s",
                "gun_max_a", "min_current_a", "sharing_policy", "priority_guns",
                "priority_tags", "meter_fault", "ocpp_url", "ocpp_id", "ocpp_ca", "ocpp_cert", "ocpp_key", "ocpp_csr")
BOOT_KEYS = ("site_address", "site_nodes")   # read when the charger starts
LOG_LINES = 20
LOG_LINES_MAX = 200


def handle(app, line):
    """The reply lines to one console line."""
    words = line.split()
    yes = "--yes" in words
    if yes:
        words = [w for w in words if w != "--yes"]
    if not words:
        return ["--yes goes after a command, e.g. reboot --yes"] if yes else []
    cmd, args = words[0].lower(), words[1:]   # STATUS with caps lock on is status
    fn = _HANDLERS.get(cmd)
    if fn is None:
        near = _nearest(cmd)
        hint = "did you mean '%s'? " % near if near else ""
        return ["unknown command '%s'; %s'help' lists the commands" % (cmd, hint)]
    try:
        return fn(app, args, yes)
    except _Refused as e:
        return [str(e)]
    except Exception as e:  # our bug, not the technician's: say so, keep the charger running
        return ["%s: internal error %r; the charger runs on (please report this)" % (cmd, e)]


def _usage(cmd):
    for name, usage, _ in COMMANDS:
        if name == cmd:
            return "%s: use: %s" % (cmd, usage)
    return cmd


def _nearest(word):
    best, best_d = None, 3
    for name, _, _ in COMMANDS:
        d = _distance(word, name)
        if d < best_d or (name.startswith(word) and len(word) >= 2):
            best, best_d = name, min(d, best_d)
    return best


def _distance(a, b):
    """Levenshtein distance, for typos."""
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[-1]


def _gun(app, text, cmd):
    """Gun number from text, or raises _Refused with the range."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= len(app.guns):
        raise _Refused("%s: gun must be 1..%d, not '%s'" % (cmd, len(app.guns), text))
    return app.guns[n - 1]


class _Refused(Exception):
    pass


def _charging(app):
    return [g for g in app.guns if g.contactor or (app.cp is not None and app.cp.session_tag(g.n) is not None)]


def _busy_refusal(app, what):
    busy = _charging(app)
    if not busy:
        return None
    return "%s: gun %d has a session running; end it first, or add --yes to do it now" % (what, busy[0].n)


# What each setting of evse.config.KEYS is for: `help config` (here, not in the settings' table,
# which every board holds in its heap from boot).
CONFIG_HELP = {
    "site_limit_a": "current the site fuse allows per phase, shared by all guns",
    "gun_max_a": "cap on every gun's offer, below the board's rating",
    "min_current_a": "an allocation below this pauses the gun instead (IEC 61851: 6 A minimum)",
    "fault_retry_s": "delay before a fault that clears itself is retried",
    "sharing_policy": "how guns share the budget: fair (equal shares, unused current to the others), fifo "
                      "(first come, first served) or priority (priority_guns, priority_tags first)",
    "priority_guns": "with sharing_policy priority: guns served first, e.g. 1,3",
    "priority_tags": "with sharing_policy priority: cards (idTags) served first, e.g. AA11,BB22",
    "meter_fault": "when a gun's meter stops answering: stop (no charging until it answers) or continue "
                   "(charging goes on, reported as PowerMeterFailure)",
    "grid_limit_a": "with a grid meter: the site's connection per phase, shared with the building",
    "grid_margin_a": "with a grid meter: current per phase kept free under grid_limit_a",
    "grid_fallback_a": "with a grid meter: what the guns share per phase while it is silent",
    "grid_stale_s": "with a grid meter: a reading older than this is no reading (fallback)",
    "solar_mode": "with a grid meter: on charges from what the site exports (and solar_import_w); off from "
                  "the connection",
    "solar_import_w": "with solar_mode on: what the guns may take from the grid on top",
    "solar_start_s": "with solar_mode on: the surplus must suffice for the minimum current this long "
                     "before the guns start",
    "solar_stop_s": "with solar_mode on: a surplus short of the minimum this long pauses the guns (they "
                    "take the minimum meanwhile)",
    "phase_switch_s": "on a gun with a phase contactor: the budget must call for one phase (or three "
                      "again) this long before the gun switches",
    "phase_switch_max": "on a gun with a phase contactor: switches per session at most (0: it stays on "
                        "three phases)",
    "site_address": "on a site bus (board site_bus): 1 the coordinator that shares the connection, 2..16 a "
                    "node; 0 none. At the next boot",
    "site_nodes": "coordinator: the nodes on the site bus, at addresses 2..site_nodes+1. At the next boot",
    "site_fallback_a": "coordinator: what all the site's guns share per phase while the nodes have no "
                       "coordinator; each controller gets its part",
    "site_lost_s": "a node without the coordinator's writes this long shares its part of site_fallback_a",
    "name": "charger name shown on the console",
    "ocpp_url": "central system, ws://host:port/path or wss://...; empty: no OCPP, free charging",
    "ocpp_id": "charge point identity, appended to ocpp_url",
    "ocpp_ca": "file on flash with the CA certificate (DER) that signs the wss:// server",
    "ocpp_cert": "file on flash with this charge point's certificate (DER), for SecurityProfile 3",
    "ocpp_key": "file on flash with the private key (DER) of ocpp_cert; its bytes are never shown",
    "ocpp_csr": "file on flash with the certificate request (PEM) for ocpp_key, made at commissioning "
                "(evsectl cert): sent when the central system asks for a certificate",
}


# ---- the commands ------------------------------------------------------------------------------
def _help(app, args, yes):
    if not args:
        return ["%-58s %s" % (usage, what) for _, usage, what in COMMANDS]
    if args == ["config"]:
        out = []
        for key in sorted(config.KEYS):
            kind, lo, hi, unit = config.KEYS[key]
            if key in config.CHOICES:
                allowed = "|".join(config.CHOICES[key])
            elif kind is int:
                allowed = "%d..%d %s" % (lo, hi, unit)
            else:
                allowed = "text, %d..%d characters" % (lo, hi)
            out.append("%-15s %-22s %s" % (key, allowed, CONFIG_HELP[key]))
        return out
    for name, usage, what in COMMANDS:
        if args[0] == name:
            return ["%s: %s" % (usage, what)]
    return ["help: no command '%s'; 'help' lists them" % args[0]]


def _status(app, args, yes):
    if args == ["--json"]:
        return [console.status_json(app)]
    if not args:
        return console.status_lines(app)
    return ["status: unknown option '%s'; use: status [--json]" % " ".join(args)]


def _timing(app, args, yes):
    if args == ["clear"]:
        app.timing_clear()
        return ["timing: cleared"]
    if args:
        return [_usage("timing")]
    return [console.timing_line(app)]


def _guns(app, args, yes):
    if args:
        return [_usage("guns")]
    out = ["gun state  offer_A  amps   kW     kWh      session  fault"]
    for g in app.guns:
        tag = app.cp.session_tag(g.n) if app.cp is not None else None
        out.append("%-3d %-6s %-8.1f %-6.1f %-6.1f %-8.2f %-8s %s" % (
            g.n, g.state, g.offered_a(), g.current_a, app.power_w(g.n) / 1000, app.energy_wh(g.n) / 1000,
            tag or "-", g.fault or "-"))
    return out


def _modules(app, args, yes):
    if args:
        return [_usage("modules")]
    stage = app.cabinet.stage if app.cabinet is not None else None
    if stage is None:
        return ["modules: this board has no power modules on CAN (board file cabinet.can)"]
    out = ["module addr on  set_V  set_A  V      A      dispenser  state"]
    fb = app.cabinet.fb
    for k, m in enumerate(stage.modules):
        state = "silent" if m.silent else m.fault or ("ok" if m.seen_ms is not None else "not found")
        out.append("%-6d %-4d %-3s %-6.0f %-6.1f %-6.1f %-6.1f %-10s %s" % (
            k + 1, m.address, "yes" if m.on else "no", m.set_v, m.set_a, m.volts, m.amps, fb[k] if fb[k] > 0 else "parked" if fb[k] == 0 else "unknown", state))
    bus = stage.bus.stats()
    out.append("%s bus: %s" % (stage.codec.NAME, ", ".join("%s %s" % (key, bus[key]) for key in sorted(bus))))
    return out


def _config(app, args, yes):
    cfg = app.cfg
    try:
        if args == ["list"]:
            return ["%s = %s" % (key, cfg.get(key)) for key in sorted(config.KEYS)]
        if len(args) == 2 and args[0] == "get":
            return ["%s = %s" % (args[1], cfg.get(args[1]))]
        if len(args) >= 3 and args[0] in ("set", "check"):
            # A text value may have spaces (a name): the words after the key are the value.
            value = cfg.parse(args[1], " ".join(args[2:]))
            if args[0] == "check":
                return ["%s = %s is accepted" % (args[1], value)]
            if args[1] in SESSION_KEYS and not yes:
                why = _busy_refusal(app, "config set %s" % args[1])
                if why:
                    return [why]
            return ["%s = %s%s" % (args[1], cfg.set(args[1], value),
                                    " (at the next boot)" if args[1] in BOOT_KEYS else "")]
        if len(args) == 2 and args[0] == "reset":
            keys = sorted(cfg.values) if args[1] == "all" else [config.check_known(args[1])]
            if not yes and any(k in SESSION_KEYS for k in keys):
                why = _busy_refusal(app, "config reset")
                if why:
                    return [why]
            for key in keys:
                cfg.reset(key)
            return ["%s = %s (default)" % (key, cfg.get(key)) for key in keys] or ["config: nothing was set"]
    except config.ConfigError as e:
        return ["config: %s" % e]
    return [_usage("config")]


def _meter(app, args, yes):
    if args:
        return [_usage("meter")]
    m = app.metering
    out = []
    for g in app.guns:
        if m is None or not m.fitted(g.n):
            out.append("gun %d: no meter; energy estimated from the current: %d Wh" % (g.n, app.energy_wh(g.n)))
            continue
        meter = m.meters[g.n - 1]
        r = m.reading(g.n)
        head = "gun %d: %s at address %d, %s, %d polls failed" % (
            g.n, meter.model, meter.address, "answers" if m.ok[g.n - 1] else "NOT ANSWERING", m.failures[g.n - 1])
        if r is None:
            out.append(head + "; no reading yet")
            continue
        out.append("%s; %d Wh, %d W, V %s, A %s" % (head, r.energy_wh, r.power_w,
                                                    " ".join("%.1f" % v for v in r.volts),
                                                    " ".join("%.1f" % a for a in r.amps)))
    return out


def _grid(app, args, yes):
    # A fed grid meter (board file "grid_meter": {"feed": "api"}, docs/grid.md): a local device
    # or a technician writes what the connection carries; the central system can (DataTransfer).
    power_w = None
    if len(args) >= 2 and args[-2] == "power":
        try:
            power_w = float(args[-1])
        except ValueError:
            return ["grid: '%s' is not a power in W (negative: export)" % args[-1]]
        args = args[:-2]
    if not args:
        return [_usage("grid")]
    amps = []
    for word in args:
        try:
            amps.append(float(word))
        except ValueError:
            return ["grid: '%s' is not a current in A; use: grid <L1_A> [<L2_A> <L3_A>] [power <W>]" % word]
    if app.metering is None:
        return ["grid: this board's grid meter is not there (board file grid_meter)"]
    try:
        app.metering.feed_grid(amps, power_w)
    except ValueError as e:
        return ["grid: %s; nothing changed" % e]
    return ["grid: connection %s A%s taken; it stands for %d s (grid_stale_s)"
            % (" ".join("%.1f" % a for a in amps), "" if power_w is None else ", %d W" % power_w,
               app.cfg.get("grid_stale_s"))]


def _start(app, args, yes):
    if not 1 <= len(args) <= 2:
        return [_usage("start")]
    g = _gun(app, args[0], "start")
    if app.cp is None:
        if len(args) == 2:
            return ["start: this charger runs without OCPP: no card is needed; use: start %d" % g.n]
        if g.enabled:
            return ["start: gun %d is not stopped; it charges whenever an EV asks" % g.n]
        g.enabled = True
        return ["gun %d: started; it charges when the EV asks" % g.n]
    if len(args) == 1:
        return ["start: this charger uses OCPP: give the card, e.g. start %d AA11" % g.n]
    app.cp.swipe(g.n, args[1])
    return ["gun %d: card %s presented" % (g.n, args[1])]


def _stop(app, args, yes):
    if len(args) != 1:
        return [_usage("stop")]
    g = _gun(app, args[0], "stop")
    if app.cp is not None:
        c = app.cp.connectors[g.n]
        if c.tx is None:
            return ["stop: gun %d has no session" % g.n]
        app.cp.stop_tx(c, "Local")
        if c.stopping is not None:
            return ["gun %d: session ends once its contactor is open" % g.n]
        return ["gun %d: session stopped" % g.n]
    if not g.enabled:
        return ["stop: gun %d is already stopped; start %d lets it charge again" % (g.n, g.n)]
    g.enabled = False
    return ["gun %d: stopped until 'start %d'" % (g.n, g.n)]


def _fault(app, args, yes):
    if args == ["list"]:
        return [console.fault_line(app, g) for g in app.guns if g.fault is not None] or ["no faults"]
    if len(args) == 2 and args[0] == "clear":
        return console.fault_clear(app, args[1])
    if args and args[0] not in ("list", "clear") and _distance(args[0], "clear") < 3:
        return ["fault: did you mean 'fault clear %s'? %s" % (" ".join(args[1:]) or "<gun|all>", _usage("fault"))]
    return [_usage("fault")]


def _log(app, args, yes):
    n = LOG_LINES
    if args:
        try:
            n = int(args[0])
        except ValueError:
            n = 0
        if len(args) > 1 or not 1 <= n <= LOG_LINES_MAX:
            return ["log: use: log [n] with n 1..%d" % LOG_LINES_MAX]
    app.write_flash()   # the lines still on their way to the flash too
    return app.log.tail(n) or ["log: empty"]


def _ocpp(app, args, yes):
    cp = app.cp
    if args:
        return [_usage("ocpp")]
    if cp is None:
        return ["ocpp: off (config set ocpp_url ws://host:port/path to connect to a central system)"]
    queued, waiting = len(cp.journal), len(cp.outbox)
    return ["ocpp: %s to %s: %s" % (cp.cp_id, cp.url.rsplit("/", 1)[0], cp.link_state()),
            "ocpp: %d transaction message%s in the journal, %d other%s waiting" % (
                queued, "" if queued == 1 else "s", waiting, "" if waiting == 1 else "s")]


def _echo(app, args, yes):
    if len(args) > 1 or args and args[0] not in ("on", "off"):
        return [_usage("echo")]
    if args:
        app.console_echo = args[0] == "on"
    return ["echo " + ("on" if app.console_echo else "off")]


def _selftest(app, args, yes):
    if args:
        return [_usage("selftest")]
    plugged = [g for g in app.guns if g.state != "A" or g.contactor]
    if plugged:
        return ["selftest: gun %d has an EV (state %s); unplug it first: the RCD test needs the guns idle"
                % (plugged[0].n, plugged[0].state)]
    app.start_selftest()
    return ["selftest: running; the results follow"]


SELFTEST_RCD_POLLS = 50  # 20 ms apart: an RCD module's test takes tens of ms


async def selftest(app):
    """The technician's selftest: each gun's RCD test and contactor feedback, the meters,
    the network. Prints as it goes; the guns stay under the control loop meanwhile."""
    import asyncio   # the app's, loaded: not at the console's import (main.py's preload at boot)
    problems = 0
    for g in app.guns:
        if g.contactor or g.state != "A":
            # Idle when selftest began, not now: its test current must never meet a session.
            print("selftest: gun %d RCD test skipped: it has an EV now (state %s)" % (g.n, g.state))
            continue
        app.hal.rcd_test_start(g.n)
        result = None
        for _ in range(SELFTEST_RCD_POLLS):
            result = app.hal.rcd_test_result(g.n)
            if result is not None:
                break
            await asyncio.sleep_ms(20)
        problems += result is not True
        print("selftest: gun %d RCD test %s" % (g.n, {True: "passed", False: "FAILED"}.get(result, "did not end")))
        closed = app.hal.contactor_feedback(g.n)
        problems += closed != g.contactor
        print("selftest: gun %d contactor feedback %s" % (
            g.n, "agrees (%s)" % ("closed" if closed else "open") if closed == g.contactor
            else "reads %s while driven %s: check the contactor" % ("closed" if closed else "open",
                                                                  "closed" if g.contactor else "open")))
        if app.metering is not None and app.metering.fitted(g.n):
            ok = await app.metering.poll(g.n)   # asked now, not the last poll's word
            problems += not ok
            print("selftest: gun %d meter %s" % (g.n, "answers" if ok else "DOES NOT ANSWER"))
    up = app.hal.network_up()
    if app.cp is not None:
        problems += not up
    print("selftest: network %s" % ("up" if up else "down"))
    print("selftest: done, %s" % ("no problems" if not problems else "%d problem%s" % (problems, "s" if problems > 1 else "")))


CAL_HIGH_MV = 12000       # the pilot generator's nominal levels (IEC 61851-1 A.2: 12 V +- 0.6 V)
CAL_LOW_MV = -12000
CAL_SPREAD_MIN_MV = 500   # an ADC that moves less between +12 V and -12 V is not on the pilot
CAL_GAIN = (0.02, 0.5)    # mV at the ADC per mV of pilot a front end for a 3.3 V ADC can have


def _calibrate(app, args, yes):
    save = "save" in args
    words = [a for a in args if a != "save"]
    if len(words) not in (1, 3):
        return [_usage("calibrate")]
    g = _gun(app, words[0], "calibrate")
    high_mv, low_mv = CAL_HIGH_MV, CAL_LOW_MV
    if len(words) == 3:
        try:
            high_mv, low_mv = int(words[1]), int(words[2])
        except ValueError:
            return ["calibrate: the levels are whole mV as a meter reads them, e.g. 11950 -12030"]
        if not (9000 <= high_mv <= 15000 and -15000 <= low_mv <= -9000):
            return ["calibrate: the levels must be 9000..15000 and -15000..-9000 mV, not %d %d" % (high_mv, low_mv)]
    if g.state != "A" or g.contactor or _charging(app):
        return ["calibrate: gun %d must be unplugged and no session running (it is in state %s)" % (g.n, g.state)]
    hal = app.hal
    # Synchronous: the control loop cannot touch the pilot until the gun is back at +12 V.
    try:
        hal.set_pilot(g.n, 1000)
        at_high = hal.pilot_adc_mv(g.n)
        hal.set_pilot(g.n, 0)
        at_low = hal.pilot_adc_mv(g.n)
    finally:
        hal.set_pilot(g.n, 1000)
    spread = at_high - at_low
    out = ["calibrate: gun %d pilot ADC reads %d mV at %+d mV and %d mV at %+d mV"
           % (g.n, at_high, high_mv, at_low, low_mv)]
    if spread < CAL_SPREAD_MIN_MV:
        return out + ["calibrate: the ADC moved only %d mV between the two levels: check the pilot front end "
                      "and the pilot_adc pin; nothing saved" % spread]
    gain = spread / (high_mv - low_mv)
    offset = int(at_high - gain * high_mv + 0.5)
    if not CAL_GAIN[0] <= gain <= CAL_GAIN[1]:
        return out + ["calibrate: a gain of %.4f is outside %s..%s: check the front end; nothing saved"
                      % (gain, CAL_GAIN[0], CAL_GAIN[1])]
    adc = app.board.get("adc") or {}
    out.append("calibrate: pilot_gain %.4f, pilot_offset_mv %d (board.json has %s, %s)"
               % (gain, offset, adc.get("pilot_gain", "none"), adc.get("pilot_offset_mv", "none")))
    if not save:
        return out + ["calibrate: not saved; 'calibrate %s save' writes them to board.json" % " ".join(words)]
    path = store.join(app.root, config.BOARD_FILE)
    board = store.read_json(path)
    if not isinstance(board, dict):
        return out + ["calibrate: %s cannot be read; nothing saved" % path]
    cal = board.get("adc") or {}
    cal["pilot_gain"] = round(gain, 4)
    cal["pilot_offset_mv"] = offset
    board["adc"] = cal
    store.write_json(path, board)
    return out + ["calibrate: saved to %s; 'reboot' to use them" % path]


def _reboot(app, args, yes):
    if args:
        return [_usage("reboot")]
    if not yes:
        why = _busy_refusal(app, "reboot")
        if why:
            return [why]
    app.later_reboot()
    return ["reboot: restarting"]


_HANDLERS = {"help": _help, "status": _status, "guns": _guns, "modules": _modules, "config": _config,
             "meter": _meter, "grid": _grid, "start": _start, "stop": _stop, "fault": _fault, "log": _log, "ocpp": _ocpp,
             "selftest": _selftest, "timing": _timing, "calibrate": _calibrate, "reboot": _reboot,
             "echo": _echo}

