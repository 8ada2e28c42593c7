"""The application under the real MicroPython: whatever ends it, every contactor opens and
every pilot goes to -12 V before the exception leaves main(); a task that fails starts again."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

# sim-ac2 on FakeHal: its front end has an interlock, an EV sits in C, the RCD self-test passes
# at once (FakeHal's model clock does not run here); the pilot read fails at the end_after-th
# sample, and every coil and pilot drive is logged, the board's safe() included.
PRELUDE = r"""
import sys
import asyncio
import evse.app
from evse import console
from fake_rig import FakeHal

class Hal(FakeHal):
    guns = 2
    def __init__(self, end_after):
        FakeHal.__init__(self, interlock=True)
        self.samples = 0
        self.end_after = end_after
        self.ev = "C"
        self.rcd_test_ms = 0
        self.log = []
    def sample_pilot(self, gun):
        self.samples += 1
        if self.samples == self.end_after:
            raise OSError("pilot ADC stopped answering")
        return FakeHal.sample_pilot(self, gun)
    def set_contactor(self, gun, closed):
        FakeHal.set_contactor(self, gun, closed)
        self.log.append(("K", gun, closed))
    def set_pilot(self, gun, duty):
        FakeHal.set_pilot(self, gun, duty)
        self.log.append(("P", gun, duty))
    def watchdog_start(self, ms): pass
    def watchdog_feed(self): pass
    def safe(self):
        self.log.append(("safe",))
        for g in (1, 2):
            self.set_contactor(g, False)
            self.set_pilot(g, 0)
    def deinit(self): pass

def run(end_after, raises):
    hal = Hal(end_after)
    try:
        evse.app.main(sys.argv[1], hal)
    except raises as e:
        print("raised:", e)
    print("closed", ("K", 1, True) in hal.log or ("K", 2, True) in hal.log)
    print("after", hal.log[hal.log.index(("safe",)):])
"""


def run_app(tmp_path, script, board=None):
    """PRELUDE + script under MicroPython on sim-ac2's board file (or `board`); its output."""
    (tmp_path / "board.json").write_text(json.dumps(board) if board else (REPO / "boards" / "sim-ac2.json").read_text())
    path = tmp_path / "run.py"
    path.write_text(PRELUDE + script)
    env = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:{REPO / 'tests'}:.frozen")
    # The sources compile here (a board loads .mpy): 192K had as little as 2 KB to spare, and a
    # change of one line of evse/__init__.py moved the heap's layout enough to run out.
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", str(path), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    return r.stdout + r.stderr


def safe_at_the_end(out):
    after = out.split("after ", 1)[1]
    return all(drive in after for drive in ("('K', 1, False)", "('K', 2, False)", "('P', 1, 0)", "('P', 2, 0)"))


@pytest.mark.parametrize("fail_after", [3, 200])
def test_an_exception_in_the_control_loop_leaves_every_contactor_open_and_every_pilot_at_minus_12v(tmp_path, fail_after):
    out = run_app(tmp_path, "run(%d, OSError)\n" % fail_after)
    assert "raised: pilot ADC stopped answering" in out, out
    assert "evse: stopped; contactors open, pilots at -12 V" in out and safe_at_the_end(out)
    if fail_after == 200:  # long enough for the EV in C to have had its contactor closed
        assert "closed True" in out


KEEP_SCRIPT = r"""
fails = []
async def console_task(app):
    if len(fails) < 2:
        fails.append(app.ticks)
        if len(fails) == 1:
            raise MemoryError("memory allocation failed, allocating 4096 bytes")
        raise ValueError("a bug")
    print("console task running, ticks", app.ticks)
    print(console.timing_line(app))
    while True:
        await asyncio.sleep_ms(1000)

evse.app.App.console = console_task
run(400, OSError)   # about 4 s of ticks for 2 guns
"""


def test_a_task_that_fails_or_runs_out_of_memory_is_logged_counted_and_started_again(tmp_path):
    board = json.loads((REPO / "boards" / "sim-ac2.json").read_text())
    board["tick_ms"] = 20   # the ticks below are counted at 20 ms (sim-ac2 ticks at 50)
    out = run_app(tmp_path, KEEP_SCRIPT, board)
    assert "console: the task ran out of memory; started again in 1000 ms" in out, out
    assert "console: the task failed (ValueError('a bug',)); started again in 1000 ms" in out, out
    assert "restarted: console 2" in out
    # The guns' control ran on meanwhile: 2 s of restarts are about 100 ticks.
    running = int(out.split("console task running, ticks ", 1)[1].split()[0])
    assert running >= 80, out
    assert "raised: pilot ADC stopped answering" in out


SHARE_SCRIPT = r"""
shares = [0]
real_share = evse.app.App.share_steps
def share_steps(app, now_ms):
    shares[0] += 1
    if shares[0] == 30:   # a few seconds in: the guns have closed
        raise KeyError("a bug in the sharing")
    return real_share(app, now_ms)
evse.app.App.share_steps = share_steps
run(-1, KeyError)
"""


def test_a_bug_in_the_sharing_task_stops_the_charger_safe_as_in_the_control_task(tmp_path):
    out = run_app(tmp_path, SHARE_SCRIPT)
    assert "raised:" in out and "a bug in the sharing" in out, out
    assert "closed True" in out and "evse: stopped; contactors open, pilots at -12 V" in out
    assert safe_at_the_end(out)


