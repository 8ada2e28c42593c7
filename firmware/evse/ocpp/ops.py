# What the charge point does for each request of the central system: one small function per
# OCPP 1.6 action, routed by the HANDLERS table. A handler validates its payload with the rpc
# helpers (a bad field is a CALLERROR naming it), acts on the model, and returns the .conf
# payload; what must happen after the answer is out goes into cp.later. The charge point loads
# this module for a request and lets it go after (cp._answer); the handlers of the actions in MORE
# are in evse.ocpp.ops_more, which this module loads for theirs: each half loads in one step.
import json
import sys

import evse
from evse import slices
from evse.ocpp import clock, rpc
from evse.ocpp.rpc import need, only, opt

HANDLERS = {}
# Reservations, smart charging, the security whitepaper's messages and GetLog.
MORE = ("ReserveNow", "CancelReservation", "ExtendedTriggerMessage",
        "InstallCertificate", "GetInstalledCertificateIds", "DeleteCertificate", "CertificateSigned", "GetLog",
        "SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule", "SignedUpdateFirmware")
# What needs smart charging's code (evse.ocpp.smart), which the charge point holds only while a
# profile is installed or waits for its transaction (cp.let_smart_go).
SMART = ("SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule")
# The model's code some actions need, which the model loads for the call and lets go after it
# (Keys, Auth): loaded here first, in a step of its own.
PRELOAD = {"GetConfiguration": "evse.ocpp.keyset", "ChangeConfiguration": "evse.ocpp.keyset",
           "SendLocalList": "evse.ocpp.authlist"}
TRIGGERABLE = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
               "Heartbeat", "MeterValues", "StatusNotification")


def handler(action):
    def register(fn):
        HANDLERS[action] = fn
        return fn
    return register


_GENERATOR = type((lambda: (yield))())


def dispatch(cp, uid, action, payload):
    """One CALL -> the CALLRESULT or CALLERROR text. Never raises."""
    return slices.run(steps(cp, uid, action, payload))


def steps(cp, uid, action, payload):
    """dispatch as a generator: a handler that is a generator itself (a long list to check and
    store) yields between its slices, and so does this; the charge point's reader lets the event
    loop run at each. Returns the CALLRESULT or CALLERROR text; never raises."""
    if action not in HANDLERS and action not in MORE:
        return rpc.error(uid, "NotImplemented", "%s is not a known OCPP 1.6 action" % action)
    if not isinstance(payload, dict):  # as rpc.parse: not the PDU structure
        return rpc.error(uid, "FormationViolation", "payload of %s is not an object" % action)
    try:
        profiled = action == "RemoteStartTransaction" and "chargingProfile" in payload
        if action not in HANDLERS or profiled:
            yield   # the import (its .mpy loaded) a step of its own; a profile's checks are there
            import evse.ocpp.ops_more  # noqa: F401  (its handlers join HANDLERS)
            yield
        if action in SMART or profiled:
            import evse.ocpp.smart  # noqa: F401  (a step of its own too; the handler finds it loaded)
            yield
        if action in PRELOAD:
            __import__(PRELOAD[action])
            yield
        out = HANDLERS[action](cp, payload)
        if isinstance(out, _GENERATOR):
            out = yield from out
        return rpc.result(uid, out)
    except rpc.RpcError as e:
        return rpc.error(uid, e.code, e.description)
    except Exception as e:  # a bug of ours: answered, logged, never a crash of the link
        cp.log("ocpp: %s handler failed: %r" % (action, e))
        return rpc.error(uid, "InternalError", "%s failed: %s" % (action, e))
    finally:
        _let_more_go()
        if action in PRELOAD:   # a request refused before the model's call lets it go too
            _let_go(PRELOAD[action])


