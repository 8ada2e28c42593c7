# ESP32 (ESP32-DevKitC) hardware. Pins and calibration come from boards/esp32-devkitc.json:
#   guns[].pins  pilot_pwm, pilot_adc, pp_adc, ct_adc, contactor, feedback, rcd_fault, rcd_test
#   pins         onewire: the 1-Wire bus of the DS18B20 connector sensors (Nth found = gun N)
#   adc          vref_mv, pilot_gain, pilot_offset_mv, pp_pullup_ohm, ct_a_per_mv, ct_offset_mv
#   uart         {name: {index, tx, rx, de}}; de = RS-485 driver enable, high while sending
#   can          {name: {index, chip "mcp2515", spi (1 or 2), sck, mosi, miso, cs, crystal_hz[, bitrate]}}:
#                the CAN bus's MCP2515 on machine.SPI spi, chip select cs (optional: a DC cabinet)
#   secc         {uart, baud}: the EV's communication controller (an SECC module) on the "uart"
#                entry of that index (no de), baud 115200 unless given (optional: a DC board's
#                ev_comm / ev_report, docs/secc-link.md)
#   guns[].dc_v  {pin, v_per_mv, offset_mv}: the voltage at a DC gun, an isolated measurement into
#                an ADC1 GPIO; volts = (mV - offset_mv) * v_per_mv
# What the ports share is in evse.hal.mcu (pilot, PP, CT, contactor, RCM, watchdog, UART) and
# evse.hal.mcu_dc (CAN, SECC, the gun voltage: loaded on a board that has them).
# Every analog input is on ADC1 (ADC2 is unusable while WiFi runs) at 11 dB attenuation, whose
# linear range is about 150-2450 mV: the front ends are scaled into it.
# The pilot PWM uses LEDC; both guns run at 1 kHz and share one LEDC timer.
import time

import ds18x20
import onewire
from machine import ADC, Pin
from micropython import const

from evse.hal.mcu import SENSOR_FAULT_C, McuHal
from evse.hal.wlan import Station

_U16_MAX = const(65535)
_DS_CONVERT_MS = const(750)  # DS18B20 12-bit conversion time (datasheet)
_DS_MISSES = const(3)  # failed sensor reads in a row before the temperature reads as a fault


class Hal(McuHal):
    BOARD_EXAMPLE = "boards/esp32-devkitc.json"

    def __init__(self, board):
        # A reading is mV at the ADC pin, converted at every read: read_uv's microvolts would not
        # fit the 16-bit pilot sample buffer.
        McuHal.__init__(self, board, self._read_mv)
        # read_uv() applies the chip's eFuse calibration; without it read_u16 is scaled to vref.
        self._uv = hasattr(ADC, "read_uv")
        self._pp_adc = []  # type: list[ADC | None]
        self._ct_adc = []  # type: list[ADC]
        self._claim_guns()

        # DS18B20 connector sensors: the Nth sensor found on the bus belongs to gun N.
        pins = self._need(board, "pins", "the board")
        self._ds = ds18x20.DS18X20(onewire.OneWire(self._claim(pins, "onewire", "pins", Pin)))
        self._claimed()
        self._roms = self._ds.scan()
        self._temp_c = [SENSOR_FAULT_C] * self.guns
        self._temp_misses = [_DS_MISSES] * self.guns
        # The first conversion is waited for once, at boot; later calls never block on one.
        self._ds_convert()
        time.sleep_ms(_DS_CONVERT_MS)
        self._ds_refresh()
        self._ds_started_ms = self._ds_convert()
        self._station = Station()

    def _adc(self, pin):  # type: (int) -> ADC
        return ADC(Pin(pin), atten=ADC.ATTN_11DB)

    def _claim_gun_analog(self, gun, pins, where):  # type: (dict, dict, str) -> None
        self._pp_adc.append(self._claim(pins, "pp_adc", where, self._adc) if gun.get("pp", False) else None)
        self._ct_adc.append(self._claim(pins, "ct_adc", where, self._adc))

    def _read_mv(self, adc):  # type: (ADC) -> int
        if self._uv:
            return adc.read_uv() // 1000
        return adc.read_u16() * self._vref_mv // _U16_MAX

    def _reading_mv(self, reading):  # type: (int) -> int
        return reading  # _read_mv already gives mV

    # ---- PP, CT, temperature ------------------------------------------------------------------
    def _pp_mv(self, i):  # type: (int) -> int | None
        adc = self._pp_adc[i]
        return None if adc is None else self._average_mv(adc)

    def _ct_mv(self, i):  # type: (int) -> int
        return self._average_mv(self._ct_adc[i])

    def _ds_convert(self):
        try:
            self._ds.convert_temp()  # all sensors at once (SKIP ROM); returns at once
        except Exception:
            pass  # no sensor answered: the reads that follow fail and count as misses
        return time.ticks_ms()

    def _ds_refresh(self):  # type: () -> None
        for i in range(self.guns):
            try:
                self._temp_c[i] = self._ds.read_temp(self._roms[i])
                self._temp_misses[i] = 0
            except Exception:  # missing sensor (IndexError), no answer, CRC error
                if self._temp_misses[i] < _DS_MISSES:
                    self._temp_misses[i] += 1

    def temperature_c(self, gun):  # type: (int) -> float
        i = self._index(gun)
        # Read the conversion started at the last refresh, once it is done, and start the next.
        if time.ticks_diff(time.ticks_ms(), self._ds_started_ms) >= _DS_CONVERT_MS:
            self._ds_refresh()
            self._ds_started_ms = self._ds_convert()
        if self._temp_misses[i] >= _DS_MISSES:
            return SENSOR_FAULT_C
        return self._temp_c[i]

    # ---- board wide ---------------------------------------------------------------------------
    def network_up(self):  # type: () -> bool
        return self._station.up()
