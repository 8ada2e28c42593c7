# The emulated `network` of an ESP32 or a Pico W (its CYW43): a WLAN station that joins the
# virtual board's access point.
# It is up once `connect()` was asked (any SSID: the virtual board has one access point) while the
# board's network link is up (the rig's `net` op cuts it).
import link

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010

_state = {"active": False, "ssid": None}


class WLAN:
    def __init__(self, interface=STA_IF):
        if interface not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface

    def active(self, on=None):
        if on is None:
            return _state["active"]
        _state["active"] = bool(on)
        if not on:
            _state["ssid"] = None
        return None

    def connect(self, ssid=None, key=None, **kw):
        if not _state["active"]:
            raise OSError("Wifi Not Started")
        _state["ssid"] = ssid

    def disconnect(self):
        _state["ssid"] = None

    def isconnected(self):
        return bool(_state["active"] and _state["ssid"] and link.ask(b"n\n")[:1] == b"1")

    def status(self, *args):
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE

    def ifconfig(self, *args):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kw):
        return None