def _let_more_go():
    """evse.ocpp.ops_more goes with the request that loaded it: out of sys.modules and HANDLERS."""
    if "evse.ocpp.ops_more" in sys.modules:
        for action in MORE:
            HANDLERS.pop(action, None)
        evse.unload("evse.ocpp.ops_more")


def _let_go(module):
    evse.unload(module)   # not in steps: its imports make `evse` a local name there


def after(cp, action):
    todo = getattr(cp, "later", None)
    if todo:
        cp.later = []
        for fn in todo:
            try:
                fn()
            except Exception as e:
                cp.log("ocpp: after %s: %r" % (action, e))


def _later(cp, fn):
    if not hasattr(cp, "later"):
        cp.later = []
    cp.later.append(fn)


def _connector(cp, p, key="connectorId", zero=True, required=True):
    n = need(p, key, int, lo=0) if required else opt(p, key, int, lo=0)
    if n is None:
        return None
    if n >= len(cp.connectors) or (n == 0 and not zero):
        raise rpc.RpcError("PropertyConstraintViolation", "%s %d: this charger has connectors 1..%d"
                           % (key, n, len(cp.connectors) - 1))
    return cp.connectors[n]


def _time(p, key, required=True):
    """A date-time field as epoch seconds (None when an optional one is absent)."""
    text = need(p, key, str) if required else opt(p, key, str)
    if text is None:
        return None
    try:
        return clock.parse_iso(text)
    except ValueError:
        raise rpc.RpcError("PropertyConstraintViolation", "%s %r is not a date-time" % (key, text))


# ---- Core ----------------------------------------------------------------------------------------
@handler("RemoteStartTransaction")
def remote_start(cp, p):
    only(p, ("connectorId", "idTag", "chargingProfile"))
    tag = need(p, "idTag", str, maxlen=20)
    n = opt(p, "connectorId", int)
    if n is not None and not 1 <= n < len(cp.connectors):
        return {"status": "Rejected"}   # a connector this charger does not have: a valid request, refused
    c = cp.connectors[n] if n is not None else None
    profile = None
    if "chargingProfile" in p:   # its checks are smart charging's (steps loaded them, and lets them go)
        from evse.ocpp.ops_more import _profile
        profile = _profile(p, "chargingProfile")
    if c is None:
        free = [k for k in cp.connectors[1:] if k.tx is None and k.tag is None and k.operative
                and cp.app.guns[k.n - 1].fault is None]
        if not free:
            return {"status": "Rejected"}
        c = free[0]
    gun = cp.app.guns[c.n - 1]
    if c.tx is not None or not c.operative or not cp.connectors[0].operative or gun.fault is not None:
        return {"status": "Rejected"}
    if profile is not None:
        from evse.ocpp import smart
        # The transaction this profile is for starts with the answer: no transactionId yet.
        if (profile.get("chargingProfilePurpose") != "TxProfile" or "transactionId" in profile
                or smart.validate(c.n, profile, len(cp.connectors) - 1, 0) is not None):
            return {"status": "Rejected"}
    if cp.keys.get("AuthorizeRemoteTxRequests"):
        verdict, info = cp.auth.decide(tag, cp.online, cp.clock.now())
        if verdict == "accept":
            cp.authorized(c, tag, info)
        elif verdict == "ask":
            _later(cp, lambda: cp.send("Authorize", {"idTag": tag}, lambda r: cp._authorize_reply(c, tag, r)))
        else:
            return {"status": "Rejected"}
    elif not cp.authorized(c, tag):
        return {"status": "Rejected"}
    if profile is not None:
        cp.pending_profile = (c.n, profile)
    return {"status": "Accepted"}


@handler("RemoteStopTransaction")
def remote_stop(cp, p):
    only(p, ("transactionId",))
    tx_id = need(p, "transactionId", int)
    for c in cp.connectors[1:]:
        if c.tx is not None and c.tx["id"] == tx_id:
            _later(cp, lambda: cp.stop_tx(c, "Remote"))
            return {"status": "Accepted"}
    return {"status": "Rejected"}


