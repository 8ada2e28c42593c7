"""`evsectl install-micropython`: the image checks, the RP2040 path against a folder standing in
for the RPI-RP2 drive (and a pseudo-terminal playing MicroPython's raw REPL), the ESP32 path with
the real esptool against a pseudo-terminal where no bootloader answers, and every error a user
can cause. No hardware."""

from __future__ import annotations

import argparse
import os
import select
import shutil
import struct
import threading
import time
from pathlib import Path

import pytest
import serial
from hypothesis import assume, given, strategies as st

from host_tools import install_mp
from host_tools.install_mp import BadInput, check_esp32_image, check_rp2040_uf2

RP2040 = 0xE48BFF56
RP2350_ARM_S = 0xE48BFF59
RP2XXX_ABSOLUTE = 0xE48BFF57
FAMILY_FLAG = 0x2000
NOT_MAIN_FLASH = 0x1
FLASH = 0x10000000
RP2040_INFO = "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n"
RP2350_INFO = "UF2 Bootloader v1.0\r\nModel: Raspberry Pi RP2350\r\nBoard-ID: RP2350\r\n"


def uf2_block(block_no: int, blocks: int, payload: bytes = b"", *, family: int = RP2040,
              flags: int = FAMILY_FLAG, addr: int | None = None, size: int = 256) -> bytes:
    header = struct.pack("<8I", 0x0A324655, 0x9E5D5157, flags, FLASH + 256 * block_no if addr is None else addr,
                         size, block_no, blocks, family)
    return header + payload.ljust(476, b"\0") + struct.pack("<I", 0x0AB16F30)


def uf2(blocks: int, family: int = RP2040) -> bytes:
    """A UF2 laid out like MicroPython's RPI_PICO image: consecutive 256-byte blocks from 0x10000000."""
    return b"".join(uf2_block(n, blocks, bytes((n + i) % 251 for i in range(256)), family=family)
                    for n in range(blocks))


def esp32_image(chip_id: int = 0, partition_table: bool = True) -> bytes:
    """MicroPython's ESP32 .bin: bootloader header (magic, 3 segments, DIO, 4 MB/40 MHz), the chip
    id in the extended header, the partition table at 0x8000 - 0x1000."""
    image = bytearray(b"\xff" * 0x8000)
    image[:16] = bytes([0xE9, 3, 2, 0x20]) + (0x40080400).to_bytes(4, "little") + bytes(4) \
        + chip_id.to_bytes(2, "little") + bytes(2)
    if partition_table:
        image[0x7000:0x7002] = b"\xaa\x50"
    return bytes(image)


VALID_UF2 = uf2(4)


def evsectl(*argv: str) -> int:
    """`evsectl install-micropython ARGV...` through the parser add_parser builds."""
    parser = argparse.ArgumentParser(prog="evsectl")
    install_mp.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["install-micropython", *argv])
    return args.func(args)


@pytest.fixture(autouse=True)
def no_real_drives_and_short_waits(tmp_path, monkeypatch):
    """Search only a folder of the test for the drive, and wait fractions of a second."""
    monkeypatch.setattr(install_mp, "DRIVE_GLOBS", [str(tmp_path / "media" / "*" / "RPI-RP2")])
    monkeypatch.setattr(install_mp, "DRIVE_BY_LABEL", str(tmp_path / "by-label" / "RPI-RP2"))
    monkeypatch.setattr(install_mp, "DRIVE_WAIT_S", 0.3)
    monkeypatch.setattr(install_mp, "DRIVE_POLL_S", 0.02)
    monkeypatch.setattr(install_mp, "REBOOT_WAIT_S", 3.0)
    monkeypatch.setattr(install_mp, "PORT_WAIT_S", 0.3)


