# RFC 6455 WebSocket client for OCPP-J over MicroPython asyncio streams (ws:// and wss://).
# The URL parser, the frame codec and the back-off are pure and import under CPython too; the
# WebSocket class needs MicroPython (time.ticks_ms, asyncio.wait_for_ms).
import asyncio
import os
import random
import time

from micropython import const

import evse
from evse.ocpp import url as urlmod

OP_CONT = const(0)
OP_TEXT = const(1)
OP_BINARY = const(2)
OP_CLOSE = const(8)
OP_PING = const(9)
OP_PONG = const(10)

# Close codes, RFC 6455 7.4.1.
CLOSE_NORMAL = const(1000)
CLOSE_PROTOCOL = const(1002)
CLOSE_UNSUPPORTED = const(1003)
CLOSE_NO_STATUS = const(1005)  # never sent: the close frame had no code
CLOSE_ABNORMAL = const(1006)  # never sent: the TCP link ended without a close frame
CLOSE_BAD_DATA = const(1007)
CLOSE_TOO_BIG = const(1009)

MAX_MESSAGE = const(8192)  # largest message we accept; OCPP 1.6 messages are a few hundred bytes
_CONTROL_MAX = const(125)  # RFC 6455 5.5: control frames carry at most 125 bytes
_MASK_BLOCK = const(256)  # bytes masked at a time (a multiple of the 4-byte key)
_KEEP = const(160)      # first bytes of a message that is too big, kept for its unique id (36 characters)
_OP_TOO_BIG = const(16)  # not on the wire: the parser's word for a skipped message
_READ_CHUNK = const(512)
_CLOSE_WAIT_MS = const(2000)
_SEND_TIMEOUT_MS = const(10000)  # a send stuck this long means a dead link
tls_kept = None   # (digest, ssl.SSLContext) of the last wss:// connect (evse.ocpp.wsopen._context)


def reserve_tls():
    """A blank TLS context for the first wss:// connect, made at boot while the heap is still in
    large pieces: an ESP32-WROOM's has no 2-3 KB piece left for it once the charger is built."""
    global tls_kept
    import ssl
    tls_kept = (None, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))


