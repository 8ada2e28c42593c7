"""`evsectl install-micropython --board B --firmware FILE [--port P] [--drive DIR]`: write the
MicroPython base image from micropython.org onto a board, before `make flash` copies our firmware.

The board file's `hal` picks the method:
- rp2 (Raspberry Pi Pico): a board running MicroPython on --port is sent to its bootloader over
  the raw REPL; the UF2 is copied to the RPI-RP2 drive the bootrom shows; the Pico reboots.
- esp32 (ESP32-DevKitC): esptool writes the image at 0x1000 over --port.

Every image is checked before the board is touched: a UF2 must hold a whole image for the RP2040
(RP2040 datasheet 2.8.4.2), an ESP32 image must be the merged bootloader + partition table + app
for the ESP32 (ESP-IDF app image format).

Exit 0: done; 1: the board or the tool failed; 2: bad input (file, board, option)."""

from __future__ import annotations

import codecs
import contextlib
import glob
import io
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import serial
from serial.tools import list_ports

from host_tools import ports

PROG = "evsectl install-micropython"

# UF2 (github.com/microsoft/uf2): 512-byte blocks, 32-byte header, data, end magic.
UF2_BLOCK_BYTES = 512
UF2_MAGIC_START0 = 0x0A324655           # "UF2\n"
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_MAX_PAYLOAD_BYTES = 476
UF2_FLAG_NOT_MAIN_FLASH = 0x00000001    # the bootloader skips such blocks
UF2_FLAG_FAMILY_ID = 0x00002000         # the word at offset 28 is a family id, not a file size
UF2_HEADER = struct.Struct("<8I")       # magic0, magic1, flags, addr, size, block_no, blocks, family
UF2_END = struct.Struct("<I")
# RP2040 datasheet 2.8.4.2: the bootrom takes only blocks with the RP2040 family id, 256 bytes of
# payload each, written at 256-byte boundaries of flash (0x10000000-0x11000000).
RP2040_FAMILY_ID = 0xE48BFF56
RP2040_PAYLOAD_BYTES = 256
RP2040_FLASH_START = 0x10000000
RP2040_FLASH_END = 0x11000000
UF2_FAMILIES = {                         # to name what a wrong UF2 is for
    0xE48BFF56: "RP2040", 0xE48BFF57: "RP2040/RP2350 (absolute)", 0xE48BFF58: "RP2350 (data)",
    0xE48BFF59: "RP2350 (Pico 2)", 0xE48BFF5A: "RP2350 RISC-V (Pico 2)", 0xE48BFF5B: "RP2350 (Pico 2)",
    0x1C5F21B0: "ESP32", 0xBFDD4EEE: "ESP32-S2", 0xC47E5767: "ESP32-S3", 0xD42BA06C: "ESP32-C3",
    0x68ED2B88: "SAMD21", 0x55114460: "SAMD51", 0xADA52840: "nRF52840",
}

# ESP-IDF app image format: byte 0 is the magic, bytes 12-13 the chip id of the extended header.
ESP_IMAGE_MAGIC = 0xE9
ESP_IMAGE_HEADER_BYTES = 24
ESP_CHIP_IDS = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2",
                13: "ESP32-C6", 16: "ESP32-H2", 18: "ESP32-P4"}
ESP32_CHIP_ID = 0
# MicroPython's ESP32 .bin is bootloader (0x1000), partition table (0x8000) and app (0x10000)
# merged; it is written at 0x1000, so the table's first entry (magic AA 50) sits at 0x7000 in it.
ESP32_IMAGE_ADDR = 0x1000
ESP32_PARTITION_TABLE_IN_FILE = 0x8000 - ESP32_IMAGE_ADDR
ESP32_PARTITION_MAGIC = b"\xaa\x50"
ESP32_BAUD = 460800
ESPTOOL_CONNECT_ATTEMPTS = 7            # esptool's own default

