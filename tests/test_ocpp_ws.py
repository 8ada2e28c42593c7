"""The OCPP WebSocket transport: the pure frame codec under hypothesis, and the client under the
real MicroPython against real CPython `websockets` servers (plain, Basic auth, TLS)."""
import asyncio
import base64
import hashlib
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import basic_auth, serve

from evse.ocpp.ws import (_OP_TOO_BIG, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                          FrameParser, WsError, backoff_ms, encode_frame, parse_url)

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
CLIENT = REPO / "tests" / "ocpp_mpy" / "ws_client.py"


# --- URL --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("ws://csms.example/ocpp/CP1", (False, "csms.example", 80, "/ocpp/CP1")),
    ("wss://csms.example/ocpp/CP1", (True, "csms.example", 443, "/ocpp/CP1")),
    ("ws://10.0.0.2:9000", (False, "10.0.0.2", 9000, "/")),
    ("WSS://h:8443/a?b=c", (True, "h", 8443, "/a?b=c")),
    ("ws://h?x=1", (False, "h", 80, "/?x=1")),
    ("ws://[fe80::1]:9000/cp", (False, "fe80::1", 9000, "/cp")),
    ("wss://[::1]/cp", (True, "::1", 443, "/cp")),
])
def test_parse_url_splits_scheme_host_port_and_path(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url, words", [
    ("http://csms/ocpp", "ws:// or wss://"),
    ("csms:80/ocpp", "ws:// or wss://"),
    ("ws://", "no host"),
    ("ws://:9000/x", "no host"),
    ("ws://h:0/x", "port"),
    ("ws://h:70000/x", "port"),
    ("ws://h:abc/x", "port"),
    ("ws://fe80::1/x", "port"),
    ("ws://[fe80::1/x", "IPv6"),
    ("ws://user:pw@h/x", "basic_auth"),
    ("ws://h/x#frag", "fragment"),
    ("ws://h/x y", "spaces"),
    ("ws://h/x\r\nEvil: 1", "control"),
])
def test_parse_url_refuses_anything_else_naming_the_url_and_the_fix(url, words):
    with pytest.raises(ValueError) as e:
        parse_url(url)
    assert words in str(e.value) and repr(url) in str(e.value)


# --- frame codec ------------------------------------------------------------------------------

def unmask(frame):
    """What a server does with a client frame: check the mask bit, unmask, re-emit unmasked."""
    frame = bytes(frame)
    assert frame[1] & 0x80, "client frames are always masked"
    n = frame[1] & 0x7F
    pos = 2 + (2 if n == 126 else 8 if n == 127 else 0)
    key, body = frame[pos:pos + 4], frame[pos + 4:]
    plain = bytes(b ^ key[i % 4] for i, b in enumerate(body))
    return bytes([frame[0], frame[1] & 0x7F]) + frame[2:pos] + plain


def server_frame(opcode, payload, fin=True, rsv=0, masked=False, length=None):
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"") + payload


def parse_all(data, chunks=None, max_message=8192):
    p = FrameParser(max_message)
    out = []
    cuts = sorted(set(chunks or [])) + [len(data)]
    start = 0
    for cut in cuts:
        p.feed(data[start:cut])
        out.extend(p)
        start = cut
    return out


def test_client_frames_are_masked_with_fin_set_and_the_rfc_example_decodes():
    # RFC 6455 5.7: a masked "Hello" with key 37 fa 21 3d.
    frame = encode_frame(OP_TEXT, b"Hello", b"\x37\xfa\x21\x3d")
    assert bytes(frame) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert parse_all(unmask(frame)) == [(True, OP_TEXT, b"Hello")]


@pytest.mark.parametrize("n, header_len", [(0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)])
def test_frame_length_uses_7_16_or_64_bits(n, header_len):
    frame = encode_frame(OP_BINARY, bytes(n), b"abcd")
    assert len(frame) == header_len + n
    assert parse_all(unmask(frame), max_message=70000) == [(True, OP_BINARY, bytes(n))]


@given(opcode=st.sampled_from([OP_TEXT, OP_BINARY, OP_PING, OP_PONG]),
       payload=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4),
       cuts=st.lists(st.integers(0, 400), max_size=6))
