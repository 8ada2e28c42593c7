"""DC charging: the cabinet controller's sequencing against a model cabinet (modules behind a
contactor matrix whose feedback lags, dispensers that ramp), the DC gun's pilot and safety paths,
what the app feeds the cabinet, the DC board schema, and the virtual board's DC world."""
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from evse import cabinet, config, pilot
from evse import dc as dc_mod
from evse.dc import CABINET_MS, RAMP_DOWN_MS, Cabinet, DcGun
from fake_rig import BOARD as AC_BOARD
from fake_rig import FakeHal, run, run_until

BOARDS = Path(__file__).resolve().parents[1] / "boards"


def hal_board(name):
    """A DC board file without its CAN modules and Modbus matrix: the sequencing through the HAL's
    power limit and matrix (tests/test_dc_can.py and hil_tests/test_dc_hil.py go through their
    modules' setpoints, tests/test_matrix.py through the I/O modules)."""
    board = json.loads((BOARDS / f"{name}.json").read_text())
    board.get("cabinet", {}).pop("can", None)
    board.get("cabinet", {}).pop("matrix", None)
    return board


def dc_board(modules=4, module_kw=40, guns=2):
    return {"name": "unit-dc", "hal": "sim", "kind": "dc", "site_limit_a": 232, "phases": 3,
            "cabinet": {"modules": modules, "module_kw": module_kw},
            "guns": [{"max_kw": 160} for _ in range(guns)],
            "pilot": AC_BOARD["pilot"], "derate": AC_BOARD["derate"], "fault_retry_s": 60}


class ModelCabinet:
    """Power modules behind a contactor matrix and the dispensers they feed, as the cabinet
    controller sees them through the HAL. The feedback contacts follow the coils `lag_ms`
    later; a dispenser's power follows min(EV's ask, limit, modules connected) at `ramp_w_per_ms`
    (None: it never comes down, a converter that ignores its limit). It records every breach of
    the rules the controller must keep."""

    def __init__(self, board, lag_ms=40, ramp_w_per_ms=50.0, rise_w_per_ms=None):
        self.n = len(board["guns"])
        self.count = board["cabinet"]["modules"]
        self.module_w = board["cabinet"]["module_kw"] * 1000
        self.lag_ms = lag_ms
        self.ramp = ramp_w_per_ms
        self.rise = rise_w_per_ms     # None: rises as fast as it falls
        self.t_ms = 0
        self.coil = [0] * self.count            # commanded
        self.contacts = [0] * self.count        # physically
        self._pending = []                      # (due_ms, module, to)
        self.limit = [0] * (self.n + 1)
        self.power = [0.0] * (self.n + 1)
        self.asks = [0.0] * (self.n + 1)
        self.total_w = self.count * self.module_w
        self.arcs = []          # (t, module, dispenser, power, capacity left)
        self.over_capacity = []  # limits set above the modules connected
        self.over_total = []     # moments the limits summed above the total
        self.early_close = []    # modules closed onto a dispenser while still on another
        self.moves = []          # (t, module, from, to) as the contacts move

    def capacity(self, d):
        return sum(1 for g in self.contacts if g == d) * self.module_w

    # -- the HAL's DC power stage --
    def set_dc_power(self, d, w):
        self.limit[d] = w
        if w > self.capacity(d):
            self.over_capacity.append((self.t_ms, d, w, self.capacity(d)))
        if sum(self.limit) > self.total_w:
            self.over_total.append((self.t_ms, list(self.limit)))

    def dc_power(self, d):
        return self.power[d]

    def set_module(self, m, d):
        if d and self.contacts[m - 1] not in (0, d):
            self.early_close.append((self.t_ms, m, self.contacts[m - 1], d))
        self.coil[m - 1] = d
        self._pending.append((self.t_ms + self.lag_ms, m, d))

    def module_feedback(self, m):
        return self.contacts[m - 1]

    # -- physics --
    def advance(self, ms):
        self.t_ms += ms
        due = [p for p in self._pending if p[0] <= self.t_ms]
        self._pending = [p for p in self._pending if p[0] > self.t_ms]
        for _, m, d in due:
            frm = self.contacts[m - 1]
            self.contacts[m - 1] = d
            if frm != d:
                self.moves.append((self.t_ms, m, frm, d))
            if frm and frm != d:
                left = self.capacity(frm)
                if self.power[frm] > left:
                    self.arcs.append((self.t_ms, m, frm, self.power[frm], left))
                    self.power[frm] = left
        for d in range(1, self.n + 1):
            want = min(self.asks[d], self.limit[d], self.capacity(d))
            if self.ramp is None:
                self.power[d] = max(self.power[d], want) if want else self.power[d]
                continue
            p = self.power[d]
            if want > p:
                self.power[d] = min(want, p + (self.rise or self.ramp) * ms)
            else:
                self.power[d] = max(want, p - self.ramp * ms)


