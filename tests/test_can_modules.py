"""The firmware's power-module drivers (evse.can.modules with the Infypower and Winline codecs)
against the virtual board's modules (host_tools.sim.power_modules), which answer as the makers'
protocol documents say: modules found and rated, setpoints applied, outputs read, a fault or a
silent module taken out of use and back, the polls keeping the modules on, and any frame on the
bus parsed without an exception."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evse.can import infy, modules, winline
from host_tools.sim import power_modules as world

CODECS = {"infy": infy, "winline": winline}


class Bus:
    """The bus interface of evse.can.mcp2515 straight onto the world's modules."""

    def __init__(self, fleet, clock):
        self.fleet = fleet
        self.clock = clock
        self.inbox = []
        self.sent = 0

    def send(self, can_id, data):
        self.sent += 1
        self.inbox += self.fleet.exchange(can_id, bytes(data), self.clock[0] / 1000)
        return True

    def recv(self):
        return self.inbox.pop(0) if self.inbox else None

    def poll(self, now_ms):
        pass


def cabinet(protocol, count=3, addresses=None):
    addresses = addresses or list(range(2, 2 + count))
    models = [world.MODELS[protocol](k + 1, a, 40000.0) for k, a in enumerate(addresses)]
    clock = [0]
    fleet = world.Bus(models)
    bus = Bus(fleet, clock)
    said = []
    changes = []
    fleet_driver = modules.Modules(bus, CODECS[protocol], addresses, log=said.append,
                                   changed=lambda k, m: changes.append((k, m.usable())))
    return fleet_driver, models, fleet, clock, said, changes


def run(driver, fleet, clock, ms, step_ms=20):
    end = clock[0] + ms
    while clock[0] < end:
        clock[0] += step_ms
        fleet.tick(clock[0] / 1000)
        driver.step(clock[0])


@pytest.mark.parametrize("protocol", ["infy", "winline"])
def test_modules_are_found_rated_and_take_their_setpoints(protocol):
    driver, models, fleet, clock, said, changes = cabinet(protocol)
    run(driver, fleet, clock, 2000)
    assert all(driver.usable(k) for k in range(3))
    assert [m["rated_w"] for m in driver.status()] == [40000.0] * 3
    assert sorted(changes) == [(0, True), (1, True), (2, True)]
    for k in range(3):
        driver.set(k, 410.0, 30.0 + k)
    run(driver, fleet, clock, 500)
    assert [(m.on, m.set_v, round(m.set_a, 2)) for m in models] == [(True, 410.0, 30.0), (True, 410.0, 31.0),
                                                                    (True, 410.0, 32.0)]
    driver.set(1, 410.0, 0.0)
    run(driver, fleet, clock, 500)
    assert [m.on for m in models] == [True, False, True]


@pytest.mark.parametrize("protocol", ["infy", "winline"])
def test_a_module_reports_what_it_puts_out(protocol):
    driver, models, fleet, clock, _, _ = cabinet(protocol)
    models[2].out_v, models[2].out_a = 402.5, 61.25
    run(driver, fleet, clock, 1500)
    m = driver.status()[2]
    assert (m["volts"], m["amps"]) == (402.5, 61.2) or (m["volts"], m["amps"]) == (402.5, 61.3)
    assert driver.power_w(2) == pytest.approx(402.5 * 61.25)


@pytest.mark.parametrize("protocol", ["infy", "winline"])
@pytest.mark.parametrize("fault", world.FAULT_NAMES)
def test_a_module_fault_takes_it_out_until_it_clears_and_names_it_for_ocpp(protocol, fault):
    driver, models, fleet, clock, said, changes = cabinet(protocol)
    run(driver, fleet, clock, 1000)
    driver.set(1, 400.0, 50.0)
    run(driver, fleet, clock, 1000)
    changes.clear()
    models[1].fault = fault
    models[1].on = False
    run(driver, fleet, clock, 1000)
    assert not driver.usable(1) and changes == [(1, False)]
    number, vendor, what = driver.faulty()
    assert number == 2 and vendor.startswith(protocol + ":") and what
    assert any("module 2" in line and "out of use" in line for line in said)
    models[1].fault = None
    run(driver, fleet, clock, 1500)
    assert driver.usable(1) and changes == [(1, False), (1, True)] and driver.faulty() is None
    assert models[1].on and models[1].set_a == pytest.approx(50.0, abs=0.01)   # its setpoint again


@pytest.mark.parametrize("protocol", ["infy", "winline"])
def test_a_silent_module_is_out_after_the_silence_and_back_when_it_answers(protocol):
    driver, models, fleet, clock, said, changes = cabinet(protocol)
    run(driver, fleet, clock, 1000)
    models[0].silent = True
    run(driver, fleet, clock, modules.SILENT_MS - 600)
    assert driver.usable(0)
    run(driver, fleet, clock, 1200)
    assert not driver.usable(0) and driver.faulty()[:2] == (1, protocol + ":silent")
    models[0].silent = False
    run(driver, fleet, clock, 1000)
    assert driver.usable(0) and any("answers again" in line for line in said)


def test_a_module_that_never_answers_is_reported():
    driver, models, fleet, clock, said, _ = cabinet("infy", addresses=[2, 9])
    fleet.modules.pop()        # address 9 is on the board file, not on the bus
    run(driver, fleet, clock, modules.SILENT_MS + 100)
    assert driver.usable(0) and not driver.usable(1)
    assert any("module 2 (address 9) does not answer" in line for line in said)


