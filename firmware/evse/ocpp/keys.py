# OCPP 1.6 configuration keys: ONE table, the source of truth for every key's type, default,
# access, reboot need and range (OCPP 1.6 section 9; SecurityProfile and AuthorizationKey from
# "Improved security for OCPP 1.6-J"; our vendor keys last). Values a CSMS or an operator changed
# live in ocpp.json under root; everything else is the table's default.
from micropython import const

import evse
from evse import store

KEYS_FILE = "ocpp.json"

# Types
BOOL = const(0)
INT = const(1)
MEASURANDS_CSL = const(2)  # CSL of measurands, bounded by the MaxLength key named in the table
TEXT = const(3)        # read-only text or a read-only CSL
PHASES = const(4)      # CSL of [<connector>.]<rotation>, OCPP 1.6 section 9.1 ConnectorPhaseRotation
HEX = const(5)         # hexadecimal secret of lo..hi characters
CFG = const(6)         # the controller's setting named as default (config.json): the console's too

# Flags
RO = const(1)
REBOOT = const(2)      # stored at once, takes effect at the next boot: ChangeConfiguration says RebootRequired
WRITE_ONLY = const(4)  # never read back by GetConfiguration, never printed

# name: (type, flags, default, lo, hi, unit). For MEASURANDS_CSL `lo` names the MaxLength key;
# None as default means "from the charge point" (see Keys.__init__).
KEYS = {
    # Core profile
    "AllowOfflineTxForUnknownId": (BOOL, 0, False, None, None, ""),
    "AuthorizationCacheEnabled": (BOOL, 0, True, None, None, ""),
    "AuthorizeRemoteTxRequests": (BOOL, 0, False, None, None, ""),
    "ClockAlignedDataInterval": (INT, 0, 0, 0, 86400, "s"),  # 0: no clock-aligned data
    "ConnectionTimeOut": (INT, 0, 60, 1, 3600, "s"),
    "ConnectorPhaseRotation": (PHASES, 0, "Unknown", None, None, ""),
    "GetConfigurationMaxKeys": (INT, RO, 50, None, None, ""),
    "HeartbeatInterval": (INT, 0, 300, 1, 86400, "s"),
    "LocalAuthorizeOffline": (BOOL, 0, True, None, None, ""),
    "LocalPreAuthorize": (BOOL, 0, False, None, None, ""),
    "MeterValuesAlignedData": (MEASURANDS_CSL, 0, ("Energy.Active.Import.Register",), "MeterValuesAlignedDataMaxLength", None, ""),
    "MeterValuesAlignedDataMaxLength": (INT, RO, 8, None, None, ""),
    "MeterValuesSampledData": (MEASURANDS_CSL, 0, ("Energy.Active.Import.Register",), "MeterValuesSampledDataMaxLength", None, ""),
    "MeterValuesSampledDataMaxLength": (INT, RO, 8, None, None, ""),
    "MeterValueSampleInterval": (INT, 0, 60, 0, 3600, "s"),  # 0: no sampled data
    "NumberOfConnectors": (INT, RO, None, None, None, ""),
    "ResetRetries": (INT, 0, 3, 0, 10, "times"),
    "StopTransactionOnEVSideDisconnect": (BOOL, 0, True, None, None, ""),
    "StopTransactionOnInvalidId": (BOOL, 0, True, None, None, ""),
    "StopTxnAlignedData": (MEASURANDS_CSL, 0, (), "StopTxnAlignedDataMaxLength", None, ""),
    "StopTxnAlignedDataMaxLength": (INT, RO, 8, None, None, ""),
    "StopTxnSampledData": (MEASURANDS_CSL, 0, (), "StopTxnSampledDataMaxLength", None, ""),
    "StopTxnSampledDataMaxLength": (INT, RO, 8, None, None, ""),
    "SupportedFeatureProfiles": (TEXT, RO, "Core,FirmwareManagement,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging", None, None, ""),
    "TransactionMessageAttempts": (INT, 0, 5, 1, 100, "times"),
    "TransactionMessageRetryInterval": (INT, 0, 60, 1, 86400, "s"),
    "UnlockConnectorOnEVSideDisconnect": (BOOL, 0, True, None, None, ""),
    "WebSocketPingInterval": (INT, 0, 60, 0, 86400, "s"),  # 0: no pings
    # LocalAuthListManagement profile
    "LocalAuthListEnabled": (BOOL, 0, True, None, None, ""),
    "LocalAuthListMaxLength": (INT, RO, 1000, None, None, ""),
    "SendLocalListMaxLength": (INT, RO, 20, None, None, ""),
    # Reservation profile
    "ReserveConnectorZeroSupported": (BOOL, RO, False, None, None, ""),
    # SmartCharging profile
    "ChargeProfileMaxStackLevel": (INT, RO, 8, None, None, ""),
    "ChargingScheduleAllowedChargingRateUnit": (TEXT, RO, "Current,Power", None, None, ""),
    "ChargingScheduleMaxPeriods": (INT, RO, 24, None, None, ""),
    "MaxChargingProfilesInstalled": (INT, RO, 8, None, None, ""),
    # Security whitepaper: the Basic Auth password (16..20 bytes as 32..40 hex digits), and the
    # profile, which may only be raised (3: TLS with this charge point's certificate, ocpp_cert).
    "AuthorizationKey": (HEX, WRITE_ONLY, "", 32, 40, ""),
    "SecurityProfile": (INT, 0, 0, 0, 3, ""),
    "CertificateStoreMaxLength": (INT, RO, 4, None, None, ""),   # evse.ocpp.certs.MAX_CERTS
    "AdditionalRootCertificateCheck": (BOOL, RO, False, None, None, ""),
    # Vendor keys
    # A transaction a reboot interrupted: true resumes it, false stops it with reason PowerLoss.
    "ResumeTransactionOnBoot": (BOOL, 0, False, None, None, ""),
    "JournalMaxEntries": (INT, REBOOT, 1000, 16, 2000, "messages"),
    # The site's budget (docs/grid.md): the controller's own settings, one value whether the
    # console or the central system reads or sets it. The Grid keys only on a board with a grid
    # meter (Keys.mirror).
    "SiteLimitA": (CFG, 0, "site_limit_a", None, None, "A"),
    "GridLimitA": (CFG, 0, "grid_limit_a", None, None, "A"),
    "GridMarginA": (CFG, 0, "grid_margin_a", None, None, "A"),
    "GridFallbackA": (CFG, 0, "grid_fallback_a", None, None, "A"),
    "GridStaleS": (CFG, 0, "grid_stale_s", None, None, "s"),
    # A site bus (docs/site.md): the coordinator's fallback for the whole site, a node's patience.
    "SiteFallbackA": (CFG, 0, "site_fallback_a", None, None, "A"),
    "SiteLostS": (CFG, 0, "site_lost_s", None, None, "s"),
}

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
    if kind == BOOL:
        return "true" if value else "false"
    if kind == MEASURANDS_CSL:
        return ",".join(value)
    return str(value)


