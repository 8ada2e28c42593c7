"""Local Authorization List and Authorization Cache (OCPP 1.6 sections 3.5, 5.4, 5.10, 5.15):
versions, limits, atomic updates, expiry, the bounded cache, and the offline decisions."""
import json
from pathlib import Path

import jsonschema
import ocpp.v16
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from evse.ocpp import auth
from evse.ocpp.auth import Auth
from evse.ocpp.clock import parse_iso
from evse.ocpp.keys import Keys

SCHEMAS = Path(ocpp.v16.__file__).parent / "schemas"
NOW = parse_iso("2026-06-01T12:00:00Z")
LATER = "2026-06-02T12:00:00Z"
EARLIER = "2026-05-31T12:00:00Z"


class FakeKeys:
    """Only what Auth reads, with limits small enough to reach."""

    def __init__(self, **values):
        self.values = {"LocalAuthListEnabled": True, "AuthorizationCacheEnabled": True, "LocalPreAuthorize": False,
                       "LocalAuthorizeOffline": True, "AllowOfflineTxForUnknownId": False,
                       "LocalAuthListMaxLength": 100, "SendLocalListMaxLength": 50}
        self.values.update(values)

    def get(self, name):
        return self.values[name]


def full(version, *entries):
    return {"listVersion": version, "updateType": "Full",
            "localAuthorizationList": [{"idTag": t, "idTagInfo": {"status": s}} for t, s in entries]}


def diff(version, *changes):
    items = [{"idTag": t} if s is None else {"idTag": t, "idTagInfo": {"status": s}} for t, s in changes]
    return {"listVersion": version, "updateType": "Differential", "localAuthorizationList": items}


def status(a, tag, now=NOW):
    info = a.lookup(tag, now)
    return None if info is None else info["status"]


def files(root):
    """The local list's files, by name: what it is on flash."""
    return {p.name: p.read_text() for p in sorted(Path(root).iterdir()) if p.name.startswith(auth.LIST_FILE)}


@pytest.fixture
def make(tmp_path):
    def make(**values):
        return Auth(str(tmp_path), FakeKeys(**values))
    return make


def test_a_full_list_replaces_the_list_and_sets_its_version(make):
    a = make()
    assert a.local_list_version() == 0
    assert a.send_local_list(full(3, ("AA", "Accepted"), ("BB", "Blocked"))) == "Accepted"
    assert a.local_list_version() == 3
    assert status(a, "AA") == "Accepted" and status(a, "BB") == "Blocked"
    assert a.send_local_list(full(2, ("CC", "Accepted"))) == "Accepted"  # a full list may go back
    assert a.local_list_version() == 2
    assert status(a, "AA") is None and status(a, "CC") == "Accepted"


def test_a_differential_update_adds_updates_and_removes_entries(make):
    a = make()
    a.send_local_list(full(1, ("AA", "Accepted"), ("BB", "Accepted")))
    assert a.send_local_list(diff(2, ("BB", "Blocked"), ("CC", "Accepted"), ("AA", None))) == "Accepted"
    assert a.local_list_version() == 2
    assert status(a, "AA") is None and status(a, "BB") == "Blocked" and status(a, "CC") == "Accepted"


@pytest.mark.parametrize("version", [3, 2, 0])
def test_a_differential_update_not_above_the_current_version_is_a_version_mismatch(make, version):
    a = make()
    a.send_local_list(full(3, ("AA", "Accepted")))
    assert a.send_local_list(diff(version, ("BB", "Accepted"))) == "VersionMismatch"
    assert status(a, "BB") is None and a.local_list_version() == 3


def test_version_zero_means_an_empty_list(make):
    a = make()
    a.send_local_list(full(5, ("AA", "Accepted")))
    assert a.send_local_list(full(0, ("AA", "Accepted"))) == "Failed"
    assert a.send_local_list(full(0)) == "Accepted"
    assert a.local_list_version() == 0 and status(a, "AA") is None
    a.send_local_list(full(7, ("AA", "Accepted")))
    a.send_local_list(diff(8, ("AA", None)))
    assert a.local_list_version() == 0  # emptied by a differential update: empty is version 0
    assert a.send_local_list(diff(1, ("BB", "Accepted"))) == "Accepted"


