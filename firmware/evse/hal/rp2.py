# RP2040 (Raspberry Pi Pico) hardware. Pins and calibration come from boards/rp2040-pico.json:
#   guns[].pins  pilot_pwm, pilot_adc (GPIO numbers); pp_mux, ct_mux, ntc_mux (CD4051 channels);
#                contactor, feedback, rcd_fault, rcd_test (GPIO numbers)
#   pins         mux_adc (the ADC the CD4051 common output drives), mux_select [A, B, C]
#   adc          vref_mv, pilot_gain, pilot_offset_mv, pp_pullup_ohm, ct_a_per_mv, ct_offset_mv,
#                ntc {r25_ohm, beta, pullup_ohm}
#   uart         {name: {index, tx, rx, de}}; de = RS-485 driver enable, high while sending
# The pilot front end is non-inverting: PWM output high = +12 V, low = -12 V, and the ADC sees
# pilot_mv * pilot_gain + pilot_offset_mv. The relay and RCM wiring is described at each method.
# GP2 and GP3 are the A and B outputs of PWM slice 1: they share its 1 kHz frequency, each
# has its own duty.
import math
import time
from array import array

from machine import ADC, PWM, UART, WDT, Pin
from micropython import const

from evse.hal import Base

PILOT_HZ = const(1000)  # IEC 61851-1 Table A.7: pilot PWM 1 kHz
_U16_MAX = const(65535)
_DUTY_FULL_PM = const(1000)
# A pilot sample is a burst of ADC reads 18 us apart: 64 reads span 1.13 ms, more than one 1 kHz
# period, so both plateaus are in it whatever the phase. A 10 % duty (6 A) is 100 us high: about
# 5 reads. The 2nd highest / 2nd lowest read is the plateau: one spike or edge read is ignored.
_BURST = const(64)
_STEP_US = const(18)
_STEADY_READS = const(8)  # no PWM: the level is steady, average a few reads
_AVG_READS = const(16)  # PP, CT, NTC: slow signals, averaged
_MUX_SETTLE_US = const(20)  # CD4051 switch plus the RC at its output settle before the ADC samples
_PP_OPEN_OHMS = const(100000)  # PP open (no cable): reported as this many ohms, outside every band
_RCD_TRIP_MS = const(40)  # RCM self-test: fault output must rise within this after the test input
_RCD_RELEASE_MS = const(100)  # ... and fall within this after the test input is released
_WDT_MAX_MS = const(8388)  # RP2040 watchdog counter limit
# A broken, shorted or missing temperature sensor reads as this, above every derate step and
# stop level, so the gun stops (fail safe) and the console shows an impossible temperature.
SENSOR_FAULT_C = 200.0
_NTC_MIN_C = const(-40)
_NTC_MAX_C = const(150)


def _need(section, key, where):
    try:
        return section[key]
    except KeyError:
        raise ValueError('board file: %s has no "%s"; add it (see boards/rp2040-pico.json)' % (where, key))


def divider_ohms(mv, vref_mv, pullup_ohm):  # type: (int, int, int) -> int
    """Resistance to ground under a pull-up to vref, from the midpoint voltage; open = _PP_OPEN_OHMS."""
    if mv >= vref_mv:
        return _PP_OPEN_OHMS
    if mv <= 0:
        return 0
    ohms = pullup_ohm * mv // (vref_mv - mv)
    return ohms if ohms < _PP_OPEN_OHMS else _PP_OPEN_OHMS


def ntc_celsius(ohms, r25_ohm, beta):  # type: (float, float, float) -> float
    """Beta equation of an NTC thermistor."""
    return 1.0 / (1.0 / 298.15 + math.log(ohms / r25_ohm) / beta) - 273.15


class Rs485:
    """A UART behind an RS-485 transceiver: DE is high only while this side sends, so the
    meter's answer is received (Modbus RTU is half duplex). Reads go straight to the UART."""

    def __init__(self, uart, de):
        self.uart = uart
        self._de = de

    def write(self, buf):
        self._de.value(1)
        try:
            n = self.uart.write(buf)
            self.uart.flush()  # returns once the last stop bit has left the shift register
        finally:
            self._de.value(0)
        return n

    def read(self, nbytes=-1):
        return self.uart.read() if nbytes < 0 else self.uart.read(nbytes)

    def readinto(self, buf):
        return self.uart.readinto(buf)

    def readline(self):
        return self.uart.readline()

    def any(self):
        return self.uart.any()

    def deinit(self):
        self._de.value(0)
        self.uart.deinit()


