"""The development central system (`evsectl csms`): it answers a charge point as OCPP 1.6 says,
records what happened, judges every frame against the official schemas on its own, and its API,
terminal and file service do what docs/csms.md promises. A test charge point built on the `ocpp`
library talks to a real `evsectl csms` subprocess."""
import asyncio
import base64
import contextlib
import json
import ssl
import time
import urllib.error
import urllib.request

import io

import pytest
from hypothesis import given, settings, strategies as st
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from host_tools.csms import CsmsError, CsmsProcess
from host_tools.csms.api import handle_line
from host_tools.csms.model import DEFAULT_TAGS
from host_tools.csms.server import CentralSystem
from host_tools.csms.schema import FrameChecker, payload_error, parse
from host_tools.csms.terminal import CommandError, parse_command

BOOT = call.BootNotification(charge_point_vendor="evse-project", charge_point_model="sim-ac2")
T0 = "2030-01-01T00:00:00Z"
json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


class ScriptedChargePoint(ChargePoint):
    """A charge point that accepts remote starts and remembers them; it has no Reset handler, so a
    Reset gets the library's NotImplemented CALLERROR."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.remote_starts = []

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(self, id_tag, connector_id=None, **_):
        self.remote_starts.append((connector_id, id_tag))
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.unlock_connector, skip_schema_validation=True)
    def on_unlock_connector(self, **_):
        return call_result.UnlockConnector(status="Maybe")      # not an UnlockStatus: a firmware bug


@contextlib.asynccontextmanager
async def charge_point(ws_url, identity, **connect_kw):
    async with connect(f"{ws_url}/{identity}", subprotocols=["ocpp1.6"], **connect_kw) as ws:
        cp = ScriptedChargePoint(identity, ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()


def eventually(predicate, timeout_s=5.0):
    """The human log reaches the test through a pipe and a thread: allow it a moment."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def csms(tmp_path_factory):
    files = tmp_path_factory.mktemp("csms-files")
    (files / "fw-1.2.bin").write_bytes(bytes(range(256)) * 4)
    with CsmsProcess("--files", str(files), stdin_commands=True) as process:
        yield process
    assert "Traceback" not in "".join(process.stderr), "".join(process.stderr)


@pytest.fixture
def api(csms):
    with csms.client() as client:
        client.set(boot_status="Accepted", interval=300)
        yield client


def test_first_line_names_the_websocket_api_and_http_addresses(csms):
    assert set(csms.addresses) == {"ws", "api", "http"}
    assert csms.ws.startswith("ws://127.0.0.1:") and csms.ws.endswith("/ocpp")
    assert int(csms.api.rsplit(":", 1)[1]) > 0
    assert int(csms.http.rsplit(":", 1)[1]) > 0


def test_boot_is_answered_accepted_pending_or_rejected_with_the_interval_set_through_the_api(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "BOOT1") as cp:
            accepted = await cp.call(BOOT)
            api.set(boot_status="Pending", interval=17)
            pending = await cp.call(BOOT)
            api.set(boot_status="Rejected", interval=60)
            rejected = await cp.call(BOOT)
            return accepted, pending, rejected
    accepted, pending, rejected = asyncio.run(scenario())
    assert (accepted.status, accepted.interval) == ("Accepted", 300)
    assert (pending.status, pending.interval) == ("Pending", 17)
    assert (rejected.status, rejected.interval) == ("Rejected", 60)
    record = next(c for c in api.charge_points() if c["id"] == "BOOT1")
    assert record["boot"] == {"chargePointVendor": "evse-project", "chargePointModel": "sim-ac2"}
    assert record["boot_status"] == "Rejected"
    assert eventually(lambda: not next(c for c in api.charge_points() if c["id"] == "BOOT1")["connected"])


