"""OCTT 1.6 charge-point cases that docs/octt-1.6.md listed as implemented but untested: the
board against the development central system, as the test tool drives it."""
import time

import pytest

from test_ocpp_core_hil import statuses, wait_status
from test_ocpp_profiles_hil import iso_in

EV = {"max_a": 16, "phases": 3, "response_s": 1}
TIMEOUT_S = 5   # ConnectionTimeOut for these tests (the key's default is 60)


def set_key(csms, key, value):
    reply = csms.call("ChangeConfiguration", {"key": key, "value": value})
    assert reply["payload"] == {"status": "Accepted"}, reply


def started(csms, since_ms):
    return [f for f in csms.frames(since_ms=since_ms) if f["dir"] == "in" and f["frame"][2:3] == ["StartTransaction"]]


def wait_available_again(csms, since_ms, connector, within_s):
    """Preparing, then Available within `within_s` (and not sooner than ConnectionTimeOut)."""
    wait_status(csms, since_ms, connector, "Preparing")
    prepared = time.monotonic()
    deadline = prepared + within_s
    while True:
        seen = statuses(csms, since_ms, connector)
        if "Available" in seen[seen.index("Preparing"):]:
            break
        assert time.monotonic() < deadline, f"connector {connector} stayed {seen[-1]}: {seen}"
        time.sleep(0.1)
    assert time.monotonic() - prepared >= TIMEOUT_S - 1.5, "dropped before ConnectionTimeOut"


@pytest.mark.rig_ops("rfid")
def test_tc_004_2_a_card_without_an_ev_within_connection_timeout_is_dropped(ocpp_rig, csms):
    set_key(csms, "ConnectionTimeOut", str(TIMEOUT_S))
    t = csms.now_ms()
    ocpp_rig.rfid(gun=2, id_tag="BB22")
    wait_available_again(csms, t, 2, TIMEOUT_S + 5)
    ocpp_rig.plug(gun=2, ev=EV)   # too late: the card no longer counts
    time.sleep(3)
    assert not started(csms, t) and ocpp_rig.gun(2)["contactor"] is False


def test_tc_011_2_a_remote_start_without_an_ev_within_connection_timeout_is_dropped(ocpp_rig, csms):
    set_key(csms, "ConnectionTimeOut", str(TIMEOUT_S))
    t = csms.now_ms()
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11"})["payload"]["status"] == "Accepted"
    wait_available_again(csms, t, 1, TIMEOUT_S + 5)
    ocpp_rig.plug(gun=1, ev=EV)
    time.sleep(3)
    assert not started(csms, t) and ocpp_rig.gun(1)["contactor"] is False


@pytest.mark.rig_ops("rfid")
def test_tc_005_3_without_stop_on_ev_side_disconnect_an_unplug_suspends_the_transaction(ocpp_rig, csms):
    set_key(csms, "StopTransactionOnEVSideDisconnect", "false")
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    csms.wait("StartTransaction", since_ms=t)
    wait_status(csms, t, 1, "Charging", 15)
    tx_id = csms.transactions()[-1]["transactionId"]
    t_unplug = csms.now_ms()
    ocpp_rig.unplug(gun=1)
    wait_status(csms, t_unplug, 1, "SuspendedEV")
    time.sleep(2)
    assert not [f for f in csms.frames(since_ms=t_unplug) if f["dir"] == "in" and f["frame"][2:3] == ["StopTransaction"]]
    assert ocpp_rig.gun(1)["contactor"] is False   # no EV: no energy, whatever the transaction says
    ocpp_rig.plug(gun=1, ev=EV)                    # the EV again: the same transaction goes on
    wait_status(csms, t_unplug, 1, "Charging", 15)
    assert len(started(csms, t)) == 1
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id})["payload"]["status"] == "Accepted"
    stop = csms.wait("StopTransaction", since_ms=t_unplug)["frame"][3]
    assert stop["transactionId"] == tx_id and stop["reason"] == "Remote"


def reserve(csms, connector, reservation_id, id_tag="AA11", **extra):
    return csms.call("ReserveNow", {"connectorId": connector, "expiryDate": iso_in(600), "idTag": id_tag,
                                    "reservationId": reservation_id, **extra})["payload"]["status"]


@pytest.mark.rig_ops("rfid")
def test_tc_051_a_cancelled_reservation_frees_the_connector_for_any_card(ocpp_rig, csms):
    t = csms.now_ms()
    assert reserve(csms, 1, 11) == "Accepted"
    wait_status(csms, t, 1, "Reserved")
    t2 = csms.now_ms()
    assert csms.call("CancelReservation", {"reservationId": 11})["payload"]["status"] == "Accepted"
    wait_status(csms, t2, 1, "Available")
    assert csms.call("CancelReservation", {"reservationId": 11})["payload"]["status"] == "Rejected"   # gone
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="BB22")   # not the card it was reserved for
    start = csms.wait("StartTransaction", since_ms=t2)["frame"][3]
    assert start["idTag"] == "BB22" and "reservationId" not in start


