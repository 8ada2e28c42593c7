"""The SECC link's parser and writer (firmware/evse/hal/secc.py) against docs/secc-link.md, under
CPython: whatever bytes arrive, in whatever pieces, it never raises, keeps a bounded buffer, takes
exactly the newest line with a good checksum of each gun and accepts it when it is well formed.
The oracle here is written from the document with regular expressions, apart from the parser.
Also: the virtual board's SECC model (host_tools/sim/secc.py) against the parser and the world,
its rig op, and the board file checks of "secc" and guns[].dc_v."""
import json
import re
from functools import reduce
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evse.dcseq import Ev
from evse.hal import secc
from host_tools.sim import secc as model

GUNS = 3
LIMITS = [(1000, 500, 150)] * GUNS
NUMBER = r"(\d{1,5})(?:\.(\d{1,2}))?"
EV_BODY = re.compile(r"EV,(\d{1,5}),(?:(-)|(cable_check|precharge|charge|stop)" + ("," + NUMBER) * 6 + ")")


class Uart:
    """Bytes arrive in the pieces a test gives; readinto takes at most what any() said."""

    def __init__(self):
        self.pending = bytearray()
        self.written = []

    def any(self):
        return len(self.pending)

    def readinto(self, buf, nbytes):
        n = min(nbytes, len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        del self.pending[:n]
        return n or None

    def write(self, data):
        self.written.append(bytes(data))
        return len(data)


def seal(body):
    return b"$%s*%02X\r\n" % (body, reduce(lambda x, c: x ^ c, body, 0))


def hundredths(whole, frac):
    return int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)


def oracle(data):
    """Per gun index, what ev() must give after `data` arrived: None (no line taken), False (its
    newest line with a good checksum is malformed) or (phase, six numbers in hundredths)."""
    newest = {}
    for raw in data.split(b"\n")[:-1]:   # the last piece has no LF yet: not a line
        if b"$" not in raw:
            continue
        line = raw[raw.rfind(b"$"):]
        if line.endswith(b"\r") and len(line) > 1:
            line = line[:-1]
        m = re.fullmatch(rb"\$(EV,(\d{1,5}),.*)\*([0-9A-Fa-f]{2})", line, re.S)
        if m is None or len(line) > secc.LINE_MAX or int(m[3], 16) != reduce(lambda x, c: x ^ c, m[1], 0):
            continue
        if 1 <= int(m[2]) <= GUNS:
            newest[int(m[2]) - 1] = m[1]
    out = {}
    for i, body in newest.items():
        m = EV_BODY.fullmatch(body.decode("latin-1"))
        if m is None or m[2]:
            out[i] = False if m is None else ("-",)
            continue
        numbers = tuple(hundredths(m[4 + 2 * k], m[5 + 2 * k]) for k in range(6))
        out[i] = False if numbers[5] > 10000 else (m[3],) + numbers
    return out


def take(pieces, link, uart):
    """Each piece arrives, then polls take it."""
    for piece in pieces:
        uart.pending += piece
        while uart.any():
            link.poll(0)
            assert link._fill <= secc.LINE_MAX + 1   # the buffer keeps at most one line's start


def link_for_oracle(uart):
    """A Link that looks at every line of a poll, so the oracle (every line) is what it must do;
    split_for_oracle's pieces each fit its buffer, so every poll's lines are the newest."""
    return secc.Link(uart, LIMITS, look_max=10 ** 6)


def check_against_oracle(data, link):
    expect = oracle(data)
    for i in range(GUNS):
        ev = Ev()
        before = (link.phase[i], list(link.numbers[i * 6:i * 6 + 6]))
        talking = link.ev(i, ev, 0)
        want = expect.get(i)
        if want is None or want is False:
            assert not talking and (link.phase[i], list(link.numbers[i * 6:i * 6 + 6])) == before, (i, want)
        elif want == ("-",):
            assert not talking and link.phase[i] == 0 and link.heard_ms[i] == 0
        else:
            assert talking and ev.phase == want[0]
            got = [round(v * 100) for v in (ev.battery_v, ev.max_v, ev.target_v, ev.target_a, ev.max_a, ev.soc)]
            assert got == list(want[1:])


