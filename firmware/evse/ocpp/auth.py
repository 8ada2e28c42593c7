# Who may charge: the Local Authorization List the CSMS sends (OCPP 1.6 sections 3.5.2, 5.10,
# 5.15) and the Authorization Cache of the CSMS's answers (section 3.5.1), both on flash, and the
# decision for a presented idTag from LocalPreAuthorize, LocalAuthorizeOffline and
# AllowOfflineTxForUnknownId (sections 3.5.4, 9.1).
# idTags are CiString20 (case-insensitive): they are kept upper-cased. An entry is (status, expiry,
# parentIdTag) (the cache's adds when it was last used); expiry is in whole minutes since 1970 UTC,
# or null: a small int on 32-bit ports, where seconds would be a big int on the heap. The cache's
# statuses and parents are shared strings, not one copy per entry.
#
# The local list stays on flash, not in RAM, so that it holds LocalAuthListMaxLength (1,000) cards
# on a board with 150 KiB of heap. authlist.dat holds its cards in BUCKETS regions by a hash of
# the tag, and ends in a trailer of TRAILER bytes: "version count" and where each region starts
# (the last offset is where the trailer does). A lookup reads the trailer once (then it is kept)
# and one region (about 2.5 KB at 1,000 cards), and finds the card's line in C. A line is
# "TAG<tab>status<tab>expiry<tab>parent" (the status as its index in STATUSES, the expiry in
# minutes or empty, the parent or empty); a region starts with a newline, so every line follows one.
# An update copies the file region by region into authlist.dat.tmp, changed as asked, and renames it
# over authlist.dat: the list changes completely or not at all, and a power cut leaves the old
# file or the new one. One file, not one per region: every file littlefs creates, closes or
# renames is a commit of its directory's metadata, and those grew to milliseconds of C here.
from micropython import const

import evse
from evse import slices, store
from evse.ocpp import clock

LIST_FILE = "authlist.dat"
OLD_LIST_FILE = "authlist.json"   # the list as firmware before 2026-12 kept it: moved at boot
CACHE_FILE = "authcache.json"
CACHE_MAX = const(64)
BUCKETS = const(16)
TRAILER = const(160)   # "version count" and BUCKETS + 1 offsets, padded to this
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
    # Printable ASCII: no tab or line break (they separate the list's fields and lines), and a
    # character is a byte (the list file's offsets are in bytes). Cards' ids are hex or ASCII.
    if not isinstance(tag, str) or not 0 < len(tag) <= 20:
        return False
    for c in tag:
        if not " " <= c <= "~":
            return False
    return True


def _bucket(tag):
    # Which region of the list holds the (upper-cased) tag: a hash that is the same on every
    # port, small ints only; its middle bits depend on every character.
    h = 0
    for c in tag:
        h = (h * 31 + ord(c)) & 0x3FFFFF
    return (h ^ (h >> 9)) % BUCKETS


def _span(text, tag):
    # (start, end) of the tag's line in a region's text (its newline before, the one after), or None.
    at = text.find("\n" + tag + "\t")
    return None if at < 0 else (at, text.find("\n", at + 1))


def _parse(line):
    # (tag, entry) of one of the list's lines; ValueError or IndexError if it is not one.
    f = line.split("\t")
    if len(f) != 4:
        raise ValueError(line)
    return f[0], (STATUSES[int(f[1])], int(f[2]) if f[2] else None, f[3] or None)


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
    """Local Authorization List (authlist.dat, on flash) and Authorization Cache (authcache.json, at
    most CACHE_MAX entries, least recently used evicted, invalid ones first)."""

    def __init__(self, root, keys):
        root = root.rstrip("/")
        self.keys = keys
        self.list_path = root + "/" + LIST_FILE
        self.cache_path = root + "/" + CACHE_FILE
        self.parents = {}
        self.version = 0
        self.count = 0
        self._at = None      # the list file's region offsets (its trailer), None when it has none
        self._busy = False
        store.remove(self.list_path + ".tmp")   # an update a power cut stopped: the old list stays
        self._read_trailer()
        if store.exists(root + "/" + OLD_LIST_FILE):
            self._authlist("move_old_list", root + "/" + OLD_LIST_FILE)
        data, self.cache = _load(self.cache_path, 1, self.parents)
        self.tick = max([e[3] for e in self.cache.values()] + [0])

    def _read_trailer(self):
        self.version, self.count, self._at = 0, 0, None
        fields = []
        try:
            with open(self.list_path) as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - TRAILER))
                fields = [int(x) for x in f.read(TRAILER).split()]
        except OSError:
            return   # no list yet
        except ValueError:   # not numbers, or not text (a UnicodeError is a ValueError)
            pass
        at = fields[2:]
        if (len(at) != BUCKETS + 1 or at[0] != 0 or at[-1] != size - TRAILER or fields[0] < 0 or fields[1] < 0
                or any(at[k + 1] < at[k] for k in range(BUCKETS))):
            print("auth: %s has no valid trailer; the local list is empty" % self.list_path)
            return
        self.version, self.count, self._at = fields[0], fields[1], at

    def _read(self, b, f=None):
        # The text of the list's region b: "\n" followed by its lines.
        if self._at is None:
            return "\n"
        if f is None:
            with open(self.list_path) as f:
                return self._read(b, f)
        f.seek(self._at[b])
        return f.read(self._at[b + 1] - self._at[b])

    def _list_entry(self, tag):
        # The local list's entry for the upper-cased tag, or None.
        if not self.count:
            return None
        try:
            text = self._read(_bucket(tag))
            span = _span(text, tag)
            return None if span is None else _parse(text[span[0] + 1:span[1]])[1]
        except (ValueError, IndexError):   # a UnicodeError (a byte that is not text) too
            print("auth: a bad line in the local list for %s: ignored" % tag)
            return None
        except OSError as e:
            print("auth: the local list does not read: %s" % e)
            return None

    def list_entries(self):
        """The whole local list as {tag: (status, expiry_min, parent)}: for the console and the
        tests (it reads every region; nothing on the charging path needs it)."""
        return self._authlist("list_entries")

    def send_local_list(self, req):
        """SendLocalList.req -> "Accepted", "Failed", "NotSupported" or "VersionMismatch". The
        list on flash changes completely or not at all."""
        return slices.run(self.local_list_steps(req))

    def local_list_steps(self, req):
        """send_local_list as a generator that yields every few entries and between its files'
        reads and writes (the charge point lets the event loop run at each) and returns the
        status. It takes the request's entries: req["localAuthorizationList"] is None after."""
        from evse.ocpp import authlist   # ops.steps loads it in a step before
        try:
            return (yield from authlist.local_list_steps(self, req))
        finally:
            authlist = None
            evse.unload("evse.ocpp.authlist")

    def _authlist(self, what, *args):
        # The list's updates and its whole contents: evse.ocpp.authlist, loaded for the call.
        return evse.call_and_let_go("evse.ocpp.authlist", what, self, *args)

    def local_list_version(self):
        """GetLocalListVersion.conf listVersion (section 5.10): -1 when the list is disabled,
        0 when it is empty."""
        if not self.keys.get("LocalAuthListEnabled"):
            return -1
        return self.version if self.count else 0

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
        entry = self._list_entry(tag) if self.keys.get("LocalAuthListEnabled") else None
        if entry is not None:
            return _info(entry, now_s), True
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
        if entry is None or self._list_entry(tag) is not None:
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
