# A recording stand-in for MicroPython's `machine`, for boards/rig-pico under the MicroPython
# unix port (a machine.py on MICROPYPATH replaces the built-in module).
#   calls        the first 200 calls the code made: ("Pin", id, mode, pull, value),
#                ("Pin.value", id, level), ("ADC", id)
#   irqs         every interrupt asked for: (pin id, trigger, hard)
#   driven       the last level the code put on each output pin
#   level        input levels the test sets (an unset input reads its pull: PULL_UP = 1, else 0)
#   adc_mv       per ADC pin, a function of clock.now_us giving the mV at the pin
#   pins         the Pin objects made, by id; fire(id, level) sets an input and runs its handler
# Time is simulated: `clock.now_us` is absolute; ticks_us() wraps every 2**30 us as on the RP2040,
# and ticks_diff/ticks_add/sleep_us here work on that clock (the harness puts them into hw).

calls = []
irqs = []
driven = {}
level = {}
adc_mv = {}
pins = {}
adc_fails = []  # an OSError message here makes every ADC read raise it
ADC_VREF_MV = 3300
ADC_READ_US = 2
TICKS_PERIOD = 1 << 30


class Clock:
    def __init__(self):
        self.now_us = 0


clock = Clock()


def ticks_us():
    return clock.now_us & (TICKS_PERIOD - 1)


def ticks_diff(end, start):
    return ((end - start + TICKS_PERIOD // 2) & (TICKS_PERIOD - 1)) - TICKS_PERIOD // 2


def ticks_add(ticks, delta):
    return (ticks + delta) & (TICKS_PERIOD - 1)


def sleep_us(us):
    clock.now_us += us


def record(call):
    if len(calls) < 200:  # a long run must not fill the heap with its own record
        calls.append(call)


def fire(pin_id, new_level):
    """An input changes: the level is set and the pin's interrupt handler runs (if any)."""
    level[pin_id] = new_level
    pin = pins.get(pin_id)
    if pin is not None and pin.handler is not None:
        pin.handler(pin)


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.handler = None
        pins[id] = self
        record(("Pin", id, mode, pull, value))
        if value is not None:
            driven[id] = 1 if value else 0

    def value(self, *new):
        if new:
            driven[self.id] = 1 if new[0] else 0
            record(("Pin.value", self.id, driven[self.id]))
            return None
        if self.mode == Pin.OUT:
            return driven.get(self.id, 0)
        if self.id in level:
            return level[self.id]
        return 1 if self.pull == Pin.PULL_UP else 0

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        irqs.append((self.id, trigger, hard))


class ADC:
    def __init__(self, src):
        self.pin = src.id if isinstance(src, Pin) else src
        record(("ADC", self.pin))

    def read_u16(self):
        if adc_fails:
            raise OSError(adc_fails[0])
        clock.now_us += ADC_READ_US
        source = adc_mv.get(self.pin)
        mv = source(clock.now_us) if source is not None else 0
        if mv < 0:
            mv = 0
        elif mv > ADC_VREF_MV:
            mv = ADC_VREF_MV
        return int(mv * 65535 // ADC_VREF_MV)
