# The OCPP 1.6J charge point: one connection to the central system, the messages that go
# over it, and the transactions of the guns. The handlers of the central system's requests
# live in evse.ocpp.ops and evse.ocpp.ops_more (one function per action), loaded for a request
# (_answer); the stores in keys/auth/journal/smart.
#
# Order of what goes out: the journal (transaction messages, on flash until confirmed) first,
# then the outbox (status, heartbeat, authorize, notifications; in RAM, bounded).
import time

import asyncio
from micropython import const

import evse
from evse import slices, store
from evse.ocpp import auth, clock, journal, keys, rpc
from evse.ocpp import ws as wsmod
from evse.ocpp.tx import Connector

VENDOR = "evse"
CALL_TIMEOUT_MS = const(30000)   # a CALL without an answer after this: the link is suspect
OUTBOX_MAX = const(24)
RECONNECT_MAX_MS = const(30000)
PILOT_SETTLE_MS = const(1500)  # after boot, the guns' pilots read and debounced (and an F step shown)
PONG_WAIT_MS = const(10000)  # back-off ceiling: a site back online is served within 30 s
TAG_TIMEOUT_S_DEFAULT = const(60)
SUPERVISE_MS = const(250)
STOP_WAIT_MS = const(10000)  # a stopped transaction's contactor opens within this (C1: 6 s)
METER_SETTLE_MS = const(1500)  # then a meter polled each second has read the last Wh
TX_FILE = "ocpp_tx.json"
AVAIL_FILE = "ocpp_avail.json"
PROFILES_FILE = "ocpp_profiles.json"
NOT_CHARGING_STATUSES = ("Available", "Unavailable", "Faulted", "Reserved")
# ChargePoint's methods that evse.ocpp.cpmore holds, loaded for each call and let go after it.
_RARE = ("_key_check", "_key_changed", "trigger_boot", "trigger_status", "trigger_meter_values",
         "start_firmware_update", "start_diagnostics", "start_log", "request_reset", "link_state", "trusted_ca",
         "_basic_auth", "boot_payload")


class CallError(Exception):
    pass


# The security events pushed to the central system: those the security whitepaper (edition 2,
# section 8) calls critical, and InvalidCentralSystemCertificate, which OCTT TC_078 expects. The others (ReconfigurationOfSecurityParameters,
# FailedToAuthenticateAtCentralSystem, InvalidMessages, ...) go to the log only.
SECURITY_EVENTS_SENT = ("FirmwareUpdated", "SettingSystemTime", "StartupOfTheDevice", "ResetOrReboot",
                        "SecurityLogWasCleared", "MemoryExhaustion", "AttemptedReplayAttacks",
                        "TamperDetectionActivated", "InvalidCentralSystemCertificate",
                        # the signed firmware use case sends these two whatever their criticality
                        "InvalidFirmwareSignature", "InvalidFirmwareSigningCertificate",
                        "InvalidChargePointCertificate")   # OCTT TC_077 asks for it
FW_REQUEST_FILE = "fw_request.json"   # a SignedUpdateFirmware's requestId, for the report after the reboot
_EVENTS_DUE_MAX = const(8)
SECURITY_LOG_BYTES = const(4096)
PROFILE_TRIES = const(3)    # connects a raised SecurityProfile gets before it falls back (a blip is no verdict)
_CLOCK_MOVE_S = const(60)   # a clock set by more than this is a SettingSystemTime event


