"""The application under the real MicroPython: whatever ends it, every contactor opens and
every pilot goes to -12 V before the exception leaves main()."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

SCRIPT = r"""
import sys
import evse.app
from fake_rig import FakeHal

class Exploding(FakeHal):
    guns = 2
    def __init__(self, fail_after):
        FakeHal.__init__(self, interlock=True)  # sim-ac2's front end has one
        self.samples = 0
        self.fail_after = fail_after
        self.ev = "C"
        self.rcd_test_ms = 0  # the model clock of FakeHal does not run here
        self.log = []
    def sample_pilot(self, gun):
        self.samples += 1
        if self.samples == self.fail_after:
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

hal = Exploding(int(sys.argv[2]))
try:
    evse.app.main(sys.argv[1], hal)
except OSError as e:
    print("raised:", e)
closed_while_running = any(k == ("K", 1, True) or k == ("K", 2, True) for k in hal.log)
tail = hal.log[hal.log.index(("safe",)):]
print("closed", closed_while_running)
print("after", tail)
"""


@pytest.mark.parametrize("fail_after", [3, 200])
def test_an_exception_in_the_control_loop_leaves_every_contactor_open_and_every_pilot_at_minus_12v(tmp_path, fail_after):
    (tmp_path / "board.json").write_text((REPO / "boards" / "sim-ac2.json").read_text())
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:{REPO / 'tests'}:.frozen")
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=192K", str(script), str(tmp_path), str(fail_after)],
                       capture_output=True, text=True, env=env, timeout=60)
    out = r.stdout
    assert "raised: pilot ADC stopped answering" in out, out + r.stderr
    assert "evse: stopped; contactors open, pilots at -12 V" in out
    after = out.split("after ", 1)[1]
    assert "('K', 1, False)" in after and "('K', 2, False)" in after
    assert "('P', 1, 0)" in after and "('P', 2, 0)" in after
    if fail_after == 200:  # long enough for the EV in C to have had its contactor closed
        assert "closed True" in out
