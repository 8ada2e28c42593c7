# The emulated `machine` of an RP2040 or an ESP32 (EVSE_SIM_MCU = "rp2040" | "esp32"), installed
# by the virtual board's ROM in place of the unix port's before the firmware runs, so the board's
# own port HAL (evse/hal/rp2.py, esp32.py through mcu.py) runs unchanged. It behaves as the silicon
# and MicroPython's port do: which GPIOs exist and what each can be, ADC resolution and scaling,
# PWM frequency limits, slices/timers and duty resolution, watchdog limits, UART and SPI ids and
# pins, SPI clock dividers; bad arguments raise what the port raises. What is wired to the pins
# is the board's, modelled in the supervisor (host_tools/sim/frontend.py) and reached through `link`.
import binascii
import os
import time

import link

_MCU = os.getenv("EVSE_SIM_MCU") or "rp2040"
_RP2 = _MCU == "rp2040"
EXIT_SOFT_RESET = 10   # the ROM's exit codes (host_tools/sim/rom.py)
EXIT_HARD_RESET = 12

if _RP2:
    _GPIOS = tuple(range(30))
    _INPUT_ONLY = ()
    _NO_PULL = ()
    _ADC_PINS = {26: 0, 27: 1, 28: 2, 29: 3}  # GPIO -> channel; channel 4 is the temperature sensor
    _CPU_HZ = 125000000
    _WDT_MAX_MS = 8388  # 24-bit counter at 2 ticks per us (RP2040-E1)
    _UARTS = {0: ((0, 12, 16, 28), (1, 13, 17, 29)), 1: ((4, 8, 20, 24), (5, 9, 21, 25))}
else:
    # ESP32: GPIO 24 and 28-31 do not exist (MicroPython's pin table: 0-23, 25-27, 32-39);
    # 6-11 drive the SPI flash on a WROOM module: MicroPython lets you take them, the board dies.
    _GPIOS = tuple(range(0, 24)) + (25, 26, 27) + tuple(range(32, 40))
    _INPUT_ONLY = (34, 35, 36, 37, 38, 39)
    _NO_PULL = _INPUT_ONLY  # a pull asked for there is silently not applied
    _ADC_PINS = {36: 0, 37: 1, 38: 2, 39: 3, 32: 4, 33: 5, 34: 6, 35: 7}  # ADC1; ADC2 stops with WiFi
    _CPU_HZ = 240000000
    _WDT_MAX_MS = 0x7FFFFFFF
    _UARTS = {0: None, 1: None, 2: None}  # the GPIO matrix routes any pin

_ADC_VREF_MV = 3300
_ADC_MAX = 4095  # 12-bit SAR on both chips
_ADC_NOISE = 3   # +-LSB of noise on every conversion


def _gpio(id):
    if isinstance(id, Pin):
        return id.id
    if not isinstance(id, int):
        raise ValueError("invalid pin")
    if id not in _GPIOS:
        raise ValueError("invalid pin")
    return id


# ---- Pin -------------------------------------------------------------------------------------
_levels = {}  # GPIO -> level the chip drives (outputs)
_modes = {}   # GPIO -> mode
_pulls = {}
_irqs = {}    # GPIO -> [handler, trigger, last level]


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    ALT = 4
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4 if _RP2 else 2
    IRQ_RISING = 8 if _RP2 else 1

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = _gpio(id)
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None):
        pin = self.id
        if mode != -1:
            if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN, Pin.ALT):
                raise ValueError("invalid pin mode: %d" % mode)
            if mode in (Pin.OUT, Pin.OPEN_DRAIN) and pin in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            _modes[pin] = mode
        if pull != -1 and pull is not None:
            if pull not in (Pin.PULL_UP, Pin.PULL_DOWN):
                raise ValueError("invalid pull: %d" % pull)
            if pin not in _NO_PULL:
                _pulls[pin] = pull
        elif pull is None:
            _pulls.pop(pin, None)
        if value is not None:
            self.value(value)
        elif mode in (Pin.OUT, Pin.OPEN_DRAIN):
            link.send(b"o %d %d %d\n" % (pin, _levels.get(pin, 0), time.ticks_us()))

    def value(self, *level):
        pin = self.id
        if level:
            v = 1 if level[0] else 0
            _levels[pin] = v
            if _modes.get(pin) in (Pin.OUT, Pin.OPEN_DRAIN):
                link.send(b"o %d %d %d\n" % (pin, v, time.ticks_us()))
            return None
        mode = _modes.get(pin, Pin.IN)
        if mode == Pin.OUT:
            return _levels.get(pin, 0)
        return _read_input(pin)

    def __call__(self, *level):
        return self.value(*level)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def high(self):
        self.value(1)

    def low(self):
        self.value(0)

    def toggle(self):
        self.value(1 - _levels.get(self.id, 0))

    def irq(self, handler=None, trigger=12 if _RP2 else 3, **kw):
        # Edges are seen when the inputs are next sampled (every pin read or pilot sample),
        # and the handler runs as a scheduled (soft) interrupt. The ESP32 port has no `hard`.
        if kw and (_RP2 and set(kw) != {"hard"} or not _RP2):
            raise TypeError("extra keyword arguments given")
        if handler is None:
            _irqs.pop(self.id, None)
        else:
            _irqs[self.id] = [handler, trigger, _read_input(self.id)]
        return None

    def __repr__(self):
        return "Pin(GPIO%d)" % self.id


