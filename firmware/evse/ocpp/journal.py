# Transaction-related CALLs (StartTransaction, StopTransaction, MeterValues) kept on flash until
# the CSMS confirms them: OCPP 1.6 wants them delivered, in order, after an offline period, and
# we want them to survive a reboot or a power cut too.
#
# journal/journal.log is an append-only log of text lines; a line counts only once it is complete:
#   a <seq> <tx> <tries> <Action> <payload JSON>   a message (tx: its transactionId, 0 if none)
#   c <seq> [<real tx>]                           confirmed (with a StartTransaction's real id)
#   f <seq>                                       one failed attempt
#   d <seq>                                       dropped
#   m <local tx> <real tx>                        an offline transaction got its real id
#   h <next seq> <next local tx>                  first line after a compaction
# A compaction copies the live messages to journal.log.tmp and renames that over journal.log
# (littlefs renames atomically): a power cut leaves the old log or the new one. It runs in slices
# of _SLICE bytes, one after each change to the journal and one per step(): a slice costs about
# as much as an append, so a compaction never holds up the event loop (the guns' control) for
# long. Lines written meanwhile go to the old log; the last slices copy them over as they are.
# The new log's close and its rename are two slices: each is a littlefs metadata commit.
# The log has a directory of its own: littlefs commits a file's new size to its directory's
# log at every append, and the cost of a commit grows with what else that directory holds.
# An append is on flash before append() returns. Confirmations, failures and drops of other
# messages are batched (a power cut then at worst sends such a message twice); those of
# StartTransaction and StopTransaction, and transaction id mappings, are written at once.
# RAM: 9 bytes per message slot, allocated for max_entries (plus slack) up front: no growth and
# no fragmentation when the journal fills up offline. The slots are in blocks of CHUNK: their
# ids (512 bytes) and their kinds (64), not one 9.4 KB block nor even 1 KB ones, which the heap
# of an ESP32-WROOM, in pieces after its boot, did not have. Payloads stay on flash; peek() reads
# the oldest back.
import json
import os
from array import array

from micropython import const

import evse
from evse import store

JOURNAL_DIR = "journal"
JOURNAL_FILE = JOURNAL_DIR + "/journal.log"
_OLD_FILE = "journal.log"   # where releases before the directory kept it
_START = const(1)
_STOP = const(2)
_METER = const(3)
OTHER = const(4)  # kind 0: gone (confirmed or dropped)
_KINDS = {"StartTransaction": _START, "StopTransaction": _STOP, "MeterValues": _METER}
_NAMES = ("message", "StartTransaction", "StopTransaction", "MeterValues", "message")
_BATCH = const(16)        # control lines held in RAM before they go to flash
_GARBAGE_MIN = const(64)  # dead lines in the file before a compaction is worth its flash writes
_ENOENT = const(2)
BLOCK = const(512)       # bytes read at a time (a readline() reads the file byte by byte)
_SLICE = const(512)       # bytes of the old log one step of a compaction reads
_SHIFT = const(6)         # CHUNK = 1 << _SHIFT slots per block
CHUNK = const(64)         # (public, as BLOCK and OTHER: evse.ocpp.journalinit's too)
_MASK = const(63)
_FETCH_BLOCKS = const(4)  # blocks a fetch reads in one step on its way to the message's line
MORE = 2                  # fetch(): it read part of the way; again in the next step


