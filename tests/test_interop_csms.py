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