def test_encode_then_server_unmask_then_parse_in_any_chunking_round_trips(opcode, payload, key, cuts):
    if opcode >= OP_CLOSE:
        payload = payload[:125]
    frame = unmask(encode_frame(opcode, payload, key))
    assert parse_all(frame, [c for c in cuts if c < len(frame)]) == [(True, opcode, payload)]


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5), st.data())
def test_fragments_with_pings_between_parse_in_order_from_any_chunking(parts, data):
    stream = b""
    expected = []
    for i, part in enumerate(parts):
        op = OP_TEXT if i == 0 else OP_CONT
        fin = i == len(parts) - 1
        stream += server_frame(op, part, fin=fin)
        expected.append((fin, op, part))
        if not fin:
            stream += server_frame(OP_PING, b"p%d" % i)
            expected.append((True, OP_PING, b"p%d" % i))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    assert parse_all(stream, cuts) == expected


@pytest.mark.parametrize("stream, words", [
    (server_frame(OP_TEXT, b"hi", masked=True), "masked"),
    (server_frame(OP_TEXT, b"hi", rsv=0x40), "reserved bits"),
    (server_frame(3, b"hi"), "unknown opcode"),
    (server_frame(0xB, b"hi"), "unknown opcode"),
    (server_frame(OP_PING, b"p", fin=False), "control frame"),
    (server_frame(OP_PING, b"p" * 126), "control frame"),
    (server_frame(OP_CLOSE, b"\x03"), "1-byte"),
    (server_frame(OP_CONT, b"x"), "continuation"),
    (server_frame(OP_TEXT, b"a", fin=False) + server_frame(OP_TEXT, b"b"), "inside a fragmented"),
    (server_frame(OP_TEXT, b"", length=2 ** 40), "2 GB"),
])
def test_frames_a_server_must_not_send_raise_wserror_with_the_reason(stream, words):
    with pytest.raises(WsError) as e:
        parse_all(stream)
    assert words in e.value.reason


@settings(max_examples=200)
@given(size=st.integers(8193, 30000), split=st.integers(0, 8192), data=st.data())
def test_a_message_over_the_limit_is_dropped_as_it_arrives_and_the_next_one_parses(size, split, data):
    big = b'[2,"u-17","DataTransfer",{"data":"' + b"z" * size + b'"}]'
    if split:   # sent in two fragments, the first within the limit
        stream = server_frame(OP_TEXT, big[:split], fin=False) + server_frame(OP_CONT, big[split:])
    else:
        stream = server_frame(OP_TEXT, big)
    stream += server_frame(OP_PING, b"p") + server_frame(OP_TEXT, b"next")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    frames = parse_all(stream, cuts)
    # The first bytes the parser dropped (recv() takes a fragmented message's from its start).
    first = [(False, OP_TEXT, big[:split])] if split else []
    assert frames == first + [(True, _OP_TOO_BIG, (len(big), big[split:split + 160])),
                              (True, OP_PING, b"p"), (True, OP_TEXT, b"next")]


def test_an_empty_fragment_of_a_skipped_message_does_not_hold_up_the_frames_after_it():
    stream = (server_frame(OP_TEXT, b'[2,"abc",', fin=False) + server_frame(OP_CONT, b"x" * 9000, fin=False)
              + server_frame(OP_CONT, b"", fin=False) + server_frame(OP_CONT, b"}]") + server_frame(OP_PING, b"hi"))
    frames = parse_all(stream)   # all in one feed: nothing may wait for more bytes
    assert [f[1] for f in frames] == [OP_TEXT, _OP_TOO_BIG, OP_PING]


def test_a_message_over_the_limit_never_fills_the_parser_buffer():
    p = FrameParser(8192)
    stream = server_frame(OP_TEXT, b"z" * (1 << 20)) + server_frame(OP_TEXT, b"after")
    frames = []
    for i in range(0, len(stream), 4096):
        p.feed(stream[i:i + 4096])
        frames.extend(p)
        assert len(p._buf) <= 4096
    assert frames == [(True, _OP_TOO_BIG, (1 << 20, b"z" * 160)), (True, OP_TEXT, b"after")]


