# The WLAN station of a board that has one: the ESP32's, and the Pico W's (its CYW43 chip; the
# same `network.WLAN` on MicroPython's rp2 port). Joined from wifi.json ({"ssid": ...,
# "password": ...}, never printed); without that file the network is left to whatever set it up.
# A lost link is asked for again every RETRY_MS, never spun on.
import time

import network
from micropython import const

from evse import store

WIFI_FILE = "/wifi.json"
RETRY_MS = const(10000)


class Station:
    def __init__(self):
        self._wlan = None  # type: network.WLAN | None
        self._wifi = {}  # type: dict
        self._asked = False
        self._tried_ms = time.ticks_ms()  # when the WLAN was last asked to join

    def up(self):  # type: () -> bool
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
            wifi = store.read_json(WIFI_FILE, {})
            self._wifi = wifi if isinstance(wifi, dict) else {}
        if self._wlan.isconnected():
            return True
        ssid = self._wifi.get("ssid")
        now = time.ticks_ms()
        if ssid and (not self._asked or time.ticks_diff(now, self._tried_ms) >= RETRY_MS):
            self._asked = True
            self._tried_ms = now
            try:
                self._wlan.active(True)
                self._wlan.connect(ssid, self._wifi.get("password", ""))
            except OSError as e:
                print("wifi: cannot join %s: %s" % (ssid, e))
        return False