def test_authorize_accepts_known_tags_blocks_blocked_ones_and_calls_unknown_ones_invalid(csms, api):
    async def authorize(cp, tag):
        return (await cp.call(call.Authorize(id_tag=tag))).id_tag_info["status"]

    async def scenario():
        async with charge_point(csms.ws, "AUTH1") as cp:
            await cp.call(BOOT)
            seen = [await authorize(cp, t) for t in ("AA11", "aa11", "BLOCKED1", "NOPE")]
            api.set(tag={"id": "NOPE", "status": "Expired", "expiryDate": "2020-01-01T00:00:00Z"})
            seen.append(await authorize(cp, "NOPE"))
            return seen
    # IdToken is case-insensitive (OCPP 1.6), so aa11 is AA11.
    assert asyncio.run(scenario()) == ["Accepted", "Accepted", "Blocked", "Invalid", "Expired"]
    api.set(tags={"AA11": {"status": "Accepted"}, "BB22": {"status": "Accepted"}, "BLOCKED1": {"status": "Blocked"}})


def test_heartbeat_answers_the_current_utc_time(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "HB1") as cp:
            return await cp.call(call.Heartbeat())
    reply = asyncio.run(scenario())
    assert reply.current_time.endswith("Z")
    assert abs(time.mktime(time.strptime(reply.current_time[:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(time.gmtime())) < 5


def test_an_action_set_to_be_refused_gets_an_internal_error_until_the_setting_is_cleared(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "REFUSE1") as cp:
            api.set(refuse=["Heartbeat"])
            try:
                await cp.call(call.Heartbeat(), suppress=False)
                refused = None
            except InternalError as e:
                refused = e
            api.set(refuse=[])
            return refused, await cp.call(call.Heartbeat())
    refused, answered = asyncio.run(scenario())
    assert refused is not None and "refuse Heartbeat" in refused.description
    assert answered.current_time.endswith("Z")


def test_a_transaction_is_recorded_with_its_meter_values_in_order(csms, api):
    def sample(wh):
        return [{"timestamp": T0, "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register",
                                                    "unit": "Wh"}]}]

    async def scenario():
        async with charge_point(csms.ws, "TX1") as cp:
            await cp.call(BOOT)
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
            first = await cp.call(call.StartTransaction(connector_id=1, id_tag="AA11", meter_start=1000, timestamp=T0))
            for wh in (1100, 1250):
                await cp.call(call.MeterValues(connector_id=1, transaction_id=first.transaction_id, meter_value=sample(wh)))
            await cp.call(call.StopTransaction(meter_stop=1300, timestamp=T0, transaction_id=first.transaction_id,
                                               reason="EVDisconnected", id_tag="AA11"))
            second = await cp.call(call.StartTransaction(connector_id=2, id_tag="BLOCKED1", meter_start=0, timestamp=T0))
            return first, second
    first, second = asyncio.run(scenario())
    assert second.transaction_id > first.transaction_id
    assert second.id_tag_info["status"] == "Blocked"
    tx = next(t for t in api.transactions(cp="TX1") if t["transactionId"] == first.transaction_id)
    assert (tx["connectorId"], tx["idTag"], tx["meterStart"], tx["meterStop"]) == (1, "AA11", 1000, 1300)
    assert (tx["startTime"], tx["reason"], tx["active"]) == (T0, "EVDisconnected", False)
    assert [mv["sampledValue"][0]["value"] for mv in tx["meterValues"]] == ["1100", "1250"]
    assert [t["active"] for t in api.transactions(cp="TX1")] == [False, True]
    connectors = next(c for c in api.charge_points() if c["id"] == "TX1")["connectors"]
    assert connectors["1"]["status"] == "Preparing"


def test_call_reaches_the_charge_point_and_returns_its_answer_or_its_callerror(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "CALL1") as cp:
            await cp.call(BOOT)
            started = await asyncio.to_thread(api.call, "RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11"}, "CALL1")
            # Without cp, a call goes to the most recently connected charge point.
            reset = await asyncio.to_thread(api.call, "Reset", {"type": "Soft"})
            limit = await asyncio.to_thread(api.call, "SetChargingProfile", parse_command("limit 1 6.5").payload)
            return cp.remote_starts, started, reset, limit
    remote_starts, started, reset, limit = asyncio.run(scenario())
    assert remote_starts == [(1, "AA11")]
    assert started["payload"] == {"status": "Accepted"} and started["cp"] == "CALL1"
    assert reset["call_error"]["errorCode"] == "NotImplemented"
    assert limit["call_error"]["errorCode"] == "NotImplemented"
    sent = next(f["frame"] for f in api.frames(cp="CALL1") if f["frame"][0] == 2 and f["action"] == "SetChargingProfile")
    assert sent[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 6.5}]
    assert not api.invalid_frames(cp="CALL1", direction=None)


