"""The emulated MCU (host_tools/sim/silicon) under the real MicroPython, wired to the board's
front end (host_tools/sim/frontend.py): it refuses what the RP2040's and the ESP32's MicroPython
refuse, scales and quantises as they do, and an ADC read on the pilot sees the plateau the PWM's
phase puts there at that moment."""
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from host_tools.sim.frontend import FrontEnd
from host_tools.sim.world import EV, World

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = REPO / ".venv" / "bin" / "micropython"
SILICON = REPO / "host_tools" / "sim" / "silicon"
MCU = {"rp2040-pico": "rp2040", "esp32-devkitc": "esp32"}

pytestmark = pytest.mark.skipif(not MICROPYTHON.exists(), reason="no MicroPython unix port in .venv (run make setup)")

PRELUDE = """
import json, time, machine
out = {}
def err(f):
    try:
        f()
        return None
    except Exception as e:
        return '%s: %s' % (type(e).__name__, e)
"""


class Bench:
    """A board's front end served on loopback, as the virtual board's supervisor serves it."""

    def __init__(self, board_name):
        self.board = json.loads((REPO / "boards" / f"{board_name}.json").read_text())
        self.mcu = MCU[board_name]
        self.world = World(self.board)
        self.front = FrontEnd(self.world, self.board)
        self.server = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    reply = self.front.request(line.decode())
                    if reply is not None:
                        conn.sendall(reply.encode() + b"\n")

    def run(self, script):
        env = {"EVSE_SIM_WORLD": "127.0.0.1:%d" % self.server.getsockname()[1], "EVSE_SIM_MCU": self.mcu,
               "MICROPYPATH": str(SILICON)}
        # The last round trip makes sure the front end has taken every output line before the end.
        end = "\nimport link\nif link._sock:\n    link.ask(b'n\\n')\nprint(json.dumps(out))"
        done = subprocess.run([str(MICROPYTHON), "-c", PRELUDE + script + end],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self):
        self.server.close()


@pytest.fixture
def bench(request):
    b = Bench(request.param)
    yield b
    b.close()


@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
def test_rp2040_refuses_what_its_micropython_refuses(bench):
    out = bench.run("""
out['no_gpio'] = err(lambda: machine.Pin(30))
out['no_adc'] = err(lambda: machine.ADC(machine.Pin(22)))
out['atten'] = err(lambda: machine.ADC(machine.Pin(26), atten=3))
out['freq_small'] = err(lambda: machine.PWM(machine.Pin(2), freq=5))
out['duty_range'] = err(lambda: machine.PWM(machine.Pin(2), freq=1000).duty_u16(70000))
out['wdt_long'] = err(lambda: machine.WDT(timeout=8389))
out['uart_id'] = err(lambda: machine.UART(2))
out['uart_tx'] = err(lambda: machine.UART(0, tx=machine.Pin(2), rx=machine.Pin(1)))
out['timer_id'] = err(lambda: machine.Timer(0))
out['channel'] = machine.ADC(2).pin
""")
    assert out["no_gpio"] == "ValueError: invalid pin"
    assert out["no_adc"] == "ValueError: Pin doesn't have ADC capabilities"
    assert out["atten"].startswith("TypeError")
    assert out["freq_small"] == "ValueError: freq too small"
    assert out["duty_range"].startswith("ValueError")
    assert out["wdt_long"] == "ValueError: timeout exceeds 8388"
    assert out["uart_id"] == "ValueError: UART(2) doesn't exist"
    assert out["uart_tx"] == "ValueError: bad TX pin"
    assert out["timer_id"] == "ValueError: Timer doesn't exist"
    assert out["channel"] == 28  # ADC(2) is channel 2: GP28


