# OCPP 1.6 configuration keys: ONE table, the source of truth for every key's type, default,
# access, reboot need and range (OCPP 1.6 section 9; SecurityProfile and AuthorizationKey from
# "Improved security for OCPP 1.6-J"; our vendor keys last). Values a CSMS or an operator changed
# live in ocpp.json under root; everything else is the table's default.
from micropython import const

from evse import store

KEYS_FILE = "ocpp.json"

# Types
_BOOL = const(0)
_INT = const(1)
_MEASURANDS = const(2)  # CSL of measurands, bounded by the MaxLength key named in the table
_TEXT = const(3)        # read-only text or a read-only CSL
_PHASES = const(4)      # CSL of [<connector>.]<rotation>, OCPP 1.6 section 9.1 ConnectorPhaseRotation
_HEX = const(5)         # hexadecimal secret of lo..hi characters
_CFG = const(6)         # the controller's setting named as default (config.json): the console's too

# Flags
_RO = const(1)
_REBOOT = const(2)      # stored at once, takes effect at the next boot: ChangeConfiguration says RebootRequired
_WRITE_ONLY = const(4)  # never read back by GetConfiguration, never printed

# name: (type, flags, default, lo, hi, unit). For _MEASURANDS `lo` names the MaxLength key;
# None as default means "from the charge point" (see Keys.__init__).
KEYS = {
    # Core profile
    "AllowOfflineTxForUnknownId": (_BOOL, 0, False, None, None, ""),
    "AuthorizationCacheEnabled": (_BOOL, 0, True, None, None, ""),
    "AuthorizeRemoteTxRequests": (_BOOL, 0, False, None, None, ""),
    "ClockAlignedDataInterval": (_INT, 0, 0, 0, 86400, "s"),  # 0: no clock-aligned data
    "ConnectionTimeOut": (_INT, 0, 60, 1, 3600, "s"),
    "ConnectorPhaseRotation": (_PHASES, 0, "Unknown", None, None, ""),
    "GetConfigurationMaxKeys": (_INT, _RO, 50, None, None, ""),
    "HeartbeatInterval": (_INT, 0, 300, 1, 86400, "s"),
    "LocalAuthorizeOffline": (_BOOL, 0, True, None, None, ""),
    "LocalPreAuthorize": (_BOOL, 0, False, None, None, ""),
    "MeterValuesAlignedData": (_MEASURANDS, 0, ("Energy.Active.Import.Register",), "MeterValuesAlignedDataMaxLength", None, ""),
    "MeterValuesAlignedDataMaxLength": (_INT, _RO, 8, None, None, ""),
    "MeterValuesSampledData": (_MEASURANDS, 0, ("Energy.Active.Import.Register",), "MeterValuesSampledDataMaxLength", None, ""),
    "MeterValuesSampledDataMaxLength": (_INT, _RO, 8, None, None, ""),
    "MeterValueSampleInterval": (_INT, 0, 60, 0, 3600, "s"),  # 0: no sampled data
    "NumberOfConnectors": (_INT, _RO, None, None, None, ""),
    "ResetRetries": (_INT, 0, 3, 0, 10, "times"),
    "StopTransactionOnEVSideDisconnect": (_BOOL, 0, True, None, None, ""),
    "StopTransactionOnInvalidId": (_BOOL, 0, True, None, None, ""),
    "StopTxnAlignedData": (_MEASURANDS, 0, (), "StopTxnAlignedDataMaxLength", None, ""),
    "StopTxnAlignedDataMaxLength": (_INT, _RO, 8, None, None, ""),
    "StopTxnSampledData": (_MEASURANDS, 0, (), "StopTxnSampledDataMaxLength", None, ""),
    "StopTxnSampledDataMaxLength": (_INT, _RO, 8, None, None, ""),
    "SupportedFeatureProfiles": (_TEXT, _RO, "Core,FirmwareManagement,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging", None, None, ""),
    "TransactionMessageAttempts": (_INT, 0, 5, 1, 100, "times"),
    "TransactionMessageRetryInterval": (_INT, 0, 60, 1, 86400, "s"),
    "UnlockConnectorOnEVSideDisconnect": (_BOOL, 0, True, None, None, ""),
    "WebSocketPingInterval": (_INT, 0, 60, 0, 86400, "s"),  # 0: no pings
    # LocalAuthListManagement profile
    "LocalAuthListEnabled": (_BOOL, 0, True, None, None, ""),
    "LocalAuthListMaxLength": (_INT, _RO, 1000, None, None, ""),
    "SendLocalListMaxLength": (_INT, _RO, 30, None, None, ""),
    # Reservation profile
    "ReserveConnectorZeroSupported": (_BOOL, _RO, False, None, None, ""),
    # SmartCharging profile
    "ChargeProfileMaxStackLevel": (_INT, _RO, 8, None, None, ""),
    "ChargingScheduleAllowedChargingRateUnit": (_TEXT, _RO, "Current,Power", None, None, ""),
    "ChargingScheduleMaxPeriods": (_INT, _RO, 24, None, None, ""),
    "MaxChargingProfilesInstalled": (_INT, _RO, 8, None, None, ""),
    # Security whitepaper: the Basic Auth password (16..20 bytes as 32..40 hex digits), and the
    # profile, which may only be raised (3: TLS with this charge point's certificate, ocpp_cert).
    "AuthorizationKey": (_HEX, _WRITE_ONLY, "", 32, 40, ""),
    "SecurityProfile": (_INT, 0, 0, 0, 3, ""),
    "CertificateStoreMaxLength": (_INT, _RO, 4, None, None, ""),   # evse.ocpp.certs.MAX_CERTS
    "AdditionalRootCertificateCheck": (_BOOL, _RO, False, None, None, ""),
    # Vendor keys
    # A transaction a reboot interrupted: true resumes it, false stops it with reason PowerLoss.
    "ResumeTransactionOnBoot": (_BOOL, 0, False, None, None, ""),
    "JournalMaxEntries": (_INT, _REBOOT, 1000, 16, 2000, "messages"),
    # The site's budget (docs/grid.md): the controller's own settings, one value whether the
    # console or the central system reads or sets it. The Grid keys only on a board with a grid
    # meter (Keys.mirror).
    "SiteLimitA": (_CFG, 0, "site_limit_a", None, None, "A"),
    "GridLimitA": (_CFG, 0, "grid_limit_a", None, None, "A"),
    "GridMarginA": (_CFG, 0, "grid_margin_a", None, None, "A"),
    "GridFallbackA": (_CFG, 0, "grid_fallback_a", None, None, "A"),
    "GridStaleS": (_CFG, 0, "grid_stale_s", None, None, "s"),
    # A site bus (docs/site.md): the coordinator's fallback for the whole site, a node's patience.
    "SiteFallbackA": (_CFG, 0, "site_fallback_a", None, None, "A"),
    "SiteLostS": (_CFG, 0, "site_lost_s", None, None, "s"),
}

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


