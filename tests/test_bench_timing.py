"""make bench's timing section: the garbage collection rows come from the memory section's
session at each RP2040 board's own heap: judged by the collector measured on ARMv6-M from what
was live at the peak, and shown (not judged) as the session's collections here times C."""
from bench import timing


def memory(p99_us, install="romfs", live_w=127000):
    return {"boards": {"rp2040-pico": {"install": "mpy", "heap_kb": 234, "peak_board_bytes": 96000,
                                       "collections": {"count": 10, "p99_us": 480, "max_us": 900,
                                                       "heap_bytes": 400 * 1024}},
                       "rp2040-pico-w": {"install": install, "heap_kb": 190, "peak_board_bytes": live_w,
                                         "collections": {"count": 20, "p99_us": p99_us,
                                                         "max_us": 3000, "heap_bytes": 700 * 1024}}}}


def test_each_rp2040_board_s_collection_is_judged_by_the_armv6m_collector_from_what_its_peak_held():
    f = timing._factors(timing.PYSTONE_RP2040 * 100 / timing.C_OVER_BYTECODE)   # a machine where C is x 100
    rows = timing._board_collections(memory(600), f)
    judged = [r for r in rows if "verdict" not in r]
    shown = [r for r in rows if r.get("verdict") == "reference"]
    assert [r["label"].split(" at ")[1].split("'")[0] for r in judged] == list(timing.RP2040_BOARDS)
    pico, pico_w = judged
    # 359,000 + 12.99 x 127,000 + 2.15 x (194,560 - 205,184) instructions at 1.8 cycles, 125 MHz
    assert pico_w["rp2040_ms"] == 28.6 and pico_w["rp2040_fast_ms"] == 21.8 and pico_w["pass"]
    assert pico["rp2040_ms"] < pico_w["rp2040_ms"] and pico["pass"]
    # The session's collections here x C: shown, never judged (the virtual board's heap is not the board's).
    assert [r["rp2040_ms"] for r in shown] == [48.0, 60.0] and not any("pass" in r for r in shown)
    assert "romfs" in shown[1]["label"] and "700 KB" in shown[1]["label"]
    # A peak that held more (a bigger board's heap): over the step limit.
    assert not timing._board_collections(memory(600, live_w=260000), f)[2]["pass"]


def test_the_collector_s_time_grows_with_what_is_live_and_with_the_heap():
    slow = [timing.collection_ms_rp2040(live, 200000)[1] for live in (60000, 100000, 140000)]
    assert slow == sorted(slow) and slow[0] > 10
    assert timing.collection_ms_rp2040(100000, 400000) > timing.collection_ms_rp2040(100000, 200000)


def test_a_board_the_memory_section_did_not_measure_is_not_measured_and_says_why():
    rows = timing._board_collections({"boards": {"rp2040-pico": {"error": "MemoryError at boot"}}},
                                     timing._factors(timing.PYSTONE_RP2040))
    assert [r["measured"] for r in rows] == [False, False]   # one row each: neither is measured
    assert rows[0]["why"] == "MemoryError at boot" and "run make bench" in rows[1]["why"]
    assert all(not r.get("pass", False) for r in timing._board_collections(None, timing._factors(1000)))


def test_a_step_is_judged_without_its_longest_c_call_which_is_judged_apart_as_a_c_block():
    f = timing._factors(timing.PYSTONE_RP2040)   # bytecode x 1, C x C_OVER_BYTECODE
    measured = {"worst_us": [30000, 40000, 50000], "c_us": [20000, 30000, 40000], "call_us": [15000, 25000, 38000]}
    host_ms, c_ms, call_ms = timing._median_run(measured, timing.STEP, f)
    # judged: 10 + 5 x 1.4 = 17, 10 + 5 x 1.4 = 17, 10 + 2 x 1.4 = 12.8 (ms): the median is one of the 17s
    assert (host_ms, c_ms) in ((30.0, 20.0), (40.0, 30.0)) and call_ms == c_ms - 5.0
    row = timing._scaled(host_ms, f, c_ms, call_ms)
    assert row["rp2040_ms"] == 17.0 and row["call_rp2040_ms"] == round(call_ms * timing.C_OVER_BYTECODE, 1)
    # The TLS handshake's row is C as a whole: nothing left out.
    assert timing._median_run(measured, timing.C_BLOCK, f)[2] == 0
    details = [{"longest_c_call": [15000, "import evse.ocpp.ops (_reader)"]}, {"longest_c_call": [0, None]}, {},
               {"longest_c_call": [9000, "json.loads 3846B (_reader)"]},
               {"longest_c_call": [2000000, "socket.write (_write)"]}]   # the machine's noise, once: not the median
    block = timing._c_call(details, f)
    assert block["of"] == "import evse.ocpp.ops (_reader)" and block["rp2040_ms"] == 21.0 and block["pass"]
    slow = timing._c_call([{"longest_c_call": [timing.BLOCK_LIMIT_MS * 1000, "json.loads 8000B"]}], f)
    assert not slow["pass"]
    assert timing._c_call([{}], f) is None


def test_the_tls_row_is_judged_by_the_handshake_measured_on_armv6m_and_shows_the_host_s_times_c():
    fast, slow = timing.tls_handshake_ms_rp2040()
    # 2 x 31.864 M + 30.627 M instructions at 1.37 and 1.8 cycles, 125 MHz
    assert round(fast) == 1034 and round(slow) == 1359
    row = timing._tls_measured({"rp2040_ms": 3977.3})
    assert row["rp2040_ms"] == round(slow, 1) and row["host_x_c_rp2040_ms"] == 3977.3
    assert row["with_an_intermediate_ca_rp2040_ms"] > row["rp2040_ms"] + 400
    assert timing._judged(row, timing.BLOCK_LIMIT_MS)["pass"]
