# RP2040 (Raspberry Pi Pico) hardware. Pins and calibration come from boards/rp2040-pico.json:
#   guns[].pins  pilot_pwm, pilot_adc (GPIO numbers); pp_mux, ct_mux, ntc_mux (CD4051 channels);
#                contactor, feedback, rcd_fault, rcd_test (GPIO numbers)
#   pins         mux_adc (the ADC the CD4051 common output drives), mux_select [A, B, C]
#   adc          vref_mv, pilot_gain, pilot_offset_mv, pp_pullup_ohm, ct_a_per_mv, ct_offset_mv,
#                ntc {r25_ohm, beta, pullup_ohm}
#   uart         {name: {index, tx, rx, de}}; de = RS-485 driver enable, high while sending
# What the ports share (pilot, PP, CT, contactor, RCM, watchdog, UART) is in evse.hal.mcu.
# GP2 and GP3 are the A and B outputs of PWM slice 1: they share its 1 kHz frequency, each
# has its own duty.
import math
import time

from machine import ADC, Pin
from micropython import const

from evse.hal.mcu import SENSOR_FAULT_C, McuHal

_U16_MAX = const(65535)
_MUX_SETTLE_US = const(20)  # CD4051 switch plus the RC at its output settle before the ADC samples
_WDT_MAX_MS = const(8388)  # RP2040 watchdog counter limit
_NTC_MIN_C = const(-40)
_NTC_MAX_C = const(150)


def ntc_celsius(ohms, r25_ohm, beta):  # type: (float, float, float) -> float
    """Beta equation of an NTC thermistor."""
    return 1.0 / (1.0 / 298.15 + math.log(ohms / r25_ohm) / beta) - 273.15


class Hal(McuHal):
    BOARD_EXAMPLE = "boards/rp2040-pico.json"

    def __init__(self, board):
        # A reading is raw read_u16 counts, scaled to mV once per result, not once per read;
        # ADC.read_u16 itself is the read function, so the pilot burst adds no call per read.
        McuHal.__init__(self, board, ADC.read_u16)
        ntc = self._need(board["adc"], "ntc", "adc")
        self._ntc_r25_ohm = self._need(ntc, "r25_ohm", "adc.ntc")
        self._ntc_beta = self._need(ntc, "beta", "adc.ntc")
        self._ntc_pullup_ohm = self._need(ntc, "pullup_ohm", "adc.ntc")

        pins = self._need(board, "pins", "the board")
        self._mux_adc = self._claim(pins, "mux_adc", "pins", self._adc)
        select = self._need(pins, "mux_select", "pins")
        self._mux_select = [self._claim(select, k, "pins.mux_select", lambda g: Pin(g, Pin.OUT, value=0))
                            for k in range(len(select))]

        self._pp_ch = []  # type: list[int]
        self._ct_ch = []  # type: list[int]
        self._ntc_ch = []  # type: list[int]
        self._claim_guns()

    def _adc(self, pin):  # type: (int) -> ADC
        return ADC(Pin(pin))

    def _claim_gun_analog(self, gun, pins, where):  # type: (dict, dict, str) -> None
        self._pp_ch.append(self._need(pins, "pp_mux", where) if gun.get("pp", False) else -1)
        self._ct_ch.append(self._need(pins, "ct_mux", where))
        self._ntc_ch.append(self._need(pins, "ntc_mux", where))

    def _reading_mv(self, reading):  # type: (int) -> int
        return reading * self._vref_mv // _U16_MAX

    # ---- analog multiplexer: PP, CT, NTC ------------------------------------------------------
    def _mux_mv(self, channel):  # type: (int) -> int
        sel = self._mux_select
        for bit in range(len(sel)):
            sel[bit].value((channel >> bit) & 1)
        time.sleep_us(_MUX_SETTLE_US)
        return self._average_mv(self._mux_adc)

    def _pp_mv(self, i):  # type: (int) -> int | None
        ch = self._pp_ch[i]
        return None if ch < 0 else self._mux_mv(ch)

    def _ct_mv(self, i):  # type: (int) -> int
        return self._mux_mv(self._ct_ch[i])

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

    # ---- board wide ---------------------------------------------------------------------------
    def watchdog_start(self, timeout_ms):  # type: (int) -> None
        if timeout_ms > _WDT_MAX_MS:
            raise ValueError("watchdog_ms %d is too long: the RP2040 watchdog allows at most %d ms"
                             % (timeout_ms, _WDT_MAX_MS))
        McuHal.watchdog_start(self, timeout_ms)

    def network_up(self):  # type: () -> bool
        # The plain Pico has no network. A Pico W variant would return
        # network.WLAN(network.STA_IF).isconnected(), as the ESP32 HAL does.
        return False
