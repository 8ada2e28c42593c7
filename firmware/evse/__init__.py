# EV charger controller firmware.
VERSION = "0.1.0"
