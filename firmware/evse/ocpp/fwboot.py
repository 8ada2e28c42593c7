# The boot's half of the firmware update (evse.ocpp.fw): finishing or rolling back an install
# a power cut interrupted (main.py, before anything under evse/ is imported), and the report
# of the last install for after the reboot (App.after_boot). An update, the moment of most heap
# on the boards that run .mpy files, runs without this code. The files under `root` are fw's.
import binascii
import hashlib

from evse import store
from evse.ocpp.fw import (BUNDLE_FILE, CHUNK, PENDING_FILE, ROMFS_IMAGE, STATE_FILE, _replace, _set_state, _staged,
                          _unstage)

_remove = store.remove


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



def _rename(root, path):
    staged = _staged(root, path)
    if store.exists(staged):   # else renamed before a reset
        _replace(staged, store.join(root, path))



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


