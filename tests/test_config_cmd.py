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
    (("set", "site_limit_a", "5000"), "config: site_limit_a = 5000 is out of range: allowed 0..2000 A"),
    (("get", "fuse"), "config: unknown config key 'fuse'"),
])
def test_a_refused_setting_is_an_error_and_changes_nothing(port, args, message):
    before = evsectl("--port", port, "export").stdout
    done = evsectl("--port", port, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert evsectl("--port", port, "export").stdout == before


def test_an_import_stops_at_the_first_refusal_and_names_what_was_set(port, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "depot", "site_limit_a": 99999, "gun_max_a": 16}))
    done = evsectl("--port", port, "import", str(bad))
    assert done.returncode == 1
    assert "site_limit_a = 99999 is out of range" in done.stderr and "already set: name" in done.stderr
    assert evsectl("--port", port, "get", "gun_max_a").stdout.strip() == "gun_max_a = 80"


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
