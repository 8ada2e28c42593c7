"""Board files of real hardware say what the board is and the heap it has (docs/boards.md)."""
import json
import re
from pathlib import Path

import pytest

from evse import config
from host_tools.flash import FlashError, Flasher
from host_tools.sim import frontend
from host_tools.sim.supervisor import (JOURNAL_DEFAULT_ENTRIES, board_heap_bytes, boot_modules, journal_index_bytes,
                                       raw_buffer_bytes, read_board_file)

BOARDS = Path(__file__).resolve().parents[1] / "boards"
DOC = (BOARDS.parent / "docs" / "boards.md").read_text()
REAL = sorted(p for p in BOARDS.glob("*.json") if json.loads(p.read_text())["hal"] in ("rp2", "esp32"))


def test_each_real_board_names_its_board_mcu_build_heap_and_install_and_docs_list_it():
    assert {p.stem for p in REAL} >= {"rp2040-pico", "esp32-devkitc"}
    for path in REAL:
        board = json.loads(path.read_text())
        frontend.check_board(board)
        assert board["hardware"]["install"] in frontend.INSTALLS
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{path.stem}` |")), None)
        assert row is not None and board["hardware"]["micropython"] in row and board["hardware"]["install"] in row, path


@pytest.mark.parametrize("change, says", [
    (lambda b: b.pop("hardware"), 'lacks "hardware"'),
    (lambda b: b["hardware"].update(install="zip"), "hardware.install is 'zip': use one of mpy"),
    (lambda b: b["hardware"].update(mcu=""), "hardware.mcu must name it"),
    (lambda b: b.update(heap_kb=4), "heap_kb must be the KiB the stock MicroPython leaves free"),
    (lambda b: b["hardware"].update(virtual_heap="twice"), "hardware.virtual_heap is 'twice': use measured"),
])
def test_a_real_board_file_that_does_not_say_what_it_is_is_refused_with_the_fix(change, says):
    board = json.loads((BOARDS / "rp2040-pico.json").read_text())
    change(board)
    with pytest.raises(frontend.BoardFileError, match=says):
        frontend.check_board(board)


@pytest.mark.parametrize("name", ["esp32-wrover", "rp2040-pico"])
def test_an_emergency_stop_on_a_pin_another_part_has_is_refused(name):
    board = json.loads((BOARDS / f"{name}.json").read_text())
    rx = board["uart"]["meter"]["rx"]
    board["pins"]["estop"] = rx   # the e-stop contact would hold the meter's receive line
    with pytest.raises(frontend.BoardFileError, match=f"uart.meter.rx = {rx}: GPIO {rx} is already pins.estop"):
        frontend.check_board(board)


@pytest.mark.parametrize("name, wiring, says", [
    ("rp2040-pico", {"spi": 0, "sck": 22, "mosi": 23, "miso": 16, "cs": 17}, None),
    ("rp2040-pico", {"spi": 0, "sck": 18, "mosi": 19, "miso": 16, "cs": 17},
     "can.modules.sck = 18: GPIO 18 is already pins.mux_select"),
    ("rp2040-pico", {"spi": 1, "sck": 22, "mosi": 23, "miso": 16, "cs": 17},
     "can.modules.sck = 22: the RP2040's SPI1 has its SCK on GPIO 10, 14, 26; pick one of them"),
    ("rp2040-pico", {"spi": 0, "sck": 22, "mosi": 23, "miso": 17, "cs": 16},
     "can.modules.miso = 17: the RP2040's SPI0 has its MISO on GPIO 0, 4, 16, 20"),
    ("rp2040-pico", {"spi": 2, "sck": 22, "mosi": 23, "miso": 16, "cs": 17},
     "can.modules.spi = 2: the rp2040's MicroPython has SPI 0 and 1"),
    ("esp32-devkitc", {"spi": 1, "sck": 2, "mosi": 12, "miso": 37, "cs": 0}, None),   # MISO may be input only
    ("esp32-devkitc", {"spi": 1, "sck": 37, "mosi": 12, "miso": 2, "cs": 0},
     "can.modules.sck = 37: GPIO 37 of the esp32 is input only"),
    ("esp32-devkitc", {"spi": 0, "sck": 2, "mosi": 12, "miso": 37, "cs": 0},
     "can.modules.spi = 0: the esp32's MicroPython has SPI 1 and 2"),
    ("esp32-devkitc", {"spi": 1, "sck": 2, "mosi": 12, "miso": 37, "cs": 0, "chip": "sja1000"},
     'can.modules.chip is \'sja1000\': the CAN controller the firmware drives is "mcp2515"'),
    ("esp32-devkitc", {"spi": 1, "sck": 2, "mosi": 12, "miso": 37, "cs": 0, "crystal_hz": None},
     "can.modules.crystal_hz must be the MCP2515's crystal in Hz"),
])
def test_a_can_controller_is_wired_to_pins_its_spi_can_take_and_no_other_part_has(name, wiring, says):
    board = json.loads((BOARDS / f"{name}.json").read_text())
    board["can"] = {"modules": {"index": 0, "chip": "mcp2515", "crystal_hz": 8000000, **wiring}}
    if says is None:
        frontend.check_board(board)
        return
    with pytest.raises(frontend.BoardFileError, match=re.escape(says)):
        frontend.check_board(board)


def test_the_firmware_drops_the_hardware_entry_when_it_loads_the_board_file(tmp_path):
    (tmp_path / "board.json").write_text((BOARDS / "esp32-devkitc.json").read_text())
    board = config.load_board(str(tmp_path))
    assert "hardware" not in board and board["heap_kb"] == 110


def test_flash_refuses_a_board_installed_as_frozen_and_takes_mpy_and_romfs(tmp_path):
    board = json.loads((BOARDS / "rp2040-pico.json").read_text())
    board["hardware"]["install"] = "frozen"
    path = tmp_path / "pico-frozen.json"
    path.write_text(json.dumps(board))
    with pytest.raises(FlashError, match="installed as frozen .*evsectl flash writes .mpy files or a ROMFS image"):
        Flasher("/dev/null", str(path))
    assert Flasher("/dev/null", "rp2040-pico").romfs is False
    assert Flasher("/dev/null", "rp2040-pico", romfs=True).romfs is True
    assert Flasher("/dev/null", "esp32-devkitc").romfs is True     # its file says romfs


def test_a_pin_the_wlan_chip_or_the_psram_drives_is_refused_only_on_the_board_that_has_them():
    pico_w = json.loads((BOARDS / "rp2040-pico-w.json").read_text())
    pico_w["guns"][0]["pins"]["contactor"] = 25
    with pytest.raises(frontend.BoardFileError, match="GPIO 25 drives the board's WLAN chip"):
        frontend.check_board(pico_w)
    pico = json.loads((BOARDS / "rp2040-pico.json").read_text())
    pico["guns"][0]["pins"]["contactor"] = 25
    frontend.check_board(pico)                       # a plain Pico has GP25 for the board
    wrover = json.loads((BOARDS / "esp32-wrover.json").read_text())
    wrover["uart"]["meter"]["rx"] = 16
    with pytest.raises(frontend.BoardFileError, match="GPIO 16 drives the board's PSRAM"):
        frontend.check_board(wrover)


@pytest.mark.parametrize("change, says", [
    (lambda hw: hw.update(install="romfs"), "install romfs needs hardware.romfs_kb"),
    (lambda hw: hw.update(romfs_kb=130), "romfs_kb is the ROMFS partition .* not 130"),
    (lambda hw: hw.update(romfs_kb=True), "romfs_kb is the ROMFS partition .* not True"),
    (lambda hw: hw.update(romfs_kb=8), "romfs_kb is the ROMFS partition .* not 8"),
])
def test_a_romfs_partition_must_be_given_in_whole_blocks(change, says):
    board = json.loads((BOARDS / "rp2040-pico.json").read_text())
    change(board["hardware"])
    with pytest.raises(frontend.BoardFileError, match=says):
        frontend.check_board(board)


def test_a_romfs_image_holds_the_package_as_the_mpy_files_it_was_built_from(tmp_path):
    from host_tools.flash import compile_package, romfs_image
    files = compile_package("xtensawin")
    image = romfs_image(files)
    assert image[:3] == b"\xd2\xcd\x31"                           # mpremote's ROMFS magic
    for rel in ("evse/app.mpy", "evse/ocpp/cp.mpy"):
        assert files[rel].read_bytes() in image                    # verbatim: run in place
    assert romfs_image({p: f for p, f in files.items() if p.startswith("evse/")}) == image   # main.py, boot.py:
    assert "main.py" in files                                                              # on littlefs


def test_a_board_whose_firmware_does_not_fit_its_heap_says_so_and_the_docs_say_why():
    for path in REAL:
        board = json.loads(path.read_text())
        if board["hardware"].get("virtual_heap", "measured") == "upper-bound":
            assert f"`{path.stem}` does not fit" in DOC, path.stem


def test_the_measured_virtual_heap_holds_the_code_at_its_32_bit_size_and_the_rest_as_data():
    # 240 KiB with 100 KB of code here: 83 KB of it on the board, 157 KiB left for data there,
    # which is 1 / 0.55 as much here.
    assert board_heap_bytes(240 * 1024, 30_000, 100_000) == 30_000 + 100_000 + int((240 * 1024 - 83_000) / 0.55)
    assert board_heap_bytes(64 * 1024, 0, 100_000) == 100_000   # code past the heap: no data room
    # From a ROMFS image the code's objects weigh 0.65 of their bytes here on the board.
    assert board_heap_bytes(110 * 1024, 0, 100_000, 0.65) == 100_000 + int((110 * 1024 - 65_000) / 0.55)
    # Raw buffers take their bytes on both sides: 10 KB of them leave 10 KB less room, not 18.
    assert board_heap_bytes(240 * 1024, 0, 100_000, 0.83, 10_000) == \
        100_000 + 10_000 + int((240 * 1024 - 83_000 - 10_000) / 0.55)


@pytest.mark.parametrize("name, entries", [("rp2040-pico-w", 1000), ("esp32-devkitc", 400)])
def test_the_raw_buffers_counted_are_the_journal_s_index_as_the_firmware_allocates_it(tmp_path, name, entries):
    from evse.ocpp import keys
    from evse.ocpp.journal import Journal
    board = read_board_file(name)[0]
    key = keys.Keys(str(tmp_path), 2, journal_max=board.get("journal_max_entries", 2000))
    assert key.get("JournalMaxEntries") == entries and keys.KEYS["JournalMaxEntries"][2] == JOURNAL_DEFAULT_ENTRIES
    j = Journal(str(tmp_path), key.get("JournalMaxEntries"), log=lambda line: None)
    index = sum(len(block) * block.itemsize for block in j._ix) + sum(len(block) for block in j._kd)
    assert index == journal_index_bytes(entries) == raw_buffer_bytes(board)
    assert raw_buffer_bytes(read_board_file("rp2040-pico")[0]) == 0   # no network: no charge point


def test_flash_says_when_the_board_s_heap_is_too_small_for_the_install_and_what_would_help(tmp_path):
    for fits in ("rp2040-pico", "esp32-wrover", "rp2040-pico-w", "esp32-devkitc"):   # the last two from ROMFS
        assert Flasher("/dev/null", fits).heap_warning() is None, fits
    board = json.loads((BOARDS / "esp32-devkitc.json").read_text())   # a board its firmware does not fit
    board["hardware"].update(virtual_heap="upper-bound")
    small = tmp_path / "devkitc-small.json"
    small.write_text(json.dumps(board))
    devkitc = Flasher("/dev/null", str(small)).heap_warning()
    assert "leaves 110 KiB" in devkitc and "from its ROMFS image" in devkitc and "--romfs" not in devkitc
    board["hardware"].update(install="mpy")   # and whose file says mpy
    mpy_board = tmp_path / "devkitc-mpy.json"
    mpy_board.write_text(json.dumps(board))
    as_mpy = Flasher("/dev/null", str(mpy_board)).heap_warning()
    assert "as .mpy files" in as_mpy and "--romfs" in as_mpy
    assert Flasher("/dev/null", str(mpy_board), romfs=True).heap_warning() is None   # not what its figures are for


def test_flash_puts_the_commissioning_files_beside_the_firmware_and_refuses_its_own_names(tmp_path):
    from host_tools.certs import make_request
    from host_tools.flash import FlashError, Flasher
    key, csr = make_request("CP1", tmp_path)
    files = Flasher("/dev/null", "rp2040-pico", put=[key, csr])._local_files()
    assert files["cp.key"] == key and files["cp.csr"] == csr and "main.py" in files
    (tmp_path / "main.py").write_text("print('not the firmware')")
    for bad, says in ((tmp_path / "main.py", "firmware's own"), (tmp_path / "none.der", "no such file")):
        with pytest.raises(FlashError, match=says):
            Flasher("/dev/null", "rp2040-pico", put=[bad])._local_files()


@pytest.mark.parametrize("name, has, lacks", [
    ("rp2040-pico", ["evse.app", "evse.hal.rp2"], ["evse.ocpp.cp", "evse.dc", "evse.metering"]),
    ("rp2040-pico-w", ["evse.ocpp.cp"], ["evse.dc", "evse.ocpp.ops"]),
    ("rp2350-pico2-w-dc2", ["evse.ocpp.cp", "evse.metering", "evse.dc", "evse.can.infy", "evse.matrix",
                            "evse.imd", "evse.hal.secc", "evse.hal.mcu_dc"], []),
])
def test_the_code_a_board_is_counted_with_is_what_main_py_imports_there(name, has, lacks):
    """The virtual board's heap counts this code, on upper-bound boards too (the ESP32-WROOM): an
    AC board does not pay for the DC modules, nor a board without a network for OCPP."""
    modules = boot_modules(read_board_file(name)[0])
    assert modules[:2] == ["evse.ocpp.fwboot", "evse.app"]
    assert all(m in modules for m in has) and not any(m in modules for m in lacks), modules
