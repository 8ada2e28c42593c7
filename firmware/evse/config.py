# Board file (what the hardware is) + user configuration (what the operator chose), validated.
# One table of user keys: name -> (type, min, max, unit); what each is for, the console's help
# (evse.cli.CONFIG_HELP). Defaults come from the board.
import json

from evse import store
import evse.gun  # noqa: F401  (the tick's limits the board check uses: loaded here, not let go with the check)

BOARD_FILE = "board.json"
CONFIG_FILE = "config.json"

KEYS = {
    "site_limit_a": (int, 0, 2000, "A"),
    "gun_max_a": (int, 6, 80, "A"),
    "min_current_a": (int, 6, 32, "A"),
    "fault_retry_s": (int, 10, 86400, "s"),
    "sharing_policy": (str, 4, 8, ""),
    "priority_guns": (str, 0, 32, ""),
    "priority_tags": (str, 0, 200, ""),
    "meter_fault": (str, 4, 8, ""),
    "grid_limit_a": (int, 0, 2000, "A"),
    "grid_margin_a": (int, 0, 100, "A"),
    "grid_fallback_a": (int, 0, 2000, "A"),
    "grid_stale_s": (int, 5, 600, "s"),
    "solar_mode": (str, 2, 3, ""),
    "solar_import_w": (int, 0, 100000, "W"),
    "solar_start_s": (int, 0, 3600, "s"),
    "solar_stop_s": (int, 0, 3600, "s"),
    "phase_switch_s": (int, 10, 3600, "s"),
    "phase_switch_max": (int, 0, 20, ""),
    "site_address": (int, 0, 16, ""),
    "site_nodes": (int, 1, 15, ""),
    "site_fallback_a": (int, 0, 2000, "A"),
    "site_lost_s": (int, 3, 120, "s"),
    "name": (str, 1, 32, ""),
    "ocpp_url": (str, 0, 200, ""),
    "ocpp_id": (str, 1, 48, ""),
    "ocpp_ca": (str, 0, 64, ""),
    "ocpp_cert": (str, 0, 64, ""),
    "ocpp_key": (str, 0, 64, ""),
    "ocpp_csr": (str, 0, 64, ""),
}


CHOICES = {"sharing_policy": ("fair", "fifo", "priority"), "meter_fault": ("stop", "continue"),
           "solar_mode": ("off", "on")}


class ConfigError(ValueError):
    pass


def _check(key, value):
    kind, lo, hi, unit = KEYS[check_known(key)]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value == int(value):
                value = int(value)
            else:
                raise ConfigError("%s must be a whole number of %s between %d and %d, not %r" % (key, unit, lo, hi, value))
        if not lo <= value <= hi:
            raise ConfigError("%s = %d is out of range: allowed %d..%d %s" % (key, value, lo, hi, unit))
    elif kind is str:
        if not isinstance(value, str) or not lo <= len(value) <= hi:
            raise ConfigError("%s must be text of %d to %d characters, not %r" % (key, lo, hi, value))
        if key == "ocpp_url" and value and not (value.startswith("ws://") or value.startswith("wss://")):
            raise ConfigError("ocpp_url must start with ws:// or wss://, not %r" % value)
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError("%s must be one of %s, not %r" % (key, ", ".join(CHOICES[key]), value))
        if key == "priority_guns" and value and not all(g.isdigit() for g in value.split(",")):
            raise ConfigError("priority_guns must be gun numbers separated by commas, like 1,3; not %r" % value)
    return value


def parse_value(key, text):
    """A value typed on the console, converted to the key's type (then validated)."""
    if key in KEYS and KEYS[key][0] is int:
        try:
            return _check(key, int(text))
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError("%s must be a whole number, not '%s'" % (key, text))
    return _check(key, text)


def check_board(board):
    """Raises ConfigError naming the first bad entry of a board file; returns the board. Its
    checks load for the call and go after it (evse.boardcheck), with what they loaded: a board
    without meters does not keep evse.meters and evse.modbus for their line settings."""
    import sys
    import evse
    before = list(sys.modules)
    try:
        import evse.boardcheck
        return evse.boardcheck.check_board(board)
    finally:
        evse.unload(*[name for name in sys.modules if name.startswith("evse.") and name not in before])


