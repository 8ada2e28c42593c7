# Runs under the MicroPython unix port, against the development central system that `make bench`
# started: the heap the OCPP client needs over a two-gun session, and the time it takes to replay
# a journal of 1,000 transaction messages after a reconnect (against the same number of bare CALL
# round trips on the same connection).
# usage: micropython ocpp_mpy.py session|replay WS_URL ROOT_DIR
# Prints one JSON object per line: {"event": ...} for the host to act on, {"log": ...} from the
# charge point, and last {"result": {...}}.
#
# The heap figure. micropython.mem_peak() cannot give it: it counts what m_malloc handed out less
# what m_free gave back explicitly, and the GC frees blocks without m_free, so it only grows.
# Instead automatic collection is off while the OCPP client runs, and a task takes
# gc.mem_alloc() and then collects once every round of the asyncio loop. With nothing freed
# between two collections, each reading is the live heap at the previous collection plus all that
# was allocated since: an upper bound of the live heap at every moment of that round, transient
# garbage included. The peak of the readings less the heap in use before the charge point was
# created is what the OCPP client needs, its code aside (counted apart: CODE_HEAP_BYTES).
import gc
import json
import sys
import time

import asyncio

WARM = (asyncio.Lock, asyncio.Event, asyncio.wait_for_ms, getattr(asyncio, "open_connection", None))  # lazy modules

gc.collect()
_before_code = gc.mem_alloc()
from evse.ocpp import ops  # noqa: E402,F401  (cp loads it for each CALL from the CSMS: counted as code here)
from evse.ocpp.cp import ChargePoint  # noqa: E402
import evse  # noqa: E402,F401  (boot_payload reads VERSION)

gc.collect()
CODE_HEAP_BYTES = gc.mem_alloc() - _before_code

OCPP_MS = 250           # as evse.app: the charge point looks at the guns this often
SAMPLE_INTERVAL_S = 10  # MeterValueSampleInterval of the session
SESSION_INTERVALS = 6   # real time: 6 intervals of 10 s
MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Current.Offered"
REPLAY_MESSAGES = 1000
VOLTS = 230


def say(**fields):
    # Streamed: the results of a whole run need no one string of their size on a full heap.
    json.dump(fields, sys.stdout)
    print()


class Gun:
    """A gun charging an EV at 16 A on three phases: what the charge point reads of a gun."""

    def __init__(self, n):
        self.n = n
        self.state = "C2"
        self.fault = None
        self.contactor = True
        self.current_a = 16.0
        self.max_a = 32
        self.temperature_c = 31.0
        self.allocation_a = 16.0
        self.meter_ok = True

    def offered_a(self):
        return self.allocation_a

    def ev_plugged(self):
        return self.state[0] in "BCD"

    def needs_technician(self):
        return False


class App:
    """The part of evse.app.App the charge point uses, with two guns in state C2. Energy counts
    in whole Wh from the monotonic clock, so the app itself makes no garbage (floats are boxed)."""

    def __init__(self, root):
        self.root = root
        self.board = {"name": "bench-ac2", "phases": 3, "guns": [{"max_a": 32}, {"max_a": 32}]}
        self.cfg = {"site_limit_a": 32}
        self.guns = [Gun(1), Gun(2)]
        self.cabinet = None   # an AC charger: no DC cabinet whose modules could be out of use
        self.cp = None
        self.cards = []  # (gun, idTag) read by the card reader
        self._t0_ms = time.ticks_ms()

    def log(self, text):
        say(log=text)

    def phases(self, n):
        return 3

    def reading(self, n):
        return None  # no meter: energy and power come from energy_wh and power_w

    def energy_wh(self, n):
        return 16 * VOLTS * 3 * time.ticks_diff(time.ticks_ms(), self._t0_ms) // 3600000

    def power_w(self, n):
        return 16 * VOLTS * 3

    def unlock(self, n):
        return None

    def reboot(self, hard):
        raise SystemExit("the central system asked for a reset during the bench")

    async def after_boot(self, cp):
        pass

    async def ocpp(self):
        # evse.app.App.ocpp: cards, then supervise, every OCPP_MS.
        while self.cp is None:
            await asyncio.sleep_ms(OCPP_MS)
        cp = self.cp
        cp.recover()
        while True:
            if self.cards:
                n, tag = self.cards.pop(0)
                cp.swipe(n, tag)
            for g in self.guns:   # the gun follows the charge point: no session, contactor open
                g.contactor = cp.may_charge(g.n)
            cp.supervise()
            await asyncio.sleep_ms(OCPP_MS)


