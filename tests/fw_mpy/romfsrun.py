# Runs romfs_update under the real MicroPython for tests/test_ocpp_fw.py. The ROMFS partition is a
# host file, read in place and written block by block through the calls the rp2 and esp32 ports'
# partition objects take (ioctl 4, 5 and 6, writeblocks with an offset). One JSON line per event.
#   romfsrun.py install ROOT PARTITION [cut=K]   romfs_update.install(); cut=K: the power goes at
#                                                the Kth erase or write (the test kills the process)
#   romfsrun.py mount PARTITION                  the files of the image the partition holds at /rom
#                                                (result None: nothing mounts)
import json
import os
import sys
import time

import vfs

import romfs_update

BLOCK = 4096
_file = [None]
_cut = [0, -1]   # erases and writes so far, the one the power goes at


def emit(**kw):
    print(json.dumps(kw))


class Partition(bytearray):
    def ioctl(self, op, arg):
        if op == 4:
            return len(self) // BLOCK
        if op == 5:
            return BLOCK
        if op == 6:
            self._put(arg * BLOCK, b"\xff" * BLOCK)
        return 0

    def writeblocks(self, block, buf, offset):
        if len(buf) % 256:
            raise OSError(22)   # the rp2 port programs whole 256-byte pages
        self._put(block * BLOCK + offset, buf)

    def _put(self, at, data):
        _cut[0] += 1
        if _cut[0] == _cut[1]:
            emit(cut=_cut[0])
            while True:
                time.sleep(1)
        self[at:at + len(data)] = data
        _file[0].seek(at)
        _file[0].write(data)
        _file[0].flush()


def load(path):
    f = open(path, "r+b")
    size = f.seek(0, 2)
    f.seek(0)
    part = Partition(size)
    f.readinto(part)
    _file[0] = f
    return part


def main():
    cmd = sys.argv[1]
    if cmd == "install":
        root, part = sys.argv[2], load(sys.argv[3])
        for a in sys.argv[4:]:
            if a.startswith("cut="):
                _cut[1] = int(a[4:])
        try:
            done = romfs_update.install(root, part)
        except OSError as e:
            emit(result=None, error=str(e), writes=_cut[0])
            return
        try:   # what the boot goes on with
            running = sorted(os.listdir("/rom/evse"))
        except OSError:
            running = None
        emit(result=done, writes=_cut[0], staged=romfs_update.staged(root), rom=running)
    elif cmd == "mount":
        part = load(sys.argv[2])
        try:
            vfs.mount(vfs.VfsRom(part), "/rom")
        except OSError as e:
            emit(result=None, mount=str(e))
            return
        found = []
        for d in ("/rom", "/rom/evse", "/rom/evse/ocpp", "/rom/evse/hal"):
            try:
                found += [d + "/" + name for name in os.listdir(d)]
            except OSError:
                pass
        emit(result=sorted(found))


main()