class Harness:
    """A Cabinet stepped every CABINET_MS against a ModelCabinet, with the ChargePointMaxProfile-
    like cap `total_w` and per-dispenser caps."""

    def __init__(self, board=None, **model):
        self.board = board or dc_board()
        self.hw = ModelCabinet(self.board, **model)
        self.notes = []
        self.cab = Cabinet(self.hw, self.board, self.notes.append)
        n = len(self.board["guns"])
        self.caps = [g["max_kw"] * 1000 for g in self.board["guns"]]
        self.total_w = self.hw.total_w
        self.prio = None
        self.n = n
        self.peak_w = 0.0   # the most the dispensers delivered together

    def ask(self, **kw_by_gun):
        for key, kw in kw_by_gun.items():
            self.hw.asks[int(key[1:])] = kw * 1000

    def run(self, ms):
        end = self.hw.t_ms + ms
        while self.hw.t_ms < end:
            self.hw.advance(CABINET_MS)
            demands = [self.hw.asks[d + 1] for d in range(self.n)]
            delivered = [self.hw.power[d + 1] for d in range(self.n)]
            self.peak_w = max(self.peak_w, sum(delivered))
            self.cab.step(self.hw.t_ms, demands, self.caps, delivered, self.total_w, self.prio)

    def held(self):
        return [self.hw.capacity(d + 1) // self.hw.module_w for d in range(self.n)]

    def assert_rules_kept(self):
        hw = self.hw
        assert not hw.arcs, f"modules left dispensers that had not ramped down: {hw.arcs[:3]}"
        assert not hw.over_capacity, f"limits above the modules connected: {hw.over_capacity[:3]}"
        assert not hw.over_total, f"limits summing above the total: {hw.over_total[:3]}"
        assert not hw.early_close, f"modules closed while still on another dispenser: {hw.early_close[:3]}"


def test_two_cars_share_the_cabinet_by_whole_modules_150_and_50_kw_get_3_and_1():
    h = Harness()
    h.ask(g1=150)
    h.run(4000)
    assert h.held() == [4, 0] and h.hw.power[1] == 150000
    h.ask(g2=50)
    h.run(4000)
    assert h.held() == [3, 1]
    assert h.hw.power[1] == 120000 and h.hw.power[2] == 40000
    h.assert_rules_kept()


def test_a_module_leaves_only_after_its_dispenser_has_ramped_down_to_what_stays():
    h = Harness()
    h.ask(g1=150)
    h.run(4000)
    h.ask(g2=50)
    t = h.hw.t_ms
    h.run(4000)
    leave = [mv for mv in h.hw.moves if mv[0] > t and mv[2] == 1]
    assert len(leave) == 1
    # 150 kW down to 120 kW at 50 W/ms takes 600 ms: the module cannot have left before.
    assert leave[0][0] - t >= 600
    assert h.notes == []
    h.assert_rules_kept()


def test_the_gaining_dispenser_is_raised_only_once_the_module_feedback_shows_it_connected():
    h = Harness(lag_ms=300)  # slow module contactors
    h.ask(g1=150)
    h.run(4000)
    h.ask(g2=50)
    raised = []
    for _ in range(60):
        h.run(CABINET_MS)
        if h.hw.limit[2] and not raised:
            raised.append((h.hw.t_ms, h.hw.capacity(2)))
    assert raised and raised[0][1] >= h.hw.limit[2] > 0
    h.assert_rules_kept()


def test_a_dispenser_that_does_not_ramp_down_loses_the_module_after_the_timeout_and_it_is_logged():
    h = Harness(ramp_w_per_ms=None)  # its converters ignore a lower limit
    h.ask(g1=150)
    h.hw.ramp = 50.0
    h.run(4000)
    h.hw.ramp = None
    h.ask(g2=50)
    t = h.hw.t_ms
    h.run(RAMP_DOWN_MS - 500)
    assert h.held() == [4, 0], "the module moved before the ramp-down timeout"
    h.run(1500)
    assert h.held() == [3, 1]
    assert h.cab.forced == 1
    assert any("still delivers" in n and "dispenser 1" in n for n in h.notes)
    assert h.hw.arcs and h.hw.arcs[0][0] - t >= RAMP_DOWN_MS


def test_a_cap_on_the_total_keeps_the_sum_of_limits_under_it_through_transitions():
    h = Harness()
    h.total_w = 100000   # a ChargePointMaxProfile of 100 kW on the 160 kW cabinet
    h.hw.total_w = 100000
    h.ask(g1=150)
    h.run(4000)
    assert sum(h.hw.limit) <= 100000 and h.hw.power[1] == 100000
    h.ask(g2=50)
    h.run(4000)
    # Max-min fair over what each can take: the 50 kW car's one module (40 kW), the rest to the other.
    assert h.hw.limit[1:] == [60000, 40000]
    assert h.hw.power[1] + h.hw.power[2] <= 100000
    h.assert_rules_kept()


def test_a_raise_waits_while_another_dispenser_is_still_above_its_lowered_limit():
    h = Harness(rise_w_per_ms=500.0)  # converters that rise faster than the others fall
    h.total_w = h.hw.total_w = 100000
    h.ask(g1=150, g2=10)
    h.run(4000)
    assert h.hw.limit[1:] == [90000, 10000]
    h.ask(g2=50)   # gun 2 asks more: gun 1 comes down 40 kW first
    over = []
    for _ in range(30):
        h.run(CABINET_MS)
        over.append(h.hw.power[1] + h.hw.power[2])
    assert max(over) <= 100000 + dc_mod.SETTLED_W
    assert h.hw.limit[1:] == [60000, 40000]
    h.assert_rules_kept()


def test_departure_frees_the_modules_at_once_and_they_go_to_the_car_that_still_charges():
    h = Harness()
    h.ask(g1=150, g2=50)
    h.run(5000)
    assert h.held() == [3, 1]
    h.ask(g2=0)     # the second car leaves
    h.run(1500)
    assert h.held() == [4, 0]
    assert h.hw.power[1] > 120000
    h.assert_rules_kept()


def test_a_module_whose_feedback_never_follows_is_reported_and_never_given_to_another():
    h = Harness()
    h.ask(g1=150)
    h.run(3000)
    stuck = 4
    original = h.hw.set_module

    def welded(m, d):
        if m == stuck:
            h.hw.coil[m - 1] = d  # the coil obeys, the contacts stay
            return
        original(m, d)
    h.hw.set_module = welded
    h.ask(g2=50)
    h.run(3000)
    assert any("module 4 does not follow" in n for n in h.notes)
    assert h.hw.contacts[stuck - 1] == 1
    h.assert_rules_kept()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.sampled_from([0, 0, 20, 45, 60, 100, 150, 300]),
                          st.integers(0, 3000)), min_size=1, max_size=12),
       st.integers(0, 400), st.sampled_from([None, 200000, 300000]))
