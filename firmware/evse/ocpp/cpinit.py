# What ChargePoint.__init__ does, once, at boot: its configuration keys, the local list, the
# journal, the connectors and what was saved before the reboot (transactions, availability).
# Loaded for the construction and let go after it, as evse.appinit: a board holds .mpy code in
# its heap.
import time

import asyncio

import evse
from evse import store
from evse.ocpp import auth, clock, journal, keys
from evse.ocpp.cp import AVAIL_FILE, PROFILES_FILE, TX_FILE
from evse.ocpp.tx import Connector


def init(cp, app, root, url, cp_id, ca_der, log):
    """ChargePoint.__init__: its keys, local list, journal, connectors and saved state."""
    cp.app = app
    cp.root = root.rstrip("/") + "/"
    cp.url = url.rstrip("/") + "/" + cp_id
    cp.cp_id = cp_id
    cp.ca_der = ca_der
    cp.log = log
    n = len(app.guns)
    board = getattr(app, "board", {})
    cp.keys = keys.Keys(root, n, cp._key_changed, cp._key_check, board.get("journal_max_entries", 2000))
    cfg = getattr(app, "cfg", None)
    if cfg is not None:
        site = ("SiteLimitA",)
        if cfg.get("site_address"):   # on a site bus: the coordinator's fallback, a node's patience
            site += ("SiteFallbackA",) if cfg.get("site_address") == 1 else ("SiteLostS",)
        cp.keys.mirror(cfg, site + ("GridLimitA", "GridMarginA", "GridFallbackA", "GridStaleS")
                         if "grid_meter" in app.board else site)
    evse.settle()   # between the charger's parts at boot
    cp.auth = auth.Auth(root, cp.keys)
    cp.journal = journal.Journal(root, cp.keys.get("JournalMaxEntries"), log=log)
    evse.settle()
    cp._profiles = None   # smart.Profiles, while a profile is installed (the profiles property)
    cp._smart = None      # and evse.ocpp.smart with it
    cp._answering = False  # a request of the central system is handled: smart stays till its end
    if store.read_json(cp.root + PROFILES_FILE, []):
        cp.profiles
    cp.clock = clock.Clock(time.ticks_ms, time.ticks_diff)
    cp.connectors = [Connector(i) for i in range(n + 1)]
    cp.outbox = []
    cp.online = False       # connected and BootNotification accepted
    cp.connected = False
    cp._started_ms = time.ticks_ms()
    cp.why_offline = "not connected yet"   # for the console: what the last try met
    cp.retry_at_ms = None   # when the next connect is tried (ticks_ms), while offline
    cp.boot_status = None
    cp.heartbeat_s = cp.keys.get("HeartbeatInterval")
    cp.ws = None
    cp._send_lock = asyncio.Lock()
    cp._reply_event = asyncio.Event()
    cp._await_uid = None
    cp._reply = None
    cp._last_tx_ms = 0
    cp._retry_at_ms = None  # a refused transaction message waits until then
    cp._reset = None        # "Soft" / "Hard" once accepted
    cp._reset_at_ms = 0
    cp._boot_now = False
    cp._dead = None
    cp._next_aligned_s = 0
    cp.sessions = 0
    cp.pending_profile = None   # (connector, TxProfile) of a RemoteStartTransaction
    cp.firmware_status = "Idle"
    cp.firmware_busy = False     # an update is scheduled or under way
    cp.diagnostics_status = "Idle"
    cp.later = []
    cp._events_due = []          # security events whose flash writes are still to come
    cp._security_log = None      # evse.log.Log of security.txt, made at the first event
    cp._invalid_seen = False     # an InvalidMessages event logged on this link
    cp.log_status = "Idle"       # of the last GetLog upload (ExtendedTriggerMessage)
    cp.log_request_id = None
    cp._link_profile = None      # the SecurityProfile the link connected with
    cp._fallback_profile = None  # after a raise: the profile to go back to if it fails
    _load(cp)
    cp.let_smart_go()   # a profiles file with no record it can use
    cp.security_event("StartupOfTheDevice", "evse %s booted" % evse.VERSION)


def _load(cp):
    avail = store.read_json(cp.root + AVAIL_FILE, {})
    for c in cp.connectors:
        if isinstance(avail, dict) and avail.get(str(c.n)) == "Inoperative":
            c.operative = False
    txs = store.read_json(cp.root + TX_FILE, {})
    ended = []
    mapped = False
    if isinstance(txs, dict):
        for key in txs:
            tx = txs[key]
            try:
                c = cp.connectors[int(key)]
            except (ValueError, IndexError):
                continue
            if not (isinstance(tx, dict) and "id" in tx and c.n > 0):
                continue
            real = cp.journal.real_id(tx["id"])
            if real != tx["id"]:
                # Its StartTransaction was confirmed and the power went before this file
                # took the real id: the journal's line has it.
                tx["id"] = real
                mapped = True
            if cp.journal.has_stop(tx["id"]):
                # Its stop reached the journal and the power went before the file said so:
                # it is over, not to be stopped (PowerLoss) or resumed again; the file and
                # its profiles are brought up to date below.
                cp.log("ocpp: connector %d: transaction %d had ended; its stop is queued" % (c.n, tx["id"]))
                ended.append(c.n)
                continue
            c.tx = tx
            # A gun's estimated register lost what grew since it was last on flash: it
            # starts again from what this session was told, at least.
            cp.app.energy_floor(c.n, max(tx.get("meter_start", 0), tx.get("seen_wh", 0)))
    if ended or mapped:
        cp._save_txs()
    for n in ended:
        cp._end_tx_profiles(n)
