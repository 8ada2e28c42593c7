"""`evsectl report LOG`: one PNG of a rig log (`evsectl demo` writes run-out/BOARD/session.jsonl), for
the person who has to say whether the charger shared the site and metered its sessions right.

The picture, top to bottom, on the rig's clock:
- the current per gun (A per phase, stacked) against the site limit per phase, and the current
  each gun's pilot offered (dashed); time above the limit is shaded red;
- the power per gun (kW, stacked) against the site limit as power (limit × 230 V × phases);
- per gun, when the contactor was closed and when the rig had a fault injected;
- the energy of each session (a plug-in to its unplug) as the rig measured it, and, where the
  OCPP log has the transaction, as the charger billed it (meterStop − meterStart);
- the script's steps, numbered as the vertical lines above.

`timeline_from_records` turns the log's records into those series and sessions (no drawing, so
tests check the numbers); `render_png` draws them; `write_report` does both for a log file."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.sim.supervisor import read_board_file
from host_tools.sim.world import VOLTS_PER_PHASE  # the rig's power_w is amps × this × phases

DEFAULT_PHASES = 3            # when neither the log nor --board says: the boards in boards/ are three-phase
PNG_DPI = 100
FIGURE_SIZE_IN = (12.0, 11.0)
STEP_PREFIX = re.compile(r"^step \d+/\d+: ")
# OCPP lines as `evsectl demo` logs a CALL (host_tools/demo.py frame_line); meter values in Wh,
# the OCPP 1.6 default unit of meterStart/meterStop.
START_TRANSACTION = re.compile(r"^charger -> CSMS: StartTransaction connectorId (\d+), idTag (\S+), meterStart (-?\d+)")
STOP_TRANSACTION = re.compile(r"^charger -> CSMS: StopTransaction transactionId (\d+),(?: reason \S+,)? meterStop (-?\d+)")
SNAPSHOT_GUN_FIELDS = ("gun", "amps", "power_w", "energy_wh")


class LogError(Exception):
    """The log cannot be read as a rig log; the message names the file and the line."""


class UsageError(Exception):
    """An option or a path on the command line cannot be used; the message says which and why."""


@dataclass
class GunSeries:
    """One gun over the log, one entry per snapshot."""
    gun: int
    t_s: list[float] = field(default_factory=list)
    amps: list[float] = field(default_factory=list)
    phase_amps: list[list[float]] = field(default_factory=list)   # per site phase, when the rig says
    site_amps: list[float] = field(default_factory=list)          # on the site's busiest phase then
    offered_a: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    energy_wh: list[float] = field(default_factory=list)
    plugged: list[bool] = field(default_factory=list)
    contactor_closed: list[bool] = field(default_factory=list)
    fault: list[str | None] = field(default_factory=list)


@dataclass
class Session:
    """A contiguous run of snapshots with the gun's plug in."""
    gun: int
    start_s: float
    end_s: float
    energy_wh: float                    # the rig's energy_wh across the session
    peak_a: float
    still_plugged: bool                 # the log ends before the unplug
    id_tag: str | None = None
    billed_wh: float | None = None      # sum of the session's OCPP transactions, when the log has them


@dataclass
class StepMark:
    t_s: float
    label: str                          # the number drawn on the time axes
    caption: str


@dataclass
class Timeline:
    guns: dict[int, GunSeries]
    sessions: list[Session]
    steps: list[StepMark]
    meta: dict                          # the log's {"kind": "meta"} record, or {}
    caps: list = field(default_factory=list)   # (t_s, A per phase or None): the central system's cap

    @property
    def t_s(self) -> list[float]:
        return next(iter(self.guns.values())).t_s


@dataclass
class SiteLimit:
    limit_a: float                      # per phase
    phases: int
    source: str                         # where the numbers come from, for the legend
    phases_assumed: bool = False

    @property
    def limit_w(self) -> float:
        return self.limit_a * VOLTS_PER_PHASE * self.phases