def test_sim_dc6_any_arrivals_and_departures_keep_every_rule_and_settle_on_the_allocation(script, lag_ms, total_w):
    board = hal_board("sim-dc6")
    h = Harness(board, lag_ms=lag_ms)
    if total_w:
        h.total_w = h.hw.total_w = total_w
    for gun, kw, after_ms in script:
        h.ask(**{"g%d" % gun: kw})
        h.run(after_ms)
    h.run(3 * RAMP_DOWN_MS)
    h.assert_rules_kept()
    assert h.cab.forced == 0
    assert h.peak_w <= h.total_w + h.n * dc_mod.SETTLED_W
    asks = [min(h.hw.asks[d + 1], h.caps[d]) / 1000 for d in range(h.n)]
    assert h.held() == cabinet.allocate(asks, h.held(), h.hw.count, 30)
    assert sum(h.hw.limit) <= h.total_w


# ---- the DC gun --------------------------------------------------------------------------------

class DcFakeHal(FakeHal):
    """fake_rig's HAL plus a DC EV that talks while the pilot is at 5 %."""

    def __init__(self):
        FakeHal.__init__(self)
        self.demand = (150000, 42.0)
        self.delivered = 0.0
        self.limits = []

    def ev_demand(self, gun):
        return self.demand if self.ev in "BCD" and pilot.is_digital(self.duty_pm or 0) else None

    def dc_power(self, gun):
        return self.delivered if self.coil else 0.0

    def set_dc_power(self, gun, w):
        self.limits.append(w)


