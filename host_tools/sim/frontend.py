"""The circuit around an emulated MCU (boards with hal "rp2" or "esp32"): what the board file's pin
map wires to each GPIO, and the electrical behaviour behind it. The emulated `machine` in the
firmware's process (host_tools/sim/silicon/) drives the outputs and samples the inputs through
the line protocol described in silicon/link.py; this side turns them into the world's physics
(host_tools/sim/world.py) and back. docs/virtual-board.md has the schematic-level description.

Per gun:
- pilot: the PWM pin drives a +-12 V stage with a 1 kOhm source resistor; the EV side is the
  diode and 2.74 kOhm, with S2 adding 1.3 kOhm (C) or 270 Ohm (D); E is a short to PE. The
  measuring front end maps the pilot to the ADC pin as offset + gain * pilot, with parts a little
  off their nominal values; the emulated ADC picks the plateau by the PWM's phase at each read.
- contactor: the coil pin; the auxiliary (mirror) contact to ground under the MCU's pull-up,
  closing PULL_IN_MS after the coil is energised and opening DROP_OUT_MS after it is released,
  bouncing for BOUNCE_MS each time; a weld holds it closed.
- RCM: test input -> fault output rises after RCM_RESPONSE_MS and stays latched; a real trip
  (rig `rcd_trip`) latches it too; the falling edge of the test input resets the latch (a reset
  pulse). A dead module never raises its output; a stuck one always shows it raised.
- PP and NTC to ground under their pull-ups (board file `adc`), the CT as mV per amp; on the
  RP2040 board they reach one ADC through a CD4051 whose channel the select pins choose.
- ESP32: DS18B20 sensors on the 1-Wire pin, one per gun in scan order.
- CAN (board file "can"): an MCP2515 (host_tools/sim/mcp2515.py's model of the chip) on the SPI
  pins and chip select the board file names; what it sends goes to the world's CAN bus, and the
  modules' answers come back into its receive buffers.
- A DC gun's voltage (board file guns[].dc_v): the world's voltage at the gun through an isolated
  measurement, offset_mv + volts / v_per_mv at its ADC pin (or, on the RP2040, a CD4051 channel).
  The SECC on the board file's "secc" UART is host_tools/sim/secc.py, served by the supervisor.
"""

from __future__ import annotations

import math
import random
import time

from host_tools.sim import mcp2515
from host_tools.sim.world import PP_OHMS, World

MCU = {"rp2": "rp2040", "esp32": "esp32"}
# GPIOs each chip has, and what they can be (RP2040 datasheet 1.4.3; ESP32 datasheet 2.2).
GPIOS = {"rp2": set(range(30)),
         "esp32": set(range(0, 20)) | {21, 22, 23, 25, 26, 27} | set(range(32, 40))}
ADC_PINS = {"rp2": {26, 27, 28, 29}, "esp32": set(range(32, 40))}
INPUT_ONLY = {"rp2": set(), "esp32": set(range(34, 40))}
FLASH_PINS = {"rp2": set(), "esp32": set(range(6, 12))}
# A Pico W's CYW43 WLAN chip takes GP23 (WL_ON), GP24 (WL_D), GP25 (WL_CS) and GP29 (WL_CLK)
# (Pico W datasheet 2.1): on an rp2 board with a WLAN they are not the board file's.
WLAN_PINS = {"rp2": {23, 24, 25, 29}, "esp32": set()}
# An ESP32-WROVER's PSRAM takes GPIO16 and GPIO17 (ESP32-WROVER-E datasheet, pin description).
PSRAM_PINS = {"rp2": set(), "esp32": {16, 17}}

# SPI peripherals each chip's MicroPython gives (machine.SPI ids). An RP2040 pin has one SPI
# function: SPI0 on GP0-7 and GP16-23, SPI1 on GP8-15 and GP24-29, SCK, MOSI, MISO on the pins
# 2, 3, 0 mod 4 (datasheet 1.4.3); the ESP32's GPIO matrix routes any pin.
SPI_IDS = {"rp2": (0, 1), "esp32": (1, 2)}
RP2_SPI_LINES = {"sck": 2, "mosi": 3, "miso": 0}
# The MCP2515 (DS20001801 section 12): SPI modes 0,0 and 1,1, most significant bit first, 8-bit
# bytes, SCK up to 10 MHz. A transfer in another format is not what the chip decodes.
MCP2515_MODES = ((0, 0), (1, 1))
MCP2515_MAX_HZ = 10_000_000
CAN_RETRY_MS = 1.0            # a frame nobody acknowledges goes out again about every 1 ms (125 kbit/s)
CAN_BUS_OFF_MS = 1.5          # bus-off ends after 128 x 11 recessive bits: 1.4 ms at 125 kbit/s
NO_REPLY = "opwWcX"           # the link's lines that get no reply (silicon/link.py)

