# Runs evse.ocpp.fw under the real MicroPython for tests/test_ocpp_fw.py. One JSON line per
# event on stdout: {"status": ...} for each notification, {"result": ...} at the end.
#   fwrun.py update URL ROOT [retries] [cut=stage:K|cut=rename:K|cut=state:K] [ca=PATH] [romfs=IMAGE]
#                                       [partition=FILE]
#                                       (romfs: IMAGE mounted at /rom first, as a ROMFS install;
#                                        partition: the board has a ROMFS partition of FILE's size)
#   fwrun.py boot ROOT                  resume_install, then boot_report twice
#   fwrun.py upload URL ROOT LINES MAX_BYTES [retries]
#   fwrun.py get2 URL ROOT              two downloads of URL; the result: the names looked up
import gc
import json
import sys
import time

import asyncio

from evse.log import Log
from evse.ocpp import fw, upload
from evse.ocpp import bundle, http  # noqa: F401  (fw loads them for a download and an install: their code is
#                                                   not what `measured` counts)


def emit(**kw):
    print(json.dumps(kw))


async def notify(status):
    emit(status=status, http_loaded="evse.ocpp.http" in sys.modules)


def power_cut_after(name, calls):
    # Replace fw.<name> with one that, after `calls` calls, says CUT and hangs: the test kills
    # the process there (SIGKILL), like a power cut: no finally, no cleanup.
    real = getattr(fw, name)
    count = [0]

    def wrapper(*args):
        if count[0] == calls:
            emit(cut=name)
            while True:
                time.sleep(1)
        count[0] += 1
        return real(*args)
    setattr(fw, name, wrapper)


async def measured(coro):
    # The live heap the operation holds above what was live before it, sampled at every
    # scheduling point (fw yields at every chunk): what it costs the OCPP heap budget.
    gc.collect()
    base = gc.mem_alloc()
    peak = [0]
    done = [False]

    async def sample():
        while not done[0]:
            gc.collect()
            used = gc.mem_alloc() - base
            if used > peak[0]:
                peak[0] = used
            await asyncio.sleep_ms(0)

    sampler = asyncio.create_task(sample())
    try:
        return await coro, peak[0]
    finally:
        done[0] = True
        await sampler


class _Partition:
    blocks = 0

    def ioctl(self, op, arg):
        return self.blocks if op == 4 else 4096 if op == 5 else 0


class _Vfs:
    pass


def use_partition(path):
    import os
    import vfs
    part = _Partition()
    part.blocks = os.stat(path)[6] // 4096
    m = _Vfs()
    for name in dir(vfs):
        if not name.startswith("__"):
            setattr(m, name, getattr(vfs, name))
    m.rom_ioctl = lambda op, *args: part if op == 2 else -22
    sys.modules["vfs"] = m


def options(args):
    opts = {}
    for a in args:
        if "=" in a:
            k, v = a.split("=", 1)
            opts[k] = v
    return opts


def main():
    cmd = sys.argv[1]
    if cmd == "update":
        url, root = sys.argv[2], sys.argv[3]
        retries = int(sys.argv[4]) if len(sys.argv) > 4 and "=" not in sys.argv[4] else 1
        opts = options(sys.argv[4:])
        if "cut" in opts:
            phase, calls = opts["cut"].split(":")
            power_cut_after({"stage": "_makedirs_for", "rename": "_replace", "state": "_set_state"}[phase], int(calls))
        if "romfs" in opts:
            import vfs
            with open(opts["romfs"], "rb") as f:
                vfs.mount(vfs.VfsRom(f.read()), "/rom")
        if "partition" in opts:   # a ROMFS partition of that file's size, as vfs.rom_ioctl(2, 0) gives it
            use_partition(opts["partition"])
        cadata = None
        if "ca" in opts:
            with open(opts["ca"], "rb") as f:
                cadata = f.read()
        result, heap = asyncio.run(measured(fw.update_firmware(
            url, root, notify, retries=retries, retry_interval_s=0, cadata=cadata)))
        emit(result=result, heap_bytes=heap)
    elif cmd == "boot":
        root = sys.argv[2]
        from evse.ocpp import fwboot
        resumed = fwboot.resume_install(root)
        emit(result=[resumed, fwboot.boot_report(root), fwboot.boot_report(root), fwboot.installed_version(root)])
    elif cmd == "upload":
        url, root, lines, max_bytes = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        retries = int(sys.argv[6]) if len(sys.argv) > 6 else 1
        log = Log(root, max_bytes, now_fn=lambda: "2030-01-02T03:04:05Z")
        for i in range(lines):
            log.write("line %d of the controller log" % i)
        name, heap = asyncio.run(measured(upload.upload_diagnostics(
            url, root, log, notify, retries=retries, retry_interval_s=0)))
        emit(result=name, files=log.files(), heap_bytes=heap)
    elif cmd == "get2":
        from evse.ocpp import http, names
        url, root = sys.argv[2], sys.argv[3]
        asked = []
        real = names._getaddrinfo

        def counting(host, *args):
            asked.append(host)
            return real(host, *args)
        names._getaddrinfo = counting
        sizes = [asyncio.run(http.get_to_file(url, root + "/got%d" % i, 5000)) for i in range(2)]
        emit(result=asked, sizes=sizes)
    else:
        raise SystemExit("unknown command " + cmd)


main()