def _read_input(pin):
    link.refresh()
    _fire_irqs()
    _service_timers()
    if pin in link.digital:
        return link.digital[pin]
    if pin in link.analog:
        return 1 if link.analog[pin] > _ADC_VREF_MV // 2 else 0
    # Nothing wired: the pull decides; a floating input reads 0.
    return 1 if _pulls.get(pin) == Pin.PULL_UP else 0


def _fire_irqs():
    if not _irqs:
        return
    import micropython
    for pin in _irqs:
        entry = _irqs[pin]
        now = link.digital.get(pin, 1 if _pulls.get(pin) == Pin.PULL_UP else 0)
        if now != entry[2]:
            edge = Pin.IRQ_RISING if now else Pin.IRQ_FALLING
            entry[2] = now
            if entry[1] & edge:
                micropython.schedule(entry[0], Pin(pin))


# ---- PWM -------------------------------------------------------------------------------------
# GPIO -> [freq_hz, duty16 produced (0..65536), t0_us, the duty register written (rp2: the
# compare level; esp32: duty16), the one in effect before, ticks_us of the write]. Both chips
# double-buffer it (the RP2040's CC, the ESP32's LEDC duty): a new duty takes effect when the
# period ends, so for up to a period the output keeps the one before.
_pwm_out = {}
_slice_hz = {}  # rp2: slice -> freq; esp32: LEDC timer freq (one timer per freq in use)
_slice_t0 = {}  # rp2: slice -> ticks_us when its counter started (both channels count on it)
_ESP32_TIMERS = 8  # LEDC timers (each one frequency) and channels (each one pin)
_ESP32_CHANNELS = 16


def _rp2_top(freq):
    return _rp2_div_top(freq)[1]


