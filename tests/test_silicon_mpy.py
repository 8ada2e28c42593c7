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

from host_tools.sim.frontend import MCU, FrontEnd
from host_tools.sim.world import EV, World

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = REPO / ".venv" / "bin" / "micropython"
SILICON = REPO / "host_tools" / "sim" / "silicon"

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

    def __init__(self, board_name, board=None):
        self.board = board or json.loads((REPO / "boards" / f"{board_name}.json").read_text())
        self.mcu = MCU[self.board["hal"]]
        self.world = World(self.board)
        self.front = FrontEnd(self.world, self.board)
        self.env = {}   # more of the firmware's environment: a UART's loopback port (EVSE_SIM_UART<n>)
        self.drop = 0   # links to close as they are taken
        self.server = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.drop:   # closed as it is taken, as the supervisor closes a stale process's link
                self.drop -= 1
                conn.recv(64)
                conn.close()
                continue
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    reply = self.front.request(line.decode())
                    if reply is not None:
                        conn.sendall(reply.encode() + b"\n")

    def run(self, script):
        env = {"EVSE_SIM_WORLD": "127.0.0.1:%d" % self.server.getsockname()[1], "EVSE_SIM_MCU": self.mcu,
               "MICROPYPATH": str(SILICON), **self.env}
        # The last round trip makes sure the front end has taken every output line before the end.
        end = "\nimport link\nif link._sock:\n    link.ask(b'n\\n')\nprint(json.dumps(out))"
        done = subprocess.run([str(MICROPYTHON), "-c", PRELUDE + script + end],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self):
        # close() alone does not wake a thread blocked in accept(): it would go on accepting on
        # the descriptor's number, which the next test's listening socket may be given.
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        self.thread.join(5)


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
times = []
t0 = time.ticks_us()
sampled = 0   # us of reads with no gap of the host's between them: 20 ms, 4,000 reads or 500 ms at most
while sampled < 20000 and len(reads) < 4000 and time.ticks_diff(time.ticks_us(), t0) < 500000:
    times.append(time.ticks_diff(time.ticks_us(), t0))
    reads.append(adc.read_u16())
    if len(times) > 1 and times[-1] - times[-2] < 200:
        sampled += times[-1] - times[-2]
out['reads'] = reads
out['times'] = times
p.duty_u16(65535)
time.sleep_ms(2)   # the RP2040 takes a new duty at the counter's wrap
out['steady'] = [adc.read_u16() for k in range(20)]
""")
    to_mv = lambda r: r * cal["vref_mv"] / 65535  # noqa: E731
    high = [r for r in out["reads"] if to_mv(r) > cal["pilot_offset_mv"]]
    low = [r for r in out["reads"] if to_mv(r) <= cal["pilot_offset_mv"]]
    # 50 % duty: half the time on each plateau. Each read stands for the time until the next;
    # a longer gap is this host running something else (a loaded machine), not the pilot's.
    times = out["times"] + [out["times"][-1]]
    spans = [(times[k + 1] - times[k], to_mv(r) > cal["pilot_offset_mv"]) for k, r in enumerate(out["reads"])]
    spans = [(dt, up) for dt, up in spans if dt < 200]
    assert sum(dt for dt, _ in spans) > 5000, "the host gave the reads under 5 ms of the 500"
    assert 0.3 < sum(dt for dt, up in spans if up) / sum(dt for dt, _ in spans) < 0.7
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
# At most 2,000 pairs: on a quiet machine 20 ms made 4,000 and more, and the list's growth wanted
# a 64 KB block that the emulated reads' garbage had cut up (MemoryError in the 2 MB heap).
while time.ticks_diff(time.ticks_us(), t0) < 20000 and len(pairs) < 2000:
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


def port_hal(bench):
    """MicroPython lines that make `hal`, the board's own port HAL (evse/hal/rp2.py, esp32.py)."""
    return f"""
import sys
sys.path.append({str(REPO / 'firmware')!r})
from evse.hal.{bench.board['hal']} import Hal
hal = Hal(json.loads({json.dumps(json.dumps(bench.board))}))
"""


