"""The firmware's MCP2515 driver (evse.can.mcp2515) against the chip as its data sheet describes
it (host_tools.sim.mcp2515): identifiers, bit timing, frames both ways through the acceptance
filter, transmit timeouts, receive overruns, bus-off and its recovery, and a chip that is not
there."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evse.can import mcp2515
from evse.can.mcp2515 import CanError, Mcp2515
from host_tools.sim import mcp2515 as chip_model

IDS = st.integers(0, (1 << 29) - 1)


class Spi:
    """machine.SPI's write_readinto and write over the chip model, one transaction per chip select."""

    def __init__(self, chip):
        self.chip = chip
        self.cs = None

    def write_readinto(self, out, into):
        assert self.cs is not None and self.cs.level == 0, "SPI transfer with chip select high"
        into[:] = self.chip.transfer(bytes(out))

    def write(self, out):
        self.write_readinto(out, bytearray(len(out)))


class Pin:
    OUT = 3

    def __init__(self, spi):
        self.level = None
        spi.cs = self

    def init(self, mode, value=None):
        self.level = value

    def __call__(self, level):
        self.level = level


def board(accept=None, acked=lambda can_id, data: True, chip=None):
    sent = []

    def on_send(can_id, data):
        sent.append((can_id, data))
        return acked(can_id, data)

    chip = chip or chip_model.Mcp2515()
    chip.on_send = on_send
    spi = Spi(chip)
    driver = Mcp2515(spi, Pin(spi), lambda ms: None, accept=accept)
    return driver, chip, sent


@given(IDS)
def test_an_identifier_is_laid_out_as_the_data_sheet_says_and_read_back(can_id):
    raw = mcp2515.encode_id(can_id)
    assert bytes(raw) == chip_model.id_bytes(can_id)
    assert mcp2515.decode_id(*raw) == can_id == chip_model.id_of(bytes(raw))


def test_a_standard_frame_has_no_extended_identifier():
    assert mcp2515.decode_id(0x12, 0x40, 0, 0) is None


@pytest.mark.parametrize("crystal_hz, bitrate, cnf1", [(8_000_000, 125_000, 1), (16_000_000, 125_000, 3),
                                                      (8_000_000, 250_000, 0), (16_000_000, 500_000, 0)])
def test_the_bit_timing_gives_16_quanta_sampled_at_87_percent(crystal_hz, bitrate, cnf1):
    c1, c2, c3 = mcp2515.bit_timing(crystal_hz, bitrate)
    tq_s = 2 * ((c1 & 0x3F) + 1) / crystal_hz
    prop, ps1, ps2 = (c2 & 0x07) + 1, ((c2 >> 3) & 0x07) + 1, (c3 & 0x07) + 1
    assert c1 == cnf1 and c2 & 0x80   # BTLMODE: phase 2 from CNF3
    assert (1 + prop + ps1 + ps2) * tq_s == pytest.approx(1 / bitrate)
    assert (1 + prop + ps1) / (1 + prop + ps1 + ps2) == 0.875


@pytest.mark.parametrize("crystal_hz, bitrate", [(8_000_000, 1_000_000), (10_000_000, 125_000), (8_000_000, 0)])
def test_a_bitrate_the_crystal_cannot_make_is_refused_with_the_ones_it_can(crystal_hz, bitrate):
    with pytest.raises(ValueError, match="8 MHz gives 125 and 250 kbit/s, 16 MHz also 500"):
        mcp2515.bit_timing(crystal_hz, bitrate)


def test_start_leaves_the_chip_in_normal_mode_with_the_timing_written():
    driver, chip, _ = board()
    assert chip.mode == chip_model.NORMAL
    assert (chip.regs[chip_model.CNF1], chip.regs[chip_model.CNF2], chip.regs[chip_model.CNF3]) == \
        mcp2515.bit_timing(8_000_000, 125_000)


@given(IDS, st.binary(max_size=8))
def test_a_frame_sent_goes_out_whole(can_id, data):
    driver, chip, sent = board()
    assert driver.send(can_id, data)
    assert sent == [(can_id, data)] and driver.sent == 1


@given(IDS, st.binary(max_size=8))
def test_a_frame_on_the_bus_is_received_whole_once(can_id, data):
    driver, chip, _ = board()
    chip.deliver(can_id, data)
    assert driver.recv() == (can_id, data)
    assert driver.recv() is None


@given(IDS)
def test_the_filter_takes_only_frames_for_the_controller(can_id):
    mask, want = 0xFF00, 0xF000     # destination byte 0xF0, as the Infypower modules address it
    driver, chip, _ = board(accept=(mask, want))
    chip.deliver(can_id, b"\x01")
    got = driver.recv()
    assert (got is not None) == (can_id & mask == want)


