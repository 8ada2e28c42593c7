"""OCPP 1.6J Core against the development central system, as the operator sees it: every frame
the board sends must validate against the official schemas (conftest's every_frame_valid)."""
import time

import pytest

from rigkit import now_ms

EV = {"max_a": 16, "phases": 3, "response_s": 1}


def statuses(csms, since_ms, connector):
    return [f["frame"][3]["status"] for f in csms.frames(since_ms=since_ms)
            if f["dir"] == "in" and f["frame"][0] == 2 and f["frame"][2] == "StatusNotification"
            and f["frame"][3]["connectorId"] == connector]


def wait_status(csms, since_ms, connector, status, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if status in statuses(csms, since_ms, connector):
            return
        time.sleep(0.1)
    raise AssertionError(f"connector {connector} never reported {status}; it reported {statuses(csms, since_ms, connector)}")


@pytest.mark.rig_ops("power")  # the fixture's power cycle is the cold boot
def test_cold_boot_is_accepted_and_every_connector_reports_available(ocpp_rig, csms):
    boot = csms.wait("BootNotification", since_ms=ocpp_rig.booted_ms)
    assert boot["frame"][3]["chargePointModel"] == "sim-ac2"
    for connector in (0, 1, 2):
        wait_status(csms, ocpp_rig.booted_ms, connector, "Available")


@pytest.mark.rig_ops("rfid")
def test_plug_first_then_card_starts_a_transaction_that_charges(ocpp_rig, csms, ocpp_events):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    wait_status(csms, t, 1, "Preparing")
    time.sleep(1)
    assert ocpp_rig.gun(1)["contactor"] is False  # nobody authorized: no energy
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    csms.wait("Authorize", since_ms=t)
    start = csms.wait("StartTransaction", since_ms=t)["frame"][3]
    assert start["connectorId"] == 1 and start["idTag"] == "AA11"
    ocpp_events.first(now_ms(ocpp_rig) - 5000, 1, "contactor", "closed", timeout_s=15)
    wait_status(csms, t, 1, "Charging", 15)


@pytest.mark.rig_ops("rfid")
def test_card_first_then_plug_starts_the_transaction(ocpp_rig, csms, ocpp_events):
    t = csms.now_ms()
    ocpp_rig.rfid(gun=2, id_tag="BB22")
    wait_status(csms, t, 2, "Preparing")
    ocpp_rig.plug(gun=2, ev=EV)
    start = csms.wait("StartTransaction", since_ms=t)["frame"][3]
    assert start["connectorId"] == 2 and start["idTag"] == "BB22"


@pytest.mark.rig_ops("rfid")
def test_an_unknown_card_starts_nothing(ocpp_rig, csms):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="NOBODY")
    csms.wait("Authorize", since_ms=t)
    time.sleep(2)
    assert not [f for f in csms.frames(since_ms=t) if f["dir"] == "in" and f["frame"][2:3] == ["StartTransaction"]]
    assert ocpp_rig.gun(1)["contactor"] is False


@pytest.mark.rig_ops("rfid")
def test_ev_side_disconnect_stops_the_transaction(ocpp_rig, csms, ocpp_events):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    csms.wait("StartTransaction", since_ms=t)
    wait_status(csms, t, 1, "Charging", 15)
    ocpp_rig.unplug(gun=1)
    stop = csms.wait("StopTransaction", since_ms=t)["frame"][3]
    assert stop["reason"] == "EVDisconnected"
    wait_status(csms, t, 1, "Available")


def test_remote_start_and_stop(ocpp_rig, csms):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    reply = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11"})
    assert reply["payload"]["status"] == "Accepted"
    csms.wait("StartTransaction", since_ms=t)
    wait_status(csms, t, 1, "Charging", 15)
    tx_id = csms.transactions()[-1]["transactionId"]
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id + 1000})["payload"]["status"] == "Rejected"
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id})["payload"]["status"] == "Accepted"
    stop = csms.wait("StopTransaction", since_ms=t)["frame"][3]
    assert stop["reason"] == "Remote" and stop["transactionId"] == tx_id
    wait_status(csms, t, 1, "Finishing")


def test_remote_start_is_rejected_on_a_busy_or_unknown_connector(ocpp_rig, csms):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11"})["payload"]["status"] == "Accepted"
    csms.wait("StartTransaction", since_ms=t)
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "BB22"})["payload"]["status"] == "Rejected"
    for n in (0, 3, 7):   # a valid request for a connector this charger does not have: refused
        reply = csms.call("RemoteStartTransaction", {"connectorId": n, "idTag": "BB22"})
        assert reply.get("payload") == {"status": "Rejected"}, (n, reply)


def test_a_300_kb_call_gets_a_callerror_and_the_link_and_the_charging_go_on(ocpp_rig, csms, ocpp_events):
    t = csms.now_ms()
    ocpp_rig.plug(gun=1, ev=EV)
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11"})["payload"]["status"] == "Accepted"
    wait_status(csms, t, 1, "Charging", 15)
    charging = now_ms(ocpp_rig)
    reply = csms.call("DataTransfer", {"vendorId": "evse", "data": "z" * 300_000})
    error = reply.get("call_error", {})
    assert error.get("errorCode") == "FormationViolation", reply
    assert "over this charger's 8192-byte limit" in error.get("errorDescription", ""), reply
    # The same connection answers the next CALL, and the car charged throughout.
    assert csms.call("GetConfiguration", {"key": ["HeartbeatInterval"]})["payload"]["configurationKey"]
    assert not [e for e in ocpp_events.since(charging) if e["what"] == "contactor"]
