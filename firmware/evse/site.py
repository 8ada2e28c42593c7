# The site bus (docs/site.md): controllers on one RS-485 line share one grid connection. The
# coordinator (config site_address 1) is the line's Modbus RTU master; each node (2..16) a slave
# whose holding registers tell what its guns want, have committed and draw, and to which the
# coordinator writes a cap per gun. The coordinator shares the whole site with the same Sharing as
# its own guns (lower first, fair, fifo, priority). A node that hears no write for site_lost_s
# shares its part of site_fallback_a; the coordinator keeps that much for it meanwhile.
#
# Node registers (function 0x03, from 0): magic, guns, flags, fallback x10, boot id, then per gun
# limit x10, committed x10, offer now x10, drawn x10, amps now x10, loads (a bit per site
# phase, and UNSURE), rank, age s.
# The coordinator writes (0x10, from WRITE_AT): its boot id, flags, the node's fallback x10, its
# site_lost_s, then a cap x10 per gun. MAGIC changes with the layout: a controller of another
# layout is no node to this one. x10 values are tenths of an ampere; NONE is no value.
import os

from micropython import const

from evse import modbus, store, ticks

SITE_GUNS = const(4)        # guns per controller on a site bus at most
MAGIC = const(0x5346)      # "SF": the layout with each gun's offer now and site_lost_s written
HEAD = const(5)
PER_GUN = const(8)
REGS = const(37)            # HEAD + SITE_GUNS * PER_GUN
WRITE_AT = const(40)
HEAD_W = const(4)           # the write's registers before its caps
NONE = const(0xFFFF)
CYCLE_MS = const(1000)      # the coordinator reads and writes every node once a cycle
ANSWER_MS = const(250)      # a node answers within this (its loop's step is up to 50 ms on a board)
POLL_MS = const(3)
QUIET_POLL_MS = const(20)   # how often a coordinator that only listens reads the line (256 bytes of
                            # a port's receive buffer last 66 ms at 38400 baud)
GARBLED = const(3)          # garbled answers in a row before the coordinator suspects two nodes
SILENT = const(3)           # missed visits in a row, after which a node is asked every SPARE-th cycle
SPARE = const(5)            # (and one not heard yet, or silent, gets no retry: the others must not wait)
UNSURE_MS = const(4000)     # after an offer changes, what its EV draws is not known for this long
DUP_CLEAR_MS = const(30000)  # a suspicion of two nodes on one address clears after this clean
WAS_MAX = const(8)          # caps of the last UNSURE_MS kept per gun; older ones merge into the next
ARRIVAL_SLACK_MS = const(2500)  # a node's gun's arrival as read may move this much, and is the same
# flags
LOST = const(1)             # node: no coordinator, it shares its fallback
CONFLICT = const(2)         # node: two coordinators write to it
DUPLICATE = const(4)        # node: another controller answers as its address; coordinator: pause
SETTLED = const(8)          # coordinator: past its start (a second coordinator yields to it)
UNSURE = const(0x100)       # in a gun's loads: its offer or contactor changed in the last UNSURE_MS
FILE = "site.json"          # a node keeps the fallback the coordinator gave it


def boot_id():
    """A number this boot of this controller has and, most likely, no other: two nodes on one
    address, or two coordinators, show as two of them."""
    b = os.urandom(2)
    return b[0] << 8 | b[1]


def tenths(a):
    return NONE if a is None else (0 if a <= 0 else (65534 if a > 6553.4 else int(a * 10 + 0.5)))


def amps(v):
    return None if v == NONE else v / 10


def mask(phases):
    m = 0
    for p in phases:
        m |= 1 << p
    return m


def phases_of(m):
    return tuple(p for p in (0, 1, 2) if m >> p & 1) or (0, 1, 2)   # (UNSURE is bit 8)


