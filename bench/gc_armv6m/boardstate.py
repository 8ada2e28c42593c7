# The same file on the qemu guest (ARMv6-M) and on this host's unix port: the firmware's own C
# in the state of a booted board. The preamble sets IMG (a buffer holding a ROMFS image of the
# compiled firmware, asyncio and a stub `socket`), REPS and TAG.
#
# It imports what a board with OCPP imports at boot (its names interned: MicroPython's table of
# names, each looked up by a scan of all the names interned at run time), then times, each REPS
# times: the modules the firmware loads for a request and lets go (evse.unload), from the image in
# place (a ROMFS install) and from a filesystem that reads each file into the heap (a .mpy install
# on littlefs, without littlefs's own code); json.loads and json.dumps of a SendLocalList of 30
# entries. And the heap the code takes from the image (the boot's modules; with the local list's,
# with the update's): in bytes, for the 32-bit board's ratio to this 64-bit port.
import gc
import io
import json
import micropython
import os
import sys
import time
import vfs

tu = time.ticks_us
td = time.ticks_diff
vfs.mount(vfs.VfsRom(IMG), "/rom")


class Copy:
    """A filesystem whose files are read into the heap when opened (io.BytesIO), as littlefs's."""

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def stat(self, path):
        return os.stat("/rom" + path)

    def open(self, path, mode):
        with open("/rom" + path, "rb") as f:
            return io.BytesIO(f.read())


vfs.mount(Copy(), "/copy")
sys.path[:] = ["/rom"]
gc.collect()
base = gc.mem_alloc()
BOOT = ("asyncio", "evse", "evse.app", "evse.ocpp", "evse.ocpp.cp", "evse.ocpp.tx", "evse.ocpp.journal",
        "evse.ocpp.ws", "evse.ocpp.rpc", "evse.ocpp.auth", "evse.ocpp.keys", "evse.hal", "evse.gun",
        "evse.pilot", "evse.sharing", "evse.metering", "evse.log", "evse.config")
for name in BOOT:
    __import__(name)
gc.collect()
print("RESULT", TAG, "code", "romfs_boot", gc.mem_alloc() - base)   # the heap the code takes, in bytes
import evse  # noqa: E402

evse.preload_names("evse.cli", "evse.console")   # as evse.app.main does once the App stands
for name in ("evse.ocpp.fw", "evse.ocpp.fwboot"):   # main.py's update check, let go
    __import__(name)
    evse.unload(name)
gc.collect()
micropython.qstr_info()
print("STATE", TAG, "modules", len(sys.modules), "free", gc.mem_free())


def timed(fn, *args):
    ds = []
    for _ in range(REPS):
        gc.collect()
        t0 = tu()
        fn(*args)
        ds.append(td(tu(), t0))
    ds.sort()
    return ds[len(ds) // 2]


def load(name):
    __import__(name)
    evse.unload(name)


LAZY = ("evse.ocpp.ops", "evse.ocpp.ops_more", "evse.ocpp.keyset", "evse.ocpp.authlist", "evse.ocpp.smart",
        "evse.ocpp.wsopen", "evse.ocpp.fw", "evse.ocpp.http", "evse.ocpp.bundle", "evse.ocpp.upload")
for where in ("/rom", "/copy"):
    sys.path[:] = [where]
    for name in LAZY:
        load(name)   # its names interned, as after the first time on a board
        print("RESULT", TAG, "import_" + where[1:], name, timed(load, name))
sys.path[:] = ["/rom"]

text = json.dumps([2, "u1", "SendLocalList", {"listVersion": 5, "updateType": "Full", "localAuthorizationList": [
    {"idTag": "TAG%05d" % k, "idTagInfo": {"status": "Accepted", "expiryDate": "2027-01-01T00:00:00Z",
                                           "parentIdTag": "PARENT%02d" % (k % 7)}} for k in range(30)]}])
obj = json.loads(text)
print("RESULT", TAG, "json", "loads_%d" % len(text), timed(json.loads, text))
print("RESULT", TAG, "json", "dumps_%d" % len(text), timed(json.dumps, obj))

# The code at the local list's and at the update's moments, from the image (bytes of heap).
for label, names in (("romfs_local_list", ("evse.ocpp.ops", "evse.ocpp.authlist")),
                     ("romfs_update", ("evse.ocpp.fw", "evse.ocpp.http", "evse.ocpp.bundle"))):
    for name in names:
        __import__(name)
    gc.collect()
    print("RESULT", TAG, "code", label, gc.mem_alloc() - base)
