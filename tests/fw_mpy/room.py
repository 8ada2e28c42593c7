# The install's room check against littlefs itself: a 1.4 MB littlefs (a Pico's) on a block
# device in RAM holds the package's files as installed; check_room must ask for at least what
# staging them all as .new files then takes, and not much more.
#   room.py PACKAGE_DIR    prints one JSON line: {"result": ..., "needed", "used", "free"}
import json
import os
import sys

import vfs

from evse.ocpp import bundle

BLOCK = 4096


class Ram:
    def __init__(self, blocks):
        self.data = bytearray(blocks * BLOCK)

    def readblocks(self, n, buf, offset=0):
        at = n * BLOCK + offset
        buf[:] = self.data[at:at + len(buf)]

    def writeblocks(self, n, buf, offset=0):
        at = n * BLOCK + offset
        self.data[at:at + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // BLOCK
        if op == 5:
            return BLOCK
        return 0


def walk(d, rel, out):
    for name in sorted(os.listdir(d)):
        path = d + "/" + name
        if os.stat(path)[0] & 0x4000:
            walk(path, rel + name + "/", out)
        else:
            out.append((rel + name, path))


def free():
    st = os.statvfs("/flash")
    return st[0] * st[3]


def write(path, data):
    parts = path.split("/")[:-1]
    for i in range(len(parts)):
        try:
            os.mkdir("/flash/" + "/".join(parts[:i + 1]))
        except OSError:
            pass
    with open("/flash/" + path, "wb") as f:
        f.write(data)


device = Ram(352)
vfs.VfsLfs2.mkfs(device)
vfs.mount(vfs.VfsLfs2(device), "/flash")
files = []
walk(sys.argv[1], "evse/", files)
for rel, path in files:
    with open(path, "rb") as f:
        write(rel, f.read())
manifest = [(rel, os.stat(path)[6], "") for rel, path in files]
before = free()
needed = bundle.check_room("/flash", manifest)   # raises when it would not fit
for rel, path in files:
    with open(path, "rb") as f:
        write(rel + ".new", f.read())
print(json.dumps({"result": True, "needed": needed, "used": before - free(), "free": before}))