@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=5))
def test_garbage_gives_frames_or_wserror_and_a_bounded_buffer(data, cuts):
    p = FrameParser(256)
    start = 0
    try:
        for cut in sorted(c for c in cuts if c < len(data)) + [len(data)]:
            p.feed(data[start:cut])
            start = cut
            for fin, opcode, payload in p:
                assert isinstance(fin, bool) and opcode in (0, 1, 2, 8, 9, 10, _OP_TOO_BIG)
                if opcode == _OP_TOO_BIG:   # (size, its first bytes)
                    assert payload[0] > 256 and len(payload[1]) <= 160
                else:
                    assert len(payload) <= (125 if opcode >= OP_CLOSE else 256)
            # Drained, the parser holds at most one incomplete frame: header + payload in limit.
            assert len(p._buf) < 14 + 256
    except WsError as e:
        assert e.reason


# --- back-off ---------------------------------------------------------------------------------

@pytest.mark.parametrize("attempt, ceiling_ms", [
    (0, 1000), (1, 2000), (2, 4000), (6, 64000), (7, 120000), (50, 120000), (-3, 1000)])
def test_backoff_spreads_over_zero_to_a_ceiling_that_doubles_up_to_the_cap(attempt, ceiling_ms):
    rng = random.Random(attempt)
    draws = [backoff_ms(attempt, base_ms=1000, cap_ms=120000, rand=rng.getrandbits) for _ in range(400)]
    assert max(draws) <= ceiling_ms
    assert max(draws) > 0.95 * ceiling_ms and min(draws) < 0.05 * ceiling_ms  # full jitter


@given(st.integers(-5, 10 ** 6), st.integers(1, 10 ** 5), st.integers(1, 10 ** 7),
       st.integers(0, 2 ** 30 - 1))
def test_backoff_stays_within_zero_and_its_ceiling(attempt, base_ms, cap_ms, draw):
    ms = backoff_ms(attempt, base_ms=base_ms, cap_ms=cap_ms, rand=lambda bits: draw)
    ceiling = min(cap_ms, base_ms * 2 ** min(max(attempt, 0), 40))
    assert 0 <= ms <= ceiling


# --- the client under the real MicroPython ----------------------------------------------------

OBSERVED = {}  # what the servers saw, for the assertions


def observed(key, timeout_s=3.0):
    """What the server recorded under `key`: its handler may finish just after the client exits."""
    deadline = time.monotonic() + timeout_s
    while key not in OBSERVED and time.monotonic() < deadline:
        time.sleep(0.01)
    return OBSERVED.get(key)


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


async def handler(ws):
    path = ws.request.path
    if path.startswith("/echo"):
        async for msg in ws:
            await ws.send(msg if len(msg) <= 8000 else str(len(msg.encode())))
    elif path == "/fragments":
        async def parts():
            yield '[2,"42",'
            OBSERVED["pong"] = await asyncio.wait_for(await ws.ping(b"mid-message"), 2)
            yield '"Reset",'
            yield '{"type":"Soft"}]'
        await ws.send(parts())
        await ws.send("pong seen")
        await ws.close(4000, "maintenance")
        OBSERVED["fragments close"] = (ws.close_code, ws.close_reason)
    elif path == "/big":
        await ws.send("z" * 9000)
        await ws.send("after the big one")
        await ws.wait_closed()
    elif path == "/binary":
        await ws.send(b"\x00\x01")
        await ws.wait_closed()
        OBSERVED["binary close"] = ws.close_code
    elif path.startswith("/hold"):
        await ws.wait_closed()
        OBSERVED[path] = ws.close_code


