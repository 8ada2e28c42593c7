#!/usr/bin/env python3
"""Exact guest instruction counts and estimated Cortex-M0+ cycles for each timed operation,
from a qemu '-d in_asm,exec,nochain' log (file or fifo; read as a stream).
An interval starts at the entry of bench_begin() and ends at the entry of bench_end().
Cycle table (Cortex-M0+ TRM, zero wait states): ALU 1 (MULS 1: RP2040 has the single-cycle
multiplier), LDR/STR 2, B 2, BL 3 (counted as one 32-bit insn), BX/BLX 2, cond branch 1 (+1 if
taken), PUSH/STM 1+N, POP/LDM 1+N, POP {..pc} 3+N, writes to PC 2 (+1 for the refill), MRS/MSR/barriers 3.
usage: profile_tls.py LOG ELF [label ...]"""
import collections, os, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
log, elf = sys.argv[1], sys.argv[2]
labels = sys.argv[3:]
syms = {}
for l in subprocess.run(['arm-none-eabi-nm', elf], capture_output=True, text=True).stdout.split('\n'):
    p = l.split()
    if len(p) == 3: syms[p[2]] = int(p[0], 16) & ~1
BEGIN, END = syms['bench_begin'], syms['bench_end']
from m0plus import classify, executed  # noqa: E402

pending_all = {}   # pc -> the block's latest translation (executed() fills it)
summ = {}   # pc -> (its translation, (n, cyc, cls Counter, clscyc Counter, cond_last(fallthrough addr) or None))
def summarize(body):
    n = len(body); cyc = 0; cls = collections.Counter(); cc = collections.Counter()
    for (a, mn, ops, size) in body:
        c, y, cond = classify(mn, ops); cls[c] += 1; cc[c] += y; cyc += y
    a, mn, ops, size = body[-1]
    c, y, cond = classify(mn, ops)
    return (n, cyc, cls, cc, (a + size) if cond else None)

results = []; active = None; last = None
def new_prof():
    return {'n': 0, 'cyc': 0, 'tbexec': collections.Counter(), 'func': collections.Counter(), 'taken': 0}
for pc, fn, body in executed(log, pending_all):
    e = summ.get(pc)
    if e is None or e[0] is not body:
        e = summ[pc] = (body, summarize(body))
    s = e[1]
    if active is not None and last is not None and last[4] is not None and pc != last[4]:
        active['taken'] += 1; active['cyc'] += 1
    if pc == BEGIN: active = new_prof()
    elif pc == END and active is not None:
        results.append(active); active = None
    if active is not None:
        active['n'] += s[0]; active['cyc'] += s[1]; active['tbexec'][pc] += 1; active['func'][fn] += s[0]
        active['_cls'] = active.get('_cls', collections.Counter())
    last = s if active is not None else None
    if active is not None:
        active.setdefault('tbs', {})[pc] = s

print('# op  guest_insns  est_M0+_cycles  CPI')
for i, p in enumerate(results):
    cls = collections.Counter(); cc = collections.Counter()
    for pc, k in p['tbexec'].items():
        s = p['tbs'][pc]
        for c, v in s[2].items(): cls[c] += v * k
        for c, v in s[3].items(): cc[c] += v * k
    cc['bcond'] += p['taken']
    n = p['n']; name = labels[i] if i < len(labels) else 'op%d' % i
    print('%-26s %d %d %.3f' % (name, n, p['cyc'], p['cyc'] / n))
    print('   functions:', ', '.join('%s %.1f%%' % (f, 100.0 * v / n) for f, v in p['func'].most_common(8)))
    print('   classes  :', ', '.join('%s %.1f%% (%.1f%% cyc)' % (c, 100.0 * v / n, 100.0 * cc[c] / p['cyc']) for c, v in cls.most_common()))
    print('   cond branches taken %d / not taken %d' % (p['taken'], cls['bcond'] - p['taken']))
    code = set()
    for pc in p['tbexec']:
        for (a, mn, ops, size) in pending_all[pc]:
            code.add((a & ~31))
    print('   code footprint: %d distinct 32-byte lines touched = %d bytes (RP2040 XIP cache: 16 KB, 2-way, 8-byte lines)' % (len(code), 32 * len(code)))
    alloc = sum(v for f, v in p['func'].items() if f in ('calloc', '_calloc_r', 'malloc', '_malloc_r', 'free', '_free_r', 'm_tracked_calloc', 'm_tracked_free', '_sbrk', '_sbrk_r', 'sbrk_aligned', 'memset') )
    print('   memcpy %.1f%%, memset %.1f%%, malloc/calloc/free(+memset) %.1f%%, __wrap___aeabi_lmul %.1f%%' % (
        100.0 * p['func']['memcpy'] / n, 100.0 * p['func']['memset'] / n, 100.0 * alloc / n, 100.0 * p['func']['__wrap___aeabi_lmul'] / n))
    sys.stdout.flush()