def canonical(name):
    """The table's spelling of `name` (key names are CiString50: case-insensitive), or None."""
    if name in KEYS:
        return name
    if isinstance(name, str):
        low = name.lower()
        for key in KEYS:
            if key.lower() == low:
                return key
    return None


def text(name, value):
    """A typed value as GetConfiguration shows it."""
    kind = KEYS[name][0]
    if kind == _BOOL:
        return "true" if value else "false"
    if kind == _MEASURANDS:
        return ",".join(value)
    return str(value)


class Keys:
    """The charge point's configuration. `change` answers ChangeConfiguration; when it rejects a
    value, `last_error` says why (naming the key and what is allowed, never echoing a secret).
    on_change(name, value) runs after a change took effect (not for RebootRequired keys): the
    charge point re-reads HeartbeatInterval, reconnects for SecurityProfile or AuthorizationKey
    (whose value it must never print), and so on."""

    def __init__(self, root="/", connectors=1, on_change=None, check=None):
        self.path = store.join(root, KEYS_FILE)
        self.connectors = connectors
        self.on_change = on_change
        self.check = check   # check(name, value): why the charge point cannot take it, or None
        self.cfg = None      # the controller's settings behind the _CFG keys (mirror)
        self._mirrored = ()
        self.last_error = ""
        self.values = {}
        stored = store.read_json(self.path, {})
        if not isinstance(stored, dict):
            print("ocpp: %s does not hold an object; using defaults" % self.path)
            stored = {}
        for name in stored:
            key = canonical(name)
            if key is None or KEYS[key][1] & _RO or KEYS[key][0] == _CFG:
                print("ocpp: ignoring stored key '%s': not a writable key" % name)
                continue
            try:
                self.values[key] = self.parse(key, text(key, stored[name]))
            except (ValueError, TypeError) as e:
                print("ocpp: ignoring stored value: %s" % e)

    def mirror(self, cfg, names):
        """The _CFG keys in `names` read and set the controller's settings `cfg` (evse.config);
        the others are not this charge point's (unknown to GetConfiguration, NotSupported)."""
        self.cfg = cfg
        self._mirrored = names if cfg is not None else ()

    def _known(self, name):
        key = canonical(name)
        if key is not None and KEYS[key][0] == _CFG and key not in self._mirrored:
            return None
        return key

    def default(self, name):
        if name == "NumberOfConnectors":
            return self.connectors
        return KEYS[name][2]

    def get(self, name):
        key = self._known(name)
        if key is None:
            raise KeyError("unknown OCPP key '%s'" % name)
        if KEYS[key][0] == _CFG:
            return self.cfg.get(KEYS[key][2])
        if key in self.values:
            return self.values[key]
        return self.default(key)

    def parse(self, name, value_text):
        """The typed value of `value_text` for key `name`; ValueError naming the key and the
        allowed values when it does not fit."""
        kind, _, _, lo, hi, unit = KEYS[name]
        value_text = value_text.strip()
        if kind == _BOOL:
            low = value_text.lower()
            if low not in ("true", "false"):
                raise ValueError("%s must be true or false, not '%s'" % (name, value_text))
            return low == "true"
        if kind == _INT:
            digits = value_text[1:] if value_text[:1] == "-" else value_text
            if not digits.isdigit():
                raise ValueError("%s must be a whole number %d..%d %s, not '%s'" % (name, lo, hi, unit, value_text))
            value = int(value_text)
            if lo is not None and not lo <= value <= hi:
                raise ValueError("%s = %d is out of range: allowed %d..%d %s" % (name, value, lo, hi, unit))
            return value
        if kind == _MEASURANDS:
            items = tuple(s.strip() for s in value_text.split(",")) if value_text else ()
            known = MEASURANDS.split(",")
            for item in items:
                if item not in known:
                    raise ValueError("%s: '%s' is not an OCPP 1.6 measurand; use any of %s" % (name, item, ", ".join(known)))
            most = self.get(lo)
            if len(items) > most:
                raise ValueError("%s lists %d measurands; at most %d (%s)" % (name, len(items), most, lo))
            return items
        if kind == _PHASES:
            items = [s.strip() for s in value_text.split(",")]
            for item in items:
                parts = item.split(".")
                rotation = parts[-1]
                connector = parts[0] if len(parts) == 2 else "0"
                if len(parts) > 2 or rotation not in ROTATIONS or not (connector.isdigit() and int(connector) <= self.connectors):
                    raise ValueError("%s: '%s' must be [connector 0..%d.]rotation, rotation one of %s"
                                     % (name, item, self.connectors, ", ".join(ROTATIONS)))
            return ",".join(items)
        if kind == _HEX:
            for c in value_text:
                if c not in "0123456789abcdefABCDEF":
                    raise ValueError("%s must be hexadecimal digits only" % name)
            if len(value_text) % 2 or not lo <= len(value_text) <= hi:
                raise ValueError("%s must be %d to %d hexadecimal digits (%d to %d bytes)" % (name, lo, hi, lo // 2, hi // 2))
            return value_text
        return value_text

    def get_configuration(self, names=None):
        """GetConfiguration.conf for `names` (None or empty: every key). Write-only keys are never
        shown, not even as unknown."""
        known = []
        unknown = []
        for name in (sorted(k for k in KEYS if self._known(k)) if not names else names):
            key = self._known(name)
            if key is None:
                unknown.append(name)
            elif not KEYS[key][1] & _WRITE_ONLY:
                known.append({"key": key, "readonly": bool(KEYS[key][1] & _RO), "value": text(key, self.get(key))})
        conf = {"configurationKey": known}
        if unknown:
            conf["unknownKey"] = unknown
        return conf

    def _change_setting(self, key, value_text):
        # The controller's setting, validated and stored as the console's config set does.
        setting = KEYS[key][2]
        try:
            value = self.cfg.parse(setting, value_text.strip() if isinstance(value_text, str) else "")
            fuse = self.cfg.board["site_limit_a"]
            if setting in ("site_limit_a", "grid_limit_a") and value > fuse and value > self.cfg.get(setting):
                # The board file's site limit is the fuse: a central system may lower the budget
                # under it, only a technician at the console may raise it over.
                raise ValueError("%d A is over the board's site_limit_a %d A (its fuse); a technician can raise "
                                 "it at the console" % (value, fuse))
        except ValueError as e:   # ConfigError
            self.last_error = "%s (%s): %s" % (key, setting, e)
            return "Rejected"
        try:
            self.cfg.set(setting, value)
        except OSError as e:
            self.last_error = "%s not stored: flash write failed (%s)" % (key, e)
            return "Rejected"
        self.last_error = ""
        return "Accepted"

    def fall_back(self, name, value):
        """Stores `value` for `name` past the rules of change(): a SecurityProfile that could not
        connect goes back to the one that did (security whitepaper). OSError if not stored."""
        values = dict(self.values)
        values[name] = value
        store.write_json(self.path, values)
        self.values = values

    def change(self, name, value_text):
        """ChangeConfiguration: "Accepted", "Rejected" (read-only or bad value: see last_error),
        "RebootRequired" (stored; effective after a reboot) or "NotSupported" (unknown key)."""
        key = self._known(name)
        if key is None:
            self.last_error = "unknown key '%s'" % name
            return "NotSupported"
        if KEYS[key][0] == _CFG:
            return self._change_setting(key, value_text)
        flags = KEYS[key][1]
        if flags & _RO:
            self.last_error = "%s is read-only" % key
            return "Rejected"
        try:
            value = self.parse(key, value_text if isinstance(value_text, str) else "")
        except ValueError as e:
            self.last_error = str(e)
            return "Rejected"
        if key == "SecurityProfile":
            if value < self.get(key):
                self.last_error = "SecurityProfile can only be raised, it is %d" % self.get(key)
                return "Rejected"
            if 0 < value < 3 and not self.get("AuthorizationKey"):
                self.last_error = "SecurityProfile %d needs an AuthorizationKey: set that first" % value
                return "Rejected"
        why = self.check(key, value) if self.check else None
        if why:
            self.last_error = why
            return "Rejected"
        self.last_error = ""
        if value != self.get(key):
            values = dict(self.values)
            values[key] = value
            try:
                store.write_json(self.path, values)
            except OSError as e:
                self.last_error = "%s not stored: flash write failed (%s)" % (key, e)
                return "Rejected"
            self.values = values
            if not flags & _REBOOT and self.on_change:
                self.on_change(key, value)
        return "RebootRequired" if flags & _REBOOT else "Accepted"
