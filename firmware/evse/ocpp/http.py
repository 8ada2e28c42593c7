# A minimal asyncio HTTP/1.1 client for FirmwareManagement: download a file to flash, upload files
# from flash. Both stream in CHUNK-byte pieces through one buffer: never a whole file in RAM.
#
# Supported: http:// and https:// URLs with a port and user:password@ (Basic auth); Content-Length,
# chunked transfer-encoding or read-to-close bodies; one redirect on GET. OCPP 1.6 allows ftp://
# locations too: we do not speak FTP, and such a URL fails at once with a message that says so.
# https without a CA (cadata=None) encrypts but does not authenticate the server: pass the CA's DER
# bytes to verify it. `timeout_ms` bounds every step (connect, each read, each write), not the
# whole transfer: a slow link that keeps moving does not time out.
#
# Every failure (URL, network, timeout, HTTP status, malformed answer, flash) raises HttpError;
# its `status` is the HTTP status code when the server gave one, else None.
import asyncio
import binascii
import os

from micropython import const

from evse import store
from evse.ocpp import names
from evse.ocpp import url as urlmod

CHUNK = const(1024)
LINE_MAX = const(512)       # a longer status or header line is refused, not buffered
HEADER_LINES_MAX = const(64)
REDIRECTS = (301, 302, 303, 307, 308)


class HttpError(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def parse_url(url):
    """(https, host, port, target, userinfo or None) of an http:// or https:// URL."""
    try:
        scheme, userinfo, host, port, target, _ = urlmod.split(url, ("http", "https"))
    except ValueError as e:
        raise HttpError("URL %s: %s" % (url, e))
    https = scheme == "https"
    return https, host, port or (443 if https else 80), target, userinfo


def _ssl_context(cadata):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        if hasattr(ctx, "check_hostname"):
            ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _connect(https, host, port, timeout_ms, cadata):
    # By address: a name is looked up once per boot (evse.ocpp.names), as the central system's.
    ctx = _ssl_context(cadata) if https else None
    try:
        streams = await asyncio.wait_for_ms(names.open_connection(host, port, ctx), timeout_ms)
    except Exception:   # a cancel is not the server's failure
        names.connected(host, False)
        raise
    names.connected(host, True)
    return streams


def _head(method, host, port, https, target, userinfo, extra):
    default_port = 443 if https else 80
    if ":" in host:
        host = "[%s]" % host
    lines = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host if port == default_port
                                                 else "%s:%d" % (host, port))
    if userinfo is not None:
        lines += "Authorization: Basic %s\r\n" % binascii.b2a_base64(userinfo.encode())[:-1].decode()
    return (lines + extra + "Connection: close\r\n\r\n").encode()


class _Reader:
    # Buffered reads over an asyncio stream, through one CHUNK buffer.
    def __init__(self, stream, timeout_ms):
        self.stream = stream
        self.timeout_ms = timeout_ms
        self.buf = bytearray(CHUNK)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.limit = None   # copy_to refuses a body longer than this

    async def fill(self):
        """Read more into the buffer; the number of bytes read, 0 at the end of the stream."""
        if self.start:
            if self.start < self.end:
                self.buf[:self.end - self.start] = self.mv[self.start:self.end]
            self.end -= self.start
            self.start = 0
        if self.end == CHUNK:
            return 0
        while True:
            n = await asyncio.wait_for_ms(self.stream.readinto(self.mv[self.end:]), self.timeout_ms)
            if n is not None:   # None: woken before a whole TLS record arrived
                break
        self.end += n
        return n

    async def readline(self):
        while True:
            nl = self.buf.find(b"\n", self.start, self.end)
            if nl >= 0:
                line = bytes(self.mv[self.start:nl + 1])
                self.start = nl + 1
                return line
            if self.end - self.start >= LINE_MAX:
                raise HttpError("a status, header or chunk-size line is longer than %d bytes" % LINE_MAX)
            if not await self.fill():
                raise HttpError("the connection closed in the middle of the headers")

    async def copy_to(self, f, n, progress, done, total):
        """Write `n` bytes of the body to `f` (n None: until the server closes); the new `done`."""
        while n is None or n > 0:
            if self.start == self.end and not await self.fill():
                if n is None:
                    return done
                raise HttpError("the body ended after %d bytes, %d missing" % (done, n))
            take = self.end - self.start
            if n is not None and take > n:
                take = n
            f.write(self.mv[self.start:self.start + take])
            self.start += take
            done += take
            if self.limit is not None and done > self.limit:
                raise HttpError("the body is longer than the %d bytes there is room for" % self.limit)
            if n is not None:
                n -= take
            if progress:
                progress(done, total)
        return done


async def _read_head(reader, what):
    """(status, status line, headers) with headers a dict of the few we use, names lowercased."""
    status_line = (await reader.readline()).decode().strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError("%s: not an HTTP answer: %r" % (what, status_line[:80]))
    headers = {}
    for _ in range(HEADER_LINES_MAX):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return int(parts[1]), status_line, headers
        colon = line.find(b":")
        if colon > 0:
            name = line[:colon].decode().strip().lower()
            if name in ("content-length", "transfer-encoding", "location"):
                headers[name] = line[colon + 1:].decode().strip()
    raise HttpError("%s: more than %d header lines" % (what, HEADER_LINES_MAX))