@handler("Reset")
def reset(cp, p):
    only(p, ("type",))
    kind = need(p, "type", str, choices=("Hard", "Soft"))
    _later(cp, lambda: cp.request_reset(kind))
    return {"status": "Accepted"}


@handler("UnlockConnector")
def unlock(cp, p):
    only(p, ("connectorId",))
    n = need(p, "connectorId", int)
    if not 1 <= n < len(cp.connectors):
        return {"status": "NotSupported"}   # a connector this charger does not have (OCTT TC_031)
    c = cp.connectors[n]
    if c.tx is not None:
        cp.stop_tx(c, "UnlockCommand")
    result = cp.app.unlock(c.n)
    if result is None:
        return {"status": "NotSupported"}
    return {"status": "Unlocked" if result else "UnlockFailed"}


@handler("ChangeAvailability")
def change_availability(cp, p):
    only(p, ("connectorId", "type"))
    c = _connector(cp, p)
    kind = need(p, "type", str, choices=("Inoperative", "Operative"))
    # Connector 0 is the whole charger: busy while any gun has a transaction.
    busy = any(k.tx is not None for k in cp.connectors) if c.n == 0 else c.tx is not None
    if busy:
        c.scheduled = kind  # applied when the transaction ends (cp.stop_tx)
    else:
        c.operative = kind == "Operative"
        c.scheduled = None
        cp.save_availability()
    return {"status": "Scheduled" if busy else "Accepted"}


@handler("GetConfiguration")
def get_configuration(cp, p):
    only(p, ("key",))
    names = opt(p, "key", list)
    if names is not None:
        for name in names:
            if not isinstance(name, str) or len(name) > 50:
                raise rpc.RpcError("TypeConstraintViolation", "key must list strings of up to 50 characters")
    return cp.keys.get_configuration(names)


@handler("ChangeConfiguration")
def change_configuration(cp, p):
    only(p, ("key", "value"))
    name = need(p, "key", str, maxlen=50)
    value = need(p, "value", str, maxlen=500)
    status = cp.keys.change(name, value)
    if status in ("Rejected", "NotSupported"):
        cp.log("ocpp: ChangeConfiguration %s: %s" % (status, cp.keys.last_error))   # never a secret's value
        if status == "Rejected" and name == "SecurityProfile":
            # A refused change of the link's security (a downgrade, a profile it cannot connect
            # with) goes to the security log too.
            cp.security_event("ReconfigurationOfSecurityParameters", "SecurityProfile %s refused: %s"
                              % (value[:8], cp.keys.last_error))
    return {"status": status}


@handler("ClearCache")
def clear_cache(cp, p):
    only(p, ())
    return {"status": cp.auth.clear_cache()}


@handler("DataTransfer")
def data_transfer(cp, p):
    only(p, ("vendorId", "messageId", "data"))
    vendor = need(p, "vendorId", str, maxlen=255)
    message = opt(p, "messageId", str, maxlen=50)
    data = opt(p, "data", str)
    if vendor != cp.VENDOR_ID:
        return {"status": "UnknownVendorId"}
    if message == "GridMeter":
        # A fed grid meter's reading (docs/grid.md): data {"amps": [L1, L2, L3]}, the current at
        # the site's connection per phase, and "power_w", its total power (negative: export).
        try:
            if data and len(data) > 300:
                raise ValueError("data of %d characters is not a grid reading" % len(data))
            reading = json.loads(data or "")
            if not isinstance(reading, dict) or "amps" not in reading or [k for k in reading if k not in ("amps", "power_w")]:
                raise ValueError('data must be {"amps": [L1, L2, L3], "power_w": W}, the current at the connection '
                                 'per phase and (optional) its total power')
            metering = getattr(cp.app, "metering", None)
            if metering is None:
                raise ValueError("this board's grid meter is not there")
            metering.feed_grid(reading["amps"], reading.get("power_w"))
        except ValueError as e:   # a JSON error is a ValueError too
            return {"status": "Rejected", "data": str(e)[:200]}
        return {"status": "Accepted"}
    return {"status": "UnknownMessageId"}