# ---- reading ------------------------------------------------------------------------------------
def read_log(path: Path) -> list[dict]:
    """The records of a JSON-lines log; blank lines are skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no log file {path}; `make run` writes run-out/BOARD/session.jsonl") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give the log file, e.g. {path / 'session.jsonl'}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    records = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise LogError(f"{path} line {number}: not UTF-8 text; is this a log of `evsectl demo`?") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise LogError(f"{path} line {number}: not JSON ({e.msg} at column {e.colno}): {text.strip()[:60]}") from None
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            raise LogError(f'{path} line {number}: each line must be a JSON object with a "kind" '
                           '("snapshot", "event", "ocpp" or "meta")')
        record["_line"] = number
        records.append(record)
    return records


def timeline_from_records(records: list[dict], source: str = "the log") -> Timeline:
    """The series per gun, the sessions and the step marks of a log's records (in log order).

    Raises LogError when there is no snapshot or a snapshot lacks a field the picture needs."""
    guns: dict[int, GunSeries] = {}
    steps: list[StepMark] = []
    meta: dict = {}
    caps: list = []
    for record in records:
        kind = record["kind"]
        if kind == "meta" and not meta:
            meta = record
        if kind == "cap" and isinstance(record.get("t_ms"), (int, float)):
            limit = record.get("limit_a")
            caps.append((record["t_ms"] / 1000, float(limit) if isinstance(limit, (int, float)) else None))
        if kind != "snapshot":
            continue
        where = f"{source} line {record.get('_line', '?')}"
        t_s = _number(record.get("t_ms"), f"{where}: snapshot without a t_ms number") / 1000
        caption = record.get("step")
        if isinstance(caption, str) and (not steps or steps[-1].caption != caption):
            steps.append(StepMark(t_s, str(len(steps)), caption))
        gun_list = record.get("guns")
        if not isinstance(gun_list, list) or not gun_list:
            raise LogError(f"{where}: snapshot without a list of guns")
        for g in gun_list:
            if not isinstance(g, dict) or any(not isinstance(g.get(k), (int, float)) for k in SNAPSHOT_GUN_FIELDS):
                raise LogError(f"{where}: each gun of a snapshot needs the numbers {', '.join(SNAPSHOT_GUN_FIELDS)}")
            series = guns.setdefault(int(g["gun"]), GunSeries(int(g["gun"])))
            series.t_s.append(t_s)
            series.amps.append(float(g["amps"]))
            if isinstance(g.get("phase_amps"), list) and len(g["phase_amps"]) == 3:
                series.phase_amps.append([float(a) for a in g["phase_amps"]])
            series.offered_a.append(float(g.get("offered_a") or 0.0))
            series.power_w.append(float(g["power_w"]))
            series.energy_wh.append(float(g["energy_wh"]))
            # Logs from before the rig had `plugged`: any pilot state but A means a plug is in.
            series.plugged.append(bool(g["plugged"]) if "plugged" in g else str(g.get("state", "A"))[:1] != "A")
            series.contactor_closed.append(bool(g.get("contactor")))
            series.fault.append(g.get("fault") or None)
    if not guns:
        raise LogError(f"{source} has no snapshot records, so nothing to plot; "
                       "is it a log of `evsectl demo` (run-out/BOARD/session.jsonl)?")
    if len({len(s.t_s) for s in guns.values()}) > 1:
        raise LogError(f"{source}: the snapshots do not all list the same guns")
    _busiest_phase(list(guns.values()))
    sessions = [s for series in guns.values() for s in sessions_of(series)]
    sessions.sort(key=lambda s: (s.start_s, s.gun))
    _add_id_tags(sessions, records)
    _add_billed_energy(sessions, records)
    return Timeline(dict(sorted(guns.items())), sessions, steps, meta, caps)


def _busiest_phase(guns: list[GunSeries]) -> None:
    """Each gun's current on the site phase that carries the most at each moment: what the fuse
    of that phase sees, so single-phase guns on other phases do not count. Without the rig's
    per-phase view (older logs), every gun's current counts."""
    if not all(len(s.phase_amps) == len(s.t_s) for s in guns):
        for s in guns:
            s.site_amps = list(s.amps)
        return
    for i in range(len(guns[0].t_s)):
        loads = [sum(s.phase_amps[i][p] for s in guns) for p in range(3)]
        busiest = loads.index(max(loads))
        for s in guns:
            s.site_amps.append(s.phase_amps[i][busiest])