class Journal:
    """An ordered, persistent queue of transaction messages. When it holds max_entries, an append
    first drops a MeterValues (one between the first and the last of its transaction, oldest
    first; else the oldest MeterValues or other message), never a StartTransaction or a
    StopTransaction: a journal full of those still takes more of them, beyond max_entries.
    Every drop is reported through `log`."""

    def __init__(self, root, max_entries, log=print):
        # Its index made and its log read back, once, at boot: evse.ocpp.journalinit, loaded
        # for it and let go after (a board holds .mpy code in its heap).
        evse.call_and_let_go("evse.ocpp.journalinit", "init", self, root, max_entries, log)

    def __len__(self):
        return self._live

    def new_local_tx_id(self):
        """A negative transactionId for a transaction started offline, unique on this journal."""
        self._next_local -= 1
        return self._next_local + 1

    def append(self, action, payload, tx_id=None):
        """Queues a CALL and returns its seq once it is on flash (OSError if it could not be
        stored). tx_id: the local id of a StartTransaction (other messages: their payload's
        transactionId). Returns None only when the journal is full of StartTransaction and
        StopTransaction and this other message was therefore not kept (logged)."""
        kind = _KINDS.get(action, OTHER)
        if tx_id is None:
            tx_id = 0 if kind == _START else payload.get("transactionId", 0)
        real = self._maps.get(tx_id)
        if real is not None:
            tx_id = real
            if "transactionId" in payload:
                payload = dict(payload)
                payload["transactionId"] = real
        seq = self._next_seq
        line = ("a %d %d 0 %s %s\n" % (seq, tx_id, action, json.dumps(payload, separators=(",", ":")))).encode()
        lines = self._pending
        self._pending = []
        dropped = False
        while self._live >= self.max_entries:
            i = self._victim(kind, tx_id)
            if i is None:
                break
            if i < 0:
                self.log("journal: full of StartTransaction/StopTransaction (%d): %s of transaction %d not kept"
                         % (self._live, action, tx_id))
                self._pending = lines
                return None
            self.log("journal: full (%d messages): dropped %s seq %d of transaction %d"
                     % (self._live, _NAMES[self._kind(i)], self._seq(i), self._tx(i)))
            lines.append(b"d %d\n" % self._seq(i))
            dropped = True
            self._kill(i)
            self._garbage += 2
        lines.append(line)
        try:
            self._write(b"".join(lines))
        except Exception:  # noqa: BLE001  (a MemoryError too: the batched lines are kept)
            lines.pop()
            self._pending = lines + self._pending
            raise
        self._next_seq = seq + 1
        if tx_id <= self._next_local:
            self._next_local = tx_id - 1
        self._add(seq, tx_id, kind)
        if dropped:
            # It dropped messages to make room (a full journal, offline): the garbage it made is
            # compacted at once, or a journal that only takes appends would grow without end.
            # Else a compaction goes on in a later step (step(), a confirmation): a write a step.
            self._maybe_compact()
        return seq

    def fetch(self):
        """Reads the oldest unconfirmed message's line from flash for the next peek, which then
        only decodes it: the read and the JSON in two steps of the event loop. True when it
        read; MORE when it read _FETCH_BLOCKS blocks on its way there and goes on at the next
        call (after a compaction the messages confirmed while it ran head the new log: 145
        dead lines, 29 KB, in a replay of 1,000); False when there is none, or it is read
        already."""
        i = self._first()
        if i < 0:
            return False
        seq = self._seq(i)
        if self._peeked is not None and self._peeked[0] == seq or \
                self._fetched is not None and self._fetched[0] == seq:
            return False
        line = self._read(seq, _FETCH_BLOCKS)
        if line is MORE:
            return MORE
        self._fetched = None if line is None else (seq, line)   # none: peek says so
        return True

    def peek(self):
        """(seq, action, payload, attempts) of the oldest unconfirmed message, or None."""
        i = self._first()
        if i < 0:
            return None
        seq = self._seq(i)
        if self._peeked is None or self._peeked[0] != seq:
            fetched = self._fetched
            self._fetched = None
            line = fetched[1] if fetched is not None and fetched[0] == seq else self._read(seq)
            if line is None:  # our bug, not the user's: say so and go on with the next message
                self.log("journal: message %d is not in %s; dropped" % (seq, self.path))
                self._kill(i)
                return self.peek()
            parts = line.decode().split(" ", 5)
            self._peeked = (seq, parts[4], json.loads(parts[5]))
        payload = self._peeked[2]
        tx = self._tx(i)
        if tx and "transactionId" in payload:
            payload["transactionId"] = tx
        return seq, self._peeked[1], payload, self._tries.get(seq, 0)

    def confirm(self, seq, result_payload=None):
        """The CSMS answered message `seq`: it leaves the journal. For a StartTransaction queued
        with a local tx_id, result_payload's transactionId replaces that id in every queued
        message, in the same line on flash. False if `seq` was not queued (any more)."""
        i = self._index(seq)
        if i < 0:
            return False
        kind = self._kind(i)
        local = self._tx(i)
        real = result_payload.get("transactionId") if kind == _START and isinstance(result_payload, dict) else None
        self._kill(i)
        if isinstance(real, int) and not isinstance(real, bool) and local and real != local:
            self._pending.append(b"c %d %d\n" % (seq, real))
            self._map(local, real)
        else:
            self._pending.append(b"c %d\n" % seq)
        self._garbage += 2
        self._after_control(kind == _START or kind == _STOP)
        return True

    def failed(self, seq):
        """One more failed attempt at `seq` (for TransactionMessageAttempts); returns the count."""
        if self._index(seq) < 0:
            return 0
        tries = self._tries.get(seq, 0) + 1
        self._tries[seq] = tries
        self._pending.append(b"f %d\n" % seq)
        self._garbage += 1
        self._after_control(False)
        return tries

    def drop(self, seq, why):
        """Gives up on `seq` (e.g. after TransactionMessageAttempts failures) and logs `why`."""
        i = self._index(seq)
        if i < 0:
            return False
        self.log("journal: dropped %s seq %d of transaction %d: %s" % (_NAMES[self._kind(i)], seq, self._tx(i), why))
        self._kill(i)
        self._pending.append(b"d %d\n" % seq)
        self._garbage += 2
        self._after_control(False)
        return True

    def tx_of(self, seq):
        """The transactionId message `seq` is queued under (a StartTransaction's: its local id)."""
        i = self._index(seq)
        return self._tx(i) if i >= 0 else None

    def real_id(self, tx_id):
        """The real transactionId a local one got from its confirmed StartTransaction (while
        the journal holds messages, or its log the mapping); else tx_id."""
        return self._maps.get(tx_id, tx_id)

    def has_stop(self, tx_id):
        """Whether a StopTransaction of transaction `tx_id` (its local id or the real one it got)
        waits in the journal."""
        real = self.real_id(tx_id)
        kd = self._kd
        for i in range(self._head, self._n):
            if kd[i >> _SHIFT][i & _MASK] == _STOP and self._tx(i) == real:
                return True
        return False

    def sync(self):
        """Writes the batched control lines now (before a planned reset)."""
        self._flush()

    def step(self):
        """One slice of a compaction, started here when one is due (the charge point calls this
        in a step that wrote nothing else to the journal); False when none runs. A compaction
        that could not start (a full flash, no heap) is not tried again here until the journal
        changed: the idle steps come four times a second, and each try logs."""
        if self._broken:  # the next write compacts at once
            return False
        if self._out is None and self._garbage == self._failed_at:
            return False
        self._maybe_compact()
        return self._out is not None

    # The RAM index: slots in seq order; a gone slot stays until the slots run out.

    def _seq(self, i):
        return self._ix[i >> _SHIFT][(i & _MASK) << 1]

    def _kind(self, i):
        return self._kd[i >> _SHIFT][i & _MASK]

    def _tx(self, i):
        # A slot keeps the id its message was queued under; a local one a StartTransaction's
        # confirmation mapped reads as the real one.
        tx = self._ix[i >> _SHIFT][((i & _MASK) << 1) + 1]
        return self._maps.get(tx, tx)

    def _add(self, seq, tx, kind):
        if self._n == self._cap:
            self._squeeze()
            if self._n == self._cap:  # only beyond max_entries: StartTransaction/StopTransaction
                last = self._ix[-1]
                if len(last) < 2 * CHUNK:   # the short last block first becomes a whole one
                    whole = _block(CHUNK)
                    for k in range(len(last)):
                        whole[k] = last[k]
                    self._ix[-1] = whole
                    self._kd[-1] = self._kd[-1] + bytearray(CHUNK - len(self._kd[-1]))
                else:
                    self._ix.append(_block(CHUNK))
                    self._kd.append(bytearray(CHUNK))
                self._cap = len(self._ix) << _SHIFT
        n = self._n
        block = self._ix[n >> _SHIFT]
        k = (n & _MASK) << 1
        block[k] = seq
        block[k + 1] = tx
        self._kd[n >> _SHIFT][n & _MASK] = kind
        self._n = n + 1
        self._live += 1

    def _first(self):
        kd = self._kd
        while self._head < self._n and not kd[self._head >> _SHIFT][self._head & _MASK]:
            self._head += 1
        return self._head if self._head < self._n else -1

    def _index(self, seq):
        ix = self._ix
        lo, hi = self._head, self._n
        if lo < hi and ix[lo >> _SHIFT][(lo & _MASK) << 1] == seq:
            hi = lo
        while lo < hi:
            mid = (lo + hi) // 2
            if ix[mid >> _SHIFT][(mid & _MASK) << 1] < seq:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self._n and ix[lo >> _SHIFT][(lo & _MASK) << 1] == seq and self._kind(lo) else -1

    def _kill(self, i):
        self._kd[i >> _SHIFT][i & _MASK] = 0
        self._live -= 1
        seq = self._seq(i)
        self._tries.pop(seq, None)
        if self._peeked is not None and self._peeked[0] == seq:
            self._peeked = None
        if self._fetched is not None and self._fetched[0] == seq:
            self._fetched = None
        self._first()

    def _squeeze(self):
        ix, kd = self._ix, self._kd
        j = 0
        for i in range(self._head, self._n):
            k = kd[i >> _SHIFT][i & _MASK]
            if k:
                src, a = ix[i >> _SHIFT], (i & _MASK) << 1
                dst, b = ix[j >> _SHIFT], (j & _MASK) << 1
                dst[b] = src[a]
                dst[b + 1] = src[a + 1]
                kd[j >> _SHIFT][j & _MASK] = k
                j += 1
        for i in range(j, self._n):
            kd[i >> _SHIFT][i & _MASK] = 0
        self._n = j
        self._head = 0

    def _map(self, local, real):
        # Not written into the slots: over a journal of 1,000 messages that loop was the
        # longest step of a replay (0.7 ms here, 80-220 ms on an RP2040). _tx reads through it.
        self._maps[local] = real

    def _victim(self, new_kind, new_tx):
        # Slot of the message to drop for a new one; -1: the new one; None: keep everything.
        counts = {}  # transactionId -> [its MeterValues queued, slot of the second one]
        oldest = -1
        ix, kd, maps = self._ix, self._kd, self._maps
        for i in range(self._head, self._n):
            k = kd[i >> _SHIFT][i & _MASK]
            if k == _METER:
                tx = ix[i >> _SHIFT][((i & _MASK) << 1) + 1]
                tx = maps.get(tx, tx)
                c = counts.get(tx)
                if c is None:
                    counts[tx] = [1, -1]
                else:
                    c[0] += 1
                    if c[1] < 0:
                        c[1] = i
            if oldest < 0 and (k == _METER or k == OTHER):
                oldest = i
        if new_kind == _METER and new_tx in counts:
            counts[new_tx][0] += 1
        best = -1
        for t in counts:
            c = counts[t]
            if c[0] >= 3 and (best < 0 or c[1] < best):
                best = c[1]
        if best >= 0:
            return best
        if oldest >= 0:
            return oldest
        return None if new_kind == _START or new_kind == _STOP else -1

    # The file

    def _after_control(self, at_once):
        # One flash operation a call, so one a step of the event loop: the batch's write, or
        # else the compaction's next slice. A full batch that meets a compaction with only its
        # rename left waits a call: the rename (a metadata commit) and the append (another) in
        # one call were a replay's longest step. A confirmation that must be on flash at once
        # (a StartTransaction's or StopTransaction's) does not wait.
        if at_once or len(self._pending) >= _BATCH:
            if not at_once and self._cmp is not None and self._cmp[5]:
                self._compact_slice()   # the rename
            else:
                self._flush()
        else:
            self._maybe_compact()

    def _maybe_compact(self):
        # Each compaction copies at most as many lines as died since the last: O(1) amortized.
        if self._broken:
            return
        if self._out is not None:
            self._compact_slice()
        elif self._garbage >= _GARBAGE_MIN and self._garbage >= self._live:
            self._compact_start()

    def _flush(self):
        if self._pending:
            try:
                self._write(b"".join(self._pending))
            except OSError as e:
                self.log("journal: confirmations not on flash yet (%s)" % e)
                return
            self._pending = []

    def _read(self, seq, blocks=0):
        # The line of message `seq`, from the cursor on: a replay reads the file once. Its start
        # ("a <seq> " at the start of a line) is searched for in C, a block at a time, so the
        # lines before it cost no bytecode each. With `blocks`, MORE after that many blocks
        # without it, the cursor moved on.
        key = b"a %d " % seq
        nkey = b"\n" + key
        f = self._handle()
        at = self._cursor
        size = BLOCK
        while True:
            f.seek(at)
            data = f.read(size)
            if not data:
                return None
            i = 0 if data.startswith(key) else data.find(nkey)
            if i >= 0:
                if i:
                    i += 1   # after the newline
                self._cursor = at + i
                nl = data.find(b"\n", i)
                if nl >= 0:
                    return data[i:nl + 1]
                if len(data) < size:
                    return None   # its line is torn, the last in the file
                at += i
                size *= 2   # a line longer than the block: read it whole
                continue
            if len(data) < size:
                return None
            nl = data.rfind(b"\n")
            if nl < 0:
                size *= 2   # a line longer than the block: read more of it
                continue
            at += nl + 1   # a line cut by the block is read again with the next
            self._cursor = at
            size = BLOCK
            blocks -= 1
            if not blocks:
                return MORE

    def _handle(self):
        # One handle for the reads and the appends, kept from step to step: littlefs finds a
        # file it opens by reading its directory's log (about 50 block reads), a read or an
        # append on an open handle takes a few. One handle, because a handle need not see what
        # another appends (littlefs). Opened for appending ("a+": every write goes to the end)
        # and reading (each read seeks first); the rename and a failed write let it go.
        if self._log_file is None:
            self._log_file = open(self.path, "a+b")
        return self._log_file

    def _end(self):
        # The log's size: a seek on the open handle (a stat reads the whole directory's log).
        # No file is size 0 (the handle makes an empty one); any other error raises (a
        # compaction then abandons, not finishes without the lines it could not see).
        try:
            return self._handle().seek(0, 2)
        except OSError as e:
            if e.args and e.args[0] == _ENOENT:
                return 0
            raise

    def _drop_handle(self):
        _close(self._log_file)
        self._log_file = None

    def _write(self, data):
        self.writes += 1
        if self._cmp is not None and self._cmp[5]:
            self._compact_slice()   # the rename: the new log has every line so far, not this one
        if self._broken:
            self._compact()
            if self._broken:
                raise OSError("journal: %s cannot be rewritten" % self.path)
        try:
            f = self._handle()
            f.write(data)
            f.flush()   # on flash before append() returns: littlefs commits the file's new size
        except OSError:
            self._broken = True  # a half-written line must never be completed by the next one
            self._drop_handle()
            raise

    def _compact(self):
        # The whole compaction at once: at boot, and before a write after a torn one.
        self._abandon()
        self._compact_start()
        while self._out is not None:
            self._compact_slice(4 * _SLICE)

    def _compact_start(self):
        # Lines written from now on describe only what comes after end; the tries of the
        # messages copied are those of now, less the failures still batched (they land after
        # end). The last item: the bytes the next slice reads.
        tries = dict(self._tries)
        for line in self._pending:
            if line[:2] == b"f ":
                seq = int(line[2:])
                tries[seq] = tries.get(seq, 1) - 1
        try:
            self._cmp = [0, self._end(), tries, self._garbage, _SLICE, False]
            self._out = open(self.path + ".tmp", "wb")
            self._out.write(b"h %d %d\n" % (self._next_seq, self._next_local))
            for local in self._maps:
                self._out.write(b"m %d %d\n" % (local, self._maps[local]))
        except Exception as e:  # noqa: BLE001  (a MemoryError too: the log stays in charge)
            self._failed_at = self._garbage
            self._abandon("compaction failed, the log stays as it is (%s)" % e)

    def _compact_slice(self, size=0):
        cmp = self._cmp
        out = self._out
        size = max(size, cmp[4])
        try:
            if cmp[5]:
                self._drop_handle()
                os.rename(self.path + ".tmp", self.path)
                self._out = None
                self._finish(cmp)
                return
            at, end = cmp[0], cmp[1]
            if at < end:
                data = _chunk(self._handle(), at, min(size, end - at))
                start = 0
                while True:
                    nl = data.find(b"\n", start)
                    if nl < 0:
                        break
                    self._copy_live(out, data[start:nl + 1], cmp[2])
                    start = nl + 1
                # A line cut by the slice is read again by the next one, a longer one with more.
                if at + len(data) >= end or not data:
                    cmp[0] = end   # a torn last line stays behind
                elif start:
                    cmp[0] = at + start
                    cmp[4] = _SLICE
                else:
                    cmp[4] = 2 * size
                return
            # The lines written since the compaction began, as they are.
            total = self._end()
            if at < total:
                block = _chunk(self._handle(), at, min(_SLICE, total - at))
                out.write(block)
                cmp[0] = at + len(block)
                if block and cmp[0] < total:
                    return
            # Every mapping again, last: one learnt meanwhile is only in a "c" line, whose
            # StartTransaction may not have been copied (confirmed before the slices got to it).
            maps = self._maps
            for local in maps:
                out.write(b"m %d %d\n" % (local, maps[local]))
            out.close()
            cmp[5] = True
        except Exception as e:  # noqa: BLE001  (a MemoryError too: the log stays in charge)
            self._abandon("compaction failed, the log stays as it is (%s)" % e)

    def _finish(self, cmp):
        self._cmp = None
        self._cursor = 0
        self._garbage -= cmp[3]
        self._broken = False
        if not self._live:
            self._maps = {}

    def _copy_live(self, out, line, tries):
        if line[:2] != b"a ":
            return
        parts = line.split(b" ", 4)  # a seq tx tries rest: JSON is not decoded here
        try:
            seq = int(parts[1])
            rest = parts[4]
        except (ValueError, IndexError):  # an unreadable line: journalinit said so at boot
            return
        if self._index(seq) >= 0:
            out.write(b" ".join((b"a", parts[1], parts[2], str(tries.get(seq, 0)).encode(), rest)))

    def _abandon(self, why=None):
        if why is not None:
            self.log("journal: " + why)
        if self._cmp is None or not self._cmp[5]:
            _close(self._out)
        self._out = None
        _remove(self.path + ".tmp")
        self._cmp = None

def _chunk(f, at, n):
    f.seek(at)
    return f.read(n)


def _close(f):
    if f is not None:
        try:
            f.close()
        except OSError:
            pass




def _block(slots):
    # The ids of `slots` slots (at most CHUNK: 512 bytes on a board): seq and transactionId each.
    return array("i", range(2 * slots))   # sized from the range at once: no temporary


_remove = store.remove
