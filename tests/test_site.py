"""The site bus (docs/site.md): a coordinator and nodes, each a whole App, on an in-process RS-485
line. What every EV may draw (the highest offer of its gun over the last 5 s, the time it has to
follow a lower one) stays within the connection on every phase, through node silence, a
coordinator's reboot, a duplicate address and a second coordinator."""
import asyncio
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import config, modbus, site
from fake_rig import FakeHal, SilentLine
from virtual_clock import Clock

BOARDS = Path(__file__).resolve().parents[1] / "boards"
CONNECTION_A = 60
FOLLOW_MS = 5000
STEP_MS = 250


class Line:
    """What one port writes every other port hears at once. A node's port hands the frame to its
    node (what its receive loop would do) and its answer goes on the line; two answers at once
    collide (their bytes XORed)."""

    def __init__(self):
        self.ports = []

    def port(self):
        p = Port(self)
        self.ports.append(p)
        return p

    def send(self, sender, frame):
        answers = [a for a in (self._hear(p, frame) for p in self.ports if p is not sender and not p.down)
                   if a is not None]
        if len(answers) > 1:
            answers = [(None, bytes(x ^ y for x, y in zip(answers[0][1], answers[1][1])))]
        for who, a in answers:
            for p in self.ports:
                if p is not who and not p.down:
                    self._hear(p, a)

    @staticmethod
    def _hear(port, frame):
        """The port receives frame; a node's answer to it, as (port, bytes), or None."""
        if port.node is None:
            port.rx += frame
            return None
        a = port.node._answer(bytearray(frame), len(frame), port.node.clock())
        return None if a is None else (port, bytes(a))


class Port:
    def __init__(self, line):
        self.line = line
        self.rx = bytearray()
        self.node = None
        self.down = False   # its wires cut: it hears nothing and nobody hears it

    def write(self, buf):
        if not self.down:
            self.line.send(self, bytes(buf))
        return len(buf)

    def read(self, n=-1):
        data, self.rx = bytes(self.rx), bytearray()
        return data or None

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


class SiteHal(FakeHal):
    def __init__(self, port):
        FakeHal.__init__(self, interlock=True)
        self.port = port

    def uart(self, index, baudrate, parity=None):
        return self.port if index == 1 else SilentLine()


