"""OCPP 1.6J beyond a plain session: boot registration, configuration, local list and cache,
reservations, triggers, meter values, smart charging, resets, availability, power cuts,
firmware update and diagnostics (offline sessions: test_ocpp_offline_hil.py). Every frame the board sends must validate."""
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from test_ocpp_core_hil import EV, statuses, wait_status


def iso_in(seconds):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def configure(csms, **keys):
    for key, value in keys.items():
        status = csms.call("ChangeConfiguration", {"key": key, "value": str(value)})["payload"]["status"]
        assert status == "Accepted", (key, status)


def sent(csms, since_ms, action):
    return [f["frame"][3] for f in csms.frames(since_ms=since_ms)
            if f["dir"] == "in" and f["frame"][0] == 2 and f["frame"][2] == action]


def start_session(rig, csms, gun=1, tag="AA11"):
    t = csms.now_ms()
    rig.plug(gun=gun, ev=EV)
    rig.rfid(gun=gun, id_tag=tag)
    csms.wait("StartTransaction", since_ms=t, timeout_s=15)
    wait_status(csms, t, gun, "Charging", 15)
    return t


@pytest.mark.rig_ops("power")
@pytest.mark.parametrize("registration", ["Pending", "Rejected"])
def test_boot_pending_or_rejected_retries_after_the_interval_and_sends_nothing_else(ocpp_rig, csms, registration):
    csms.set(boot_status=registration, interval=3)
    ocpp_rig.power(on=False)
    t = csms.now_ms()
    ocpp_rig.power(on=True)
    csms.wait("BootNotification", since_ms=t, timeout_s=20)
    time.sleep(1)
    second = csms.now_ms()
    csms.wait("BootNotification", since_ms=second, timeout_s=10)  # again after the interval
    assert not sent(csms, t, "StatusNotification")
    if registration == "Pending":  # the central system may configure a pending charge point
        assert csms.call("GetConfiguration", {"key": ["HeartbeatInterval"]})["payload"]["configurationKey"]
    csms.set(boot_status="Accepted", interval=300)
    wait_status(csms, second, 0, "Available", 15)


KEY_1 = "00ff0123456789abcdef0123456789abcdefa5b6"   # 40 hex digits: 20 bytes, not all of them text
KEY_2 = "fe" * 16                                   # 32 digits: 16 bytes


@pytest.mark.virtual_only("switches the central system's Basic authentication on and off")
def test_security_profile_1_logs_in_with_the_key_s_bytes_and_a_new_key_or_profile_connects_again(
        ocpp_rig, ocpp_board, csms):
    """The security whitepaper as OCTT tests it: with SecurityProfile 1 the HTTP Basic password is
    the bytes the AuthorizationKey's hex digits encode (TC_085_CS); a new AuthorizationKey closes
    the link once answered, and the charge point logs in again with it (TC_073_CS); a raised
    SecurityProfile connects again with it, and one that cannot connect (2 needs TLS, the link is
    ws://) goes back to the profile that did (TC_083_CS)."""
    cp = ocpp_board["cp"]

    def change(key, value):
        return csms.call("ChangeConfiguration", {"key": key, "value": value})["payload"]["status"]

    def connects_again(since_ms):
        csms.wait("BootNotification", since_ms=since_ms, timeout_s=20)

    try:
        assert change("AuthorizationKey", KEY_1) == "Accepted"   # profile 0: the link stays
        csms.set(basic_auth={cp: KEY_1})                          # from now on it must log in
        t = csms.now_ms()
        assert change("SecurityProfile", "1") == "Accepted"
        connects_again(t)
        t = csms.now_ms()
        assert change("AuthorizationKey", KEY_2) == "Accepted"   # the central system now wants KEY_2
        connects_again(t)
        assert change("SecurityProfile", "2") == "Rejected"      # TLS: this central system's URL is ws://
        assert change("SecurityProfile", "0") == "Rejected"      # only ever raised
        assert profile(csms) == "1"
    finally:
        csms.set(basic_auth={})