def test_a_call_answered_with_a_payload_that_breaks_the_schema_is_an_error(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "CALL3") as cp:
            with pytest.raises(CsmsError) as e:
                await asyncio.to_thread(api.call, "UnlockConnector", {"connectorId": 1}, "CALL3")
            return str(e.value)
    error = asyncio.run(scenario())
    assert error.startswith("call: CALL3 answered UnlockConnector with a frame that is not valid OCPP 1.6 "
                            "(UnlockConnectorResponse: status: 'Maybe' is not one of")
    [bad] = api.invalid_frames(cp="CALL3")
    assert bad["frame"][2] == {"status": "Maybe"} and bad["action"] == "UnlockConnector"


def test_a_call_with_a_payload_that_breaks_the_schema_is_refused_before_it_is_sent(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "CALL2") as cp:
            await cp.call(BOOT)
            t = api.now_ms()
            with pytest.raises(CsmsError) as refused:
                await asyncio.to_thread(api.call, "RemoteStartTransaction", {"connectorId": 1}, "CALL2")
            with pytest.raises(CsmsError) as unknown:
                await asyncio.to_thread(api.call, "Heartbeat", {}, "CALL2")
            return t, str(refused.value), str(unknown.value)
    t, refused, unknown = asyncio.run(scenario())
    assert "'idTag' is a required property" in refused
    assert "an OCPP 1.6 action the central system sends, not 'Heartbeat'" in unknown
    assert [f for f in api.frames(cp="CALL2", since_ms=t) if f["dir"] == "out"] == []


def test_a_frame_that_breaks_the_schema_is_logged_not_valid_and_answered_with_a_1_6_callerror(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "BAD1") as cp:
            await cp.call(BOOT)
            bad = call.StatusNotification(connector_id=1, error_code="Broken", status="Available")
            return await cp.call(bad, skip_schema_validation=True)   # the library's CALLERROR gives None
    assert asyncio.run(scenario()) is None
    frames = api.frames(cp="BAD1")
    sent = next(f for f in frames if f["dir"] == "in" and f["action"] == "StatusNotification")
    assert sent["valid"] is False
    assert sent["error"].startswith("StatusNotification: errorCode: 'Broken' is not one of")
    answer = next(f for f in frames if f["dir"] == "out" and f["frame"][0] == 4)
    assert answer["frame"][2] == "FormationViolation"     # OCPP-J 1.6 spelling, not "FormatViolation"
    assert answer["valid"] is True and answer["action"] == "StatusNotification"
    assert len(json.dumps(answer["frame"])) < 600     # no jsonschema report for a small charge point to swallow
    assert [f["error"] for f in api.invalid_frames(cp="BAD1")] == [sent["error"]]


def test_a_timestamp_without_a_time_offset_is_not_valid_even_though_the_library_accepts_it(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "BAD2") as cp:
            return await cp.call(call.StatusNotification(connector_id=0, error_code="NoError", status="Available",
                                                         timestamp="2030-01-01T00:00:00"))
    assert asyncio.run(scenario()) is not None      # answered: the library checks no date-time format
    [bad] = api.invalid_frames(cp="BAD2")
    assert bad["error"] == "StatusNotification: timestamp: '2030-01-01T00:00:00' is not a 'date-time'"


