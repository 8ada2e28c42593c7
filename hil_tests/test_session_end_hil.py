"""Every path that ends a charging session ends its OCPP transaction exactly once, with the
reason and the status notification docs/session-end.md lists. The rows not here are tested
where their feature is (the table names each test)."""
import time

import pytest

from rigkit import now_ms
from test_ocpp_core_hil import EV, wait_status
from test_ocpp_offline_hil import go_offline
from test_ocpp_profiles_hil import configure, sent, start_session


def stops(csms, t):
    return sent(csms, t, "StopTransaction")


def the_one_stop(csms, t, reason, timeout_s=15):
    """The session's StopTransaction, with its reason, and no second one after it."""
    stop = csms.wait("StopTransaction", since_ms=t, timeout_s=timeout_s)["frame"][3]
    assert stop["reason"] == reason, stop
    time.sleep(1.5)
    assert len(stops(csms, t)) == 1, stops(csms, t)
    start = [p for p in sent(csms, t, "StartTransaction")][-1]
    assert stop["meterStop"] >= start["meterStart"], (start, stop)
    return stop


def faulted_with(csms, t, error_code):
    wait_status(csms, t, 1, "Faulted", 15)
    codes = [p["errorCode"] for p in sent(csms, t, "StatusNotification") if p["connectorId"] == 1 and p["status"] == "Faulted"]
    assert codes and codes[0] == error_code, codes


def no_stop_yet(csms, t, seconds=2):
    """The fault may clear by itself (after its delay, when cool, when the meter answers): the
    session waits for that, or for the EV to leave."""
    time.sleep(seconds)
    assert not stops(csms, t)


@pytest.mark.rig_ops("rfid", "ev")
def test_the_ev_stops_by_itself_the_session_waits_and_ends_when_it_is_unplugged(ocpp_rig, csms):
    t = start_session(ocpp_rig, csms)
    ocpp_rig.ev(gun=1, target_soc=1)   # full: the EV goes back to B
    wait_status(csms, t, 1, "SuspendedEV", 15)
    no_stop_yet(csms, t)
    ocpp_rig.unplug(gun=1)
    the_one_stop(csms, t, "EVDisconnected")


@pytest.mark.rig_ops("rfid")
def test_the_same_card_again_ends_the_session_locally(ocpp_rig, csms):
    t = start_session(ocpp_rig, csms)
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    the_one_stop(csms, t, "Local")


# A fault that clears by itself: (rig op, its fields, the OCPP errorCode, seconds to show).
SELF_CLEARING = {
    "rcd": ("rcd_trip", {}, "GroundFailure", 2),
    "overcurrent": ("ev", {"force_a": 45}, "OverCurrentFailure", 1),   # > 110 % of the offer + 0.5 A, 7 s
    "overtemp": ("temperature", {"celsius": 95}, "HighTemperature", 2),
    "meter": ("meter", {"fault": "silent"}, "PowerMeterFailure", 2),
}


@pytest.mark.rig_ops("rfid", "rcd_trip", "ev", "temperature", "meter")
@pytest.mark.parametrize("fault", sorted(SELF_CLEARING))
def test_a_fault_that_clears_by_itself_pauses_the_session_which_ends_when_the_ev_is_unplugged(ocpp_rig, csms, fault):
    op, fields, error_code, wait_s = SELF_CLEARING[fault]
    t = start_session(ocpp_rig, csms)
    ocpp_rig.request(op, gun=1, **fields)
    faulted_with(csms, t, error_code)
    no_stop_yet(csms, t, wait_s)
    ocpp_rig.unplug(gun=1)
    the_one_stop(csms, t, "EVDisconnected")


