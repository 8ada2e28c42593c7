# Runs under the real MicroPython: one scenario of evse.ocpp.ws against a server the test started.
# usage: micropython ws_client.py SCENARIO URL [OPTIONS_JSON]; prints one JSON line per event.
import asyncio
import gc
import json
import sys
import time

from evse.ocpp.ws import WebSocket, WsClosed, WsError, WsTooBig


def say(*event):
    print(json.dumps(list(event)))


async def connect(opts):
    ws = WebSocket()
    ca_der = None
    if opts.get("ca"):
        with open(opts["ca"], "rb") as f:
            ca_der = f.read()
    auth = opts.get("auth")
    client = None
    if opts.get("cert"):
        with open(opts["cert"], "rb") as f:
            cert = f.read()
        with open(opts["key"], "rb") as f:
            client = (cert, f.read())
    await ws.connect(URL, subprotocol=opts.get("subprotocol", "ocpp1.6"),
                     basic_auth=tuple(auth) if auth else None, ca_der=ca_der,
                     timeout_ms=opts.get("timeout_ms", 3000), client_cert=client)
    say("connected", ws.subprotocol)
    if opts.get("held"):   # the handshake's code goes once connected (evse.ocpp.wsopen)
        say("handshake code held", "evse.ocpp.wsopen" in sys.modules)
    return ws


async def echo(opts):
    ws = await connect(opts)
    # 7-bit, 16-bit and (the server answers a long one with its length) 64-bit frame lengths.
    for text in ("hello", "é" * 2000, "y" * 70000):
        await ws.send(text)
        got = await ws.recv(timeout_ms=3000)
        say("echo", got if len(got) < 20 else len(got.encode()))
    await ws.close()
    say("closed", ws.connected)


async def receive(opts):
    """Print every message until the server closes or goes quiet."""
    ws = await connect(opts)
    try:
        while True:
            got = await ws.recv(timeout_ms=opts.get("recv_ms", 3000))
            if got is None:
                say("timeout")
                break
            say("message", got)
    except WsTooBig as e:
        say("too big", e.size, bytes(e.head).decode(), ws.connected)
        say("then", await ws.recv(timeout_ms=opts.get("recv_ms", 3000)))
    except WsClosed as e:
        say("closed", e.code, e.reason, ws.connected)
    except WsError as e:
        say("error", e.reason, e.close_code, ws.connected)


async def client_close(opts):
    ws = await connect(opts)
    await ws.close(1001)
    say("closed", ws.connected)
    try:
        await ws.send("after close")
    except WsClosed as e:
        say("send after close", e.code)


async def refused(opts):
    try:
        ws = await connect(opts)
        await ws.close()
    except WsError as e:
        say("refused", e.status, e.reason, e.bad_certificate)


async def silent(opts):
    """A server that completed the upgrade and then hears nothing: the pong never comes."""
    ws = await connect(opts)
    say("recv", await ws.recv(timeout_ms=150))
    await ws.ping(b"are you there")
    say("recv", await ws.recv(timeout_ms=300))
    quiet_ms = time.ticks_diff(time.ticks_ms(), ws.last_rx_ms)
    say("quiet at least 400 ms", quiet_ms >= 400)
    await ws.close(timeout_ms=200)
    say("closed", ws.connected)


async def reader_and_writer(opts):
    """One task reads while another sends and pings, the way the charge point runs."""
    ws = await connect(opts)
    got = []

    async def reader():
        try:
            while True:
                msg = await ws.recv()
                got.append(msg)
        except WsClosed as e:
            say("reader closed", e.code)

    task = asyncio.create_task(reader())
    for i in range(20):
        await ws.send("msg %d" % i)
        await ws.ping()
    before = ws.last_rx_ms
    while len(got) < 20:
        await asyncio.sleep_ms(10)
    say("in order", got == ["msg %d" % i for i in range(20)])
    say("pongs seen", time.ticks_diff(ws.last_rx_ms, before) >= 0)
    await ws.close()
    await task
    say("closed", ws.connected)


async def large_message(ws):
    text = '[2,"big","DataTransfer",{"vendorId":"x","data":"%s"}]' % ("z" * 6000)
    await ws.send(text)
    if await ws.recv(timeout_ms=3000) != text:
        say("echo differs", "big")


async def heap(opts):
    """Live heap the client holds: after connecting, and after each of many OCPP-sized messages."""
    gc.collect()
    before = gc.mem_alloc()
    ws = await connect(opts)
    gc.collect()
    say("connect holds", gc.mem_alloc() - before)
    values = ",".join(['{"value":"1234.5","measurand":"Energy.Active.Import.Register"}'] * 16)
    held = [0] * 40
    for i in range(40):
        text = '[2,"%d","MeterValues",{"connectorId":1,"meterValue":[{"sampledValue":[%s]}]}]' % (i, values)
        await ws.send(text)
        got = await ws.recv(timeout_ms=3000)
        if got != text:
            say("echo differs", i)
        got = text = None
        gc.collect()
        held[i] = gc.mem_alloc() - before
    say("message bytes", len(values) + 60)
    say("held after messages", held[0], max(held[1:]), held[-1])
    # A large message (a SendLocalList's size) leaves no buffer of its size behind. (In a
    # function of its own: a coroutine's frame keeps what its stack held, as long as it runs.)
    await large_message(ws)
    gc.collect()
    say("held after a large message", gc.mem_alloc() - before)
    await ws.close()


async def lookups(opts):
    """How often the name is looked up: over two connections; after failed connects (the address
    kept, as while an uplink is down); once enough failed and the lookup is old enough."""
    from evse.ocpp import names as wsmod   # the websocket's lookups go through it
    asked = []
    real = wsmod._getaddrinfo

    def counting(host, *args):
        asked.append(host)
        return real(host, *args)
    wsmod._getaddrinfo = counting
    for _ in range(2):
        ws = await connect(opts)
        await ws.close()
    say("lookups", asked)
    host = URL.split("//")[1].split(":")[0]
    wsmod._addresses[host][0] = "127.0.0.2"   # as if the server had moved: that address refuses
    for _ in range(wsmod.LOOKUP_AGAIN_FAILS):
        try:
            await connect(dict(opts, timeout_ms=1000))
        except WsError as e:
            say("refused", e.reason[:40])
    say("lookups", asked)
    wsmod.LOOKUP_AGAIN_MS = 0   # the lookup is old enough now
    ws = await connect(opts)
    await ws.close()
    say("lookups", asked)


SCENARIOS = {"lookups": lookups, "echo": echo, "receive": receive, "client_close": client_close, "refused": refused,
             "silent": silent, "reader_and_writer": reader_and_writer, "heap": heap}

URL = sys.argv[2]
asyncio.run(SCENARIOS[sys.argv[1]](json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
say("done")
