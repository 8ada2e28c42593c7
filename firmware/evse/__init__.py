# EV charger controller firmware.
VERSION = "0.1.0"

# Loaded for a rare job and let go after it: the firmware update and the diagnostics upload.
UPDATE_MODULES = ("evse.ocpp.fw", "evse.ocpp.http")


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
            except AttributeError:
                pass   # never imported as an attribute
