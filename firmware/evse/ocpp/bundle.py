# A firmware bundle's checks, loaded by evse.ocpp.fw for an install once the download is done:
# the download runs without them (it is the update's peak of heap, with the HTTP client).
#
# The firmware bundle (built by host_tools/fwbundle.py):
#     EVSEFW1 <manifest length in bytes, decimal>\n
#     <manifest: that many bytes of UTF-8 JSON>
#     <the files' bytes, concatenated in manifest order, nothing after>
# manifest = {"version": "0.2.0",
#             "files": [{"path": "evse/app.py", "size": 1234, "sha256": "<64 lowercase hex>"}, ...]}
# A bundle is good when its length is exactly header + manifest + sizes, every file's sha256
# matches, and every path is one the firmware may replace: main.py, boot.py, romfs_update.py, a
# .py/.mpy under evse/ (relative, no "." or ".." parts), or evse.romfs: the package as one ROMFS
# image, for a board that runs it from /rom (romfs_update.py writes it to the partition at the
# next boot). board.json, config.json and data files never are.
import asyncio
import binascii
import json
import os

from micropython import const

from evse import slices, store
from evse.ocpp.fw import CHUNK, RESERVE_BYTES, ROMFS_IMAGE, BundleError, _free_bytes, _hash_range

MAGIC = b"EVSEFW1 "
HEADER_MAX = const(24)           # MAGIC, up to 5 digits and the newline fit
MANIFEST_MAX = const(8192)       # read whole and parsed in RAM
FILES_MAX = const(96)
PATH_MAX = const(64)
VERSION_MAX = const(50)          # OCPP 1.6 BootNotification.firmwareVersion is CiString50
FILE_MAX = const(262144)
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"
_ENTRIES_PER_STEP = const(4)  # manifest entries checked in one step of the event loop


# The bundle format: pure functions, CPython-importable (tests fuzz them).

def check_path(path):
    """`path` when the firmware may install a file there; BundleError saying why not."""
    if not isinstance(path, str) or not 0 < len(path) <= PATH_MAX:
        raise BundleError("path %r: not a string of 1 to %d characters" % (path, PATH_MAX))
    for c in path:
        if c not in _PATH_CHARS:
            raise BundleError("path %r: only letters, digits and _-./ are allowed" % path)
    for part in path.split("/"):
        if not part or part[0] == ".":
            raise BundleError("path %r: absolute, empty, hidden, . or .. parts are refused" % path)
    if path in ("main.py", "boot.py", "romfs_update.py", ROMFS_IMAGE):
        return path
    if path.startswith("evse/") and (path.endswith(".py") or path.endswith(".mpy")):
        return path
    raise BundleError("path %r: only main.py, boot.py, romfs_update.py, evse.romfs and .py/.mpy files under "
                      "evse/ are installed" % path)


def parse_header(head):
    """(manifest length, header length) from the first bytes of a bundle."""
    if not head.startswith(MAGIC):
        raise BundleError("not a firmware bundle (it does not start with %s)" % MAGIC.decode().strip())
    nl = head.find(b"\n")
    digits = head[len(MAGIC):nl]
    if nl < 0 or not 0 < len(digits) <= 5 or not digits.isdigit():
        raise BundleError("bad bundle header %r" % bytes(head[:HEADER_MAX]))
    length = int(digits)
    if not 0 < length <= MANIFEST_MAX:
        raise BundleError("manifest of %d bytes; at most %d are accepted" % (length, MANIFEST_MAX))
    return length, nl + 1


def _is_sha256_hex(sha):
    # In C (unhexlify), not a loop over the characters: that was two thirds of an entry's check.
    if not isinstance(sha, str) or len(sha) != 64 or sha.lower() != sha:
        return False
    try:
        binascii.unhexlify(sha)
    except ValueError:
        return False
    return True


def parse_manifest(raw):
    """(version, [(path, size, sha256 hex), ...]) from the manifest bytes."""
    return slices.run(manifest_steps(raw))


def manifest_steps(raw):
    """parse_manifest as a generator that yields every _ENTRIES_PER_STEP files (verify_bundle
    lets the event loop run between them: 36 files in one step held it ~320 ms at RP2040 speed)."""
    try:
        # The bytes go before the JSON is parsed (the caller keeps none): with 50 files the
        # manifest is some 6 KB, and the text and its objects are the update's heap peak.
        text = raw.decode()
        raw = None
        manifest = json.loads(text)
    except (ValueError, RuntimeError) as e:   # RuntimeError: nesting deeper than the stack
        raise BundleError("the manifest is not JSON (%s)" % e)
    text = None
    if not isinstance(manifest, dict):
        raise BundleError("the manifest is not a JSON object")
    version = manifest.get("version")
    if not isinstance(version, str) or not 0 < len(version) <= VERSION_MAX or \
            not all(" " <= c <= "~" for c in version):
        raise BundleError("manifest version %r: 1 to %d printable ASCII characters" % (version, VERSION_MAX))
    entries = manifest.get("files")
    manifest = None
    if not isinstance(entries, list) or not 0 < len(entries) <= FILES_MAX:
        raise BundleError("manifest files: a list of 1 to %d entries" % FILES_MAX)
    files = []
    seen = set()
    for k in range(len(entries)):
        if k % _ENTRIES_PER_STEP == _ENTRIES_PER_STEP - 1:
            yield
        entry = entries[k]
        entries[k] = None   # each entry's dict goes as its tuple comes: not both at the peak
        if not isinstance(entry, dict):
            raise BundleError("manifest file entry %r: not an object" % (entry,))
        path = check_path(entry.get("path"))
        size = entry.get("size")
        sha = entry.get("sha256")
        if type(size) is not int or not 0 <= size <= FILE_MAX:
            raise BundleError("%s: size %r is not a number from 0 to %d" % (path, size, FILE_MAX))
        if not _is_sha256_hex(sha):
            raise BundleError("%s: sha256 %r is not 64 lowercase hex digits" % (path, sha))
        key = path if path.islower() else path.lower()   # the path itself when it is: not a copy per file
        if key in seen:
            raise BundleError("%s: listed twice" % path)
        seen.add(key)
        files.append((path, size, sha))
    return version, files


