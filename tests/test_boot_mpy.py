"""The boot, under the real MicroPython: once the App stands (evse.app.main), the console's
modules leave their names interned and their code let go, so its first command grows no names
table in a fragmented heap."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

# evse.app.main on sim-ac2's board file (the root at argv[1]) and FakeHal, until it would run
# the App: there, the console's first command's import, between two looks at the names' tables.
SCRIPT = r"""
import sys, micropython
import asyncio as real_asyncio
import evse
import evse.app
from fake_rig import FakeHal

if sys.argv[2] == "without":
    evse.preload_names = lambda *names: None

class Hal(FakeHal):
    guns = 2
    def watchdog_start(self, ms): pass
    def watchdog_feed(self): pass
    def safe(self): pass
    def deinit(self): pass

class Stop(Exception):
    pass

class Loop:
    def __getattr__(self, name):
        return getattr(real_asyncio, name)
    def run(self, coro):
        coro.close()
        print("loaded", "evse.cli" in sys.modules, "evse.console" in sys.modules)
        micropython.qstr_info()
        from evse import cli
        micropython.qstr_info()
        raise Stop

evse.app.asyncio = Loop()
try:
    evse.app.main(sys.argv[1], Hal(interlock=True))
except Stop:
    pass
"""


def _boot(tmp_path, variant):
    (tmp_path / "board.json").write_text((REPO / "boards" / "sim-ac2.json").read_text())
    script = tmp_path / "boot_probe.py"
    script.write_text(SCRIPT)
    done = subprocess.run([MICROPYTHON, str(script), str(tmp_path), variant],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:{REPO / 'tests'}:.frozen"))
    assert done.returncode == 0, done.stderr + done.stdout
    pools = [tuple(map(int, m)) for m in re.findall(r"n_pool=(\d+), n_qstr=(\d+)", done.stdout)]
    loaded = [line for line in done.stdout.splitlines() if line.startswith("loaded")]
    return loaded[0], pools


def test_the_console_s_first_command_interns_no_names_after_boot(tmp_path):
    loaded, (before, after) = _boot(tmp_path, "main")
    assert loaded == "loaded False False"   # their code is let go
    assert after[1] - before[1] <= 2, (before, after)   # cli's ~120 names were interned at boot
    assert after[0] == before[0]   # and no pool was grown


def test_without_the_preload_the_first_command_interns_the_console_s_names(tmp_path):
    _, (before, after) = _boot(tmp_path, "without")
    assert after[1] - before[1] > 50, (before, after)
