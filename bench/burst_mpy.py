# Runs under the MicroPython unix port: what the MCU HAL's pilot sample costs in bytecode, per
# gun and tick. The board reads the pilot in a paced burst of ADC reads (evse/hal/mcu.py) every
# 20 ms tick; make bench's tick figure leaves it out (its guns read a model EV). The HAL runs here
# on tests/fakes' machine with each ADC read a C call (as ADC.read_u16 is on a board) and the
# pacing's sleeps skipped: on a board each turn of the loop takes longer than the pacing step
# anyway, so the loop's own cost is what the CPU spends.
import json
import sys
import time

ROOT = "/".join(__file__.split("/")[:-2]) or "."
sys.path.insert(0, ROOT + "/tests/fakes")

import machine  # noqa: E402  (tests/fakes: it records, the HAL drives)
from evse.hal import mcu  # noqa: E402
from evse.hal.rp2 import Hal  # noqa: E402

SAMPLES = 2000
CHARGING_DUTY_PM = 267   # 16 A: PWM running, the burst's case


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
print(json.dumps({"pilot_sample_us": round(burst_us, 1)}))