async def verify_bundle(path):
    """(version, files, offset of the first file's bytes) of a good bundle; BundleError else."""
    try:
        total = os.stat(path)[6]
        with open(path, "rb") as f:
            manifest_len, header_len = parse_header(f.read(HEADER_MAX))
            f.seek(header_len)
            raw = f.read(manifest_len)
            if len(raw) != manifest_len:
                raise BundleError("the bundle ends inside its manifest")
            await asyncio.sleep(0)   # the reads in one step, the JSON in the next
            steps = manifest_steps(raw)
            raw = None
            version, files = await slices.run_async(steps)
            steps = None
            offset = header_len + manifest_len
            expected = offset + sum(size for _, size, _ in files)
            if total != expected:
                raise BundleError("the bundle is %d bytes, its manifest says %d" % (total, expected))
            buf = bytearray(CHUNK)
            for name, size, sha in files:
                if await _hash_range(f, size, buf) != sha.encode():
                    raise BundleError("%s: sha256 does not match the manifest" % name)
    except OSError as e:
        raise BundleError("cannot read %s (%s)" % (path, e))
    return version, files, offset


ROMFS_PACKAGE = "/rom/evse"   # where a ROMFS install runs the package from (docs/bring-up.md)


def check_install(root, files):
    # A bundle updates the package the way the board runs it. evse/ files on a board that runs
    # it from /rom would be imported instead of the image's (the filesystem comes first on
    # sys.path), as .mpy in the heap; an image on a board that runs evse/ from its filesystem
    # would never be imported.
    on_rom = store.exists(ROMFS_PACKAGE)
    image = None
    for path, size, _ in files:
        if path == ROMFS_IMAGE:
            image = size
        elif on_rom and path.startswith("evse/"):
            raise BundleError("this board runs its package from a ROMFS image (%s): a bundle of evse/ files "
                              "would shadow it; send a bundle built with fwbundle --romfs, or use evsectl flash "
                              "--romfs" % ROMFS_PACKAGE)
    if image is None:
        return
    if not on_rom:
        raise BundleError("a bundle with a ROMFS image (%s), but this board runs its package from evse/ on its "
                          "filesystem: send a bundle of evse/ files" % ROMFS_IMAGE)
    room = _partition_bytes()
    if not room:
        raise BundleError("a bundle with a ROMFS image, but this board's MicroPython has no ROMFS partition")
    if image > room:
        raise BundleError("the ROMFS image is %d bytes, over this board's %d-byte ROMFS partition" % (image, room))
    if not store.exists(store.join(root, "romfs_update.py")) and \
            not any(path == "romfs_update.py" for path, _, _ in files):
        raise BundleError("romfs_update.py, which writes the image to the partition at boot, is neither on "
                          "this board nor in the bundle")


def _partition_bytes():
    # The ROMFS partition's size: vfs.rom_ioctl(2, 0) is its block device on the rp2 and esp32
    # ports (0: a MicroPython built without one).
    try:
        import vfs
        part = vfs.rom_ioctl(2, 0)
        return part.ioctl(4, 0) * part.ioctl(5, 0)
    except (ImportError, AttributeError, TypeError, OSError):
        return 0


def check_room(root, files):
    # Every file takes whole blocks, and their directories' metadata a block for every three
    # files: staging this firmware's 62 package files (241 KB) took 373-438 KB of a 1.4 MB
    # littlefs, where whole blocks come to 381 KB (small files live in the metadata; the
    # directories' logs grow); this asks for 467 KB. A block a file on top, as before, asked for
    # 635 KB: more than a Pico's filesystem has free beside the firmware and its bundle. The
    # controller keeps writing.
    try:
        block = os.statvfs(root or ".")[0]
    except (OSError, AttributeError):
        return None
    needed = sum((size + block - 1) // block * block for _, size, _ in files) + (len(files) + 2) // 3 * block
    free = _free_bytes(root)
    if free - RESERVE_BYTES < needed:
        raise BundleError("not enough flash to install: %d bytes needed, %d free above the %d kept "
                          "in reserve" % (needed, free - RESERVE_BYTES, RESERVE_BYTES))
    return needed
