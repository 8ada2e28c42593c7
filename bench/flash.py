"""The flash part of `make bench`: `evsectl flash` after one firmware file changed, against a full
`mpremote cp -r` of the same compiled firmware, on the same virtual board in the same run.

Two times for the flash: all it does (the charger's status, the board's hashes, the maintenance
reset, writing, verifying, the soft reset and the wait for the firmware's banner), and its write
phase alone (the files that changed, the stale ones removed, the verify), which is what the
forced `mpremote cp -r` does. On the virtual board's pty bytes cost little; on a board's
115200-baud UART bridge every 10 kB takes about a second, so the bytes ratio is what a technician
feels there."""
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from host_tools import installed_tool
from host_tools.flash import ARCH, FIRMWARE, Flasher, compile_package
from host_tools.sim.supervisor import VirtualBoard

BOARD = "sim-ac2"
BOOT_S = 3.0
RUNS = 3   # each is timed this often; the median counts


def _median(values):
    return sorted(values)[len(values) // 2]


def run() -> dict:
    mpremote = installed_tool("mpremote")
    with tempfile.TemporaryDirectory(prefix="evse-bench-flash-") as tmp:
        firmware = Path(tmp) / "firmware"
        shutil.copytree(FIRMWARE, firmware, ignore=shutil.ignore_patterns("__pycache__"))
        board = VirtualBoard(BOARD, flash_dir=str(Path(tmp) / "flash")).start()
        try:
            time.sleep(BOOT_S)
            port = board.serial_path
            Flasher(port, BOARD, say=lambda *_: None, firmware=firmware).run()   # the board holds this firmware
            incremental = []
            changed = firmware / "evse" / "log.py"
            for i in range(RUNS):
                changed.write_text(changed.read_text() + f"\nBENCH_FLASH = {i}\n")
                incremental.append(Flasher(port, BOARD, say=lambda *_: None, firmware=firmware).run())
            files = compile_package(ARCH["sim"], firmware)
            full_bytes = sum(f.stat().st_size for f in files.values())
            package = firmware.parent / "build" / "mpy-host" / "evse"
            full = []
            for _ in range(RUNS):
                # Maintenance mode first, as a user does before copying (not timed).
                subprocess.run([mpremote, "connect", port, "exec", "open('maintenance', 'w').close()", "+", "reset"],
                               check=True, capture_output=True, timeout=60)
                time.sleep(BOOT_S)
                started = time.monotonic()
                subprocess.run([mpremote, "connect", port, "cp", "-rf", str(package), ":", "+",
                                "cp", "-f", str(firmware / "main.py"), str(firmware / "boot.py"), ":"],
                               check=True, capture_output=True, timeout=300)
                full.append(time.monotonic() - started)
                subprocess.run([mpremote, "connect", port, "rm", ":maintenance"], capture_output=True, timeout=60)
        finally:
            board.stop()
    inc_s = _median([r["seconds"] for r in incremental])
    inc_write_s = _median([r["write_seconds"] for r in incremental])
    inc = incremental[-1]
    full_s = _median(full)
    out = {
        "incremental_files_written": inc["written_files"],
        "incremental_bytes_written": inc["written_bytes"],
        "incremental_seconds": round(inc_s, 2),
        "incremental_write_seconds": round(inc_write_s, 3),
        "full_mpremote_cp_files": len(files),
        "full_mpremote_cp_bytes": full_bytes,
        "full_mpremote_cp_seconds": round(full_s, 2),
        "bytes_ratio": round(inc["written_bytes"] / full_bytes, 4),
        "seconds_ratio": round(inc_s / full_s, 2),
        "write_seconds_ratio": round(inc_write_s / full_s, 3),
        "method": f"virtual board {BOARD}; one line added to evse/log.py before each flash; median of {RUNS}. "
                  "incremental_seconds: all the flash does (status probe, hashes, maintenance reset, write, "
                  "verify, soft reset, wait for the banner); incremental_write_seconds: its write and verify; "
                  "mpremote: its forced copy (cp -rf) of the same compiled files, board in maintenance mode.",
    }
    print("flash after one file changed: %d file, %d bytes, written and verified in %.3f s, %.2f s with the resets "
          "and the banner; full mpremote cp -r: %d files, %d bytes in %.2f s (%.4f x the bytes; %.3f x the time to "
          "write, %.2f x with the resets)" % (
              inc["written_files"], inc["written_bytes"], inc_write_s, inc_s, len(files), full_bytes, full_s,
              out["bytes_ratio"], out["write_seconds_ratio"], out["seconds_ratio"]))
    return out