def sessions_of(series: GunSeries) -> list[Session]:
    """The gun's plug-in periods. The energy of one is the rig's energy_wh from the last snapshot
    before the plug to the first after the unplug: energy_wh counts from the rig's start and
    does not move while nothing is plugged in, so nothing is lost between the samples."""
    sessions = []
    n = len(series.t_s)
    i = 0
    while i < n:
        if not series.plugged[i]:
            i += 1
            continue
        first = i
        while i < n and series.plugged[i]:
            i += 1
        last = i - 1
        before = series.energy_wh[first - 1] if first > 0 else series.energy_wh[first]
        after = series.energy_wh[i] if i < n else series.energy_wh[last]
        sessions.append(Session(series.gun, series.t_s[first], series.t_s[last], after - before,
                                max(series.amps[first:i]), still_plugged=i == n))
    return sessions


def _session_at(sessions: list[Session], gun: int, t_s: float) -> Session | None:
    """The gun's session that was on at t_s, or the next one to start (an event can come just
    before the first snapshot that shows the plug)."""
    for s in sessions:
        if s.gun == gun and t_s <= s.end_s:
            return s
    return None


def _add_id_tags(sessions: list[Session], records: list[dict]) -> None:
    for r in records:
        if r["kind"] == "event" and r.get("what") == "rfid" and isinstance(r.get("t_ms"), (int, float)):
            s = _session_at(sessions, r.get("gun"), r["t_ms"] / 1000)
            if s is not None and s.id_tag is None:
                s.id_tag = str(r.get("value"))


def _add_billed_energy(sessions: list[Session], records: list[dict]) -> None:
    """meterStop − meterStart of each transaction, onto the session it ran in. A StopTransaction
    names its transaction only by id; the development central system numbers transactions 1, 2, ...
    in the order they start (host_tools/csms/model.py), so id N is the log's Nth StartTransaction."""
    starts: list[tuple[Session | None, int, str]] = []
    for r in records:
        line = r.get("line") if r["kind"] == "ocpp" else None
        if not isinstance(line, str) or not isinstance(r.get("t_ms"), (int, float)):
            continue
        if match := START_TRANSACTION.match(line):
            session = _session_at(sessions, int(match.group(1)), r["t_ms"] / 1000)
            starts.append((session, int(match.group(3)), match.group(2)))
        elif match := STOP_TRANSACTION.match(line):
            number = int(match.group(1))
            if not 1 <= number <= len(starts):
                continue  # not from the development central system's numbering: leave it unbilled
            session, meter_start_wh, id_tag = starts[number - 1]
            if session is None:
                continue
            session.billed_wh = (session.billed_wh or 0.0) + int(match.group(2)) - meter_start_wh
            session.id_tag = session.id_tag or id_tag


