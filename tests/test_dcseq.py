"""The IEC 61851-23 sequence of a DC gun (evse.dcseq) against a plant: a cable, an EV with its
own contactors and battery, an insulation monitor and the power modules. The rules hold for any
session: no closing onto the battery without a precharge within 20 V, no DC contactor opened
under current except on a fault or an emergency, the current ramped, an insulation fault found
before the battery is ever connected, a drop while charging stopped at once, welded contacts
found."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import dcseq
from evse.dcseq import Ev, Measured, Sequence

TICK_MS = 20


class Plant:
    """The cable, the EV and the monitor. The modules bring the output to set_v at up to set_a
    (10 V a tick); the EV closes its contactors when asked to charge and within 20 V, then draws
    what is set; with the DC contactors open the output's discharge takes it to 0 in 100 ms."""

    def __init__(self, battery_v=380.0, max_v=450.0, want_a=200.0, iso_ohm=5_000_000.0, self_test=True,
                 welded=False, ev_stops_after_ms=8000):
        self.ev = Ev()
        self.m = Measured()
        self.battery_v = battery_v
        self.max_v = max_v
        self.want_a = want_a
        self.iso_ohm = iso_ohm
        self.self_test_result = self_test
        self.welded = welded
        self.ev_closed = False
        self.t = 0
        self.ev_stops_after_ms = ev_stops_after_ms
        self.charging_since = None
        self.log = []        # (t, what)
        self.breaches = []

    def ev_side(self, seq):
        ev = self.ev
        ev.talking, ev.battery_v, ev.max_v = True, self.battery_v, self.max_v
        if seq.state == dcseq.IDLE and ev.phase is None:
            ev.phase = "cable_check"
        elif ev.phase == "cable_check" and seq.isolation in ("valid", "warning"):
            ev.phase = "precharge"
            ev.target_v = self.battery_v
        elif ev.phase == "precharge" and seq.state == dcseq.PRECHARGE and abs(self.m.out_v - self.battery_v) <= 20:
            ev.phase = "charge"
            self.ev_closed = True        # the EV closes its contactors: its own 20 V check
            self.log.append((self.t, "ev closes"))
            ev.target_v, ev.target_a = self.max_v - 20, self.want_a
            self.charging_since = self.t
        elif ev.phase == "charge" and (self.t - self.charging_since >= self.ev_stops_after_ms
                                       or seq.state == dcseq.STOPPING):
            ev.phase, ev.target_a = "stop", 0.0
        if ev.phase == "stop" and self.m.out_a < dcseq.OPEN_BELOW_A and self.ev_closed:
            self.ev_closed = False
            self.log.append((self.t, "ev opens"))

    def physics(self, seq):
        m = self.m
        was = m.contactor
        m.contactor = seq.contactor or self.welded
        if was and not m.contactor and m.out_a >= dcseq.OPEN_BELOW_A and seq.fault is None:
            self.breaches.append((self.t, "opened under %.1f A" % m.out_a))
        if self.ev_closed:   # the cable is on the battery, whatever the charger's contactors do
            m.out_v = self.battery_v
            m.out_a = (min(seq.set_a, self.want_a) if m.contactor and seq.set_v >= self.battery_v - 1
                       and seq.set_a > 0 else 0.0)
        elif m.contactor and seq.set_a > 0:
            m.out_v += max(-10.0, min(10.0, seq.set_v - m.out_v))
            m.out_a = 0.0
        elif m.contactor and self.welded and self.ev_closed is False and seq.state == dcseq.WELD_CHECK:
            m.out_v = self.battery_v   # welded contacts on both sides keep the battery on the gun
        else:   # the modules' discharge circuit: 0 within about 100 ms
            m.out_v = max(0.0, m.out_v - m.out_v * TICK_MS / 100 - 5)
            m.out_a = 0.0
        m.self_test = None if not seq.imd_on else self.self_test_result
        m.iso_ohm = self.iso_ohm if seq.imd_on and m.out_v > 50 else None

    def run(self, seq, ms, after=None):
        end = self.t + ms
        while self.t < end:
            self.t += TICK_MS
            self.ev_side(seq)
            prev_a, prev_state = seq.set_a, seq.state
            seq.step(self.t, self.ev, self.m)
            rate = seq.ramp if seq.state == dcseq.CHARGING else dcseq.STOP_RAMP_A_PER_S
            timed_out = seq.state == dcseq.STOPPING and self.t - seq.since_ms >= dcseq.STOP_TIMEOUT_MS
            if (prev_state in (dcseq.CHARGING, dcseq.STOPPING) and seq.state in (dcseq.CHARGING, dcseq.STOPPING)
                    and not timed_out and abs(seq.set_a - prev_a) > rate * TICK_MS / 1000 + 1e-9):
                self.breaches.append((self.t, "current stepped %.1f -> %.1f A" % (prev_a, seq.set_a)))
            self.physics(seq)
            if after:
                after(self)


