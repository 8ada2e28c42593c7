# The cabinet's power modules on the CAN bus, whichever protocol they speak (`codec`:
# evse.can.infy or evse.can.winline): each module polled for its output and status, its
# setpoint (voltage, current, on/off) sent when it changes and refreshed, and a module that
# reports a fault or stops answering taken out of use, logged and reported until it is well again.
# The polls also keep the modules on: Infypower's turn their output off after 10 s without a
# message from the controller.
#
# Each step does a bounded amount: at most RX_PER_STEP answers read and TX_PER_STEP frames sent,
# so no step holds the loop however many modules the cabinet has. Every frame sent is answered,
# and an MCP2515 holds two frames received: no more than two go out between two reads.
# Turns alternate between setpoints and polls, so a cabinet whose limits move every step still
# polls each module; turning a module off goes first.
from micropython import const

from evse import ticks

POLL_MS = const(500)          # each module is asked for its output and status this often
REFRESH_MS = const(2000)      # an unchanged setpoint is sent again this often (a module that
                              # restarted forgets it)
SILENT_MS = const(3000)       # no answer for this long: the module is out (6 polls missed)
RX_PER_STEP = const(12)
TX_PER_STEP = const(2)        # the MCP2515's two receive buffers
QUIET_A = 1.0                 # a module putting out less than this carries no load
RESEND_A = 0.5                # a setpoint that moves by less than this waits for its refresh


def _fault(codec, flags):
    """The first fault the module's status flags name (the codec's FAULTS), or None."""
    for bit, name in codec.FAULTS:
        if flags & bit:
            return name
    return None


class Module:
    def __init__(self, address):
        self.address = address
        self.volts = 0.0         # what it reports
        self.amps = 0.0
        self.flags = 0           # its status flags as the protocol numbers them
        self.temp_c = None
        self.rated_w = None
        self.seen_ms = None      # its last answer
        self.silent = False
        self.fault = None        # the fault its flags name, while they name one
        self.on = False          # the setpoint
        self.set_v = 0.0
        self.set_a = 0.0
        self.sent_ms = None      # the setpoint last sent; None: to be sent
        self.sent_a = 0.0        # the current last sent (what a deaf module may still put out)
        self.silent_ms = None    # when it was found silent
        self.polled_ms = None
        self.read_ms = None      # its last output reading
        self.refused = 0         # answers with an error code

    def usable(self):
        return self.seen_ms is not None and not self.silent and self.fault is None

    def status(self):
        return {"address": self.address, "volts": round(self.volts, 1), "amps": round(self.amps, 1),
                "on": self.on, "set_v": self.set_v, "set_a": round(self.set_a, 2),
                "flags": self.flags, "fault": self.fault, "silent": self.silent, "temp_c": self.temp_c,
                "rated_w": self.rated_w}