def make_dc_gun():
    hal = DcFakeHal()
    board = dc_board(guns=1)
    g = DcGun(1, hal, board["guns"][0], board)
    g.allowed = True
    return g, hal


def dc_charging(g, hal):
    hal.ev = "B"
    run_until(g, hal, lambda: g.state == "B2", 1000)
    hal.ev = "C"
    run_until(g, hal, lambda: g.contactor, 3000)


def test_a_dc_gun_runs_the_pilot_at_5_percent_and_closes_when_the_ev_asks():
    g, hal = make_dc_gun()
    dc_charging(g, hal)
    assert hal.duty_pm == pilot.DUTY_DIGITAL_PM == 50
    assert g.state == "C2"
    run(g, hal, 300)
    assert g.demand_w == 150000 and g.soc == 42.0


def test_a_dc_gun_not_allowed_shows_no_pwm_and_its_ev_does_not_talk():
    g, hal = make_dc_gun()
    g.allowed = False
    hal.ev = "B"
    run(g, hal, 1000)
    assert g.state == "B1" and hal.duty_pm == pilot.DUTY_OFF_PM
    assert g.demand_w == 0 and g.soc is None


def test_dc_contactor_opens_within_100ms_when_the_ev_unplugs_or_goes_to_b_e_f():
    for letter in "ABEF":
        g, hal = make_dc_gun()
        dc_charging(g, hal)
        hal.ev = letter
        took = run_until(g, hal, lambda: not hal.coil, 100)
        assert took <= 100, letter


def test_a_dc_gun_never_runs_the_pwm_wake_up_of_basic_charging():
    g, hal = make_dc_gun()
    hal.ev = "B"
    run(g, hal, 70000)
    assert g.state == "B2" and not any(kind == "wakeup" for kind, _ in g.events)


def test_a_dispenser_above_its_limit_for_7s_stops_with_overcurrent():
    g, hal = make_dc_gun()
    dc_charging(g, hal)
    g.limit_w = 40000
    hal.delivered = 80000
    run(g, hal, 6000)
    assert g.fault is None
    run(g, hal, 1500)
    assert g.fault == "OVERCURRENT" and not hal.coil


def test_a_dc_gun_status_shows_its_modules_power_and_soc():
    g, hal = make_dc_gun()
    dc_charging(g, hal)
    g.modules, g.limit_w, hal.delivered = 3, 120000, 120000
    run(g, hal, 300)
    s = g.status()
    assert (s["modules"], s["dc_w"], s["limit_w"], s["soc"]) == (3, 120000, 120000, 42.0)


# ---- what the app feeds the cabinet ------------------------------------------------------------

class AppHal(DcFakeHal):
    """One EV letter for every gun, and a two-gun cabinet model behind the DC calls."""

    def __init__(self, board):
        DcFakeHal.__init__(self)
        self.model = ModelCabinet(board, lag_ms=0)
        self.demand = (150000, 30.0)

    def set_dc_power(self, gun, w):
        self.model.set_dc_power(gun, w)

    def dc_power(self, gun):
        return self.model.dc_power(gun)

    def set_module(self, m, gun):
        self.model.set_module(m, gun)

    def module_feedback(self, m):
        return self.model.module_feedback(m)


class CentralSystem:
    def __init__(self, caps=None, allowed=(1, 2)):
        self.caps = caps or {}
        self.allowed = allowed

    def may_charge(self, n):
        return n in self.allowed

    def limit_a(self, n):
        return self.caps.get(n)

    def session_tag(self, n):
        return None


