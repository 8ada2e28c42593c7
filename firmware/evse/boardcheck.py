# The board file's checks, loaded for the check and let go after it (config.check_board): about
# 12 KiB of a board's heap as .mpy, which a running charger never uses again.
from evse.config import ConfigError
from evse.gun import TICK_MAX_INTERLOCK_MS, TICK_MIN_MS, TICK_MS

# How a gun's L1, L2, L3 sit on the site's phases: rotating the guns spreads single-phase EVs.
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2")
_BOARD_REQUIRED = (("name", str), ("hal", str), ("kind", str), ("site_limit_a", int),
                   ("guns", list), ("pilot", dict), ("derate", dict))
# Board numbers with a range: key, min, max, unit. The watchdog's ceiling is the RP2040's; the
# journal's bounds are the OCPP key JournalMaxEntries' (evse.ocpp.keys).
_BOARD_RANGES = (("fault_retry_s", 10, 86400, "s"), ("watchdog_ms", 1000, 8000, "ms"),
                 ("journal_max_entries", 16, 2000, "messages"))
_PILOT_KEYS = ("a_min_mv", "b_min_mv", "c_min_mv", "d_min_mv", "e_min_mv", "f_max_mv",
               "hysteresis_mv", "diode_max_mv")


def check_board(board):
    """Raises ConfigError naming the first bad entry of a board file."""
    if not isinstance(board, dict):
        raise ConfigError("board file must hold a JSON object")
    for key, kind in _BOARD_REQUIRED:
        if key not in board:
            raise ConfigError("board file lacks '%s'" % key)
        if not isinstance(board[key], kind):
            raise ConfigError("board '%s' must be a %s" % (key, kind.__name__))
    if board["hal"] not in ("sim", "rp2", "esp32"):
        raise ConfigError("board 'hal' is '%s': use sim, rp2 or esp32" % board["hal"])
    if board["kind"] not in ("ac", "dc"):
        raise ConfigError("board 'kind' is '%s': use ac (AC guns) or dc (DC dispensers fed by a cabinet)"
                          % board["kind"])
    if not isinstance(board.get("interlock", False), bool):
        raise ConfigError("board 'interlock' must be true (the front end's hardware interlock enables the contactor "
                          "only in C/D with the RCD quiet) or false, not %r" % (board["interlock"],))
    _check_tick(board.get("tick_ms", TICK_MS), board.get("interlock", False))
    dc = board["kind"] == "dc"
    if dc:
        _check_cabinet(board.get("cabinet"))
    elif "cabinet" in board:
        raise ConfigError("board cabinet: power modules and their matrix are for a board of kind dc, not %s"
                          % board["kind"])
    if not 1 <= len(board["guns"]) <= 8:
        raise ConfigError("board 'guns' must list 1 to 8 guns, not %d" % len(board["guns"]))
    for i, gun in enumerate(board["guns"]):
        if not isinstance(gun, dict):
            raise ConfigError("board guns[%d] must be an object" % i)
        if dc:
            kw = gun.get("max_kw")
            if not _is_number(kw) or not 1 <= kw <= 1000:
                raise ConfigError("board guns[%d].max_kw must be the dispenser's rating, 1..1000 kW, not %r" % (i, kw))
            # The DC sequence's limits (evse.dcseq): the gun's most voltage and current.
            for key, lo, hi, unit in (("max_v", 150, 1500, "V"), ("max_a", 1, 1000, "A")):
                value = gun.get(key, lo)
                if not _is_number(value) or not lo <= value <= hi:
                    raise ConfigError("board guns[%d].%s must be the gun's most %s, %d..%d %s, not %r"
                                      % (i, key, "voltage" if unit == "V" else "current", lo, hi, unit, value))
        else:
            amps = gun.get("max_a")
            if not isinstance(amps, int) or not 6 <= amps <= 80:
                raise ConfigError("board guns[%d].max_a must be 6..80 A, not %r" % (i, amps))
        if gun.get("phases", 3) not in (1, 3):
            raise ConfigError("board guns[%d].phases must be 1 or 3, not %r" % (i, gun.get("phases")))
        if "meter" in gun:
            from evse import meters
            try:
                meters.check(gun["meter"])
            except ValueError as e:
                raise ConfigError("board guns[%d].%s" % (i, e))
        if "imd" in gun:   # a Modbus insulation monitor for the DC sequence (evse.imd)
            if not dc or not (board.get("cabinet") or {}).get("can"):
                raise ConfigError("board guns[%d].imd: an insulation monitor is for the DC sequence, on a DC board "
                                  "whose cabinet is on CAN" % i)
            from evse import imd
            try:
                imd.check(gun["imd"])
            except ValueError as e:
                raise ConfigError("board guns[%d].%s" % (i, e))
        if gun.get("phase_switch", False):
            # A second contactor connects the gun's L2 and L3: one or three phases (evse.phases).
            if gun["phase_switch"] is not True or dc or gun.get("phases", 3) != 3 or board.get("phases", 3) != 3:
                raise ConfigError("board guns[%d].phase_switch: true (a contactor that connects L2 and L3) is for a "
                                  "three-phase AC gun on a three-phase site, not %r" % (i, gun["phase_switch"]))
            if board["hal"] != "sim":
                raise ConfigError("board guns[%d].phase_switch: the %s HAL has no pin for a phase contactor yet"
                                  % (i, board["hal"]))
        if gun.get("rotation", "L1L2L3") not in ROTATIONS:
            raise ConfigError("board guns[%d].rotation must be one of %s (the site phase on the gun's L1 first), "
                              "not %r" % (i, ", ".join(ROTATIONS), gun.get("rotation")))
    if dc and board["cabinet"].get("matrix") is not None:   # the contactor matrix on Modbus I/O modules
        from evse import matrix
        try:
            matrix.check(board["cabinet"]["matrix"], board["cabinet"]["modules"], len(board["guns"]))
        except ValueError as e:
            raise ConfigError("board %s" % e)
    if dc and board["hal"] != "sim" and board["cabinet"].get("can"):
        from evse.hal import secc   # its SECC link and gun voltages: checked where they are read
        try:
            secc.check_board(board)
        except ValueError as e:
            raise ConfigError(str(e))
    if "grid_meter" in board and dc:
        raise ConfigError("board grid_meter: a DC board's cabinet shares the site limit alone; a grid meter "
                          "is for AC boards")
    _check_lines(board)
    if "site_bus" in board:   # the RS-485 line to the site's other controllers (docs/site.md)
        bus = board["site_bus"]
        uarts = [e.get("uart") for e in [g.get("meter") for g in board["guns"]] + [board.get("grid_meter")]
                 if isinstance(e, dict)]
        if (not isinstance(bus, dict) or isinstance(bus.get("uart"), bool) or not isinstance(bus.get("uart"), int)
                or bus["uart"] < 0 or bus.get("baud", 38400) not in (9600, 19200, 38400, 57600, 115200)):
            raise ConfigError('board site_bus must be {"uart": N, "baud": 38400} (9600 to 115200 baud), not %r' % (bus,))
        if bus["uart"] in uarts:
            raise ConfigError("board site_bus: UART %d is the meters' line; the site bus needs a UART of its own"
                              % bus["uart"])
    if "grid_meter" in board:   # the meter at the site's connection point (docs/grid.md)
        grid = board["grid_meter"]
        if isinstance(grid, dict) and "feed" in grid:
            # No meter on a line: the readings come from the console or the central system.
            if grid != {"feed": "api"}:
                raise ConfigError('board grid_meter: a fed grid meter is {"feed": "api"} and nothing else, not %r'
                                  % (grid,))
        else:
            from evse import meters
            try:
                meters.check(grid)
            except ValueError as e:
                raise ConfigError("board grid_%s" % e)
            spec = meters.MODELS[grid["model"]]
            if spec["dc"] or spec["phases"] < board.get("phases", 3):
                raise ConfigError("board grid_meter: a %s measures %d phase(s) and this site has %d: use a meter "
                                  "that sees every phase (sdm630)" % (grid["model"], spec["phases"],
                                                                      board.get("phases", 3)))
    pilot = board["pilot"]
    for key in _PILOT_KEYS:
        if not isinstance(pilot.get(key), int):
            raise ConfigError("board pilot.%s must be a whole number of mV" % key)
    edges = [pilot[k] for k in _PILOT_KEYS[:6]]
    for i in range(5):
        if edges[i] <= edges[i + 1]:
            raise ConfigError("board pilot thresholds must fall from A to F: %s=%d is not above %s=%d"
                              % (_PILOT_KEYS[i], edges[i], _PILOT_KEYS[i + 1], edges[i + 1]))
    derate = board["derate"]
    for key in ("stop_c", "restart_c"):
        if not _is_number(derate.get(key)):
            raise ConfigError("board derate.%s must be a temperature in degC" % key)
    if derate["restart_c"] >= derate["stop_c"]:
        raise ConfigError("board derate.restart_c must be below derate.stop_c")
    steps = derate.get("steps")
    if not isinstance(steps, list):
        raise ConfigError("board derate.steps must be a list of [celsius, percent] pairs")
    for i, step in enumerate(steps):
        if not (isinstance(step, list) and len(step) == 2 and _is_number(step[0]) and _is_number(step[1])
                and 0 <= step[1] <= 100 and step[0] < derate["stop_c"]):
            raise ConfigError("board derate.steps[%d] must be [celsius below stop_c, percent 0..100], not %r" % (i, step))
    for key, lo, hi, unit in _BOARD_RANGES:
        value = board.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
            raise ConfigError("board %s must be %d..%d %s, not %r" % (key, lo, hi, unit, value))
    return board