def test_wait_returns_the_frame_the_charge_point_sends_and_times_out_with_an_error(csms, api):
    t = api.now_ms()

    async def scenario():
        waiting = asyncio.create_task(asyncio.to_thread(api.request, "wait", action="DataTransfer", cp="WAIT1",
                                                        since_ms=t, timeout_s=10))
        await asyncio.sleep(0.2)
        async with charge_point(csms.ws, "WAIT1") as cp:
            answer = await cp.call(call.DataTransfer(vendor_id="evse-project", data="hello"))
        return answer, await waiting
    answer, reply = asyncio.run(scenario())
    frame = reply["frame"]
    assert answer.status == "Accepted"
    assert frame["cp"] == "WAIT1" and frame["frame"][2:] == ["DataTransfer", {"vendorId": "evse-project", "data": "hello"}]
    [answer_frame] = [f for f in api.frames(cp="WAIT1") if f["dir"] == "out"]
    assert answer_frame["frame"][1] == frame["frame"][1]
    assert reply["t_ms"] >= answer_frame["t_ms"], "the wait ended before the central system had answered"
    with pytest.raises(CsmsError, match=r"wait: no Heartbeat from WAIT1 after t_ms .* within 0.2 s"):
        api.wait("Heartbeat", cp="WAIT1", since_ms=t, timeout_s=0.2)


def test_disconnect_closes_the_charge_points_websocket(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "DISC1") as cp:
            await cp.call(BOOT)
            reply = await asyncio.to_thread(api.request, "disconnect", cp="DISC1")
            await asyncio.wait_for(cp._connection.wait_closed(), 5)
            return reply, cp._connection.close_code
    reply, code = asyncio.run(scenario())
    assert reply["cp"] == "DISC1" and code == 1000
    assert next(c for c in api.charge_points() if c["id"] == "DISC1")["connected"] is False


def test_bad_api_requests_get_an_error_reply_and_the_connection_stays_open(csms, api):
    errors = {
        b"not json": "request is not JSON (Expecting value at column 1): not json",
        b'{"op": "\xff"}': "request is not JSON (not UTF-8 text)",
        b"[1]": 'request must be a JSON object like {"op": "charge_points"}',
        b'{"op": "nope"}': "unknown op 'nope'; known ops: call, charge_points, disconnect, frames, info,",
        b'{"op": "frames", "since_ms": "x"}': "frames: 'since_ms' must be a number of milliseconds, not 'x'",
        b'{"op": "frames", "cp": 1}': "frames: 'cp' must be a charge point identity",
        b'{"op": "set"}': "set: give at least one of boot_status, interval, tags, tag, refuse, refuse_code, basic_auth",
        b'{"op": "set", "refuse_code": "Oops"}': "set: 'refuse_code' must be InternalError or NotImplemented",
        b'{"op": "set", "basic_auth": {"CP1": ""}}': "set: 'basic_auth' must be an object of identity: password",
        b'{"op": "set", "basic_auth": ["CP1"]}': "set: 'basic_auth' must be an object of identity: password",
        b'{"op": "set", "refuse": ["Reset"]}': "set: 'refuse' must be a list of actions a charge point sends",
        b'{"op": "set", "refuse": "Heartbeat"}': "set: 'refuse' must be a list of actions a charge point sends",
        b'{"op": "set", "boot_status": "Maybe"}': "set: 'boot_status' must be one of Accepted, Pending, Rejected",
        b'{"op": "set", "interval": 1.5}': "set: 'interval' must be an integer number of seconds",
        b'{"op": "set", "tags": []}': "set: 'tags': tags must be a JSON object",
        b'{"op": "set", "tag": {"id": "X", "status": "Maybe"}}': "set: 'tag': tag 'X': status must be one of",
        b'{"op": "call", "action": "Reset", "payload": {"type": "Soft"}, "cp": "GHOST"}':
            "call: charge point 'GHOST' is not connected",
        b'{"op": "call", "action": 7}': "call: 'action' must be an OCPP action name",
        b'{"op": "call", "action": "Reset", "timeout_s": true}': "call: 'timeout_s' must be a number of seconds",
        b'{"op": "wait", "action": "Heartbeat", "timeout_s": -1}': "wait: 'timeout_s' must be a number of seconds",
        b'{"op": "disconnect", "cp": "GHOST"}': "disconnect: charge point 'GHOST' is not connected",
    }
    for line, error in errors.items():
        reply = api.raw(line)
        assert reply["ok"] is False and reply["error"].startswith(error), (line, reply)
    assert api.raw(b'{"op": "set", "boot_status": "Pending", "interval": "x"}')["ok"] is False
    assert api.request("info")["boot_status"] == "Accepted"     # a bad field changes nothing
    assert api.raw(b'{"op": "charge_points"}')["ok"] is True


