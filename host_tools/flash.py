"""`evsectl flash --board B [--port P]`: put the firmware on a board and start it.

1. If the charger firmware answers on the console, a gun that charges stops the flash (unless
   --force: the firmware is then stopped, contactors open, before anything is written).
2. The raw REPL tells what the board is: MicroPython's platform and .mpy version, its board file,
   and the SHA-256 of every firmware file it holds.
3. A board whose firmware runs has its hardware watchdog armed, which nothing stops: the flash
   sets maintenance mode (the file `maintenance`) and hard-resets first, so the firmware boots
   without charging or a watchdog.
4. The firmware package is compiled with mpy-cross for the board's architecture; only files whose
   hash differs are written (main.py, boot.py, evse/**.mpy, board.json, config.json if given,
   and the --put files: the commissioning's CA, key and certificate request); files under evse/ the new firmware does not have are removed (a stale .py would be
   imported instead of its .mpy).
5. Every written file is hashed again on the board and compared, maintenance mode is left, and a
   soft reset starts the firmware; the flash waits for its banner and checks its version.

A ROMFS install (`--romfs`, or a board file whose hardware.install is romfs) puts evse/ in one
ROMFS image instead, written by `mpremote romfs deploy` to the partition of a MicroPython built
with one (docs/bring-up.md) unless it holds that image already, checked by its SHA-256 there;
evse/ on littlefs is removed (it would shadow the image), the other files go as in 4.

`--freeze OUT` writes a manifest.py instead, for building a MicroPython image with the package
frozen into flash (see docs/bring-up.md)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from host_tools import mpy_source, ports
from host_tools.console import Console, ConsoleError
from host_tools.sim.supervisor import read_board_file

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
TOP_LEVEL = ("main.py", "boot.py", "romfs_update.py")
MAINTENANCE = "maintenance"
# What MicroPython reports as sys.platform for each board file's HAL, and what mpy-cross builds for.
PLATFORM = {"sim": "linux", "rp2": "rp2", "esp32": "esp32"}
ARCH = {"sim": None, "rp2": "armv6m", "esp32": "xtensawin"}
CHUNK = 256            # bytes per raw-REPL write, as mpremote cp
RAW_REPL_S = 5
RESET_S = 20           # a board that was hard-reset is back within this
BANNER_S = 30
DEPLOY_S = 120         # mpremote romfs deploy of an image (~140 KB: seconds over USB)
DEPLOY_TRIES = 2
BANNER = re.compile(rb"evse (\S+) on (\S+): \d+ guns")
BOOT_FAILED = re.compile(rb"(Traceback \(most recent call last\)|evse: [^\r\n]*|board [^\r\n]* must [^\r\n]*)")

# Run on the board through the raw REPL: what it is, and the hash of every file flash manages.
IDENTIFY = """
import sys, os, json, binascii
try:
    import hashlib
except ImportError:
    hashlib = None
def _h(p):
    if hashlib is None:
        return None
    d = hashlib.sha256()
    b = bytearray(512)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            d.update(memoryview(b)[:n])
    return binascii.hexlify(d.digest()).decode()
_files = {}
_dirs = []
def _walk(d):
    for e in os.ilistdir(d):
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _dirs.append(p)
            _walk(p)
        else:
            _files[p] = _h(p)
for _n in ('main.py', 'boot.py', 'romfs_update.py', 'board.json', 'config.json', 'maintenance'):
    try:
        os.stat(_n)
        _files[_n] = _h(_n)
    except OSError:
        pass
try:
    os.stat('evse')
    _dirs.append('evse')
    _walk('evse')
except OSError:
    pass
try:
    import vfs
    _p = vfs.rom_ioctl(2, 0)
    _romfs = None if isinstance(_p, int) else _p.ioctl(4, 0) * _p.ioctl(5, 0)
except Exception:
    _romfs = None
try:
    with open('board.json') as f:
        _board = json.load(f).get('name')
except Exception:
    _board = None
print(json.dumps({'platform': sys.platform, 'version': '.'.join(str(v) for v in sys.implementation.version[:3]),
                  'mpy': getattr(sys.implementation, '_mpy', 0), 'board': _board, 'files': _files, 'dirs': _dirs,
                  'romfs': _romfs}))