EVSE_R_OHM = 1000.0           # IEC 61851-1 Table A.1: R1, the EVSE's source resistor
EV_R_OHM = {"B": 2740.0, "C": 2740.0 * 1300.0 / (2740.0 + 1300.0), "D": 2740.0 * 270.0 / (2740.0 + 270.0)}
DIODE_V = 0.7
SUPPLY_MV = 12000
PILOT_GAIN_ERR = 0.99         # the front end's parts are off their nominal values a little:
PILOT_OFFSET_ERR_MV = 12      # what `calibrate` finds
PULL_IN_MS = 25.0             # contactor: coil energised -> contacts closed
DROP_OUT_MS = 12.0            # coil released -> contacts open
BOUNCE_MS = 3.0               # the auxiliary contact chatters this long after each move
RCM_RESPONSE_MS = 18.0        # RCM: test current (or a fault) -> fault output raised
RCM_STATES = ("ok", "dead", "stuck")
DS_ROM = "28%02x00000000000%d"


def sent_at(parts: list, k: int, now: float) -> float:
    """The world's time (ms) when the MCU sent a line whose field k is its time.ticks_us(), or
    `now`. The line may have waited in the socket while this host was busy elsewhere, and a wire
    has no such delay: the RCM's 18 ms answer to its test input counts from when the firmware
    drove it, not from when this thread got to it (else a loaded host fails the self-test)."""
    if len(parts) <= k:
        return now
    lag_ms = (time.monotonic_ns() // 1000 - int(parts[k])) / 1000
    return now - lag_ms if 0 <= lag_ms < 1000 else now   # another clock: as it comes


class BoardFileError(ValueError):
    pass


def check_board(board: dict) -> None:
    """A board file for an emulated MCU: every pin exists on the chip and can do its job, no pin
    is wired twice, and the pilot front end maps +12 V and -12 V inside the ADC's range with room
    between the states. BoardFileError names the key and the fix."""
    hal = board.get("hal")
    if hal not in MCU:
        raise BoardFileError(f"board hal {hal!r}: the emulated MCUs are rp2 and esp32")
    check_hardware(board)
    chip = MCU[hal]
    used: dict[int, str] = {}
    wlan = board.get("network", {}).get("kind") == "wlan"
    psram = bool(board.get("hardware", {}).get("psram"))

    def claim(pin, key, output=False, analog=False):
        if isinstance(pin, bool) or not isinstance(pin, int):
            raise BoardFileError(f"{key} must be a GPIO number, not {pin!r}")
        if pin not in GPIOS[hal] or pin in FLASH_PINS[hal]:
            raise BoardFileError(f"{key} = {pin}: the {chip} has no usable GPIO {pin}")
        if wlan and pin in WLAN_PINS[hal]:
            raise BoardFileError(f"{key} = {pin}: GPIO {pin} drives the board's WLAN chip; pick another pin")
        if psram and pin in PSRAM_PINS[hal]:
            raise BoardFileError(f"{key} = {pin}: GPIO {pin} drives the board's PSRAM; pick another pin")
        if output and pin in INPUT_ONLY[hal]:
            raise BoardFileError(f"{key} = {pin}: GPIO {pin} of the {chip} is input only; pick an output-capable pin")
        if analog and pin not in ADC_PINS[hal]:
            raise BoardFileError(f"{key} = {pin}: GPIO {pin} of the {chip} has no ADC; "
                                 f"use one of {sorted(ADC_PINS[hal])}")
        if pin in used:
            raise BoardFileError(f"{key} = {pin}: GPIO {pin} is already {used[pin]}")
        used[pin] = key

    for n, gun in enumerate(board.get("guns", [])):
        pins = gun.get("pins")
        if not isinstance(pins, dict):
            raise BoardFileError(f"guns[{n}].pins is missing; name the gun's GPIOs")
        where = f"guns[{n}].pins"
        for name, output, analog in (("pilot_pwm", True, False), ("pilot_adc", False, True),
                                     ("contactor", True, False), ("feedback", False, False),
                                     ("rcd_fault", False, False), ("rcd_test", True, False)):
            if name not in pins:
                raise BoardFileError(f"{where} has no \"{name}\"")
            claim(pins[name], f"{where}.{name}", output, analog)
        if hal == "esp32":
            for name in ("ct_adc",) + (("pp_adc",) if gun.get("pp") else ()):
                claim(pins.get(name), f"{where}.{name}", analog=True)
        else:
            for name in ("ct_mux", "ntc_mux") + (("pp_mux",) if gun.get("pp") else ()):
                ch = pins.get(name)
                if isinstance(ch, bool) or not isinstance(ch, int) or not 0 <= ch <= 7:
                    raise BoardFileError(f"{where}.{name} must be a CD4051 channel 0..7, not {ch!r}")
    top = board.get("pins", {})
    if hal == "rp2":
        claim(top.get("mux_adc"), "pins.mux_adc", analog=True)
        select = top.get("mux_select")
        if not isinstance(select, list) or len(select) != 3:
            raise BoardFileError(f"pins.mux_select must list the CD4051's A, B, C select GPIOs, not {select!r}")
        for k, pin in enumerate(select):
            claim(pin, f"pins.mux_select[{k}]", output=True)
    else:
        claim(top.get("onewire"), "pins.onewire", output=True)
    if board.get("estop"):
        claim(top.get("estop"), "pins.estop")
    for name, cfg in board.get("uart", {}).items():
        for key in ("tx", "rx") + (("de",) if "de" in cfg else ()):
            claim(cfg.get(key), f"uart.{name}.{key}", output=key != "rx")
    for name, cfg in board.get("can", {}).items():
        where = f"can.{name}"
        check_can_section(hal, where, cfg)
        for key in ("sck", "mosi", "miso", "cs"):
            claim(cfg.get(key), f"{where}.{key}", output=key != "miso")
        check_spi_pins(hal, where, cfg)
    for n, gun in enumerate(board.get("guns", [])):
        if "dc_v" in gun:
            check_dc_v(board, n, claim)
    if "secc" in board:
        check_secc(board)
    check_pilot_front_end(board)


def check_dc_v(board: dict, n: int, claim) -> None:
    """A DC gun's voltage input: an ADC pin (or a free CD4051 channel on the RP2040) and its scale."""
    where = f"guns[{n}].dc_v"
    cfg = board["guns"][n]["dc_v"]
    if not isinstance(cfg, dict):
        raise BoardFileError(f'{where} must be {{"pin": <ADC GPIO>, "v_per_mv": ..., "offset_mv": ...}}, not {cfg!r}')
    scale = cfg.get("v_per_mv")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise BoardFileError(f"{where}.v_per_mv must be the volts at the gun per mV at the ADC, above 0, not {scale!r}")
    if "mux" in cfg and board["hal"] == "rp2":
        taken = {g["pins"].get(k) for g in board["guns"] for k in ("pp_mux", "ct_mux", "ntc_mux")}
        taken |= {g["dc_v"].get("mux") for k, g in enumerate(board["guns"])
                  if k != n and isinstance(g.get("dc_v"), dict)}
        ch = cfg["mux"]
        if isinstance(ch, bool) or not isinstance(ch, int) or not 0 <= ch <= 7 or ch in taken:
            raise BoardFileError(f"{where}.mux = {ch!r}: give a CD4051 channel 0..7 no other input uses")
        return
    claim(cfg.get("pin"), f"{where}.pin", analog=True)


def check_secc(board: dict) -> None:
    """The SECC link: a UART of the "uart" section of its own, point to point (no de)."""
    cfg = board["secc"]
    index = cfg.get("uart") if isinstance(cfg, dict) else None
    entry = next((e for e in board.get("uart", {}).values() if e.get("index") == index), None)
    if isinstance(index, bool) or not isinstance(index, int) or entry is None:
        raise BoardFileError(f'secc.uart = {index!r}: name the index of an entry of the "uart" section, the SECC '
                             "module's TX and RX")
    if "de" in entry:
        raise BoardFileError(f"secc.uart = {index}: that UART has an RS-485 driver (de); the SECC link is point to "
                             "point")
    users = [f"guns[{n}].{k}" for n, g in enumerate(board["guns"]) for k in ("meter", "imd")
             if isinstance(g.get(k), dict) and g[k].get("uart") == index]
    users += ["grid_meter"] if (board.get("grid_meter") or {}).get("uart") == index else []
    if users:
        raise BoardFileError(f"secc.uart = {index}: that UART is also {users[0]}'s; give the SECC a UART of its own")
    baud = cfg.get("baud", 115200)
    if isinstance(baud, bool) or not isinstance(baud, int) or not 1200 <= baud <= 1_000_000:
        raise BoardFileError(f"secc.baud must be the link's bits per second, 1200..1000000, not {baud!r}")


def check_can_section(hal: str, where: str, cfg) -> None:
    """A CAN controller: an MCP2515 on one of the MCU's SPI peripherals, with its crystal."""
    if not isinstance(cfg, dict):
        raise BoardFileError(f'{where} must be {{"index": 0, "chip": "mcp2515", "spi": ..., "sck": ..., "mosi": ..., '
                             f'"miso": ..., "cs": ..., "crystal_hz": ...}}, not {cfg!r}')
    if cfg.get("chip") != "mcp2515":
        raise BoardFileError(f'{where}.chip is {cfg.get("chip")!r}: the CAN controller the firmware drives is "mcp2515"')
    for key, what in (("index", "the CAN bus number the firmware asks for (0: the cabinet's modules)"),
                      ("crystal_hz", "the MCP2515's crystal in Hz (8 MHz gives 125 and 250 kbit/s, 16 MHz also 500)")):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "index" else 1):
            raise BoardFileError(f"{where}.{key} must be {what}, not {value!r}")
    spi = cfg.get("spi")
    if isinstance(spi, bool) or spi not in SPI_IDS[hal]:
        raise BoardFileError(f"{where}.spi = {spi!r}: the {MCU[hal]}'s MicroPython has SPI "
                             + " and ".join(str(i) for i in SPI_IDS[hal]))


