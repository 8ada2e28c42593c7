"""The technician's command line (evse.cli) against the application with a fake board: every
command, its errors, and the refusals while a session runs. Typed lines never raise."""
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from evse import cli, config
from fake_rig import FakeHal

BOARDS = Path(__file__).resolve().parents[1] / "boards"


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "ticks_ms", lambda: 0, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: a - b, raising=False)
    from evse.app import App
    board = json.loads((BOARDS / "sim-ac2.json").read_text())
    a = App(board, config.Config(board, str(tmp_path)), FakeHal(interlock=True), str(tmp_path))  # sim-ac2 has one
    a.selftests = []
    a.reboots = []
    a.start_selftest = lambda: a.selftests.append(True)
    a.later_reboot = lambda: a.reboots.append(True)
    return a


def say(app, line):
    return cli.handle(app, line)


def charging(app, n=1):
    g = app.guns[n - 1]
    g.state, g.contactor = "C2", True
    return g


def test_help_lists_every_command_and_help_config_every_key_with_its_range(app):
    lines = say(app, "help")
    assert len(lines) == len(cli.COMMANDS)
    assert all(any(line.startswith(name) for line in lines) for name, _, _ in cli.COMMANDS)
    keys = say(app, "help config")
    assert any(line.startswith("site_limit_a") and "0..2000 A" in line for line in keys)
    assert any(line.startswith("sharing_policy") and "fair|fifo|priority" in line for line in keys)
    assert say(app, "help stop") == ["stop <gun>: end the gun's session (OCPP reason Local)"]


@pytest.mark.parametrize("typed, answer", [
    ("stauts", "unknown command 'stauts'; did you mean 'status'?"),
    ("confg list", "unknown command 'confg'; did you mean 'config'?"),
    ("xyzzy", "unknown command 'xyzzy'; 'help' lists the commands"),
    ("status --yaml", "status: unknown option '--yaml'"),
    ("start 9", "start: gun must be 1..2, not '9'"),
    ("stop x", "stop: gun must be 1..2, not 'x'"),
    ("stop", "stop: use: stop <gun>"),
    ("fault", "fault: use: fault list | fault clear <gun|all>"),
    ("fault clr 1", "fault: did you mean 'fault clear 1'? fault: use: fault list | fault clear <gun|all>"),
    ("log 0", "log: use: log [n] with n 1..200"),
    ("log many", "log: use: log [n] with n 1..200"),
    ("config set site_limit_a 5000", "config: site_limit_a = 5000 is out of range: allowed 0..2000 A"),
    ("config set site_limit_a lots", "config: site_limit_a must be a whole number, not 'lots'"),
    ("config get fuse", "config: unknown config key 'fuse'"),
    ("config reset fuse", "config: unknown config key 'fuse'"),
    ("config", "config: use: config get <key> | set <key> <value> | check <key> <value> | list | reset <key|all>"),
    ("ocpp now", "ocpp: use: ocpp"),
    ("reboot now", "reboot: use: reboot"),
])
def test_a_wrong_command_gets_a_helpful_answer_and_changes_nothing(app, typed, answer):
    before = dict(app.cfg.values)
    out = say(app, typed)
    assert len(out) == 1 and out[0].startswith(answer), out
    assert app.cfg.values == before and not app.reboots and not app.selftests


def test_config_set_get_list_and_reset_round_trip(app):
    assert say(app, "config set site_limit_a 25") == ["site_limit_a = 25"]
    assert say(app, "config get site_limit_a") == ["site_limit_a = 25"]
    assert "site_limit_a = 25" in say(app, "config list")
    assert config.Config(app.board, app.root).get("site_limit_a") == 25  # on flash
    assert say(app, "config reset site_limit_a") == ["site_limit_a = 40 (default)"]
    assert say(app, "config set sharing_policy fifo") == ["sharing_policy = fifo"]
    assert say(app, "config reset all") == ["sharing_policy = fair (default)"]