def _number(value, message: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LogError(message)
    return float(value)


# ---- the site limit ---------------------------------------------------------------------------
def load_board_file(board: str) -> tuple[dict, Path]:
    """A board by its name in boards/ (or a path to a board file)."""
    try:
        return read_board_file(board)
    except ValueError as e:
        raise UsageError(str(e)) from None


def site_limit(meta: dict, board: str | None = None, limit_a: float | None = None) -> SiteLimit | None:
    """The limit to draw, or None when nothing names one. Amps: --limit-a, else --board's file,
    else the log's meta record, else the file of the meta record's board. Phases: --board's file,
    else the meta record, else its board's file, else DEFAULT_PHASES (said in the legend)."""
    if limit_a is not None and not _positive(limit_a):
        raise UsageError(f"--limit-a must be a positive number of amps per phase, like 32, not {limit_a:g}")
    meta_board = meta.get("board") if isinstance(meta.get("board"), str) else None
    from_log = (meta, f"board {meta_board or '?'}, from the log")
    if board is not None:
        board_file, path = load_board_file(board)
        sources = [(board_file, f"board {path.stem}"), from_log]
    else:
        sources = [from_log]
        if meta_board is not None:
            try:
                board_file, path = load_board_file(meta_board)
                sources.append((board_file, f"board {path.stem}"))
            except UsageError:
                pass  # the log's board is not in this checkout: the meta record's own numbers, or none
    amps = [(limit_a, "--limit-a")] + [(numbers.get("site_limit_a"), where) for numbers, where in sources]
    chosen = next(((float(a), where) for a, where in amps if _positive(a)), None)
    if chosen is None:
        return None
    phases = next((int(numbers["phases"]) for numbers, _ in sources if _positive(numbers.get("phases"))), None)
    return SiteLimit(chosen[0], phases or DEFAULT_PHASES, chosen[1], phases_assumed=phases is None)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


# ---- drawing ------------------------------------------------------------------------------------
def render_png(timeline: Timeline, limit: SiteLimit | None, out_path: Path, title: str) -> None:
    """Draw the picture (Agg, no display) into out_path."""
    from matplotlib.figure import Figure  # matplotlib loads only to draw: the CLI's errors stay fast

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=PNG_DPI, layout="constrained")
    grid = fig.add_gridspec(4, 2, height_ratios=[3.0, 2.2, 0.9, 2.6], width_ratios=[1.15, 1.0])
    ax_a = fig.add_subplot(grid[0, :])
    ax_kw = fig.add_subplot(grid[1, :], sharex=ax_a)
    ax_k = fig.add_subplot(grid[2, :], sharex=ax_a)
    ax_e = fig.add_subplot(grid[3, 0])
    ax_steps = fig.add_subplot(grid[3, 1])
    fig.suptitle(title, fontsize=13, fontweight="bold")
    colors = {gun: f"C{i % 10}" for i, gun in enumerate(timeline.guns)}

    _draw_stack(ax_a, timeline, colors, "site_amps", 1.0)
    for gun, series in timeline.guns.items():
        ax_a.step(series.t_s, series.offered_a, where="post", color=colors[gun], linestyle="--", linewidth=1.2,
                  label=f"gun {gun} offered (pilot duty)")
    total_a = [sum(values) for values in zip(*(s.site_amps for s in timeline.guns.values()))]
    if limit is not None:
        ax_a.axhline(limit.limit_a, color="red", linewidth=1.8, label=f"site limit {limit.limit_a:g} A per phase ({limit.source})")
        above = [a > limit.limit_a for a in total_a]
        ax_a.fill_between(timeline.t_s, limit.limit_a, total_a, where=above, color="red", alpha=0.35,
                          interpolate=True, label="above the limit" if any(above) else None)
    _draw_caps(ax_a, timeline)
    ax_a.set_ylabel("current per phase (A)")
    ax_a.set_ylim(0, max([limit.limit_a if limit else 0.0, *total_a,
                          *(a for s in timeline.guns.values() for a in s.offered_a)]) * 1.22 or 1.0)
    ax_a.set_title("current drawn per gun on the site's busiest phase (stacked) and offered, against the "
                   "site limit; the numbers are the steps listed below", loc="left", fontsize=10)
    _legend_outside(ax_a)

    _draw_stack(ax_kw, timeline, colors, "power_w", 1 / 1000)
    total_kw = [sum(values) / 1000 for values in zip(*(s.power_w for s in timeline.guns.values()))]
    if limit is not None:
        assumed = ", phases assumed" if limit.phases_assumed else ""
        ax_kw.axhline(limit.limit_w / 1000, color="red", linewidth=1.8,
                      label=f"site limit {limit.limit_w / 1000:.1f} kW ({limit.limit_a:g} A × {limit.phases} × "
                            f"{VOLTS_PER_PHASE:g} V{assumed})")
    ax_kw.set_ylim(0, max([limit.limit_w / 1000 if limit else 0.0, *total_kw]) * 1.25 or 1.0)
    ax_kw.set_ylabel("power (kW)")
    ax_kw.set_title("power per gun (stacked)", loc="left", fontsize=10)
    _legend_outside(ax_kw)

    _draw_contactors(ax_k, timeline, colors)
    ax_k.set_xlabel("time on the rig's clock (s)")
    for ax in (ax_a, ax_kw):
        ax.tick_params(labelbottom=False)
        ax.grid(True, alpha=0.3)
    ax_a.set_xlim(timeline.t_s[0], timeline.t_s[-1])
    _draw_step_marks((ax_a, ax_kw, ax_k), timeline.steps)

    _draw_sessions(ax_e, timeline.sessions, colors)
    _draw_step_list(ax_steps, timeline.steps)
    fig.savefig(out_path, format="png")


