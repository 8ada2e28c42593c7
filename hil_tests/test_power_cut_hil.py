"""A power cut at any write to the flash loses nothing (issue 14): a scripted session (a setting
changed, a local list sent, a fault latched, two transactions, one with meter values, then a
firmware update downloaded, staged and installed) is cut at its nth block write, for n over the
writes it makes; after the reboot every setting is the old or the new value, a latched fault
still stands, the board runs the old firmware or the new one, and the central system has every
transaction exactly once, started and stopped, with meterStop at or above meterStart.

`make test` cuts at a spread of the session's writes and of the update's (POWER_CUT_SAMPLES each);
`--power-cut-every-write` cuts at each one (about 13 s a cut)."""
import os
import time

import pytest

from host_tools.csms.client import CsmsError
from host_tools.flash import firmware_version
from test_ocpp_core_hil import EV, wait_status
from test_ocpp_profiles_hil import firmware_bundle, iso_in, sent

POWER_CUT_SAMPLES = 2
LIST = {"listVersion": 5, "updateType": "Full", "localAuthorizationList": [
    {"idTag": "AA11", "idTagInfo": {"status": "Accepted"}}, {"idTag": "BB22", "idTagInfo": {"status": "Accepted"}}]}

pytestmark = [pytest.mark.rig_ops("power", "factory", "cut_at_write", "rfid", "rcd_test_fail"),
              pytest.mark.virtual_only("counts the writes to the virtual board's flash image")]


def powered(rig):
    return rig.snapshot()["powered"]


def wait_or_cut(rig, seconds):
    """Up to `seconds`; False as soon as the power is gone."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not powered(rig):
            return False
        time.sleep(0.1)
    return powered(rig)


VERSION = firmware_version()   # the factory image's
NEW_VERSION = "0.1.1-cut"


def script(rig, csms, firmware_url, seen=None):
    """The session every cut interrupts. Returns when it is over or the power has gone.
    `seen["update_from"]`: the flash's write count as the update began."""
    try:
        csms.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "2"}, timeout_s=5)
        if not powered(rig):
            return
        csms.call("SendLocalList", LIST, timeout_s=5)
        if not powered(rig):
            return
        rig.rcd_test_fail(gun=2, on=True)      # gun 2 latches RCD_TEST (cleared by an unplug only)
        rig.plug(gun=2, ev=EV)
        rig.rfid(gun=2, id_tag="BB22")
        rig.plug(gun=1, ev=EV)
        rig.rfid(gun=1, id_tag="AA11")
        if not wait_or_cut(rig, 3):
            return
        rig.rcd_test_fail(gun=2, on=False)     # from here only the latch keeps gun 2 faulted
        if not wait_or_cut(rig, 4):            # meter values every 2 s
            return
        rig.unplug(gun=1)
        if not wait_or_cut(rig, 3):
            return
        # The update installs and the charger restarts (gun 2's session ends with SoftReset).
        t = csms.now_ms()
        if seen is not None:
            seen["update_from"] = rig.request("flash_writes")["writes"]
        csms.call("UpdateFirmware", {"location": firmware_url, "retrieveDate": iso_in(0)}, timeout_s=5)
        deadline = time.monotonic() + 60
        while powered(rig) and not sent(csms, t, "BootNotification"):
            assert time.monotonic() < deadline, "no boot after the firmware update"
            time.sleep(0.2)
    except CsmsError:
        return                                 # a call the cut left without an answer


def settle(rig, csms):
    """After a cut: the power back on, and the board booted and registered again."""
    if not powered(rig):
        t = csms.now_ms()
        rig.power(on=True)
        csms.wait("BootNotification", since_ms=t, timeout_s=30)
        wait_status(csms, t, 0, "Available", 30)


