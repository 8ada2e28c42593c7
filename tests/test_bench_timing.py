"""make bench's timing section: the garbage collection rows come from the memory section's
session at each RP2040 board's own heap, and are judged as C at the step limit."""
from bench import timing


def memory(p99_us, install="romfs"):
    return {"boards": {"rp2040-pico": {"install": "mpy", "collections": {"count": 10, "p99_us": 480, "max_us": 900,
                                                                         "heap_bytes": 400 * 1024}},
                       "rp2040-pico-w": {"install": install, "collections": {"count": 20, "p99_us": p99_us,
                                                                             "max_us": 3000, "heap_bytes": 700 * 1024}}}}


def test_each_rp2040_board_s_collection_is_judged_at_the_c_factor_against_the_step_limit():
    f = timing._factors(timing.PYSTONE_BASIS)   # the brief's machine: C x 100
    rows = timing._board_collections(memory(600), f)
    assert [r["label"].split(" at ")[1].split("'")[0] for r in rows] == list(timing.RP2040_BOARDS)
    pico, pico_w = rows
    assert pico["rp2040_ms"] == 48.0 and pico["pass"]
    assert pico_w["rp2040_ms"] == 60.0 and not pico_w["pass"]
    assert "romfs" in pico_w["label"] and "700 KB" in pico_w["label"]


def test_a_board_the_memory_section_did_not_measure_is_not_measured_and_says_why():
    rows = timing._board_collections({"boards": {"rp2040-pico": {"error": "MemoryError at boot"}}},
                                     timing._factors(timing.PYSTONE_BASIS))
    assert [r["measured"] for r in rows] == [False, False]
    assert rows[0]["why"] == "MemoryError at boot" and "run make bench" in rows[1]["why"]
    assert all(not r.get("pass", False) for r in timing._board_collections(None, timing._factors(1000)))
