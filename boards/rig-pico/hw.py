# rig-pico's hardware on a Raspberry Pi Pico (RP2040): the switches of the EV-side pilot
# resistors, the pilot comparator and divider, the contactor feedback opto, the mains relay.
# Pins and calibration come from wiring.py; rig.py says what to switch and when.
# The comparator and the feedback opto are timed in hard interrupts: each edge's ticks_us goes
# into a ring, and the main loop drains the rings into the duty meter and the debouncer, so an
# edge keeps its time even while the loop writes a long reply.
from array import array

from machine import ADC, Pin
from micropython import const
from time import sleep_us, ticks_add, ticks_diff, ticks_us

_RING = const(256)  # edges kept per input between two drains: 128 ms of a 1 kHz pilot
_RING_MASK = const(255)
_COUNT_MASK = const(0x3FFFFFFF)  # the edge counter wraps here: it stays a small int (no
                                 # allocation in the interrupt), like ticks_us itself
# A pilot level burst: 64 reads paced 18 us apart span 1.15 ms, more than one 1 kHz period, so
# both plateaus are in it; a 5 % duty is 50 us high, about 3 reads (as firmware/evse/hal/mcu.py).
_BURST = const(64)
_STEP_US = const(18)
_STEADY_READS = const(8)
SWITCH_NAMES = ("r2740", "r1300", "r270", "diode_short", "short_e")
_OPTIONAL = ("short_e",)


class EdgeRing:
    """The edges of one input, stamped with ticks_us in a hard interrupt."""

    def __init__(self, pin):
        self.pin = pin
        self.ticks = array("i", [0] * _RING)  # ticks_us is below 2**30: it fits
        self.levels = bytearray(_RING)
        self.written = 0  # edges stamped, modulo 2**30
        self.taken = 0  # edges drained, modulo 2**30
        pin.irq(self.irq, Pin.IRQ_RISING | Pin.IRQ_FALLING, hard=True)

    def irq(self, pin):
        # Hard interrupt: no allocation here (small ints, array and bytearray stores only).
        n = self.written
        k = n & _RING_MASK
        self.ticks[k] = ticks_us()  # type: ignore[call-overload]  # an int below 2**30
        self.levels[k] = pin.value()
        self.written = (n + 1) & _COUNT_MASK