def counted(target, counter):
    """MicroPython lines that count the calls of `target` (a module's or an object's function)
    in `counter`[0]."""
    return f"""
{counter} = [0]
_{counter}_of = {target}
def _{counter}_counted(*args):
    {counter}[0] += 1
    return _{counter}_of(*args)
{target} = _{counter}_counted
"""


def rp2_hal(bench):
    """MicroPython lines that make `hal`, the board's RP2040 HAL, with its ADC reads counted in
    reads[0]."""
    return port_hal(bench) + counted("hal._read", "reads")


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
    # B, and the diode. A sample whose aimed reads came late falls back to a burst (64 reads 18 us
    # apart); a stall in it over the 100 us low plateau at 90 % (here the loaded host's scheduler,
    # on the chip an interrupt or a flash erase) leaves fewer than the two reads on it that its
    # low takes: once in a loaded run of make test, before such a low took one more burst
    # (test_hal_ports). Two misses in 100 samples is the most; at 10 % the high plateau is the
    # 100 us one (seen missed once in a loaded make test, read as the low).
    wrong = [(high, low) for high, low in out["samples"] if not (abs(high - 8980) < 400 and abs(low + 12000) < 400)]
    assert len(wrong) <= (2 if duty_pm in (100, 900) else 0), (wrong, out["samples"])
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
    assert out["five"][2] in (64, 128), out["five"]   # a second burst when the first caught no plateau twice
    for high, low in out["samples"]:
        assert abs(high - 8980) < 400 and abs(low + 12000) < 400, out["samples"]