def test_a_disabled_list_is_not_supported_reports_version_minus_one_and_is_not_consulted(tmp_path):
    keys = FakeKeys()
    a = Auth(str(tmp_path), keys)
    a.send_local_list(full(4, ("AA", "Accepted")))
    keys.values["LocalAuthListEnabled"] = False
    assert a.local_list_version() == -1
    assert a.send_local_list(full(5, ("BB", "Accepted"))) == "NotSupported"
    assert status(a, "AA") is None
    keys.values["LocalAuthListEnabled"] = True
    assert a.local_list_version() == 4 and status(a, "AA") == "Accepted"


@pytest.mark.parametrize("request_", [
    full(9, *[("T%d" % i, "Accepted") for i in range(4)]),          # more than SendLocalListMaxLength
    diff(9, ("N1", "Accepted"), ("N2", "Accepted"), ("N3", "Accepted")),  # the list would exceed its maximum
    {"listVersion": 9, "updateType": "Full", "localAuthorizationList": [{"idTag": "AA"}]},
    full(9, ("AA", "Accepted"), ("X" * 21, "Accepted")),
    full(9, ("AA", "Accepted"), ("BB", "Fine")),
    {"listVersion": 9, "updateType": "Full",
     "localAuthorizationList": [{"idTag": "AA", "idTagInfo": {"status": "Accepted", "expiryDate": "tomorrow"}}]},
    {"listVersion": 9, "updateType": "Partial", "localAuthorizationList": []},
    {"listVersion": "9", "updateType": "Full", "localAuthorizationList": []},
    {"listVersion": -1, "updateType": "Full", "localAuthorizationList": []},
])
def test_a_request_over_the_limits_or_malformed_fails_and_leaves_the_old_list_intact(tmp_path, request_):
    keys = FakeKeys(SendLocalListMaxLength=3, LocalAuthListMaxLength=4)
    a = Auth(str(tmp_path), keys)
    assert a.send_local_list(full(2, ("AA", "Accepted"), ("BB", "Blocked"))) == "Accepted"
    stored = files(tmp_path)
    assert a.send_local_list(request_) == "Failed"
    assert files(tmp_path) == stored
    for b in (a, Auth(str(tmp_path), keys)):
        assert b.local_list_version() == 2
        assert status(b, "AA") == "Accepted" and status(b, "BB") == "Blocked" and status(b, "N1") is None


def test_id_tags_are_case_insensitive(make):
    a = make()
    a.send_local_list(full(1, ("04a2b3c4", "Accepted")))
    assert status(a, "04A2B3C4") == "Accepted"
    a.send_local_list(diff(2, ("04A2B3C4", None)))
    assert status(a, "04a2b3c4") is None


def test_the_list_and_the_cache_survive_a_restart(tmp_path):
    keys = FakeKeys()
    a = Auth(str(tmp_path), keys)
    a.send_local_list({"listVersion": 6, "updateType": "Full", "localAuthorizationList": [
        {"idTag": "AA", "idTagInfo": {"status": "Accepted", "expiryDate": LATER, "parentIdTag": "GROUP"}}]})
    a.remember("CC", {"status": "Blocked"}, NOW)
    b = Auth(str(tmp_path), keys)
    assert b.local_list_version() == 6
    assert b.lookup("AA", NOW) == {"status": "Accepted", "expiryDate": LATER, "parentIdTag": "GROUP"}
    assert b.lookup("CC", NOW) == {"status": "Blocked"}


def test_an_entry_past_its_expiry_date_is_expired(make):
    a = make()
    a.send_local_list({"listVersion": 1, "updateType": "Full", "localAuthorizationList": [
        {"idTag": "AA", "idTagInfo": {"status": "Accepted", "expiryDate": LATER}}]})
    a.remember("CC", {"status": "Accepted", "expiryDate": "2026-06-01T13:00:00+01:00"}, NOW - 60)
    assert status(a, "AA") == "Accepted"
    assert status(a, "AA", parse_iso(LATER)) == "Expired"
    assert status(a, "CC", NOW - 1) == "Accepted"
    assert status(a, "CC", NOW) == "Expired"
    assert status(a, "CC", NOW - 1) == "Expired"  # section 3.5.1: the cache entry itself is now Expired