# Where desktops mount the RP2040 bootrom's drive (udisks, older udisks, macOS).
DRIVE_GLOBS = ["/media/*/RPI-RP2", "/media/RPI-RP2", "/run/media/*/RPI-RP2", "/Volumes/RPI-RP2"]
DRIVE_BY_LABEL = "/dev/disk/by-label/RPI-RP2"   # attached but maybe not mounted (no automounter)
DRIVE_INFO_FILE = "INFO_UF2.TXT"
DRIVE_WAIT_S = 10.0     # the bootrom's drive shows up 1-3 s after the reset, then the automounter
DRIVE_POLL_S = 0.2
REBOOT_WAIT_S = 10.0    # the bootrom reboots as soon as the last block is in flash
PORT_WAIT_S = 10.0      # MicroPython's USB serial port comes up about a second after the reboot
REPL_TIMEOUT_S = 3.0
COPY_CHUNK_BYTES = 64 * UF2_BLOCK_BYTES
BOOTLOADER_CODE = "import time, machine; time.sleep_ms(100); machine.bootloader()"  # as mpremote's `bootloader`

DOWNLOADS = {"rp2": "https://micropython.org/download/RPI_PICO/ (the .uf2)",
             "esp32": "https://micropython.org/download/ESP32_GENERIC/ (the .bin, not the .app-bin)"}
_FILE = {"rp2": "the .uf2", "esp32": "the .bin, not the .app-bin"}


def download_hint(spec: dict) -> str:
    """Where the board's MicroPython comes from, by its file's hardware.micropython: a stock
    build's page on micropython.org (a variant such as ESP32_GENERIC-SPIRAM is on its board's
    page), or for a build of one's own, docs/bring-up.md."""
    hal = spec.get("hal")
    build = spec.get("hardware", {}).get("micropython", "")
    if not re.fullmatch(r"[A-Z0-9_]+(-[A-Z0-9_]+)?", build):
        return f"a MicroPython of your own build ({build}: docs/bring-up.md)" if build else DOWNLOADS[hal]
    board, _, variant = build.partition("-")
    return f"https://micropython.org/download/{board}/ ({_FILE[hal]}" + (f", variant {variant})" if variant else ")")


class BadInput(ValueError):
    """Exit 2: a file, board or option the user gave cannot be used."""


class BoardFailed(RuntimeError):
    """Exit 1: the board, the drive, the port or esptool did not do its part."""


# --- the images --------------------------------------------------------------------------------

