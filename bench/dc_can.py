"""The DC-6 cabinet with its power modules on CAN in the loop, for bench/sharing.py: the firmware's
evse.dc.Cabinet and evse.can.modules.Modules, as App drives them (the cabinet every CABINET_MS,
the CAN bus every CAN_MS), talk to the virtual board's module models (host_tools/sim/
power_modules.py, Infypower V1.13 or Winline, written from the makers' descriptions) over an
in-process bus, in 10 ms steps of simulated time:
- a frame sent in one step reaches the modules at its end; their answers are read in the next
  (125 kbit/s carries the two frames a step sends, about 1 ms each, well within it);
- the contactor matrix's feedback follows a command after MATRIX_MS;
- no IEC 61851-23 sequence: the cabinet's `dispense` stays None, so each dispenser's limit is
  split over its modules at 400 V (App sets it from the gun's sequence, whose current requests
  then move the setpoints too: those are not in this loop);
- a dispenser delivers what its EV takes, at most what its modules' setpoints give at 400 V,
  changing at the virtual board's 50 kW/s (host_tools/sim/world.py); each module reports its
  share of that, as the world's modules do.

What it measures besides the energy: how long a changed setpoint takes to reach its module (the
firmware's setpoint against the model's), module switch-ons, the matrix's commands (a module
moved between dispensers is two: parked, then closed onto the other), and modules taken off a
dispenser that still carries current (arcs, target 0)."""
from evse.can.modules import QUIET_A
from evse.dc import CABINET_MS, NOMINAL_DC_V, Cabinet
from host_tools.sim import power_modules

STEP_MS = 10              # App.can_bus serves the bus this often (evse/app.py CAN_MS)
MATRIX_MS = 30            # a DC contactor of the matrix closes or opens in about this
RAMP_W_PER_S = 50000.0    # a dispenser's converters change their power at most this fast (the world's)
MATCH_A = 0.01            # a module's setpoint counts as arrived within this (Winline sends A x 1024)


class Bus:
    """The firmware's side of the bus (evse/can/mcp2515.py's interface): what is sent goes to the
    modules at the end of the step, their answers come in the next."""

    def __init__(self, modules):
        self.wire = power_modules.Bus(modules)
        self.out = []
        self.rx = []
        self.sent = 0
        self.received = 0

    def send(self, can_id, data):
        self.out.append((can_id, bytes(data)))
        self.sent += 1
        return True

    def recv(self):
        if not self.rx:
            return None
        self.received += 1
        return self.rx.pop(0)

    def poll(self, now_ms):
        pass

    def stats(self):
        return {"state": "active", "sent": self.sent, "received": self.received}

    def carry(self, now_s):
        for can_id, data in self.out:
            self.rx.extend(self.wire.exchange(can_id, data, now_s))
        self.out = []


class Hal:
    """What evse.dc.Cabinet asks of a board: the bus, the matrix, each dispenser's power."""

    def __init__(self, loop):
        self.loop = loop
        self.safe_hooks = []

    def can(self, index):
        return self.loop.bus

    def module_feedback(self, module):
        return self.loop.fb[module - 1]

    def set_module(self, module, gun):
        self.loop.command(module - 1, gun)

    def dc_power(self, gun):
        return self.loop.dispenser_w[gun - 1]

    def set_dc_power(self, gun, max_w):
        pass