def test_the_cache_keeps_64_entries_and_evicts_invalid_ones_first_then_the_least_recently_used(make):
    a = make()
    for i in range(auth.CACHE_MAX):
        a.remember("T%d" % i, {"status": "Accepted"}, NOW)
    a.remember("T5", {"status": "Accepted", "expiryDate": EARLIER}, NOW)  # expired: no longer authorizes
    assert status(a, "T0") == "Accepted"  # T0 used: T1 is now the least recently used valid one
    a.remember("NEW1", {"status": "Accepted"}, NOW)
    assert "T5" not in a.cache and "T1" in a.cache  # (looking T1 up would make it recently used)
    a.remember("NEW2", {"status": "Accepted"}, NOW)
    assert "T1" not in a.cache
    assert status(a, "T0") == "Accepted" and status(a, "T2") == "Accepted" and status(a, "NEW1") == "Accepted"
    assert len(a.cache) == auth.CACHE_MAX
    assert len(json.loads(Path(a.cache_path).read_text())["entries"]) == auth.CACHE_MAX


def test_the_cache_never_holds_a_tag_of_the_local_list_and_is_off_when_disabled(tmp_path):
    keys = FakeKeys()
    a = Auth(str(tmp_path), keys)
    a.send_local_list(full(1, ("AA", "Blocked")))
    a.remember("AA", {"status": "Accepted"}, NOW)
    assert status(a, "AA") == "Blocked" and "AA" not in a.cache
    a.remember("BB", {"status": "Accepted"}, NOW)
    keys.values["AuthorizationCacheEnabled"] = False
    assert status(a, "BB") is None
    a.remember("CC", {"status": "Accepted"}, NOW)
    keys.values["AuthorizationCacheEnabled"] = True
    assert status(a, "CC") is None and status(a, "BB") == "Accepted"


def test_a_malformed_confirmation_is_not_cached(make):
    a = make()
    for info in ({}, {"status": "Fine"}, {"status": "Accepted", "expiryDate": "soon"}, None, "Accepted"):
        a.remember("AA", info, NOW)
    assert status(a, "AA") is None


def test_clear_cache_empties_it_on_flash_too(tmp_path):
    keys = FakeKeys()
    a = Auth(str(tmp_path), keys)
    a.remember("AA", {"status": "Accepted"}, NOW)
    assert a.clear_cache() == "Accepted"
    jsonschema.validate({"status": "Accepted"}, json.loads((SCHEMAS / "ClearCacheResponse.json").read_text()))
    assert status(a, "AA") is None and status(Auth(str(tmp_path), keys), "AA") is None


def test_corrupt_files_are_kept_aside_and_authorization_starts_empty(tmp_path, capsys):
    (tmp_path / auth.OLD_LIST_FILE).write_text("{")
    (tmp_path / auth.CACHE_FILE).write_text(json.dumps({"entries": {"AA": ["Accepted", None, None, 1], "BB": ["?"]}}))
    a = Auth(str(tmp_path), FakeKeys())
    assert a.local_list_version() == 0 and status(a, "AA") == "Accepted" and status(a, "BB") is None
    assert (tmp_path / (auth.OLD_LIST_FILE + ".bad")).exists()
    out = capsys.readouterr().out
    assert "does not parse" in out and "BB" in out


