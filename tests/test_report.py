"""`evsectl report`: a rig log into series, sessions and step marks, the site limit it is drawn
against, the PNG, and the CLI's errors for logs and options it cannot use."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.report import (LogError, UsageError, read_log, site_limit, timeline_from_records,
                               write_report)

REPO = Path(__file__).resolve().parents[1]
EVSECTL = str(Path(sys.executable).parent / "evsectl")
SIM_AC2 = json.loads((REPO / "boards" / "sim-ac2.json").read_text())
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def gun(number, amps=0.0, offered_a=0.0, energy_wh=0.0, plugged=False, contactor=False, fault=None):
    return {"gun": number, "state": "C2" if contactor else ("B1" if plugged else "A"), "duty": 100.0,
            "offered_a": offered_a, "amps": amps, "power_w": amps * 230 * 3, "energy_wh": energy_wh,
            "contactor": contactor, "fault": fault, "plugged": plugged}


def snapshot(t_ms, step, *guns):
    return {"kind": "snapshot", "t_ms": t_ms, "step": step, "guns": list(guns)}


def ocpp(t_ms, line):
    return {"kind": "ocpp", "t_ms": t_ms, "line": line, "valid": True}


def small_day() -> list[dict]:
    """Gun 1 charges 2.0 - 4.0 s and is unplugged; gun 2 plugs in at 3.0 s, trips its RCD at 4.0 s
    and is still plugged when the log ends. Transaction 2 (gun 2's) stops before transaction 1."""
    return [
        {"kind": "meta", "board": "sim-ac2", "site_limit_a": 40, "phases": 3},
        snapshot(1000, "the charger boots", gun(1, energy_wh=5.0), gun(2)),
        ocpp(1500, "charger -> CSMS: StartTransaction connectorId 1, idTag AA11, meterStart 100"),
        {"kind": "event", "t_ms": 1900.0, "gun": 1, "what": "rfid", "value": "AA11"},
        snapshot(2000, "step 1/3: car 1", gun(1, 32, 32, 5.0, True, True), gun(2)),
        ocpp(2900, "charger -> CSMS: StartTransaction connectorId 2, idTag BB22, meterStart 0"),
        snapshot(3000, "step 2/3: car 2", gun(1, 20, 20, 15.0, True, True), gun(2, 20, 20, 0.0, True, True)),
        ocpp(3500, "charger -> CSMS: StopTransaction transactionId 2, reason Remote, meterStop 4"),
        ocpp(3600, "charger -> CSMS: StopTransaction transactionId 1, reason EVDisconnected, meterStop 118"),
        snapshot(4000, "step 2/3: car 2", gun(1, 0, 0, 25.0, True), gun(2, 0, 0, 6.0, True, fault="rcd")),
        snapshot(5000, "step 3/3: car 1 leaves", gun(1, 0, 0, 25.0), gun(2, 0, 0, 6.0, True, fault="rcd")),
    ]


def write_log(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def evsectl(*args, cwd=REPO):
    return subprocess.run([EVSECTL, "report", *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


# ---- records into series and sessions -----------------------------------------------------------
def test_series_per_gun_follow_the_snapshots_in_seconds():
    timeline = timeline_from_records(small_day())
    assert list(timeline.guns) == [1, 2]
    assert timeline.t_s == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert timeline.guns[1].amps == [0.0, 32.0, 20.0, 0.0, 0.0]
    assert timeline.guns[2].offered_a == [0.0, 0.0, 20.0, 0.0, 0.0]
    assert timeline.guns[1].power_w[1] == 32 * 230 * 3
    assert timeline.guns[2].contactor_closed == [False, False, True, False, False]
    assert timeline.guns[2].fault == [None, None, None, "rcd", "rcd"]


def test_the_stacked_current_is_what_each_gun_draws_on_the_sites_busiest_phase():
    def gun(n, amps, phase_amps):
        return {"gun": n, "amps": amps, "power_w": 0, "energy_wh": 0, "phase_amps": phase_amps}
    # A three-phase car at 10 A and single-phase cars at 16 A on L2 and 20 A on L3: L3 is busiest
    # (30 A), and the L2 car is not on it.
    timeline = timeline_from_records([snapshot(0, "s", gun(1, 10, [10, 10, 10]), gun(2, 16, [0, 16, 0]),
                                               gun(3, 20, [0, 0, 20]))])
    assert [s.site_amps for s in timeline.guns.values()] == [[10.0], [0.0], [20.0]]
    old = timeline_from_records([snapshot(0, "s", {"gun": 1, "amps": 7, "power_w": 0, "energy_wh": 0})])
    assert old.guns[1].site_amps == [7.0]   # a log without the per-phase view counts every amp


def test_a_session_is_a_plug_in_period_with_the_energy_the_rig_counted_in_it():
    """energy_wh counts from the rig's start (5 Wh before gun 1's plug), so a session's energy is
    the difference across it."""
    sessions = timeline_from_records(small_day()).sessions
    assert [(s.gun, s.start_s, s.end_s, s.still_plugged) for s in sessions] == [(1, 2.0, 4.0, False),
                                                                               (2, 3.0, 5.0, True)]
    assert [s.energy_wh for s in sessions] == [20.0, 6.0]
    assert [s.peak_a for s in sessions] == [32.0, 20.0]


def test_two_plug_ins_on_one_gun_are_two_sessions():
    records = [snapshot(t, "x", gun(1, energy_wh=e, plugged=p)) for t, e, p in
               [(0, 0, False), (1000, 0, True), (2000, 7, True), (3000, 9, False), (4000, 9, True), (5000, 12, True),
                (6000, 12, False)]]
    sessions = timeline_from_records(records).sessions
    assert [(s.start_s, s.end_s, s.energy_wh) for s in sessions] == [(1.0, 2.0, 9.0), (4.0, 5.0, 3.0)]


def test_billed_energy_is_matched_to_the_session_by_transaction_number_not_by_stop_order():
    sessions = timeline_from_records(small_day()).sessions
    assert [(s.gun, s.id_tag, s.billed_wh) for s in sessions] == [(1, "AA11", 18.0), (2, "BB22", 4.0)]


def test_sessions_have_no_billed_energy_without_ocpp_records():
    records = [r for r in small_day() if r["kind"] != "ocpp"]
    assert [s.billed_wh for s in timeline_from_records(records).sessions] == [None, None]


def test_a_snapshot_without_plugged_counts_any_state_but_a_as_plugged_in():
    old = [snapshot(t, "x", {k: v for k, v in gun(1, energy_wh=e, plugged=p).items() if k != "plugged"})
           for t, e, p in [(0, 0, False), (1000, 0, True), (2000, 3, False)]]
    assert [(s.start_s, s.energy_wh) for s in timeline_from_records(old).sessions] == [(1.0, 3.0)]


def test_step_marks_are_where_the_caption_changes_numbered_in_order():
    steps = timeline_from_records(small_day()).steps
    assert [(s.t_s, s.label, s.caption) for s in steps] == [(1.0, "0", "the charger boots"),
                                                           (2.0, "1", "step 1/3: car 1"),
                                                           (3.0, "2", "step 2/3: car 2"),
                                                           (5.0, "3", "step 3/3: car 1 leaves")]


def test_a_log_without_snapshots_is_refused():
    with pytest.raises(LogError, match="no snapshot records"):
        timeline_from_records([r for r in small_day() if r["kind"] != "snapshot"])


def test_a_snapshot_gun_without_amps_is_refused_with_its_line():
    broken = snapshot(1000, "x", {"gun": 1, "power_w": 0.0, "energy_wh": 0.0})
    broken["_line"] = 7
    with pytest.raises(LogError, match="line 7: each gun of a snapshot needs the numbers gun, amps"):
        timeline_from_records([broken])


# ---- the site limit -----------------------------------------------------------------------------
def test_the_limit_comes_from_the_logs_meta_record():
    limit = site_limit({"kind": "meta", "board": "elsewhere", "site_limit_a": 25, "phases": 1})
    assert (limit.limit_a, limit.phases, limit.limit_w) == (25.0, 1, 25 * 230.0)


def test_limit_a_then_board_outrank_the_meta_record():
    meta = {"kind": "meta", "board": "x", "site_limit_a": 25, "phases": 1}
    assert site_limit(meta, board="sim-ac2").limit_a == SIM_AC2["site_limit_a"]
    assert site_limit(meta, board="sim-ac2").phases == SIM_AC2["phases"]
    assert site_limit(meta, board="sim-ac2", limit_a=16).limit_a == 16.0


def test_a_meta_record_naming_only_its_board_takes_the_board_files_limit():
    limit = site_limit({"kind": "meta", "board": "sim-ac2"})
    assert (limit.limit_a, limit.phases) == (SIM_AC2["site_limit_a"], SIM_AC2["phases"])


def test_without_meta_or_options_there_is_no_limit_and_with_only_amps_three_phases_are_assumed():
    assert site_limit({}) is None
    limit = site_limit({}, limit_a=32)
    assert (limit.phases, limit.phases_assumed) == (3, True)


def test_an_unknown_board_or_a_limit_that_is_not_positive_is_a_usage_error():
    with pytest.raises(UsageError, match="no board file .*nope.json; known boards: .*sim-ac2"):
        site_limit({}, board="nope")
    with pytest.raises(UsageError, match="--limit-a must be a positive number"):
        site_limit({}, limit_a=0)


# ---- files --------------------------------------------------------------------------------------
def test_the_report_is_a_png_next_to_the_log(tmp_path):
    out = write_report(write_log(tmp_path / "session.jsonl", small_day()))
    assert out == tmp_path / "report.png"
    assert png_size(out) == (1200, 1100)
    assert out.stat().st_size > 20_000  # drawn, not an empty canvas


def test_a_log_line_that_is_not_json_is_named_by_its_number(tmp_path):
    log = tmp_path / "session.jsonl"
    log.write_text(json.dumps(small_day()[1]) + "\n\n" + '{"kind": "snapshot", "t_ms": 1\n')
    with pytest.raises(LogError, match=r"session.jsonl line 3: not JSON"):
        read_log(log)


# ---- the command line ---------------------------------------------------------------------------
def test_cli_writes_the_png_where_asked_and_prints_its_path(tmp_path):
    log = write_log(tmp_path / "session.jsonl", small_day())
    done = evsectl(log, "-o", tmp_path / "pictures" / "day.png", "--limit-a", "32")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "pictures" / "day.png")
    assert png_size(tmp_path / "pictures" / "day.png") == (1200, 1100)


@pytest.mark.parametrize("content, code, message", [
    (None, 2, "no log file {log}; `make run` writes run-out/BOARD/session.jsonl"),
    ('{"kind": "meta"}\nnot json at all\n', 1, "{log} line 2: not JSON (Expecting value at column 1): not json at all"),
    ('{"kind": "meta"}\n[1, 2]\n', 1, '{log} line 2: each line must be a JSON object with a "kind"'),
    (b"\xff\xfe\n", 1, "{log} line 1: not UTF-8 text"),
    ('{"kind": "meta", "board": "sim-ac2"}\n{"kind": "event", "t_ms": 1, "gun": 1, "what": "plug"}\n', 1,
     "{log} has no snapshot records"),
    ("", 1, "{log} has no snapshot records"),
])
def test_cli_refuses_a_log_it_cannot_read_with_a_message_and_no_traceback(tmp_path, content, code, message):
    log = tmp_path / "session.jsonl"
    if isinstance(content, bytes):
        log.write_bytes(content)
    elif content is not None:
        log.write_text(content)
    done = evsectl(log)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("evsectl report: " + message.format(log=log)), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "report.png").exists()


@pytest.mark.parametrize("options, message", [
    (["--board", "nope"], "no board file"),
    (["--limit-a", "-3"], "--limit-a must be a positive number of amps per phase, like 32, not -3"),
    (["-o", "{tmp}/session.jsonl/report.png"], "cannot write"),
])
def test_cli_refuses_an_option_it_cannot_use_with_exit_2(tmp_path, options, message):
    log = write_log(tmp_path / "session.jsonl", small_day())
    done = evsectl(log, *(o.format(tmp=tmp_path) for o in options))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_central_systems_cap_is_read_with_when_it_came_and_went_and_drawn(tmp_path):
    records = small_day()
    records.insert(4, {"kind": "cap", "t_ms": 2500, "limit_a": 24})
    records.insert(7, {"kind": "cap", "t_ms": 3800, "limit_a": None})
    timeline = timeline_from_records(records)
    assert timeline.caps == [(2.5, 24.0), (3.8, None)]
    out = write_report(write_log(tmp_path / "day.jsonl", records), tmp_path / "day.png")
    assert png_size(out)[0] > 1000
