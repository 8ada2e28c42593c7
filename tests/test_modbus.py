"""The firmware's Modbus RTU master (evse.modbus): frames against known vectors and captures of
real meters, any garbage rejected with a ModbusError (never another exception), exception
responses named, and the asyncio transaction's timeouts, retries and draining against a scripted
bus on a virtual clock."""
import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse import matrix, modbus
from evse.modbus import ExceptionResponse, FrameError, ModbusError, Timeout
from host_tools.sim.modbus import crc16 as reference_crc16
from host_tools.sim.modbus import seal
from virtual_clock import Clock

H = bytes.fromhex


def answer(slave, function, data):
    return seal(bytes((slave, function, len(data))) + bytes(data))


# --- CRC and frames ----------------------------------------------------------------------------

def test_crc_is_crc16_modbus_by_its_catalogue_check_value():
    assert modbus.crc16(b"123456789") == 0x4B37  # the CRC catalogue's check value for CRC-16/MODBUS


@given(st.binary(max_size=300))
def test_crc_table_version_equals_the_bitwise_definition(data):
    assert modbus.crc16(data) == reference_crc16(data)


@pytest.mark.parametrize("request_, frame", [
    # Captured on a real Acrel DJSF1352-RN (EN+ meter_drv_djsf1352.c, "measured" frames).
    (lambda: modbus.read_request(1, 0x03, 0x0000, 6), "01 03 00 00 00 06 C5 C8"),
    (lambda: modbus.read_request(1, 0x03, 0x0008, 2), "01 03 00 08 00 02 45 C9"),
    (lambda: modbus.read_request(1, 0x03, 0x000C, 8), "01 03 00 0C 00 08 84 0F"),
    (lambda: modbus.write_request(1, 0x001E, [0x1703, 0x130E, 0x1800]), "01 10 00 1E 00 03 06 17 03 13 0E 18 00 AE 80"),
])
def test_requests_are_byte_for_byte_what_real_masters_send(request_, frame):
    assert bytes(request_()) == H(frame)


def test_captured_answers_of_real_meters_are_accepted_and_decoded():
    # Eastron SDM630 phase 1 voltage, Tasmota xnrg_10_sdm630.ino: "= 230.2 Volt".
    sdm = H("01 04 04 43 66 33 34 1B 38")
    assert modbus.check_response(modbus.read_request(1, 0x04, 0x0000, 2), sdm) == 3
    assert modbus.float32(sdm[3:], 0) == pytest.approx(230.2, abs=1e-4)
    # Acrel DJSF1352-RN voltage, current, broken wire, temperature 33.3 degC (EN+ capture).
    djsf = H("01 03 0C 00 00 00 03 00 00 00 02 00 00 01 4D 3F E5")
    assert modbus.check_response(modbus.read_request(1, 0x03, 0x0000, 6), djsf) == 3
    assert [modbus.uint16(djsf[3:], i) for i in range(6)] == [0, 3, 0, 2, 0, 0x014D]
    # The write's echo.
    assert modbus.check_response(modbus.write_request(1, 0x001E, [0x1703, 0x130E, 0x1800]),
                                 H("01 10 00 1E 00 03 E0 0E")) == 0


def test_coil_and_input_frames_are_the_application_protocols_own_examples():
    # Modbus Application Protocol V1.1b3, 6.1, 6.2 and 6.11 (their examples, with slave 1 and a CRC).
    assert bytes(modbus.read_request(1, modbus.READ_COILS, 0x0013, 19)) == seal(H("01 01 00 13 00 13"))
    coils = seal(H("01 01 03 CD 6B 05"))
    request = modbus.read_request(1, modbus.READ_COILS, 0x0013, 19)
    assert modbus.response_length(request) == len(coils)
    assert modbus.check_response(request, coils) == 3
    # "The status of outputs 27-20 is shown as the byte value CD hex, or binary 1100 1101."
    assert [matrix.bit(coils[3:], i) for i in range(8)] == [1, 0, 1, 1, 0, 0, 1, 1]
    inputs = seal(H("01 02 03 AC DB 35"))
    assert modbus.check_response(modbus.read_request(1, modbus.READ_DISCRETE, 0x00C4, 22), inputs) == 3
    assert [matrix.bit(inputs[3:], i) for i in range(16, 22)] == [1, 0, 1, 0, 1, 1]   # 35 hex: 0011 0101
    # 6.11: coils 20-29 set to CD 01.
    bits = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    write = matrix.write_coils_request(1, 0x0013, bits)
    assert bytes(write) == seal(H("01 0F 00 13 00 0A 02 CD 01"))
    assert modbus.check_response(write, seal(H("01 0F 00 13 00 0A"))) == 0
    with pytest.raises(FrameError, match="echo"):
        modbus.check_response(write, seal(H("01 0F 00 13 00 09")))