digits = st.text("0123456789", min_size=1, max_size=5)
numbers = st.builds(lambda w, f: w + ("." + f if f else ""), digits, st.text("0123456789", max_size=2))
phases = st.sampled_from(secc.PHASES)


@st.composite
def well_formed(draw):
    gun = draw(st.integers(1, GUNS))
    if draw(st.booleans()) and draw(st.booleans()):
        return b"EV,%d,-" % gun
    values = draw(st.lists(numbers, min_size=6, max_size=6))
    values[5] = draw(st.sampled_from(["0", "42.5", "100", "99.99", "7.1"]))
    return ("EV,%d,%s,%s" % (gun, draw(phases), ",".join(values))).encode()


@st.composite
def line_noise(draw):
    """What a line may carry: good lines, lines with a byte changed, cut short, run together,
    without their LF, random bytes."""
    parts = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 6))
        line = seal(draw(well_formed()))
        if kind == 1:   # a byte changed
            k = draw(st.integers(0, len(line) - 1))
            line = line[:k] + bytes([draw(st.integers(0, 255))]) + line[k + 1:]
        elif kind == 2:   # cut short
            line = line[:draw(st.integers(0, len(line) - 1))]
        elif kind == 3:
            line = draw(st.binary(max_size=100))
        elif kind == 4:   # LF only, or no line end at all
            line = line[:-2] + draw(st.sampled_from([b"\n", b""]))
        elif kind == 5:   # too long for a line, its checksum good
            line = seal(line[1:-5] + b"0" * draw(st.integers(0, 120)))
        parts.append(line)
    return b"".join(parts)


