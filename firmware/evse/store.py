# Small JSON files on flash, written atomically: a power cut leaves the old file or the new one,
# never half of each (temp file + rename; littlefs renames atomically).
import json
import os


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
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.rename(tmp, path)
