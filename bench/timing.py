"""The timing part of `make bench`: the rule that no step of an asyncio task blocks the loop for
more than 50 ms on an RP2040 (DESIGN.md, Safety architecture). bench/timing_mpy.py runs each
workload in the real firmware code under the MicroPython unix port and reports the longest step
of any task, and the longest stall a watcher task saw between two of its turns; this starts the
development central system (and a second one that serves wss://), plays its part (a
SendLocalList and a 300 KB DataTransfer sent through its API, the files it serves and takes),
scales the steps to the boards, judges them and prints the table.

Scaling: pystone under the same port, on this machine, against the boards' published pystone
figures gives the factors the verdicts use for bytecode (`scale_rp2040`, `scale_esp32`);
DESIGN.md's fixed x 325 and x 170 are shown beside them for reference, with a warning when the
two differ by more than FACTOR_WARN. The part of a step in MicroPython's C routines (littlefs,
json, hashlib, os, imports: bench/c_calls_mpy.py times them) is judged at the board's factor x
C_OVER_BYTECODE, as measured on an emulated ARMv6-M, and so are the rows that are C as a whole (the
TLS handshake; the collector is judged from its own measurement there).

The workloads' files are on littlefs (timing_mpy.FlashImage: an image on tmpfs, mounted as the rp2
port mounts its flash); the littlefs C code is in the steps, the image's Python block device (a C
driver on a board) is not. Not modelled here: the flash chip's program and erase times (an RP2040
stalls for a sector erase, interrupts included) and real DNS round trips (localhost comes from
/etc/hosts)."""
import json
import os
import socket
import ssl
import tempfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from bench import mpy, ocpp
from host_tools import flash, fwbundle
from host_tools.csms import CsmsProcess
from host_tools.csms.client import CsmsError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "timing_mpy.py"
RESULTS = ROOT / "bench" / "out" / "results.json"
BOARD_8_GUNS = ROOT / "boards" / "sim-ac8.json"   # the App whose sharing ticks are timed
BOARD_LOAD = ROOT / "boards" / "sim-ac2.json"     # the App whose whole CPU load is measured
BOARD_RP2040 = ROOT / "boards" / "rp2040-pico.json"   # its tick is the 2-gun control tick's budget
RP2040_BOARDS = ("rp2040-pico", "rp2040-pico-w")      # their collections: at RP2040 speed, at their heaps
HEAP = ocpp.HEAP           # as the OCPP part: room for the code

# pystone/s of MicroPython on the boards: the basis of the factors the verdicts use.
PYSTONE_RP2040 = 550       # RP2040 at 125 MHz: ~550, an estimate from published comparisons (no
#                            single published figure for this chip and clock), not a measurement
PYSTONE_ESP32_PUBLISHED = (1014, 1602)   # ESP32 at 240 MHz, as published (by build and version)
PYSTONE_ESP32 = 1300       # the middle of the published range
# DESIGN.md's fixed factors ("The real targets: measured on this project"), for reference only.
RP2040_X = 325
ESP32_X = 170
FACTOR_WARN = 0.10         # pystone-derived and fixed factors further apart than this: a warning
# A C routine inside MicroPython (json, an import, littlefs, hashlib) is as much slower on the
# MCU, relative to this host, as bytecode is, or more: measured on an emulated ARMv6-M in a booted
# board's state (bench/gc_armv6m/README.md), the firmware's imports and json ran 0.9-1.4 times
# pystone's ratio (json.loads 1.36, the OCPP handlers' import 1.3; SHA-256 2.2). Not the 50-100 x
# of this project's brief beside bytecode's 325: on the same core most of a json.loads or an
# import is MicroPython's scan of the names it has interned. So a step's C is judged at the
# board's pystone factor times C_OVER_BYTECODE, the upper end of json's and the imports'.
C_OVER_BYTECODE = 1.4
# What a board's C block device costs per call (bench/timing_mpy.py says how they are estimated).
BOARD_CALL_US = 4
BOARD_READ_BYTES_PER_US = 20
# The collector on an RP2040, measured (bench/gc_armv6m/README.md): MicroPython v1.28.0's py/gc.c
# built as the rp2 port builds it (-Os, ARMv6-M code only; its collector's functions the same size
# as RPI_PICO_W's) and run on an emulated Cortex-M (qemu mps2-an385, -icount: the guest's clock
# counts its instructions) with a heap of 205,184 bytes, the Pico W's, one workload grown to
# 60,528, 101,728 and 140,368 bytes live: 1.145, 1.677 and 2.182 million instructions a collection
# (a + b x live, within 0.2 %); of them the sweep (gc_collect_end) 441,000-589,000, about 2.15
# instructions per byte of the heap, which a board's heap of another size adds or takes. Each
# instruction priced at the Cortex-M0+'s cycles (ALU 1, loads and stores 2, a taken branch 2): 1.37 cycles
# on average; 1.8 allows for memory stalls (the rp2 build runs gc.c from flash, through its 16 KB
# cache) and interrupts. The same collections took this host's unix port 350-390 times less time
# at a heap of 1.8 times the board's (31-68 us): C is no faster here, relative to an RP2040,
# than bytecode is (C_OVER_BYTECODE).
GC_INSN_AT_NOTHING_LIVE = 359000
GC_INSN_PER_LIVE_BYTE = 12.99
GC_INSN_PER_HEAP_BYTE = 2.15     # the sweep: 441,000 instructions for 205,184 bytes at the least live
GC_MEASURED_HEAP = 205184
GC_CPI = (1.37, 1.8)
RP2040_HZ = 125000000
# The TLS handshake's public-key work on an RP2040, measured (bench/gc_armv6m/tls/README.md):
# mbedTLS 3.6.2 built as MicroPython v1.28's rp2 port builds it (its config: NIST_OPTIM, no
# bignum asm, the pico-sdk's 64-bit multiply) and run on the emulated ARMv6-M, instructions
# counted: an ECDSA P-256 verify 31.86 million, ECDH P-256's key pair and shared secret 30.63
# million, at 1.45 cycles an instruction by the M0+ table. A client verifies two signatures with
# the chain the development central system has (its certificate signed by the CA the charger
# holds, and the ServerKeyExchange's), and one more for each intermediate CA. The same work took
# this host's native build 1.77 ms: 618 times less. The handshake here under the unix port
# (8-9 ms, the server's half on the same loopback inside the call) times the C factor is shown
# beside, not judged.
TLS_INSN_ECDSA_VERIFY = 31_864_000
TLS_INSN_ECDHE = 30_627_000
TLS_VERIFIES = 2
STEP_LIMIT_MS = 50         # DESIGN.md, Safety architecture: no step over 50 ms at RP2040 speed
# Our own budget, no standard's: the 2-gun control tick may take 20 % of its period, so that the
# tasks sharing the loop with it (OCPP, flash, console) keep the rest. An estimate of what they
# need, not a measured one.
TICK_SHARE = 0.2
FRAME_DATA_BYTES = 300 * 1024   # the DataTransfer's data: far over the websocket's 8192 bytes
BUNDLE_BYTES = 100 * 1024       # the firmware files the UpdateFirmware bundle holds, at least
BUNDLE = "timing-fw.bin"        # its name in the central system's file service
CALL_TIMEOUT_S = 20             # a CALL from the central system waits this long for the answer
SCRIPT_TIMEOUT_S = 300
LOAD_LIMIT = 0.5   # the whole firmware's average load at RP2040 speed in a charging session with OCPP