def test_config_check_validates_like_set_and_stores_nothing_and_names_may_have_spaces(app):
    assert say(app, "config check site_limit_a 25") == ["site_limit_a = 25 is accepted"]
    assert say(app, "config check site_limit_a 99999") == ["config: site_limit_a = 99999 is out of range: allowed 0..2000 A"]
    assert say(app, "config check priority_guns 1,9") == ["config: priority_guns: this board has guns 1..2, not 9"]
    assert say(app, "config set priority_guns 2,9") == ["config: priority_guns: this board has guns 1..2, not 9"]
    assert say(app, "config set priority_guns 2") == ["priority_guns = 2"]
    assert say(app, "config set name depot east") == ["name = depot east"]
    assert config.Config(app.board, app.root).values == {"priority_guns": "2", "name": "depot east"}


def test_a_setting_that_alters_a_running_session_is_refused_without_yes(app):
    charging(app, 2)
    assert say(app, "config set site_limit_a 20") == [
        "config set site_limit_a: gun 2 has a session running; end it first, or add --yes to do it now"]
    assert app.cfg.get("site_limit_a") == 40
    assert say(app, "config set name depot") == ["name = depot"]         # does not alter the session
    assert say(app, "config set site_limit_a 20 --yes") == ["site_limit_a = 20"]
    assert say(app, "reboot").pop().startswith("reboot: gun 2 has a session running")
    assert not app.reboots
    assert say(app, "reboot --yes") == ["reboot: restarting"] and app.reboots


def test_stop_and_start_a_gun_without_ocpp(app):
    assert say(app, "stop 1") == ["gun 1: stopped until 'start 1'"]
    assert not app.guns[0].enabled
    assert say(app, "stop 1")[0].startswith("stop: gun 1 is already stopped")
    assert say(app, "start 1 AA11")[0].startswith("start: this charger runs without OCPP")
    assert say(app, "start 1") == ["gun 1: started; it charges when the EV asks"]
    assert app.guns[0].enabled
    assert say(app, "start 1")[0].startswith("start: gun 1 is not stopped")


def test_fault_list_and_clear(app):
    assert say(app, "fault list") == ["no faults"]
    g = app.guns[1]
    g.fault, g.fault_since_ms = "RCD", 0
    app.now_ms = 12000
    assert say(app, "fault list") == ["gun 2: RCD since 12 s; tried again in 48 s, or 'fault clear 2'"]
    assert say(app, "fault clear 2") == ["gun 2: RCD cleared"]
    assert say(app, "fault list") == ["no faults"]
    for code, how in (("WELD", "stays until a technician checks the contactor and its contacts are free"),
                      ("RCD_TEST", "clears when the EV is unplugged"), ("OVERTEMP", "clears below 65 C (now 25.0 C)"),
                      ("METER", "clears when the meter answers again (meter shows it)")):
        g.fault, g.fault_since_ms = code, 0
        assert say(app, "fault list") == ["gun 2: %s since 12 s; %s, or 'fault clear 2'" % (code, how)]


def test_echo_is_off_until_turned_on_and_a_wrong_word_changes_nothing(app):
    assert say(app, "echo") == ["echo off"] and not app.console_echo
    assert say(app, "echo on") == ["echo on"] and app.console_echo
    assert say(app, "echo loud") == ["echo: use: echo [on|off]"] and app.console_echo
    assert say(app, "echo off") == ["echo off"] and not app.console_echo


def test_a_command_typed_in_capitals_is_the_command(app):
    assert say(app, "STATUS") == say(app, "status")


def test_guns_meter_log_ocpp_and_status(app):
    charging(app, 1).current_a = 16.0
    lines = say(app, "guns")
    assert lines[1].startswith("1   C2") and "16.0" in lines[1]
    assert say(app, "meter")[0].startswith("gun 1: sdm630 at address 1, answers, 0 polls failed; no reading yet")
    app.note("gun 1: fault RCD")
    assert say(app, "log 1")[0].endswith("gun 1: fault RCD")
    assert say(app, "ocpp")[0].startswith("ocpp: off")
    assert json.loads(say(app, "status --json")[0])["guns"][0]["state"] == "C2"


