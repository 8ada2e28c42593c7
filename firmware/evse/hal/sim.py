# The virtual board's hardware: every call is one request to the world in the supervisor,
# over a loopback socket, at the level of the HAL (one pilot sample = both plateaus).
import binascii
import os
import socket
import time

from evse.hal import Base


class Uart:
    """A UART on the virtual board's RS-485 bus: a loopback TCP connection to the supervisor's
    bus server carrying the raw bytes (EVSE_SIM_UART<n>). Reads never block and return None when
    nothing came in, as machine.UART.read() does; the baudrate only matters on real wires."""

    def __init__(self, addr):
        self._addr = addr
        self._sock = None
        self._connect()

    def _connect(self):
        host, port = self._addr.split(":")
        sock = socket.socket()
        sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
        sock.setblocking(False)
        self._sock = sock

    def _gone(self):
        # The server closed the link (the supervisor is gone, or a site's line dropped this
        # board's link): a wire does not go away, so a read connects again; until it can, the
        # line is as quiet as a dead meter and what is written is lost.
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        try:
            self._connect()
        except OSError:
            pass
        return None

    def write(self, buf):
        if self._sock is None:
            return len(buf)
        view = memoryview(buf)
        sent = 0
        while sent < len(view):
            n = self._sock.write(view[sent:])
            if n:
                sent += n
            else:
                time.sleep_ms(1)  # the bus server is behind: it reads every few ms
        return sent

    def read(self, nbytes=-1):
        if self._sock is None:
            return self._gone()
        data = self._sock.read() if nbytes < 0 else self._sock.read(nbytes)
        if data == b"":
            return self._gone()
        return data

    def readinto(self, buf):
        if self._sock is None:
            return self._gone()
        n = self._sock.readinto(buf)
        if n == 0:
            return self._gone()
        return n

    def deinit(self):
        if self._sock is not None:
            self._sock.close()


class CanBus:
    """The virtual board's CAN bus (EVSE_SIM_CAN<n>): a loopback TCP connection to the supervisor,
    a frame a line each way ("IDHEX DATAHEX"). The same interface as evse/can/mcp2515.py's: the
    HAL gives frames directly, no controller chip in between."""

    def __init__(self, addr):
        host, port = addr.split(":")
        self._sock = socket.socket()
        self._sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
        self._sock.setblocking(False)
        self._rx = b""
        self.sent = 0
        self.received = 0

    def send(self, can_id, data):
        line = b"%08x %s\n" % (can_id, binascii.hexlify(data))
        try:
            self._sock.write(line)   # a few dozen bytes into an empty socket buffer: whole
        except OSError:
            return False
        self.sent += 1
        return True

    def recv(self):
        nl = self._rx.find(b"\n")
        if nl < 0:
            try:
                more = self._sock.read(512)
            except OSError:
                more = None
            if more:
                self._rx += more
                nl = self._rx.find(b"\n")
            if nl < 0:
                return None
        line, self._rx = self._rx[:nl], self._rx[nl + 1:]
        parts = line.split()
        self.received += 1
        return int(parts[0], 16), binascii.unhexlify(parts[1]) if len(parts) > 1 else b""

    def poll(self, now_ms):
        pass

    def stats(self):
        return {"state": "active", "sent": self.sent, "received": self.received}

    def deinit(self):
        self._sock.close()


