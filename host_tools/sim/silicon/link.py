# The emulated MCU's wires to the board around it: one loopback TCP connection from the
# MicroPython process to the supervisor's front end (host_tools/sim/frontend.py), whose address
# is EVSE_SIM_WORLD. Runs under MicroPython, inside the board's process, as the silicon would.
#
# Lines this side sends (no reply): the outputs, as the pins drive them
#   o PIN LEVEL [TICKS_US]    a GPIO output (or an input's mode change to output); TICKS_US is
#                             when the pin changed (time.ticks_us(): the host's monotonic clock)
#   p PIN FREQ_HZ DUTY16      a PWM output: frequency and the duty the hardware produces,
#                             in 1/65536 of the period (65536 = always high)
#   W TIMEOUT_MS ; w          the watchdog started ; fed
#   c ID SCK MOSI MISO HZ POLARITY PHASE BITS MSB
#                             SPI(ID) set up: the pins it drives (-1 none), its clock, mode, word
#                             size and bit order (MSB 1: most significant first); "c ID" alone:
#                             released (deinit)
#   X ID HEX                  SPI(ID) clocks these bytes out, what comes back is not wanted (write)
# Lines with a one-line reply:
#   H MCU                     hello: the reply names the input pins the board wires, in order,
#                             as d:PIN (digital), a:PIN (analog, mV) or p:PIN:PWM (the pilot's
#                             ADC, which sees the high or the low plateau by the phase of PWM)
#   s                         the inputs now: one number per d/a pin, two (high, low) per p pin
#   n                         "1" when the WLAN the board would join is up
#   T                         the 1-Wire bus: "ROMHEX:CELSIUS" per sensor ("ROMHEX:-" no answer)
#   x ID HEX                  SPI(ID) clocks these bytes out: the reply is the bytes clocked in
#                             meanwhile (HEX, as many). A chip select is a GPIO output ("o"): an
#                             SPI transaction on the wire is the "o CS 0", the x/X lines, "o CS 1".
# The input snapshot is kept for FRESH_US: a pilot burst of 64 ADC reads costs one round trip,
# and any output write makes the next read ask again (a mux select, a coil, a test input).
import os
import socket
import time

FRESH_US = 2000
CONNECT_TRIES = 3
_IPPROTO_TCP = 6  # Linux's numbers: the unix port's socket module names neither
_TCP_NODELAY = 1

_sock = None
_rx = None
_dropped = []  # links closed by the other end as they were taken (_close)
_order = []   # (kind, pin, pwm pin) per wired input, in the front end's order
digital = {}  # pin -> 0/1
analog = {}   # pin -> mV
pilot = {}    # ADC pin -> [high mV, low mV, PWM pin]
_stamp = [0, False]  # ticks_us of the last snapshot, and whether it is valid


def _connect():
    # Wires do not fail: a link the supervisor closed as it took it is opened again. It closes a
    # link it takes for a process that is no longer the board's (host_tools/sim/supervisor.py,
    # _hal_conn); once, a board's first link after an update's reset was closed so, and the
    # boot failed (ECONNRESET at the hello), why is not found yet.
    for attempt in range(CONNECT_TRIES):
        try:
            reply = _hello()
            break
        except OSError:
            _close()
            if attempt == CONNECT_TRIES - 1:
                raise
            time.sleep_ms(50)
    for token in reply.split():
        parts = token.split(b":")
        kind = parts[0].decode()
        pin = int(parts[1])
        _order.append((kind, pin, int(parts[2]) if kind == "p" else -1))
        if kind == "p":
            pilot[pin] = [0, 0, int(parts[2])]


def _hello():
    global _sock, _rx
    addr = os.getenv("EVSE_SIM_WORLD")
    if not addr:
        raise OSError("EVSE_SIM_WORLD is not set: the emulated MCU runs only inside the virtual board")
    host, port = addr.split(":")
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, int(port))[0][-1])
    # An output line and the input request after it must not wait for each other's ACK (Nagle):
    # a wire has no such delay.
    s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    _sock = s
    _rx = s.makefile("rb") if hasattr(s, "makefile") else s
    return ask(b"H %s\n" % os.getenv("EVSE_SIM_MCU"))


def _close():
    # Not closed, only let go, and kept: the socket's makefile is a FileIO on the same descriptor,
    # whose finaliser would close it again once collected, by then the next link's descriptor.
    global _sock, _rx
    if _sock is not None:
        _dropped.append((_sock, _rx))
    _sock = _rx = None


def send(line):
    if _sock is None:
        _connect()
    _sock.write(line)
    _stamp[1] = False


def ask(line):
    if _sock is None:
        _connect()
    _sock.write(line)
    reply = _rx.readline()
    if not reply:
        raise OSError("the virtual board's front end closed the link")
    if reply[:1] == b"!":
        raise OSError("front end: " + reply[1:].decode().strip())
    return reply


def refresh():
    """The inputs, at most FRESH_US old."""
    now = time.ticks_us()
    if _stamp[1] and time.ticks_diff(now, _stamp[0]) < FRESH_US:
        return
    values = ask(b"s\n").split()
    k = 0
    for kind, pin, _ in _order:
        if kind == "d":
            digital[pin] = int(values[k])
        elif kind == "a":
            analog[pin] = int(values[k])
        else:
            p = pilot[pin]
            p[0] = int(values[k])
            k += 1
            p[1] = int(values[k])
        k += 1
    _stamp[0] = time.ticks_us()
    _stamp[1] = True


def wired(pin):
    """How the board wires an input pin: "d", "a", "p", or None (nothing on it)."""
    if _sock is None:
        _connect()
    for kind, p, _ in _order:
        if p == pin:
            return kind
    return None