class ChargePoint:
    VENDOR_ID = "evse"

    def __init__(self, app, root, url, cp_id, ca_der=None, log=print):
        evse.call_and_let_go("evse.ocpp.cpinit", "init", self, app, root, url, cp_id, ca_der, log)   # once, at boot

    def __getattr__(self, name):
        # The rarely used methods (_RARE) are evse.ocpp.cpmore's functions, loaded for the call.
        if name in _RARE:
            def call(*args):
                return evse.call_and_let_go("evse.ocpp.cpmore", name, self, *args)
            return call
        raise AttributeError(name)

    def security_event(self, kind, tech_info=None):
        """A security event (Improved security for OCPP 1.6-J, edition 2, section 8): in the log,
        the security log, and a critical one as SecurityEventNotification through the journal,
        so that it waits on flash while offline and goes in order, as transaction messages do.
        Its flash writes come later, one a step of supervise (_drain_event): an event never adds
        them to the step that caused it (the BootNotification's, a reset's)."""
        line = kind + ": " + tech_info if tech_info else kind
        self.log("ocpp: security event " + line)
        if len(self._events_due) >= _EVENTS_DUE_MAX:
            return
        payload = None
        if kind in SECURITY_EVENTS_SENT:
            payload = {"type": kind}
            if tech_info:
                payload["techInfo"] = tech_info[:255]
            if self.clock.known:
                payload["timestamp"] = clock.iso(self.clock.now())
        self._events_due.append([line, payload])

    def _drain_event(self):
        # One flash write of the oldest due event: its security log line, then its journal entry
        # (one from before the clock was set waits for the BootNotification's time).
        if not self._events_due:
            return
        event = self._events_due[0]
        if event[0] is not None:
            self.security_log().write(event[0])
            event[0] = None
            return
        payload = event[1]
        if payload is not None:
            if "timestamp" not in payload:
                if not self.clock.known:
                    return
                payload["timestamp"] = clock.iso(self.clock.now())
            try:
                self.journal.append("SecurityEventNotification", payload)
            except Exception as e:  # noqa: BLE001  (a MemoryError too: an event must not stop its cause)
                self.log("ocpp: security event %s not queued (%r)" % (payload["type"], e))
        self._events_due.pop(0)

    def security_log(self):
        """The security log (GetLog SecurityLog): every security event, critical or not, in
        security.txt and security.1.txt, SECURITY_LOG_BYTES together."""
        if self._security_log is None:
            from evse.log import Log
            self._security_log = Log(self.root, SECURITY_LOG_BYTES, self._log_time, name="security")
        return self._security_log

    def _log_time(self):
        return clock.iso(self.clock.now()) if self.clock.known else "uptime %d s" % (
            time.ticks_diff(time.ticks_ms(), self._started_ms) // 1000)

    def _set_clock(self, epoch_s):
        # SettingSystemTime: the first time after a boot, and a move of more than a minute.
        moved = None if not self.clock.known else epoch_s - self.clock.now()
        self.clock.set(epoch_s)
        if moved is None or not -_CLOCK_MOVE_S <= moved <= _CLOCK_MOVE_S:
            self.security_event("SettingSystemTime", "set by the central system" if moved is None else
                                "moved %+d s by the central system" % moved)

    def _relink(self, why):
        self._dead = why
        self._reply_event.set()   # a CALL waiting for its answer gives up now

    # ---- persistence ---------------------------------------------------------------------------

    @property
    def profiles(self):
        """The installed charging profiles (evse.ocpp.smart.Profiles). Smart charging's code
        (about 7 KB here at boot, 6 KiB of a board's heap as .mpy) loads with the first profile
        and goes with the last (let_smart_go): limit_a needs none of it while none is installed."""
        if self._profiles is None:
            from evse.ocpp import smart
            path = self.root + PROFILES_FILE
            self._smart = smart
            self._profiles = smart.Profiles(lambda: store.read_json(path, []),
                                            lambda items: store.write_json(path, items))
        return self._profiles

    def let_smart_go(self):
        """Smart charging's code goes when no profile is installed or waits for its transaction
        (a RemoteStartTransaction's): after each request of the central system and each
        transaction's end."""
        if self._answering:
            return   # _answer lets it go after the request, which may have loaded it in a step of its own
        if self.pending_profile is None and (self._profiles is None or not self._profiles.items):
            self._profiles = self._smart = None
            evse.unload("evse.ocpp.smart")

    def _drop_pending_profile(self, n):
        """A remote start's TxProfile goes when its connector's session will not start (n) or has
        started (None), and smart charging's code with it unless a profile is installed."""
        pending = self.pending_profile
        if pending is not None and (n is None or pending[0] == n):
            self.pending_profile = None
            self.let_smart_go()

    def _end_tx_profiles(self, n):
        """A transaction's TxProfiles end with it (OCPP 1.6 3.13.1)."""
        if self._profiles is not None:
            self._profiles.remove_tx(n)
            self.let_smart_go()

    def _save_txs(self):
        store.write_json(self.root + TX_FILE, dict((str(c.n), c.tx) for c in self.connectors if c.tx is not None))

    def save_availability(self):
        store.write_json(self.root + AVAIL_FILE, dict((str(c.n), "Operative" if c.operative else "Inoperative")
                                                      for c in self.connectors))

    def recover(self):
        """At boot: a transaction the power cut interrupted is stopped (PowerLoss) or resumed."""
        resume = self.keys.get("ResumeTransactionOnBoot")
        for c in self.connectors[1:]:
            if c.tx is None:
                continue
            if resume:
                self.log("ocpp: connector %d: transaction %d resumed after the reboot" % (c.n, c.tx["id"]))
            else:
                self.stop_tx(c, "PowerLoss", when_s=c.tx.get("seen_s"))

    # ---- what the application asks ---------------------------------------------------------------
    def may_charge(self, n):
        c = self.connectors[n]
        return c.may_charge() and c.stopping is None and self.connectors[0].operative

    def limit_a(self, n, phases=None):
        """The smart-charging cap now, in A per phase (None: no cap): on gun n, or with n = 0
        on the whole charger (ChargePointMaxProfile); a limit in W taken at `phases` (default:
        what the gun is on now)."""
        c = self.connectors[n]
        if not self.clock.known:
            return None
        max_a = self.app.guns[n - 1].max_a if n else None
        if self._profiles is None:   # none installed: the rating, as smart.limit_at gives it
            return None if max_a is None else int(max_a * 10 + 1e-6) / 10
        start = c.tx["start_s"] if c.tx else None
        return self._smart.limit_at(self._profiles.items, n, self.clock.now(), start, max_a,
                                      phases=self.app.phases(n) if phases is None else phases)

    def session_tag(self, n):
        """The idTag of gun n's transaction, or None."""
        tx = self.connectors[n].tx
        return tx["tag"] if tx is not None else None

    def swipe(self, n, tag):
        """A card at gun n's reader."""
        c = self.connectors[n]
        now = self.clock.now()
        if c.tx is not None:
            parent = c.tx.get("parent")
            if tag == c.tx["tag"] or (parent and self._parent(tag) == parent):
                self.stop_tx(c, "Local", tag=tag)
            elif parent and self.online and self.auth.lookup(tag, now) is None:
                # A card of the same group may end it: its parentIdTag is asked for (OCTT TC_069).
                self.send("Authorize", {"idTag": tag}, lambda r: self._stop_if_same_parent(c, tag, parent, r))
            else:
                self._not_the_card(n, tag)
            return
        if not c.operative or not self.connectors[0].operative:
            self.log("ocpp: gun %d is unavailable; card %s ignored" % (n, tag))
            return
        for k in (c, self.connectors[0]):
            if not k.reserved_for(tag) and not k.reservation.get("parent"):
                # No parentIdTag to ask the central system about: refused here (OCTT TC_046_1).
                self.log("ocpp: gun %d is reserved for another card; %s refused" % (n, tag))
                return
        verdict, info = self.auth.decide(tag, self.online, now)
        if verdict == "accept":
            self.authorized(c, tag, info)
        elif verdict == "ask":
            self.send("Authorize", {"idTag": tag}, lambda r: self._authorize_reply(c, tag, r))
        else:
            self.log("ocpp: gun %d: card %s refused (%s)" % (n, tag, (info or {}).get("status", "offline")))

    def _not_the_card(self, n, tag):
        self.log("ocpp: gun %d: card %s is not the one that started the transaction" % (n, tag))

    def _stop_if_same_parent(self, c, tag, parent, reply):
        info = (reply or {}).get("idTagInfo", {})
        if reply is not None:
            self.auth.remember(tag, info, self.clock.now())
        if (info.get("status") == "Accepted" and info.get("parentIdTag") == parent
                and c.tx is not None and c.tx.get("parent") == parent):
            self.stop_tx(c, "Local", tag=tag)
        else:
            self._not_the_card(c.n, tag)

    def _parent(self, tag):
        info = self.auth.lookup(tag, self.clock.now())
        return info.get("parentIdTag") if info else None

    def _authorize_reply(self, c, tag, reply):
        if reply is None:
            # No answer: offline rules apply, as if the link had been down when the card came.
            verdict, info = self.auth.decide(tag, False, self.clock.now())
            if verdict == "accept":
                self.authorized(c, tag, info)
            return
        info = reply.get("idTagInfo", {})
        self.auth.remember(tag, info, self.clock.now())
        if info.get("status") == "Accepted":
            self.authorized(c, tag, info)
        else:
            self.log("ocpp: gun %d: card %s refused by the central system (%s)" % (c.n, tag, info.get("status")))
            self._drop_pending_profile(c.n)

    def authorized(self, c, tag, info=None):
        parent = (info or {}).get("parentIdTag")
        if not (c.reserved_for(tag, parent) and self.connectors[0].reserved_for(tag, parent)):
            self.log("ocpp: gun %d is reserved for another card; %s refused" % (c.n, tag))
            return False
        c.tag = tag
        c.tag_parent = parent
        c.tag_since_ms = time.ticks_ms()
        c.finishing = False
        return True

    # ---- transactions ----------------------------------------------------------------------------
    def start_tx(self, c, tag):
        gun_energy = self.app.energy_wh(c.n)
        reservation = c.reservation or self.connectors[0].reservation
        # A local id, unique on the journal, until the central system gives the real one.
        tx = {"id": self.journal.new_local_tx_id(), "tag": tag, "start_s": self.clock.now(),
              "meter_start": int(gun_energy), "seen_s": self.clock.now()}
        if getattr(c, "tag_parent", None):
            tx["parent"] = c.tag_parent
        payload = {"connectorId": c.n, "idTag": tag, "meterStart": tx["meter_start"],
                   "timestamp": clock.iso(tx["start_s"])}
        if reservation is not None and (reservation["tag"] == tag or (
                reservation.get("parent") and reservation.get("parent") == tx.get("parent"))):
            # Its card, or one of the same parent (OCPP 1.6 5.13, OCTT TC_053): it ends here.
            payload["reservationId"] = reservation["id"]
            c.reservation = None
            self.connectors[0].reservation = None
        c.tx, c.tag, c.blocked, c.finishing = tx, None, False, False
        c.last_sample_s = tx["start_s"]
        self._save_txs()
        if self.pending_profile is not None and self.pending_profile[0] == c.n:
            profile = self.pending_profile[1]
            profile["transactionId"] = tx["id"]
            self.profiles.install(c.n, profile)
        self._drop_pending_profile(None)
        self.journal.append("StartTransaction", payload, tx_id=tx["id"])
        self.sessions += 1
        self.log("ocpp: gun %d: transaction started for %s" % (c.n, tag))

    def stop_tx(self, c, reason, tag=None, when_s=None):
        """Ends the transaction on connector c. While its contactor is closed the end waits: the
        offer drops to 0 at once, and the StopTransaction goes out once the contactor has opened
        and the gun's meter has read once more (at most STOP_WAIT_MS later), so meterStop counts
        all the energy the EV drew. The first reason given stands. when_s: the end happened then
        (a power cut): the contactor is open already."""
        if c.tx is None:
            return False
        if when_s is None:
            if c.stopping is not None:
                return True   # _stop_when_open ends it
            closed = self.app.guns[c.n - 1].contactor
            if closed or self.app.reading(c.n) is not None:
                # A meter is polled once a second: its next reading has the last Wh.
                now_ms = time.ticks_ms()
                c.stopping = (reason, tag, now_ms, None if closed else now_ms, None)
                if closed:
                    self.log("ocpp: gun %d: transaction %d ends (%s) once the contactor is open"
                             % (c.n, c.tx["id"], reason))
                return True
        elif c.stopping is not None:
            reason, tag = c.stopping[0], c.stopping[1]
        # Stopping from now: should the StopTransaction fail to reach the journal (a MemoryError),
        # supervise writes it in its next round (with the end time given, else the time then).
        now_ms = time.ticks_ms()
        c.stopping = (reason, tag, now_ms, time.ticks_add(now_ms, -METER_SETTLE_MS), when_s)
        self._end_tx(c, reason, tag, when_s)
        return True

    def _end_tx(self, c, reason, tag, when_s=None):
        # The StopTransaction goes to the journal before the transaction is let go: whatever
        # fails before (a MemoryError, a full flash) leaves it to the next round of supervise
        # (c.stopping stays), never a transaction the central system sees no end of.
        tx = c.tx
        now = when_s or self.clock.now()
        # Never below what the session was told (a register read before the meter's first poll
        # after a reboot, an estimate whose last minutes the cut took).
        wh = max(int(self.app.energy_wh(c.n)), tx.get("seen_wh", 0), tx.get("meter_start", 0))
        payload = {"transactionId": tx["id"], "meterStop": wh,
                   "timestamp": clock.iso(now), "reason": reason}
        if tag:
            payload["idTag"] = tag
        measurands = self.keys.get("StopTxnSampledData")
        if measurands:
            payload["transactionData"] = [self.meter_value(c.n, measurands, "Transaction.End", now)]
        self.journal.append("StopTransaction", payload)
        c.stopping = None
        c.tx = None
        c.blocked = False
        gun = self.app.guns[c.n - 1]
        c.finishing = gun.state[0] in "BCD"
        self._save_txs()
        self._end_tx_profiles(c.n)
        c0 = self.connectors[0]
        for k in (c, c0):
            if k.scheduled is not None and (k is c or not any(x.tx is not None for x in self.connectors)):
                k.operative = k.scheduled == "Operative"
                k.scheduled = None
                self.save_availability()
        self.log("ocpp: gun %d: transaction %d stopped (%s)" % (c.n, tx["id"], reason))
        return True

    def new_tx_id_confirmed(self, local_id, reply):
        """The StartTransaction of `local_id` is confirmed (the journal has mapped its queued
        messages to the real id): the connector takes the id, and the card's verdict. Returns
        the idTag whose verdict the cache takes next (a flash write of its own step), or None."""
        real = reply.get("transactionId")
        info = reply.get("idTagInfo", {})
        for c in self.connectors[1:]:
            if c.tx is not None and c.tx["id"] == local_id:
                if isinstance(real, int):
                    c.tx["id"] = real
                    self._save_txs()
                if info.get("status") not in (None, "Accepted"):
                    if self.keys.get("StopTransactionOnInvalidId"):
                        self.stop_tx(c, "DeAuthorized")
                    else:
                        c.blocked = True
                if c.tx is not None:
                    return c.tx["tag"]
        return None

    # ---- meter values ----------------------------------------------------------------------------
    def meter_value(self, n, measurands, context, when_s):
        """One MeterValue of gun n: each measurand this board measures, per phase where its
        meter tells the phases apart (Current.Import, Voltage); the others are left out."""
        values = []
        gun = self.app.guns[n - 1]
        r = self.app.reading(n)

        def add(text, m, unit, phase=None):
            v = {"value": text, "context": context, "measurand": m, "location": "Outlet", "unit": unit}
            if phase:
                v["phase"] = phase
            values.append(v)

        for m in measurands:
            if m == "Energy.Active.Import.Register":
                add("%d" % self.app.energy_wh(n), m, "Wh")
            elif m == "Power.Active.Import":
                add("%d" % self.app.power_w(n), m, "W")
            elif m == "Current.Import" and r is not None and not r.dc:
                for k in range(len(r.amps)):
                    add("%.1f" % r.amps[k], m, "A", "L%d" % (k + 1))
            elif m == "Current.Import":
                add("%.1f" % (r.amps[0] if r is not None else gun.current_a), m, "A")
            elif m == "Voltage" and r is not None:
                for k in range(len(r.volts)):
                    add("%.1f" % r.volts[k], m, "V", None if r.dc else "L%d-N" % (k + 1))
            elif m == "Current.Offered":
                add("%.1f" % gun.offered_a(), m, "A")
            elif m == "Temperature":
                add("%.1f" % gun.temperature_c, m, "Celsius")
            elif m == "SoC" and getattr(gun, "soc", None) is not None:
                add("%d" % gun.soc, m, "Percent")
        return {"timestamp": clock.iso(when_s), "sampledValue": values}

    def _meter_values(self, now_s):
        interval = self.keys.get("MeterValueSampleInterval")
        measurands = self.keys.get("MeterValuesSampledData")
        due = None
        for c in self.connectors[1:]:
            if c.tx is None or not interval or not measurands:
                continue
            if now_s - c.last_sample_s >= interval:
                c.last_sample_s = now_s
                # What a PowerLoss stop after a cut bills, on flash before the central system
                # hears of it: the register never goes back below what it was told.
                c.tx["seen_s"] = now_s
                c.tx["seen_wh"] = int(self.app.energy_wh(c.n))
                due = due or []
                due.append(c)
        if due is not None:
            try:
                self._save_txs()
            except Exception as e:  # noqa: BLE001  (a full flash: the sample still goes out)
                self.log("ocpp: cannot save the transactions file (%r)" % (e,))
            for c in due:
                mv = self.meter_value(c.n, measurands, "Sample.Periodic", now_s)
                self.journal.append("MeterValues", {"connectorId": c.n, "transactionId": c.tx["id"], "meterValue": [mv]})
        aligned = self.keys.get("ClockAlignedDataInterval")
        if aligned and self.clock.known:
            if not self._next_aligned_s:
                self._next_aligned_s = self.clock.next_aligned(aligned)
            elif now_s >= self._next_aligned_s:
                at = self._next_aligned_s
                self._next_aligned_s = self.clock.next_aligned(aligned)
                measurands = self.keys.get("MeterValuesAlignedData")
                if measurands:
                    for c in self.connectors[1:]:
                        self.send_aligned(c, measurands, at)

    def send_aligned(self, c, measurands, at_s):
        payload = {"connectorId": c.n, "meterValue": [self.meter_value(c.n, measurands, "Sample.Clock", at_s)]}
        if c.tx is not None:
            payload["transactionId"] = c.tx["id"]
            self.journal.append("MeterValues", payload)
        elif self.online:
            self.send("MeterValues", payload)

    # ---- the supervise loop: the guns as the central system sees them ------------------------------
    def supervise(self):
        writes = self.journal.writes   # a journal write in this step: the compaction waits (below)
        now_s = self.clock.now()
        now_ms = time.ticks_ms()
        # Right after boot the guns' pilots are not read yet (debounce, a restored fault's F
        # step): a resumed session is not ended as unplugged on a reading not made.
        settled = time.ticks_diff(now_ms, self._started_ms) >= PILOT_SETTLE_MS
        tag_timeout = self.keys.get("ConnectionTimeOut") or TAG_TIMEOUT_S_DEFAULT
        for c in self.connectors[1:]:
            gun = self.app.guns[c.n - 1]
            plugged = gun.state[0] in "BCD"
            if c.stopping is not None:
                self._stop_when_open(c, gun, now_ms)
            if c.tx is None and c.tag is not None:
                if plugged:
                    self.start_tx(c, c.tag)
                elif time.ticks_diff(now_ms, c.tag_since_ms) > tag_timeout * 1000:
                    self.log("ocpp: gun %d: no EV within %d s of the card; authorization dropped" % (c.n, tag_timeout))
                    c.tag = None
                    self._drop_pending_profile(c.n)
            # A gun in a fault still reads its pilot: an EV unplugged then ends the session too.
            # A fault that clears by itself (RCD after its delay, temperature, meter) lets the
            # session go on; one that waits for a technician ends it now.
            if c.tx is not None and settled:
                if gun.fault == "ESTOP":
                    self.stop_tx(c, "EmergencyStop")
                elif not gun.ev_plugged() and self.keys.get("StopTransactionOnEVSideDisconnect"):
                    self.stop_tx(c, "EVDisconnected")
                elif gun.needs_technician():
                    self.stop_tx(c, "Other")
            if not plugged:
                c.finishing = False
            r = c.reservation
            if r is not None and self.clock.known and now_s >= r["expiry_s"]:
                self.log("ocpp: reservation %d on connector %d expired" % (r["id"], c.n))
                c.reservation = None
        r = self.connectors[0].reservation
        if r is not None and self.clock.known and now_s >= r["expiry_s"]:
            self.connectors[0].reservation = None
        if self.clock.known:
            self._meter_values(now_s)
        self._statuses(False)
        self._drain_event()
        if self.journal.writes == writes:   # one flash write a step: a compaction goes on when none came
            self.journal.step()
        if self._reset and not self.journal_pending_for_reset() and not self.stopping():
            if time.ticks_diff(now_ms, self._reset_at_ms) >= 0:
                self.app.reboot(self._reset == "Hard")

    def _stop_when_open(self, c, gun, now_ms):
        # Once the contactor is open, the meter's next poll has the last of the energy.
        reason, tag, since_ms, opened_ms, when_s = c.stopping
        if opened_ms is None and not gun.contactor:
            c.stopping = (reason, tag, since_ms, now_ms, when_s)
        elif (opened_ms is not None and time.ticks_diff(now_ms, opened_ms) >= METER_SETTLE_MS) \
                or time.ticks_diff(now_ms, since_ms) >= STOP_WAIT_MS:
            self._end_tx(c, reason, tag, when_s)

    def stopping(self):
        """A transaction waits for its contactor to open before its StopTransaction."""
        for c in self.connectors[1:]:
            if c.stopping is not None:
                return True
        return False

    def journal_pending_for_reset(self):
        # Give the stop messages a few seconds to reach the central system before rebooting;
        # they are on flash either way.
        return self.online and len(self.journal) > 0 and time.ticks_diff(time.ticks_ms(), self._reset_at_ms) < 5000

    def _statuses(self, force):
        charger_ok = self.connectors[0].operative
        for c in self.connectors:
            gun = self.app.guns[c.n - 1] if c.n else None
            status, error, vendor = c.status(gun, charger_ok)
            if gun is None and error == "NoError":
                # A DC cabinet's power module out of use: the charger charges on with the others.
                cab = self.app.cabinet
                faulty = cab.stage.faulty() if cab is not None and cab.stage is not None else None
                if faulty is not None:
                    error, vendor = "OtherError", faulty[1]
            if force or c.sent is None or c.sent != (status, error, vendor):
                c.sent = (status, error, vendor)
                self.queue_status(c.n, status, error, vendor)

    def queue_status(self, n, status, error, vendor=None):
        payload = {"connectorId": n, "errorCode": error, "status": status}
        if self.clock.known:
            payload["timestamp"] = clock.iso(self.clock.now())
        if vendor:
            payload["vendorErrorCode"] = vendor
        # Only the newest status of a connector matters once it is sent.
        self.outbox = [m for m in self.outbox if not (m[0] == "StatusNotification" and m[1]["connectorId"] == n)]
        self.send("StatusNotification", payload)

    # ---- triggered messages, firmware, diagnostics and resets: evse.ocpp.cpmore (_RARE) ---------------
    # ---- sending ---------------------------------------------------------------------------------
    def send(self, action, payload, on_reply=None):
        """Queue a non-transaction message; on_reply(result or None) once answered or failed."""
        if len(self.outbox) >= OUTBOX_MAX:
            dropped = self.outbox.pop(0)
            self.log("ocpp: outbox full, dropped %s" % dropped[0])
            if dropped[2]:
                dropped[2](None)
        self.outbox.append((action, payload, on_reply))

    async def _send_text(self, text):
        async with self._send_lock:
            await self.ws.send(text)

    async def call(self, action, payload, timeout_ms=CALL_TIMEOUT_MS):
        uid = rpc.new_uid()
        self._await_uid = uid
        self._reply = None
        self._reply_event.clear()
        text = rpc.call(uid, action, payload)
        await asyncio.sleep_ms(0)   # the JSON in one step, the frame and its send in the next
        await self._send_text(text)
        self._last_tx_ms = time.ticks_ms()
        try:
            await asyncio.wait_for_ms(self._reply_event.wait(), timeout_ms)
        except asyncio.TimeoutError:
            self._await_uid = None
            raise OSError("no answer to %s within %d s" % (action, timeout_ms // 1000))
        self._await_uid = None
        if self._dead:
            raise OSError(self._dead)
        kind, body = self._reply
        if kind == rpc.CALLERROR:
            raise CallError("%s: %s %s" % (action, body[0], body[1]))
        return body

    async def _send_next(self):
        """Send one message if one is due; False when there is nothing to send."""
        got = self.journal.fetch()
        while got:
            await asyncio.sleep_ms(0)   # read back from flash in a step or more, decoded in the next
            if got is True:
                break
            got = self.journal.fetch()
        entry = self.journal.peek()
        retry_at = self._retry_at_ms
        if entry is not None and (retry_at is None or time.ticks_diff(time.ticks_ms(), retry_at) >= 0):
            seq, action, payload, attempts = entry
            await asyncio.sleep_ms(0)   # decoded in one step, framed and sent in the next
            try:
                reply = await self.call(action, payload)
                # The wait for the answer ends in this step (asyncio's wait_for resumes it with
                # an exception); the confirmation, a flash write, in the next.
                await asyncio.sleep_ms(0)
            except CallError as e:
                if action == "SecurityEventNotification" and ("NotImplemented" in str(e) or "NotSupported" in str(e)):
                    # A central system without the security extension: tried again, it would hold
                    # up the transaction messages behind it for TransactionMessageAttempts rounds.
                    self.journal.drop(seq, "the central system does not take it: %s" % e)
                    self._retry_at_ms = None
                    return True
                self.journal.failed(seq)
                if attempts + 1 >= self.keys.get("TransactionMessageAttempts"):
                    self.journal.drop(seq, "refused %d times: %s" % (attempts + 1, e))
                    self._retry_at_ms = None
                else:
                    wait_s = self.keys.get("TransactionMessageRetryInterval") * (attempts + 1)
                    self._retry_at_ms = time.ticks_add(time.ticks_ms(), wait_s * 1000)
                return True
            self._retry_at_ms = None
            local_tx = self.journal.tx_of(seq)
            self.journal.confirm(seq, reply)   # a StartTransaction's: maps its id, in one write
            tag = None
            if action == "StartTransaction":
                # In the same step: no other task may see the connector's local id once the
                # journal has it mapped (a compaction may forget the mapping when it empties).
                tag = self.new_tx_id_confirmed(local_tx, reply)
            elif action == "StopTransaction" and "idTag" in payload:
                tag = payload["idTag"]
            if tag is not None:
                await asyncio.sleep_ms(0)   # the card's cache: a flash write of its own step
                self.auth.remember(tag, reply.get("idTagInfo", {}), self.clock.now())
            await asyncio.sleep_ms(0)   # the confirmation (a flash append) and the next read: two steps
            return True
        if self.outbox:
            action, payload, on_reply = self.outbox.pop(0)
            try:
                reply = await self.call(action, payload)
            except CallError as e:
                self.log("ocpp: %s" % e)
                reply = None
            except BaseException:
                if on_reply:
                    on_reply(None)
                raise
            if on_reply:
                on_reply(reply)
            return True
        return False

    # ---- the connection ------------------------------------------------------------------------------
    async def run(self):
        attempt = 0
        reported = []   # the security events of this outage's failed connects
        while True:
            ws = wsmod.WebSocket()
            profile = self.keys.get("SecurityProfile")
            try:
                if profile >= 2 and not self.url.startswith("wss://"):
                    # Only the console can make this (ChangeConfiguration refuses it): the key
                    # must not go out in clear; the technician sees why at the console.
                    raise ValueError("SecurityProfile %d needs TLS: set ocpp_url to wss://" % profile)
                client = None
                if profile == 3:
                    client = self.app.client_cert()
                    if client is None:
                        raise ValueError("SecurityProfile 3 needs this charge point's certificate: set ocpp_cert "
                                         "and ocpp_key")
                password = self._basic_auth()
                await asyncio.sleep_ms(0)   # each of evse.ocpp.cpmore's loads a step of its own
                try:
                    await ws.connect(self.url, basic_auth=password, ca_der=self.trusted_ca(),
                                     timeout_ms=10000, client_cert=client)
                finally:
                    client = password = None   # the key's bytes go as soon as the handshake has used them
            except Exception as e:  # a refused, unreachable or unauthorized server: try again later
                event = "FailedToAuthenticateAtCentralSystem" if getattr(e, "status", None) == 401 else \
                    "InvalidCentralSystemCertificate" if getattr(e, "bad_certificate", False) else None
                if event is not None and event not in reported:   # once an outage, not at every try
                    reported.append(event)
                    self.security_event(event, str(e))
                if self._fallback_profile is not None and self._fallback_profile != profile \
                        and attempt + 1 >= PROFILE_TRIES:
                    self.log("ocpp: SecurityProfile %d cannot connect (%s, %d times); back to %d"
                             % (profile, e, PROFILE_TRIES, self._fallback_profile))
                    try:
                        self.keys.fall_back("SecurityProfile", self._fallback_profile)
                    except OSError as store_error:
                        self.log("ocpp: SecurityProfile %d not stored (%s)" % (self._fallback_profile, store_error))
                    self._fallback_profile = None
                    attempt = 0
                    continue
                wait_ms = wsmod.backoff_ms(attempt, cap_ms=RECONNECT_MAX_MS)
                attempt += 1
                self.why_offline = "cannot connect: %s" % (e,)
                self.retry_at_ms = time.ticks_add(time.ticks_ms(), wait_ms)
                self.log("ocpp: cannot connect to %s (%s); next try in %d s" % (self.url, e, wait_ms // 1000))
                await asyncio.sleep_ms(wait_ms)
                continue
            attempt = 0
            reported = []
            self._invalid_seen = False
            self._link_profile = profile
            self._fallback_profile = None
            self.ws = ws
            self.connected = True
            self.retry_at_ms = None
            self.log("ocpp: connected to %s" % self.url)
            try:
                await self._session(ws)
            except Exception as e:
                self.why_offline = "link lost: %s" % (e,)
                self.log("ocpp: link lost (%s)" % e)
            finally:
                self.online = False
                self.connected = False
                try:
                    await ws.close()
                except Exception:
                    pass
            wait_ms = wsmod.backoff_ms(0)
            self.retry_at_ms = time.ticks_add(time.ticks_ms(), wait_ms)
            await asyncio.sleep_ms(wait_ms)

    def link(self):
        """The link as the firmware knows it (status --json): state online, connected (its
        BootNotification not accepted yet) or offline; the age of the last frame received, or
        why it is offline and in how many seconds the next try is."""
        now = time.ticks_ms()
        if self.connected and self.ws is not None:
            return {"state": "online" if self.online else "connected", "boot": self.boot_status,
                    "last_frame_s": time.ticks_diff(now, self.ws.last_rx_ms) // 1000}
        out = {"state": "offline", "why": self.why_offline}
        if self.retry_at_ms is not None:
            out["next_try_s"] = max(0, time.ticks_diff(self.retry_at_ms, now) // 1000)
        return out

    async def _session(self, ws):
        self._dead = None
        reader = asyncio.create_task(self._reader(ws))
        keepalive = asyncio.create_task(self._keepalive(ws))
        try:
            await self._boot()
            self.online = True
            self._statuses(True)
            await self.app.after_boot(self)
            while True:
                if reader.done():
                    raise OSError("the reader stopped")
                if self._dead:
                    raise OSError(self._dead)
                if self._boot_now:
                    self._boot_now = False
                    await self._boot()
                if await self._send_next():
                    # The next message's read, JSON and framing in a step of their own, not in
                    # the one that took this reply: a replay holds the loop one part at a time.
                    await asyncio.sleep_ms(0)
                    continue
                now = time.ticks_ms()
                if self.heartbeat_s and time.ticks_diff(now, self._last_tx_ms) >= self.heartbeat_s * 1000:
                    self.send("Heartbeat", {}, self._heartbeat_reply)
                    continue
                await asyncio.sleep_ms(100)
        finally:
            reader.cancel()
            keepalive.cancel()

    async def _keepalive(self, ws):
        """A link that stays quiet for WebSocketPingInterval gets a ping; no answer to it within
        PONG_WAIT_MS (or the interval, if shorter) and the link is dead: a half-open TCP
        connection, as when a rural site's uplink drops, shows no error otherwise."""
        ping_at = None
        while True:
            await asyncio.sleep_ms(1000)
            ping_ms = self.keys.get("WebSocketPingInterval") * 1000
            now = time.ticks_ms()
            if not ping_ms or time.ticks_diff(now, ws.last_rx_ms) < ping_ms:
                ping_at = None
                continue
            if ping_at is None:
                ping_at = now
                await ws.ping()
            elif time.ticks_diff(now, ping_at) >= min(ping_ms, PONG_WAIT_MS):
                self._dead = "no answer to a ping within %d s" % (min(ping_ms, PONG_WAIT_MS) // 1000)
                self._reply_event.set()  # a CALL waiting for its answer gives up now
                return

    def _heartbeat_reply(self, reply):
        if reply and "currentTime" in reply:
            try:
                self._set_clock(clock.parse_iso(reply["currentTime"]))
            except ValueError:
                pass

    async def _boot(self):
        while True:
            reply = await self.call("BootNotification", self.boot_payload())
            self.boot_status = reply.get("status")
            try:
                self._set_clock(clock.parse_iso(reply.get("currentTime", "")))
            except ValueError:
                self.log("ocpp: BootNotification.conf currentTime %r is not a time" % reply.get("currentTime"))
            interval = reply.get("interval") or 0
            if self.boot_status == "Accepted":
                if interval > 0:
                    if interval != self.keys.get("HeartbeatInterval"):
                        import evse.ocpp.keyset  # noqa: F401  (its load a step of its own; Keys lets it go)
                        await asyncio.sleep_ms(0)
                        self.keys.change("HeartbeatInterval", str(interval))   # stored where it fits the key
                    self.heartbeat_s = interval
                return
            self.log("ocpp: BootNotification %s; next in %d s" % (self.boot_status, interval or 10))
            # Pending/Rejected: only answer the central system until the interval is over.
            deadline = time.ticks_add(time.ticks_ms(), (interval or 10) * 1000)
            while time.ticks_diff(deadline, time.ticks_ms()) > 0 and not self._boot_now:
                await asyncio.sleep_ms(100)
            self._boot_now = False

    async def _answer(self, call):
        """A CALL of the central system. Its handlers (evse.ocpp.ops, and for some evse.ocpp.ops_more)
        load for it and go after it: nothing needs them between the central system's requests."""
        await asyncio.sleep_ms(0)   # the frame's JSON in one step, the handlers' import in the next
        try:
            from evse.ocpp import ops
        except Exception as e:  # noqa: BLE001  (no room for them now: the request is answered, the link kept)
            self.log("ocpp: %s not handled: %r" % (call[2], e))
            await self._send_text(rpc.error(call[1], "InternalError", "%s failed: %s" % (call[2], e)))
            return
        self._answering = True
        try:
            await asyncio.sleep_ms(0)   # the import (its .mpy loaded) a step of its own
            answer = await slices.run_async(ops.steps(self, call[1], call[2], call[3]))
            await self._send_text(answer)
            ops.after(self, call[2])
        finally:
            ops = None
            evse.unload("evse.ocpp.ops")
            self._answering = False
            self.let_smart_go()

    async def _reader(self, ws):
        try:
            while True:
                try:
                    text = await ws.recv()
                except (wsmod.WsError, OSError) as e:
                    # The link closed: the session learns it now, not at its CALL's 30 s timeout.
                    self._relink("the link closed: %s" % e)
                    return
                except wsmod.WsTooBig as e:
                    # Skipped as it arrived (a board has no heap for it): a CALL gets its answer, the
                    # answer to our own CALL fails that CALL now rather than at its timeout.
                    found = rpc.head_uid(e.head)
                    why = "message of %d bytes or more is over this charger's %d-byte limit" % (e.size, ws.max_message)
                    if found is not None and found[0] == rpc.CALL:
                        self.log("ocpp: %s; answered with a CALLERROR" % why)
                        await self._send_text(rpc.error(found[1], "FormationViolation", why))
                    elif found is not None and found[1] == self._await_uid:
                        self.log("ocpp: the answer to our %s; taken as an error" % why)
                        self._reply = (rpc.CALLERROR, ("FormationViolation", why))
                        self._reply_event.set()
                    else:
                        self.log("ocpp: %s; dropped" % why)
                    continue
                if text is None:
                    continue
                await asyncio.sleep_ms(0)   # the frame's bytes in one step, its JSON (up to 8 KB) in the next
                try:
                    msg = rpc.parse(text)
                except rpc.RpcError as e:
                    if e.uid is not None:
                        await self._send_text(rpc.error(e.uid, e.code, e.description))
                    else:
                        self.log("ocpp: dropped a frame that is not OCPP-J: %s" % e.description)
                    if not self._invalid_seen:   # once a link: not a flash write per bad frame
                        self._invalid_seen = True
                        self.security_event("InvalidMessages", e.description)
                    continue
                text = None   # its heap goes back while the handler runs (a SendLocalList's: about 3 KB)
                kind = msg[0]
                if kind == rpc.CALL:
                    await self._answer(msg)
                elif msg[1] == self._await_uid:
                    self._reply = (kind, msg[2] if kind == rpc.CALLRESULT else (msg[2], msg[3]))
                    self._reply_event.set()
                else:
                    self.log("ocpp: answer to an unknown message %s dropped" % msg[1])
        except Exception as e:  # noqa: BLE001  (no heap for a frame: the link starts again now, not at a timeout)
            self.log("ocpp: the link's reader failed (%r); connecting again" % (e,))
            self._relink("the reader failed: %r" % (e,))
