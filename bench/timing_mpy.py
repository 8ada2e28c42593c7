# Runs under the MicroPython unix port, against the development central systems bench/timing.py
# started: how long the asyncio loop goes without coming back to a watcher task while each
# workload runs in the real firmware code (bench/timing.py scales the figures to the boards and
# judges them against the 50 ms rule).
# usage: micropython timing_mpy.py WS_URL WSS_URL|- CA_DER|- FILES_URL BUNDLE_URL BOARD_JSON LOAD_BOARD_JSON ROOT_DIR
#                                  C_OVER_BYTECODE PYSTONE_RP2040 BOARD_CALL_US BOARD_READ_BYTES_PER_US
#   WS_URL     the central system's ws://HOST:PORT/ocpp (HOST "localhost" when it resolves to
#              127.0.0.1 here: then getaddrinfo looks the name up, as a central system's)
#   WSS_URL    the same over TLS, CA_DER the file of its CA (DER); "-" when there is none
#   FILES_URL  its HTTP file service (diagnostics are uploaded to FILES_URL/upload/)
#   BUNDLE_URL the firmware bundle UpdateFirmware downloads
#   BOARD_JSON the 8-gun board whose App.step is timed on the ticks that share
#   LOAD_BOARD_JSON the 2-gun board whose whole App's CPU load is measured in a session
# Prints {"event": "big_frame" | "local_list", ...} when the host must send a CALL through the
# central system's API, {"log": ...} from the charge point, and last {"result": {...}}: per
# workload the worst gap of each run, in us, the part of it in C routines (bench/c_calls_mpy.py),
# and each run's details (the host judges them).
#
# Why not ocpp_mpy.LoopStall: it sleeps 1 ms and reads ticks_ms, a resolution of 1 ms here,
# 325 ms on an RP2040, where the rule is 50 ms (154 us here). StepWatch yields with sleep_ms(0)
# and reads ticks_us: each gap between two of its turns is how long the other tasks' steps held
# the loop. It spins, so a workload takes about twice its time; what one step costs does not
# change.
import c_calls_mpy
c_calls_mpy.install()   # before anything imports json, os or hashlib

import gc  # noqa: E402
import json  # noqa: E402
import micropython  # noqa: E402
import os  # noqa: E402
import socket
import sys
import time
import vfs
from array import array
from c_calls_mpy import C_US, LONGEST, SPENT_US, real_open

import asyncio
import asyncio.core as asyncio_core

import pystone_mpy
from evse import config, pilot
from evse.app import App
from evse.gun import TICK_MS
from evse.log import Log, _size
from evse.ocpp import fw, upload
from evse.ocpp import keys as keys_mod
from evse.ocpp import ws as wsmod
from evse.ocpp.cp import ChargePoint
from fake_rig import FakeHal
from ocpp_mpy import App as OcppApp
from ocpp_mpy import MEASURANDS, REPLAY_MESSAGES, drained, fill_journal, say
from ocpp_mpy import until as ocpp_until

RUNS = 3                  # each workload runs this often; the host takes the median worst gap
PYSTONE_LOOPS = 50000     # about 0.2 s here
SHARE_TICKS = 500         # App.step timed this often per run, each tick sharing
WARM_CALLS = 3            # ... each tick's work then timed again this often, the least its warm cost
EV_AMPS = 9.0             # what each EV draws once charging (63 A per phase over the 8 guns)
CHARGING_WITHIN_MS = 5000  # the 8 EVs reach C2 with the contactor closed within this
IDLE_MS = 300
LOAD_SETTLE_MS = 5000     # the load is measured once the sessions have started and settled ...
LOAD_MS = 30000           # ... over this long
LOAD_TAGS = ("AA11", "BB22")   # cards the development central system accepts
COLLECT_EVERY_BYTES = 32768   # allocated between two of the watcher's collections: well under the free heap
_BUCKET_US = 10           # the collections' times are counted in buckets this wide ...
_BUCKETS = 1000           # ... up to 10 ms (the last bucket: 10 ms or more)
CP_ID = "TIMING1"
LOG_LINES = ("ocpp: connected to ws://csms.example.com/ocpp/EVSE-0042",
             "gun 1: B2 -> C2 (EV asks for energy), offer 16.0 A",
             "ocpp: gun 1: transaction 1842 started for 04A2B3C4D5E6F7",
             "meter 1: SDM630 read 3 x 15.9 A, 11.02 kW, 18342.7 kWh",
             "sharing: site 63 A per phase, 3 guns charging, gun 2 paused at 6 A")
_STAMP_BYTES = 12         # Log.write's ticks_ms stamp, its space and the newline, at most
FLASH = "/flash"          # the workloads' files: littlefs, as on a board
FLASH_BLOCK = 4096        # the rp2 and esp32 ports' littlefs block
FLASH_BLOCKS = 512        # 2 MB: three runs of each workload, firmware bundles included
FLASH_PROG = 256          # littlefs' progsize as the rp2 port's _boot.py mounts it
# What one call of a board's C block device costs at RP2040 speed comes from the host
# (bench/timing.py BOARD_CALL_US, BOARD_READ_BYTES_PER_US): estimates, not measurements. littlefs
# calls it through mp_call_method (a method's lookup, its arguments parsed, the buffer protocol):
# a few hundred cycles at 125 MHz. A read then copies from the XIP flash: QSPI at 62.5 MHz moves
# at most 31 MB/s, less per cache line fetched.
BOARD_CALL_US = 4
BOARD_READ_BYTES_PER_US = 20