@pytest.mark.parametrize("protocol", ["infy", "winline"])
def test_the_polls_keep_the_modules_on_and_without_them_they_turn_off_after_10_s(protocol):
    driver, models, fleet, clock, _, _ = cabinet(protocol)
    run(driver, fleet, clock, 1000)
    for k in range(3):
        driver.set(k, 400.0, 20.0)
    run(driver, fleet, clock, 30000)
    assert all(m.on for m in models) and not any(m.timed_out for m in models)
    for _ in range(int(world.TIMEOUT_S * 1000 / 20) + 1):   # the controller stops talking
        clock[0] += 20
        fleet.tick(clock[0] / 1000)
    assert not any(m.on for m in models)


def test_a_step_sends_no_more_frames_than_the_controller_can_take_answers_for():
    driver, models, fleet, clock, _, _ = cabinet("winline", count=12)
    most = 0
    for _ in range(200):
        before = driver.bus.sent
        clock[0] += 5
        driver.step(clock[0])
        most = max(most, driver.bus.sent - before)
    assert most == modules.TX_PER_STEP


@pytest.mark.parametrize("protocol", ["infy", "winline"])
def test_through_an_mcp2515_no_answer_is_lost_and_a_fault_is_seen(protocol):
    """The real driver and the chip's two receive buffers: the answers of a step's frames arrive
    before the next step reads them, as on a bus at 125 kbit/s with a 10 ms step."""
    from evse.can import mcp2515
    from host_tools.sim import mcp2515 as chip_model
    from test_can_mcp2515 import Pin, Spi
    addresses = [2, 3, 4, 5]
    models = [world.MODELS[protocol](k + 1, a, 40000.0) for k, a in enumerate(addresses)]
    fleet = world.Bus(models)
    clock = [0]
    answers = []
    chip = chip_model.Mcp2515(on_send=lambda i, d: answers.extend(fleet.exchange(i, d, clock[0] / 1000)) or True)
    spi = Spi(chip)
    bus = mcp2515.Mcp2515(spi, Pin(spi), lambda ms: None, accept=CODECS[protocol].ACCEPT)
    driver = modules.Modules(bus, CODECS[protocol], addresses, log=lambda line: None)

    def run(ms):
        end = clock[0] + ms
        while clock[0] < end:
            clock[0] += 10
            fleet.tick(clock[0] / 1000)
            while answers:
                chip.deliver(*answers.pop(0))
            driver.step(clock[0])

    run(6000)
    assert bus.rx_overruns == 0 and all(driver.usable(k) for k in range(4))
    assert [m.rated_w for m in driver.modules] == [40000.0] * 4
    for k in range(4):
        driver.set(k, 400.0, 50.0 + k)    # limits that move every step do not starve the polls
    for step in range(300):
        for k in range(4):
            driver.set(k, 400.0, 40.0 + (step % 20))
        run(10)
    assert all(driver.usable(k) for k in range(4)) and bus.rx_overruns == 0
    models[1].fault = "overtemp"
    models[1].on = False
    run(2000)
    assert not driver.usable(1) and driver.faulty()[:2] == (2, CODECS[protocol].vendor_code(models[1].flags()))


@pytest.mark.parametrize("protocol", ["infy", "winline"])
def test_all_off_turns_every_module_off_with_one_broadcast(protocol):
    driver, models, fleet, clock, _, _ = cabinet(protocol)
    run(driver, fleet, clock, 1000)
    for k in range(3):
        driver.set(k, 400.0, 50.0)
    run(driver, fleet, clock, 1000)
    assert all(m.on for m in models)
    sent = driver.bus.sent
    driver.all_off()
    assert driver.bus.sent == sent + 1 and not any(m.on for m in models)


@given(st.integers(0, (1 << 29) - 1), st.binary(max_size=8))
def test_any_frame_parses_to_none_or_a_module_answer(can_id, data):
    for codec in (infy, winline):
        said = codec.parse(can_id, data)
        assert said is None or (isinstance(said, tuple) and len(said) == 3)


@given(st.integers(0, 0x3E), st.floats(150, 1000), st.floats(1, 200))
def test_an_infy_setpoint_reaches_the_module_as_sent(address, volts, amps):
    model = world.InfyModule(1, address, 30000.0)
    for can_id, data in infy.sets(address, True, volts, amps):
        model.answer(can_id, data, 0.0)
    assert model.on and model.set_v == pytest.approx(volts, abs=0.001) and model.set_a == pytest.approx(amps, abs=0.001)


@given(st.integers(0, 0x3F), st.floats(150, 1000), st.floats(1, 200))
def test_a_winline_setpoint_reaches_the_module_as_sent(address, volts, amps):
    model = world.WinlineModule(1, address, 30000.0)
    for can_id, data in winline.sets(address, True, volts, amps):
        model.answer(can_id, data, 0.0)
    assert model.on and model.set_v == pytest.approx(volts, rel=1e-6) and model.set_a == pytest.approx(amps, abs=1 / 1024)



def test_a_small_setpoint_change_goes_out_with_the_next_refresh():
    driver, models, fleet, clock, _, _ = cabinet("infy")
    run(driver, fleet, clock, 1000)
    driver.set(0, 400.0, 93.75)
    run(driver, fleet, clock, 500)
    driver.set(0, 400.0, 93.5)                # under RESEND_A: not at once ...
    run(driver, fleet, clock, 200)
    assert models[0].set_a == pytest.approx(93.75)
    run(driver, fleet, clock, modules.REFRESH_MS)
    assert models[0].set_a == pytest.approx(93.5)   # ... but with the refresh
