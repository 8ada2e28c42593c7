"""What profile_trace.py and tls/profile_tls.py read from a qemu '-d exec,nochain,in_asm' log, and
the Cortex-M0+ cycle table they price each instruction with (Cortex-M0+ TRM, zero wait states):
ALU 1 (MULS 1: the RP2040 has the single-cycle multiplier), LDR/STR 2, B 2, BL 3, BX/BLX 2, a
conditional branch 1 (+1 when taken, added by the caller), PUSH/STM 1+N, POP/LDM 1+N,
POP {..pc} 3+N, a write to PC 2, MRS/MSR/barriers 3."""
import re

TRACE = re.compile(r'^Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/[0-9a-f]+/[0-9a-f]+\] ?(\S*)')
INSN = re.compile(r'^0x([0-9a-f]+):\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+(\S+)\s*(.*)$')
COND = {'beq', 'bne', 'bcs', 'bhs', 'bcc', 'blo', 'bmi', 'bpl', 'bvs', 'bvc', 'bhi', 'bls', 'bge', 'blt', 'bgt',
        'ble'}
_classified = {}


def classify(mn, ops):
    """(class, base cycles, is a conditional branch) of one instruction."""
    key = (mn, ops)
    if key in _classified:
        return _classified[key]
    m = mn.split('.')[0]
    if m in COND:
        r = ('bcond', 1, True)
    elif m == 'b':
        r = ('b', 2, False)
    elif m == 'bl':
        r = ('bl', 3, False)
    elif m in ('bx', 'blx'):
        r = ('bx', 2, False)
    elif m in ('push', 'pop', 'ldm', 'ldmia', 'stm', 'stmia'):
        regs = ops[ops.find('{') + 1:ops.find('}')]
        n = 0
        for x in regs.split(','):
            x = x.strip()
            if '-' in x:
                a, b = x.split('-')
                n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
            elif x:
                n += 1
        if m == 'pop' and 'pc' in regs:
            r = ('pop_pc', 3 + n, False)
        else:
            r = ('ldm/stm' if m.startswith(('ldm', 'stm')) else m, 1 + n, False)
    elif m.startswith('ldr'):
        r = ('ldr', 2, False)
    elif m.startswith('str'):
        r = ('str', 2, False)
    elif m in ('mov', 'add') and ops.startswith('pc'):
        r = ('pcwrite', 2, False)
    elif m.startswith(('dmb', 'dsb', 'isb', 'mrs', 'msr')):
        r = ('sys', 3, False)
    elif m.startswith('mul'):
        r = ('mul', 1, False)
    else:
        r = ('alu', 1, False)
    _classified[key] = r
    return r


def executed(path, translated=None):
    """The translation blocks a qemu '-d in_asm,exec,nochain' log (a file or a fifo, read as a
    stream) shows executed, in order: (pc, function, body), body the instructions of the block's
    translation that ran, each (address, mnemonic, operands, size in bytes). `translated`, a dict,
    gets every block's latest translation by its pc (a block is translated again once qemu has
    flushed its cache)."""
    pending = {} if translated is None else translated
    need = set()   # pcs translated again since their block last ran
    tbmap = {}     # qemu's block pointer -> (pc, body)
    cur = None
    in_block = False
    with open(path, errors='replace') as f:
        for line in f:
            if line.startswith('IN:'):
                _keep(cur, pending, need)
                in_block = True
                cur = []
                continue
            if in_block:
                m = INSN.match(line)
                if m:
                    cur.append((int(m.group(1), 16), m.group(4), m.group(5), 4 if m.group(3) else 2))
                    continue
                if not line.startswith('Trace'):
                    if line.strip() == '':   # the block's listing ends
                        _keep(cur, pending, need)
                        cur = None
                        in_block = False
                    continue
                _keep(cur, pending, need)
                cur = None
                in_block = False
            m = TRACE.match(line)
            if not m:
                continue
            tb, pc, fn = m.group(1), int(m.group(2), 16), m.group(3)
            e = tbmap.get(tb)
            if e is None or e[0] != pc or pc in need:
                e = (pc, pending[pc])
                tbmap[tb] = e
                need.discard(pc)
            yield pc, fn, e[1]


def _keep(body, pending, need):
    if body:
        pending[body[0][0]] = body
        need.add(body[0][0])
