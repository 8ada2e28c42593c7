"""The independent central system of the interop tests (host_tools/interop/csms.js on ocpp-rpc)
must catch what breaks the OCPP 1.6 schemas: a frame the tests would otherwise pass."""
import asyncio
import json
import sys
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hil_tests"))
from interop_csms import NodeCsms  # noqa: E402


async def exchange(port, frames):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ocpp/CP1", subprotocols=["ocpp1.6"]) as ws:
        answers = []
        for frame in frames:
            await ws.send(json.dumps(frame))
            answers.append(json.loads(await ws.recv()))
        return answers


def test_a_frame_that_breaks_the_schema_is_refused_and_reported_a_valid_one_answered():
    csms = NodeCsms()
    try:
        bad, good = asyncio.run(exchange(csms.port, [
            [2, "1", "BootNotification", {"chargePointVendor": "x" * 21, "chargePointModel": "m"}],  # over 20 chars
            [2, "2", "BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"}]]))
        assert bad[0] == 4 and bad[1] == "1", bad                # a CALLERROR
        assert good[0] == 3 and good[2]["status"] == "Accepted", good
        invalid = csms.wait(lambda m: "invalid" in m, 5)
        assert invalid["method"] == "BootNotification" and invalid["isCall"] and not invalid["outbound"], invalid
        assert len(csms.calls("BootNotification")) == 1          # only the valid one reached the handler
    finally:
        csms.stop()


async def answer_badly(port, csms):
    """Connects, sends a frame that is no JSON, and answers the central system's call with a
    payload its schema refuses."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/ocpp/CP2", subprotocols=["ocpp1.6"]) as ws:
        await ws.send("this is not OCPP-J")
        error = json.loads(await ws.recv())   # ocpp-rpc's CALLERROR for it
        assert error[0] == 4, error
        loop = asyncio.get_running_loop()
        asked = loop.run_in_executor(None, lambda: _call_refused(csms))
        call = json.loads(await ws.recv())
        assert call[0] == 2 and call[2] == "Reset", call
        await ws.send(json.dumps([3, call[1], {"status": "Maybe"}]))   # not Accepted/Rejected
        return await asked


def _call_refused(csms):
    try:
        csms.call("Reset", type="Soft")
    except AssertionError as e:
        return str(e)
    return None


def test_a_frame_that_is_no_ocpp_j_and_an_answer_that_breaks_its_schema_are_reported():
    csms = NodeCsms()
    try:
        refused = asyncio.run(answer_badly(csms.port, csms))
        assert refused is not None, "the bad answer reached the caller as if valid"
        reports = csms.invalid()
        assert any(r.get("frame") == "this is not OCPP-J" for r in reports), reports
        assert any(r.get("method") == "Reset" and not r.get("isCall") and not r.get("outbound") for r in reports), reports
    finally:
        csms.stop()
