# What Journal.__init__ does, once, at boot: the index's blocks, the log's directory, and the log
# read back into the index. Loaded for the construction and let go after it (evse.call_and_let_go),
# as evse.appinit and evse.ocpp.cpinit: a board holds .mpy code in its heap.
import json
import os

from micropython import const

from evse import store
from evse.ocpp import journal as jmod
from evse.ocpp.journal import _KINDS, _OLD_FILE, CHUNK, JOURNAL_DIR, JOURNAL_FILE, OTHER

_FEWEST = const(16)       # JournalMaxEntries' least: below, a journal that cannot allocate raises
_S_IFDIR = const(0x4000)
_remove = store.remove


def init(j, root, max_entries, log):
    """Journal.__init__: its index for max_entries messages (half as many while the heap has no
    room), and what its log on flash holds."""
    root = root.rstrip("/") + "/"
    j.log = log
    j.path = _settle(j, root)
    # Per slot i, in block i >> _SHIFT: at (i & _MASK) * 2 of _ix's, seq and the
    # transactionId it was queued under (0: none; a local one reads through _maps once its
    # start is confirmed); at i & _MASK of _kd's, its kind (0: gone). The last block holds
    # only what cap needs (it grows to a whole one if ever needed). A heap with no room for
    # them gets a journal of half as many messages, not a charger that cannot boot (a
    # JournalMaxEntries over what the board holds, set before its bound was known).
    while True:
        cap = max_entries + max_entries // 16 + 8  # slack: the slots of gone messages are reused in batches
        try:
            j._ix = [jmod._block(min(CHUNK, cap - start)) for start in range(0, cap, CHUNK)]
            j._kd = [bytearray(min(CHUNK, cap - start)) for start in range(0, cap, CHUNK)]
            break
        except MemoryError:
            j._ix = j._kd = None
            if max_entries <= _FEWEST:
                raise
            log("journal: no heap for the index of %d messages; it holds %d" % (max_entries, max_entries // 2))
            max_entries //= 2
    j.max_entries = max_entries
    j._cap = cap
    j._n = 0               # slots used
    j._head = 0            # every slot below is gone
    j._live = 0
    j._tries = {}          # seq -> failed attempts, for the few messages that have any
    j._garbage = 0         # lines in the file (or pending) that describe no live message
    j._cursor = 0          # no line before this offset is the oldest live message's
    j._pending = []        # control lines not yet written
    j._maps = {}           # local transaction id -> real one
    j._next_seq = 1
    j._next_local = -1
    j._peeked = None       # (seq, action, payload) of the last line read back
    j._fetched = None      # (seq, line) read back by fetch, not decoded yet
    j._broken = False      # a write failed half-way: rewrite the file before the next one
    j._out = None          # journal.log.tmp while a compaction runs, else None
    j._cmp = None          # its [read offset, end of what it filters, tries, dead lines, slice,
    #                           closed: journal.log.tmp is whole and only the rename is left]
    j._log_file = None     # journal.log open for reads and appends between steps (_handle)
    j.writes = 0           # appends to the log so far: a caller's step that wrote skips step()
    j._failed_at = None    # the garbage count when a compaction last failed to start
    _load(j)


def _settle(j, root):
    # The log's path. Its directory is made once, and a log from before it is moved in
    # (littlefs renames across directories atomically too); a compaction cut short left only
    # a .tmp behind. A directory that cannot be made keeps the log where it was.
    try:
        os.mkdir(root + JOURNAL_DIR)
    except OSError:
        pass   # there already, or not to be made: the stat says which
    try:
        made = os.stat(root + JOURNAL_DIR)[0] & _S_IFDIR
    except OSError:
        made = 0
    if not made:
        j.log("journal: cannot make the directory %s: the log stays in %s" % (JOURNAL_DIR, root))
        return root + _OLD_FILE
    old = root + _OLD_FILE
    _remove(old + ".tmp")
    if not store.exists(old):
        return root + JOURNAL_FILE
    try:
        if not store.exists(root + JOURNAL_FILE):
            os.rename(old, root + JOURNAL_FILE)
            return root + JOURNAL_FILE
        # Both: a release before the directory ran after one with it. Its messages are kept,
        # not replayed (their seqs would clash with the directory's log).
        _remove(root + JOURNAL_FILE + ".old")
        os.rename(old, root + JOURNAL_FILE + ".old")
        j.log("journal: an older %s beside %s: kept as %s.old, not sent" % (old, JOURNAL_FILE, JOURNAL_FILE))
        return root + JOURNAL_FILE
    except OSError as e:
        j.log("journal: cannot move %s into %s (%s): the log stays where it is" % (old, JOURNAL_DIR, e))
        return old

def _load(j):
    _remove(j.path + ".tmp")  # a compaction cut short: journal.log is still whole
    try:
        f = open(j.path, "rb")
    except OSError:
        return
    lines = 0
    last_seq = -1
    damaged = False
    with f:
        for at, line in _lines(f, 0):
            if line[-1:] != b"\n":
                j.log("journal: incomplete last line (cut by a power loss) ignored")
                damaged = True
                break
            try:
                last_seq = _replay(j, line.decode()[:-1].split(" ", 5), last_seq)
            except (ValueError, IndexError, KeyError, TypeError, UnicodeError):
                j.log("journal: unreadable line at byte %d skipped" % at)
                damaged = True
            lines += 1
    j._garbage = lines - j._live
    if damaged:
        j._broken = True  # nothing may be appended after a torn line: rewrite first
        j._compact()
    else:
        j._maybe_compact()

def _replay(j, parts, last_seq):
    # Applies one line of the log; returns the seq of the last message line seen.
    op = parts[0]
    if op == "a":
        seq, tx, tries = int(parts[1]), int(parts[2]), int(parts[3])
        if not isinstance(json.loads(parts[5]), dict) or seq <= last_seq:
            raise ValueError("not a message")
        j._next_local = min(j._next_local, tx - 1)
        j._add(seq, j._maps.get(tx, tx), _KINDS.get(parts[4], OTHER))
        if tries:
            j._tries[seq] = tries
        j._next_seq = max(j._next_seq, seq + 1)
        return seq
    if op == "h":
        j._next_seq = max(j._next_seq, int(parts[1]))
        j._next_local = min(j._next_local, int(parts[2]))
    elif op == "m":
        local = int(parts[1])
        j._map(local, int(parts[2]))
        j._next_local = min(j._next_local, local - 1)
    elif op in ("c", "d", "f"):
        seq = int(parts[1])
        i = j._index(seq)
        if i >= 0 and op == "f":
            j._tries[seq] = j._tries.get(seq, 0) + 1
        elif i >= 0:
            local = j._tx(i)
            j._kill(i)
            if len(parts) > 2 and local:
                j._map(local, int(parts[2]))
    else:
        raise ValueError("unknown line")
    return last_seq


def _lines(f, at):
    """(offset, line) of each line of the open file f from byte `at`, read journal.BLOCK bytes at a
    time (a line that does not end in a block is read again with the next: no buffer grows,
    in a fragmented heap); the last may lack its newline (a torn line)."""
    size = block = jmod.BLOCK
    while True:
        f.seek(at)
        data = f.read(size)
        if not data:
            return
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            yield at + start, data[start:nl + 1]
            start = nl + 1
        if len(data) < size:  # the end of the file
            if start < len(data):
                yield at + start, data[start:]
            return
        size = block if start else 2 * size  # a line longer than the block: read more of it
        at += start


