# rig-pico: a Raspberry Pi Pico that plays the EV side of up to two guns against a charger
# controller, driven over its USB serial with the rig protocol (docs/rig-protocol.md).
# One JSON request per line on stdin, one reply line each on stdout; between bytes the rig
# measures the pilots and moves its EVs. Ctrl-C (byte 0x03) stops it with every switch open and
# leaves the REPL, which is how mpremote gets in.
import select
import sys

import hw
import rig
import wiring

_BYTES_PER_PASS = 64  # read at most this many bytes before the next tick


def main():
    hardware = hw.Hardware(wiring.WIRING)
    the_rig = rig.Rig(hardware, wiring.WIRING)
    out = sys.stdout.buffer  # raw bytes: no \r added before \n
    stdin = sys.stdin.buffer
    server = rig.Server(the_rig, out.write)
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    byte = bytearray(1)
    # A line that is not a reply: the host skips it (host_tools/jsonlines.py).
    out.write(("%s %s: %d guns; rig protocol, one JSON object per line (docs/rig-protocol.md)\n"
               % (rig.RIG_NAME, rig.VERSION, hardware.guns)).encode())
    try:
        while True:
            try:
                for _ in range(_BYTES_PER_PASS):
                    if not poller.poll(0):
                        break
                    if not stdin.readinto(byte):
                        return  # end of input: only on the unix port (tests), never on USB
                    server.feed(byte)
                server.tick()
                poller.poll(1)  # until a byte comes, or 1 ms
            except Exception as e:  # never fatal: the rig keeps answering
                try:
                    the_rig.note_error("loop", e)
                except Exception:
                    pass
    finally:
        hardware.safe()  # Ctrl-C, or end of input: every switch open


main()