def check_spi_pins(hal: str, where: str, cfg: dict) -> None:
    """On the RP2040 SCK, MOSI and MISO must be pins that SPI peripheral can take."""
    if hal != "rp2":
        return
    spi = cfg["spi"]
    for line, rest in RP2_SPI_LINES.items():
        fits = [p for p in sorted(GPIOS[hal]) if p & 3 == rest and (p >> 3) & 1 == spi]
        if cfg[line] not in fits:
            raise BoardFileError(f"{where}.{line} = {cfg[line]}: the RP2040's SPI{spi} has its {line.upper()} on "
                                 f"GPIO {', '.join(map(str, fits))}; pick one of them")


INSTALLS = {"mpy": ".mpy files on the board's littlefs (what evsectl flash writes)",
            "romfs": "a ROMFS image (a MicroPython build with a ROMFS partition)",
            "frozen": "frozen into the MicroPython firmware image"}


def check_hardware(board: dict) -> None:
    """A real board's file says what it is (docs/boards.md): the board people buy, its MCU, the
    stock MicroPython build, the heap that build leaves free (heap_kb, KiB of the 32-bit heap)
    and how the firmware is installed there."""
    hw = board.get("hardware")
    if not isinstance(hw, dict):
        raise BoardFileError('board file lacks "hardware": {"board": ..., "mcu": ..., "micropython": ..., '
                             '"install": "mpy"} (docs/boards.md)')
    for key in ("board", "mcu", "micropython", "heap_source"):
        if not isinstance(hw.get(key), str) or not hw[key]:
            raise BoardFileError(f"hardware.{key} must name it (docs/boards.md), not {hw.get(key)!r}")
    if hw.get("install") not in INSTALLS:
        raise BoardFileError(f"hardware.install is {hw.get('install')!r}: use one of "
                             + "; ".join(f"{k} ({v})" for k, v in INSTALLS.items()))
    if hw.get("virtual_heap", "measured") not in ("measured", "upper-bound"):
        raise BoardFileError(f"hardware.virtual_heap is {hw.get('virtual_heap')!r}: use measured (the board's heap "
                             "at make bench's 32/64-bit ratios) or upper-bound (twice it, and the code on top)")
    romfs = hw.get("romfs_kb")
    if romfs is not None and (isinstance(romfs, bool) or not isinstance(romfs, int) or not 32 <= romfs <= 4096
                              or romfs % 4):
        raise BoardFileError(f"hardware.romfs_kb is the ROMFS partition of the board's MicroPython build, "
                             f"32..4096 KiB in 4 KiB blocks, not {romfs!r}")
    if hw.get("install") == "romfs" and romfs is None:
        raise BoardFileError("hardware.install romfs needs hardware.romfs_kb: the size of the ROMFS partition "
                             "of the board's MicroPython build (docs/bring-up.md)")
    heap = board.get("heap_kb")
    if isinstance(heap, bool) or not isinstance(heap, int) or not 16 <= heap <= 8192:
        raise BoardFileError(f"heap_kb must be the KiB the stock MicroPython leaves free on the board, 16..8192, "
                             f"not {heap!r}")


