"""Which serial port an evsectl command talks to: the one given with --port, or the only board
found (a MicroPython board on USB, or a virtual board that `evsectl sim` runs on this machine).

A virtual board announces itself with a file in REGISTRY while it runs, so auto-detection finds
it as it finds a board on USB."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import serial
import serial.tools.list_ports

# EVSE_SIM_REGISTRY keeps the virtual boards of a test apart from the others on the machine.
REGISTRY = Path(os.environ.get("EVSE_SIM_REGISTRY") or Path(tempfile.gettempdir()) / f"evse-sim-{os.getuid()}")

# USB vendor ids of the boards the firmware runs on: the RP2040's own USB, and the USB-serial
# bridges of ESP32 boards (CP210x on a DevKitC, CH340, FTDI, the ESP32-S3's own USB).
USB_VENDORS = {0x2E8A: "Raspberry Pi RP2040", 0x10C4: "CP210x (ESP32)", 0x1A86: "CH340 (ESP32)",
               0x0403: "FTDI", 0x303A: "Espressif USB"}


BAUD = 115200   # the firmware's console (and MicroPython's REPL) on every board


class PortError(RuntimeError):
    pass


def register_virtual(serial_path: str, control: str, board: str, tag: str = "") -> Path:
    """Announce a running virtual board; returns the file to remove when it stops. `tag` tells
    apart the boards one process runs (a virtual site's)."""
    REGISTRY.mkdir(mode=0o700, exist_ok=True)
    entry = REGISTRY / f"{os.getpid()}{tag}.json"
    entry.write_text(json.dumps({"serial": serial_path, "control": control, "board": board, "pid": os.getpid()}))
    return entry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def virtual_boards() -> list[dict]:
    """The virtual boards running on this machine (left-overs of killed ones are cleared)."""
    found = []
    for entry in sorted(REGISTRY.glob("*.json")) if REGISTRY.is_dir() else []:
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if _alive(info.get("pid", 0)) and os.path.exists(info.get("serial", "")):
            found.append(info)
        else:
            entry.unlink(missing_ok=True)
    return found


def candidates() -> list[tuple[str, str]]:
    """(port, what it is) for every board this machine can see."""
    found = [(p.device, USB_VENDORS[p.vid]) for p in serial.tools.list_ports.comports() if p.vid in USB_VENDORS]
    found += [(v["serial"], f"virtual board {v['board']} (evsectl sim, pid {v['pid']})") for v in virtual_boards()]
    return found


def _listing(found: list[tuple[str, str]]) -> str:
    return "; ".join(f"{port} ({what})" for port, what in found)


def resolve(port: str | None) -> str:
    """The port to use: `port` if it exists, else the only board found. PortError says why not."""
    if port:
        if "://" not in port and not os.path.exists(port):
            found = candidates()
            raise PortError(f"no serial port at {port}; " + (f"boards found: {_listing(found)}" if found else
                                                           "no board found (plugged in? `evsectl sim` running?)"))
        return port
    found = candidates()
    if not found:
        raise PortError("no board found: plug one in over USB or start `evsectl sim`, or give --port")
    if len(found) > 1:
        raise PortError(f"{len(found)} boards found, pick one with --port: {_listing(found)}")
    return found[0][0]


def open_port(port: str, timeout: float = 0.05, exclusive: bool = True) -> serial.Serial:
    """The port opened (for this program alone with `exclusive`, as mpremote opens it); PortError
    if another program holds it."""
    try:
        return serial.serial_for_url(port, BAUD, timeout=timeout, exclusive=exclusive)
    except (serial.SerialException, OSError) as e:
        if "lock" in str(e).lower() or e.errno in (errno.EBUSY, errno.EAGAIN):
            raise PortError(f"{port} is busy: another program has it open (mpremote, screen, evsectl monitor?); "
                            "close it and try again") from None
        if e.errno == errno.EACCES:
            raise PortError(f"no permission to open {port}: add yourself to the dialout group "
                            "(sudo usermod -aG dialout $USER, then log in again)") from None
        raise PortError(f"cannot open {port}: {e}") from None


def check_free(port: str) -> None:
    open_port(port).close()
