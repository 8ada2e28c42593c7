# The virtual board's "ROM": what MicroPython's port does on a real board around the user's
# files, run by the unix-port `micropython` that the supervisor starts. It mounts the board's
# littlefs flash image as "/", runs boot.py and main.py, and then serves the REPL on stdin/stdout
# the way pyexec does on a board: the friendly REPL, the raw REPL and raw-paste mode that
# mpremote speaks. Ctrl-C arrives as SIGINT while code runs (the supervisor turns the byte into
# the signal) and as the byte while the REPL waits for input (mark); a soft reset ends this
# process with an exit code the supervisor understands.
import os
import sys
import vfs

EXIT_SOFT_RESET = 10       # Ctrl-D at the friendly REPL
EXIT_SOFT_RESET_RAW = 11   # Ctrl-D at the raw REPL: come back in raw mode
EXIT_HARD_RESET = 12       # machine.reset()
BLOCK_SIZE = 4096
# What an erase writes, a piece at a time: a chip's flash driver erases in C, with nothing from
# MicroPython's heap; a new 4 KB object at every erase was a MemoryError at boot of a board whose
# fragmented heap had no 4 KB block left (esp32-devkitc at its own heap). The ROM's own heap is
# not counted (docs/boards.md): the piece is small.
ERASED = b"\xff" * 256
RAW_PASTE_WINDOW = 256
BANNER = "MicroPython %s on virtual board %s; evse sim with littlefs\r\nType \"help()\" for more information.\r\n"

_in = sys.stdin.buffer
_out = sys.stdout.buffer


def write(data):
    if isinstance(data, str):
        data = data.encode()
    _out.write(data)
    try:
        _out.flush()
    except AttributeError:
        pass


# A Ctrl-C's KeyboardInterrupt (the supervisor's SIGINT, see Repl.raw) may be raised a few bytes
# after the byte that followed it on the line was read: mpremote's Ctrl-A, sent right after its
# Ctrl-C, was then lost, and mpremote waited for the raw REPL's prompt for ever (a loaded host).
# On a board the REPL reads both in order. So the byte read last is kept (_last: stored before
# any jump, where MicroPython raises a pending exception) until the friendly REPL has acted on
# it, and a Ctrl-A or Ctrl-B that a KeyboardInterrupt cut off is read again (_held).
_last = [None]
_held = [None]
_KEYS = (b"\x01", b"\x02")
# Where the supervisor sees which way a Ctrl-C goes (EVSE_SIM_ARMED, kept open from before the
# flash's mount): b"C" while code runs (boot.py, main.py, a line or a raw REPL's program), where
# it is SIGINT, the KeyboardInterrupt a board raises; b"R" while the REPL waits for input, where it
# is the byte, which a board's REPL reads in order with the others (a line dropped, the raw
# REPL's program so far dropped).
_way = [None, b""]


def mark(way):
    f = _way[0]
    if f is not None and _way[1] != way:
        _way[1] = way
        f.seek(0)
        f.write(way)
        f.flush()


def read_byte():
    b = _held[0]
    if b is None:
        mark(b"R")
        b = _in.read(1)
        _last[0] = b
        if not b:
            raise SystemExit(EXIT_HARD_RESET)  # the supervisor closed the serial line
    else:
        _held[0] = None
        _last[0] = b
    return b[0]


def _answered():
    """The friendly REPL has acted on the byte read last."""
    _last[0] = None


def _interrupted():
    """A KeyboardInterrupt at the friendly REPL: a Ctrl-A or Ctrl-B it has not acted on yet is read
    again."""
    if _last[0] in _KEYS:
        _held[0] = _last[0]
    _last[0] = None


