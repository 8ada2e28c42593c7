# Who may charge: the Local Authorization List the CSMS sends (OCPP 1.6 sections 3.5.2, 5.10,
# 5.15) and the Authorization Cache of the CSMS's answers (section 3.5.1), both on flash, and the
# decision for a presented idTag from LocalPreAuthorize, LocalAuthorizeOffline and
# AllowOfflineTxForUnknownId (sections 3.5.4, 9.1).
# idTags are CiString20 (case-insensitive): they are kept upper-cased. An entry, in RAM and in the
# files, is [status, expiry, parentIdTag] (the cache's adds when it was last used); expiry is in
# whole minutes since 1970 UTC, or null: a small int on 32-bit ports, where seconds would be a
# big int on the heap. Statuses and parents are shared strings, not one copy per entry.
from micropython import const

from evse import slices, store
from evse.ocpp import clock

LIST_FILE = "authlist.json"
CACHE_FILE = "authcache.json"
CACHE_MAX = const(64)
_SLICE = const(2)  # local list entries taken in one step of the event loop (~9 ms each at RP2040 speed)
STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")  # AuthorizationStatus


def _entry(info, parents):
    """(status, expiry_min, parent) of an idTagInfo object, or None if it is not a valid one."""
    if not isinstance(info, dict) or info.get("status") not in STATUSES:
        return None
    expiry = info.get("expiryDate")
    if expiry is not None:
        try:
            expiry = clock.parse_iso(expiry) // 60  # rounded down: expires early, never late
        except (ValueError, TypeError):
            return None
    return _shared(info["status"], expiry, info.get("parentIdTag"), parents)


def _shared(status, expiry, parent, parents):
    # The entry with the one copy of its status and parent strings; None if it is malformed.
    if status not in STATUSES or not (expiry is None or isinstance(expiry, int) and not isinstance(expiry, bool)):
        return None
    if parent is not None:
        if not _is_tag(parent):
            return None
        parent = parents.setdefault(parent, parent)
    return (STATUSES[STATUSES.index(status)], expiry, parent)


def _is_tag(tag):
    return isinstance(tag, str) and 0 < len(tag) <= 20


def _valid(entry, now_s):
    return entry[0] == "Accepted" and (entry[1] is None or entry[1] * 60 > now_s)


def _info(entry, now_s):
    status, expiry, parent = entry[0], entry[1], entry[2]
    if status == "Accepted" and not _valid(entry, now_s):
        status = "Expired"
    info = {"status": status}
    if expiry is not None:
        info["expiryDate"] = clock.iso(expiry * 60)
    if parent is not None:
        info["parentIdTag"] = parent
    return info


def _load(path, with_used, parents):
    data = store.read_json(path, {})
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        if data:
            print("auth: %s is not an authorization file; starting empty" % path)
        return data, {}
    table = {}
    for tag in entries:
        e = entries[tag]
        entry = None
        if isinstance(e, list) and len(e) == 3 + with_used and _is_tag(tag):
            entry = _shared(e[0], e[1], e[2], parents)
        if entry is None or with_used and not isinstance(e[3], int):
            print("auth: %s: ignoring bad entry for %s" % (path, tag))
        else:
            table[tag.upper()] = [entry[0], entry[1], entry[2], e[3]] if with_used else entry
    return data, table


