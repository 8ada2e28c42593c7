# The controller's log on flash: two files, `log.txt` (newest lines) and `log.1.txt` (the ones
# before). Together they never exceed `max_bytes`: log.txt is rotated into log.1.txt when it would
# pass half of it. Logging is best effort: a full or failing flash never raises out of write(); the
# lost lines are counted, and the next line that reaches the flash says how many were lost.
import os
import time

from micropython import const

from evse import store

LOG_FILE = "log.txt"
OLD_FILE = "log.1.txt"
LINE_MAX = const(240)   # a longer message is cut: one line must never fill a file
_TAIL_CHUNK = const(256)


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


class Log:
    def __init__(self, root, max_bytes=16384, now_fn=None, name=None):
        # name: another log beside the controller's, in <name>.txt and <name>.1.txt
        self.path = store.join(root, name + ".txt" if name else LOG_FILE)
        self.old_path = store.join(root, name + ".1.txt" if name else OLD_FILE)
        self.file_max = max_bytes // 2
        self.now_fn = now_fn
        self.lost = 0           # lines that never reached the flash since boot
        self._unreported = 0    # of those, the ones no line on flash mentions yet
        self._held = 0
        self._size = _size(self.path)

    def now(self):
        """The timestamp written before each line: now_fn() or, without it, ticks_ms."""
        return self.now_fn() if self.now_fn else str(time.ticks_ms())

    def write(self, text):
        text = str(text)
        if len(text) > LINE_MAX:
            text = text[:LINE_MAX]
        stamp = self.now()
        line = "%s %s\n" % (stamp, text.replace("\n", " ").replace("\r", " "))
        if self._unreported:
            line = "%s log: %d lines lost (flash full or failing)\n%s" % (stamp, self._unreported, line)
        try:
            if self._size + len(line) > self.file_max:
                if self._held:
                    # An upload is reading both files: grow log.txt into the space log.1.txt
                    # leaves, and drop lines beyond the whole budget.
                    if self._size + _size(self.old_path) + len(line) > 2 * self.file_max:
                        raise OSError(28)  # ENOSPC of our own budget
                else:
                    self._rotate()
            with open(self.path, "a") as f:
                f.write(line)
            self._size += len(line)
            self._unreported = 0
        except OSError:
            self.lost += 1
            self._unreported += 1
            self._size = _size(self.path)  # a partial write may have landed

    def lost_line(self):
        """A line that never got here (too many came at once for the flash): counted as lost,
        and said so by the next line that reaches the flash."""
        self.lost += 1
        self._unreported += 1

    def _rotate(self):
        try:
            os.remove(self.old_path)
        except OSError:
            pass
        os.rename(self.path, self.old_path)
        self._size = 0

    def hold(self):
        """No rotation until release(): a reader of files() sees them only grow (the diagnostics
        upload sends the sizes it found at the start)."""
        self._held += 1

    def release(self):
        if self._held:
            self._held -= 1

    def files(self):
        """Paths of the log files that exist, oldest first."""
        return [p for p in (self.old_path, self.path) if _size(p) > 0]

    def tail(self, n):
        """The last `n` lines (without their newline), oldest first. Reads backwards in small
        chunks: never a whole file in RAM."""
        lines = []
        if n <= 0:
            return lines
        for path in (self.path, self.old_path):
            if len(lines) >= n:
                break
            try:
                lines = _tail_of(path, n - len(lines)) + lines
            except OSError:
                pass
        return lines


def _tail_of(path, n):
    lines = []
    with open(path, "rb") as f:
        pos = f.seek(0, 2)
        rest = b""   # the start of a line whose beginning is in an earlier chunk
        first = True
        while pos > 0 and len(lines) < n:
            step = _TAIL_CHUNK if pos > _TAIL_CHUNK else pos
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + rest
            parts = chunk.split(b"\n")
            if first:
                if parts and parts[-1] == b"":
                    parts.pop()   # the file ends with a newline
                first = False
            rest = parts.pop(0)
            if len(rest) > 4 * LINE_MAX:
                rest = rest[-4 * LINE_MAX:]  # not our format (no newline for long): bound the RAM
            for p in reversed(parts):
                lines.insert(0, _text(p))
                if len(lines) >= n:
                    break
        if pos == 0 and len(lines) < n and rest:
            lines.insert(0, _text(rest))
    return lines[-n:]


def _text(raw):
    # A line cut by a failed write may end inside a UTF-8 sequence; MicroPython's decode has no
    # errors="replace".
    try:
        return raw.decode()
    except UnicodeError:
        return "".join(chr(c) if c < 128 else "?" for c in raw)