def test_files_are_served_and_uploads_are_stored_over_http(csms, api):
    with urllib.request.urlopen(f"{csms.http}/files/fw-1.2.bin", timeout=5) as r:
        assert r.read() == bytes(range(256)) * 4
    put = urllib.request.Request(f"{csms.http}/upload/diag-1.log", data=b"line 1\nline 2\n", method="PUT")
    with urllib.request.urlopen(put, timeout=5) as r:
        assert json.loads(r.read()) == {"ok": True, "name": "diag-1.log", "bytes": 14}
    form = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"diag.zip\"\r\n"
            b"Content-Type: application/zip\r\n\r\nPK\x03\x04\r\n\x00zip\r\n--XyZ--\r\n")
    post = urllib.request.Request(f"{csms.http}/upload/diag-2.zip", data=form, method="POST",
                                  headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    urllib.request.urlopen(post, timeout=5).close()
    uploads = {u["name"]: u["bytes"] for u in api.uploads()["uploads"]}
    assert uploads == {"diag-1.log": 14, "diag-2.zip": 10}
    with urllib.request.urlopen(f"{csms.http}/files/uploads/diag-2.zip", timeout=5) as r:
        assert r.read() == b"PK\x03\x04\r\n\x00zip"
    for bad in ("/files/../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/nothing.bin"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{csms.http}{bad}", timeout=5)
        assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(f"{csms.http}/upload/..", data=b"x", method="PUT"), timeout=5)
    assert e.value.code == 400


def test_terminal_commands_send_calls_and_unknown_ones_get_help(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "TERM1") as cp:
            await cp.call(BOOT)
            t = await asyncio.to_thread(api.now_ms)
            csms.write("@TERM1 start 2 BB22")
            csms.write("frobnicate 1")
            for _ in range(100):
                if cp.remote_starts and any("frobnicate" in line for line in csms.lines):
                    break
                await asyncio.sleep(0.05)
            return t, cp.remote_starts
    t, remote_starts = asyncio.run(scenario())
    assert remote_starts == [(2, "BB22")]
    assert eventually(lambda: any("unknown command 'frobnicate'. Type help for the list." in line for line in csms.lines))
    out = [f for f in api.frames(cp="TERM1", since_ms=t) if f["dir"] == "out"]
    assert out[0]["frame"][2:] == ["RemoteStartTransaction", {"connectorId": 2, "idTag": "BB22"}]


def test_every_frame_both_ways_is_in_the_human_log_with_the_charge_point_and_direction(csms, api):
    async def scenario():
        async with charge_point(csms.ws, "LOG1") as cp:
            await cp.call(BOOT)
            await cp.call(call.Heartbeat())
    asyncio.run(scenario())
    frames = api.frames(cp="LOG1")
    assert [f["dir"] for f in frames] == ["in", "out", "in", "out"]
    for entry in frames:
        raw = json.dumps(entry["frame"], separators=(",", ":"))
        assert eventually(lambda: any(f" LOG1 {entry['dir']:<3} {raw}" in line for line in csms.lines)), raw


def test_a_url_without_an_identity_or_without_the_ocpp_subprotocol_is_refused(csms):
    async def status_of(url, **kw):
        try:
            async with connect(url, **kw):
                return 101
        except InvalidStatus as e:
            return e.response.status_code
    async def scenario():
        return [await status_of(csms.ws, subprotocols=["ocpp1.6"]), await status_of(csms.ws + "/CP7"),
                await status_of(csms.ws + "/CP7", subprotocols=["ocpp2.0.1"])]
    statuses = asyncio.run(scenario())
    assert statuses == [404, 400, 400]
    assert eventually(lambda: any("must offer the WebSocket subprotocol ocpp1.6" in line for line in csms.lines))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["call", "charge_points", "disconnect", "frames", "info", "set", "transactions", "nope"]),
       st.dictionaries(st.sampled_from(["cp", "action", "payload", "timeout_s", "since_ms", "boot_status",
                                        "interval", "tags", "tag"]), json_values, max_size=4))
