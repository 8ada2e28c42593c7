"""The Modbus insulation monitor driver (evse.imd) against the virtual board's Bender isoCHA425HV
(host_tools.sim.modbus.ImdSlave, written from Bender's register tables): switched on, its
self-test asked and read, its resistance read; a failed test, a device error and a silent line
each end in what the DC sequence acts on."""
import asyncio
import json
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from evse import dcseq, imd, modbus
from host_tools.sim import modbus as sim
from host_tools.sim.world import IMD_SELF_TEST_MS, World
from test_meters import Line
from virtual_clock import Clock

BOARD = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-dc6.json").read_text())


class Rig:
    """Gun 1 of sim-dc6 with its monitor on an in-process line; the cable at 450 V."""

    def __init__(self):
        self.world = World(BOARD)
        self.gun = self.world.guns[0]
        self.gun.out_v = 450.0
        self.clock = Clock()
        self.line = Line(sim.Bus([sim.ImdSlave(3, self.world, self.gun)]), self.clock)
        master = modbus.Master(self.line, 19200, timeout_ms=100, retries=0, ticks_ms=self.clock.ticks_ms,
                               sleep_ms=self.clock.sleep_ms)
        self.logged = []
        self.monitor = imd.Monitor(master, 3, self.clock.ticks_ms, self.logged.append, "gun 1: insulation monitor")

    def step(self, n=1):
        for _ in range(n):
            asyncio.run(self.monitor.step())
            self.clock.ms += imd.POLL_MS

    def measured(self):
        m = dcseq.Measured()
        self.monitor.read(m, self.clock.ms)
        return m

    def test_over(self):
        self.gun.imd_test_ms -= IMD_SELF_TEST_MS   # the world's self-test has had its time

    def measuring(self):
        """Switched on, its self-test passed, reading the cable's 5 Mohm."""
        self.monitor.enable(True, self.clock.ms)
        self.step(2)
        self.test_over()
        self.step(2)
        assert self.measured().iso_ohm == 5000e3

    def writes(self):
        return [struct.unpack(">BHHBH", r[1:9]) for r in self.line.requests if r[1] == 0x10]


def test_enabled_it_is_started_self_tested_then_read_and_disabled_it_is_stopped():
    rig = Rig()
    rig.step()   # at boot the monitor is told to stop
    assert rig.writes() == [(0x10, 3026, 1, 2, 0)] and not rig.gun.imd_on
    rig.monitor.enable(True, rig.clock.ms)
    rig.step()
    assert rig.writes()[1:] == [(0x10, 3026, 1, 2, 1), (0x10, 8005, 1, 2, 0x5445)]
    assert rig.gun.imd_on and rig.gun.imd_test_ms is not None
    m = rig.measured()
    assert (m.self_test, m.iso_ohm, m.imd_lost) == (None, None, False)   # the test runs
    rig.test_over()
    rig.step()
    m = rig.measured()
    assert m.self_test is True and m.iso_ohm is None
    rig.step()
    assert rig.measured().iso_ohm == 5000e3
    rig.gun.insulation_kohm = 30.0
    rig.step()
    assert rig.measured().iso_ohm == 30e3
    rig.gun.out_v = 20.0   # no voltage: nothing to measure, the readings are invalid
    rig.step()
    assert rig.measured().iso_ohm == 30e3    # the last one, while it is fresh
    rig.step(3)
    assert rig.measured().iso_ohm is None and not rig.measured().imd_lost   # aged out; it answers
    rig.monitor.enable(False, rig.clock.ms)
    rig.step()
    assert rig.writes()[-1] == (0x10, 3026, 1, 2, 0) and not rig.gun.imd_on
    m = rig.measured()
    assert (m.self_test, m.iso_ohm, m.imd_lost) == (None, None, False)


