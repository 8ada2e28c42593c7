# EV charger controller firmware.
VERSION = "0.1.0"

# Loaded for a rare job and let go after it: the firmware update and the diagnostics upload.
UPDATE_MODULES = ("evse.ocpp.bundle", "evse.ocpp.fw", "evse.ocpp.fwboot", "evse.ocpp.http", "evse.ocpp.upload")
_update_jobs = [0]   # updates and uploads running: while any runs, their code stays loaded


def update_job(delta):
    """A job that uses UPDATE_MODULES starts (+1) or ends (-1); when none runs any more (or at a
    check with 0 while none runs), they are let go. One module for all of them: fw keeps the
    state that refuses a second update while one runs."""
    _update_jobs[0] = max(0, _update_jobs[0] + delta)
    if not _update_jobs[0]:
        unload(*UPDATE_MODULES)


def settle():
    """A garbage collection at boot, between the charger's parts: the allocator then fills the
    holes the last part's garbage (and the code let go after it) left low in the heap, and the
    heap's top stays in one piece. Without, an ESP32-WROOM's heap after boot was 40 KB free in
    pieces of 3 KB at most, and its first wss:// connect found no room for its TLS context. On
    MicroPython only: CPython's heap is not a board's, and its collector takes as long as its
    whole heap (the tests build thousands of chargers)."""
    import sys
    if sys.implementation.name == "micropython":
        import gc
        gc.collect()


def unload(*names):
    """Lets modules loaded for a rare job go: out of sys.modules and off their package, so the
    heap takes them back once nothing runs them (a board holds its .mpy code in the heap)."""
    import sys
    for name in names:
        sys.modules.pop(name, None)
        package, _, leaf = name.rpartition(".")
        parent = sys.modules.get(package)
        if parent is not None:
            try:
                delattr(parent, leaf)
            except (AttributeError, KeyError):   # MicroPython: KeyError for a name not there
                pass   # never imported as an attribute, or let go before


def call_and_let_go(name, what, *args):
    """`what(*args)` of the module `name`, loaded for the call and let go after it, whether it
    returns or raises: code that runs once at boot or for a rare request (a board holds a
    module's .mpy code in its heap)."""
    module = __import__(name, None, None, (what,))
    try:
        return getattr(module, what)(*args)
    finally:
        module = None
        unload(name)


def preload_names(*names):
    """Imports each module and lets it go again. What stays are the names its code uses, which
    MicroPython interns in tables (qstr pools) that grow by doubling, one contiguous block each
    time. Grown at boot, while the heap is whole, that block is never wanted later, when the
    module's first use meets a heap in fragments: the console's first command on a Pico ran out
    of memory with a third of its heap free, for want of one block for 1,280 more names."""
    for name in names:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001  (not on this board, no room, a bad file: its first use says so)
            pass
        unload(name)