class WriteCounter:
    """The rig op `cut_at_write`: the board's block writes are counted (the supervisor's file
    `writes`, kept across boots), and when the count reaches the one in `cut_at` the write does
    not happen: this process stops dead (`cut` in `writes`) and the supervisor cuts the power
    within its 50 ms poll. Both files are open before the flash hides the host's."""

    def __init__(self, writes_path, cut_at_path):
        self.writes = open(writes_path, "r+b")
        self.cut_at = open(cut_at_path, "rb")
        self.count = int(self.writes.read().split()[0] or b"0")

    def before_write(self):
        self.cut_at.seek(0)
        text = self.cut_at.read().strip()
        if text and int(text) == self.count + 1:
            self.writes.seek(0)
            self.writes.write(b"%12d cut\n" % self.count)
            self.writes.flush()
            while True:   # no further write happens: the power goes now
                pass
        self.count += 1
        self.writes.seek(0)
        self.writes.write(b"%12d\n" % self.count)
        self.writes.flush()


class FileBlockDevice:
    """A littlefs block device over the flash image file on the host."""

    def __init__(self, f, blocks, counter=None):
        self.f = f
        self.blocks = blocks
        self.counter = counter

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * BLOCK_SIZE + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if self.counter is not None:
            self.counter.before_write()
        self.f.seek(block * BLOCK_SIZE + (offset or 0))
        self.f.write(buf)
        self.f.flush()  # a power cut (SIGKILL) loses nothing the firmware believes written

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return BLOCK_SIZE
        if op == 6:  # erase
            self.f.seek(arg * BLOCK_SIZE)
            for _ in range(BLOCK_SIZE // len(ERASED)):
                self.f.write(ERASED)
            return 0
        return 0


class RomPartition(bytearray):
    """The ROMFS partition of a board whose MicroPython was built with one, as `vfs.rom_ioctl(2, 0)`
    gives it: the rp2 port's rp2.Flash segment or the esp32 port's esp32.Partition. Its bytes are
    read in place (XIP flash, an mmap; here the buffer, which the supervisor counts outside the
    firmware's heap), in 4 KB blocks that ioctl 6 erases and writeblocks programs; every write
    goes to the host's partition file too, as a power cut would find it."""

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self) // BLOCK_SIZE
        if op == 5:  # block size
            return BLOCK_SIZE
        if op == 6:  # erase
            for at in range(arg * BLOCK_SIZE, (arg + 1) * BLOCK_SIZE, len(ERASED)):
                self._put(at, ERASED)
        return 0

    def readblocks(self, block, buf, offset=0):
        at = block * BLOCK_SIZE + offset
        buf[:] = memoryview(self)[at:at + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the two-argument form erases the blocks first
            for n in range((len(buf) + BLOCK_SIZE - 1) // BLOCK_SIZE):
                self.ioctl(6, block + n)
        if _romfs_counter[0] is not None:   # a power cut may come at a write here as on littlefs
            _romfs_counter[0].before_write()
        self._put(block * BLOCK_SIZE + (offset or 0), buf)

    def _put(self, at, data):
        if at < 0 or at + len(data) > len(self):
            raise OSError(22)  # EINVAL: outside the partition
        self[at:at + len(data)] = data
        _romfs_file[0].seek(at)
        _romfs_file[0].write(data)
        _romfs_file[0].flush()


_romfs = [None]        # the board's RomPartition, when it has one
_romfs_file = [None]   # its host file
_romfs_counter = [None]   # the flash's WriteCounter: its block writes count with the flash's


def _rom_ioctl(op, *args):
    # extmod/vfs.h's ops as the rp2 and esp32 ports answer them: 1 the number of segments, 2 the
    # segment; the write ops (3-6) are -EINVAL there: mpremote writes through the segment's
    # block device.
    if op == 1:
        return 1
    if op == 2 and args and args[0] == 0:
        return _romfs[0]
    return -22


class _Vfs:
    """`vfs` as a port built with a ROMFS partition has it: the interpreter's, and rom_ioctl."""


def install_romfs(path, counter=None):
    """A board with a ROMFS partition: its contents from the host file, and vfs.rom_ioctl."""
    _romfs_counter[0] = counter
    f = open(path, "r+b")
    size = f.seek(0, 2)
    f.seek(0)
    part = RomPartition(size)
    f.readinto(part)
    _romfs[0] = part
    _romfs_file[0] = f
    m = _Vfs()
    for name in dir(vfs):
        if not name.startswith("__"):
            setattr(m, name, getattr(vfs, name))
    m.rom_ioctl = _rom_ioctl
    sys.modules["vfs"] = m


def mount_romfs():
    """What mp_init() does on a port with ROMFS: the partition's image mounted at /rom, and /rom
    and /rom/lib on sys.path; a partition without an image is left alone."""
    try:
        vfs.mount(vfs.VfsRom(_romfs[0]), "/rom")
    except OSError:
        return
    sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"]


def _copy_tree(src, dst):
    for name in os.listdir(src):
        s = src + "/" + name
        d = dst + "/" + name
        if os.stat(s)[0] & 0x4000:
            try:
                os.mkdir(d)
            except OSError:
                pass
            _copy_tree(s, d)
        else:
            with open(s, "rb") as fi, open(d, "wb") as fo:
                while True:
                    chunk = fi.read(1024)
                    if not chunk:
                        break
                    fo.write(chunk)


def write_counter():
    """The rig's count of block writes (cut_at_write), or None while the factory programs."""
    if os.getenv("EVSE_SIM_WRITES") and os.getenv("EVSE_SIM_MODE") != "program":
        return WriteCounter(os.getenv("EVSE_SIM_WRITES"), os.getenv("EVSE_SIM_CUT_AT"))
    return None


def mount_flash(counter=None):
    image = os.getenv("EVSE_SIM_FLASH")
    blocks = int(os.getenv("EVSE_SIM_FLASH_BLOCKS") or "256")
    seed = os.getenv("EVSE_SIM_SEED")
    # The supervisor creates the image erased (all 0xff); a fresh image is formatted and
    # gets the firmware, as a factory would program a new board.
    f = open(image, "r+b")
    bdev = FileBlockDevice(f, blocks, counter)
    # Mounted as the port's _boot.py mounts it: rp2 programs its flash in 256-byte pages
    # (progsize=256, so littlefs caches 1 KB per buffer), esp32 takes littlefs's defaults (32,
    # a 128-byte cache). The sim boards' flash is a Pico's.
    prog = 32 if os.getenv("EVSE_SIM_MCU") == "esp32" else 256
    try:
        fs = vfs.VfsLfs2(bdev, progsize=prog)
    except OSError:
        vfs.VfsLfs2.mkfs(bdev, progsize=prog)
        fs = vfs.VfsLfs2(bdev, progsize=prog)
        if seed:
            vfs.mount(fs, "/flash")
            _copy_tree(seed, "/flash")
            vfs.umount("/flash")
    vfs.umount("/")
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", "/lib", ".frozen"]


def _print_exception(e):
    sys.print_exception(e, sys.stdout)


def run_file(name):
    try:
        os.stat(name)
    except OSError:
        return
    g = {"__name__": "__main__"}
    try:
        with open(name) as f:
            code = f.read()
        mark(b"C")
        exec(compile(code, name, "exec"), g)
    except SystemExit as e:
        if e.args and e.args[0] in (EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW, EXIT_HARD_RESET):
            raise
    except BaseException as e:  # noqa: B036 -- a board prints any exception and goes to the REPL
        _print_exception(e)


class Repl:
    def __init__(self):
        self.globals = {"__name__": "__main__"}

    def banner(self):
        v = sys.implementation.version
        write(BANNER % ("v%d.%d.%d" % (v[0], v[1], v[2]), os.getenv("EVSE_SIM_BOARD") or "?"))

    # ---- raw REPL (pyexec_raw_repl) -----------------------------------------------------------
    # On a board the REPL reads Ctrl-C as a character: the interrupt is armed only while code
    # runs. Here it arrives as the byte while the REPL waits for input, but as SIGINT when it
    # comes as code ends, and that may land anywhere in the REPL's own code, so each
    # loop takes a KeyboardInterrupt outside the user's code for that character; one let out
    # would end the process, a hard reset that swallows the next bytes (mpremote's Ctrl-A), and
    # mpremote, whose reads on a pty block, would wait for its prompt for ever.
    def raw(self):
        write("raw REPL; CTRL-B to exit\r\n>")
        _answered()   # the Ctrl-A that came here
        code = bytearray()
        while True:
            try:
                c = read_byte()
                if c == 0x01:  # Ctrl-A: start again
                    code = bytearray()
                    write("\r\nraw REPL; CTRL-B to exit\r\n>")
                elif c == 0x02:  # Ctrl-B: friendly REPL
                    write("\r\n")
                    return
                elif c == 0x03:
                    code = bytearray()
                elif c == 0x04:
                    if not code:
                        raise SystemExit(EXIT_SOFT_RESET_RAW)
                    write("OK")
                    run, code = bytes(code), bytearray()
                    self._exec_raw(run)
                    write(">")
                elif c == 0x05 and not code:
                    if self._raw_paste_start():
                        self._exec_raw(bytes(self._raw_paste_read()))
                        write(">")
                else:
                    code.append(c)
            except KeyboardInterrupt:
                code = bytearray()   # Ctrl-C: the input so far is dropped, as on a board

    def _raw_paste_start(self):
        # Host sends Ctrl-E 'A' Ctrl-A to ask for raw-paste mode.
        if read_byte() != 0x41 or read_byte() != 0x01:
            write("R\x00")
            return False
        write(b"R\x01" + bytes((RAW_PASTE_WINDOW & 0xFF, RAW_PASTE_WINDOW >> 8)) + b"\x01")
        return True

    def _raw_paste_read(self):
        code = bytearray()
        window = RAW_PASTE_WINDOW
        while True:
            c = read_byte()
            if c == 0x04:
                write(b"\x04")  # end of data acknowledged
                return code
            code.append(c)
            window -= 1
            if window == 0:
                window = RAW_PASTE_WINDOW
                write(b"\x01")  # the host may send another window

    def _exec_raw(self, code):
        err = None
        try:
            mark(b"C")
            exec(compile(code, "<stdin>", "exec"), self.globals)
        except SystemExit as e:
            if e.args and e.args[0] in (EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW, EXIT_HARD_RESET):
                write(b"\x04\x04")
                raise
            err = e
        except BaseException as e:  # noqa: B036
            err = e
        write(b"\x04")
        if err is not None:
            sys.print_exception(err, sys.stdout)
        write(b"\x04")

    # ---- friendly REPL ------------------------------------------------------------------------
    def friendly(self, banner=True):
        # Ctrl-C in the REPL's own code acts as at the prompt (see raw): the line is dropped. The
        # handler does nothing but note it, and the newline is written inside the try, so that a
        # second Ctrl-C while the first is answered lands in the try too (a board's REPL is C).
        # One that comes while the handler itself runs escapes: main() calls this again.
        interrupted = False
        while True:
            try:
                if interrupted:
                    interrupted = False
                    write("\r\n")
                if banner:
                    banner = False
                    self.banner()
                lines = []
                while True:
                    lines = self._friendly_line(lines)
            except KeyboardInterrupt:
                _interrupted()
                interrupted = True

    def _friendly_line(self, lines):
        """One line of the friendly REPL: the lines of a block still open, or []."""
        write("... " if lines else ">>> ")
        line = self._read_line()
        if line is None:  # Ctrl-D on an empty line
            write("\r\n")
            if lines:
                return []
            raise SystemExit(EXIT_SOFT_RESET)
        if line in ("\x01", "\x02"):
            if line == "\x01":
                self.raw()
            else:
                write("\r\n")
            self.banner()
            _answered()
            return []
        if not lines and not line.strip():
            return []
        lines.append(line)
        src = "\n".join(lines)
        if lines[0].rstrip().endswith(":") and line.strip():
            return lines  # a block goes on until an empty line
        try:
            mark(b"C")
            exec(compile(src, "<stdin>", "single"), self.globals)
        except SystemExit as e:
            if e.args and e.args[0] in (EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW, EXIT_HARD_RESET):
                raise
        except BaseException as e:  # noqa: B036
            _print_exception(e)
        return []

    def _read_line(self):
        buf = bytearray()
        while True:
            c = read_byte()
            if c in (0x0D, 0x0A):
                write("\r\n")
                return buf.decode()
            if c == 0x04:
                if not buf:
                    return None
                continue
            if c in (0x01, 0x02) and not buf:
                return chr(c)
            if c == 0x03:
                raise KeyboardInterrupt   # the line dropped, as a SIGINT here would
            if c in (0x08, 0x7F):
                if buf:
                    buf.pop()
                    write("\x08 \x08")
                continue
            if c == 0x1B or c < 0x20:
                _answered()   # (a Ctrl-A inside a line)
                continue  # no line history or cursor keys on the virtual board
            buf.append(c)
            write(bytes((c,)))


class _Machine:
    """The unix port's `machine` plus the resets a board's `machine` has (mpremote reset)."""


def install_machine():
    import machine as port_machine
    m = _Machine()
    for name in dir(port_machine):
        if not name.startswith("__"):
            setattr(m, name, getattr(port_machine, name))

    def reset():
        raise SystemExit(EXIT_HARD_RESET)

    def soft_reset():
        raise SystemExit(EXIT_SOFT_RESET)

    m.reset = reset
    m.soft_reset = soft_reset
    sys.modules["machine"] = m


class _PortSys:
    """`sys` as the chip's MicroPython port shows it (sys.platform "rp2" or "esp32", which is how
    evsectl flash tells the board); everything else is the interpreter's own."""

    def __init__(self, platform):
        self.platform = platform

    def __getattr__(self, name):
        return getattr(sys, name)


def install_silicon(folder, mcu, wlan=False):
    """An MCU board: the emulated silicon (host_tools/sim/silicon, compiled into `folder`) takes
    the place of the unix port's `machine`, with the port's own modules the HALs use. Imported
    now, before the flash hides the host's files; the firmware then imports them as usual."""
    sys.path.insert(0, folder)
    import link  # noqa: F401
    import machine  # noqa: F401
    if mcu == "esp32" or wlan:
        import network  # noqa: F401  (the ESP32's WLAN, a Pico W's CYW43)
    if mcu == "esp32":
        import onewire  # noqa: F401
        import ds18x20  # noqa: F401
    sys.path.remove(folder)
    sys.modules["sys"] = _PortSys("rp2" if mcu == "rp2040" else mcu)


class _Probed:
    """A task's coroutine whose steps the heap probe follows (install_heap_probe)."""

    def __init__(self, coro):
        self._coro = coro

    def send(self, value):
        try:
            return self._coro.send(value)
        finally:
            _probe_step_safely(self._coro)

    def throw(self, exc):
        try:
            return self._coro.throw(exc)
        finally:
            _probe_step_safely(self._coro)

    def close(self):
        return self._coro.close()

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)


_probe = [None, 0, 0, 0, 0, "-", None, 0, None, 0, 0, None, 0, 0]   # the host file, the peak, ticks_ms of
#                the last look, looks, heap, the peak's task, the collections' times, the longest,
#                their host file, the ROM's own heap (a chip's is in ROM and C), the heap asyncio
#                took, the host file of the firmware's modules loaded at the peak, its length, the
#                heap the probe took (asyncio with it)
_GC_BIN_US = 10      # the collections' times: a histogram of 10 us bins (fixed: the probe's own
_GC_BINS = 512       # data is in the heap it measures), the last for any longer


def _gc_p99_us():
    bins = _probe[6]
    total = sum(bins)
    seen = 0
    for k in range(_GC_BINS):
        seen += bins[k]
        if seen * 100 >= total * 99:
            return (k + 1) * _GC_BIN_US
    return 0


def _probe_step_safely(coro):
    # Never in place of what the task's step raised or returned.
    try:
        _probe_step(coro)
    except Exception:  # noqa: BLE001
        pass


def _probe_step(coro):
    # At most every PROBE_MS, after a task's step: a collection (timed), and what is live then.
    # The peak goes to the host file as "<peak live bytes> <heap bytes> <looks> <the step's task>
    # <collections> <their 99th percentile, us> <the longest, us> <the ROM's bytes>".
    import gc
    import time
    now = time.ticks_ms()
    if time.ticks_diff(now, _probe[2]) < PROBE_MS:
        return
    t0 = time.ticks_us()
    gc.collect()
    took = time.ticks_diff(time.ticks_us(), t0)
    live = gc.mem_alloc()
    _probe[6][min(_GC_BINS - 1, took // _GC_BIN_US)] += 1
    _probe[7] = max(_probe[7], took)
    _probe[2] = time.ticks_ms()
    _probe[3] += 1
    peaked = False
    if live > _probe[1]:
        _probe[1] = live
        name = repr(coro)   # "<generator object 'run' at 0x...>"
        _probe[5] = name[name.find("'") + 1:name.rfind("'")] or "?"
        peaked = True
    if live >= _probe[1] or _probe[3] % 50 == 1:
        f = _probe[0]
        f.seek(0)
        f.write(b"%d %d %d %s %d %d %d %d                                \n" % (
            _probe[1], _probe[4], _probe[3], _probe[5], sum(_probe[6]), _gc_p99_us(), _probe[7], _probe[9]))
        f.flush()
        f = _probe[8]
        f.seek(0)
        f.write(_probe[6])
        f.flush()
    if peaked:
        import sys
        f = _probe[11]   # the firmware's modules loaded then: their code is code, not data
        f.seek(0)
        n = 0
        for name in sys.modules:
            if name.startswith("evse"):
                n += f.write(name) + f.write(" ")
        f.write(" " * (_probe[12] - n))   # over a longer list before
        _probe[12] = max(n, _probe[12])
        f.flush()


PROBE_MS = 20


def install_heap_probe(path):
    """make bench's memory section (EVSE_SIM_HEAP_PROBE=host file): every task asyncio makes is
    followed, and after a step (at most every PROBE_MS) the heap is collected and what is live
    read: the peak of those is the board's heap peak between steps; the collections are timed
    too (issue 11's garbage collection row: at the board's own heap). Not on a board."""
    import gc
    gc.collect()
    before = gc.mem_alloc()
    import asyncio
    import asyncio.core as core
    gc.collect()
    _probe[10] = gc.mem_alloc() - before   # the firmware's code counts asyncio's: not the ROM's
    _probe[13] = before
    from array import array
    _probe[6] = array("H", bytes(2 * _GC_BINS))
    try:   # after a reset the board's peak goes on from the run's, not from nothing
        with open(path, "rb") as f:
            fields = f.read().split()
        _probe[1], _probe[3] = int(fields[0]), int(fields[2])
        _probe[5] = fields[3].decode() if len(fields) > 3 else "-"
        _probe[7] = int(fields[6])
        _probe[9] = int(fields[7]) if len(fields) > 7 else 0
        with open(path + ".gc", "rb") as f:
            f.readinto(_probe[6])
    except (OSError, ValueError, IndexError):
        pass
    _probe[0] = open(path, "wb")
    _probe[8] = open(path + ".gc", "wb")
    try:   # host files, opened before the flash's mount (open() goes to littlefs after it)
        _probe[11] = open(path + ".modules", "r+b" if _probe[3] else "wb")
    except OSError:
        _probe[11] = open(path + ".modules", "wb")
    _probe[12] = _probe[11].seek(0, 2)
    gc.collect()
    _probe[4] = gc.mem_free() + gc.mem_alloc()
    _probe[13] = gc.mem_alloc() - _probe[13]   # all the probe took, asyncio with it: not the ROM's
    create = core.create_task

    def probed(coro):
        return create(_Probed(coro))
    asyncio.create_task = core.create_task = probed


def note_rom_heap():
    """The heap probe's: what is live before the firmware's first line runs (this ROM's code and
    objects, the emulated silicon, the flash's mount, a ROMFS partition), less the asyncio the
    probe imported, which the firmware's code counts: a board has none of it in its heap (its
    free heap is measured at the REPL, after boot). The least over the runs' boots."""
    import gc
    gc.collect()
    rom = gc.mem_alloc() - _probe[10]
    if not _probe[9] or rom < _probe[9]:
        _probe[9] = rom


def start():
    """The chip's start before any file runs: its silicon (or the sim's machine), the flash and
    a ROMFS partition mounted."""
    if os.getenv("EVSE_SIM_HEAP_PROBE"):
        install_heap_probe(os.getenv("EVSE_SIM_HEAP_PROBE"))
    programming = os.getenv("EVSE_SIM_MODE") == "program"
    rom_heap = open(os.getenv("EVSE_SIM_ROM_HEAP"), "w") if programming and os.getenv("EVSE_SIM_ROM_HEAP") else None
    if os.getenv("EVSE_SIM_MCU"):
        install_silicon(os.getenv("EVSE_SIM_SILICON"), os.getenv("EVSE_SIM_MCU"), os.getenv("EVSE_SIM_WLAN") == "1")
    else:
        install_machine()
    counter = write_counter()
    if os.getenv("EVSE_SIM_ROMFS"):
        install_romfs(os.getenv("EVSE_SIM_ROMFS"), counter)
    mount_flash(counter)
    if _romfs[0] is not None:
        mount_romfs()
    if programming:
        if rom_heap is not None:
            # What is live once this ROM has started the chip (its own code, the emulated
            # silicon, the flash's and a ROMFS partition's mounts): a chip has all of it in ROM
            # and C, and a board's free heap is what its REPL shows after it. The supervisor
            # gives a virtual MCU board its firmware's heap on top of this (VirtualBoard.rom_heap).
            import gc
            gc.collect()
            rom_heap.write("%d" % (gc.mem_alloc() - _probe[13]))   # make bench's probe is none of it
            rom_heap.close()
        sys.exit(0)  # the factory programmed the flash; the board is not started


def main():
    raw = os.getenv("EVSE_SIM_MODE") == "raw"
    try:
        # From here a Ctrl-C is taken: the supervisor sends none before (MicroPython arms it as it
        # compiles this file, whose top level could not take one).
        if os.getenv("EVSE_SIM_ARMED"):
            _way[0] = open(os.getenv("EVSE_SIM_ARMED"), "wb")
            mark(b"C")
        start()
        repl = Repl()
        if _probe[0] is not None:
            note_rom_heap()
        code = 0
    except KeyboardInterrupt:
        # A Ctrl-C while this code starts the board (a board's ROM takes none): the board starts
        # again, before its banner.
        sys.exit(EXIT_SOFT_RESET_RAW if raw else EXIT_HARD_RESET)
    try:
        try:
            run_file("boot.py")
            if raw:
                repl.raw()
            else:
                run_file("main.py")
        except KeyboardInterrupt:
            pass   # Ctrl-C between the files and the REPL: the REPL comes next, as on a board
        banner = True
        while True:
            try:
                repl.friendly(banner)
            except KeyboardInterrupt:
                _interrupted()
                # A Ctrl-C in the few bytecodes of friendly()'s own handler (Ctrl-C raining, as
                # mpremote's first bytes may): on a board the REPL is C and reads it as a
                # character; here it must not end the program, which is a hard reset.
                banner = False
    except SystemExit as e:
        code = e.args[0] if e.args else 0
    except BaseException as e:  # noqa: B036
        _print_exception(e)
        code = EXIT_HARD_RESET
    sys.exit(code)


main()
