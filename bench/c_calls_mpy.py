# Runs under the MicroPython unix port, imported by bench/timing_mpy.py before the firmware: the
# calls a workload makes into MicroPython's C routines (files on littlefs, json, hashlib, os,
# socket's module functions: getaddrinfo, a board's lwIP resolver, and the import of a module
# from its .mpy), timed into C_US. A step's bytecode is judged at pystone's factor (x 325 on an RP2040) and its C
# at the C factor: bytecode's times C_OVER_BYTECODE (bench/timing.py), what the firmware's imports
# and json measured on an emulated ARMv6-M (bench/gc_armv6m/README.md).
#
# How: `json`, `os` and `hashlib` in sys.modules are replaced by objects whose functions time
# the real ones, and the builtin `open` hands out a file whose methods do (a Python object can
# not be a C stream: json.load and json.dump get the real file). Only the outermost call counts:
# littlefs calling the bench's Python block device (FlashImage, timed apart) is not C twice.
# A socket cannot be wrapped (select.poll needs the real socket), so asyncio's open_connection
# and the Stream methods the firmware uses (write, drain, readinto) are replaced by the same steps
# as asyncio's with their calls into the socket timed (timed_open_connection, _stream_*): on a
# board each is lwIP's C (tcp_write and tcp_output, a copy out of its pbufs). Here a loopback
# connect runs the whole TCP handshake in this host's kernel inside the call (5-80 us), where
# lwIP's tcp_connect only queues a SYN, and a send hands the segment to the central system's
# socket (10-300 us). Classes are left as they are (isinstance).
import builtins
import hashlib as _hashlib
import json as _json
import os as _os
import socket as _socket
import sys
import time
from array import array

C_US = array("I", [0])   # microseconds in the wrapped C routines since start
SPENT_US = array("I", [0])   # of it, microseconds in the bench's flash block device (timing_mpy)
LONGEST = [None, 0]      # the longest call since a Stepped step began: its name, its us (the
#                          block device's time taken off, as from C_US by timing_mpy)
real_open = builtins.open
_ticks = time.ticks_us
_diff = time.ticks_diff
_depth = [0]


def _call(fn, args, kwargs, name, path=None):
    if _depth[0]:
        return fn(*args, **kwargs)
    _depth[0] = 1
    spent = SPENT_US[0]
    start = _ticks()
    try:
        return fn(*args, **kwargs)
    finally:
        took = _diff(_ticks(), start)
        C_US[0] += took
        took -= SPENT_US[0] - spent
        if took > LONGEST[1]:
            # A file's call is named with its path's last part (only here, when it is the
            # longest: no allocation in every call's timing).
            if path is None and args and isinstance(args[0], str) and name[:3] in ("os.", "ope"):
                path = args[0]
            if path is not None:
                name = name + " " + path[path.rfind("/") + 1:]
            elif name == "json.loads" and args:
                name = "json.loads %dB" % len(args[0])
            LONGEST[0] = name
            LONGEST[1] = took
        _depth[0] = 0


def _timed(fn, name):
    def call(*args, **kwargs):
        return _call(fn, args, kwargs, name)
    return call


class _File:
    """A file whose every call is timed; a context manager and a line iterator as the real one."""

    def __init__(self, f, path=None):
        self.raw = f
        self.path = path

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
        return _call(getattr(self.raw, name), args, {}, "file." + name, self.path)
    return call


for _name in ("read", "readinto", "readline", "write", "seek", "tell", "flush", "close"):
    setattr(_File, _name, _method(_name))


def _open(*args, **kwargs):
    return _File(_call(real_open, args, kwargs, "open"), args[0] if args and isinstance(args[0], str) else None)


def _raw(f):
    return f.raw if isinstance(f, _File) else f


class _Module:
    """A module's attributes, its functions timed."""

    def __init__(self, module, label):
        for name in dir(module):
            if not name.startswith("__"):
                value = getattr(module, name)
                setattr(self, name, _timed(value, label + "." + name)
                        if callable(value) and not isinstance(value, type) else value)


