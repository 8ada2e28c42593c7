# A WebSocket's opening handshake (RFC 6455 4.1): the TCP and TLS link, the HTTP upgrade and its
# checks. evse.ocpp.ws's WebSocket.connect loads this module for a connect, in a step of its own,
# and lets it go after: a connected charger does not hold its code.
import binascii
import hashlib
import os
import time

import asyncio
from micropython import const

from evse.ocpp import names
from evse.ocpp import ws as wsmod
from evse.ocpp.ws import CLOSE_PROTOCOL, FrameParser, WsError, parse_url

_HEAD_MAX = const(2048)  # longest HTTP answer head we read during the upgrade
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


async def connect(ws, url, subprotocol, basic_auth, ca_der, timeout_ms, client_cert):
    """WebSocket.connect's work: the link, the upgrade, and a WsError naming the server for
    anything that fails."""
    secure, host, port, path = parse_url(url)
    ctx = _context(ca_der, client_cert) if secure else None
    if ws._writer is not None:
        ws._drop()
    ws._parser = FrameParser(ws.max_message)
    ws._msg = None
    ws._close_sent = False
    ws.subprotocol = None
    where = "%s:%d" % (host, port)
    try:
        await asyncio.wait_for_ms(
            _upgrade(ws, host, port, path, ctx, subprotocol, basic_auth), timeout_ms)
    except asyncio.TimeoutError:
        ws._drop()
        names.connected(host, False)
        raise WsError("no WebSocket upgrade from %s within %d ms" % (where, timeout_ms))
    except WsError as e:
        if e.status == 101:  # a WebSocket now, if not ours: say why before hanging up
            await ws._fail(CLOSE_PROTOCOL)
        ws._drop()
        raise WsError("%s: %s" % (where, e.reason), status=e.status)
    except (OSError, EOFError, ValueError, UnicodeError) as e:
        # OSError covers refused/reset links and TLS failures (mbedtls: certificate not
        # signed by ca_der, host name mismatch); mbedtls texts come wrapped in newlines.
        ws._drop()
        names.connected(host, False)
        text = " ".join(str(e).split())
        # mbedtls' verify texts all name the certificate ("The certificate is not correctly
        # signed by the trusted CA", "... Common Name (CN) does not match ...", "... has expired").
        raise WsError("cannot connect to %s: %s" % (where, text), bad_certificate=ctx is not None and
                      "certificate" in text.lower() and "ca certificate" not in text.lower())
    names.connected(host, True)
    ws.last_rx_ms = time.ticks_ms()


def _context(ca_der, client_cert):
    # The TLS context of the last connect while the CA and this charge point's certificate are
    # the same (known by their digest: the key's bytes are not kept): a reconnect parses no
    # certificate again, and does not look for the context's 2-3 KB in one piece in a heap
    # that, on an ESP32-WROOM, has been in smaller pieces since its boot.
    import ssl
    h = hashlib.sha256(b"-" if ca_der is None else b"+")
    if ca_der:
        h.update(ca_der)
    if client_cert:
        h.update(client_cert[0])
        h.update(client_cert[1])
    digest = h.digest()
    kept = wsmod.tls_kept
    if kept is not None and kept[0] == digest:
        return kept[1]
    blank = kept[1] if kept is not None and kept[0] is None else None   # ws.reserve_tls's, at boot
    # The old context goes before a new one is made; until configured none is kept (one that
    # failed is not used again).
    wsmod.tls_kept = kept = None
    ctx = blank if blank is not None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_der is not None:   # b"": a CA file that is missing, which must not mean "no check"
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cadata=ca_der)
        except (OSError, ValueError) as e:
            raise WsError("the CA certificate (ca_der, %d bytes) does not load: %s; "
                          "give the DER bytes of the CA that signed the server"
                          % (len(ca_der), " ".join(str(e).split())))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        try:
            ctx.load_cert_chain(client_cert[0], client_cert[1])
        except (OSError, ValueError) as e:   # mbedtls names what it could not parse, never the bytes
            raise WsError("this charge point's certificate (ocpp_cert, %d bytes) or its key (ocpp_key) "
                          "does not load: %s" % (len(client_cert[0]), " ".join(str(e).split())))
    wsmod.tls_kept = (digest, ctx)
    return ctx


async def _upgrade(ws, host, port, path, ctx, subprotocol, basic_auth):
    ws._reader, ws._writer = await names.open_connection(host, port, ctx)
    key = binascii.b2a_base64(os.urandom(16))[:-1]  # RFC 6455 4.1: 16 random bytes
    default_port = 443 if ctx else 80
    host_hdr = ("[%s]" % host) if ":" in host else host
    if port != default_port:
        host_hdr = "%s:%d" % (host_hdr, port)
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           % (path, host_hdr, key.decode()))
    if subprotocol:
        req += "Sec-WebSocket-Protocol: %s\r\n" % subprotocol
    if basic_auth:   # the password may be bytes, not text (OCPP's AuthorizationKey)
        user, password = basic_auth
        cred = user.encode() + b":" + (password if isinstance(password, bytes) else password.encode())
        req += "Authorization: Basic %s\r\n" % binascii.b2a_base64(cred)[:-1].decode()
    ws._writer.write((req + "\r\n").encode())
    await ws._writer.drain()
    status, headers = await _read_head(ws)
    if status[0] != 101:
        raise WsError("server refused the upgrade: %d %s" % status, status=status[0])
    if headers.get("upgrade", "").lower() != "websocket" \
            or "upgrade" not in headers.get("connection", "").lower():
        raise WsError("101 without Upgrade: websocket / Connection: Upgrade", status=101)
    digest = hashlib.sha1(key + _GUID).digest()
    if headers.get("sec-websocket-accept", "").encode() != binascii.b2a_base64(digest)[:-1]:
        raise WsError("wrong Sec-WebSocket-Accept", status=101)
    if headers.get("sec-websocket-extensions"):
        raise WsError("server chose an extension we did not offer", status=101)
    chosen = headers.get("sec-websocket-protocol")
    if subprotocol and chosen != subprotocol:
        # OCPP-J 1.6 3.1.2: a server that takes none of the offered versions answers
        # without the header and closes; there is no OCPP 1.6 session either way.
        raise WsError("server did not agree to subprotocol %s (answered %s)"
                      % (subprotocol, chosen or "none"), status=101)
    ws.subprotocol = chosen


async def _read_head(ws):
    """((status, reason), headers with lower-case names) of the HTTP answer. Bytes after the
    head are already WebSocket frames: they go to the parser."""
    head = bytearray()
    while True:
        n = await ws._reader.readinto(ws._rmv)
        if n is None:  # TLS: the record is not complete yet
            continue
        if not n:
            raise WsError("server closed the link during the upgrade")
        head.extend(ws._rmv[:n])
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(head) > _HEAD_MAX:
            raise WsError("HTTP answer head over %d bytes" % _HEAD_MAX)
    ws._parser.feed(memoryview(head)[end + 4:])
    lines = str(head[:end], "utf-8").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise WsError("not an HTTP answer: %r" % lines[0][:40])
    headers = {}
    for line in lines[1:]:
        i = line.find(":")
        if i > 0:
            headers[line[:i].strip().lower()] = line[i + 1:].strip()
    return (int(parts[1]), parts[2] if len(parts) > 2 else ""), headers