class Keys:
    """The charge point's configuration. `change` answers ChangeConfiguration; when it rejects a
    value, `last_error` says why (naming the key and what is allowed, never echoing a secret).
    on_change(name, value) runs after a change took effect (not for RebootRequired keys): the
    charge point re-reads HeartbeatInterval, reconnects for SecurityProfile or AuthorizationKey
    (whose value it must never print), and so on."""

    def __init__(self, root="/", connectors=1, on_change=None, check=None, journal_max=2000):
        self.path = store.join(root, KEYS_FILE)
        self.connectors = connectors
        # The board's bound on JournalMaxEntries (board file journal_max_entries): its journal's
        # index, 9 bytes a message, is allocated whole at boot; also the default when lower.
        self.journal_max = journal_max
        self.on_change = on_change
        self.check = check   # check(name, value): why the charge point cannot take it, or None
        self.cfg = None      # the controller's settings behind the CFG keys (mirror)
        self._mirrored = ()
        self.last_error = ""
        self.values = {}
        stored = store.read_json(self.path, {})
        if not isinstance(stored, dict):
            print("ocpp: %s does not hold an object; using defaults" % self.path)
            stored = {}
        if stored:
            self._keyset("load", stored)

    def mirror(self, cfg, names):
        """The CFG keys in `names` read and set the controller's settings `cfg` (evse.config);
        the others are not this charge point's (unknown to GetConfiguration, NotSupported)."""
        self.cfg = cfg
        self._mirrored = names if cfg is not None else ()

    def known(self, name):
        key = canonical(name)
        if key is not None and KEYS[key][0] == CFG and key not in self._mirrored:
            return None
        return key

    def default(self, name):
        if name == "NumberOfConnectors":
            return self.connectors
        if name == "JournalMaxEntries":
            return min(KEYS[name][2], self.journal_max)
        return KEYS[name][2]

    def get(self, name):
        key = self.known(name)
        if key is None:
            raise KeyError("unknown OCPP key '%s'" % name)
        if KEYS[key][0] == CFG:
            return self.cfg.get(KEYS[key][2])
        if key in self.values:
            return self.values[key]
        return self.default(key)

    def fall_back(self, name, value):
        """Stores `value` for `name` past the rules of change(): a SecurityProfile that could not
        connect goes back to the one that did (security whitepaper). OSError if not stored."""
        values = dict(self.values)
        values[name] = value
        store.write_json(self.path, values)
        self.values = values

    # ChangeConfiguration's and GetConfiguration's code, and the checks of a value: evse.ocpp.keyset.

    def parse(self, name, value_text):
        """The typed value of `value_text` for key `name`; ValueError naming the key and the
        allowed values when it does not fit."""
        return self._keyset("parse", name, value_text)

    def get_configuration(self, names=None):
        """GetConfiguration.conf for `names` (None or empty: every key). Write-only keys are never
        shown, not even as unknown."""
        return self._keyset("get_configuration", names)

    def change(self, name, value_text):
        """ChangeConfiguration: "Accepted", "Rejected" (read-only or bad value: see last_error),
        "RebootRequired" (stored; effective after a reboot) or "NotSupported" (unknown key)."""
        return self._keyset("change", name, value_text)

    def _keyset(self, what, *args):
        # At boot and for the central system's rare requests. A caller whose step must not hold
        # the import loads it in a step before (ops.steps, ChargePoint._boot).
        return evse.call_and_let_go("evse.ocpp.keyset", what, self, *args)
