"""OCPP 1.6J when the link to the central system fails: sessions that start, end or run entirely
offline, and a central system that refuses a transaction message. Every transaction message waits
in the journal on flash and reaches the central system in order; every frame must validate."""
import time

import pytest

from rigkit import now_ms
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# The journal a 2-hour outage leaves with two guns charging and MeterValues every 10 s: written
# on the board by the firmware's own journal (2 hours cannot pass in a test), then replayed by the
# firmware after a reboot while a third session charges on, which ends during the replay.
TWO_HOURS = r"""
from evse.ocpp.journal import Journal
from evse.ocpp import clock
j = Journal("/", 2000, log=print)
before = len(j)   # what waits already: the boot's security events, their confirmations batched
t0 = clock.parse_iso("2026-12-05T06:00:00Z")
txs = {}
for n, tag in ((1, "AA11"), (2, "BB22")):
    txs[n] = j.new_local_tx_id()
    j.append("StartTransaction", {"connectorId": n, "idTag": tag, "meterStart": 0, "timestamp": clock.iso(t0)}, tx_id=txs[n])
for k in range(1, %(per_gun)d + 1):
    for n in (1, 2):
        j.append("MeterValues", {"connectorId": n, "transactionId": txs[n], "meterValue": [{
            "timestamp": clock.iso(t0 + 10 * k), "sampledValue": [{"value": str(31 * k),
            "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"}]}]})
for n, tag in ((1, "AA11"), (2, "BB22")):
    j.append("StopTransaction", {"transactionId": txs[n], "idTag": tag, "meterStop": 31 * %(per_gun)d,
                                 "timestamp": clock.iso(t0 + 10 * %(per_gun)d + 5), "reason": "EVDisconnected"})
j.sync()
print("journal", len(j) - before)
"""
PER_GUN = 700  # 2 x (1 + 700 + 1) = 1,404 messages


@pytest.mark.slow
@pytest.mark.rig_ops("net", "rfid", "power")
def test_a_reconnect_after_a_2_hour_outage_replays_1400_messages_in_order_while_an_unplug_opens_at_once(
        ocpp_rig, csms, ocpp_dut, ocpp_events, latency):
    local_list = {"listVersion": 1, "updateType": "Full",
                  "localAuthorizationList": [{"idTag": "CC33", "idTagInfo": {"status": "Accepted"}}]}
    assert csms.call("SendLocalList", local_list)["payload"]["status"] == "Accepted"
    configure(csms, MeterValueSampleInterval=10, WebSocketPingInterval=3)
    reply = csms.call("ChangeConfiguration", {"key": "JournalMaxEntries", "value": "2000"})["payload"]
    assert reply["status"] == "RebootRequired"   # the reboot below takes it
    go_offline(ocpp_rig, ocpp_dut)
    assert "journal 1404" in ocpp_dut.exec(TWO_HOURS % {"per_gun": PER_GUN}, timeout_s=400)
    ocpp_dut.write(b"\x04")   # the firmware starts again, still offline, with the journal on flash
    ocpp_dut.read_until(b"evse ", 30)
    booted = time.monotonic()
    ocpp_rig.plug(gun=1, ev=EV)
    ocpp_rig.rfid(gun=1, id_tag="CC33")
    ocpp_rig.wait_for(lambda guns: guns[0]["contactor"], 15, what="charging on a local-list card, offline")
    back = csms.now_ms()
    ocpp_rig.net(up=True)
    csms.wait("MeterValues", since_ms=back, timeout_s=60)    # the replay has begun
    with latency():
        t = now_ms(ocpp_rig)
        ocpp_rig.unplug(gun=1)
        opened = ocpp_events.first(t, 1, "contactor", "open")["t_ms"]
    left = ocpp_events.first(t, 1, "unplug")["t_ms"]
    assert opened - left <= 100, f"the contactor opened {opened - left:.0f} ms after the EV left, during the replay"
    # sim-ac2's interlock opens it whatever the firmware does: the firmware's own driver too.
    released = ocpp_events.first(t, 1, "drive", "off")["t_ms"]
    assert released - left <= 100, f"the firmware let go of the coil {released - left:.0f} ms after the EV left"
    replaying = len(tx_messages(csms, back))
    assert replaying < 1404, "the replay was over before the unplug: this test shows nothing"
    deadline = time.monotonic() + 300   # about 40 ms a message here: a minute
    while not [f for f in tx_messages(csms, back)[1404:] if f["frame"][2] == "StopTransaction"]:
        assert time.monotonic() < deadline, "the live session's StopTransaction never came"
        time.sleep(0.5)
    sent = tx_messages(csms, back)
    old = [f["frame"] for f in sent[:1404]]
    assert [m[2] for m in old[:2]] == ["StartTransaction"] * 2 and [m[2] for m in old[-2:]] == ["StopTransaction"] * 2
    for n in (1, 2):   # each gun's meter values all there, in order, under the id the central system gave
        values = [m[3] for m in old if m[2] == "MeterValues" and m[3]["connectorId"] == n]
        assert [int(v["meterValue"][0]["sampledValue"][0]["value"]) for v in values] == [31 * k for k in range(1, PER_GUN + 1)]
        assert len({v["transactionId"] for v in values}) == 1 and values[0]["transactionId"] > 0
    # The live session's messages came after the backlog, and no watchdog reset came between.
    assert [f["frame"][2] for f in sent[1404:]][0] == "StartTransaction"
    uptime_s = ocpp_dut.status()["uptime_ms"] / 1000
    assert uptime_s >= time.monotonic() - booted - 1, "the board restarted during the replay"
