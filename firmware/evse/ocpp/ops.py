# What the charge point does for each request of the central system: one small function per
# OCPP 1.6 action, routed by the HANDLERS table. A handler validates its payload with the rpc
# helpers (a bad field is a CALLERROR naming it), acts on the model, and returns the .conf
# payload; what must happen after the answer is out goes into cp.later.
import json
from micropython import const

from evse import slices
from evse.ocpp import clock, rpc, smart
from evse.ocpp.rpc import need, only, opt

HANDLERS = {}
# GetCompositeSchedule answers for at most this long (its chargingSchedule.duration says so):
# a daily profile's periods repeat every day, and the answer must fit in the heap and in one
# message the central system's charge point library takes.
COMPOSITE_MAX_S = const(2 * 86400)
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
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
    fn = HANDLERS.get(action)
    if fn is None:
        return rpc.error(uid, "NotImplemented", "%s is not a known OCPP 1.6 action" % action)
    if not isinstance(payload, dict):  # as rpc.parse: not the PDU structure
        return rpc.error(uid, "FormationViolation", "payload of %s is not an object" % action)
    try:
        out = fn(cp, payload)
        if isinstance(out, _GENERATOR):
            out = yield from out
        return rpc.result(uid, out)
    except rpc.RpcError as e:
        return rpc.error(uid, e.code, e.description)
    except Exception as e:  # a bug of ours: answered, logged, never a crash of the link
        cp.log("ocpp: %s handler failed: %r" % (action, e))
        return rpc.error(uid, "InternalError", "%s failed: %s" % (action, e))


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


def _number(p, key, required=True):
    value = need(p, key, float) if required else opt(p, key, float)
    if value is not None and not -smart.LIMIT_MAX <= value <= smart.LIMIT_MAX:  # JSON 1e999 reads as infinity
        raise rpc.RpcError("PropertyConstraintViolation", "%s %r is out of range" % (key, value))
    return value


def _profile(p, key):
    """The ChargingProfile object `key` of the 1.6 schema, every field checked as the schema says;
    what it means (purpose, periods, ...) smart.validate judges."""
    profile = need(p, key, dict)
    only(profile, ("chargingProfileId", "transactionId", "stackLevel", "chargingProfilePurpose",
                   "chargingProfileKind", "recurrencyKind", "validFrom", "validTo", "chargingSchedule"))
    need(profile, "chargingProfileId", int)
    opt(profile, "transactionId", int)
    need(profile, "stackLevel", int)
    need(profile, "chargingProfilePurpose", str, choices=PURPOSES)
    need(profile, "chargingProfileKind", str, choices=("Absolute", "Recurring", "Relative"))
    opt(profile, "recurrencyKind", str, choices=("Daily", "Weekly"))
    _time(profile, "validFrom", False)
    _time(profile, "validTo", False)
    schedule = need(profile, "chargingSchedule", dict)
    only(schedule, ("duration", "startSchedule", "chargingRateUnit", "chargingSchedulePeriod", "minChargingRate"))
    opt(schedule, "duration", int)
    _time(schedule, "startSchedule", False)
    need(schedule, "chargingRateUnit", str, choices=("A", "W"))
    for period in need(schedule, "chargingSchedulePeriod", list):
        if not isinstance(period, dict):
            raise rpc.RpcError("TypeConstraintViolation", "chargingSchedulePeriod entries must be objects")
        only(period, ("startPeriod", "limit", "numberPhases"))
        need(period, "startPeriod", int)
        _number(period, "limit")
        opt(period, "numberPhases", int)
    _number(schedule, "minChargingRate", False)
    return profile


