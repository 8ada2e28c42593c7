# Modbus RTU master for the meters on the RS-485 bus (Modbus over Serial Line V1.02; Modbus
# Application Protocol V1.1b3). Frame building and checking are pure and import under CPython;
# `Master` runs a transaction as an asyncio coroutine that polls a non-blocking stream (a
# machine.UART, or the virtual board's bus), so the firmware's other tasks keep running.
#
# The stream: write(buf) sends a whole frame; read() returns the bytes received so far or None
# (readinto(buf) -> count or None, where the stream has it, is used instead: it allocates nothing).
import asyncio
import struct
import time

from micropython import const

READ_COILS = const(0x01)
READ_DISCRETE = const(0x02)
READ_HOLDING = const(0x03)
READ_INPUT = const(0x04)
WRITE_COILS = const(0x0F)
WRITE_MULTIPLE = const(0x10)
MAX_READ = const(125)  # registers per read request, Application Protocol 6.3 / 6.4
MAX_READ_BITS = const(2000)  # coils or inputs per read request, 6.1 / 6.2
MAX_WRITE_BITS = const(1968)  # coils per write request, 6.11
MAX_WRITE = const(123)  # registers per write request, Application Protocol 6.12
MAX_FRAME = const(256)  # bytes of an RTU frame, Serial Line 2.5.1
_MIN_FRAME = const(5)  # an exception response: slave, function, code, CRC
_RETRY_BUSY = const(6)  # "server device busy" asks the master to try again later
_POLL_MS = const(2)  # how often the receive loop looks at the stream

# Exception codes, Application Protocol 7.
EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # CPython (the tests): a plain monotonic millisecond clock
    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b

if hasattr(asyncio, "sleep_ms"):
    _sleep_ms = asyncio.sleep_ms
else:
    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


class ModbusError(Exception):
    """A transaction failed; the message names the slave. Subclasses say how."""


class FrameError(ModbusError):
    """What came back is not a valid answer to the request (noise, a collision, another slave)."""


class Timeout(ModbusError):
    """No complete answer within the response timeout."""


class ExceptionResponse(ModbusError):
    """The slave understood and refused: `code` is the Modbus exception code."""

    def __init__(self, slave, function, code):
        super().__init__("slave %d refused function 0x%02x: exception %02d (%s)"
                         % (slave, function, code, EXCEPTION_NAMES.get(code, "unknown code")))
        self.slave = slave
        self.function = function
        self.code = code


# CRC-16/MODBUS (Serial Line 6.2.2): reflected polynomial 0xA001, initial value 0xFFFF, sent
# low byte first. A 16-entry table: two lookups per byte, 32 bytes of table instead of 512.
_CRC_NIBBLE = (0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
               0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400)


def crc16(buf, end=-1):
    """CRC-16/MODBUS of buf[:end] (all of buf when end < 0)."""
    if end < 0:
        end = len(buf)
    crc = 0xFFFF
    table = _CRC_NIBBLE
    for i in range(end):
        crc ^= buf[i]
        crc = (crc >> 4) ^ table[crc & 15]
        crc = (crc >> 4) ^ table[crc & 15]
    return crc


def seal(frame):
    crc = crc16(frame, len(frame) - 2)
    frame[-2] = crc & 0xFF
    frame[-1] = crc >> 8
    return frame


def check_slave(slave):
    if not isinstance(slave, int) or not 1 <= slave <= 247:
        raise ValueError("Modbus slave address must be 1..247, not %r" % (slave,))


def read_request(slave, function, address, count):
    """The 8-byte request to read `count` registers (function 0x03 or 0x04) or bits (coils 0x01,
    discrete inputs 0x02) from `address`."""
    check_slave(slave)
    if function < READ_COILS or function > READ_INPUT:
        raise ValueError("Modbus read function must be 0x01 (coils), 0x02 (discrete inputs), 0x03 (holding) or "
                         "0x04 (input), not %r" % (function,))
    most = MAX_READ_BITS if function < READ_HOLDING else MAX_READ
    if not isinstance(count, int) or not 1 <= count <= most:
        raise ValueError("Modbus read of %r %s: allowed 1..%d"
                         % (count, "bits" if function < READ_HOLDING else "registers", most))
    if not isinstance(address, int) or not 0 <= address <= 0x10000 - count:
        raise ValueError("Modbus register address %r (+%d) is outside 0..0xFFFF" % (address, count))
    frame = bytearray(8)
    struct.pack_into(">BBHH", frame, 0, slave, function, address, count)
    return seal(frame)


def check_write(slave, address, count, most, what):
    check_slave(slave)
    if not 1 <= count <= most:
        raise ValueError("Modbus write of %d %ss: allowed 1..%d" % (count, what, most))
    if not isinstance(address, int) or not 0 <= address <= 0x10000 - count:
        raise ValueError("Modbus %s address %r (+%d) is outside 0..0xFFFF" % (what, address, count))
    return count


