"""The virtual board turns a Ctrl-C on its serial port into SIGINT for the MicroPython process
that is its MCU (host_tools/sim/supervisor.py). A SIGINT that the process does not catch with a
handler ends it, a crash no board makes: so one goes only while the process catches it."""
import signal
import subprocess
import sys
import time

import pytest

from host_tools.sim.supervisor import SIGINT_GAP_S, VirtualBoard, sigint_state

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

WAIT = "import sys, time; print('ready', flush=True); time.sleep(30)"
CATCH = "import signal; signal.signal(signal.SIGINT, lambda *_: None); " + WAIT


def started(code: str, ignored: bool) -> subprocess.Popen:
    """A process that prints 'ready' once it has run `code`'s start; SIGINT ignored from its
    first instruction where `ignored`, as the virtual board starts MicroPython."""
    cmd = [sys.executable, "-c", code]
    if ignored:
        cmd = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    asleep(proc)
    return proc


def asleep(proc: subprocess.Popen) -> None:
    """Wait until `proc` sleeps (in time.sleep): its count of voluntary switches holds from here."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "S":
                return
        time.sleep(0.01)
    raise AssertionError("the process never went to sleep")


@pytest.fixture
def board(tmp_path):
    board = VirtualBoard("sim-ac2", flash_dir=str(tmp_path))
    board._armed_file.touch()   # rom.py's, once it takes a Ctrl-C
    return board


@pytest.mark.parametrize("ignored", [False, True])
def test_a_process_that_does_not_catch_sigint_gets_no_ctrl_c(board, ignored):
    """Ignored (the interpreter starting behind the shell's trap) or the default (the shell
    before its trap, the interpreter after it let go): a Ctrl-C is lost, as during a reset."""
    code = "import signal; signal.signal(signal.SIGINT, signal.SIG_DFL); " + WAIT
    proc = started(WAIT if ignored else code, ignored)
    try:
        assert sigint_state(proc.pid)[1] is False
        assert not board._may_interrupt(proc)
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_catches_sigint_gets_one_ctrl_c_per_gap_and_sleep(board):
    proc = started(CATCH, ignored=True)
    try:
        assert sigint_state(proc.pid)[1] is True
        assert board._may_interrupt(proc)
        time.sleep(2 * SIGINT_GAP_S)
        assert not board._may_interrupt(proc)   # it has not slept since: it never got the first
        proc.send_signal(signal.SIGINT)
        time.sleep(2 * SIGINT_GAP_S)            # it handles it and sleeps again
        asleep(proc)
        assert board._may_interrupt(proc)
        assert not board._may_interrupt(proc)   # a burst is one interrupt
    finally:
        proc.kill()
        proc.wait()


def test_no_ctrl_c_goes_before_rom_py_says_it_takes_one(board):
    """MicroPython arms its handler before it compiles rom.py, whose top level cannot take a
    KeyboardInterrupt (the process would end: exit 130)."""
    proc = started(CATCH, ignored=True)
    try:
        board._armed_file.unlink()
        assert sigint_state(proc.pid)[1] is True
        assert not board._may_interrupt(proc)
        board._armed_file.touch()
        assert board._may_interrupt(proc)
    finally:
        proc.kill()
        proc.wait()


def test_a_ctrl_c_at_the_prompt_is_read_in_order_with_the_bytes_after_it(tmp_path):
    """At the REPL's prompt a Ctrl-C goes as the byte: as a SIGINT, its KeyboardInterrupt could be
    raised after the REPL had read the Ctrl-A that mpremote sends right after it, and mpremote
    waited for the raw REPL for ever."""
    import serial
    board = VirtualBoard("sim-ac2", flash_dir=str(tmp_path)).start()
    port = serial.Serial(board.serial_path, 115200, timeout=0.1)
    try:
        def until(marker: bytes, timeout_s: float = 20) -> bytes:
            seen = b""
            deadline = time.monotonic() + timeout_s
            while marker not in seen:
                assert time.monotonic() < deadline, seen[-400:]
                seen += port.read(4096)
            return seen
        until(b"evse", 30)                      # the firmware runs
        port.write(b"\x03")                     # a SIGINT: code runs
        until(b">>> ")
        deadline = time.monotonic() + 10
        while not board._at_prompt():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sent = board._sigint_at
        port.write(b"\r\x03\r\x01")             # what mpremote sends, at once
        until(b"raw REPL; CTRL-B to exit\r\n>")
        assert board._sigint_at == sent         # the Ctrl-C went as the byte, no SIGINT
        port.write(b"print(6 * 7)\x04")
        assert b"OK42" in until(b"\x04>")
    finally:
        port.close()
        board.stop()
