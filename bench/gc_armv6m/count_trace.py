#!/usr/bin/env python3
"""Count guest instructions between successive calls of a function, from a qemu
'-d exec,nochain,in_asm' log.  usage: count_trace.py LOG HEXADDR_OF_FUNCTION"""
import sys, re
log, addr = sys.argv[1], int(sys.argv[2], 16)
tr = re.compile(r'^Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/')
ins = re.compile(r'^0x([0-9a-f]+):\s')
pending = {}          # pc -> insn count of most recent translation
need_remap = set()
tbmap = {}            # tbptr -> (pc, count)
total = 0
marks = []
cur_pc, cur_n = None, 0
def flush_in():
    global cur_pc, cur_n
    if cur_pc is not None:
        pending[cur_pc] = cur_n; need_remap.add(cur_pc)
    cur_pc, cur_n = None, 0
in_block = False
with open(log, errors='replace') as f:
    for line in f:
        if line.startswith('IN:'):
            flush_in(); in_block = True; continue
        if in_block:
            m = ins.match(line)
            if m:
                if cur_pc is None: cur_pc = int(m.group(1), 16)
                cur_n += 1
                continue
            if line.strip() == '' or line.startswith('Trace'):
                flush_in(); in_block = False
            if not line.startswith('Trace'):
                continue
        m = tr.match(line)
        if m:
            tb, pc = m.group(1), int(m.group(2), 16)
            e = tbmap.get(tb)
            if e is None or e[0] != pc or pc in need_remap:
                e = (pc, pending[pc]); tbmap[tb] = e; need_remap.discard(pc)
            if pc == addr:
                marks.append(total)
            total += e[1]
print('total instructions traced:', total, ' calls:', len(marks))
d = [b - a for a, b in zip(marks, marks[1:])]
print('instructions between successive calls (last 20):', d[-20:])