def write_request(slave, address, values):
    """The request that writes `values` (16-bit each) to holding registers from `address` (0x10)."""
    count = check_write(slave, address, len(values), MAX_WRITE, "register")
    frame = bytearray(9 + 2 * count)
    struct.pack_into(">BBHHB", frame, 0, slave, WRITE_MULTIPLE, address, count, 2 * count)
    for i in range(count):
        value = values[i]
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueError("Modbus register value %r at 0x%04x is not 0..0xFFFF" % (value, address + i))
        struct.pack_into(">H", frame, 7 + 2 * i, value)
    return seal(frame)


def response_length(request):
    """Bytes of the normal answer to `request` (an exception answer has 5)."""
    function = request[1]
    if function == WRITE_MULTIPLE or function == WRITE_COILS:
        return 8
    count = (request[4] << 8) | request[5]
    if function < READ_HOLDING:
        return 5 + (count + 7) // 8
    return 5 + 2 * count


def check_response(request, frame, n=-1):
    """Check frame[:n] as the answer to `request`; return the offset of its register data
    (3 for reads, 0 for a write's echo). Raises FrameError for anything that is not exactly the
    answer (short, long, bad CRC, junk before it, another slave or function, wrong byte count
    or echo) and ExceptionResponse when the slave refused."""
    if n < 0:
        n = len(frame)
    slave = request[0]
    function = request[1]
    expected = response_length(request)
    if n < _MIN_FRAME:
        raise FrameError("slave %d: short frame of %d bytes (function 0x%02x answers in %d)"
                         % (slave, n, function, expected))
    if crc16(frame, n - 2) != frame[n - 2] | (frame[n - 1] << 8):
        raise FrameError("slave %d: CRC mismatch in a frame of %d bytes (expected %d): noise on the line?"
                         % (slave, n, expected))
    if frame[0] != slave:
        raise FrameError("slave %d: the answer comes from address %d" % (slave, frame[0]))
    if frame[1] == function | 0x80:
        if n != _MIN_FRAME:
            raise FrameError("slave %d: exception frame of %d bytes, not 5" % (slave, n))
        raise ExceptionResponse(slave, function, frame[2])
    if frame[1] != function:
        raise FrameError("slave %d: answer to function 0x%02x, asked 0x%02x" % (slave, frame[1], function))
    if n != expected:
        raise FrameError("slave %d: frame of %d bytes, expected %d" % (slave, n, expected))
    if function == WRITE_MULTIPLE or function == WRITE_COILS:
        for i in range(2, 6):  # the echo of the start address and the register (coil) count
            if frame[i] != request[i]:
                raise FrameError("slave %d: write echo does not match the request" % slave)
        return 0
    if frame[2] != n - 5:
        raise FrameError("slave %d: byte count %d in a frame of %d bytes" % (slave, frame[2], n))
    return 3


# ---- register decoding: `regs` holds register data as sent (big-endian words), `reg` is the
# register offset into it. Two-register values have the high word first (Eastron, Acrel).

def float32(regs, reg):
    return struct.unpack_from(">f", regs, 2 * reg)[0]


def uint16(regs, reg):
    return (regs[2 * reg] << 8) | regs[2 * reg + 1]


def int16(regs, reg):
    value = uint16(regs, reg)
    return value - 0x10000 if value & 0x8000 else value


def uint32(regs, reg, swapped=False):
    """`swapped`: low word first (some meters send 32-bit values that way)."""
    high, low = uint16(regs, reg), uint16(regs, reg + 1)
    if swapped:
        high, low = low, high
    return (high << 16) | low


def int32(regs, reg, swapped=False):
    value = uint32(regs, reg, swapped)
    return value - 0x100000000 if value & 0x80000000 else value


