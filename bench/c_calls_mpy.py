# Runs under the MicroPython unix port, imported by bench/timing_mpy.py before the firmware: the
# calls a workload makes into MicroPython's C routines (files on littlefs, json, hashlib, os, and
# socket's module functions: getaddrinfo, a board's lwIP resolver), timed into C_US. A step's bytecode is judged at pystone's factor (x 325 on an RP2040) and its C
# at the C factor (x 50-100: DESIGN.md, the boards are the truth): one factor for the whole
# gap would judge a littlefs append or a json.loads as if it were bytecode.
#
# How: `json`, `os` and `hashlib` in sys.modules are replaced by objects whose functions time
# the real ones, and the builtin `open` hands out a file whose methods do (a Python object can
# not be a C stream: json.load and json.dump get the real file). Only the outermost call counts:
# littlefs calling the bench's Python block device (FlashImage, timed apart) is not C twice.
# Socket reads and writes are not wrapped (select.poll needs the real socket): they stay in the
# bytecode share, which errs on the side of FAIL. Classes are left as they are (isinstance).
import builtins
import hashlib as _hashlib
import json as _json
import os as _os
import socket as _socket
import sys
import time
from array import array

C_US = array("I", [0])   # microseconds in the wrapped C routines since start
real_open = builtins.open
_ticks = time.ticks_us
_diff = time.ticks_diff
_depth = [0]


def _call(fn, args, kwargs):
    if _depth[0]:
        return fn(*args, **kwargs)
    _depth[0] = 1
    start = _ticks()
    try:
        return fn(*args, **kwargs)
    finally:
        C_US[0] += _diff(_ticks(), start)
        _depth[0] = 0


def _timed(fn):
    def call(*args, **kwargs):
        return _call(fn, args, kwargs)
    return call


class _File:
    """A file whose every call is timed; a context manager and a line iterator as the real one."""

    def __init__(self, f):
        self.raw = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _method(name):
    def call(self, *args):
        return _call(getattr(self.raw, name), args, {})
    return call


for _name in ("read", "readinto", "readline", "write", "seek", "tell", "flush", "close"):
    setattr(_File, _name, _method(_name))


def _open(*args, **kwargs):
    return _File(_call(real_open, args, kwargs))


def _raw(f):
    return f.raw if isinstance(f, _File) else f


class _Module:
    """A module's attributes, its functions timed."""

    def __init__(self, module):
        for name in dir(module):
            if not name.startswith("__"):
                value = getattr(module, name)
                setattr(self, name, _timed(value) if callable(value) and not isinstance(value, type) else value)


class _Hash:
    def __init__(self, h):
        self._h = h

    def update(self, data):
        return _call(self._h.update, (data,), {})

    def digest(self):
        return _call(self._h.digest, (), {})


def _hash(make):
    def new(*args):
        return _Hash(_call(make, args, {}))
    return new


json = _Module(_json)
json.load = lambda f: _call(_json.load, (_raw(f),), {})
json.dump = lambda obj, f, *args, **kwargs: _call(_json.dump, (obj, _raw(f)) + args, kwargs)
hashlib = _Module(_hashlib)
for _name in ("sha1", "sha256", "md5"):
    if hasattr(_hashlib, _name):
        setattr(hashlib, _name, _hash(getattr(_hashlib, _name)))
os = _Module(_os)
socket = _Module(_socket)


def install():
    """From now on, `import json`, `os`, `hashlib`, `socket` and `open` are the timed ones."""
    sys.modules["json"] = json
    sys.modules["os"] = os
    sys.modules["hashlib"] = hashlib
    sys.modules["socket"] = socket
    builtins.open = _open