@pytest.fixture
def dc_app(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "ticks_ms", lambda: 0, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    from evse.app import App

    def make(cs=None, board="sim-dc2"):
        b = hal_board(board)
        cfg = config.Config(b, str(tmp_path))
        hal = AppHal(b)
        app = App(b, cfg, hal, str(tmp_path))
        app.cp = cs
        app.note = lambda text: None
        for g in app.guns:
            g.state = "C2"
            g.demand_w = 150000
        return app, hal
    return make


def settle(app, hal, ms=3000):
    for t in range(0, ms, CABINET_MS):
        hal.model.advance(CABINET_MS)
        hal.model.asks = [0] + [g.demand_w for g in app.guns]
        for g in app.guns:
            g.dc_w = hal.model.power[g.n]
        if app.cp is not None:
            app.grant()  # the OCPP task hands the control path the charge point's word
        app.share(t)


def test_the_app_builds_dc_guns_and_a_cabinet_for_a_dc_board(dc_app):
    app, hal = dc_app()
    assert all(isinstance(g, DcGun) for g in app.guns) and app.cabinet is not None
    settle(app, hal)
    assert [g.modules for g in app.guns] == [2, 2]
    assert [g.limit_w for g in app.guns] == [80000, 80000]
    assert all(g.allowed for g in app.guns)


def test_a_charge_point_max_profile_in_amps_caps_the_cabinet_as_its_ac_input(dc_app):
    # 100 kW as amps per phase on the 3 x 230 V input: 144.9 A.
    app, hal = dc_app(CentralSystem(caps={0: 144.9}))
    settle(app, hal)
    assert sum(g.limit_w for g in app.guns) <= 100000
    assert [g.limit_w for g in app.guns] == [49990, 49990]


def test_a_gun_without_authorization_gets_no_pwm_and_no_modules(dc_app):
    app, hal = dc_app(CentralSystem(allowed=(2,)))
    settle(app, hal)
    assert not app.guns[0].allowed and app.guns[1].allowed
    assert [g.modules for g in app.guns] == [0, 4]


def test_a_tx_profile_caps_one_dispenser_and_its_modules(dc_app):
    app, hal = dc_app(CentralSystem(caps={1: 57.9}))   # 57.9 A x 230 V x 3 = 39.95 kW
    settle(app, hal)
    assert app.guns[0].limit_w == 39951
    assert [g.modules for g in app.guns] == [1, 3]


def test_power_and_energy_of_a_dc_gun_without_a_meter_come_from_the_dc_side(dc_app):
    app, hal = dc_app()
    g = app.guns[0]
    g.contactor, g.dc_w = True, 90000.0
    app.metering = None
    assert app.power_w(1) == 90000.0
    app.integrate(1000, 3600_000)
    assert round(app.energy_wh(1)) == 90000


# ---- the DC board schema -----------------------------------------------------------------------

@pytest.mark.parametrize("mutate, message", [
    (lambda b: b.pop("cabinet"), 'board of kind dc needs a "cabinet"'),
    (lambda b: b["cabinet"].update(modules=0), "board cabinet.modules must be the number of power modules, 1..32, not 0"),
    (lambda b: b["cabinet"].update(module_kw="40"), "board cabinet.module_kw must be each module's power, 1..500 kW"),
    (lambda b: b["guns"][1].update(max_kw=None), "board guns[1].max_kw must be the dispenser's rating"),
    (lambda b: b.update(kind="hybrid"), "board 'kind' is 'hybrid': use ac"),
    (lambda b: b["cabinet"]["can"].update(protocol="delta"), 'board cabinet.can must be {"protocol": "infy" or "winline"'),
    (lambda b: b["cabinet"]["can"].update(addresses=[1, 2, 3]), "board cabinet.can.addresses must be 4 different CAN"),
    (lambda b: b["cabinet"]["can"].update(addresses=[1, 2, 2, 3]), "board cabinet.can.addresses must be 4 different"),
    (lambda b: b["cabinet"]["can"].update(addresses=[1, 2, 3, 63]), "addresses 0..62, one per module"),
    (lambda b: b["cabinet"]["can"].update(timeout_s=0), "board cabinet.can.timeout_s must be the seconds"),
    (lambda b: b["guns"][0].update(max_v=2000), "board guns[0].max_v must be the gun's most voltage, 150..1500 V"),
    (lambda b: b["guns"][1].update(max_a="500"), "board guns[1].max_a must be the gun's most current, 1..1000 A"),
])
def test_bad_dc_board_files_get_an_error_naming_the_entry(mutate, message):
    board = json.loads((BOARDS / "sim-dc2.json").read_text())
    mutate(board)
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config.check_board(board)


def test_the_dc_boards_have_the_cabinets_of_the_issue():
    dc2 = json.loads((BOARDS / "sim-dc2.json").read_text())
    dc6 = json.loads((BOARDS / "sim-dc6.json").read_text())
    assert (len(dc2["guns"]), dc2["cabinet"]) == (2, {"modules": 4, "module_kw": 40, "can": {
        "protocol": "infy", "addresses": [1, 2, 3, 4]}, "matrix": {"model": "waveshare_io8", "uart": 0,
                                                                   "addresses": [10]}})
    assert (len(dc6["guns"]), dc6["cabinet"]) == (6, {"modules": 12, "module_kw": 30, "can": {
        "protocol": "winline", "addresses": list(range(12))}})
    for b in (dc2, dc6):
        # The site allows the cabinet's power: it is the cabinet that binds.
        cabinet_w = b["cabinet"]["modules"] * b["cabinet"]["module_kw"] * 1000
        assert b["site_limit_a"] * 230 * 3 >= cabinet_w


def test_the_hal_of_a_board_without_dc_refuses_the_dc_calls_by_name():
    from evse.hal import Base
    hal = Base(json.loads((BOARDS / "sim-ac2.json").read_text()))
    for call, args in (("ev_demand", (1,)), ("set_dc_power", (1, 0)), ("dc_power", (1,)),
                       ("set_module", (1, 0)), ("module_feedback", (1,))):
        with pytest.raises(OSError, match="this board has no DC power stage"):
            getattr(hal, call)(*args)


# ---- the virtual board's DC world --------------------------------------------------------------

def dc_world(name="sim-dc2"):
    from host_tools.sim.world import World
    return World(hal_board(name))


def test_a_dc_ev_asks_full_power_to_80_percent_then_tapers_to_a_fifth_at_100():
    from host_tools.sim.world import EV
    ev = EV(kind="dc", max_kw=150)
    targets = {}
    for soc in (20, 80, 90, 99.99):
        ev.soc = soc
        targets[soc] = ev.dc_target_w()
    assert targets[20] == targets[80] == 150000
    assert targets[90] == pytest.approx(90000)
    assert targets[99.99] == pytest.approx(30000, rel=3e-3)
    ev.soc, ev.target_soc = 85, 85
    assert ev.dc_target_w() == 0


def test_the_world_logs_an_arc_when_a_module_leaves_a_dispenser_above_what_stays():
    w = dc_world()
    for m in (1, 2, 3, 4):
        w.move_module(m, 1)
    g = w.guns[0]
    g.dc_w = 150000.0
    w.move_module(4, 0)
    arcs = [e for e in w.events if e["what"] == "arc"]
    assert arcs and arcs[0]["value"] == {"module": 4, "power_w": 150000, "capacity_w": 120000}
    assert g.dc_w == 120000
    g.dc_w = 80000.0
    w.move_module(3, 2)
    assert len([e for e in w.events if e["what"] == "arc"]) == 1
    assert [e["value"] for e in w.events if e["what"] == "module"][-1] == {"module": 3, "from": 1, "to": 2}


def test_the_dc_hal_requests_of_the_world():
    from host_tools.sim import control
    from test_sim_control import FakeBoard
    w = dc_world()
    assert control.handle_line(w, '{"op": "plug", "gun": 1, "ev": {"max_kw": 100, "soc": 50}}', FakeBoard())["ok"]
    assert w.hal_request("E 1") == "-"   # no 5 % pilot yet: the EV does not talk
    w.hal_request("P 1 50")
    assert w.hal_request("E 1") == "100000 50.0"
    assert w.hal_request("L 1 40000") == "ok" and w.guns[0].dc_limit_w == 40000
    assert w.hal_request("L 1 -1").startswith("!power limit must be >= 0 W")
    assert w.hal_request("M 2 1") == "ok" and w.hal_request("m 2") == "1"
    assert w.hal_request("M 5 1").startswith("!module must be 1..4")
    assert w.hal_request("M 1 3").startswith("!dispenser must be 0..2")
    assert w.hal_request("D 1") == "0"
    snap = w.snapshot()[0]
    assert snap["modules"] == [2] and snap["dc_limit_w"] == 40000 and snap["ev_target_w"] == 100000


def test_a_dispenser_ramps_to_what_the_ev_the_limit_and_its_modules_allow():
    w = dc_world()
    g = w.guns[0]
    from host_tools.sim.world import EV
    g.ev, g.plugged, g.ev_letter = EV(kind="dc", max_kw=150, soc=20), True, "C"
    g.duty_pm, g.contacts, g.coil, g.dc_limit_w = 50, True, True, 200000
    for m in (1, 2, 3):
        w.move_module(m, 1)
    for _ in range(10):
        w._step_dc(g, "C", 100)   # 1 s at 50 kW/s
    assert g.dc_w == pytest.approx(50000)
    for _ in range(40):
        w._step_dc(g, "C", 100)
    assert g.dc_w == 120000   # three modules of 40 kW
    assert [e["value"] for e in w.events if e["what"] == "dc_power"] == [120000]
    assert g.energy_wh > 0 and g.ev.soc > 20
    reading = w.meter_reading(g)
    assert reading["power_w"] == 120000 and reading["amps"] == [300.0] and reading["volts"] == [400.0]


def test_plugging_an_ac_ev_into_a_dc_gun_is_refused_and_the_default_ev_is_the_boards_kind():
    from host_tools.sim import control
    from test_sim_control import FakeBoard
    w = dc_world()
    reply = control.handle_line(w, '{"op": "plug", "gun": 1, "ev": {"kind": "ac"}}', FakeBoard())
    assert reply["error"] == 'plug: gun 1 of board sim-dc2 is a DC gun: plug an EV with "kind": "dc"'
    assert control.handle_line(w, '{"op": "plug", "gun": 2}', FakeBoard())["ok"]
    assert w.guns[1].ev.kind == "dc"
    ac = dc_world("sim-ac2")
    assert "an AC gun" in control.handle_line(ac, '{"op": "plug", "gun": 1, "ev": {"kind": "dc"}}', FakeBoard())["error"]
    assert ac.hal_request("M 1 1").startswith("!board sim-ac2 is an AC board")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["plug", "unplug", "ev", "ev_state", "snapshot", "events", "reset", "temperature"]),
       st.dictionaries(st.sampled_from(["gun", "ev", "state", "kind", "max_kw", "soc", "battery_kwh",
                                        "target_soc", "celsius"]), st.none() | st.integers(-5, 400)
                       | st.sampled_from(["dc", "ac", "C", "B"]) | st.dictionaries(
                           st.sampled_from(["kind", "max_kw", "soc", "max_a"]),
                           st.integers(-5, 400) | st.sampled_from(["dc", "ac"]), max_size=3), max_size=4),
       st.lists(st.sampled_from(["P 1 50", "P 2 50", "K 1 1", "K 2 1", "K 1 0", "L 1 80000", "L 2 160000",
                                 "M 1 1", "M 2 1", "M 3 2", "M 4 0", "M 1 2", "E 1", "E 2", "D 1", "m 3"]),
                max_size=8))
