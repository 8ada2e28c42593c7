"""The site's RS-485 line (host_tools/sim/line.py) over real loopback sockets: a frame reaches
every other member, never its sender; frames that overlap on the wire reach everyone spoilt;
a frame after the window is clean; a board that reconnects is on the line again."""
import socket
import time

import pytest

from host_tools.sim.line import COLLISION_WINDOW_S, SiteLine
from host_tools.sim.modbus import FRAME_SILENCE_S, crc16, seal

READ_COIL = seal(bytes((2, 0x03, 0x00, 0x10, 0x00, 0x02)))     # a request to node 2
ANSWER = seal(bytes((2, 0x03, 0x04, 0x00, 0x20, 0x00, 0x40)))    # node 2's answer


def connect(line):
    host, port = line.address.split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def members(line, n):
    socks = [connect(line) for _ in range(n)]
    wait_for(lambda: line.counters()["members"] == n)
    return socks


def wait_for(ok, timeout_s=2.0):
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def heard(sock, quiet_s=0.15) -> bytes:
    """Everything the member receives until the line has been quiet for quiet_s."""
    sock.settimeout(quiet_s)
    out = b""
    while True:
        try:
            data = sock.recv(4096)
        except socket.timeout:
            return out
        if not data:
            return out
        out += data


def checks(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == frame[-2] | (frame[-1] << 8)


@pytest.fixture
def line():
    line = SiteLine(baud=38400)
    yield line
    line.close()


def test_a_frame_reaches_every_other_member_and_not_its_sender(line):
    a, b, c = members(line, 3)
    a.sendall(READ_COIL)
    assert heard(b) == READ_COIL and heard(c) == READ_COIL
    assert heard(a, 0.05) == b""
    assert line.counters() == {"frames": 1, "collisions": 0, "members": 3, "baud": 38400}


def test_two_frames_at_once_collide_and_reach_everyone_spoilt():
    line = SiteLine(baud=2400)   # 33 ms a frame: the two overlap on a loaded host too
    a, b, c = members(line, 3)
    a.sendall(READ_COIL)
    b.sendall(ANSWER)
    got_a, got_b, got_c = heard(a), heard(b), heard(c)
    line.close()
    # Each sender hears the other's frame spoilt; a bystander both, spoilt, and neither checks.
    assert len(got_a) == len(ANSWER) and got_a != ANSWER and not checks(got_a)
    assert len(got_b) == len(READ_COIL) and got_b != READ_COIL and not checks(got_b)
    assert len(got_c) == len(READ_COIL) + len(ANSWER)
    assert READ_COIL not in got_c and ANSWER not in got_c
    assert line.counters()["frames"] == 2 and line.counters()["collisions"] == 2


def test_a_frame_after_the_other_left_the_wire_and_its_window_is_clean(line):
    a, b, c = members(line, 3)
    a.sendall(READ_COIL)
    assert heard(b, 0.05) == READ_COIL   # delivered: it has left the wire and its window
    b.sendall(ANSWER)
    assert heard(a) == ANSWER and heard(c) == READ_COIL + ANSWER
    assert line.counters()["collisions"] == 0


def test_a_slow_line_keeps_a_frame_on_the_wire_for_its_bytes_time():
    # At 1200 baud 8 bytes take 67 ms: an answer 25 ms after the request's bytes came still
    # meets it on the wire, one after it was delivered does not.
    line = SiteLine(baud=1200)
    try:
        a, b, c = members(line, 3)
        a.sendall(READ_COIL)
        time.sleep(0.025)
        assert 0.025 > FRAME_SILENCE_S + COLLISION_WINDOW_S   # the model's windows alone are over
        b.sendall(ANSWER)
        assert READ_COIL not in heard(c) and line.counters()["collisions"] == 2
        heard(a), heard(b)   # what they heard of each other, spoilt
        a.sendall(READ_COIL)
        assert heard(b, 0.2) == READ_COIL
        b.sendall(ANSWER)
        assert heard(a, 0.2) == ANSWER and line.counters()["collisions"] == 2
    finally:
        line.close()


def test_a_member_that_reconnects_hears_and_is_heard_again(line):
    a, b = members(line, 2)
    b.close()                                      # the board reset: its UART's connection drops
    wait_for(lambda: line.counters()["members"] == 1)
    a.sendall(READ_COIL)                           # nobody else on the line: it goes nowhere
    time.sleep(0.05)
    b = connect(line)
    wait_for(lambda: line.counters()["members"] == 2)
    a.sendall(READ_COIL)
    assert heard(b) == READ_COIL
    b.sendall(ANSWER)
    assert heard(a) == ANSWER


def test_a_line_without_power_delivers_nothing():
    on = [False]
    line = SiteLine(powered=lambda: on[0])
    try:
        a, b = members(line, 2)
        a.sendall(READ_COIL)
        assert heard(b) == b"" and line.counters()["frames"] == 0
        on[0] = True
        a.sendall(READ_COIL)
        assert heard(b) == READ_COIL
    finally:
        line.close()


def test_a_bad_baudrate_is_refused_naming_the_range():
    with pytest.raises(ValueError, match="baudrate must be 1200..1000000, not 0"):
        SiteLine(baud=0)