def test_any_api_request_gets_exactly_one_reply(op, fields):
    async def one():
        central = CentralSystem(DEFAULT_TAGS, out=io.StringIO())
        return await handle_line(central, json.dumps({"op": op, **fields}))
    reply = asyncio.run(one())
    assert reply["ok"] is True or reply["error"]
    assert "internal error" not in reply.get("error", "")
    json.dumps(reply)


def test_terminal_aliases_build_valid_calls():
    limit = parse_command("limit 1 16")
    assert limit.action == "SetChargingProfile"
    assert limit.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16}]
    assert parse_command("reset hard").payload == {"type": "Hard"}
    assert parse_command("trigger StatusNotification 2").payload == {"requestedMessage": "StatusNotification", "connectorId": 2}
    assert parse_command("stop 7").payload == {"transactionId": 7}
    assert parse_command('@CP9 ChangeConfiguration {"key": "HeartbeatInterval", "value": "60"}').cp == "CP9"
    for line in ("limit 1 16", "limit 0 6.5", "reset soft", "trigger Heartbeat", "start 1 AA11", "stop 3"):
        command = parse_command(line)
        assert payload_error(command.action, parse(json.dumps(command.payload), exact=True)) is None, line
    assert parse_command("help") is None
    with pytest.raises(CommandError, match="usage: start <connector> <idTag>"):
        parse_command("start 1")
    with pytest.raises(CommandError, match="Did you mean reset"):
        parse_command("rest soft")
    with pytest.raises(CommandError, match="sent by charge points"):
        parse_command("Heartbeat {}")