# ---- Core ----------------------------------------------------------------------------------------
@handler("RemoteStartTransaction")
def remote_start(cp, p):
    only(p, ("connectorId", "idTag", "chargingProfile"))
    tag = need(p, "idTag", str, maxlen=20)
    n = opt(p, "connectorId", int)
    if n is not None and not 1 <= n < len(cp.connectors):
        return {"status": "Rejected"}   # a connector this charger does not have: a valid request, refused
    c = cp.connectors[n] if n is not None else None
    profile = _profile(p, "chargingProfile") if "chargingProfile" in p else None
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


# ---- Reservation ------------------------------------------------------------------------------------
@handler("ReserveNow")
def reserve_now(cp, p):
    only(p, ("connectorId", "expiryDate", "idTag", "parentIdTag", "reservationId"))
    c = _connector(cp, p)
    expiry_s = _time(p, "expiryDate")
    tag = need(p, "idTag", str, maxlen=20)
    parent = opt(p, "parentIdTag", str, maxlen=20)
    rid = need(p, "reservationId", int)
    if c.n == 0 and not cp.keys.get("ReserveConnectorZeroSupported"):
        return {"status": "Rejected"}
    if c.n > 0:
        gun = cp.app.guns[c.n - 1]
        if gun.fault is not None:
            return {"status": "Faulted"}
        if not c.operative or not cp.connectors[0].operative:
            return {"status": "Unavailable"}
        if c.tx is not None or c.tag is not None or gun.state[0] in "BCD" or (
                c.reservation is not None and c.reservation["id"] != rid):
            return {"status": "Occupied"}
    for k in cp.connectors:
        if k.reservation is not None and k.reservation["id"] == rid:
            k.reservation = None  # the same id again replaces the reservation
    c.reservation = {"id": rid, "tag": tag, "parent": parent, "expiry_s": expiry_s}
    return {"status": "Accepted"}


@handler("CancelReservation")
def cancel_reservation(cp, p):
    only(p, ("reservationId",))
    rid = need(p, "reservationId", int)
    for c in cp.connectors:
        if c.reservation is not None and c.reservation["id"] == rid:
            c.reservation = None
            return {"status": "Accepted"}
    return {"status": "Rejected"}


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


