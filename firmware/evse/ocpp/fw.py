# OCPP 1.6 FirmwareManagement: UpdateFirmware (download, verify, install) and GetDiagnostics
# (upload the log). The caller sends the status notifications `notify` is given, and reboots.
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
# Files on flash that the bundle does not list are left as they are. The sha256 guards against
# corruption, not against an attacker: bundles are not signed.
#
# Files under `root`:
#     fw.new      the downloaded bundle (removed once installed or refused)
#     <path>.new  a file staged for installation
#     fw.pending  {"phase": "staging"|"renaming", "version", "files"}: an install in progress.
#                 resume_install() at boot rolls "staging" back (old firmware kept) and finishes
#                 "renaming" (every staged file is complete and verified before that phase).
#     fw.state    {"version": installed version, "report": status for after the reboot}
#
# Statuses given to notify (FirmwareStatusNotification / DiagnosticsStatusNotification):
# Downloading, Downloaded, DownloadFailed, Installing (the bundle's check first), InstallationFailed,
# Installed (after the reboot, from boot_report); Uploading, Uploaded, UploadFailed.
import asyncio
import binascii
import hashlib
import json
import os

from micropython import const

import evse
from evse import slices, store

BUNDLE_FILE = "fw.new"
PENDING_FILE = "fw.pending"
STATE_FILE = "fw.state"
MAGIC = b"EVSEFW1 "
HEADER_MAX = const(24)           # MAGIC, up to 5 digits and the newline fit
MANIFEST_MAX = const(8192)       # read whole and parsed in RAM
FILES_MAX = const(96)
PATH_MAX = const(64)
VERSION_MAX = const(50)          # OCPP 1.6 BootNotification.firmwareVersion is CiString50
FILE_MAX = const(262144)
CHUNK = const(1024)
RESERVE_BYTES = const(32768)     # flash left free for config, journal and log during an update
DOWNLOAD_TIMEOUT_MS = const(30000)
UPLOAD_TIMEOUT_MS = const(30000)
RETRY_INTERVAL_S = const(60)     # when the request gives no retryInterval
ROMFS_IMAGE = "evse.romfs"      # the package as a ROMFS image (romfs_update.IMAGE)
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"
_ENTRIES_PER_STEP = const(4)  # manifest entries checked in one step of the event loop

_busy = False


class BundleError(Exception):
    pass


_remove = store.remove


def _say(log, message):
    print("fw: " + message)
    if log is not None:
        log.write("fw: " + message)


def _attempts(retries):
    # OCPP 1.6: "how many times the Charge Point must try"; absent (None): once.
    return retries if isinstance(retries, int) and retries > 1 else 1


async def _tell(notify, status, log):
    # A status that cannot be sent (connection down) must not stop an install half way.
    try:
        await notify(status)
    except Exception as e:
        _say(log, "could not send status %s: %r" % (status, e))


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
        if path.lower() in seen:
            raise BundleError("%s: listed twice" % path)
        seen.add(path.lower())
        files.append((path, size, sha))
    return version, files


async def _hash_range(f, size, buf, out=None):
    """sha256 hex (bytes) of the next `size` bytes of `f`, copied to `out` on the way."""
    h = hashlib.sha256()
    mv = memoryview(buf)
    while size:
        n = f.readinto(mv[:CHUNK if size > CHUNK else size])
        if not n:
            raise BundleError("the file ends %d bytes early" % size)
        h.update(mv[:n])
        if out is not None:
            out.write(mv[:n])
        size -= n
        await asyncio.sleep(0)   # hashing a bundle must not stall the guns' control loop
    return binascii.hexlify(h.digest())


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


# Installation.

def _free_bytes(root):
    try:
        st = os.statvfs(root or ".")
        return st[0] * st[4]
    except (OSError, AttributeError):
        return 1 << 30   # no statvfs: let the writes find out


def _makedirs_for(root, path):
    parts = path.split("/")[:-1]
    for i in range(len(parts)):
        try:
            os.mkdir(store.join(root, "/".join(parts[:i + 1])))
        except OSError:
            pass   # exists; if it cannot be made, opening the file says so