def check_pilot_front_end(board: dict) -> None:
    """+12 V and -12 V must reach the ADC inside its range, far enough apart to tell A-F."""
    cal = board.get("adc", {})
    try:
        vref, gain, offset = cal["vref_mv"], cal["pilot_gain"], cal["pilot_offset_mv"]
    except KeyError as e:
        raise BoardFileError(f"adc has no {e}; the pilot front end needs vref_mv, pilot_gain, pilot_offset_mv") from None
    for pilot_mv in (SUPPLY_MV, -SUPPLY_MV):
        at_pin = offset + gain * pilot_mv
        if not 0 < at_pin < vref:
            raise BoardFileError(f"adc.pilot_gain {gain} and adc.pilot_offset_mv {offset} put {pilot_mv / 1000:+.0f} V "
                                 f"at {at_pin:.0f} mV on the pilot ADC, outside 0..{vref} mV: the states cannot be "
                                 "told apart; fix the front end's values")
    step_mv = 3000 * gain  # B, C, D are 3 V apart on the pilot
    lsb_mv = vref / 4096
    if step_mv < 16 * lsb_mv:
        raise BoardFileError(f"adc.pilot_gain {gain}: 3 V between two pilot states is {step_mv:.1f} mV at the ADC, "
                             f"under 16 steps of {lsb_mv:.2f} mV: the states cannot be told apart reliably")


