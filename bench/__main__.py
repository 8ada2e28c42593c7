"""`make bench`: run each benchmark, print its ratios, write bench/out/results.json."""
import json
import sys
from pathlib import Path

from bench import flash, heap, memory, mpy, ocpp, sharing, site_day, timing

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "results.json"


def _tick_ms(board: str) -> int:
    """The board's control tick (board file tick_ms, 20 ms without it)."""
    return json.loads((ROOT / "boards" / f"{board}.json").read_text()).get("tick_ms", 20)


def main() -> int:
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    tick = mpy.run(ROOT / "bench" / "tick_mpy.py")
    results["tick"] = tick
    print("control tick (MicroPython, 2 guns): %.1f us = %.2f x the bare HAL reads; %.2f %% of a 20 ms tick here"
          % (tick["tick_2_guns_us"], tick["tick_vs_hal_reads_ratio"], tick["tick_budget_used"] * 100))
    print("sharing cycle (8 guns): %.1f us = %.2f x a bare equal split" % (tick["sharing_8_guns_us"], tick["sharing_vs_split_ratio"]))
    print("MicroPython heap in use with 2 guns + sharing: %d of %d bytes" % (tick["heap_live_bytes"], tick["heap_total_bytes"]))
    # The tick above reads a model EV; on a board each gun's pilot is ADC reads too: on the
    # RP2040 in step with the PWM (busy sleeps between them), on the ESP32 a burst of 64.
    pilot = mpy.run(ROOT / "bench" / "burst_mpy.py")
    tick.update(pilot)
    rp2_gun_ms = (pilot["pilot_synced_us"] * timing.RP2040_X + pilot["pilot_synced_wait_us"]) / 1000
    tick["tick_with_pilot_samples_rp2040_ms"] = round(tick["tick_2_guns_us"] * timing.RP2040_X / 1000 + 2 * rp2_gun_ms, 1)
    tick["tick_with_pilot_samples_esp32_ms"] = round(
        (tick["tick_2_guns_us"] + 2 * pilot["pilot_sample_us"]) * timing.ESP32_X / 1000, 1)
    print("pilot sample on the RP2040, in step with its PWM: %.1f us and %.1f ADC reads per gun and tick = %.1f ms "
          "at RP2040 speed (x%d) with %.2f ms of busy waiting for the plateaus; the 2-gun tick with them: %.1f ms "
          "of rp2040-pico's %d ms" % (pilot["pilot_synced_us"], pilot["pilot_synced_reads"], rp2_gun_ms, timing.RP2040_X,
                                      pilot["pilot_synced_wait_us"] / 1000, tick["tick_with_pilot_samples_rp2040_ms"],
                                      _tick_ms("rp2040-pico")))
    print("pilot sample on the ESP32, a burst of 64 ADC reads: %.1f us per gun and tick = %.1f ms at ESP32 speed "
          "(x%d); the 2-gun tick with them: %.1f ms of esp32-devkitc's %d ms"
          % (pilot["pilot_sample_us"], pilot["pilot_sample_us"] * timing.ESP32_X / 1000, timing.ESP32_X,
             tick["tick_with_pilot_samples_esp32_ms"], _tick_ms("esp32-devkitc")))
    results["sharing"] = sharing.run()
    _write(results)   # a section that fails later does not lose this one
    results["site"] = site_day.run()
    _write(results)
    results["ocpp"] = ocpp.run()
    _write(results)
    results["flash"] = flash.run()
    _write(results)
    results["heap"] = heap.run()
    _write(results)
    results["memory"] = memory.run()
    _write(results)
    status = 0
    try:   # last, and caught: its failure loses none of the sections above
        results["timing"] = timing.run(tick, results["memory"])
    except (Exception, SystemExit) as err:
        print(f"timing: failed: {err}")
        results["timing"] = {"error": str(err)}
        status = 1
    _write(results)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return status


def _write(results: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