def request_at(buf, n):
    """The length of the Modbus request (0x03 of 8 bytes, 0x10 of 9 + 2k) at buf[:n], or 0 for
    anything else (an answer, noise)."""
    if n == 8 and buf[1] == modbus.READ_HOLDING:
        pass
    elif n >= 9 and buf[1] == modbus.WRITE_MULTIPLE and buf[6] == n - 9:
        pass
    else:
        return 0
    return n if modbus.crc16(buf, n - 2) == buf[n - 2] | (buf[n - 1] << 8) else 0


def first_request(buf, n, at=0):
    """The offset and length of the first request of a coordinator of this layout (a read from 0,
    a write at WRITE_AT; request_at) in buf[at:n], which may hold several frames back to back:
    (-1, 0) if there is none."""
    view = None
    for i in range(at, n - 7):
        if buf[i + 2] or buf[i + 4] or not 2 <= buf[i] <= 16:
            continue
        fn = buf[i + 1]
        if fn == modbus.READ_HOLDING and not buf[i + 3]:
            size = 8
        elif fn == modbus.WRITE_MULTIPLE and buf[i + 3] == WRITE_AT and buf[i + 6] == 2 * buf[i + 5]:
            size = 9 + buf[i + 6]
        else:
            continue
        if i + size <= n:
            if view is None:
                view = memoryview(buf)
            if request_at(view[i:], size):
                return i, size
    return -1, 0


def node_regs(guns, flags, fallback_a, boot_id):
    """The node's registers from its guns' report: (limit, committed, offer, drawn, amps now,
    loads, rank, age_s, unsure) per gun."""
    regs = [MAGIC, len(guns), flags, tenths(fallback_a), boot_id]
    for lim, com, offer, drawn, now_a, loads, rank, age, unsure in guns:
        regs += [tenths(lim), tenths(com), tenths(offer), tenths(drawn), tenths(now_a),
                 mask(loads) | (UNSURE if unsure else 0),
                 rank & 0xFFFF,
                 NONE if age is None else (age if age < NONE else NONE - 1)]
    return regs + [0] * (REGS - len(regs))


class Remote:
    """What the coordinator knows of one node."""

    def __init__(self, address):
        self.address = address
        self.guns = 0
        self.ok = False            # its last read and write went through
        self.heard = False         # answered since the coordinator's boot
        self.lim = [0.0] * SITE_GUNS
        self.com = [0.0] * SITE_GUNS
        self.offer = [0.0] * SITE_GUNS   # what its pilot offers now, under the cap (its fallback too)
        self.drawn = [None] * SITE_GUNS
        self.now_a = [0.0] * SITE_GUNS
        self.loads = [(0, 1, 2)] * SITE_GUNS
        self.unsure = [False] * SITE_GUNS   # the node's word: its EV may draw anything up to its offer
        self.rank = [0] * SITE_GUNS
        self.arrived = [None] * SITE_GUNS   # when each gun's EV began to want power, or None
        self.out = [0.0] * SITE_GUNS   # the caps last written (or to write)
        self.acked = [0.0] * SITE_GUNS   # the caps of its last write that went through: it keeps them
        self.changed_ms = [-UNSURE_MS] * SITE_GUNS   # when each cap last changed
        self.was = [[] for _ in range(SITE_GUNS)]     # each gun's caps replaced: (until_ms, cap)
        self.flags = 0
        self.fallback_a = 0.0
        self.ids = []              # its last two boot ids
        self.garbled = 0
        self.missed = 0            # visits in a row that did not go through
        self.suspect_ms = None     # since when it looks like two nodes on one address
        self.why = None            # why it is not ok, for status

    def take(self, regs, now_ms):
        """Its registers (bytes, two per register); False when they are not a node's."""
        def r(i):
            return regs[2 * i] << 8 | regs[2 * i + 1]
        n = r(1)
        if r(0) != MAGIC or n > SITE_GUNS:
            return False
        boot = r(4)
        if not self.ids or self.ids[-1] != boot:
            if len(self.ids) == 2 and self.ids[0] == boot:
                self.suspect_ms = now_ms    # boot ids a, b, a: two controllers answer as one
            self.ids = (self.ids + [boot])[-2:]
        self.guns = n
        self.flags = r(2)
        if self.flags & DUPLICATE:
            self.suspect_ms = now_ms
        self.fallback_a = amps(r(3)) or 0.0
        for g in range(n):
            b = HEAD + g * PER_GUN
            self.lim[g] = amps(r(b)) or 0.0
            self.com[g] = amps(r(b + 1)) or 0.0
            self.offer[g] = amps(r(b + 2)) or 0.0
            self.drawn[g] = amps(r(b + 3))
            self.now_a[g] = amps(r(b + 4)) or 0.0
            self.loads[g] = phases_of(r(b + 5))
            self.unsure[g] = r(b + 5) & UNSURE != 0
            self.rank[g] = r(b + 6)
            age = r(b + 7)
            if age == NONE:
                self.arrived[g] = None
            else:
                # Its age comes in whole seconds and up to a cycle late: the arrival it gives
                # moves by a second or two from read to read. Kept while it agrees within
                # ARRIVAL_SLACK_MS, the order of arrivals holds still; taken afresh, each read
                # could make another gun the latest, and the guns would pause in turn.
                at = now_ms - age * 1000
                was = self.arrived[g]
                if was is None or at - was > ARRIVAL_SLACK_MS or was - at > ARRIVAL_SLACK_MS:
                    self.arrived[g] = at
        return True

    def kept(self, g):
        """The cap gun g may use: the one written (or to write), or the last one a write
        delivered, whichever is higher (a lower one is not the node's until its write goes through)."""
        return self.out[g] if self.out[g] > self.acked[g] else self.acked[g]

    def rebase(self, d):
        ticks.back_all(self.changed_ms, d)
        ticks.back_all(self.arrived, d)
        for was in self.was:
            for i in range(len(was)):
                was[i] = (ticks.back(was[i][0], d), was[i][1])
        self.suspect_ms = ticks.back(self.suspect_ms, d)

    def duplicate(self, now_ms):
        if self.suspect_ms is not None and now_ms - self.suspect_ms >= DUP_CLEAR_MS:
            self.suspect_ms = None
        return self.suspect_ms is not None or self.garbled >= GARBLED