class FlashImage:
    """A littlefs block device over an image file, as the virtual board's flash (host_tools/sim/
    rom.py; the host puts the file on tmpfs where it can): the workloads' files go through the
    same littlefs C code as on a board. On a board the block device is C too (rp2.Flash, the
    esp32 partition): what this Python one costs here, its body and littlefs' call into it
    (`call_ns`, measured by calibrate()), goes into SPENT_US and out of the gaps like another
    process's time, and what a board's C driver costs per call goes back in as C (`board_ns`:
    BOARD_CALL_US and the read's copy from the flash at BOARD_READ_BYTES_PER_US, in this host's
    time at the C factor). Not modelled: the flash chip's program and erase times."""

    def __init__(self, path):
        with real_open(path, "wb") as f:
            blank = b"\xff" * FLASH_BLOCK
            for _ in range(FLASH_BLOCKS):
                f.write(blank)
        self.f = real_open(path, "r+b")
        self.call_ns = 0       # littlefs' call into readblocks/writeblocks here, its body not counted
        self.board_call_ns = 0   # a board's call, in this host's time at the C factor (at_c_factor)
        self.board_byte_ps = 0   # and a byte of its read, in picoseconds
        self._ns = 0           # what is not a whole microsecond yet

    def at_c_factor(self, c_factor):
        """What a board's C block device costs, from now on, in this host's time at C factor
        c_factor (integers: nothing allocated in a call)."""
        self.board_call_ns = int(BOARD_CALL_US * 1000 / c_factor)
        self.board_byte_ps = int(1000000 / BOARD_READ_BYTES_PER_US / c_factor)

    def _spent(self, took_us, nbytes):
        board_ns = self.board_call_ns + nbytes * self.board_byte_ps // 1000
        self._ns += took_us * 1000 + self.call_ns - board_ns
        whole = self._ns // 1000
        if whole > 0:
            SPENT_US[0] += whole
            self._ns -= whole * 1000

    def readblocks(self, block, buf, offset=0):
        start = time.ticks_us()
        self.f.seek(block * FLASH_BLOCK + offset)
        self.f.readinto(buf)
        self._spent(time.ticks_diff(time.ticks_us(), start), len(buf))

    def writeblocks(self, block, buf, offset=0):
        start = time.ticks_us()
        self.f.seek(block * FLASH_BLOCK + offset)
        self.f.write(buf)
        self._spent(time.ticks_diff(time.ticks_us(), start), 0)   # the program time: not modelled

    def ioctl(self, op, arg):
        if op == 4:   # block count
            return FLASH_BLOCKS
        if op == 5:   # block size
            return FLASH_BLOCK
        return 0      # init, sync, erase: an erase needs nothing written here

    def calibrate(self, calls=20000):
        """call_ns: a call of readblocks here less its timed body, what littlefs pays for each
        call into this Python block device (a Python method call: the frame, the arguments, the
        bookkeeping after the body); the loop's own cost taken off."""
        buf = bytearray(32)
        read = self.readblocks
        best = None
        for _ in range(3):
            spent = SPENT_US[0]
            start = time.ticks_us()
            for _ in range(calls):
                read(0, buf, 0)
            took = time.ticks_diff(time.ticks_us(), start)
            body = SPENT_US[0] - spent
            start = time.ticks_us()
            for _ in range(calls):
                pass
            took -= time.ticks_diff(time.ticks_us(), start)
            ns = (took - body) * 1000 // calls
            best = ns if best is None or ns < best else best
        self.call_ns = max(best, 0)
        return self.call_ns


def mount_flash(folder):
    bdev = FlashImage(folder + "/flash.img")
    vfs.VfsLfs2.mkfs(bdev, progsize=FLASH_PROG)
    vfs.mount(vfs.VfsLfs2(bdev, progsize=FLASH_PROG), FLASH)
    return bdev


