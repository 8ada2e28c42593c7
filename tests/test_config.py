"""Board files and user config: validation names the key and the range; writes are atomic;
a bad value or a corrupt file changes nothing stored."""
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from evse import config, slices, store

BOARDS = Path(__file__).resolve().parents[1] / "boards"


@pytest.fixture
def root(tmp_path):
    board = json.loads((BOARDS / "sim-ac2.json").read_text())
    (tmp_path / "board.json").write_text(json.dumps(board))
    return str(tmp_path)


@pytest.mark.parametrize("path", sorted(BOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_every_board_file_is_valid(path):
    config.check_board(json.loads(path.read_text()))


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b.pop("guns"), "board file lacks 'guns'"),
    (lambda b: b.update(hal="avr"), "board 'hal' is 'avr'"),
    (lambda b: b["guns"][0].update(max_a=100), "guns[0].max_a must be 6..80 A"),
    (lambda b: b["pilot"].update(c_min_mv=8000), "pilot thresholds must fall from A to F"),
    (lambda b: b["derate"].update(restart_c=90), "restart_c must be below"),
    (lambda b: b["derate"].update(steps=[[60]]), "derate.steps[0] must be [celsius below stop_c, percent 0..100], not [60]"),
    (lambda b: b["derate"].update(steps="hot"), "derate.steps must be a list"),
    (lambda b: b["derate"].update(stop_c="80"), "derate.stop_c must be a temperature"),
    (lambda b: b.update(fault_retry_s=0), "board fault_retry_s must be 10..86400 s, not 0"),
    (lambda b: b.update(watchdog_ms=9000), "board watchdog_ms must be 1000..8000 ms, not 9000"),
    (lambda b: b.update(tick_ms=50), "board tick_ms must be 10..40 ms, not 50"),
    (lambda b: b.update(tick_ms=True), "board tick_ms must be 10..40 ms, not True"),
    (lambda b: b.update(interlock=False), "board tick_ms must be 10..20 ms on a board without a hardware interlock"),
    (lambda b: b["guns"][1].update(phases=2), "board guns[1].phases must be 1 or 3, not 2"),
    (lambda b: b["guns"][0].update(rotation="L1L3L2"), "board guns[0].rotation must be one of L1L2L3, L2L3L1, L3L1L2"),
])
def test_bad_board_files_get_an_error_naming_the_entry(mutate, message):
    board = json.loads((BOARDS / "sim-ac2.json").read_text())
    mutate(board)
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config.check_board(board)


def test_set_persists_and_survives_a_reload(root):
    cfg = config.Config(config.load_board(root), root)
    cfg.set("site_limit_a", 25)
    assert config.Config(config.load_board(root), root).get("site_limit_a") == 25


@pytest.mark.parametrize("key, value, message", [
    ("site_limit_a", 5000, "site_limit_a = 5000 is out of range: allowed 0..2000 A"),
    ("site_limit_a", "lots", "site_limit_a must be a whole number"),
    ("gun_max_a", 3, "gun_max_a = 3 is out of range: allowed 6..80 A"),
    ("fuse", 16, "unknown config key 'fuse'"),
    ("name", "", "name must be text of 1 to 32 characters"),
    ("sharing_policy", "greedy", "sharing_policy must be one of fair, fifo, priority, not 'greedy'"),
    ("priority_guns", "1;2", "priority_guns must be gun numbers separated by commas, like 1,3"),
])
def test_bad_values_are_refused_with_the_key_and_range_and_change_nothing(root, key, value, message):
    cfg = config.Config(config.load_board(root), root)
    cfg.set("site_limit_a", 30)
    before = Path(root, "config.json").read_bytes()
    with pytest.raises(config.ConfigError, match=message):
        cfg.set(key, value)
    assert Path(root, "config.json").read_bytes() == before
    assert cfg.get("site_limit_a") == 30


@given(st.text(max_size=12))
def test_typed_console_values_parse_or_get_a_clear_error(text):
    try:
        value = config.parse_value("site_limit_a", text)
    except config.ConfigError as e:
        assert "site_limit_a" in str(e)
    else:
        assert 0 <= value <= 2000