# section 3.5: the decision for a presented idTag. Tags: AA valid in the list, BB blocked in the list,
# CC valid in the cache, DD expired in the cache, ZZ unknown.
@pytest.mark.parametrize("tag, online, pre, offline_local, unknown_ok, verdict", [
    ("AA", True, True, True, False, "accept"),   # LocalPreAuthorize: no round trip
    ("CC", True, True, True, False, "accept"),
    ("AA", True, False, True, False, "ask"),
    ("BB", True, True, True, False, "ask"),      # only the CSMS can unblock a tag
    ("DD", True, True, True, True, "ask"),
    ("ZZ", True, True, True, True, "ask"),
    ("AA", False, False, True, False, "accept"),  # LocalAuthorizeOffline
    ("CC", False, False, True, False, "accept"),
    ("BB", False, False, True, True, "reject"),   # 3.5.4: known and invalid is never "unknown"
    ("DD", False, False, True, True, "reject"),
    ("BB", False, False, False, True, "reject"),
    ("ZZ", False, False, True, False, "reject"),
    ("ZZ", False, False, True, True, "accept"),   # AllowOfflineTxForUnknownId
    ("AA", False, False, False, False, "reject"),
    ("AA", False, False, False, True, "accept"),  # not authorized locally, but unknown ones may charge
])
def test_decide_applies_the_offline_and_pre_authorize_keys(tmp_path, tag, online, pre, offline_local, unknown_ok, verdict):
    a = Auth(str(tmp_path), FakeKeys(LocalPreAuthorize=pre, LocalAuthorizeOffline=offline_local,
                                     AllowOfflineTxForUnknownId=unknown_ok))
    a.send_local_list(full(1, ("AA", "Accepted"), ("BB", "Blocked")))
    a.remember("CC", {"status": "Accepted"}, NOW)
    a.remember("DD", {"status": "Accepted", "expiryDate": EARLIER}, NOW)
    got, info = a.decide(tag, online, NOW)
    assert got == verdict
    if tag != "ZZ":
        assert info == a.lookup(tag, NOW)


def test_auth_reads_the_real_keys_table(tmp_path):
    keys = Keys(str(tmp_path), 2)
    a = Auth(str(tmp_path), keys)
    big = full(1, *[("T%d" % i, "Accepted") for i in range(keys.get("SendLocalListMaxLength") + 1)])
    assert a.send_local_list(big) == "Failed"
    assert a.decide("ZZ", False, NOW) == ("reject", None)
    keys.change("AllowOfflineTxForUnknownId", "true")
    assert a.decide("ZZ", False, NOW) == ("accept", None)


TAGS = st.sampled_from(["aa", "AA", "bb", "Bb", "cc", "dd", "ee", "ff"])
STATUS = st.sampled_from(auth.STATUSES)


class LocalListModel(RuleBasedStateMachine):
    """Auth against a dict: SendLocalList's rules written the plain way, restarts included."""

    def __init__(self):
        super().__init__()
        import tempfile
        self.dir = tempfile.mkdtemp()
        self.keys = FakeKeys(SendLocalListMaxLength=3, LocalAuthListMaxLength=4)
        self.auth = Auth(self.dir, self.keys)
        self.version = 0
        self.entries = {}

    def expect(self, update, version, items):
        if len(items) > 3 or version < 0:
            return "Failed"
        current = self.version if self.entries else 0
        if update == "Differential" and version <= current:
            return "VersionMismatch"
        new = dict(self.entries) if update == "Differential" else {}
        for tag, s in items:
            if s is None and update == "Full":
                return "Failed"
            if s is None:
                new.pop(tag.upper(), None)
            else:
                new[tag.upper()] = s
        if len(new) > 4 or (version == 0 and new):
            return "Failed"
        self.version, self.entries = version, new
        return "Accepted"

    @rule(version=st.integers(-1, 6), items=st.lists(st.tuples(TAGS, st.one_of(st.none(), STATUS)), max_size=4),
          update=st.sampled_from(["Full", "Differential"]))
    def send(self, version, items, update):
        body = [{"idTag": t} if s is None else {"idTag": t, "idTagInfo": {"status": s}} for t, s in items]
        got = self.auth.send_local_list({"listVersion": version, "updateType": update, "localAuthorizationList": body})
        assert got == self.expect(update, version, items)

    @rule(tag=TAGS)
    def lookup(self, tag):
        info = self.auth.lookup(tag, NOW)
        assert (info and info["status"]) == self.entries.get(tag.upper())

    @rule()
    def restart(self):
        self.auth = Auth(self.dir, self.keys)

    @invariant()
    def version_matches(self):
        assert self.auth.local_list_version() == (self.version if self.entries else 0)

    def teardown(self):
        import shutil
        shutil.rmtree(self.dir)


