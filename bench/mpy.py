"""Running a bench script under the MicroPython unix port, with the firmware and the test helpers
on its path (asyncio is frozen into the port: `.frozen`)."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
FAILED_LINES = 60   # of a script that failed, the last lines of its output are shown


def command(script: Path, heap: str, args: tuple = (), firmware: Path | None = None) -> tuple[list[str], dict]:
    """The command line and environment that run `script` with `heap` bytes of heap, the
    firmware's package from `firmware` (its sources unless given: a folder of .mpy files)."""
    env = dict(os.environ, MICROPYPATH=f"{firmware or ROOT / 'firmware'}:{ROOT / 'tests'}:.frozen")
    return [str(Path(sys.executable).parent / "micropython"), "-X", f"heapsize={heap}", str(script), *args], env


def run(script: Path, heap: str = "192K", args: tuple = ()) -> dict:
    """Runs `script` to its end; its last line of output is a JSON object, returned parsed."""
    cmd, env = command(script, heap, args)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{script.name} failed under MicroPython:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_with_events(script: Path, heap: str, args: tuple, on_event: Callable[[dict], None],
                    timeout_s: float, firmware: Path | None = None) -> dict:
    """Runs `script`, which prints one JSON object per line: each {"event": ...} is handed to
    `on_event` as it comes (the script waits for what the host does about it), and the last
    {"result": ...} is returned. Other lines ({"log": ...}, the firmware's prints) are kept for
    the message of a failure. Raises SystemExit when the script fails, ends without a result or
    runs past `timeout_s` (then it is killed)."""
    cmd, env = command(script, heap, args, firmware)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed = threading.Event()

    def kill():
        killed.set()
        proc.kill()
    timer = threading.Timer(timeout_s, kill)
    timer.start()
    lines = []
    result = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            msg = json.loads(line) if line.startswith("{") else {}
            if "event" in msg:
                on_event(msg)
            elif "result" in msg:
                result = msg["result"]
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or result is None:
        stderr = proc.stderr.read() if proc.stderr else ""
        why = f"killed after {timeout_s:g} s" if killed.is_set() else f"exit {proc.returncode}"
        raise SystemExit(f"{' '.join([script.name, *map(str, args)])} failed under MicroPython ({why}):\n"
                         f"{''.join(lines[-FAILED_LINES:])}{stderr}")
    return result
