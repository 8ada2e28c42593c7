#!/usr/bin/env python3
"""Run a MicroPython script on the qemu MPS2_AN385 build via the raw REPL.

usage: run_qemu.py FIRMWARE.elf SCRIPT.py [PREAMBLE] [-- extra qemu args]
PREAMBLE is Python source prepended to the script (e.g. "UNITS=[100];REPS=30").
qemu runs with -icount shift=0 (1 ns virtual time per guest instruction), so
time.ticks_us() in the guest counts guest instructions / 1000.
"""
import os, subprocess, sys, time, select

def main():
    argv = sys.argv[1:]
    extra = []
    if '--' in argv:
        k = argv.index('--')
        extra = argv[k + 1:]
        argv = argv[:k]
    fw, script = argv[0], argv[1]
    pre = argv[2] if len(argv) > 2 else ''
    src = (pre + '\n' if pre else '') + open(script).read()
    cmd = ['qemu-system-arm', '-machine', 'mps2-an385', '-nographic', '-monitor', 'null',
           '-semihosting', '-serial', 'stdio', '-icount', 'shift=0'] + extra + ['-kernel', fw]
    print('# cmd:', ' '.join(cmd), file=sys.stderr)
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    buf = b''

    def read_until(token, timeout):
        nonlocal buf
        t_end = time.time() + timeout
        while token not in buf:
            if time.time() > t_end:
                raise TimeoutError('waiting for %r; got %r' % (token, buf[-500:]))
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                d = os.read(p.stdout.fileno(), 4096)
                if not d:
                    raise EOFError(buf[-500:])
                buf += d
        i = buf.index(token) + len(token)
        out, buf = buf[:i], buf[i:]
        return out

    try:
        read_until(b'>>> ', 30)
        p.stdin.write(b'\r\x01')          # enter raw REPL
        p.stdin.flush()
        read_until(b'raw REPL; CTRL-B to exit\r\n>', 30)
        data = src.replace('\r\n', '\n').encode()
        for k in range(0, len(data), 256):
            p.stdin.write(data[k:k + 256])
            p.stdin.flush()
        p.stdin.write(b'\x04')
        p.stdin.flush()
        read_until(b'OK', 60)
        out = read_until(b'\x04>', 3600)   # stdout, \x04, stderr, \x04, '>'
        text = out.decode(errors='replace').replace('\x04', '\n[EOT]\n')
        sys.stdout.write(text + '\n')
    finally:
        p.kill()
        p.wait()

main()