def pilot_plateaus_mv(world: World, g, driven: bool) -> tuple[float, float]:
    """The pilot's high and low plateau in mV (pilot side), from the EV's resistors and diode."""
    if not driven or not world.powered:
        return 0.0, 0.0
    letter = world.ev_side_letter(g)
    if letter == "E":
        return 0.0, 0.0  # shorted to PE
    if letter == "F" or letter == "A" or letter not in EV_R_OHM:
        s = -SUPPLY_MV if letter == "F" else SUPPLY_MV
        return float(s), -float(SUPPLY_MV)
    r = EV_R_OHM[letter]
    share = r / (r + EVSE_R_OHM)
    if g.diode_fault:
        return SUPPLY_MV * share, -SUPPLY_MV * share  # no diode: the resistor loads both halves
    return DIODE_V * 1000 + (SUPPLY_MV - DIODE_V * 1000) * share, -float(SUPPLY_MV)


class Rcm:
    def __init__(self):
        self.state = "ok"
        self.test = False
        self.test_since_ms = 0.0
        self.latched = False


class CanController:
    """The board's MCP2515 (a board file "can" section): its SPI lines and chip select on the
    pins the section names; the frames it sends reach the world's CAN modules, which acknowledge
    them (any module that hears) and whose answers arrive after the transaction that sent them."""

    def __init__(self, world: World, where: str, cfg: dict):
        self.world, self.where = world, where
        self.sck, self.mosi, self.miso, self.cs = cfg["sck"], cfg["mosi"], cfg["miso"], cfg["cs"]
        self.chip = mcp2515.Mcp2515(on_send=self._on_send)
        self.selected = False
        self.answers: list[tuple[int, bytes]] = []   # to deliver once the transaction ends
        self.bus_ms = 0.0              # when the bus was last brought up to date (retries, bus-off)
        self.bus_off_ms: float | None = None
        self.ignored = 0               # transfers clocked while its chip select was high
        self.garbled = 0               # transfers in a format it does not decode

    def power_on(self, now: float) -> None:
        self.chip.reset()
        self.selected = False
        self.answers.clear()
        self.bus_ms = now
        self.bus_off_ms = None

    def _on_send(self, can_id: int, data: bytes) -> bool:
        bus = self.world.can
        if bus is None:
            return False               # nothing on the bus to acknowledge it
        self.answers += self.world.can_exchange(can_id, data)
        return any(not m.silent for m in bus.modules)

    def chip_select(self, low: bool, now: float) -> None:
        if low == self.selected:
            return
        self.selected = low
        self._catch_up(now)
        if low:
            self.chip.select()
            return
        self.chip.deselect()
        answers, self.answers = self.answers, []
        for can_id, data in answers:
            self.chip.deliver(can_id, data)

    def _catch_up(self, now: float) -> None:
        """The bus since the MCU last looked: the chip retries a frame nobody acknowledged about
        every CAN_RETRY_MS (each failure adds 8 to its error counter), and leaves bus-off by
        itself after CAN_BUS_OFF_MS of an idle bus."""
        # A chip select carries the MCU's time (sent_at), which after a line read late can be
        # before the last look: the bus never runs backwards.
        now = max(now, self.bus_ms)
        chip = self.chip
        if chip.tec >= 256:
            if self.bus_off_ms is None:
                self.bus_off_ms = now
            elif now - self.bus_off_ms >= CAN_BUS_OFF_MS:
                chip.recover()
                self.bus_off_ms = None
        else:
            for _ in range(min(32, int((now - self.bus_ms) / CAN_RETRY_MS))):
                if not chip.pending() or chip.tec >= 256:
                    break
                chip.retry()
        self.bus_ms = now

    def clock(self, spi: tuple, data: bytes) -> bytes | None:
        """Bytes an SPI peripheral set up as `spi` clocks out -> what this chip drives on its MISO,
        or None when the chip does not drive it (not on that bus's pins, or not selected)."""
        sck, mosi, miso, hz, polarity, phase, bits, msb = spi
        if (sck, mosi) != (self.sck, self.mosi):
            return None                # another bus: its clock does not reach this chip
        if not self.selected:
            # The chip ignores SCK while CS is high and leaves SO floating: a driver bug.
            self.ignored += 1
            self.world.log(0, "spi_ignored", {"device": self.where, "bytes": len(data), "why": "chip select high"})
            return None
        why = ("SPI mode %d,%d: the MCP2515 takes 0,0 and 1,1" % (polarity, phase)
               if (polarity, phase) not in MCP2515_MODES else
               "%d Hz: the MCP2515's SCK is at most 10 MHz" % hz if hz > MCP2515_MAX_HZ else
               "%d-bit words: the MCP2515 takes bytes" % bits if bits != 8 else
               "LSB first: the MCP2515 takes the most significant bit first" if not msb else None)
        if why is not None:
            self.garbled += 1
            self.world.log(0, "spi_ignored", {"device": self.where, "bytes": len(data), "why": why})
            return None
        out = self.chip.clock(data)
        return out if miso == self.miso else None


