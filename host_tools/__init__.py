"""Host tools for the EV charger controller: flash, configure, monitor, virtual board."""