LocalListModel.TestCase.settings = settings(stateful_step_count=25, deadline=None)
test_the_local_list_behaves_like_its_model = LocalListModel.TestCase


def test_a_flash_write_failure_fails_the_update_and_rejects_clear_cache_changing_nothing(tmp_path):
    a = Auth(str(tmp_path / "missing-dir"), FakeKeys())
    assert a.send_local_list(full(1, ("AA", "Accepted"))) == "Failed"
    assert a.local_list_version() == 0 and status(a, "AA") is None
    a.cache["BB"] = ["Accepted", None, None, 1]
    assert a.clear_cache() == "Rejected"
    assert status(a, "BB") == "Accepted"


SAME_ANSWERS = r"""
import sys
try:
    import micropython
except ImportError:
    import types
    sys.modules["micropython"] = types.ModuleType("micropython")
    sys.modules["micropython"].const = lambda v: v
from evse.ocpp.auth import Auth
from evse.ocpp.keys import Keys
root = sys.argv[1]
k = Keys(root, 2)
for name, value in (("HeartbeatInterval", "60"), ("HeartbeatInterval", "x1"), ("LocalPreAuthorize", "TRUE"),
                    ("MeterValuesSampledData", "Voltage, SoC"), ("MeterValuesSampledData", "Volts"),
                    ("ConnectorPhaseRotation", "1.RST,2.TSR"), ("AuthorizationKey", "00112233445566778899aabbccddeeff"),
                    ("SecurityProfile", "1"), ("NumberOfConnectors", "3"), ("Nope", "1")):
    print(name, k.change(name, value), k.last_error)
conf = k.get_configuration(["HeartbeatInterval", "MeterValuesSampledData", "AuthorizationKey", "Nope"])
print(sorted((e["key"], e["readonly"], e["value"]) for e in conf["configurationKey"]), conf.get("unknownKey"))
a = Auth(root, k)
now = 1780315200
print(a.send_local_list({"listVersion": 2, "updateType": "Full", "localAuthorizationList": [
    {"idTag": "aa", "idTagInfo": {"status": "Accepted", "expiryDate": "2026-06-01T13:00:30+01:00", "parentIdTag": "G"}},
    {"idTag": "BB", "idTagInfo": {"status": "Blocked"}}]}))
print(a.send_local_list({"listVersion": 2, "updateType": "Differential", "localAuthorizationList": []}))
print(a.send_local_list({"listVersion": 3, "updateType": "Differential", "localAuthorizationList": [
    {"idTag": "DD", "idTagInfo": {"status": "Accepted"}}, {"idTag": "bb"}, {"idTag": "EE", "idTagInfo": {"status": "Invalid"}}]}))
print(sorted(a.list_entries().items()), a.count)
a.remember("CC", {"status": "Accepted"}, now)
a = Auth(root, k)
for tag in ("AA", "bb", "CC", "DD", "ee", "ZZ"):
    info = a.lookup(tag, now - 1)
    print(tag, info and sorted(info.items()), a.decide(tag, True, now)[0], a.decide(tag, False, now)[0])
print(a.local_list_version(), a.clear_cache())
"""


def test_keys_and_auth_give_the_same_answers_under_micropython_as_under_cpython(tmp_path):
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "same.py"
    script.write_text(SAME_ANSWERS)
    outs = []
    for exe, name in ((sys.executable, "cpython"), (str(Path(sys.executable).parent / "micropython"), "micropython")):
        root = tmp_path / name
        root.mkdir()
        env = {"MICROPYPATH": str(repo / "firmware"), "PYTHONPATH": str(repo / "firmware")}
        r = subprocess.run([exe, str(script), str(root)], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1]
    assert "AuthorizationKey Accepted" in outs[0] and "00112233" not in outs[0].split("AuthorizationKey Accepted")[1]