class Site:
    """A coordinator (address 1) and nodes on one Line, on one virtual clock."""

    def __init__(self, tmp_path, monkeypatch, nodes=(2, 3), **coordinator):
        self.clock = Clock()
        monkeypatch.setattr(time, "ticks_ms", self.clock.ticks_ms, raising=False)
        monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
        monkeypatch.setattr(modbus, "_ticks_ms", self.clock.ticks_ms)
        monkeypatch.setattr(modbus, "_sleep_ms", self.clock.sleep_ms)
        self.tmp = tmp_path
        self.line = Line()
        self.settings = dict({"site_nodes": len(nodes), "site_limit_a": CONNECTION_A, "site_fallback_a": 18},
                             **coordinator)
        self.apps = {1: self.make(1, "c1", **self.settings)}
        for a in nodes:
            self.apps.setdefault(a, self.make(a, "n%d" % a))
        self.extra = []        # more controllers on the line (a second node or coordinator at one address)
        self.offers = []       # (ms, [offer of every gun])
        self.worst = 0.0
        self.next_cycle = 0
        self.gone = []

    def make(self, address, folder, **settings):
        root = self.tmp / folder
        root.mkdir(exist_ok=True)
        b = json.loads((BOARDS / "sim-ac2-site.json").read_text())
        cfg = config.Config(b, str(root))
        cfg.set("site_address", address)
        for key, value in settings.items():
            cfg.set(key, value)
        port = self.line.port()
        from evse.app import App
        app = App(b, cfg, SiteHal(port), str(root))
        app.notes = []
        app.note = app.notes.append
        if not app.site.coordinates:
            port.node = app.site
        app.port = port
        app.folder = folder
        for g in app.guns:
            g.state = "A"
            g.offered_a = lambda g=g: g.allocation_a if g.state[0] in "CD" else 0.0   # the pilot follows at once
        return app

    def every(self):
        return list(self.apps.values()) + self.extra

    def plug(self, address, gun, on=True):
        self.apps[address].guns[gun - 1].state = "C2" if on else "A"

    def run(self, ms):
        end = self.clock.ms + ms
        while self.clock.ms < end:
            for app in self.every():
                app.share(app.clock())
            if self.clock.ms >= self.next_cycle:   # a cycle's transactions move the clock too
                self.next_cycle = self.clock.ms + site.CYCLE_MS
                for app in self.every():
                    if app.site.coordinates:
                        asyncio.run(app.site.cycle())
            self.check()
            self.clock.ms += STEP_MS

    def reboot(self, address):
        """A controller restarts: its guns stop, its EVs wait in B, it comes back with its settings."""
        old = self.apps[address]
        self.line.ports.remove(old.port)
        self.gone.append(old)   # (its id stays its own)
        for _, offers in self.offers:   # its contactors opened: its EVs draw nothing any more
            for n in (1, 2):
                offers.pop((id(old), n), None)
        self.apps[address] = app = self.make(address, old.folder)
        for g, was in zip(app.guns, old.guns):
            if was.state != "A":
                g.state = "C2"

    def reboot_coordinator(self):
        self.reboot(1)

    def check(self):
        now = self.clock.ms
        self.offers.append((now, dict(((id(app), g.n), g.offered_a()) for app in self.every() for g in app.guns)))
        self.offers = [(t, o) for t, o in self.offers if now - t <= FOLLOW_MS]
        may_draw = {}
        for _, offers in self.offers:
            for key, a in offers.items():
                may_draw[key] = max(a, may_draw.get(key, 0.0))
        total = sum(may_draw.values())
        self.worst = max(self.worst, total)
        assert total <= CONNECTION_A + 1e-6, (now, may_draw)

    def allocations(self, address):
        return [round(g.allocation_a, 1) for g in self.apps[address].guns]


def nodes_charging(make_site, ms):
    """A site past its coordinator's start, an EV at each node's gun 1 for `ms`."""
    s = make_site()
    s.run(20000)
    for a in (2, 3):
        s.plug(a, 1)
    s.run(ms)
    return s


@pytest.fixture
def make_site(tmp_path, monkeypatch):
    return lambda **kw: Site(tmp_path, monkeypatch, **kw)


def test_three_controllers_share_the_connection_as_one(make_site):
    s = make_site()
    s.run(20000)   # the coordinator's start: every node answered, nothing to share yet
    for a in (1, 2, 3):
        s.plug(a, 1)
    s.run(15000)
    assert [s.allocations(a)[0] for a in (1, 2, 3)] == [20.0, 20.0, 20.0]
    for a in (1, 2, 3):
        s.plug(a, 2)
    s.run(15000)
    assert [s.allocations(a) for a in (1, 2, 3)] == [[10.0, 10.0]] * 3
    s.plug(3, 1, False)
    s.plug(3, 2, False)   # a node's EVs leave: the others take the room, once the EVs followed
    s.run(15000)
    assert [s.allocations(a) for a in (1, 2)] == [[15.0, 15.0]] * 2
    status = s.apps[1].site.status(s.clock.ms)
    assert status["answering"] == 2 and not status["starting"]


def test_a_silent_node_keeps_its_caps_then_its_fallback_which_the_site_keeps_for_it(make_site):
    s = make_site()
    s.run(20000)
    for a in (1, 2, 3):
        s.plug(a, 1)
    s.run(15000)
    s.apps[3].port.down = True
    s.run(5000)
    assert s.allocations(3)[0] == 20.0   # still its cap: it has not missed site_lost_s yet
    assert any("node 3 does not answer" in n for n in s.apps[1].notes)
    s.run(10000)
    assert s.allocations(3)[0] == 6.0    # its part of site_fallback_a 18
    assert any("no coordinator for 10 s" in n for n in s.apps[3].notes)
    assert s.apps[1].site.status(s.clock.ms)["answering"] == 1
    s.run(10000)
    # The coordinator keeps the node's last caps (20 A) for it: the others share 40.
    assert [s.allocations(a)[0] for a in (1, 2)] == [20.0, 20.0]
    s.apps[3].port.down = False
    s.run(20000)
    assert [s.allocations(a)[0] for a in (1, 2, 3)] == [20.0, 20.0, 20.0]
    assert any("the coordinator writes again" in n for n in s.apps[3].notes)


