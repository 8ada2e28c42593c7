# Stand-in for micropython-lib's `ds18x20` driver. The test lists the sensors on the bus in
# `roms` (scan order) and their temperatures in `temps_c` (rom -> float, or an exception to
# raise, as a CRC error or a missing answer would). A read records whether the last conversion
# had had its 750 ms; reading earlier would return the previous result on a real sensor.
import machine

CONVERT_US = 750000
roms = []
temps_c = {}
_started_us = [None]


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire

    def scan(self):
        machine.calls.append(("DS18X20.scan",))
        return list(roms)

    def convert_temp(self):
        _started_us[0] = machine.clock.now_us
        machine.calls.append(("DS18X20.convert_temp",))

    def read_temp(self, rom):
        started = _started_us[0]
        ready = started is not None and machine.clock.now_us - started >= CONVERT_US
        machine.calls.append(("DS18X20.read_temp", rom, ready))
        t = temps_c[rom]
        if isinstance(t, Exception):
            raise t
        return t
