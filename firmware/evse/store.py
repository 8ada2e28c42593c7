# Small JSON files on flash, written atomically: a power cut leaves the old file or the new one,
# never half of each (temp file + rename; littlefs renames atomically).
import json
import os

from evse import slices


def join(root, name):
    """The file `name` in the directory `root` ("/" on a board; "" for the current one)."""
    return root.rstrip("/") + "/" + name if root else name


def remove(path):
    """Removes a file if it is there; a file that is not is no error."""
    try:
        os.remove(path)
    except OSError:
        pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def read_json(path, default=None):
    """Parsed content of `path`; `default` when the file is missing. A file that does not parse
    is kept aside as `<path>.bad` (never deleted) and `default` is returned."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return default
    try:
        return json.loads(text)
    except ValueError:
        try:
            os.rename(path, path + ".bad")
        except OSError:
            pass
        print("store: %s does not parse as JSON; kept as %s.bad, using defaults" % (path, path))
        return default


def write_json(path, value):
    slices.run(write_json_steps(path, value, 1 << 30))


def write_json_steps(path, value, chunk=512):
    """write_json as a generator that yields after each `chunk` bytes written, for a caller that
    lets the event loop run between them (a flash write of a few KB holds it ~100 ms at RP2040
    speed). The text is made and written a piece at a time (_pieces), never whole in the heap."""
    tmp = path + ".tmp"
    yield   # the file's creation and each chunk each in a step of their own
    try:
        with open(tmp, "w") as f:
            yield
            written = 0
            for piece in _pieces(value):
                written += f.write(piece)
                if written >= chunk:
                    written = 0
                    yield
        yield   # the close (littlefs commits the file) and the rename in steps of their own
        os.rename(tmp, path)
    except BaseException:   # a full flash, or the caller gave up half-way: no .tmp left behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _pieces(value):
    # The JSON text of `value` in pieces: an object's members and an array's items each made on
    # its own, one level down. A firmware update's list of files is some 8 KB as one text; as
    # pieces, the longest is one file's entry. json.dump would write each token on its own, 3.6x
    # slower.
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):   # else json.dumps's keys
        sep = "{"
        for key in value:
            yield sep + json.dumps(key) + ": "
            yield from _items(value[key])
            sep = ", "
        yield "}" if value else "{}"
    else:
        yield from _items(value)


def _items(value):
    if isinstance(value, (list, tuple)):
        sep = "["
        for item in value:
            yield sep + json.dumps(item)
            sep = ", "
        yield "]" if value else "[]"
    else:
        yield json.dumps(value)
