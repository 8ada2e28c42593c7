# The emulated ESP32's `onewire`: the bus object on a pin. The DS18B20s on it are the board's
# (host_tools/sim/frontend.py); `ds18x20` here talks to them through the front end.
import machine


class OneWireError(Exception):
    pass


class OneWire:
    def __init__(self, pin):
        if not isinstance(pin, machine.Pin):
            raise TypeError("OneWire needs a machine.Pin")
        self.pin = pin

    def reset(self, required=False):
        import link
        present = bool(link.ask(b"T\n").split())
        if required and not present:
            raise OneWireError
        return present
