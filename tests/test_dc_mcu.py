"""The DC controller on an MCU (boards/rp2350-pico2-w-dc2.json): its board file's DC parts are
checked by the firmware itself, not only by the virtual board, and a dead Hall sensor stops the
gun instead of reading 0 A."""
import copy
import json
from pathlib import Path

import pytest

from evse import config
from evse.config import ConfigError

BOARD = json.loads((Path(__file__).resolve().parents[1] / "boards" / "rp2350-pico2-w-dc2.json").read_text())


def test_the_board_passes():
    config.check_board(copy.deepcopy(BOARD))


@pytest.mark.parametrize("change, says", [
    (lambda b: b.pop("secc"), 'board secc: a DC board on an MCU needs "secc"'),
    (lambda b: b["secc"].update(uart=7), 'board secc: a DC board on an MCU needs "secc"'),
    (lambda b: b["secc"].update(uart=0), "board secc: UART 0 has an RS-485 driver (de)"),
    (lambda b: b["guns"][1].pop("dc_v"), "board guns[1].dc_v: a DC gun on an MCU needs its voltage input"),
    (lambda b: b["guns"][0]["dc_v"].update(v_per_mv=0), "board guns[0].dc_v: v_per_mv must be a number above 0"),
    (lambda b: b["guns"][0]["dc_v"].update(v_per_mv="0.5"), "board guns[0].dc_v: v_per_mv must be a number above 0"),
    (lambda b: b["guns"][0]["dc_v"].update(mux="6"), "board guns[0].dc_v: give the ADC GPIO (pin) or"),
    (lambda b: b["guns"][0]["dc_v"].update(mux=3), "board guns[0].dc_v: multiplexer channel 3 is another input's"),
    (lambda b: b["guns"][1]["dc_v"].update(mux=6), "board guns[1].dc_v: multiplexer channel 6 is another input's"),
])
def test_a_bad_dc_part_is_refused_by_the_firmware_with_the_key(change, says):
    b = copy.deepcopy(BOARD)
    change(b)
    with pytest.raises(ConfigError) as e:
        config.check_board(b)
    assert str(e.value).startswith(says), str(e.value)
