"""The meter drivers (evse.meters) against the virtual board's Modbus slaves (host_tools.sim.modbus):
each model's register map, written down twice (the driver's from the meter documents and
EVerest/SmartEVSE/Tasmota, the slave's from the protocol tables), must agree value for value;
faults on the line end in a ModbusError; the world's guns feed the meters on the sim-ac2 bus."""
import asyncio
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import meters, modbus
from host_tools.sim import modbus as sim
from host_tools.sim.world import EV, World
from virtual_clock import Clock

BOARD = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-ac2.json").read_text())


class Line:
    """An RS-485 line in-process: what the master writes reaches the bus, the answer comes back
    10 ms later (all at once: the master's frame assembly is test_modbus's business)."""

    def __init__(self, bus, clock):
        self.bus, self.clock = bus, clock
        self.pending = None
        self.requests = []

    def write(self, buf):
        self.requests.append(bytes(buf))
        answer = self.bus.exchange(bytes(buf))
        self.pending = (self.clock.ms + 10, answer) if answer else None
        return len(buf)

    def read(self):
        if self.pending and self.clock.ms >= self.pending[0]:
            answer, self.pending = self.pending[1], None
            return answer
        return None


def poll(model, measure, address=3, fault=None, retries=1):
    """One driver poll of a simulated meter -> (Reading or ModbusError, Line)."""
    slave = sim.Slave(model, address, measure=lambda: measure, fault=lambda: fault)
    clock = Clock()
    line = Line(sim.Bus([slave]), clock)
    master = modbus.Master(line, 9600, timeout_ms=200, retries=retries, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)
    meter = meters.Meter(master, model, address)
    try:
        return asyncio.run(meter.read()), line
    except modbus.ModbusError as e:
        return e, line


def close_to_float32(got, want, absolute=1e-3):
    return math.isclose(got, want, rel_tol=2 ** -23, abs_tol=absolute)


volts = st.floats(0, 300, allow_nan=False)
amps = st.floats(0, 80, allow_nan=False)
energy_wh = st.floats(0, 1e7, allow_nan=False)  # 10 MWh: float32 kWh keeps whole Wh below 16.7 MWh


@given(st.lists(volts, min_size=3, max_size=3), st.lists(amps, min_size=3, max_size=3), energy_wh)
def test_sdm630_reads_volts_and_amps_per_phase_power_and_import_energy(v, a, wh):
    power = sum(x * y for x, y in zip(v, a))
    reading, line = poll("sdm630", {"volts": v, "amps": a, "power_w": power, "energy_wh": wh})
    assert not reading.dc and len(reading.volts) == len(reading.amps) == 3
    assert all(close_to_float32(g, w) for g, w in zip(reading.volts, v))
    assert all(close_to_float32(g, w) for g, w in zip(reading.amps, a))
    assert close_to_float32(reading.power_w, power)
    assert isinstance(reading.energy_wh, int) and abs(reading.energy_wh - wh) <= 0.5 + wh * 2 ** -23
    assert len(line.requests) == 2  # two blocks, not one request per value


@given(volts, amps, energy_wh)
def test_sdm120_reads_its_single_phase(v, a, wh):
    reading, line = poll("sdm120", {"volts": [v], "amps": [a], "power_w": v * a, "energy_wh": wh})
    assert reading.volts == [pytest.approx(v, rel=2 ** -23, abs=1e-3)]
    assert reading.amps == [pytest.approx(a, rel=2 ** -23, abs=1e-3)]
    assert close_to_float32(reading.power_w, v * a) and abs(reading.energy_wh - wh) <= 0.5 + wh * 2 ** -23
    assert len(line.requests) == 2


@given(st.floats(0, 1000, allow_nan=False), st.floats(-300, 300, allow_nan=False), st.integers(0, 2 ** 32 - 1))
def test_djsf1352_reads_dc_volts_amps_power_and_energy_with_its_decimal_points(v, a, wh):
    power = v * a
    reading, line = poll("djsf1352", {"volts": [v], "amps": [a], "power_w": power, "energy_wh": wh})
    assert reading.dc and len(reading.volts) == len(reading.amps) == 1
    # The meter's resolution at these decimal points: 0.1 V, 0.1 A, 10 W; whole Wh.
    assert abs(reading.volts[0] - v) <= 0.05 + 1e-9
    assert abs(reading.amps[0] - a) <= 0.05 + 1e-9
    assert abs(reading.power_w - max(-327680, min(327670, power))) <= 5 + 1e-6
    assert reading.energy_wh == wh
    assert len(line.requests) == 1 and line.requests[0][1] == 0x03  # holding registers, one block