def split(data, cuts):
    """data in pieces at the cuts, none longer than what a poll's buffer takes at once."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    room = secc.RX_BYTES - secc.LINE_MAX - 1
    return [piece[k:k + room] for a, b in zip([0] + points, points + [len(data)])
            for piece in [data[a:b]] for k in range(0, max(len(piece), 1), room)]


# Bytes, and a soup of the protocol's own pieces: "$" starts, line ends, checksums, fields.
TOKENS = [b"$", b"\n", b"\r\n", b"*", b",", b"EV,", b"EV,1,", b"EV,2,charge,", b"-", b"*00", b".", b"9" * 30]
arbitrary = st.one_of(st.binary(max_size=3000),
                      st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=40)), max_size=300).map(b"".join))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary, st.lists(st.integers(0, 3000), max_size=20))
def test_arbitrary_bytes_never_raise_keep_the_buffer_bounded_and_take_only_good_lines(data, cuts):
    uart = Uart()
    link = link_for_oracle(uart)
    take(split(data, cuts), link, uart)
    check_against_oracle(data, link)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(line_noise(), st.lists(st.integers(0, 1500), max_size=10))
def test_on_a_noisy_line_each_gun_gets_its_newest_good_line_in_whatever_pieces_it_comes(data, cuts):
    uart = Uart()
    link = link_for_oracle(uart)
    take(split(data, cuts), link, uart)
    check_against_oracle(data, link)


@given(well_formed(), st.binary(max_size=200).map(lambda b: b.replace(b"$", b"") + b"\n"), st.booleans())
def test_every_well_formed_line_is_accepted_with_its_values_after_any_noise(body, noise, crlf):
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    line = seal(body) if crlf else seal(body)[:-2] + b"\n"
    take([noise + line], link, uart)
    gun = int(body.split(b",")[1])
    ev = Ev()
    assert link.ev(gun - 1, ev, 0) == (b",-" not in body)
    assert link.accepted == 1 and link.heard_ms[gun - 1] == 0
    check_against_oracle(noise + line, link)


@given(well_formed(), st.integers(1, 255))
def test_a_line_whose_checksum_is_wrong_is_never_taken(body, wrong):
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    line = seal(body)
    good = int(line[-4:-2], 16)
    take([line[:-4] + b"%02X\r\n" % (good ^ wrong)], link, uart)
    for i in range(GUNS):
        assert not link.ev(i, Ev(), 0)
    assert link.accepted == 0 and link.rejected == 1


def test_a_malformed_line_with_a_good_checksum_is_counted_and_leaves_the_last_values():
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    ev = Ev()
    take([seal(b"EV,1,charge,400.0,450.0,440.0,100.00,375.00,42.0")], link, uart)
    assert link.ev(0, ev, 0) and ev.target_a == 100.0
    for bad in (b"EV,1,charge,400.0,450.0,440.0,1.000,375.00,42.0", b"EV,1,charge,400,450,440,1,375",
                b"EV,1,charging,400,450,440,1,375,42", b"EV,1,charge,400,450,440,1,375,100.01",
                b"EV,1,-,400", b"EV,4,stop,1,1,1,1,1,1"):
        take([seal(bad)], link, uart)
        assert link.ev(0, ev, 10) and ev.target_a == 100.0, bad
    assert link.accepted == 1 and link.rejected == 6


def test_a_line_longer_than_80_bytes_is_dropped_even_with_a_good_checksum_and_spares_the_others():
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    pending = seal(b"EV,3,charge,400.0,450.0,440.0,1.5,375,42")
    for size in (secc.LINE_MAX + 1, 300, 500):   # bytes from "$" to the checksum
        body = b"EV,2,charge,1,1,1,1,1,1" + b"0" * (size - 27)
        assert len(seal(body).rstrip()) == size
        take([pending, seal(body)], link, uart)
        assert not link.ev(1, Ev(), 0)
        ev = Ev()
        assert link.ev(2, ev, 0) and ev.target_a == 1.5
    assert link.rejected == 3 and link.accepted == 3


@given(st.binary(max_size=200), st.integers(0, 2000), st.sampled_from([b"\n", b"\r\n", b"$\n", b"$EV,1,stop*00\n"]))
def test_a_flood_of_line_ends_costs_a_poll_at_most_16_lines_and_the_newest_good_line_still_counts(noise, count, piece):
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    calls = []
    looked_at = link._line
    link._line = lambda *args: calls.append(args) or looked_at(*args)
    take([noise + piece * count + seal(b"EV,2,precharge,380.0,420.0,380.0,0,200,55.5")], link, uart)
    assert len(calls) <= secc.LOOK_MAX * -(-(len(noise) + len(piece) * count + 60) // secc._POLL_MAX)
    ev = Ev()
    assert link.ev(1, ev, 0) and ev.phase == "precharge"


def test_a_backlog_larger_than_a_poll_leaves_the_rest_for_the_next_and_looks_at_its_newest_lines():
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    uart.pending += seal(b"EV,1,stop,1,1,1,1,1,1") * 60 + seal(b"EV,1,charge,1,1,1,1,1,1")
    link.poll(0)
    assert 0 < uart.any() < 60 * 30 and link.accepted + link.rejected == 0 and link.skipped > 0
    link.poll(0)
    ev = Ev()
    assert uart.any() == 0 and link.ev(0, ev, 0) and ev.phase == "charge"


def test_the_ev_goes_silent_a_second_after_its_last_good_line():
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    ev = Ev()
    take([seal(b"EV,2,precharge,380.0,420.0,380.0,0,200,55.5")], link, uart)
    assert link.ev(1, ev, 999) and ev.phase == "precharge" and ev.soc == 55.5
    assert not link.ev(1, ev, 1000) and not ev.talking and ev.phase is None
    assert not link.ev(0, ev, 0)   # a gun the SECC never spoke of
    # Forgotten once silent: days later the port's tick difference wraps, which must not revive it.
    assert link.heard_ms[1] is None and link.phase[1] == 0


@given(st.sampled_from(model.STATES), st.sampled_from([None, "valid", "warning", "fault"]),
       st.floats(0, 1e6), st.floats(0, 1e6), st.integers(1, GUNS))
def test_the_charger_line_is_what_the_secc_model_reads(state, isolation, volts, amps, gun):
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    link.present_v[gun - 1], link.present_a[gun - 1] = volts, amps
    link.tell(gun - 1, state, isolation, 0)
    m = model.CHARGER_LINE.fullmatch(uart.written[0].rstrip(b"\n"))
    assert m and int(m[10], 16) == model.checksum(m[1]) and int(m[2]) == gun
    assert m[3].decode() == state and m[4].decode() == (isolation or "-")
    assert abs(float(m[5]) - min(volts, 99999.9)) <= 0.05 and [float(m[k]) for k in (7, 8, 9)] == [1000, 500, 150]


def test_the_charger_line_repeats_every_200_ms_once_told_and_goes_out_at_once_on_a_change():
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    link.repeat(0)
    assert uart.written == []   # nothing told yet: nothing to repeat
    link.tell(0, "idle", None, 0)
    for t in (50, 199, 200, 250, 399, 400):
        link.repeat(t)
    assert [w[:12] for w in uart.written] == [b"$CS,1,idle,-"] * 3
    link.tell(0, "cable_check", None, 410)
    assert uart.written[-1].startswith(b"$CS,1,cable_check,-,")


def test_the_documents_example_lines_are_what_each_side_takes():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "secc-link.md").read_text()
    exchange = doc[doc.index("## An exchange"):doc.index("## On the virtual board")]
    lines = re.findall(r"(SECC|ctrl) -> (\S+)", exchange)
    assert len(lines) == 8
    for who, line in lines:
        if who == "ctrl":
            m = model.CHARGER_LINE.fullmatch(line.encode())
            assert m and int(m[10], 16) == model.checksum(m[1]), line
            continue
        uart = Uart()
        link = secc.Link(uart, LIMITS)
        take([line.encode() + b"\r\n"], link, uart)
        link.ev(0, Ev(), 0)
        assert link.accepted == 1, line


def dc_world():
    from host_tools.sim.world import EV, World
    board = json.loads((Path(__file__).resolve().parents[1] / "boards" / "sim-dc2.json").read_text())
    world = World(board)
    g = world.guns[0]
    g.plugged, g.ev = True, EV(kind="dc", battery_v=380, max_v=420, max_kw=100, soc=42.5)
    g.ev_phase = "charge"
    return world


def test_the_secc_models_lines_say_what_the_sim_hals_g_says_and_its_garbage_is_never_taken():
    world = dc_world()
    counts = {"received": 0, "rejected": 0, "sent": 0}
    secc_model = model.Secc(world, counts)
    lines = secc_model.due(0.0, None)
    assert secc_model.due(0.05, None) == b""   # the next ones 100 ms later ...
    world.guns[1].ev_phase = "cable_check"
    world.guns[1].ev = world.guns[0].ev
    assert secc_model.due(0.06, None).startswith(b"$EV,2,cable_check,")   # ... or at a phase change
    uart = Uart()
    link = secc.Link(uart, LIMITS)
    take([lines], link, uart)
    ev = Ev()
    assert link.ev(0, ev, 0) and not link.ev(1, Ev(), 0)
    g_reply = world.hal_request("G 1").split()
    assert [ev.phase, ev.battery_v, ev.max_v, ev.target_v, ev.target_a, ev.max_a, ev.soc] == \
        [g_reply[0]] + [float(v) for v in g_reply[1:]]
    link = secc.Link(uart, LIMITS)
    take([secc_model.due(1.0 + k, "garbage") for k in range(20)], link, uart)
    assert link.rejected >= 20 and not any(link.ev(i, Ev(), 0) for i in range(GUNS))
    assert secc_model.due(30.0, "silent") == b""
    world.powered = False
    assert secc_model.due(40.0, None) == b""


def test_the_charger_line_reaches_the_world_as_the_sim_hals_h_does_and_a_bad_one_does_not():
    world = dc_world()
    counts = {"received": 0, "rejected": 0, "sent": 0}
    secc_model = model.Secc(world, counts)
    uart = Uart()
    link = secc.Link(uart, [(920, 300, 150), (920, 300, 150)])
    link.present_v[0] = 371.44
    link.tell(0, "precharge", "valid", 0)
    reports = {}
    line = uart.written[-1]
    secc_model.feed(line[:10], reports)   # in pieces, as a UART gives them
    secc_model.feed(line[10:] + b"$CS,1,faulted,-,0,0,1,1,1*00\r\n", reports)
    g = world.guns[0]
    assert (g.evse_state, g.evse_isolation) == ("precharge", "valid")
    assert reports[1] == {"state": "precharge", "isolation": "valid", "present_v": 371.4, "present_a": 0.0,
                          "max_v": 920.0, "max_a": 300.0, "max_kw": 150.0}
    assert counts == {"received": 1, "rejected": 1, "sent": 0}
    assert [e["value"] for e in world.events if e["what"] == "evse_state"] == ["precharge"]


def test_the_rig_op_secc_mutes_the_model_and_reset_lets_it_speak_again():
    from host_tools.sim import control

    class Board:
        serial_path = "/dev/null"
        secc = model.SeccServer(dc_world())

        def firmware_state(self):
            return "running"
    board = Board()
    try:
        world = board.secc.world
        reply = control.handle_line(world, json.dumps({"op": "secc", "fault": "garbage"}), board)
        assert reply["ok"] and reply["fault"] == "garbage" and board.secc.fault == "garbage"
        assert not control.handle_line(world, json.dumps({"op": "secc", "fault": "loud"}), board)["ok"]
        control.handle_line(world, json.dumps({"op": "reset"}), board)
        assert board.secc.fault is None
        reply = control.handle_line(dc_world(), json.dumps({"op": "secc"}), object())
        assert not reply["ok"] and "has no SECC link" in reply["error"]
    finally:
        board.secc.close()


@pytest.mark.parametrize("name, change, says", [
    ("rp2040-pico", lambda b: b["secc"].update(uart=2), 'secc.uart = 2: name the index of an entry of the "uart"'),
    ("rp2040-pico", lambda b: b["secc"].update(uart=0), "secc.uart = 0: that UART has an RS-485 driver (de)"),
    ("esp32-devkitc", lambda b: b["guns"][0].update(meter={"model": "sdm630", "uart": 1, "address": 1}),
     "secc.uart = 1: that UART is also guns[0].meter's"),
    ("rp2040-pico", lambda b: b["secc"].update(baud=0), "secc.baud must be"),
    ("rp2040-pico", lambda b: b["guns"][1]["dc_v"].update(mux=4), "guns[1].dc_v.mux = 4: give a CD4051 channel"),
    ("rp2040-pico", lambda b: b["guns"][0]["dc_v"].update(v_per_mv=0), "guns[0].dc_v.v_per_mv must be"),
    ("esp32-devkitc", lambda b: b["guns"][0]["dc_v"].update(pin=21), "guns[0].dc_v.pin = 21: GPIO 21 of the esp32 has no ADC"),
    ("esp32-devkitc", lambda b: b["guns"][0]["dc_v"].update(pin=36), "guns[0].dc_v.pin = 36: GPIO 36 is already"),
])
def test_a_board_files_secc_or_dc_v_the_mcu_cannot_have_is_refused_naming_the_key(name, change, says):
    from host_tools.sim import frontend
    from test_secc_mpy import secc_board
    board = secc_board(name)
    frontend.check_board(board)
    change(board)
    with pytest.raises(frontend.BoardFileError, match=re.escape(says)):
        frontend.check_board(board)
