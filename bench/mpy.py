"""Running a bench script under the MicroPython unix port, with the firmware and the test helpers
on its path (asyncio is frozen into the port: `.frozen`)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(script: Path, heap: str, args: tuple = ()) -> tuple[list[str], dict]:
    """The command line and environment that run `script` with `heap` bytes of heap."""
    env = dict(os.environ, MICROPYPATH=f"{ROOT / 'firmware'}:{ROOT / 'tests'}:.frozen")
    return [str(Path(sys.executable).parent / "micropython"), "-X", f"heapsize={heap}", str(script), *args], env


def run(script: Path, heap: str = "192K", args: tuple = ()) -> dict:
    """Runs `script` to its end; its last line of output is a JSON object, returned parsed."""
    cmd, env = command(script, heap, args)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"{script.name} failed under MicroPython:\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])