def check_rp2040_uf2(data: bytes, name: str, get: str = DOWNLOADS["rp2"]) -> tuple[int, int]:
    """Refuse anything the RP2040 bootrom would not take as a whole image; return (blocks for the
    RP2040, bytes of flash they write). get: where the right image comes from."""
    if not data:
        raise BadInput(f"{name} is empty; download the image from {get}")
    if data[:4] != b"UF2\n":
        kind = ("an ESP32 image" if data[0] == ESP_IMAGE_MAGIC else
                "an ELF file" if data[:4] == b"\x7fELF" else "not a UF2 file")
        raise BadInput(f"{name} is {kind}: the Pico's bootloader takes a UF2 file; download it from {get}")
    if len(data) % UF2_BLOCK_BYTES:
        raise BadInput(f"{name} is cut short: {len(data)} bytes is not a whole number of 512-byte UF2 blocks "
                       f"(an interrupted download?); download it again from {get}")
    rp2040_blocks: dict[int, int] = {}   # block_no -> numBlocks
    other_families: set[int] = set()
    without_family = 0
    for offset in range(0, len(data), UF2_BLOCK_BYTES):
        index = offset // UF2_BLOCK_BYTES
        magic0, magic1, flags, addr, size, block_no, blocks, family = UF2_HEADER.unpack_from(data, offset)
        (magic_end,) = UF2_END.unpack_from(data, offset + UF2_BLOCK_BYTES - 4)
        if (magic0, magic1, magic_end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END) \
                or size > UF2_MAX_PAYLOAD_BYTES:
            raise BadInput(f"{name} is damaged: block {index} (byte {offset}) is not a UF2 block; "
                           f"download it again from {get}")
        if flags & UF2_FLAG_NOT_MAIN_FLASH:
            continue
        if not flags & UF2_FLAG_FAMILY_ID:
            without_family += 1
            continue
        if family != RP2040_FAMILY_ID:
            other_families.add(family)
            continue
        if size != RP2040_PAYLOAD_BYTES:
            raise BadInput(f"{name}: block {index} carries {size} bytes; the RP2040 bootloader takes "
                           f"{RP2040_PAYLOAD_BYTES} per block (not a UF2 made for the RP2040)")
        if addr % RP2040_PAYLOAD_BYTES or not RP2040_FLASH_START <= addr <= RP2040_FLASH_END - size:
            raise BadInput(f"{name}: block {index} writes to {addr:#010x}, not to the RP2040's flash "
                           f"({RP2040_FLASH_START:#010x}-{RP2040_FLASH_END:#010x}, 256-byte aligned)")
        if block_no in rp2040_blocks:
            raise BadInput(f"{name} is damaged: block number {block_no} appears twice; download it again from {get}")
        rp2040_blocks[block_no] = blocks
    if not rp2040_blocks:
        if other_families:
            chips = ", ".join(UF2_FAMILIES.get(f, f"family {f:#010x}") for f in sorted(other_families))
            raise BadInput(f"{name} is a UF2 for {chips}, not for the RP2040 of this board; "
                           f"download the Pico's image from {get}")
        raise BadInput(f"{name} holds no block for the RP2040 (family id {RP2040_FAMILY_ID:#010x})"
                       + (f"; its {without_family} blocks name no chip" if without_family else "")
                       + f": the Pico's bootloader would ignore it; download the image from {get}")
    totals = set(rp2040_blocks.values())
    if len(totals) != 1:
        raise BadInput(f"{name} is damaged: its blocks disagree on how many there are; download it again from {get}")
    (total,) = totals
    if max(rp2040_blocks) >= total:
        raise BadInput(f"{name} is damaged: block number {max(rp2040_blocks)} of {total}; download it again from {get}")
    missing = total - len(rp2040_blocks)
    if missing:
        raise BadInput(f"{name} is incomplete: {missing} of its {total} blocks for the RP2040 are missing "
                       f"(an interrupted download?); download it again from {get}")
    return total, total * RP2040_PAYLOAD_BYTES


def check_esp32_image(data: bytes, name: str, get: str = DOWNLOADS["esp32"]) -> None:
    """Refuse anything but MicroPython's merged ESP32 image (written at 0x1000). get: where the
    right image comes from."""
    if not data:
        raise BadInput(f"{name} is empty; download the image from {get}")
    if data[:4] == b"UF2\n":
        raise BadInput(f"{name} is a UF2 file (for a Pico's drive); the ESP32 needs the .bin from {get}")
    if data[0] != ESP_IMAGE_MAGIC:
        raise BadInput(f"{name} is not an ESP32 firmware image (it starts with {data[0]:#04x}, an image "
                       f"with 0xe9); download the image from {get}")
    if len(data) < ESP_IMAGE_HEADER_BYTES:
        raise BadInput(f"{name} is cut short ({len(data)} bytes); download it again from {get}")
    chip_id = int.from_bytes(data[12:14], "little")
    if chip_id != ESP32_CHIP_ID:
        chip = ESP_CHIP_IDS.get(chip_id, f"chip id {chip_id}")
        raise BadInput(f"{name} is an image for the {chip}, not for the ESP32 of this board; download the "
                       f"ESP32's image from {get}")
    if data[ESP32_PARTITION_TABLE_IN_FILE:ESP32_PARTITION_TABLE_IN_FILE + 2] != ESP32_PARTITION_MAGIC:
        raise BadInput(f"{name} has no partition table at 0x8000, so it is not the whole firmware (an .app-bin "
                       f"is the application alone, and a cut-short download looks the same); download the .bin "
                       f"from {get}")


# --- the serial port ---------------------------------------------------------------------------

def ports_found() -> str:
    return ", ".join(sorted(p.device for p in list_ports.comports())) or "none"


def check_port(port: str) -> None:
    """The port exists and nobody else has it open (pyserial's exclusive lock, as mpremote takes)."""
    if not os.path.exists(port):
        raise BadInput(f"no serial port at {port}; ports found: {ports_found()} "
                       "(is the board plugged in? `mpremote devs` lists ports with their USB ids)")
    try:
        ports.check_free(port)
    except ports.PortError as e:
        raise BoardFailed(str(e)) from None