class Hardware:
    def __init__(self, wiring):
        guns = _need(wiring, "guns", "wiring.py")
        self.guns = len(guns)
        closed = _need(wiring, "switch_closed_level", "wiring.py")
        self._closed = 1 if closed else 0
        fb_closed = _need(wiring, "feedback_closed_level", "wiring.py")
        self._fb_invert = 0 if fb_closed else 1  # edge level -> 1 = contactor closed
        self._switches = []  # type: list  # per gun: {name: Pin}
        # Every switch first, open, before anything else is claimed: no EV, no fault (safety).
        for n, gun in enumerate(guns):
            pins = _need(gun, "pins", "wiring.py guns[%d]" % n)
            switches = {}
            for name in SWITCH_NAMES:
                number = pins.get(name)
                if number is None:
                    if name in _OPTIONAL:
                        continue
                    _need(pins, name, "wiring.py guns[%d].pins" % n)
                switches[name] = Pin(number, Pin.OUT, value=1 - self._closed)
            self._switches.append(switches)
        self._cmp = []  # type: list[EdgeRing]
        self._feedback = []  # type: list[EdgeRing]
        self._adc = []  # type: list[ADC]
        for n, gun in enumerate(guns):
            pins = gun["pins"]
            where = "wiring.py guns[%d].pins" % n
            # Open-collector comparator output: high while the pilot is above about +1 V.
            self._cmp.append(EdgeRing(Pin(_need(pins, "pilot_cmp", where), Pin.IN, Pin.PULL_UP)))
            # Opto transistor to GND with a pull-up: a broken wire reads "open".
            self._feedback.append(EdgeRing(Pin(_need(pins, "feedback", where), Pin.IN, Pin.PULL_UP)))
            self._adc.append(ADC(Pin(_need(pins, "pilot_adc", where))))
        relay = wiring.get("power_relay")
        self.has_power_relay = relay is not None
        self._power = None
        if relay is not None:
            self._power_off = 1 if _need(relay, "off_level", "wiring.py power_relay") else 0
            # Mains on at start, as the virtual board starts powered.
            self._power = Pin(_need(relay, "pin", "wiring.py power_relay"), Pin.OUT, value=1 - self._power_off)
        self._buf = array("H", [0] * _BURST)
        self._raw = ticks_us()
        self._mono = 0

    # ---- clock ----------------------------------------------------------------------------------
    def now_us(self):  # type: () -> int
        """Microseconds since start, not wrapping (ticks_us wraps every 2**30 us, 17.9 minutes:
        this must be called at least every 8 minutes; the main loop calls it every ms)."""
        raw = ticks_us()
        self._mono += ticks_diff(raw, self._raw)
        self._raw = raw
        return self._mono

    # ---- switches -------------------------------------------------------------------------------
    def has_switch(self, gun, name):  # type: (int, str) -> bool
        return name in self._switches[gun - 1]

    def set_switch(self, gun, name, closed):  # type: (int, str, bool) -> None
        self._switches[gun - 1][name].value(self._closed if closed else 1 - self._closed)

    def set_power(self, on):  # type: (bool) -> None
        if self._power is not None:
            self._power.value(1 - self._power_off if on else self._power_off)

    def safe(self):  # type: () -> None
        """Every switch open, straight on the pins (when the rig stops)."""
        for switches in self._switches:
            for pin in switches.values():
                pin.value(1 - self._closed)

    # ---- inputs ---------------------------------------------------------------------------------
    def pilot_level(self, gun):  # type: (int) -> int
        return self._cmp[gun - 1].pin.value()

    def feedback_closed(self, gun):  # type: (int) -> bool
        return (self._feedback[gun - 1].pin.value() ^ self._fb_invert) == 1

    def drain_pilot(self, gun, sink):
        self._drain(self._cmp[gun - 1], sink, 0)

    def drain_feedback(self, gun, sink):
        self._drain(self._feedback[gun - 1], sink, self._fb_invert)

    def _drain(self, ring, sink, invert):
        """Give the sink each new edge as edge(t_us, level) on the now_us clock, oldest first."""
        written = ring.written
        now = self.now_us()  # after reading `written`: every edge given is older than now
        raw_now = self._raw
        pending = (written - ring.taken) & _COUNT_MASK
        if pending > _RING:
            sink.lost()
            ring.taken = (written - _RING) & _COUNT_MASK
            pending = _RING
        k = ring.taken
        for _ in range(pending):
            i = k & _RING_MASK
            sink.edge(now - ticks_diff(raw_now, ring.ticks[i]), ring.levels[i] ^ invert)
            k = (k + 1) & _COUNT_MASK
        ring.taken = k

    def pilot_steady(self, gun):  # type: (int) -> int
        """Mean of a few reads (read_u16) of a steady pilot."""
        adc = self._adc[gun - 1]
        total = 0
        for _ in range(_STEADY_READS):
            total += adc.read_u16()
        return total // _STEADY_READS

    def pilot_burst(self, gun):
        """64 reads (read_u16) paced over one PWM period; the buffer is reused by every call."""
        adc = self._adc[gun - 1]
        buf = self._buf
        t0 = ticks_us()
        for k in range(_BURST):
            wait_us = ticks_diff(ticks_add(t0, k * _STEP_US), ticks_us())
            if wait_us > 0:
                sleep_us(wait_us)
            buf[k] = adc.read_u16()
        return buf


def _need(section, key, where):
    try:
        return section[key]
    except (KeyError, TypeError):
        raise ValueError('%s has no "%s"; see boards/rig-pico/README.md' % (where, key))