@pytest.mark.parametrize("bench", ["esp32-devkitc"], indirect=True)
def test_esp32_refuses_what_its_micropython_refuses(bench):
    out = bench.run("""
out['no_gpio'] = err(lambda: machine.Pin(24))
out['input_only'] = err(lambda: machine.Pin(34, machine.Pin.OUT))
out['no_adc1'] = err(lambda: machine.ADC(machine.Pin(21)))
out['freq'] = err(lambda: machine.PWM(machine.Pin(25), freq=50000000))
out['uart_id'] = err(lambda: machine.UART(3))
out['wdt_zero'] = err(lambda: machine.WDT(timeout=0))
out['hard_timer'] = err(lambda: machine.Timer(0, period=10, callback=print, hard=True))
out['adc_by_gpio'] = machine.ADC(36).pin
out['irq_rising'] = machine.Pin.IRQ_RISING
""")
    assert out["no_gpio"] == "ValueError: invalid pin"
    assert out["input_only"] == "ValueError: pin can only be input"
    assert out["no_adc1"] == "ValueError: invalid pin"
    assert out["freq"] == "ValueError: frequency must be from 1Hz to 40MHz"
    assert out["uart_id"] == "ValueError: UART(3) does not exist"
    assert out["wdt_zero"] == "ValueError: WDT timeout too short"
    assert out["hard_timer"] == "ValueError: hard Timers are not implemented"
    assert out["adc_by_gpio"] == 36 and out["irq_rising"] == 1


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_the_pwm_duty_the_hardware_makes_reaches_the_world(bench):
    pwm = bench.board["guns"][0]["pins"]["pilot_pwm"]
    for duty_u16, duty_pm in ((34930, 533), (65535, 1000), (0, 0), (3276, 50)):
        bench.run(f"p = machine.PWM(machine.Pin({pwm})); p.freq(1000); p.duty_u16({duty_u16})")
        assert bench.world.guns[0].duty_pm == duty_pm


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_rp2040_slices_share_their_frequency_and_the_esp32_keeps_each_pins_own(bench):
    p1, p2 = (g["pins"]["pilot_pwm"] for g in bench.board["guns"])
    out = bench.run(f"""
a = machine.PWM(machine.Pin({p1}), freq=1000, duty_u16=1000)
b = machine.PWM(machine.Pin({p2}), freq=1000, duty_u16=1000)
a.freq(2000)
out['other'] = b.freq()
""")
    # GP2 and GP3 are channels A and B of slice 1; the ESP32's LEDC gives each frequency its timer.
    assert out["other"] == (2000 if bench.mcu == "rp2040" else 1000)


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_a_pilot_adc_read_sees_the_plateau_of_the_pwm_phase_at_that_moment(bench):
    g = bench.world.guns[0]
    g.plugged, g.ev, g.ev_letter = True, EV(), "B"
    pins = bench.board["guns"][0]["pins"]
    cal = bench.board["adc"]
    out = bench.run(f"""
p = machine.PWM(machine.Pin({pins['pilot_pwm']}), freq=1000, duty_u16=32768)
adc = machine.ADC(machine.Pin({pins['pilot_adc']}))
reads = []
t0 = time.ticks_us()
while time.ticks_diff(time.ticks_us(), t0) < 20000:
    reads.append(adc.read_u16())
out['reads'] = reads
p.duty_u16(65535)
time.sleep_ms(2)   # the RP2040 takes a new duty at the counter's wrap
out['steady'] = [adc.read_u16() for k in range(20)]
""")
    to_mv = lambda r: r * cal["vref_mv"] / 65535  # noqa: E731
    high = [r for r in out["reads"] if to_mv(r) > cal["pilot_offset_mv"]]
    low = [r for r in out["reads"] if to_mv(r) <= cal["pilot_offset_mv"]]
    assert 0.3 < len(high) / len(out["reads"]) < 0.7  # 50 % duty: half the reads on each plateau
    pilot_high = (to_mv(sum(high) / len(high)) - cal["pilot_offset_mv"]) / cal["pilot_gain"]
    pilot_low = (to_mv(sum(low) / len(low)) - cal["pilot_offset_mv"]) / cal["pilot_gain"]
    assert abs(pilot_high - 8980) < 400 and abs(pilot_low + 12000) < 400  # B: 2.74 kOhm and the diode
    assert all(to_mv(r) > cal["pilot_offset_mv"] for r in out["steady"])  # 100 %: no low plateau
    assert max(out["steady"]) - min(out["steady"]) <= 6 * 16  # +-3 LSB of 12 bits, stretched to 16


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_the_rcm_latches_its_self_test_until_the_test_inputs_falling_edge(bench):
    pins = bench.board["guns"][0]["pins"]
    out = bench.run(f"""
test = machine.Pin({pins['rcd_test']}, machine.Pin.OUT, value=0)
fault = machine.Pin({pins['rcd_fault']}, machine.Pin.IN, machine.Pin.PULL_UP)
out['idle'] = fault.value()
test.value(1)
out['at_once'] = fault.value()
time.sleep_ms(25)
out['after_25ms'] = fault.value()
time.sleep_ms(50)
out['still'] = fault.value()
test.value(0)
out['released'] = fault.value()
""")
    assert out == {"idle": 0, "at_once": 0, "after_25ms": 1, "still": 1, "released": 0}