async def silent_upgrade(reader, writer):
    """Answers the upgrade, then never says a word again (a half-open link)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    key = [line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"sec-websocket-key")][0]
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Protocol: ocpp1.6\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n")
    await writer.drain()
    while await reader.read(4096):
        pass


async def mute(reader, writer):
    """Takes the upgrade request and never answers it."""
    while await reader.read(4096):
        pass


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every server of the scenarios, in one event loop on a thread; returns name -> base URL."""
    tmp = tmp_path_factory.mktemp("tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    for name, authority in (("ca.der", ca), ("other_ca.der", other_ca)):
        (tmp / name).write_bytes(ssl.PEM_cert_to_DER_cert(authority.cert_pem.bytes().decode()))
    # Security profile 3: charge points' certificates, one the server's CA signed and one not.
    cp_ca = trustme.CA()
    for name, authority in (("cp", cp_ca), ("stranger", other_ca)):
        write_client_cert(authority.issue_cert("CP1"), tmp / f"{name}.der", tmp / f"{name}.key")

    def tls(authority, *names):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        authority.issue_cert(*names).configure_cert(ctx)
        return ctx

    def client_tls():
        ctx = tls(ca, "localhost", "127.0.0.1")
        ctx.verify_mode = ssl.CERT_REQUIRED
        cp_ca.configure_trust(ctx)
        return ctx

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ocpp = dict(subprotocols=["ocpp1.6"], ping_interval=None)

    async def start():
        made = {
            "plain": await serve(handler, "127.0.0.1", 0, **ocpp),
            "auth": await serve(handler, "127.0.0.1", 0, **ocpp,
                                process_request=basic_auth(credentials=("CP1", "s3cret"))),
            "no-subprotocol": await serve(handler, "127.0.0.1", 0, ping_interval=None),
            "ocpp201-only": await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]),
            "tls": await serve(handler, "127.0.0.1", 0, **ocpp, ssl=tls(ca, "localhost", "127.0.0.1")),
            "tls-wrong-name": await serve(handler, "127.0.0.1", 0, **ocpp, ssl=tls(ca, "csms.example")),
            "tls-client": await serve(handler, "127.0.0.1", 0, **ocpp, ssl=client_tls()),
            "silent": await asyncio.start_server(silent_upgrade, "127.0.0.1", 0),
            "mute": await asyncio.start_server(mute, "127.0.0.1", 0),
        }
        return made

    made = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    urls = {}
    for name, server in made.items():
        port = server.sockets[0].getsockname()[1]
        urls[name] = "%s://localhost:%d" % ("wss" if name.startswith("tls") else "ws", port)
    urls["ca"], urls["other_ca"] = str(tmp / "ca.der"), str(tmp / "other_ca.der")
    for name in ("cp", "stranger"):
        urls[name] = str(tmp / f"{name}.der")
        urls[name + "_key"] = str(tmp / f"{name}.key")
    yield urls

    async def stop():
        for server in made.values():
            server.close()
        await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in made.values())), 5)
    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def write_client_cert(issued, cert_path, key_path):
    """A trustme certificate and its private key as the DER files a board keeps (ocpp_cert, ocpp_key)."""
    from cryptography.hazmat.primitives import serialization
    cert_path.write_bytes(ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode()))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def run_client(scenario, url, **opts):
    env = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen")
    # 320K: the echo scenario's 70 KB message (a 64-bit frame length) is held twice, as text and
    # as its frame, besides the client's code.
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=320K", str(CLIENT), scenario, url, json.dumps(opts)],
                       capture_output=True, text=True, env=env, timeout=20)
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("[")]
    assert events and events[-1] == ["done"], r.stdout + r.stderr
    return events[:-1]


def test_client_negotiates_ocpp16_and_echoes_short_medium_and_long_messages(servers):
    assert run_client("echo", servers["plain"] + "/echo/CP1", held=True) == [
        ["connected", "ocpp1.6"], ["handshake code held", False], ["echo", "hello"], ["echo", 4000], ["echo", "70000"],
        ["closed", False]]


def test_client_refuses_a_server_that_does_not_pick_ocpp16(servers):
    [refused] = run_client("refused", servers["no-subprotocol"] + "/hold/no-subprotocol")
    assert refused[0] == "refused" and "did not agree to subprotocol ocpp1.6" in refused[2]
    assert observed("/hold/no-subprotocol") == 1002  # told the server why before hanging up
    [refused] = run_client("refused", servers["ocpp201-only"] + "/echo")
    assert refused[:2] == ["refused", 400] and "400" in refused[2]


def test_wrong_basic_auth_gets_401_and_the_right_one_connects(servers):
    [refused] = run_client("refused", servers["auth"] + "/echo", auth=["CP1", "wrong"])
    assert refused[:2] == ["refused", 401] and "401 Unauthorized" in refused[2]
    [refused] = run_client("refused", servers["auth"] + "/echo")
    assert refused[1] == 401
    events = run_client("echo", servers["auth"] + "/echo", auth=["CP1", "s3cret"])
    assert events[0] == ["connected", "ocpp1.6"] and events[-1] == ["closed", False]


def test_fragmented_message_is_reassembled_a_ping_inside_it_answered_and_a_close_echoed(servers):
    events = run_client("receive", servers["plain"] + "/fragments")
    assert events == [["connected", "ocpp1.6"], ["message", '[2,"42","Reset",{"type":"Soft"}]'],
                      ["message", "pong seen"], ["closed", 4000, "maintenance", False]]
    assert observed("fragments close") == (4000, "")  # our close frame echoed the code


