# The last step of an OCPP firmware update on a board that runs its package from a ROMFS image
# (docs/bring-up.md): evse/ocpp/fw.py stages the new image as evse.romfs on the flash filesystem
# (verified, then renamed into place: the update's commit point), the charger restarts, and
# main.py calls install() before anything is imported from /rom; /rom then mounts the new image
# and the boot goes on with it. This module lives on the filesystem, not in the image: on a board
# the image's bytecode runs in place, from the very flash it rewrites.
#
# A power cut at any write leaves evse.romfs on the filesystem, so the next boot writes the image
# again. Block 0, which holds the image's header, is erased first and written last: a partition
# cut short holds no image at all (nothing mounts at /rom), never a header over half an image.
import hashlib
import os
import sys

IMAGE = "evse.romfs"
_ERASE = 6   # block device ioctl: erase a block (the rp2 port's rp2.Flash, the esp32's Partition)


def staged(root="/"):
    """Whether an image waits on the filesystem to be written to the partition."""
    try:
        os.stat(_join(root, IMAGE))
        return True
    except OSError:
        return False


def install(root="/", partition=None):
    """Writes the staged image to the ROMFS partition, checks it, mounts it at /rom (as the port
    does at startup) and removes the staged file. False when no image is staged; a staged image
    the partition already holds is only removed. OSError when the partition does not read back
    the image (it is then left empty and the staged file kept: the next boot tries again)."""
    path = _join(root, IMAGE)
    try:
        size = os.stat(path)[6]
    except OSError:
        return False
    if partition is None:
        import vfs
        partition = vfs.rom_ioctl(2, 0)
    block = partition.ioctl(5, 0)
    blocks = (size + block - 1) // block
    if blocks > partition.ioctl(4, 0):
        raise OSError("%s is %d bytes, over the %d-byte ROMFS partition" % (path, size, partition.ioctl(4, 0) * block))
    want = _sha_of_file(path, block)
    if _sha_of_partition(partition, size) != want:
        print("romfs: writing the new image (%d bytes) to the ROMFS partition" % size)
        _let_go_of_rom()
        _write(partition, path, blocks, block)
        if _sha_of_partition(partition, size) != want:
            partition.ioctl(_ERASE, 0)
            raise OSError("the ROMFS partition does not read back %s; left empty, written again at the next boot"
                          % path)
        _mount(partition)
    os.remove(path)
    print("romfs: the new image is in the ROMFS partition and mounted at /rom")
    return True


def _join(root, name):
    return root.rstrip("/") + "/" + name if root else name


def _sha_of_file(path, block):
    # fwboot._file_sha's twin: this module imports nothing from the image it replaces.
    h = hashlib.sha256()
    buf = bytearray(block)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.digest()
            h.update(memoryview(buf)[:n])


def _sha_of_partition(partition, size):
    # The partition is memory-mapped flash on a board: hashed in place, no copy.
    return hashlib.sha256(memoryview(partition)[:size]).digest()


def _let_go_of_rom():
    # Nothing imported from the image may run once its flash is erased.
    for name in list(sys.modules):
        if name == "evse" or name.startswith("evse."):
            del sys.modules[name]
    try:
        import vfs
        vfs.umount("/rom")
    except (OSError, ImportError):
        pass   # not mounted: an image a power cut left unfinished does not mount


def _mount(partition):
    # What the port does at startup when the partition holds an image (extmod/vfs.c,
    # mp_vfs_mount_romfs_protected), which a partition cut short at that startup did not.
    import vfs
    vfs.mount(vfs.VfsRom(partition), "/rom")
    for folder in ("/rom", "/rom/lib"):
        if folder not in sys.path:
            sys.path.append(folder)


def _write(partition, path, blocks, block):
    partition.ioctl(_ERASE, 0)   # first: until the last write below, the partition holds no header
    buf = bytearray(block)
    with open(path, "rb") as f:
        for n in list(range(1, blocks)) + [0]:
            f.seek(n * block)
            _fill(f, buf)
            if n:
                partition.ioctl(_ERASE, n)
            partition.writeblocks(n, buf, 0)


def _fill(f, buf):
    # Whole blocks only (the rp2 port programs 256-byte pages); past the image's end, zeros, as
    # mpremote romfs deploy pads it.
    got = f.readinto(buf)
    if got < len(buf):
        memoryview(buf)[got:] = bytes(len(buf) - got)
