# CPython stand-in for MicroPython's built-in `micropython` module: just const().
# Under the real MicroPython the built-in module is found first, so this file never shadows it.


def const(x):
    return x
