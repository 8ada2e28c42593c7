"""The virtual site: several virtual boards on one simulated RS-485 site bus (host_tools/sim/line.py)
behind one grid connection that a building shares, with one rig control address for all of them.

A site file (boards/sites/NAME.json) says what the site is:

    {"name": "site-ac3", "description": "...",
     "connection": {"limit_a": 63},                      # A per phase at the grid connection
     "building": [[0, [12, 8, 8]], [8, [30, 22, 24]]],   # [hour, [L1, L2, L3] A]: the day's load,
                                                         # linear between points, round midnight
     "controllers": [                                    # controller k is the rig's "board": k
       {"board": "sim-ac2-grid", "config": {"site_address": 1, "site_nodes": 2, ...}},
       {"board": "sim-ac2-site", "config": {"site_address": 2}}, ...]}

Each controller is a sim board whose board file has "site_bus": {"uart", "baud"}; its `config`
is the firmware's config.json on the fresh flash. The boards with a grid meter (the coordinator's)
hold the building and measure the whole site: their world adds the other boards' guns
(World.site_guns). A monitor samples the connection every MONITOR_S and counts the time any
phase is over the limit (Violations), so a test can assert the sharing never overloads it.

The site's rig ops (docs/rig-protocol.md, "A virtual site"): a request with "board": k goes to
controller k's own rig ops unchanged; without it: site, building, power, reset, events, info.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from host_tools import ports
from host_tools.jsonlines import OpError, Refused, Router
from host_tools.sim import control
from host_tools.sim.line import SiteLine
from host_tools.sim.supervisor import BOARDS_DIR, VirtualBoard, build_sim_firmware, read_board_file, stop_signals
from host_tools.sim.world import VOLTS_PER_PHASE

SITES_DIR = BOARDS_DIR / "sites"
MAX_CONTROLLERS = 16          # the firmware's site addresses: 1 the coordinator, nodes 2..16
MONITOR_S = 0.1               # how often the connection's current is sampled
OVER_TOLERANCE_A = 0.05       # over the limit by less than this is rounding, not an overload
PHASES = ("L1", "L2", "L3")


# ---- site files -------------------------------------------------------------------------------------

def site_path(name: str) -> Path | None:
    """The site file `name` stands for (a name in boards/sites/ or a path to a file with
    "controllers"), or None when it names no site."""
    if name.endswith(".json"):
        path = Path(name)
        try:
            return path if "controllers" in json.loads(path.read_text()) else None
        except (OSError, ValueError, TypeError):
            return None
    path = SITES_DIR / f"{name}.json"
    return path if path.is_file() else None


def read_site(name: str) -> dict:
    """A site file by its name in boards/sites/ (or its path), checked with its address plan;
    ValueError naming the fix."""
    path = site_path(name)
    if path is None:
        known = ", ".join(sorted(p.stem for p in SITES_DIR.glob("*.json")))
        raise ValueError(f"no site file {name}; known sites: {known}")
    try:
        site = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"site file {path} is not valid JSON: {e}") from None
    try:
        return check_site(site)
    except ValueError as e:
        raise ValueError(f"site file {path}: {e}") from None


def _amps(value, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi


def check_site(site: dict, plan: bool = True) -> dict:
    """The site as it is, or ValueError naming the key and what it takes. With `plan`, also the
    address plan a working site has: controller 1 the coordinator (site_address 1, site_nodes the
    number of the others, a grid meter, grid_limit_a the connection's), controller k a node at
    site_address k. A test that starts a site configured wrong on purpose leaves `plan` out."""
    if not isinstance(site, dict):
        raise ValueError("a site must be a JSON object with name, connection, building and controllers")
    name = site.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be the site's name, not {name!r}")
    connection = site.get("connection")
    if not isinstance(connection, dict) or not _amps(connection.get("limit_a"), 1, 2000):
        raise ValueError("connection must be {\"limit_a\": A per phase, 1..2000}, not %r" % (connection,))
    check_building(site.get("building"))
    controllers = site.get("controllers")
    if not isinstance(controllers, list) or not 1 <= len(controllers) <= MAX_CONTROLLERS:
        raise ValueError(f"controllers must be a list of 1..{MAX_CONTROLLERS} controllers "
                         "({\"board\": NAME, \"config\": {...}}), not %r" % (controllers,))
    baud = None
    for k, c in enumerate(controllers, 1):
        where = f"controllers[{k - 1}]"
        if not isinstance(c, dict) or not isinstance(c.get("board"), str):
            raise ValueError(f"{where} must be {{\"board\": NAME, \"config\": {{...}}}}, not {c!r}")
        board, _ = read_board_file(c["board"])
        if board.get("hal") != "sim":
            raise ValueError(f"{where}.board {c['board']} has hal {board.get('hal')!r}: a site's controllers are "
                             "sim boards")
        bus = board.get("site_bus")
        if not isinstance(bus, dict) or not isinstance(bus.get("uart"), int) or not isinstance(bus.get("baud"), int):
            raise ValueError(f"{where}.board {c['board']} has no site bus: its board file needs "
                             "\"site_bus\": {\"uart\": N, \"baud\": B}")
        if baud is not None and bus["baud"] != baud:
            raise ValueError(f"{where}.board {c['board']} runs its site bus at {bus['baud']} baud, the line at "
                             f"{baud} (controllers[0]'s): one line has one baudrate")
        baud = bus["baud"]
        config = c.get("config", {})
        if not isinstance(config, dict):
            raise ValueError(f"{where}.config must be an object of the firmware's settings, not {config!r}")
        address = config.get("site_address", 0)
        if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= MAX_CONTROLLERS:
            raise ValueError(f"{where}.config.site_address must be 0 (off), 1 (coordinator) or 2..{MAX_CONTROLLERS} "
                             f"(a node), not {address!r}")
        if plan:
            _check_plan(site, k, c, board, len(controllers))
    return site


def _check_plan(site: dict, k: int, c: dict, board: dict, n: int) -> None:
    where, config = f"controllers[{k - 1}]", c.get("config", {})
    if k == 1:
        if config.get("site_address") != 1 or config.get("site_nodes") != n - 1:
            raise ValueError(f"{where} is the coordinator: its config needs \"site_address\": 1 and "
                             f"\"site_nodes\": {n - 1} (the other controllers), not {config!r}")
        if "grid_meter" not in board or "feed" in board["grid_meter"]:
            raise ValueError(f"{where}.board {c['board']} has no grid meter on a line: the coordinator measures the "
                             "connection (a board file with \"grid_meter\", such as sim-ac2-grid)")
        limit = site["connection"]["limit_a"]
        if config.get("grid_limit_a") != limit:
            raise ValueError(f"{where}.config.grid_limit_a must be the connection's limit_a, {limit}, not "
                             f"{config.get('grid_limit_a')!r}")
    elif config.get("site_address") != k:
        raise ValueError(f"{where} is node {k} of the site: its config needs \"site_address\": {k}, not "
                         f"{config.get('site_address')!r}")


def check_building(profile) -> list:
    """A building's day: [[hour, [L1, L2, L3] A], ...], hours 0..24 rising."""
    shape = "the building's day: [[hour, [L1, L2, L3] A], ...] with hours 0..24 rising"
    if not isinstance(profile, list) or not profile:
        raise ValueError(f"building must be {shape}, not {profile!r}")
    last = -1.0
    for i, point in enumerate(profile):
        if (not isinstance(point, list) or len(point) != 2 or not _amps(point[0], 0, 24) or point[0] <= last
                or not isinstance(point[1], list) or len(point[1]) != 3
                or not all(_amps(a, 0, 10000) for a in point[1])):
            raise ValueError(f"building[{i}] must be [hour, [L1, L2, L3] A] ({shape}), not {point!r}")
        last = point[0]
    return profile


def building_at(profile: list, hour: float) -> list[float]:
    """The building's load per phase at `hour` of the day: linear between the profile's points,
    from the last back to the first round midnight."""
    hour %= 24
    points = [(h, a) for h, a in profile]
    points = [(points[-1][0] - 24, points[-1][1])] + points + [(points[0][0] + 24, points[0][1])]
    for (h0, a0), (h1, a1) in zip(points, points[1:]):
        if h0 <= hour <= h1:
            f = 0.0 if h1 == h0 else (hour - h0) / (h1 - h0)
            return [round(x + f * (y - x), 2) for x, y in zip(a0, a1)]
    return [float(a) for a in points[-1][1]]


def site_list() -> list[str]:
    """One line per site file (evsectl boards): name, controllers, guns, connection."""
    rows = [("site", "controllers", "guns", "connection")]
    for path in sorted(SITES_DIR.glob("*.json")):
        try:
            site = read_site(str(path))
            guns = sum(len(read_board_file(c["board"])[0]["guns"]) for c in site["controllers"])
            rows.append((path.stem, str(len(site["controllers"])), str(guns),
                         "%s A per phase" % site["connection"]["limit_a"]))
        except ValueError as e:
            rows.append((path.stem, "not a valid site file: %s" % e, "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# ---- the connection's overloads -----------------------------------------------------------------------

class Violations:
    """How long the site drew over its connection's limit, on any phase, and the worst of it. Each
    sample stands for the time since the one before: over the limit, that time counts."""

    def __init__(self, limit_a: float, t_s: float):
        self.limit_a = float(limit_a)
        self.clear(t_s)

    def clear(self, t_s: float) -> None:
        self.since_s = self.last_s = t_s
        self.seconds_over = 0.0
        self.worst_a = 0.0
        self.worst_phase: int | None = None
        self.worst_at_s: float | None = None
        self.episodes = 0      # times it went over
        self.samples = 0
        self._over = False

    def add(self, t_s: float, total_a: list[float]) -> None:
        dt, self.last_s = max(0.0, t_s - self.last_s), t_s
        self.samples += 1
        over = [abs(a) - self.limit_a for a in total_a]
        worst = max(range(len(over)), key=over.__getitem__)
        now_over = over[worst] > OVER_TOLERANCE_A
        if now_over:
            self.seconds_over += dt
            self.episodes += not self._over
            if over[worst] > self.worst_a:
                self.worst_a, self.worst_phase, self.worst_at_s = over[worst], worst, t_s
        self._over = now_over

    def report(self, t0_s: float) -> dict:
        """Times as ms of the site's clock, which starts at t0_s."""
        return {"seconds_over": round(self.seconds_over, 2), "worst_over_a": round(self.worst_a, 2),
                "worst_phase": None if self.worst_phase is None else PHASES[self.worst_phase],
                "worst_at_ms": None if self.worst_at_s is None else round((self.worst_at_s - t0_s) * 1000, 1),
                "episodes": self.episodes, "samples": self.samples,
                "since_ms": round((self.since_s - t0_s) * 1000, 1)}


# ---- the site ---------------------------------------------------------------------------------------

class Site:
    """The controllers of a site file (its name, or a site dict for a test, which may break the
    address plan on purpose), on one SiteLine. `start()` runs them; `boards[k - 1]` is controller k,
    a VirtualBoard; `control_addr` is the site's rig control address."""

    def __init__(self, site: str | dict, flash_dir: str | None = None, echo=None):
        self.spec = read_site(site) if isinstance(site, str) else check_site(site, plan=False)
        self.name = self.spec["name"]
        self.limit_a = float(self.spec["connection"]["limit_a"])
        self.t0 = time.monotonic()
        self.powered = True
        self.violations = Violations(self.limit_a, self.t0)
        self.boards: list[VirtualBoard] = []
        self.line: SiteLine | None = None
        self.echo = echo   # callable(controller number, bytes) that sees everything the boards print
        self.start_s = 0.0   # how long start() took
        self._building_a = [0.0, 0.0, 0.0]   # the building when no board has a grid meter
        self._lock = threading.Lock()   # the violations
        self._stopping = False
        self._started: list[VirtualBoard] = []   # the boards whose start began: stop() stops them
        self._ctl_sock: socket.socket | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="evse-site-")
        self.flash_dir = Path(flash_dir) if flash_dir else Path(self._tmp.name)

    def start(self) -> "Site":
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - began
        return self

    def _start(self) -> None:
        controllers = self.spec["controllers"]
        first_bus = read_board_file(controllers[0]["board"])[0]["site_bus"]
        self.line = SiteLine(first_bus["baud"], powered=lambda: self.powered)
        # One build of the firmware for every controller: compiling takes seconds, copying it none.
        build = build_sim_firmware(Path(self._tmp.name) / "firmware")
        for k, c in enumerate(controllers, 1):
            flash = self.flash_dir / f"controller-{k}"
            uart = read_board_file(c["board"])[0]["site_bus"]["uart"]
            echo = None if self.echo is None else (lambda data, k=k: self.echo(k, data))
            vb = VirtualBoard(c["board"], flash_dir=str(flash), config=c.get("config", {}),
                              uarts={uart: self.line.address}, firmware=build, echo=echo)
            vb.world.t0 = self.t0   # one clock for the whole site's events
            vb.world._last_step_ms = vb.world.now_ms()
            self.boards.append(vb)
        self._wire()
        errors: list[BaseException] = []

        def start(vb: VirtualBoard) -> None:
            self._started.append(vb)
            try:
                vb.start()
            except BaseException as e:   # SystemExit too: it names a board's problem
                errors.append(e)
        threads = [threading.Thread(target=start, args=(vb,), name="site-start") for vb in self.boards]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self._ctl_sock = socket.create_server(("127.0.0.1", 0))
        self.control_addr = "127.0.0.1:%d" % self._ctl_sock.getsockname()[1]
        threading.Thread(target=self._accept, name="site-control-accept", daemon=True).start()
        self.clear_violations()   # counted from the first sample on, not over the boot
        threading.Thread(target=self._monitor, name="site-monitor", daemon=True).start()

    def _wire(self) -> None:
        """The grid meters measure the whole site: their boards' worlds add the others' guns."""
        for vb in self.boards:
            if self._has_grid_meter(vb):
                vb.world.site_guns = lambda me=vb: self._guns_a(exclude=me)

    @staticmethod
    def _has_grid_meter(vb: VirtualBoard) -> bool:
        meter = vb.board.get("grid_meter")
        return meter is not None and "feed" not in meter

    # ---- what flows through the connection ---------------------------------------------------------
    def now_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def _grid_worlds(self) -> list:
        return [vb.world for vb in self.boards if self._has_grid_meter(vb)]

    def building(self) -> tuple[list[float], float]:
        """The building's load per phase and its solar panels' W, as the grid meter's board holds them."""
        worlds = self._grid_worlds()
        if worlds:
            return list(worlds[0].building_a), worlds[0].pv_w
        return list(self._building_a), 0.0

    def set_building(self, building_a: list) -> None:
        """The building's load per phase now, on every board that measures the connection."""
        if not isinstance(building_a, list) or len(building_a) != 3 or not all(_amps(a, 0, 10000) for a in building_a):
            raise ValueError(f"building_a must be three amps (L1, L2, L3), 0..10000, not {building_a!r}")
        for world in self._grid_worlds():
            world.set_grid(building_a=building_a)
        self._building_a = [float(a) for a in building_a]

    def set_hour(self, hour: float) -> list[float]:
        """The building as the site file's day has it at `hour`."""
        building_a = building_at(self.spec["building"], hour)
        self.set_building(building_a)
        return building_a

    def totals(self) -> dict:
        """Per site phase: the building (less its solar panels), each board's guns, the sum."""
        building_a, pv_w = self.building()
        pv_a = pv_w / (3 * VOLTS_PER_PHASE)
        boards = [self._guns_a_of(vb) for vb in self.boards]
        total = [b - pv_a + sum(guns[p] for guns in boards) for p, b in enumerate(building_a)]
        return {"building_a": building_a, "pv_w": pv_w, "boards_a": boards, "total_a": total}

    def _guns_a(self, exclude=None) -> list[float]:
        """What the guns of every board but `exclude` draw per site phase."""
        out = [0.0, 0.0, 0.0]
        for vb in self.boards:
            if vb is not exclude:
                for p, a in enumerate(self._guns_a_of(vb)):
                    out[p] += a
        return out

    @staticmethod
    def _guns_a_of(vb: VirtualBoard) -> list[float]:
        """What one board's guns draw per site phase. Read without the board's world lock: a grid
        meter's reading (under its own world's lock) never waits on another board (two boards with
        grid meters would wait on each other), and a reading a step old is what a meter shows."""
        out = [0.0, 0.0, 0.0]
        for g in vb.world.guns:
            for p, a in enumerate(vb.world.site_phase_amps(g)):
                out[p] += a
        return out

    def sample(self, t_s: float) -> None:
        """One look at the connection for the overload accounting (t_s: time.monotonic())."""
        total = self.totals()["total_a"]
        with self._lock:
            self.violations.add(t_s, total)

    def _monitor(self) -> None:
        while not self._stopping:
            self.sample(time.monotonic())
            time.sleep(MONITOR_S)

    def snapshot(self) -> dict:
        t = self.totals()
        boards = []
        for k, (vb, phase_a) in enumerate(zip(self.boards, t["boards_a"]), 1):
            guns = [{"gun": g["gun"], "state": g["state"], "offered_a": g["offered_a"], "amps": g["amps"],
                     "contactor": g["contactor"], "fault": g["fault"], "phase_amps": g["phase_amps"],
                     "energy_wh": g["energy_wh"]} for g in vb.world.snapshot()]
            boards.append({"board": k, "name": vb.board["name"], "firmware": vb.firmware_state(),
                           "phase_amps": [round(a, 2) for a in phase_a], "guns": guns})
        with self._lock:
            violations = self.violations.report(self.t0)
        return {"site": self.name, "limit_a": self.limit_a, "powered": self.powered,
                "building_a": [round(a, 2) for a in t["building_a"]], "pv_w": t["pv_w"], "boards": boards,
                "total_a": [round(a, 2) for a in t["total_a"]],
                "headroom_a": [round(self.limit_a - a, 2) for a in t["total_a"]],
                "line": self.line.counters(), "violations": violations}

    def clear_violations(self) -> None:
        with self._lock:
            self.violations.clear(time.monotonic())

    def set_power(self, on: bool) -> None:
        """Mains for the whole site: every controller and the line."""
        self.powered = on
        for vb in self.boards:
            with vb.world.lock:
                vb.set_power(on)

    # ---- the site's rig control server ----------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._ctl_sock.accept()
            except OSError:
                return
            threading.Thread(target=self._ctl_conn, args=(conn,), name="site-control", daemon=True).start()

    def _ctl_conn(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for line in conn.makefile("rb"):
                if line.strip():
                    conn.sendall(json.dumps(self.handle_line(line)).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def handle_line(self, line: bytes | str) -> dict:
        """One request line -> one reply object: to controller k's rig ops with "board": k, else
        one of the site's own ops. Never raises for bad input: that is an error reply."""
        try:
            req = json.loads(line)
        except ValueError:
            req = None
        if isinstance(req, dict) and "board" in req:
            k = req.pop("board")
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.boards):
                return {"ok": False, "error": f"board must be 1..{len(self.boards)} (a controller's number in site "
                                              f"{self.name}), not {k!r}"}
            vb = self.boards[k - 1]
            return control.handle_line(vb.world, json.dumps(req), vb)
        try:
            name, fn, req = SITE_ROUTER.parse(line)
        except Refused as e:
            op = req.get("op") if isinstance(req, dict) else None
            if op in control.OPS:
                return {"ok": False, "error": f"{op} is an op of one controller: add \"board\": 1..{len(self.boards)}"}
            return e.reply
        try:
            reply = fn(self, req)
        except SITE_ROUTER.request_errors as e:
            return SITE_ROUTER.refusal(name, e)
        return {"ok": True, "t_ms": round(self.now_ms(), 1), **reply}

    # ---- shutdown -------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        if self._ctl_sock is not None:
            self._ctl_sock.close()
        threads = [threading.Thread(target=vb.stop, name="site-stop") for vb in self._started]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.line is not None:
            self.line.close()
        self._tmp.cleanup()


# ---- the site's own ops (docs/rig-protocol.md, "A virtual site") ---------------------------------------

SITE_ROUTER = Router("site", "docs/rig-protocol.md", user_errors=(ValueError,))
SITE_OPS, site_op = SITE_ROUTER.ops, SITE_ROUTER.op


@site_op("site")
def op_site(site: Site, req: dict) -> dict:
    """The connection now: building, each board's guns, the sum against the limit, the line's
    counters, the overloads so far; with "clear": true the overloads count again from now."""
    clear = req.get("clear", False)
    if not isinstance(clear, bool):
        raise OpError(f"'clear' must be true or false, not {clear!r}")
    reply = site.snapshot()
    if clear:
        site.clear_violations()
    return reply


@site_op("building")
def op_building(site: Site, req: dict) -> dict:
    """The building's load per phase now: `building_a` (three amps), or the site file's day at `hour`."""
    if ("building_a" in req) == ("hour" in req):
        raise OpError("give building_a (three amps, L1 L2 L3) or hour (0..24, the site file's day)")
    if "hour" in req:
        hour = req["hour"]
        if not _amps(hour, 0, 24):
            raise OpError(f"'hour' must be a number 0..24, not {hour!r}")
        return {"building_a": site.set_hour(hour)}
    site.set_building(req["building_a"])
    return {"building_a": site.building()[0]}


@site_op("power")
def op_power(site: Site, req: dict) -> dict:
    """Mains for the whole site (`on`): every controller, and the line."""
    on = req.get("on")
    if not isinstance(on, bool):
        raise OpError(f"'on' must be true or false, not {on!r}")
    site.set_power(on)
    return {}


@site_op("reset")
def op_reset(site: Site, req: dict) -> dict:
    """Every controller's rig reset (docs: reset), the building at 0 A, the overloads cleared."""
    for k, vb in enumerate(site.boards, 1):
        reply = control.handle_line(vb.world, '{"op": "reset"}', vb)
        if not reply["ok"]:
            raise OpError(f"controller {k}: {reply['error']}")
    site.set_building([0, 0, 0])
    site.clear_violations()
    return {}


@site_op("events")
def op_events(site: Site, req: dict) -> dict:
    """Every controller's events after `since_ms`, oldest first, each with its "board"."""
    since = req.get("since_ms", 0)
    if isinstance(since, bool) or not isinstance(since, (int, float)):
        raise OpError(f"'since_ms' must be a number of milliseconds, not {since!r}")
    out = []
    for k, vb in enumerate(site.boards, 1):
        with vb.world.lock:
            out += [dict(e, board=k) for e in vb.world.events if e["t_ms"] > since]
    out.sort(key=lambda e: e["t_ms"])
    return {"events": out}


@site_op("info")
def op_info(site: Site, req: dict) -> dict:
    return {"site": site.name, "description": site.spec.get("description", ""), "limit_a": site.limit_a,
            "line": site.line.address,
            "boards": [{"board": k, "name": vb.board["name"], "serial": vb.serial_path, "control": vb.control_addr,
                        "config": vb.config} for k, vb in enumerate(site.boards, 1)],
            "ops": sorted(SITE_OPS), "board_ops": sorted(control.OPS)}


# ---- evsectl sim --board SITE -------------------------------------------------------------------------

def _line_echo():
    """echo(k, data) for --echo: each controller's lines on stderr, prefixed with its number."""
    pending: dict[int, bytes] = {}
    lock = threading.Lock()

    def echo(k: int, data: bytes) -> None:
        with lock:
            lines = (pending.get(k, b"") + data).split(b"\n")
            pending[k] = lines.pop()
            for line in lines:
                sys.stderr.buffer.write(b"[%d] " % k + line.rstrip(b"\r") + b"\n")
            sys.stderr.flush()
    return echo


def run_foreground(args) -> int:
    """`evsectl sim --board SITE`: print where the site and its boards are, then run until
    SIGINT/SIGTERM."""
    for option, value in (("--heap", args.heap), ("--csms", args.csms), ("--put", getattr(args, "put", None)),
                          ("--config", getattr(args, "config", None))):
        if value:
            raise SystemExit(f"{option} is for one board; a site's controllers take theirs from the site file "
                             f"({site_path(args.board)})")
    try:
        site = Site(args.board, flash_dir=args.flash, echo=_line_echo() if args.echo else None)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    stopped = stop_signals()   # a SIGTERM while it starts: it stops once started, cleaning up
    site.start()
    entries = [ports.register_virtual(vb.serial_path, vb.control_addr, f"{vb.board['name']} (site {site.name} "
                                      f"controller {k})", tag=f"-{k}") for k, vb in enumerate(site.boards, 1)]
    try:
        print(json.dumps({"site": site.name, "control": site.control_addr, "line": site.line.address,
                          "start_s": round(site.start_s, 2),
                          "boards": [{"board": k, "name": vb.board["name"], "serial": vb.serial_path,
                                      "control": vb.control_addr} for k, vb in enumerate(site.boards, 1)]}),
                         flush=True)
        stopped.wait()
    finally:
        for entry in entries:
            entry.unlink(missing_ok=True)
        site.stop()
    return 0
