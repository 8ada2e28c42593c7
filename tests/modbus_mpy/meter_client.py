# Runs under the real MicroPython: evse.modbus and evse.meters over the sim HAL's UART, against a
# bus server the test started (EVSE_SIM_UART0). Commands on stdin, one JSON line per answer:
#   read ADDRESS MODEL   one meter poll -> ["reading", {...}] or ["error", class, message, {counters}]
#   uart INDEX           open another UART -> ["uart", "ok"] or ["error", class, message]
#   fuzz N               N garbage / mutated answers through check_response -> ["fuzz", {kind: count}]
#   quit
import asyncio
import gc
import json
import os
import sys

from evse import meters, modbus
from evse.hal.sim import Hal

# The HAL method itself, without a world link: uart() needs only the environment.
bus = Hal.uart(None, 0, 9600)
master = modbus.Master(bus, 9600, timeout_ms=200, retries=1)


def counters():
    return {"requests": master.requests, "timeouts": master.timeouts,
            "bad_frames": master.bad_frames, "refusals": master.refusals}


async def poll(meter):
    gc.collect()
    gc.disable()  # no collection in the middle: the difference is what one poll allocates
    try:
        before = gc.mem_alloc()
        reading = await meter.read()
        return reading, gc.mem_alloc() - before
    finally:
        gc.enable()


def read(address, model):
    meter = meters.Meter(master, model, address)
    try:
        reading, allocated = asyncio.run(poll(meter))
    except modbus.ModbusError as e:
        return ["error", type(e).__name__, str(e), counters()]
    return ["reading", {"energy_wh": reading.energy_wh, "power_w": reading.power_w, "volts": reading.volts,
                        "amps": reading.amps, "dc": reading.dc, "alloc_bytes": allocated}]


def fuzz(n):
    request = modbus.read_request(1, modbus.READ_INPUT, 0, 2)
    good = bytes([1, 4, 4, 0x43, 0x66, 0x33, 0x34, 0x1B, 0x38])
    kinds = {}
    for i in range(n):
        if i % 2:
            frame = os.urandom(os.urandom(1)[0] % 40)
        else:  # the good answer with a byte changed, cut, or junk before it
            frame = bytearray(good)
            r = os.urandom(3)
            if r[0] % 3 == 0:
                frame[r[1] % len(frame)] ^= r[2] | 1
            elif r[0] % 3 == 1:
                frame = frame[:r[1] % len(frame)]
            else:
                frame = os.urandom(1 + r[1] % 4) + frame
        try:
            modbus.check_response(request, frame)
            kind = "accepted"
        except modbus.ModbusError as e:
            kind = type(e).__name__
        except Exception as e:  # noqa: BLE001 - exactly what must never happen
            kind = "crash " + type(e).__name__ + ": " + str(e)
        kinds[kind] = kinds.get(kind, 0) + 1
    return ["fuzz", kinds]


while True:
    line = sys.stdin.readline()
    if not line:
        break
    words = line.split()
    if not words or words[0] == "quit":
        break
    if words[0] == "read":
        answer = read(int(words[1]), words[2])
    elif words[0] == "uart":
        try:
            Hal.uart(None, int(words[1]), 9600)
            answer = ["uart", "ok"]
        except OSError as e:
            answer = ["error", type(e).__name__, str(e)]
    elif words[0] == "fuzz":
        answer = fuzz(int(words[1]))
    else:
        answer = ["error", "usage", line]
    print(json.dumps(answer))