def profile(csms):
    got = csms.call("GetConfiguration", {"key": ["SecurityProfile"]})["payload"]["configurationKey"]
    return got[0]["value"]


@pytest.mark.virtual_only("switches the central system's Basic authentication on and off")
def test_a_raised_security_profile_that_cannot_connect_falls_back_to_the_one_that_did(ocpp_rig, ocpp_board, csms):
    """Security whitepaper (OCTT TC_083_CS): SecurityProfile raised from 0 to 1 while the central
    system expects another password: three refused connects, then the charge point goes back to
    profile 0 (it connects without Basic authentication), and keeps it."""
    cp = ocpp_board["cp"]
    assert csms.call("ChangeConfiguration", {"key": "AuthorizationKey", "value": KEY_1})["payload"]["status"] == "Accepted"
    t = csms.now_ms()
    csms.set(basic_auth={cp: KEY_2})
    try:
        assert csms.call("ChangeConfiguration", {"key": "SecurityProfile", "value": "1"})["payload"]["status"] == "Accepted"

        def refusals():
            return [r for r in csms.request("info")["refusals"] if r["cp"] == cp and r["t_ms"] >= t]
        deadline = time.monotonic() + 40
        while not any("authentication is required" in r["why"] for r in refusals()):   # no header: profile 0
            assert time.monotonic() < deadline, refusals()
            time.sleep(0.2)
        assert sum("wrong password" in r["why"] for r in refusals()) == 3, refusals()   # profile 1, three times
    finally:
        csms.set(basic_auth={})
    csms.wait("BootNotification", since_ms=t, timeout_s=40)
    assert profile(csms) == "0"


@pytest.mark.rig_ops("power")
def test_configuration_get_change_unknown_and_bad_values(ocpp_rig, csms):
    got = csms.call("GetConfiguration", {})["payload"]
    names = {k["key"] for k in got["configurationKey"]}
    assert {"HeartbeatInterval", "MeterValueSampleInterval", "NumberOfConnectors"} <= names
    assert "AuthorizationKey" not in names
    assert csms.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "15"})["payload"]["status"] == "Accepted"
    got = csms.call("GetConfiguration", {"key": ["MeterValueSampleInterval", "NoSuchKey"]})["payload"]
    assert got["configurationKey"] == [{"key": "MeterValueSampleInterval", "readonly": False, "value": "15"}]
    assert got["unknownKey"] == ["NoSuchKey"]
    assert csms.call("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"})["payload"]["status"] == "NotSupported"
    assert csms.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "soon"})["payload"]["status"] == "Rejected"
    assert csms.call("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "5"})["payload"]["status"] == "Rejected"
    # Kept across a reboot.
    ocpp_rig.power(on=False)
    t = csms.now_ms()
    ocpp_rig.power(on=True)
    csms.wait("BootNotification", since_ms=t, timeout_s=20)
    got = csms.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})["payload"]
    assert got["configurationKey"][0]["value"] == "15"


@pytest.mark.rig_ops("net", "rfid")
def test_local_list_full_and_differential_then_offline_authorization(ocpp_rig, csms, ocpp_dut):
    full = {"listVersion": 3, "updateType": "Full",
            "localAuthorizationList": [{"idTag": "LOCAL1", "idTagInfo": {"status": "Accepted"}},
                                       {"idTag": "LOCAL2", "idTagInfo": {"status": "Accepted"}}]}
    assert csms.call("SendLocalList", full)["payload"]["status"] == "Accepted"
    assert csms.call("GetLocalListVersion", {})["payload"]["listVersion"] == 3
    diff = {"listVersion": 4, "updateType": "Differential", "localAuthorizationList": [{"idTag": "LOCAL2"}]}
    assert csms.call("SendLocalList", diff)["payload"]["status"] == "Accepted"
    stale = {"listVersion": 2, "updateType": "Differential", "localAuthorizationList": []}
    assert csms.call("SendLocalList", stale)["payload"]["status"] == "VersionMismatch"
    assert csms.call("GetLocalListVersion", {})["payload"]["listVersion"] == 4
    configure(csms, WebSocketPingInterval=3)
    ocpp_rig.net(up=False)
    ocpp_dut.read_until(b"ocpp: link lost", 30)
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="LOCAL2")  # removed by the differential update: refused
    time.sleep(1.5)
    assert ocpp_rig.gun(1)["contactor"] is False
    ocpp_rig.rfid(gun=1, id_tag="LOCAL1")
    ocpp_rig.wait_for(lambda guns: guns[0]["contactor"], 15, what="charging on a local-list card, offline")
    t = csms.now_ms()
    ocpp_rig.net(up=True)
    start = csms.wait("StartTransaction", since_ms=t, timeout_s=60)["frame"][3]
    assert start["idTag"] == "LOCAL1"


