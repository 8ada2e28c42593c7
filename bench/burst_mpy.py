# Runs under the MicroPython unix port: what the MCU HAL's pilot sample costs in bytecode, per
# gun and tick; make bench's tick figure leaves it out (its guns read a model EV). Two ways:
# - the burst of 64 paced ADC reads (evse/hal/mcu.py; the ESP32, and the RP2040's fallback): the
#   pacing's sleeps skipped, since on a board each turn of its loop takes longer than the pacing
#   step anyway, so the loop's own cost is what the CPU spends;
# - the RP2040's reads in step with the PWM (evse/hal/rp2.py): its slice's counter is a model
#   here (Slice) on a virtual clock that each register read moves on by READ_US and each sleep by
#   what it sleeps. The sleeps are reported apart: on the RP2040 sleep_us waits busy, so they are
#   CPU time too, but at the chip's own speed, not scaled.
# The HAL runs on tests/fakes' machine with each ADC read a C call, as ADC.read_u16 is on a board.
import json
import sys
import time

ROOT = "/".join(__file__.split("/")[:-2]) or "."
sys.path.insert(0, ROOT + "/tests/fakes")

import machine  # noqa: E402  (tests/fakes: it records, the HAL drives)
from evse.hal import mcu  # noqa: E402
from evse.hal import rp2  # noqa: E402
from evse.hal.rp2 import Hal  # noqa: E402

SAMPLES = 2000
CHARGING_DUTY_PM = 267   # 16 A: PWM running, the burst's case
READ_US = 30             # the model clock's step per register read: bytecode at RP2040 speed


class NoSleep:
    """time for the HAL: the real ticks, the sleeps skipped."""
    ticks_us = time.ticks_us
    ticks_ms = time.ticks_ms
    ticks_add = time.ticks_add
    ticks_diff = time.ticks_diff

    @staticmethod
    def sleep_us(us):
        pass

    @staticmethod
    def sleep_ms(ms):
        pass


class Slice:
    """machine.mem32 of an RP2040 for the HAL: CHIP_ID, and slice 1's CTR, CC and TOP, the
    counter running on `us`, the virtual clock."""
    SPAN = 64516         # TOP + 1 at 1 kHz from 125 MHz, as the rp2 port sets it

    def __init__(self):
        self.us = 0
        self.slept_us = 0
        self.cc = 0

    def __getitem__(self, addr):
        reg = addr & 0xFF
        if addr == 0x40000000:
            return 0x20002927
        if reg == 0x14 + 8:
            self.us += READ_US
            return self.us % 1000 * self.SPAN // 1000
        if reg == 0x14 + 12:
            return self.cc | self.cc << 16
        return self.SPAN - 1

    def sleep_us(self, us):
        self.us += us
        self.slept_us += us

    def ticks_us(self):
        return self.us

    @staticmethod
    def ticks_diff(a, b):
        return a - b


with open(ROOT + "/boards/rp2040-pico.json") as f:
    board = json.load(f)
hal = Hal(board)
mcu.time = NoSleep
machine.record_reads = False
hal.set_pilot(1, CHARGING_DUTY_PM)
hal._read = len                       # a C call per read, as ADC.read_u16
hal._pilot_adc[0] = b"\x00" * 40000   # len() of it: a plateau in range

start = time.ticks_us()
for _ in range(SAMPLES):
    hal.sample_pilot(1)
burst_us = time.ticks_diff(time.ticks_us(), start) / SAMPLES

regs = Slice()
rp2.mem32 = regs
rp2.time = regs
regs.cc = CHARGING_DUTY_PM * Slice.SPAN // 1000
hal._synced = True
hal.set_pilot(1, CHARGING_DUTY_PM)
hal.sample_pilot(1)   # the first sample waits out the duty change; the tick's 20 ms later do not
regs.slept_us = 0
calls = [0]


def counted(adc):
    calls[0] += 1
    return len(adc)


hal._read = counted
start = time.ticks_us()
for _ in range(SAMPLES):
    hal.sample_pilot(1)
synced_us = time.ticks_diff(time.ticks_us(), start) / SAMPLES
print(json.dumps({"pilot_sample_us": round(burst_us, 1), "pilot_synced_us": round(synced_us, 1),
                  "pilot_synced_reads": round(calls[0] / SAMPLES, 2),
                  "pilot_synced_wait_us": round(regs.slept_us / SAMPLES)}))
