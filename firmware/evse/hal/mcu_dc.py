# The MCU HALs' DC parts (evse/hal/mcu.py loads this on a board that has them): the CAN bus's
# MCP2515 on SPI, the EVs' communication controller on the SECC link (docs/secc-link.md,
# evse/hal/secc.py) and the voltage at each gun. Functions of the HAL (`hal`, an McuHal), so an AC
# board's heap holds none of their code.
import time
from array import array

from machine import SPI, Pin
from micropython import const

TYPE_CHECKING = const(0)   # mypy takes this name as true
if TYPE_CHECKING:
    from typing import Callable

    from machine import ADC

    from evse.can.mcp2515 import Mcp2515
    from evse.hal.mcu import McuHal
    from evse.hal.secc import Link

_CAN_SPI_HZ = const(10000000)  # the MCP2515's fastest SCK (DS20001801 section 12)
_CAN_BITRATE = const(125000)   # the power modules' CAN bitrate
_SECC_BAUD = const(115200)     # docs/secc-link.md: the SECC link's default speed
_SECC_RXBUF = const(1024)      # the UART's receive buffer: a poll every 250 ms takes ~300 bytes of two guns
_MISSED_MV = const(-9000)      # a high plateau this low is none the burst saw (-12 V is the low one)


def sample_digital(hal, i, adc, read):  # type: (McuHal, int, ADC, Callable[[ADC], int]) -> array
    # A 5 % duty (digital communication) is 50 us high: two or three of the burst's 18 us steps,
    # and an interrupt at the wrong moment takes them. The second highest read is still the
    # plateau (one spike ignored); where it is at -12 V (no EV state puts the plateau there)
    # fewer than two reads caught the plateau: one more burst, and if that misses too the gun's
    # last sample stands (a tick old) rather than a false state F.
    hi = hal._burst(adc, read)
    if hal._pilot_mv(hi) <= _MISSED_MV:
        hi = hal._burst(adc, read)
        if hal._pilot_mv(hi) <= _MISSED_MV and hal._last[i] is not None:
            return hal._last[i]
    out = hal._sample
    out[0] = hal._pilot_mv(hi)
    out[1] = hal._pilot_mv(hal._lo)
    last = hal._last[i]
    if last is None:
        last = hal._last[i] = array("i", [0, 0])
    last[0] = out[0]
    last[1] = out[1]
    return out


def claim(hal):  # type: (McuHal) -> None
    # A DC gun's voltage at the gun (guns[].dc_v) and the board's SECC link ("secc").
    for n, gun in enumerate(hal.board["guns"]):
        cfg = gun.get("dc_v")
        where = "guns[%d].dc_v" % n
        if cfg is None:
            hal._dc_v.append(None)
        else:
            hal._dc_v.append((hal._dc_v_input(cfg, where), hal._need(cfg, "v_per_mv", where),
                              cfg.get("offset_mv", 0)))
    cfg = hal.board.get("secc")
    if cfg is not None:
        from evse.hal.secc import Link
        limits = [(g.get("max_v", 1000), g.get("max_a", 500), g.get("max_kw", 0)) for g in hal.board["guns"]]
        port = hal.uart(hal._need(cfg, "uart", "secc"), cfg.get("baud", _SECC_BAUD), rxbuf=_SECC_RXBUF)
        hal._secc = Link(port, limits)


# ---- DC: the EV's communication controller and the voltage at the gun ----------------------
# The SECC link (docs/secc-link.md, evse/hal/secc.py): each call takes what the UART has, the
# charger's lines repeat from ev_comm, which the control loop calls every 250 ms per gun.
def _link(hal):  # type: (McuHal) -> Link
    if hal._secc is None:
        raise OSError('this board has no SECC: add "secc": {"uart": <index>} and that UART to the board file '
                      "(docs/secc-link.md)")
    return hal._secc


def ev_comm(hal, gun, ev):  # type: (McuHal, int, object) -> bool
    i = hal._index(gun)
    link = _link(hal)
    now = time.ticks_ms()
    link.poll(now)
    link.repeat(now)
    return link.ev(i, ev, now)


def ev_report(hal, gun, state, isolation):  # type: (McuHal, int, str, str | None) -> None
    i = hal._index(gun)
    _link(hal).tell(i, state, isolation, time.ticks_ms())


def dc_voltage(hal, gun):  # type: (McuHal, int) -> float
    # An isolated measurement of the cable side of the DC contactors: ADC mV to volts by the
    # board file's v_per_mv and offset_mv.
    i = hal._index(gun)
    dc_v = hal._dc_v[i] if i < len(hal._dc_v) else None
    if dc_v is None:
        raise OSError('gun %d has no "dc_v" in the board file: the voltage at the gun needs its input '
                      "(docs/secc-link.md)" % gun)
    volts = (hal._dc_v_mv(dc_v[0]) - dc_v[2]) * dc_v[1]
    if volts < 0:
        volts = 0.0
    if hal._secc is not None:
        hal._secc.present_v[i] = volts   # EVSEPresentVoltage
    return volts


def can(hal, index):  # type: (McuHal, int) -> Mcp2515
    """CAN bus `index`: the MCP2515 of the board file's "can" entry with that index, on
    machine.SPI `spi` (mode 0, _CAN_SPI_HZ) and the chip select `cs`, reset and started at
    `bitrate` (125 kbit/s unless given) from its `crystal_hz`. The same bus on every call."""
    bus = hal._can.get(index)
    if bus is not None:
        return bus
    name, cfg = hal._section("can", index)
    if cfg is None:
        raise ValueError('board has no CAN bus %d: add it to the board\'s "can" section with index, chip '
                         '"mcp2515", spi, sck, mosi, miso, cs, crystal_hz (see docs/virtual-board.md)' % index)
    where = "can." + name
    sck = hal._claim(cfg, "sck", where, Pin)
    mosi = hal._claim(cfg, "mosi", where, Pin)
    miso = hal._claim(cfg, "miso", where, Pin)
    # Chip select high (idle) before the SPI clocks anything.
    cs = hal._claim(cfg, "cs", where, lambda g: Pin(g, Pin.OUT, value=1))
    try:
        spi = SPI(hal._need(cfg, "spi", where), baudrate=_CAN_SPI_HZ, polarity=0, phase=0,
                  sck=sck, mosi=mosi, miso=miso)
    except (ValueError, OSError) as e:
        raise ValueError("board file: %s: the MCU refuses its SPI (%s); see %s" % (where, e, hal.BOARD_EXAMPLE))
    from evse.can.mcp2515 import Mcp2515
    bus = Mcp2515(spi, cs, time.sleep_ms, hal._need(cfg, "crystal_hz", where), cfg.get("bitrate", _CAN_BITRATE))
    hal._can[index] = bus
    return bus
