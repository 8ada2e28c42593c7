#!/usr/bin/env python3
"""Combine guest trace profiles and host timings into results_table.txt.
usage: make_table.py  (reads profile_guest*.txt, results_host*_run*.txt in this directory)"""
import glob, statistics
F = 125e6
def prof(fn):
    d = {}
    for l in open(fn):
        p = l.split()
        if len(p) == 4 and not l.startswith(('#', ' ')): d[p[0]] = (int(p[1]), int(p[2]))
    return d
def host(pattern):
    runs = {}
    for fn in sorted(glob.glob(pattern)):
        for l in open(fn):
            p = l.split()
            if len(p) == 5 and not l.startswith('#'): runs.setdefault(p[0], []).append(float(p[2]))
    return {k: statistics.mean(v) for k, v in runs.items()}
g, ga = prof('profile_guest.txt'), prof('profile_guest-asm.txt')
h, ha = host('results_host_run*.txt'), host('results_host-asm_run*.txt')
out = []
w = out.append
w('RP2040 estimate: guest instructions from qemu mps2-an385 (-icount shift=0, -d exec trace), cycles priced with the')
w('Cortex-M0+ table (zero wait states: code/data as if in SRAM or always hitting the XIP cache), at 125 MHz.')
w('Host: x86-64 gcc -O2, same mbedTLS 3.6.2 source + same rp2 config (=> no MBEDTLS_HAVE_ASM, 64-bit limbs), mean of run medians.')
w('')
hdr = '%-26s %12s %12s %6s %10s %10s %9s' % ('op', 'guest_insns', 'M0+_cycles', 'CPI', 'RP2040_ms', 'host_us', 'ratio')
w('== rp2 configuration (as MicroPython v1.28 rp2 builds it)'); w(hdr)
for k, (n, c) in g.items():
    ms = c / F * 1e3
    w('%-26s %12d %12d %6.3f %10.3f %10.2f %9.0f' % (k, n, c, c / n, ms, h[k], ms * 1e3 / h[k]))
w('')
w('== variant: + MBEDTLS_HAVE_ASM (guest: thumb-1 MULADDC asm; host: amd64 MULADDC asm) -- NOT the shipped rp2 config'); w(hdr)
for k, (n, c) in ga.items():
    ms = c / F * 1e3
    w('%-26s %12d %12d %6.3f %10.3f %10.2f %9.0f' % (k, n, c, c / n, ms, ha[k], ms * 1e3 / ha[k]))
w('')
def tot(d, hh, items, title):
    c = sum(m * d[k][1] for k, m in items); n = sum(m * d[k][0] for k, m in items); hu = sum(m * hh[k] for k, m in items)
    w('%-70s insns %11d  cycles %11d  RP2040 %7.1f ms  host %8.1f us  ratio %5.0f' % (title, n, c, c / F * 1e3, hu, c / F * 1e6 / hu))
for name, d, hh in (('rp2 config', g, h), ('+HAVE_ASM variant', ga, ha)):
    w('== client handshake public-key totals, %s' % name)
    tot(d, hh, [('ecdsa_p256_verify_cert', 1), ('ecdsa_p256_verify_ske', 1), ('ecdh_p256_gen_public', 1), ('ecdh_p256_compute_shared', 1)],
        'ECDSA P-256 chain: 2 x ECDSA verify + ECDH keygen + shared')
    tot(d, hh, [('ecdsa_p256_verify_cert', 1), ('ecdsa_p256_verify_ske', 1), ('ecdh_p256_gen_public', 1), ('ecdh_p256_compute_shared', 1), ('x509_parse_476B', 1)],
        '  same + 1 x X.509 parse')
    tot(d, hh, [('rsa2048_verify_fresh', 2), ('ecdh_p256_gen_public', 1), ('ecdh_p256_compute_shared', 1)],
        'RSA-2048 chain + ECDHE: 2 x RSA verify (fresh key) + ECDH keygen + shared')
    w('')
open('results_table.txt', 'w').write('\n'.join(out) + '\n')
print('\n'.join(out))
