# The emulated `ds18x20` driver with the DS18B20 sensors the board has on its 1-Wire bus, as the
# front end models them: scan() lists their ROMs; convert_temp() starts a conversion on all of
# them; read_temp(rom) gives the last finished conversion (85.0, the power-on value, before the
# first one finishes after 750 ms), and raises for a sensor that does not answer.
import time

import link
from onewire import OneWireError

_CONVERT_MS = 750
_POWER_ON_C = 85.0


def _bus():
    out = []
    for token in link.ask(b"T\n").split():
        rom, _, celsius = token.partition(b":")
        out.append((bytes.fromhex(rom.decode()) if hasattr(bytes, "fromhex") else _unhex(rom),
                    None if celsius == b"-" else float(celsius)))
    return out


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire
        self._started_ms = None
        self._done = {}  # rom -> celsius of the last finished conversion

    def scan(self):
        return [bytearray(rom) for rom, _ in _bus()]

    def convert_temp(self):
        self._finish()
        bus = _bus()
        if not bus:
            raise OneWireError
        self._started_ms = time.ticks_ms()
        self._taking = dict(bus)

    def _finish(self):
        if self._started_ms is not None and time.ticks_diff(time.ticks_ms(), self._started_ms) >= _CONVERT_MS:
            self._done.update(self._taking)
            self._started_ms = None

    def read_temp(self, rom):
        self._finish()
        rom = bytes(rom)
        answers = dict(_bus())
        if rom not in answers or answers[rom] is None:
            raise Exception("CRC error")  # no answer reads as all ones: the scratchpad CRC fails
        return self._done.get(rom, _POWER_ON_C)