"""

VERIFY = """
import json
print(json.dumps({p: _h(p) for p in %r}))
"""

# The SHA-256 of the ROMFS partition's first N bytes (where the image is).
ROMFS_HASH = """
import vfs, hashlib, binascii
print(binascii.hexlify(hashlib.sha256(memoryview(vfs.rom_ioctl(2, 0))[:%d]).digest()).decode())
"""


class FlashError(RuntimeError):
    pass


def firmware_version(firmware: Path = FIRMWARE) -> str:
    text = (firmware / "evse" / "__init__.py").read_text()
    return re.search(r'VERSION = "([^"]+)"', text).group(1)


def mpy_version() -> int:
    """The .mpy format version this mpy-cross writes (byte 1 of its header)."""
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True)
    found = re.search(r"mpy-cross emitting mpy v(\d+)", out.stdout + out.stderr)
    if not found:
        raise FlashError(f"cannot tell which .mpy version mpy-cross writes: {out.stdout.strip()}")
    return int(found.group(1))


def compile_package(arch: str | None, firmware: Path = FIRMWARE) -> dict[str, Path]:
    """{path on the board: local file} of the compiled firmware, built into build/ beside the
    firmware folder; a .mpy is rebuilt when its source is newer."""
    out = firmware.resolve().parent / "build" / f"mpy-{arch or 'host'}"
    files = {name: firmware / name for name in TOP_LEVEL}
    if not (firmware / "evse").is_dir():
        raise FlashError(f"{firmware}: no evse/ package here; give the firmware/ folder of the repo")
    built_by = Path(mpy_source.__file__).stat().st_mtime   # a change to what mpy-cross gets rebuilds all
    for src in sorted((firmware / "evse").rglob("*.py")):
        rel = src.relative_to(firmware).with_suffix(".mpy")
        target = out / rel
        if not target.exists() or target.stat().st_mtime < max(src.stat().st_mtime, built_by):
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed: another flash or virtual board building at the same
            # time never copies a half-written .mpy.
            part = target.with_name(f"{target.name}.{os.getpid()}.part")
            given = part.with_suffix(".py")
            given.write_text(mpy_source.names_first(src.read_text()))
            cmd = [sys.executable, "-m", "mpy_cross", *([f"-march={arch}"] if arch else []),
                   "-s", rel.with_suffix(".py").as_posix(), str(given), "-o", str(part)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            given.unlink(missing_ok=True)
            if done.returncode != 0:
                part.unlink(missing_ok=True)
                raise FlashError(f"mpy-cross failed on {src}: {done.stderr.strip()}")
            os.replace(part, target)
        files[rel.as_posix()] = target
    return files


ROMFS_PACKAGE = "evse/"   # what a ROMFS install puts in the image; the rest stays on littlefs


def romfs_image(files: dict[str, Path]) -> bytes:
    """A ROMFS image (mpremote's format, mounted at /rom on the board) of the compiled package's
    evse/ tree, its .mpy files as they are: MicroPython runs their bytecode in place."""
    from mpremote.romfs import make_romfs
    with tempfile.TemporaryDirectory(prefix="evse-romfs-") as tmp:
        for rel, src in files.items():
            if rel.startswith(ROMFS_PACKAGE):
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, Path(tmp) / rel)
        with contextlib.redirect_stdout(io.StringIO()):   # it draws the tree
            return make_romfs(tmp, mpy_cross=False)


def write_manifest(out: Path, firmware: Path = FIRMWARE) -> Path:
    """A MicroPython manifest that freezes the firmware package into an image of the port."""
    out = out / "manifest.py" if out.is_dir() else out
    out.write_text(
        "# Freezes the EV charger firmware into a MicroPython image (written by evsectl flash --freeze).\n"
        "# Build it with the port's make, e.g.\n"
        "#   make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=%s\n"
        "# then install the image (evsectl install-micropython) and copy only main.py, boot.py and\n"
        "# board.json to the board: a package on the filesystem would shadow the frozen one.\n"
        'include("$(PORT_DIR)/boards/manifest.py")\n'
        'package("evse", base_path=%r)\n' % (str(out.resolve()), str(firmware.resolve())))
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Flasher:
    def __init__(self, port: str, board_name: str, config: Path | None = None, force: bool = False,
                 say=print, progress=None, firmware: Path = FIRMWARE, romfs: bool = False,
                 put: list[Path] | tuple = ()):
        try:
            self.board, self.board_path = read_board_file(board_name)
        except ValueError as e:
            raise FlashError(str(e)) from None
        hal = self.board.get("hal")
        if hal not in PLATFORM:
            raise FlashError(f"board file {self.board_path}: unknown hal {hal!r}")
        install = "romfs" if romfs else self.board.get("hardware", {}).get("install", "mpy")
        if install not in ("mpy", "romfs"):
            raise FlashError(f"board {self.board['name']} is installed as {install} ({self.board_path}: "
                             f"hardware.install); evsectl flash writes .mpy files or a ROMFS image: see "
                             "docs/boards.md")
        self.romfs = install == "romfs"
        self.image: bytes | None = None
        self.hal = hal
        self.firmware = firmware
        self.config = config
        self.put = [Path(p) for p in put]   # the commissioning's files: a CA, this charger's key and request
        self.force = force
        self.say = say
        self.progress = progress  # callable(total_bytes) -> (advance(n), done()) or None
        self.port = ports.resolve(port)
        self.transport: SerialTransport | None = None
        self.written_files: list[str] = []
        self.written_bytes = 0
        self.removed: list[str] = []
        self.write_seconds = 0.0

    # ---- steps ---------------------------------------------------------------------------------
    def run(self) -> dict:
        started = time.monotonic()
        ports.check_free(self.port)
        running = self._charger_status()
        local = self._local_files()
        try:
            info = self._connect()
            try:
                self._check_board(info)
                self._check_romfs(info)
                warning = self.heap_warning()
                if warning:
                    self.say(warning)
            except FlashError:
                self._resume()   # a refused flash leaves the board as it found it
                raise
            if running is not None or ("main.py" in info["files"] and MAINTENANCE not in info["files"]):
                info = self._maintenance_reset()
            writing = time.monotonic()
            self._deploy(local, info)
            self._verify(local)
            self.write_seconds = time.monotonic() - writing
            self._start()
        finally:
            self._close()
        seconds = time.monotonic() - started
        return {"port": self.port, "board": self.board["name"], "files": len(local),
                "written_files": len(self.written_files), "written_bytes": self.written_bytes,
                "removed": self.removed, "write_seconds": round(self.write_seconds, 3),
                "seconds": round(seconds, 2)}

    def _charger_status(self) -> dict | None:
        """The running firmware's status, or None when it does not answer (REPL, fresh board)."""
        try:
            console = Console(self.port)
        except ConsoleError as e:
            raise FlashError(str(e)) from None
        try:
            status = console.status_json(timeout_s=2.0)
        except ConsoleError:
            return None
        finally:
            console.close()
        charging = [g["gun"] for g in status.get("guns", []) if g.get("contactor")]
        if charging and not self.force:
            raise FlashError(f"board busy: gun {', '.join(map(str, charging))} is charging on {self.port}; "
                             "stop the session first, or give --force to stop it and flash")
        if charging:
            self.say(f"flash: --force: stopping the charger, gun {', '.join(map(str, charging))} was charging")
        return status

    def _local_files(self) -> dict[str, Path]:
        files = compile_package(ARCH[self.hal], self.firmware)
        if self.romfs:
            try:
                self.image = romfs_image(files)
            except (SystemExit, OSError) as e:
                raise FlashError(f"building the ROMFS image failed: {e}") from None
            files = {p: f for p, f in files.items() if not p.startswith(ROMFS_PACKAGE)}
        files["board.json"] = self.board_path
        if self.config is not None:
            try:
                settings = json.loads(self.config.read_text())
            except (OSError, ValueError) as e:
                raise FlashError(f"--config {self.config}: not a JSON file ({e})") from None
            if not isinstance(settings, dict):
                raise FlashError(f"--config {self.config}: must be one JSON object, as `evsectl config export` writes")
            files["config.json"] = self.config
        for path in self.put:
            if not path.is_file():
                raise FlashError(f"--put {path}: no such file")
            if path.name in files or path.name in ("boot.py", "main.py", "evse", MAINTENANCE, "wifi.json"):
                raise FlashError(f"--put {path}: {path.name} is the firmware's own file; give it another name")
            files[path.name] = path
        return files

    def _connect(self, wait_s: float = 0) -> dict:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.transport = SerialTransport(self.port, exclusive=True, timeout=0.5)
                with contextlib.redirect_stdout(io.StringIO()):   # mpremote prints what it got on failure
                    self.transport.enter_raw_repl(soft_reset=False, timeout_overall=RAW_REPL_S)
                break
            except (TransportError, OSError, Exception) as e:  # serial errors are not all OSError
                self._close()
                if time.monotonic() < deadline:
                    time.sleep(0.3)
                    continue
                raise FlashError(f"not MicroPython: {self.port} did not answer with MicroPython's raw REPL "
                                 f"({e}); install MicroPython first (evsectl install-micropython)") from None
        return self._identify()

    def _identify(self) -> dict:
        try:
            out = self.transport.exec(IDENTIFY)
            return json.loads(out.decode().strip().splitlines()[-1])
        except (TransportError, ValueError, IndexError) as e:
            raise FlashError(f"{self.port}: the board did not say what it is ({e})") from None

    def _check_board(self, info: dict) -> None:
        want = PLATFORM[self.hal]
        if info["platform"] != want:
            raise FlashError(f"wrong board: {self.port} runs MicroPython on {info['platform']!r}, "
                             f"board {self.board['name']} needs {want!r}")
        mpy = info["mpy"] & 0xFF
        if mpy != mpy_version():
            raise FlashError(f"version mismatch: MicroPython {info['version']} on {self.port} reads .mpy version "
                             f"{mpy or 'none'}, this mpy-cross writes version {mpy_version()}; install a "
                             "matching MicroPython (evsectl install-micropython)")
        if info["board"] not in (None, self.board["name"]) and not self.force:
            raise FlashError(f"wrong board: {self.port} is set up as {info['board']} (its board.json), not "
                             f"{self.board['name']}; give --force to replace its board file")
        self.say(f"flash: {self.port}: MicroPython {info['version']} on {info['platform']}, "
                 f"board {info['board'] or '(none yet)'}")

    def heap_warning(self) -> str | None:
        """What to tell a user whose board's heap is too small for the firmware as it is about to
        be installed (its file says virtual_heap upper-bound: docs/boards.md has the figures)."""
        hw = self.board.get("hardware", {})
        if hw.get("virtual_heap", "measured") != "upper-bound" or self.romfs != (hw.get("install") == "romfs"):
            return None   # fits, or installed otherwise than the file's figures are for
        how = "from its ROMFS image" if self.romfs else "as .mpy files"
        better = "" if self.romfs else "; a ROMFS install (--romfs, a MicroPython built with a ROMFS partition) " \
                                       "takes about half"
        return (f"flash: warning: board {self.board['name']} leaves {self.board['heap_kb']} KiB of heap and the "
                f"firmware with OCPP needs more {how} (make bench's memory section, docs/boards.md){better}; "
                "without a central system configured it runs, with one expect a MemoryError")

    def _check_romfs(self, info: dict) -> None:
        if not self.romfs:
            return
        if not info.get("romfs"):
            raise FlashError(f"no ROMFS partition: MicroPython {info['version']} on {self.port} was built without one "
                             f"(vfs.rom_ioctl), and board {self.board['name']} is installed as a ROMFS image; "
                             "build a MicroPython with a ROMFS partition (docs/bring-up.md) and install it "
                             "(evsectl install-micropython)")
        if len(self.image) > info["romfs"]:
            raise FlashError(f"the firmware's ROMFS image is {len(self.image)} bytes, over the {info['romfs']}-byte "
                             f"ROMFS partition on {self.port}; build MicroPython with a larger one (docs/bring-up.md)")

    def _resume(self) -> None:
        """Back to the friendly REPL and a soft reset: the firmware the raw REPL interrupted runs
        again."""
        try:
            self.transport.exit_raw_repl()
            self.transport.serial.write(b"\x04")
            time.sleep(0.2)
        except Exception:
            pass

    def _maintenance_reset(self) -> dict:
        """Maintenance mode and a hard reset: the firmware boots without charging or watchdog."""
        self.say("flash: maintenance mode and reset (the firmware's watchdog cannot be stopped)")
        self.transport.exec(f"open({MAINTENANCE!r}, 'w').close()")
        self.transport.exec_raw_no_follow("import machine; machine.reset()")
        time.sleep(0.3)
        self._close()
        time.sleep(0.5)
        return self._connect(wait_s=RESET_S)

    def _deploy(self, local: dict[str, Path], info: dict) -> None:
        if self.romfs:
            self._deploy_romfs()
        on_board = info["files"]
        changed = [p for p, f in local.items() if on_board.get(p) != sha256(f)]
        # A ROMFS install: every evse/ file on littlefs goes (the first entry of sys.path, "",
        # is littlefs: a package there would be imported instead of the image's).
        stale = sorted(p for p in on_board if p.startswith("evse/") and p not in local)
        total = sum(local[p].stat().st_size for p in changed)
        self.say(f"flash: {len(changed)} of {len(local)} files to write ({total} bytes), "
                 f"{len(local) - len(changed)} up to date" + (f", {len(stale)} to remove" if stale else ""))
        for path in stale:
            self.transport.fs_rmfile(path)
            self.removed.append(path)
        dirs = set(info["dirs"])
        if self.romfs:   # an empty evse/ directory would still be found first, as a namespace package
            for d in sorted(dirs, key=len, reverse=True):
                self.transport.fs_rmdir(d)
            dirs = set()
        advance, done = self.progress(total) if self.progress and total else (None, None)
        for path in changed:
            parent = path.rpartition("/")[0]
            for i, part in enumerate(parent.split("/") if parent else []):
                d = "/".join(parent.split("/")[: i + 1])
                if d not in dirs:
                    self.transport.fs_mkdir(d)
                    dirs.add(d)
            data = local[path].read_bytes()
            sent = [0]

            def step(written, _total, sent=sent):
                if advance:
                    advance(written - sent[0])
                sent[0] = written
            self.transport.fs_writefile(path, data, chunk_size=CHUNK, progress_callback=step)
            self.written_files.append(path)
            self.written_bytes += len(data)
        if done:
            done()
        self._changed = changed

    def _romfs_hash(self) -> str:
        try:
            return self.transport.exec(ROMFS_HASH % len(self.image)).decode().strip().splitlines()[-1]
        except (TransportError, IndexError) as e:
            raise FlashError(f"{self.port}: the ROMFS partition could not be read ({e})") from None

    def _deploy_romfs(self) -> None:
        """The image goes to the partition by `mpremote romfs deploy` (its erase and block writes),
        unless the partition holds it already."""
        want = hashlib.sha256(self.image).hexdigest()
        if self._romfs_hash() == want:
            self.say(f"flash: the ROMFS image ({len(self.image)} bytes) is up to date")
            return
        self.say(f"flash: ROMFS image of {len(self.image)} bytes to the partition (mpremote romfs deploy)")
        self._close()
        with tempfile.TemporaryDirectory(prefix="evse-romfs-") as tmp:
            image = Path(tmp) / "evse.romfs"
            image.write_bytes(self.image)
            for attempt in range(DEPLOY_TRIES):   # a deploy that stalls on the line is run again once
                try:
                    done = subprocess.run([sys.executable, "-m", "mpremote", "connect", self.port, "romfs", "deploy",
                                           str(image)], capture_output=True, text=True, timeout=DEPLOY_S)
                    failed = None if done.returncode == 0 and "ROMFS image deployed" in done.stdout else \
                        (done.stdout + done.stderr).strip()[-600:]
                    break
                except subprocess.TimeoutExpired:
                    failed = f"no end within {DEPLOY_S} s, {attempt + 1} times"
        self._connect(wait_s=RESET_S)
        if failed is None and self._romfs_hash() != want:
            failed = "the partition does not hold the image written"
        if failed is not None:
            # mpremote writes the header (with the whole image's length) first: a cut-short image
            # would still mount, and the firmware would import from it. No image at all instead:
            # the board boots to its REPL, the guns' pins idle, until the next flash.
            try:
                self.transport.exec("import vfs\nvfs.rom_ioctl(2, 0).ioctl(6, 0)")
            except TransportError as e:
                failed += f"; erasing the partition failed too ({e})"
            raise FlashError(f"mpremote romfs deploy failed on {self.port}, the partition was erased: {failed}; "
                             "flash again")
        self.written_files.append("/rom (ROMFS image)")
        self.written_bytes += len(self.image)
        self.say("flash: verified the ROMFS image")

    def _verify(self, local: dict[str, Path]) -> None:
        if not self._changed:
            return
        out = self.transport.exec(VERIFY % (self._changed,))
        got = json.loads(out.decode().strip().splitlines()[-1])
        bad = [p for p in self._changed if got.get(p) != sha256(local[p])]
        if bad:
            raise FlashError(f"verify failed: {', '.join(bad)} on {self.port} differ from what was written; "
                             "flash again (is the board's filesystem full?)")
        self.say(f"flash: verified {len(self._changed)} files")

    def _start(self) -> None:
        """Leave maintenance mode and soft-reset; the firmware's banner says it is up."""
        self.transport.exec(f"import os\ntry:\n    os.remove({MAINTENANCE!r})\nexcept OSError:\n    pass")
        self.transport.exit_raw_repl()
        serial_port = self.transport.serial
        serial_port.reset_input_buffer()
        serial_port.write(b"\x04")  # Ctrl-D at the friendly REPL: soft reset, main.py runs
        seen = bytearray()
        deadline = time.monotonic() + BANNER_S
        while time.monotonic() < deadline:
            seen += serial_port.read(serial_port.in_waiting or 1)
            found = BANNER.search(seen)
            if found:
                version, name = found.group(1).decode(), found.group(2).decode()
                expected = firmware_version(self.firmware)
                if version != expected or name != self.board["name"]:
                    raise FlashError(f"version mismatch: the board started evse {version} on {name}, "
                                     f"expected evse {expected} on {self.board['name']}")
                self.say(f"flash: evse {version} on {name} is up")
                return
            failed = BOOT_FAILED.search(seen)
            if failed and b"\n" in seen[failed.end():]:
                tail = bytes(seen[failed.start():]).decode(errors="replace").strip()
                raise FlashError(f"the firmware did not start on {self.port}:\n{tail[-800:]}")
        raise FlashError(f"no firmware banner from {self.port} within {BANNER_S} s after the reset; it printed: "
                         f"{bytes(seen[-400:]).decode(errors='replace')!r}")

    def _close(self) -> None:
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:
                pass
            self.transport = None


def _rich_progress():
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    def start(total):
        bar = Progress("flash", BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=False)
        bar.start()
        task = bar.add_task("write", total=total)
        return (lambda n: bar.advance(task, n)), bar.stop
    return start


def run(args) -> int:
    firmware = Path(args.firmware)
    if args.freeze:
        out = write_manifest(Path(args.freeze), firmware)
        print(f"{out}: freezes the evse package of {firmware.resolve()}")
        return 0
    if not args.board:
        print("evsectl flash: give --board (a file name in boards/, e.g. rp2040-pico)", file=sys.stderr)
        return 2
    try:
        flasher = Flasher(args.port, args.board, Path(args.config) if args.config else None, args.force,
                          progress=None if args.quiet else _rich_progress(), firmware=firmware, romfs=args.romfs,
                          put=args.put)
        result = flasher.run()
    except (FlashError, ports.PortError) as e:
        print(f"evsectl flash: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"flash: wrote {result['written_files']} files ({result['written_bytes']} bytes) in "
              f"{result['seconds']} s")
    return 0


def add_parser(sub) -> None:
    f = sub.add_parser("flash", help="compile the firmware, write what changed to a board, start it",
                       description=__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    from host_tools.cli import add_board, add_port
    add_board(f, help="board file name in boards/ (e.g. rp2040-pico, esp32-devkitc, sim-ac2; evsectl boards lists "
                      "them); required, except with --freeze")
    add_port(f)
    f.add_argument("--config", metavar="FILE", help="also write this config.json (as `evsectl config export` writes)")
    f.add_argument("--put", metavar="FILE", action="append", default=[],
                   help="also write this file to the board's root under its own name (repeatable): the central "
                        "system's CA (ocpp_ca), the key and request `evsectl cert` made (ocpp_key, ocpp_csr)")
    f.add_argument("--force", action="store_true",
                   help="flash even while a gun charges (stops it first), or over another board's board file")
    f.add_argument("--romfs", action="store_true",
                   help="install the firmware package as a ROMFS image (needs a MicroPython built with a ROMFS "
                        "partition; the default for a board file whose hardware.install is romfs)")
    f.add_argument("--freeze", metavar="OUT", help="write a manifest.py for a frozen MicroPython image to OUT "
                                                   "(a file or a folder) and flash nothing")
    f.add_argument("--firmware", metavar="DIR", default=str(FIRMWARE),
                   help="the firmware folder to flash (default: this repo's firmware/)")
    f.add_argument("--json", action="store_true", help="print the result as one JSON object")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run)