def test_a_corrupt_config_file_is_kept_aside_and_defaults_apply(root):
    Path(root, "config.json").write_text('{"site_limit_a": 2')
    cfg = config.Config(config.load_board(root), root)
    assert cfg.get("site_limit_a") == 40
    assert Path(root, "config.json.bad").read_text() == '{"site_limit_a": 2'


def test_an_out_of_range_stored_value_is_ignored_not_deleted(root):
    Path(root, "config.json").write_text('{"site_limit_a": 99999, "name": "depot"}')
    cfg = config.Config(config.load_board(root), root)
    assert cfg.get("site_limit_a") == 40 and cfg.get("name") == "depot"
    assert "99999" in Path(root, "config.json").read_text()


def test_write_is_atomic_a_crash_before_rename_leaves_the_old_file(root, monkeypatch):
    path = os.path.join(root, "config.json")
    store.write_json(path, {"site_limit_a": 20})

    def power_cut(src, dst):
        raise OSError("power cut")
    monkeypatch.setattr(os, "rename", power_cut)
    with pytest.raises(OSError):
        store.write_json(path, {"site_limit_a": 30})
    assert json.loads(Path(path).read_text()) == {"site_limit_a": 20}


def test_a_missing_board_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(config.ConfigError, match="copy your board's file from boards/ there"):
        config.load_board(str(tmp_path))


def test_a_board_file_that_is_not_json_says_so_and_stays(tmp_path):
    (tmp_path / "board.json").write_text('{"name": "x",')
    with pytest.raises(config.ConfigError, match="board.json does not parse as JSON"):
        config.load_board(str(tmp_path))
    assert (tmp_path / "board.json").read_text() == '{"name": "x",'


def test_a_write_in_steps_touches_no_file_before_its_second_step_and_leaves_none_when_given_up(root):
    path = os.path.join(root, "list.json")
    store.write_json(path, {"version": 1})
    steps = store.write_json_steps(path, {"version": 2, "entries": ["x" * 40] * 40}, chunk=256)
    next(steps)                                  # nothing yet: no file
    assert not os.path.exists(path + ".tmp")
    next(steps)                                  # the file created, nothing written
    next(steps)                                  # one chunk
    assert os.path.exists(path + ".tmp")
    steps.close()                                # the caller gave up (a task cancelled)
    assert not os.path.exists(path + ".tmp")
    assert json.loads(Path(path).read_text()) == {"version": 1}
    assert slices.run(store.write_json_steps(path, {"version": 3}, chunk=4)) is None
    assert json.loads(Path(path).read_text()) == {"version": 3}


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=20), lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
                     | st.dictionaries(st.text(max_size=8) | st.integers(-9, 99), inner, max_size=5), max_leaves=30)


@given(value=_JSON, chunk=st.integers(1, 600))
def test_a_write_in_steps_reads_back_as_the_value_it_was_given(tmp_path_factory, value, chunk):
    path = os.path.join(str(tmp_path_factory.mktemp("w")), "v.json")
    slices.run(store.write_json_steps(path, value, chunk))
    assert json.loads(Path(path).read_text()) == json.loads(json.dumps(value))   # as json.dumps writes it


def test_a_write_in_steps_never_makes_a_long_list_one_text(root, monkeypatch):
    # An update's list of files is some 8 KB as one text: the pieces are one entry each.
    files = [["evse/module_%02d.mpy" % k, 4000 + k, "%064x" % k] for k in range(60)]
    made = []
    real = store.json.dumps
    monkeypatch.setattr(store.json, "dumps", lambda v: made.append(real(v)) or made[-1])
    slices.run(store.write_json_steps(os.path.join(root, "fw.pending"), {"phase": "staging", "files": files}))
    assert json.loads(Path(root, "fw.pending").read_text())["files"] == files
    assert max(len(text) for text in made) < 120