def _legend_outside(ax) -> None:
    """Right of the panel, never over the data (eight guns make a long legend)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, borderaxespad=0.0)


def _draw_caps(ax, timeline: Timeline) -> None:
    """The central system's cap on the charger (ChargePointMaxProfile) while it stands."""
    end_s = timeline.t_s[-1]
    labelled = False
    for i, (t_s, limit_a) in enumerate(timeline.caps):
        if limit_a is None:
            continue
        until_s = timeline.caps[i + 1][0] if i + 1 < len(timeline.caps) else end_s
        ax.hlines(limit_a, t_s, until_s, color="darkorange", linewidth=2.2,
                  label=None if labelled else f"charger cap from the central system ({limit_a:g} A)")
        labelled = True


def _draw_stack(ax, timeline: Timeline, colors: dict[int, str], name: str, scale: float) -> None:
    base = [0.0] * len(timeline.t_s)
    for gun, series in timeline.guns.items():
        top = [b + v * scale for b, v in zip(base, getattr(series, name))]
        ax.fill_between(series.t_s, base, top, color=colors[gun], alpha=0.55, linewidth=0,
                        label=f"gun {gun} drawn" if name == "site_amps" else f"gun {gun}")
        ax.plot(series.t_s, top, color=colors[gun], linewidth=1.0)
        base = top


def _runs(t_s: list[float], on: list[bool]) -> list[tuple[float, float]]:
    """(start, width) of each run of True, each sample held until the next."""
    runs = []
    start = None
    for i, value in enumerate(on):
        if value and start is None:
            start = t_s[i]
        if not value and start is not None:
            runs.append((start, t_s[i] - start))
            start = None
    if start is not None:
        runs.append((start, t_s[-1] - start))
    return runs


