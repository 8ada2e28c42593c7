"""The rig protocol's operations on the virtual board: one function per op, routed by a table.

Request: one JSON object per line, `{"op": NAME, ...}`; reply: `{"ok": true, ...}` or
`{"ok": false, "error": "<what and why>"}`. docs/rig-protocol.md describes every op."""

from __future__ import annotations

from host_tools.jsonlines import OpError, Refused, Router
from host_tools.sim import power_modules
from host_tools.sim.modbus import FAULTS as METER_FAULTS
from host_tools.sim.secc import FAULTS as SECC_FAULTS
from host_tools.sim.world import EV, EV_LEVEL_MV, PP_OHMS, World

# An op's own ValueError (EV.update's, say) names the field and the fix: it is sent as it is.
ROUTER = Router("snapshot", "docs/rig-protocol.md", user_errors=(ValueError,))
OPS, op = ROUTER.ops, ROUTER.op


def _flag(req: dict, key: str) -> bool:
    value = req.get(key)
    if not isinstance(value, bool):
        raise OpError(f"'{key}' must be true or false, not {value!r}")
    return value


def _number(req: dict, key: str, lo: float, hi: float) -> float:
    value = req.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise OpError(f"'{key}' must be a number in {lo}..{hi}, not {value!r}")
    return float(value)