@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
def test_the_mirror_contact_follows_the_coil_after_pull_in_and_a_weld_holds_it(bench):
    bench.world.interlock = False   # the contactor alone (the interlock has its own test)
    pins = bench.board["guns"][0]["pins"]
    script = f"""
coil = machine.Pin({pins['contactor']}, machine.Pin.OUT, value=0)
fb = machine.Pin({pins['feedback']}, machine.Pin.IN, machine.Pin.PULL_UP)
out['open'] = fb.value()
coil.value(1)
out['pulling_in'] = fb.value()
time.sleep_ms(40)
out['closed'] = fb.value()
coil.value(0)
time.sleep_ms(40)
out['released'] = fb.value()
"""
    assert bench.run(script) == {"open": 1, "pulling_in": 1, "closed": 0, "released": 1}
    bench.world.guns[0].welded = True
    assert bench.run(script)["released"] == 0  # welded: the mirror contact stays closed


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_a_pin_irq_runs_its_handler_on_the_edge_it_asked_for(bench):
    bench.world.interlock = False
    pins = bench.board["guns"][0]["pins"]
    out = bench.run(f"""
seen = []
coil = machine.Pin({pins['contactor']}, machine.Pin.OUT, value=0)
fb = machine.Pin({pins['feedback']}, machine.Pin.IN, machine.Pin.PULL_UP)
fb.irq(lambda p: seen.append(p.value()), machine.Pin.IRQ_FALLING)
coil.value(1)
t0 = time.ticks_ms()
while not seen and time.ticks_diff(time.ticks_ms(), t0) < 200:
    fb.value()
    time.sleep_ms(1)
out['falling'] = len(seen)
coil.value(0)
time.sleep_ms(60)
fb.value()
time.sleep_ms(1)
out['after_rising'] = len(seen)
""")
    assert out == {"falling": 1, "after_rising": 1}  # the mirror contact closing pulls it low once


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_the_interlock_lets_the_coil_close_only_in_c_with_pwm_and_a_quiet_rcm(bench):
    g = bench.world.guns[0]
    g.plugged, g.ev, g.ev_letter = True, EV(), "C"
    pins = bench.board["guns"][0]["pins"]
    script = f"""
coil = machine.Pin({pins['contactor']}, machine.Pin.OUT, value=0)
fb = machine.Pin({pins['feedback']}, machine.Pin.IN, machine.Pin.PULL_UP)
pwm = machine.PWM(machine.Pin({pins['pilot_pwm']}), freq=1000, duty_u16=0)
coil.value(1)
time.sleep_ms(40)
out['pilot_at_f'] = fb.value()
pwm.duty_u16(34930)
time.sleep_ms(40)
out['c_with_pwm'] = fb.value()
"""
    assert bench.run(script) == {"pilot_at_f": 1, "c_with_pwm": 0}
    g.rcd_tripped = True
    assert bench.run(script)["c_with_pwm"] == 1   # the RCM's fault output disables the driver