class Master:
    """One RTU master on one half-duplex bus. Transactions are serialized by a lock, so the guns'
    meter tasks can share the bus. `timeout_ms`: how long a slave may take to start answering;
    `retries`: further attempts after a timeout, a garbled answer or a busy slave.
    `ticks_ms`/`sleep_ms` replace the clock (tests)."""

    def __init__(self, stream, baudrate=9600, timeout_ms=300, retries=2, ticks_ms=None, sleep_ms=None):
        if not isinstance(baudrate, int) or not 1200 <= baudrate <= 115200:
            raise ValueError("Modbus baudrate must be 1200..115200, not %r" % (baudrate,))
        self.stream = stream
        self.timeout_ms = timeout_ms
        self.retries = retries
        # t3.5, the silence that ends a frame (Serial Line 2.5.1.1): 3.5 characters of 11 bits,
        # a fixed 1.75 ms above 19200 baud. Rounded up to whole milliseconds of the clock.
        self.silence_ms = 2 if baudrate > 19200 else (38500 + baudrate - 1) // baudrate
        self._char_ms = 11000 / baudrate
        self._ticks_ms = ticks_ms or _ticks_ms
        self._sleep_ms = sleep_ms or _sleep_ms
        self._rx = bytearray(MAX_FRAME)
        self._rx_view = memoryview(self._rx)
        self._readinto = getattr(stream, "readinto", None)
        self._lock = asyncio.Lock()
        self._last_ms = self._ticks_ms()
        # Counters for the console: how healthy the bus is.
        self.requests = 0
        self.timeouts = 0
        self.bad_frames = 0
        self.refusals = 0
        # The length of the last frame received, kept in the receive buffer with it until the
        # next transaction: after a FrameError, what came instead of the answer (frame()).
        self.received = 0

    def frame(self):
        """The last frame received (a view into the receive buffer, valid until the next
        transaction)."""
        return self._rx_view[:self.received]

    async def read_input(self, slave, address, count, into=None):
        """Input registers (0x04) as bytes, two per register; into: a buffer to fill instead."""
        return await self.read(read_request(slave, READ_INPUT, address, count), into)

    async def read_holding(self, slave, address, count, into=None):
        """Holding registers (0x03) as bytes, two per register; into: a buffer to fill instead."""
        return await self.read(read_request(slave, READ_HOLDING, address, count), into)

    async def write_registers(self, slave, address, values):
        """Write holding registers (0x10); returns once the slave has confirmed."""
        await self.transact(write_request(slave, address, values))

    async def read(self, request, into=None):
        """The registers (or bits, packed as the slave sends them: evse.matrix.bit reads them) that
        `request` (a read_request frame, which a driver polling the same registers builds once)
        returns, as bytes; into: a buffer to fill instead."""
        n = await self.transact(request)
        size = n - 5
        if into is None:
            return bytes(memoryview(self._rx)[3:3 + size])
        if len(into) < size:
            raise ValueError("buffer of %d bytes for %d bytes of registers" % (len(into), size))
        into[:size] = memoryview(self._rx)[3:3 + size]
        return into

    async def transact(self, request):
        """Send `request` until it gets a valid answer; returns the answer's length (the answer
        is in the master's receive buffer until the next transaction)."""
        # acquire/release rather than `async with`: two coroutine objects fewer per transaction.
        await self._lock.acquire()
        try:
            error = None
            for _ in range(1 + self.retries):
                try:
                    return await self._attempt(request)
                except ExceptionResponse as e:
                    self.refusals += 1
                    if e.code != _RETRY_BUSY:
                        raise
                    error = e
                except Timeout as e:
                    self.timeouts += 1
                    error = e
                except FrameError as e:
                    self.bad_frames += 1
                    error = e
            raise error
        finally:
            self._lock.release()

    async def _attempt(self, request):
        rx = self._rx
        # The bus must be quiet for t3.5 before a frame; whatever is still in the receiver
        # (the late answer to an earlier request, noise) is not the answer to this one.
        drain_ms = self._ticks_ms()
        while True:
            while self._discard():
                self._last_ms = self._ticks_ms()
            now = self._ticks_ms()
            wait = self.silence_ms - _ticks_diff(now, self._last_ms)
            if wait <= 0:
                break
            if _ticks_diff(now, drain_ms) > self.timeout_ms:
                raise FrameError("slave %d: the line never goes quiet (a stuck transmitter?)" % request[0])
            await self._sleep_ms(wait)
        self.stream.write(request)
        self.requests += 1
        sent_ms = self._ticks_ms()
        self._last_ms = sent_ms
        expected = response_length(request)
        error_function = request[1] | 0x80
        # A babbling line cannot keep us here: the whole answer must be in within this.
        limit_ms = self.timeout_ms + int(self._char_ms * MAX_FRAME) + self.silence_ms
        n = 0
        while True:
            got = self._receive(request, n)
            now = self._ticks_ms()
            if got:
                n += got
                self._last_ms = now
                # Complete as soon as the length says so; no need to wait for the silence.
                if n >= expected or (n >= _MIN_FRAME and rx[1] == error_function):
                    return self._checked(request, n)
            elif n and _ticks_diff(now, self._last_ms) >= self.silence_ms:
                return self._checked(request, n)  # the silence ended a short frame
            elif not n and _ticks_diff(now, sent_ms) >= self.timeout_ms:
                raise Timeout("slave %d: no answer within %d ms" % (request[0], self.timeout_ms))
            if _ticks_diff(now, sent_ms) >= limit_ms:
                raise Timeout("slave %d: answer incomplete after %d ms" % (request[0], limit_ms))
            await self._sleep_ms(_POLL_MS)

    # The stream's readinto() fills the receive buffer in place; read() (the minimum a stream
    # must have) returns a new bytes object, and on MicroPython allocates even when empty.
    def _discard(self):
        """Throw away what the receiver holds; whether there was anything."""
        if self._readinto is not None:
            return bool(self._readinto(self._rx_view))
        return bool(self.stream.read())

    def _receive(self, request, n):
        """Append what has come in to the frame in rx[:n]; the number of new bytes."""
        if self._readinto is not None:
            # The whole buffer allocates nothing; a slice (one small object) only mid-frame.
            return self._readinto(self._rx_view if n == 0 else self._rx_view[n:]) or 0
        chunk = self.stream.read()
        if not chunk:
            return 0
        if len(chunk) > MAX_FRAME - n:
            raise FrameError("slave %d: answer longer than %d bytes" % (request[0], MAX_FRAME))
        self._rx[n:n + len(chunk)] = chunk
        return len(chunk)

    def _checked(self, request, n):
        self.received = n
        check_response(request, self._rx, n)
        return n
