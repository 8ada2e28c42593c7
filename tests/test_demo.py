"""`evsectl demo` and `evsectl status`, and the serial-console client, against the virtual board."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.console import Console
from host_tools.rig import Rig
from host_tools.sim.supervisor import VirtualBoard

REPO = Path(__file__).resolve().parents[1]
EVSECTL = str(Path(sys.executable).parent / "evsectl")
SITE_LIMIT_A = json.loads((REPO / "boards" / "sim-ac2.json").read_text())["site_limit_a"]
BOOT_S = 1.5
# The demo day runs in real time (about 50 s): one worker runs it once for every test that reads it.
pytestmark = [pytest.mark.xdist_group("demo"), pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory):
    """One day of the demo at speed 4, over security profile 3 (the plain day is the same day
    without its first step): (finished process, log records)."""
    log = tmp_path_factory.mktemp("demo") / "run-out" / "session.jsonl"
    done = subprocess.run([EVSECTL, "demo", "--speed", "4", "--security-profile", "3", "--log", str(log)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, records


@pytest.fixture(scope="module")
def board():
    vb = VirtualBoard("sim-ac2").start()
    time.sleep(BOOT_S)
    yield vb
    vb.stop()


def test_demo_day_ends_with_a_summary_of_energy_on_both_guns(demo_day):
    done, _ = demo_day
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    for gun in (1, 2):
        delivered = re.search(rf"gun {gun}: \d+ sessions?, ([\d.]+) kWh delivered", done.stdout)
        assert delivered, done.stdout[-2000:]
        assert float(delivered.group(1)) > 0
    assert re.search(r"fault: gun 2 RCD at \d+:\d\d, cleared at", done.stdout)


def test_demo_day_is_billed_by_the_central_system(demo_day):
    """Both sessions reach the central system as OCPP transactions, with their cards, their energy
    and how they ended; every frame the charger sent passed the schema check."""
    done, records = demo_day
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    billed = re.findall(r"OCPP transaction \d+: connector (\d), card (\w+), ([\d.]+) kWh, stopped: (\w+)", done.stdout)
    assert [(c, card, reason) for c, card, _, reason in billed] == [("1", "AA11", "EVDisconnected"),
                                                                    ("2", "BB22", "Remote")], done.stdout[-2000:]
    assert all(float(kwh) > 0 for _, _, kwh, _ in billed)
    assert "OCPP frames from the charger: all valid" in done.stdout
    # The link: SignCertificate, CertificateSigned, then a connection with the charger's certificate.
    assert "OCPP link: security profile 3 (wss://, the central system checked, the charger's certificate " \
           "'sim-ac2' shown)" in done.stdout, done.stdout[-2000:]
    ocpp = [r for r in records if r["kind"] == "ocpp"]
    assert any("RemoteStopTransaction" in r["line"] for r in ocpp)
    assert all(r["valid"] for r in ocpp)


def test_demo_log_shows_both_guns_sharing_the_site_limit(demo_day):
    _, records = demo_day
    snapshots = [r for r in records if r["kind"] == "snapshot"]
    assert snapshots
    both_charging = [s for s in snapshots if all(g["amps"] > 0 for g in s["guns"])]
    assert both_charging, "no snapshot with both guns drawing current"
    site_peak_a = max(sum(g["amps"] for g in s["guns"]) for s in snapshots)
    assert site_peak_a <= SITE_LIMIT_A


def test_demo_log_shows_gun_2_recovering_from_an_rcd_trip(demo_day):
    _, records = demo_day
    events = [r for r in records if r["kind"] == "event" and r["gun"] == 2 and r["what"] == "rcd"]
    tripped_ms = next(e["t_ms"] for e in events if e["value"] == "tripped")
    reset_ms = next(e["t_ms"] for e in events if e["value"] == "reset" and e["t_ms"] > tripped_ms)
    snapshots = [r for r in records if r["kind"] == "snapshot"]
    assert any(s["t_ms"] > reset_ms and s["guns"][1]["amps"] > 0 for s in snapshots), "gun 2 never charged again"


def test_status_names_a_missing_port():
    done = subprocess.run([EVSECTL, "status", "--port", "/nonexistent"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "no serial port at /nonexistent" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_names_a_port_that_does_not_answer():
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        done = subprocess.run([EVSECTL, "status", "--port", port], capture_output=True, text=True, timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 1
    assert f"{port} does not answer `status --json`" in done.stderr


def test_console_reads_the_status_of_a_booted_board(board):
    console = Console(board.serial_path)
    try:
        status = console.status_json()
    finally:
        console.close()
    assert status["board"] == "sim-ac2"
    assert [g["state"] for g in status["guns"]] == ["A", "A"]


def test_console_hands_gun_events_to_on_event_not_to_the_answer(board):
    events: list[str] = []
    console = Console(board.serial_path, on_event=events.append)
    rig = Rig(board.control_addr)
    try:
        rig.plug(gun=1)
        deadline = time.monotonic() + 5
        while not any(e.startswith("gun 1: A -> B1") for e in events) and time.monotonic() < deadline:
            console.poll()
            time.sleep(0.05)
        answer = console.command("fault clear 1")
    finally:
        rig.unplug(gun=1)
        rig.close()
        console.close()
    assert any(e.startswith("gun 1: A -> B1") for e in events), events
    assert answer == ["gun 1: no fault"]


def test_status_prints_the_gun_table_of_a_running_board(board):
    done = subprocess.run([EVSECTL, "status", "--port", board.serial_path], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert "sim-ac2" in done.stdout and "site limit 40 A" in done.stdout
    as_json = subprocess.run([EVSECTL, "status", "--port", board.serial_path, "--json"], capture_output=True,
                             text=True, timeout=30)
    assert [g["gun"] for g in json.loads(as_json.stdout)["guns"]] == [1, 2]


def test_without_a_terminal_the_demo_prints_the_guns_only_when_they_change(demo_day):
    """A CI log is read, not watched: no line repeats the one before it, each shows the phases
    each gun draws on and the site's three phases, and the pace of --speed is explained."""
    done, _ = demo_day
    lines = [re.sub(r"^\d+:\d\d  ", "", line) for line in done.stdout.splitlines() if re.match(r"\d+:\d\d  gun 1 ", line)]
    assert len(lines) > 3 and all(a != b for a, b in zip(lines, lines[1:])), lines
    assert any(re.search(r"gun \d \S+ +offer +\d+ A drawn +\d+ A L1 L2 L3", line) for line in lines), lines
    assert all(re.search(r"\| site L1 \d+ L2 \d+ L3 \d+ A of 40 A$", line) for line in lines), lines
    assert "(--speed 4: the script's pauses 4 x shorter; the firmware's own timing is real)" in done.stdout