def test_the_frame_check_follows_the_schemas_and_the_rpc_framework_exactly():
    checker = FrameChecker()

    def check(direction, frame):
        return checker.check(direction, frame if isinstance(frame, str) else json.dumps(frame)).error

    schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}]}
    profile = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Relative", "chargingSchedule": schedule}
    # 21.4 is a multiple of 0.1 in decimal, which is what the schema means
    assert check("out", [2, "a", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}]) is None
    assert check("in", [3, "a", {"status": "Accepted"}]) is None
    assert "answers no open CALL" in check("in", [3, "a", {"status": "Accepted"}])
    assert check("out", [2, "b", "Reset", {"type": "Soft"}]) is None
    assert "ResetResponse: status: 'Maybe' is not one of" in check("in", [3, "b", {"status": "Maybe"}])
    assert check("out", [2, "c", "Reset", {"type": "Soft"}]) is None
    assert "'FormatViolation' is not an OCPP-J 1.6 code" in check("in", [4, "c", "FormatViolation", "", {}])
    assert "limit: 0.15 is not a multiple of 0.1" in check("out", [2, "d", "SetChargingProfile", {
        "connectorId": 1, "csChargingProfiles": {**profile, "chargingSchedule": {**schedule, "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 0.15}]}}}])
    assert check("in", [2, "e", "Heartbeat", {}]) is None
    assert "already used by a CALL that has no answer yet" in check("in", [2, "e", "Heartbeat", {}])
    assert "is not sent by the charge point" in check("in", [2, "f", "Reset", {"type": "Soft"}])
    assert "not an OCPP 1.6 action" in check("in", [2, "g", "Hello", {}])
    assert "UniqueId must be a string of at most 36" in check("in", [2, "x" * 37, "Heartbeat", {}])
    assert "it must be [2, UniqueId, Action, {payload}]" in check("in", [2, "h", "Heartbeat"])
    assert "not JSON" in check("in", '[2, "i", "Heartbeat", {"x": NaN}]')
    assert "Heartbeat: payload: Additional properties are not allowed" in check("in", [2, "j", "Heartbeat", {"x": 1}])
    assert "binary WebSocket frame" in checker.check("in", b"[2]").error


@pytest.fixture(scope="module")
def secure_csms(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    with CsmsProcess("--basic-auth", "CP1:secret-key-0123456789", "CP2:other-key-0123456789", f"CP3:{HEX_KEY}",
                     "--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem")) as process:
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        yield process, client_context


HEX_KEY = "00ff0123456789abcdef0123456789abcdefa5b6"   # an AuthorizationKey: 20 bytes, not all text


def _basic(user, password):
    raw = password if isinstance(password, bytes) else password.encode()
    return {"Authorization": "Basic " + base64.b64encode(user.encode() + b":" + raw).decode()}


def test_security_profile_2_serves_wss_and_refuses_a_charge_point_without_the_right_basic_auth(secure_csms):
    process, tls = secure_csms
    assert process.ws.startswith("wss://")

    async def status_of(identity, headers):
        try:
            async with charge_point(process.ws, identity, ssl=tls, additional_headers=headers) as cp:
                return (await cp.call(BOOT)).status
        except InvalidStatus as e:
            return e.response.status_code

    async def scenario():
        return [await status_of("CP1", {}), await status_of("CP1", _basic("CP1", "wrong")),
                await status_of("CP1", _basic("CP2", "other-key-0123456789")),
                await status_of("CP9", _basic("CP9", "anything")),
                await status_of("CP1", _basic("CP1", "secret-key-0123456789")),
                await status_of("CP3", _basic("CP3", HEX_KEY)),                  # the digits: no (OCTT TC_085)
                await status_of("CP3", _basic("CP3", bytes.fromhex(HEX_KEY)))]   # the bytes they encode
    assert asyncio.run(scenario()) == [401, 401, 401, 401, "Accepted", 401, "Accepted"]
    assert eventually(lambda: any("CP1: HTTP Basic authentication is required" in line for line in process.lines))


def test_the_central_system_exits_cleanly_on_sigterm_with_stdin_at_eof():
    process = CsmsProcess()
    with process.client() as api:
        assert api.request("info")["ws"] == process.ws
    assert process.stop() == 0


def test_a_start_or_stop_sent_again_after_a_lost_answer_is_the_same_transaction():
    from host_tools.csms.model import CentralModel
    model = CentralModel(DEFAULT_TAGS, clock=lambda: 1.0)
    start = {"connectorId": 1, "idTag": "AA11", "meterStart": 12, "timestamp": T0}
    first = model.start_transaction("CP1", start)
    assert model.start_transaction("CP1", dict(start)) is first          # the repeat: the same id
    assert model.start_transaction("CP2", dict(start)) is not first      # another charge point's
    assert model.start_transaction("CP1", dict(start, meterStart=13)) is not first
    assert len(model.transactions) == 3
