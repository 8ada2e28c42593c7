"""The OCPP part of `make bench`: the real charge point (evse.ocpp.cp under MicroPython) against
the development central system (`evsectl csms`). bench/ocpp_mpy.py is the charger side; this
starts the central system, plays its part of the session and prints the figures."""
import tempfile
from pathlib import Path

from bench import mpy
from host_tools.csms import CsmsProcess

SCRIPT = Path(__file__).resolve().parent / "ocpp_mpy.py"
HEAP_TARGET_BYTES = 40960   # the target for the OCPP part's heap
HEAP = "576K"               # unix-port heap: room for the code (on a board installed as .mpy, in its heap too)
REPLAY_RUNS = 3             # the replay and its baseline are timed this often; the median counts
SESSION_TIMEOUT_S = 180


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="evse-bench-ocpp-") as tmp, CsmsProcess() as csms:
        api = csms.client()
        session = _session(csms.ws, api, Path(tmp) / "session")
        txs = api.transactions(cp="BENCH1")
        replays = []
        for run_index in range(REPLAY_RUNS):
            root = Path(tmp) / f"replay{run_index}"
            root.mkdir()
            replays.append(mpy.run(SCRIPT, HEAP, ("replay", csms.ws, str(root)))["result"])
        invalid = api.invalid_frames()
    meter_values = sum(len(tx["meterValues"]) for tx in txs)
    stopped = sum(1 for tx in txs if not tx["active"])
    replay = _median_run(replays)
    out = {
        "heap_peak_bytes": session["heap_peak_bytes"],
        "heap_target_bytes": HEAP_TARGET_BYTES,
        "heap_peak_vs_target_ratio": round(session["heap_peak_bytes"] / HEAP_TARGET_BYTES, 2),
        "heap_live_peak_bytes": session["heap_live_peak_bytes"],
        "heap_method": "peak of gc.mem_alloc() read before a gc.collect() each asyncio round, automatic GC off, "
                       "less the heap in use before the ChargePoint was made, on this 64-bit port: an upper "
                       "bound for a 32-bit board, whose machine words (object headers, pointers, slots) are half",
        "code_heap_bytes": session["code_heap_bytes"],
        "session_s": session["session_s"],
        "charging_s": session["charging_s"],
        "transactions": len(txs),
        "transactions_stopped": stopped,
        "meter_values_sent": meter_values,
        "meter_value_interval_s": 10,
        "replay_messages": replay["replay_messages"],
        "replay_1000_s": replay["replay_s"],
        "direct_1000_s": replay["direct_s"],
        "replay_vs_direct_ratio": round(replay["replay_s"] / replay["direct_s"], 2),
        "replay_connect_boot_s": replay["replay_connect_boot_s"],
        "replay_max_loop_stall_ms": max(r["replay_max_loop_stall_ms"] for r in replays),
        "direct_max_loop_stall_ms": max(r["direct_max_loop_stall_ms"] for r in replays),
        "replay_runs": [[r["replay_s"], r["direct_s"]] for r in replays],
        "invalid_frames": len(invalid),
    }
    _print(out)
    return out


def _median_run(runs: list[dict]) -> dict:
    """The run whose replay-to-direct ratio is the median one."""
    ordered = sorted(runs, key=lambda r: r["replay_s"] / r["direct_s"])
    return ordered[len(ordered) // 2]


def _session(ws: str, api, root: Path) -> dict:
    """Runs the two-gun session: the script swipes a card at gun 1, the central system starts gun 2
    remotely once the charger is online."""
    root.mkdir()

    def on_event(event: dict) -> None:
        if event["event"] == "online":
            reply = api.call("RemoteStartTransaction", {"connectorId": 2, "idTag": "BB22"}, cp="BENCH1")
            if reply.get("payload", {}).get("status") != "Accepted":
                raise SystemExit(f"bench: RemoteStartTransaction for gun 2 not accepted: {reply}")
    return mpy.run_with_events(SCRIPT, HEAP, ("session", ws, str(root)), on_event, SESSION_TIMEOUT_S)


def _print(o: dict) -> None:
    print("OCPP heap, two-gun session (MeterValues every %d s, %.0f s): peak %d bytes over the baseline on "
          "this 64-bit port (%d of them live)" % (o["meter_value_interval_s"], o["charging_s"], o["heap_peak_bytes"],
                                                 o["heap_live_peak_bytes"]))
    print("OCPP heap peak = %.2f x the %d-byte target (64-bit words: a 32-bit board needs less)"
          % (o["heap_peak_vs_target_ratio"], o["heap_target_bytes"]))
    print("OCPP code in the heap (the import; as .mpy on a board it takes x 0.83 of this there: the heap section): %d bytes" % o["code_heap_bytes"])
    print("OCPP session: %d transactions (%d stopped), %d MeterValues at the central system, %d frames not valid OCPP 1.6"
          % (o["transactions"], o["transactions_stopped"], o["meter_values_sent"], o["invalid_frames"]))
    print("journal replay of %d messages after reconnect: %.2f s = %.2f x the same number of bare CALLs (%.2f s); "
          "the loop stalled up to %d ms (bare CALLs: %d ms)"
          % (o["replay_messages"], o["replay_1000_s"], o["replay_vs_direct_ratio"], o["direct_1000_s"],
             o["replay_max_loop_stall_ms"], o["direct_max_loop_stall_ms"]))