def _draw_contactors(ax, timeline: Timeline, colors: dict[int, str]) -> None:
    """One lane per gun, like a logic analyser: the contactor closed (filled), a fault (red, named)."""
    lanes = list(timeline.guns.items())
    for lane, (gun, series) in enumerate(lanes):
        y = len(lanes) - 1 - lane
        ax.broken_barh(_runs(series.t_s, series.plugged), (y - 0.32, 0.64), facecolors="none",
                       edgecolors=colors[gun], linewidth=0.8, linestyle=":")
        ax.broken_barh(_runs(series.t_s, series.contactor_closed), (y - 0.25, 0.5), facecolors=colors[gun], alpha=0.8)
        for code in sorted({f for f in series.fault if f}):
            runs = _runs(series.t_s, [f == code for f in series.fault])
            ax.broken_barh(runs, (y - 0.32, 0.64), facecolors="red", alpha=0.55, hatch="//", edgecolor="darkred")
            ax.text(runs[0][0], y + 0.36, f"fault: {code}", color="darkred", fontsize=8, va="bottom")
    ax.set_yticks(range(len(lanes)), [f"gun {gun}" for gun, _ in reversed(lanes)])
    ax.set_ylim(-0.6, len(lanes) - 0.1)
    ax.set_title("contactor closed (filled), plug in (dotted outline), injected fault (red)", loc="left", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def _draw_step_marks(axes, steps: list[StepMark]) -> None:
    """A dotted line across the time panels where each step starts, numbered on a top axis."""
    for step in steps:
        for ax in axes:
            ax.axvline(step.t_s, color="0.35", linewidth=0.8, linestyle=":")
    top = axes[0].secondary_xaxis("top")
    top.set_xticks([s.t_s for s in steps], [s.label for s in steps], fontsize=8, fontweight="bold")
    top.tick_params(length=3, pad=1)


def _draw_sessions(ax, sessions: list[Session], colors: dict[int, str]) -> None:
    ax.set_title("energy per session (plug-in to unplug)", loc="left", fontsize=10)
    ax.set_ylabel("energy (kWh)")
    if not sessions:
        ax.text(0.5, 0.5, "no gun was plugged in", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    billed = any(s.billed_wh is not None for s in sessions)
    width = 0.38 if billed else 0.6
    billed_labelled = False
    many = len(sessions) > 4   # then one label per session, turned, and shorter tick texts
    for i, s in enumerate(sessions):
        offset = -width / 2 if billed else 0.0
        bar = ax.bar(i + offset, s.energy_wh / 1000, width, color=colors[s.gun], alpha=0.8,
                     label="measured by the rig (energy_wh)" if i == 0 else None)
        ax.bar_label(bar, [kwh_text(s.energy_wh)], fontsize=7 if many else 8, padding=2,
                     rotation=90 if many else 0)
        if s.billed_wh is not None:
            bar = ax.bar(i + width / 2, s.billed_wh / 1000, width, facecolor="white", edgecolor=colors[s.gun],
                         hatch="///", label=None if billed_labelled else "billed over OCPP (meterStop − meterStart)")
            billed_labelled = True
            if not many:
                ax.bar_label(bar, [kwh_text(s.billed_wh)], fontsize=8, padding=2)
    ticks = []
    for s in sessions:
        who = f"gun {s.gun}" + (f" · {s.id_tag}" if s.id_tag and not many else "")
        until = "still in" if s.still_plugged else f"{s.end_s:.0f} s"
        ticks.append(who if many else f"{who}\n{s.start_s:.0f}–{until}, peak {s.peak_a:.0f} A")
    ax.set_xticks(range(len(sessions)), ticks, fontsize=8, rotation=45 if many else 0,
                  ha="right" if many else "center")
    top = max([s.energy_wh for s in sessions] + [s.billed_wh or 0.0 for s in sessions]) / 1000
    ax.set_ylim(0, top * (1.7 if many else 1.45) or 1.0)
    ax.grid(True, axis="y", alpha=0.3)
    if billed:
        ax.legend(loc="upper right", fontsize=8)


def kwh_text(energy_wh: float) -> str:
    kwh = energy_wh / 1000
    return f"{kwh:.2f} kWh" if abs(kwh) >= 1 else f"{kwh:.3f} kWh"


def _draw_step_list(ax, steps: list[StepMark]) -> None:
    ax.axis("off")
    ax.set_title("steps (the numbered lines above)", loc="left", fontsize=10)
    lines = [f"{s.label:>2}  {s.t_s:5.1f} s  {_wrap(STEP_PREFIX.sub('', s.caption))}" for s in steps]
    ax.text(0.0, 1.0, "\n".join(lines) if lines else "(the log names no steps)", transform=ax.transAxes,
            va="top", ha="left", fontsize=8.5, family="monospace", linespacing=1.35)


def _wrap(caption: str, width: int = 58) -> str:
    """Long captions go on under themselves, indented past the number and the time."""
    words, lines, line = caption.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return ("\n" + " " * 13).join(lines)


# ---- the file in, the picture out ---------------------------------------------------------------
def write_report(log_path: Path, out_path: Path | None = None, board: str | None = None,
                 limit_a: float | None = None) -> Path:
    """Read the log, draw the picture (default: report.png next to the log); returns its path.
    Raises UsageError or LogError."""
    log_path = Path(log_path)
    out_path = Path(out_path) if out_path is not None else log_path.with_name("report.png")
    timeline = timeline_from_records(read_log(log_path), source=str(log_path))
    limit = site_limit(timeline.meta, board, limit_a)
    if limit is None:
        print(f"evsectl report: {log_path} names no site limit (no meta record), so none is drawn; "
              "pass --board B or --limit-a A", file=sys.stderr)
    board_name = board or timeline.meta.get("board")
    title = f"{board_name + ': ' if board_name else ''}{log_path.name}, {len(timeline.guns)} guns, " \
            f"{len(timeline.sessions)} sessions, {timeline.t_s[-1] - timeline.t_s[0]:.0f} s"
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        render_png(timeline, limit, out_path, title)
    except OSError as e:
        raise UsageError(f"cannot write {out_path}: {e.strerror or e}") from None
    return out_path


def report_line(log_path: Path) -> str:
    """For `evsectl demo`'s summary: the path of report.png next to the log, or why there is none
    (the day itself went well, so the demo does not fail for its picture)."""
    try:
        return str(write_report(log_path))
    except (UsageError, LogError) as e:
        return f"none ({e})"


def run(args) -> int:
    """`evsectl report`: 0, 1 for a log that cannot be read as one, 2 for an unusable option."""
    try:
        out = write_report(Path(args.log), Path(args.output) if args.output else None, args.board, args.limit_a)
    except UsageError as e:
        print(f"evsectl report: {e}", file=sys.stderr)
        return 2
    except LogError as e:
        print(f"evsectl report: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0
