"""evsectl's command line as users type it: options before or after the action, short options,
the port from the environment, the help for a bare `evsectl`, the version and the board list."""
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import cli
from host_tools.sim.supervisor import BOARDS_DIR

EVSECTL = str(Path(sys.executable).parent / "evsectl")


@pytest.mark.parametrize("argv", [
    ["config", "--port", "/dev/ttyX", "--yes", "set", "site_limit_a", "20"],
    ["config", "set", "site_limit_a", "20", "--port", "/dev/ttyX", "--yes"],
    ["config", "-p", "/dev/ttyX", "set", "site_limit_a", "20", "--yes"],
    ["config", "--yes", "set", "--port", "/dev/ttyX", "site_limit_a", "20"],
])
def test_port_and_yes_go_anywhere_on_the_config_line(argv):
    args = cli.build_parser().parse_args(argv)
    assert (args.port, args.yes, args.action, args.key, args.value) == ("/dev/ttyX", True, "set", "site_limit_a", "20")


def test_without_the_options_the_port_comes_from_the_environment_and_yes_is_off(monkeypatch):
    monkeypatch.setenv(cli.PORT_ENV, "/dev/ttyENV")
    args = cli.build_parser().parse_args(["config", "get", "site_limit_a"])
    assert (args.port, args.yes) == ("/dev/ttyENV", False)
    assert cli.build_parser().parse_args(["status", "-p", "/dev/ttyA"]).port == "/dev/ttyA"   # the option wins
    monkeypatch.delenv(cli.PORT_ENV)
    assert cli.build_parser().parse_args(["logs"]).port is None


def test_short_options_for_the_board():
    assert cli.build_parser().parse_args(["flash", "-b", "rp2040-pico", "-p", "/dev/ttyACM0"]).board == "rp2040-pico"
    assert cli.build_parser().parse_args(["demo", "-b", "sim-ac8"]).board == "sim-ac8"


def test_bare_evsectl_prints_the_help_and_version_prints_the_version():
    bare = subprocess.run([EVSECTL], capture_output=True, text=True, timeout=30)
    assert bare.returncode == 0 and "usage: evsectl" in bare.stdout and "boards" in bare.stdout
    version = subprocess.run([EVSECTL, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("evsectl 0.")


def test_every_command_has_a_description():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert all(p.description for p in sub.choices.values()), [n for n, p in sub.choices.items() if not p.description]


def test_boards_lists_every_board_file_with_its_mcu_heap_and_install():
    out = subprocess.run([EVSECTL, "boards"], capture_output=True, text=True, timeout=30)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0].split() == ["board", "mcu", "guns", "heap", "install"]
    boards, sites = lines[1:lines.index("")], lines[lines.index("") + 1:]
    assert sorted(line.split()[0] for line in boards) == sorted(p.stem for p in BOARDS_DIR.glob("*.json"))
    assert sites[0].split() == ["site", "controllers", "guns", "connection"]
    assert sorted(line.split()[0] for line in sites[1:]) == sorted(p.stem for p in (BOARDS_DIR / "sites").glob("*.json"))
    pico = next(line for line in lines if line.startswith("rp2040-pico "))
    assert pico.split() == ["rp2040-pico", "rp2", "2", "AC", "234", "KiB", "mpy"]


@pytest.mark.parametrize("n", ["0", "500", "many"])
def test_logs_refuses_a_line_count_the_firmware_would_refuse_in_its_own_words(n, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["logs", "-n", n])
    assert e.value.code == 2 and f"a number of lines 1..200, not '{n}'" in capsys.readouterr().err