class Hal(Base):
    def __init__(self, board):
        Base.__init__(self, board)
        addr = os.getenv("EVSE_SIM_WORLD")
        if not addr:
            raise OSError("EVSE_SIM_WORLD is not set: the sim HAL runs only inside the virtual board")
        host, port = addr.split(":")
        self._sock = socket.socket()
        self._sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
        self._rx = self._sock.makefile("rb") if hasattr(self._sock, "makefile") else self._sock

    def _ask(self, line):
        self._sock.write(line)
        reply = self._rx.readline()
        if not reply:
            raise OSError("virtual board world closed the link")
        if reply[:1] == b"!":
            raise OSError("world: " + reply[1:].decode().strip())
        return reply

    def set_pilot(self, gun, duty_pm):
        self._ask(b"P %d %d\n" % (gun, duty_pm))

    def sample_pilot(self, gun):
        r = self._ask(b"S %d\n" % gun).split()
        return int(r[0]), int(r[1])

    def pilot_adc_mv(self, gun):
        return int(self._ask(b"V %d\n" % gun))

    def proximity_ohms(self, gun):
        r = self._ask(b"X %d\n" % gun).strip()
        return None if r == b"-" else int(r)

    def set_contactor(self, gun, closed):
        self._ask(b"K %d %d\n" % (gun, 1 if closed else 0))

    def set_phases(self, gun, phases):
        self._ask(b"Y %d %d\n" % (gun, phases))

    def contactor_feedback(self, gun):
        return self._ask(b"F %d\n" % gun)[0] == 49  # b"1"

    def estop(self):
        return self._ask(b"Q\n")[0] == 49

    def rcd_tripped(self, gun):
        return self._ask(b"R %d\n" % gun)[0] == 49

    def rcd_test_start(self, gun):
        self._ask(b"T %d\n" % gun)

    def rcd_test_result(self, gun):
        r = self._ask(b"t %d\n" % gun)[0]
        return None if r == 45 else r == 49  # b"-" running, b"1" passed, b"0" failed

    def rcd_reset(self, gun):
        self._ask(b"Z %d\n" % gun)

    def temperature_c(self, gun):
        return float(self._ask(b"C %d\n" % gun))

    def current_a(self, gun):
        return float(self._ask(b"I %d\n" % gun))

    # DC power stage (boards of kind "dc")
    def ev_demand(self, gun):
        r = self._ask(b"E %d\n" % gun).split()
        return None if r[0] == b"-" else (int(r[0]), float(r[1]))

    # The IEC 61851-23 sequence (a cabinet on CAN): the EV's communication controller, the
    # voltage at the gun, the insulation monitor.
    def ev_comm(self, gun, ev):
        r = self._ask(b"G %d\n" % gun).split()
        if r[0] == b"-":
            ev.talking = False
            ev.phase = None
            return False
        ev.talking = True
        ev.phase = r[0].decode()
        ev.battery_v, ev.max_v, ev.target_v = float(r[1]), float(r[2]), float(r[3])
        ev.target_a, ev.max_a, ev.soc = float(r[4]), float(r[5]), float(r[6])
        return True

    def ev_report(self, gun, state, isolation):
        self._ask(b"H %d %s %s\n" % (gun, state.encode(), (isolation or "-").encode()))

    def dc_voltage(self, gun):
        return float(self._ask(b"U %d\n" % gun))

    def imd_enable(self, gun, on):
        self._ask(b"O %d %d\n" % (gun, 1 if on else 0))

    def imd_read(self, gun, m):
        r = self._ask(b"J %d\n" % gun).split()
        m.iso_ohm = None if r[0] == b"-" else float(r[0])
        m.self_test = None if r[1] == b"-" else r[1] == b"1"

    def set_dc_power(self, gun, max_w):
        self._ask(b"L %d %d\n" % (gun, int(max_w)))

    def dc_power(self, gun):
        return float(self._ask(b"D %d\n" % gun))

    def set_module(self, module, gun):
        self._ask(b"M %d %d\n" % (module, gun))

    def module_feedback(self, module):
        return int(self._ask(b"m %d\n" % module))

    def can(self, index):
        addr = os.getenv("EVSE_SIM_CAN%d" % index)
        if not addr:
            raise OSError('the virtual board has no CAN bus %d: give the board file a "cabinet": {"can": ...}' % index)
        return CanBus(addr)

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def watchdog_start(self, timeout_ms):
        self._ask(b"W %d\n" % timeout_ms)

    def watchdog_feed(self):
        self._ask(b"w\n")

    def uart(self, index, baudrate, parity=None):   # a loopback socket: no bits, no parity
        addr = os.getenv("EVSE_SIM_UART%d" % index)
        if not addr:
            raise OSError('the virtual board has no UART %d: give a gun of the board file a '
                          '"meter" or an "imd" with "uart": %d' % (index, index))
        return Uart(addr)

    def network_up(self):
        return self._ask(b"N\n")[0] == 49

    def reset(self, hard):
        import machine  # the virtual board's ROM gives the unix port a board's resets
        if hard:
            machine.reset()
        machine.soft_reset()

    def rfid_read(self):
        r = self._ask(b"A\n").split()
        return None if r[0] == b"-" else (int(r[0]), r[1].decode())

    def deinit(self):
        try:
            self._sock.close()
        except Exception:
            pass
