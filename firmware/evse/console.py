# What the console shows of the charger: the status table and JSON, and clearing faults. The
# commands themselves are in evse.cli.
import json


def status_lines(app):
    out = ["%s  board %s  site limit %d A" % (app.cfg.get("name"), app.board["name"], app.cfg.get("site_limit_a"))]
    grid = grid_status(app)
    if grid is not None:
        out.append("grid%s: connection %d A, margin %d A; %s" % (
            " (fed)" if grid["source"] == "feed" else "", grid["limit_a"], grid["margin_a"],
            "meter silent: the guns share %d A per phase" % grid["fallback_a"]
            if grid["fallback"] else "building L1 %.1f L2 %.1f L3 %.1f A" % tuple(grid["building_a"])
            if grid["building_a"] else "no reading yet"))
        solar = grid["solar"]
        if solar is not None:
            out.append("solar: %s; surplus %s" % (
                {"waiting": "waiting for the surplus to suffice", "charging": "charging from the surplus",
                 "short": "short of the minimum, at the minimum until solar_stop_s"}[solar["state"]],
                "not known (no power in the grid readings)" if solar["surplus_w"] is None else "%d W" % solar["surplus_w"]))
    if app.site is not None:
        out.append(site_line(app.site.status(app.now_ms)))
    out.append("gun state  duty%  offer_A  contactor  amps   temp_C  fault")
    for g in app.guns:
        s = g.status()
        duty = "-" if s["duty_pm"] in (0, 1000) else "%.1f" % (s["duty_pm"] / 10)
        out.append("%-3d %-6s %-6s %-8.1f %-10s %-6.1f %-7.1f %s" % (
            s["gun"], s["state"], duty, s["offered_a"], "closed" if s["contactor"] else "open",
            s["current_a"], s["temperature_c"], s["fault"] or "-"))
    for g in app.guns:
        ps = app.phase_sw[g.n - 1]
        if ps is not None:
            out.append("gun %d: %d phase%s%s; %d of %d switches this session" % (
                g.n, ps.phases, "" if ps.phases == 1 else "s",
                ", switching to %d (the EV pauses)" % ps.target if ps.target else "",
                ps.switches, app.cfg.get("phase_switch_max")))
    out.append(timing_line(app))
    return out


def timing_line(app):
    """The worst gap between two control ticks and each task's slowest step since boot or the
    last `timing clear`: what stalls the loop the guns share."""
    steps = ", ".join("%s %d ms" % (task, app.slowest_ms[task]) for task in sorted(app.slowest_ms))
    line = "timing: worst tick gap %d ms; slowest step: %s" % (app.worst_gap_ms, steps or "none yet")
    if app.restarts:
        line += "; restarted: " + ", ".join("%s %d" % (t, app.restarts[t]) for t in sorted(app.restarts))
    return line


def status_json(app):
    out = {"board": app.board["name"], "uptime_ms": app.uptime_ms(), "site_limit_a": app.cfg.get("site_limit_a"),
           "timing": {"worst_tick_gap_ms": app.worst_gap_ms, "slowest_step_ms": app.slowest_ms,
                      "restarts": app.restarts},
           "guns": [_gun_status(app, g) for g in app.guns]}
    if app.cp is not None:
        out["ocpp"] = app.cp.link()
    grid = grid_status(app)
    if grid is not None:
        out["grid"] = grid
    if app.site is not None:
        out["site"] = app.site.status(app.now_ms)
    stage = app.cabinet.stage if app.cabinet is not None else None
    if stage is not None:
        out["can"] = {"protocol": stage.codec.NAME, "bus": stage.bus.stats(), "modules": stage.status()}
    return json.dumps(out)


