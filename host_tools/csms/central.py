"""The OCPP 1.6 operations of the central system: one handler per message a charge point sends,
registered by action with the `ocpp` library's `@on`. The library validates every payload in and
out against the official schemas before and after each handler (nothing here turns that off)."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import datetime, timezone

from ocpp.exceptions import InternalError, NotImplementedError, OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result, datatypes
from ocpp.v16.enums import Action

from host_tools.csms.model import CentralModel

# The library uses the OCPP 2.0.1 names for two CallError codes; OCPP-J 1.6 section 4.2.3 spells
# them like this, and a 1.6 charge point may reject any other spelling.
CALL_ERROR_CODES_1_6 = {"FormatViolation": "FormationViolation",
                        "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}
CAUSE_MAX = 300
# The library's own deadline; the API's `call` applies the caller's timeout_s on top of it.
LIBRARY_TIMEOUT_S = 24 * 3600


class _LibraryLog(logging.Handler):
    """The library logs every frame at INFO (our frame log already has them) and logs a payload the
    charge point got wrong as an exception (the frame log shows it, and the CALLERROR we sent).
    What remains is an exception in one of our handlers: a bug, printed in full."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.ERROR or isinstance(exc, OCPPError):
            return
        sys.stderr.write(f"evsectl csms: bug in an OCPP handler: {record.getMessage()}\n")
        if record.exc_info:
            traceback.print_exception(*record.exc_info, file=sys.stderr)


LOG = logging.getLogger("evsectl.csms.ocpp")
LOG.propagate = False
LOG.setLevel(logging.ERROR)
LOG.addHandler(_LibraryLog())


