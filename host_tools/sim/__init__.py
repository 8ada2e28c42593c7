"""The virtual board: supervisor (pty + MicroPython process), hardware world, rig control server."""