def test_the_driver_maps_fit_the_protocol_limits():
    for name, spec in meters.MODELS.items():
        limit = 80 if name.startswith("sdm") else 125  # Eastron: at most 40 parameters per request
        assert all(1 <= count <= limit for _, count in spec["blocks"]), name
        meters.Meter(modbus.Master(None), name, 1)  # every field lies inside a block


@pytest.mark.parametrize("fault, error", [("silent", modbus.Timeout), ("garbage", modbus.FrameError),
                                          ("bad_crc", modbus.FrameError), ("busy", modbus.ExceptionResponse)])
@pytest.mark.parametrize("model", sorted(meters.MODELS))
def test_a_misbehaving_meter_ends_in_a_modbus_error_naming_it(model, fault, error):
    reading, line = poll(model, {"volts": [230.0] * 3, "amps": [1.0] * 3, "power_w": 690.0, "energy_wh": 5.0},
                         address=9, fault=fault)
    assert isinstance(reading, error) and "slave 9" in str(reading)
    assert len(line.requests) == 2  # one retry, then the error


def test_a_meter_the_bus_cannot_reach_at_that_function_is_refused_by_name():
    # A DJSF1352 read as if it were an Eastron: input registers are not implemented there.
    slave = sim.Slave("djsf1352", 4, measure=lambda: {"volts": [0], "amps": [0], "power_w": 0, "energy_wh": 0})
    clock = Clock()
    master = modbus.Master(Line(sim.Bus([slave]), clock), ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)
    with pytest.raises(modbus.ExceptionResponse, match="exception 01 \\(illegal function\\)"):
        asyncio.run(meters.Meter(master, "sdm630", 4).read())


def test_nan_in_a_float_register_is_a_meter_error_not_a_reading():
    reading, _ = poll("sdm630", {"volts": [math.nan, 230, 230], "amps": [0, 0, 0], "power_w": 0, "energy_wh": 0})
    assert isinstance(reading, meters.MeterError) and "register 0x0000 holds no number" in str(reading)


def test_a_decimal_point_out_of_range_is_a_meter_error(monkeypatch):
    monkeypatch.setattr(sim, "DJSF_DPT", 9)
    reading, _ = poll("djsf1352", {"volts": [0.0], "amps": [0.0], "power_w": 0.0, "energy_wh": 0})
    assert isinstance(reading, meters.MeterError) and "decimal point 9 at register 0x0001" in str(reading)


def test_writes_reach_the_holding_registers_and_bad_ones_are_refused():
    slave = sim.Slave("djsf1352", 1, measure=lambda: {"volts": [0], "amps": [0], "power_w": 0, "energy_wh": 0})
    clock = Clock()
    master = modbus.Master(Line(sim.Bus([slave]), clock), ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)
    asyncio.run(master.write_registers(1, 0x001E, [0x1703, 0x130E, 0x1800]))  # the meter's clock
    assert [slave.holding[a] for a in (0x1E, 0x1F, 0x20)] == [0x1703, 0x130E, 0x1800]
    with pytest.raises(modbus.ExceptionResponse, match="exception 02"):
        asyncio.run(master.write_registers(1, 0x0000, [1]))  # the voltage is measured, not set


@pytest.mark.parametrize("entry, words", [
    ({"model": "sdm630", "uart": 0, "address": 1}, None),
    ({"model": "djsf1352", "uart": 1, "address": 247, "baud": 38400}, None),
    ("sdm630", "must be an object"),
    ({"model": "sdm72", "uart": 0, "address": 1}, "meter model 'sdm72' unknown: use djsf1352, sdm120, sdm630"),
    ({"model": "sdm630", "uart": 0, "address": 0}, "address must be the Modbus slave address 1..247, not 0"),
    ({"model": "sdm630", "uart": True, "address": 1}, "uart must be the index"),
    ({"model": "sdm630", "uart": 0, "address": 1, "baud": 9601}, "meter baud 9601: use one of 1200"),
])
def test_board_meter_entries_are_checked_naming_the_key(entry, words):
    if words is None:
        assert meters.check(entry) is entry
    else:
        with pytest.raises(ValueError, match=words):
            meters.check(entry)