class HeapPeak:
    """peak: the highest reading before a collection (live + what the round allocated);
    live_peak: the highest after one (what stayed reachable)."""

    def __init__(self):
        self.baseline = 0
        self.peak = 0
        self.live_peak = 0
        self.samples = 0

    def start(self):
        gc.collect()
        self.baseline = self.peak = self.live_peak = gc.mem_alloc()
        gc.disable()

    def sample(self):
        used = gc.mem_alloc()
        if used > self.peak:
            self.peak = used
        self.samples += 1
        gc.collect()
        used = gc.mem_alloc()
        if used > self.live_peak:
            self.live_peak = used

    async def run(self):
        while True:
            self.sample()
            await asyncio.sleep_ms(0)

    def stop(self):
        self.sample()
        gc.enable()
        return self.peak - self.baseline


class LoopStall:
    """The longest the asyncio loop went without coming back to this task: how long one step of
    another task (a journal compaction, say) held up everything else, the guns' control included."""

    def __init__(self):
        self.max_ms = 0

    async def run(self):
        while True:
            t = time.ticks_ms()
            await asyncio.sleep_ms(1)
            late_ms = time.ticks_diff(time.ticks_ms(), t) - 1
            if late_ms > self.max_ms:
                self.max_ms = late_ms


async def until(what, timeout_ms, poll_ms=5):
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while not what():
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            raise SystemExit("bench: timed out after %d ms waiting until %s" % (timeout_ms, getattr(what, "__name__", what)))
        await asyncio.sleep_ms(poll_ms)


def drained(cp):
    def journal_and_outbox_empty():
        return len(cp.journal) == 0 and not cp.outbox
    return journal_and_outbox_empty


async def session(url, root):
    app = App(root)
    heap = HeapPeak()
    sampler = asyncio.create_task(heap.run())
    driver = asyncio.create_task(app.ocpp())
    await asyncio.sleep_ms(0)
    heap.start()
    t0 = time.ticks_ms()
    cp = ChargePoint(app, root, url, "BENCH1", log=app.log)
    cp.keys.change("MeterValueSampleInterval", str(SAMPLE_INTERVAL_S))
    cp.keys.change("MeterValuesSampledData", MEASURANDS)
    app.cp = cp
    link = asyncio.create_task(cp.run())

    def online():
        return cp.online
    await until(online, 15000)
    say(event="online")  # the host now sends RemoteStartTransaction for gun 2
    app.cards.append((1, "AA11"))

    def both_charging():
        return cp.connectors[1].tx is not None and cp.connectors[2].tx is not None
    await until(both_charging, 20000)
    t_started = time.ticks_ms()
    await asyncio.sleep_ms(SESSION_INTERVALS * SAMPLE_INTERVAL_S * 1000 + 1000)
    app.cards.append((1, "AA11"))
    app.cards.append((2, "BB22"))

    def both_stopped():
        return cp.connectors[1].tx is None and cp.connectors[2].tx is None
    await until(both_stopped, 5000)
    await until(drained(cp), 10000)
    t_end = time.ticks_ms()
    peak = heap.stop()
    sampler.cancel()
    link.cancel()
    driver.cancel()
    return {"heap_peak_bytes": peak, "heap_live_peak_bytes": heap.live_peak - heap.baseline,
            "heap_baseline_bytes": heap.baseline, "heap_samples": heap.samples,
            "code_heap_bytes": CODE_HEAP_BYTES, "session_s": time.ticks_diff(t_end, t0) / 1000,
            "charging_s": time.ticks_diff(t_end, t_started) / 1000,
            "journal_max_entries": cp.journal.max_entries}


