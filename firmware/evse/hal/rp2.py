# RP2040 (Raspberry Pi Pico) hardware. Pins and calibration come from boards/rp2040-pico.json:
#   guns[].pins  pilot_pwm, pilot_adc (GPIO numbers); pp_mux, ct_mux, ntc_mux (CD4051 channels);
#                contactor, feedback, rcd_fault, rcd_test (GPIO numbers)
#   pins         mux_adc (the ADC the CD4051 common output drives), mux_select [A, B, C]
#   adc          vref_mv, pilot_gain, pilot_offset_mv, pp_pullup_ohm, ct_a_per_mv, ct_offset_mv,
#                ntc {r25_ohm, beta, pullup_ohm}
#   uart         {name: {index, tx, rx, de}}; de = RS-485 driver enable, high while sending
#   can          {name: {index, chip "mcp2515", spi (0 or 1), sck, mosi, miso, cs, crystal_hz[, bitrate]}}:
#                the CAN bus's MCP2515 on machine.SPI spi, chip select cs (optional: a DC cabinet)
#   secc         {uart, baud}: the EV's communication controller (an SECC module) on the "uart"
#                entry of that index (no de), baud 115200 unless given (optional: a DC board's
#                ev_comm / ev_report, docs/secc-link.md)
#   guns[].dc_v  {pin | mux, v_per_mv, offset_mv}: the voltage at a DC gun, an isolated measurement
#                into an ADC GPIO (pin) or a CD4051 channel (mux); volts = (mV - offset_mv) * v_per_mv
# What the ports share is in evse.hal.mcu (pilot, PP, CT, contactor, RCM, watchdog, UART) and
# evse.hal.mcu_dc (CAN, SECC, the gun voltage: loaded on a board that has them).
# GP2 and GP3 are the A and B outputs of PWM slice 1: they share its 1 kHz frequency, each
# has its own duty.
#
# The pilot is sampled in step with its PWM: the slice's counter (CTR) says where in the period
# the output is, so one ADC read in the middle of each plateau does what the shared burst of 64
# reads does (mcu.py), at a fifth of the CPU: with two guns that burst took 15 ms of an
# RP2040's 20 ms tick. The registers are the RP2040's (datasheet 4.5.3, 2.20 SYSINFO); on another chip, or a
# plateau too short to aim at, the burst is used.
import math
import time
from array import array  # noqa: F401  (what sample_pilot returns)

from machine import ADC, Pin
from micropython import const

from evse.hal.mcu import SENSOR_FAULT_C, McuHal

try:
    from machine import mem32
except ImportError:   # a `machine` without registers (tests/fakes): the burst
    mem32 = None