class Coordinator:
    """Address 1: polls nodes 2..site_nodes+1 once a CYCLE_MS and takes part in the App's sharing
    (extend, reserve, place)."""

    coordinates = True

    def __init__(self, uart, baud, nodes, cfg, note, clock, ticks_ms=None, sleep_ms=None):
        self.master = modbus.Master(uart, baud, timeout_ms=ANSWER_MS, retries=1, ticks_ms=ticks_ms, sleep_ms=sleep_ms)
        self._sleep_ms = sleep_ms or modbus._sleep_ms
        self.uart = uart
        self.cfg = cfg
        self.note = note
        self.clock = clock
        self.remotes = [Remote(a) for a in range(2, nodes + 2)]
        self.boot_id = boot_id()
        self.started_ms = clock()
        self.conflict = None       # why this one stepped back for another coordinator (latched)
        self.rival = None          # the boot id of another coordinator that steps back for this one
        # Cycles it only listens: the first, for a coordinator already on the line (see _foreign).
        self.quiet = 1
        self.noise = 0             # bytes heard while no node was asked
        self.cycles = 0
        self._read = None          # the read request, its address changed per node
        self._regs = None

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        self.started_ms = ticks.back(self.started_ms, d)
        for r in self.remotes:
            r.rebase(d)

    def share_a(self):
        """Each controller's part of site_fallback_a."""
        return self.cfg.get("site_fallback_a") / (len(self.remotes) + 1)

    def starting(self, now_ms):
        """Until every node has answered, or site_lost_s and an EV's follow time have passed since
        boot (a node nobody writes to is on its fallback by then), nobody gets more: a node may
        still hold caps an earlier coordinator wrote."""
        if all(r.heard for r in self.remotes):
            return False
        return now_ms - self.started_ms < self.cfg.get("site_lost_s") * 1000 + 5000

    def holds(self, now_ms):
        """Whether the coordinator's own guns must not charge: while it starts, and after it heard
        another coordinator (whose sharing does not count them)."""
        return self.conflict is not None or self.starting(now_ms)

    def reserve(self, caps, now_ms):
        """The site caps per phase less what nodes may draw that the sharing does not count: a
        node that does not answer keeps the caps last written to it (the sharing counts them, see
        extend), then its fallback: the part of it over those caps; one never heard, its fallback;
        an address two controllers answer, twice what its guns could take or its fallback."""
        caps = list(caps)
        for r in self.remotes:
            dup = r.duplicate(now_ms)
            if r.ok and not dup:
                continue
            # Its part of site_fallback_a, or the larger one it keeps from before a change.
            share = self.share_a()
            if r.fallback_a > share:
                share = r.fallback_a
            held = [0.0, 0.0, 0.0]
            if r.heard:
                for g in range(r.guns):
                    a = r.kept(g)
                    for p in r.loads[g]:
                        held[p] += r.lim[g] if dup else a
            for p in range(3):
                if dup:
                    more = 2 * (held[p] if held[p] > share else share)
                else:
                    more = share - held[p] if share > held[p] else 0.0
                caps[p] = caps[p] - more if caps[p] > more else 0.0
        return caps

    def extend(self, now_ms, limits, offered, drawn, loads, prio, since):
        """Appends each node's guns (SITE_GUNS slots per node) to the App's lists. A node that
        missed an answer stays in with what it last said and the caps last written to it (it keeps
        them until site_lost_s, and nothing it holds is lost to the sharing's memory), wanting
        nothing more meanwhile."""
        for r in self.remotes:
            live = r.heard and not r.duplicate(now_ms)
            for g in range(SITE_GUNS):
                if live and g < r.guns:
                    limits.append(r.lim[g] if r.ok else 0)
                    # The node may use the cap written to it at once, and keeps the last one
                    # delivered (Remote.kept): it counts as offered.
                    a = r.kept(g)
                    offered.append(r.com[g] if r.com[g] > a else a)
                    drawn.append(r.drawn[g])
                    loads.append(r.loads[g])
                    prio.append(r.rank[g])
                    since.append(now_ms if r.arrived[g] is None else r.arrived[g])
                else:
                    limits.append(0)
                    offered.append(0.0)
                    drawn.append(None)
                    loads.append((0, 1, 2))
                    prio.append(0)
                    since.append(now_ms)

    def place(self, now_ms, alloc, first):
        """The sharing's allocation for the nodes' slots (from alloc[first]) becomes the caps to
        write; while starting, each node keeps what it has committed."""
        starting = self.starting(now_ms)
        i = first
        for r in self.remotes:
            if r.duplicate(now_ms):
                r.out = [0.0] * SITE_GUNS
            elif r.ok:
                for g in range(SITE_GUNS):
                    a = (r.com[g] if starting else alloc[i + g]) if g < r.guns else 0.0
                    if a != r.out[g]:
                        # The caps of the last UNSURE_MS: the EV may still draw any of them.
                        was = r.was[g]
                        while was and now_ms - was[0][0] >= UNSURE_MS:
                            was.pop(0)
                        if len(was) >= WAS_MAX:   # the two oldest as one: the later end, the lower cap
                            was[1] = (was[1][0], was[0][1] if was[0][1] < was[1][1] else was[1][1])
                            was.pop(0)
                        was.append((now_ms, r.out[g]))
                        r.out[g] = a
                        r.changed_ms[g] = now_ms
            i += SITE_GUNS

    def drawn_a(self, now_ms, lo, hi):
        """Adds to lo and hi (per site phase) the least and the most the answering nodes' guns may
        draw now (evse.grid.caps): a gun's last current, no more than the cap written to it or what
        the node offers (less on its fallback, which a current from before it does not show); while
        that cap changed in the last UNSURE_MS, or the node says its offer or contactor did (an EV
        that starts long after its cap came), anything up to the cap, as the EV follows it and the
        node's current reaches the coordinator up to two seconds late. A silent node's guns
        count as the building."""
        for r in self.remotes:
            if r.ok:
                for g in range(r.guns):
                    a, cap = r.now_a[g], r.out[g]
                    sure = now_ms - r.changed_ms[g] >= UNSURE_MS and not r.unsure[g]
                    least = a if a < cap else cap
                    if r.offer[g] < least:
                        least = r.offer[g]
                    for until, was in r.was[g]:
                        # Its current may be newer than the grid meter's reading: as it read, the
                        # EV may still have drawn a cap of the last UNSURE_MS, the lowest of them.
                        if now_ms - until < UNSURE_MS and was < least:
                            least = was
                    most = a if sure or a > cap else cap
                    for p in r.loads[g]:
                        lo[p] += least
                        hi[p] += most

    def _listen(self):
        """Bytes on the line while the coordinator asks nobody."""
        data = self.uart.read()
        if not data:
            return
        self.noise += len(data)
        self._foreign(data, len(data))

    def _foreign(self, data, n):
        """Requests in data[:n] (heard while it asked nobody, or where a node's answer should be)
        that this coordinator did not send: another coordinator's. One of the two steps back for
        good, the other goes on; a write tells which: the one still starting yields to one past
        its start (SETTLED), else the lower boot id yields. A read names nobody: a coordinator
        still starting then only listens for one to four cycles, drawn anew each time, so two that
        ask in step (each hears the other's request where its answer should be, or the two
        collide, and neither writes) fall out of step and one hears the other's write. A garbled
        answer while it starts does the same (_visit)."""
        at = 0
        read = False
        while self.conflict is None:
            at, size = first_request(data, n, at)
            if at < 0:
                break
            if data[at + 1] == modbus.READ_HOLDING:
                read = True
            elif size >= 9 + 2 * HEAD_W:   # (first_request: a write at WRITE_AT)
                self._rival(data[at + 7] << 8 | data[at + 8], data[at + 10] & SETTLED, data[at])
            at += size
        if read:
            self._back_off()

    def _back_off(self):
        """While it starts: only listen for one to four cycles (see _foreign)."""
        if self.conflict is None and not self.quiet and self.starting(self.clock()):
            self.quiet = 1 + (boot_id() & 3)

    def _rival(self, other, settled, address):
        """Another coordinator (boot id other) wrote to node address."""
        mine = not self.starting(self.clock())
        if other == self.boot_id:
            yields = True                  # (which one is which cannot be told: both step back)
        elif mine != bool(settled):
            yields = not mine              # the one still starting
        else:
            yields = other > self.boot_id  # the lower boot id
        if yields:
            self.conflict = "it writes to node %d" % address
            self.note("site bus: another coordinator on the line (%s): two controllers have site_address 1? "
                      "This one leaves the nodes to it and its own guns pause until it reboots" % self.conflict)
        elif self.rival != other:
            self.rival = other
            self.note("site bus: another coordinator on the line (it writes to node %d): two controllers have "
                      "site_address 1? It steps back; this one goes on" % address)

    async def run(self):
        while True:
            start = self.clock()
            await self.cycle()
            left = CYCLE_MS - (self.clock() - start)
            # Above CYCLE_MS only if the clock was rebased meanwhile (evse.ticks): 2^28 ms less.
            await self._sleep_ms(10 if left < 10 else (CYCLE_MS if left > CYCLE_MS else left))

    async def cycle(self):
        """Reads and writes every node once."""
        if self._read is None:
            self._read = modbus.read_request(2, modbus.READ_HOLDING, 0, REGS)
            self._regs = bytearray(2 * REGS)
        if self.quiet:
            self.quiet -= 1
            for _ in range(CYCLE_MS // QUIET_POLL_MS - 1):
                self._listen()
                if self.conflict is not None:
                    return
                await self._sleep_ms(QUIET_POLL_MS)
            self._listen()
            return
        for r in self.remotes:
            self._listen()
            if self.conflict is not None:
                r.ok = False
                continue
            if r.missed >= SILENT and (self.cycles + r.address) % SPARE:
                continue
            self.master.retries = 1 if r.heard and not r.missed else 0
            await self._visit(r, self._read, self._regs)
        self.cycles += 1
        self._listen()

    async def _visit(self, r, read, regs):
        read[0] = r.address
        modbus.seal(read)
        before = r.why
        try:
            await self.master.read(read, regs)
            now = self.clock()   # (after the wait: the clock may have been rebased meanwhile)
            if not r.take(regs, now):
                raise modbus.FrameError("its registers are not a site node's")
            r.garbled = 0
            if not r.heard:
                r.out = list(r.com)   # its first write: what it has committed, no more
            sent = [r.out[g] for g in range(r.guns)]
            values = self._head(DUPLICATE if r.duplicate(now) else 0) + [tenths(a) for a in sent]
            await self.master.write_registers(r.address, WRITE_AT, values)
            for g in range(r.guns):
                r.acked[g] = sent[g]
            r.ok = r.heard = True
            r.why = None
            r.missed = 0
        except modbus.ModbusError as e:
            if isinstance(e, modbus.FrameError):
                # Two coordinators in step each hear the other's request where an answer should be,
                # or the two requests collide on the line and neither is heard whole.
                self._foreign(self.master.frame(), self.master.received)
                self._back_off()
                r.garbled += 1
            else:
                r.garbled = 0
            r.ok = False
            r.why = str(e)
            r.missed += 1
        now = self.clock()
        if r.duplicate(now):
            r.why = "duplicate"
            if not r.ok:   # both hear a write, though their answers collide: no caps, and why
                try:
                    await self.master.write_registers(r.address, WRITE_AT, self._head(DUPLICATE))
                except modbus.ModbusError:
                    pass
        if (r.why is None) == (before is None) and (r.why == "duplicate") == (before == "duplicate"):
            return
        if r.why == "duplicate":
            self.note("site bus: node %d answers as two controllers (%s): two controllers have site_address %d? "
                      "Its guns pause until it answers as one for %d s" % (
                          r.address, "garbled answers" if r.garbled >= GARBLED else "two boot ids", r.address,
                          DUP_CLEAR_MS // 1000))
        elif r.ok:
            self.note("site bus: node %d answers" % r.address)
        else:
            self.note("site bus: node %d does not answer (%s); its guns keep their caps, then its fallback of "
                      "%.1f A per phase, which the site keeps for it" % (r.address, r.why, self.share_a()))

    def _head(self, flags):
        """The write's first registers: boot id, flags, the node's fallback (tenths, rounded down:
        the parts never add up to more than site_fallback_a) and site_lost_s, which a node with a
        longer one takes: the coordinator's start waits that long for a node it does not hear."""
        if not self.starting(self.clock()):
            flags |= SETTLED
        return [self.boot_id, flags, int(self.share_a() * 10), self.cfg.get("site_lost_s")]

    def status(self, now_ms):
        ok = sum(1 for r in self.remotes if r.ok)
        return {"role": "coordinator", "nodes": len(self.remotes), "answering": ok,
                "starting": self.starting(now_ms), "conflict": self.conflict, "cycles": self.cycles,
                "fallback_a": round(self.share_a(), 1),
                "node": [{"address": r.address, "ok": r.ok, "guns": r.guns, "why": r.why,
                          "caps_a": [round(r.out[g], 1) for g in range(r.guns)]} for r in self.remotes]}


class Node:
    """Addresses 2..16: answers the coordinator, takes its caps, and falls back to its part of
    site_fallback_a when no write came for site_lost_s."""

    coordinates = False

    def __init__(self, uart, address, guns, cfg, note, clock, root="/", ticks_ms=None, sleep_ms=None):
        self.uart = uart
        self.address = address
        self.guns = guns
        self.cfg = cfg
        self.note = note
        self.clock = clock
        self.path = store.join(root, FILE)
        kept = store.read_json(self.path, {})
        self.fallback_a = kept.get("fallback_a", 0.0) if isinstance(kept, dict) else 0.0
        if not isinstance(self.fallback_a, (int, float)) or self.fallback_a < 0:
            self.fallback_a = 0.0
        self.boot_id = boot_id()
        self.caps = [0.0] * guns
        self.heard_ms = None        # the coordinator's last write
        self.told_lost_s = None     # the coordinator's site_lost_s, when shorter than this node's
        self.started_ms = clock()
        self.lost = False
        self.coordinators = []      # its last two boot ids, and when each wrote
        self.conflict_ms = None
        self.duplicate_ms = None    # another controller answered as this address
        self.report = [(0, 0.0, 0.0, None, 0.0, (0, 1, 2), 0, None, False)] * guns
        self.frames = 0
        self.bad = 0
        self._ticks_ms = ticks_ms or modbus._ticks_ms
        self._sleep_ms = sleep_ms or modbus._sleep_ms

    def rebase(self, d):
        """The control clock moved back by d (evse.ticks)."""
        back = ticks.back
        self.heard_ms = back(self.heard_ms, d)
        self.started_ms = back(self.started_ms, d)
        self.conflict_ms = back(self.conflict_ms, d)
        self.duplicate_ms = back(self.duplicate_ms, d)
        for ids in self.coordinators:
            ids[1] = back(ids[1], d)

    def flags(self, now_ms):
        return ((LOST if self.lost else 0) | (CONFLICT if self._conflict(now_ms) else 0)
                | (DUPLICATE if self._duplicate(now_ms) else 0))

    def _conflict(self, now_ms):
        return self.conflict_ms is not None and now_ms - self.conflict_ms < self.cfg.get("site_lost_s") * 1000

    def lost_ms(self):
        """site_lost_s, or the coordinator's if shorter: it waits that long at its start for a
        node it does not hear, and counts on the node being on its fallback by then."""
        own = self.cfg.get("site_lost_s")
        told = self.told_lost_s
        return 1000 * (told if told is not None and told < own else own)

    def _duplicate(self, now_ms):
        return self.duplicate_ms is not None and now_ms - self.duplicate_ms < DUP_CLEAR_MS

    def budget(self, now_ms, site, limits):
        """The node's caps: limits capped by the coordinator's caps; or, without a coordinator,
        the site caps no higher than the fallback. Returns the site caps to share."""
        lost_ms = self.lost_ms()
        since = self.heard_ms if self.heard_ms is not None else self.started_ms
        lost = now_ms - since >= lost_ms or self._conflict(now_ms)
        if lost != self.lost:
            self.lost = lost
            if lost:
                self.note("site bus: %s; the guns share %.1f A per phase (this node's fallback)"
                          % ("two coordinators write to this node" if self._conflict(now_ms)
                             else "no coordinator for %d s" % (lost_ms // 1000), self.fallback_a))
            else:
                self.note("site bus: the coordinator writes again")
        if self._duplicate(now_ms):
            for i in range(len(limits)):
                limits[i] = 0
            return site
        if lost:
            f = self.fallback_a
            return [f if f < c else c for c in site] if isinstance(site, list) else [min(f, site)] * 3
        if self.heard_ms is None:
            for i in range(len(limits)):
                limits[i] = 0    # after a boot: nothing until the coordinator or the fallback
            return site
        for i in range(len(limits)):
            if self.caps[i] < limits[i]:
                limits[i] = self.caps[i]
        return site

    def _answer(self, buf, n, now_ms):
        if buf[0] != self.address:
            return None
        size = request_at(buf, n)
        if not size:
            # A frame from this address that is no request: another controller's answer as it.
            if n >= 5 and modbus.crc16(buf, n - 2) == buf[n - 2] | (buf[n - 1] << 8):
                if not self._duplicate(now_ms):
                    self.note("site bus: another controller answers as address %d: give each controller its own "
                              "site_address; the guns pause meanwhile" % self.address)
                self.duplicate_ms = now_ms
            return None
        fn = buf[1]
        start = buf[2] << 8 | buf[3]
        count = buf[4] << 8 | buf[5]
        if fn == modbus.READ_HOLDING:
            if start != 0 or not 1 <= count <= REGS:
                return modbus.seal(bytearray((self.address, fn | 0x80, 2, 0, 0)))
            regs = node_regs(self.report, self.flags(now_ms), self.fallback_a, self.boot_id)
            out = bytearray(5 + 2 * count)
            out[0], out[1], out[2] = self.address, fn, 2 * count
            for i in range(count):
                out[3 + 2 * i] = regs[i] >> 8
                out[4 + 2 * i] = regs[i] & 0xFF
            return modbus.seal(out)
        if start != WRITE_AT or not HEAD_W <= count <= HEAD_W + self.guns or buf[6] != 2 * count:
            return modbus.seal(bytearray((self.address, fn | 0x80, 2, 0, 0)))
        values = [buf[7 + 2 * i] << 8 | buf[8 + 2 * i] for i in range(count)]
        values += [0] * (HEAD_W + self.guns - count)   # a gun the write leaves out gets no cap
        self._written(values, now_ms)
        out = bytearray(8)
        out[:6] = buf[:6]
        return modbus.seal(out)

    def _written(self, values, now_ms):
        boot, flags, fallback = values[0], values[1], amps(values[2]) or 0.0
        ids = self.coordinators
        if ids and ids[-1][0] != boot:
            if len(ids) == 2 and ids[0][0] == boot and now_ms - ids[0][1] < self.cfg.get("site_lost_s") * 1000:
                if not self._conflict(now_ms):
                    self.note("site bus: two coordinators write to this node: two controllers have site_address 1?")
                self.conflict_ms = now_ms
            ids.append([boot, now_ms])
            if len(ids) > 2:
                ids.pop(0)
        elif ids:
            ids[-1][1] = now_ms
        else:
            ids.append([boot, now_ms])
        if flags & DUPLICATE:
            if not self._duplicate(now_ms):
                self.note("site bus: the coordinator sees two controllers at address %d: give each its own "
                          "site_address; the guns pause meanwhile" % self.address)
            self.duplicate_ms = now_ms
        self.told_lost_s = values[3] if values[3] else None
        self.caps = [amps(v) or 0.0 for v in values[HEAD_W:]]
        self.heard_ms = now_ms
        if fallback != self.fallback_a:
            self.fallback_a = fallback
            try:
                store.write_json(self.path, {"fallback_a": fallback})
            except OSError as e:
                self.note("site bus: keeping the fallback on flash failed: %r" % (e,))

    async def run(self):
        buf = bytearray(modbus.MAX_FRAME)
        view = memoryview(buf)
        readinto = getattr(self.uart, "readinto", None)
        n = 0
        last = self._ticks_ms()
        while True:
            if readinto is not None:
                got = readinto(view[n:] if n else view) or 0
            else:
                chunk = self.uart.read()
                got = len(chunk) if chunk else 0
                if got:
                    got = min(got, len(buf) - n)
                    buf[n:n + got] = chunk[:got]
            now = self._ticks_ms()
            if got:
                n += got
                last = now
                if n >= len(buf):
                    n = 0   # longer than any frame: noise
                    self.bad += 1
            elif n and modbus._ticks_diff(now, last) >= POLL_MS:
                self.frames += 1
                answer = self._answer(buf, n, self.clock())
                n = 0
                if answer is not None:
                    self.uart.write(answer)
            await self._sleep_ms(POLL_MS if n else 2 * POLL_MS)

    def status(self, now_ms):
        return {"role": "node", "address": self.address, "lost": self.lost, "fallback_a": round(self.fallback_a, 1),
                "heard_ms": None if self.heard_ms is None else now_ms - self.heard_ms,
                "conflict": self._conflict(now_ms), "duplicate": self._duplicate(now_ms),
                "caps_a": [round(c, 1) for c in self.caps]}


def open_site(app, hal, board, cfg, root):
    """The coordinator or the node this controller is (config site_address), or None."""
    address = cfg.get("site_address")
    if not address:
        return None
    bus = board["site_bus"]
    uart = hal.uart(bus["uart"], bus.get("baud", 38400))
    def note(text):
        app.note(text)
    if address == 1:
        return Coordinator(uart, bus.get("baud", 38400), cfg.get("site_nodes"), cfg, note, app.clock)
    return Node(uart, address, len(board["guns"]), cfg, note, app.clock, root)
