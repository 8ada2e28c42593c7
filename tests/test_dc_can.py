"""The cabinet's CAN path (evse.dc.Cabinet with evse.can.modules' interface) against the HAL-level
cabinet model of tests/test_dc.py, whose dispensers now deliver what their modules' setpoints
give: a module that reports a fault or falls silent leaves the allocation, the others never get
more than their rating, the dispenser never more than its limit, and no module leaves under load.
A silent module keeps its last setpoint until its own timeout: it is parked only after that."""
from test_dc import BOARDS, Harness, ModelCabinet, json
from evse.dc import NOMINAL_DC_V

OWN_TIMEOUT_MS = 10000


class Stage:
    """evse.can.modules.Modules as the cabinet uses it, over the model: a module puts out its
    setpoint until it faults (then nothing) or falls silent (then its last setpoint, deaf, until
    its own timeout)."""

    from evse.can import infy as codec   # its least current

    def __init__(self, count):
        self.amps = [0.0] * count          # as set by the cabinet
        self.out_a = [0.0] * count         # what each module puts out
        self.fault = [False] * count
        self.silent_since = [None] * count
        self.t_ms = 0

    def usable(self, m):
        return not self.fault[m] and self.silent_since[m] is None

    def silent(self, m):
        return self.silent_since[m] is not None

    def deaf_off(self, m, now_ms):
        return now_ms - self.silent_since[m] >= OWN_TIMEOUT_MS + 500

    def quiet(self, m):
        return self.out_a[m] < 1.0

    def stray_a(self, m):
        return self.out_a[m] if self.silent(m) else 0.0

    def set(self, m, volts, amps):
        self.amps[m] = amps

    def advance(self, now_ms):
        self.t_ms = now_ms
        for m in range(len(self.amps)):
            if self.fault[m]:
                self.out_a[m] = 0.0
            elif self.silent_since[m] is not None:
                if now_ms - self.silent_since[m] >= OWN_TIMEOUT_MS:
                    self.out_a[m] = 0.0        # its own timeout
            else:
                self.out_a[m] = self.amps[m]


class CanModel(ModelCabinet):
    """The dispensers' limit is what their modules put out, at 400 V; one module's rating at most."""

    def __init__(self, board, stage, **kw):
        ModelCabinet.__init__(self, board, **kw)
        self.stage = stage
        self.over_rating = []

    def advance(self, ms):
        self.stage.advance(self.t_ms + ms)
        for d in range(1, self.n + 1):
            self.limit[d] = sum(self.stage.out_a[m] for m in range(self.count) if self.contacts[m] == d) * NOMINAL_DC_V
        for m in range(self.count):
            if self.stage.amps[m] * NOMINAL_DC_V > self.module_w + 1e-6:
                self.over_rating.append((self.t_ms, m + 1, self.stage.amps[m]))
        ModelCabinet.advance(self, ms)


def harness(**kw):
    from evse.dc import Cabinet
    board = json.loads((BOARDS / "sim-dc2.json").read_text())
    stage = Stage(board["cabinet"]["modules"])
    h = Harness(dc_board_without_can(board), **kw)
    h.hw = CanModel(h.board, stage, **kw)
    h.cab = Cabinet(HalWithCan(h.hw), board, h.notes.append)
    h.cab.stage = stage   # the modules' part, as evse.can.modules.Modules gives it
    return h, stage


def dc_board_without_can(board):
    board = json.loads(json.dumps(board))
    board["cabinet"].pop("can")
    return board


class HalWithCan:
    """The model as the cabinet's HAL, with a CAN bus the stage stands for."""

    def __init__(self, hw):
        self.hw = hw

    def __getattr__(self, name):
        return getattr(self.hw, name)

    def can(self, index):
        return None


def test_a_faulty_module_leaves_the_allocation_and_its_dispenser_comes_down_first():
    h, stage = harness(lag_ms=40)
    h.ask(g1=150)
    h.run(5000)
    assert h.held() == [4, 0] and h.hw.power[1] == 150000
    stage.fault[1] = True
    h.run(3000)
    assert h.hw.coil[1] == 0 and h.held() == [3, 0] and h.hw.power[1] == 120000
    assert not h.hw.arcs and not h.hw.over_rating
    stage.fault[1] = False
    h.cab._allocated_ms = None
    h.run(5000)
    assert h.held() == [4, 0] and h.hw.power[1] == 150000 and not h.hw.arcs


def test_a_silent_module_stays_on_until_its_own_timeout_and_the_others_carry_only_the_rest():
    h, stage = harness(lag_ms=40)
    h.ask(g1=150)
    h.run(5000)
    stage.silent_since[1] = h.hw.t_ms
    h.run(OWN_TIMEOUT_MS - 1000)
    # Still switched to dispenser 1 (it may still put out 100 A); the limit is the three others'
    # 120 kW, and they are set so that with the silent one's 100 A nothing goes over it.
    assert h.hw.coil[1] == 1 and h.hw.power[1] <= 120000 + 1
    assert sum(stage.amps[m] for m in (0, 2, 3)) * NOMINAL_DC_V + stage.out_a[1] * NOMINAL_DC_V <= 120000 + 1
    h.run(3000)
    assert h.hw.coil[1] == 0 and not h.hw.arcs and not h.hw.over_rating and h.cab.forced == 0


def test_no_module_is_ever_set_above_its_rating_while_cars_come_and_go():
    h, stage = harness(lag_ms=120)
    for asks, ms in (({"g1": 150}, 2000), ({"g2": 60}, 3000), ({"g1": 20}, 3000), ({"g2": 0}, 2000),
                     ({"g1": 160}, 4000)):
        h.ask(**asks)
        h.run(ms)
    assert not h.hw.over_rating and not h.hw.arcs and h.cab.forced == 0
