# Runs boards/rig-pico under the MicroPython unix port against a fake Pico (machine.py here) and a
# modelled charger: the charger drives each pilot (+12 V, -12 V, a PWM, or nothing), the pilot's
# high plateau follows the resistors the rig has switched (A 12 V, B 9 V, C 6 V, D 3 V, E 0 V),
# the comparator fires its interrupt on each edge and the ADC sees the divider's midpoint.
#
# stdin: one line each, processed in order; after each line the harness prints the separator
# line "\x1e". A request line goes to the rig's Server (its reply, if any, comes before the
# separator); a line "#!cmd args" is for the harness and prints one JSON line:
#   #!wiring {json}      replace top-level keys of wiring.WIRING (before the rig starts)
#   #!start              start the rig now (else the first line that needs it does)
#   #!charger GUN PM     the charger's duty in per mille (0..1000), or "off" (pilot undriven)
#   #!run MS             MS periods of 1 ms: pilot edges as they fall, the rig ticks once a period
#   #!contactor GUN 0|1 [bounce]   the contactor's feedback opto (bounce: 2 extra edges in 0.5 ms)
#   #!jitter US [N]      every pilot edge's interrupt comes 0..2*US late (pseudo-random), and
#                        about one edge in N 40 us later still (a busy interrupt)
#   #!pins               the switch state per gun, the mains relay and every driven pin
#   #!irqs               the interrupts the rig asked for: [pin, trigger, hard]
#   #!break adc MSG | #!break tick | #!fix    make the hardware fail, and mend it
#   #!now                the rig's clock
# Times printed are the rig's own (ms since the rig started), as its events carry them.
import json
import sys

import machine

import hw

hw.ticks_us = machine.ticks_us
hw.ticks_diff = machine.ticks_diff
hw.ticks_add = machine.ticks_add
hw.sleep_us = machine.sleep_us

import rig  # noqa: E402
import wiring  # noqa: E402

