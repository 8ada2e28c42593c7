# gcbench.py -- time gc.collect() on a heap of "charger-firmware-like" objects.
# Runs unchanged on MicroPython unix (64-bit) and the qemu MPS2_AN385 build (32-bit, ARMv6-M code).
# Parameters (may be pre-defined by a line prepended to this file):
#   UNITS : list of cumulative unit counts; the heap is grown to each count in turn and measured
#   REPS  : number of timed gc.collect() calls per size
import gc, time, sys

try:
    UNITS
except NameError:
    UNITS = [100, 170, 240]
try:
    REPS
except NameError:
    REPS = 30
try:
    TAG
except NameError:
    TAG = ''

ticks_us = time.ticks_us
ticks_diff = time.ticks_diff

STATES = ('idle', 'preparing', 'charging', 'suspended_ev', 'suspended_evse', 'finishing', 'faulted')

# containers that keep everything alive
sessions = []   # dicts with short str keys, int/float/str values
samples = []    # lists of tuples (meter samples)
frames = []     # small bytearrays (modbus / OCPP frames)
logs = []       # strings of 20..100 chars
code = []       # functions / classes created via exec (bytecode in the heap)
cfg = {}        # one larger dict: config key -> value

FUNC_SRC = """
class Meter%d:
    def __init__(self, addr):
        self.addr = addr
        self.v = 230.0
        self.a = 0.0
        self.e = 0.0
    def update(self, v, a, dt):
        self.v = v
        self.a = a
        self.e += v * a * dt / 3600000.0
        return self.e
def check_limits_%d(v, a, lim):
    if v > 253.0 or v < 207.0:
        return 'voltage'
    if a > lim:
        return 'current'
    return None
"""


def add_unit(i):
    # one "unit" of application state
    st = STATES[i % len(STATES)]
    tag = 'RFID-%08X' % (i * 2654435761 & 0xFFFFFFF)
    sessions.append({
        'id': i,
        'tx': 100000 + i,
        'st': st,
        'tag': tag,
        'kwh': i * 0.137,
        'v': 230.0 + (i % 7) * 0.3,
        'a': 16.0 - (i % 5) * 0.5,
        'ts': (i * 86400) % 1000000000,   # keep ints small-int on 32-bit (< 2**30)
        'err': None,
        'ok': True,
    })
    samples.append([(j * 10 + i, 229.5 + j * 0.1, 15.0 + j * 0.05, 3.45 + j * 0.01) for j in range(6)])
    b = bytearray(8 + (i % 4) * 8)
    b[0] = i & 0xFF
    frames.append(b)
    s = '%s: tx %d state %s energy %.3f kWh tag %s' % ('2024-05-01T12:%02d' % (i % 60), 100000 + i, st, i * 0.137, tag)
    logs.append(s[:20 + (i * 7) % 81])
    cfg['k%d' % i] = (i % 3 == 0) and 'value-%d' % i or i
    if i % 20 == 0:
        g = {}
        exec(FUNC_SRC % (i, i), g)
        code.append(g)


def measure(n):
    gc.collect()
    gc.collect()
    alloc = gc.mem_alloc()
    free = gc.mem_free()
    # overhead of the timing itself
    ov = []
    for _ in range(REPS):
        t0 = ticks_us()
        t1 = ticks_us()
        ov.append(ticks_diff(t1, t0))
    ts = []
    for _ in range(REPS):
        t0 = ticks_us()
        gc.collect()
        t1 = ticks_us()
        ts.append(ticks_diff(t1, t0))
    ts.sort()
    ov.sort()
    print('RESULT %s units=%d alloc=%d free=%d total=%d min_us=%d med_us=%d max_us=%d ovh_min=%d ovh_med=%d' % (
        TAG, n, alloc, free, alloc + free, ts[0], ts[len(ts) // 2], ts[-1], ov[0], ov[len(ov) // 2]))


def main():
    gc.collect()
    print('BASE', TAG, sys.implementation, 'alloc=%d free=%d' % (gc.mem_alloc(), gc.mem_free()))
    measure(0)
    i = 0
    for n in UNITS:
        while i < n:
            add_unit(i)
            i += 1
        measure(n)
    print('DONE')


main()
