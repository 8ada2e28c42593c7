# OCPP 1.6 FirmwareManagement: UpdateFirmware (download, verify, install) and GetDiagnostics
# (upload the log). The caller sends the status notifications `notify` is given, and reboots.
# The bundle's format and its checks are in evse.ocpp.bundle, loaded for the install.
#
# Files on flash that the bundle does not list are left as they are. The sha256 guards against
# corruption, not against an attacker: bundles are not signed.
#
# Files under `root`:
#     fw.new      the downloaded bundle (removed once installed or refused)
#     <path>.new  a file staged for installation
#     fw.pending  {"phase": "staging"|"renaming", "version", "files"}: an install in progress.
#                 fwboot.resume_install() at boot rolls "staging" back (old firmware kept) and finishes
#                 "renaming" (every staged file is complete and verified before that phase).
#     fw.state    {"version": installed version, "report": status for after the reboot}
#
# Statuses given to notify (FirmwareStatusNotification / DiagnosticsStatusNotification):
# Downloading, Downloaded, DownloadFailed, Installing (the bundle's check first), InstallationFailed,
# Installed (after the reboot, from fwboot.boot_report); Uploading, Uploaded, UploadFailed.
import asyncio
import binascii
import hashlib
import os

from micropython import const

import evse
from evse import slices, store

BUNDLE_FILE = "fw.new"
PENDING_FILE = "fw.pending"
STATE_FILE = "fw.state"
CHUNK = const(1024)
RESERVE_BYTES = const(32768)     # flash left free for config, journal and log during an update
DOWNLOAD_TIMEOUT_MS = const(30000)
RETRY_INTERVAL_S = const(60)     # when the request gives no retryInterval
ROMFS_IMAGE = "evse.romfs"      # the package as a ROMFS image (romfs_update.IMAGE)

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
            try:
                from evse.ocpp import bundle as checks   # let go after the checks (below)
            except Exception as e:  # noqa: BLE001  (no room for it: the install fails, the old firmware stays)
                raise BundleError("its checks could not load (%r)" % e)
            await asyncio.sleep(0)   # the import (its .mpy loaded) a step of its own
            version, files, offset = await checks.verify_bundle(bundle)
            await asyncio.sleep(0)   # each check a step of its own: they stat the filesystem
            checks.check_install(root, files)
            await asyncio.sleep(0)
            checks.check_room(root, files)
        except BundleError as e:
            _remove(bundle)
            _say(log, "bundle from %s refused: %s" % (url, e))
            await _tell(notify, "InstallationFailed", log)
            return False
        finally:
            checks = None
            evse.unload("evse.ocpp.bundle")   # its code goes before the staging's copies, not after
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


# ---- the charge point's job (its start_firmware_update) ---------------------------------------
def start_update(cp, location, when_s, retries, interval_s, signed=None):
    """UpdateFirmware, or with signed = (requestId, key of the signing certificate (RSA or
    EC P-256, certs.public_key), signature) SignedUpdateFirmware: the bundle's SHA-256 must
    carry that signature before anything of it is installed, and the statuses go as
    SignedFirmwareStatusNotification. The requestId waits in fw_request.json only while
    the install is under way: the report after its reboot goes signed, any other not."""
    from evse.ocpp.cp import FW_REQUEST_FILE   # the charge point's: loaded
    evse.update_job(1)
    cp.firmware_busy = True
    request_file = store.join(cp.root, FW_REQUEST_FILE)
    check = None
    if signed is not None:
        request_id, key, signature = signed

        async def check(path):
            digest = await sha256_of(path)
            from evse.ocpp import certs   # for the check, not the whole download
            try:
                good = await slices.run_async(certs.verify_steps(key, signature, digest))
            finally:
                evse.unload("evse.ocpp.certs")
            if not good:
                cp.security_event("InvalidFirmwareSignature", location[:200])
                raise BundleError("its signature does not match the signing certificate's key")
            store.write_json(request_file, {"requestId": request_id})   # verified: the install begins

    async def notify(status):
        cp.firmware_status = status
        if signed is None:
            cp.send("FirmwareStatusNotification", {"status": status})
        else:
            cp.send("SignedFirmwareStatusNotification", {"status": status, "requestId": signed[0]})

    async def update():
        reboot = False
        try:
            wait_s = when_s - cp.clock.now()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            if signed is None:
                store.remove(request_file)   # a signed update's leftover must not sign this one's report
            reboot = await update_firmware(location, cp.root, notify, retries, interval_s,
                                           log=cp.app.log, cadata=cp.trusted_ca(), check=check)
        finally:
            evse.update_job(-1)
            cp.firmware_busy = False
            if not reboot:
                store.remove(request_file)
        if reboot:
            if signed is not None:
                await notify("InstallRebooting")
            cp.request_reset("Soft")

    asyncio.create_task(update())