def test_selftest_refuses_while_an_ev_is_plugged_and_starts_otherwise(app):
    app.guns[0].state = "B1"
    assert say(app, "selftest")[0].startswith("selftest: gun 1 has an EV (state B1); unplug it first")
    assert not app.selftests
    app.guns[0].state = "A"
    assert say(app, "selftest") == ["selftest: running; the results follow"] and app.selftests


def test_calibrate_fits_the_pilot_adc_and_saves_it_to_the_board_file(app, tmp_path):
    board = tmp_path / "board.json"
    board.write_text((BOARDS / "sim-ac2.json").read_text())
    hal = app.hal
    lines = say(app, "calibrate 1")
    assert lines[0] == "calibrate: gun 1 pilot ADC reads 3146 mV at +12000 mV and 178 mV at -12000 mV"
    assert lines[1].startswith("calibrate: pilot_gain 0.1237, pilot_offset_mv 1662")
    assert "not saved" in lines[2] and "adc" not in json.loads(board.read_text())
    assert [c[2] for c in hal.calls if c[1] == "pilot"][-3:] == [1000, 0, 1000]   # back at +12 V
    # A meter's reading of the generator's real levels counts instead of the nominal +-12 V.
    assert say(app, "calibrate 1 11800 -12200 save")[-1] == "calibrate: saved to %s/board.json; 'reboot' to use them" % tmp_path
    saved = json.loads(board.read_text())
    assert saved["adc"] == {"pilot_gain": 0.1237, "pilot_offset_mv": 1687} and saved["guns"] == json.loads(
        (BOARDS / "sim-ac2.json").read_text())["guns"]


@pytest.mark.parametrize("line, answer", [
    ("calibrate", "calibrate: use: calibrate <gun> [<high_mv> <low_mv>] [save]"),
    ("calibrate 3", "calibrate: gun must be 1..2, not '3'"),
    ("calibrate 1 12000", "calibrate: use: calibrate <gun> [<high_mv> <low_mv>] [save]"),
    ("calibrate 1 12 -12", "calibrate: the levels must be 9000..15000 and -15000..-9000 mV, not 12 -12"),
    ("calibrate 1 high low", "calibrate: the levels are whole mV as a meter reads them, e.g. 11950 -12030"),
])
def test_calibrate_refuses_bad_input_and_drives_nothing(app, line, answer):
    before = len(app.hal.calls)
    assert say(app, line) == [answer]
    assert not [c for c in app.hal.calls[before:] if c[1] == "pilot"]


def test_calibrate_refuses_a_plugged_gun_and_a_dead_front_end(app, tmp_path):
    app.guns[0].state = "B1"
    assert say(app, "calibrate 1") == ["calibrate: gun 1 must be unplugged and no session running (it is in state B1)"]
    app.guns[0].state = "A"
    app.hal.adc_gain = 0.001   # the ADC pin sees almost nothing of the pilot
    assert say(app, "calibrate 1 save")[-1].startswith("calibrate: the ADC moved only 24 mV between the two levels")
    assert not (tmp_path / "board.json").exists()


# One app for all the lines: they act on it in turn, as a technician's session would.
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["status", "config", "set", "get", "reset", "all", "site_limit_a", "name", "1", "2",
                                 "9", "-1", "x", "--yes", "--json", "start", "stop", "fault", "clear", "list", "log",
                                 "meter", "guns", "help", "ocpp", "selftest", "reboot", "AA11", "é", "\x00",
                                 "calibrate", "save", "12000", "-12000"]),
                max_size=5))
def test_any_line_gets_lines_back_and_never_an_internal_error(app, words):
    out = say(app, " ".join(words))
    assert isinstance(out, list) and all(isinstance(line, str) for line in out)
    assert not any("internal error" in line for line in out), out


def test_the_cli_reference_names_every_command_and_every_setting():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for name, _, _ in cli.COMMANDS:
        assert f"| `{name}" in text, name
    for key in config.KEYS:
        assert f"| `{key}` |" in text, key
    assert set(cli.CONFIG_HELP) == set(config.KEYS)   # `help config` says what each one is for
    for key in cli.SESSION_KEYS:
        assert f"| `{key}` |" in text and "session |" in text.split(f"| `{key}` |")[1].split("\n")[0], key