def test_a_failed_self_test_says_false_and_a_test_never_seen_running_says_nothing():
    rig = Rig()
    rig.gun.imd_test_fails = True
    rig.monitor.enable(True, rig.clock.ms)
    rig.step(2)
    rig.test_over()
    rig.step()
    assert rig.measured().self_test is False
    assert rig.logged == ["gun 1: insulation monitor: self-test failed (device error)"]
    # A device error after the test: the monitor is lost until it measures again.
    rig.step()
    assert rig.measured().imd_lost and rig.measured().iso_ohm is None

    deaf = Rig()   # a monitor that ignores the command: no test is ever seen, none is taken as passed
    deaf.world.imd_self_test = lambda g: None
    deaf.monitor.enable(True, deaf.clock.ms)
    deaf.step(4)
    assert deaf.measured().self_test is None and deaf.measured().iso_ohm is None


def test_a_silent_monitor_is_lost_after_lost_ms_and_found_again_when_it_answers():
    rig = Rig()
    rig.measuring()
    rig.gun.imd_fault = "silent"
    steps = 0
    while not rig.measured().imd_lost:
        rig.step()
        steps += 1
        assert steps < 20
    assert imd.LOST_MS <= steps * (imd.POLL_MS + 100) <= imd.LOST_MS + 2 * (imd.POLL_MS + 100)
    assert rig.measured().iso_ohm is None and rig.logged[-1].startswith("gun 1: insulation monitor: lost (slave 3")
    rig.gun.imd_fault = None
    rig.step()
    assert not rig.measured().imd_lost and rig.measured().iso_ohm == 5000e3
    assert rig.logged[-1] == "gun 1: insulation monitor: answers again"


def test_the_sequence_trips_on_a_lost_monitor_while_it_needs_one():
    seq = dcseq.Sequence(1000, 500)
    ev, m = dcseq.Ev(), dcseq.Measured()
    ev.talking, ev.phase, ev.max_v, ev.battery_v = True, "cable_check", 500.0, 400.0
    seq.step(0, ev, m)
    assert seq.state == "cable_check" and seq.imd_on
    m.imd_lost = True
    seq.step(100, ev, m)
    assert seq.state == "faulted" and seq.fault == dcseq.IMD_LOST == "IMD" and not seq.contactor


@given(st.binary(min_size=8, max_size=8))
def test_any_register_image_gives_a_reading_or_none_and_never_raises(regs):
    rig = Rig()
    rig.monitor.enable(True, rig.clock.ms)
    rig.monitor.on = True
    for testing in (0, 1, 2):
        rig.monitor._testing = testing
        rig.monitor._take(bytearray(regs))
        m = rig.measured()
        assert m.iso_ohm is None or (m.iso_ohm >= 0 and m.iso_ohm - m.iso_ohm == 0)
        assert m.self_test in (None, True, False)


def test_board_entries_are_checked_with_a_clear_error():
    assert imd.check({"model": "isocha425", "uart": 1, "address": 3})
    for entry, error in (
            ({"model": "iso685", "uart": 1, "address": 3}, "imd model 'iso685' unknown: use isocha425"),
            ({"model": "isocha425", "uart": 1, "address": 0}, "imd address must be the Modbus slave address 1..247"),
            ({"model": "isocha425", "uart": "1", "address": 3}, "imd uart must be the index"),
            ({"model": "isocha425", "uart": 1, "address": 3, "baud": 1000}, "imd baud 1000: use one of"),
            ({"model": "isocha425", "uart": 1, "address": 3, "parity": "mark"}, "imd parity 'mark': use none, even, odd"),
            ([], "imd must be an object")):
        try:
            imd.check(entry)
        except ValueError as e:
            assert str(e).startswith(error), e
        else:
            raise AssertionError(f"{entry} passed")


def test_a_lost_answer_to_the_self_test_command_asks_it_again():
    rig = Rig()
    write = rig.line.write
    lost = []

    def write_losing_the_first_test_answer(buf):
        n = write(buf)
        if bytes(buf[1:4]) == b"\x10\x1f\x45" and not lost:   # function 0x10 at 8005
            lost.append(bytes(buf))
            rig.line.pending = None
        return n
    rig.line.write = write_losing_the_first_test_answer
    rig.monitor.enable(True, rig.clock.ms)
    rig.step()
    assert lost and rig.measured().self_test is None
    rig.step()
    assert [w[1] for w in rig.writes()].count(8005) == 2
    rig.step()
    rig.test_over()
    rig.step()
    assert rig.measured().self_test is True