@pytest.mark.parametrize("bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_a_steady_pilot_read_right_after_a_duty_change_sees_the_new_level(bench):
    # The PWM takes a new duty when its period ends (both chips double-buffer it): calibrate
    # sets -12 V and reads at once; it must not read the +12 V still running.
    out = bench.run(f"""
{port_hal(bench)}
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


# ---- SPI, and the CAN controller on it ----------------------------------------------------------
@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
def test_rp2040_spi_refuses_what_its_micropython_refuses_and_clocks_what_its_dividers_make(bench):
    out = bench.run("""
SPI, Pin = machine.SPI, machine.Pin
out['id'] = err(lambda: SPI(2))
out['sck'] = err(lambda: SPI(0, sck=Pin(10)))      # SPI1's SCK
out['mosi'] = err(lambda: SPI(1, mosi=Pin(19)))    # SPI0's MOSI
out['miso'] = err(lambda: SPI(0, miso=Pin(17)))    # SPI0's CSn, not a MISO
out['pin'] = err(lambda: SPI(0, sck=30))
out['init_pins'] = err(lambda: SPI(0).init(sck=Pin(18)))
out['default'] = repr(SPI(0))
out['fast'] = repr(SPI(1, 10000000, sck=Pin(14), miso=None))
out['fastest'] = repr(SPI(1, 100000000))           # the pins given before stay
out['lsb'] = err(lambda: SPI(1, firstbit=SPI.LSB))
out['order'] = (SPI.MSB, SPI.LSB)
s = SPI(0)
s.deinit()
out['after_deinit'] = err(lambda: s.write(b'x'))   # the rp2 port has no deinit: it still sends
""")
    assert out["id"] == "ValueError: SPI(2) doesn't exist"
    assert out["sck"] == "ValueError: bad SCK pin" and out["mosi"] == "ValueError: bad MOSI pin"
    assert out["miso"] == "ValueError: bad MISO pin" and out["pin"] == "ValueError: invalid pin"
    assert out["init_pins"] == "TypeError: extra keyword arguments given"
    # 125 MHz / (prescale 2 x post-divide 63) for 1 MHz, / 14 for 10 MHz, / 2 at most (pico-sdk).
    assert out["default"] == "SPI(0, baudrate=992063, polarity=0, phase=0, bits=8, sck=18, mosi=19, miso=16)"
    assert out["fast"] == "SPI(1, baudrate=8928571, polarity=0, phase=0, bits=8, sck=14, mosi=11, miso=None)"
    assert out["fastest"] == "SPI(1, baudrate=62500000, polarity=0, phase=0, bits=8, sck=14, mosi=11, miso=None)"
    assert out["lsb"] == "NotImplementedError: LSB" and out["order"] == [1, 0]
    assert out["after_deinit"] is None


@pytest.mark.parametrize("bench", ["esp32-devkitc"], indirect=True)
def test_esp32_spi_refuses_what_its_micropython_refuses_and_routes_any_pin_that_can_drive(bench):
    out = bench.run("""
SPI, Pin = machine.SPI, machine.Pin
out['no_id'] = err(lambda: SPI())
out['id0'] = err(lambda: SPI(0))
out['id3'] = err(lambda: SPI(3))
out['sck_input_only'] = err(lambda: SPI(1, sck=Pin(34)))
out['pin'] = err(lambda: SPI(2, mosi=24))
out['bits'] = err(lambda: SPI(2, bits=0))
out['default'] = repr(SPI(2))
out['matrix'] = repr(SPI(1, 26000000, sck=Pin(25), mosi=Pin(26), miso=Pin(34)))   # MISO may be input only
s = SPI(2)
out['empty'] = err(lambda: s.write(b''))
s.deinit()
out['after_deinit'] = err(lambda: s.write(b'x'))
s.init(10000000)
out['again'] = repr(s)
out['fastest'] = repr(SPI(2, 70000000))
out['order'] = (SPI.MSB, SPI.LSB)
""")
    assert out["no_id"] == "TypeError: 'id' argument required"
    assert out["id0"] == "ValueError: SPI(0) doesn't exist" and out["id3"] == "ValueError: SPI(3) doesn't exist"
    assert out["sck_input_only"] == "OSError: invalid configuration"
    assert out["pin"] == "ValueError: invalid pin" and out["bits"] == "ValueError: invalid bits"
    # VSPI's IO_MUX pins by default; 80 MHz / (pre x n) nearest the clock asked, 80 MHz above 60.
    assert out["default"] == ("SPI(id=2, baudrate=500000, polarity=0, phase=0, bits=8, firstbit=0, "
                              "sck=18, mosi=23, miso=19)")
    assert out["matrix"] == ("SPI(id=1, baudrate=26666666, polarity=0, phase=0, bits=8, firstbit=0, "
                             "sck=25, mosi=26, miso=34)")
    assert out["empty"] == "ValueError: buffer too short"
    assert out["after_deinit"] == "OSError: transfer on deinitialized SPI"
    assert out["again"].startswith("SPI(id=2, baudrate=10000000,") and "baudrate=80000000" in out["fastest"]
    assert out["order"] == [0, 1]


def dc_board(name):
    """The MCU board `name` with an MCP2515 to a cabinet of two Infypower modules. No such board
    file exists (the DC boards are sim boards): a few pins move to make room for the SPI."""
    board = json.loads((REPO / "boards" / f"{name}.json").read_text())
    board["kind"] = "dc"
    board["cabinet"] = {"modules": 2, "module_kw": 30, "can": {"protocol": "infy", "addresses": [1, 2]}}
    board.pop("site_bus", None)   # a DC board's cabinet shares its power, not a site bus (docs/site.md)
    board["uart"].pop("site", None)
    if board["hal"] == "rp2":
        board["pins"]["mux_select"] = [20, 21, 22]   # the Pico's own SPI0 pins for the MCP2515
        wiring = {"spi": 0, "sck": 18, "mosi": 19, "miso": 16, "cs": 17}
    else:
        del board["guns"][1]   # its pins: VSPI through the GPIO matrix, MISO on an input-only pin
        wiring = {"spi": 2, "sck": 27, "mosi": 23, "miso": 39, "cs": 4}
    board["can"] = {"modules": dict(index=0, chip="mcp2515", crystal_hz=8000000, **wiring)}
    return board


@pytest.fixture
def can_bench(request):
    b = Bench(request.param, dc_board(request.param))
    yield b
    b.close()


def can_hal(bench):
    """MicroPython lines that make `hal`, the board's port HAL, with the link's round trips
    counted in asks[0]."""
    return port_hal(bench) + "import link\nfrom evse.can import infy\n" + counted("link.ask", "asks")


@pytest.mark.parametrize("can_bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_the_hal_can_bus_sends_over_emulated_spi_to_the_modules_and_receives_their_answer(can_bench):
    out = can_bench.run(f"""
{can_hal(can_bench)}
bus = hal.can(0)
out['same'] = hal.can(0) is bus
asks[0] = 0
ident, data = infy.reads(2, True)[2]   # module 2's ratings
out['sent'] = bus.send(ident, data)
out['send_asks'] = asks[0]
asks[0] = 0
frame = bus.recv()
out['recv_asks'] = asks[0]
out['said'] = infy.parse(frame[0], frame[1])
asks[0] = 0
out['nothing'] = bus.recv()
out['idle_asks'] = asks[0]
asks[0] = 0
bus.poll(time.ticks_ms())
out['poll_asks'] = asks[0]
out['stats'] = bus.stats()
""")
    assert out["same"] and out["sent"]
    assert out["said"] == [2, "ratings", [1000, 150, 100.0, 30000]]   # 30 kW, 100 A, 150-1000 V
    assert out["nothing"] is None
    assert out["stats"]["state"] == "active" and out["stats"]["sent"] == 1 and out["stats"]["received"] == 1
    assert [m.frames_in for m in can_bench.world.can.modules] == [0, 1]
    # One round trip per SPI read: READ STATUS, then READ RX; instructions that answer nothing
    # (LOAD TX, the priority, RTS) and the chip select go out without waiting.
    assert (out["send_asks"], out["recv_asks"], out["idle_asks"]) == (1, 2, 1)
    assert out["poll_asks"] <= 6
    ctl = can_bench.front.can[0]
    assert ctl.ignored == 0 and ctl.garbled == 0


@pytest.mark.parametrize("can_bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_the_cabinets_modules_answer_the_firmwares_polls_and_take_its_setpoint_over_emulated_spi(can_bench):
    out = can_bench.run(f"""
{can_hal(can_bench)}
from evse.can import modules
stage = modules.Modules(hal.can(0), infy, [1, 2], log=lambda msg: None)
step_us = []
def run(ms):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        s0 = time.ticks_us()
        stage.step(time.ticks_ms())
        step_us.append(time.ticks_diff(time.ticks_us(), s0))
        time.sleep_ms(10)
run(1200)
out['usable'] = [stage.usable(k) for k in range(2)]
out['rated_w'] = [m.rated_w for m in stage.modules]
stage.set(0, 400.0, 20.0)
run(300)
out['step_us'] = sorted(step_us)
out['stats'] = stage.bus.stats()
""")
    assert out["usable"] == [True, True] and out["rated_w"] == [30000, 30000]
    first = can_bench.world.can.modules[0]
    assert first.on and first.set_v == 400.0 and first.set_a == 20.0
    assert out["stats"]["rx_overruns"] == 0 and out["stats"]["tx_timeouts"] == 0
    steps = out["step_us"]
    print("Modules.step over emulated SPI: median %d us, 90th %d us, %d steps"
          % (steps[len(steps) // 2], steps[len(steps) * 9 // 10], len(steps)))


@pytest.mark.parametrize("can_bench", ["rp2040-pico"], indirect=True)
def test_spi_bytes_reach_the_mcp2515_only_while_its_chip_select_is_low(can_bench):
    ctl = can_bench.front.can[0]
    out = can_bench.run("""
SPI, Pin = machine.SPI, machine.Pin
spi = SPI(0, 10000000, sck=Pin(18), mosi=Pin(19), miso=Pin(16))
def read(cs, address):
    cs(0)
    spi.write(bytes((0x03, address)))   # one instruction in two SPI calls: the address ...
    value = spi.read(1)[0]              # ... and then its answer
    cs(1)
    return value
floating = Pin(17)                      # never made an output: it drives nothing
floating.value(0)
spi.write(b'\\xc0')                      # RESET, unselected
spi.write(b'\\x02\\x2a\\x07')              # WRITE CNF1, unselected
unselected = bytearray(3)
spi.write_readinto(b'\\x03\\x0e\\x00', unselected)
out['unselected'] = list(unselected)
cs = Pin(17, Pin.OUT, value=1)
out['cnf1_before'] = read(cs, 0x2a)
cs(0)
spi.write(b'\\x02\\x2a\\x07')
cs(1)
out['cnf1_after'] = read(cs, 0x2a)
out['canstat'] = read(cs, 0x0e)
""")
    assert out["unselected"] == [0, 0, 0]          # nobody drives MISO
    assert out["cnf1_before"] == 0 and out["cnf1_after"] == 7 and out["canstat"] == 0x80
    assert ctl.ignored == 3
    ignored = [e["value"] for e in can_bench.world.events if e["what"] == "spi_ignored"]
    assert ignored == [{"device": "can.modules", "bytes": n, "why": "chip select high"} for n in (1, 3, 3)]


@pytest.mark.parametrize("can_bench", ["rp2040-pico"], indirect=True)
def test_an_mcp2515_driven_in_an_spi_mode_it_does_not_take_answers_nothing(can_bench):
    out = can_bench.run(f"""
import sys
sys.path.append({str(REPO / 'firmware')!r})
from evse.can.mcp2515 import Mcp2515
spi = machine.SPI(0, 10000000, polarity=0, phase=1, sck=machine.Pin(18), mosi=machine.Pin(19), miso=machine.Pin(16))
out['mode_0_1'] = err(lambda: Mcp2515(spi, machine.Pin(17), time.sleep_ms))
spi.init(phase=0)
out['mode_0_0'] = err(lambda: Mcp2515(spi, machine.Pin(17), time.sleep_ms))
""")
    assert out["mode_0_1"].startswith("CanError: MCP2515: no answer on SPI after its reset")
    assert out["mode_0_0"] is None
    why = {e["value"]["why"] for e in can_bench.world.events if e["what"] == "spi_ignored"}
    assert why == {"SPI mode 0,1: the MCP2515 takes 0,0 and 1,1"}


@pytest.mark.parametrize("can_bench", ["rp2040-pico", "esp32-devkitc"], indirect=True)
def test_a_can_section_the_mcu_refuses_is_an_error_naming_its_key(can_bench):
    # rp2: SPI1 with SPI0's pins; esp32: the clock on an input-only pin.
    bad = {"rp2": {"spi": 1}, "esp32": {"sck": 35}}[can_bench.board["hal"]]
    out = can_bench.run(f"""
{can_hal(can_bench)}
hal.board['can']['modules'].update({json.dumps(bad)})
out['refused'] = err(lambda: hal.can(0))
out['none'] = err(lambda: hal.can(1))
""")
    assert out["refused"].startswith("ValueError: board file: can.modules")
    assert ("bad SCK pin" if can_bench.board["hal"] == "rp2" else "invalid configuration") in out["refused"]
    assert out["none"].startswith('ValueError: board has no CAN bus 1: add it to the board\'s "can" section')


@pytest.mark.parametrize("bench", ["rp2040-pico"], indirect=True)
def test_a_link_closed_as_the_supervisor_takes_it_is_opened_again(bench):
    # The supervisor closes a link it takes for a process that is no longer the board's; once a
    # board's first link after a reset was closed so, and its boot failed at the hello.
    bench.drop = 1
    # And the link it let go never closes the new one's descriptor when the heap is collected.
    out = bench.run("import gc, link\nlink.ask(b's\\n')\ngc.collect()\nlink.ask(b's\\n')\n"
                    "out['inputs'] = len(link._order)")
    assert bench.drop == 0 and out["inputs"] == len(bench.front.request("H %s\n" % bench.mcu).split())
