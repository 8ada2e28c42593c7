# What the RP2040 and ESP32 HALs share: pilot PWM and burst sampling, PP divider and CT scaling,
# contactor and mirror contact, RCM self-test, watchdog, RS-485 UARTs, gun numbers; the DC parts
# (the CAN bus's MCP2515 on SPI, the SECC link, a gun's voltage) through evse/hal/mcu_dc.py.
# The pilot front end is non-inverting: PWM output high = +12 V, low = -12 V, and the ADC sees
# pilot_mv * pilot_gain + pilot_offset_mv. The relay and RCM wiring is described at each method.
import time
from array import array

from machine import ADC, PWM, UART, WDT, Pin
from micropython import const

from evse.hal import Base

TYPE_CHECKING = const(0)   # mypy takes this name as true: the types of modules imported when used
if TYPE_CHECKING:
    from typing import Callable

    from evse.hal.secc import Link

PILOT_HZ = const(1000)  # IEC 61851-1 Table A.7: pilot PWM 1 kHz
_U16_MAX = const(65535)
_DUTY_FULL_PM = const(1000)
# A pilot sample is a burst of ADC reads paced 18 us apart (slower if a read takes longer): 64
# reads span 1.13 ms, more than one 1 kHz period, so both plateaus are in it whatever the phase.
# A 10 % duty (6 A) is 100 us high: about 5 reads. The 2nd highest / 2nd lowest read is the
# plateau: one spike or edge read is ignored.
_BURST = const(64)
_STEP_US = const(18)
_DIGITAL_PM = const(60)   # a duty this short (5 %: digital communication) has a plateau of two or three reads
_STEADY_READS = const(8)  # no PWM: the level is steady, average a few reads
_LOW_MISSED_MV = const(1500)   # a PWM's low plateau read above this: the burst missed it
_SETTLE_US = const(2000)  # two 1 kHz periods: a new duty is on the pin by then
_AVG_READS = const(16)  # PP, CT, NTC: slow signals, averaged
_PP_OPEN_OHMS = const(100000)  # PP open (no cable): reported as this many ohms, outside every band
_RCD_TRIP_MS = const(40)  # RCM self-test: fault output must rise within this after the test input
_RCD_RELEASE_MS = const(100)  # ... and fall within this after the test input is released
# RCM self-test phase of a gun. The test runs across calls of rcd_test_result, never inside one.
_RCD_IDLE = const(0)  # no test started
_RCD_TRIP = const(1)  # test input high, waiting for the fault output to rise
_RCD_RELEASE = const(2)  # test input released, waiting for the fault output to fall
_RCD_PASSED = const(3)
_RCD_FAILED = const(4)
# A broken, shorted or missing temperature sensor reads as this, above every derate step and
# stop level, so the gun stops (fail safe) and the console shows an impossible temperature.
SENSOR_FAULT_C = 200.0
SENSOR_FAULT_A = 9999.0   # a current sensor that reads as dead (current_a)
_HALL_MV = const(1000)    # a current sensor whose zero is at least this high is a bidirectional Hall sensor


def divider_ohms(mv, vref_mv, pullup_ohm):  # type: (int, int, int) -> int
    """Resistance to ground under a pull-up to vref, from the midpoint voltage; open = _PP_OPEN_OHMS."""
    if mv >= vref_mv:
        return _PP_OPEN_OHMS
    if mv <= 0:
        return 0
    ohms = pullup_ohm * mv // (vref_mv - mv)
    return ohms if ohms < _PP_OPEN_OHMS else _PP_OPEN_OHMS


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
            self.uart.flush()  # returns once the last stop bit has left the transmitter
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


