# Host names looked up once and the address reused, by the websocket and by HTTP (firmware
# downloads, diagnostics uploads): on a board getaddrinfo blocks the whole loop for a DNS round
# trip, seconds when the uplink is down.
import socket
import time

# Looked up once per boot and the address reused; after LOOKUP_AGAIN_FAILS connects in a
# row failed, looked up again, at most every LOOKUP_AGAIN_MS (the server may have moved; while a
# rural site's uplink is down, every lookup would block the loop until the DNS timed out).
LOOKUP_AGAIN_FAILS = 3
LOOKUP_AGAIN_MS = 600000
_addresses = {}   # name -> [address, connects failed in a row, ticks_ms of the lookup]
_getaddrinfo = socket.getaddrinfo   # through a name the tests can replace


def address(host, port):
    """host's address as text: the name's, looked up once and then reused, or host itself when it
    is an address already."""
    entry = _addresses.get(host)
    now = time.ticks_ms()
    if entry is not None and (entry[1] < LOOKUP_AGAIN_FAILS or time.ticks_diff(now, entry[2]) < LOOKUP_AGAIN_MS):
        return entry[0]
    if _is_address(host):
        return host
    ip = _sockaddr_ip(_getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1])
    _addresses[host] = [ip, 0, now]
    return ip


async def open_connection(host, port, ctx=None):
    """asyncio.open_connection to host's address (address()): its own getaddrinfo of a name
    would block the loop for a DNS round trip (MicroPython), of an address not. TLS (`ctx`)
    checks the certificate against the name."""
    import asyncio   # here: address() alone needs no asyncio
    return await asyncio.open_connection(address(host, port), port, ctx, host if ctx else None)


def connected(host, ok):
    """A connect to host's address worked or failed: counts the failures in a row."""
    entry = _addresses.get(host)
    if entry is not None:
        entry[1] = 0 if ok else entry[1] + 1


def _is_address(host):
    if ":" in host:   # IPv6
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def _sockaddr_ip(sockaddr):
    # lwIP ports (rp2, esp32) give ("a.b.c.d", port); the unix port the raw struct sockaddr.
    if isinstance(sockaddr, tuple):
        return sockaddr[0]
    family = sockaddr[0] | sockaddr[1] << 8
    if family == socket.AF_INET:
        return "%d.%d.%d.%d" % (sockaddr[4], sockaddr[5], sockaddr[6], sockaddr[7])
    raw = sockaddr[8:24]   # sockaddr_in6
    return ":".join("%x" % (raw[i] << 8 | raw[i + 1]) for i in range(0, 16, 2))