def test_the_estimated_registers_on_flash_are_those_of_the_moment_the_charger_stopped(tmp_path):
    # Guns without a meter: their registers go to flash every minute while they grow; a stop
    # (here the pilot ADC failing after a few seconds of charging) writes them as they are.
    board = json.loads((REPO / "boards" / "sim-ac2.json").read_text())
    for gun in board["guns"]:
        gun.pop("meter", None)
    out = run_app(tmp_path, """
hal = Hal(300)
hal.amps = 10.0
try:
    evse.app.main(sys.argv[1], hal)
except OSError as e:
    print("raised:", e)
print("closed", ("K", 1, True) in hal.log)
""", board)
    assert "raised: pilot ADC stopped answering" in out and "closed True" in out, out
    energy = json.loads((tmp_path / "energy.json").read_text())
    assert energy[0] > 0 or energy[1] > 0, energy


UNLOAD = r"""
import gc, sys
import evse
gc.collect()
before = gc.mem_alloc()
from evse.ocpp import fwboot
fwboot.resume_install(sys.argv[1])
http_at_boot = "evse.ocpp.http" in sys.modules or "evse.ocpp.bundle" in sys.modules
del fwboot
gc.collect()
loaded = gc.mem_alloc()
evse.unload(*evse.UPDATE_MODULES)
gc.collect()
after = gc.mem_alloc()
import evse.ocpp
print(loaded - before, loaded - after, "evse.ocpp.fw" in sys.modules or "evse.ocpp.fwboot" in sys.modules,
      hasattr(evse.ocpp, "fw") or hasattr(evse.ocpp, "fwboot"), http_at_boot)
from evse.ocpp import fwboot   # loads again at the next boot
print(fwboot.installed_version(sys.argv[1]) is None)
"""


def test_the_update_code_main_py_loads_at_boot_gives_its_heap_back(tmp_path):
    """main.py finishes an interrupted update with evse.ocpp.fw, then lets it go: the heap it
    took (about 16 KB here, compiled from source) is free again but for the names it interned and
    asyncio, and it loads again when an update comes. Its HTTP client and the bundle's checks are
    not loaded at boot at all (fw loads them for a download and an install)."""
    script = tmp_path / "unload.py"
    script.write_text(UNLOAD)
    done = subprocess.run([MICROPYTHON, "-X", "heapsize=2M", str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen"))
    assert done.returncode == 0, done.stdout + done.stderr
    took, freed, in_modules, on_package, http_at_boot = done.stdout.split()[:5]
    # fw goes; what the link needs too (store, slices) stays.
    assert int(freed) > 6000 and int(freed) > 0.4 * int(took), done.stdout
    assert (in_modules, on_package, http_at_boot) == ("False", "False", "False")
    assert done.stdout.split()[-1] == "True"


JOBS = r"""
import sys
import evse
evse.update_job(1)                       # an update starts
from evse.ocpp import fw
evse.update_job(1)                       # a diagnostics upload starts
evse.update_job(-1)                      # ... and ends: the update's code stays
print("evse.ocpp.fw" in sys.modules)
evse.update_job(0)                       # a check while the update runs: stays too
print("evse.ocpp.fw" in sys.modules)
evse.update_job(-1)                      # the update ends: now it goes
print("evse.ocpp.fw" in sys.modules)
evse.unload(*evse.UPDATE_MODULES)        # again: nothing to let go, no error
evse.update_job(-1)
print("ok")
"""


def test_the_update_code_stays_while_any_job_runs_and_letting_go_twice_is_harmless(tmp_path):
    script = tmp_path / "jobs.py"
    script.write_text(JOBS)
    done = subprocess.run([MICROPYTHON, str(script)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen"))
    assert done.stdout.split() == ["True", "True", "False", "ok"], done.stdout + done.stderr


BOARD_CHECK = r"""
import gc, json, sys
import asyncio, evse, evse.config   # asyncio: the app's, loaded at boot whatever the check loads
with open(sys.argv[1] + "/board.json") as f:
    text = f.read()
gc.collect()
before = gc.mem_alloc()
data = json.loads(text)
data.pop("hardware", None)
gc.collect()
before = gc.mem_alloc() + (gc.mem_alloc() - before)   # the board's data, which stays
board = evse.config.load_board(sys.argv[1])
gc.collect()
kept = gc.mem_alloc() - before
print(kept, "evse.boardcheck" in sys.modules, hasattr(evse, "boardcheck"), "evse.meters" in sys.modules,
      "evse.modbus" in sys.modules)
try:
    evse.config.check_board(dict(board, kind="ev"))
except evse.config.ConfigError as e:
    print("refused", "kind" in str(e), "evse.boardcheck" in sys.modules)
import evse.boardcheck, evse.meters   # what the check had loaded, loaded again: their names are known
gc.collect()
print(gc.mem_alloc() - before - kept)
"""


def test_the_board_check_loads_for_the_check_and_gives_its_heap_back(tmp_path):
    """The board file's checks (evse.boardcheck) run at boot and then go, with the modules they
    loaded (a board without meters keeps no evse.meters for their line settings): what a good
    board file leaves in the heap beside its data is the names the checks used, far less than
    the checks take while loaded (the code as a board holds it: .mpy); a bad one is refused by
    name, and the checks go then too."""
    from host_tools.sim.supervisor import compile_to_mpy
    shutil.copytree(REPO / "firmware" / "evse", tmp_path / "evse")
    compile_to_mpy(tmp_path / "evse")
    board = json.loads((REPO / "boards" / "rp2350-pico2-w.json").read_text())
    (tmp_path / "board.json").write_text(json.dumps(board))
    script = tmp_path / "check.py"
    script.write_text(BOARD_CHECK)
    done = subprocess.run([MICROPYTHON, "-X", "heapsize=2M", str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, MICROPYPATH=f"{tmp_path}:.frozen"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    kept, *loaded_still = lines[0].split()
    assert loaded_still == ["False"] * 4   # the checks, and the meters' line settings they read
    assert lines[1] == "refused True False"
    loaded = int(lines[2])
    assert loaded > 20000 and int(kept) < loaded / 3, done.stdout