def test_the_demo_keeps_one_output_folder_per_board():
    from host_tools.demo import default_log
    assert default_log("sim-ac8") == Path("run-out/sim-ac8/session.jsonl")
    assert default_log("boards/sim-dc6.json") == Path("run-out/sim-dc6/session.jsonl")
    assert default_log("sim-ac2").parent != default_log("sim-ac8").parent


def test_the_live_view_fits_an_80_by_24_terminal_with_every_part_in_it():
    import io
    from types import SimpleNamespace

    from rich.console import Console as Terminal

    from host_tools.demo import live_view
    gun = {"gun": 1, "state": "C2", "fault": None, "duty": 53.3, "offered_a": 32.0, "amps": 31.9,
           "phase_amps": [31.9, 31.9, 31.9], "power_w": 22000.0, "energy_wh": 1200.0}
    day = SimpleNamespace(guns=[gun, dict(gun, gun=2, phase_amps=[0, 12.6, 0])], site_limit_a=40,
                          caption="two cars share the site", elapsed_s=lambda: 75.0,
                          vb=SimpleNamespace(board={"name": "sim-ac2", "kind": "ac"}, serial_path="/dev/pts/3"),
                          console_lines=[f"console line {i}" for i in range(20)],
                          ocpp_lines=[f"charger -> CSMS: MeterValues {i}" for i in range(20)],
                          csms_ws="ws://127.0.0.1:9000/ocpp")
    out = io.StringIO()
    Terminal(width=80, height=24, file=out, color_system=None).print(live_view(day, 24))
    lines = out.getvalue().splitlines()
    assert len(lines) <= 24, "\n".join(lines)
    text = out.getvalue()
    assert "console /dev/pts/3" in text and "console line 19" in text and "MeterValues 19" in text
    assert "L2" in text and "L1 12.6 A" not in text and "site L1 31.9 A L2 44.5 A L3 31.9 A" in text
