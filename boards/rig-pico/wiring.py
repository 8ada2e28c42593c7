# How rig-pico is wired: the Pico's GPIO numbers per gun and the pilot calibration. README.md
# has the same table with the parts. Edit this file to match your rig; hw.py and rig.py read it
# at start and nothing else holds a pin number.
#
# Per gun, the EV side of the pilot (IEC 61851-1 Annex A, Figure A.1):
#   r2740        switch in series with 2.74 kOhm to PE: closed = a plug with an EV (state B)
#   r1300        1.3 kOhm in parallel (882 Ohm in all): state C, charging
#   r270         270 Ohm in parallel (246 Ohm in all): state D, charging with ventilation
#   diode_short  shorts the EV's diode: the diode fault
#   short_e      optional: shorts the pilot to PE (state E); None when not fitted
#   pilot_cmp    comparator output, high while the pilot is above +1 V: the duty is timed here
#   pilot_adc    the pilot divider's midpoint (GP26 = ADC0, GP27 = ADC1, GP28 = ADC2)
#   feedback     the opto-isolated contactor feedback (an auxiliary contact of the contactor)

WIRING = {
    "guns": [
        {"pins": {"r2740": 2, "r1300": 3, "r270": 4, "diode_short": 5, "short_e": 6,
                  "pilot_cmp": 7, "feedback": 8, "pilot_adc": 26}},
        {"pins": {"r2740": 10, "r1300": 11, "r270": 12, "diode_short": 13, "short_e": 14,
                  "pilot_cmp": 15, "feedback": 16, "pilot_adc": 27}},
    ],
    # The GPIO level that closes a switch (relay driver or photoMOS LED driven from the pin).
    "switch_closed_level": 1,
    # The GPIO level while the contactor is closed: the opto's transistor pulls the pin low.
    "feedback_closed_level": 0,
    # Optional mains relay for the op `power`: the charger's supply runs through its normally
    # closed contact, so a rig that is off or resetting leaves the charger powered. None: no relay.
    "power_relay": {"pin": 22, "off_level": 1},
    # The pilot divider: 120 kOhm from the pilot to the midpoint, 27 kOhm from the midpoint to
    # 3.3 V and 27 kOhm to GND. The ADC pin sees offset_mv + gain * pilot_mv:
    #   gain = Rp / 120k, offset_mv = 3300 * Rp / 27k, Rp = 120k || 27k || 27k = 12.14 kOhm.
    # +12 V reads 2.70 V, -12 V reads 0.27 V. README.md: how to trim them with a multimeter.
    "pilot_adc": {"vref_mv": 3300, "gain": 0.1011, "offset_mv": 1483},
}
