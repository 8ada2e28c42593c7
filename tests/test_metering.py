"""The metering of the guns: the last plausible reading per gun, an import register that never
goes backwards, a meter silent for DEAD_MS marks its gun (which stops or charges on, as
configured), and the status the central system sees."""
import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from evse import gun as gun_mod, meters, modbus
from evse.metering import DEAD_MS, Metering
from evse.ocpp.tx import Connector
from fake_rig import charging, make_gun, run

BOARD = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-ac2.json").read_text())


class ScriptedMeter:
    """A meter driver that answers what the test says: a Reading, or raises."""

    def __init__(self):
        self.answer = None

    async def read(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        r = meters.Reading(3, False)
        r.energy_wh = self.answer
        return r


class Hal:
    def uart(self, index, baudrate, parity=None):
        return None  # the scripted meters never use the bus


@pytest.fixture
def metering():
    clock = [0]
    lines = []
    m = Metering(Hal(), BOARD, lambda: clock[0], lines.append)
    m.meters = [ScriptedMeter(), ScriptedMeter()]
    m.start(0)
    m.clock, m.lines = clock, lines
    return m


def poll(m, n, answer, at_ms):
    m.clock[0] = at_ms
    m.meters[n - 1].answer = answer
    return asyncio.run(m.poll(n))


def test_every_gun_with_a_meter_in_the_board_gets_a_driver():
    m = Metering(Hal(), BOARD, lambda: 0)
    assert [x.model for x in m.meters] == ["sdm630", "sdm630"] and m.fitted(1) and m.fitted(2)


def test_an_import_register_that_goes_backwards_is_refused_and_the_last_reading_kept(metering):
    assert poll(metering, 1, 1500, 1000)
    assert not poll(metering, 1, 1200, 2000)
    assert metering.reading(1).energy_wh == 1500 and metering.refused[0] == 1
    assert poll(metering, 1, 1501, 3000)
    assert metering.reading(1).energy_wh == 1501


def test_a_meter_silent_for_dead_ms_marks_its_gun_once_and_answering_again_clears_it(metering):
    poll(metering, 1, 100, 0)
    silent = modbus.Timeout("slave 1: no answer within 300 ms")
    assert not poll(metering, 1, silent, DEAD_MS - 1000)
    assert metering.ok[0]                                 # a missed poll is not a fault yet
    poll(metering, 1, silent, DEAD_MS)
    poll(metering, 1, silent, DEAD_MS + 1000)
    assert metering.ok == [False, True]
    assert metering.lines == ["gun 1: meter fault: slave 1: no answer within 300 ms"]
    assert poll(metering, 1, 100, DEAD_MS + 2000)
    assert metering.ok[0] and metering.lines[-1] == "gun 1: meter answers again"


def test_garbage_counts_as_no_answer(metering):
    poll(metering, 2, 10, 0)
    for t in range(1000, DEAD_MS + 1000, 1000):
        poll(metering, 2, modbus.FrameError("slave 2: bad CRC"), t)
    assert metering.ok == [True, False] and metering.failures[1] == DEAD_MS // 1000


def test_a_gun_whose_meter_fails_stops_when_so_configured_and_resumes_when_it_answers():
    g, hal = make_gun()
    charging(g, hal)
    g.meter_ok = False
    run(g, hal, 100)
    assert g.fault == "METER" and not g.contactor
    run(g, hal, 2000)
    assert g.fault == "METER"
    g.meter_ok = True
    run(g, hal, gun_mod.F_STEP_MS + 500)
    assert g.fault is None


def test_a_gun_told_to_charge_on_without_its_meter_keeps_charging_and_says_so():
    g, hal = make_gun()
    charging(g, hal)
    g.meter_stops = False
    g.meter_ok = False
    run(g, hal, 2000)
    assert g.fault is None and g.contactor
    c = Connector(1)
    assert c.status(g)[1:] == ("PowerMeterFailure", "METER")
    g.meter_ok = True
    assert c.status(g)[1:] == ("NoError", None)


def test_a_uart_that_fails_counts_as_no_answer_and_a_restarted_task_gives_no_more_time(metering, monkeypatch):
    # An OSError or a MemoryError in a read is no reading either: before, it ended the task,
    # whose restart gave every meter DEAD_MS again, so a dead meter was never reported.
    poll(metering, 1, 100, 0)
    metering._started = True   # run() began at boot
    for t in range(1000, DEAD_MS, 1000):
        assert not poll(metering, 1, OSError(5), t)
    for m in metering.meters:
        m.answer = OSError(5)

    monkeypatch.setattr(asyncio, "sleep_ms", lambda ms: asyncio.sleep(ms / 1000), raising=False)

    async def restarted():   # the task started again by App.keep, for a moment
        try:
            await asyncio.wait_for(metering.run(), 0.05)
        except asyncio.TimeoutError:
            pass
    asyncio.run(restarted())
    assert not poll(metering, 1, OSError(5), DEAD_MS)
    assert metering.ok[0] is False and metering.lines[0].startswith("gun 1: meter fault: OSError(5"), metering.lines


def test_the_time_of_a_reading_is_taken_after_the_read(metering):
    # The control clock may move back (evse.ticks) while a Modbus read is under way.
    class Slow(ScriptedMeter):
        async def read(self):
            metering.clock[0] -= 5000   # moved back during the read
            return await ScriptedMeter.read(self)
    metering.meters[0] = Slow()
    assert poll(metering, 1, 100, 8000)
    assert metering._last_ok_ms[0] == 3000


# ---- a fed grid meter (docs/grid.md): readings written by the console or the central system ----
FED = dict(BOARD, grid_meter={"feed": "api"})
amps_ok = st.floats(min_value=-10000, max_value=10000, allow_nan=False) | st.integers(min_value=-10000, max_value=10000)


@given(st.lists(amps_ok, min_size=3, max_size=3), st.integers(min_value=0, max_value=2**40))
def test_a_fed_reading_is_taken_with_its_time(amps, at_ms):
    m = Metering(Hal(), FED, lambda: at_ms)
    assert m.grid_source == "feed" and m.grid is None   # nothing on a line to poll
    m.feed_grid(amps)
    assert m.grid_reading.amps == [float(a) for a in amps] and m.grid_ok_ms == at_ms


@given(st.one_of(
    st.lists(amps_ok).filter(lambda a: len(a) != 3),                       # not one per site phase
    st.lists(st.one_of(amps_ok, st.floats(max_value=-10000.001), st.floats(min_value=10000.001),
                       st.just(float("nan")), st.text(max_size=3), st.booleans(), st.none()),
             min_size=3, max_size=3).filter(lambda a: not all(
                 not isinstance(x, bool) and isinstance(x, (int, float)) and -10000 <= x <= 10000 for x in a)),
    st.dictionaries(st.text(max_size=3), amps_ok), st.text(max_size=5), st.none()))
def test_a_bad_fed_reading_is_refused_and_the_last_one_stands(bad):
    m = Metering(Hal(), FED, lambda: 5)
    m.feed_grid([1, 2, 3])
    m._clock = lambda: 9
    with pytest.raises(ValueError):
        m.feed_grid(bad)
    assert m.grid_reading.amps == [1.0, 2.0, 3.0] and m.grid_ok_ms == 5


def test_only_a_fed_grid_meter_takes_readings():
    with pytest.raises(ValueError, match="not there"):
        Metering(Hal(), BOARD, lambda: 0).feed_grid([1, 2, 3])
    grid = dict(BOARD, grid_meter={"model": "sdm630", "uart": 0, "address": 10})
    with pytest.raises(ValueError, match="a Modbus meter: it is read, not written"):
        Metering(Hal(), grid, lambda: 0).feed_grid([1, 2, 3])


def test_a_single_phase_site_feeds_one_current():
    m = Metering(Hal(), dict(FED, phases=1), lambda: 0)
    m.feed_grid([20])
    with pytest.raises(ValueError, match="site's 1 phase"):
        m.feed_grid([20, 20, 20])


def test_an_implausible_grid_reading_is_refused_said_once_and_the_last_one_ages():
    """A phase over 3 x the connection, drawn or given back, is a meter's fault (its fuse would
    have blown): not taken, so the last good reading ages towards the fallback."""
    grid = dict(BOARD, grid_meter={"model": "sdm630", "uart": 0, "address": 10})
    clock, lines = [0], []
    m = Metering(Hal(), grid, lambda: clock[0], lines.append)
    m.grid_limit_a = lambda: 40
    m.grid = ScriptedMeter()

    def read(amps, phase_w=(0.0, 0.0, 0.0)):
        r = meters.Reading(3, False)
        r.amps, r.phase_w = list(amps), list(phase_w)
        m.grid.read = lambda: _value(r)
        clock[0] += 1000
        return asyncio.run(m.poll_grid())

    assert read([30, 30, 30]) and m.grid_ok_ms == 1000
    assert not read([30, 121, 30]) and not read([30, 500, 30]) and m.grid_ok_ms == 1000
    assert lines == ["grid meter: L2 121 A is over 3 x the connection's 40 A; refused until its readings are plausible again"]
    assert read([30, 120, 30]) and m.grid_ok_ms == 4000 and lines[-1] == "grid meter: its readings are plausible again"
    assert m.grid_refused == 2
    fed = Metering(Hal(), FED, lambda: 0)
    fed.grid_limit_a = lambda: 40
    with pytest.raises(ValueError, match="L1 -121 A is over 3 x the connection's 40 A"):
        fed.feed_grid([-121, 0, 0])


async def _value(r):
    return r
