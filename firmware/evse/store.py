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
    speed). The text is made in one piece: json.dump writes each token on its own, 3.6x slower."""
    tmp = path + ".tmp"
    text = json.dumps(value)
    yield   # the text, the file's creation and each chunk each in a step of their own
    try:
        with open(tmp, "w") as f:
            yield
            for at in range(0, len(text), chunk):
                f.write(text[at:at + chunk])
                if at + chunk < len(text):
                    yield
        yield   # the close (littlefs commits the file) and the rename in steps of their own
        os.rename(tmp, path)
    except BaseException:   # a full flash, or the caller gave up half-way: no .tmp left behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