# How a row is measured and judged.
FLOOR = "floor"    # the watcher's gap with nothing else running: no verdict, the others' yardstick
STEP = "step"      # a gap the watcher saw: bytecode, x the pystone factor <= STEP_LIMIT_MS
C_STEP = "c"       # a gap spent in a C routine: x the C factor <= STEP_LIMIT_MS
# A C routine that cannot yield however the firmware slices its work: mbedtls' handshake. The
# brief's rule for it: measure it, say so, keep it away from anything with a deadline. On a board
# with the hardware interlock the contactor opens without the loop; what the loop still times is
# the close after C (IEC 61851-1 Table A.6: within 3 s) and the 5 s watchdog. So it is judged at
# the C factor against those 3 s; docs/mcu-front-end.md says what it means for a board without one.
C_BLOCK = "block"
BLOCK_LIMIT_MS = 3000
TICK = "tick"      # the control step timed directly: x the pystone factor <= the tick period

# key in timing_mpy's workloads, label (formatted with the sizes), how it is judged
ROWS = (
    ("idle", "loop idle, the watcher alone ({idle_ms} ms): the noise floor", FLOOR),
    ("replay", "replay of {replay_messages:,} journalled messages after a connect", STEP),
    ("compaction", "journal: {replay_messages:,} messages confirmed one by one", STEP),
    ("local_list", "SendLocalList Full, {local_list_entries} entries (its maximum), from the CSMS", STEP),
    ("big_frame", "a {frame_kb} KB CALL DataTransfer from the CSMS", STEP),
    ("diagnostics", "GetDiagnostics: upload of a full {log_kb} KB log on littlefs", STEP),
    ("connect", "{connect_label}", STEP),
    ("connect_tls", "wss:// connect: TLS handshake, ECDSA P-256 (one C call, measured on ARMv6-M; limit: the 3 s close)", C_BLOCK),
    ("firmware", "UpdateFirmware: {bundle_kb} KB bundle, download to install on littlefs", STEP),
    ("sharing", "control step, {guns} guns charging (worst tick of {share_ticks}, warm)", TICK),
    ("share", "power sharing step, {guns} guns (its own task; worst of {share_ticks}, warm)", STEP),
    ("site_share", "site coordinator's sharing, 8 x 2 guns (its longest stage)", STEP),
)
CONNECT_BY_NAME = "ws:// connect to localhost: getaddrinfo, no DNS round trip"
CONNECT_BY_ADDRESS = "ws:// connect to 127.0.0.1: the DNS step not exercised"


def run(tick: dict | None = None, memory: dict | None = None) -> dict:
    """Runs the workloads and prints the table. `tick`: results["tick"] of this bench run, and
    `memory`: its results["memory"] (each read from the last results.json when not given): the
    control tick and the garbage collections at the RP2040 boards' heaps are judged from them.
    Raises SystemExit when the MicroPython side fails as a whole."""
    last = json.loads(RESULTS.read_text()) if (tick is None or memory is None) and RESULTS.exists() else {}
    tick = tick if tick is not None else last.get("tick")
    memory = memory if memory is not None else last.get("memory")
    said: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="evse-bench-timing-", dir=_memory_dir()) as tmp, ExitStack() as stack:
        tmp_path = Path(tmp)
        files = tmp_path / "files"
        (files / "uploads").mkdir(parents=True)
        bundle_bytes = _bundle(files / BUNDLE, tmp_path / "fw-src")
        csms = stack.enter_context(CsmsProcess("--files", str(files)))
        by_name = _localhost_is_ipv4(urlsplit(csms.ws).port)
        tls, no_tls = _tls_csms(stack, tmp_path, by_name)
        root = tmp_path / "root"
        root.mkdir()
        args = (_named(csms.ws, by_name), tls[0] if tls else "-", tls[1] if tls else "-", csms.http,
                f"{csms.http}/files/{BUNDLE}", str(BOARD_8_GUNS), str(BOARD_LOAD), str(root), str(C_OVER_BYTECODE),
                str(PYSTONE_RP2040),
                str(BOARD_CALL_US), str(BOARD_READ_BYTES_PER_US))
        # The package as a board runs it, compiled: a module a workload imports (UpdateFirmware's
        # HTTP client) is a .mpy loaded in that step, not a source compiled there.
        package = flash.compile_package(None)["evse/__init__.mpy"].parents[1]
        result = mpy.run_with_events(SCRIPT, HEAP, args, _central_system(csms, said), SCRIPT_TIMEOUT_S,
                                     firmware=package)
    if tls is None:
        result["workloads"]["connect_tls"] = {"error": no_tls}
    names = dict(result["sizes"], frame_kb=FRAME_DATA_BYTES // 1024, bundle_kb=round(bundle_bytes / 1024),
                 log_kb=result["sizes"]["log_max_bytes"] // 1024,
                 connect_label=CONNECT_BY_NAME if by_name else CONNECT_BY_ADDRESS)
    out = _figures(result, tick, names, by_name, memory)
    for key, replies in said.items():
        out["workloads"][key]["central_system_said"] = replies
    out["workloads"]["firmware"]["bundle_bytes"] = bundle_bytes
    _print(out)
    return out