class Modules:
    """`bus`: the CAN bus (evse.can.mcp2515's interface); `codec`: the modules' protocol;
    `addresses`: the modules' CAN addresses, in the board's module order (module 1 first).
    `changed(k, module)`: called when module k (0-based) goes out of use or comes back."""

    def __init__(self, bus, codec, addresses, log=print, changed=None, own_timeout_ms=10000):
        self.bus = bus
        self.own_timeout_ms = own_timeout_ms   # a module turns its output off after this long
        #                                        without the controller's messages
        self.codec = codec
        self.modules = [Module(a) for a in addresses]
        self._by_address = {}
        for k in range(len(addresses)):
            self._by_address[addresses[k]] = k
        self.log = log
        self.changed = changed
        self._next = 0           # the module whose turn it is to be polled or set
        self._queue = []         # frames waiting for a free transmit buffer
        self._set_turn = False   # the last turn sent a setpoint
        self._started_ms = None  # the first step: a module never heard of is silent SILENT_MS after
        self.unknown = 0         # answers from addresses not on the board

    def rebase(self, d):
        self._started_ms = ticks.back(self._started_ms, d)
        for m in self.modules:
            m.seen_ms = ticks.back(m.seen_ms, d)
            m.sent_ms = ticks.back(m.sent_ms, d)
            m.polled_ms = ticks.back(m.polled_ms, d)
            m.read_ms = ticks.back(m.read_ms, d)
            m.silent_ms = ticks.back(m.silent_ms, d)
        if hasattr(self.bus, "rebase"):
            self.bus.rebase(d)

    def usable(self, k):
        return self.modules[k].usable()

    def set(self, k, volts, amps):
        """Module k's output: `amps` at up to `volts`; below the protocol's least current: off."""
        m = self.modules[k]
        on = amps >= self.codec.MIN_SET_A and volts > 0
        if not on:
            volts = amps = 0.0
        # A change of RESEND_A or more goes out at once; a smaller one with the next refresh.
        urgent = on != m.on or volts != m.set_v or abs(amps - m.set_a) >= RESEND_A
        m.on = on
        m.set_v = volts
        m.set_a = amps
        if urgent:
            m.sent_ms = None

    def silent(self, k):
        return self.modules[k].silent

    def deaf_off(self, k, now_ms):
        """Silent module k is off even if it hears nothing of ours. Once found silent it is sent
        "off" at once: if it still hears, it turns off then; if it went deaf before that, its
        own timeout began before that too. So: its own timeout and a poll's margin after."""
        m = self.modules[k]
        return m.silent_ms is not None and now_ms - m.silent_ms >= self.own_timeout_ms + POLL_MS

    def stray_a(self, k):
        """The current module k may still put out without our say: a silent one's last setpoint."""
        m = self.modules[k]
        return m.sent_a if m.silent else 0.0

    def quiet(self, k):
        """Module k was told to turn off and has said since that it puts out no current: it may
        be switched off its dispenser without an arc."""
        m = self.modules[k]
        return (not m.on and m.sent_ms is not None and m.read_ms is not None and m.read_ms > m.sent_ms
                and m.amps < QUIET_A)

    def power_w(self, k):
        m = self.modules[k]
        return m.volts * m.amps if m.usable() else 0.0

    def step(self, now_ms):
        codec = self.codec
        for _ in range(RX_PER_STEP):
            frame = self.bus.recv()
            if frame is None:
                break
            said = codec.parse(frame[0], frame[1])
            if said is not None:
                self._take(now_ms, said)
        if self._started_ms is None:
            self._started_ms = now_ms
        count = len(self.modules)
        for k in range(count):
            m = self.modules[k]
            last = self._started_ms if m.seen_ms is None else m.seen_ms
            if not m.silent and now_ms - last >= SILENT_MS:
                m.silent = True
                m.silent_ms = now_ms
                m.sent_ms = None   # "off" at once (usable() is now False)
                self.log("can: module %d (address %d) %s: out of use"
                         % (k + 1, m.address, "does not answer" if m.seen_ms is None else "stopped answering"))
                if self.changed:
                    self.changed(k, m)
        queue = self._queue
        if not queue and count:
            self._turn(now_ms)
        sent = 0
        while queue and sent < TX_PER_STEP and self.bus.send(queue[0][0], queue[0][1]):
            queue.pop(0)
            sent += 1
        self.bus.poll(now_ms)

    def _turn(self, now_ms):
        # A module's turn: one turning off first, else setpoints and polls in turn.
        codec = self.codec
        count = len(self.modules)
        k = self._changed(not self._set_turn)
        if k is None:
            k = self._next
            self._next = (k + 1) % count
        m = self.modules[k]
        if m.sent_ms is None or now_ms - m.sent_ms >= REFRESH_MS:
            on = m.on and m.usable()
            self._queue.extend(codec.sets(m.address, on, m.set_v, m.set_a))
            m.sent_ms = now_ms
            if not m.silent:
                m.sent_a = m.set_a if on else 0.0
            m.polled_ms = None   # and its output asked at its next turn: the cabinet waits for it
            self._set_turn = True
        elif m.polled_ms is None or now_ms - m.polled_ms >= POLL_MS:
            self._queue.extend(codec.reads(m.address, m.rated_w is None and m.seen_ms is not None))
            m.polled_ms = now_ms
            self._set_turn = False
        else:
            self._set_turn = False

    def _changed(self, any_change):
        # A module whose setpoint waits: one to turn off always, another when `any_change`.
        found = None
        for k in range(len(self.modules)):
            m = self.modules[k]
            if m.sent_ms is None:
                if not (m.on and m.usable()):
                    return k
                if any_change and found is None:
                    found = k
        return found

    def all_off(self):
        """Every module off, broadcast, whatever the bus's state (the HAL's safe())."""
        for ident, data in self.codec.all_off():
            self.bus.send(ident, data)

    def _take(self, now_ms, said):
        address, field, value = said
        k = self._by_address.get(address)
        if k is None:
            self.unknown += 1
            return
        m = self.modules[k]
        was = m.usable()
        first = m.seen_ms is None
        m.seen_ms = now_ms
        if m.silent:
            m.silent = False
            m.silent_ms = None
            self.log("can: module %d (address %d) answers again" % (k + 1, address))
        if field == "vi":
            m.volts, m.amps = value
            m.read_ms = now_ms
        elif field == "v":
            m.volts = value
        elif field == "a":
            m.amps = value
            m.read_ms = now_ms
        elif field == "status":
            flags, _, temp = value
            m.flags = flags
            if temp is not None:
                m.temp_c = temp
            fault = _fault(self.codec, flags)
            if fault != m.fault:
                if fault is not None:
                    self.log("can: module %d (address %d): %s (%s): out of use"
                             % (k + 1, address, fault, self.codec.vendor_code(flags)))
                else:
                    self.log("can: module %d (address %d): its fault cleared" % (k + 1, address))
                m.fault = fault
                m.sent_ms = None   # a module back from a fault gets its setpoint again
        elif field == "ratings":
            m.rated_w = value[3]
        elif field == "refused":
            m.refused += 1
        if first:
            self.log("can: module %d (address %d) found" % (k + 1, address))
            m.sent_ms = None
        if was != m.usable() and self.changed:
            self.changed(k, m)

    def faulty(self):
        """(module number, vendor error code, what) of the first module out of use, or None."""
        for k in range(len(self.modules)):
            m = self.modules[k]
            if m.fault is not None:
                return k + 1, self.codec.vendor_code(m.flags), m.fault
            if m.silent:
                return k + 1, "%s:silent" % self.codec.NAME, "not answering"
        return None

    def status(self):
        return [m.status() for m in self.modules]