def check(rig, csms, since_ms, fault_before_cut):
    boots = sent(csms, since_ms, "BootNotification")
    assert boots and boots[-1]["firmwareVersion"] in (VERSION, NEW_VERSION), boots[-1:]
    value = csms.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})["payload"]["configurationKey"][0]["value"]
    assert value in ("60", "2"), value
    version = csms.call("GetLocalListVersion", {})["payload"]["listVersion"]
    assert version in (0, 5), version
    if fault_before_cut:   # reported Faulted before the cut: it still stands after the reboot
        assert rig.gun(2)["duty"] in (0.0, 100.0) and not rig.gun(2)["contactor"]
        deadline = time.monotonic() + 10
        while True:
            after = [p for p in sent(csms, since_ms, "StatusNotification") if p["connectorId"] == 2]
            if after and after[-1]["status"] == "Faulted":
                break
            assert time.monotonic() < deadline, after
            time.sleep(0.2)
    for gun in (1, 2):
        if rig.gun(gun)["plugged"]:
            rig.unplug(gun=gun)
    def active():   # this run's: the central system keeps the sessions other tests left running
        return [tx for tx in csms.transactions() if tx["active"] and tx["started_ms"] >= since_ms]
    deadline = time.monotonic() + 30
    while active():
        assert time.monotonic() < deadline, active()
        time.sleep(0.2)
    # A message whose answer the cut took is sent again (at least once); the central system takes
    # a repeated StartTransaction for the transaction it started (docs/csms.md): each session once.
    txs = [tx for tx in csms.transactions() if tx["started_ms"] >= since_ms]
    assert len({tx["connectorId"] for tx in txs}) == len(txs) <= 2, txs
    starts = sent(csms, since_ms, "StartTransaction")
    assert {(s["connectorId"], s["meterStart"], s["timestamp"]) for s in starts} == \
        {(tx["connectorId"], tx["meterStart"], tx["startTime"]) for tx in txs}, (starts, txs)
    stopped = {s["transactionId"] for s in sent(csms, since_ms, "StopTransaction")}
    for tx in txs:
        assert tx["transactionId"] in stopped and tx["meterStop"] >= tx["meterStart"], tx


def writes_of_the_script(rig, csms, firmware_url):
    """How many block writes the script makes on a fresh board (it runs once, uncut), and how
    many of them before the update began."""
    start = rig.request("flash_writes")["writes"]
    seen = {}
    script(rig, csms, firmware_url, seen)
    return rig.request("flash_writes")["writes"] - start, seen["update_from"] - start


def cut_points(request, total, session):
    only = os.environ.get("EVSE_POWER_CUT_AT")   # N, FIRST-LAST or FIRST-LAST/STEP: the writes to cut at
    if only:
        span, _, step = only.partition("/")
        first, _, last = span.partition("-")
        return list(range(int(first), int(last or first) + 1, int(step or 1)))
    if request.config.getoption("--power-cut-every-write"):
        return list(range(1, total + 1))
    spread = set()
    for first, last in ((1, session), (session + 1, total)):   # the session's writes, then the update's
        spread |= {first + round((last - first) * (k + 1) / POWER_CUT_SAMPLES) for k in range(POWER_CUT_SAMPLES)}
    return sorted(spread)


@pytest.mark.slow
def test_a_power_cut_at_any_write_of_a_session_loses_no_setting_fault_or_transaction(request, ocpp_rig, csms, tmp_path):
    assert "'n' must be a whole number" in ocpp_rig.raw({"op": "cut_at_write", "n": 0})["error"]
    firmware_url = firmware_bundle(csms, tmp_path, NEW_VERSION, "fw-cut.bin")
    t = csms.now_ms()
    total, session = writes_of_the_script(ocpp_rig, csms, firmware_url)
    assert total > 10, total
    assert sent(csms, t, "BootNotification")[-1]["firmwareVersion"] == NEW_VERSION   # uncut, it installs
    points = cut_points(request, total, session)
    print("power cut: the script makes %d block writes (the update from write %d); cut at %s" % (total, session + 1, points))
    settle(ocpp_rig, csms)
    check(ocpp_rig, csms, t, fault_before_cut=True)
    for n in points:
        ocpp_rig.power(on=False)
        ocpp_rig.factory()   # programming the flash: slow on a busy machine
        ocpp_rig.reset()
        t = csms.now_ms()
        ocpp_rig.power(on=True)
        csms.wait("BootNotification", since_ms=t, timeout_s=30)
        wait_status(csms, t, 0, "Available", 30)
        ocpp_rig.request("cut_at_write", n=n)
        script(ocpp_rig, csms, firmware_url)
        ocpp_rig.request("cut_at_write", n=None)
        time.sleep(0.3)   # a cut reached as the script ended: the power goes within 50 ms
        cut = not powered(ocpp_rig)
        faulted = any(p["connectorId"] == 2 and p["status"] == "Faulted" for p in sent(csms, t, "StatusNotification"))
        settle(ocpp_rig, csms)
        try:
            check(ocpp_rig, csms, t, fault_before_cut=faulted)
        except (AssertionError, CsmsError) as e:
            raise AssertionError(f"cut at write {n} of {total} ({'cut' if cut else 'not reached'}): {e}") from None
        print("power cut at write %d of %d: %s, nothing lost" % (n, total, "cut" if cut else "not reached"), flush=True)