def _memory_dir() -> str | None:
    """tmpfs for the flash image where the machine has it: the image's reads and writes are then
    copies in memory, not a disk's latency in the steps measured."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _localhost_is_ipv4(port: int) -> bool:
    """Whether "localhost" resolves first to 127.0.0.1, where the central system listens. Where
    /etc/hosts gives ::1 first the firmware would try that and hang."""
    try:
        return socket.getaddrinfo("localhost", port, 0, socket.SOCK_STREAM)[0][4][0] == "127.0.0.1"
    except OSError:
        return False


def _named(url: str, by_name: bool) -> str:
    # By name where that is safe: the firmware resolves it, as it would a central system's.
    return url.replace("127.0.0.1", "localhost") if by_name else url


def _bundle(path: Path, src: Path) -> int:
    """A bundle of the first firmware files (main.py, boot.py, evse/...) that make BUNDLE_BYTES."""
    firmware = ROOT / "firmware"
    total = 0
    for rel in fwbundle.bundle_files(firmware):
        if total >= BUNDLE_BYTES:
            break
        data = (firmware / rel).read_bytes()
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        total += len(data)
    data = fwbundle.build(src, "0.0.1-timing")
    path.write_bytes(data)
    return len(data)


def _tls_csms(stack: ExitStack, tmp: Path, by_name: bool):
    """((wss URL, path of the CA's DER), None) of a second central system that serves wss://
    with a certificate for localhost and 127.0.0.1 (trustme: ECDSA P-256), or (None, why there
    is none)."""
    try:
        args = tls_args(tmp)
    except ImportError:
        return None, "trustme is not installed (make setup installs the dev tools): no certificate for wss://"
    try:
        csms = stack.enter_context(CsmsProcess(*args))
    except CsmsError as err:
        return None, f"the central system did not start with TLS: {err}"
    return (_named(csms.ws, by_name), str(tmp / "ca.der")), None


def tls_args(folder: Path) -> list[str]:
    """The central system's arguments for wss:// with a certificate for localhost and 127.0.0.1
    (trustme: ECDSA P-256) under a CA whose DER it writes as folder/ca.der, for the board to check
    it against. ImportError without trustme."""
    import trustme
    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    (folder / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(authority.cert_pem.bytes().decode()))
    return ["--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem")]


# ---- the central system's part: the CALLs timing_mpy.py asks for -------------------------------
def _call(csms: CsmsProcess, action: str, payload: dict, cp: str) -> str:
    """Sends a CALL to the charge point through the central system's API; what the API answered.
    Never raises: the charge point's own answer (in timing_mpy's details) judges the workload."""
    try:
        with csms.client() as api:
            reply = api.call(action, payload, cp=cp, timeout_s=CALL_TIMEOUT_S)
    except (CsmsError, OSError, ValueError) as err:   # OSError: the API's socket timed out or was refused
        return f"{type(err).__name__}: {err}"
    return json.dumps(reply.get("call_error") or reply.get("payload"))


def _big_frame(csms: CsmsProcess, event: dict) -> str:
    data = "x" * FRAME_DATA_BYTES
    return _call(csms, "DataTransfer", {"vendorId": "bench", "messageId": "timing", "data": data}, event["cp"])


def _local_list(csms: CsmsProcess, event: dict) -> str:
    """The list the charge point asked for: event["entries"] (its SendLocalListMaxLength) cards."""
    entries = [{"idTag": "FLEET%05d" % number,
                "idTagInfo": {"status": "Accepted", "expiryDate": "2031-01-01T00:00:00Z", "parentIdTag": "FLEET"}}
               for number in range(event["entries"])]
    return _call(csms, "SendLocalList", {"listVersion": event["version"], "updateType": "Full",
                                         "localAuthorizationList": entries}, event["cp"])


CALLS = {"big_frame": _big_frame, "local_list": _local_list}


def _central_system(csms: CsmsProcess, said: dict):
    """The handler of timing_mpy's events: each is a CALL to send; said[event]: the API's replies."""
    def on_event(event: dict) -> None:
        send = CALLS.get(event["event"])
        if send is None:
            raise SystemExit(f"timing: {SCRIPT.name} asked for {event['event']!r}, which this side does not send")
        said.setdefault(event["event"], []).append(send(csms, event))
    return on_event


# ---- what makes a run count: the workload did what it is there for -----------------------------
def _answer(details: dict) -> list | None:
    """The charge point's answer to the central system's CALL, parsed (None: none, or cut)."""
    try:
        return json.loads(details.get("answer") or "null")
    except ValueError:
        return None


def _answer_text(details: dict) -> str:
    answer = _answer(details)
    if answer is None:
        return "did not answer" if details.get("answer") is None else "answered " + details["answer"][:80]
    if answer[0] == 4:
        return f"answered CALLERROR {answer[2]} ({answer[3]})"
    return "answered CALLRESULT " + json.dumps(answer[2])


def _firmware_failed(details: dict) -> str | None:
    if details.get("installed") is True:
        return None
    return f"the bundle was not installed (statuses {details.get('statuses')})"


def _diagnostics_failed(details: dict) -> str | None:
    if details.get("statuses", [])[-1:] == ["Uploaded"]:
        return None
    return f"the upload did not end Uploaded (statuses {details.get('statuses')})"


def _local_list_failed(details: dict) -> str | None:
    answer = _answer(details)
    if answer is not None and answer[0] == 3 and answer[2].get("status") == "Accepted":
        return None
    return f"the charge point {_answer_text(details)}, not Accepted"


def _big_frame_failed(details: dict) -> str | None:
    answer = _answer(details)
    if answer is not None and answer[0] == 4:
        return None
    return f"no CALLERROR: the charge point {_answer_text(details)}"


def _hidden(details: dict) -> str | None:
    if details.get("hidden_by_fault"):
        return "a step longer than the longest judged took a page fault (the machine's): run make bench again"
    return None


FAILED = {"firmware": _firmware_failed, "diagnostics": _diagnostics_failed, "local_list": _local_list_failed,
          "big_frame": _big_frame_failed}


# ---- figures ----------------------------------------------------------------------------------
def _median(values: list) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _scaled(host_ms: float, factors: dict, c_ms: float = 0.0, call_ms: float = 0.0) -> dict:
    """A gap of host_ms here, c_ms of it in C routines, at each board's speed: the bytecode x the
    board's factor, the C x that board's C factor; call_ms of the C, the step's longest single
    call (one no slicing can cut: _c_call judges the workload's), is left out of the step and
    scaled apart."""
    byte_ms = max(host_ms - c_ms, 0.0)
    rest_c = max(c_ms - call_ms, 0.0)
    return {"worst_ms_host": round(host_ms, 3), "c_ms_host": round(c_ms, 3), "call_ms_host": round(call_ms, 3),
            "rp2040_ms": round(byte_ms * factors["rp2040"] + rest_c * factors["c"], 1),
            "esp32_ms": round(byte_ms * factors["esp32"] + rest_c * factors["c_esp32"], 1),
            "call_rp2040_ms": round(call_ms * factors["c"], 1),
            f"rp2040_fixed_x{RP2040_X}_ms": round((byte_ms + rest_c * C_OVER_BYTECODE) * RP2040_X, 1),
            f"esp32_fixed_x{ESP32_X}_ms": round((byte_ms + rest_c * C_OVER_BYTECODE) * ESP32_X, 1)}


def _board_collections(memory: dict | None, factors: dict) -> list:
    """A garbage collection's time on each RP2040 board, at that board's own heap: judged from
    what the memory section's session had live at its peak (in the board's bytes) by the
    collector measured on ARMv6-M (collection_ms_rp2040), at the slower end of its range; and,
    not judged, the probe's 99th percentile of the session's collections here times the C
    factor. A collection cannot yield; its time grows with the heap and what is live in it, so
    the heap must be the board's, not this section's. The virtual board's heap here holds what the
    board's does not (a ROMFS partition's image, the emulated silicon) and 64-bit objects."""
    rows = []
    for board in RP2040_BOARDS:
        row = (memory or {}).get("boards", {}).get(board, {})
        gc = row.get("collections") or {}
        label = f"a garbage collection (C) at {board}'s heap"
        if not gc.get("count") or "peak_board_bytes" not in row:
            rows.append({"label": label, "measured": False,
                         "why": row.get("error") or "no collections in results[\"memory\"]: run make bench"})
            continue
        live, heap = row["peak_board_bytes"], row["heap_kb"] * 1024
        fast_ms, slow_ms = collection_ms_rp2040(live, heap)
        ms = gc["p99_us"] / 1000
        install = row.get("install", "mpy")
        rows.append(_judged({"label": f"{label} by the ARMv6-M collector, {live / 1024:.0f} of {heap // 1024} KiB live",
                             "worst_ms_host": None, "c_ms_host": None, "rp2040_ms": round(slow_ms, 1),
                             "rp2040_fast_ms": round(fast_ms, 1), "esp32_ms": None, f"rp2040_fixed_x{RP2040_X}_ms": None,
                             f"esp32_fixed_x{ESP32_X}_ms": None, "collections": gc["count"],
                             "live_board_bytes": live, "heap_board_bytes": heap}, STEP_LIMIT_MS))
        rows.append({"label": f"{label}: the session's here ({install}, {gc['heap_bytes'] // 1024} KB), p99 x C",
                     **_scaled(ms, factors, ms), "collections": gc["count"], "max_ms_host": gc["max_us"] / 1000,
                     "heap_bytes": gc["heap_bytes"], "verdict": "reference"})
    return rows


def collection_ms_rp2040(live_bytes: int, heap_bytes: int) -> tuple[float, float]:
    """How long a collection takes on an RP2040 (ms, at 1.37 and at 1.8 cycles an instruction)
    with live_bytes live in a heap of heap_bytes: the instructions the collector ran on the
    emulated ARMv6-M (GC_INSN_*), at 125 MHz."""
    return _insns_ms_rp2040(GC_INSN_AT_NOTHING_LIVE + GC_INSN_PER_LIVE_BYTE * live_bytes
                            + GC_INSN_PER_HEAP_BYTE * (heap_bytes - GC_MEASURED_HEAP))


def _insns_ms_rp2040(insns: float) -> tuple[float, float]:
    """ms on an RP2040 at 125 MHz of `insns` instructions counted on the emulated ARMv6-M, at
    1.37 and at 1.8 cycles an instruction (GC_CPI)."""
    return tuple(insns * cpi / RP2040_HZ * 1000 for cpi in GC_CPI)


def tls_handshake_ms_rp2040(verifies: int = TLS_VERIFIES) -> tuple[float, float]:
    """The public-key work of a TLS 1.2 client handshake with an ECDSA P-256 chain (`verifies`
    signatures) and ECDHE on an RP2040: ms at 1.37 and at 1.8 cycles an instruction (GC_CPI:
    the measured 1.45, and the allowance for the flash cache and interrupts), 125 MHz."""
    return _insns_ms_rp2040(TLS_INSN_ECDSA_VERIFY * verifies + TLS_INSN_ECDHE)


def _tls_measured(row: dict) -> dict:
    """The TLS row judged by the handshake measured on the emulated ARMv6-M; the host's time
    times the C factor kept as a reference."""
    fast, slow = tls_handshake_ms_rp2040()
    row["host_x_c_rp2040_ms"] = row["rp2040_ms"]
    row["rp2040_ms"] = round(slow, 1)
    row["rp2040_fast_ms"] = round(fast, 1)
    row["with_an_intermediate_ca_rp2040_ms"] = round(tls_handshake_ms_rp2040(TLS_VERIFIES + 1)[1], 1)
    return row


def _judged(row: dict, limit_ms: float) -> dict:
    row.update(limit_ms=limit_ms, judged_ms=row["rp2040_ms"])
    row["pass"] = row["rp2040_ms"] <= limit_ms
    return row


def _median_run(measured: dict, kind: str, factors: dict, key: str = "worst_us",
                c_key: str = "c_us") -> tuple[float, float, float] | None:
    """(step, C in it, its longest C call), in host ms, of the run whose step judged at RP2040
    speed (without that call) is the median; with key="stall_us", c_key="stall_c_us" the same of
    the loop's stalls (the call not known: 0). None if not measured."""
    runs = []
    values = [us for us in measured.get(key, []) if us is not None]
    if not values:
        return None
    calls = measured.get("call_us", [0] * len(values)) if key == "worst_us" else [0] * len(values)
    for worst_us, c_us, call_us in zip(values, measured.get(c_key, [0] * len(values)), calls):
        c_us = worst_us if kind in (C_STEP, C_BLOCK) else min(c_us, worst_us)
        call_us = 0 if kind in (C_STEP, C_BLOCK) else min(call_us or 0, c_us)
        runs.append(((worst_us - c_us) * factors["rp2040"] + (c_us - call_us) * factors["c"],
                     worst_us / 1000, c_us / 1000, call_us / 1000))
    runs.sort()
    return runs[len(runs) // 2][1:]


def _c_call(details: list, factors: dict) -> dict | None:
    """The workload's longest single C call (an import, a json.loads, a littlefs commit), in the
    median of its runs (as a step: one run's may be the machine's noise, a loopback send that
    ran the central system's side), at RP2040 speed: one call that no slicing of the firmware's
    work can cut, judged as the TLS handshake is, against BLOCK_LIMIT_MS."""
    calls = sorted((d["longest_c_call"] for d in details if d.get("longest_c_call") and d["longest_c_call"][0]),
                   key=lambda call: call[0])
    if not calls:
        return None
    us, name = calls[len(calls) // 2]
    rp2040_ms = round(us / 1000 * factors["c"], 1)
    return {"host_ms": us / 1000, "of": name, "rp2040_ms": rp2040_ms, "esp32_ms": round(us / 1000 * factors["c_esp32"], 1),
            "limit_ms": BLOCK_LIMIT_MS, "pass": rp2040_ms <= BLOCK_LIMIT_MS}


def _factors(pystone: float) -> dict:
    """The boards' factors over this machine at `pystone` pystone/s here."""
    return {"rp2040": pystone / PYSTONE_RP2040, "esp32": pystone / PYSTONE_ESP32,
            "c": C_OVER_BYTECODE * pystone / PYSTONE_RP2040, "c_esp32": C_OVER_BYTECODE * pystone / PYSTONE_ESP32}


def _figures(result: dict, tick: dict | None, names: dict, by_name: bool, memory: dict | None = None) -> dict:
    sizes = result["sizes"]
    tick_ms = sizes["tick_ms"]
    pystone = result["pystone_per_s"]
    factors = _factors(pystone)
    warnings = []
    for board, fixed in (("rp2040", RP2040_X), ("esp32", ESP32_X)):
        off = factors[board] / fixed - 1
        if abs(off) > FACTOR_WARN:
            warnings.append(f"the pystone-derived {board.upper()} factor x {factors[board]:.0f} is {off:+.1%} off "
                            f"the fixed x {fixed}: the verdicts use x {factors[board]:.0f}")
    out = {
        "method": f"every task's steps timed while the workload runs in the real firmware under the MicroPython unix "
                  f"port (those resumed by an exception too), and the part of each in MicroPython's C routines (littlefs "
                  f"files, json, hashlib, os: bench/c_calls_mpy.py); the longest step, judged at RP2040 speed as its "
                  f"bytecode x the pystone factor plus its C x {factors['c']:.0f} ({C_OVER_BYTECODE} x the bytecode's, measured on an emulated ARMv6-M: bench/gc_armv6m), without the step's longest single C call, is the row's verdict, and the workload's longest C call is judged apart against the {BLOCK_LIMIT_MS} ms close; the loop's longest stall "
                  f"(the gap between two turns of a watcher task that yields with sleep_ms(0)) is shown beside it. The "
                  f"time the kernel ran other processes is taken off each (/proc/thread-self/schedstat run_delay: "
                  f"{result['preemption_corrected']}), and so is the time in the flash image's Python block device, "
                  f"littlefs' call into it included ({result['block_device_call_ns']} ns a call here), and what a "
                  f"board's C block device costs goes in as C (estimated: {BOARD_CALL_US} us a call at RP2040 "
                  f"speed, a read's copy at {BOARD_READ_BYTES_PER_US} bytes/us); a step "
                  f"or stall in which this process took a major page fault (the machine reading back a page it "
                  f"reclaimed) is not judged; the "
                  f"watcher collects the garbage in its own turns (collections have their own row); the median of "
                  f"{result['runs']} runs. The 8-gun rows: the control task's step and the sharing task's of an "
                  f"{sizes['guns']}-gun App, each timed alone. Scaled by pystone here / pystone on the board (RP2040 "
                  f"{PYSTONE_RP2040}, ESP32 {PYSTONE_ESP32}); pass: <= {STEP_LIMIT_MS} ms at RP2040 speed (the control "
                  f"step: <= the {tick_ms} ms tick of the {sizes['guns']}-gun board). The SendLocalList and the "
                  f"{FRAME_DATA_BYTES // 1024} KB DataTransfer come from the central system's API over the websocket. "
                  f"Heap {HEAP} on a 64-bit port, code in the heap. Files on littlefs (progsize 256, as rp2 mounts "
                  f"it). Not modelled: flash program and erase times, real DNS round trips.",
        "step_limit_ms_rp2040": STEP_LIMIT_MS,
        "tick_ms": tick_ms,
        "pystone_per_s": round(pystone),
        "pystone_basis": {"rp2040": PYSTONE_RP2040, "esp32_240mhz_published": list(PYSTONE_ESP32_PUBLISHED),
                          "esp32_taken": PYSTONE_ESP32},
        "scale_rp2040": round(factors["rp2040"], 1),
        "scale_esp32": round(factors["esp32"], 1),
        "scale_c": round(factors["c"], 1),
        "c_over_bytecode": C_OVER_BYTECODE,
        "block_device_call_ns_host": result["block_device_call_ns"],
        "block_device_board": result["block_device_board"],
        "scale_fixed": {"rp2040": RP2040_X, "esp32": ESP32_X, "c_over_bytecode": C_OVER_BYTECODE},
        "scale_warnings": warnings,
        "verdicts_use": f"pystone-derived factors (C routines: x {factors['c']:.0f})",
        "localhost_by_name": by_name,
        "getaddrinfo_first_ms_host": result["getaddrinfo_us"] / 1000,
        "page_faulted": result.get("page_faulted"),
        "workloads": {},
    }
    work = result["workloads"]
    floor_ms = None
    if "stall_us" in work.get("idle", {}):
        floor_ms = _median(work["idle"]["stall_us"]) / 1000
    for key, label, kind in ROWS:
        label = label.format(**names)
        measured = work.get(key, {"error": "not run"})
        why = measured.get("error")
        details = measured.get("details", [])
        if why is None:
            failures = [(run, FAILED.get(key, _hidden)(run_details) or _hidden(run_details))
                        for run, run_details in enumerate(details)]
            why = "; ".join(f"run {run + 1}: {failure}" for run, failure in failures if failure) or None
        if why is not None:
            out["workloads"][key] = {"label": label, "measured": False, "why": why,
                                     **({"details": details[-1]} if details else {})}
            continue
        # Each row at the machine's speed beside it (measured before and after its runs).
        row_pystone = measured.get("pystone_per_s", pystone)
        row_factors = _factors(row_pystone)
        host_ms, c_ms, call_ms = _median_run(measured, kind, row_factors,
                                             *(("stall_us", "stall_c_us") if kind == FLOOR else ()))
        row = {"label": label, **_scaled(host_ms, row_factors, c_ms, call_ms), "pystone_per_s": round(row_pystone),
               "runs_ms_host": [us / 1000 for us in measured["worst_us"]],
               "runs_c_ms_host": [us / 1000 for us in measured.get("c_us", [])],
               "runs_stall_ms_host": [None if us is None else us / 1000 for us in measured.get("stall_us", [])]}
        stall = _median_run(measured, kind, row_factors, "stall_us", "stall_c_us")
        if stall is not None:
            row["stall"] = _scaled(stall[0], row_factors, stall[1])
        c_call = _c_call(details, row_factors) if kind in (STEP, C_STEP) else None
        if c_call is not None:
            row["c_call"] = c_call
        if kind == FLOOR:
            row["verdict"] = "noise floor"
        else:
            if kind != TICK and floor_ms and stall is not None:
                row["stall_over_floor_x"] = round(stall[0] / floor_ms, 1)
            if key == "connect_tls":
                _tls_measured(row)
            _judged(row, tick_ms if kind == TICK else BLOCK_LIMIT_MS if kind == C_BLOCK else STEP_LIMIT_MS)
            if c_call is not None and not c_call["pass"]:
                row["pass"] = False
        row.update(details[-1])
        if any("worst_step_of" in run_details for run_details in details):
            row["worst_step_of"] = [run_details.get("worst_step_of") for run_details in details]
        out["workloads"][key] = row
    collections = result["collections"]
    gc_ms = collections["p99_us"] / 1000
    out["collection"] = {   # the workloads' heap is no board's: shown, not judged
        "label": f"a garbage collection (C), this bench's {result['heap_bytes'] // 1024} KB heap (no board's), p99",
        **_scaled(gc_ms, factors, gc_ms), "collections": collections["count"], "verdict": "reference",
        "median_ms_host": collections["p50_us"] / 1000, "max_ms_host": collections["max_us"] / 1000,
        "heap_bytes": result["heap_bytes"]}
    out["collections_by_board"] = _board_collections(memory, factors)
    rp2040_tick_ms = json.loads(BOARD_RP2040.read_text()).get("tick_ms", tick_ms)
    tick_label = f"control tick, 2 guns, mean of make bench's: {TICK_SHARE:.0%} of rp2040-pico's {rp2040_tick_ms} ms"
    if tick is None:
        out["control_tick"] = {"label": tick_label, "measured": False, "why": "no results[\"tick\"]: run make bench"}
    else:
        host_ms = tick["tick_2_guns_us"] / 1000
        out["control_tick"] = _judged({"label": tick_label, **_scaled(host_ms, factors),
                                       "tick_2_guns_us_host": tick["tick_2_guns_us"]}, rp2040_tick_ms * TICK_SHARE)
    out["load"] = _load(work.get("load", {"error": "not run"}), tick, factors, sizes["load_tick_ms"])
    return out


def _load(load: dict, tick: dict | None, factors: dict, tick_ms: int) -> dict:
    """The whole firmware's average CPU load in a 2-gun session with OCPP, at RP2040 speed: the
    time of its tasks' steps here, and asyncio's own per step, x the pystone factor; plus the
    RP2040's pilot samples (make bench's tick section: bytecode x the factor, and its busy waits
    as they are)."""
    label = "whole firmware, 2 guns charging with OCPP over ws://: average CPU load"
    if "error" in load:
        return {"label": label, "measured": False, "why": load["error"]}
    if not load["steps"]:
        return {"label": label, "measured": False, "why": "no task step was timed", **load}
    if load["charging"] != load["guns"]:
        return {"label": label, "measured": False, "why": f"{load['charging']} of {load['guns']} guns charging", **load}
    pilot_factors = factors   # the pilot samples were timed in make bench's tick section
    if "pystone_per_s" in load:   # measured beside the session: a shared machine's speed drifts within a run
        factors = _factors(load["pystone_per_s"])
    wall_us = load["wall_ms"] * 1000
    c_us = min(load.get("steps_c_us", 0), load["steps_us"])
    scheduler = load["steps"] * load["scheduler_us_per_step"] / wall_us   # timed warm already
    here = load["steps_us"] / wall_us + scheduler
    steps_byte = (load["steps_us"] - c_us) / wall_us
    byte = steps_byte + scheduler
    row = {"label": label, **load, "load_host": round(here, 5), "load_c_host": round(c_us / wall_us, 5),
           "load_rp2040": round(byte * factors["rp2040"] + c_us / wall_us * factors["c"], 3),
           "load_esp32": round(byte * factors["esp32"] + c_us / wall_us * factors["c_esp32"], 3), "limit": LOAD_LIMIT,
           "scale_rp2040": round(factors["rp2040"], 1)}
    if tick is None or "pilot_synced_us" not in tick:
        row.update(measured=False, why="no pilot sample figures in results[\"tick\"]: run make bench")
        return row
    per_tick_us = load["guns"] * (tick["pilot_synced_us"] * pilot_factors["rp2040"] + tick["pilot_synced_wait_us"])
    row["pilot_samples_rp2040"] = round(per_tick_us / (tick_ms * 1000), 3)
    row["with_pilot_samples_cold"] = round(row["load_rp2040"] + row["pilot_samples_rp2040"], 3)
    # The steps came on cold caches (each a tick after the last, the core idle between); pystone
    # runs warm, a tight loop with the host's caches and branch predictors trained on it. The
    # factor pystone gives is warm-to-warm, and a Cortex-M0+ has neither a data cache nor a
    # branch predictor to go cold, so the bytecode is judged at the control step's warm cost
    # (timed both ways in the session); the cold figure is shown as the host's upper bound.
    cold, warm = load["control_step_us"], load["control_step_warm_us"]
    if not (cold > 0 and warm > 0):
        row.update(measured=False, why="the control step was not timed")
        return row
    row["warm_over_cold"] = round(min(1.0, warm / cold), 3)
    # The control step's warm/cold ratio stands for every task's steps: an approximation.
    row["load_rp2040_warm"] = round((steps_byte * row["warm_over_cold"] + scheduler) * factors["rp2040"]
                                    + c_us / wall_us * factors["c"], 3)
    row["judged"] = round(row["load_rp2040_warm"] + row["pilot_samples_rp2040"], 3)
    row["pass"] = row["judged"] <= LOAD_LIMIT
    return row


def _print(figures: dict) -> None:
    print("timing: the flash image's Python block device costs littlefs %d ns a call here: taken off, with its "
          "body; a board's C one goes in as C (%s us a call at RP2040 speed, a read's copy at %s bytes/us: estimates)"
          % (figures["block_device_call_ns_host"], BOARD_CALL_US, BOARD_READ_BYTES_PER_US))
    print("timing: pystone under MicroPython here %d/s at the start = x %.0f an RP2040 (~%d/s, estimated), x %.0f "
          "an ESP32 (%d/s, published %d-%d at 240 MHz), C routines x %.0f (%s x the bytecode's, measured on an "
          "emulated ARMv6-M: bench/gc_armv6m); each workload's row is judged at the pystone measured before and after it (its factor in "
          "brackets after the verdict)"
          % (figures["pystone_per_s"], figures["scale_rp2040"], PYSTONE_RP2040, figures["scale_esp32"],
             PYSTONE_ESP32, *PYSTONE_ESP32_PUBLISHED, figures["scale_c"], C_OVER_BYTECODE))
    for warning in figures["scale_warnings"]:
        print("timing: WARNING: " + warning)
    print("%-68s %8s %8s %8s %8s %8s %8s %8s %6s %9s" % (
        "longest task step while ...", "host ms", "of it C", "RP x%.0f" % figures["scale_rp2040"],
        "ESP x%.0f" % figures["scale_esp32"], "RP x%d" % RP2040_X, "ESP x%d" % ESP32_X, "stall RP", "limit",
        "C call RP"))
    rows = [figures["workloads"][key] for key, _, _ in ROWS if key in figures["workloads"]]
    for row in rows + [figures["collection"], *figures["collections_by_board"], figures["control_tick"]]:
        _print_row(row)
    if figures.get("page_faulted"):
        print("timing: %d steps or stalls not judged: the process waited for a page the machine had reclaimed"
              % figures["page_faulted"])
    print("timing: the longest step, per run, was a step of (in brackets: its longest call into C, host us, left out "
          "of the step and judged as a C call): " + "; ".join(
              "%s %s" % (key, "/".join(str(who) for who in figures["workloads"][key]["worst_step_of"]))
              for key, _, _ in ROWS if "worst_step_of" in figures["workloads"].get(key, {})) + " (!: resumed by an exception)")
    print("timing: C call RP: the workload's longest single call into C (no slicing of the firmware's work can cut "
          "one), at RP2040 speed, judged as the TLS handshake against the %d ms close: " % BLOCK_LIMIT_MS + "; ".join(
              "%s %s %.1f ms" % (key, figures["workloads"][key]["c_call"]["of"], figures["workloads"][key]["c_call"]["rp2040_ms"])
              for key, _, _ in ROWS if "c_call" in figures["workloads"].get(key, {})))
    tls = figures["workloads"].get("connect_tls", {})
    if "host_x_c_rp2040_ms" in tls:
        print("timing: the TLS handshake on an RP2040, its public-key work measured on the emulated ARMv6-M "
              "(bench/gc_armv6m/tls): %.0f ms at 1.8 cycles an instruction (%.0f at 1.37), with an intermediate CA "
              "%.0f; this host's handshake x C, the server's half inside the call: %.0f (not judged)"
              % (tls["rp2040_ms"], tls["rp2040_fast_ms"], tls["with_an_intermediate_ca_rp2040_ms"],
                 tls["host_x_c_rp2040_ms"]))
    frame = figures["workloads"]["big_frame"]
    if "answer" in frame:
        print("%d KB frame: the charge point %s; the link was %s" % (
            FRAME_DATA_BYTES // 1024, _answer_text(frame),
            "kept" if frame.get("link_kept") else "dropped: %s" % frame.get("link_lost")))
    load = figures["load"]
    if load.get("measured", True) is False:
        print("%s: not measured: %s" % (load["label"], load["why"]))
    else:
        print("%s: %.2f %% of this CPU over %.0f s (%d ticks, %d task steps, %.2f %% in C), judged warm (the control "
              "step %.1f us in a tight loop, the median of 9, as pystone runs, against %.1f us in the session): %.0f %% of an RP2040 "
              "(x%.0f); with its pilot samples (%.0f %%): %.0f %% (limit %.0f %%): %s; on the host's cold caches "
              "%.0f %%, %.0f %% of an ESP32"
              % (load["label"], 100 * load["load_host"], load["wall_ms"] / 1000, load["ticks"], load["steps"],
                 100 * load["load_c_host"], load["control_step_warm_us"], load["control_step_us"],
                 100 * load["load_rp2040_warm"], load.get("scale_rp2040", figures["scale_rp2040"]), 100 * load["pilot_samples_rp2040"],
                 100 * load["judged"], 100 * LOAD_LIMIT, "pass" if load["pass"] else "FAIL",
                 100 * load["with_pilot_samples_cold"], 100 * load["load_esp32"]))
        by_task = sorted(load.get("by_task", {}).items(), key=lambda item: -item[1][0])
        if by_task:
            print("timing: the load's task steps, by coroutine (keep: a task App.keep restarts): " + ", ".join(
                "%s %.0f %% (%d steps)" % (name, 100 * us / max(load["steps_us"], 1), steps)
                for name, (us, steps) in by_task))
    print("timing: of it C: the part of the step in MicroPython's C routines (littlefs files, json, hashlib, os; "
          "the TLS handshake's and a collection's rows are C as a whole), x%.0f on an RP2040 (%s x its bytecode's); the rest is bytecode, "
          "RP/ESP xN: pystone-derived (the verdicts), x%d/x%d: DESIGN.md's fixed factors; stall RP: the loop's "
          "longest stall (the steps of one round and asyncio between them) at RP2040 speed, not judged (rows timed "
          "directly: -); not modelled: flash erase times, real DNS round trips" % (figures["scale_c"], C_OVER_BYTECODE,
                                                                                  RP2040_X, ESP32_X))


def _cell(value, places: int = 1) -> str:
    return "-" if value is None else "%.*f" % (places, value)


def _print_row(row: dict) -> None:
    if row.get("measured") is False:
        print("%-68s not measured: %s" % (row["label"], row["why"]))
        return
    stall = row.get("stall")
    verdict = row.get("verdict") or ("pass" if row["pass"] else "FAIL")
    print("%-68s %8s %8s %8s %8s %8s %8s %8s %6s %9s  %s%s" % (
        row["label"], _cell(row["worst_ms_host"], 3), _cell(row["c_ms_host"], 3), _cell(row["rp2040_ms"]),
        _cell(row["esp32_ms"]), _cell(row[f"rp2040_fixed_x{RP2040_X}_ms"]), _cell(row[f"esp32_fixed_x{ESP32_X}_ms"]),
        "-" if stall is None else "%.1f" % stall["rp2040_ms"], "%g" % row["limit_ms"] if "limit_ms" in row else "-",
        _cell(row["c_call"]["rp2040_ms"]) if "c_call" in row else "-", verdict, "" if "pystone_per_s" not in row else " (RP x%.0f)" % (row["pystone_per_s"] / PYSTONE_RP2040)))
