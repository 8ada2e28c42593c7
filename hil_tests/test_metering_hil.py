"""The guns' Modbus RTU energy meters on the board's RS-485 line, as the rig and the central
system see them: the registers bill the sessions and survive a power cut; a meter that falls
silent or talks garbage stops its gun (the default) until it answers again, and nothing crashes."""
import time

import pytest

from rigkit import start_charging
from test_ocpp_profiles_hil import start_session

EV = {"max_a": 32, "phases": 3, "response_s": 1}


pytestmark = pytest.mark.meters  # skipped on a board whose guns have no meter (conftest)


def gun_status(dut, n):
    return dut.status()["guns"][n - 1]


# bad_crc and busy end the same way; tests/test_modbus_mpy.py runs all four under MicroPython.
@pytest.mark.rig_ops("meter")
@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_a_meter_that_stops_answering_stops_its_gun_until_it_answers_again(rig, events, dut, fault):
    start_charging(rig, events, gun=1)
    start_charging(rig, events, gun=2)
    rig.meter(gun=1, fault=fault)
    rig.wait_for(lambda guns: not guns[0]["contactor"], 12, what=f"gun 1 to stop with its meter {fault}")
    assert rig.gun(2)["contactor"], "the other gun's meter answers: it charges on"
    s = dut.wait_status(lambda s: s["guns"][0]["fault"] == "METER", 5)
    assert s["guns"][0]["meter_ok"] is False and s["guns"][1]["fault"] is None
    rig.meter(gun=1, fault=None)
    rig.wait_for(lambda guns: guns[0]["contactor"], 15, what="gun 1 charging again once its meter answers")
    assert gun_status(dut, 1)["fault"] is None


@pytest.mark.rig_ops("meter")
def test_a_gun_configured_to_charge_on_without_its_meter_does(rig, events, dut):
    assert any("meter_fault = continue" in line for line in dut.command("config set meter_fault continue")), \
        dut.command("config get meter_fault")
    start_charging(rig, events, gun=1)
    rig.meter(gun=1, fault="silent")
    dut.wait_status(lambda s: s["guns"][0]["meter_ok"] is False, 12)
    assert rig.gun(1)["contactor"] and gun_status(dut, 1)["fault"] is None


@pytest.mark.rig_ops("rfid", "power")
def test_the_registers_bill_the_sessions_and_survive_a_power_cut(ocpp_rig, csms):
    start_session(ocpp_rig, csms, gun=1)
    ocpp_rig.wait_for(lambda guns: guns[0]["energy_wh"] > 20, 60, what="20 Wh through gun 1")
    ocpp_rig.unplug(gun=1)
    first = csms.wait("StopTransaction", since_ms=ocpp_rig.booted_ms, timeout_s=15)["frame"][3]
    world_wh = ocpp_rig.gun(1)["energy_wh"]
    assert abs(first["meterStop"] - world_wh) <= 2   # the meter's whole Wh, read once a second
    ocpp_rig.power(on=False)
    time.sleep(1)
    t = csms.now_ms()
    ocpp_rig.power(on=True)
    csms.wait("BootNotification", since_ms=t, timeout_s=20)
    start_session(ocpp_rig, csms, gun=1)
    second = csms.wait("StartTransaction", since_ms=t, timeout_s=15)["frame"][3]
    assert second["meterStart"] >= first["meterStop"]


@pytest.mark.rig_ops("rfid")
def test_a_remote_stop_bills_every_wh_the_car_drew_before_its_contactor_opened(ocpp_rig, csms):
    start_session(ocpp_rig, csms, gun=1)
    ocpp_rig.wait_for(lambda guns: guns[0]["energy_wh"] > 10, 60, what="10 Wh through gun 1")
    tx_id = csms.transactions()[-1]["transactionId"]
    t = csms.now_ms()
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id})["payload"]["status"] == "Accepted"
    stop = csms.wait("StopTransaction", since_ms=t, timeout_s=20)["frame"][3]
    g = ocpp_rig.gun(1)
    assert not g["contactor"] and g["amps"] == 0   # the car is plugged in still, drawing nothing
    assert abs(stop["meterStop"] - g["energy_wh"]) <= 1, (stop, g)
