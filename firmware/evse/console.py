# The console on the REPL's serial port while the firmware runs: state-change lines out,
# a few commands in. (The full technician CLI builds on this.)
import json

HELP = "commands: status [--json] | fault clear <gun|all> | config get|set|list | help"


def status_lines(app):
    out = ["%s  board %s  site limit %d A" % (app.cfg.get("name"), app.board["name"], app.cfg.get("site_limit_a"))]
    out.append("gun state  duty%  offer_A  contactor  amps   temp_C  fault")
    for g in app.guns:
        s = g.status()
        duty = "-" if s["duty_pm"] in (0, 1000) else "%.1f" % (s["duty_pm"] / 10)
        out.append("%-3d %-6s %-6s %-8.1f %-10s %-6.1f %-7.1f %s" % (
            s["gun"], s["state"], duty, s["offered_a"], "closed" if s["contactor"] else "open",
            s["current_a"], s["temperature_c"], s["fault"] or "-"))
    return out


def status_json(app):
    return json.dumps({"board": app.board["name"], "uptime_ms": app.now_ms,
                       "site_limit_a": app.cfg.get("site_limit_a"),
                       "guns": [_gun_status(app, g) for g in app.guns]})


def _gun_status(app, g):
    s = g.status()
    s["energy_wh"] = int(app.energy_wh(g.n))   # the import register: the meter's, or the estimate
    s["meter_ok"] = g.meter_ok
    return s


def handle(app, line):
    """Answer one console line; returns the reply lines. Never raises on user input."""
    words = line.split()
    if not words:
        return []
    cmd = words[0]
    if cmd == "status":
        if words[1:] == ["--json"]:
            return [status_json(app)]
        if len(words) == 1:
            return status_lines(app)
        return ["status: unknown option '%s'; use: status [--json]" % " ".join(words[1:])]
    if cmd == "fault":
        if len(words) == 3 and words[1] == "clear":
            return _fault_clear(app, words[2])
        return ["fault: use: fault clear <gun|all>"]
    if cmd == "config":
        return _config(app, words[1:])
    if cmd == "help":
        return [HELP]
    return ["unknown command '%s'; %s" % (cmd, HELP)]


def _config(app, args):
    from evse import config
    cfg = app.cfg
    try:
        if args == ["list"]:
            return ["%s = %s" % (key, cfg.get(key)) for key in sorted(config.KEYS)]
        if len(args) == 2 and args[0] == "get":
            return ["%s = %s" % (args[1], cfg.get(args[1]))]
        if len(args) == 3 and args[0] == "set":
            value = cfg.set(args[1], config.parse_value(args[1], args[2]))
            return ["%s = %s" % (args[1], value)]
    except config.ConfigError as e:
        return ["config: %s" % e]
    return ["config: use: config get <key> | config set <key> <value> | config list"]


def _fault_clear(app, which):
    if which == "all":
        guns = app.guns
    else:
        try:
            n = int(which)
        except ValueError:
            n = 0
        if not 1 <= n <= len(app.guns):
            return ["fault clear: gun must be 1..%d or all, not '%s'" % (len(app.guns), which)]
        guns = [app.guns[n - 1]]
    out = []
    for g in guns:
        code = g.fault
        if code is None:
            out.append("gun %d: no fault" % g.n)
        elif g.clear_fault(app.now_ms):
            out.append("gun %d: %s cleared" % (g.n, code))
        else:
            out.append("gun %d: %s not cleared: the contactor feedback still reads closed" % (g.n, code))
    return out
