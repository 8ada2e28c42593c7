# Hardware abstraction: the one interface every board implements. Only modules in evse/hal
# touch `machine`; everything above talks to a Hal instance. Guns are numbered from 1.
#
# Per gun:
#   set_pilot(gun, duty_pm)       duty in per mille; 1000 = steady +12 V (no PWM), 0 = steady -12 V (F)
#   sample_pilot(gun) -> (high_mv, low_mv)  the two plateaus of the pilot; equal when no PWM runs
#                                 (a tuple, or one two-slot array the HAL reuses: read it at once)
#   pilot_adc_mv(gun) -> int      the pilot ADC pin's own reading (mV), before the board's gain and
#                                 offset: what `calibrate` fits them to; the pilot must be steady
#   proximity_ohms(gun) -> int | None       PP-PE resistance; None where the gun has no PP line
#   set_contactor(gun, closed)    drive the contactor coil
#   contactor_feedback(gun) -> bool          auxiliary (mirror) contact: True = closed
#   rcd_tripped(gun) -> bool ; rcd_reset(gun)
#   rcd_test_start(gun) ; rcd_test_result(gun) -> None (running) | bool (passed): never blocks
#   temperature_c(gun) -> float   connector / relay temperature
#   current_a(gun) -> float       highest phase current through the contactor
# DC power stage (boards of kind "dc"; Base raises OSError on a board without one):
#   ev_demand(gun) -> (target_w, soc_pct) | None  what the EV's communication controller asks
#                                 (ISO 15118 / DIN 70121 over the 5 % pilot); None: it does not talk
#   set_dc_power(gun, max_w)      the dispenser's power limit to its converters
#   dc_power(gun) -> float        watts the dispenser delivers now
#   set_module(module, gun)       the cabinet's contactor matrix: power module 1..N onto a
#                                 dispenser (gun), 0 = parked (on none)
#   module_feedback(module) -> int  the dispenser the module's auxiliary contacts show, 0 = parked
#   The IEC 61851-23 sequence (a cabinet on CAN; docs/dc.md says what the hardware is):
#   ev_comm(gun, ev) -> bool      what the EV's communication controller (ISO 15118 / DIN 70121
#                                 over the 5 % pilot) says, into an evse.dcseq.Ev: its phase
#                                 (cable_check, precharge, charge, stop), battery, maximum and
#                                 target voltage, target and maximum current, SoC; False: silent
#                                 (on an MCU board for 1 s: SECC silent, or only garbage). Called
#                                 every 250 ms per gun; it never waits for the controller
#   ev_report(gun, state, isolation)  what the charger tells it: its sequence step, and the cable
#                                 check's result ("valid", "warning", "fault" or None); called on
#                                 a change (an MCU HAL repeats it from ev_comm)
#   dc_voltage(gun) -> float      the voltage at the gun, the cable side of its DC contactors
#                                 On an MCU board these need the board file's "secc" (the SECC
#                                 module's UART) and guns[].dc_v (the voltage's ADC input):
#                                 docs/secc-link.md; evse/hal/rp2.py and esp32.py list the keys
#   imd_enable(gun, on) ; imd_read(gun, measured)  the insulation monitor: on (its self-test
#                                 first) or off; its reading into an evse.dcseq.Measured
#                                 (iso_ohm, self_test)
#   can(index) -> bus             the CAN bus to the power modules (board file cabinet.can; on an
#                                 MCU board the MCP2515 its "can" section wires), with
#                                 send(id, data) -> bool, recv() -> (id, bytes) | None, poll(now_ms),
#                                 stats() (evse/can/mcp2515.py says what each does)
# Board wide:
#   ticks_ms() ; sleep_ms(ms) ; watchdog_start(timeout_ms) ; watchdog_feed()
#   uart(index, baudrate) -> stream ; network_up() -> bool ; storage_root() -> str
#   rfid_read() -> (gun, id_tag) | None       the next card held to a gun's reader, never blocks
#   estop() -> bool               the emergency stop is pressed (or its wire broken); False on a
#                                 board without one. Its contact also cuts the coils' supply itself.
#   reset(hard)                   reboot the MCU (hard) or restart MicroPython (soft); does not return
#   safe() -> every contactor open, every pilot at -12 V; must not raise
#   deinit()