_U16_MAX = const(65535)
_MUX_SETTLE_US = const(20)  # CD4051 switch plus the RC at its output settle before the ADC samples
_WDT_MAX_MS = const(8388)  # RP2040 watchdog counter limit
_NTC_MIN_C = const(-40)
_NTC_MAX_C = const(150)
_SYSINFO_CHIP_ID = const(0x40000000)
_RP2040_PART = const(2)          # CHIP_ID bits 27:12
_PWM_BASE = const(0x40050000)
_PWM_SLICE = const(0x14)         # each slice: CSR, DIV, CTR (+8), CC (+12), TOP (+16)
_PERIOD_US = const(1000)        # mcu.PILOT_HZ: 1 kHz
_DUTY_FULL_PM = const(1000)      # as mcu.py: 1000 per mille = always high
# A read this close to an edge is not taken: the front end's slew and settling, and the ADC's
# 2 us conversion. A plateau shorter than _SYNC_MIN_US (a 5 % duty is 50 us) takes the burst:
# the counter reads around an ADC read span tens of us at RP2040 speed.
_EDGE_US = const(15)
_SYNC_MIN_US = const(90)
_SYNC_TRIES = const(8)           # reads aimed at the plateaus before the burst is used instead


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
        self._claimed()
        self._station = None
        if board.get("network", {}).get("kind") == "wlan":
            try:
                from evse.hal.wlan import Station   # the plain Pico's port has no network module
            except ImportError:
                raise ValueError("the board file has a WLAN (network kind wlan) and this MicroPython has no "
                                 "network module: install the RPI_PICO_W build (evsectl install-micropython)")
            self._station = Station()
        # Per gun: its slice's registers, whether it is channel B, and the compare level and
        # counter span its last set_pilot left (read back from the slice).
        self._synced = mem32 is not None and (mem32[_SYSINFO_CHIP_ID] >> 12) & 0xFFFF == _RP2040_PART
        # The addresses are above 2^30, not small ints on the chip: made once, not per sample.
        self._ctr_reg = []  # type: list[int]
        self._cc_reg = []  # type: list[int]
        self._top_reg = []  # type: list[int]
        self._channel_b = []  # type: list[bool]
        for gun in board["guns"]:
            gpio = gun["pins"]["pilot_pwm"]
            base = _PWM_BASE + ((gpio >> 1) & 7) * _PWM_SLICE
            self._ctr_reg.append(base + 8)
            self._cc_reg.append(base + 12)
            self._top_reg.append(base + 16)
            self._channel_b.append(gpio & 1 == 1)
        self._cc = [0] * len(self._ctr_reg)
        self._span = [1] * len(self._ctr_reg)
        # How late a read comes after the sleep that aims it (the sleep's own latency and the
        # bytecode between), in counter steps: learnt from each aimed read, aimed that much earlier.
        self._lead = 0

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

    def _dc_v_input(self, cfg, where):  # type: (dict, str) -> object
        # The Pico's three ADC pins are the pilots' and the mux's: the gun voltage may be a channel.
        if "mux" not in cfg:
            return McuHal._dc_v_input(self, cfg, where)
        ch = cfg["mux"]
        if not isinstance(ch, int) or not 0 <= ch <= 7:
            raise ValueError("board file: %s.mux = %r: a CD4051 channel is 0..7 (see %s)"
                             % (where, ch, self.BOARD_EXAMPLE))
        return ch

    def _dc_v_mv(self, source):  # type: (object) -> int
        return self._mux_mv(source) if isinstance(source, int) else McuHal._dc_v_mv(self, source)

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

    # ---- pilot, in step with the PWM --------------------------------------------------------------
    def set_pilot(self, gun, duty_pm):  # type: (int, int) -> None
        McuHal.set_pilot(self, gun, duty_pm)
        i = self._index(gun)
        if self._synced:
            cc = mem32[self._cc_reg[i]]
            self._cc[i] = (cc >> 16) & 0xFFFF if self._channel_b[i] else cc & 0xFFFF
            self._span[i] = (mem32[self._top_reg[i]] & 0xFFFF) + 1

    def sample_pilot(self, gun):  # type: (int) -> array
        i = self._index(gun)
        self._settle(i)
        duty = self._duty_pm[i]
        span = self._span[i]
        cc = self._cc[i]
        short = span * _SYNC_MIN_US // _PERIOD_US
        if not self._synced or duty <= 0 or duty >= _DUTY_FULL_PM or cc < short or span - cc < short:
            return McuHal.sample_pilot(self, gun)
        edge = span * _EDGE_US // _PERIOD_US
        ctr = self._ctr_reg[i]
        adc = self._pilot_adc[i]
        read = self._read
        mem = mem32
        high = low = aim = -1
        half = span >> 1
        for k in range(_SYNC_TRIES):
            # Taken only if the counter says the output was on one plateau, away from its edges,
            # from before the read until after it, with no wrap between: less than half a period
            # passed (a stall of whole periods would leave the counts in order).
            start = time.ticks_us()
            before = mem[ctr]
            v = read(adc)
            after = mem[ctr]
            if time.ticks_diff(time.ticks_us(), start) >= _PERIOD_US >> 1:
                after = -1
            if aim >= 0:
                lead = self._lead + (((before - aim + half) % span - half) >> 1)
                self._lead = 0 if lead < 0 else lead if lead < half >> 1 else half >> 1
            if before <= after:
                if before >= edge and after + edge <= cc:
                    high = v
                elif before >= cc + edge and after + edge <= span:
                    low = v
            if high >= 0 and low >= 0:
                out = self._sample
                out[0] = self._pilot_mv(high)
                out[1] = self._pilot_mv(low)
                return out
            if k == _SYNC_TRIES - 1:
                break
            # To the middle of the plateau still missing.
            aim = cc >> 1 if high < 0 else (cc + span) >> 1
            time.sleep_us((aim - self._lead - mem[ctr]) % span * _PERIOD_US // span)
        return McuHal.sample_pilot(self, gun)   # never in step (interrupts): the burst finds them

    # ---- board wide ---------------------------------------------------------------------------
    def watchdog_start(self, timeout_ms):  # type: (int) -> None
        if timeout_ms > _WDT_MAX_MS:
            raise ValueError("watchdog_ms %d is too long: the RP2040 watchdog allows at most %d ms"
                             % (timeout_ms, _WDT_MAX_MS))
        McuHal.watchdog_start(self, timeout_ms)

    def network_up(self):  # type: () -> bool
        # The plain Pico has no network; a Pico W (board network kind "wlan") its CYW43's WLAN.
        if self._station is None:
            return False
        return self._station.up()
