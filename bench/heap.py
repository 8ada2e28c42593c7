"""make bench's heap section: how many bytes a workload takes on a 32-bit MicroPython (the
WebAssembly port under node: a board's word size) against the 64-bit unix port the virtual
boards run, the firmware's code loaded as .mpy (bytecode, mpy-cross without -march) as
`evsectl flash` installs it, and typical data. The ratios convert the virtual board's heap
figures to a board's (docs/boards.md)."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware" / "evse"
SCRIPT = ROOT / "bench" / "heap_mpy.py"
WASM = ROOT / "bench" / "heap_wasm.mjs"
PACKAGE_DIR = ROOT / ".venv" / "npm"   # make bench installs the pinned package here
ITEMS = {
    "code": "the firmware's code an OCPP board imports (.mpy)",
    "ints": "a list of 1,000 small ints",
    "dict": "a dict of 500 str -> float",
    "objects": "200 objects of 6 attributes",
    "json": "json.loads of 50 objects of 3 strings (6 KB)",
    "bytearray": "bytearray(8192)",
    "bigints": "1,000 ints past 31 bits (millisecond timestamps)",
}
DATA = ("ints", "dict", "objects", "json", "bytearray")


def run() -> dict:
    node = shutil.which("node")
    if node is None:
        return _not_run("no node on this machine: the 32-bit MicroPython (WebAssembly) runs under it")
    if not (PACKAGE_DIR / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").exists():
        return _not_run(f"the WebAssembly MicroPython is not installed under {PACKAGE_DIR} (make bench installs it)")
    with tempfile.TemporaryDirectory(prefix="evse-bench-heap-") as tmp:
        tree = Path(tmp) / "mpy"
        for src in FIRMWARE.rglob("*.py"):
            out = tree / src.relative_to(FIRMWARE.parent).with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), "-s",
                            str(src.relative_to(FIRMWARE.parent)), str(src)], check=True)
        wide = {item: _unix(tree, Path(tmp), item) for item in ITEMS}
        narrow = _wasm(node, tree, list(ITEMS))
    rows = {item: {"label": ITEMS[item], "bytes_32": narrow[item], "bytes_64": wide[item],
                   "ratio": round(narrow[item] / wide[item], 3)} for item in ITEMS}
    data_32 = sum(narrow[item] for item in DATA)
    data_64 = sum(wide[item] for item in DATA)
    out = {"rows": rows, "code_ratio": rows["code"]["ratio"], "data_ratio": round(data_32 / data_64, 3),
           "method": "gc.mem_alloc() after gc.collect(), before and after each workload, each in a fresh "
                     "interpreter with the standard modules loaded first; 32-bit: npm "
                     "@micropython/micropython-webassembly-pyscript under node; 64-bit: the unix port"}
    _print(out)
    return out


def _not_run(why: str) -> dict:
    print(f"heap, 32-bit against 64-bit: not measured: {why}")
    return {"error": why}


def _result(text: str, item: str, where: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[:2] == ["RESULT", item]:
            return int(parts[2])
    raise SystemExit(f"bench heap: {where} gave no figure for {item}:\n{text[-2000:]}")


def _unix(tree: Path, tmp: Path, item: str) -> int:
    script = tmp / f"heap_{item}.py"
    script.write_text(f"ITEM = {item!r}\n" + SCRIPT.read_text())
    done = subprocess.run([str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=4M", str(script)],
                          capture_output=True, text=True, timeout=120,
                          env={"MICROPYPATH": f"{tree}:.frozen", "PATH": "/usr/bin:/bin"})
    return _result(done.stdout + done.stderr, item, "the unix port")


def _wasm(node: str, tree: Path, items: list) -> dict:
    done = subprocess.run([node, str(WASM), str(PACKAGE_DIR), str(tree), *items], capture_output=True,
                          text=True, timeout=300)
    return {item: _result(done.stdout + done.stderr, item, "the WebAssembly port") for item in items}


def _print(out: dict) -> None:
    print("heap, 32-bit (MicroPython WebAssembly) against 64-bit (unix port, the virtual boards):")
    for row in out["rows"].values():
        print("  %-60s %8d %8d  x %.2f" % (row["label"], row["bytes_32"], row["bytes_64"], row["ratio"]))
    print("  a board's heap is x %.2f the virtual board's for the code (.mpy), x %.2f for the data"
          % (out["code_ratio"], out["data_ratio"]))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
