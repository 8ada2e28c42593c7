# What App.__init__ does, once, at boot: the guns, the site bus, the meters, the log, the charge
# point. A board holds its .mpy code in the heap: this module loads for the construction and
# goes again (App.__init__ lets it go), so the boot's code is not kept for the rest of the run.
import time

import asyncio

import evse
from evse import store
from evse.app import ENERGY_FILE, FAULTS_FILE, SHARE_MS, gun_loads
from evse.gun import TICK_MS, Gun
from evse.log import Log
from evse.sharing import Sharing


def init(app, board, cfg, hal, root):
    """App.__init__: the guns, the site, the meters, the log, the charge point."""
    evse.settle()   # between the charger's parts at boot
    app.board = board
    app.cfg = cfg
    app.hal = hal
    app.root = root
    app.console_echo = False     # `echo on` (evsectl console): typed characters are echoed
    app._boot_reported = False   # after_boot's update report: once per boot
    board = dict(board)
    board["fault_retry_s"] = cfg.get("fault_retry_s")
    app.cabinet = None   # a DC board's power modules
    app.share_ms = SHARE_MS
    app.tick_ms = board.get("tick_ms", TICK_MS)   # a board with a hardware interlock may tick slower
    if board["kind"] == "dc":
        from evse.dc import CABINET_MS, Cabinet, DcGun
        app.guns = [DcGun(i + 1, hal, g, board) for i, g in enumerate(board["guns"])]
        app.share_ms = CABINET_MS  # the module moves are sequenced at this pace
    else:
        app.guns = [Gun(i + 1, hal, g, board) for i, g in enumerate(board["guns"])]
    evse.settle()
    app._loads = [gun_loads(g) for g in board["guns"]]   # the site phases each gun's EV loads
    app._since = [None] * len(app.guns)                # when each gun began to want power
    app._smart_failing = set()   # 0 (the charger) and guns whose smart limit failed
    app.now_ms = 0
    app._rebased = 0      # what rebase() took off now_ms, for uptime_ms()
    app.ticks = 0
    app._last_ticks = time.ticks_ms()
    app._shared_ms = -SHARE_MS
    app._wanting = None
    # On a site bus (docs/site.md) the coordinator shares its guns and every node's as one.
    app.site = None
    if cfg.get("site_address"):
        from evse.site import open_site
        app.site = open_site(app, hal, board, cfg, root)
    slots = len(app.guns)
    if app.site is not None and app.site.coordinates:
        from evse.site import SITE_GUNS
        slots += SITE_GUNS * len(app.site.remotes)
    app.sharing = Sharing(slots, cfg.get("min_current_a"))
    # Where a gun has no meter: its register estimated from the current, kept on flash.
    saved = store.read_json(store.join(root, ENERGY_FILE), [])
    app._energy_wh = [float(saved[i]) if isinstance(saved, list) and i < len(saved)
                       and isinstance(saved[i], (int, float)) else 0.0 for i in range(len(app.guns))]
    app._energy_saved = list(app._energy_wh)   # the registers the flash task is to write
    app._energy_written = app._energy_saved     # the ones it wrote (the same list: nothing to do)
    app._energy_saved_ms = 0
    # Flash writes (the log, the registers) leave the control tick: it queues them and wakes
    # the flash task, which writes them right after (a littlefs write can take a while).
    app._log_queue = []
    app._flash_due = asyncio.Event()
    app._share_now = asyncio.Event()   # the control task wakes the sharing task
    app._share_error = None            # what ended the sharing task: the control task raises it
    app._stepped_ms = 0
    app._closed = 0          # the guns' contactors at the last integration, one bit each
    app.metering = None
    app.grid_fallback = False       # the grid meter is silent: the guns share grid_fallback_a
    app.grid_building_a = None      # the building's load per site phase, by the grid meter
    app._grid_seen_ms = None        # the grid reading grid_building_a was worked out from
    app._grid_guns_w = 0.0          # what the guns drew at that reading
    app.solar = None                # with a grid meter: charging from its export (solar_mode)
    matrix = board["cabinet"].get("matrix") if board["kind"] == "dc" else None
    if any("meter" in g or "imd" in g for g in board["guns"]) or "grid_meter" in board or matrix:
        from evse.metering import Metering
        app.metering = Metering(hal, board, app.clock, app.note)
        for i, monitor in enumerate(app.metering.imds):
            if monitor is not None:
                app.guns[i].imd = monitor
        # Not less than the board's own site limit: a central system may lower grid_limit_a,
        # which must not make a building's real load look like a meter's fault.
        app.metering.grid_limit_a = app.grid_cap_a   # not a lambda here: it would keep this module
        if "grid_meter" in board:
            from evse import grid  # noqa: F401  (the budget under it: its code only on such a board)
            from evse.solar import Solar
            app.solar = Solar()
    if board["kind"] == "dc":
        # Its contactor matrix: the HAL's, or Modbus I/O modules (evse.matrix) on a meters' line.
        app.cabinet = Cabinet(hal, board, app.note, app.metering.matrix if matrix else None)
    # Guns with a phase contactor (board "phase_switch": true) switch between one and three
    # phases (evse.phases); after a boot it is driven to three before the first offer.
    app.phase_sw = [None] * len(app.guns)
    # Their smart-charging cap on one phase and on three (a limit in W: three times the amps
    # on one), for the what-ifs; refreshed with smart_a by the OCPP task (grant).
    app.smart_1p_a = [None] * (len(app.guns) + 1)
    app.smart_3p_a = [None] * (len(app.guns) + 1)
    if any(g.get("phase_switch") for g in board["guns"]):
        from evse.phases import PhaseSwitch
        for i, g in enumerate(board["guns"]):
            if g.get("phase_switch"):
                app.phase_sw[i] = PhaseSwitch()
    app.log = Log(root, now_fn=app.stamp)
    app._faults_due = False   # a gun's fault came or went: the flash task writes them
    app.has_estop = board.get("estop", False)   # an emergency stop input (board file "estop": true)
    app.estop = False
    app._faults_failing = False
    _restore_faults(app)
    # What the charge point allows, as plain values the control path reads (index 0: the
    # charger): the OCPP task refreshes them (grant), so nothing inside OCPP can stop the
    # control of the guns. Without a central system every gun may charge, uncapped.
    guns = len(app.guns)
    app.permit = [True] * (guns + 1)
    app.smart_a = [None] * (guns + 1)
    app.tags = [None] * (guns + 1)
    app._grant_failing = False
    # The firmware's own timing since boot (or `timing clear`): the worst gap between two
    # control ticks, and the slowest step of each task that measures itself.
    app.worst_gap_ms = 0
    app.slowest_ms = {}
    app.restarts = {}   # task -> times it failed and was started again since boot
    app.cp = None
    url = cfg.get("ocpp_url")
    if url:
        evse.settle()
        from evse.ocpp.cp import ChargePoint
        evse.settle()
        app.cp = ChargePoint(app, root, url, cfg.get("ocpp_id"), _ca(app, cfg.get("ocpp_ca")), app.note)
        app.permit = [False] * (guns + 1)  # until the charge point has said otherwise


def _ca(app, name):
    if not name:
        return None
    try:
        with open(store.join(app.root, name), "rb") as f:
            return f.read()
    except OSError:
        print("config: ocpp_ca file %s is missing: wss:// will not connect" % name)
        return b""


def _restore_faults(app):
    """The faults the guns had when the board went down stand again, each with its clearing
    rule: a welded contactor stays reported until a technician clears it."""
    saved = store.read_json(store.join(app.root, FAULTS_FILE), {})
    if not isinstance(saved, dict):
        saved = {}
    for key in saved:
        n = int(key) if isinstance(key, str) and key.isdigit() else 0
        if not 1 <= n <= len(app.guns) or not app.guns[n - 1].restore_fault(saved[key], 0):
            app.note("faults: %s = %r in %s is no gun's fault; ignored" % (key, saved[key], FAULTS_FILE))
            continue
        app.note("gun %d: fault %s stands, as before the reboot" % (n, saved[key]))