def test_tc_048_3_an_inoperative_connector_is_not_reserved(ocpp_rig, csms):
    t = csms.now_ms()
    assert csms.call("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})["payload"]["status"] == "Accepted"
    wait_status(csms, t, 2, "Unavailable")
    assert reserve(csms, 2, 12) == "Unavailable"
    time.sleep(2)   # a Reserved would have come by now
    assert "Reserved" not in statuses(csms, t, 2)


@pytest.mark.rig_ops("temperature")
def test_tc_048_1_a_faulted_connector_is_not_reserved(ocpp_rig, csms):
    t = csms.now_ms()
    ocpp_rig.request("temperature", gun=1, celsius=95)   # over the board's stop_c: the gun faults
    wait_status(csms, t, 1, "Faulted", 15)
    assert reserve(csms, 1, 13) == "Faulted"
    time.sleep(2)   # a Reserved would have come by now
    assert "Reserved" not in statuses(csms, t, 1)


@pytest.mark.rig_ops("rfid")
def test_tc_053_a_card_of_the_reservations_parent_uses_the_reserved_connector(ocpp_rig, csms):
    csms.set(tags={"AA11": {"status": "Accepted", "parentIdTag": "FLEET1"},
                   "CC33": {"status": "Accepted", "parentIdTag": "FLEET1"},
                   "BB22": {"status": "Accepted"}})
    t = csms.now_ms()
    assert reserve(csms, 1, 14, parentIdTag="FLEET1") == "Accepted"
    wait_status(csms, t, 1, "Reserved")
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="BB22")   # no parent: refused at the reserved connector
    time.sleep(2)
    assert not started(csms, t)
    ocpp_rig.rfid(gun=1, id_tag="CC33")   # another card of the same parent
    start = csms.wait("StartTransaction", since_ms=t)["frame"][3]
    assert start["idTag"] == "CC33" and start["reservationId"] == 14


@pytest.mark.rig_ops("net", "rfid")
def test_tc_037_2_an_offline_start_the_central_system_refuses_is_suspended_not_stopped(ocpp_rig, csms, ocpp_dut):
    for key, value in (("AllowOfflineTxForUnknownId", "true"), ("StopTransactionOnInvalidId", "false"),
                       ("WebSocketPingInterval", "3")):
        set_key(csms, key, value)
    ocpp_rig.net(up=False)
    ocpp_dut.read_until(b"ocpp: link lost", 30)
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="NOBODY1")   # unknown to anyone: taken offline (AllowOfflineTxForUnknownId)
    ocpp_rig.wait_for(lambda guns: guns[0]["contactor"], 15, what="charging offline on an unknown card")
    back = csms.now_ms()
    ocpp_rig.net(up=True)
    start = csms.wait("StartTransaction", since_ms=back, timeout_s=60)
    assert start["frame"][3]["idTag"] == "NOBODY1"
    wait_status(csms, back, 1, "SuspendedEVSE", 15)   # Invalid in the answer: no more energy ...
    ocpp_rig.wait_for(lambda guns: not guns[0]["contactor"], 10, what="the contactor to open")
    time.sleep(2)
    assert not [f for f in csms.frames(since_ms=back) if f["dir"] == "in" and f["frame"][2:3] == ["StopTransaction"]]
    tx_id = csms.transactions()[-1]["transactionId"]   # ... and the transaction stays open until it is stopped
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id})["payload"]["status"] == "Accepted"
    assert csms.wait("StopTransaction", since_ms=back)["frame"][3]["transactionId"] == tx_id


TX_PROFILE = {"chargingProfileId": 31, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
              "chargingProfileKind": "Relative",
              "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}


def test_tc_059_a_remote_start_with_a_tx_profile_charges_under_it(ocpp_rig, csms):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    reply = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11", "chargingProfile": TX_PROFILE})
    assert reply["payload"]["status"] == "Accepted"
    csms.wait("StartTransaction", since_ms=t)
    ocpp_rig.wait_for(lambda guns: guns[0]["contactor"] and round(guns[0]["offered_a"]) == 10, 15,
                      what="charging at the profile's 10 A (the EV takes 16)")
    schedule = csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 60})["payload"]
    assert schedule["status"] == "Accepted" and schedule["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 10


def test_tc_060_a_remote_start_with_a_profile_that_is_not_a_tx_profile_is_rejected(ocpp_rig, csms):
    t = csms.now_ms()
    profile = dict(TX_PROFILE, chargingProfilePurpose="TxDefaultProfile")
    reply = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11", "chargingProfile": profile})
    assert reply["payload"]["status"] == "Rejected"
    ocpp_rig.plug(gun=1, ev=EV)
    time.sleep(3)
    assert not started(csms, t)
