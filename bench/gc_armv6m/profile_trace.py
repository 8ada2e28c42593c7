#!/usr/bin/env python3
"""Profile guest instructions between successive calls of ticks_us() from a qemu
'-d exec,nochain,in_asm' log; for intervals longer than MIN_INSNS (the timed gc.collect()
calls) print instructions per function, instruction-class mix and an estimated
Cortex-M0+ cycle count (zero-wait-state memory; cycle table from the Cortex-M0+ TRM).
usage: profile_trace.py LOG HEXADDR_OF_ticks_us [MIN_INSNS]"""
import collections, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
log, addr = sys.argv[1], int(sys.argv[2], 16)
MIN = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
from m0plus import classify, executed  # noqa: E402

marks = 0
results = []
def new_prof():
    return {'n': 0, 'cyc': 0, 'func': collections.Counter(), 'cls': collections.Counter(),
            'clscyc': collections.Counter(), 'taken': 0, 'nottaken': 0}
prof = new_prof()
last_tb = None   # (insns list) of previous TB, to resolve its conditional branch

def resolve(prev, pc):
    # prev: translation list; decide whether its final cond branch was taken
    a, mn, ops, size = prev[-1]
    cls, cyc, cond = classify(mn, ops)
    if not cond: return
    fall = a + size
    if pc != fall:
        prof['taken'] += 1; prof['cyc'] += 1; prof['clscyc']['bcond'] += 1

for pc, fn, body in executed(log):
    if last_tb is not None:
        resolve(last_tb, pc)
    if pc == addr:
        if prof['n'] >= MIN:
            results.append((marks, prof))
        prof = new_prof(); marks += 1
    prof['n'] += len(body)
    prof['func'][fn] += len(body)
    for (a, mn, ops, size) in body:
        cls, cyc, cond = classify(mn, ops)
        prof['cls'][cls] += 1; prof['clscyc'][cls] += cyc; prof['cyc'] += cyc
    last_tb = body

for k, p in results:
    if p['func'].most_common(1)[0][0].startswith('gc_') or sum(v for f, v in p['func'].items() if f.startswith('gc_')) > 0.8 * p['n']:
        n = p['n']
        print('== interval after ticks_us call #%d: %d instructions, est. M0+ cycles %d, CPI %.3f' % (k, n, p['cyc'], p['cyc'] / n))
        print('   functions:', ', '.join('%s %.1f%%' % (f, 100.0 * v / n) for f, v in p['func'].most_common(8)))
        print('   classes  :', ', '.join('%s %.1f%% (%.1f%% cyc)' % (c, 100.0 * v / n, 100.0 * p['clscyc'][c] / p['cyc']) for c, v in p['cls'].most_common()))
        tk, nt = p['taken'], p['cls']['bcond'] - p['taken']
        print('   cond branches taken %d / not taken %d' % (tk, nt))
