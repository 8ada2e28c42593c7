# The charge point's rarely used methods, each loaded for its call and let go after it
# (ChargePoint.__getattr__, evse.call_and_let_go): a configuration key's check and what its
# change does, TriggerMessage's, the starts of an update, an upload and a reset, the CA and the
# password a connect uses, the BootNotification's payload and the console's line. A board holds
# .mpy code in its heap: these took 3.8 KB of evse.ocpp.cp's 30 KB here, about 3.2 KiB of a
# board's heap as .mpy, and cost a load (about 1 ms here) where they are used.
import binascii
import os
import time

from evse import store
from evse.ocpp.cp import VENDOR


def _key_check(cp, name, value):
    if name == "SecurityProfile" and value >= 2 and not cp.url.startswith("wss://"):
        return "SecurityProfile %d needs TLS: the central system's URL (ocpp_url) must be wss://" % value
    if name == "SecurityProfile" and value >= 2 and not trusted_ca(cp):
        return ("SecurityProfile %d needs the central system's CA to check it against: set ocpp_ca, or install a "
                "CentralSystemRootCertificate" % value)
    if name == "SecurityProfile" and value == 3:
        why = cp.app.client_cert_missing()
        if why:
            return "SecurityProfile 3: %s" % why
    return None


def _key_changed(cp, name, value):
    if name == "HeartbeatInterval":
        cp.heartbeat_s = value
    if name in ("AuthorizationKey", "SecurityProfile"):
        cp.security_event("ReconfigurationOfSecurityParameters", "%s changed" % name)   # never its value
    if name == "AuthorizationKey" and 1 <= cp.keys.get("SecurityProfile") <= 2 and cp.connected:
        # Security whitepaper (OCTT TC_073): once the change is answered, the link closes and
        # the charge point connects again with the new password.
        cp.later.append(lambda: cp._relink("the AuthorizationKey changed: connecting again with it"))
    if name == "SecurityProfile" and cp.connected:
        # Security whitepaper (OCTT TC_083): connect again with the new profile; if that
        # fails, go back to the profile that connected.
        cp._fallback_profile = cp._link_profile
        cp.later.append(lambda: cp._relink("SecurityProfile is %d now: connecting again with it" % value))


def trigger_boot(cp):
    cp._boot_now = True


def trigger_status(cp, n):
    for c in cp.connectors:
        if n is None or c.n == n:
            c.sent = None  # the next supervise round sends it


def trigger_meter_values(cp, n):
    measurands = cp.keys.get("MeterValuesSampledData")
    for c in cp.connectors[1:]:
        if n in (None, 0, c.n):
            payload = {"connectorId": c.n,
                       "meterValue": [cp.meter_value(c.n, measurands, "Trigger", cp.clock.now())]}
            if c.tx is not None:
                payload["transactionId"] = c.tx["id"]
            cp.send("MeterValues", payload)


def start_firmware_update(cp, location, when_s, retries, interval_s, signed=None):
    """UpdateFirmware or SignedUpdateFirmware (evse.ocpp.fw.start_update), in a task of its own."""
    from evse.ocpp import fw   # the update's code, loaded for it (evse.update_job)
    fw.start_update(cp, location, when_s, retries, interval_s, signed)


def start_diagnostics(cp, location, retries, interval_s):
    """GetDiagnostics (evse.ocpp.upload.start_diagnostics): the file name it goes as."""
    from evse.ocpp import upload   # the upload's code, loaded for it (evse.update_job)
    return upload.start_diagnostics(cp, location, retries, interval_s)


def start_log(cp, kind, request_id, location, retries, interval_s):
    """GetLog (evse.ocpp.upload.start_log): the file name, or None when that log is empty."""
    log = cp.app.log if kind == "DiagnosticsLog" else cp.security_log()
    if not log.files():
        return None
    from evse.ocpp import upload
    return upload.start_log(cp, kind, log, request_id, location, retries, interval_s)


def request_reset(cp, kind):
    reason = "HardReset" if kind == "Hard" else "SoftReset"
    cp.security_event("ResetOrReboot", "%s reset asked by the central system" % kind)
    for c in cp.connectors[1:]:
        cp.stop_tx(c, reason)
    cp._reset = kind
    cp._reset_at_ms = time.ticks_add(time.ticks_ms(), 500)  # the answer goes out first


def link_state(cp):
    """The link as the console's ocpp line says it."""
    k = cp.link()
    if k["state"] != "offline":
        head = "online" if k["state"] == "online" else "connected, boot %s" % k["boot"]
        return "%s, last frame received %d s ago" % (head, k["last_frame_s"])
    out = "offline (%s)" % k["why"]
    if "next_try_s" in k:
        out += ", next try in %d s" % k["next_try_s"]
    return out


def trusted_ca(cp):
    """The CA a wss:// or https:// server must be signed by: the ocpp_ca file's, else the
    CentralSystemRootCertificate the central system installed last (certs/cs-<n>.der,
    evse.ocpp.certs); None: the server is not verified."""
    if cp.ca_der is not None:
        return cp.ca_der
    try:
        names = [n for n in os.listdir(store.join(cp.root, "certs")) if n.startswith("cs-") and n.endswith(".der")]
    except OSError:
        return None
    best = None
    for name in names:
        try:
            k = int(name[3:-4])
        except ValueError:
            continue
        if best is None or k > best[0]:
            best = (k, name)
    if best is None:
        return None
    try:
        with open(store.join(cp.root, "certs/" + best[1]), "rb") as f:
            return f.read()
    except OSError:
        return None


def _basic_auth(cp):
    # The password is what the AuthorizationKey's hex digits encode (16 to 20 bytes, maybe
    # binary), not the digits (security whitepaper; OCTT TC_085).
    key = cp.keys.get("AuthorizationKey")
    if 1 <= cp.keys.get("SecurityProfile") <= 2 and key:   # profile 3: the certificate instead
        return (cp.cp_id, binascii.unhexlify(key))
    return None


def boot_payload(cp):
    from evse import VERSION
    board = cp.app.board
    return {"chargePointVendor": VENDOR, "chargePointModel": board["name"][:20],
            "firmwareVersion": VERSION, "chargePointSerialNumber": cp.cp_id[:25]}