@pytest.mark.parametrize("board, meter, says", [
    ("sim-ac2", {"model": "sdm120", "uart": 0, "address": 10}, "a sdm120 measures 1 phase.*has 3"),
    ("sim-ac2", {"model": "djsf1352", "uart": 0, "address": 10}, "measures 1 phase"),
    ("sim-ac2", {"model": "sdm630", "uart": 0, "address": 300}, "grid_meter address must be"),
    ("sim-dc2", {"model": "sdm630", "uart": 0, "address": 10}, "a grid meter is for AC boards"),
    ("sim-dc2", {"feed": "api"}, "a grid meter is for AC boards"),
    ("sim-ac2", {"feed": "mqtt"}, 'a fed grid meter is {"feed": "api"} and nothing else'),
    ("sim-ac2", {"feed": "api", "uart": 0}, 'a fed grid meter is {"feed": "api"} and nothing else'),
])
def test_a_grid_meter_that_cannot_see_the_whole_site_is_refused(board, meter, says):
    """A grid meter that misses a phase would count that phase's building load as nothing."""
    spec = json.loads((BOARDS / f"{board}.json").read_text())
    spec["grid_meter"] = meter
    with pytest.raises(config.ConfigError, match=says):
        config.check_board(spec)


def test_a_fed_grid_meter_is_a_board_of_its_own():
    spec = json.loads((BOARDS / "sim-ac2.json").read_text())
    spec["grid_meter"] = {"feed": "api"}
    config.check_board(spec)


@pytest.mark.parametrize("key, value, says", [
    ("grid_fallback_a", 39, "grid_fallback_a 39 is over grid_limit_a 40 less grid_margin_a 2.*set at most 38"),
    ("grid_limit_a", 7, "lower grid_fallback_a first"),
    ("grid_margin_a", 40, "grid_margin_a 40 must be below grid_limit_a 40"),
    ("grid_margin_a", 35, "grid_fallback_a 6 is over grid_limit_a 40 less grid_margin_a 35"),
])
def test_grid_settings_that_would_let_the_fallback_overload_the_connection_are_refused(tmp_path, key, value, says):
    cfg = config.Config(json.loads((BOARDS / "sim-ac2-grid.json").read_text()), str(tmp_path))
    with pytest.raises(config.ConfigError, match=says):
        cfg.set(key, value)
    assert cfg.values == {} and not (tmp_path / "config.json").exists()
    assert cfg.set("grid_fallback_a", 38) == 38 and cfg.set("grid_limit_a", 40) == 40   # the edge is allowed


def test_solar_mode_needs_a_grid_meter(tmp_path):
    cfg = config.Config(json.loads((BOARDS / "sim-ac2.json").read_text()), str(tmp_path))
    with pytest.raises(config.ConfigError, match="solar_mode on needs a grid meter"):
        cfg.set("solar_mode", "on")
    assert cfg.set("solar_mode", "off") == "off"


@pytest.mark.parametrize("board, gun, change, says", [
    ("sim-ac2", 0, {"imd": {"model": "isocha425", "uart": 1, "address": 3}}, r"guns\[0\].imd: an insulation monitor is for the DC sequence"),
    ("sim-dc6", 0, {"imd": {"model": "isocha425", "uart": 1, "address": 4}}, r"guns\[1\].imd: address 4 on UART 1 is guns\[0\].imd's too"),
    ("sim-dc6", 0, {"imd": {"model": "isocha425", "uart": 0, "address": 3}}, r"guns\[0\].imd: UART 0 runs at 9600 baud, parity none for guns\[0\].meter"),
    ("sim-dc6", 0, {"imd": {"model": "isocha425", "uart": 0, "address": 2, "baud": 9600, "parity": "none"}}, r"guns\[1\].meter: address 2 on UART 0 is guns\[0\].imd's too"),
    ("sim-dc6", 0, {"imd": {"model": "isocha425", "uart": 1, "address": 3, "baud": 19200.0}}, r"guns\[0\].imd baud 19200.0: use one of"),
    ("sim-dc6", 0, {"meter": {"model": "djsf1352", "uart": 0, "address": 1, "parity": "mark"}}, r"guns\[0\].meter parity 'mark'"),
])
def test_the_devices_on_a_line_agree_on_its_settings_and_each_has_its_own_address(board, gun, change, says):
    spec = json.loads((BOARDS / f"{board}.json").read_text())
    spec["guns"][gun].update(change)
    with pytest.raises(config.ConfigError, match=says):
        config.check_board(spec)