class StepWatch:
    """Since start(), in microseconds: the worst step of any task (what the 50 ms rule is about;
    each task's steps are timed by Stepped, which reports them to note_step), and the worst gap
    between two turns of this task (the loop's stall: the steps of a round and asyncio's own
    work between them), each with the part spent in MicroPython's C routines (c_calls_mpy.C_US).
    The worst is the worst as a board would see it: a microsecond of C weighs `c_weight` of
    bytecode (the C factor over pystone's). A step's longest single call into C (an import, a
    json.loads of a frame, a littlefs commit) cannot be cut into steps however the firmware
    slices its work: the worst step is the one whose time without that call is the longest, and
    the longest such call of any step is kept apart (`block`: us here, its name).

    Three things are kept out of the gaps. The time the kernel kept this process waiting for a
    CPU while another process ran (the bench machine's noise, not the firmware's): the second
    field of /proc/thread-self/schedstat, run_delay in ns, grows by exactly that (Linux; without
    the file `corrected` is False). The time in the flash image's Python block device
    (FlashImage). And the garbage collections: the watcher collects in its own
    turn each time COLLECT_EVERY_BYTES were allocated, so a step sets one off only when it
    allocates nearly all the free heap by itself. A collection (C) has its own row: the 99th
    percentile of the watcher's, a few ms of the bench machine's noise past that. A step or a
    stall in which the process took a major page fault is counted in `faulted`, not judged."""

    def __init__(self):
        self.c_weight = 1.0   # main() sets it once pystone is measured
        self.worst_us = 0     # the worst gap, judged as a board would see it ...
        self.worst_c_us = 0   # ... and its C part
        self._worst_weighed = 0
        self.step = [0, 0, 0, None, None, 0]   # the worst step: its weight without its longest C call,
        #                                    us, us of C, its task's name, its longest C call, that call's us
        self.block = [0, None]   # the longest single C call of any step: us here, its name
        self.whole = [0, 0, 0]   # the worst step with its C calls: its weight, us, us of C
        self.paused = False
        self.collections = array("I", bytes(4 * _BUCKETS))  # per bucket: collections that took so long
        self._buf = bytearray(96)
        try:
            self._stat = real_open("/proc/thread-self/schedstat", "rb")
        except OSError:
            self._stat = None
        self.corrected = self._stat is not None
        try:
            self._faults = real_open("/proc/thread-self/stat", "rb")
        except OSError:
            self._faults = None
        self._fbuf = bytearray(512)
        self.faulted = 0   # steps and stalls not judged: the kernel read a page in meanwhile
        self.faulted_worst = 0   # since start(): the weight of the longest step not judged so
        self.faulted_rest = 0    # ... and without its longest C call
        self.whole_judged = False   # worst_whole() gave the run's figure

    def worst(self):
        """(step, C in it, gap, C in it, the step's longest C call): the worst step and the worst gap
        since start(), in us."""
        return self.step[1], self.step[2], self.worst_us, self.worst_c_us, self.step[5]

    def worst_whole(self):
        """worst()'s, the worst step chosen and counted with its longest C call (a row that is
        one C call: the TLS handshake)."""
        self.whole_judged = True
        return self.whole[1], self.whole[2], self.worst_us, self.worst_c_us, 0

    def worst_task(self):
        """The function whose coroutine took the worst step ("!": resumed by an exception)."""
        return self.step[3] if self.step[4] is None else "%s (%s)" % (self.step[3], self.step[4])

    def weigh(self, took_us, c_us):
        """A step or stall as a board would see it, in bytecode microseconds here."""
        return took_us - c_us + c_us * self.c_weight

    def note_step(self, took_us, c_us, stepped, thrown, faulted):
        """A task's step; `faulted`: the process took a major page fault meanwhile (not judged)."""
        weighed = self.weigh(took_us, c_us)
        call_us = min(LONGEST[1], c_us)
        rest = weighed - call_us * self.c_weight
        if faulted:
            self.faulted += 1
            if weighed > self.faulted_worst:
                self.faulted_worst = weighed
            if rest > self.faulted_rest:
                self.faulted_rest = rest
            return
        whole = self.whole
        if weighed > whole[0]:
            whole[0], whole[1], whole[2] = weighed, took_us, c_us
        step = self.step
        if rest > step[0]:
            # its name now: a reference would keep the coroutine (an App, a link) alive
            step[0], step[1], step[2], step[3] = rest, took_us, c_us, stepped.name() + ("!" if thrown else "")
            step[4] = "%s %d us" % (LONGEST[0], LONGEST[1]) if LONGEST[1] else None
            step[5] = call_us
        if call_us > self.block[0]:
            self.block[0] = call_us
            self.block[1] = "%s (%s)" % (LONGEST[0], stepped.name())

    def waited_us(self):
        """Microseconds not the firmware's since start: the kernel's run_delay, and the time in
        FlashImage (a C driver on a board)."""
        # "<on cpu ns> <run_delay ns> <slices>\n", parsed in place: no garbage in every turn
        if self._stat is None:
            return SPENT_US[0]
        buf = self._buf
        self._stat.seek(0)
        self._stat.readinto(buf)
        pos = buf.find(b" ") + 1
        ns = 0
        while 48 <= buf[pos] <= 57:
            ns = ns * 10 + buf[pos] - 48
            pos += 1
        return ns // 1000 + SPENT_US[0]

    def major_faults(self):
        """This thread's major page faults so far (/proc/thread-self/stat's 12th field): a fault
        blocks the process while the kernel reads the page back (the bench machine reclaims
        cold pages), milliseconds that are the machine's, not the firmware's; 0 without the file."""
        if self._faults is None:
            return 0
        buf = self._fbuf
        self._faults.seek(0)
        self._faults.readinto(buf)
        pos = buf.rfind(b")") + 2   # after "pid (comm) ": state is field 3, majflt field 12
        for _ in range(9):
            pos = buf.find(b" ", pos) + 1
        count = 0
        while 48 <= buf[pos] <= 57:
            count = count * 10 + buf[pos] - 48
            pos += 1
        return count

    async def run(self):
        allocated = micropython.mem_total()
        faults = self.major_faults()
        waited = self.waited_us()
        in_c = C_US[0] - SPENT_US[0]
        last = time.ticks_us()
        while True:
            while self.paused:   # it spins: not while the CPU load of something else is measured
                await asyncio.sleep_ms(100)
            await asyncio.sleep_ms(0)
            gap = time.ticks_diff(time.ticks_us(), last)
            c_us = C_US[0] - SPENT_US[0] - in_c
            gap -= self.waited_us() - waited
            c_us = min(max(c_us, 0), max(gap, 0))
            weighed = self.weigh(gap, c_us)
            if self.major_faults() != faults:
                self.faulted += 1
            elif weighed > self._worst_weighed:
                self._worst_weighed = weighed
                self.worst_us = gap
                self.worst_c_us = c_us
            if micropython.mem_total() - allocated >= COLLECT_EVERY_BYTES:
                before = self.major_faults()
                waited = self.waited_us()
                start = time.ticks_us()
                gc.collect()
                took_us = time.ticks_diff(time.ticks_us(), start) - (self.waited_us() - waited)
                if self.major_faults() == before:
                    self.collections[min(max(took_us, 0) // _BUCKET_US, _BUCKETS - 1)] += 1
                else:
                    self.faulted += 1
                allocated = micropython.mem_total()
            faults = self.major_faults()
            waited = self.waited_us()
            in_c = C_US[0] - SPENT_US[0]
            last = time.ticks_us()

    def collection_summary(self):
        """How many collections, and the median, 99th percentile and longest of their times
        (each the upper edge of its bucket; 0 without collections)."""
        counts = self.collections
        total = sum(counts)
        out = {"count": total, "p50_us": 0, "p99_us": 0, "max_us": 0}
        seen = 0
        for bucket in range(_BUCKETS):
            if counts[bucket]:
                upper_us = (bucket + 1) * _BUCKET_US
                if seen * 100 < 50 * total <= (seen + counts[bucket]) * 100:
                    out["p50_us"] = upper_us
                if seen * 100 < 99 * total <= (seen + counts[bucket]) * 100:
                    out["p99_us"] = upper_us
                seen += counts[bucket]
                out["max_us"] = upper_us
        return out

    async def start(self):
        # The watcher takes its turn first: the gap of the caller's own set-up is not counted.
        await asyncio.sleep_ms(0)
        self.worst_us = self.worst_c_us = self._worst_weighed = 0
        self.step[0] = self.step[1] = self.step[2] = self.step[5] = 0
        self.step[3] = self.step[4] = None
        self.block[0] = self.whole[0] = self.whole[1] = self.whole[2] = 0
        self.block[1] = None
        self.faulted_worst = self.faulted_rest = 0
        self.whole_judged = False


async def until(what, timeout_ms):
    await ocpp_until(what, timeout_ms, poll_ms=2)


async def stop(task):
    task.cancel()
    try:
        await task
    except BaseException:  # CancelledError, or the task's own end: either way it is over
        pass


def charge_point(root, url):
    app = OcppApp(root)
    cp = ChargePoint(app, root, url, CP_ID, log=app.log)
    cp.keys.change("MeterValuesSampledData", MEASURANDS)
    cp.clock.set(int(time.time()))  # a charger that was online before
    return cp


async def replay(watch, url, root):
    """Workload 1: the journal of REPLAY_MESSAGES (ocpp_mpy.fill_journal) sent after a connect."""
    cp = charge_point(root, url)
    fill_journal(cp)
    await watch.start()
    link = asyncio.create_task(cp.run())
    try:
        await until(drained(cp), 120000)
    except BaseException:
        await stop(link)
        raise
    return watch.worst(), cp, link


async def compaction(watch, root):
    """Workload 2: the same journal confirmed message by message, as _send_next does, without a
    link, in its steps (the read back from flash in one, its JSON in the next, the confirmation
    in another): the compactions are set off by confirm()."""
    cp = charge_point(root, "ws://localhost:1/unused")
    fill_journal(cp)
    journal = cp.journal
    await watch.start()
    while True:
        if journal.fetch():
            await asyncio.sleep_ms(0)
        entry = journal.peek()
        if entry is None:
            break
        await asyncio.sleep_ms(0)
        journal.confirm(entry[0], {"transactionId": 7} if entry[1] == "StartTransaction" else {})
        await asyncio.sleep_ms(0)
    return watch.worst(), {"messages": REPLAY_MESSAGES}


async def from_central_system(watch, cp, event, **fields):
    """Workloads 3 and 4: the host has the central system send a CALL through its API once it
    reads `event` (a SendLocalList of the longest list the charge point takes, a 300 KB
    DataTransfer); the charge point reads it off the websocket and answers, or drops the link.
    Details: its answer and whether the link stayed up."""
    await until(lambda: cp.online, 20000)
    answers = []
    logged = []
    send_text, log = cp._send_text, cp.log

    async def spy_send(text):
        if text[:3] in ("[3,", "[4,"):
            answers.append(text[:400])
        await send_text(text)

    def spy_log(text):
        logged.append(text)
        log(text)
    cp._send_text, cp.log = spy_send, spy_log
    ws = cp.ws
    try:
        await watch.start()
        say(event=event, cp=CP_ID, **fields)
        await until(lambda: answers or cp.ws is not ws or not cp.connected, 30000)
        await asyncio.sleep_ms(300)   # what the answer or the drop sets off
        worst = watch.worst()
    finally:
        cp._send_text, cp.log = send_text, log
    lost = [line for line in logged if "link lost" in line]
    return worst, {"answer": answers[0] if answers else None, "link_kept": cp.ws is ws and cp.connected,
                   "link_lost": lost[0] if lost else None}


class Notified:
    """The FirmwareStatusNotification / DiagnosticsStatusNotification statuses fw gives."""

    def __init__(self):
        self.statuses = []

    async def notify(self, status):
        self.statuses.append(status)


def log_bytes(log):
    return sum(_size(path) for path in log.files())


def full_log(root):
    """A Log filled to within two lines of its max_bytes (both files): a longer line would make it
    rotate. Its limit and what it holds, in bytes."""
    log = Log(root)
    limit = 2 * log.file_max      # Log's max_bytes: its two files together
    line_max = max(len(line) for line in LOG_LINES) + _STAMP_BYTES
    written = 0
    while log_bytes(log) < limit - 2 * line_max:
        log.write(LOG_LINES[written % len(LOG_LINES)])
        written += 1
    return log


async def diagnostics(watch, files_url, root, name):
    """Workload 5: GetDiagnostics: upload.upload_diagnostics of a full log to the central system."""
    log = full_log(root)
    notes = Notified()
    filled = log_bytes(log)
    await watch.start()
    name = await upload.upload_diagnostics(files_url + "/upload/", root, log, notes.notify, name=name)
    return watch.worst(), {"log_bytes": filled, "uploaded": name, "statuses": notes.statuses}


async def connect(watch, url, ca_der=None):
    """Workload 6: a WebSocket connect, getaddrinfo included; with ca_der, over TLS with the
    server verified. The gap of the connect alone, and the time it took."""
    ws = wsmod.WebSocket()
    await watch.start()
    start = time.ticks_us()
    await ws.connect(url + "/" + CP_ID + "-C", ca_der=ca_der, timeout_ms=10000)
    took_us = time.ticks_diff(time.ticks_us(), start)
    worst = watch.worst_whole() if ca_der else watch.worst()
    await ws.close()
    return worst, {"connect_us": took_us}


def getaddrinfo_us(url):
    _, host, port, _ = wsmod.parse_url(url)
    start = time.ticks_us()
    socket.getaddrinfo(host, port)
    return time.ticks_diff(time.ticks_us(), start)


async def firmware(watch, bundle_url, root):
    """Workload 7: UpdateFirmware: fw.update_firmware downloads, verifies and installs the bundle
    (into ROOT, a scratch folder here)."""
    notes = Notified()
    await watch.start()
    reboot = await fw.update_firmware(bundle_url, root, notes.notify)
    return watch.worst(), {"installed": reboot, "statuses": notes.statuses}


async def sharing_ticks(watch, board, root):
    """Workload 8: the control step and the sharing step of 8 guns. An App of the 8-gun board on
    tests/fake_rig.py's FakeHal (one EV model for all the guns, as tests/test_app_share.py) with
    an EV in C on every gun, brought to charging by App.step in real time; then SHARE_TICKS
    times the control task's step (App._control_step) and the sharing task's (App.share; the
    firmware shares at least every SHARE_MS and at once when a gun's demand changes), each after
    a collection (a collection has its own row), less the time other processes ran. Each is
    timed first on the host's cold caches (the worst of those is kept as `cold`), then
    WARM_CALLS times again on the same work, warm, as pystone runs; the least of those is the
    tick's cost (the rest is the machine's noise, a virtual machine's stolen time included),
    and the verdict takes the worst tick (docs/timing.md: why warm)."""
    hal = FakeHal()
    app = App(board, config.Config(board, root), hal, root)
    hal.ev = "C"
    deadline = time.ticks_add(time.ticks_ms(), CHARGING_WITHIN_MS)
    while not all(gun.contactor and gun.state == "C2" for gun in app.guns):
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            raise SystemExit("bench: the %d EVs were not all charging after %d ms: %s" % (
                len(app.guns), CHARGING_WITHIN_MS, [(gun.state, gun.fault) for gun in app.guns]))
        hal.t_ms = app.now_ms      # FakeHal's RCD self-test runs on its own clock
        app.step()
        await asyncio.sleep_ms(board.get("tick_ms", TICK_MS))
    hal.amps = EV_AMPS
    ticks_before = app.ticks
    control, share, cold = [], [], [0, 0]
    for _ in range(SHARE_TICKS):
        # The firmware's two tasks: the control step (the guns), then the sharing it wakes.
        now = app.clock()
        hal.t_ms = now
        for i, part, times in ((0, app._control_step, control), (1, app.share, share)):
            gc.collect()
            # What the cold call changes and a warm one must find as it was, to do the same work:
            # the sensing and integration that were due, an offer that changed.
            timers = ([(gun._sensed_ms, gun.duty_pm, gun.duty_changed_ms, gun._offer, gun._over) for gun in app.guns],
                      app._stepped_ms, app._closed)
            least = None
            for call in range(1 + WARM_CALLS):
                if call and i == 0:
                    for gun, kept in zip(app.guns, timers[0]):
                        gun._sensed_ms, gun.duty_pm, gun.duty_changed_ms, gun._offer, gun._over = kept
                    app._stepped_ms, app._closed = timers[1], timers[2]
                waited = watch.waited_us()
                start = time.ticks_us()
                part(now)
                took = time.ticks_diff(time.ticks_us(), start) - (watch.waited_us() - waited)
                if not call:
                    cold[i] = max(cold[i], took)
                elif least is None or took < least:
                    least = took
            times.append(least)
            await asyncio.sleep_ms(0)
    control.sort()
    share.sort()
    charging = sum(1 for gun in app.guns if gun.contactor)
    return control[-1], {"median_us": control[len(control) // 2], "share_worst_us": share[-1],
                         "share_median_us": share[len(share) // 2], "cold_worst_us": cold[0],
                         "share_cold_worst_us": cold[1], "ticks": (app.ticks - ticks_before) // (1 + WARM_CALLS),
                         "guns": len(app.guns), "charging_at_end": charging,
                         "allocation_a": [gun.allocation_a for gun in app.guns]}


SITE_CONTROLLERS = 8      # the site workload: a coordinator and 7 nodes of 2 guns each
SITE_BUDGET_A = 90        # under 16 x 6 A: the sharing pauses a gun, a second fill


async def site_sharing(watch, board, root):
    """Workload 9: the site coordinator's sharing step (docs/site.md). The App of a 2-gun board
    as the coordinator of 7 nodes of 2 guns (their registers as the coordinator keeps them, every
    gun wanting 32 A), on a budget that cannot give all 16 the minimum; the EVs' demands and
    what the nodes have committed change each tick. The sharing yields between its stages
    (App.share_steps): the step is its longest stage, timed as the sharing ticks are."""
    cfg = config.Config(board, root)
    for key, value in (("site_address", 1), ("site_nodes", SITE_CONTROLLERS - 1), ("site_limit_a", SITE_BUDGET_A)):
        cfg.set(key, value)
    app = App(board, cfg, FakeHal(), root)
    for gun in app.guns:
        gun.state = "C2"
    for r in app.site.remotes:
        r.ok = r.heard = True
        r.guns = 2
    worst, cold = [], 0
    for tick in range(SHARE_TICKS):
        for k, r in enumerate(app.site.remotes):
            for g in range(2):
                r.lim[g] = 0 if (tick + k + g) % 23 == 0 else 32.0   # an EV leaves, another comes
                r.com[g] = r.out[g]
        now = app.clock() + 1000 * tick
        gc.collect()
        least = None
        for call in range(1 + WARM_CALLS):
            work = app.share_steps(now)
            longest = 0
            while True:
                waited = watch.waited_us()
                start = time.ticks_us()
                try:
                    next(work)
                    done = False
                except StopIteration:
                    done = True
                took = time.ticks_diff(time.ticks_us(), start) - (watch.waited_us() - waited)
                if took > longest:
                    longest = took
                if done:
                    break
            if not call:
                cold = max(cold, longest)
            elif least is None or longest < least:
                least = longest
        worst.append(least)
        await asyncio.sleep_ms(0)
    worst.sort()
    return worst[-1], {"median_us": worst[len(worst) // 2], "cold_worst_us": cold,
                       "guns": len(app.guns) + 2 * len(app.site.remotes), "ticks": SHARE_TICKS,
                       "allocation_a": [gun.allocation_a for gun in app.guns]}


class LoadHal(FakeHal):
    """tests/fake_rig.py's model EV and hardware for a whole App: what it records is not kept
    (a tick every 20-50 ms for a minute), the watchdog and the network are there, and each
    gun's EV draws what its own pilot offers, up to `amps` (FakeHal's one EV draws `amps`
    whatever the offer: two guns sharing a site limit would trip on over-current)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offered_pm = {}

    def set_pilot(self, gun, duty_pm):
        self.offered_pm[gun] = duty_pm
        super().set_pilot(gun, duty_pm)

    def current_a(self, gun):
        drawn = super().current_a(gun)
        offer = pilot.duty_pm_to_amps(self.offered_pm.get(gun, 1000))
        return offer if 0 < offer < drawn else drawn

    def _rec(self, what, value):
        pass

    @property
    def t_ms(self):   # FakeHal's RCD self-test runs on this clock: here the real one
        return time.ticks_ms()

    @t_ms.setter
    def t_ms(self, value):
        pass

    def watchdog_start(self, timeout_ms):
        pass

    def watchdog_feed(self):
        pass

    def network_up(self):
        return True

    def rfid_read(self):
        return None

    def safe(self):
        pass

    def reset(self, hard):
        raise SystemExit("bench: the App asked for a reset")


class Stepped:
    """A task's coroutine, each of its steps timed, those resumed by an exception too (asyncio
    resumes a task whose wait_for_ms ended, or which was cancelled, with a throw): the step's time
    less what was not the firmware's (StepWatch.waited_us), and the C routines' part of it
    (c_calls_mpy), go to watch.note_step; while BUSY[2] is on, also to BUSY: its time to [0],
    one step to [1], App.control's time and steps to [3] and [4], the C to [5]."""

    def __init__(self, coro, watch):
        self._coro = coro
        self._watch = watch
        self._control = None   # App.control's steps are also counted apart: known once counted

    def name(self):
        text = str(self._coro)
        return text.split("'")[1] if "'" in text else text

    def _step(self, resume, value, thrown):
        watch = self._watch
        faults = watch.major_faults()
        waited = watch.waited_us()
        in_c = C_US[0] - SPENT_US[0]
        LONGEST[1] = 0
        start = time.ticks_us()
        try:
            return resume(value)
        finally:
            took = time.ticks_diff(time.ticks_us(), start) - (watch.waited_us() - waited)
            c_us = min(max(C_US[0] - SPENT_US[0] - in_c, 0), max(took, 0))
            faulted = watch.major_faults() != faults   # the machine's stall: not judged, not in the load
            watch.note_step(took, c_us, self, thrown, faulted)
            busy = BUSY
            if busy[2] and not faulted:
                busy[0] += took
                busy[1] += 1
                busy[5] += c_us
                if self._control is None:   # not in __init__: that runs in the step of the task that made this one
                    self._control = "'control'" in str(self._coro)
                if self._control:
                    busy[3] += took
                    busy[4] += 1
                mine = BY_TASK.get(self._coro)
                if mine is None:
                    mine = BY_TASK[self._coro] = [self.name(), 0, 0]
                mine[1] += took
                mine[2] += 1

    def send(self, value):
        return self._step(self._coro.send, value, False)

    def throw(self, exc):
        return self._step(self._coro.throw, exc, True)

    def close(self):
        return self._coro.close()

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)


BUSY = [0, 0, 0, 0, 0, 0]   # what Stepped adds up while BUSY[2] is on
BY_TASK = {}                 # while BUSY[2] is on: coroutine -> [its name, us, steps]


PLAIN_CREATE = [asyncio_core.create_task]   # asyncio's own, without Stepped
STARTED = []   # while it is a list's own, the tasks made since (load() stops them all)


def step_every_task(watch):
    """From now on every task asyncio makes is Stepped; asyncio.core's too, where wait_for_ms
    runs what it waits for."""
    create = PLAIN_CREATE[0]

    def stepped(coro):
        task = create(Stepped(coro, watch))
        if STARTED:
            STARTED[0].append(task)
        return task
    asyncio.create_task = asyncio_core.create_task = stepped


async def scheduler_us(watch, tasks=4, rounds=2000):
    """What asyncio's own loop costs per task wake-up: tasks whose steps only yield, not Stepped
    (its reads of /proc would count), timed as a whole; the steps' loop and sleep_ms call are
    in the figure, which errs high."""
    async def spin():
        for _ in range(rounds):
            await asyncio.sleep_ms(0)
    waited = watch.waited_us()
    start = time.ticks_us()
    await asyncio.gather(*[PLAIN_CREATE[0](spin()) for _ in range(tasks)])
    total = time.ticks_diff(time.ticks_us(), start) - (watch.waited_us() - waited)
    return total / (tasks * rounds)


def warm_control_us(app, watch, rounds=100, repeats=9):
    """App.control's step in a tight loop, without the sleep: the host's caches warm, as the
    pystone figure is measured. In the session each step comes a tick after the last, on cold
    caches, and costs more here than the bytecode alone would on a board. The loop's clock
    moves a tick per step, so the sensing and the integration come as often as in the session.
    The median of `repeats` loops of `rounds` steps: one loop's mean moved by 2x from run to run
    (the central system's process shares the machine), and with it the load's verdict."""
    now = app.clock()
    means = []
    for _ in range(2 * repeats):   # a loop the machine stalled for a page is not counted
        if len(means) == repeats:
            break
        faults = watch.major_faults()
        waited = watch.waited_us()
        start = time.ticks_us()
        for _ in range(rounds):
            now += app.tick_ms
            app._control_step(now)
            app._share_due(now)
            app.took("control", 0)
        took_us = (time.ticks_diff(time.ticks_us(), start) - (watch.waited_us() - waited)) / rounds
        if watch.major_faults() == faults:
            means.append(took_us)
    means.sort()
    return means[len(means) // 2] if means else 0.0, means


async def load(url, board, root, watch):
    """The whole firmware's CPU load: App.run() as main() starts it (control, sharing, flash,
    watchdog, OCPP and its link; not the console, which reads this process's stdin) with two EVs
    charging on LoadHal, each started by a card at the charge point, connected to the central
    system over ws://; the board's meters left out (LoadHal's line answers nothing), so the
    registers are estimated. Every task's steps are timed (Stepped): after LOAD_SETTLE_MS,
    the time of every task step over LOAD_MS of wall time, and the number of steps, which the
    host costs at asyncio's own price per wake-up. Not the process's CPU time: most of that is
    the host's kernel waking the loop from poll(), which a board spends idle. The model EV and
    hardware are Python here where a board's HAL reads pins and ADCs (an upper bound of those),
    and without the pilot samples (make bench's tick section has them)."""
    board = dict(board, guns=[dict(gun) for gun in board["guns"]])
    for gun in board["guns"]:
        gun.pop("meter", None)   # LoadHal's RS-485 line answers nothing: estimated registers
    cfg = config.Config(board, root)
    cfg.set("ocpp_url", url)
    cfg.set("ocpp_id", CP_ID + "-LOAD")
    hal = LoadHal(interlock=board.get("interlock", False))
    hal.ev = "C"
    hal.amps = 16.0
    app = App(board, cfg, hal, root)

    async def no_console():
        await asyncio.sleep_ms(LOAD_SETTLE_MS + LOAD_MS + 60000)
    app.console = no_console
    # The machine's speed beside the session, as beside each workload: the session and the warm
    # control step are judged at it (a shared machine's speed drifts within a run).
    pystones = [pystone_mpy.pystones_per_s(PYSTONE_LOOPS)]
    busy = BUSY
    busy[:] = [0, 0, 0, 0, 0, 0]
    BY_TASK.clear()
    started = []
    STARTED[:] = [started]   # App.run's tasks and theirs: cancelled at the end, as main() ending does
    running = asyncio.create_task(app.run())
    try:
        await until(lambda: app.cp.online, 20000)
        for gun, tag in zip(app.guns, LOAD_TAGS):
            app.cp.swipe(gun.n, tag)
        try:
            await until(lambda: all(g.contactor for g in app.guns) and
                        all(c.tx is not None for c in app.cp.connectors[1:]), 20000)
        except SystemExit:
            raise SystemExit("bench: the 2 sessions did not start: guns %s, transactions %s" % (
                [(g.state, g.fault, g.contactor) for g in app.guns], [c.tx for c in app.cp.connectors[1:]]))
        await asyncio.sleep_ms(LOAD_SETTLE_MS)
        start = time.ticks_ms()
        ticks = app.ticks
        busy[2] = 1
        await asyncio.sleep_ms(LOAD_MS)
        busy[2] = 0
        wall_ms = time.ticks_diff(time.ticks_ms(), start)
        charging = sum(1 for g in app.guns if g.contactor)
        at_end = [(g.state, g.fault) for g in app.guns]
        ticks = app.ticks - ticks
        warm_us, warm_means = warm_control_us(app, watch)
        pystones.append(pystone_mpy.pystones_per_s(PYSTONE_LOOPS))
    finally:
        busy[2] = 0
        STARTED[:] = []
        for task in started:
            await stop(task)
        hal.safe()
    counted = busy[:]
    by_name = {}
    for name, us, steps in BY_TASK.values():
        mine = by_name.setdefault(name, [0, 0])
        mine[0] += us
        mine[1] += steps
    BY_TASK.clear()
    return {"by_task": by_name, "pystone_per_s": sum(pystones) / len(pystones), "steps_us": counted[0], "steps_c_us": counted[5], "steps": counted[1],
            "control_step_us": round(counted[3] / max(counted[4], 1), 1),
            "control_step_warm_us": round(warm_us, 1), "control_step_warm_means_us": [round(m, 1) for m in warm_means], "scheduler_us_per_step": round(await scheduler_us(watch), 2),
            "wall_ms": wall_ms, "ticks": ticks, "guns": len(app.guns), "charging": charging,
            "guns_at_end": at_end}


async def idle(watch):
    """The noise floor: the watcher alone with the loop."""
    await watch.start()
    await asyncio.sleep_ms(IDLE_MS)
    return watch.worst(), {}


def remove_tree(path):
    for entry in os.ilistdir(path):
        inner = path + "/" + entry[0]
        if entry[1] == 0x4000:
            remove_tree(inner)
        else:
            os.remove(inner)
    os.rmdir(path)


async def runs(watch, root, name, out, make, keep=False):
    """RUNS runs of `make(run, folder)` -> (worst, details), each in a task of its own (its steps
    are timed too: the compaction's are the journal's) with a fresh folder under `root`, removed
    after it unless `keep` (the flash is a board's size); the worst is StepWatch.worst()'s
    (step, C in it, stall, C in it), or a step timed directly (bytecode); out[name]: per run, the
    worst step and stall, their C, and the details. A run that fails (an
    exception, or ocpp_mpy.until's SystemExit on a timeout) ends the workload: out[name] says
    why, and no figure is made up."""
    worst, in_c, stalls, stalls_c, calls, details = [], [], [], [], [], []
    # The machine's speed beside the workload, before and after it: the host judges the row by
    # it (a shared machine's speed drifts: 62,000 and 97,000 pystone/s an hour apart).
    gc.collect()
    pystones = [pystone_mpy.pystones_per_s(PYSTONE_LOOPS)]
    for run in range(RUNS):
        gc.collect()
        folder = "%s/%s%d" % (root, name, run)
        os.mkdir(folder)
        try:
            worst_us, run_details = await asyncio.create_task(make(run, folder))
        except (Exception, SystemExit) as err:
            out[name] = {"error": "run %d: %s: %s" % (run + 1, type(err).__name__, err)}
            return
        if not isinstance(worst_us, tuple):
            worst_us = (worst_us, 0, None, None, 0)
        else:
            run_details["worst_step_of"] = watch.worst_task()
            run_details["longest_c_call"] = [watch.block[0], watch.block[1]]
            # A step not judged (a page fault) that may have been the worst, weighed as the worst was.
            if watch.faulted_worst > watch.whole[0] if watch.whole_judged else watch.faulted_rest > watch.step[0]:
                run_details["hidden_by_fault"] = True   # a longer step took a page fault: not judged
        for into, value in zip((worst, in_c, stalls, stalls_c, calls), worst_us):
            into.append(value)
        details.append(run_details)
        if not keep:
            remove_tree(folder)
    gc.collect()
    pystones.append(pystone_mpy.pystones_per_s(PYSTONE_LOOPS))
    out[name] = {"worst_us": worst, "c_us": in_c, "stall_us": stalls, "stall_c_us": stalls_c, "call_us": calls,
                 "details": details,
                 "pystone_per_s": sum(pystones) / len(pystones)}


async def workloads(watch, ws_url, wss_url, ca_path, files_url, bundle_url, board_path, load_board_path, root):
    work = {}
    last = {}   # the charge point of the last replay and its link task: the central system's CALLs go to it

    async def offline():
        if last:
            await stop(last.pop("link"))
            del last["cp"]
            remove_tree(last.pop("folder"))

    async def one_replay(run, folder):
        await offline()
        worst, last["cp"], last["link"] = await replay(watch, ws_url, folder)
        last["folder"] = folder
        return worst, {"messages": REPLAY_MESSAGES}

    def online_cp():
        if "cp" not in last:
            raise SystemExit("bench: no charge point online: the replay failed (%s)"
                             % work.get("replay", {}).get("error", "no error recorded"))
        return last["cp"]

    async def local_list(run, folder):
        cp = online_cp()
        entries = cp.keys.get("SendLocalListMaxLength")
        worst, details = await from_central_system(watch, cp, "local_list", entries=entries, version=run + 1)
        details["entries"] = entries
        return worst, details

    await runs(watch, root, "idle", work, lambda run, folder: idle(watch))
    await runs(watch, root, "replay", work, one_replay, keep=True)   # offline() removes it
    await runs(watch, root, "local_list", work, local_list)
    await runs(watch, root, "big_frame", work,
               lambda run, folder: from_central_system(watch, online_cp(), "big_frame"))
    await offline()
    await runs(watch, root, "compaction", work, lambda run, folder: compaction(watch, folder))
    await runs(watch, root, "diagnostics", work,
               lambda run, folder: diagnostics(watch, files_url, folder, "timing-%d.txt" % run))
    await runs(watch, root, "connect", work, lambda run, folder: connect(watch, ws_url))
    if wss_url != "-":
        with open(ca_path, "rb") as ca_file:
            ca_der = ca_file.read()
        await runs(watch, root, "connect_tls", work, lambda run, folder: connect(watch, wss_url, ca_der))
    await runs(watch, root, "firmware", work, lambda run, folder: firmware(watch, bundle_url, folder))
    board = read_board(board_path)
    await runs(watch, root, "sharing", work, lambda run, folder: sharing_ticks(watch, board, folder))
    site_board = read_board(board_path.rsplit("/", 1)[0] + "/sim-ac2-site.json")   # beside the 8-gun board
    await runs(watch, root, "site_share", work, lambda run, folder: site_sharing(watch, site_board, folder))
    folder = root + "/load"
    os.mkdir(folder)
    watch.paused = True
    try:
        work["load"] = await load(ws_url, read_board(load_board_path), folder, watch)
    except (Exception, SystemExit) as err:
        work["load"] = {"error": "%s: %s" % (type(err).__name__, err)}
    ticks = work["sharing"]   # its share steps make a row of their own
    work["share"] = ({"worst_us": [d["share_worst_us"] for d in ticks["details"]], "c_us": [0] * len(ticks["details"]),
                      "details": ticks["details"]} if "worst_us" in ticks else ticks)
    return work


def read_board(path):
    with open(path) as board_file:
        return json.load(board_file)


def sizes(board_path, load_board_path, root):
    """The numbers the host's row labels name, from the firmware's own tables and the boards."""
    board = read_board(board_path)
    return {"replay_messages": REPLAY_MESSAGES,
            "local_list_entries": keys_mod.KEYS["SendLocalListMaxLength"][2],
            "log_max_bytes": 2 * Log(root).file_max,
            "share_ticks": SHARE_TICKS, "guns": len(board["guns"]),
            "tick_ms": board.get("tick_ms", TICK_MS), "load_tick_ms": read_board(load_board_path).get("tick_ms", TICK_MS),
            "idle_ms": IDLE_MS}


async def main(args):
    global BOARD_CALL_US, BOARD_READ_BYTES_PER_US
    c_over_bytecode, pystone_rp2040 = float(args[8]), float(args[9])
    BOARD_CALL_US, BOARD_READ_BYTES_PER_US = float(args[10]), float(args[11])
    bdev = mount_flash(args[7])
    args = args[:7] + (FLASH,)
    out = {"runs": RUNS, "sizes": sizes(args[5], args[6], args[7])}
    out["pystone_per_s"] = max(pystone_mpy.pystones_per_s(PYSTONE_LOOPS) for _ in range(RUNS))
    out["block_device_call_ns"] = bdev.calibrate()
    bdev.at_c_factor(c_over_bytecode * out["pystone_per_s"] / pystone_rp2040)
    out["block_device_board"] = {"call_us": BOARD_CALL_US, "read_bytes_per_us": BOARD_READ_BYTES_PER_US}
    out["getaddrinfo_us"] = getaddrinfo_us(args[0])
    gc.collect()
    out["heap_bytes"] = gc.mem_alloc() + gc.mem_free()
    watch = StepWatch()
    watch.c_weight = c_over_bytecode   # C's factor over bytecode's
    out["preemption_corrected"] = watch.corrected
    asyncio.create_task(watch.run())
    step_every_task(watch)   # the watcher's own turns are not a task step
    out["workloads"] = await workloads(watch, *args)
    out["collections"] = watch.collection_summary()
    out["page_faulted"] = watch.faulted
    return out


if __name__ == "__main__":
    if len(sys.argv) != 13:
        raise SystemExit("usage: timing_mpy.py WS_URL WSS_URL|- CA_DER|- FILES_URL BUNDLE_URL BOARD_JSON LOAD_BOARD_JSON "
                         "ROOT_DIR C_OVER_BYTECODE PYSTONE_RP2040 BOARD_CALL_US BOARD_READ_BYTES_PER_US")
    say(result=asyncio.run(main(tuple(sys.argv[1:]))))