def wait_for_port(port: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(DRIVE_POLL_S)
    return True


# --- RP2040: bootloader, drive, copy -----------------------------------------------------------

def enter_bootloader(port: str) -> None:
    """What `mpremote connect P bootloader` does, through mpremote's own raw REPL transport."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    not_micropython = (f"{port} does not answer as a MicroPython REPL, so the Pico cannot be sent to its "
                       "bootloader from here: unplug it, hold BOOTSEL while plugging it in, and run again")
    with contextlib.redirect_stdout(io.StringIO()):   # mpremote prints what it read when it gives up
        try:
            transport = SerialTransport(port, timeout=REPL_TIMEOUT_S)
        except (TransportError, serial.SerialException, OSError) as e:
            raise BoardFailed(f"cannot open {port}: {e}") from None
        try:
            transport.enter_raw_repl(soft_reset=False, timeout_overall=REPL_TIMEOUT_S)
            transport.exec_raw_no_follow(BOOTLOADER_CODE)
        except (TransportError, serial.SerialException, OSError, struct.error) as e:
            raise BoardFailed(f"{not_micropython} ({e})") from None
        finally:
            with contextlib.suppress(OSError, serial.SerialException):
                transport.close()   # the port may already be gone with the reset


def bootloader_info(drive: Path) -> dict[str, str] | None:
    """INFO_UF2.TXT as {key: value}; None when the drive has none (not mounted yet, not a drive)."""
    try:
        text = (drive / DRIVE_INFO_FILE).read_text(errors="replace")
    except OSError:
        return None
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def check_rp2040_drive(drive: Path, info: dict[str, str]) -> bool:
    """True for an RP2040 bootloader, False while INFO_UF2.TXT names no chip yet (still being
    written, or not a UF2 bootloader); refuses a UF2 bootloader of another chip."""
    # The RP2040 bootrom writes "Model: Raspberry Pi RP2" and "Board-ID: RPI-RP2"; the RP2350's
    # "RP2350" contains "RP2" too, so the whole value is compared.
    if info.get("Board-ID") == "RPI-RP2" or info.get("Model") == "Raspberry Pi RP2":
        return True
    chip = info.get("Model") or info.get("Board-ID")
    if not chip:
        return False
    raise BadInput(f"{drive} is the UF2 bootloader of {chip}, not of an RP2040: this board file is for the "
                   "Raspberry Pi Pico (RP2040); plug in the Pico, or use the board file for that board")


def candidate_drives(drive: str | None) -> list[Path]:
    if drive:
        return [Path(drive)]
    return [Path(found) for pattern in DRIVE_GLOBS for found in sorted(glob.glob(pattern))]


def find_drive(drive: str | None, timeout_s: float) -> Path | None:
    """The RP2040's bootloader drive (--drive, or where desktops mount it), waiting up to timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        for candidate in candidate_drives(drive):
            info = bootloader_info(candidate)
            if info is not None and check_rp2040_drive(candidate, info):
                return candidate
        if time.monotonic() >= deadline:
            return None
        time.sleep(DRIVE_POLL_S)


def no_drive(drive: str | None, port: str | None) -> Exception:
    how = "unplug the Pico, hold BOOTSEL while plugging it in, and run again"
    if drive:
        if Path(drive).is_dir():
            has_info = bootloader_info(Path(drive)) is not None
            why = f"its {DRIVE_INFO_FILE} names no chip" if has_info else f"it has no {DRIVE_INFO_FILE}"
            return BadInput(f"{drive} is not an RP2040 bootloader drive: {why}; give --drive the folder where "
                            "the RPI-RP2 drive is mounted")
        return BoardFailed(f"no drive at {drive} after {DRIVE_WAIT_S:g} s: {how}, or check where RPI-RP2 is mounted")
    if os.path.exists(DRIVE_BY_LABEL):
        return BoardFailed(f"the RPI-RP2 drive is attached but not mounted: mount it (udisksctl mount -b "
                           f"{DRIVE_BY_LABEL}) and run again, or give --drive DIR where you mounted it")
    after = f" after sending the board on {port} to its bootloader" if port else ""
    return BoardFailed(f"no RPI-RP2 drive found{after} (looked in {', '.join(DRIVE_GLOBS)}): {how}; "
                       "or give --drive DIR where it is mounted")


def mounted_from(drive: Path) -> str | None:
    """The device a mount point is mounted from (/proc/mounts), None when it is no mount point."""
    where = os.path.realpath(drive)
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        # /proc/mounts writes a space in a path as \040
        if len(fields) > 1 and fields[1].replace("\\040", " ") == where:
            return fields[0]
    return None


def drive_is_gone(drive: Path) -> bool:
    """The drive's files cannot be read any more, or (a mount nobody removed) its device has gone:
    the page cache still answers for a file read before."""
    if bootloader_info(drive) is None:
        return True
    device = mounted_from(drive)
    return device is not None and device.startswith("/dev/") and not os.path.exists(device)


def copy_to_drive(data: bytes, drive: Path, name: str) -> str | None:
    """Copy the UF2 onto the drive with a progress bar and fsync it. The bootrom reboots as soon as
    it has the last block, maybe before the host has written the rest (the directory entry): such
    an error once every byte went out is returned, and the drive going away then says it worked."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    target = drive / name
    written = 0
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        raise BoardFailed(f"cannot write to {drive}: {e.strerror} (is the drive mounted read-only?)") from None
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with Progress(*columns, console=Console(file=sys.stdout)) as progress:
            task = progress.add_task(f"copying {name} to {drive}", total=len(data))
            view = memoryview(data)
            while written < len(data):
                written += os.write(fd, view[written:written + COPY_CHUNK_BYTES])
                progress.update(task, completed=written)
        os.fsync(fd)
    except OSError as e:
        if written < len(data):
            raise BoardFailed(f"copying to {drive} stopped after {written} of {len(data)} bytes ({e.strerror}): "
                              "unplug the Pico, hold BOOTSEL while plugging it in, and run again") from None
        return e.strerror
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return None


def install_rp2040(args, image: bytes, name: str) -> None:
    if args.erase:
        raise BadInput("--erase is for the ESP32; on the Pico the UF2 rewrites what it needs "
                       "(flash_nuke.uf2 from the Raspberry Pi documentation erases everything)")
    blocks, flash_bytes = check_rp2040_uf2(image, name, args.download)
    print(f"{name}: {blocks} blocks, {flash_bytes // 1024} KiB for the RP2040's flash")
    drive = find_drive(args.drive, 0)
    if drive is None and args.port:
        check_port(args.port)
        print(f"sending the board on {args.port} to its bootloader")
        enter_bootloader(args.port)
    if drive is None:
        print(f"waiting up to {DRIVE_WAIT_S:g} s for the RPI-RP2 drive" + (f" at {args.drive}" if args.drive else ""))
        drive = find_drive(args.drive, DRIVE_WAIT_S)
    if drive is None:
        raise no_drive(args.drive, args.port)
    late_error = copy_to_drive(image, drive, Path(name).name)
    deadline = time.monotonic() + REBOOT_WAIT_S
    while not drive_is_gone(drive):
        if time.monotonic() >= deadline:
            raise BoardFailed(f"the Pico did not reboot within {REBOOT_WAIT_S:g} s of the copy ({drive} is still "
                              "there), so it did not take the image"
                              + (f" (the copy ended with: {late_error})" if late_error else "")
                              + ": unplug it, hold BOOTSEL while plugging it in, and run again")
        time.sleep(DRIVE_POLL_S)
    print("the Pico took the image and rebooted into MicroPython")
    if not args.port:
        print("its REPL comes up as a USB serial port in a second or two: `.venv/bin/mpremote devs` lists it")
    elif wait_for_port(args.port, PORT_WAIT_S):
        print(f"MicroPython's REPL is on {args.port}")
    else:
        print(f"warning: {args.port} did not come back within {PORT_WAIT_S:g} s; ports found: {ports_found()}",
              file=sys.stderr)


# --- ESP32: esptool ----------------------------------------------------------------------------

# esptool's last words -> what happened and what to do; the first match wins.
ESPTOOL_FAILURES: list[tuple[str, str]] = [
    (r"No module named esptool", "esptool is not installed in this Python: run `make setup`"),
    (r"This chip is (\S+?),? not ESP32", "the chip on {port} is an {0}, not the ESP32 of board {board}: use the "
                                         "board file and the MicroPython image for that chip"),
    (r"Wrong boot mode detected \((.*?)\)!", "the ESP32 on {port} started its firmware instead of its bootloader "
                                               "(boot mode {0}): hold BOOT, press and release EN, release BOOT, "
                                               "and run again"),
    (r"getting no sync reply", "the ESP32 on {port} is in its bootloader but its answers do not arrive: check the "
                               "USB-serial adapter's RX/TX wiring"),
    (r"Permission denied", "no permission to open {port}: add yourself to the dialout group "
                           "(sudo usermod -aG dialout $USER, then log in again)"),
    (r"Could not open \S+, the port is busy", "{port} is busy or went away: close mpremote/screen/the monitor, "
                                              "check the cable, and run again"),
    (r"No serial data received", "no ESP32 bootloader answered on {port}: hold BOOT, press and release EN, "
                                 "release BOOT, and run again (check too that the USB cable carries data and "
                                 "that {port} is the ESP32's port)"),
    (r"Invalid head of packet", "something answered on {port}, but not the ESP32's bootloader: is {port} the "
                                "ESP32's port? If so, hold BOOT, press and release EN, release BOOT, and run again"),
    (r"(will not fit|larger than the available flash size)[^\n]*", "the image does not fit the flash of the "
                                                                   "ESP32 on {port}: {0}"),
]


def explain_esptool_failure(transcript: str, port: str, board: str, returncode: int) -> str:
    for pattern, message in ESPTOOL_FAILURES:
        found = re.search(pattern, transcript)
        if found:
            return message.format(*found.groups(), port=port, board=board)
    lines = [line.strip() for line in transcript.splitlines() if line.strip()]
    fatal = [line for line in lines if "fatal error" in line.lower()]
    last = fatal[-1] if fatal else lines[-1] if lines else "no output"
    return f"esptool failed (exit {returncode}): {last}"


def run_esptool(argv: list[str], what: str, port: str, board: str) -> None:
    """Run esptool, streaming its output (progress included) to the user; on failure explain why."""
    print(f"{what}: {' '.join(['esptool', *argv[3:]])}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")   # its progress as it happens, not in blocks
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    transcript = []
    try:
        while chunk := os.read(proc.stdout.fileno(), 4096):
            text = decoder.decode(chunk)
            transcript.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
        returncode = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise BoardFailed(f"interrupted while {what}: the flash may be half-written; run the command again "
                          "(with --erase if MicroPython then does not start)") from None
    if returncode != 0:
        reason = explain_esptool_failure("".join(transcript), port, board, returncode)
        raise BoardFailed(f"{what} failed: {reason}")


def install_esp32(args, image: bytes, name: str) -> None:
    if not args.port:
        raise BadInput("the ESP32 is written over its serial port: give --port (e.g. /dev/ttyUSB0; "
                       f"ports found: {ports_found()})")
    if args.drive:
        raise BadInput("--drive is the RP2040's bootloader drive; the ESP32 is written over --port")
    check_esp32_image(image, name, args.download)
    check_port(args.port)
    esptool = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", args.port,
               "--baud", str(args.baud), "--connect-attempts", str(args.connect_attempts)]
    if args.erase:
        run_esptool([*esptool, "erase-flash"], "erasing the flash", args.port, args.board)
    run_esptool([*esptool, "write-flash", "-z", f"{ESP32_IMAGE_ADDR:#x}", name],
                f"writing {Path(name).name}", args.port, args.board)
    print(f"MicroPython is on the ESP32; its REPL is on {args.port} at 115200 baud")


INSTALLERS = {"rp2": install_rp2040, "esp32": install_esp32}


# --- the command -------------------------------------------------------------------------------

def read_board_hal(board: str) -> tuple[str, str]:
    from host_tools.sim.supervisor import read_board_file

    try:
        spec, path = read_board_file(board)
    except ValueError as e:
        raise BadInput(str(e)) from None
    hal = spec.get("hal")
    if hal == "sim":
        raise BadInput(f"board {board} is a virtual board: it runs the MicroPython unix port on this computer "
                       "and needs no base image (start it with `evsectl sim --board " + board + "`)")
    if hal not in INSTALLERS:
        raise BadInput(f"board file {path} has hal {hal!r}; install-micropython knows rp2 (rp2040-pico) "
                       "and esp32 (esp32-devkitc)")
    if spec.get("hardware", {}).get("mcu", "").startswith("RP2350"):
        # Its UF2 carries RP2350 family ids (and an absolute block first), which the RP2040 checks
        # here would refuse.
        raise BadInput(f"board {board} has an RP2350: install-micropython writes RP2040 images only; hold BOOTSEL, "
                       f"plug it in and copy the .uf2 from {download_hint(spec)} to the drive it shows "
                       "(docs/bring-up.md)")
    return hal, download_hint(spec)


def read_firmware(name: str, get: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        what = "is a folder, not a firmware file" if path.is_dir() else "no such file"
        raise BadInput(f"--firmware {name}: {what}; download the image from {get}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {name}: {e.strerror}") from None


def run(args) -> int:
    try:
        if args.baud <= 0 or args.connect_attempts <= 0:
            raise BadInput("--baud and --connect-attempts take a number above 0")
        hal, args.download = read_board_hal(args.board)
        image = read_firmware(args.firmware, args.download)
        INSTALLERS[hal](args, image, args.firmware)
    except BadInput as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except BoardFailed as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "install-micropython", help="write the MicroPython base image from micropython.org onto a board",
        description="Write the MicroPython base image onto a board, before `make flash` copies the charger "
                    "firmware; the board file names the build (hardware.micropython: RPI_PICO, RPI_PICO_W, "
                    "ESP32_GENERIC-SPIRAM, or one of your own, docs/bring-up.md). RP2040: the .uf2 is copied "
                    "to the RPI-RP2 drive; with --port, a board running MicroPython is sent to its bootloader "
                    "first, otherwise hold BOOTSEL while plugging it in. ESP32: esptool writes "
                    "the .bin at 0x1000 over --port. The image is "
                    "checked before the board is touched. Exit 0: done; 1: the board or the tool failed; "
                    "2: bad input (file, board, option).")
    from host_tools.cli import PORT_ENV, add_board
    add_board(p, required=True, metavar="B",
                   help="board file name in boards/ (or a path to one); its hal picks the method: rp2040-pico "
                        "or esp32-devkitc")
    p.add_argument("--firmware", required=True, metavar="FILE",
                   help="the MicroPython image the board file names: a .uf2 from micropython.org/download/ "
                        "(RPI_PICO, RPI_PICO_W) for an RP2040, a .bin (ESP32_GENERIC, its SPIRAM variant) for an "
                        "ESP32")
    p.add_argument("-p", "--port", metavar="P", default=os.environ.get(PORT_ENV) or None,
                   help=f"serial port (default ${PORT_ENV}). ESP32: required, esptool writes through it. RP2040: optional; a board "
                        "running MicroPython there is sent to its bootloader first, and afterwards the command "
                        "waits for the port to come back")
    p.add_argument("--drive", metavar="DIR", default=None,
                   help="RP2040: the folder where the RPI-RP2 drive is mounted (default: look in "
                        + ", ".join(DRIVE_GLOBS) + f", waiting up to {DRIVE_WAIT_S:g} s)")
    p.add_argument("--erase", action="store_true",
                   help="ESP32: erase the whole flash first, the files on it too (needed when another "
                        "firmware was on it, or when MicroPython does not start after an install)")
    p.add_argument("--baud", type=int, default=ESP32_BAUD, metavar="BAUD",
                   help=f"ESP32: baud rate while writing (default {ESP32_BAUD}; 115200 helps on a poor cable)")
    p.add_argument("--connect-attempts", type=int, default=ESPTOOL_CONNECT_ATTEMPTS, metavar="N",
                   help=f"ESP32: how often esptool tries to reach the bootloader (default "
                        f"{ESPTOOL_CONNECT_ATTEMPTS}, esptool's own)")
    p.set_defaults(func=run)