@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
def test_rp2040_pwm_registers_read_as_the_slice_counts_and_other_registers_are_refused(bench):
    pins = bench.board["guns"][0]["pins"], bench.board["guns"][1]["pins"]
    assert (pins[0]["pilot_pwm"] >> 1) == (pins[1]["pilot_pwm"] >> 1) == 1   # GP2, GP3: slice 1, A and B
    out = bench.run(f"""
a = machine.PWM(machine.Pin({pins[0]['pilot_pwm']}), freq=1000, duty_u16=65535 * 267 // 1000)
b = machine.PWM(machine.Pin({pins[1]['pilot_pwm']}), freq=1000, duty_u16=65535 * 100 // 1000)
base = 0x40050000 + 1 * 0x14
out['chip'] = machine.mem32[0x40000000]
out['csr'], out['div'], out['cc'], out['top'] = [machine.mem32[base + r] for r in (0, 4, 12, 16)]
out['stopped'] = [machine.mem32[0x40050000 + 5 * 0x14 + r] for r in (0, 8, 16)]
# the counter against the output: a read bracketed by two counts below CC is on the high plateau
adc = machine.ADC(machine.Pin({pins[0]['pilot_adc']}))
pairs = []
t0 = time.ticks_us()
while time.ticks_diff(time.ticks_us(), t0) < 20000:
    t1 = time.ticks_us()
    c0 = machine.mem32[base + 8]
    v = adc.read_u16()
    c1 = machine.mem32[base + 8]
    if time.ticks_diff(time.ticks_us(), t1) < 400:   # no wrap hidden by a stall of the host
        pairs.append((c0, v, c1))
out['pairs'] = pairs
out['write'] = err(lambda: machine.mem32.__setitem__(base + 8, 0))
out['other'] = err(lambda: machine.mem32[0x40054000])
""")
    top = out["top"]
    assert out["chip"] >> 12 & 0xFFFF == 2 and out["csr"] == 1 and out["div"] > 16
    assert abs(out["div"] * (top + 1) - 16 * 125000) < out["div"]   # 125 MHz / (DIV/16) / (TOP+1) = 1 kHz
    assert abs((out["cc"] & 0xFFFF) - (top + 1) * 267 // 1000) <= 1
    assert abs((out["cc"] >> 16) - (top + 1) * 100 // 1000) <= 1
    assert out["stopped"] == [0, 0, 0xFFFF]
    cc = out["cc"] & 0xFFFF
    counts = [c for pair in out["pairs"] for c in (pair[0], pair[2])]
    assert 0 <= min(counts) < top // 10 and top - top // 10 < max(counts) <= top   # it runs round
    mid = bench.board["adc"]["pilot_offset_mv"] * 65535 // bench.board["adc"]["vref_mv"]
    high = [v for c0, v, c1 in out["pairs"] if c0 <= c1 < cc]
    low = [v for c0, v, c1 in out["pairs"] if cc <= c0 <= c1]
    assert high and low and min(high) > mid > max(low)
    assert "not emulated" in out["write"] and "0x40054000" in out["other"]


def rp2_hal(bench):
    """MicroPython lines that make `hal`, the board's RP2040 HAL, with its ADC reads counted in
    reads[0]."""
    return f"""
import sys
sys.path.append({str(REPO / 'firmware')!r})
from evse.hal.rp2 import Hal
hal = Hal(json.loads({json.dumps(json.dumps(bench.board))}))
reads = [0]
adc_read = hal._read
def counted(adc):
    reads[0] += 1
    return adc_read(adc)
hal._read = counted
"""


@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
@pytest.mark.parametrize("duty_pm", [100, 267, 500, 900])
def test_the_rp2040_hal_reads_each_plateau_once_in_step_with_the_pwm(bench, duty_pm):
    g = bench.world.guns[0]
    g.plugged, g.ev, g.ev_letter = True, EV(), "B"
    out = bench.run(f"""
{rp2_hal(bench)}
hal.set_pilot(1, {duty_pm})
out['synced'] = hal._synced
samples = []
out['reads'] = []
for run in range(5):
    reads[0] = 0
    for k in range(20):
        s = hal.sample_pilot(1)
        samples.append((s[0], s[1]))
        time.sleep_ms(3)
    out['reads'].append(reads[0])
out['samples'] = samples
""")
    assert out["synced"]
    for high, low in out["samples"]:
        assert abs(high - 8980) < 400 and abs(low + 12000) < 400, out["samples"]   # B, and the diode
    # About 3 reads a sample (a burst is 64): a few samples may fall back to the burst when the
    # host's scheduler makes the aimed reads late; on a loaded host (make test runs the MCU boards'
    # suites beside) many may, so the best of five runs of 20 samples counts.
    assert min(out["reads"]) <= 20 * 64 // 4, out["reads"]


@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
def test_a_new_rp2040_duty_takes_effect_at_the_counters_wrap_and_the_hal_samples_what_is_there(bench):
    g = bench.world.guns[0]
    g.plugged, g.ev, g.ev_letter = True, EV(), "B"
    pins = bench.board["guns"][0]["pins"]
    out = bench.run(f"""
{rp2_hal(bench)}
ctr = 0x40050000 + 1 * 0x14 + 8
adc = hal._pilot_adc[0]
mid = {bench.board['adc']['pilot_offset_mv']} * 65535 // {bench.board['adc']['vref_mv']}
# the output in the period of the change: still the old duty (100 %: high) past the new CC
kept = []
for k in range(40):
    hal.set_pilot(1, 1000)
    time.sleep_ms(3)
    while machine.mem32[ctr] > 3000:   # a fresh period: the change lands early in it
        pass
    t0 = time.ticks_us()
    hal.set_pilot(1, 100)
    cc = hal._cc[0]
    while machine.mem32[ctr] < cc + 3000:
        pass
    c0 = machine.mem32[ctr]
    v = adc.read_u16()
    c1 = machine.mem32[ctr]
    # counted only if the change and the read were in the period that began just before t0
    if cc + 3000 <= c0 <= c1 and time.ticks_diff(time.ticks_us(), t0) < 900:
        kept.append(v > mid)
out['kept'] = kept
# the HAL's sample right after a change: the low plateau is the diode's -12 V, not the old high
samples = []
for k in range(10):
    hal.set_pilot(1, 1000)
    time.sleep_ms(3)
    hal.set_pilot(1, 267)
    s = hal.sample_pilot(1)
    samples.append((s[0], s[1]))
out['samples'] = samples
# 5 %: a plateau too short to aim at, the burst
reads[0] = 0
hal.set_pilot(1, 50)
time.sleep_ms(3)
s = hal.sample_pilot(1)
out['five'] = (s[0], s[1], reads[0])
""")
    assert len(out["kept"]) >= 5 and all(out["kept"]), out["kept"]   # a busy host leaves some trials out
    assert out["five"][2] == 64, out["five"]   # (whether 64 reads catch a 50 us plateau on a busy host varies)
    for high, low in out["samples"]:
        assert abs(high - 8980) < 400 and abs(low + 12000) < 400, out["samples"]


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_a_steady_pilot_read_right_after_a_duty_change_sees_the_new_level(bench):
    # The PWM takes a new duty when its period ends (both chips double-buffer it): calibrate
    # sets -12 V and reads at once; it must not read the +12 V still running.
    module = {"rp2040-pico": "rp2", "esp32-devkitc": "esp32"}[bench.board["name"]]
    out = bench.run(f"""
import sys
sys.path.append({str(REPO / 'firmware')!r})
from evse.hal.{module} import Hal
hal = Hal(json.loads({json.dumps(json.dumps(bench.board))}))
steady = []
for k in range(10):
    hal.set_pilot(1, 1000)
    time.sleep_ms(3)
    hal.set_pilot(1, 0)
    steady.append(hal.pilot_adc_mv(1))
out['steady'] = steady
""")
    cal = bench.board["adc"]
    minus_12v_mv = cal["pilot_offset_mv"] - 12000 * cal["pilot_gain"]
    assert all(abs(mv - minus_12v_mv) < 100 for mv in out["steady"]), out["steady"]