def _check_tick(ms, interlock):
    """The control tick's period. Without a hardware interlock the loop opens the contactor when
    the EV leaves C/D: a tick and the 15 ms confirmation must sit well inside IEC 61851-1's
    100 ms, so 20 ms at most. With one the interlock opens it within microseconds then, but the
    loop still opens on a missing diode and on D without ventilation (the interlock passes C and
    D), at the first tick that sees it (Gun._read_again takes the second sample at once): a
    40 ms tick, the samples and the contactor's drop-out stay well inside the 100 ms."""
    top = TICK_MAX_INTERLOCK_MS if interlock else TICK_MS
    if not (isinstance(ms, int) and not isinstance(ms, bool) and TICK_MIN_MS <= ms <= top):
        raise ConfigError("board tick_ms must be %d..%d ms%s, not %r" % (
            TICK_MIN_MS, top, "" if interlock else " on a board without a hardware interlock (the loop opens "
            "the contactor there)", ms))


def _check_lines(board):
    # The devices on one RS-485 UART (meters, insulation monitors) share its baud rate and parity,
    # and each has an address of its own there.
    from evse.meters import LINES
    lines = {}
    taken = {}
    entries = [("guns[%d].%s" % (i, key), gun.get(key), key) for i, gun in enumerate(board["guns"])
               for key in ("meter", "imd")]
    entries.append(("grid_meter", board.get("grid_meter"), "meter"))
    matrix = board["cabinet"].get("matrix") if board["kind"] == "dc" else None   # checked by then
    if matrix:
        from evse.matrix import lines as matrix_lines
        entries += [("cabinet.matrix device %d" % (j + 1), line, "matrix") for j, line in enumerate(matrix_lines(matrix))]
    for where, entry, kind in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("uart"), int):
            continue   # none, or fed (grid_meter {"feed": "api"})
        uart = entry["uart"]
        baud, parity = LINES[kind]
        setting = (entry.get("baud", baud), entry.get("parity", parity))
        first = lines.setdefault(uart, (setting, where))
        if first[0] != setting:
            raise ConfigError("board %s: UART %d runs at %d baud, parity %s for %s; this one asks %d baud, "
                              "parity %s: set both alike (give baud and parity)"
                              % (where, uart, first[0][0], first[0][1], first[1], setting[0], setting[1]))
        other = taken.setdefault((uart, entry.get("address")), where)
        if other != where:
            raise ConfigError("board %s: address %r on UART %d is %s's too: give each device on a line its own "
                              "address" % (where, entry.get("address"), uart, other))