def fill_journal(cp):
    """With the link down: one transaction on gun 1, its MeterValues and its stop, all journalled."""
    c = cp.connectors[1]
    cp.authorized(c, "AA11")
    cp.supervise()  # the EV is plugged: StartTransaction
    measurands = cp.keys.get("MeterValuesSampledData")
    t_s = c.tx["start_s"]
    for _ in range(REPLAY_MESSAGES - 2):
        t_s += SAMPLE_INTERVAL_S
        cp.journal.append("MeterValues", {"connectorId": 1, "transactionId": c.tx["id"],
                                          "meterValue": [cp.meter_value(1, measurands, "Sample.Periodic", t_s)]})
    cp.stop_tx(c, "Local", tag="AA11", when_s=t_s + SAMPLE_INTERVAL_S)
    if len(cp.journal) != REPLAY_MESSAGES:
        raise SystemExit("bench: the journal holds %d messages, not %d" % (len(cp.journal), REPLAY_MESSAGES))


async def replay(url, root):
    app = App(root)
    stall = LoopStall()
    watcher = asyncio.create_task(stall.run())
    cp = ChargePoint(app, root, url, "BENCH2", log=app.log)
    cp.keys.change("MeterValuesSampledData", MEASURANDS)
    if cp.keys.get("JournalMaxEntries") < REPLAY_MESSAGES:
        raise SystemExit("bench: JournalMaxEntries is below %d" % REPLAY_MESSAGES)
    cp.clock.set(int(time.time()))  # a charger that was online before the link went down
    fill_journal(cp)
    real_tx = []
    confirm_start = cp.new_tx_id_confirmed

    def spy(local_id, reply):
        real_tx.append(reply.get("transactionId"))
        return confirm_start(local_id, reply)
    cp.new_tx_id_confirmed = spy

    t0 = time.ticks_ms()
    link = asyncio.create_task(cp.run())

    def online():
        return cp.online
    await until(online, 15000, poll_ms=1)
    t_online = time.ticks_ms()

    def journal_empty():
        return len(cp.journal) == 0
    await until(journal_empty, 120000, poll_ms=1)
    t_replayed = time.ticks_ms()
    out = {"replay_messages": REPLAY_MESSAGES, "replay_s": time.ticks_diff(t_replayed, t0) / 1000,
           "replay_connect_boot_s": time.ticks_diff(t_online, t0) / 1000, "replay_max_loop_stall_ms": stall.max_ms}
    await until(drained(cp), 10000)

    # Baseline: the same number of CALLs with the same MeterValues, straight over the connection.
    measurands = cp.keys.get("MeterValuesSampledData")
    t_s = cp.clock.now()
    payload = {"connectorId": 1, "transactionId": real_tx[0],
               "meterValue": [cp.meter_value(1, measurands, "Sample.Periodic", t_s)]}
    stall.max_ms = 0
    t1 = time.ticks_ms()
    for _ in range(REPLAY_MESSAGES):
        await cp.call("MeterValues", payload)
    out["direct_s"] = time.ticks_diff(time.ticks_ms(), t1) / 1000
    out["direct_max_loop_stall_ms"] = stall.max_ms
    watcher.cancel()
    link.cancel()
    return out


def main():
    mode, url, root = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "session":
        result = asyncio.run(session(url, root))
    elif mode == "replay":
        result = asyncio.run(replay(url, root))
    else:
        raise SystemExit("usage: ocpp_mpy.py session|replay WS_URL ROOT_DIR")
    say(result=result)


if __name__ == "__main__":
    main()