def _rp2_div_top(freq):
    """The slice's clock divider (in 16ths) and TOP for `freq`, as the rp2 port sets them."""
    if freq <= 0:
        raise ValueError("freq too small")
    if (_CPU_HZ + freq // 2) // freq < 65535:
        div16 = 16
        top = (_CPU_HZ + freq // 2) // freq - 1
    else:
        div16 = (16 * _CPU_HZ + 65535 * freq - 1) // (65535 * freq)
        top = (16 * _CPU_HZ + div16 * freq // 2) // (div16 * freq) - 1
    if div16 < 16:
        raise ValueError("freq too large")
    if div16 >= 256 * 16:
        raise ValueError("freq too small")
    return div16, top


def _esp32_bits(freq):
    # LEDC from the 80 MHz APB clock: the most duty bits the frequency allows, at most 16 here.
    if freq <= 0 or freq > 40000000:
        raise ValueError("frequency must be from 1Hz to 40MHz")
    bits = 1
    while bits < 16 and 80000000 // (freq << (bits + 1)) >= 1:
        bits += 1
    return bits


class PWM:
    def __init__(self, dest, freq=0, duty_u16=-1, *, invert=False):
        self.pin = _gpio(dest)
        if self.pin in _INPUT_ONLY:
            raise ValueError("pin can only be input")
        _modes[self.pin] = Pin.ALT
        self._freq = 0
        self._duty16 = 0
        self._cc = 0   # rp2: the channel's compare level (CC register)
        self._level = 0   # what the duty register holds: rp2 CC, esp32 the duty (of 65536)
        self._slice = (self.pin >> 1) & 7 if _RP2 else None
        if not _RP2 and len(_pwm_out) >= _ESP32_CHANNELS and self.pin not in _pwm_out:
            raise RuntimeError("out of PWM channels:%d" % _ESP32_CHANNELS)
        # The port writes the constructor's frequency and duty before it enables the slice:
        # those take effect at once, later changes at the counter's wrap.
        self._starting = True
        if freq:
            self.freq(freq)
        if duty_u16 != -1:
            self.duty_u16(duty_u16)
        self._starting = False

    def init(self, freq=0, duty_u16=-1):
        if freq:
            self.freq(freq)
        if duty_u16 != -1:
            self.duty_u16(duty_u16)

    def freq(self, value=None):
        if value is None:
            return _slice_hz.get(self._slice, self._freq) if _RP2 else self._freq
        if _RP2:
            _rp2_top(value)  # raises for a frequency the slice cannot make
            # Both channels of a slice share its counter: the other pin's frequency changes too.
            _slice_hz[self._slice] = value
            for pin in _pwm_out:
                if (pin >> 1) & 7 == self._slice and pin != self.pin:
                    _pwm_out[pin][0] = value
                    _emit(pin)
        else:
            _esp32_bits(value)
            timers = set(_pwm_out[p][0] for p in _pwm_out if p != self.pin)
            if value not in timers and len(timers) >= _ESP32_TIMERS:
                raise RuntimeError("out of PWM timers:%d" % _ESP32_TIMERS)
        self._freq = value
        self._apply()

    def duty_u16(self, value=None):
        if value is None:
            return self._duty16 if self._duty16 < 65536 else 65535
        if not isinstance(value, int):
            raise TypeError("can't convert %s to int" % type(value).__name__)
        if value < 0 or value > 65535:
            raise ValueError("duty_u16 must be from 0 to 65535")
        f = self._freq or (_slice_hz.get(self._slice) if _RP2 else 0)
        if not f:
            f = self._freq = 1000 if _RP2 else 5000  # the ports' default frequency
        cc = 0
        if _RP2:
            top = _rp2_top(f)
            cc = (value * (top + 1) + 65535 // 2) // 65535
            produced = cc * 65536 // (top + 1)  # 65535 gives cc = top + 1: always high
        else:
            bits = _esp32_bits(f)
            steps = 1 << bits
            d = (value * steps + 32767) // 65535
            produced = d * 65536 // steps
        self._duty16 = produced
        self._cc = cc
        self._level = cc if _RP2 else produced
        self._apply()

    def _apply(self):
        if _RP2:
            t0 = _slice_t0.setdefault(self._slice, time.ticks_us())
        else:
            t0 = _pwm_out[self.pin][2] if self.pin in _pwm_out else time.ticks_us()
        now = time.ticks_us()
        if self._starting:
            before = self._level
        else:
            before = _level(_pwm_out[self.pin], now) if self.pin in _pwm_out else 0
        _pwm_out[self.pin] = [self._freq, self._duty16, t0, self._level, before, now]
        _emit(self.pin)

    def deinit(self):
        if self.pin in _pwm_out:
            del _pwm_out[self.pin]
        _modes[self.pin] = Pin.IN
        link.send(b"o %d -1 %d\n" % (self.pin, time.ticks_us()))

    def __repr__(self):
        return "PWM(Pin(%d), freq=%d, duty_u16=%d)" % (self.pin, self._freq, self.duty_u16())


def _emit(pin):
    out = _pwm_out[pin]
    link.send(b"p %d %d %d\n" % (pin, out[0], out[1]))


def _output_high(pin, now_us):
    """Whether an output pin is high at this microsecond: a PWM by its phase, else its level."""
    out = _pwm_out.get(pin)
    if out is None:
        return _levels.get(pin, 0) == 1
    if _RP2:  # high while the slice's counter is below the channel's compare level in effect
        return _rp2_counter(out[0], out[2], now_us) < _level(out, now_us)
    duty = _level(out, now_us)
    if duty <= 0:
        return False
    if duty >= 65536:
        return True
    period = 1000000 // out[0]
    phase = time.ticks_diff(now_us, out[2]) % period
    return phase * 65536 < duty * period


def _level(out, now_us):
    """The duty in effect (rp2: the compare level; esp32: the LEDC duty): both are double-
    buffered, so the one written once the period ended since, else the one that was in effect
    when it was written."""
    period = 1000000 // out[0]
    wrapped = time.ticks_diff(now_us, out[2]) // period > time.ticks_diff(out[5], out[2]) // period
    return out[3] if wrapped else out[4]


def _rp2_counter(freq, t0_us, now_us):
    top = _rp2_top(freq)
    period = 1000000 // freq
    return time.ticks_diff(now_us, t0_us) % period * (top + 1) // period


# ---- registers: machine.mem32 ---------------------------------------------------------------
# What firmware may read of the silicon directly. rp2: SYSINFO CHIP_ID and the PWM slices' CSR,
# DIV, CTR, CC and TOP (RP2040 datasheet 4.5.3), the counter by the same clock as the outputs
# above. Any other address, and every write, raises: the emulation does not model it, and the
# error names the address the firmware asked for.
_RP2_CHIP_ID = 0x20002927     # RP2040-B2: revision 2, part 0x0002, manufacturer 0x927
_RP2_SYSINFO = 0x40000000
_RP2_PWM = 0x40050000
_RP2_SLICE = 0x14             # bytes per slice: CSR, DIV, CTR, CC, TOP


def _rp2_pwm_register(slice, reg):
    freq = _slice_hz.get(slice)
    pins = [p for p in _pwm_out if (p >> 1) & 7 == slice]
    if not freq or not pins:
        return (0, 1 << 4, 0, 0, 0xFFFF)[reg // 4]   # reset values: stopped, divider 1
    div16, top = _rp2_div_top(freq)
    if reg == 0:
        return 1    # CSR: EN
    if reg == 4:
        return div16
    if reg == 8:
        return _rp2_counter(freq, _slice_t0[slice], time.ticks_us())
    if reg == 12:
        cc = 0
        for p in pins:
            cc |= _pwm_out[p][3] << (16 if p & 1 else 0)
        return cc
    return top


class _Mem:
    def __init__(self, name):
        self._name = name

    def __getitem__(self, addr):
        if _RP2 and self._name == "mem32" and addr % 4 == 0:
            if addr == _RP2_SYSINFO:
                return _RP2_CHIP_ID
            offset = addr - _RP2_PWM
            if 0 <= offset < 8 * _RP2_SLICE:
                return _rp2_pwm_register(offset // _RP2_SLICE, offset % _RP2_SLICE)
        raise OSError("%s[0x%08x]: this register is not emulated" % (self._name, addr))

    def __setitem__(self, addr, value):
        raise OSError("%s[0x%08x] = 0x%x: writes to registers are not emulated" % (self._name, addr, value))


mem8 = _Mem("mem8")
mem16 = _Mem("mem16")
mem32 = _Mem("mem32")


# ---- ADC -------------------------------------------------------------------------------------
_seed = [0x2545F491]


def _noise():
    # xorshift32: a few LSB of conversion noise, no allocation in the read path
    x = _seed[0]
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    _seed[0] = x
    return (x % (2 * _ADC_NOISE + 1)) - _ADC_NOISE


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12
    CORE_TEMP = 4

    def __init__(self, src, *, atten=None):
        if isinstance(src, Pin):
            pin = src.id
        elif _RP2 and isinstance(src, int) and 0 <= src <= 4:  # the ESP32 takes GPIO numbers only
            pin = src + 26 if src < 4 else -1  # a channel number; 4 = the temperature sensor
        else:
            pin = _gpio(src)
        if pin != -1 and pin not in _ADC_PINS:
            raise ValueError("Pin doesn't have ADC capabilities" if _RP2 else "invalid pin")
        if _RP2 and atten is not None:
            raise TypeError("function doesn't take keyword arguments")
        self.pin = pin
        self._atten = ADC.ATTN_11DB if atten is None else atten  # ESP32: every ADC() resets it
        if not _RP2 and self._atten not in (0, 1, 2, 3):
            raise ValueError("invalid attenuation")

    def atten(self, atten):
        self._atten = atten

    def _mv(self):
        pin = self.pin
        link.refresh()
        _service_timers()
        if pin in link.pilot:
            p = link.pilot[pin]
            mv = p[0] if _output_high(p[2], time.ticks_us()) else p[1]
        else:
            mv = link.analog.get(pin, 0)
        return mv

    def _raw(self):
        full = _ADC_VREF_MV if _RP2 else (950, 1250, 1750, _ADC_VREF_MV)[self._atten]
        raw = (self._mv() * _ADC_MAX + full // 2) // full + _noise()
        if raw < 0:
            return 0
        return raw if raw < _ADC_MAX else _ADC_MAX

    def read_u16(self):
        raw = self._raw()
        return (raw << 4) | (raw >> 8)  # 12 bits stretched to 16, as both ports scale them

    def read(self):
        return self._raw()

    if not _RP2:
        def read_uv(self):
            # The eFuse two-point calibration: microvolts, to the nearest 12-bit step.
            return self._raw() * _ADC_VREF_MV * 1000 // _ADC_MAX


# ---- UART ------------------------------------------------------------------------------------
class UART:
    """A UART whose lines reach the virtual board's RS-485 bus (EVSE_SIM_UART<id>) when the
    board wires one there; otherwise nothing answers, as on a bare pin header."""

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None, **kw):
        if id not in _UARTS:
            raise ValueError(("UART(%d) doesn't exist" if _RP2 else "UART(%d) does not exist") % id)
        pins = _UARTS[id]
        if tx is not None:
            tx = _gpio(tx)
            if pins is not None and tx not in pins[0]:
                raise ValueError("bad TX pin")
            if tx in _INPUT_ONLY:
                raise ValueError("pin can only be input")
        if rx is not None:
            rx = _gpio(rx)
            if pins is not None and rx not in pins[1]:
                raise ValueError("bad RX pin")
        if not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError("invalid baudrate")
        if parity not in (None, 0, 1):
            raise ValueError("invalid parity")
        self.id = id
        self._baud = baudrate
        self.parity = parity   # what the firmware asked for: the bus carries bytes, not bits
        self._sock = None
        addr = os.getenv("EVSE_SIM_UART%d" % id)
        if addr:
            import socket
            host, port = addr.split(":")
            s = socket.socket()
            s.connect(socket.getaddrinfo(host, int(port))[0][-1])
            s.setblocking(False)
            self._sock = s
        self._pending = b""

    def init(self, baudrate=115200, **kw):
        self._baud = baudrate

    def write(self, buf):
        if self._sock is None:
            return len(buf)  # the bytes leave the pin; nothing listens
        view = memoryview(buf)
        sent = 0
        while sent < len(view):
            n = self._sock.write(view[sent:])
            if n:
                sent += n
            else:
                time.sleep_ms(1)
        # The bytes take their time on the wire: 10 bits each.
        self._tx_done_us = time.ticks_add(time.ticks_us(), sent * 10000000 // self._baud)
        return sent

    def flush(self):
        done = getattr(self, "_tx_done_us", None)
        if done is not None:
            wait = time.ticks_diff(done, time.ticks_us())
            if wait > 0:
                time.sleep_us(wait)

    def txdone(self):
        done = getattr(self, "_tx_done_us", None)
        return done is None or time.ticks_diff(done, time.ticks_us()) <= 0

    def _fill(self):
        if self._sock is None:
            return
        try:
            data = self._sock.read(256)
        except OSError:
            data = None
        if data:
            self._pending += data

    def any(self):
        self._fill()
        return len(self._pending)

    def read(self, nbytes=-1):
        self._fill()
        if not self._pending:
            return None
        if nbytes < 0 or nbytes >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:nbytes], self._pending[nbytes:]
        return out

    def readinto(self, buf, nbytes=-1):
        want = len(buf) if nbytes < 0 else nbytes
        data = self.read(want)
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        self._fill()
        i = self._pending.find(b"\n")
        if i < 0:
            return self.read()
        return self.read(i + 1)

    def deinit(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# ---- SPI -------------------------------------------------------------------------------------
# The ports' SPI peripherals are static objects: SPI(id) always sets up the same one, and the
# pins it was given stay until others are. Bytes go over the link to whatever the board wires to
# those pins (host_tools/sim/frontend.py); a chip select is a plain Pin the code drives around them.
if _RP2:
    # ports/rp2/machine_spi.c: SPI0 on GP0-7 and GP16-23, SPI1 on GP8-15 and GP24-29; SCK on the
    # pins 2 mod 4, MOSI 3 mod 4, MISO 0 mod 4 (RP2040 datasheet 1.4.3, function F1). Defaults:
    # the Pico's (PICO_DEFAULT_SPI 0 on GP18, 19, 16) and GP10, 11, 8.
    _SPI_PINS = {0: (18, 19, 16), 1: (10, 11, 8)}
    _SPI_MSB = 1   # the pico-sdk's SPI_MSB_FIRST; its PL022 shifts nothing else
    _SPI_HZ = 1000000
else:
    # ports/esp32/machine_hw_spi.c: SPI(1) = HSPI, SPI(2) = VSPI, by default on their IO_MUX
    # pins; the GPIO matrix routes any other pin (SCK and MOSI must be able to drive).
    _SPI_PINS = {1: (14, 13, 12), 2: (18, 23, 19)}
    _SPI_MSB = 0
    _SPI_HZ = 500000
_KEEP = object()   # an argument not given
_spi = {}          # id -> its peripheral's settings, as the port's static object keeps them


def _rp2_spi_hz(baudrate):
    """The clock the RP2040's SPI makes of `baudrate` (pico-sdk spi_set_baudrate, clk_peri =
    clk_sys): an even prescale 2..254, then the largest post-divide 1..256 at or under it."""
    prescale = 2
    while prescale <= 254 and _CPU_HZ >= prescale * 256 * baudrate:
        prescale += 2
    postdiv = 256
    while postdiv > 1 and _CPU_HZ // (prescale * (postdiv - 1)) <= baudrate:
        postdiv -= 1
    return _CPU_HZ // (prescale * postdiv)


def _esp32_spi_hz(hz):
    """The clock the ESP32's SPI makes of `hz` from the 80 MHz APB clock (ESP-IDF
    spi_ll_master_cal_clock): the pre-divider 1..8192 and n 2..64 closest to it, the higher n
    on a tie; above 60 MHz the APB clock itself."""
    if hz > 60000000:
        return 80000000
    best_err = best = -1
    for n in range(2, 65):
        pre = (80000000 // n + hz // 2) // hz
        pre = 1 if pre <= 0 else 8192 if pre > 8192 else pre
        err = abs(80000000 // (pre * n) - hz)
        if best < 0 or err <= best_err:
            best_err = err
            best = 80000000 // (pre * n)
    return best


def _spi_pin(pin, valid, what, id):
    if pin is None:
        return -1
    gpio = _gpio(pin)
    if _RP2 and not (gpio & 3 == valid and (gpio >> 3) & 1 == id):
        raise ValueError("bad %s pin" % what)
    return gpio


class SPI:
    MSB = _SPI_MSB
    LSB = 1 - _SPI_MSB

    def __init__(self, id=0 if _RP2 else _KEEP, baudrate=_KEEP, *, polarity=_KEEP, phase=_KEEP, bits=_KEEP,
                 firstbit=_KEEP, sck=_KEEP, mosi=_KEEP, miso=_KEEP):
        if id is _KEEP:
            raise TypeError("'id' argument required")
        if id not in _SPI_PINS:
            raise ValueError("SPI(%d) doesn't exist" % id)
        self.id = id
        bus = _spi.get(id)
        if bus is None:
            p = _SPI_PINS[id]
            # baudrate (rp2: 0 = never set up), polarity, phase, bits, firstbit, sck, mosi, miso,
            # esp32: set up (0 never, 1 yes, -1 deinit)
            bus = _spi[id] = [0, 0, 0, 8, _SPI_MSB, p[0], p[1], p[2], 0]
        self._bus = bus
        if _RP2:
            # Pins given are checked and kept; the rest is set up when anything is given, or the
            # first time. The settings are kept before the LSB check, as the port keeps them.
            if sck is not _KEEP and sck is not None:
                bus[5] = _spi_pin(sck, 2, "SCK", id)
            if mosi is not _KEEP and mosi is not None:
                bus[6] = _spi_pin(mosi, 3, "MOSI", id)
            if miso is not _KEEP:
                bus[7] = _spi_pin(miso, 0, "MISO", id)
            given = (baudrate, polarity, phase, bits, firstbit, sck, mosi, miso)
            if bus[0] and not [a for a in given if a is not _KEEP]:
                return
            bus[0:5] = [1000000 if baudrate is _KEEP else baudrate, 0 if polarity is _KEEP else polarity,
                        0 if phase is _KEEP else phase, 8 if bits is _KEEP else bits,
                        _SPI_MSB if firstbit is _KEEP else firstbit]
            if bus[4] != _SPI_MSB:
                raise NotImplementedError("LSB")
            bus[0] = _rp2_spi_hz(bus[0])
            self._setup()
        else:
            p = _SPI_PINS[id]
            self._esp32_init(_SPI_HZ if baudrate is _KEEP else baudrate, 0 if polarity is _KEEP else polarity,
                             0 if phase is _KEEP else phase, 8 if bits is _KEEP else bits,
                             _SPI_MSB if firstbit is _KEEP else firstbit, p[0] if sck is _KEEP else sck,
                             p[1] if mosi is _KEEP else mosi, p[2] if miso is _KEEP else miso)

    def init(self, *args, **kw):
        # rp2: keywords only, no pins; esp32: the baudrate may come first, and pins may change.
        if len(args) > (0 if _RP2 else 1):
            raise TypeError("extra positional arguments given")
        if args:
            kw["baudrate"] = args[0]
        names = ("baudrate", "polarity", "phase", "bits", "firstbit") + (() if _RP2 else ("sck", "mosi", "miso"))
        for name in kw:
            if name not in names:
                raise TypeError("extra keyword arguments given")
        bus = self._bus
        if not _RP2:
            self._esp32_init(kw.get("baudrate", _KEEP), kw.get("polarity", _KEEP), kw.get("phase", _KEEP),
                             kw.get("bits", _KEEP), kw.get("firstbit", _KEEP), kw.get("sck", _KEEP),
                             kw.get("mosi", _KEEP), kw.get("miso", _KEEP))
            return
        if "baudrate" in kw:
            bus[0] = _rp2_spi_hz(kw["baudrate"])
        for k, name in ((1, "polarity"), (2, "phase"), (3, "bits"), (4, "firstbit")):
            if name in kw:
                bus[k] = kw[name]
        if bus[4] != _SPI_MSB:
            raise NotImplementedError("LSB")
        self._setup()

    def _esp32_init(self, baudrate, polarity, phase, bits, firstbit, sck, mosi, miso):
        # As machine_hw_spi_init_internal: only what changed counts; a change sets the bus up anew.
        bus = self._bus
        was = list(bus)
        if baudrate is not _KEEP:
            bus[0] = _esp32_spi_hz(baudrate)
        if polarity is not _KEEP:
            bus[1] = polarity
        if phase is not _KEEP:
            bus[2] = phase
        if bits is not _KEEP and bits <= 0:
            raise ValueError("invalid bits")
        if bits is not _KEEP:
            bus[3] = bits
        if firstbit is not _KEEP:
            bus[4] = firstbit
        for k, pin in ((5, sck), (6, mosi), (7, miso)):
            if pin is not _KEEP:
                bus[k] = -1 if pin is None else _gpio(pin)
        if bus[8] == 1 and bus[:8] == was[:8]:
            return
        if bus[8] == 1:
            self._release(was)
        # spi_bus_initialize: SCK and MOSI must be pins that can drive (MISO may be input only).
        if bus[5] in _INPUT_ONLY or bus[6] in _INPUT_ONLY:
            bus[8] = -1
            raise OSError("invalid configuration")
        bus[8] = 1
        self._setup()

    def _setup(self):
        bus = self._bus
        for pin in bus[5:8]:
            if pin >= 0:
                _modes[pin] = Pin.ALT
        link.send(b"c %d %d %d %d %d %d %d %d %d\n" % (self.id, bus[5], bus[6], bus[7], bus[0], bus[1], bus[2],
                                                       bus[3], 1 if bus[4] == _SPI_MSB else 0))

    def _release(self, bus):
        for pin in bus[5:8]:
            if pin >= 0:
                _modes[pin] = Pin.IN
        link.send(b"c %d\n" % self.id)

    def deinit(self):
        # The rp2 port has no deinit: its SPI keeps working. The ESP32 frees the bus and its pins.
        bus = self._bus
        if not _RP2 and bus[8] == 1:
            bus[8] = -1
            self._release(bus)

    def _transfer(self, out, into):
        bus = self._bus
        if not _RP2:
            if bus[8] != 1:
                raise OSError("transfer on deinitialized SPI")
            if len(out) * 8 // bus[3] * bus[3] == 0:
                raise ValueError("buffer too short")
        if into is None:
            link.send(b"X %d %s\n" % (self.id, binascii.hexlify(out)))
            return
        got = binascii.unhexlify(link.ask(b"x %d %s\n" % (self.id, binascii.hexlify(out))).strip())
        for k in range(len(into)):
            into[k] = got[k]

    def read(self, nbytes, write=0):
        buf = bytearray(nbytes)
        self.readinto(buf, write)
        return bytes(buf)

    def readinto(self, buf, write=0):
        for k in range(len(buf)):
            buf[k] = write
        self._transfer(buf, buf)

    def write(self, buf):
        self._transfer(buf, None)

    def write_readinto(self, write_buf, read_buf):
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must be the same length")
        self._transfer(write_buf, read_buf)

    def __repr__(self):
        b = self._bus
        if _RP2:
            return "SPI(%d, baudrate=%d, polarity=%d, phase=%d, bits=%d, sck=%d, mosi=%d, miso=%s)" % (
                self.id, b[0], b[1], b[2], b[3], b[5], b[6], "None" if b[7] < 0 else b[7])
        return "SPI(id=%d, baudrate=%d, polarity=%d, phase=%d, bits=%d, firstbit=%d, sck=%d, mosi=%d, miso=%d)" % (
            self.id, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7])


# ---- WDT, Timer, board-wide ---------------------------------------------------------------------
_wdt = [None]


class WDT:
    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError("WDT(%d) doesn't exist" % id if _RP2 else "")
        if _RP2 and timeout > _WDT_MAX_MS:
            raise ValueError("timeout exceeds %d" % _WDT_MAX_MS)
        if not _RP2 and timeout <= 0:
            raise ValueError("WDT timeout too short")
        # Once started it cannot be stopped or lengthened on either chip; a second WDT() on the
        # ESP32 changes the timeout of the same watchdog.
        _wdt[0] = timeout
        link.send(b"W %d\n" % timeout)

    def feed(self):
        link.send(b"w\n")


_timers = []


class Timer:
    """A soft timer: its callback is scheduled (micropython.schedule) when due. The emulation
    checks its timers whenever the firmware touches the hardware (every control tick), so a
    callback may run up to one tick late."""
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        if _RP2 and id != -1:
            raise ValueError("Timer doesn't exist")
        if not _RP2 and not -1 <= id <= 3:
            raise ValueError("invalid Timer number")
        self.id = id
        self._cb = None
        if kw:
            self.init(**kw)

    def init(self, *, mode=PERIODIC, period=-1, freq=-1, callback=None, hard=None):
        if hard and not _RP2:
            raise ValueError("hard Timers are not implemented")
        if freq > 0:
            period = 1000 // freq
        if period < 0:
            raise ValueError("period must be >= 0")
        self._mode = mode
        self._period = period
        self._due = time.ticks_add(time.ticks_ms(), period)
        self._cb = callback
        if self not in _timers:
            _timers.append(self)

    def deinit(self):
        if self in _timers:
            _timers.remove(self)


def _service_timers():
    if not _timers:
        return
    import micropython
    now = time.ticks_ms()
    for t in list(_timers):
        if time.ticks_diff(now, t._due) >= 0:
            if t._mode == Timer.PERIODIC:
                t._due = time.ticks_add(t._due, t._period or 1)
            else:
                _timers.remove(t)
            if t._cb is not None:
                micropython.schedule(t._cb, t)


def freq(*hz):
    if hz:
        return None
    return _CPU_HZ


def unique_id():
    return b"\xe6\x61\x41\x04\x03\x2f\x5d\x2c" if _RP2 else b"\x24\x0a\xc4\x12\x34\x56"


def idle():
    time.sleep_us(100)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def reset():
    raise SystemExit(EXIT_HARD_RESET)


def soft_reset():
    raise SystemExit(EXIT_SOFT_RESET)


def reset_cause():
    return 1  # PWRON_RESET


PWRON_RESET = 1
WDT_RESET = 3