@pytest.mark.rig_ops("net", "rfid")
def test_the_authorization_cache_serves_offline_until_cleared(ocpp_rig, csms, ocpp_dut):
    configure(csms, WebSocketPingInterval=3, LocalAuthListEnabled="false")
    t = csms.now_ms()
    ocpp_rig.rfid(gun=2, id_tag="BB22")  # online: Authorize, then the answer is cached
    csms.wait("Authorize", since_ms=t)
    time.sleep(1)
    assert csms.call("ClearCache", {})["payload"]["status"] == "Accepted"
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    csms.wait("Authorize", since_ms=csms.now_ms() - 500)
    time.sleep(1)
    ocpp_rig.net(up=False)
    ocpp_dut.read_until(b"ocpp: link lost", 30)
    ocpp_rig.plug(gun=2, ev=EV)  # BB22's authorization timed out or is used now
    ocpp_rig.unplug(gun=2)
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.wait_for(lambda guns: guns[0]["contactor"], 15, what="charging for the cached card")


@pytest.mark.rig_ops("rfid")
def test_reservation_lifecycle(ocpp_rig, csms):
    t = csms.now_ms()
    reply = csms.call("ReserveNow", {"connectorId": 1, "expiryDate": iso_in(600), "idTag": "AA11", "reservationId": 7})
    assert reply["payload"]["status"] == "Accepted"
    wait_status(csms, t, 1, "Reserved")
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="BB22")  # not the card the connector is reserved for
    time.sleep(2)
    assert not sent(csms, t, "StartTransaction")
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    start = csms.wait("StartTransaction", since_ms=t)["frame"][3]
    assert start["reservationId"] == 7
    assert csms.call("CancelReservation", {"reservationId": 7})["payload"]["status"] == "Rejected"  # used up
    reply = csms.call("ReserveNow", {"connectorId": 2, "expiryDate": iso_in(3), "idTag": "AA11", "reservationId": 8})
    assert reply["payload"]["status"] == "Accepted"
    t2 = csms.now_ms()
    wait_status(csms, t, 2, "Reserved")
    wait_status(csms, t2, 2, "Available", 10)  # expired
    assert csms.call("ReserveNow", {"connectorId": 1, "expiryDate": iso_in(60), "idTag": "BB22",
                                    "reservationId": 9})["payload"]["status"] == "Occupied"
    assert csms.call("ReserveNow", {"connectorId": 0, "expiryDate": iso_in(60), "idTag": "BB22",
                                    "reservationId": 10})["payload"]["status"] == "Rejected"


def test_trigger_message_for_every_message_it_names(ocpp_rig, csms):
    for message in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
                    "FirmwareStatusNotification", "DiagnosticsStatusNotification"):
        t = csms.now_ms()
        payload = {"requestedMessage": message}
        if message in ("StatusNotification", "MeterValues"):
            payload["connectorId"] = 1
        assert csms.call("TriggerMessage", payload)["payload"]["status"] == "Accepted"
        csms.wait(message, since_ms=t, timeout_s=10)
    reply = csms.call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 9})
    assert reply["call_error"]["errorCode"] == "PropertyConstraintViolation"