def test_two_frames_wait_in_the_two_receive_buffers_and_a_third_is_an_overrun():
    driver, chip, _ = board()
    for k in range(3):
        chip.deliver(0x100 + k, bytes([k]))
    driver.poll(0)
    assert driver.rx_overruns == 1
    assert [driver.recv(), driver.recv(), driver.recv()] == [(0x100, b"\x00"), (0x101, b"\x01"), None]
    driver.poll(10)
    assert driver.rx_overruns == 1    # the flag was cleared


def test_with_three_frames_unacknowledged_a_fourth_does_not_fit_and_all_are_aborted_after_the_timeout():
    driver, chip, _ = board(acked=lambda can_id, data: False)
    assert all(driver.send(0x10 + k, b"x") for k in range(3))
    assert not driver.send(0x20, b"x")
    driver.poll(1000)       # first seen pending
    driver.poll(1000 + mcp2515.TX_TIMEOUT_MS - 1)
    assert driver.tx_timeouts == 0
    driver.poll(1000 + mcp2515.TX_TIMEOUT_MS)
    assert driver.tx_timeouts == 3 and chip.pending() == []
    assert driver.send(0x20, b"x")


def test_a_bus_without_acknowledgements_ends_in_bus_off_and_a_reset_brings_the_chip_back():
    acks = [False]
    driver, chip, sent = board(acked=lambda can_id, data: acks[0])
    driver.send(0x1, b"x")
    while chip.tec < 256:
        chip.retry()
    driver.poll(0)
    assert driver.state() == "bus-off" and driver.bus_offs == 1
    assert not driver.send(0x2, b"y")
    driver.poll(mcp2515.BUS_OFF_RESET_MS - 1)
    assert driver.resets == 0
    acks[0] = True
    driver.poll(mcp2515.BUS_OFF_RESET_MS)
    assert driver.resets == 1 and chip.mode == chip_model.NORMAL
    driver.poll(mcp2515.BUS_OFF_RESET_MS + 1)
    assert driver.state() == "active" and driver.send(0x3, b"z") and sent[-1] == (0x3, b"z")


def test_a_bus_off_the_chip_recovers_from_by_itself_needs_no_reset():
    driver, chip, _ = board(acked=lambda can_id, data: False)
    driver.send(0x1, b"x")
    while chip.tec < 256:
        chip.retry()
    driver.poll(0)
    chip.recover()
    driver.poll(10)
    assert driver.state() == "active" and driver.resets == 0 and driver.stats()["bus_offs"] == 1


def test_error_counters_show_in_the_stats_as_warning_then_passive():
    driver, chip, _ = board(acked=lambda can_id, data: False)
    driver.send(0x1, b"x")
    for want in ("warning", "passive"):
        while driver.state() != want:
            chip.retry()
            driver.poll(0)
        assert driver.stats()["tec"] == chip.tec


def test_no_chip_on_the_spi_is_an_error_that_names_the_wiring():
    class Dead:
        def transfer(self, data):
            return b"\xff" * len(data)   # MISO pulled up, nothing drives it

    spi = Spi(Dead())
    with pytest.raises(CanError, match="no answer on SPI after its reset.*wiring"):
        Mcp2515(spi, Pin(spi), lambda ms: None)


def test_more_than_8_bytes_is_refused():
    driver, _, sent = board()
    with pytest.raises(ValueError, match="at most 8 bytes"):
        driver.send(0x1, bytes(9))
    assert sent == []


def test_frames_queued_while_the_bus_is_busy_go_out_in_the_order_given():
    acked = set()
    driver, chip, sent = board(acked=lambda can_id, data: can_id in acked)
    assert [driver.send(0x100 + k, bytes([k])) for k in range(3)] == [True, True, True]
    assert not driver.send(0x1FF, b"")             # three buffers, all waiting
    acked.update((0x100, 0x101, 0x102))
    sent.clear()
    chip.retry()
    assert [can_id for can_id, _ in sent] == [0x100, 0x101, 0x102]
    # While older frames wait, a new one goes below them; with no priority left below the
    # lowest waiting, it waits for them.
    acked.clear()
    for k in range(3):
        driver.send(0x110 + k, b"")
    acked.add(0x110)
    chip.retry()
    assert driver.send(0x113, b"")                 # below 0x112's priority
    acked.add(0x111)
    chip.retry()
    assert not driver.send(0x114, b"")             # nothing left below 0x113's
    acked.update((0x112, 0x113))
    sent.clear()
    chip.retry()
    assert [can_id for can_id, _ in sent] == [0x112, 0x113]