def test_a_missed_answer_changes_nobodys_share(make_site):
    s = make_site()
    s.run(20000)
    for a in (1, 2, 3):
        s.plug(a, 1)
        s.plug(a, 2)
    s.run(15000)
    before = [s.allocations(a) for a in (1, 2, 3)]
    assert before == [[10.0, 10.0]] * 3
    s.apps[3].port.down = True   # noise on the line: node 3 misses answers, not site_lost_s
    s.run(6000)
    s.apps[3].port.down = False
    for _ in range(20):
        s.run(500)
        assert [s.allocations(a) for a in (1, 2, 3)] == before


def test_a_coordinator_that_reboots_takes_over_without_overshoot(make_site):
    s = make_site()
    s.run(20000)
    for a in (2, 3):
        s.plug(a, 1)
        s.plug(a, 2)
    s.run(15000)
    assert [s.allocations(a) for a in (2, 3)] == [[15.0, 15.0]] * 2
    s.reboot_coordinator()
    s.plug(1, 1)   # an EV waits at the coordinator itself
    s.run(3000)
    assert s.allocations(1)[0] == 0.0   # nothing new until the nodes' caps are known
    s.run(30000)
    assert [s.allocations(a) for a in (1, 2, 3)] == [[12.0, 0.0], [12.0, 12.0], [12.0, 12.0]]
    assert s.worst <= CONNECTION_A


def test_two_nodes_on_one_address_pause_until_one_is_changed(make_site):
    s = make_site(nodes=(2,))
    twin = s.make(2, "twin")
    s.extra.append(twin)
    s.run(20000)
    s.plug(2, 1)
    twin.guns[0].state = "C2"
    s.run(15000)
    assert s.allocations(2)[0] == 0.0 and twin.guns[0].allocation_a == 0.0
    assert any("node 2 answers as two controllers" in n for n in s.apps[1].notes)
    assert any("sees two controllers at address 2" in n for n in s.apps[2].notes)


def test_a_second_coordinator_steps_back_and_pauses_its_own_guns(make_site):
    s = make_site()
    s.run(20000)
    second = s.make(1, "c2", **s.settings)   # a second controller set to site_address 1
    s.extra.append(second)
    second.guns[0].state = "C2"
    for a in (2, 3):
        s.plug(a, 1)
    s.run(30000)
    assert any("another coordinator on the line" in n for n in second.notes)
    assert second.site.status(s.clock.ms)["conflict"]
    # The first one's sharing goes on; the guns it does not count wait.
    assert [s.allocations(a)[0] for a in (2, 3)] == [30.0, 30.0]
    assert second.guns[0].allocation_a == 0.0
    assert not any("two coordinators write" in n for n in s.apps[2].notes)


class EchoingLine(SilentLine):
    """A line where another coordinator, in step with this one, asks the same node the same
    question while this one waits for the answer: what it hears instead is that request."""

    def __init__(self):
        self.rx = b""
        self.sent = []

    def write(self, buf):
        self.sent.append(bytes(buf))
        self.rx = bytes(buf)
        return len(buf)

    def readinto(self, buf):
        n = len(self.rx)
        if not n:
            return None
        buf[:n], self.rx = self.rx, b""
        return n

    def read(self, n=-1):
        data, self.rx = self.rx, b""
        return data or None


def coordinator_on(line, tmp_path, clock=lambda: 0):
    said = []
    b = json.loads((BOARDS / "sim-ac2-site.json").read_text())
    c = site.Coordinator(line, 38400, 1, config.Config(b, str(tmp_path)), said.append, clock)
    c.quiet = 0   # past its first cycle, which only listens
    return c, said


def rival_write(address, boot, flags=0):
    """Another coordinator's write to a node: its boot id, flags, a fallback, site_lost_s, a cap."""
    return bytes(modbus.write_request(address, site.WRITE_AT, [boot, flags, 60, 10, 160]))