class Auth:
    """Local Authorization List (authlist.json) and Authorization Cache (authcache.json, at most
    CACHE_MAX entries, least recently used evicted, invalid ones first)."""

    def __init__(self, root, keys):
        root = root.rstrip("/")
        self.keys = keys
        self.list_path = root + "/" + LIST_FILE
        self.cache_path = root + "/" + CACHE_FILE
        self.parents = {}
        data, self.entries = _load(self.list_path, 0, self.parents)
        version = data.get("version") if isinstance(data, dict) else 0
        self.version = version if isinstance(version, int) and version > 0 else 0
        data, self.cache = _load(self.cache_path, 1, self.parents)
        self.tick = max([e[3] for e in self.cache.values()] + [0])

    def local_list_version(self):
        """GetLocalListVersion.conf listVersion (section 5.10): -1 when the list is disabled,
        0 when it is empty."""
        if not self.keys.get("LocalAuthListEnabled"):
            return -1
        return self.version if self.entries else 0

    def send_local_list(self, req):
        """SendLocalList.req -> "Accepted", "Failed", "NotSupported" or "VersionMismatch". The
        list on flash changes completely or not at all."""
        return slices.run(self.local_list_steps(req))

    def local_list_steps(self, req):
        """send_local_list as a generator that yields every _SLICE entries (the charge point
        lets the event loop run between them) and returns the status."""
        if not self.keys.get("LocalAuthListEnabled"):
            return "NotSupported"
        version = req.get("listVersion")
        update = req.get("updateType")
        items = req.get("localAuthorizationList") or []
        if not isinstance(version, int) or isinstance(version, bool) or version < 0 or not isinstance(items, list):
            return "Failed"
        if len(items) > self.keys.get("SendLocalListMaxLength"):
            return "Failed"
        if update == "Differential":
            if version <= self.local_list_version():
                return "VersionMismatch"
            entries = dict(self.entries)
        elif update == "Full":
            entries = {}
        else:
            return "Failed"
        for k in range(len(items)):
            if k % _SLICE == _SLICE - 1:
                yield
            item = items[k]
            tag = item.get("idTag") if isinstance(item, dict) else None
            if not _is_tag(tag):
                return "Failed"
            info = item.get("idTagInfo")
            if info is None and update == "Differential":
                entries.pop(tag.upper(), None)  # Differential: no idTagInfo removes the entry
                continue
            entry = _entry(info, self.parents)
            if entry is None:
                return "Failed"
            entries[tag.upper()] = entry
        if len(entries) > self.keys.get("LocalAuthListMaxLength") or (version == 0 and entries):
            return "Failed"  # version 0 means "empty list" (section 5.10)
        try:
            yield from store.write_json_steps(self.list_path, {"version": version, "entries": entries})
        except OSError as e:
            print("auth: local list not stored: %s" % e)
            return "Failed"
        self.entries = entries
        self.version = version
        return "Accepted"

    def clear_cache(self):
        """ClearCache.req -> "Accepted", or "Rejected" when the flash write fails."""
        try:
            store.write_json(self.cache_path, {"entries": {}})
        except OSError as e:
            print("auth: cache not cleared: %s" % e)
            return "Rejected"
        self.cache = {}
        return "Accepted"

    def _find(self, tag, now_s):
        # (idTagInfo, in_local_list) or (None, False)
        if not _is_tag(tag):
            return None, False
        tag = tag.upper()
        if tag in self.entries and self.keys.get("LocalAuthListEnabled"):
            return _info(self.entries[tag], now_s), True
        entry = self.cache.get(tag)
        if entry is not None and self.keys.get("AuthorizationCacheEnabled"):
            self.tick += 1
            entry[3] = self.tick  # recency is kept in RAM; it reaches flash with the next change
            info = _info(entry, now_s)
            entry[0] = info["status"]  # section 3.5.1: an entry past its expiryDate becomes Expired
            return info, False
        return None, False

    def lookup(self, id_tag, now_s):
        """idTagInfo from the local list, else from the cache, with Expired for an Accepted entry
        past its expiryDate; None for an unknown idTag."""
        return self._find(id_tag, now_s)[0]

    def remember(self, id_tag, id_tag_info, now_s):
        """Caches the idTagInfo of an Authorize, StartTransaction or StopTransaction .conf
        (section 3.5.1); never for an idTag of the local list (section 3.5.3)."""
        if not self.keys.get("AuthorizationCacheEnabled") or not _is_tag(id_tag):
            return
        tag = id_tag.upper()
        entry = _entry(id_tag_info, self.parents)
        if entry is None or tag in self.entries:
            return
        old = self.cache.get(tag)
        self.tick += 1
        if old is not None and tuple(old[:3]) == entry:
            old[3] = self.tick
            return  # nothing new for flash
        cache = dict(self.cache)
        if old is None and len(cache) >= CACHE_MAX:
            cache.pop(self._victim(now_s))
        cache[tag] = [entry[0], entry[1], entry[2], self.tick]
        try:
            store.write_json(self.cache_path, {"entries": cache})
        except OSError as e:
            print("auth: cache not stored: %s" % e)
            return
        self.cache = cache

    def _victim(self, now_s):
        # The least recently used entry that no longer authorizes; else the least recently used.
        best = None
        for tag in self.cache:
            e = self.cache[tag]
            rank = (_valid(e, now_s), e[3])
            if best is None or rank < best[0]:
                best = (rank, tag)
        return best[1]

    def decide(self, id_tag, online, now_s):
        """("accept" | "reject" | "ask", idTagInfo or None) for an idTag presented at the charger.
        Online: accept a valid local entry at once if LocalPreAuthorize, else ask the CSMS.
        Offline: a known invalid idTag is rejected; a valid one is accepted if
        LocalAuthorizeOffline; any other is accepted only if AllowOfflineTxForUnknownId."""
        info, _ = self._find(id_tag, now_s)
        valid = info is not None and info["status"] == "Accepted"
        if online:
            if valid and self.keys.get("LocalPreAuthorize"):
                return "accept", info
            return "ask", info
        if info is not None and not valid:
            return "reject", info
        if valid and self.keys.get("LocalAuthorizeOffline"):
            return "accept", info
        return ("accept" if self.keys.get("AllowOfflineTxForUnknownId") else "reject"), info