@pytest.mark.rig_ops("rfid", "estop", "net", "power")
@pytest.mark.parametrize("link", ["online", "offline", "offline-then-power-cut"])
def test_an_emergency_stop_ends_every_session_at_once_exactly_once_online_offline_and_across_a_reboot(
        ocpp_rig, csms, ocpp_dut, ocpp_events, link, latency):
    """The button cuts the coils' supply itself; the firmware sees its input, ends every session
    with EmergencyStop, shows Faulted, and lets the guns be once it is released. Offline the stop
    waits in the journal, across a power cut too, and arrives once."""
    configure(csms, WebSocketPingInterval=3)   # a link cut is found within seconds
    t = start_session(ocpp_rig, csms, gun=1)
    start_session(ocpp_rig, csms, gun=2, tag="BB22")
    if link != "online":
        go_offline(ocpp_rig, ocpp_dut)
    with latency():
        t_press = now_ms(ocpp_rig)
        ocpp_rig.estop(on=True)
        let_go = [ocpp_events.first(t_press, gun, "drive", "off") for gun in (1, 2)]   # the firmware's driver
    pressed = ocpp_events.first(t_press, 0, "estop", True)
    assert all(e["t_ms"] - pressed["t_ms"] <= 100 for e in let_go), (pressed, let_go)
    ocpp_dut.read_until(b"emergency stop pressed", 5)
    ocpp_dut.wait_status(lambda s: all(g["fault"] == "ESTOP" for g in s["guns"]), 5)
    for _ in (1, 2):   # each stop is in the journal on flash when its line comes
        ocpp_dut.read_until(b"stopped (EmergencyStop)", 15)
    if link == "offline-then-power-cut":
        ocpp_rig.power(on=False)
        ocpp_rig.power(on=True)
    if link != "online":
        ocpp_rig.net(up=True)
    deadline = time.monotonic() + 60   # offline: after the reconnect's back-off
    while len(sent(csms, t, "StopTransaction")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)   # and no third
    stops_sent = sent(csms, t, "StopTransaction")
    assert sorted(p["reason"] for p in stops_sent) == ["EmergencyStop", "EmergencyStop"], stops_sent
    assert len({p["transactionId"] for p in stops_sent}) == 2
    faulted = [p for p in sent(csms, t, "StatusNotification") if p["status"] == "Faulted"]
    assert {(p["connectorId"], p["errorCode"], p.get("vendorErrorCode")) for p in faulted} == \
        {(1, "OtherError", "ESTOP"), (2, "OtherError", "ESTOP")}, faulted
    released = csms.now_ms()
    ocpp_rig.estop(on=False)
    ocpp_dut.wait_status(lambda s: all(g["fault"] is None for g in s["guns"]), 5)
    wait_status(csms, released, 1, "Preparing", 15)   # the EVs are still plugged: a new card starts anew
    assert len(sent(csms, t, "StopTransaction")) == 2


@pytest.mark.rig_ops("rfid", "ev", "weld")
def test_a_weld_ends_the_session_at_once_with_reason_other(ocpp_rig, csms):
    """A weld waits for a technician: no session can go on, so it ends while the EV is still
    plugged in."""
    t = start_session(ocpp_rig, csms)
    ocpp_rig.weld(gun=1, on=True)
    ocpp_rig.ev(gun=1, target_soc=1)   # the EV stops: the contactor opens and the weld shows
    faulted_with(csms, t, "PowerSwitchFailure")
    the_one_stop(csms, t, "Other")
    ocpp_rig.weld(gun=1, on=False)


@pytest.mark.rig_ops("rfid")
def test_a_connector_made_inoperative_during_a_session_changes_when_the_session_ends(ocpp_rig, csms):
    t = start_session(ocpp_rig, csms)
    reply = csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})["payload"]
    assert reply == {"status": "Scheduled"}
    no_stop_yet(csms, t)   # the session goes on
    assert ocpp_rig.gun(1)["contactor"]
    ocpp_rig.unplug(gun=1)
    the_one_stop(csms, t, "EVDisconnected")
    wait_status(csms, t, 1, "Unavailable", 10)
    csms.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})


@pytest.mark.rig_ops("rfid")
def test_a_card_the_central_system_blocks_at_the_start_ends_the_session_deauthorized(ocpp_rig, csms):
    """The card was let in from the charger's cache; the StartTransaction's answer says it is
    blocked now (StopTransactionOnInvalidId)."""
    configure(csms, LocalPreAuthorize="true", StopTransactionOnInvalidId="true")
    first = start_session(ocpp_rig, csms)   # AA11 accepted: the charger caches it
    ocpp_rig.unplug(gun=1)
    csms.wait("StopTransaction", since_ms=first, timeout_s=15)
    csms.set(tag={"id": "AA11", "status": "Blocked"})
    try:
        t = csms.now_ms()
        ocpp_rig.plug(gun=1, ev=EV)
        ocpp_rig.rfid(gun=1, id_tag="AA11")
        the_one_stop(csms, t, "DeAuthorized")
    finally:   # the central system serves the worker's other tests: AA11 is theirs again
        csms.set(tag={"id": "AA11", "status": "Accepted"})