def test_two_coordinators_in_step_fall_out_of_it(tmp_path):
    """Each hears the other's request where the node's answer should be, and neither writes: a
    coordinator still starting then only listens for one to four cycles, so one of them writes
    while the other listens."""
    line = EchoingLine()
    c, said = coordinator_on(line, tmp_path)
    asyncio.run(c.cycle())
    assert c.conflict is None and 1 <= c.quiet <= 4
    assert c.remotes[0].why == "slave 2: frame of 8 bytes, expected 79"
    sent = len(line.sent)
    asyncio.run(c.cycle())
    assert len(line.sent) == sent   # it only listened


def test_the_lower_boot_id_steps_back_and_the_higher_goes_on(tmp_path):
    c, said = coordinator_on(SilentLine(), tmp_path)
    c.boot_id = 1000
    frame = rival_write(2, 999)
    c._foreign(frame, len(frame))
    assert c.conflict is None
    assert said == ["site bus: another coordinator on the line (it writes to node 2): two controllers have "
                    "site_address 1? It steps back; this one goes on"]
    c._foreign(frame, len(frame))
    assert len(said) == 1   # said once
    frame = b"\x07\x00" + rival_write(3, 1001) + b"\x03\x10"   # among noise, as the line gives it
    c._foreign(frame, len(frame))
    assert c.conflict == "it writes to node 3"
    assert "This one leaves the nodes to it and its own guns pause until it reboots" in said[-1]


def test_a_coordinator_still_starting_yields_to_one_past_its_start(tmp_path):
    c, said = coordinator_on(SilentLine(), tmp_path)
    c.boot_id = 1000
    frame = rival_write(2, 5, site.SETTLED)   # a lower boot id, but it was there first
    c._foreign(frame, len(frame))
    assert c.conflict == "it writes to node 2"
    now = [0]
    c, said = coordinator_on(SilentLine(), tmp_path, lambda: now[0])
    now[0] = 60000                            # this one is past its start, the other is not
    c.boot_id = 5
    frame = rival_write(2, 1000)
    c._foreign(frame, len(frame))
    assert c.conflict is None and "this one goes on" in said[0]
    assert c._head(0)[1] == site.SETTLED      # and its writes say so


def test_a_garbled_request_is_no_coordinator_but_a_starting_one_backs_off(tmp_path):
    """A request's bytes with a broken CRC, here where the node's answer should be, are noise, not
    a second coordinator. Two coordinators' requests that collide look the same: one still
    starting only listens for one to four cycles, as after a read it did not send."""
    line = EchoingLine()
    write = line.write
    line.write = lambda buf: write(bytes(buf[:-1]) + bytes([buf[-1] ^ 0xFF]))
    c, said = coordinator_on(line, tmp_path)
    asyncio.run(c.cycle())
    assert c.conflict is None and 1 <= c.quiet <= 4 and not any("coordinator" in n for n in said), said
    assert "CRC mismatch" in c.remotes[0].why


@given(st.binary(max_size=40), st.sampled_from([b"", b"\x02\x10\x00"]), st.binary(max_size=40))
def test_the_first_request_on_the_line_is_found_among_other_bytes(before, cut, after):
    frame = rival_write(4, 77)
    data = before + cut + frame + after
    at, size = site.first_request(data, len(data))
    assert 0 <= at <= len(before) + len(cut)
    assert site.request_at(data[at:at + size], size) == size


def test_two_coordinators_that_start_together_leave_one(make_site):
    s = make_site()
    second = s.make(1, "c2", **s.settings)
    s.extra.append(second)
    for a in (2, 3):
        s.plug(a, 1)
    s.run(40000)
    first = s.apps[1]
    stepped = [c for c in (first, second) if c.site.conflict is not None]
    assert len(stepped) == 1, (first.notes, second.notes)
    assert [s.allocations(a)[0] for a in (2, 3)] == [30.0, 30.0]