def test_a_message_over_the_limit_is_reported_with_its_head_the_link_kept_and_binary_closes_with_1003(servers):
    events = run_client("receive", servers["plain"] + "/big")
    assert events[1] == ["too big", 9000, "z" * 160, True]
    assert events[2] == ["then", "after the big one"]
    events = run_client("receive", servers["plain"] + "/binary")
    assert events[1][0] == "error" and "binary" in events[1][1] and observed("binary close") == 1003


def test_client_close_handshake_sends_its_code_and_then_refuses_to_send(servers):
    assert run_client("client_close", servers["plain"] + "/hold/client-close") == [
        ["connected", "ocpp1.6"], ["closed", False], ["send after close", 1006]]
    assert observed("/hold/client-close") == 1001


def test_a_reader_task_and_a_sender_task_share_the_link(servers):
    assert run_client("reader_and_writer", servers["plain"] + "/echo") == [
        ["connected", "ocpp1.6"], ["in order", True], ["pongs seen", True], ["reader closed", 1000],
        ["closed", False]]


def test_half_open_link_shows_as_recv_timeouts_and_a_stale_last_rx(servers):
    assert run_client("silent", servers["silent"] + "/cp") == [
        ["connected", "ocpp1.6"], ["recv", None], ["recv", None], ["quiet at least 400 ms", True],
        ["closed", False]]


def test_connect_gives_up_after_its_timeout_when_the_server_never_answers(servers):
    [refused] = run_client("refused", servers["mute"] + "/cp", timeout_ms=300)
    assert refused[0] == "refused" and "no WebSocket upgrade" in refused[2] and "within 300 ms" in refused[2]


def test_connect_names_the_server_when_nothing_listens():
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [refused] = run_client("refused", "ws://127.0.0.1:%d/cp" % port)
    assert refused[0] == "refused" and "cannot connect to 127.0.0.1:%d" % port in refused[2]
    assert refused[3] is False   # refused, but no certificate was wrong


def test_wss_with_the_board_ca_verifies_the_server_and_talks(servers):
    assert run_client("echo", servers["tls"] + "/echo", ca=servers["ca"]) == [
        ["connected", "ocpp1.6"], ["echo", "hello"], ["echo", 4000], ["echo", "70000"],
        ["closed", False]]


def test_wss_refuses_a_server_certificate_not_signed_by_the_board_ca(servers):
    [refused] = run_client("refused", servers["tls"] + "/echo", ca=servers["other_ca"])
    assert refused[0] == "refused" and "cannot connect" in refused[2], refused
    assert refused[3] is True   # the charge point's InvalidCentralSystemCertificate security event


def test_a_ca_that_is_not_a_certificate_is_named_as_the_problem(servers, tmp_path):
    (tmp_path / "garbage.der").write_bytes(b"not a certificate")
    [refused] = run_client("refused", servers["tls"] + "/echo", ca=str(tmp_path / "garbage.der"))
    assert refused[0] == "refused" and "CA certificate (ca_der, 17 bytes) does not load" in refused[2]
    assert refused[3] is False   # our own CA is broken, not the server's certificate


def test_wss_refuses_a_certificate_for_another_host_name(servers):
    [refused] = run_client("refused", servers["tls-wrong-name"] + "/echo", ca=servers["ca"])
    assert refused[0] == "refused" and "cannot connect" in refused[2], refused
    assert refused[3] is True, refused


@pytest.mark.parametrize("server", ["plain", "tls"])
def test_client_heap_is_small_and_flat_over_many_messages(servers, server):
    events = dict((e[0], e[1:]) for e in run_client("heap", servers[server] + "/echo", ca=servers["ca"]))
    first, most, last = events["held after messages"]
    assert most - first < 256 and last - first < 256  # nothing accumulates message after message
    assert "echo differs" not in events
    assert events["held after a large message"][0] - first < 1024   # not the 6 KB message's buffer
    # A connection (socket, TLS session as MicroPython sees it, parser, 512-byte read buffer) and
    # a 1 KB MeterValues in flight stay far inside the 40 KB the whole OCPP client may use.
    assert events["connect holds"][0] < (8 if server == "plain" else 16) * 1024
    assert first < (12 if server == "plain" else 20) * 1024