class WsError(Exception):
    """The link or the server broke the protocol. `status`: the HTTP status of the upgrade answer
    when that was the problem (401: wrong credentials; 101: upgraded, but not as asked).
    `close_code`: what we tell the server before hanging up. `bad_certificate`: TLS refused the
    server's certificate (not signed by the CA, another host's, expired)."""

    def __init__(self, reason, status=None, close_code=CLOSE_PROTOCOL, bad_certificate=False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.close_code = close_code
        self.bad_certificate = bad_certificate


class WsTooBig(Exception):
    """A text message over the size limit was skipped as it arrived (never buffered); the link
    stays up. `head`: its first bytes (an OCPP CALL's unique id is there), `size`: its length
    as far as it was read."""

    def __init__(self, size, head):
        super().__init__("message of %d bytes over the limit skipped" % size)
        self.size = size
        self.head = head


class WsClosed(WsError):
    """The connection is gone. `code`: the server's close code, 1006 when the TCP link ended
    without a close frame, 1005 when the close frame had no code."""

    def __init__(self, code, reason=""):
        super().__init__("connection closed (%d%s)" % (code, (" " + reason) if reason else ""))
        self.code = code
        self.reason = reason


def parse_url(url):
    """(secure, host, port, path) of a ws:// or wss:// URL; ValueError naming the URL otherwise."""
    try:
        scheme, userinfo, host, port, path, fragment = urlmod.split(url, ("ws", "wss"))
    except ValueError as e:
        raise ValueError("OCPP URL %r: %s" % (url, e))
    if fragment is not None:
        raise ValueError("OCPP URL %r: a WebSocket URL has no #fragment (RFC 6455 3)" % url)
    if userinfo is not None:
        raise ValueError("OCPP URL %r: give user and password as basic_auth, not in the URL" % url)
    secure = scheme == "wss"
    return secure, host, port or (443 if secure else 80), path


def encode_frame(opcode, payload, mask_key):
    """One client frame, FIN set, masked with the 4 bytes `mask_key` (RFC 6455 5.2, 5.3).
    Returns a bytearray: header and masked payload in one allocation."""
    if len(mask_key) != 4:
        raise ValueError("mask_key must be 4 bytes")
    n = len(payload)
    hlen = 6 if n < 126 else 8 if n < 65536 else 14
    frame = bytearray(hlen + n)
    frame[0] = 0x80 | opcode
    if n < 126:
        frame[1] = 0x80 | n
    elif n < 65536:
        frame[1] = 0xFE
        frame[2] = n >> 8
        frame[3] = n & 0xFF
    else:
        frame[1] = 0xFF
        for i in range(8):
            frame[9 - i] = (n >> (8 * i)) & 0xFF
    frame[hlen - 4:hlen] = mask_key
    # XOR as integers of _MASK_BLOCK bytes, in C: a byte loop in Python took 16 ms at RP2040
    # speed for one 576-byte MeterValues. Blocks keep the integers small in a small heap.
    key = bytes(mask_key) * (_MASK_BLOCK // 4)
    whole = int.from_bytes(key, "big")
    mv = memoryview(payload)
    for at in range(0, n, _MASK_BLOCK):
        size = n - at if n - at < _MASK_BLOCK else _MASK_BLOCK
        k = whole if size == _MASK_BLOCK else int.from_bytes(key[:size], "big")
        frame[hlen + at:hlen + at + size] = (int.from_bytes(mv[at:at + size], "big") ^ k).to_bytes(size, "big")
    return frame


class FrameParser:
    """Incremental parser of server frames: feed(bytes), then iterate (fin, opcode, payload).

    Raises WsError, before buffering the payload, for anything RFC 6455 forbids a server: a
    masked frame (5.1), reserved bits without an extension (5.2), an unknown opcode, a control
    frame fragmented or over 125 bytes (5.5), a continuation without a start or a new message
    inside a fragmented one (5.4). A message over `max_message` bytes is dropped as it arrives,
    all but its first _KEEP bytes, and comes out as (True, _OP_TOO_BIG, (size, first bytes))."""

    def __init__(self, max_message=MAX_MESSAGE):
        self.max_message = max_message
        self._buf = bytearray()
        self._frag_op = 0  # opcode of the fragmented message in progress, 0 = none
        self._frag_len = 0
        self._skip = 0     # payload bytes of an oversize message's frame still to drop
        self._skip_fin = False
        self._head = None  # the oversize message's first bytes while it is dropped

    def feed(self, data):
        self._buf.extend(data)

    def __iter__(self):
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    def next_frame(self):
        """(fin, opcode, payload: bytes or bytearray) of the next complete frame, or None until more data."""
        buf = self._buf
        if self._skip:
            n = min(len(buf), self._skip)
            head = self._head
            if len(head) < _KEEP:
                head.extend(memoryview(buf)[:min(n, _KEEP - len(head))])
            buf[0:n] = b""
            self._skip -= n
            if self._skip:
                return None
            if self._skip_fin:
                return self._skipped()
        have = len(buf)
        if have < 2:
            return None
        b0, b1 = buf[0], buf[1]
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            raise WsError("frame has reserved bits set; no extension was negotiated")
        if b1 & 0x80:
            raise WsError("server frame is masked (RFC 6455 5.1)")
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if have < 4:
                return None
            length = (buf[2] << 8) | buf[3]
            pos = 4
        elif length == 127:
            if have < 10:
                return None
            if buf[2] or buf[3] or buf[4] or buf[5] or buf[6] & 0x80:
                raise WsError("frame longer than 2 GB", close_code=CLOSE_TOO_BIG)
            length = (buf[6] << 24) | (buf[7] << 16) | (buf[8] << 8) | buf[9]
            pos = 10
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                raise WsError("unknown opcode 0x%x" % opcode)
            if not fin or length > _CONTROL_MAX:
                raise WsError("control frame fragmented or longer than 125 bytes")
            if opcode == OP_CLOSE and length == 1:
                raise WsError("close frame with a 1-byte payload")
        else:
            if opcode > OP_BINARY:
                raise WsError("unknown opcode 0x%x" % opcode)
            if opcode == OP_CONT and not self._frag_op:
                raise WsError("continuation frame without a message to continue")
            if opcode != OP_CONT and self._frag_op:
                raise WsError("new message inside a fragmented one")
            total = self._frag_len + length
            if total > self.max_message or self._head is not None:
                # Too big to take: drop it as it comes, and say so when it is over.
                if self._head is None:
                    self._head = bytearray()
                if opcode != OP_CONT:
                    self._frag_op = opcode
                self._frag_len = total
                buf[0:pos] = b""
                self._skip = length
                self._skip_fin = bool(fin)
                if fin and not length:
                    return self._skipped()
                return self.next_frame()
        end = pos + length
        if have < end:
            return None
        # The buffer is not kept: a bytearray keeps its size when bytes are cut from it, and one
        # that held a large message (a SendLocalList) would hold that much heap from then on.
        if end == have:   # the frame is all there is (as most are): handed out, its header cut
            buf[0:pos] = b""
            payload = buf
            self._buf = bytearray()
        else:             # more follows: that (seldom more than a read) gets a buffer of its own
            self._buf = bytearray(memoryview(buf)[end:])
            buf[end:] = b""   # and this one, cut to the frame, is handed out: no copy of a
            buf[0:pos] = b""  # 1 KB frame a fragmented heap may have no piece for
            payload = buf
        if opcode < OP_CLOSE:
            if fin:
                self._frag_op = 0
                self._frag_len = 0
            else:
                if opcode != OP_CONT:
                    self._frag_op = opcode
                self._frag_len += length
        return (bool(fin), opcode, payload)

    def _skipped(self):
        out = (True, _OP_TOO_BIG, (self._frag_len, bytes(self._head)))
        self._head = None
        self._skip_fin = False
        self._frag_op = 0
        self._frag_len = 0
        return out


def backoff_ms(attempt, base_ms=1000, cap_ms=120000, rand=random.getrandbits):
    """Delay before reconnect attempt `attempt` (0, 1, ...): exponential with full jitter,
    uniform in 0..min(cap_ms, base_ms * 2**attempt), so a site's chargers that lost the CSMS
    together do not all come back in the same second."""
    ceiling = base_ms
    while attempt > 0 and ceiling < cap_ms:
        ceiling *= 2
        attempt -= 1
    if ceiling > cap_ms:
        ceiling = cap_ms
    return rand(30) % (ceiling + 1)


def _close_payload(code):
    return bytes((code >> 8, code & 0xFF))


class WebSocket:
    """One client connection. One task at a time may call recv(); any task may send().
    recv() must keep running (a reader task) for pings to be answered and pongs to be seen."""

    def __init__(self, max_message=MAX_MESSAGE):
        self.max_message = max_message
        self._reader = None
        self._writer = None
        self._parser = None
        self._msg = None  # fragments of a text message so far
        self._reading = False
        self._close_sent = False
        self._wlock = asyncio.Lock()
        self._rmv = memoryview(bytearray(_READ_CHUNK))  # every read lands here: no garbage
        self.subprotocol = None
        self.last_rx_ms = 0  # time.ticks_ms() of the last byte received: no pong -> dead link

    @property
    def connected(self):
        return self._writer is not None

    async def connect(self, url, subprotocol="ocpp1.6", basic_auth=None, ca_der=None,
                      timeout_ms=10000, client_cert=None):
        """Open the TCP (and TLS) link and upgrade it. basic_auth: (user, password: text or bytes) for OCPP
        security profile 1/2; ca_der: the CA that must have signed a wss:// server's certificate
        (without it the server is not verified); client_cert: (certificate, private key) as DER,
        what a wss:// server of security profile 3 asks for. Raises ValueError for a bad URL,
        WsError for everything else, naming the server."""
        await asyncio.sleep_ms(0)
        from evse.ocpp import wsopen   # the handshake's code, its import a step of its own
        try:
            await asyncio.sleep_ms(0)
            await wsopen.connect(self, url, subprotocol, basic_auth, ca_der, timeout_ms, client_cert)
        finally:
            wsopen = None
            evse.unload("evse.ocpp.wsopen")

    async def _next_frame(self, deadline):
        """The next frame, or None at `deadline` (ticks_ms; None = wait for ever)."""
        parser = self._parser
        while True:
            frame = parser.next_frame()
            if frame is not None:
                return frame
            if self._reader is None:
                raise WsClosed(CLOSE_ABNORMAL, "not connected")
            if deadline is None:
                n = await self._reader.readinto(self._rmv)
            else:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if left <= 0:
                    return None
                try:
                    # A cancelled read has taken nothing from the socket: no frame is torn.
                    n = await asyncio.wait_for_ms(self._reader.readinto(self._rmv), left)
                except asyncio.TimeoutError:
                    return None
            if n is None:  # TLS: the record is not complete yet
                continue
            if not n:
                raise WsClosed(CLOSE_ABNORMAL, "link ended without a close frame")
            self.last_rx_ms = time.ticks_ms()
            parser.feed(self._rmv[:n])

    async def recv(self, timeout_ms=None):
        """The next text message (fragments joined; pings answered, pongs noted), or None when
        `timeout_ms` passes first. Raises WsClosed when the server closed (after answering its
        close frame) or the link dropped, WsError (after closing) when it broke the protocol."""
        if self._writer is None:
            raise WsClosed(CLOSE_ABNORMAL, "not connected")
        deadline = None if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
        self._reading = True
        try:
            while True:
                frame = await self._next_frame(deadline)
                if frame is None:
                    return None
                fin, opcode, payload = frame
                if opcode == OP_TEXT and fin:
                    return _text(payload)
                if opcode == OP_TEXT:
                    self._msg = bytearray(payload)
                elif opcode == OP_CONT:
                    self._msg.extend(payload)
                    if fin:
                        msg, self._msg = self._msg, None
                        return _text(msg)
                elif opcode == _OP_TOO_BIG:
                    size, head = payload
                    if self._msg is not None:  # its first fragments came through whole
                        head = bytes(self._msg[:_KEEP])
                        self._msg = None
                    raise WsTooBig(size, head)
                elif opcode == OP_BINARY:
                    raise WsError("binary message; OCPP-J uses text only",
                                  close_code=CLOSE_UNSUPPORTED)
                elif opcode == OP_PING:
                    await self._send_frame(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    code, reason = CLOSE_NO_STATUS, ""
                    if len(payload) >= 2:
                        code = (payload[0] << 8) | payload[1]
                        try:
                            reason = str(payload[2:], "utf-8")
                        except UnicodeError:
                            pass
                    if not self._close_sent:  # RFC 6455 5.5.1: answer, echoing the code
                        self._close_sent = True
                        await self._send_frame(OP_CLOSE, payload[:2])
                    self._drop()
                    raise WsClosed(code, reason)
                # OP_PONG: last_rx_ms is all the caller needs
        except WsClosed:
            self._drop()
            raise
        except WsError as e:
            await self._fail(e.close_code)
            raise
        except OSError as e:
            self._drop()
            raise WsClosed(CLOSE_ABNORMAL, "link lost: %s" % e)
        finally:
            self._reading = False

    async def send(self, text):
        if self._close_sent:
            raise WsClosed(CLOSE_ABNORMAL, "closing")
        await self._send_frame(OP_TEXT, text.encode())

    async def ping(self, payload=b""):
        """Send a ping; the pong shows up as a fresh last_rx_ms (the reader task must run)."""
        if len(payload) > _CONTROL_MAX:
            raise ValueError("ping payload over 125 bytes")
        await self._send_frame(OP_PING, payload)

    async def _send_frame(self, opcode, payload, timeout_ms=_SEND_TIMEOUT_MS):
        frame = encode_frame(opcode, payload, os.urandom(4))
        await asyncio.sleep_ms(0)   # the frame in one step, its send (a task, a timer) in the next
        try:
            await asyncio.wait_for_ms(self._write(frame), timeout_ms)
        except asyncio.TimeoutError:
            self._drop()
            raise WsClosed(CLOSE_ABNORMAL, "send stalled %d ms" % timeout_ms)
        except OSError as e:
            self._drop()
            raise WsClosed(CLOSE_ABNORMAL, "link lost: %s" % e)

    async def _write(self, frame):
        # One writer at a time: asyncio's Stream.drain() loses bytes queued by a second writer.
        async with self._wlock:
            writer = self._writer
            if writer is None:
                raise WsClosed(CLOSE_ABNORMAL, "not connected")
            writer.write(frame)
            await writer.drain()

    async def close(self, code=CLOSE_NORMAL, timeout_ms=_CLOSE_WAIT_MS):
        """Close handshake (RFC 6455 7.1.2): send a close frame, wait up to timeout_ms for the
        server's, then drop the link. Safe to call when already closed."""
        if self._writer is None:
            return
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        try:
            if not self._close_sent:
                self._close_sent = True
                await self._send_frame(OP_CLOSE, _close_payload(code), timeout_ms)
            if self._reading:  # the reader task sees the answer and drops the link
                while self._writer is not None and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                    await asyncio.sleep_ms(10)
            else:
                while True:
                    frame = await self._next_frame(deadline)
                    if frame is None or frame[1] == OP_CLOSE:
                        break
        except (WsError, OSError):
            pass
        self._drop()

    async def _fail(self, close_code):
        if self._writer is not None and not self._close_sent:
            self._close_sent = True
            try:
                await self._send_frame(OP_CLOSE, _close_payload(close_code), _CLOSE_WAIT_MS)
            except (WsError, OSError):
                pass
        self._drop()

    def _drop(self):
        writer = self._writer
        self._reader = self._writer = None
        self._msg = None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass


def _text(payload):
    try:
        return str(payload, "utf-8")
    except UnicodeError:
        raise WsError("text message is not UTF-8", close_code=CLOSE_BAD_DATA)