def test_two_coordinators_that_write_make_the_nodes_fall_back(make_site):
    s = nodes_charging(make_site, 10000)
    second = s.make(1, "c2", **s.settings)
    s.extra.append(second)
    for c in (second, s.apps[1]):   # neither takes the other's requests for what they are: both write
        c.site._foreign = lambda data, n: None
    s.run(20000)
    assert any("two coordinators write to this node" in n for n in s.apps[2].notes)
    assert [s.allocations(a)[0] for a in (2, 3)] == [6.0, 6.0]


def test_a_node_after_its_boot_waits_for_the_coordinator_then_its_kept_fallback(make_site):
    s = make_site(nodes=(2,))
    s.apps[1].port.down = True
    s.plug(2, 1)
    s.run(5000)
    assert s.allocations(2)[0] == 0.0   # never heard a coordinator, no fallback known
    s.run(10000)
    assert s.allocations(2)[0] == 0.0   # its fallback is 0 until a coordinator gives one
    s.apps[1].port.down = False
    s.run(5000)
    assert json.loads((s.tmp / "n2" / "site.json").read_text()) == {"fallback_a": 9.0}


def test_registers_round_trip():
    regs = site.node_regs([(32, 16.0, 15.8, 15.5, 15.4, (0,), 1, 12, True), (0, 0.0, 0.0, None, 0.0, (0, 1, 2), 0, None, False)],
                          site.LOST, 9.0, 0xBEEF)
    raw = bytearray()
    for r in regs:
        raw += bytes((r >> 8, r & 0xFF))
    r = site.Remote(2)
    assert r.take(raw, 0)
    assert (r.guns, r.flags, r.fallback_a, r.ids) == (2, site.LOST, 9.0, [0xBEEF])
    assert (r.lim[0], r.com[0], r.offer[0], r.drawn[0], r.now_a[0], r.loads[0], r.rank[0], r.arrived[0]) == \
        (32.0, 16.0, 15.8, 15.5, 15.4, (0,), 1, -12000)
    assert (r.drawn[1], r.arrived[1]) == (None, None)
    assert r.unsure[:2] == [True, False]
    raw[1] ^= 1
    assert not r.take(raw, 0)   # not a site node's registers


def test_settings_that_cannot_work_are_refused(tmp_path):
    b = json.loads((BOARDS / "sim-ac2.json").read_text())
    with pytest.raises(config.ConfigError, match="needs a site bus"):
        config.Config(b, str(tmp_path)).set("site_address", 1)
    b = json.loads((BOARDS / "sim-ac8.json").read_text())
    b["site_bus"] = {"uart": 1}
    with pytest.raises(config.ConfigError, match="4 guns at most"):
        config.Config(b, str(tmp_path)).set("site_address", 2)
    b = json.loads((BOARDS / "sim-ac2-site.json").read_text())
    with pytest.raises(config.ConfigError, match="site_fallback_a 41 is over"):
        config.Config(b, str(tmp_path)).set("site_fallback_a", 41)
    b["site_bus"] = {"uart": 0}
    with pytest.raises(config.ConfigError, match="the meters' line"):
        config.check_board(b)


EVENTS = st.lists(st.one_of(
    st.tuples(st.just("plug"), st.integers(1, 3), st.integers(1, 2), st.booleans()),
    st.tuples(st.just("cut"), st.integers(2, 3), st.booleans()),
    st.tuples(st.just("reboot"), st.integers(1, 3)),
    st.tuples(st.just("wait"), st.integers(1, 20)),
), min_size=1, max_size=14)


@settings(max_examples=25, deadline=None)
@given(events=EVENTS)
def test_no_phase_ever_carries_more_than_the_connection(tmp_path_factory, events):
    mp = pytest.MonkeyPatch()
    try:
        s = Site(tmp_path_factory.mktemp("site"), mp)
        s.run(16000)
        for e in events:
            if e[0] == "plug":
                s.plug(e[1], e[2], e[3])
            elif e[0] == "cut":
                s.apps[e[1]].port.down = e[2]
            elif e[0] == "reboot":
                s.reboot(e[1])
            s.run(1000 * (e[1] if e[0] == "wait" else 2))
    finally:
        mp.undo()