def test_every_meter_in_the_board_files_is_valid_for_the_firmware_and_the_virtual_board():
    for path in sorted((Path(__file__).resolve().parents[1] / "boards").glob("*.json")):
        board = json.loads(path.read_text())
        for gun in board["guns"]:
            if "meter" in gun:
                meters.check(gun["meter"])
                assert gun["meter"]["model"] in sim.MODELS


# --- the virtual board: the world's guns behind the sim-ac2 bus ----------------------------------

def read_gun_meters(world, board=BOARD):
    """Both guns' meters read through the board's bus, the way the firmware will."""
    (index, bus), = sim.buses_for(world, board).items()
    clock = Clock()
    master = modbus.Master(Line(bus, clock), ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms, retries=0)

    async def main():
        out = []
        for gun in board["guns"]:
            try:
                out.append(await meters.Meter(master, gun["meter"]["model"], gun["meter"]["address"]).read())
            except modbus.ModbusError as e:
                out.append(e)
        return out

    return index, asyncio.run(main())


def test_each_guns_meter_reports_what_the_world_draws_through_it():
    world = World(BOARD)
    g1, g2 = world.guns
    g1.ev, g1.amps, g1.energy_wh = EV(phases=3), 16.0, 1234.4
    g2.ev, g2.amps, g2.energy_wh = EV(phases=1), 10.0, 99.6
    uart, (m1, m2) = read_gun_meters(world)
    assert uart == 0
    assert m1.volts == [230.0] * 3 and m1.amps == [16.0] * 3 and m1.power_w == 16 * 230 * 3 and m1.energy_wh == 1234
    assert m2.amps == [10.0, 0.0, 0.0] and m2.power_w == 2300.0 and m2.energy_wh == 100


def test_a_fault_set_on_one_guns_meter_leaves_the_other_alone():
    world = World(BOARD)
    world.set_meter_fault(1, "silent")
    _, (m1, m2) = read_gun_meters(world)
    assert isinstance(m1, modbus.Timeout) and isinstance(m2, meters.Reading)
    world.set_meter_fault(1, None)
    _, (m1, m2) = read_gun_meters(world)
    assert isinstance(m1, meters.Reading)
    assert [e["value"] for e in world.events if e["what"] == "meter_fault"] == ["silent", None]


def test_meters_fall_silent_when_the_site_loses_power():
    world = World(BOARD)
    world.powered = False
    _, readings = read_gun_meters(world)
    assert all(isinstance(r, modbus.Timeout) for r in readings)


def test_an_unknown_meter_fault_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="one of silent, garbage, bad_crc, busy, not 'smoke'"):
        World(BOARD).set_meter_fault(2, "smoke")


@pytest.mark.parametrize("mutate, words", [
    (lambda b: b["guns"][1]["meter"].update(address=1), r"guns\[1\].meter: address 1 on UART 0 is taken by guns\[0\]"),
    (lambda b: b["guns"][0]["meter"].update(model="abb"), r"guns\[0\].meter: meter model 'abb' unknown"),
    (lambda b: b["guns"][0]["meter"].update(uart=-1), r"guns\[0\].meter.uart must be a UART index"),
    (lambda b: b["guns"][0].update(meter=[1]), r"guns\[0\].meter must be an object"),
])
def test_a_bad_board_meter_stops_the_virtual_board_naming_the_entry(mutate, words):
    board = json.loads(json.dumps(BOARD))
    mutate(board)
    with pytest.raises(ValueError, match=words):
        sim.buses_for(World(board), board)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_the_simulated_bus_answers_any_bytes_with_nothing_or_a_well_formed_frame(frame):
    bus = sim.buses_for(World(BOARD), BOARD)[0]
    answer = bus.exchange(frame)
    assert answer is None or (sim.crc16(answer[:-2]) == answer[-2] | answer[-1] << 8 and answer[0] in (1, 2))
