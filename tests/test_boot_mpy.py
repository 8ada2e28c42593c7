"""main.py's boot, under the real MicroPython: the console's modules leave their names interned
and their code let go, so its first command grows no names table in a fragmented heap."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

# main.py up to the application's import (with the board's root at argv[2]), then the
# application's import, then the console's first command's import.
SCRIPT = r"""
import sys, micropython
src = open(sys.argv[1]).read().replace('"/"', repr(sys.argv[2]))
if sys.argv[3] == "without":
    src = "\n".join(line for line in src.split("\n") if "preload_names" not in line)
exec(src[:src.index("import evse.app")])
import evse.app
print("loaded", "evse.cli" in sys.modules, "evse.console" in sys.modules)
micropython.qstr_info()
from evse import cli
micropython.qstr_info()
"""


def _boot(tmp_path, variant):
    script = tmp_path / "boot_probe.py"
    script.write_text(SCRIPT)
    done = subprocess.run([MICROPYTHON, str(script), str(REPO / "firmware" / "main.py"), str(tmp_path), variant],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen"))
    assert done.returncode == 0, done.stderr + done.stdout
    pools = [tuple(map(int, m)) for m in re.findall(r"n_pool=(\d+), n_qstr=(\d+)", done.stdout)]
    return done.stdout.splitlines()[0], pools


def test_the_console_s_first_command_interns_no_names_after_boot(tmp_path):
    loaded, (before, after) = _boot(tmp_path, "main")
    assert loaded == "loaded False False"   # their code is let go
    assert after[1] - before[1] <= 2, (before, after)   # cli's ~120 names were interned at boot
    assert after[0] == before[0]   # and no pool was grown


def test_without_the_preload_the_first_command_interns_the_console_s_names(tmp_path):
    _, (before, after) = _boot(tmp_path, "without")
    assert after[1] - before[1] > 50, (before, after)
