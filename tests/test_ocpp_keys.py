"""OCPP 1.6 configuration keys: one table, GetConfiguration / ChangeConfiguration as the spec
words them, values kept on flash, and the Basic Auth password never shown."""
import json
from pathlib import Path

import jsonschema
import ocpp.v16
import pytest

from evse.ocpp import keys, keyset
from evse.ocpp.keys import KEYS, Keys

SCHEMAS = Path(ocpp.v16.__file__).parent / "schemas"
SECRET = "0123456789abcdef0123456789ABCDEF01234567"
SPEC_KEYS = [  # OCPP 1.6 section 9: the keys of the profiles we announce that the spec requires
    "AuthorizeRemoteTxRequests", "ClockAlignedDataInterval", "ConnectionTimeOut", "ConnectorPhaseRotation",
    "GetConfigurationMaxKeys", "HeartbeatInterval", "LocalAuthorizeOffline", "LocalPreAuthorize",
    "MeterValuesAlignedData", "MeterValuesSampledData", "MeterValueSampleInterval", "NumberOfConnectors",
    "ResetRetries", "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId", "StopTxnAlignedData",
    "StopTxnSampledData", "SupportedFeatureProfiles", "TransactionMessageAttempts",
    "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect", "LocalAuthListEnabled",
    "LocalAuthListMaxLength", "SendLocalListMaxLength", "ChargeProfileMaxStackLevel",
    "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled"]


MIRRORED = {"SiteLimitA": "site_limit_a", "GridLimitA": "grid_limit_a", "GridMarginA": "grid_margin_a",
            "GridFallbackA": "grid_fallback_a", "GridStaleS": "grid_stale_s",
            "SiteFallbackA": "site_fallback_a", "SiteLostS": "site_lost_s"}


def schema(name):
    return json.loads((SCHEMAS / name).read_text())


def test_the_table_has_every_required_key_of_the_profiles_we_announce():
    assert not [k for k in SPEC_KEYS if k not in KEYS]
    assert Keys("/nonexistent", 2).get("SupportedFeatureProfiles") == "Core,FirmwareManagement,LocalAuthListManagement,Reservation,RemoteTrigger,SmartCharging"


def test_every_key_default_is_a_value_its_own_validation_accepts(tmp_path):
    k = Keys(str(tmp_path), 2)
    for name in KEYS:
        if name in MIRRORED:
            continue   # the controller's settings (tested below)
        if name == "AuthorizationKey":
            assert k.get(name) == ""  # not set: no Basic Auth until the CSMS sends one
            continue
        value = k.get(name)
        assert k.parse(name, keys.text(name, value)) == value, name
    assert k.get("NumberOfConnectors") == 2