def test_a_power_cut_at_any_step_of_an_update_leaves_the_old_list_or_the_new_one(tmp_path):
    # Each yield of the update is a point where the event loop runs, so where a power cut can
    # come: the update given up there, then a boot (a new Auth on the same files).
    keys = FakeKeys(SendLocalListMaxLength=40, LocalAuthListMaxLength=60)
    old = [("OLD%d" % k, "Accepted") for k in range(30)]
    changes = [("OLD%d" % k, None) for k in range(10)] + [("NEW%d" % k, "Blocked") for k in range(20)]
    steps_total = None
    cut = 0
    while steps_total is None or cut <= steps_total:
        root = tmp_path / str(cut)
        root.mkdir()
        a = Auth(str(root), keys)
        assert a.send_local_list(full(2, *old)) == "Accepted"
        work = a.local_list_steps(diff(3, *changes))   # a request of its own: the update takes its entries
        try:
            for _ in range(cut):
                next(work)
        except StopIteration as e:
            assert e.value == "Accepted"
            steps_total = cut - 1
        work.close()
        b = Auth(str(root), keys)
        got = {tag: entry[0] for tag, entry in b.list_entries().items()}
        if b.local_list_version() == 2:
            assert got == dict(old), cut
        else:
            expect = dict(old[10:], **{"NEW%d" % k: "Blocked" for k in range(20)})
            assert (b.local_list_version(), got) == (3, expect), cut
            assert b.count == len(expect)
        assert list(files(root)) == [auth.LIST_FILE], cut
        assert status(b, "OLD3") == (None if b.local_list_version() == 3 else "Accepted")
        cut += 1
    assert steps_total > 16   # a step per region, and the close and the rename in steps of their own