def test_a_session_goes_through_cable_check_precharge_ramp_and_shutdown():
    seq, plant = Sequence(1000, 250), Plant()
    states = []
    plant.run(seq, 20000, after=lambda p: states.append(seq.state) if not states or states[-1] != seq.state else None)
    assert states == [dcseq.CABLE_CHECK, dcseq.PRECHARGE, dcseq.CHARGING, dcseq.STOPPING, dcseq.WELD_CHECK, dcseq.DONE]
    assert seq.isolation == "valid" and seq.fault is None and not plant.breaches
    assert [what for _, what in plant.log] == ["ev closes", "ev opens"]


@settings(max_examples=150, deadline=None)
@given(st.floats(200, 800), st.floats(10, 400), st.floats(1e4, 1e8), st.integers(0, 15000))
def test_any_session_keeps_every_rule(battery_v, want_a, iso_ohm, stop_after_ms):
    seq = Sequence(1000, 300)
    plant = Plant(battery_v=battery_v, max_v=battery_v + 50, want_a=want_a, iso_ohm=iso_ohm,
                  ev_stops_after_ms=stop_after_ms)
    plant.run(seq, 40000)
    assert not plant.breaches
    if iso_ohm / min(battery_v + 50, 1000) < dcseq.ISO_FAULT_OHM_PER_V:
        assert seq.fault == dcseq.ISOLATION and "ev closes" not in [w for _, w in plant.log]
    else:
        assert seq.state == dcseq.DONE and seq.fault is None
        assert seq.isolation == ("warning" if iso_ohm / min(battery_v + 50, 1000) < dcseq.ISO_WARN_OHM_PER_V else "valid")


def test_an_insulation_fault_in_the_cable_check_stops_before_the_battery_is_connected():
    seq, plant = Sequence(1000, 250), Plant(iso_ohm=40_000.0)    # 40 kohm at a 450 V test: 89 ohm/V
    plant.run(seq, 10000)
    assert seq.fault == dcseq.ISOLATION and seq.isolation == "fault" and not seq.contactor
    assert not plant.ev_closed and "ev closes" not in [w for _, w in plant.log]


def test_an_insulation_drop_while_charging_opens_the_contactors_in_the_same_step():
    seq, plant = Sequence(1000, 250), Plant(ev_stops_after_ms=60000)
    plant.run(seq, 6000)
    assert seq.state == dcseq.CHARGING and plant.m.out_a > 100
    plant.iso_ohm = plant.m.iso_ohm = 30_000.0
    seq.step(plant.t + TICK_MS, plant.ev, plant.m)
    assert seq.fault == dcseq.ISOLATION and not seq.contactor and seq.set_a == 0


def test_an_emergency_stop_opens_at_once_under_any_current():
    seq, plant = Sequence(1000, 250), Plant(ev_stops_after_ms=60000)
    plant.run(seq, 6000)
    plant.m.estop = True
    seq.step(plant.t + TICK_MS, plant.ev, plant.m)
    assert seq.fault == dcseq.EMERGENCY and not seq.contactor


def test_a_failed_or_endless_self_test_is_a_fault_before_any_voltage():
    for result, after_ms in ((False, 100), (None, dcseq.SELF_TEST_MS + 100)):
        seq, plant = Sequence(1000, 250), Plant(self_test=result)
        plant.run(seq, after_ms)
        assert seq.fault == dcseq.ISO_SELF_TEST and seq.set_v == 0 and not seq.contactor


