# The site's budget under a grid meter (docs/grid.md): the connection less the building's load,
# and with solar_mode on no more than the solar surplus. App loads this module at boot on a
# board whose file has a grid meter; the others never hold its code.
from evse.app import VOLTS, _unsure, phases_wanted


def _building(measured, guns_a, last):
    """The building's current on a phase: the grid meter's less the guns'. An import, but less
    than the guns draw: the building gives back no more than an exporting reading last showed
    (`last`; the guns drawing the export keep it), and nothing if none did."""
    b = measured - guns_a
    if b < 0 and measured >= 0:
        floor = last if last < 0.0 else 0.0
        if b < floor:
            b = floor
    return b


def caps(app, now_ms, site, loads):
    """Amps per site phase the guns may share under a grid meter (docs/grid.md): the
    connection less the building's load (the meter's current less what the guns draw) less
    the margin, under `site`; grid_fallback_a while the meter has been silent for
    grid_stale_s. The sharing lowers first, as for any budget."""
    m, cfg = app.metering, app.cfg
    stale_ms = cfg.get("grid_stale_s") * 1000
    if m.grid_ok_ms is None or now_ms - m.grid_ok_ms > stale_ms:
        # Never over the connection less its margin, whatever was stored (Config.consistent).
        fallback = min(cfg.get("grid_fallback_a"), max(cfg.get("grid_limit_a") - cfg.get("grid_margin_a"), 0))
        if not app.grid_fallback and (m.grid_ok_ms is not None or now_ms > stale_ms):   # not at boot
            app.grid_fallback = True
            app.note("grid meter: no reading for %d s; the guns share %d A per phase" % (stale_ms // 1000, fallback))
        app.grid_building_a = None
        return [fallback if fallback < site else site] * 3
    if app.grid_fallback:
        app.grid_fallback = False
        app.note("grid meter: it answers again")
    if m.grid_ok_ms != app._grid_seen_ms or app.grid_building_a is None:
        # A new reading: the building is what it measured less what the guns drew as it
        # measured (now, within a step). Between readings the building stays as it was:
        # the guns' own draw changes, the stale reading's does not.
        app._grid_seen_ms = m.grid_ok_ms
        # What the guns drew as the meter read, between `lo` and `hi` per phase: a gun's meter
        # reading is up to a second old (a node's reaches the coordinator up to two seconds
        # late), so a gun counts with it, no more than it offers now (one from before the gun
        # lowered would make the building look smaller than it is); while its offer or its
        # contactor changed in the last UNSURE_MS, its EV may draw anything up to the offer.
        lo = [0.0, 0.0, 0.0]
        hi = [0.0, 0.0, 0.0]
        for g, phases in zip(app.guns, loads):
            if g.contactor:
                a = g.current_a
                offer = g.offered_a()
                least = a if a < offer else offer
                most = a
                if offer > a and _unsure(g, now_ms):
                    most = offer
                for p in phases:
                    lo[p] += least
                    hi[p] += most
        if app.site is not None and app.site.coordinates:   # the nodes' guns are behind it too
            app.site.drawn_a(now_ms, lo, hi)
        app._grid_guns_w = (lo[0] + lo[1] + lo[2]) * VOLTS
        # Each phase's current signed: a meter's magnitude takes the sign of that phase's
        # power (negative while the site exports); a fed reading comes signed.
        amps = m.grid_reading.amps
        phase_w = getattr(m.grid_reading, "phase_w", None)
        before = app.grid_building_a
        building = [0.0, 0.0, 0.0]
        for p in range(3):
            measured = amps[p] if p < len(amps) else 0.0
            if phase_w is not None and p < len(phase_w) and phase_w[p] < 0:
                measured = -measured
            last = before[p] if before is not None else 0.0
            # Negative: the building gives current back (its solar panels), room the guns
            # may draw on top of the connection, up to the site's own limit.
            most = _building(measured, lo[p], last)
            least = _building(measured, hi[p], last)
            # The building as it was, if this reading allows it: an EV that ramps (or stops)
            # as the meter reads does not move it, so the guns do not swing with it; a
            # building that grows past what the guns' changes could explain moves it at once.
            b = most if before is None or last > most else (least if last < least else last)
            building[p] = b
        app.grid_building_a = building
    room = cfg.get("grid_limit_a") - cfg.get("grid_margin_a")
    caps = [0.0, 0.0, 0.0]
    for p in range(3):
        cap = room - app.grid_building_a[p]
        caps[p] = 0.0 if cap < 0 else (site if cap > site else cap)
    return caps


def solar_caps(app, now_ms, site, limits, loads):
    """Under solar_mode on: the site caps no higher than the solar surplus allows per phase
    the guns that want power load (evse.solar); nothing while the grid meter is silent or
    gives no power."""
    cfg, m, solar = app.cfg, app.metering, app.solar
    phases = phases_wanted(limits, loads)
    net_w = None if app.grid_fallback else getattr(m.grid_reading, "power_w", None)
    before = solar.state
    cap = solar.cap(now_ms, net_w, app._grid_guns_w, cfg.get("solar_import_w"), phases,
                    cfg.get("min_current_a"), cfg.get("solar_start_s") * 1000, cfg.get("solar_stop_s") * 1000)
    if solar.state != before:
        app.note("solar: %s" % (
            "the surplus has sufficed for %d s: charging" % cfg.get("solar_start_s") if solar.state == "charging"
            and before == "waiting" else "back over the minimum" if solar.state == "charging"
            else "short of the minimum: %d s at %d A, then pause" % (cfg.get("solar_stop_s"), cfg.get("min_current_a"))
            if solar.state == "short" else "the guns pause until the surplus suffices"))
    return [cap if cap < site[p] else site[p] for p in range(3)]
