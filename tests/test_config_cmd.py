"""`evsectl config` against the virtual board: a round trip through export and import, and the
error paths, each with a clear message and nothing changed."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.sim.supervisor import VirtualBoard

EVSECTL = str(Path(sys.executable).parent / "evsectl")


@pytest.fixture(scope="module")
def port():
    vb = VirtualBoard("sim-ac2").start()
    time.sleep(1.5)
    yield vb.serial_path
    vb.stop()


def evsectl(*args):
    return subprocess.run([EVSECTL, "config", *args], capture_output=True, text=True, timeout=60)


def test_set_get_export_and_import_round_trip(port, tmp_path):
    assert evsectl("--port", port, "set", "site_limit_a", "25").stdout.strip() == "site_limit_a = 25"
    assert evsectl("--port", port, "get", "site_limit_a").stdout.strip() == "site_limit_a = 25"
    saved = tmp_path / "depot.json"
    assert evsectl("--port", port, "export", str(saved)).returncode == 0
    exported = json.loads(saved.read_text())
    assert exported["site_limit_a"] == 25 and exported["sharing_policy"] == "fair"
    assert evsectl("--port", port, "set", "site_limit_a", "30").returncode == 0
    imported = evsectl("--port", port, "import", str(saved))
    assert imported.returncode == 0 and imported.stdout.startswith("set ")
    assert evsectl("--port", port, "get", "site_limit_a").stdout.strip() == "site_limit_a = 25"


@pytest.mark.parametrize("args, message", [
    (("set", "site_limit_a", "5000"), "evsectl config: site_limit_a = 5000 is out of range: allowed 0..2000 A"),
    (("get", "fuse"), "evsectl config: unknown config key 'fuse'"),
    (("set", "priority_guns", "1,9"), "evsectl config: priority_guns: this board has guns 1..2, not 9"),
])
def test_a_refused_setting_is_an_error_and_changes_nothing(port, args, message):
    before = evsectl("--port", port, "export").stdout
    done = evsectl("--port", port, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert "config: config:" not in done.stderr
    assert evsectl("--port", port, "export").stdout == before


def test_an_import_checks_the_whole_file_first_names_every_refusal_and_sets_nothing(port, tmp_path):
    before = evsectl("--port", port, "export").stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "depot", "site_limit_a": 99999, "gun_max_a": 16, "fuse": 3,
                               "priority_guns": "1,9"}))
    done = evsectl("--port", port, "import", str(bad))
    assert done.returncode == 1 and "nothing was set" in done.stderr
    for refusal in ("site_limit_a = 99999 is out of range", "unknown config key 'fuse'",
                    "this board has guns 1..2, not 9"):
        assert refusal in done.stderr, done.stderr
    assert evsectl("--port", port, "export").stdout == before


def test_an_export_for_the_next_board_leaves_the_chargers_identity_out_unless_asked(port, tmp_path):
    assert evsectl("--port", port, "set", "ocpp_id", "depot-07").returncode == 0
    template = json.loads(evsectl("--port", port, "export").stdout)
    assert not {"name", "ocpp_id", "ocpp_url"} & set(template) and "site_limit_a" in template
    backup = json.loads(evsectl("--port", port, "export", "--identity").stdout)
    assert backup["ocpp_id"] == "depot-07"
    assert evsectl("--port", port, "set", "ocpp_id", "sim-ac2").returncode == 0


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"), ("[1, 2]", "must hold one JSON object")])
def test_a_file_that_is_not_an_export_is_refused(port, tmp_path, content, message):
    f = tmp_path / "x.json"
    f.write_text(content)
    done = evsectl("--port", port, "import", str(f))
    assert done.returncode == 1 and message in done.stderr


def test_no_port_is_a_clear_error():
    done = evsectl("--port", "/nonexistent", "get", "name")
    assert done.returncode == 1 and "no serial port at /nonexistent" in done.stderr


def test_the_port_and_yes_also_work_after_the_action(port):
    done = evsectl("set", "site_limit_a", "26", "--port", port, "--yes")
    assert done.returncode == 0 and done.stdout.strip() == "site_limit_a = 26", done.stdout + done.stderr
    assert evsectl("get", "site_limit_a", "-p", port).stdout.strip() == "site_limit_a = 26"


class FakeConsole:
    """A board that passes every check but refuses to set gun_max_a (a session began between)."""
    port = "fake"

    def __init__(self):
        self.values = {"name": "sim-ac2", "site_limit_a": "40", "gun_max_a": "80"}

    def command(self, line):
        words = line.split()
        if words[:2] == ["config", "list"]:
            return [f"{k} = {v}" for k, v in self.values.items()]
        if words[:2] == ["config", "check"]:
            return [f"{words[2]} = {words[3]} is accepted"]
        if words[:2] == ["config", "set"]:
            if words[2] == "gun_max_a" and "--yes" not in words:
                return ["config set gun_max_a: gun 1 has a session running; end it first, or add --yes to do it now"]
            self.values[words[2]] = words[3]
            return [f"{words[2]} = {words[3]}"]
        raise AssertionError(line)


def test_an_import_whose_set_fails_after_the_checks_puts_back_what_it_had_set(tmp_path):
    from host_tools.config_cmd import ConfigCommandError, import_file
    f = tmp_path / "site.json"
    f.write_text(json.dumps({"site_limit_a": 25, "name": "depot", "gun_max_a": 16}))
    console = FakeConsole()
    with pytest.raises(ConfigCommandError, match="2 key.s. set before it are back as they were"):
        import_file(console, str(f), "")
    assert console.values == {"name": "sim-ac2", "site_limit_a": "40", "gun_max_a": "80"}


def test_an_import_whose_rollback_fails_too_names_the_first_error_and_what_stayed(tmp_path):
    from host_tools.config_cmd import ConfigCommandError, import_file
    f = tmp_path / "site.json"
    f.write_text(json.dumps({"site_limit_a": 25, "name": "depot", "gun_max_a": 16}))
    console = FakeConsole()
    setting = console.command

    def link_lost_after_the_refusal(line):
        if line.startswith("config set name sim-ac2"):
            return []   # no answer: the board went away
        return setting(line)
    console.command = link_lost_after_the_refusal
    with pytest.raises(ConfigCommandError) as e:
        import_file(console, str(f), "")
    assert str(e.value).startswith("config set gun_max_a: gun 1 has a session running"), e.value
    assert "name (fake does not answer `config set name sim-ac2 --yes`" in str(e.value), e.value
    assert console.values["site_limit_a"] == "40"   # the one it could put back


def test_setting_an_empty_text_puts_the_default_back(port):
    assert evsectl("set", "priority_tags", "AA11", "-p", port).returncode == 0
    done = evsectl("set", "priority_tags", "", "-p", port)
    assert done.returncode == 0 and done.stdout.strip() == "priority_tags =  (default)", done.stdout + done.stderr
