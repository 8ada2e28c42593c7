"""docs/img/dc-sharing.png from the sharing section of a `make bench` run: the mixed fleet's
charging curves against a dispenser's static share, and each DC scenario's energy by policy.

    .venv/bin/python -m bench.plot_sharing [results.json] [out.png]"""
import json
import sys
from pathlib import Path

from bench import sharing

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"firmware": "firmware", "static": "static split", "equal_active": "equal split",
          "waterfill": "water-filling", "upper_bound": "upper bound"}


def plot(results: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    curves, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    for model, _, points in sharing.FLEET_SLOW + sharing.FLEET_FAST:
        style = "--" if model in [m[0] for m in sharing.FLEET_SLOW] else "-"
        curves.plot([s for s, _ in points], [kw for _, kw in points], style, label=model)
    share = sharing.MODULES // sharing.DISPENSERS * sharing.MODULE_KW
    curves.axhline(share, color="grey", linewidth=3, alpha=0.5)
    curves.text(1, share + 4, "static share %d kW" % share, color="grey")
    curves.axvspan(sharing.DC_TARGET_SOC * 100, 100, color="grey", alpha=0.1)
    curves.set(xlabel="state of charge (%)", ylabel="kW the car takes", title="DC-6-mixed: the fleet's curves",
               xlim=(0, 100), ylim=(0, 290))
    curves.legend(fontsize=7, loc="upper right")

    scenarios = ("DC-6", "DC-6-mixed")
    policies = list(LABELS)
    width = 0.8 / len(scenarios)
    for k, name in enumerate(scenarios):
        got = results[name]["policies"]
        static = got["static"]["energy_kwh"]
        ys = [got[p]["energy_kwh"] / static for p in policies]
        xs = [i + (k - 0.5) * width for i in range(len(policies))]
        drawn = bars.bar(xs, ys, width, label="%s (%s)" % (name, "random 50-350 kW cars" if name == "DC-6"
                                                             else "half below, half above 60 kW"))
        bars.bar_label(drawn, fmt="%.2f", fontsize=7)
    bars.set_xticks(range(len(policies)), [LABELS[p] for p in policies], fontsize=8)
    bars.set(ylabel="energy / the static split's", ylim=(0.9, 1.25),
             title="360 kW, six dispensers, 4 x 12 h: energy by policy")
    bars.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)


def main(argv):
    src = Path(argv[0]) if argv else ROOT / "bench" / "out" / "results.json"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "img" / "dc-sharing.png"
    data = json.loads(src.read_text())
    plot(data.get("sharing", data), out)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1:])
