"""The emulated MCU's front end (host_tools/sim/frontend.py) times what the firmware drives from
when the MCU drove it, as a wire would, however late the line is read."""
import time

from host_tools.sim.frontend import RCM_RESPONSE_MS, FrontEnd
from host_tools.sim.supervisor import read_board_file
from host_tools.sim.world import World


def front_end():
    board, _ = read_board_file("rp2040-pico")
    world = World(board)
    return FrontEnd(world, board), world, board["guns"][0]["pins"]["rcd_test"]


def test_the_rcm_answers_its_test_input_from_when_the_mcu_drove_it_not_when_the_line_was_read():
    fe, world, test_pin = front_end()
    # The line waited 30 ms in the socket (a loaded host): the RCM has answered meanwhile, and
    # the firmware's read that comes right after must see it, or its self-test fails at 40 ms.
    late_us = int((RCM_RESPONSE_MS + 12) * 1000)
    assert fe.request("o %d 1 %d" % (test_pin, time.monotonic_ns() // 1000 - late_us)) is None
    assert world.rcm_raised(world.guns[0])
    fe.request("o %d 0 %d" % (test_pin, time.monotonic_ns() // 1000))   # released: the latch resets
    assert not world.rcm_raised(world.guns[0])


def test_a_line_without_its_time_or_with_another_clock_s_counts_from_when_it_is_read():
    fe, world, test_pin = front_end()
    fe.request("o %d 1" % test_pin)
    assert not world.rcm_raised(world.guns[0])   # driven just now: 18 ms to go
    fe.request("o %d 0" % test_pin)
    fe.request("o %d 1 %d" % (test_pin, 12345))   # not this host's monotonic clock
    assert not world.rcm_raised(world.guns[0])