class Hal(Base):
    def __init__(self, board):
        Base.__init__(self, board)
        cal = _need(board, "adc", "the board")
        self._vref_mv = _need(cal, "vref_mv", "adc")
        self._pilot_offset_mv = _need(cal, "pilot_offset_mv", "adc")
        self._pilot_gain_e4 = int(_need(cal, "pilot_gain", "adc") * 10000 + 0.5)
        self._pp_pullup_ohm = _need(cal, "pp_pullup_ohm", "adc")
        self._ct_a_per_mv = _need(cal, "ct_a_per_mv", "adc")
        self._ct_offset_mv = _need(cal, "ct_offset_mv", "adc")
        ntc = _need(cal, "ntc", "adc")
        self._ntc_r25_ohm = _need(ntc, "r25_ohm", "adc.ntc")
        self._ntc_beta = _need(ntc, "beta", "adc.ntc")
        self._ntc_pullup_ohm = _need(ntc, "pullup_ohm", "adc.ntc")
        self._buf = array("H", [0] * _BURST)  # the one pilot sample buffer, reused by every burst

        pins = _need(board, "pins", "the board")
        self._mux_adc = ADC(Pin(_need(pins, "mux_adc", "pins")))
        self._mux_select = [Pin(p, Pin.OUT, value=0) for p in _need(pins, "mux_select", "pins")]

        self._contactor = []  # type: list[Pin]
        self._pwm = []  # type: list[PWM]
        self._duty_pm = []  # type: list[int]
        self._pilot_adc = []  # type: list[ADC]
        self._feedback = []  # type: list[Pin]
        self._rcd_fault = []  # type: list[Pin]
        self._rcd_test = []  # type: list[Pin]
        self._pp_ch = []  # type: list[int]
        self._ct_ch = []  # type: list[int]
        self._ntc_ch = []  # type: list[int]
        for n, gun in enumerate(board["guns"]):
            where = "guns[%d].pins" % n
            p = _need(gun, "pins", "guns[%d]" % n)
            # Coil driver: high = coil energised. Claimed first, low, so no reset leaves it on.
            self._contactor.append(Pin(_need(p, "contactor", where), Pin.OUT, value=0))
            pwm = PWM(Pin(_need(p, "pilot_pwm", where)))
            pwm.freq(PILOT_HZ)
            pwm.duty_u16(0)  # -12 V (state F) until the application offers something
            self._pwm.append(pwm)
            self._duty_pm.append(0)
            self._pilot_adc.append(ADC(Pin(_need(p, "pilot_adc", where))))
            # Mirror contact to ground, internal pull-up: a broken wire reads "open", and a
            # contactor that never reports closed stops the charge.
            self._feedback.append(Pin(_need(p, "feedback", where), Pin.IN, Pin.PULL_UP))
            # RCM fault output, high = tripped; the pull-up makes a broken wire read tripped.
            self._rcd_fault.append(Pin(_need(p, "rcd_fault", where), Pin.IN, Pin.PULL_UP))
            self._rcd_test.append(Pin(_need(p, "rcd_test", where), Pin.OUT, value=0))
            self._pp_ch.append(_need(p, "pp_mux", where) if gun.get("pp", False) else -1)
            self._ct_ch.append(_need(p, "ct_mux", where))
            self._ntc_ch.append(_need(p, "ntc_mux", where))
        self._wdt = None  # type: WDT | None

    def _index(self, gun):  # type: (int) -> int
        i = gun - 1
        if i < 0 or i >= self.guns:
            raise ValueError("gun %d unknown: this board has guns 1..%d" % (gun, self.guns))
        return i

    # ---- pilot ------------------------------------------------------------------------------
    def set_pilot(self, gun, duty_pm):  # type: (int, int) -> None
        i = self._index(gun)
        if duty_pm < 0:
            duty_pm = 0
        elif duty_pm > _DUTY_FULL_PM:
            duty_pm = _DUTY_FULL_PM
        self._duty_pm[i] = duty_pm
        # 1000 per mille = 65535 = output always high (+12 V, no PWM); 0 = always low (-12 V).
        self._pwm[i].duty_u16(duty_pm * _U16_MAX // _DUTY_FULL_PM)

    def _pilot_mv(self, raw):  # type: (int) -> int
        adc_mv = raw * self._vref_mv // _U16_MAX
        return (adc_mv - self._pilot_offset_mv) * 10000 // self._pilot_gain_e4

    def sample_pilot(self, gun):  # type: (int) -> tuple[int, int]
        i = self._index(gun)
        adc = self._pilot_adc[i]
        duty = self._duty_pm[i]
        if duty <= 0 or duty >= _DUTY_FULL_PM:
            total = 0
            for k in range(_STEADY_READS):
                total += adc.read_u16()
            mv = self._pilot_mv(total // _STEADY_READS)
            return mv, mv
        # Paced burst: read k is due at t0 + k * _STEP_US. No allocation in here.
        buf = self._buf
        t0 = time.ticks_us()
        for k in range(_BURST):
            wait_us = time.ticks_diff(time.ticks_add(t0, k * _STEP_US), time.ticks_us())
            if wait_us > 0:
                time.sleep_us(wait_us)
            buf[k] = adc.read_u16()
        hi1 = hi2 = 0
        lo1 = lo2 = _U16_MAX
        for k in range(_BURST):
            v = buf[k]
            if v > hi1:
                hi2 = hi1
                hi1 = v
            elif v > hi2:
                hi2 = v
            if v < lo1:
                lo2 = lo1
                lo1 = v
            elif v < lo2:
                lo2 = v
        return self._pilot_mv(hi2), self._pilot_mv(lo2)

    # ---- analog multiplexer: PP, CT, NTC ------------------------------------------------------
    def _mux_mv(self, channel):  # type: (int) -> int
        sel = self._mux_select
        for bit in range(len(sel)):
            sel[bit].value((channel >> bit) & 1)
        time.sleep_us(_MUX_SETTLE_US)
        total = 0
        for k in range(_AVG_READS):
            total += self._mux_adc.read_u16()
        return total // _AVG_READS * self._vref_mv // _U16_MAX

    def proximity_ohms(self, gun):  # type: (int) -> int | None
        ch = self._pp_ch[self._index(gun)]
        if ch < 0:
            return None
        # PP-PE resistor to ground, pp_pullup_ohm to vref (IEC 61851-1 Annex B.2).
        return divider_ohms(self._mux_mv(ch), self._vref_mv, self._pp_pullup_ohm)

    def current_a(self, gun):  # type: (int) -> float
        # The CT front end outputs a DC level proportional to the highest phase's RMS current.
        mv = self._mux_mv(self._ct_ch[self._index(gun)])
        amps = (mv - self._ct_offset_mv) * self._ct_a_per_mv
        return amps if amps > 0 else 0.0

    def temperature_c(self, gun):  # type: (int) -> float
        # NTC to ground, ntc.pullup_ohm to vref.
        mv = self._mux_mv(self._ntc_ch[self._index(gun)])
        if mv <= 0 or mv >= self._vref_mv:
            return SENSOR_FAULT_C  # shorted or open sensor
        ohms = self._ntc_pullup_ohm * mv / (self._vref_mv - mv)
        c = ntc_celsius(ohms, self._ntc_r25_ohm, self._ntc_beta)
        if c < _NTC_MIN_C or c > _NTC_MAX_C:
            return SENSOR_FAULT_C
        return c

    # ---- contactor and RCD --------------------------------------------------------------------
    def set_contactor(self, gun, closed):  # type: (int, bool) -> None
        self._contactor[self._index(gun)].value(1 if closed else 0)

    def contactor_feedback(self, gun):  # type: (int) -> bool
        return self._feedback[self._index(gun)].value() == 0  # mirror contact closed pulls low

    def rcd_tripped(self, gun):  # type: (int) -> bool
        return self._rcd_fault[self._index(gun)].value() == 1

    def _wait_level(self, pin, level, timeout_ms):  # type: (Pin, int, int) -> bool
        t0 = time.ticks_ms()
        while pin.value() != level:
            if time.ticks_diff(time.ticks_ms(), t0) >= timeout_ms:
                return False
            time.sleep_ms(1)
        return True

    def rcd_self_test(self, gun):  # type: (int) -> bool
        """The RCM's test input injects a test current: its fault output must rise within 40 ms
        and fall again within 100 ms of releasing the test. Blocks for at most 140 ms."""
        i = self._index(gun)
        fault = self._rcd_fault[i]
        test = self._rcd_test[i]
        if fault.value():
            return False  # already tripped: the test would prove nothing
        test.value(1)
        try:
            tripped = self._wait_level(fault, 1, _RCD_TRIP_MS)
        finally:
            test.value(0)
        return tripped and self._wait_level(fault, 0, _RCD_RELEASE_MS)

    def rcd_reset(self, gun):  # type: (int) -> None
        # The RCM's fault output is not latching: it falls by itself once the residual current
        # is gone. The latch is the gun's RCD fault (cleared after fault_retry_s), so no pulse is
        # sent; only the test input is released, in case a self-test was cut short. A module
        # that latches and resets on a test-input pulse would need that pulse here.
        self._rcd_test[self._index(gun)].value(0)

    # ---- board wide ---------------------------------------------------------------------------
    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):  # type: (int) -> None
        time.sleep_ms(ms)

    def watchdog_start(self, timeout_ms):  # type: (int) -> None
        if timeout_ms > _WDT_MAX_MS:
            raise ValueError("watchdog_ms %d is too long: the RP2040 watchdog allows at most %d ms"
                             % (timeout_ms, _WDT_MAX_MS))
        self._wdt = WDT(timeout=timeout_ms)

    def watchdog_feed(self):  # type: () -> None
        if self._wdt is not None:
            self._wdt.feed()

    def uart(self, index, baudrate):
        uarts = self.board.get("uart", {})
        for name in uarts:
            cfg = uarts[name]
            if cfg.get("index") == index:
                port = UART(index, baudrate=baudrate, tx=Pin(cfg["tx"]), rx=Pin(cfg["rx"]))
                if "de" in cfg:
                    return Rs485(port, Pin(cfg["de"], Pin.OUT, value=0))
                return port
        raise ValueError('board has no UART %d: add it to the board\'s "uart" section '
                         "with index, tx, rx (and de for RS-485)" % index)

    def network_up(self):  # type: () -> bool
        # The plain Pico has no network. A Pico W variant would return
        # network.WLAN(network.STA_IF).isconnected(), as the ESP32 HAL does.
        return False

    def deinit(self):
        self.safe()