def test_the_name_is_looked_up_once_and_again_only_after_failed_connects_and_a_while(servers):
    # getaddrinfo of a name blocks the event loop for a DNS round trip on a board: while the
    # uplink is down it is not asked on every reconnect.
    events = run_client("lookups", servers["plain"] + "/echo/CP1")
    lookups = [e[1] for e in events if e[0] == "lookups"]
    assert lookups[0] == ["localhost"]
    assert len([e for e in events if e[0] == "refused"]) == 3
    assert lookups[1] == ["localhost"]                # failed connects kept the address
    assert lookups[2] == ["localhost", "localhost"]   # then looked up again, and connected


def test_security_profile_3_connects_with_the_charge_point_s_certificate_and_not_without(servers):
    events = run_client("echo", servers["tls-client"] + "/echo", ca=servers["ca"],
                        cert=servers["cp"], key=servers["cp_key"])
    assert events[0] == ["connected", "ocpp1.6"] and events[-1] == ["closed", False]
    for opts in ({}, {"cert": servers["stranger"], "key": servers["stranger_key"]}):
        [refused] = run_client("refused", servers["tls-client"] + "/echo", ca=servers["ca"], **opts)
        assert refused[0] == "refused" and "cannot connect" in refused[2], (opts, refused)


def test_a_client_certificate_that_does_not_load_is_named_and_its_key_never_shown(servers, tmp_path):
    (tmp_path / "junk.der").write_bytes(b"not a certificate")
    [refused] = run_client("refused", servers["tls-client"] + "/echo", ca=servers["ca"],
                           cert=str(tmp_path / "junk.der"), key=servers["cp_key"])
    assert refused[0] == "refused" and "certificate (ocpp_cert, 17 bytes) or its key (ocpp_key) does not load" in refused[2]
    key = open(servers["cp_key"], "rb").read()
    assert key.hex() not in refused[2] and repr(key)[2:40] not in refused[2]


def test_a_ca_file_that_is_empty_or_missing_refuses_rather_than_connecting_unchecked(servers, tmp_path):
    (tmp_path / "empty.der").write_bytes(b"")   # App._ca gives b"" for a missing ocpp_ca file
    [refused] = run_client("refused", servers["tls-wrong-name"] + "/echo", ca=str(tmp_path / "empty.der"))
    assert refused[0] == "refused" and "CA certificate (ca_der, 0 bytes) does not load" in refused[2], refused


def test_a_frame_read_with_the_start_of_the_next_is_handed_out_in_its_buffer_not_copied():
    # A 1.2 KB SendLocalList frame and the next frame's first bytes in one read: the frame keeps
    # the buffer they came in (a fragmented heap need not find a second 1.2 KB piece), the next
    # gets a buffer of its own.
    first, second = b"x" * 1200, b"y" * 300
    data = server_frame(OP_TEXT, first) + server_frame(OP_TEXT, second)
    p = FrameParser()
    p.feed(data[:1300])
    buffer = p._buf
    fin, op, payload = p.next_frame()
    assert (fin, op, bytes(payload)) == (True, OP_TEXT, first) and payload is buffer
    p.feed(data[1300:])
    assert [(f, o, bytes(b)) for f, o, b in p] == [(True, OP_TEXT, second)]


def test_the_tls_context_is_made_once_and_kept_while_the_ca_and_certificate_stay_the_same():
    from evse.ocpp import ws as wsmod
    from evse.ocpp import wsopen
    ca = trustme.CA()
    der = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
    other = ssl.PEM_cert_to_DER_cert(trustme.CA().cert_pem.bytes().decode())
    try:
        wsmod.reserve_tls()
        blank = wsmod.tls_kept[1]
        assert wsopen._context(der, None) is blank   # the one made at boot, configured
        assert wsopen._context(der, None) is blank   # a reconnect parses no certificate again
        new = wsopen._context(other, None)           # another CA: another context, never both trusted
        assert new is not blank and wsmod.tls_kept[1] is new and new.verify_mode == ssl.CERT_REQUIRED
        with pytest.raises(WsError, match="does not load"):
            wsopen._context(b"not a certificate", None)
        assert wsmod.tls_kept is None   # a context that failed is not kept
    finally:
        wsmod.tls_kept = None
