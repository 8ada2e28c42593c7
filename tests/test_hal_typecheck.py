"""The port HALs type-check against the MicroPython stubs of their port (micropython-rp2-stubs,
micropython-esp32-stubs; the Makefile installs each into its own folder because both ship a
`machine`). The stubs also serve as the typeshed, so `time.ticks_us`, `array` and the builtins
are MicroPython's, not CPython's."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# check_untyped_defs: the HAL has no annotations, and without it mypy would skip every body.
# follow_imports = silent (also for stubs): evse modules and the stubs are read for their types,
# but their own errors (the stubs have a few) are not ours to report.
MYPY_INI = """\
[mypy]
check_untyped_defs = True
follow_imports = silent
follow_imports_for_stubs = True
no_site_packages = True
warn_unused_ignores = True
warn_redundant_casts = True
"""


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_port_hal_type_checks_against_its_stubs(tmp_path, port):
    stubs = ROOT / ".venv" / "stubs" / port
    if not (stubs / "machine.pyi").exists():
        pytest.fail("%s missing: `make setup` installs micropython-%s-stubs there" % (stubs, port))
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI)
    env = dict(os.environ, MYPYPATH="%s:%s" % (stubs, ROOT / "firmware"))
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir", str(tmp_path / "cache"),
         "--custom-typeshed-dir", str(stubs), "firmware/evse/hal/mcu.py", "firmware/evse/hal/mcu_dc.py", "firmware/evse/hal/secc.py",
         "firmware/evse/hal/%s.py" % port],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
