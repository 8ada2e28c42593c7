"""OCPP 1.6J when the link to the central system fails: sessions that start, end or run entirely
offline, and a central system that refuses a transaction message. Every transaction message waits
in the journal on flash and reaches the central system in order; every frame must validate."""
import time

import pytest

from test_ocpp_core_hil import EV
from test_ocpp_profiles_hil import configure, start_session

TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


def tx_messages(csms, since_ms):
    """The transaction messages the board sent after `since_ms`, as frame log entries."""
    return [f for f in csms.frames(since_ms=since_ms)
            if f["dir"] == "in" and f["frame"][0] == 2 and f["frame"][2] in TX_ACTIONS]


def go_offline(rig, dut):
    rig.net(up=False)
    dut.read_until(b"ocpp: link lost", 30)


@pytest.mark.rig_ops("net", "rfid")
def test_an_entirely_offline_session_arrives_in_order_under_the_transaction_id_it_is_given(ocpp_rig, csms, ocpp_dut):
    local_list = {"listVersion": 1, "updateType": "Full",
                  "localAuthorizationList": [{"idTag": "AA11", "idTagInfo": {"status": "Accepted"}}]}
    assert csms.call("SendLocalList", local_list)["payload"]["status"] == "Accepted"
    configure(csms, MeterValueSampleInterval=5, WebSocketPingInterval=3)
    go_offline(ocpp_rig, ocpp_dut)
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="AA11")
    ocpp_rig.wait_for(lambda guns: guns[0]["contactor"], 15, what="charging on a local-list card, offline")
    time.sleep(17)  # three sampled meter values
    ocpp_rig.unplug(gun=1)
    ocpp_rig.wait_for(lambda guns: not guns[0]["contactor"], 5, what="the contactor to open")
    time.sleep(1)
    back = csms.now_ms()
    assert not tx_messages(csms, back - 20000), "a transaction message reached the central system while offline"
    ocpp_rig.net(up=True)
    csms.wait("StopTransaction", since_ms=back, timeout_s=60)
    sent = tx_messages(csms, back)
    actions = [f["frame"][2] for f in sent]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction", actions
    assert actions.count("MeterValues") >= 3 and set(actions[1:-1]) == {"MeterValues"}, actions
    tx = csms.transactions()[-1]
    assert tx["idTag"] == "AA11" and tx["reason"] == "EVDisconnected" and tx["meterStop"] > tx["meterStart"]
    # The central system gave the id when the StartTransaction arrived; the board had queued the
    # rest under its own id and sent them under the given one.
    assert {f["frame"][3]["transactionId"] for f in sent[1:]} == {tx["transactionId"]}
    # Timestamps tell when things happened, not when they were sent: all from the offline time.
    stamps = ([sent[0]["frame"][3]["timestamp"]] + [f["frame"][3]["meterValue"][0]["timestamp"] for f in sent[1:-1]]
              + [sent[-1]["frame"][3]["timestamp"]])
    assert stamps == sorted(stamps)
    assert tx["meterValues"], "the meter values were not attached to the transaction"


@pytest.mark.rig_ops("net", "rfid")
def test_a_60_s_outage_during_a_transaction_loses_no_meter_value(ocpp_rig, csms, ocpp_dut):
    configure(csms, MeterValueSampleInterval=5, WebSocketPingInterval=5)
    t = start_session(ocpp_rig, csms)
    csms.wait("MeterValues", since_ms=t, timeout_s=15)
    down = time.monotonic()
    go_offline(ocpp_rig, ocpp_dut)
    time.sleep(max(0.0, 60 - (time.monotonic() - down)))
    ocpp_rig.unplug(gun=1)  # the session ends offline too
    time.sleep(1)
    back = csms.now_ms()
    ocpp_rig.net(up=True)
    stop = csms.wait("StopTransaction", since_ms=back, timeout_s=90)
    values = [f for f in tx_messages(csms, t) if f["frame"][2] == "MeterValues"]
    stamps = [v["frame"][3]["meterValue"][0]["timestamp"] for v in values]
    # In order; a message in flight when the link died may come twice (at-least-once delivery).
    assert stamps == sorted(stamps)
    during = {s for v, s in zip(values, stamps) if v["t_ms"] > back}
    assert len(during) >= 10, stamps  # one every 5 s of the outage, sent after it
    assert all(v["t_ms"] < stop["t_ms"] for v in values)  # in order: the stop after its meter values


@pytest.mark.rig_ops("rfid")
def test_a_refused_transaction_message_is_tried_transaction_message_attempts_times_then_dropped(
        ocpp_rig, csms, ocpp_dut):
    configure(csms, TransactionMessageAttempts=3, TransactionMessageRetryInterval=2)
    start_session(ocpp_rig, csms)
    csms.set(refuse=["StopTransaction"])
    t = csms.now_ms()
    ocpp_rig.unplug(gun=1)
    ocpp_dut.read_until(b"journal: dropped StopTransaction", 30)
    tries = [f for f in tx_messages(csms, t) if f["frame"][2] == "StopTransaction"]
    assert len(tries) == 3
    gaps_ms = [b["t_ms"] - a["t_ms"] for a, b in zip(tries, tries[1:])]
    assert gaps_ms[0] >= 2000 and gaps_ms[1] >= 4000, gaps_ms  # the interval times the attempt
    csms.set(refuse=[])
    # The journal has moved on: the next session is not held behind the dropped message, and the
    # dropped one does not come back.
    t = start_session(ocpp_rig, csms, gun=2, tag="BB22")
    time.sleep(3)
    assert [f["frame"][2] for f in tx_messages(csms, t)] == ["StartTransaction"]