NO_DC = "this board has no DC power stage"


def open_board(board):
    """The Hal implementation the board file names ("sim", "rp2", "esp32")."""
    kind = board["hal"]
    if kind == "sim":
        from evse.hal.sim import Hal
    elif kind == "rp2":
        from evse.hal.rp2 import Hal
    elif kind == "esp32":
        from evse.hal.esp32 import Hal
    else:
        raise ValueError("board hal '%s' unknown: use sim, rp2 or esp32" % kind)
    return Hal(board)


class Base:
    """What all implementations share: the board, the gun count, the safe-state sweep."""

    def __init__(self, board):
        self.board = board
        self.guns = len(board["guns"])
        self.safe_hooks = []   # called first by safe(): a DC cabinet's CAN modules turned off
        self.matrix_off = None  # opens a DC cabinet's matrix that is not the HAL's (evse.matrix)

    def safe(self):
        # Called from exception handlers: every step is attempted even if one fails, and even
        # a second Ctrl-C during the sweep does not stop it halfway.
        for hook in self.safe_hooks:
            try:
                hook()
            except BaseException:  # noqa: B036
                pass
        dc = self.board.get("kind") == "dc"
        for gun in range(1, self.guns + 1):
            if dc:
                try:
                    self.set_dc_power(gun, 0)
                except BaseException:  # noqa: B036
                    pass
            try:
                self.set_contactor(gun, False)
            except BaseException:  # noqa: B036
                pass
            try:
                self.set_pilot(gun, 0)
            except BaseException:  # noqa: B036
                pass
        if dc and self.matrix_off is not None:
            try:
                self.matrix_off()   # the guns' contactors are open: nothing flows through it
            except BaseException:  # noqa: B036
                pass
        elif dc:
            # The guns' contactors are open, so no module carries current when it is parked.
            for module in range(1, self.board["cabinet"]["modules"] + 1):
                try:
                    self.set_module(module, 0)
                except BaseException:  # noqa: B036
                    pass

    # ---- DC power stage: only boards of kind "dc" have one ---------------------------------
    def ev_demand(self, gun):
        raise OSError(NO_DC)

    def set_dc_power(self, gun, max_w):
        raise OSError(NO_DC)

    def dc_power(self, gun):
        raise OSError(NO_DC)

    def set_module(self, module, gun):
        raise OSError(NO_DC)

    def module_feedback(self, module):
        raise OSError(NO_DC)

    def can(self, index):
        raise OSError("this board has no CAN bus %d" % index)

    # ---- the IEC 61851-23 sequence: boards whose DC cabinet is on CAN ----------------------
    def ev_comm(self, gun, ev):
        raise OSError(NO_DC)

    def ev_report(self, gun, state, isolation):
        raise OSError(NO_DC)

    def dc_voltage(self, gun):
        raise OSError(NO_DC)

    def imd_enable(self, gun, on):
        raise OSError(NO_DC)

    def imd_read(self, gun, measured):
        raise OSError(NO_DC)

    # ---- a gun's phase contactor: board file guns[].phase_switch ---------------------------
    def set_phases(self, gun, phases):
        # Driven only with the gun's main contactor open (evse.phases): 3 connects L2 and L3.
        raise OSError("gun %d has no phase contactor" % gun)

    def storage_root(self):
        return "/"

    def reset(self, hard):
        import machine
        if hard:
            machine.reset()
        machine.soft_reset()

    def rfid_read(self):
        # Boards without a card reader: authorization comes from the central system only.
        return None

    def estop(self):
        return False   # a board without an emergency stop input

    def deinit(self):
        pass
