# A recording stand-in for MicroPython's `machine`, for tests under CPython and under the
# MicroPython unix port (where a machine.py on MICROPYPATH replaces the built-in module).
# Every call the code makes is appended to `calls`; tests script the inputs:
#   adc_mv[pin]     volts at an ADC pin in mV: an int, a sequence (one item per read, cycled)
#                   or a function of clock.now_us
#   pin_level[pin]  level of an input pin: 0/1 or a function of clock.now_us
#                   (unscripted inputs read their pull: PULL_UP = 1, else 0)
# `driven` holds the last level the code put on each output pin. Time is simulated by `clock`:
# an ADC read takes ADC_READ_US; CPython tests install clock's functions into `time`.

calls = []
adc_mv = {}
pin_level = {}
driven = {}
pwm_duty = {}  # pin -> the last duty_u16 a PWM was given
record_reads = True  # off for allocation measurements: recording a read allocates a tuple
ADC_VREF_MV = 3300  # full scale of read_u16
ADC_READ_US = 2


class Clock:
    def __init__(self):
        self.now_us = 0

    def ticks_us(self):
        return self.now_us

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_add(self, ticks, delta):
        return ticks + delta

    def ticks_diff(self, end, start):
        return end - start

    def sleep_us(self, us):
        self.now_us += us

    def sleep_ms(self, ms):
        self.now_us += ms * 1000


clock = Clock()


def reset():
    global record_reads
    calls.clear()
    adc_mv.clear()
    pin_level.clear()
    driven.clear()
    pwm_duty.clear()
    record_reads = True
    clock.now_us = 0


def _level(source):
    return source(clock.now_us) if callable(source) else source


def _pin_id(pin):
    return pin.id if isinstance(pin, Pin) else pin


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        calls.append(("Pin", id, mode, pull, value))
        if value is not None:
            driven[id] = 1 if value else 0

    def value(self, *level):
        if level:
            driven[self.id] = 1 if level[0] else 0
            calls.append(("Pin.value", self.id, driven[self.id]))
            return None
        if self.id in pin_level:
            v = _level(pin_level[self.id])
        elif self.mode == Pin.OUT:
            v = driven.get(self.id, 0)
        else:
            v = 1 if self.pull == Pin.PULL_UP else 0
        calls.append(("Pin.read", self.id, v))
        return v

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self.mode = mode
        calls.append(("Pin.init", self.id, mode, pull, value))
        if value is not None:
            driven[self.id] = 1 if value else 0

    def __call__(self, *level):
        return self.value(*level)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    def __init__(self, dest, freq=None, duty_u16=None):
        self.pin = _pin_id(dest)
        calls.append(("PWM", self.pin))
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)

    def freq(self, hz=None):
        if hz is not None:
            calls.append(("PWM.freq", self.pin, hz))

    def duty_u16(self, value=None):
        if value is not None:
            if not 0 <= value <= 65535:
                raise ValueError("duty_u16 out of range")
            pwm_duty[self.pin] = value
            calls.append(("PWM.duty_u16", self.pin, value))

    def deinit(self):
        calls.append(("PWM.deinit", self.pin))


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, src, atten=None):
        self.pin = _pin_id(src)
        self.reads = 0
        calls.append(("ADC", self.pin, atten))

    def _mv(self):
        clock.now_us += ADC_READ_US
        src = adc_mv.get(self.pin, 0)
        if callable(src):
            mv = src(clock.now_us)
        elif isinstance(src, int):
            mv = src
        else:
            mv = src[self.reads % len(src)]
        self.reads += 1
        return 0 if mv < 0 else (ADC_VREF_MV if mv > ADC_VREF_MV else mv)

    def read_u16(self):
        if record_reads:
            calls.append(("ADC.read", self.pin))
        return self._mv() * 65535 // ADC_VREF_MV

    def read_uv(self):
        if record_reads:
            calls.append(("ADC.read", self.pin))
        return self._mv() * 1000


class WDT:
    def __init__(self, id=0, timeout=5000):
        calls.append(("WDT", timeout))

    def feed(self):
        calls.append(("WDT.feed",))


class UART:
    def __init__(self, id, baudrate=9600, tx=None, rx=None, **kwargs):
        self.id = id
        self.rx_bytes = b""  # scripted answer
        calls.append(("UART", id, baudrate, _pin_id(tx), _pin_id(rx)))

    def write(self, buf):
        calls.append(("UART.write", self.id, bytes(buf)))
        return len(buf)

    def flush(self):
        calls.append(("UART.flush", self.id))

    def any(self):
        return len(self.rx_bytes)

    def read(self, nbytes=-1):
        if not self.rx_bytes:
            return None
        n = len(self.rx_bytes) if nbytes < 0 else nbytes
        out = self.rx_bytes[:n]
        self.rx_bytes = self.rx_bytes[n:]
        return out

    def readinto(self, buf):
        data = self.read(len(buf))
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        return self.read()

    def deinit(self):
        calls.append(("UART.deinit", self.id))


class SPI:
    """Records the bus it was given and what it clocks out; nothing answers (MISO reads 0)."""
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None,
                 miso=None):
        self.id = id
        calls.append(("SPI", id, baudrate, polarity, phase, _pin_id(sck), _pin_id(mosi), _pin_id(miso)))

    def write(self, buf):
        calls.append(("SPI.write", self.id, bytes(buf)))

    def write_readinto(self, out, into):
        calls.append(("SPI.write", self.id, bytes(out)))
        for k in range(len(into)):
            into[k] = 0
