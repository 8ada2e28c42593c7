# The OCPP view of one gun: its connector, the transaction on it, who is authorized, its
# availability and reservation, and the status the central system sees. No I/O here: the
# charge point (cp) moves messages, this keeps the model.
from micropython import const

# OCPP 1.6 ChargePointErrorCode for each of the gun's fault codes (evse.gun.FAULTS).
ERROR_CODES = {
    "RCD": "GroundFailure",
    "RCD_TEST": "GroundFailure",
    "DIODE": "EVCommunicationError",
    "PILOT": "EVCommunicationError",
    "WELD": "PowerSwitchFailure",
    "CONTACTOR": "PowerSwitchFailure",
    "OVERCURRENT": "OverCurrentFailure",
    "OVERTEMP": "HighTemperature",
    "VENT": "OtherError",
    "METER": "PowerMeterFailure",
    "INTERLOCK": "PowerSwitchFailure",
    "ESTOP": "OtherError",   # OCPP 1.6 has no code of its own for it: vendorErrorCode ESTOP names it
    "ISOLATION": "GroundFailure",
    "DC_WELD": "PowerSwitchFailure",
    "DC_OVERCURRENT": "OverCurrentFailure",
}
NOT_DRAWING_A = const(1)  # below this an EV in C with the contactor closed draws nothing


class Connector:
    def __init__(self, number):
        self.n = number          # OCPP connectorId = gun number; 0 is the charger
        self.tx = None           # {"id", "tag", "start_s", "meter_start", "res"?}
        self.tag = None          # authorized, waiting for the EV (authorize first)
        self.tag_since_ms = 0
        self.blocked = False     # the central system refused the transaction's idTag
        self.stopping = None     # (reason, idTag, asked ms, opened ms, end time s or None): ends once the contactor is open
        self.operative = True
        self.scheduled = None    # "Operative" / "Inoperative" once the transaction ends
        self.reservation = None  # {"id", "tag", "parent", "expiry_s"}
        self.sent = None         # (status, errorCode, vendorErrorCode) last sent
        self.finishing = False   # a transaction ended with the EV still plugged
        self.last_sample_s = 0

    def status(self, gun, charger_operative=True):
        """(status, errorCode, vendorErrorCode) the central system should see now.
        `gun` is None for connector 0."""
        if gun is None:
            return ("Available" if charger_operative else "Unavailable"), "NoError", None
        if gun.fault is not None:
            return "Faulted", ERROR_CODES.get(gun.fault, "OtherError"), gun.fault
        # A meter that does not answer, where the board charges on without it: said, not Faulted.
        error, vendor = ("NoError", None) if gun.meter_ok else ("PowerMeterFailure", "METER")
        plugged = gun.state[0] in "BCD"
        if self.tx is not None:
            if not plugged:
                return "SuspendedEV", error, vendor  # unplugged while the tx goes on
            if self.blocked or gun.offered_a() == 0:
                return "SuspendedEVSE", error, vendor
            if gun.contactor and gun.current_a >= NOT_DRAWING_A:
                return "Charging", error, vendor
            return "SuspendedEV", error, vendor
        if not (self.operative and charger_operative):
            return "Unavailable", error, vendor
        if plugged:
            # After a transaction the EV is still there: Finishing until it leaves.
            return ("Finishing" if self.finishing else "Preparing"), error, vendor
        if self.tag is not None:
            return "Preparing", error, vendor
        if self.reservation is not None:
            return "Reserved", error, vendor
        return "Available", error, vendor

    def may_charge(self):
        return self.tx is not None and not self.blocked and self.operative

    def reserved_for(self, tag, parent=None):
        r = self.reservation
        return r is None or r["tag"] == tag or (bool(parent) and r.get("parent") == parent)
