"""Firmware logic imports under CPython too: firmware/ on the path and a `micropython` shim."""
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))

if "micropython" not in sys.modules:
    try:
        import micropython  # noqa: F401
    except ImportError:
        shim = types.ModuleType("micropython")
        shim.const = lambda value: value
        sys.modules["micropython"] = shim

# `make test` (and CI) runs the same examples every time, so a landing never depends on luck;
# `make unit ARGS=--hypothesis-profile=explore` searches new ones, many more of them.
from hypothesis import settings  # noqa: E402

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", max_examples=2000, derandomize=False)
settings.load_profile("default")