OUT = sys.stdout.buffer
SEPARATOR = b"\x1e\n"
COMPARATOR_MV = 1000  # the comparator output is high while the pilot is above this
EDGE_US = 10  # a period's rising edge comes this long after the period begins
# Starts 3 s before ticks_us wraps (2**30 us), so most runs cross the wrap.
START_US = (machine.TICKS_PERIOD // 1000 - 3000) * 1000

WIRING = wiring.WIRING
state = {"server": None, "rig": None, "start": START_US, "jitter": 0, "spikes": 0, "seed": 12345}
charger = {}  # gun -> duty per mille, or None when the pilot is not driven
comparator = {}  # gun -> the level the comparator shows now


def emit(obj):
    OUT.write(json.dumps(obj).encode() + b"\n")


def pins_of(gun):
    return WIRING["guns"][gun - 1]["pins"]


def closed(gun):
    on = WIRING["switch_closed_level"]
    out = {}
    for name in hw.SWITCH_NAMES:
        number = pins_of(gun).get(name)
        if number is not None:
            out[name] = machine.driven.get(number, 1 - on) == on
    return out


def plateaus_mv(gun):
    """The pilot's high and low plateau, from the charger's drive and the rig's switches."""
    duty = charger.get(gun)
    if duty is None:
        return 0, 0
    sw = closed(gun)
    if sw.get("short_e"):
        return 0, 0
    if sw["r2740"] and sw["r270"]:
        high = 3000
    elif sw["r2740"] and sw["r1300"]:
        high = 6000
    elif sw["r2740"]:
        high = 9000
    else:
        high = 12000
    if duty >= 1000:
        return high, high
    if duty <= 0:
        return -12000, -12000
    loaded = sw["r2740"] or sw["r1300"] or sw["r270"]
    return high, (-high if sw["diode_short"] and loaded else -12000)


def pilot_at(gun, t_us):
    high, low = plateaus_mv(gun)
    duty = charger.get(gun)
    if duty is None or duty >= 1000:
        return high
    if duty <= 0:
        return low
    return high if (t_us - EDGE_US) % 1000 < duty else low


def adc_source(gun):
    cal = WIRING["pilot_adc"]
    return lambda t_us: cal["offset_mv"] + cal["gain"] * pilot_at(gun, t_us)


def rig_ms(t_us):
    return (t_us - state["start"]) / 1000


def start():
    if state["server"] is not None:
        return
    machine.clock.now_us = state["start"]
    hardware = hw.Hardware(WIRING)
    the_rig = rig.Rig(hardware, WIRING)
    state["rig"] = the_rig
    state["server"] = rig.Server(the_rig, OUT.write)
    for n in range(1, hardware.guns + 1):
        charger[n] = 1000  # a charger at rest: +12 V
        comparator[n] = machine.pins[pins_of(n)["pilot_cmp"]].value()
        machine.adc_mv[pins_of(n)["pilot_adc"]] = adc_source(n)


def jitter():
    """An interrupt's latency: 0..2*jitter us, and now and then (spikes) 40 us more;
    pseudo-random from a fixed LCG, so runs repeat."""
    if not state["jitter"] and not state["spikes"]:
        return 0
    seed = (state["seed"] * 1103515245 + 12345) & 0x7FFFFFFF
    state["seed"] = seed
    late = (seed >> 8) % (2 * state["jitter"] + 1)
    if state["spikes"] and (seed >> 4) % state["spikes"] == 0:
        late += 40
    return late


def set_comparator(gun, level):
    if comparator[gun] != level:
        comparator[gun] = level
        machine.fire(pins_of(gun)["pilot_cmp"], level)


def run(ms):
    clock = machine.clock
    t = (clock.now_us + 999) // 1000 * 1000
    server = state["server"]
    for _ in range(ms):
        plan = []  # (time, gun, level); the tick at t + 950
        for gun in charger:
            duty = charger[gun]
            high, low = plateaus_mv(gun)
            hi, lo = int(high > COMPARATOR_MV), int(low > COMPARATOR_MV)
            if duty is not None and 0 < duty < 1000 and hi != lo:
                plan.append((t + EDGE_US + jitter(), gun, hi))
                plan.append((t + EDGE_US + duty + jitter(), gun, lo))
            else:
                plan.append((t, gun, int(pilot_at(gun, t) > COMPARATOR_MV)))
        plan.append((t + 950, 0, None))
        plan.sort(key=lambda p: p[0])
        for at, gun, level in plan:
            if clock.now_us < at:
                clock.now_us = at
            if gun:
                set_comparator(gun, level)
            else:
                server.tick()
        t += 1000


def command(words):
    name = words[0]
    if name == "wiring":
        WIRING.update(json.loads(" ".join(words[1:])))
        return {"wiring": sorted(WIRING)}
    start()
    the_rig = state["rig"]
    if name == "start":
        return {"t_ms": rig_ms(machine.clock.now_us)}
    if name == "charger":
        gun = int(words[1])
        charger[gun] = None if words[2] == "off" else int(words[2])
        # The new drive begins with the next period.
        return {"from_ms": rig_ms((machine.clock.now_us + 999) // 1000 * 1000)}
    if name == "run":
        run(int(words[1]))
        return {"t_ms": rig_ms(machine.clock.now_us)}
    if name == "contactor":
        gun, on = int(words[1]), words[2] == "1"
        closed_level = WIRING["feedback_closed_level"]
        level = closed_level if on else 1 - closed_level
        pin = pins_of(gun)["feedback"]
        first = machine.clock.now_us
        machine.fire(pin, level)
        if len(words) > 3:  # contact bounce
            machine.clock.now_us += 200
            machine.fire(pin, 1 - level)
            machine.clock.now_us += 300
            machine.fire(pin, level)
        return {"t_ms": rig_ms(first)}
    if name == "jitter":
        state["jitter"] = int(words[1])
        state["spikes"] = int(words[2]) if len(words) > 2 else 0
        return {"jitter": state["jitter"], "spikes": state["spikes"]}
    if name == "pins":
        relay = WIRING.get("power_relay")
        return {
            "switches": {str(g): closed(g) for g in charger},
            "power_off": None if relay is None else machine.driven.get(relay["pin"]) == relay["off_level"],
            "driven": {str(p): v for p, v in machine.driven.items()},
        }
    if name == "irqs":
        return {"irqs": [list(irq) for irq in machine.irqs]}
    if name == "break":
        if words[1] == "adc":
            machine.adc_fails.append(" ".join(words[2:]) or "ADC gone")
        else:
            def broken(gun):
                raise RuntimeError("comparator gone")
            the_rig.hw.pilot_level = broken
        return {"broken": words[1]}
    if name == "fix":
        machine.adc_fails.clear()
        if "pilot_level" in the_rig.hw.__dict__:
            del the_rig.hw.pilot_level
        return {"fixed": True}
    if name == "now":
        return {"t_ms": rig_ms(machine.clock.now_us)}
    raise ValueError("unknown harness command %r" % name)


def main():
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        if line.startswith(b"#!"):
            emit(command(line[2:].decode().split()))
        else:
            start()
            if not line.endswith(b"\n"):
                line += b"\n"
            state["server"].feed(line)
        OUT.write(SEPARATOR)


main()