class FrontEnd:
    """One board's circuit: answers the emulated MCU's lines (silicon/link.py)."""

    def __init__(self, world: World, board: dict):
        check_board(board)
        self.world, self.board = world, board
        self.hal = board["hal"]
        self.chip = MCU[self.hal]
        cal = board["adc"]
        self.vref = cal["vref_mv"]
        self.gain = cal["pilot_gain"] * PILOT_GAIN_ERR
        self.offset = cal["pilot_offset_mv"] + PILOT_OFFSET_ERR_MV
        self.rng = random.Random(0x5EED)
        self.rcms = [Rcm() for _ in board["guns"]]
        self.outputs: dict[int, tuple[str, int]] = {}  # GPIO -> (what, gun index or select bit)
        self.inputs: list[tuple[str, int, int, object]] = []  # (kind, GPIO, PWM GPIO, value function)
        self.mux_bits = [0, 0, 0]
        self.mux: dict[int, object] = {}  # CD4051 channel -> value function
        for i, gun in enumerate(board["guns"]):
            p = gun["pins"]
            self.outputs[p["pilot_pwm"]] = ("pwm", i)
            self.outputs[p["contactor"]] = ("coil", i)
            self.outputs[p["rcd_test"]] = ("rcd_test", i)
            self.inputs.append(("p", p["pilot_adc"], p["pilot_pwm"], lambda now, i=i: self._pilot_adc(i)))
            self.inputs.append(("d", p["feedback"], -1, lambda now, i=i: 0 if self._aux_closed(i, now) else 1))
            self.inputs.append(("d", p["rcd_fault"], -1, lambda now, i=i: 1 if self._rcm_fault(i, now) else 0))
            pp = (lambda now, i=i: self._pp_mv(i)) if gun.get("pp") else None
            ct = lambda now, i=i: self._ct_mv(i)  # noqa: E731
            if self.hal == "rp2":
                self.mux[p["ct_mux"]] = ct
                self.mux[p["ntc_mux"]] = lambda now, i=i: self._ntc_mv(i)
                if pp:
                    self.mux[p["pp_mux"]] = pp
            else:
                self.inputs.append(("a", p["ct_adc"], -1, ct))
                if pp:
                    self.inputs.append(("a", p["pp_adc"], -1, pp))
            dc_v = gun.get("dc_v")
            if dc_v is not None:
                volts = lambda now, i=i: self._dc_v_mv(i)  # noqa: E731
                if "mux" in dc_v and self.hal == "rp2":
                    self.mux[dc_v["mux"]] = volts
                else:
                    self.inputs.append(("a", dc_v["pin"], -1, volts))
        if board.get("estop"):
            # The emergency stop's NC contact to ground on an input with a pull-up: high when pressed.
            self.inputs.append(("d", board["pins"]["estop"], -1, lambda now: 1 if world.estop else 0))
        world.rcm_raised = lambda g: self._rcm_fault(g.number - 1, world.now_ms())
        if self.hal == "rp2":
            for bit, pin in enumerate(board["pins"]["mux_select"]):
                self.outputs[pin] = ("mux", bit)
            self.inputs.append(("a", board["pins"]["mux_adc"], -1, self._mux_mv))
        self.spi: dict[int, tuple] = {}   # SPI id -> (sck, mosi, miso, hz, polarity, phase, bits, msb)
        self.can = [CanController(world, f"can.{name}", cfg) for name, cfg in board.get("can", {}).items()]
        for k, ctl in enumerate(self.can):
            self.outputs[ctl.cs] = ("cs", k)

    # ---- the line protocol ---------------------------------------------------------------------
    def request(self, line: str) -> str | None:
        """One line from the emulated MCU -> its reply, or None for a line that gets none."""
        parts = line.split()
        if not parts:
            return "!empty request"
        op = parts[0]
        w = self.world
        with w.lock:
            try:
                now = w.now_ms()
                if op == "s":
                    w.apply_interlock()  # the RCM's output may have risen since
                    out = []
                    for kind, _, _, fn in self.inputs:
                        v = fn(now)
                        out.extend((str(int(round(v[0]))), str(int(round(v[1])))) if kind == "p" else (str(int(round(v))),))
                    return " ".join(out)
                if op == "o":
                    self._output(int(parts[1]), int(parts[2]), sent_at(parts, 3, now))
                    return None
                if op == "p":
                    self._pwm(int(parts[1]), int(parts[2]), int(parts[3]))
                    return None
                if op == "w":
                    w.watchdog_fed_ms = now
                    return None
                if op == "W":
                    w.watchdog_ms = int(parts[1])
                    w.watchdog_fed_ms = now
                    return None
                if op == "c":
                    self.spi.pop(int(parts[1]), None)
                    if len(parts) > 2:
                        self.spi[int(parts[1])] = tuple(int(v) for v in parts[2:10])
                    return None
                if op in "xX":
                    miso = self._spi_transfer(int(parts[1]), bytes.fromhex(parts[2] if len(parts) > 2 else ""), now)
                    return miso.hex() if op == "x" else None
                if op == "n":
                    return "1" if w.net_up and w.powered else "0"
                if op == "T":
                    return " ".join(f"{DS_ROM % (g.number, g.number)}:{g.temperature_c:.4f}" for g in w.guns)
                if op == "H":
                    if len(parts) < 2 or parts[1] != self.chip:
                        return f"!this board is a {self.chip}, not {parts[1] if len(parts) > 1 else '?'}"
                    self._power_on()
                    return " ".join(f"p:{pin}:{pwm}" if kind == "p" else f"{kind}:{pin}"
                                    for kind, pin, pwm, _ in self.inputs)
            except (IndexError, ValueError) as e:
                return f"!bad request {line!r}: {e}"
        return f"!unknown request {op!r}"

    def _power_on(self) -> None:
        """A new firmware run: every GPIO starts as an input (nothing driven), no SPI is set up,
        and the board's chips start from their reset."""
        self.mux_bits = [0, 0, 0]
        for r in self.rcms:
            r.test = r.latched = False
        self.spi.clear()
        for ctl in self.can:
            ctl.power_on(self.world.now_ms())

    def _spi_transfer(self, spi_id: int, data: bytes, now: float) -> bytes:
        """The bytes an SPI peripheral clocks out -> the bytes on its MISO meanwhile: a selected
        chip's, else zeros (an undriven MISO on the RP2040's default pull-down)."""
        spi = self.spi.get(spi_id)
        out = None
        if spi is not None:   # an SPI not set up drives no pins
            for ctl in self.can:
                got = ctl.clock(spi, data)
                out = out if got is None else got
        return out if out is not None else bytes(len(data))

    def _output(self, pin: int, level: int, now: float) -> None:
        what = self.outputs.get(pin)
        if what is None:
            return  # an LED, a DE line: nothing the world models
        kind, i = what
        if kind == "mux":
            self.mux_bits[i] = 1 if level == 1 else 0
            return
        if kind == "cs":
            self.can[i].chip_select(level == 0, now)   # undriven (-1): the board's pull-up holds it high
            return
        g = self.world.guns[i]
        if kind == "pwm":
            self.world.set_duty(g, -1 if level < 0 else 1000 * level)
        elif kind == "coil":
            self._coil(i, level == 1, now)
        elif kind == "rcd_test":
            self._rcd_test(i, level == 1, now)
            self.world.apply_interlock()

    def _pwm(self, pin: int, freq: int, duty16: int) -> None:
        what = self.outputs.get(pin)
        if what is None or what[0] != "pwm":
            return
        g = self.world.guns[what[1]]
        if freq and not 900 <= freq <= 1100:
            self.world.log(g.number, "pilot_hz", freq)  # IEC 61851-1 Table A.7: 1 kHz +- 0.5 %
        self.world.set_duty(g, round(duty16 * 1000 / 65536))

    # ---- the pilot -----------------------------------------------------------------------------
    def _pilot_adc(self, i: int) -> tuple[float, float]:
        g = self.world.guns[i]
        high, low = pilot_plateaus_mv(self.world, g, g.duty_pm >= 0)
        return self._at_adc(high), self._at_adc(low)

    def _at_adc(self, pilot_mv: float) -> float:
        mv = self.offset + self.gain * pilot_mv
        return min(max(mv, 0.0), self.vref)

    # ---- contactor -------------------------------------------------------------------------------
    def _coil(self, i: int, on: bool, now: float) -> None:
        self.world.drive_coil(self.world.guns[i], on)  # the interlock, if the board has one, may hold it

    def _aux_closed(self, i: int, now: float) -> bool:
        """The mirror contact follows the coil's current (not the driver pin: an interlock may cut
        it) after the pull-in or drop-out time, bouncing a little."""
        g = self.world.guns[i]
        if g.contacts and not g.coil:
            return True  # welded
        dt = now - g.coil_ms
        settle = PULL_IN_MS if g.coil else DROP_OUT_MS
        if dt < settle:
            return not g.coil and g.coil_was_on_ms >= PULL_IN_MS
        if dt < settle + BOUNCE_MS:
            return self.rng.random() < 0.5
        return g.coil

    # ---- RCM -------------------------------------------------------------------------------------
    def _rcd_test(self, i: int, high: bool, now: float) -> None:
        r = self.rcms[i]
        if high == r.test:
            return
        r.test = high
        r.test_since_ms = now
        self.world.log(i + 1, "rcd_test", "on" if high else "off")
        if not high:
            # The reset pulse's falling edge clears the latch once no residual current flows.
            r.latched = False
            g = self.world.guns[i]
            if g.rcd_tripped:
                g.rcd_tripped = False
                self.world.log(g.number, "rcd", "reset")

    def _rcm_fault(self, i: int, now: float) -> bool:
        r, g = self.rcms[i], self.world.guns[i]
        state = "dead" if g.rcd_test_fails else g.rcm
        if state == "stuck":
            return True
        if state == "dead":
            return False
        if r.test and now - r.test_since_ms >= RCM_RESPONSE_MS:
            r.latched = True
        return r.latched or g.rcd_tripped

    # ---- PP, CT, NTC -------------------------------------------------------------------------------
    def _divider_mv(self, ohms: float, pullup: float) -> float:
        return self.vref * ohms / (ohms + pullup)

    def _pp_mv(self, i: int) -> float:
        g = self.world.guns[i]
        if not g.plugged:
            return float(self.vref)  # no cable: the pull-up alone
        return self._divider_mv(PP_OHMS.get(g.cable_a, 1e9), self.board["adc"]["pp_pullup_ohm"])

    def _ct_mv(self, i: int) -> float:
        cal = self.board["adc"]
        mv = self.world.guns[i].amps / cal["ct_a_per_mv"] + cal["ct_offset_mv"]
        return min(mv, float(self.vref))

    def _dc_v_mv(self, i: int) -> float:
        """The isolated measurement of the voltage at a DC gun: offset_mv + volts / v_per_mv."""
        cfg = self.board["guns"][i]["dc_v"]
        mv = cfg.get("offset_mv", 0) + self.world.guns[i].out_v / cfg["v_per_mv"]
        return min(max(mv, 0.0), float(self.vref))

    def _ntc_mv(self, i: int) -> float:
        ntc = self.board["adc"]["ntc"]
        kelvin = self.world.guns[i].temperature_c + 273.15
        ohms = ntc["r25_ohm"] * math.exp(ntc["beta"] * (1 / kelvin - 1 / 298.15))
        return self._divider_mv(ohms, ntc["pullup_ohm"])

    def _mux_mv(self, now: float) -> float:
        channel = self.mux_bits[0] | self.mux_bits[1] << 1 | self.mux_bits[2] << 2
        fn = self.mux.get(channel)
        return fn(now) if fn else 0.0