def _resolve(base, location):
    if location.startswith("http://") or location.startswith("https://"):
        return location
    https, host, port, _, _ = parse_url(base)
    if not location.startswith("/"):
        raise HttpError("redirect from %s to %r: only absolute locations are followed" % (base, location))
    return "%s://%s:%d%s" % ("https" if https else "http", "[%s]" % host if ":" in host else host,
                            port, location)


async def _close(writer):
    try:
        writer.close()
        await writer.wait_closed()
    except Exception:  # the connection is going away either way
        pass


_remove = store.remove


async def get_to_file(url, path, timeout_ms, progress=None, cadata=None, max_bytes=None):
    """GET `url` into the file `path`; the number of body bytes written. progress(done, total)
    is called after each chunk (total None when the server does not say). A body longer than
    `max_bytes` is refused. On failure the partial file is removed and HttpError raised."""
    for hop in (0, 1):   # the URL and at most one redirect
        what = "GET %s" % url
        https, host, port, target, userinfo = parse_url(url)
        writer = None
        try:
            reader, writer = await _connect(https, host, port, timeout_ms, cadata)
            writer.write(_head("GET", host, port, https, target, userinfo, ""))
            await asyncio.wait_for_ms(writer.drain(), timeout_ms)
            body = _Reader(reader, timeout_ms)
            body.limit = max_bytes
            status, status_line, headers = await _read_head(body, what)
            if status in REDIRECTS and hop == 0 and "location" in headers:
                url = _resolve(url, headers["location"])
                continue
            if not 200 <= status < 300:
                raise HttpError("%s: the server answered %s" % (what, status_line), status)
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            length = None
            if not chunked and "content-length" in headers:
                try:
                    length = int(headers["content-length"])
                except ValueError:
                    raise HttpError("%s: bad Content-Length %r" % (what, headers["content-length"]))
            if max_bytes is not None and length is not None and length > max_bytes:
                raise HttpError("%s: %d bytes, more than the %d there is room for" % (what, length, max_bytes))
            with open(path, "wb") as f:
                if chunked:
                    done = await _chunked_to(body, f, progress, what)
                else:
                    done = await body.copy_to(f, length, progress, 0, length)
            return done
        except HttpError as e:
            _remove(path)
            if str(e).startswith(what):
                raise
            raise HttpError("%s: %s" % (what, e), e.status)
        except ValueError as e:    # a status line or header that is not text
            _remove(path)
            raise HttpError("%s: malformed answer (%s)" % (what, e))
        except asyncio.TimeoutError:
            _remove(path)
            raise HttpError("%s: no answer within %d ms" % (what, timeout_ms))
        except OSError as e:
            _remove(path)
            raise HttpError("%s: %s" % (what, e))
        finally:
            if writer is not None:
                await _close(writer)
    raise HttpError("GET %s: redirected more than once" % url)


async def _chunked_to(body, f, progress, what):
    done = 0
    while True:
        line = await body.readline()
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise HttpError("%s: bad chunk size line %r" % (what, line[:40]))
        if size < 0:
            raise HttpError("%s: bad chunk size line %r" % (what, line[:40]))
        if size == 0:
            while (await body.readline()) not in (b"\r\n", b"\n"):  # trailers
                pass
            return done
        done = await body.copy_to(f, size, progress, done, None)
        if (await body.readline()) not in (b"\r\n", b"\n"):
            raise HttpError("%s: a chunk does not end where its size says" % what)


async def put_file(url, paths, timeout_ms, method="POST", cadata=None, content_type="text/plain"):
    """Send the files `paths`, one after the other, as the body of one request (Content-Length:
    the sum of their sizes when the call starts: files may grow meanwhile, the part written
    later is not sent). The HTTP status (2xx); HttpError for anything else."""
    what = "%s %s" % (method, url)
    https, host, port, target, userinfo = parse_url(url)
    await asyncio.sleep_ms(0)   # the URL in one step, the files' sizes in the next, the connect in a third
    sizes = []
    for p in paths:
        try:
            sizes.append(os.stat(p)[6])
        except OSError:
            raise HttpError("%s: cannot read %s" % (what, p))
    await asyncio.sleep_ms(0)   # the files' sizes in one step, the connect in the next
    writer = None
    try:
        reader, writer = await _connect(https, host, port, timeout_ms, cadata)
        writer.write(_head(method, host, port, https, target, userinfo,
                           "Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, sum(sizes))))
        answer = _Reader(reader, timeout_ms)
        mv = answer.mv   # its buffer carries the body out before it reads the answer in
        for p, left in zip(paths, sizes):
            with open(p, "rb") as f:
                while left:
                    n = f.readinto(mv[:CHUNK if left > CHUNK else left])
                    if not n:
                        raise HttpError("%s: %s got shorter during the upload" % (what, p))
                    writer.write(mv[:n])
                    await asyncio.wait_for_ms(writer.drain(), timeout_ms)
                    left -= n
        await asyncio.wait_for_ms(writer.drain(), timeout_ms)
        status, status_line, _ = await _read_head(answer, what)
        if not 200 <= status < 300:
            raise HttpError("%s: the server answered %s" % (what, status_line), status)
        return status
    except HttpError as e:
        if str(e).startswith(what):
            raise
        raise HttpError("%s: %s" % (what, e), e.status)
    except ValueError as e:
        raise HttpError("%s: malformed answer (%s)" % (what, e))
    except asyncio.TimeoutError:
        raise HttpError("%s: no answer within %d ms" % (what, timeout_ms))
    except OSError as e:
        raise HttpError("%s: %s" % (what, e))
    finally:
        if writer is not None:
            await _close(writer)