@pytest.fixture
def pty_port():
    """A serial port nobody answers on: (master fd, the port's path)."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def rpi_rp2_drive(path: Path, info: str = RP2040_INFO) -> Path:
    path.mkdir(parents=True)
    (path / "INFO_UF2.TXT").write_text(info)
    (path / "INDEX.HTM").write_text("<html></html>")
    return path


def play_pico_rebooting(drive: Path, size: int) -> tuple[threading.Thread, dict]:
    """Once a whole UF2 of `size` bytes has landed on the drive, keep its bytes and take the
    drive away, as the Pico reboots when its bootrom has the last block."""
    landed: dict[str, bytes] = {}

    def watch():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for copied in drive.glob("*.uf2") if drive.is_dir() else ():
                if copied.stat().st_size == size:
                    landed[copied.name] = copied.read_bytes()
                    shutil.rmtree(drive)
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher, landed


# --- the UF2 check -----------------------------------------------------------------------------

def test_uf2_laid_out_like_micropythons_is_taken_with_its_block_count():
    assert check_rp2040_uf2(VALID_UF2, "RPI_PICO.uf2") == (4, 1024)


def test_uf2_blocks_for_other_families_and_not_main_flash_are_skipped_as_the_bootrom_does():
    mixed = (uf2_block(0, 1, family=RP2XXX_ABSOLUTE, addr=0x10FFFF00) + VALID_UF2
             + uf2_block(0, 1, flags=FAMILY_FLAG | NOT_MAIN_FLASH, addr=0))
    assert check_rp2040_uf2(mixed, "mixed.uf2") == (4, 1024)


@pytest.mark.parametrize("data, says", [
    (uf2(3, family=RP2350_ARM_S), "is a UF2 for RP2350 (Pico 2), not for the RP2040"),
    (uf2_block(0, 1, family=RP2XXX_ABSOLUTE, addr=0x10FFFF00) + uf2(2, family=RP2350_ARM_S),
     "RP2350 (Pico 2), not for the RP2040"),
    (uf2_block(0, 1, flags=0), "holds no block for the RP2040"),
    (VALID_UF2[:-512], "is incomplete: 1 of its 4 blocks for the RP2040 are missing"),
    (VALID_UF2[:-100], "is cut short"),
    (VALID_UF2[:512] * 2, "block number 0 appears twice"),
    (VALID_UF2[:512] + uf2_block(1, 5), "blocks disagree on how many there are"),
    (VALID_UF2[:508] + b"\0\0\0\0" + VALID_UF2[512:], "block 0 (byte 0) is not a UF2 block"),
    (esp32_image(), "is an ESP32 image"),
    (b"\x7fELF" + bytes(60), "is an ELF file"),
    (b"<!DOCTYPE html>", "is not a UF2 file"),
    (b"", "is empty"),
])
def test_uf2_the_rp2040_would_not_take_whole_is_refused_naming_why_and_where_to_get_one(data, says):
    with pytest.raises(BadInput) as refused:
        check_rp2040_uf2(data, "RPI_PICO.uf2")
    assert says in str(refused.value)
    assert "micropython.org/download/RPI_PICO/" in str(refused.value)


@pytest.mark.parametrize("data, says", [
    (uf2_block(0, 1, size=200), "carries 200 bytes; the RP2040 bootloader takes 256"),
    (uf2_block(0, 1, addr=0x20000000), "writes to 0x20000000, not to the RP2040's flash"),
    (uf2_block(0, 1, addr=FLASH + 8), "writes to 0x10000008, not to the RP2040's flash"),
])
def test_uf2_blocks_the_rp2040_cannot_write_are_refused_naming_the_block(data, says):
    with pytest.raises(BadInput, match=says):
        check_rp2040_uf2(data, "RPI_PICO.uf2")


@given(st.binary(max_size=2048))
def test_random_bytes_are_never_taken_for_an_rp2040_uf2(data):
    with pytest.raises(BadInput):
        check_rp2040_uf2(data, "random.bin")


HEADER_BYTES = st.one_of(st.integers(0, 31), st.integers(508, 511), st.integers(32, 507))


@given(block=st.integers(0, 3), at=HEADER_BYTES, value=st.integers(0, 255))
def test_a_changed_byte_is_refused_unless_the_rp2040_bootrom_would_still_take_the_image(block, at, value):
    data = bytearray(VALID_UF2)
    position = 512 * block + at
    assume(data[position] != value)
    data[position] = value
    flags, addr = struct.unpack_from("<2I", data, 512 * block + 8)
    still_whole = (32 <= at < 508                                              # payload and padding
                   or 8 <= at < 12 and flags & FAMILY_FLAG and not flags & NOT_MAIN_FLASH
                   or 12 <= at < 16 and addr % 256 == 0 and FLASH <= addr <= 0x11000000 - 256)
    if still_whole:
        assert check_rp2040_uf2(bytes(data), "changed.uf2") == (4, 1024)
    else:
        with pytest.raises(BadInput):
            check_rp2040_uf2(bytes(data), "changed.uf2")


UF2_FIELDS = [   # flags, target address, payload bytes, block number, blocks, family: right and wrong values
    st.sampled_from([FAMILY_FLAG, 0, FAMILY_FLAG | NOT_MAIN_FLASH, FAMILY_FLAG | 0x8000]),
    st.sampled_from([FLASH, FLASH + 256, FLASH + 0x1000, FLASH + 4, 0x20000000, 0x11000000 - 256, 0x11000000]),
    st.sampled_from([256, 255, 476]),
    st.integers(0, 4),
    st.integers(1, 4),
    st.sampled_from([RP2040, RP2350_ARM_S, RP2XXX_ABSOLUTE, 0x12345678]),
]


@st.composite
def uf2_headers(draw) -> list[list[int]]:
    """The headers of a whole RP2040 image, with up to two fields changed and maybe a block of
    anything put in somewhere."""
    blocks = draw(st.integers(1, 4))
    headers = [[FAMILY_FLAG, FLASH + 256 * n, 256, n, blocks, RP2040] for n in range(blocks)]
    for _ in range(draw(st.integers(0, 2))):
        field = draw(st.integers(0, 5))
        headers[draw(st.integers(0, blocks - 1))][field] = draw(UF2_FIELDS[field])
    if draw(st.booleans()):
        headers.insert(draw(st.integers(0, blocks)), [draw(field) for field in UF2_FIELDS])
    return headers


def rp2040_takes(headers) -> bool:
    """The RP2040 datasheet's rule (2.8.4.2), said once more: its blocks are those with the family
    flag and id, in main flash; each carries 256 bytes to a 256-aligned flash address; together
    they are blocks 0..n-1 of n."""
    own = [h for h in headers if h[0] & FAMILY_FLAG and not h[0] & NOT_MAIN_FLASH and h[5] == RP2040]
    if not own or any(size != 256 or addr % 256 or not FLASH <= addr <= 0x11000000 - 256
                      for _, addr, size, *_ in own):
        return False
    totals = {h[4] for h in own}
    return len(totals) == 1 and sorted(h[3] for h in own) == list(range(totals.pop()))


@given(uf2_headers())
def test_uf2_with_changed_headers_is_taken_exactly_when_the_rp2040_would_take_it(headers):
    data = b"".join(uf2_block(no, blocks, family=family, flags=flags, addr=addr, size=size)
                    for flags, addr, size, no, blocks, family in headers)
    if rp2040_takes(headers):
        check_rp2040_uf2(data, "built.uf2")
    else:
        with pytest.raises(BadInput):
            check_rp2040_uf2(data, "built.uf2")


# --- the ESP32 image check ---------------------------------------------------------------------

def test_esp32_image_merged_like_micropythons_is_taken():
    check_esp32_image(esp32_image(), "ESP32_GENERIC.bin")


@pytest.mark.parametrize("data, says", [
    (VALID_UF2, "is a UF2 file"),
    (b"PK\x03\x04" + bytes(100), "is not an ESP32 firmware image \\(it starts with 0x50"),
    (esp32_image(chip_id=9), "is an image for the ESP32-S3, not for the ESP32"),
    (esp32_image(chip_id=5), "is an image for the ESP32-C3"),
    (esp32_image(partition_table=False), "no partition table at 0x8000"),
    (esp32_image()[:0x5000], "no partition table at 0x8000"),
    (b"\xe9\x03", "is cut short"),
    (b"", "is empty"),
])
def test_esp32_image_other_than_the_merged_esp32_one_is_refused_naming_why(data, says):
    with pytest.raises(BadInput, match=says) as refused:
        check_esp32_image(data, "ESP32_GENERIC.bin")
    assert "micropython.org/download/ESP32_GENERIC/" in str(refused.value)


# --- RP2040, end to end ------------------------------------------------------------------------

def test_rp2040_image_lands_on_the_given_drive_byte_for_byte_and_waits_for_the_reboot(tmp_path, capsys):
    image = write(tmp_path / "RPI_PICO-20250415-v1.25.0.uf2", VALID_UF2)
    drive = rpi_rp2_drive(tmp_path / "mnt" / "RPI-RP2")
    watcher, landed = play_pico_rebooting(drive, len(VALID_UF2))
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--drive", str(drive)) == 0
    watcher.join(1)
    assert landed == {"RPI_PICO-20250415-v1.25.0.uf2": VALID_UF2}
    out = capsys.readouterr().out
    assert "4 blocks, 1 KiB" in out and "the Pico took the image and rebooted" in out


def test_rp2040_copy_error_after_the_last_byte_is_fine_when_the_pico_reboots(tmp_path, capsys, monkeypatch):
    """The bootrom reboots on the last block, maybe before the host has flushed the rest."""
    def device_gone(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", device_gone)
    drive = rpi_rp2_drive(tmp_path / "RPI-RP2")
    watcher, landed = play_pico_rebooting(drive, len(VALID_UF2))
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--drive", str(drive)) == 0
    watcher.join(1)
    assert landed == {"RPI_PICO.uf2": VALID_UF2}


def test_rp2040_drive_left_mounted_after_its_device_went_away_counts_as_gone(tmp_path, monkeypatch):
    drive = rpi_rp2_drive(tmp_path / "RPI-RP2")
    monkeypatch.setattr(install_mp, "mounted_from", lambda path: "/dev/sdz9-unplugged")
    assert install_mp.drive_is_gone(drive)
    monkeypatch.setattr(install_mp, "mounted_from", lambda path: "/dev/null")   # a device that is there
    assert not install_mp.drive_is_gone(drive)


def test_rp2040_running_micropython_is_sent_to_its_bootloader_then_its_drive_is_found(tmp_path, pty_port, capsys):
    master, port = pty_port
    drive = tmp_path / "media" / "tech" / "RPI-RP2"
    watcher, landed = play_pico_rebooting(drive, len(VALID_UF2))
    commands = []

    def micropython_raw_repl():
        """Answer like MicroPython: Ctrl-A enters the raw REPL, raw-paste is declined, Ctrl-D runs
        the code; machine.bootloader() makes the RPI-RP2 drive appear."""
        received, raw = bytearray(), False
        while select.select([master], [], [], 5)[0]:
            received += os.read(master, 1024)
            if not raw and b"\x01" in received:
                del received[:received.index(b"\x01") + 1]
                os.write(master, b"raw REPL; CTRL-B to exit\r\n>")
                raw = True
            if raw and b"\x05A\x01" in received:
                del received[:received.index(b"\x05A\x01") + 3]
                os.write(master, b"R\x00")
            if raw and b"\x04" in received:
                commands.append(bytes(received[:received.index(b"\x04")]).decode())
                os.write(master, b"OK")
                time.sleep(0.1)   # the board resets, then its bootrom shows the drive
                rpi_rp2_drive(drive)
                return

    board = threading.Thread(target=micropython_raw_repl, daemon=True)
    board.start()
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--port", port) == 0
    board.join(1)
    watcher.join(1)
    assert commands == ["import time, machine; time.sleep_ms(100); machine.bootloader()"]
    assert landed == {"RPI_PICO.uf2": VALID_UF2}
    out = capsys.readouterr().out
    assert f"sending the board on {port} to its bootloader" in out
    assert f"MicroPython's REPL is on {port}" in out


def test_rp2040_without_a_drive_says_to_hold_bootsel_or_give_drive(tmp_path, capsys):
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image) == 1
    err = capsys.readouterr().err
    assert "no RPI-RP2 drive found" in err and "hold BOOTSEL while plugging it in" in err and "--drive" in err


def test_rp2040_drive_attached_but_not_mounted_says_how_to_mount_it(tmp_path, capsys):
    label = tmp_path / "by-label" / "RPI-RP2"
    label.parent.mkdir()
    label.touch()
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image) == 1
    assert f"attached but not mounted: mount it (udisksctl mount -b {label})" in capsys.readouterr().err


def test_rp2040_given_drive_that_never_shows_up_fails_with_bootsel(tmp_path, capsys):
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--drive", str(tmp_path / "nothing")) == 1
    assert f"no drive at {tmp_path / 'nothing'}" in capsys.readouterr().err


@pytest.mark.parametrize("info, says", [
    (None, "is not an RP2040 bootloader drive: it has no INFO_UF2.TXT"),
    (RP2350_INFO, "is the UF2 bootloader of Raspberry Pi RP2350, not of an RP2040"),
    ("UF2 Bootloader\r\n", "is not an RP2040 bootloader drive: its INFO_UF2.TXT names no chip"),
])
def test_rp2040_drive_that_is_not_an_rp2040_bootloader_is_refused(tmp_path, capsys, info, says):
    drive = tmp_path / "usb-stick"
    if info is None:
        drive.mkdir()
    else:
        rpi_rp2_drive(drive, info)
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--drive", str(drive)) == 2
    assert says in capsys.readouterr().err
    assert not list(drive.glob("*.uf2"))


def test_rp2040_that_does_not_reboot_after_the_copy_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(install_mp, "REBOOT_WAIT_S", 0.2)
    drive = rpi_rp2_drive(tmp_path / "RPI-RP2")
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--drive", str(drive)) == 1
    assert "the Pico did not reboot within 0.2 s of the copy" in capsys.readouterr().err


def test_rp2040_with_a_port_that_does_not_exist_lists_the_ports(tmp_path, capsys):
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--port", "/dev/ttyACM9") == 2
    assert "no serial port at /dev/ttyACM9; ports found: " in capsys.readouterr().err


def test_rp2040_with_a_port_where_micropython_does_not_answer_says_use_bootsel(tmp_path, pty_port, capsys,
                                                                                 monkeypatch):
    monkeypatch.setattr(install_mp, "REPL_TIMEOUT_S", 0.3)
    _, port = pty_port
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--port", port) == 1
    assert f"{port} does not answer as a MicroPython REPL" in capsys.readouterr().err


def test_rp2040_refuses_erase(tmp_path, capsys):
    image = write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    assert evsectl("--board", "rp2040-pico", "--firmware", image, "--erase") == 2
    assert "--erase is for the ESP32" in capsys.readouterr().err


# --- ESP32 with the real esptool ---------------------------------------------------------------

@pytest.mark.parametrize("erase, stage", [(False, "writing ESP32_GENERIC.bin failed"),
                                          (True, "erasing the flash failed")])
def test_esp32_where_no_bootloader_answers_fails_in_seconds_saying_hold_boot(tmp_path, pty_port, capsys,
                                                                            erase, stage):
    _, port = pty_port
    image = write(tmp_path / "ESP32_GENERIC.bin", esp32_image())
    started = time.monotonic()
    code = evsectl("--board", "esp32-devkitc", "--firmware", image, "--port", port, "--connect-attempts", "1",
                   *(["--erase"] if erase else []))
    assert time.monotonic() - started < 8
    out, err = capsys.readouterr()
    assert code == 1
    assert "Connecting" in out                      # esptool's own output reached the user
    assert f"{stage}: no ESP32 bootloader answered on {port}: hold BOOT, press and release EN" in err


def test_esptool_failures_are_explained_by_their_cause():
    def explain(transcript):
        return install_mp.explain_esptool_failure(transcript, "/dev/ttyUSB0", "esp32-devkitc", 2)

    assert explain("A fatal error occurred: This chip is ESP32-S3, not ESP32. Wrong chip argument?") \
        .startswith("the chip on /dev/ttyUSB0 is an ESP32-S3, not the ESP32 of board esp32-devkitc")
    assert "(boot mode boot:0x13 (SPI_FAST_FLASH_BOOT)): hold BOOT" in explain(
        "A fatal error occurred: Failed to connect to ESP32: Wrong boot mode detected "
        "(boot:0x13 (SPI_FAST_FLASH_BOOT))! The chip needs to be in download mode.")
    assert "dialout" in explain("Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n"
                                "([Errno 13] could not open port /dev/ttyUSB0: [Errno 13] Permission denied)")
    assert explain("something new\nA fatal error occurred: Flash chip is on fire\nsee docs") == \
        "esptool failed (exit 2): A fatal error occurred: Flash chip is on fire"


def test_esp32_port_held_by_another_program_is_busy(tmp_path, pty_port, capsys):
    _, port = pty_port
    image = write(tmp_path / "ESP32_GENERIC.bin", esp32_image())
    holder = serial.Serial(port, exclusive=True)
    try:
        assert evsectl("--board", "esp32-devkitc", "--firmware", image, "--port", port) == 1
    finally:
        holder.close()
    assert f"{port} is busy: another program has it open (mpremote, screen, evsectl monitor?)" \
        in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["--port", "/dev/ttyUSB7"], "no serial port at /dev/ttyUSB7; ports found: "),
    ([], "the ESP32 is written over its serial port: give --port"),
    (["--port", "/dev/ttyUSB7", "--drive", "/media/x"], "--drive is the RP2040's bootloader drive"),
])
def test_esp32_port_errors_name_the_fix(tmp_path, capsys, argv, says):
    image = write(tmp_path / "ESP32_GENERIC.bin", esp32_image())
    assert evsectl("--board", "esp32-devkitc", "--firmware", image, *argv) == 2
    assert says in capsys.readouterr().err


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("board, firmware, says", [
    ("sim-ac2", "RPI_PICO.uf2", "board sim-ac2 is a virtual board: it runs the MicroPython unix port on this "
                                "computer and needs no base image"),
    ("pico-w", "RPI_PICO.uf2", "no board file"),
    ("rp2040-pico", "missing.uf2", "--firmware {tmp}/missing.uf2: no such file; download the image from "
                                   "https://micropython.org/download/RPI_PICO/"),
    ("rp2040-pico", "", "is a folder, not a firmware file"),
    ("rp2040-pico", "ESP32_GENERIC.bin", "ESP32_GENERIC.bin is an ESP32 image: the Pico's bootloader takes a UF2"),
    ("esp32-devkitc", "RPI_PICO.uf2", "RPI_PICO.uf2 is a UF2 file (for a Pico's drive); the ESP32 needs the .bin"),
])
def test_bad_board_or_firmware_is_refused_before_the_board_is_touched(tmp_path, capsys, board, firmware, says):
    write(tmp_path / "RPI_PICO.uf2", VALID_UF2)
    write(tmp_path / "ESP32_GENERIC.bin", esp32_image())
    assert evsectl("--board", board, "--firmware", str(tmp_path / firmware), "--port", "/dev/ttyNONE") == 2
    assert says.format(tmp=tmp_path) in capsys.readouterr().err


def test_every_option_has_help_and_the_command_runs_run():
    parser = argparse.ArgumentParser(prog="evsectl")
    sub = parser.add_subparsers(dest="command", required=True)
    install_mp.add_parser(sub)
    command = sub.choices["install-micropython"]
    options = [a for a in command._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} == {"board", "firmware", "port", "drive", "erase", "baud", "connect_attempts"}
    assert all(a.help for a in options)
    args = parser.parse_args(["install-micropython", "--board", "rp2040-pico", "--firmware", "f.uf2"])
    assert args.func is install_mp.run and args.baud == 460800 and args.connect_attempts == 7
    with pytest.raises(SystemExit) as missing:
        parser.parse_args(["install-micropython", "--board", "rp2040-pico"])
    assert missing.value.code == 2


def test_each_board_is_told_where_its_own_micropython_comes_from():
    from host_tools.install_mp import download_hint
    from host_tools.sim.supervisor import read_board_file
    hint = {name: download_hint(read_board_file(name)[0])
            for name in ("rp2040-pico", "rp2040-pico-w", "esp32-wrover", "esp32-devkitc")}
    assert hint["rp2040-pico"] == "https://micropython.org/download/RPI_PICO/ (the .uf2)"
    assert "of your own build" in hint["rp2040-pico-w"] and "docs/bring-up.md" in hint["rp2040-pico-w"]
    assert hint["esp32-wrover"] == ("https://micropython.org/download/ESP32_GENERIC/ (the .bin, not the .app-bin, "
                                    "variant SPIRAM)")
    assert "of your own build" in hint["esp32-devkitc"] and "docs/bring-up.md" in hint["esp32-devkitc"]


def test_an_rp2350_board_is_told_to_copy_its_image_by_hand():
    from host_tools.install_mp import BadInput, read_board_hal
    with pytest.raises(BadInput, match="has an RP2350: install-micropython writes RP2040 images only.*"
                                       "micropython.org/download/RPI_PICO2_W/"):
        read_board_hal("rp2350-pico2-w")