@op("plug")
def plug(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    cable = req.get("cable_a", 32)
    if isinstance(cable, bool) or not isinstance(cable, int) or cable not in PP_OHMS:
        raise OpError(f"'cable_a' must be one of {sorted(PP_OHMS)} (IEC 61851-1 Table B.2), not {cable!r}")
    kind = "dc" if world.dc else "ac"
    ev = EV(kind=kind)  # the board's kind of EV unless told otherwise
    ev.update(req.get("ev") or {})
    if ev.kind != kind:
        raise OpError(f"gun {g.number} of board {world.board['name']} is {'a DC' if world.dc else 'an AC'} gun: "
                      f"plug an EV with \"kind\": \"{kind}\"")
    if g.plugged:
        raise OpError(f"gun {g.number} is already plugged; unplug it first")
    g.ev, g.cable_a, g.plugged = ev, cable, True
    g.ev_letter, g.pwm_since_ms, g.saw_x1, g.forced_state = "B", None, False, None
    if ev.kind == "dc":
        world.log(g.number, "plug", {"cable_a": cable, "kind": "dc", "max_kw": ev.max_kw,
                                     "battery_kwh": ev.battery_kwh, "soc": ev.soc})
    else:
        world.log(g.number, "plug", {"cable_a": cable, "max_a": ev.max_a, "phases": ev.phases})
    return {}


@op("unplug")
def unplug(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    if not g.plugged:
        raise OpError(f"gun {g.number} is not plugged")
    if g.forced_state:
        world.log(g.number, "ev_forced", "auto")
    world.log(g.number, "unplug", None)
    with world.lock:
        world._ev_contactor(g, False)   # pulled out with its contactors closed: a break if current flows
        g.ev_phase = None
        g.plugged, g.ev, g.ev_letter, g.forced_state = False, None, "A", None
    return {}


@op("ev_state")
def ev_state(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    state = req.get("state")
    if not (state is None or isinstance(state, str)):
        raise OpError(f"'state' must be one of A, B, C, D, E, F or \"auto\", not {state!r}")
    if state in (None, "auto"):
        g.forced_state = None
    elif state in EV_LEVEL_MV:
        g.forced_state = state
    else:
        raise OpError(f"'state' must be one of A, B, C, D, E, F or \"auto\", not {state!r}")
    world.log(g.number, "ev_forced", g.forced_state or "auto")
    return {}


@op("ev")
def ev_params(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    if g.ev is None:
        raise OpError(f"gun {g.number} has no EV; plug one first")
    params = {k: v for k, v in req.items() if k not in ("op", "gun")}
    if "kind" in params and params["kind"] != g.ev.kind:
        raise OpError(f"an EV cannot change its kind while plugged; unplug it and plug one with \"kind\": {params['kind']!r}")
    g.ev.update(params)
    world.log(g.number, "ev", params)
    return {}


@op("diode_fault")
def diode_fault(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    g.diode_fault = _flag(req, "on")
    world.log(g.number, "diode_fault", g.diode_fault)
    return {}


@op("rcd_trip")
def rcd_trip(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    g.rcd_tripped = True
    world.log(g.number, "rcd", "tripped")
    return {}


@op("rcd_test_fail")
def rcd_test_fail(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    g.rcd_test_fails = _flag(req, "on")
    world.log(g.number, "rcd_test_fail", g.rcd_test_fails)
    return {}


@op("rcd_module")
def rcd_module(world: World, req: dict, board) -> dict:
    """The gun's RCD module works (`ok`), is dead (its fault output never rises, on a test or a
    residual current) or stuck (its fault output is always raised)."""
    g = world.gun(req.get("gun"))
    state = req.get("state")
    if state not in ("ok", "dead", "stuck"):
        raise OpError(f"'state' must be \"ok\", \"dead\" or \"stuck\", not {state!r}")
    g.rcm = state
    world.log(g.number, "rcd_module", state)
    return {}


@op("estop")
def estop(world: World, req: dict, board) -> dict:
    """The emergency stop pressed (`on` true) or released: pressed, its contact cuts every
    contactor coil's supply at once, and the firmware reads its input."""
    if not world.has_estop:
        raise OpError(f"board {world.board['name']} has no emergency stop (board file \"estop\": true)")
    world.estop = _flag(req, "on")
    world.log(0, "estop", world.estop)
    world.apply_interlock()
    return {}


@op("weld")
def weld(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    g.welded = _flag(req, "on")
    if not g.welded and not g.coil:
        g.contacts = False
    world.log(g.number, "weld", g.welded)
    return {}


@op("temperature")
def temperature(world: World, req: dict, board) -> dict:
    g = world.gun(req.get("gun"))
    g.temperature_c = _number(req, "celsius", -40, 150)
    world.log(g.number, "temperature", g.temperature_c)
    return {}


@op("stall")
def stall(world: World, req: dict, board) -> dict:
    """The firmware's loop blocks for `ms` at its next step: its next HAL request (or the emulated
    MCU's next input read) is answered that much later, as a long flash erase or a blocking call
    would hold it."""
    ms = int(_number(req, "ms", 1, 60000))
    with world.lock:
        world.stall_ms = ms
    world.log(0, "stall", ms)
    return {}


@op("power")
def power(world: World, req: dict, board) -> dict:
    on = _flag(req, "on")
    board.set_power(on)
    return {}


@op("net")
def net(world: World, req: dict, board) -> dict:
    """Cut (`up: false`) or restore the board's link to the central system; `delay_ms` slows it."""
    up = _flag(req, "up")
    delay = int(_number(req, "delay_ms", 0, 60000)) if "delay_ms" in req else None
    if board.uplink is None:
        raise OpError("this virtual board has no central system: start it with --csms URL")
    board.uplink.set(up, delay)
    world.net_up = up
    world.log(0, "net", {"up": up, "delay_ms": board.uplink.delay_ms})
    return {}


@op("rfid")
def rfid(world: World, req: dict, board) -> dict:
    """A card held to the reader of a gun."""
    g = world.gun(req.get("gun"))
    tag = req.get("id_tag")
    if not isinstance(tag, str) or not 1 <= len(tag) <= 20 or not tag.isprintable() or " " in tag:
        raise OpError(f"'id_tag' must be 1 to 20 printable characters without spaces (OCPP IdToken), not {tag!r}")
    world.swipes.append((g.number, tag))
    world.log(g.number, "rfid", tag)
    return {}


@op("meter")
def meter(world: World, req: dict, board) -> dict:
    """A gun's Modbus energy meter misbehaves (`fault`), or behaves again (null)."""
    try:
        world.set_meter_fault(req.get("gun"), req.get("fault"))
    except ValueError as e:
        raise OpError(str(e)) from None
    return {}


@op("grid")
def grid(world: World, req: dict, board) -> dict:
    """The building behind the site's connection: its load per phase (`building_a`), its solar
    panels' power (`pv_w`), and the grid meter misbehaving (`fault`) or behaving again (null); on
    a board with a grid meter."""
    if "grid_meter" not in world.board:
        raise OpError(f"board {world.board.get('name')} has no grid meter (board file grid_meter)")
    if "feed" in world.board["grid_meter"]:
        raise OpError(f"board {world.board.get('name')}'s grid meter is fed, not on a line: write its readings "
                      "at the console (grid) or by DataTransfer GridMeter (docs/grid.md)")
    if "building_a" not in req and "fault" not in req and "pv_w" not in req:
        raise OpError("give building_a (three amps), pv_w and/or fault")
    try:
        world.set_grid(req.get("building_a"), req.get("fault", "keep"), req.get("pv_w"))
    except ValueError as e:
        raise OpError(f"{e}") from None
    return {}


@op("module_fault")
def module_fault(world: World, req: dict, board) -> dict:
    """A DC cabinet's power module (1..N) reports a fault (`code`, one of power_modules.FAULT_NAMES),
    or none (null): its status flags say so, and it turns its output off."""
    code = req.get("code")
    if code is not None and code not in power_modules.FAULT_NAMES:
        raise OpError(f"code must be one of {', '.join(power_modules.FAULT_NAMES)} or null, not {code!r}")
    with world.lock:
        m = world.module(req.get("module"))
        m.fault = code
        if code is not None:
            m.on = False
    world.log(0, "module_fault", {"module": m.number, "code": code})
    return {}


@op("module_silent")
def module_silent(world: World, req: dict, board) -> dict:
    """A DC cabinet's power module stops answering on the CAN bus (`on`: true), or answers again."""
    on = _flag(req, "on")
    with world.lock:
        m = world.module(req.get("module"))
        m.silent = on
    world.log(0, "module_silent", {"module": m.number, "on": on})
    return {}


@op("matrix_fault")
def matrix_fault(world: World, req: dict, board) -> dict:
    """The Modbus I/O modules of a DC cabinet's contactor matrix (board cabinet.matrix) misbehave
    on their line (`fault`, as meter_fault), or not (null); their outputs hold as they are."""
    fault = req.get("fault")
    if fault is not None and fault not in METER_FAULTS:
        raise OpError(f"fault must be null or one of {', '.join(METER_FAULTS)}, not {fault!r}")
    if world.matrix is None:
        raise OpError(f"board {world.board['name']} drives its contactor matrix without I/O modules "
                      "(board cabinet.matrix)")
    with world.lock:
        world.matrix.fault = fault
    world.log(0, "matrix_fault", {"fault": fault})
    return {}


@op("insulation")
def insulation(world: World, req: dict, board) -> dict:
    """A DC gun's cable insulation to PE as its insulation monitor measures it (`kohm`), whether
    the monitor's self-test fails (`self_test_fails`), and how a Modbus monitor (board `imd`)
    misbehaves on its line (`imd_fault`, as meter_fault); on a cabinet on CAN."""
    if world.can is None:
        raise OpError(f"board {world.board['name']} runs no DC sequence (its cabinet has no CAN modules)")
    if "kohm" not in req and "self_test_fails" not in req and "imd_fault" not in req:
        raise OpError("give kohm, self_test_fails and/or imd_fault")
    kohm = _number(req, "kohm", 0, 1e6) if "kohm" in req else None
    fails = _flag(req, "self_test_fails") if "self_test_fails" in req else None
    imd_fault = req.get("imd_fault")
    if imd_fault is not None and imd_fault not in METER_FAULTS:
        raise OpError(f"imd_fault must be null or one of {', '.join(METER_FAULTS)}, not {imd_fault!r}")
    with world.lock:
        g = world.gun(req.get("gun"))
        if "imd_fault" in req and not world.board["guns"][g.number - 1].get("imd"):
            raise OpError(f"gun {g.number}'s insulation monitor is not on Modbus (board guns[].imd)")
        if kohm is not None:
            g.insulation_kohm = kohm
        if fails is not None:
            g.imd_test_fails = fails
        if "imd_fault" in req:
            g.imd_fault = imd_fault
    world.log(g.number, "insulation", {"kohm": g.insulation_kohm, "self_test_fails": g.imd_test_fails,
                                       "imd_fault": g.imd_fault})
    return {}


@op("secc")
def secc(world: World, req: dict, board) -> dict:
    """An MCU board's SECC (board file "secc", host_tools/sim/secc.py): `fault` "silent" (it sends
    nothing), "garbage" (only noise and lines with a wrong checksum) or null; the reply has what
    it counted and each gun's last charger line."""
    model = getattr(board, "secc", None)
    if model is None:
        raise OpError(f"board {world.board['name']} has no SECC link (an MCU board file's \"secc\"; a sim board's "
                      "EV talks through the sim HAL)")
    if "fault" in req:
        fault = req["fault"]
        if fault is not None and fault not in SECC_FAULTS:
            raise OpError(f"fault must be null or one of {', '.join(SECC_FAULTS)}, not {fault!r}")
        model.fault = fault
        world.log(0, "secc_fault", fault)
    return model.state()


@op("modules")
def modules(world: World, req: dict, board) -> dict:
    """A DC cabinet's power modules on CAN: setpoint, output, fault, silence, dispenser."""
    return {"modules": world.modules_state()}


@op("factory")
def factory(world: World, req: dict, board) -> dict:
    """Erase the flash and program the firmware and board file again (virtual board only)."""
    board.factory_reset()
    return {}


@op("cut_at_write")
def cut_at_write(world: World, req: dict, board) -> dict:
    """Cut the board's power at its `n`th block write to the flash from now (that write does not
    happen); `n` null cancels. The reply has the writes counted so far (virtual board only)."""
    n = req.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000):
        raise OpError(f"'n' must be a whole number 1..1000000 (the nth block write from now) or null, not {n!r}")
    return {"writes": board.cut_at_write(n)}


@op("flash_writes")
def flash_writes(world: World, req: dict, board) -> dict:
    """The block writes the board made to its flash since the virtual board started."""
    return {"writes": board.flash_writes()}


@op("console")
def console(world: World, req: dict, board) -> dict:
    """The last `bytes` (default 4096) the board printed on its serial port (virtual board only)."""
    n = int(_number(req, "bytes", 1, 262144)) if "bytes" in req else 4096
    return {"text": bytes(board.console[-n:]).decode(errors="replace")}


@op("snapshot")
def snapshot(world: World, req: dict, board) -> dict:
    reply = {"guns": world.snapshot(), "t_ms": round(world.now_ms(), 1), "powered": world.powered,
             "firmware": board.firmware_state()}
    if world.dc:
        reply["modules"] = list(world.modules)  # the dispenser each power module is switched to, 0 parked
    return reply


@op("events")
def events(world: World, req: dict, board) -> dict:
    since = req.get("since_ms", 0)
    if isinstance(since, bool) or not isinstance(since, (int, float)):
        raise OpError(f"'since_ms' must be a number of milliseconds, not {since!r}")
    with world.lock:
        return {"events": [e for e in world.events if e["t_ms"] > since], "t_ms": round(world.now_ms(), 1)}


@op("info")
def info(world: World, req: dict, board) -> dict:
    return {"board": world.board["name"], "guns": len(world.guns), "serial": board.serial_path,
            "heap": board.heap, "code_heap_bytes": board.code_heap, "silicon_heap_bytes": board.silicon_heap,
            "rom_heap_bytes": board.rom_heap, "ops": sorted(OPS)}


def handle_line(world: World, line: bytes | str, board) -> dict:
    """One request line -> one reply object. Never raises for bad input: that is an error reply."""
    try:
        name, fn, req = ROUTER.parse(line)
    except Refused as e:
        return e.reply
    try:
        with world.lock:
            reply = fn(world, req, board)
            world.apply_interlock()  # an unplug, a forced state or an RCD trip acts on it at once
    except ROUTER.request_errors as e:
        return ROUTER.refusal(name, e)
    return {"ok": True, "t_ms": round(world.now_ms(), 1), **reply}


@op("reset")
def reset(world: World, req: dict, board) -> dict:
    """Back to a bare rig: every EV unplugged, every injected condition removed."""
    for g in world.guns:
        g.plugged, g.ev, g.ev_letter, g.forced_state = False, None, "A", None
        g.diode_fault = g.rcd_tripped = g.rcd_test_fails = False
        g.rcm = "ok"
        g.welded = False
        g.contacts = g.coil
        g.temperature_c = 25.0
        g.meter_fault = None
    world.swipes.clear()
    for m in world.can.modules if world.can is not None else []:
        m.fault, m.silent = None, False
    for g in world.guns:
        g.insulation_kohm, g.imd_test_fails, g.imd_fault = 5000.0, False, None
    if world.matrix is not None:
        world.matrix.fault = None
    if getattr(board, "secc", None) is not None:
        board.secc.fault = None
    world.stall_ms = 0
    world.building_a, world.pv_w, world.grid_meter_fault = [0.0, 0.0, 0.0], 0.0, None   # the site as it was
    if world.estop:
        world.estop = False
        world.apply_interlock()
    if board.uplink is not None:
        board.uplink.set(True, 0)
        world.net_up = True
    world.log(0, "reset", None)
    return {}