def test_a_task_that_stalls_gives_no_old_reading_and_the_monitor_counts_as_lost():
    rig = Rig()
    rig.measuring()
    rig.clock.ms += imd.FRESH_MS   # the task does not run (a crash loop, a long stall)
    assert rig.measured().iso_ohm is None and not rig.measured().imd_lost
    rig.clock.ms += imd.LOST_MS
    assert rig.measured().imd_lost


def test_the_sequence_turning_it_off_and_on_during_a_transaction_drops_that_answer():
    rig = Rig()
    rig.measuring()
    rig.gun.imd_fault = "bad_crc"
    read = rig.monitor.master.read

    async def read_while_the_session_changes(*args):
        rig.monitor.enable(False, rig.clock.ms)
        rig.monitor.enable(True, rig.clock.ms)
        return await read(*args)
    rig.monitor.master.read = read_while_the_session_changes
    rig.clock.ms += imd.LOST_MS
    rig.step()   # no TypeError, no loss charged to the new session
    rig.monitor.master.read = read
    assert not rig.measured().imd_lost and rig.monitor.self_test is None


def test_the_sequence_stops_when_the_live_cable_has_no_insulation_reading_for_3_s():
    seq = dcseq.Sequence(1000, 500)
    ev, m = dcseq.Ev(), dcseq.Measured()
    seq.state, seq.imd_on, seq.contactor = "charging", True, True
    ev.talking, ev.phase, ev.max_v, ev.target_v, ev.target_a = True, "charge", 500.0, 400.0, 100.0
    m.out_v, m.iso_ohm, m.self_test = 400.0, 400e3, True
    seq.step(0, ev, m)
    m.iso_ohm = None
    seq.step(1000, ev, m)
    seq.step(1000 + dcseq.UNWATCHED_MS - 1, ev, m)
    assert seq.state == "charging"
    seq.step(1000 + dcseq.UNWATCHED_MS, ev, m)
    assert seq.state == "faulted" and seq.fault == "IMD" and not seq.contactor


def test_turned_off_and_on_while_its_stop_is_on_the_line_it_is_started_again():
    rig = Rig()
    rig.measuring()
    rig.monitor.enable(False, rig.clock.ms)
    write = rig.monitor.master.write_registers

    async def write_while_the_sequence_asks_again(*args):
        result = await write(*args)
        if args[1:] == (3026, (0,)):
            rig.monitor.enable(True, rig.clock.ms)   # the next session begins during the stop
        return result
    rig.monitor.master.write_registers = write_while_the_sequence_asks_again
    rig.step()
    assert not rig.gun.imd_on and rig.monitor.on is False
    rig.step()
    assert rig.gun.imd_on and rig.writes()[-2:] == [(0x10, 3026, 1, 2, 1), (0x10, 8005, 1, 2, 0x5445)]


def test_a_live_cable_unwatched_while_stopping_trips_too_but_not_the_cable_checks_discharge():
    seq = dcseq.Sequence(1000, 500)
    ev, m = dcseq.Ev(), dcseq.Measured()
    seq.state, seq.imd_on, seq.contactor, seq.set_a = "stopping", True, True, 100.0
    ev.talking, ev.phase, ev.max_v = True, "stop", 500.0
    m.out_v, m.out_a, m.self_test = 400.0, 100.0, True
    seq.step(0, ev, m)
    seq.step(dcseq.UNWATCHED_MS, ev, m)
    assert seq.fault == "IMD"
    check = dcseq.Sequence(1000, 500)
    check.state, check.imd_on, check._tested, check.iso_ohm_per_v = "cable_check", True, True, 600.0
    ev.phase, m.out_v, m.out_a = "cable_check", 30.0, 0.0
    check.step(0, ev, m)
    check.step(dcseq.UNWATCHED_MS * 2, ev, m)
    assert check.fault is None
