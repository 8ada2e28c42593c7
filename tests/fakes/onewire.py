# Stand-in for MicroPython's `onewire`: only the bus object the DS18X20 driver takes.
import machine


class OneWireError(Exception):
    pass


class OneWire:
    def __init__(self, pin):
        self.pin = pin
        machine.calls.append(("OneWire", pin.id))