def test_any_rig_op_and_hal_request_on_a_dc_board_gets_one_reply_and_never_breaks_the_world(op, fields, hal_lines):
    from host_tools.sim import control
    from test_sim_control import FakeBoard
    w = dc_world()
    reply = control.handle_line(w, json.dumps({"op": op, **fields}), FakeBoard())
    assert reply["ok"] or reply["error"]
    for line in hal_lines:
        assert w.hal_request(line)
        w.step()
    for g in w.snapshot():
        assert 0 <= g["power_w"] <= 160000


def test_a_dc_gun_says_its_power_limit_in_kw_where_an_ac_gun_says_its_offer_in_a():
    g, hal = make_dc_gun()
    g.limit_w = 150000
    dc_charging(g, hal)
    lines = [text for kind, text in g.events if kind == "state"]
    assert lines and all(text.endswith("  limit 150.0 kW") for text in lines), lines


def test_the_insulation_op_says_what_is_wrong_and_drives_a_modbus_monitors_line():
    from host_tools.sim import control
    from host_tools.sim.world import World
    from test_sim_control import FakeBoard

    def op(w, **fields):
        return control.handle_line(w, json.dumps({"op": "insulation", **fields}), FakeBoard())
    dc2, dc6 = (World(json.loads((BOARDS / f"{name}.json").read_text())) for name in ("sim-dc2", "sim-dc6"))
    assert op(dc2, gun=1)["error"] == "insulation: give kohm, self_test_fails and/or imd_fault"
    assert op(dc2, gun=1, imd_fault="silent")["error"] == \
        "insulation: gun 1's insulation monitor is not on Modbus (board guns[].imd)"
    assert op(dc6, gun=1, imd_fault="loud")["error"].startswith("insulation: imd_fault must be null or one of silent")
    assert op(dc6, gun=3, imd_fault="silent")["ok"] and dc6.guns[2].imd_fault == "silent"
    assert op(dc6, gun=3, imd_fault=None)["ok"] and dc6.guns[2].imd_fault is None
    assert op(dc_world(), gun=1, kohm=1)["error"] == \
        "insulation: board sim-dc2 runs no DC sequence (its cabinet has no CAN modules)"