def _check_cabinet(cab):
    """A DC board's "cabinet": {"modules": N, "module_kw": P}, the power modules the contactor
    matrix switches to the dispensers."""
    if not isinstance(cab, dict):
        raise ConfigError('board of kind dc needs a "cabinet": {"modules": 4, "module_kw": 40}')
    modules = cab.get("modules")
    if isinstance(modules, bool) or not isinstance(modules, int) or not 1 <= modules <= 32:
        raise ConfigError("board cabinet.modules must be the number of power modules, 1..32, not %r" % (modules,))
    kw = cab.get("module_kw")
    if not _is_number(kw) or not 1 <= kw <= 500:
        raise ConfigError("board cabinet.module_kw must be each module's power, 1..500 kW, not %r" % (kw,))
    can = cab.get("can")
    if can is None:
        return
    # The modules on a CAN bus: {"protocol": "infy" | "winline", "addresses": [one per module]}.
    if not isinstance(can, dict) or can.get("protocol") not in ("infy", "winline"):
        raise ConfigError('board cabinet.can must be {"protocol": "infy" or "winline", "addresses": [...]}, not %r'
                          % (can,))
    addresses = can.get("addresses", list(range(modules)))
    top = 0x3E if can["protocol"] == "infy" else 0x3F
    if (not isinstance(addresses, list) or len(addresses) != modules or len(set(addresses)) != modules
            or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= top for a in addresses)):
        raise ConfigError("board cabinet.can.addresses must be %d different CAN addresses 0..%d, one per module in "
                          "the matrix's order, not %r" % (modules, top, addresses))
    timeout_s = can.get("timeout_s", 10)
    if not _is_number(timeout_s) or not 1 <= timeout_s <= 60:
        raise ConfigError("board cabinet.can.timeout_s must be the seconds after which a module without the "
                          "controller's messages turns off (Infypower: 10), 1..60, not %r" % (timeout_s,))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
