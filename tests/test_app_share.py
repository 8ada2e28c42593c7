"""What the application feeds the sharing: the site and the central system's caps, the policy's
ranks, the phases each gun loads; and a failing smart-charging computation stops the guns safely."""
import json
import time
from pathlib import Path

import pytest

from evse import config, grid
from fake_rig import FakeHal

BOARDS = Path(__file__).resolve().parents[1] / "boards"


class CentralSystem:
    """The charge point as the app asks it: who may charge, the caps, the session's card."""

    def __init__(self, caps=None, tags=None, fail=False):
        self.caps = caps or {}
        self.tags = tags or {}
        self.fail = fail

    def may_charge(self, n):
        return True

    def limit_a(self, n):
        if self.fail:
            raise OverflowError("cannot convert float infinity to integer")
        return self.caps.get(n)

    def session_tag(self, n):
        return self.tags.get(n)


@pytest.fixture
def make_app(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "ticks_ms", lambda: 0, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    from evse.app import App

    def make(cs=None, board="sim-ac2", **settings):
        b = json.loads((BOARDS / f"{board}.json").read_text())
        cfg = config.Config(b, str(tmp_path))
        for key, value in settings.items():
            cfg.set(key, value)
        app = App(b, cfg, FakeHal(interlock=True), str(tmp_path))  # sim-ac2 has one
        app.cp = cs
        app.notes = []
        app.note = app.notes.append
        for g in app.guns:
            g.state = "C2"   # every gun has an EV asking for power
        return app
    return make


def shares(app, now_ms=0):
    if app.cp is not None:
        app.grant()  # the OCPP task hands the control path the charge point's word
    app.share(now_ms)
    return [g.allocation_a for g in app.guns]


def test_the_site_limit_is_split_equally(make_app):
    assert shares(make_app()) == [20, 20]


def test_a_charge_point_max_profile_lowers_the_total_and_a_tx_profile_one_gun(make_app):
    assert shares(make_app(CentralSystem(caps={0: 24}))) == [12, 12]
    assert shares(make_app(CentralSystem(caps={0: 30, 1: 8}))) == [8, 22]


def test_fifo_serves_the_first_arrival_in_full(make_app):
    app = make_app(sharing_policy="fifo")
    app.guns[0].state = "A"
    app.share(0)
    app.guns[0].state = "C2"   # gun 1's EV arrives 1 s after gun 2's
    assert shares(app, 1000) == [8, 32]


def test_priority_serves_the_members_card_first(make_app):
    app = make_app(CentralSystem(tags={1: "GUEST", 2: "MEMBER1"}), sharing_policy="priority",
                   priority_tags="MEMBER1,MEMBER2")
    assert shares(app) == [8, 32]
    app = make_app(sharing_policy="priority", priority_guns="1")
    assert shares(app) == [32, 8]


def test_a_smart_charging_limit_that_cannot_be_computed_stops_the_guns_and_is_logged_once_each(make_app):
    app = make_app(CentralSystem(fail=True))
    assert shares(app) == [0, 0]
    assert shares(app, 250) == [0, 0]
    assert len(app.notes) == 3 and "smart-charging limit of the charger failed" in app.notes[0]


def test_a_single_phase_ev_on_a_three_phase_gun_loads_only_the_phase_its_meter_sees(make_app):
    from evse import meters

    class Metering:
        grid_source = None   # no grid meter

        def __init__(self, amps):
            self.amps = amps

        def reading(self, n):
            r = meters.Reading(3, False)
            r.amps = self.amps[n - 1]
            return r

    app = make_app(board="sim-ac8")
    for g in app.guns[2:]:
        g.state = "A"
    for g in app.guns[:2]:
        g.contactor = True
    # Gun 1 (L1L2L3) and gun 2 (L2L3L1) each carry a single-phase EV: on site L1 and L2.
    app.metering = Metering([[16, 0, 0], [16, 0, 0]] + [[0, 0, 0]] * 6)
    assert app._loads_now()[:2] == [(0,), (1,)]
    assert shares(app)[:2] == [32, 32]   # apart, each has a phase of 63 A for itself
    app.metering = None
    assert shares(app, 1000)[:2] == [31.5, 31.5]   # as three-phase EVs they share every phase


def test_an_ev_that_stopped_asking_keeps_the_minimum_and_the_rest_goes_to_the_others(make_app):
    from evse import pilot
    from evse.sharing import RECLAIM_AFTER_MS
    app = make_app()
    full, hungry = app.guns
    assert shares(app) == [20, 20]
    for g in app.guns:
        g.duty_pm = pilot.amps_to_duty_pm(20)
    full.state = "B2"                      # its battery is full: back to B, the offer unused
    hungry.contactor, hungry.current_a = True, 20.0
    alloc = None
    for t in range(0, RECLAIM_AFTER_MS + 12000, 250):
        alloc = shares(app, t)
        for g, a in zip(app.guns, alloc):   # the pilots follow (the gun's 5 s step aside)
            g.duty_pm = pilot.amps_to_duty_pm(a)
        hungry.current_a = hungry.offered_a()
    assert alloc == [6, 32]                 # 6 A kept so it can ask again; the hungry car gets the rest


def test_the_control_task_never_calls_into_the_charge_point(make_app):
    app = make_app(CentralSystem(caps={0: 24}))
    app.grant()
    calls = []

    class Tripwire:       # from here on, any call into OCPP is recorded (and fails the test)
        def __getattr__(self, name):
            calls.append(name)
            raise AssertionError(f"the control path called the charge point's {name}")
    app.cp = Tripwire()
    app.share(0)          # both guns want power (make_app puts them in C2)
    assert [g.allocation_a for g in app.guns] == [12, 12]   # the last word it was given holds
    for _ in range(50):   # and the whole control step, gun state machines and all
        app.step()
    assert not calls


class Failing(CentralSystem):
    def __init__(self):
        super().__init__()
        self.broken = True

    def may_charge(self, n):
        if self.broken:
            raise MemoryError("memory allocation failed, allocating 512 bytes")
        return True


def test_an_exception_inside_the_charge_point_stops_the_guns_and_is_logged_once(make_app):
    cs = Failing()
    app = make_app(cs)
    assert shares(app) == [0, 0]          # every permit withdrawn: the guns stop safely
    assert shares(app) == [0, 0]
    assert len(app.notes) == 1 and "every gun stops" in app.notes[0]
    cs.broken = False
    assert shares(app) == [20, 20]
    assert "permits restored" in app.notes[-1]


def test_a_note_that_fails_does_not_end_the_task_that_notes(make_app, monkeypatch):
    from evse.app import App
    app = make_app()
    del app.note   # the App's own note, with a log that runs out of memory

    def full(text):
        raise MemoryError("memory allocation failed")
    monkeypatch.setattr(app.log, "write", full)
    App.note(app, "ocpp: supervise failed")   # returns; the caller's loop goes on
    app.write_flash()                         # and so does the flash task that writes it
    monkeypatch.setattr(app, "_log_queue", None)   # even a note that cannot queue returns
    App.note(app, "ocpp: supervise failed")


def test_the_control_tick_queues_log_lines_and_registers_for_the_flash_task(make_app, tmp_path):
    from evse.app import App
    app = make_app()
    del app.note
    app.guns[0].contactor = True
    app.guns[0].current_a = 16.0
    App.note(app, "gun 1: fault RCD")
    app.integrate(60_000, 60_000)   # a minute at 16 A: due for the flash
    assert not (tmp_path / "log.txt").exists() and not (tmp_path / "energy.json").exists()
    assert app._flash_due.is_set()
    app.write_flash()
    assert (tmp_path / "log.txt").read_text().endswith("gun 1: fault RCD\n")
    assert json.loads((tmp_path / "energy.json").read_text())[0] == round(16 * 230 * 3 / 60, 1)
    for k in range(40):   # a burst beyond the queue: the lost lines are counted and said
        App.note(app, "line %d" % k)
    app.write_flash()
    text = (tmp_path / "log.txt").read_text()
    assert "log: 8 lines lost" in text and "line 31" in text and "line 32" not in text


def test_past_6_days_the_control_clock_moves_back_and_charging_goes_on_unchanged(make_app, monkeypatch):
    from evse import ticks
    from evse.app import App
    t = [ticks.REBASE_AT_MS - 2000]
    monkeypatch.setattr(time, "ticks_ms", lambda: t[0], raising=False)
    app = make_app()
    del app.note
    app._last_ticks = t[0] - ticks.REBASE_AT_MS + 2000   # booted 6.2 days minus 2 s ago
    app.hal.ev = "C"
    app.hal.rcd_test_ms = 0   # FakeHal's model clock does not run here
    app.hal.amps = 16.0
    for g in app.guns:
        g.state = "A"
    for _ in range(300):     # 6 s of ticks across the move
        t[0] += 20
        app.step()
    assert app.now_ms < ticks.REBASE_AT_MS and app.uptime_ms() == ticks.REBASE_AT_MS + 4000
    assert all(g.contactor and g.state == "C2" for g in app.guns), [g.state for g in app.guns]
    assert app._log_queue == ["gun 1: contactor closed", "gun 2: contactor closed"], app._log_queue  # no fault
    assert App.uptime_ms(app) - app.now_ms == ticks.REBASE_MS
    assert all(0 <= wh < 100 for wh in app._energy_wh), app._energy_wh   # a few seconds' worth
    app.hal.amps = 10.0       # the timers still run: the current is read every SENSE_MS
    for _ in range(15):
        t[0] += 20
        app.step()
    assert [g.current_a for g in app.guns] == [10.0, 10.0]
    app.hal.ev = "A"          # and an unplug opens within 100 ms
    for _ in range(5):
        t[0] += 20
        app.step()
    assert not any(g.contactor for g in app.guns)


def test_a_stored_grid_fallback_over_the_connection_is_held_under_it(make_app, tmp_path):
    """A fallback the settings would now refuse (stored by an older release, or left over a
    reset of grid_limit_a) never lets the guns share more than the connection less its margin."""
    (tmp_path / "config.json").write_text(json.dumps({"grid_limit_a": 20, "grid_fallback_a": 30}))
    app = make_app(board="sim-ac2-grid")
    assert app.cfg.get("grid_fallback_a") == 30                        # stored, read back
    assert sum(shares(app, now_ms=60000)) <= 18                        # the meter never answered
    assert any("the guns share 18 A per phase" in n for n in app.notes), app.notes


def test_solar_shares_the_surplus_over_the_phases_the_wanting_guns_load(make_app):
    """Two single-phase EVs on site L1 and L2 (the guns' rotation) split 9.2 kW over two phases:
    20 A each; a three-phase EV alone gets a third on each phase."""
    from evse import meters
    app = make_app(board="sim-ac2-grid", solar_mode="on", solar_start_s=0, grid_limit_a=40)
    reading = meters.Reading(3, False)
    reading.power_w = -9200.0
    app.metering.grid_reading, app.metering.grid_ok_ms = reading, 0
    app._loads_now = lambda: [(0,), (1,)]
    shares(app, now_ms=0)
    site = grid.solar_caps(app, 1, [40.0, 40.0, 40.0], [32, 32], [(0,), (1,)])
    assert [round(a, 1) for a in site] == [20.0, 20.0, 20.0]
    site = grid.solar_caps(app, 2, [40.0, 40.0, 40.0], [32, 0], [(0, 1, 2), (1,)])
    assert [round(a, 1) for a in site] == [13.3, 13.3, 13.3]
    site = grid.solar_caps(app, 3, [10.0, 40.0, 40.0], [32, 0], [(0, 1, 2), (1,)])   # under the connection's caps
    assert [round(a, 1) for a in site] == [10.0, 13.3, 13.3]


def test_an_exporting_phase_is_room_for_the_guns_up_to_the_site_limit(make_app):
    from evse import meters
    app = make_app(board="sim-ac2-grid", grid_limit_a=16)
    reading = meters.Reading(3, False)
    reading.amps, reading.phase_w = [10.0, 10.0, 10.0], [-2300.0, 2300.0, -2300.0]   # L1, L3 export
    app.metering.grid_reading, app.metering.grid_ok_ms = reading, 0
    caps = grid.caps(app, 0, 40, app._loads_now())
    assert caps == [24.0, 4.0, 24.0]     # 16 - 2 + 10 where it exports, 16 - 2 - 10 where it draws


def test_a_reading_below_what_the_guns_draw_is_no_room_unless_the_phase_exports(make_app):
    """A meter read as an EV ramped up shows less than the guns draw a step later: that is no
    building giving current back, only an export on that phase is."""
    from evse import meters
    app = make_app(board="sim-ac2-grid", grid_limit_a=16)
    for g in app.guns:
        g.contactor, g.current_a, g.duty_pm = True, 8.0, 267   # drawing 8 A of a 16 A offer
    reading = meters.Reading(3, False)
    reading.amps, reading.phase_w = [2.0, 2.0, 2.0], [460.0, 460.0, -460.0]   # L3 exports 2 A
    app.metering.grid_reading, app.metering.grid_ok_ms = reading, 0
    grid.caps(app, 0, 40, app._loads_now())
    assert app.grid_building_a == [0.0, 0.0, -18.0]



def test_guns_drawing_more_than_the_export_keep_it_and_do_not_swing(make_app):
    """Exporting 16 A on L1 with the guns idle, then the guns draw 30 A and the meter shows a
    14 A import: the building still gives 16 A back (it did not go home), not 0."""
    from evse import meters
    app = make_app(board="sim-ac2-grid", grid_limit_a=16)
    reading = meters.Reading(3, False)
    reading.amps, reading.phase_w = [16.0, 0.0, 0.0], [-3680.0, 0.0, 0.0]
    app.metering.grid_reading, app.metering.grid_ok_ms = reading, 0
    assert grid.caps(app, 0, 40, app._loads_now())[0] == 30.0
    for g in app.guns:
        g.contactor, g.current_a, g.duty_pm = True, 15.0, 267
    later = meters.Reading(3, False)
    later.amps, later.phase_w = [14.0, 30.0, 30.0], [3220.0, 6900.0, 6900.0]
    app.metering.grid_reading, app.metering.grid_ok_ms = later, 1000
    assert grid.caps(app, 1000, 40, app._loads_now())[0] == 30.0
    assert app.grid_building_a[0] == -16.0
    # The sun goes: 30 A of guns and nothing back, the building is 0 again, the cap 14 A.
    gone = meters.Reading(3, False)
    gone.amps, gone.phase_w = [30.0, 30.0, 30.0], [6900.0] * 3
    app.metering.grid_reading, app.metering.grid_ok_ms = gone, 2000
    assert grid.caps(app, 2000, 40, app._loads_now())[0] == 14.0


def grid_reading(app, amps, at_ms):
    from evse import meters
    reading = meters.Reading(3, False)
    reading.amps, reading.phase_w = list(amps), [230.0 * a for a in amps]
    app.metering.grid_reading, app.metering.grid_ok_ms = reading, at_ms
    return grid.caps(app, at_ms, 40, app._loads_now())


def test_an_ev_that_ramps_as_the_meter_reads_does_not_move_the_building(make_app):
    """Guns at 10 A (their meters say so), a building of 10 A. Gun 1's offer goes up to 16 A: its
    EV ramps while its meter still says 10. A reading that shows 4 A more is the EV, not the
    building: the building stays (before, it rose 4 A and the sharing lowered the others)."""
    app = make_app(board="sim-ac2-grid", grid_limit_a=40)
    for g in app.guns:
        g.contactor, g.current_a, g.duty_pm, g.duty_changed_ms, g.closed_ms = True, 10.0, 167, -60000, -60000
    grid_reading(app, [30, 30, 30], 0)
    assert app.grid_building_a == [10.0, 10.0, 10.0]
    gun = app.guns[0]
    gun.duty_pm, gun.duty_changed_ms = 267, 500   # 16 A, just now
    grid_reading(app, [34, 34, 34], 1000)
    assert app.grid_building_a == [10.0, 10.0, 10.0]
    # Once UNSURE_MS has passed, its meter's 10 A is what it draws: 4 A more is the building's.
    grid_reading(app, [34, 34, 34], 5000)
    assert app.grid_building_a == [14.0, 14.0, 14.0]


def test_a_building_that_grows_past_what_the_guns_changes_explain_counts_at_once(make_app):
    app = make_app(board="sim-ac2-grid", grid_limit_a=40)
    for g in app.guns:
        g.contactor, g.current_a, g.duty_pm, g.duty_changed_ms, g.closed_ms = True, 10.0, 167, -60000, -60000
    grid_reading(app, [30, 30, 30], 0)
    gun = app.guns[0]
    gun.duty_pm, gun.duty_changed_ms = 267, 500   # its EV may draw 6 A more
    caps = grid_reading(app, [60, 30, 30], 1000)  # and the building takes 30 A more on L1
    assert app.grid_building_a == pytest.approx([34.0, 10.0, 10.0], abs=0.05)   # 30 - 6 of it, at once
    assert caps[0] == pytest.approx(40 - 2 - 34.0, abs=0.05)
    # Gun 1 lowers to 6 A; its meter's 10 A may be from before. A reading of the building and
    # both guns at 10 A: the building's 34 A stand (no room made of a stale current).
    gun.duty_pm, gun.duty_changed_ms = 100, 6000
    grid_reading(app, [54, 26, 26], 6500)
    assert app.grid_building_a == pytest.approx([34.0, 10.0, 10.0], abs=0.05)


def test_the_boot_s_construction_code_goes_once_the_app_stands(tmp_path, monkeypatch):
    # evse.appinit and evse.ocpp.cpinit run once, at boot: a board holds .mpy code in its heap.
    import sys
    import evse
    import evse.ocpp
    from evse.app import App
    monkeypatch.setattr(time, "ticks_ms", lambda: 0, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    monkeypatch.setattr(time, "ticks_add", lambda a, b: a + b, raising=False)
    b = json.loads((BOARDS / "sim-ac2.json").read_text())
    cfg = config.Config(b, str(tmp_path))
    cfg.set("ocpp_url", "ws://127.0.0.1:9/ocpp")
    app = App(b, cfg, FakeHal(interlock=True), str(tmp_path))
    assert [g.n for g in app.guns] == [1, 2] and app.cp.keys.get("NumberOfConnectors") == 2
    assert "evse.appinit" not in sys.modules and "evse.ocpp.cpinit" not in sys.modules
    assert not hasattr(evse, "appinit") and not hasattr(evse.ocpp, "cpinit")
    # Nor does anything it made keep them: a function keeps its module's globals, and so every
    # function of the module (a lambda made there once kept all of evse.appinit on every board).
    import gc
    import types
    gc.collect()
    kept = [o for o in gc.get_objects() if isinstance(o, types.FunctionType)
            and o.__globals__.get("__name__") in ("evse.appinit", "evse.ocpp.cpinit")]
    assert not kept, kept
    assert app.metering is not None and app.metering.grid_limit_a() == b["site_limit_a"]   # sim-ac2 has a meter