def utc_now() -> str:
    """An RFC 3339 UTC time with milliseconds, as OCPP 1.6 dateTime wants it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def id_tag_info(info: dict) -> datatypes.IdTagInfo:
    return datatypes.IdTagInfo(status=info["status"], expiry_date=info.get("expiryDate"),
                               parent_id_tag=info.get("parentIdTag"))


def _call_error_for_1_6(message: str) -> str:
    """The library's CALLERROR, with the 1.6 spelling of the code and only the first paragraph of
    the cause: the library appends the whole jsonschema report and an echo of the CALL (kilobytes),
    which a charge point with 100 KB of heap needs neither of."""
    frame = json.loads(message)
    frame[2] = CALL_ERROR_CODES_1_6.get(frame[2], frame[2])
    details = frame[4]
    if isinstance(details, dict) and isinstance(details.get("cause"), str):
        frame[4] = {"cause": details["cause"].split("\n\n", 1)[0][:CAUSE_MAX]}
    return json.dumps(frame, separators=(",", ":"))


class CentralChargePoint(ChargePoint):
    """One connected charge point, as the central system sees it."""

    def __init__(self, identity: str, connection, model: CentralModel, say):
        super().__init__(identity, connection, response_timeout=LIBRARY_TIMEOUT_S, logger=LOG)
        self.model = model
        self.say = say
        self.record = model.charge_point(identity)

    def _payload(self, uid: str) -> dict:
        """The CALL's payload exactly as the charge point sent it (camelCase, from the frame log)."""
        entry = self.model.frames.find_call(self.id, "in", uid)
        return entry["frame"][3] if entry else {}

    async def _handle_call(self, msg) -> None:
        """A CALL whose action the API's `set refuse` names gets an InternalError, as from a central
        system that cannot process it (to test TransactionMessageAttempts); the rest is routed."""
        if msg.action in self.model.settings.refuse:
            self.say(f"{self.id}: refused {msg.action} (set refuse)")
            if self.model.settings.refuse_code == "NotImplemented":   # a central system that lacks it
                error = NotImplementedError(description=f"this central system is set not to know {msg.action}")
            else:
                error = InternalError(description=f"this central system is set to refuse {msg.action}")
            await self._send(msg.create_call_error(error).to_json())
            return
        await super()._handle_call(msg)

    async def _send(self, message: str) -> None:
        if message.startswith("[4,"):
            message = _call_error_for_1_6(message)
        await super()._send(message)

    @on(Action.boot_notification)
    def on_boot_notification(self, call_unique_id, **_):
        settings = self.model.settings
        self.record.boot = self._payload(call_unique_id)
        self.record.boot_status = settings.boot_status
        self.record.boot_ms = self.model.clock()
        return call_result.BootNotification(current_time=utc_now(), interval=settings.interval_s,
                                            status=settings.boot_status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **_):
        self.record.last_heartbeat_ms = self.model.clock()
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, call_unique_id, **_):
        payload = self._payload(call_unique_id)
        self.record.connectors[payload["connectorId"]] = {**payload, "t_ms": self.model.clock()}
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **_):
        return call_result.Authorize(id_tag_info=id_tag_info(self.model.settings.tags.id_tag_info(id_tag)))

    @on(Action.start_transaction)
    def on_start_transaction(self, call_unique_id, **_):
        tx = self.model.start_transaction(self.id, self._payload(call_unique_id))
        self.say(f"{self.id} transaction {tx.transaction_id} started on connector {tx.connector_id} "
                 f"by {tx.id_tag} ({tx.id_tag_info['status']})")
        return call_result.StartTransaction(transaction_id=tx.transaction_id, id_tag_info=id_tag_info(tx.id_tag_info))

    @on(Action.stop_transaction)
    def on_stop_transaction(self, call_unique_id, **_):
        payload = self._payload(call_unique_id)
        tx = self.model.transaction(self.id, payload["transactionId"])
        if tx is None:
            self.say(f"{self.id} stopped transaction {payload['transactionId']}, which this central system never started")
        elif tx.stopped_ms is not None and (tx.meter_stop, tx.stop_time) == (payload["meterStop"], payload["timestamp"]):
            self.say(f"{self.id} sent the stop of transaction {tx.transaction_id} again (its answer was lost)")
        else:
            tx.meter_stop, tx.stop_time, tx.stopped_ms = payload["meterStop"], payload["timestamp"], self.model.clock()
            tx.stop_reason, tx.stop_id_tag = payload.get("reason"), payload.get("idTag")
            tx.transaction_data.extend(payload.get("transactionData", []))
            self.say(f"{self.id} transaction {tx.transaction_id} stopped ({tx.stop_reason or 'Local'}), "
                     f"{tx.meter_stop - tx.meter_start} Wh")
        if "idTag" not in payload:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info=id_tag_info(self.model.settings.tags.id_tag_info(payload["idTag"])))

    @on(Action.meter_values)
    def on_meter_values(self, call_unique_id, **_):
        payload = self._payload(call_unique_id)
        if "transactionId" in payload:
            tx = self.model.transaction(self.id, payload["transactionId"])
            if tx is None:
                self.say(f"{self.id} sent MeterValues for transaction {payload['transactionId']}, which is unknown here")
            else:
                tx.meter_values.extend(payload["meterValue"])
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, **_):
        return call_result.DataTransfer(status="Accepted")

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, status, **_):
        self.record.firmware_status = status
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, status, **_):
        self.record.diagnostics_status = status
        return call_result.DiagnosticsStatusNotification()

    # The security extension's notifications (OCPP 1.6 security whitepaper): acknowledged.
    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(self, status, **_):
        self.record.firmware_status = status
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, status, **_):
        self.record.diagnostics_status = status
        return call_result.LogStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **_):
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, csr, **_):
        """With --tls-client-ca-key: a CSR that names this charge point is signed, and the
        certificate goes back as CertificateSigned once this answer is out."""
        signer = self.model.settings.signer
        if signer is None:
            self.say(f"{self.id}: SignCertificate refused: this central system signs nothing (no --tls-client-ca-key)")
            return call_result.SignCertificate(status="Rejected")
        try:
            self._signed_chain = signer.sign(csr, self.id)
        except ValueError as e:
            self._signed_chain = None
            self.say(f"{self.id}: SignCertificate refused: {e}")
            return call_result.SignCertificate(status="Rejected")
        return call_result.SignCertificate(status="Accepted")

    @after(Action.sign_certificate)
    async def after_sign_certificate(self, **_):
        chain, self._signed_chain = getattr(self, "_signed_chain", None), None
        if chain:
            reply = await self.call(call.CertificateSigned(certificate_chain=chain))
            self.say(f"{self.id}: CertificateSigned: {reply.status}")
