# Checking and changing the OCPP configuration keys (evse.ocpp.keys holds their table and
# values): ChangeConfiguration, GetConfiguration, and ocpp.json's values at boot. Keys loads this
# module for such a call and lets it go after (Keys._keyset): a board holds .mpy code in its heap.
from evse import store
from evse.ocpp.keys import (BOOL, CFG, HEX, INT, KEYS, MEASURANDS_CSL, PHASES, REBOOT, RO, WRITE_ONLY,
                            canonical, text)

# OCPP 1.6 Measurand enumeration, one string: a tuple of them held 22 str objects in the heap
# of every board with OCPP, for the rare ChangeConfiguration that names measurands.
MEASURANDS = ("Current.Export,Current.Import,Current.Offered,Energy.Active.Export.Register,"
              "Energy.Active.Import.Register,Energy.Reactive.Export.Register,"
              "Energy.Reactive.Import.Register,Energy.Active.Export.Interval,"
              "Energy.Active.Import.Interval,Energy.Reactive.Export.Interval,"
              "Energy.Reactive.Import.Interval,Frequency,Power.Active.Export,Power.Active.Import,"
              "Power.Factor,Power.Offered,Power.Reactive.Export,Power.Reactive.Import,RPM,"
              "SoC,Temperature,Voltage")
ROTATIONS = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")


def load(keys, stored):
    """The values ocpp.json holds (`stored`, as read), each checked as a change would be: what
    is not a writable key's or does not fit is said and left out."""
    for name in stored:
        key = canonical(name)
        if key is None or KEYS[key][1] & RO or KEYS[key][0] == CFG:
            print("ocpp: ignoring stored key '%s': not a writable key" % name)
            continue
        try:
            keys.values[key] = parse(keys, key, text(key, stored[name]))
        except (ValueError, TypeError) as e:
            print("ocpp: ignoring stored value: %s" % e)


def parse(keys, name, value_text):
    """The typed value of `value_text` for key `name`; ValueError naming the key and the
    allowed values when it does not fit."""
    kind, _, _, lo, hi, unit = KEYS[name]
    if name == "JournalMaxEntries":
        hi = min(hi, keys.journal_max)   # the board's heap
    value_text = value_text.strip()
    if kind == BOOL:
        low = value_text.lower()
        if low not in ("true", "false"):
            raise ValueError("%s must be true or false, not '%s'" % (name, value_text))
        return low == "true"
    if kind == INT:
        digits = value_text[1:] if value_text[:1] == "-" else value_text
        if not digits.isdigit():
            raise ValueError("%s must be a whole number %d..%d %s, not '%s'" % (name, lo, hi, unit, value_text))
        value = int(value_text)
        if lo is not None and not lo <= value <= hi:
            raise ValueError("%s = %d is out of range: allowed %d..%d %s" % (name, value, lo, hi, unit))
        return value
    if kind == MEASURANDS_CSL:
        items = tuple(s.strip() for s in value_text.split(",")) if value_text else ()
        known = MEASURANDS.split(",")
        for item in items:
            if item not in known:
                raise ValueError("%s: '%s' is not an OCPP 1.6 measurand; use any of %s" % (name, item, ", ".join(known)))
        most = keys.get(lo)
        if len(items) > most:
            raise ValueError("%s lists %d measurands; at most %d (%s)" % (name, len(items), most, lo))
        return items
    if kind == PHASES:
        items = [s.strip() for s in value_text.split(",")]
        for item in items:
            parts = item.split(".")
            rotation = parts[-1]
            connector = parts[0] if len(parts) == 2 else "0"
            if len(parts) > 2 or rotation not in ROTATIONS or not (connector.isdigit() and int(connector) <= keys.connectors):
                raise ValueError("%s: '%s' must be [connector 0..%d.]rotation, rotation one of %s"
                                 % (name, item, keys.connectors, ", ".join(ROTATIONS)))
        return ",".join(items)
    if kind == HEX:
        for c in value_text:
            if c not in "0123456789abcdefABCDEF":
                raise ValueError("%s must be hexadecimal digits only" % name)
        if len(value_text) % 2 or not lo <= len(value_text) <= hi:
            raise ValueError("%s must be %d to %d hexadecimal digits (%d to %d bytes)" % (name, lo, hi, lo // 2, hi // 2))
        return value_text
    return value_text


def get_configuration(keys, names=None):
    """GetConfiguration.conf for `names` (None or empty: every key). Write-only keys are never
    shown, not even as unknown."""
    known = []
    unknown = []
    for name in (sorted(k for k in KEYS if keys.known(k)) if not names else names):
        key = keys.known(name)
        if key is None:
            unknown.append(name)
        elif not KEYS[key][1] & WRITE_ONLY:
            known.append({"key": key, "readonly": bool(KEYS[key][1] & RO), "value": text(key, keys.get(key))})
    conf = {"configurationKey": known}
    if unknown:
        conf["unknownKey"] = unknown
    return conf


def _change_setting(keys, key, value_text):
    # The controller's setting, validated and stored as the console's config set does.
    setting = KEYS[key][2]
    try:
        value = keys.cfg.parse(setting, value_text.strip() if isinstance(value_text, str) else "")
        fuse = keys.cfg.board["site_limit_a"]
        if setting in ("site_limit_a", "grid_limit_a") and value > fuse and value > keys.cfg.get(setting):
            # The board file's site limit is the fuse: a central system may lower the budget
            # under it, only a technician at the console may raise it over.
            raise ValueError("%d A is over the board's site_limit_a %d A (its fuse); a technician can raise "
                             "it at the console" % (value, fuse))
    except ValueError as e:   # ConfigError
        keys.last_error = "%s (%s): %s" % (key, setting, e)
        return "Rejected"
    try:
        keys.cfg.set(setting, value)
    except OSError as e:
        keys.last_error = "%s not stored: flash write failed (%s)" % (key, e)
        return "Rejected"
    keys.last_error = ""
    return "Accepted"


def change(keys, name, value_text):
    """ChangeConfiguration: "Accepted", "Rejected" (read-only or bad value: see last_error),
    "RebootRequired" (stored; effective after a reboot) or "NotSupported" (unknown key)."""
    key = keys.known(name)
    if key is None:
        keys.last_error = "unknown key '%s'" % name
        return "NotSupported"
    if KEYS[key][0] == CFG:
        return _change_setting(keys, key, value_text)
    flags = KEYS[key][1]
    if flags & RO:
        keys.last_error = "%s is read-only" % key
        return "Rejected"
    try:
        value = parse(keys, key, value_text if isinstance(value_text, str) else "")
    except ValueError as e:
        keys.last_error = str(e)
        return "Rejected"
    if key == "SecurityProfile":
        if value < keys.get(key):
            keys.last_error = "SecurityProfile can only be raised, it is %d" % keys.get(key)
            return "Rejected"
        if 0 < value < 3 and not keys.get("AuthorizationKey"):
            keys.last_error = "SecurityProfile %d needs an AuthorizationKey: set that first" % value
            return "Rejected"
    why = keys.check(key, value) if keys.check else None
    if why:
        keys.last_error = why
        return "Rejected"
    keys.last_error = ""
    if value != keys.get(key):
        values = dict(keys.values)
        values[key] = value
        try:
            store.write_json(keys.path, values)
        except OSError as e:
            keys.last_error = "%s not stored: flash write failed (%s)" % (key, e)
            return "Rejected"
        keys.values = values
        if not flags & REBOOT and keys.on_change:
            keys.on_change(key, value)
    return "RebootRequired" if flags & REBOOT else "Accepted"