# ---- the security whitepaper's messages ("Improved security for OCPP 1.6-J") ------------------------
EXTENDED_TRIGGERABLE = ("BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                        "MeterValues", "SignChargePointCertificate", "StatusNotification")


@handler("ExtendedTriggerMessage")
def extended_trigger_message(cp, p):
    only(p, ("requestedMessage", "connectorId"))
    what = need(p, "requestedMessage", str, choices=EXTENDED_TRIGGERABLE)
    c = _connector(cp, p, required=False)
    n = c.n if c is not None else None
    if what == "SignChargePointCertificate":
        # The key pair and its CSR are made at commissioning (evsectl cert): MicroPython makes no keys.
        csr = cp.app.client_csr()
        if csr is None:
            cp.log("ocpp: SignChargePointCertificate rejected: no certificate request (set ocpp_csr and ocpp_key)")
            return {"status": "Rejected"}
        _later(cp, lambda: cp.send("SignCertificate", {"csr": csr}))
    elif what == "LogStatusNotification":
        payload = {"status": cp.log_status}
        if cp.log_status != "Idle" and cp.log_request_id is not None:
            payload["requestId"] = cp.log_request_id
        _later(cp, lambda: cp.send("LogStatusNotification", payload))
    elif what == "FirmwareStatusNotification":
        # The whitepaper: this one triggers a SignedFirmwareStatusNotification.
        _later(cp, lambda: cp.send("SignedFirmwareStatusNotification", {"status": cp.firmware_status}))
    else:
        return trigger_message(cp, p)
    return {"status": "Accepted"}


@handler("InstallCertificate")
def install_certificate(cp, p):
    return _certs(cp, "install", p)


@handler("GetInstalledCertificateIds")
def get_installed_certificate_ids(cp, p):
    return _certs(cp, "get_ids", p)


@handler("DeleteCertificate")
def delete_certificate(cp, p):
    return _certs(cp, "delete", p)


def _certs(cp, what, p):
    # The certificate store's code loads for the request and goes after it (a rare job).
    import evse
    from evse.ocpp import certs
    try:
        return getattr(certs, what)(cp, p)
    finally:
        evse.unload("evse.ocpp.certs")


@handler("CertificateSigned")
def certificate_signed(cp, p):
    return _certs(cp, "signed", p)


@handler("GetLog")
def get_log(cp, p):
    only(p, ("logType", "requestId", "retries", "retryInterval", "log"))
    kind = need(p, "logType", str, choices=("DiagnosticsLog", "SecurityLog"))
    request_id = need(p, "requestId", int)
    retries = opt(p, "retries", int, lo=0) or 1
    interval = opt(p, "retryInterval", int, lo=0) or 60
    log = need(p, "log", dict)
    only(log, ("remoteLocation", "oldestTimestamp", "latestTimestamp"))
    location = need(log, "remoteLocation", str, maxlen=512)
    _time(log, "oldestTimestamp", False)   # the whole log goes, as for GetDiagnostics
    _time(log, "latestTimestamp", False)
    name = cp.start_log(kind, request_id, location, retries, interval)
    return {"status": "Accepted", "filename": name} if name else {"status": "Rejected"}


# ---- SmartCharging ------------------------------------------------------------------------------------
@handler("SetChargingProfile")
def set_charging_profile(cp, p):
    only(p, ("connectorId", "csChargingProfiles"))
    c = _connector(cp, p)
    profile = _profile(p, "csChargingProfiles")
    tx_id = c.tx["id"] if c.n and c.tx is not None else None
    reason = smart.validate(c.n, profile, len(cp.connectors) - 1, tx_id)
    if reason is None and not cp.profiles.install(c.n, profile):
        reason = "no room for another profile"
    if reason is not None:
        cp.log("ocpp: SetChargingProfile rejected: %s" % reason)
        return {"status": "Rejected"}
    return {"status": "Accepted"}


@handler("ClearChargingProfile")
def clear_charging_profile(cp, p):
    only(p, ("id", "connectorId", "chargingProfilePurpose", "stackLevel"))
    pid = opt(p, "id", int)
    n = opt(p, "connectorId", int, lo=0)
    purpose = opt(p, "chargingProfilePurpose", str, choices=PURPOSES)
    level = opt(p, "stackLevel", int, lo=0)
    found = cp.profiles.clear(pid, n, purpose, level)
    return {"status": "Accepted" if found else "Unknown"}


@handler("GetCompositeSchedule")
def get_composite_schedule(cp, p):
    only(p, ("connectorId", "duration", "chargingRateUnit"))
    c = _connector(cp, p)
    duration = min(need(p, "duration", int, lo=0), COMPOSITE_MAX_S)
    unit = opt(p, "chargingRateUnit", str, choices=("A", "W")) or "A"
    if not cp.clock.known:
        return {"status": "Rejected"}
    start = c.tx["start_s"] if c.n and c.tx is not None else None
    max_a = cp.app.guns[c.n - 1].max_a if c.n else cp.app.cfg.get("site_limit_a")
    schedule = smart.composite(cp.profiles.items, c.n, cp.clock.now(), duration, unit, start, max_a,
                               phases=cp.app.phases(c.n))
    return {"status": "Accepted", "connectorId": c.n, "scheduleStart": clock.iso(schedule["startSchedule"]),
            "chargingSchedule": _schedule_out(schedule, duration)}


def _schedule_out(schedule, duration):
    return {"chargingRateUnit": schedule["chargingRateUnit"], "duration": schedule.get("duration", duration),
            "startSchedule": clock.iso(schedule["startSchedule"]),
            "chargingSchedulePeriod": schedule["chargingSchedulePeriod"]}


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


@handler("SignedUpdateFirmware")
def signed_update_firmware(cp, p):
    return _certs(cp, "signed_update", p)


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