def test_welded_contacts_are_found_after_the_session():
    seq, plant = Sequence(1000, 250), Plant(welded=True, ev_stops_after_ms=3000)
    plant.run(seq, 20000)
    assert seq.fault == dcseq.DC_WELD


def test_a_precharge_that_does_not_reach_the_battery_fails_in_7_s():
    seq, plant = Sequence(300, 250), Plant(battery_v=400.0, max_v=450.0)    # the gun stops at 300 V
    plant.run(seq, 20000)
    assert seq.fault == dcseq.PRECHARGE_FAIL and not plant.ev_closed


def test_more_current_than_asked_for_half_a_second_stops_the_session():
    seq, plant = Sequence(1000, 250), Plant(ev_stops_after_ms=60000)
    plant.run(seq, 6000)
    plant.want_a = 1000.0           # the plant now pushes more than the EV asks (a module gone wild)
    plant.ev.target_a = 50.0

    def overdrive(p):
        p.m.out_a = 200.0

    plant.run(seq, 2000, after=overdrive)
    assert seq.fault == dcseq.OVERCURRENT


@pytest.mark.parametrize("phase", ["cable_check", "precharge"])
def test_the_ev_going_quiet_before_charging_opens_without_a_fault(phase):
    seq, plant = Sequence(1000, 250), Plant()
    plant.run(seq, 100 if phase == "cable_check" else 3000)
    plant.ev_side = lambda s: (setattr(plant.ev, "talking", False), setattr(plant, "ev_closed", False))
    plant.run(seq, 3000)
    assert seq.state == dcseq.DONE and seq.fault is None and not seq.contactor


def test_a_stop_from_the_charger_ramps_down_and_opens_below_5_a_then_a_new_session_may_start():
    seq, plant = Sequence(1000, 250), Plant(ev_stops_after_ms=60000)
    plant.run(seq, 6000)
    assert seq.state == dcseq.CHARGING and plant.m.out_a > 100
    seq.stop(plant.t)                     # the EV is told, stops asking, opens below 5 A
    plant.run(seq, 5000)
    assert seq.state == dcseq.DONE and seq.fault is None and not plant.breaches
    seq.reset(plant.t)
    assert (seq.state, seq.isolation, seq.contactor) == (dcseq.IDLE, None, False)


def test_a_stop_that_the_ev_ignores_turns_the_modules_off_after_the_timeout_and_opens_below_5_a():
    seq, plant = Sequence(1000, 500), Plant(want_a=450.0, ev_stops_after_ms=60000)
    plant.run(seq, 10000)
    assert seq.state == dcseq.CHARGING and plant.m.out_a >= 440
    seq.stop(plant.t)
    plant.ev_side = lambda s: None        # deaf to it: keeps its contactors closed and its ask
    plant.run(seq, dcseq.STOP_TIMEOUT_MS + 2000)
    assert seq.fault == dcseq.DC_WELD and not plant.breaches   # the EV never opened: the gun is live


def test_a_session_waits_in_idle_until_the_dispenser_has_power_to_give():
    seq, plant = Sequence(1000, 250), Plant()
    plant.m.ready = False
    plant.run(seq, 30000)
    assert seq.state == dcseq.IDLE and seq.fault is None and not seq.imd_on
    plant.m.ready = True
    plant.run(seq, 20000)
    assert seq.state == dcseq.DONE


def test_the_sequence_keeps_its_timers_across_a_clock_rebase():
    seq, plant = Sequence(1000, 250), Plant(ev_stops_after_ms=60000)
    plant.run(seq, 6000)
    d = 1 << 28
    seq.rebase(d)
    plant.t -= d
    plant.charging_since -= d
    before = seq.set_a
    plant.run(seq, 1000)
    assert seq.state == dcseq.CHARGING and seq.set_a >= before - 1 and not plant.breaches


def test_every_fault_of_the_sequence_is_a_gun_fault_with_a_way_to_clear():
    from evse import gun
    names = ("ISO_SELF_TEST", "ISOLATION", "CABLE_CHECK_TIMEOUT", "PRECHARGE_FAIL", "OVERVOLTAGE", "OVERCURRENT",
             "DC_WELD", "NOT_DISCHARGED", "EMERGENCY", "STOP_FAILED")
    assert all(getattr(dcseq, n) in gun.FAULTS for n in names)