def test_get_configuration_of_all_keys_fits_the_official_schema_and_hides_the_authorization_key(tmp_path):
    k = Keys(str(tmp_path), 2)
    assert k.change("AuthorizationKey", SECRET) == "Accepted"
    for names in (None, []):
        conf = k.get_configuration(names)
        jsonschema.validate(conf, schema("GetConfigurationResponse.json"))
        shown = {e["key"]: e for e in conf["configurationKey"]}
        assert set(shown) == set(KEYS) - {"AuthorizationKey"} - set(MIRRORED)   # no settings mirrored
        assert "unknownKey" not in conf
    assert shown["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
    assert shown["HeartbeatInterval"] == {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    assert shown["LocalAuthorizeOffline"]["value"] == "true"
    assert shown["MeterValuesSampledData"]["value"] == "Energy.Active.Import.Register"
    assert shown["StopTxnSampledData"]["value"] == ""


def test_get_configuration_of_some_keys_lists_unknown_ones_apart_and_ignores_name_case(tmp_path):
    k = Keys(str(tmp_path), 1)
    conf = k.get_configuration(["heartbeatinterval", "NoSuchKey", "LocalPreAuthorize"])
    jsonschema.validate(conf, schema("GetConfigurationResponse.json"))
    assert conf == {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                                         {"key": "LocalPreAuthorize", "readonly": False, "value": "false"}],
                    "unknownKey": ["NoSuchKey"]}


@pytest.mark.parametrize("name, text, typed", [
    ("HeartbeatInterval", "60", 60),
    ("HeartbeatInterval", " 86400 ", 86400),
    ("AllowOfflineTxForUnknownId", "TRUE", True),
    ("LocalPreAuthorize", "True", True),
    ("StopTransactionOnInvalidId", "false", False),
    ("MeterValuesSampledData", "Voltage, Current.Import,SoC", ("Voltage", "Current.Import", "SoC")),
    ("MeterValuesAlignedData", "", ()),
    ("ConnectorPhaseRotation", "0.RST,1.RTS,2.Unknown", "0.RST,1.RTS,2.Unknown"),
    ("ConnectorPhaseRotation", "NotApplicable", "NotApplicable"),
    ("ClockAlignedDataInterval", "900", 900),
    ("ResumeTransactionOnBoot", "true", True),
])
def test_change_accepts_a_good_value_stores_it_typed_and_tells_the_charge_point(tmp_path, name, text, typed):
    seen = []
    k = Keys(str(tmp_path), 2, on_change=lambda key, value: seen.append((key, value)))
    assert k.change(name, text) == "Accepted"
    assert k.get(name) == typed
    assert seen == [(name, typed)]
    assert Keys(str(tmp_path), 2).get(name) == typed


@pytest.mark.parametrize("name, text, words", [
    ("HeartbeatInterval", "abc", ["HeartbeatInterval", "1..86400"]),
    ("HeartbeatInterval", "0", ["HeartbeatInterval", "1..86400"]),
    ("HeartbeatInterval", "1.5", ["HeartbeatInterval", "whole number"]),
    ("HeartbeatInterval", "", ["HeartbeatInterval"]),
    ("MeterValueSampleInterval", "-1", ["MeterValueSampleInterval", "0..3600"]),
    ("TransactionMessageAttempts", "1_0", ["TransactionMessageAttempts"]),
    ("LocalPreAuthorize", "yes", ["LocalPreAuthorize", "true or false"]),
    ("LocalPreAuthorize", "1", ["LocalPreAuthorize", "true or false"]),
    ("MeterValuesSampledData", "Energy.Active.Import.Register,Volts", ["'Volts'", "measurand"]),
    ("MeterValuesSampledData", ",".join(keyset.MEASURANDS.split(",")[:9]), ["at most 8", "MeterValuesSampledDataMaxLength"]),
    ("ConnectorPhaseRotation", "3.RST", ["ConnectorPhaseRotation", "0..2"]),
    ("ConnectorPhaseRotation", "1.XYZ", ["ConnectorPhaseRotation", "RST"]),
    ("AuthorizationKey", "0123", ["AuthorizationKey", "32 to 40"]),
    ("AuthorizationKey", "x" * 32, ["AuthorizationKey", "hexadecimal"]),
    ("JournalMaxEntries", "5", ["JournalMaxEntries", "16..2000"]),
])
def test_change_rejects_a_bad_value_with_a_reason_naming_the_key_and_what_is_allowed(tmp_path, name, text, words):
    seen = []
    k = Keys(str(tmp_path), 2, on_change=lambda *a: seen.append(a))
    before = k.get(name)
    assert k.change(name, text) == "Rejected"
    assert all(w in k.last_error for w in words), k.last_error
    assert k.get(name) == before and seen == []
    assert not (tmp_path / keys.KEYS_FILE).exists()


def test_change_of_a_read_only_key_is_rejected_and_of_an_unknown_key_not_supported(tmp_path):
    k = Keys(str(tmp_path), 2)
    assert k.change("NumberOfConnectors", "3") == "Rejected"
    assert "read-only" in k.last_error
    assert k.get("NumberOfConnectors") == 2
    assert k.change("NoSuchKey", "1") == "NotSupported"
    assert "NoSuchKey" in k.last_error


def test_a_key_read_at_boot_says_reboot_required_and_keeps_the_new_value_for_the_next_boot(tmp_path):
    seen = []
    k = Keys(str(tmp_path), 2, on_change=lambda *a: seen.append(a))
    assert k.change("JournalMaxEntries", "500") == "RebootRequired"
    assert seen == []
    assert Keys(str(tmp_path), 2).get("JournalMaxEntries") == 500


def test_a_board_s_journal_bound_is_the_key_s_default_and_its_ceiling_for_a_change_and_for_what_was_stored(
        tmp_path, capsys):
    Keys(str(tmp_path), 2).change("JournalMaxEntries", "1500")   # stored under a release with no bound
    k = Keys(str(tmp_path), 2, journal_max=400)
    assert k.get("JournalMaxEntries") == 400 and "allowed 16..400" in capsys.readouterr().out
    assert k.change("JournalMaxEntries", "401") == "Rejected" and "allowed 16..400" in k.last_error
    assert k.change("JournalMaxEntries", "300") == "RebootRequired"
    assert Keys(str(tmp_path), 2, journal_max=400).get("JournalMaxEntries") == 300
    assert Keys(str(tmp_path / "x"), 2, journal_max=1500).get("JournalMaxEntries") == 1000   # a default below it stays


def test_an_unchanged_value_is_accepted_without_writing_flash(tmp_path):
    k = Keys(str(tmp_path), 2)
    assert k.change("HeartbeatInterval", "300") == "Accepted"
    assert not (tmp_path / keys.KEYS_FILE).exists()


def test_security_profile_needs_an_authorization_key_and_can_only_be_raised(tmp_path):
    k = Keys(str(tmp_path), 1)
    assert k.change("SecurityProfile", "1") == "Rejected"
    assert "AuthorizationKey" in k.last_error
    assert k.change("AuthorizationKey", SECRET) == "Accepted"
    assert k.change("SecurityProfile", "2") == "Accepted"
    assert k.change("SecurityProfile", "1") == "Rejected"
    assert "only be raised" in k.last_error
    assert k.change("SecurityProfile", "4") == "Rejected"
    assert Keys(str(tmp_path), 1).get("SecurityProfile") == 2


def test_security_profile_3_needs_no_authorization_key_but_what_the_charge_point_checks(tmp_path):
    """Profile 3 logs in with the charge point's certificate, not HTTP Basic: no AuthorizationKey,
    but the charge point's check (wss:// and ocpp_cert/ocpp_key set, evse.ocpp.cp) decides."""
    why = ["SecurityProfile 3 needs this charge point's certificate: set ocpp_cert and ocpp_key"]
    k = Keys(str(tmp_path), 1, check=lambda name, value: why[0] if name == "SecurityProfile" and value == 3 else None)
    assert k.change("SecurityProfile", "3") == "Rejected" and k.last_error == why[0]
    why[0] = None
    assert k.change("SecurityProfile", "3") == "Accepted"
    assert not k.get("AuthorizationKey") and Keys(str(tmp_path), 1).get("SecurityProfile") == 3


def test_the_authorization_key_never_appears_in_any_output(tmp_path, capsys):
    seen = []
    k = Keys(str(tmp_path), 1, on_change=lambda key, value: seen.append(key))
    assert k.change("AuthorizationKey", SECRET) == "Accepted"
    assert k.get("AuthorizationKey") == SECRET  # the connection needs it
    assert seen == ["AuthorizationKey"]
    outputs = [k.get_configuration(), k.get_configuration(["AuthorizationKey"]),
               k.get_configuration(["authorizationkey", "HeartbeatInterval"])]
    assert outputs[1] == {"configurationKey": []}
    for bad in (SECRET[:-2] + "zz", SECRET + "00", "short"):
        assert k.change("AuthorizationKey", bad) == "Rejected"
        outputs.append(k.last_error)
    assert k.change("SecurityProfile", "1") == "Accepted"
    Keys(str(tmp_path), 1)
    text = json.dumps(outputs) + capsys.readouterr().out
    for secret in (SECRET, SECRET.lower(), SECRET[:16]):
        assert secret not in text


def test_values_survive_a_restart_and_bad_stored_values_are_ignored_with_a_message(tmp_path, capsys):
    k = Keys(str(tmp_path), 2)
    assert k.change("HeartbeatInterval", "120") == "Accepted"
    assert k.change("StopTxnSampledData", "Energy.Active.Import.Register,Voltage") == "Accepted"
    k2 = Keys(str(tmp_path), 2)
    assert k2.get("HeartbeatInterval") == 120
    assert k2.get("StopTxnSampledData") == ("Energy.Active.Import.Register", "Voltage")
    (tmp_path / keys.KEYS_FILE).write_text(json.dumps(
        {"HeartbeatInterval": -5, "NumberOfConnectors": 7, "Bogus": 1, "LocalPreAuthorize": True}))
    capsys.readouterr()
    k3 = Keys(str(tmp_path), 2)
    out = capsys.readouterr().out
    assert k3.get("HeartbeatInterval") == 300 and k3.get("NumberOfConnectors") == 2
    assert k3.get("LocalPreAuthorize") is True
    assert "HeartbeatInterval" in out and "NumberOfConnectors" in out and "Bogus" in out


def test_a_corrupt_file_is_kept_as_bad_and_the_defaults_are_used(tmp_path, capsys):
    (tmp_path / keys.KEYS_FILE).write_text('{"HeartbeatInterval": 1')
    k = Keys(str(tmp_path), 2)
    assert k.get("HeartbeatInterval") == 300
    assert (tmp_path / (keys.KEYS_FILE + ".bad")).exists()
    assert "does not parse" in capsys.readouterr().out
    assert k.change("HeartbeatInterval", "30") == "Accepted"
    assert Keys(str(tmp_path), 2).get("HeartbeatInterval") == 30


def test_a_flash_write_failure_rejects_the_change_and_keeps_the_old_value(tmp_path):
    k = Keys(str(tmp_path / "missing-dir"), 2)
    assert k.change("HeartbeatInterval", "30") == "Rejected"
    assert "flash" in k.last_error
    assert k.get("HeartbeatInterval") == 300


def test_change_configuration_answers_fit_the_official_schema(tmp_path):
    k = Keys(str(tmp_path), 2)
    for name, value in (("HeartbeatInterval", "30"), ("NumberOfConnectors", "1"), ("Nope", "1"),
                        ("JournalMaxEntries", "100"), ("HeartbeatInterval", "x")):
        jsonschema.validate({"status": k.change(name, value)}, schema("ChangeConfigurationResponse.json"))


# ---- the site's budget: the controller's settings as vendor keys (docs/grid.md) ----------------
def settings(tmp_path, board="sim-ac2-grid"):
    from evse import config
    spec = json.loads((Path(__file__).resolve().parents[1] / "boards" / f"{board}.json").read_text())
    return config.Config(spec, str(tmp_path))


def test_the_site_keys_read_and_set_the_controllers_settings_one_value_for_console_and_ocpp(tmp_path):
    cfg = settings(tmp_path)
    k = Keys(str(tmp_path), 2)
    k.mirror(cfg, tuple(MIRRORED))
    shown = {e["key"]: e["value"] for e in k.get_configuration(None)["configurationKey"]}
    assert {name: shown[name] for name in MIRRORED} == {name: str(cfg.get(s)) for name, s in MIRRORED.items()}
    assert k.change("gridlimita", " 36 ") == "Accepted" and cfg.get("grid_limit_a") == 36   # any case, as any key
    cfg.set("grid_margin_a", 5)                                                      # the console's change
    assert k.get("GridMarginA") == 5
    assert settings(tmp_path).get("grid_limit_a") == 36                              # on flash, in config.json
    assert not (tmp_path / "ocpp.json").exists()                                     # not kept twice


@pytest.mark.parametrize("name, text, says", [
    ("SiteLimitA", "lots", "site_limit_a must be a whole number"),
    ("GridStaleS", "2", "grid_stale_s = 2 is out of range"),
    ("GridFallbackA", "39", "grid_fallback_a 39 is over grid_limit_a 40 less grid_margin_a 2"),
    ("GridLimitA", "7", "lower grid_fallback_a first"),
    ("GridMarginA", "40", "grid_margin_a 40 must be below grid_limit_a 40"),
    ("SiteFallbackA", "39", "site_fallback_a 39 is over what the connection gives the guns (38 A)"),
    ("SiteLostS", "1", "site_lost_s = 1 is out of range"),
])
def test_a_site_key_the_settings_refuse_is_rejected_with_the_reason_and_nothing_changes(tmp_path, name, text, says):
    cfg = settings(tmp_path)
    k = Keys(str(tmp_path), 2)
    k.mirror(cfg, tuple(MIRRORED))
    before = dict((s, cfg.get(s)) for s in MIRRORED.values())
    assert k.change(name, text) == "Rejected" and says in k.last_error and name in k.last_error
    assert dict((s, settings(tmp_path).get(s)) for s in MIRRORED.values()) == before


def test_the_grid_keys_are_unknown_on_a_board_without_a_grid_meter(tmp_path):
    k = Keys(str(tmp_path), 2)
    k.mirror(settings(tmp_path, "sim-ac2"), ("SiteLimitA",))
    conf = k.get_configuration(["SiteLimitA", "GridLimitA"])
    assert conf["configurationKey"] == [{"key": "SiteLimitA", "readonly": False, "value": "40"}]
    assert conf["unknownKey"] == ["GridLimitA"]
    assert k.change("GridLimitA", "40") == "NotSupported"


def test_the_central_system_may_lower_the_site_budget_but_not_raise_it_over_the_boards_fuse(tmp_path):
    cfg = settings(tmp_path)   # sim-ac2-grid: site_limit_a 40
    k = Keys(str(tmp_path), 2)
    k.mirror(cfg, tuple(MIRRORED))
    for name in ("SiteLimitA", "GridLimitA"):
        assert k.change(name, "63") == "Rejected" and "over the board's site_limit_a 40 A (its fuse)" in k.last_error
        assert k.change(name, "32") == "Accepted" and k.get(name) == 32
        assert k.change(name, "40") == "Accepted"
    cfg.set("site_limit_a", 63)                        # a technician at the console
    assert k.change("SiteLimitA", "50") == "Accepted"  # lowering stays the central system's
    assert k.change("SiteLimitA", "55") == "Rejected"


def test_a_mirror_without_settings_knows_none_of_their_keys(tmp_path):
    k = Keys(str(tmp_path), 2)
    k.mirror(None, tuple(MIRRORED))
    assert k.get_configuration(["SiteLimitA"])["unknownKey"] == ["SiteLimitA"]


def test_the_measurands_a_key_may_name_are_the_ones_ocpp_1_6_lists():
    sampled = schema("MeterValues.json")["properties"]["meterValue"]["items"]["properties"]["sampledValue"]
    enum = sampled["items"]["properties"]["measurand"]["enum"]
    assert sorted(keyset.MEASURANDS.split(",")) == sorted(enum)