# ---- LocalAuthListManagement ----------------------------------------------------------------------
@handler("SendLocalList")
def send_local_list(cp, p):
    only(p, ("listVersion", "localAuthorizationList", "updateType"))
    need(p, "listVersion", int)
    need(p, "updateType", str, choices=("Differential", "Full"))
    entries = opt(p, "localAuthorizationList", list) or ()
    if len(entries) > cp.keys.get("SendLocalListMaxLength"):
        return {"status": "Failed"}   # before checking each entry: that alone held the loop long
    for k in range(len(entries)):
        yield   # an entry per step: one takes ~15 ms at RP2040 speed
        e = entries[k]
        if not isinstance(e, dict):
            raise rpc.RpcError("TypeConstraintViolation", "localAuthorizationList entries must be objects")
        only(e, ("idTag", "idTagInfo"))
        need(e, "idTag", str, maxlen=20)
        info = opt(e, "idTagInfo", dict)
        if info is not None:
            only(info, ("expiryDate", "parentIdTag", "status"))
            _time(info, "expiryDate", False)
            opt(info, "parentIdTag", str, maxlen=20)
            need(info, "status", str, choices=("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"))
    entries = e = info = None   # local_list_steps lets the request's entries go once it has what it keeps
    status = yield from cp.auth.local_list_steps(p)
    return {"status": status}


@handler("GetLocalListVersion")
def get_local_list_version(cp, p):
    only(p, ())
    return {"listVersion": cp.auth.local_list_version()}


# ---- RemoteTrigger -----------------------------------------------------------------------------------
@handler("TriggerMessage")
def trigger_message(cp, p):
    only(p, ("requestedMessage", "connectorId"))
    what = need(p, "requestedMessage", str, choices=TRIGGERABLE)
    c = _connector(cp, p, required=False)
    n = c.n if c is not None else None
    if what == "BootNotification":
        _later(cp, cp.trigger_boot)
    elif what == "Heartbeat":
        _later(cp, lambda: cp.send("Heartbeat", {}, cp._heartbeat_reply))
    elif what == "StatusNotification":
        _later(cp, lambda: cp.trigger_status(n))
    elif what == "MeterValues":
        _later(cp, lambda: cp.trigger_meter_values(n))
    elif what == "FirmwareStatusNotification":
        _later(cp, lambda: cp.send("FirmwareStatusNotification", {"status": cp.firmware_status}))
    else:
        _later(cp, lambda: cp.send("DiagnosticsStatusNotification", {"status": cp.diagnostics_status}))
    return {"status": "Accepted"}


# ---- FirmwareManagement ----------------------------------------------------------------------------------
@handler("UpdateFirmware")
def update_firmware(cp, p):
    only(p, ("location", "retries", "retrieveDate", "retryInterval"))
    location = need(p, "location", str)
    when_s = _time(p, "retrieveDate")
    retries = opt(p, "retries", int, lo=0) or 1
    interval = opt(p, "retryInterval", int, lo=0) or 60
    _later(cp, lambda: cp.start_firmware_update(location, when_s, retries, interval))
    return {}


@handler("GetDiagnostics")
def get_diagnostics(cp, p):
    only(p, ("location", "retries", "retryInterval", "startTime", "stopTime"))
    location = need(p, "location", str)
    retries = opt(p, "retries", int, lo=0) or 1
    interval = opt(p, "retryInterval", int, lo=0) or 60
    _time(p, "startTime", False)  # the log has no timestamps to select by: the whole log goes
    _time(p, "stopTime", False)
    name = cp.start_diagnostics(location, retries, interval)
    return {"fileName": name} if name else {}