class Config:
    """The board plus the user's values; `get` falls back to the board's defaults."""

    def __init__(self, board, root="/", checked=False):
        # checked: load_board's, checked already (the checks load for the check: not twice a boot)
        self.board = board if checked else check_board(board)
        self.path = store.join(root, CONFIG_FILE)
        self.values = {}
        stored = store.read_json(self.path, {})
        if not isinstance(stored, dict):
            stored = {}
        for key in stored:
            try:
                self.values[key] = self.check(key, stored[key])
            except ConfigError as e:
                # A bad stored value is ignored, not deleted: the file stays as it is.
                print("config: ignoring stored value: %s" % e)

    def defaults(self):
        b = self.board
        return {"site_limit_a": b["site_limit_a"], "gun_max_a": 80, "min_current_a": 6,
                "fault_retry_s": b.get("fault_retry_s", 60), "name": b["name"],
                "ocpp_url": "", "ocpp_id": b["name"], "ocpp_ca": "", "ocpp_cert": "", "ocpp_key": "", "ocpp_csr": "",
                "sharing_policy": "fair", "priority_guns": "", "priority_tags": "", "meter_fault": "stop",
                "grid_limit_a": b["site_limit_a"], "grid_margin_a": 2, "grid_fallback_a": 6, "grid_stale_s": 11,
                "solar_mode": "off", "solar_import_w": 0, "solar_start_s": 60, "solar_stop_s": 600,
                "phase_switch_s": 60, "phase_switch_max": 4,
                "site_address": 0, "site_nodes": 1, "site_fallback_a": 6, "site_lost_s": 10}

    def get(self, key):
        if key in self.values:
            return self.values[key]
        return self.defaults()[check_known(key)]

    def check(self, key, value):
        """The value as `set` would store it; ConfigError when the key's range or this board
        refuses it (priority_guns names guns the board has)."""
        value = _check(key, value)
        if key == "solar_mode" and value == "on" and "grid_meter" not in self.board:
            raise ConfigError("solar_mode on needs a grid meter to see what the site exports (board file grid_meter)")
        if key == "site_address" and value:
            if not isinstance(self.board.get("site_bus"), dict):
                raise ConfigError("site_address needs a site bus: the board file's site_bus names its UART")
            if self.board["kind"] != "ac":
                raise ConfigError("site_address: a site bus shares AC guns; a DC board's cabinet shares its own")
            if value > 1 and len(self.board["guns"]) > 4:
                raise ConfigError("site_address: a node has 4 guns at most on a site bus; this board has %d"
                                  % len(self.board["guns"]))
        if key == "priority_guns" and value:
            guns = len(self.board["guns"])
            for g in value.split(","):
                if not 1 <= int(g) <= guns:
                    raise ConfigError("priority_guns: this board has guns 1..%d, not %s" % (guns, g))
        return value

    def parse(self, key, text):
        """A typed value (the console's, a ChangeConfiguration's) as `set` would store it;
        ConfigError naming the key and what it takes."""
        return self.consistent(key, self.check(key, parse_value(key, text)))

    def consistent(self, key, value):
        """ConfigError when `value` for `key` would not fit the grid keys' other values: a
        fallback over the connection less its margin could overload it while the grid meter is
        silent, a margin at or over the connection leaves nothing."""
        if key == "site_fallback_a":
            room = self.get("grid_limit_a") - self.get("grid_margin_a") if "grid_meter" in self.board \
                else self.get("site_limit_a")
            if value > room:
                raise ConfigError("site_fallback_a %d is over what the connection gives the guns (%d A): the nodes "
                                  "would share more than it while they have no coordinator; set at most %d"
                                  % (value, room, max(room, 0)))
            return value
        grid = dict((k, self.get(k)) for k in ("grid_limit_a", "grid_margin_a", "grid_fallback_a"))
        if key not in grid:
            return value
        grid[key] = value
        room = grid["grid_limit_a"] - grid["grid_margin_a"]
        if grid["grid_margin_a"] and room <= 0:
            raise ConfigError("grid_margin_a %d must be below grid_limit_a %d" % (grid["grid_margin_a"], grid["grid_limit_a"]))
        if grid["grid_fallback_a"] > room:
            raise ConfigError("grid_fallback_a %d is over grid_limit_a %d less grid_margin_a %d: the guns would share more "
                              "than the connection while the grid meter is silent; %s" % (
                                  grid["grid_fallback_a"], grid["grid_limit_a"], grid["grid_margin_a"],
                                  "lower grid_fallback_a first" if key != "grid_fallback_a" else "set at most %d" % max(room, 0)))
        return value

    def set(self, key, value):
        value = self.consistent(key, self.check(key, value))
        values = dict(self.values)
        values[key] = value
        store.write_json(self.path, values)
        self.values = values
        return value

    def reset(self, key):
        """Back to the board's default."""
        check_known(key)
        if key in self.values:
            values = dict(self.values)
            del values[key]
            store.write_json(self.path, values)
            self.values = values


def check_known(key):
    if key not in KEYS:
        raise ConfigError("unknown config key '%s'; known keys: %s" % (key, ", ".join(sorted(KEYS))))
    return key


def load_board(root="/"):
    path = store.join(root, BOARD_FILE)
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("no %s on flash: copy your board's file from boards/ there (see README)" % path)
    try:
        board = json.loads(text)
    except ValueError as e:
        raise ConfigError("%s does not parse as JSON (%s): fix it or copy the board file again" % (path, e))
    if isinstance(board, dict):
        board.pop("hardware", None)   # what the board is, for the host tools: no heap spent on it here
    return check_board(board)