@given(st.integers(1, 247), st.sampled_from([modbus.READ_COILS, modbus.READ_DISCRETE]), st.integers(1, 2000),
       st.data())
def test_any_valid_bit_answer_round_trips(slave, function, count, data):
    request = modbus.read_request(slave, function, 0, count)
    packed = data.draw(st.binary(min_size=(count + 7) // 8, max_size=(count + 7) // 8))
    frame = seal(bytes((slave, function, len(packed))) + packed)
    assert modbus.check_response(request, frame) == 3
    assert [matrix.bit(frame[3:], i) for i in range(count)] == [(packed[i // 8] >> (i % 8)) & 1 for i in range(count)]


@given(st.lists(st.booleans(), min_size=1, max_size=64))
def test_a_coil_write_carries_every_bit_in_order(bits):
    frame = matrix.write_coils_request(7, 0x0100, bits)
    assert frame[6] == (len(bits) + 7) // 8 and len(frame) == 9 + frame[6]
    assert [matrix.bit(frame[7:-2], i) == 1 for i in range(len(bits))] == bits


reads = st.tuples(st.integers(1, 247), st.sampled_from([0x03, 0x04]), st.integers(0, 0xFF80), st.integers(1, 125))


@given(reads, st.data())
def test_any_valid_answer_round_trips(req, data):
    slave, function, address, count = req
    request = modbus.read_request(slave, function, address, count)
    registers = data.draw(st.binary(min_size=2 * count, max_size=2 * count))
    frame = answer(slave, function, registers)
    assert modbus.check_response(request, frame) == 3
    assert frame[3:-2] == registers


@settings(max_examples=500)
@given(reads, st.binary(max_size=300))
def test_garbage_raises_a_modbus_error_and_nothing_else(req, garbage):
    request = modbus.read_request(*req)
    try:
        offset = modbus.check_response(request, garbage)
    except ModbusError as e:
        assert "slave %d" % req[0] in str(e)
    else:  # only ever a real answer: right slave, function, length and CRC
        assert offset == 3 and len(garbage) == 5 + 2 * req[3] and garbage[:2] == bytes(req[:2])


@given(reads, st.data())
def test_every_truncation_is_rejected(req, data):
    slave, function, address, count = req
    request = modbus.read_request(*req)
    frame = answer(slave, function, bytes(2 * count))
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(FrameError):
        modbus.check_response(request, frame[:cut])


@given(reads, st.data())
def test_every_burst_of_up_to_16_flipped_bits_is_rejected(req, data):
    slave, function, address, count = req
    request = modbus.read_request(*req)
    frame = bytearray(answer(slave, function, data.draw(st.binary(min_size=2 * count, max_size=2 * count))))
    at = data.draw(st.integers(0, len(frame) - 2))
    mask = data.draw(st.integers(1, 0xFFFF))  # CRC-16 catches every burst of 16 bits or less
    frame[at] ^= mask >> 8
    frame[at + 1] ^= mask & 0xFF
    with pytest.raises(FrameError):
        modbus.check_response(request, frame)


@given(reads, st.binary(min_size=1, max_size=20), st.booleans())
def test_junk_before_or_after_a_valid_answer_is_rejected(req, junk, before):
    slave, function, address, count = req
    request = modbus.read_request(*req)
    frame = answer(slave, function, bytes(2 * count))
    with pytest.raises(FrameError):
        modbus.check_response(request, junk + frame if before else frame + junk)


@pytest.mark.parametrize("frame, words", [
    (answer(2, 0x04, bytes(4)), "comes from address 2"),
    (answer(1, 0x03, bytes(4)), "answer to function 0x03, asked 0x04"),
    (answer(1, 0x04, bytes(6)), "frame of 11 bytes, expected 9"),
    (seal(bytes((1, 0x04, 6)) + bytes(4)), "byte count 6 in a frame of 9 bytes"),
    (H("01 04"), "short frame of 2 bytes"),
    (H("01 04 04 43 66 33 34 1B 39"), "CRC mismatch"),
])
def test_wrong_answers_with_a_good_crc_get_a_clear_error(frame, words):
    with pytest.raises(FrameError, match=words):
        modbus.check_response(modbus.read_request(1, 0x04, 0, 2), frame)


def test_a_wrong_write_echo_is_rejected():
    request = modbus.write_request(1, 0x10, [1, 2])
    with pytest.raises(FrameError, match="echo"):
        modbus.check_response(request, seal(H("01 10 00 10 00 03")))


@pytest.mark.parametrize("code, name", [(1, "illegal function"), (2, "illegal data address"),
                                        (3, "illegal data value"), (4, "server device failure"),
                                        (6, "server device busy"), (11, "gateway target device failed to respond"),
                                        (99, "unknown code")])
def test_exception_responses_name_the_code(code, name):
    request = modbus.read_request(7, 0x04, 0x48, 2)
    with pytest.raises(ExceptionResponse) as e:
        modbus.check_response(request, seal(bytes((7, 0x84, code))))
    assert e.value.code == code and e.value.slave == 7 and e.value.function == 0x04
    assert str(e.value) == "slave 7 refused function 0x04: exception %02d (%s)" % (code, name)


@pytest.mark.parametrize("build, words", [
    (lambda: modbus.read_request(0, 4, 0, 1), "slave address must be 1..247, not 0"),
    (lambda: modbus.read_request(248, 4, 0, 1), "not 248"),
    (lambda: modbus.read_request(1, 6, 0, 1), r"0x03 \(holding\) or 0x04 \(input\), not 6"),
    (lambda: modbus.read_request(1, 4, 0, 126), "126 registers: allowed 1..125"),
    (lambda: modbus.read_request(1, 4, 0xFFFF, 2), "outside 0..0xFFFF"),
    (lambda: modbus.write_request(1, 0, []), "0 registers: allowed 1..123"),
    (lambda: modbus.write_request(1, 0, [0x10000]), "0x10000|65536"),
])
def test_bad_requests_are_refused_naming_the_input(build, words):
    with pytest.raises(ValueError, match=words):
        build()


@given(st.integers(0, 0xFFFFFFFF))
def test_32_bit_decoders_in_both_word_orders(value):
    regs = struct.pack(">I", value)
    swapped = regs[2:] + regs[:2]
    assert modbus.uint32(regs, 0) == modbus.uint32(swapped, 0, swapped=True) == value
    assert modbus.int32(regs, 0) == struct.unpack(">i", regs)[0]
    assert modbus.int16(regs, 0) == struct.unpack(">h", regs[:2])[0]


@pytest.mark.parametrize("baud, silence_ms", [(1200, 33), (9600, 5), (19200, 3), (38400, 2), (115200, 2)])
def test_frame_silence_is_3_5_characters_or_1_75_ms_above_19200_baud(baud, silence_ms):
    assert modbus.Master(None, baud).silence_ms == silence_ms


# --- the transaction, on a virtual clock ---------------------------------------------------------

class ScriptedBus:
    """The far end of the line: each request written gets the next scripted answer. An answer is
    bytes (arriving `delay_ms` later, one byte per `byte_ms` as on a 9600 baud wire), None (no
    answer) or (delay_ms, bytes)."""

    def __init__(self, clock, answers, delay_ms=20, byte_ms=1):
        self.clock = clock
        self.answers = list(answers)
        self.delay_ms = delay_ms
        self.byte_ms = byte_ms
        self.requests = []
        self.line = []  # (due_ms, byte)

    def write(self, buf):
        self.requests.append(bytes(buf))
        script = self.answers.pop(0) if self.answers else None
        if script is None:
            return len(buf)
        delay, data = script if isinstance(script, tuple) else (self.delay_ms, script)
        start = self.clock.ms + delay
        self.line += [(start + i * self.byte_ms, b) for i, b in enumerate(data)]
        self.line.sort(key=lambda item: item[0])  # one wire: bytes arrive in time order
        return len(buf)

    def read(self):
        ready = [b for due, b in self.line if due <= self.clock.ms]
        self.line = [(due, b) for due, b in self.line if due > self.clock.ms]
        return bytes(ready) or None


class ScriptedBusReadinto(ScriptedBus):
    """The same line behind a stream with readinto(), which the master prefers (no allocation)."""

    def readinto(self, buf):
        ready = [b for due, b in self.line if due <= self.clock.ms][:len(buf)]
        self.line = self.line[len(ready):]
        buf[:len(ready)] = bytes(ready)
        return len(ready) or None


def run_master(answers, call, readinto=False, **options):
    clock = Clock()
    kind = ScriptedBusReadinto if readinto else ScriptedBus
    bus = kind(clock, answers, **{k: options.pop(k) for k in ("delay_ms", "byte_ms") if k in options})
    master = modbus.Master(bus, 9600, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms, **options)
    try:
        return asyncio.run(call(master)), bus, master
    except ModbusError as e:
        return e, bus, master


GOOD = answer(5, 0x04, H("43 66 33 34"))


def read_voltage(master):
    return master.read_input(5, 0x0000, 2)


@pytest.mark.parametrize("readinto", [False, True])
def test_a_good_answer_is_read_even_one_byte_per_millisecond(readinto):
    data, bus, master = run_master([GOOD], read_voltage, readinto=readinto, timeout_ms=100)
    assert data == H("43 66 33 34") and len(bus.requests) == 1 and master.requests == 1


def test_silence_is_retried_then_the_answer_taken():
    data, bus, master = run_master([None, None, GOOD], read_voltage, timeout_ms=100, retries=2)
    assert data == H("43 66 33 34") and len(bus.requests) == 3 and master.timeouts == 2


def test_a_slave_that_never_answers_times_out_after_every_attempt():
    error, bus, master = run_master([], read_voltage, timeout_ms=100, retries=2)
    assert isinstance(error, Timeout) and str(error) == "slave 5: no answer within 100 ms"
    assert len(bus.requests) == 3 and master.timeouts == 3


def test_a_garbled_answer_is_retried():
    garbled = GOOD[:-1] + b"\x00"
    data, bus, master = run_master([garbled, GOOD], read_voltage, timeout_ms=100)
    assert data == H("43 66 33 34") and master.bad_frames == 1


def test_a_refusal_is_raised_at_once_without_retrying():
    error, bus, master = run_master([seal(H("05 84 02")), GOOD], read_voltage, timeout_ms=100)
    assert isinstance(error, ExceptionResponse) and error.code == 2 and len(bus.requests) == 1


def test_a_busy_slave_is_asked_again():
    data, bus, master = run_master([seal(H("05 84 06")), GOOD], read_voltage, timeout_ms=100)
    assert data == H("43 66 33 34") and len(bus.requests) == 2 and master.refusals == 1


@pytest.mark.parametrize("readinto", [False, True])
def test_a_late_answer_waiting_in_the_receiver_is_drained_not_taken_for_the_next_one(readinto):
    stale = answer(5, 0x04, H("00 00 00 00"))

    async def two_polls(master):
        with pytest.raises(Timeout):
            await master.read_input(5, 0, 2)  # the meter answers at 150 ms, after the timeout
        await master.stream.clock.sleep_ms(500)  # the next poll, the stale answer in the receiver
        return await master.read_input(5, 0, 2)

    data, bus, master = run_master([(150, stale), (30, GOOD)], two_polls, readinto=readinto,
                                   timeout_ms=100, retries=0)
    assert data == H("43 66 33 34") and len(bus.requests) == 2


@pytest.mark.parametrize("readinto", [False, True])
def test_a_gap_longer_than_t3_5_inside_an_answer_ends_the_frame(readinto):
    data, bus, master = run_master([GOOD], read_voltage, readinto=readinto, timeout_ms=100, byte_ms=10, retries=0)
    assert isinstance(data, FrameError) and "short frame of 1 bytes" in str(data)


@pytest.mark.parametrize("readinto", [False, True])
def test_a_line_that_never_goes_quiet_fails_the_transaction_instead_of_hanging_it(readinto):
    babble = bytes(range(256)) * 8  # a stuck transmitter: 2 s of bytes
    error, bus, master = run_master([babble], read_voltage, readinto=readinto, timeout_ms=100, retries=3)
    assert isinstance(error, FrameError) and "never goes quiet" in str(error)
    assert len(bus.requests) == 1  # no retry was sent into the noise


def test_the_master_leaves_t3_5_of_silence_after_an_answer_before_the_next_request():
    clock = Clock()
    bus = ScriptedBus(clock, [GOOD, GOOD])
    sent_ms = []
    write = bus.write
    bus.write = lambda buf: sent_ms.append(clock.ms) or write(buf)
    master = modbus.Master(bus, 9600, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)

    async def two_reads():
        await master.read_input(5, 0, 2)
        await master.read_input(5, 0, 2)

    asyncio.run(two_reads())
    last_byte_ms = sent_ms[0] + bus.delay_ms + len(GOOD) - 1
    assert sent_ms[1] >= last_byte_ms + master.silence_ms


answers = st.one_of(st.none(), st.binary(max_size=40), st.just(GOOD), st.just(seal(H("05 84 06"))),
                    st.just(seal(H("05 84 02"))), st.tuples(st.integers(0, 400), st.binary(max_size=20)))


@settings(max_examples=300, deadline=None)
@given(st.lists(answers, max_size=4), st.integers(0, 3), st.booleans())
def test_any_line_behaviour_ends_in_data_or_a_modbus_error(script, retries, readinto):
    result, bus, master = run_master(script, read_voltage, readinto=readinto, timeout_ms=100, retries=retries)
    assert result == H("43 66 33 34") or isinstance(result, ModbusError)
    assert 1 <= len(bus.requests) <= 1 + retries


def test_other_tasks_run_while_a_transaction_waits():
    class Silent:
        def write(self, buf):
            return len(buf)

        def read(self):
            return None

    master = modbus.Master(Silent(), 9600, timeout_ms=80, retries=1)
    ticks = []

    async def ticker():
        while True:
            ticks.append(1)
            await asyncio.sleep(0.005)

    async def main():
        task = asyncio.create_task(ticker())
        with pytest.raises(Timeout):
            await master.read_input(1, 0, 2)
        task.cancel()

    asyncio.run(main())
    assert len(ticks) >= 10  # the 160 ms of waiting left the loop to the other task


def test_concurrent_callers_share_the_bus_one_transaction_at_a_time():
    clock = Clock()

    class TwoMeters(ScriptedBus):
        def write(self, buf):
            slave = buf[0]
            self.answers = [answer(slave, 0x04, bytes((slave,)) * 4)]
            return super().write(buf)

    bus = TwoMeters(clock, [])
    master = modbus.Master(bus, 9600, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)

    async def main():
        return await asyncio.gather(*(master.read_input(s, 0, 2) for s in (1, 2, 3, 1)))

    assert asyncio.run(main()) == [b"\x01" * 4, b"\x02" * 4, b"\x03" * 4, b"\x01" * 4]
    assert master.timeouts == master.bad_frames == 0


def test_reading_into_a_buffer_fills_it_without_allocating_a_result():
    buf = bytearray(4)
    clock = Clock()
    bus = ScriptedBus(clock, [GOOD])
    master = modbus.Master(bus, 9600, ticks_ms=clock.ticks_ms, sleep_ms=clock.sleep_ms)
    assert asyncio.run(master.read_input(5, 0, 2, into=buf)) is buf and buf == H("43 66 33 34")


def test_a_write_is_confirmed_by_its_echo():
    request = modbus.write_request(5, 0x14, [0x4000, 0])
    echo = seal(request[:6])
    result, bus, master = run_master([echo], lambda m: m.write_registers(5, 0x14, [0x4000, 0]), timeout_ms=100)
    assert result is None and bus.requests == [bytes(request)]