def test_a_thousand_cards_fill_the_list_in_steps_of_its_message_size_and_each_is_found(make):
    a = make(LocalAuthListMaxLength=1000, SendLocalListMaxLength=50)
    tags = ["04%08X" % (k * 2654435761 & 0xFFFFFFFF) for k in range(1000)]
    for first in range(0, 1000, 50):
        chunk = [(t, "Accepted") for t in tags[first:first + 50]]
        got = a.send_local_list(full(1, *chunk) if first == 0 else diff(1 + first // 50, *chunk))
        assert got == "Accepted"
    assert a.count == 1000 and a.local_list_version() == 20
    assert all(status(a, t.lower()) == "Accepted" for t in tags[::7])
    assert status(a, "04FFFFFFFF") is None
    sizes = [end - start for start, end in zip(a._at, a._at[1:])]
    assert len(sizes) == 16 and max(sizes) < 4096   # a lookup reads one region
    assert a.send_local_list(diff(21, ("ONE_TOO_MANY", "Accepted"))) == "Failed"
    assert a.count == 1000 and a.local_list_version() == 20


def test_a_list_kept_as_one_json_file_by_earlier_firmware_moves_into_the_files(tmp_path):
    (tmp_path / auth.OLD_LIST_FILE).write_text(json.dumps(
        {"version": 7, "entries": {"AA": ["Accepted", None, None], "BB": ["Blocked", 29700000, "PP"], "": ["?"]}}))
    a = Auth(str(tmp_path), FakeKeys())
    assert a.local_list_version() == 7 and a.count == 2
    assert a.list_entries() == {"AA": ("Accepted", None, None), "BB": ("Blocked", 29700000, "PP")}
    assert not (tmp_path / auth.OLD_LIST_FILE).exists()
    assert Auth(str(tmp_path), FakeKeys()).local_list_version() == 7


def test_a_bad_line_in_a_list_file_is_ignored_and_the_others_still_count(make, capsys):
    a = make()
    a.send_local_list(full(1, ("AA", "Accepted"), ("BB", "Accepted")))
    path = Path(a.list_path)
    path.write_text(path.read_text().replace("AA\t0\t", "AA\tx\t"))   # the same length: offsets hold
    assert status(a, "AA") is None and "bad line" in capsys.readouterr().out
    assert status(a, "BB") == "Accepted" and set(a.list_entries()) == {"BB"}


def test_a_tag_with_a_tab_a_line_break_or_beyond_ascii_fails_the_update(make):
    a = make()
    for bad in ("A\tB", "A\nB", "A\rB", "CAFÉ"):
        assert a.send_local_list(full(1, ("AA", "Accepted"), (bad, "Accepted"))) == "Failed"
    assert a.local_list_version() == 0


def test_a_list_file_without_a_valid_trailer_is_an_empty_list_and_the_next_update_replaces_it(make, capsys):
    a = make()
    a.send_local_list(full(3, ("AA", "Accepted")))
    Path(a.list_path).write_text(Path(a.list_path).read_text()[:-40])
    b = make()
    assert b.local_list_version() == 0 and status(b, "AA") is None and "no valid trailer" in capsys.readouterr().out
    assert b.send_local_list(diff(4, ("BB", "Accepted"))) == "Accepted"
    assert b.list_entries() == {"BB": ("Accepted", None, None)} and make().local_list_version() == 4


def test_a_stale_tmp_file_from_a_power_cut_is_removed_at_boot_and_the_list_stays(tmp_path):
    a = Auth(str(tmp_path), FakeKeys())
    a.send_local_list(full(2, ("AA", "Accepted")))
    (tmp_path / (auth.LIST_FILE + ".tmp")).write_text("\nHALF\t0\t\t\n")   # the copy a power cut stopped
    b = Auth(str(tmp_path), FakeKeys())
    assert list(files(tmp_path)) == [auth.LIST_FILE]
    assert b.local_list_version() == 2 and status(b, "AA") == "Accepted" and status(b, "HALF") is None


def test_a_list_version_with_no_room_in_the_trailer_fails_and_keeps_the_list(make):
    a = make()
    a.send_local_list(full(2, ("AA", "Accepted")))
    assert a.send_local_list(diff(10 ** 160, ("BB", "Accepted"))) == "Failed"
    assert a.local_list_version() == 2 and make().local_list_version() == 2 and status(make(), "BB") is None


@pytest.mark.parametrize("damage", ["trailer_not_text", "offsets_backwards", "region_not_text"])
def test_a_damaged_list_file_never_raises(make, capsys, damage):
    a = make()
    a.send_local_list(full(2, *[("T%d" % k, "Accepted") for k in range(40)]))
    path = Path(a.list_path)
    data = bytearray(path.read_bytes())
    if damage == "trailer_not_text":
        data[-5] = 0xFF
    elif damage == "offsets_backwards":
        fields = data[-auth.TRAILER:].split()
        fields[3], fields[4] = fields[4], fields[3]
        trailer = b" ".join(fields)
        data[-auth.TRAILER:] = trailer + b" " * (auth.TRAILER - len(trailer) - 1) + b"\n"
    else:
        data[a._at[auth._bucket("T1")] + 1] = 0xFF
    path.write_bytes(bytes(data))
    b = make()
    got = {t: status(b, t) for t in ("T1", "T2", "T3")}
    if damage == "region_not_text":
        assert got["T1"] is None and "bad line" in capsys.readouterr().out
        assert b.send_local_list(full(3, ("T1", "Accepted"))) == "Accepted" and status(b, "T1") == "Accepted"
    else:
        assert got == {"T1": None, "T2": None, "T3": None} and b.local_list_version() == 0
        assert "no valid trailer" in capsys.readouterr().out


def test_an_update_given_up_by_a_cancelled_task_closes_and_leaves_no_tmp_and_the_next_one_runs(tmp_path):
    # The link drops mid-update: the charge point's reader, running it through slices.run_async,
    # is cancelled. MicroPython never closes a generator that nobody holds; run_async must.
    import asyncio
    from evse import slices
    a = Auth(str(tmp_path), FakeKeys())
    work = a.local_list_steps(full(2, *[("T%d" % k, "Accepted") for k in range(40)]))   # held: CPython would

    async def main():                                                                   # close it otherwise
        task = asyncio.create_task(slices.run_async(work))
        for _ in range(8):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(main())
    assert work.gi_frame is None   # closed
    assert list(files(tmp_path)) == [] and not a._busy
    assert a.send_local_list(full(3, ("AA", "Accepted"))) == "Accepted"