@pytest.mark.rig_ops("rfid")
def test_sampled_and_clock_aligned_meter_values(ocpp_rig, csms):
    configure(csms, MeterValueSampleInterval=2, ClockAlignedDataInterval=3,
              MeterValuesSampledData="Energy.Active.Import.Register,Power.Active.Import,Current.Import")
    t = start_session(ocpp_rig, csms)
    time.sleep(8)
    values = sent(csms, t, "MeterValues")
    sampled = [v for v in values if v["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"]
    aligned = [v for v in values if v["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"]
    assert len(sampled) >= 2 and len(aligned) >= 2, values
    measurands = {s["measurand"] for s in sampled[-1]["meterValue"][0]["sampledValue"]}
    assert measurands == {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import"}
    energy = [float(v["meterValue"][0]["sampledValue"][0]["value"]) for v in sampled]
    assert energy == sorted(energy) and energy[-1] > energy[0]
    for v in aligned:
        stamp = datetime.strptime(v["meterValue"][0]["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        assert (stamp.hour * 3600 + stamp.minute * 60 + stamp.second) % 3 == 0


@pytest.mark.rig_ops("rfid")
def test_profile_stacking_caps_the_offer_and_the_composite_schedule_shows_it(ocpp_rig, csms):
    t = start_session(ocpp_rig, csms)

    def default(level, limit):
        return {"connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 100 + level, "stackLevel": level, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}}
    assert csms.call("SetChargingProfile", default(0, 20))["payload"]["status"] == "Accepted"
    assert csms.call("SetChargingProfile", default(1, 10))["payload"]["status"] == "Accepted"
    ocpp_rig.wait_for(lambda guns: abs(guns[0]["offered_a"] - 10) < 0.5, 15, what="the higher stack level's 10 A offered")
    schedule = csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 600})["payload"]
    assert schedule["status"] == "Accepted"
    assert schedule["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 10
    assert csms.call("ClearChargingProfile", {"id": 101})["payload"]["status"] == "Accepted"
    ocpp_rig.wait_for(lambda guns: abs(guns[0]["offered_a"] - 20) < 0.5, 15, what="back to 20 A after clearing")
    assert csms.call("ClearChargingProfile", {"id": 999})["payload"]["status"] == "Unknown"
    assert t


@pytest.mark.rig_ops("rfid")
@pytest.mark.parametrize("kind, reason", [("Soft", "SoftReset"), ("Hard", "HardReset")])
def test_reset_stops_the_transaction_with_its_reason_and_boots_again(ocpp_rig, csms, kind, reason):
    t = start_session(ocpp_rig, csms)
    assert csms.call("Reset", {"type": kind})["payload"]["status"] == "Accepted"
    stop = csms.wait("StopTransaction", since_ms=t, timeout_s=15)["frame"][3]
    assert stop["reason"] == reason
    csms.wait("BootNotification", since_ms=t, timeout_s=30)


def test_reset_without_a_transaction_boots_again(ocpp_rig, csms):
    t = csms.now_ms()
    assert csms.call("Reset", {"type": "Soft"})["payload"]["status"] == "Accepted"
    csms.wait("BootNotification", since_ms=t, timeout_s=30)
    assert not sent(csms, t, "StopTransaction")


def security_events(csms, since_ms):
    """(time, type) of the SecurityEventNotification CALLs since `since_ms`, each attempt."""
    return [(f["t_ms"], f["frame"][3]["type"]) for f in csms.frames(since_ms=since_ms)
            if f["dir"] == "in" and f["frame"][0] == 2 and f["frame"][2] == "SecurityEventNotification"]


def test_critical_security_events_go_through_the_journal_and_survive_a_reboot(ocpp_rig, csms):
    """Improved security for OCPP 1.6-J, section 8: the critical events go to the central system
    as SecurityEventNotification (schema-valid), queued on flash as transaction messages are. At
    boot: StartupOfTheDevice and SettingSystemTime (the clock set by BootNotification). A Reset:
    ResetOrReboot, which the central system refuses until after the reboot, when the journal
    sends it again."""
    deadline = time.monotonic() + 15
    while {"StartupOfTheDevice", "SettingSystemTime"} - {k for _, k in security_events(csms, ocpp_rig.booted_ms)}:
        assert time.monotonic() < deadline, security_events(csms, ocpp_rig.booted_ms)
        time.sleep(0.2)
    t = csms.now_ms()
    csms.set(refuse=["SecurityEventNotification"])
    try:
        assert csms.call("Reset", {"type": "Soft"})["payload"]["status"] == "Accepted"
        deadline = time.monotonic() + 15
        while ("ResetOrReboot" not in {k for _, k in security_events(csms, t)}
               or not sent(csms, t, "BootNotification")):
            assert time.monotonic() < deadline, security_events(csms, t)
            time.sleep(0.2)
    finally:
        csms.set(refuse=[])
    rebooted = [f["t_ms"] for f in csms.frames(since_ms=t) if f["dir"] == "in" and f["frame"][0] == 2
                and f["frame"][2] == "BootNotification"][0]
    deadline = time.monotonic() + 90
    while "ResetOrReboot" not in {k for at, k in security_events(csms, rebooted)}:
        assert time.monotonic() < deadline, security_events(csms, t)
        time.sleep(0.5)


@pytest.mark.rig_ops("rfid")
def test_a_central_system_without_security_events_does_not_hold_up_the_transaction_messages(ocpp_rig, csms):
    """A plain OCPP 1.6 central system answers SecurityEventNotification NotImplemented: the
    event is dropped at once, and a transaction's StartTransaction goes out at once behind it."""
    deadline = time.monotonic() + 15   # the first boot's events delivered first
    while {"StartupOfTheDevice", "SettingSystemTime"} - {k for _, k in security_events(csms, ocpp_rig.booted_ms)}:
        assert time.monotonic() < deadline, security_events(csms, ocpp_rig.booted_ms)
        time.sleep(0.2)
    time.sleep(0.5)
    csms.set(refuse=["SecurityEventNotification"], refuse_code="NotImplemented")
    try:
        t0 = csms.now_ms()
        assert csms.call("Reset", {"type": "Soft"})["payload"]["status"] == "Accepted"
        csms.wait("BootNotification", since_ms=t0, timeout_s=30)
        # The boot's events are refused at the head of the journal; a card's StartTransaction
        # behind them goes at once (tried again, they would hold it for the retry interval, 60 s).
        t = start_session(ocpp_rig, csms)
        csms.wait("StartTransaction", since_ms=t, timeout_s=10)
        kinds = sorted(k for _, k in security_events(csms, t0))
        assert kinds == ["ResetOrReboot", "SettingSystemTime", "StartupOfTheDevice"], kinds   # each once
    finally:
        csms.set(refuse=[], refuse_code="InternalError")


@pytest.mark.rig_ops("rfid")
def test_unlock_stops_the_transaction(ocpp_rig, csms):
    t = start_session(ocpp_rig, csms)
    assert csms.call("UnlockConnector", {"connectorId": 1})["payload"]["status"] == "NotSupported"  # no lock actuator
    assert csms.wait("StopTransaction", since_ms=t)["frame"][3]["reason"] == "UnlockCommand"


@pytest.mark.rig_ops("rfid", "power")
def test_availability_is_scheduled_when_busy_and_kept_across_a_reboot(ocpp_rig, csms):
    t = start_session(ocpp_rig, csms)
    assert csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})["payload"]["status"] == "Scheduled"
    assert csms.call("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})["payload"]["status"] == "Accepted"
    wait_status(csms, t, 2, "Unavailable")
    ocpp_rig.unplug(gun=1)
    wait_status(csms, t, 1, "Unavailable")
    ocpp_rig.power(on=False)
    t = csms.now_ms()
    ocpp_rig.power(on=True)
    wait_status(csms, t, 2, "Unavailable", 20)
    wait_status(csms, t, 1, "Unavailable")
    ocpp_rig.plug(gun=2, ev=EV)
    ocpp_rig.rfid(gun=2, id_tag="AA11")
    time.sleep(2)
    assert ocpp_rig.gun(2)["contactor"] is False


@pytest.mark.rig_ops("power")
def test_the_heartbeat_interval_of_the_boot_answer_is_what_get_configuration_reads(ocpp_rig, csms):
    csms.set(boot_status="Accepted", interval=123)
    ocpp_rig.power(on=False)
    t = csms.now_ms()
    ocpp_rig.power(on=True)
    csms.wait("BootNotification", since_ms=t, timeout_s=20)
    wait_status(csms, t, 0, "Available", 15)
    got = csms.call("GetConfiguration", {"key": ["HeartbeatInterval"]})["payload"]["configurationKey"]
    assert got[0]["value"] == "123"


@pytest.mark.rig_ops("rfid", "power")
def test_a_power_cut_during_a_transaction_stops_it_with_power_loss(ocpp_rig, csms):
    """The PowerLoss stop bills the last energy and time the charger knew: never below its
    meterStart or the last MeterValues it sent, never earlier than them."""
    configure(csms, MeterValueSampleInterval=2)
    t = start_session(ocpp_rig, csms)
    tx_id = csms.transactions()[-1]["transactionId"]
    start = sent(csms, t, "StartTransaction")[-1]
    deadline = time.monotonic() + 30
    while len(sent(csms, t, "MeterValues")) < 3:
        assert time.monotonic() < deadline, "no MeterValues every 2 s"
        time.sleep(0.2)
    ocpp_rig.power(on=False)
    last = sent(csms, t, "MeterValues")[-1]["meterValue"][0]
    last_wh = next(int(v["value"]) for v in last["sampledValue"] if v.get("measurand") == "Energy.Active.Import.Register")
    time.sleep(1)
    ocpp_rig.power(on=True)
    stop = csms.wait("StopTransaction", since_ms=t, timeout_s=30)["frame"][3]
    assert stop["reason"] == "PowerLoss" and stop["transactionId"] == tx_id
    assert stop["meterStop"] >= max(start["meterStart"], last_wh), (start, last, stop)
    assert stop["timestamp"] >= last["timestamp"], (last, stop)


def firmware_bundle(csms, tmp_path, version, name, romfs_board=None):
    """This firmware as version `version`, bundled and served by the central system as
    files/`name`: its URL. `romfs_board`: as one ROMFS image for that board."""
    import shutil

    from host_tools.fwbundle import build
    from host_tools.sim.supervisor import compile_to_mpy
    stage = tmp_path / "firmware"
    shutil.copytree(Path(__file__).resolve().parents[1] / "firmware", stage,
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = stage / "evse" / "__init__.py"
    init.write_text(re.sub(r'VERSION = "[^"]*"', 'VERSION = "%s"' % version, init.read_text()))   # the rest stays
    if romfs_board is None:   # (a ROMFS bundle compiles the image from the sources itself)
        compile_to_mpy(stage / "evse")  # what a board runs: precompiled, like the factory image
    files = Path(csms.request("info")["files"])
    (files / name).write_bytes(build(stage, version, romfs_board))
    return f"{csms.request('info')['http']}/files/{name}"


@pytest.mark.rig_ops("factory")  # only a factory reset puts the firmware back
def test_firmware_update_reports_each_step_and_boots_the_new_version(ocpp_rig, csms, tmp_path):
    url = firmware_bundle(csms, tmp_path, "0.1.1-hil", "fw-hil.bin")
    t = csms.now_ms()
    reply = csms.call("UpdateFirmware", {"location": url, "retrieveDate": iso_in(0)})
    assert reply["payload"] == {}
    boot = csms.wait("BootNotification", since_ms=t, timeout_s=60)["frame"][3]
    assert boot["firmwareVersion"] == "0.1.1-hil"
    assert_installed(csms, t)


def assert_installed(csms, since_ms):
    """The update since `since_ms` reported each step, Installed last (after the reboot)."""
    deadline = time.monotonic() + 15
    while "Installed" not in [p["status"] for p in sent(csms, since_ms, "FirmwareStatusNotification")]:
        assert time.monotonic() < deadline, sent(csms, since_ms, "FirmwareStatusNotification")
        time.sleep(0.2)
    assert [p["status"] for p in sent(csms, since_ms, "FirmwareStatusNotification")] == [
        "Downloading", "Downloaded", "Installing", "Installed"]


def test_firmware_update_from_a_missing_file_fails_and_changes_nothing(ocpp_rig, csms):
    http = csms.request("info")["http"]
    t = csms.now_ms()
    csms.call("UpdateFirmware", {"location": f"{http}/files/none.bin", "retrieveDate": iso_in(0), "retries": 1})
    deadline = time.monotonic() + 20
    while "DownloadFailed" not in [p["status"] for p in sent(csms, t, "FirmwareStatusNotification")]:
        assert time.monotonic() < deadline, sent(csms, t, "FirmwareStatusNotification")
        time.sleep(0.2)
    assert not sent(csms, t, "BootNotification")


@pytest.mark.rig_ops("factory")  # only a factory reset puts the firmware back if the refusal failed
def test_a_bundle_that_fails_its_check_reports_installing_then_installation_failed_and_runs_on(
        ocpp_rig, csms, tmp_path):
    """OCTT TC_044_3_CS: a bundle whose bytes do not match its manifest: Downloading, Downloaded,
    Installing (its check is the install's first step), InstallationFailed; the old firmware runs
    on, without a reboot."""
    url = firmware_bundle(csms, tmp_path, "0.1.1-bad", "fw-bad.bin")
    path = Path(csms.request("info")["files"]) / "fw-bad.bin"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF   # the last file's last byte: its sha256 no longer matches
    path.write_bytes(bytes(data))
    t = csms.now_ms()
    assert csms.call("UpdateFirmware", {"location": url, "retrieveDate": iso_in(0)})["payload"] == {}
    deadline = time.monotonic() + 30
    while "InstallationFailed" not in [p["status"] for p in sent(csms, t, "FirmwareStatusNotification")]:
        assert time.monotonic() < deadline, sent(csms, t, "FirmwareStatusNotification")
        time.sleep(0.2)
    assert [p["status"] for p in sent(csms, t, "FirmwareStatusNotification")] == [
        "Downloading", "Downloaded", "Installing", "InstallationFailed"]
    time.sleep(2)
    assert not sent(csms, t, "BootNotification")
    assert csms.call("GetConfiguration", {"key": ["HeartbeatInterval"]})["payload"]["configurationKey"]   # runs on


def test_diagnostics_upload_reports_uploading_then_uploaded(ocpp_rig, csms):
    http = csms.request("info")["http"]
    t = csms.now_ms()
    reply = csms.call("GetDiagnostics", {"location": f"{http}/upload/"})["payload"]
    name = reply["fileName"]
    deadline = time.monotonic() + 20
    while "Uploaded" not in [p["status"] for p in sent(csms, t, "DiagnosticsStatusNotification")]:
        assert time.monotonic() < deadline, sent(csms, t, "DiagnosticsStatusNotification")
        time.sleep(0.2)
    assert [p["status"] for p in sent(csms, t, "DiagnosticsStatusNotification")] == ["Uploading", "Uploaded"]
    assert name in [u["name"] for u in csms.uploads()["uploads"]]


@pytest.mark.parametrize("kind, holds", [("SecurityLog", "StartupOfTheDevice: evse"),
                                         ("DiagnosticsLog", "ocpp: connected to")])
def test_get_log_uploads_the_security_or_the_diagnostics_log_with_its_request_id(ocpp_rig, csms, kind, holds):
    """Security whitepaper GetLog (OCTT TC_079_CS for the SecurityLog): Accepted with the file
    name, LogStatusNotification Uploading then Uploaded with the request's id; the security log
    holds every security event, the diagnostics log the controller's."""
    http = csms.request("info")["http"]
    t = csms.now_ms()
    reply = csms.call("GetLog", {"logType": kind, "requestId": 42,
                                 "log": {"remoteLocation": f"{http}/upload/"}})["payload"]
    assert reply["status"] == "Accepted", reply
    deadline = time.monotonic() + 20
    while "Uploaded" not in [p["status"] for p in sent(csms, t, "LogStatusNotification")]:
        assert time.monotonic() < deadline, sent(csms, t, "LogStatusNotification")
        time.sleep(0.2)
    assert sent(csms, t, "LogStatusNotification") == [{"status": "Uploading", "requestId": 42},
                                                       {"status": "Uploaded", "requestId": 42}]
    uploads = csms.uploads()
    assert reply["filename"] in [u["name"] for u in uploads["uploads"]]
    assert holds in (Path(uploads["dir"]) / reply["filename"]).read_text()
    t = csms.now_ms()
    assert csms.call("ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"})["payload"] == \
        {"status": "Accepted"}
    assert csms.wait("LogStatusNotification", since_ms=t)["frame"][3] == {"status": "Uploaded", "requestId": 42}


def test_extended_trigger_message_sends_what_it_asks_for_and_says_what_it_cannot(ocpp_rig, csms):
    """ExtendedTriggerMessage (security whitepaper): each message it can ask for is sent; a
    SignChargePointCertificate is Rejected on a board without a certificate request made at
    commissioning (ocpp_csr; test_security_profile_3_hil.py has one); a bad request is a CALLERROR."""
    for what, action in (("BootNotification", "BootNotification"), ("Heartbeat", "Heartbeat"),
                         ("StatusNotification", "StatusNotification"), ("MeterValues", "MeterValues"),
                         ("FirmwareStatusNotification", "SignedFirmwareStatusNotification"),
                         ("LogStatusNotification", "LogStatusNotification")):
        t = csms.now_ms()
        payload = {"requestedMessage": what, **({"connectorId": 1} if what == "MeterValues" else {})}
        assert csms.call("ExtendedTriggerMessage", payload)["payload"] == {"status": "Accepted"}, what
        csms.wait(action, since_ms=t, timeout_s=10)
    assert sent(csms, t, "LogStatusNotification")[-1]["status"] in ("Idle", "Uploaded")   # no GetLog yet, or one
    reply = csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    assert reply["payload"] == {"status": "Rejected"}
    reply = csms.call("ExtendedTriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 9})
    assert reply["call_error"]["errorCode"] == "PropertyConstraintViolation", reply


@pytest.mark.rig_ops("rfid")
def test_the_log_shows_the_wall_clock_once_the_central_system_has_set_it(ocpp_rig, csms, ocpp_dut):
    start_session(ocpp_rig, csms)
    lines = [line for line in ocpp_dut.command("log 10") if "transaction started for AA11" in line]
    assert lines and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ocpp: gun 1: transaction started", lines[-1]), lines


def test_a_car_plugged_in_without_a_card_is_said_to_wait_for_one(ocpp_rig, csms, ocpp_dut):
    ocpp_dut.flush()
    ocpp_rig.plug(gun=1, ev=EV)
    assert b"gun 1: A -> B1  offer 0.0 A  (waiting for a card, or a remote start)" in ocpp_dut.read_until(b"start)", 10)


@pytest.mark.rig_ops("net")
def test_status_shows_the_link_as_the_firmware_knows_it_through_an_outage(ocpp_rig, csms, ocpp_dut):
    """A half-open link (the uplink cut, no FIN) is found by the ping within its interval, and
    status --json says so; the link comes back by itself."""
    link = ocpp_dut.wait_status(lambda s: s["ocpp"]["state"] == "online", 15)["ocpp"]
    assert link["boot"] == "Accepted" and 0 <= link["last_frame_s"] < 300
    configure(csms, WebSocketPingInterval=2)
    ocpp_rig.net(up=False)
    offline = ocpp_dut.wait_status(lambda s: s["ocpp"]["state"] == "offline", 20)["ocpp"]
    assert offline["why"].startswith(("link lost", "cannot connect")), offline
    # evsectl status says it in the firmware's words (its `ocpp` line)
    shown = subprocess.run([str(Path(sys.executable).parent / "evsectl"), "status", "--port", ocpp_dut.port],
                           capture_output=True, text=True, timeout=30)
    assert re.search(r"^ocpp: \S+ to ws://\S+: offline \((link lost|cannot connect)", shown.stdout, re.M), \
        shown.stdout + shown.stderr
    ocpp_rig.net(up=True)
    ocpp_dut.wait_status(lambda s: s["ocpp"]["state"] == "online", 60)
