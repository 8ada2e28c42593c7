"""OCPP 1.6J against a central system this project did not write (issue 16, item 4): ocpp-rpc, a
Node.js OCPP-J implementation with its own copy of the OCPP 1.6 schemas, in strict mode, so any
frame of the board's that breaks them, and any answer of the board's to its calls, fails the test
(host_tools/interop/csms.js; evsectl csms and its schema checks are not involved).

The board: sim-ac2 (two 32 A guns) started with --csms at the ocpp-rpc server."""
import time

import pytest

from conftest import rig_and_console, run_sim
from interop_csms import NodeCsms
from test_ocpp_core_hil import EV


@pytest.fixture(scope="module")
def interop(request, tmp_path_factory):
    csms = NodeCsms()
    try:
        for started in run_sim(request, "sim-ac2", tmp_path_factory.mktemp("interop") / "flash",
                               "--csms", f"ws://127.0.0.1:{csms.port}/ocpp/"):
            yield csms, started
    finally:
        csms.stop()


@pytest.fixture
def site(interop):
    csms, started = interop
    t = time.monotonic()
    for rig, dut in rig_and_console(started):
        csms.wait_call("BootNotification", 60, since=t)   # a fresh board boots afresh
        yield rig, dut, csms
        assert not csms.invalid(), csms.invalid()


def test_boot_and_every_connector_available(site):
    _, _, csms = site
    boot = csms.calls("BootNotification")[-1]
    assert boot["chargePointVendor"] and boot["chargePointModel"], boot
    t = csms.lines[-1]["t"] - 5
    for connector in (0, 1, 2):
        csms.wait_call("StatusNotification", 30, since=t, connectorId=connector, status="Available")


def test_remote_start_meter_values_and_remote_stop(site):
    rig, _, csms = site
    assert csms.call("ChangeConfiguration", key="MeterValueSampleInterval", value="5") == {"status": "Accepted"}
    t = time.monotonic()
    rig.plug(gun=1, ev=EV)
    csms.wait_call("StatusNotification", 20, since=t, connectorId=1, status="Preparing")
    assert csms.call("RemoteStartTransaction", connectorId=1, idTag="INTEROP1") == {"status": "Accepted"}
    start = csms.wait_call("StartTransaction", 30, since=t, connectorId=1, idTag="INTEROP1")
    tx_id = start["answer"]["transactionId"]
    rig.wait_for(lambda guns: guns[0]["contactor"], 20, what="charging after the remote start")
    csms.wait_call("MeterValues", 20, since=t, connectorId=1, transactionId=tx_id)
    assert csms.call("RemoteStopTransaction", transactionId=tx_id) == {"status": "Accepted"}
    stop = csms.wait_call("StopTransaction", 30, since=t, transactionId=tx_id)["params"]
    assert stop["reason"] == "Remote" and stop["meterStop"] >= start["params"]["meterStart"], stop
    rig.wait_for(lambda guns: not guns[0]["contactor"], 10, what="the contactor to open")
    csms.wait_call("StatusNotification", 20, since=t, connectorId=1, status="Finishing")


def test_configuration_and_trigger_message(site):
    _, _, csms = site
    got = csms.call("GetConfiguration", key=["HeartbeatInterval", "NoSuchKey"])
    assert [k["key"] for k in got["configurationKey"]] == ["HeartbeatInterval"] and got["unknownKey"] == ["NoSuchKey"]
    assert csms.call("ChangeConfiguration", key="HeartbeatInterval", value="abc") == {"status": "Rejected"}
    assert csms.call("ChangeConfiguration", key="NoSuchKey", value="1") == {"status": "NotSupported"}
    t = time.monotonic()
    assert csms.call("TriggerMessage", requestedMessage="Heartbeat") == {"status": "Accepted"}
    csms.wait_call("Heartbeat", 20, since=t)
    assert csms.call("TriggerMessage", requestedMessage="StatusNotification", connectorId=2) == {"status": "Accepted"}
    csms.wait_call("StatusNotification", 20, since=t, connectorId=2)


@pytest.mark.slow
@pytest.mark.rig_ops("net", "rfid")
def test_an_offline_session_arrives_in_order_once_the_link_is_back(site):
    rig, dut, csms = site
    local_list = [{"idTag": "INTEROP2", "idTagInfo": {"status": "Accepted"}}]
    assert csms.call("SendLocalList", listVersion=1, updateType="Full",
                     localAuthorizationList=local_list) == {"status": "Accepted"}
    for key, value in (("MeterValueSampleInterval", "5"), ("WebSocketPingInterval", "3")):
        assert csms.call("ChangeConfiguration", key=key, value=value) == {"status": "Accepted"}
    rig.net(up=False)   # a link that goes silent: the board's pings find it dead
    dut.read_until(b"ocpp: link lost", 30)
    rig.plug(gun=2, ev=EV)
    rig.rfid(gun=2, id_tag="INTEROP2")
    rig.wait_for(lambda guns: guns[1]["contactor"], 15, what="charging offline on a local-list card")
    time.sleep(12)   # two sampled meter values
    rig.unplug(gun=2)
    rig.wait_for(lambda guns: not guns[1]["contactor"], 5, what="the contactor to open")
    back = time.monotonic()
    rig.net(up=True)
    stop = csms.wait_call("StopTransaction", 60, since=back)["params"]
    tx = [m for m in csms.lines if m["t"] >= back and m.get("in") in ("StartTransaction", "MeterValues", "StopTransaction")]
    actions = [m["in"] for m in tx]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction", actions
    assert actions.count("MeterValues") >= 2, actions
    given = tx[0]["answer"]["transactionId"]
    assert stop["transactionId"] == given and stop["reason"] == "EVDisconnected", stop
    assert all(m["params"].get("transactionId") == given for m in tx[1:]), tx
