# The local list's updates (SendLocalList, and a list earlier firmware kept as JSON) and its whole
# contents: evse.ocpp.auth keeps the list's format and its lookups, which a card at the reader
# needs at any time; this code, rarely wanted, Auth loads for the call and lets go after it
# (Auth._authlist): a board holds .mpy code in its heap.
import os

from micropython import const

from evse import slices, store
from evse.ocpp.auth import BUCKETS, STATUSES, TRAILER, _bucket, _entry, _is_tag, _load, _parse, _span

_SLICE = const(2)  # local list entries taken in one step of the event loop (~9 ms each at RP2040 speed)


def _line(tag, entry):
    expiry, parent = entry[1], entry[2]
    return "%s\t%d\t%s\t%s\n" % (tag, STATUSES.index(entry[0]), "" if expiry is None else expiry, parent or "")


def move_old_list(auth, path):
    # A list kept by earlier firmware as one JSON file (Auth found it there): into the new file,
    # as one Full update.
    data, table = _load(path, 0, auth.parents)
    version = data.get("version") if isinstance(data, dict) else 0
    groups = {}
    for tag in table:
        groups.setdefault(_bucket(tag), []).append((tag, table[tag]))
    version = version if isinstance(version, int) and version > 0 and table else 0
    if slices.run(_store_steps(auth, groups, True, version)) == "Accepted":
        store.remove(path)


def list_entries(auth):
    """The whole local list as {tag: (status, expiry_min, parent)}: for the console and the
    tests (it reads every region; nothing on the charging path needs it)."""
    table = {}
    for b in range(BUCKETS if auth._at is not None else 0):
        try:
            text = auth._read(b)
        except ValueError:
            print("auth: region %d of the local list is not text: ignored" % b)
            continue
        for line in text.split("\n"):
            if line:
                try:
                    tag, entry = _parse(line)
                    table[tag] = entry
                except (ValueError, IndexError):
                    print("auth: a bad line in the local list: ignored")
    return table


def local_list_steps(auth, req):
    """send_local_list as a generator that yields every _SLICE entries and between its files'
    reads and writes (the charge point lets the event loop run at each) and returns the
    status. It takes the request's entries: req["localAuthorizationList"] is None after."""
    if not auth.keys.get("LocalAuthListEnabled"):
        return "NotSupported"
    version = req.get("listVersion")
    update = req.get("updateType")
    items = req.get("localAuthorizationList") or []
    if not isinstance(version, int) or isinstance(version, bool) or version < 0 or not isinstance(items, list):
        return "Failed"
    if len(items) > auth.keys.get("SendLocalListMaxLength") or update not in ("Differential", "Full"):
        return "Failed"
    if update == "Differential" and version <= auth.local_list_version():
        return "VersionMismatch"
    groups = {}   # region -> [(tag, entry, or None to remove it)], in the request's order
    for k in range(len(items)):
        if k % _SLICE == _SLICE - 1:
            yield
        item = items[k]
        tag = item.get("idTag") if isinstance(item, dict) else None
        if not _is_tag(tag):
            return "Failed"
        info = item.get("idTagInfo")
        entry = None
        if info is not None or update == "Full":   # Differential: no idTagInfo removes the entry
            entry = _entry(info, auth.parents)
            if entry is None:
                return "Failed"
        tag = tag.upper()
        groups.setdefault(_bucket(tag), []).append((tag, entry))
    # The request's entries, parsed from its JSON, go while the list is written: the groups
    # hold what is kept of them (about 4 KiB of a board's heap for 30 entries).
    items = item = info = entry = None
    req["localAuthorizationList"] = None
    if auth._busy:
        return "Failed"   # another update is on its way (the CSMS sends one at a time)
    auth._busy = True
    try:
        return (yield from _store_steps(auth, groups, update == "Full", version))
    finally:
        auth._busy = False

def _store_steps(auth, groups, full, version):
    # Copies the list into authlist.dat.tmp region by region, changed as `groups` says, and
    # renames it into place: "Accepted", or "Failed" with the list as it was.
    tmp = auth.list_path + ".tmp"
    count = 0 if full else auth.count
    at = [0]
    old = None
    try:
        if not full and auth._at is not None:
            old = open(auth.list_path)
        with open(tmp, "w") as out:
            for b in range(BUCKETS):
                yield
                text = auth._read(b, old) if old is not None else "\n"
                for tag, entry in groups.get(b, ()):
                    span = _span(text, tag)
                    if span is not None:
                        text = text[:span[0]] + text[span[1]:]
                        count -= 1
                    if entry is not None:
                        text += _line(tag, entry)
                        count += 1
                out.write(text)
                at.append(at[-1] + len(text))
            if count > auth.keys.get("LocalAuthListMaxLength") or (version == 0 and count):
                raise ValueError   # version 0 means "empty list" (section 5.10)
            trailer = "%d %d %s" % (version, count, " ".join([str(x) for x in at]))
            if len(trailer) >= TRAILER:
                raise ValueError   # a listVersion of dozens of digits: no room for it
            out.write(trailer + " " * (TRAILER - len(trailer) - 1) + "\n")
            yield   # the close (littlefs commits the file) and the rename in steps of their own
        if old is not None:
            old.close()
            old = None
        yield
        os.rename(tmp, auth.list_path)
    except BaseException as e:   # failed, or given up half-way: the old list stays, no .tmp left
        if old is not None:
            old.close()
        store.remove(tmp)
        if not isinstance(e, (OSError, ValueError)):
            raise
        if isinstance(e, OSError):
            print("auth: local list not stored: %s" % e)
        return "Failed"
    auth.version, auth.count, auth._at = version, count, at
    return "Accepted"