def _replace(src, dst):
    try:
        os.rename(src, dst)
    except OSError:
        # A file system whose rename does not replace: remove first. A power cut between the two
        # leaves `src` alone, which resume_install renames.
        _remove(dst)
        os.rename(src, dst)


async def sha256_of(path):
    """The SHA-256 digest (bytes) of a whole file, a step per chunk (SignedUpdateFirmware)."""
    with open(path, "rb") as f:
        return binascii.unhexlify(await _hash_range(f, os.stat(path)[6], bytearray(CHUNK)))


def _file_sha(path, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return binascii.hexlify(h.digest())


async def _stage(root, bundle, files, offset):
    buf = bytearray(CHUNK)
    with open(bundle, "rb") as src:
        src.seek(offset)
        for path, size, sha in files:
            _makedirs_for(root, path)
            await asyncio.sleep(0)   # each littlefs commit (a mkdir, a create, a close) in a step of its own
            staged = _staged(root, path)
            with open(staged, "wb") as out:
                await _hash_range(src, size, buf, out)
            await asyncio.sleep(0)
            # Read back what the flash holds, not what we meant to write.
            with open(staged, "rb") as back:
                readback = await _hash_range(back, size, buf)
            if readback != sha.encode():
                raise BundleError("%s: the flash does not read back what was written" % staged)


def _unstage(root, files):
    for path, _, _ in files:
        _remove(_staged(root, path))


def _staged(root, path):
    # Where a file of the bundle waits until the install's commit point renames it into place.
    return store.join(root, path) + ".new"


def _rename(root, path):
    staged = _staged(root, path)
    if store.exists(staged):   # else renamed before a reset
        _replace(staged, store.join(root, path))


def _set_state(root, version, report):
    state = store.read_json(store.join(root, STATE_FILE), {})
    if version is not None:
        state["version"] = version
    if report is None:
        state.pop("report", None)
    else:
        state["report"] = report
    store.write_json(store.join(root, STATE_FILE), state)


async def _download(url, bundle, root, retries, retry_interval_s, http_get, log, cadata):
    """The bundle's size once downloaded from `url` to `bundle`, or None (said why). The HTTP
    client is loaded for the download only: the install after it, the update's peak of heap,
    runs without it (a job that uploads meanwhile keeps its own reference)."""
    from evse.ocpp import http
    try:
        await asyncio.sleep(0)   # the import (its .mpy loaded) a step of its own
        try:
            http.parse_url(url)   # an ftp:// location fails now, not after every retry
        except http.HttpError as e:
            _say(log, "download failed: %s" % e)
            return None
        room = max(0, _free_bytes(root) - RESERVE_BYTES)
        attempts = _attempts(retries)
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(RETRY_INTERVAL_S if retry_interval_s is None else retry_interval_s)
            try:
                return await (http_get or http.get_to_file)(url, bundle, DOWNLOAD_TIMEOUT_MS, max_bytes=room,
                                                            cadata=cadata)
            except (http.HttpError, OSError) as e:
                _say(log, "download %d of %d failed: %s" % (attempt + 1, attempts, e))
        _remove(bundle)
        return None
    finally:
        evse.unload("evse.ocpp.http")


async def update_firmware(url, root, notify, retries=1, retry_interval_s=60, http_get=None,
                          log=None, cadata=None, check=None):
    """UpdateFirmware: download the bundle at `url`, verify it, install it. True when it is
    installed and the caller must reboot (boot_report then says Installed); False when it failed
    (notified, old firmware untouched). `retries` is the number of download attempts (OCPP 1.6);
    `cadata`: the DER of the CA an https server must prove itself with; `check`: an async
    check(path) of the downloaded file that raises BundleError (SignedUpdateFirmware's signature:
    InvalidSignature, nothing installed) before the bundle is opened; `http_get`: in place of
    http.get_to_file."""
    global _busy
    if _busy:
        _say(log, "an update is already running; %s ignored" % url)
        return False
    _busy = True
    bundle = store.join(root, BUNDLE_FILE)
    try:
        await _tell(notify, "Downloading", log)
        size = await _download(url, bundle, root, retries, retry_interval_s, http_get, log, cadata)
        if size is None:
            await _tell(notify, "DownloadFailed", log)
            return False
        await asyncio.sleep(0)   # the download's last step (its close) apart from the checks
        await _tell(notify, "Downloaded", log)
        if check is not None:
            try:
                await check(bundle)
            except BundleError as e:
                _remove(bundle)
                _say(log, "bundle from %s refused: %s" % (url, e))
                await _tell(notify, "InvalidSignature", log)
                return False
            await _tell(notify, "SignatureVerified", log)
        # Checking the bundle is the install's first step: a bad one ends in InstallationFailed
        # after Installing, the order OCTT TC_044_3 expects (the old firmware stays; no reboot).
        await _tell(notify, "Installing", log)
        try:
            version, files, offset = await verify_bundle(bundle)
            await asyncio.sleep(0)   # each check a step of its own: they stat the filesystem
            _check_install(root, files)
            await asyncio.sleep(0)
            _check_room(root, files)
        except BundleError as e:
            _remove(bundle)
            _say(log, "bundle from %s refused: %s" % (url, e))
            await _tell(notify, "InstallationFailed", log)
            return False
        await asyncio.sleep(0)
        _say(log, "bundle %s: %d bytes, %d files, version %s" % (url, size, len(files), version))
        await asyncio.sleep(0)
        pending = {"phase": "staging", "version": version, "files": files}
        staged = False
        try:
            await slices.run_async(store.write_json_steps(store.join(root, PENDING_FILE), pending))
            await _stage(root, bundle, files, offset)
            staged = True
        except (BundleError, OSError) as e:
            _say(log, "install of %s failed, old firmware kept: %s" % (version, e))
        finally:
            if not staged:   # failed or cancelled: the old firmware stays, nothing staged is left
                _unstage(root, files)
                _remove(store.join(root, PENDING_FILE))
                _remove(bundle)
        if not staged:
            await _tell(notify, "InstallationFailed", log)
            return False
        # The commit point: from here a power cut is finished at boot, not rolled back.
        pending["phase"] = "renaming"
        try:
            await slices.run_async(store.write_json_steps(store.join(root, PENDING_FILE), pending))
            for path, _, _ in files:
                staged = _staged(root, path)
                if store.exists(staged):   # else renamed before a reset (as _rename, a step apart)
                    await asyncio.sleep(0)   # the stat in one step, the rename (a littlefs commit) in the next
                    _replace(staged, store.join(root, path))
                await asyncio.sleep(0)
            _set_state(root, version, "Installed")   # _complete, a flash operation per step
            await asyncio.sleep(0)
            _remove(store.join(root, PENDING_FILE))
            await asyncio.sleep(0)
            _remove(store.join(root, BUNDLE_FILE))
        except OSError as e:
            _say(log, "install of %s stopped (%s); resume_install at the reboot finishes or rolls "
                      "it back" % (version, e))
            return True
        _say(log, "version %s installed; reboot to run it" % version)
        return True
    finally:
        _busy = False


ROMFS_PACKAGE = "/rom/evse"   # where a ROMFS install runs the package from (docs/bring-up.md)


def _check_install(root, files):
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


def _check_room(root, files):
    # Every file takes whole blocks (littlefs: at least one each); the controller keeps writing.
    try:
        block = os.statvfs(root or ".")[0]
    except (OSError, AttributeError):
        return
    needed = sum((size + block - 1) // block * block + block for _, size, _ in files)
    free = _free_bytes(root)
    if free - RESERVE_BYTES < needed:
        raise BundleError("not enough flash to install: %d bytes needed, %d free above the %d kept "
                          "in reserve" % (needed, free - RESERVE_BYTES, RESERVE_BYTES))


def _complete(root, version, bad):
    if bad:
        print("fw: after the install, %s do not match the manifest" % ", ".join(bad))
        _set_state(root, None, "InstallationFailed")
    else:
        _set_state(root, version, "Installed")
    _remove(store.join(root, PENDING_FILE))
    _remove(store.join(root, BUNDLE_FILE))


def resume_install(root):
    """At boot, before anything else under evse/ is imported: finish or roll back an install a
    power cut interrupted. The status it leads to (also what boot_report will say), or None
    when no install was pending."""
    pending_path = store.join(root, PENDING_FILE)
    pending = store.read_json(pending_path)
    if not isinstance(pending, dict) or not isinstance(pending.get("files"), list):
        if store.exists(pending_path):
            _remove(pending_path)
        _remove(store.join(root, BUNDLE_FILE))   # an interrupted download: only takes room
        return None
    files = [tuple(f) for f in pending["files"]]
    if pending.get("phase") == "renaming":
        print("fw: finishing the install of %s a reset interrupted" % pending.get("version"))
        buf = bytearray(CHUNK)
        for path, _, _ in files:
            _rename(root, path)
        # Boot, no control loop yet: time to check every installed file. A ROMFS image may be
        # gone already: romfs_update, which runs first, wrote it to the partition and removed it.
        bad = [p for p, _, sha in files if p != ROMFS_IMAGE and (not store.exists(store.join(root, p))
               or _file_sha(store.join(root, p), buf) != sha.encode())]
        _complete(root, pending.get("version"), bad)
    else:
        print("fw: rolling back the install of %s a reset interrupted; old firmware kept"
              % pending.get("version"))
        _unstage(root, files)
        _remove(pending_path)
        _remove(store.join(root, BUNDLE_FILE))
        _set_state(root, None, "InstallationFailed")
    return store.read_json(store.join(root, STATE_FILE), {}).get("report")


def boot_report(root, clear=True):
    """The FirmwareStatusNotification to send once connected after a reboot ("Installed" or
    "InstallationFailed"), or None. `clear`: it is returned once only; with clear=False, call
    clear_report() after the notification went through."""
    report = store.read_json(store.join(root, STATE_FILE), {}).get("report")
    if report is not None and clear:
        clear_report(root)
    return report


def clear_report(root):
    _set_state(root, None, None)


def installed_version(root):
    """The version the last update installed, or None (never updated over the air)."""
    return store.read_json(store.join(root, STATE_FILE), {}).get("version")


# GetDiagnostics.

def diagnostics_name(log):
    """The file name GetDiagnostics.conf carries, or None when there is no log to upload. Take
    it before the upload starts: the .conf goes out first."""
    if not log.files():
        return None
    stamp = "".join(c for c in log.now() if c.isalpha() or c.isdigit() or c == "-")
    return "diagnostics-%s.txt" % stamp


async def upload_diagnostics(url, root, log, notify, retries=1, retry_interval_s=60,
                             http_put=None, name=None, cadata=None):
    """GetDiagnostics: send the log files (oldest first, as one body) to `url`; a `url` ending
    in "/" gets the file name appended. The file name, or None when it failed (notified) or
    there was nothing to send (not notified: the .conf then carries no file name). `http_put`:
    in place of http.put_file."""
    from evse.ocpp import http
    await asyncio.sleep(0)   # the import (its .mpy loaded) a step of its own
    http_put = http_put or http.put_file
    name = name or diagnostics_name(log)
    if name is None:
        return None
    if url.endswith("/"):
        url += name
    await _tell(notify, "Uploading", log)
    await asyncio.sleep(0)   # the status in one step, the checks in the next
    try:
        http.parse_url(url)   # an ftp:// location fails now, not after every retry
        attempts = _attempts(retries)
    except http.HttpError as e:
        print("fw: diagnostics upload failed: %s" % e)
        attempts = 0
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(RETRY_INTERVAL_S if retry_interval_s is None else retry_interval_s)
        log.hold()   # no rotation while the files are read: they only grow
        try:
            paths = log.files()
            await asyncio.sleep(0)
            await http_put(url, paths, UPLOAD_TIMEOUT_MS, cadata=cadata)
            break
        except (http.HttpError, OSError) as e:
            print("fw: diagnostics upload %d of %d failed: %s" % (attempt + 1, attempts, e))
        finally:
            log.release()
    else:
        log.write("fw: diagnostics upload to %s failed" % url)
        await _tell(notify, "UploadFailed", log)
        return None
    await _tell(notify, "Uploaded", log)
    return name