class CanLoop:
    """One cabinet: `second(demands_kw)` runs a second of firmware and modules and returns what
    each dispenser delivered on average (kW)."""

    def __init__(self, protocol, dispensers, modules, module_kw, dispenser_kw):
        model = power_modules.MODELS[protocol]
        self.modules = [model(k + 1, k + 1, module_kw * 1000.0) for k in range(modules)]
        self.bus = Bus(self.modules)
        self.n = dispensers
        self.fb = [0] * modules
        self._moving = []             # (due ms, module, to)
        self.dispenser_w = [0.0] * dispensers
        self.cap_w = [dispenser_kw * 1000.0] * dispensers
        self.total_w = modules * module_kw * 1000.0
        board = {"guns": [{} for _ in range(dispensers)],
                 "cabinet": {"modules": modules, "module_kw": module_kw,
                             "can": {"protocol": protocol, "addresses": [m.address for m in self.modules]}}}
        self.cabinet = Cabinet(Hal(self), board, log=self._log)
        self.stage = self.cabinet.stage
        self.now_ms = 0
        self.latencies_ms = []
        self._waiting = [None] * modules   # since when module k's setpoint differs from the model's
        self.on_switches = 0
        self._was_on = [False] * modules
        self.arcs = 0
        self.logged = []

    def _log(self, text):
        # What the firmware says beyond finding its modules: a forced park, a matrix that does not follow.
        if not text.endswith(" found") and len(self.logged) < 20:
            self.logged.append(text)

    def command(self, m, to):
        self._moving.append((self.now_ms + MATRIX_MS, m, to))

    def capacity_w(self, d):
        return sum(mod.deliverable_w(NOMINAL_DC_V) for k, mod in enumerate(self.modules) if self.fb[k] == d + 1)

    def second(self, demands_kw):
        done = [0.0] * self.n
        for _ in range(1000 // STEP_MS):
            self._step([kw * 1000.0 for kw in demands_kw])
            for d in range(self.n):
                done[d] += self.dispenser_w[d]
        return [w * STEP_MS / 1e6 for w in done]

    def _step(self, demands_w):
        now = self.now_ms
        for due, m, to in [x for x in self._moving if x[0] <= now]:
            frm = self.fb[m]
            carried = self.modules[m].out_a
            self.fb[m] = to
            # An arc: the module itself still carried current, or its dispenser delivers more
            # than the modules left on it give.
            if frm and (carried >= QUIET_A or self.dispenser_w[frm - 1] > self.capacity_w(frm - 1) + 1.0):
                self.arcs += 1
                self.dispenser_w[frm - 1] = min(self.dispenser_w[frm - 1], self.capacity_w(frm - 1))
        self._moving = [x for x in self._moving if x[0] > now]
        self.stage.step(now)
        if now % CABINET_MS == 0:
            self.cabinet.step(now, demands_w, self.cap_w, list(self.dispenser_w), self.total_w)
        self.bus.carry(now / 1000)
        self.bus.wire.tick(now / 1000)
        step_w = RAMP_W_PER_S * STEP_MS / 1000
        for d in range(self.n):
            want = min(demands_w[d], self.capacity_w(d))
            have = self.dispenser_w[d]
            self.dispenser_w[d] = min(want, have + step_w) if want > have else max(want, have - step_w)
        for k, mod in enumerate(self.modules):
            d = self.fb[k]
            can = mod.deliverable_w(NOMINAL_DC_V) if d else 0.0
            total = self.capacity_w(d - 1) if d else 0.0
            mod.out_v = (mod.set_v if mod.on else 0.0)
            mod.out_a = self.dispenser_w[d - 1] * can / total / NOMINAL_DC_V if d and total > 0 else 0.0
            if mod.on and not self._was_on[k]:
                self.on_switches += 1
            self._was_on[k] = mod.on
            fw = self.stage.modules[k]
            wanted = fw.on and fw.usable()
            same = wanted == mod.on and (not wanted or abs(fw.set_a - mod.set_a) <= MATCH_A)
            if same:
                if self._waiting[k] is not None:
                    self.latencies_ms.append(now - self._waiting[k])
                    self._waiting[k] = None
            elif self._waiting[k] is None:
                self._waiting[k] = now
        self.now_ms = now + STEP_MS

    def figures(self, hours):
        lat = sorted(self.latencies_ms)

        def pct(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None
        return {"setpoint_ms_p50": pct(0.5), "setpoint_ms_p99": pct(0.99), "setpoint_ms_max": lat[-1] if lat else None,
                "setpoints_changed": len(lat), "module_on_switches_per_h": round(self.on_switches / hours, 1),
                "matrix_commands_per_h": round(self.cabinet.moves / hours, 1), "forced_parks": self.cabinet.forced,
                "arcs": self.arcs, "can_frames_per_s": round((self.bus.sent + self.bus.received) / (hours * 3600), 1),
                "firmware_log": self.logged}
