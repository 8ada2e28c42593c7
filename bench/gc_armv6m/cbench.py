# C-routine benchmark: same file on the qemu guest (RP2040 ISA) and the host unix port.
# Preamble sets REPS (timed single calls per op), TAG.
import gc, time, json, sys
try:
    REPS
except NameError:
    REPS = 30
try:
    INNER
except NameError:
    INNER = 1
try:
    TAG
except NameError:
    TAG = 'untagged'
try:
    import hashlib
    HAVE_HASH = hasattr(hashlib, 'sha256')
except ImportError:
    HAVE_HASH = False
tu = time.ticks_us
td = time.ticks_diff

text = json.dumps([2, "u1", "SendLocalList", {"listVersion": 5, "updateType": "Full", "localAuthorizationList": [{"idTag": "TAG%05d" % k, "idTagInfo": {"status": "Accepted", "expiryDate": "2027-01-01T00:00:00Z", "parentIdTag": "PARENT%02d" % (k % 7)}} for k in range(30)]}])
obj = json.loads(text)
print('INFO', TAG, 'json_text_len', len(text), 'dumps_len', len(json.dumps(obj)))

line100 = ('Meter 1: energy import register reading OK, sampled value list follows; ' * 2)[:100]
fmt = '%s %d'
R100 = range(100)
# 2.5 KB text, 30 lines
lines30 = ['%02d ' % i + ('chargepoint log line payload ' * 3)[:80] for i in range(30)]
text25 = '\n'.join(lines30)
src1k = bytearray(bytes(range(256)) * 4)
dst1k = bytearray(1024)
mvd = memoryview(dst1k)
buf1k = bytearray(b'\xa5' * 1024)

def op_empty():
    pass
def op_loads():
    json.loads(text)
def op_dumps():
    json.dumps(obj)
def op_sha256():
    h = hashlib.sha256()
    b = buf1k
    for i in R100:
        h.update(b)
    h.digest()
def op_sha256_base():      # same Python loop, no hashing (loop overhead)
    h = None
    b = buf1k
    for i in R100:
        b
    b
def op_fmt():
    f = fmt; l = line100
    for i in R100:
        s = f % (l, i)
def op_fmt_base():
    f = fmt; l = line100
    for i in R100:
        s = (l, i)
def op_split():
    text25.split('\n')
def op_split_ws():
    text25.split()
def op_mvcopy():
    m = mvd; s = src1k
    for i in R100:
        m[:] = s
def op_mvcopy_base():
    m = mvd; s = src1k
    for i in R100:
        m
def op_bacopy():          # bytearray slice assignment without memoryview
    d = dst1k; s = src1k
    for i in R100:
        d[0:1024] = s

OPS = [('empty', op_empty), ('json_loads', op_loads), ('json_dumps', op_dumps)]
if HAVE_HASH:
    OPS += [('sha256_100k', op_sha256), ('sha256_loopbase', op_sha256_base)]
OPS += [('fmt_100', op_fmt), ('fmt_loopbase', op_fmt_base), ('split_nl', op_split), ('split_ws', op_split_ws),
        ('mvcopy_100', op_mvcopy), ('mvcopy_loopbase', op_mvcopy_base), ('bacopy_100', op_bacopy)]

RI = range(INNER)
for name, f in OPS:
    f()                       # warm up
    ds = []
    for r in range(REPS):
        gc.collect()
        if INNER == 1:
            t0 = tu()
            f()
            t1 = tu()
        else:
            t0 = tu()
            for _ in RI:
                f()
            t1 = tu()
        ds.append(td(t1, t0))
    ds.sort()
    print('RESULT', TAG, name, 'inner', INNER, 'min', ds[0], 'med', ds[len(ds) // 2], 'max', ds[-1])