class _Hash:
    def __init__(self, h):
        self._h = h

    def update(self, data):
        return _call(self._h.update, (data,), {}, "hash.update")

    def digest(self):
        return _call(self._h.digest, (), {}, "hash.digest")


def _hash(make, name):
    def new(*args):
        return _Hash(_call(make, args, {}, name))
    return new


json = _Module(_json, "json")
json.load = lambda f: _call(_json.load, (_raw(f),), {}, "json.load")
json.dump = lambda obj, f, *args, **kwargs: _call(_json.dump, (obj, _raw(f)) + args, kwargs, "json.dump")
hashlib = _Module(_hashlib, "hashlib")
for _name in ("sha1", "sha256", "md5"):
    if hasattr(_hashlib, _name):
        setattr(hashlib, _name, _hash(getattr(_hashlib, _name), "hashlib." + _name))
os = _Module(_os, "os")
socket = _Module(_socket, "socket")


def timed_open_connection(host, port, ssl=None, server_hostname=None):
    """asyncio.open_connection, step by step as MicroPython's asyncio.stream does it (a generator
    that waits once for the socket to be writable), its calls into C timed."""
    from errno import EINPROGRESS

    core, stream = sys.modules["asyncio.core"], sys.modules["asyncio.stream"]
    ai = socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)[0]
    s = _call(_socket.socket, (ai[0], ai[1], ai[2]), {}, "socket.socket")
    s.setblocking(False)
    try:
        _call(s.connect, (ai[-1],), {}, "socket.connect")
    except OSError as er:
        if er.errno != EINPROGRESS:
            raise er
    if ssl:
        s = _call(ssl.wrap_socket, (s,), {"server_hostname": server_hostname or host,
                                          "do_handshake_on_connect": False}, "ssl.wrap_socket")
        s.setblocking(False)
    ss = stream.Stream(s)
    yield core._io_queue.queue_write(s)
    return ss, ss


def _stream_write(self, buf):
    # asyncio.stream.Stream.write, its socket's write timed.
    if not self.out_buf:
        ret = _call(self.s.write, (buf,), {}, "socket.write")
        if ret == len(buf):
            return
        if ret is not None:
            buf = buf[ret:]
    self.out_buf += buf


def _stream_drain(self):
    # asyncio.stream.Stream.drain (a generator, as asyncio's), its socket's writes timed.
    core = sys.modules["asyncio.core"]
    if not self.out_buf:
        return (yield from core.sleep_ms(0))
    mv = memoryview(self.out_buf)
    off = 0
    while off < len(mv):
        yield core._io_queue.queue_write(self.s)
        ret = _call(self.s.write, (mv[off:],), {}, "socket.write")
        if ret is not None:
            off += ret
    self.out_buf = b""


def _stream_readinto(self, buf):
    # asyncio.stream.Stream.readinto (a generator, as asyncio's), its socket's read timed.
    yield sys.modules["asyncio.core"]._io_queue.queue_read(self.s)
    return _call(self.s.readinto, (buf,), {}, "socket.readinto")


_real_import = builtins.__import__


def _import(name, *args):
    # A module's first import is MicroPython's C loader reading its .mpy and making its objects
    # (the workloads run the package compiled, as a board does); the module's body, its def and
    # class statements, runs inside it and is counted with it. An import of a loaded module is a
    # lookup.
    return _call(_real_import, (name,) + args, {}, "import", name)


def install():
    """From now on, `import json`, `os`, `hashlib`, `socket` and `open` are the timed ones, and
    so are asyncio.open_connection, the Stream's write, drain and readinto, and imports."""
    builtins.__import__ = _import
    sys.modules["json"] = json
    sys.modules["os"] = os
    sys.modules["hashlib"] = hashlib
    sys.modules["socket"] = socket
    builtins.open = _open
    import asyncio
    import asyncio.stream
    asyncio.open_connection = sys.modules["asyncio.stream"].open_connection = timed_open_connection
    stream = sys.modules["asyncio.stream"].Stream
    stream.write, stream.drain, stream.readinto = _stream_write, _stream_drain, _stream_readinto