def test_status_says_what_each_controller_does(make_site):
    from evse import console
    s = make_site()
    s.run(20000)
    s.plug(2, 1)
    s.run(5000)
    s.apps[3].port.down = True
    s.run(15000)
    lines = {a: console.status_lines(app) for a, app in s.apps.items()}
    assert "site: coordinator of 2 nodes, 1 answer; node 3 silent" in lines[1]
    assert any(line.startswith("site: node 2, coordinator heard 0.") and line.endswith("caps 32.0 0.0 A")
               for line in lines[2]), lines[2]
    assert "site: node 3, no coordinator: the guns share the fallback 6.0 A per phase" in lines[3]
    assert json.loads(console.status_json(s.apps[2]))["site"]["role"] == "node"


def lone_coordinator(tmp_path):
    """A coordinator of one node on a silent line, and what it knows of the node."""
    b = json.loads((BOARDS / "sim-ac2-site.json").read_text())
    c = site.Coordinator(SilentLine(), 38400, 1, config.Config(b, str(tmp_path)), lambda text: None, lambda: 0)
    return c, c.remotes[0]


def test_a_nodes_raised_cap_counts_at_its_old_value_while_its_ev_may_not_have_followed(tmp_path):
    """A node's current can be newer than the grid meter's reading: right after a raise, the
    building is worked out with the cap before it (else eight raises of 1 A read as 8 A less
    building, and more raises followed: 4.6 A over the connection in a day at site-ac8x2)."""
    c, r = lone_coordinator(tmp_path)
    r.ok = r.heard = True
    r.guns = 1
    c.place(20000, [0.0, 0.0, 14.5, 0.0, 0.0, 0.0], 2)   # its cap for a long time
    c.place(40000, [0.0, 0.0, 15.6, 0.0, 0.0, 0.0], 2)   # raised
    r.now_a[0] = r.offer[0] = 15.6                       # the node says its EV follows already
    lo, hi = [0.0] * 3, [0.0] * 3
    c.drawn_a(41000, lo, hi)
    assert lo == [14.5] * 3 and hi == [15.6] * 3
    lo, hi = [0.0] * 3, [0.0] * 3
    c.drawn_a(40000 + site.UNSURE_MS, lo, hi)            # since then, what it says is what it draws
    assert lo == [15.6] * 3 and hi == [15.6] * 3


def test_a_cap_that_keeps_changing_counts_at_its_lowest_of_the_last_seconds_not_of_all_time(tmp_path):
    """A cap rewritten every cycle (7.38 A, 7.4 A, ...) counts at the lowest of the last UNSURE_MS.
    Counting the lowest since it last held still (0 A, before the EV started) made the building
    look 28 A larger than it was, for good: after a coordinator's reboot in a loaded make test, the
    coordinator's guns then waited at 0 A for 90 s while the others shared (site-ac8x2)."""
    c, r = lone_coordinator(tmp_path)
    r.ok = r.heard = True
    r.guns = 2
    t = 20000
    for k in range(30):   # gun 1's cap changes every second; gun 2's holds
        c.place(t + 1000 * k, [0.0, 0.0, 7.38 if k % 2 else 7.4, 7.4, 0.0, 0.0], 2)
    r.now_a[0] = r.now_a[1] = r.offer[0] = r.offer[1] = 7.4
    lo, hi = [0.0] * 3, [0.0] * 3
    c.drawn_a(t + 29500, lo, hi)
    assert lo == [7.38 + 7.4] * 3, lo
    assert hi == [7.4 + 7.4] * 3, hi


def test_past_six_days_a_node_still_falls_back_when_its_coordinator_goes_silent(make_site):
    """App.clock moves every time back by REBASE_MS past 6.2 days: the site's times move too, or a
    node would wait three days, on the caps last written, before it fell back."""
    from evse import ticks
    s = nodes_charging(make_site, 15000)
    for app in s.every():
        app.rebase(ticks.REBASE_MS)
    s.apps[1].port.down = True   # right after the rebase: the nodes last heard it before
    s.run(15000)
    assert [s.allocations(a)[0] for a in (2, 3)] == [6.0, 6.0]
    assert any("no coordinator for 10 s" in n for n in s.apps[2].notes)
    s.apps[1].port.down = False
    s.run(10000)
    assert [s.allocations(a)[0] for a in (2, 3)] == [30.0, 30.0]