class McuHal(Base):
    """A board with GPIO, PWM and ADC pins per gun. The port subclass provides:
      BOARD_EXAMPLE          the board file that error messages point to
      read                   (to __init__) a function of an ADC giving one reading, in the
                             port's unit; the pilot burst calls it 64 times, so not a method
      _reading_mv(reading)   a reading, or a mean of readings, as mV at the ADC pin
      _adc(pin)              the ADC on that GPIO
      _claim_gun_analog(gun, pins, where)   the gun's PP and CT inputs, after its pilot ADC
      _pp_mv(i), _ct_mv(i)   PP (None without a PP line) and CT level of gun index i, in mV
      temperature_c(gun), network_up()
    and calls _claim_guns() from its __init__ once its board-wide pins are claimed."""

    BOARD_EXAMPLE = ""

    def __init__(self, board, read):
        Base.__init__(self, board)
        cal = self._need(board, "adc", "the board")
        self._vref_mv = self._need(cal, "vref_mv", "adc")
        self._pilot_offset_mv = self._need(cal, "pilot_offset_mv", "adc")
        self._pilot_gain_e4 = int(self._need(cal, "pilot_gain", "adc") * 10000 + 0.5)
        self._pp_pullup_ohm = self._need(cal, "pp_pullup_ohm", "adc")
        self._ct_a_per_mv = self._need(cal, "ct_a_per_mv", "adc")
        self._ct_offset_mv = self._need(cal, "ct_offset_mv", "adc")
        self._read = read
        self._buf = array("H", [0] * _BURST)  # the one pilot sample buffer, reused by every burst
        self._sample = array("i", [0, 0])    # what sample_pilot hands back: high, low plateau (mV)
        self._lo = 0                         # the last burst's low plateau reading
        self._last = [None] * self.guns  # type: list  # per gun: its last good 5 % sample (mcu_dc)
        self._used = {}  # type: dict | None  # GPIO -> the board file key that claimed it
        # The pilot front end must put +12 V and -12 V inside the ADC's range, or A-F blur.
        for level_mv in (12000, -12000):
            at_mv = self._pilot_offset_mv + level_mv * self._pilot_gain_e4 // 10000
            if at_mv <= 0 or at_mv >= self._vref_mv:
                raise ValueError("board file: adc.pilot_gain %s and adc.pilot_offset_mv %s put %+d V at %d mV on the "
                                 "pilot ADC, outside 0..%d mV: the states cannot be told apart; fix them (see %s)"
                                 % (cal["pilot_gain"], self._pilot_offset_mv, level_mv // 1000, at_mv,
                                    self._vref_mv, self.BOARD_EXAMPLE))

        self._contactor = []  # type: list[Pin]
        self._pwm = []  # type: list[PWM]
        self._duty_pm = []  # type: list[int]
        self._set_us = []  # type: list  # ticks_us of each gun's last duty change ...
        self._settling = []  # type: list[bool]  # ... until a read has waited it out
        self._pilot_adc = []  # type: list[ADC]
        self._feedback = []  # type: list[Pin]
        self._rcd_fault = []  # type: list[Pin]
        self._rcd_test = []  # type: list[Pin]
        self._rcd_phase = []  # type: list[int]
        self._rcd_since_ms = []  # type: list  # ticks_ms() when the current test phase began
        self._wdt = None  # type: WDT | None
        self._estop = None  # type: Pin | None
        self._can = {}  # type: dict  # CAN bus index -> its started MCP2515 driver
        self._secc = None  # type: Link | None  # the board file's "secc": the EV's communication
        self._dc_v = []  # type: list  # per gun: (its dc_v ADC or mux channel, v_per_mv, offset_mv) or None

    def _need(self, section, key, where):
        try:
            return section[key]
        except KeyError:
            raise ValueError('board file: %s has no "%s"; add it (see %s)' % (where, key, self.BOARD_EXAMPLE))

    def _claim(self, section, name, where, make):
        """The GPIO the board file gives as section[name], made into a Pin/ADC/PWM by make(gpio).
        A pin named twice, or one the MCU refuses (none such, input only, no ADC), is a ValueError
        naming the key."""
        gpio = self._need(section, name, where)
        key = "%s[%d]" % (where, name) if isinstance(name, int) else "%s.%s" % (where, name)
        used = self._used
        if used is None:   # (_claimed): a claim after start-up is a defect here, not the board file's
            raise ValueError("%s: pins are claimed at start-up only" % key)
        if gpio in used:
            raise ValueError("board file: %s = %s: that GPIO is already %s; give each its own pin (see %s)"
                             % (key, gpio, used[gpio], self.BOARD_EXAMPLE))
        used[gpio] = key
        try:
            return make(gpio)
        except (ValueError, TypeError) as e:
            raise ValueError("board file: %s = %s: the MCU refuses it (%s); see %s" % (key, gpio, e, self.BOARD_EXAMPLE))

    def _claimed(self):  # type: () -> None
        """The board's own pins are claimed. The map that names the claimants stays only for the
        CAN buses' pins, claimed when a bus is first used; elsewhere it goes (about 1 KiB of a
        board's heap)."""
        if not self.board.get("can"):
            self._used = None

    def _claim_guns(self):  # type: () -> None
        for n, gun in enumerate(self.board["guns"]):
            where = "guns[%d].pins" % n
            p = self._need(gun, "pins", "guns[%d]" % n)
            # Coil driver: high = coil energised. Claimed first, low, so no reset leaves it on.
            self._contactor.append(self._claim(p, "contactor", where, lambda g: Pin(g, Pin.OUT, value=0)))
            pwm = self._claim(p, "pilot_pwm", where, lambda g: PWM(Pin(g)))
            pwm.freq(PILOT_HZ)
            pwm.duty_u16(0)  # -12 V (state F) until the application offers something
            self._pwm.append(pwm)
            self._duty_pm.append(0)
            self._set_us.append(0)
            self._settling.append(False)
            self._pilot_adc.append(self._claim(p, "pilot_adc", where, self._adc))
            self._claim_gun_analog(gun, p, where)
            # Mirror contact to ground, internal pull-up: a broken wire reads "open", and a
            # contactor that never reports closed stops the charge.
            self._feedback.append(self._claim(p, "feedback", where, lambda g: Pin(g, Pin.IN, Pin.PULL_UP)))
            # RCM fault output, high = tripped; the pull-up makes a broken wire read tripped.
            self._rcd_fault.append(self._claim(p, "rcd_fault", where, lambda g: Pin(g, Pin.IN, Pin.PULL_UP)))
            self._rcd_test.append(self._claim(p, "rcd_test", where, lambda g: Pin(g, Pin.OUT, value=0)))
            self._rcd_phase.append(_RCD_IDLE)
            self._rcd_since_ms.append(0)
        if self.board.get("estop"):
            # The emergency stop's normally-closed contact to ground, internal pull-up: pressed,
            # or its wire broken, reads high.
            pins = self._need(self.board, "pins", "the board")
            self._estop = self._claim(pins, "estop", "pins", lambda g: Pin(g, Pin.IN, Pin.PULL_UP))
        self._claim_dc()

    def _claim_dc(self):  # type: () -> None
        # A DC gun's voltage input (guns[].dc_v) and the board's SECC link ("secc"): their code
        # (evse/hal/mcu_dc.py) loads on a board that has them, as the CAN bus's does.
        board = self.board
        if board.get("secc") is not None or [g for g in board["guns"] if "dc_v" in g]:
            from evse.hal import mcu_dc
            mcu_dc.claim(self)

    def estop(self):  # type: () -> bool
        return self._estop is not None and self._estop.value() == 1

    # ---- what each port provides ----------------------------------------------------------------
    def _adc(self, pin):  # type: (int) -> ADC
        raise NotImplementedError

    def _claim_gun_analog(self, gun, pins, where):  # type: (dict, dict, str) -> None
        raise NotImplementedError

    def _reading_mv(self, reading):  # type: (int) -> int
        raise NotImplementedError

    def _pp_mv(self, i):  # type: (int) -> int | None
        raise NotImplementedError

    def _ct_mv(self, i):  # type: (int) -> int
        raise NotImplementedError

    def _dc_v_input(self, cfg, where):  # type: (dict, str) -> object
        # The ADC of the isolated voltage measurement's output (an RP2040 may put it on its mux).
        return self._claim(cfg, "pin", where, self._adc)

    def _dc_v_mv(self, source):  # type: (object) -> int
        return self._average_mv(source)  # type: ignore[arg-type]

    def _index(self, gun):  # type: (int) -> int
        i = gun - 1
        if i < 0 or i >= self.guns:
            raise ValueError("gun %d unknown: this board has guns 1..%d" % (gun, self.guns))
        return i

    def _average_mv(self, adc):  # type: (ADC) -> int
        read = self._read
        total = 0
        for k in range(_AVG_READS):
            total += read(adc)
        return self._reading_mv(total // _AVG_READS)

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
        self._set_us[i] = time.ticks_us()
        self._settling[i] = True

    def _settle(self, i):  # type: (int) -> None
        # A PWM takes a new duty at the end of its period (the RP2040's CC and the ESP32's LEDC
        # duty are double-buffered): for up to a period after set_pilot the output keeps the
        # one before. A read that soon waits for it (the control tick samples ~20 ms after a
        # change; calibrate and the feedback check at once). A flag, not the timestamp alone:
        # ticks_us wraps every 2^30 us on the chips.
        if self._settling[i]:
            left = _SETTLE_US - time.ticks_diff(time.ticks_us(), self._set_us[i])
            if 0 < left <= _SETTLE_US:
                time.sleep_us(left)
            self._settling[i] = False

    def _pilot_mv(self, reading):  # type: (int) -> int
        adc_mv = self._reading_mv(reading)
        return (adc_mv - self._pilot_offset_mv) * 10000 // self._pilot_gain_e4

    def sample_pilot(self, gun):  # type: (int) -> array
        # The same two-slot array every call (read it before the next): no tuple per tick.
        i = self._index(gun)
        self._settle(i)
        adc = self._pilot_adc[i]
        read = self._read
        duty = self._duty_pm[i]
        if duty <= 0 or duty >= _DUTY_FULL_PM:
            total = 0
            for k in range(_STEADY_READS):
                total += read(adc)
            mv = self._pilot_mv(total // _STEADY_READS)
            out = self._sample
            out[0] = mv
            out[1] = mv
            return out
        if duty <= _DIGITAL_PM:   # 5 %: a DC gun's (evse/hal/mcu_dc.py)
            from evse.hal import mcu_dc
            return mcu_dc.sample_digital(self, i, adc, read)
        hi = self._burst(adc, read)
        low_mv = self._pilot_mv(self._lo)
        if low_mv > _LOW_MISSED_MV:
            # The low half of a running PWM is the generator's -12 V, or less negative through an
            # EV without its diode, never positive: a low reading over +1.5 V is a burst that saw
            # no low plateau (a stall over it: an interrupt, a flash erase; at 90 % it is 100 us).
            hi = self._burst(adc, read)
            low_mv = self._pilot_mv(self._lo)
        out = self._sample
        out[0] = self._pilot_mv(hi)
        out[1] = low_mv
        return out

    def _burst(self, adc, read):  # type: (ADC, Callable[[ADC], int]) -> int
        """One paced burst of _BURST reads: the high plateau's reading (the 2nd highest read);
        the low one's (the 2nd lowest) into self._lo."""
        # Paced burst: each read is due _STEP_US after the one before was due, or after it was
        # taken if it came late. An interrupt or a flash erase that holds the CPU mid-burst then
        # leaves the remaining reads spread over their 18 us steps; paced from the burst's start
        # they would all come at once, on one plateau. No allocation in here.
        buf = self._buf
        due = time.ticks_us()
        for k in range(_BURST):
            now = time.ticks_us()
            wait_us = time.ticks_diff(due, now)
            if wait_us > 0:
                time.sleep_us(wait_us)
            else:
                due = now
            buf[k] = read(adc)
            due = time.ticks_add(due, _STEP_US)
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
        self._lo = lo2
        return hi2

    def pilot_adc_mv(self, gun):  # type: (int) -> int
        i = self._index(gun)
        self._settle(i)
        adc = self._pilot_adc[i]
        read = self._read
        total = 0
        for k in range(_STEADY_READS):
            total += read(adc)
        return self._reading_mv(total // _STEADY_READS)

    # ---- PP, CT -------------------------------------------------------------------------------
    def proximity_ohms(self, gun):  # type: (int) -> int | None
        mv = self._pp_mv(self._index(gun))
        if mv is None:
            return None
        # PP-PE resistor to ground, pp_pullup_ohm to vref (IEC 61851-1 Annex B.2).
        return divider_ohms(mv, self._vref_mv, self._pp_pullup_ohm)

    def current_a(self, gun):  # type: (int) -> float
        # The CT front end outputs ct_offset_mv plus a DC level proportional to the highest
        # phase's RMS current (an offset keeps zero current inside the ADC's linear range); on a
        # DC board a Hall sensor on the cable, its zero at mid-rail (ct_offset_mv >= _HALL_MV).
        # Such a sensor read far below its zero has lost its supply or its wire: it reads as
        # SENSOR_FAULT_A, above every current limit, so the gun stops (fail safe), not as 0 A.
        i = self._index(gun)
        mv = self._ct_mv(i)
        if self._ct_offset_mv >= _HALL_MV and mv < self._ct_offset_mv // 2:
            return SENSOR_FAULT_A
        amps = (mv - self._ct_offset_mv) * self._ct_a_per_mv
        if amps < 0:
            amps = 0.0
        if self._secc is not None:
            self._secc.present_a[i] = amps   # what the SECC reports as EVSEPresentCurrent
        return amps

    # ---- DC: the EV's communication controller and the voltage at the gun (evse/hal/mcu_dc.py) --
    def ev_comm(self, gun, ev):  # type: (int, object) -> bool
        from evse.hal import mcu_dc
        return mcu_dc.ev_comm(self, gun, ev)

    def ev_report(self, gun, state, isolation):  # type: (int, str, str | None) -> None
        from evse.hal import mcu_dc
        mcu_dc.ev_report(self, gun, state, isolation)

    def dc_voltage(self, gun):  # type: (int) -> float
        from evse.hal import mcu_dc
        return mcu_dc.dc_voltage(self, gun)

    def dc_power(self, gun):  # type: (int) -> float
        # What a DC gun delivers: the voltage at the gun times its current, which the gun's "ct"
        # input measures (on a DC board a Hall sensor on the DC cable, ct_a_per_mv per mV).
        return self.dc_voltage(gun) * self.current_a(gun)

    # ---- contactor and RCD --------------------------------------------------------------------
    def set_contactor(self, gun, closed):  # type: (int, bool) -> None
        self._contactor[self._index(gun)].value(1 if closed else 0)

    def contactor_feedback(self, gun):  # type: (int) -> bool
        return self._feedback[self._index(gun)].value() == 0  # mirror contact closed pulls low

    def rcd_tripped(self, gun):  # type: (int) -> bool
        i = self._index(gun)
        phase = self._rcd_phase[i]
        if phase == _RCD_TRIP or phase == _RCD_RELEASE:
            # The self-test's own test current raises the fault output: that is the test working,
            # not a trip. It runs only with the contactor open (before a close, or on idle guns),
            # so no residual current can flow meanwhile. Each read moves the test on, so a test
            # the gun gives up (the EV left C) still ends and releases the test input.
            self._rcd_step(i)
            return False
        return self._rcd_fault[i].value() == 1

    def rcd_test_start(self, gun):  # type: (int) -> None
        """Begin the RCM self-test; rcd_test_result gives its outcome. The RCM's test input
        injects a test current: its fault output must rise within 40 ms, and fall within 100 ms
        of releasing the test input (whose falling edge resets the module's latch). Returns at
        once; nothing here or there waits."""
        i = self._index(gun)
        test = self._rcd_test[i]
        if self._rcd_phase[i] == _RCD_TRIP:
            test.value(0)  # a test still injecting is abandoned: the new one starts from a clean edge
        if self._rcd_fault[i].value():
            self._rcd_phase[i] = _RCD_FAILED  # already tripped: the test would prove nothing
            return
        test.value(1)
        self._rcd_since_ms[i] = time.ticks_ms()
        self._rcd_phase[i] = _RCD_TRIP

    def rcd_test_result(self, gun):  # type: (int) -> bool | None
        """None while the self-test runs, then True (passed) or False (failed), the same on every
        later call until the next rcd_test_start. False if no test was started. Each call reads
        the fault output once per phase and the clock, and moves the test on; it never waits, so
        the caller's polling period is the resolution of both time limits."""
        phase = self._rcd_step(self._index(gun))
        if phase == _RCD_PASSED:
            return True
        if phase == _RCD_TRIP or phase == _RCD_RELEASE:
            return None
        return False  # failed, or never started

    def _rcd_step(self, i):  # type: (int) -> int
        phase = self._rcd_phase[i]
        if phase == _RCD_TRIP:
            fault = self._rcd_fault[i]
            if fault.value():
                self._rcd_test[i].value(0)  # the falling edge also resets the module's latch
                self._rcd_since_ms[i] = time.ticks_ms()
                phase = _RCD_RELEASE
            elif time.ticks_diff(time.ticks_ms(), self._rcd_since_ms[i]) >= _RCD_TRIP_MS:
                self._rcd_test[i].value(0)
                phase = _RCD_FAILED  # did not trip in time: a dead module or a broken test wire
        if phase == _RCD_RELEASE:
            if not self._rcd_fault[i].value():
                phase = _RCD_PASSED
            elif time.ticks_diff(time.ticks_ms(), self._rcd_since_ms[i]) >= _RCD_RELEASE_MS:
                phase = _RCD_FAILED  # did not release in time: stuck
        self._rcd_phase[i] = phase
        return phase

    def rcd_reset(self, gun):  # type: (int) -> None
        # The RCM latches a trip until a pulse on its test input: the pulse's falling edge resets
        # it once the residual current is gone (if it persists, the output stays raised and the
        # gun's RCD fault waits another retry delay). A self-test cut short ends as failed.
        i = self._index(gun)
        test = self._rcd_test[i]
        test.value(1)
        test.value(0)
        if self._rcd_phase[i] == _RCD_TRIP or self._rcd_phase[i] == _RCD_RELEASE:
            self._rcd_phase[i] = _RCD_FAILED

    # ---- board wide ---------------------------------------------------------------------------
    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):  # type: (int) -> None
        time.sleep_ms(ms)

    def watchdog_start(self, timeout_ms):  # type: (int) -> None
        self._wdt = WDT(timeout=timeout_ms)

    def watchdog_feed(self):  # type: () -> None
        if self._wdt is not None:
            self._wdt.feed()

    def _section(self, kind, index):  # type: (str, int) -> tuple
        """The board file's kind ("uart", "can") entry with this index: (its name, the entry)."""
        entries = self.board.get(kind, {})
        for name in entries:
            if entries[name].get("index") == index:
                return name, entries[name]
        return None, None

    def uart(self, index, baudrate, parity=None, rxbuf=0):
        # parity: None, 0 (even) or 1 (odd), as machine.UART takes it; 8 data bits, 1 stop bit.
        # rxbuf: bytes of its receive buffer (0: the port's default, 256 on both).
        name, cfg = self._section("uart", index)
        if cfg is None:
            raise ValueError('board has no UART %d: add it to the board\'s "uart" section '
                             "with index, tx, rx (and de for RS-485)" % index)
        if rxbuf:
            port = UART(index, baudrate=baudrate, parity=parity, tx=Pin(cfg["tx"]), rx=Pin(cfg["rx"]), rxbuf=rxbuf)
        else:
            port = UART(index, baudrate=baudrate, parity=parity, tx=Pin(cfg["tx"]), rx=Pin(cfg["rx"]))
        if "de" in cfg:
            return Rs485(port, Pin(cfg["de"], Pin.OUT, value=0))
        return port

    def can(self, index):
        from evse.hal import mcu_dc
        return mcu_dc.can(self, index)

    def deinit(self):
        self.safe()
