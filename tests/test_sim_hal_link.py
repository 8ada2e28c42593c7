"""A line that the board's MicroPython process sent over its HAL link before a power cut or a
reset, but that the virtual board reads only afterwards (a loaded host), changes nothing: the
outputs fell with the power."""
import socket
import threading

from host_tools.sim.supervisor import VirtualBoard


def linked(board: VirtualBoard):
    """A HAL link as the board's process opens it: (its end, the thread that serves the other)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        mcu = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    served = threading.Thread(target=board._hal_conn, args=(conn,), daemon=True)
    served.start()
    return mcu, served


def test_a_line_from_a_process_that_is_no_longer_the_board_s_is_dropped(tmp_path):
    board = VirtualBoard("sim-ac2", flash_dir=str(tmp_path))
    board.proc = object()            # the running process that opened the link
    board.world.powered = True
    mcu, served = linked(board)
    replies = mcu.makefile("rb")
    mcu.sendall(b"P 1 533\n")
    assert replies.readline() == b"ok\n"
    gun = board.world.gun(1)
    assert gun.duty_pm == 533
    board.proc = None                # the power cut: world.firmware_gone follows
    board.world.firmware_gone()
    board.proc = object()            # power on again: another process
    mcu.sendall(b"P 1 266\n")        # written before the cut, read only now
    served.join(5)
    assert not served.is_alive() and replies.readline() == b""
    assert gun.duty_pm == -1
    mcu.close()


def test_a_link_taken_after_its_process_was_cut_is_closed_unheard(tmp_path):
    """The process connected and was cut before the virtual board took its link: no process is
    the board's, and the factory's programming run is not running."""
    board = VirtualBoard("sim-ac2", flash_dir=str(tmp_path))
    board.proc = None
    mcu, served = linked(board)
    mcu.sendall(b"P 1 533\n")
    served.join(5)
    try:
        answer = mcu.makefile("rb").readline()
    except ConnectionResetError:   # closed with the line unread
        answer = b""
    assert not served.is_alive() and answer == b""
    assert board.world.gun(1).duty_pm == -1
    mcu.close()