def test_a_nodes_arrivals_hold_still_from_read_to_read(tmp_path):
    """Ages come in whole seconds, read at any moment of a cycle: the arrival they give moves by a
    second or so. Two EVs that came within a second of each other must keep their order, or the
    later one, the one to pause, changes from read to read (guns paused in turn every second at
    site-ac8x2)."""
    c, r = lone_coordinator(tmp_path)
    arrival = [10_000, 10_400]   # on the node's clock, as its guns' EVs began to want power
    seen = []
    for read_ms in range(20_000, 40_000, 1_130):
        node_ms = read_ms - 700   # what the node reported is older than the read
        report = [(32, 16.0, 16.0, 15.0, 15.0, (0, 1, 2), 0, (node_ms - arrival[g]) // 1000, False) for g in (0, 1)]
        regs = site.node_regs(report, 0, 9.0, 0xBEEF)
        raw = bytearray()
        for v in regs:
            raw += bytes((v >> 8, v & 0xFF))
        assert r.take(raw, read_ms)
        limits, offered, drawn, loads, prio, since = [], [], [], [], [], []
        r.ok = r.heard = True
        c.extend(read_ms, limits, offered, drawn, loads, prio, since)
        seen.append(since[0] < since[1])
    assert seen == [seen[0]] * len(seen), seen


def test_a_node_ev_that_starts_long_after_its_cap_may_draw_up_to_it(tmp_path):
    """A cap written long ago, an EV whose contactor just closed: its current, read up to two
    seconds late, says 0 A while the grid meter already sees it draw. The node says its gun is
    unsure, and the coordinator counts it as anything up to its cap (else the building looked that
    much larger, and stayed so: six guns at 7.1 A where the building left 8.5 A each)."""
    c, r = lone_coordinator(tmp_path)
    r.ok = r.heard = True
    r.guns = 1
    c.place(20000, [0.0, 0.0, 16.0, 0.0, 0.0, 0.0], 2)
    for unsure, most in ((True, 16.0), (False, 0.0)):
        raw = bytearray()
        for v in site.node_regs([(32, 16.0, 16.0, None, 0.0, (0, 1, 2), 0, 5, unsure)], 0, 9.0, 0xBEEF):
            raw += bytes((v >> 8, v & 0xFF))
        assert r.take(raw, 60000)
        r.ok = True
        lo, hi = [0.0] * 3, [0.0] * 3
        c.drawn_a(60000, lo, hi)
        assert (lo, hi) == ([0.0] * 3, [most] * 3)


def test_a_node_on_its_fallback_counts_no_more_than_it_offers(tmp_path):
    """A coordinator that boots while the nodes share their fallback (6 A a gun here) hears
    committed amps and currents from before it (8.5 A): counted at those, the building looked
    8 A smaller than it was, and the guns took 7 A more than the connection for 2.6 s."""
    c, r = lone_coordinator(tmp_path)
    raw = bytearray()
    for v in site.node_regs([(32, 8.5, 6.0, 8.5, 8.5, (0, 1, 2), 0, 20, False)], site.LOST, 6.0, 0xBEEF):
        raw += bytes((v >> 8, v & 0xFF))
    assert r.take(raw, 60000)
    r.ok = r.heard = True
    r.out = list(r.com)   # what the coordinator's first write gives it
    lo, hi = [0.0] * 3, [0.0] * 3
    c.drawn_a(60000, lo, hi)
    assert lo == [6.0] * 3


def test_a_rebase_during_a_cycle_does_not_put_the_coordinator_to_sleep_for_three_days(tmp_path):
    """run() times its cycle on the control clock: rebased meanwhile, the cycle would look 2^28 ms
    short, and the coordinator would sleep 74 h while the nodes' caps stood."""
    from evse import ticks
    c, r = lone_coordinator(tmp_path)
    clock = [10_000_000]
    c.clock = lambda: clock[0]
    slept = []

    async def cycle():
        clock[0] += 300 - ticks.REBASE_MS

    async def sleep_ms(ms):
        slept.append(ms)
        if len(slept) == 2:
            raise StopAsyncIteration

    c.cycle, c._sleep_ms = cycle, sleep_ms
    with pytest.raises(StopAsyncIteration):
        asyncio.run(c.run())
    assert slept == [site.CYCLE_MS, site.CYCLE_MS]


def test_a_rebase_between_the_sharings_steps_leaves_no_cap_time_in_the_future(make_site):
    from evse import ticks
    s = nodes_charging(make_site, 15000)
    s.plug(1, 1)   # the nodes' caps change in this sharing
    app = s.apps[1]
    steps = app.share_steps(app.clock())
    next(steps)
    app.rebase(ticks.REBASE_MS)
    for _ in steps:
        pass
    now = app.clock()
    assert all(t <= now for r in app.site.remotes for t in r.changed_ms)
    assert all(t <= now for r in app.site.remotes for was in r.was for t, _ in was)


def test_a_node_with_a_longer_site_lost_s_falls_back_within_the_coordinators(make_site):
    """The coordinator's start waits its own site_lost_s for a node it does not hear, counting on
    the node to be on its fallback by then: the node takes the coordinator's when it is shorter."""
    s = make_site()
    s.apps[2].cfg.set("site_lost_s", 60)
    s.run(20000)
    for a in (2, 3):
        s.plug(a, 1)
    s.run(10000)
    assert s.apps[2].site.lost_ms() == 10000
    s.apps[1].port.down = True
    s.run(12000)
    assert [s.allocations(a)[0] for a in (2, 3)] == [6.0, 6.0]
    assert any("no coordinator for 10 s" in n for n in s.apps[2].notes)


def test_a_cap_whose_lowering_was_not_acknowledged_counts_as_the_one_the_node_has(tmp_path):
    """place() lowers a node's cap before its write: if the write does not go through, the node
    keeps the cap of its last acknowledged write until site_lost_s, and the site keeps room for it."""
    c, r = lone_coordinator(tmp_path)
    r.heard, r.ok, r.guns = True, False, 1
    r.acked[0], r.out[0] = 20.0, 8.0
    r.fallback_a = 0.0
    # The sharing counts the 20 A it has (extend); its fallback, 9 A, is within them: no more held.
    assert c.reserve([60.0, 60.0, 60.0], 60000) == [60.0, 60.0, 60.0]
    limits, offered, drawn, loads, prio, since = [], [], [], [], [], []
    c.extend(60000, limits, offered, drawn, loads, prio, since)
    assert offered[0] == 20.0


def test_a_node_of_another_register_layout_is_no_node(tmp_path):
    c, r = lone_coordinator(tmp_path)
    regs = site.node_regs([(32, 16.0, 16.0, 15.0, 15.0, (0, 1, 2), 0, 5, False)], 0, 9.0, 0xBEEF)
    regs[0] = 0x5345   # the layout of seven registers a gun
    raw = bytearray()
    for v in regs:
        raw += bytes((v >> 8, v & 0xFF))
    assert not r.take(raw, 0)


def test_a_write_whose_byte_count_does_not_match_its_registers_changes_nothing(make_site):
    s = make_site(nodes=(2,))
    node = s.apps[2].site
    frame = bytearray((2, modbus.WRITE_MULTIPLE, 0, site.WRITE_AT, 0, 5, 8)) + bytes(8)
    frame = modbus.seal(frame + bytes(2))
    answer = node._answer(frame, len(frame), 0)
    assert answer[1] == modbus.WRITE_MULTIPLE | 0x80 and node.heard_ms is None


def test_silent_nodes_are_asked_less_often_so_the_answering_ones_keep_their_caps(make_site):
    """Each silent node costs a cycle two answer times (250 ms and a retry): 14 of them made a
    cycle of 7 s, and a node that answers went longer than site_lost_s (5 s here) without a write,
    onto its fallback. After three missed visits a node is asked every fifth cycle."""
    s = make_site(nodes=(2,), site_nodes=15, site_lost_s=5)
    s.run(30000)
    s.plug(2, 1)
    s.run(60000)
    assert not any("no coordinator" in n for n in s.apps[2].notes), s.apps[2].notes
    status = s.apps[1].site.status(s.clock.ms)
    assert status["answering"] == 1 and status["node"][0]["ok"]
