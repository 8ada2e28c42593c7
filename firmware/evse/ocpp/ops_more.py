# The handlers of the central system's requests beyond the everyday ones of evse.ocpp.ops (its
# MORE): reservations, smart charging, the security whitepaper's messages and GetLog.
# evse.ocpp.ops loads this module for such a request and lets it go after, so that neither
# half's import holds the charge point's reader for long (an import cannot yield).
from micropython import const

from evse.ocpp import clock, rpc
from evse.ocpp.ops import _connector, _later, _time, handler, trigger_message
from evse.ocpp.rpc import need, only, opt

# GetCompositeSchedule answers for at most this long (its chargingSchedule.duration says so):
# a daily profile's periods repeat every day, and the answer must fit in the heap and in one
# message the central system's charge point library takes.
COMPOSITE_MAX_S = const(2 * 86400)
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")


def _number(p, key, required=True):
    from evse.ocpp import smart   # loaded for this request in a step of its own (ops.steps)
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
    return evse.call_and_let_go("evse.ocpp.certs", what, cp, p)


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
    from evse.ocpp import smart
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
    from evse.ocpp import smart
    schedule = smart.composite(cp.profiles.items, c.n, cp.clock.now(), duration, unit, start, max_a,
                               phases=cp.app.phases(c.n))
    return {"status": "Accepted", "connectorId": c.n, "scheduleStart": clock.iso(schedule["startSchedule"]),
            "chargingSchedule": _schedule_out(schedule, duration)}


def _schedule_out(schedule, duration):
    return {"chargingRateUnit": schedule["chargingRateUnit"], "duration": schedule.get("duration", duration),
            "startSchedule": clock.iso(schedule["startSchedule"]),
            "chargingSchedulePeriod": schedule["chargingSchedulePeriod"]}


@handler("SignedUpdateFirmware")
def signed_update_firmware(cp, p):
    return _certs(cp, "signed_update", p)