def site_line(s):
    """The site bus (docs/site.md) in one line."""
    if s["role"] == "coordinator":
        why = "; ".join("node %d %s" % (n["address"], "two controllers answer as it" if n["why"] == "duplicate"
                                        else "silent") for n in s["node"] if not n["ok"])
        return "site: coordinator of %d nodes, %d answer%s%s%s" % (
            s["nodes"], s["answering"], " (starting: nobody gets more until every node answered)" if s["starting"]
            else "", "; " + why if why else "",
            "; ANOTHER COORDINATOR on the line (%s): this one's guns pause" % s["conflict"] if s["conflict"] else "")
    if s["duplicate"]:
        state = "another controller has this address: the guns pause"
    elif s["conflict"]:
        state = "two coordinators write: the guns share the fallback %.1f A per phase" % s["fallback_a"]
    elif s["lost"]:
        state = "no coordinator: the guns share the fallback %.1f A per phase" % s["fallback_a"]
    elif s["heard_ms"] is None:
        state = "waiting for the coordinator"
    else:
        state = "coordinator heard %.1f s ago; caps %s A" % (s["heard_ms"] / 1000, " ".join("%.1f" % c for c in s["caps_a"]))
    return "site: node %d, %s" % (s["address"], state)


def grid_status(app):
    """The grid meter's part of the budget (docs/grid.md), or None on a board without one."""
    m = app.metering
    if m is None or m.grid_source is None:
        return None
    building = app.grid_building_a
    return {"source": m.grid_source, "limit_a": app.cfg.get("grid_limit_a"), "margin_a": app.cfg.get("grid_margin_a"),
            "fallback": app.grid_fallback, "fallback_a": app.cfg.get("grid_fallback_a"),
            "building_a": [round(a, 1) + 0.0 for a in building] if building else None,   # no -0.0
            "reading_age_ms": None if m.grid_ok_ms is None else app.now_ms - m.grid_ok_ms,
            "solar": None if app.cfg.get("solar_mode") != "on" else {
                "state": app.solar.state, "import_w": app.cfg.get("solar_import_w"),
                "surplus_w": None if app.solar.surplus_w is None else int(app.solar.surplus_w)}}


def _gun_status(app, g):
    s = g.status()
    s["energy_wh"] = int(app.energy_wh(g.n))   # the import register: the meter's, or the estimate
    s["meter_ok"] = g.meter_ok
    ps = app.phase_sw[g.n - 1]
    if ps is not None:   # a gun with a phase contactor
        s["phases"] = {"on": ps.phases, "switching_to": ps.target or None, "switches": ps.switches}
    return s


def fault_line(app, g):
    """A gun's fault for `fault list`: how long it stands and what clears it."""
    from evse import gun as gun_mod
    rule = gun_mod.FAULTS.get(g.fault)
    since_s = (app.now_ms - g.fault_since_ms) // 1000
    if rule == gun_mod.CLEAR_UNPLUG:
        how = "clears when the EV is unplugged"
    elif rule == gun_mod.CLEAR_DELAY:
        how = "tried again in %d s" % max(0, g.fault_retry_ms // 1000 - since_s)
    elif rule == gun_mod.CLEAR_COOL:
        how = "clears below %s C (now %.1f C)" % (g.restart_c, g.temperature_c)
    elif rule == gun_mod.CLEAR_LEAVE_D:
        how = "clears when the EV leaves state D"
    elif rule == gun_mod.CLEAR_METER:
        how = "clears when the meter answers again (meter shows it)"
    elif rule == gun_mod.CLEAR_RELEASE:
        how = "clears when the emergency stop is released (turn it to release)"
    else:
        how = "stays until a technician checks the contactor"
        if g.fault == "WELD":
            how += " and its contacts are free"
    return "gun %d: %s since %d s; %s, or 'fault clear %d'" % (g.n, g.fault, since_s, how, g.n)


def fault_clear(app, which):
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
        elif code == "ESTOP":
            out.append("gun %d: ESTOP not cleared: the emergency stop is still pressed" % g.n)
        else:
            out.append("gun %d: %s not cleared: the contactor feedback still reads closed" % (g.n, code))
    return out
