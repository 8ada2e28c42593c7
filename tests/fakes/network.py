# Stand-in for MicroPython's `network`: a WLAN whose link state the test sets.
import machine

STA_IF = 0
AP_IF = 1
connected = False


class WLAN:
    def __init__(self, interface=STA_IF):
        machine.calls.append(("WLAN", interface))

    def isconnected(self):
        return connected

    def active(self, on=None):
        machine.calls.append(("WLAN.active", on))

    def connect(self, ssid=None, key=None):
        machine.calls.append(("WLAN.connect", ssid, key))
