# The heap one workload takes, the same text on a 64-bit MicroPython (the unix port here) and a
# 32-bit one (the WebAssembly port, bench/heap_wasm.mjs): bench/heap.py prepends ITEM = '<name>'
# and compares the two. Prints one line: RESULT <item> <bytes>.
import gc
import sys

# What is not the firmware's is loaded before the baseline: only the workload counts.
for _name in ("json", "os", "time", "asyncio", "binascii", "hashlib", "random", "socket", "struct",
              "array", "math", "micropython", "select", "collections"):
    try:
        __import__(_name)
    except ImportError:
        print("NOTE missing", _name)
import asyncio  # noqa: E402
import json  # noqa: E402

for _name in ("Event", "Lock", "sleep_ms", "wait_for_ms", "gather", "create_task", "run"):
    getattr(asyncio, _name, None)   # asyncio loads its parts on first use: now, not in the workload
# The modules an OCPP board imports to run (each pulls in what it needs; evse.ocpp.ops loads for
# a request of the central system, and is measured with them).
CODE = ("evse.config", "evse.pilot", "evse.gun", "evse.sharing", "evse.app", "evse.ocpp.cp",
        "evse.ocpp.journal", "evse.ocpp.ws", "evse.ocpp.rpc", "evse.ocpp.ops")
JSON_TEXT = "[" + ", ".join('{"idTag": "TAG-%06d-ABCDEFGHIJKLM", "vendorId": "com.example.vendor.%04d", '
                            '"errorCode": "NoError-%03d-OK-padding-pad-pad-pad"}' % (i, i, i)
                            for i in range(50)) + "]"


class Small:
    def __init__(self, i):
        self.a = i
        self.b = i + 1
        self.c = None
        self.d = True
        self.e = "x"
        self.f = -i


keep = None
gc.collect()
before = gc.mem_alloc()
if ITEM == "code":  # noqa: F821  (prepended)
    for _name in CODE:
        __import__(_name)
elif ITEM == "ints":  # noqa: F821
    keep = [i for i in range(1000)]
elif ITEM == "dict":  # noqa: F821
    keep = {("key%03d" % i): i * 0.25 for i in range(500)}
elif ITEM == "objects":  # noqa: F821
    keep = [Small(i) for i in range(200)]
elif ITEM == "json":  # noqa: F821
    keep = json.loads(JSON_TEXT)
elif ITEM == "bytearray":  # noqa: F821
    keep = bytearray(8192)
elif ITEM == "bigints":  # noqa: F821
    keep = [1700000000000 + i for i in range(1000)]   # millisecond timestamps: past 31 bits
gc.collect()
print("RESULT", ITEM, gc.mem_alloc() - before)  # noqa: F821
