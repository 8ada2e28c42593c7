# The SECC link (docs/secc-link.md): the line protocol between the controller and the EV's
# communication controller (an SECC module: the PLC modem and the DIN 70121 / ISO 15118-2 stack)
# on a UART. The SECC sends each gun's EV state, "$EV,<gun>,<phase>,<battery_v>,<max_v>,<target_v>,
# <target_a>,<max_a>,<soc>*HH", the controller the charger's, "$CS,<gun>,<state>,<isolation>,
# <present_v>,<present_a>,<max_v>,<max_a>,<max_kw>*HH"; HH is the XOR of the bytes between "$"
# and "*" (NMEA 0183's checksum); a line ends with LF (CR LF is sent).
#
# Link.poll takes what the UART has and never waits for more. Only the newest line of each gun
# matters, and at RP2040 speed each byte a loop of bytecode looks at costs tens of microseconds:
# so a poll goes through the received lines from the newest back (finding them with
# bytearray.rfind, at C speed), checks the checksum of one line per gun and keeps its body in
# the gun's slot; ev() parses a gun's slot when the control loop asks for that gun. The bytes
# stay in preallocated buffers, the values in per-gun arrays. A malformed line (bad checksum, a
# field that is not what the protocol says, longer than LINE_MAX) is dropped and counted, never
# raised.
import time
from array import array

from micropython import const

# MicroPython's wrapping tick difference; under CPython (tests) a plain count of milliseconds.
ticks_diff = getattr(time, "ticks_diff", lambda a, b: a - b)

LINE_MAX = const(80)      # bytes of a line from "$" to its checksum's last digit; longer: dropped
SILENT_MS = const(1000)   # no valid EV line for a gun this long: its EV does not talk
REPEAT_MS = const(200)    # a gun's charger line goes out again once this old (when polled)
RX_BYTES = const(512)     # the receive buffer: the newest bytes of a poll, a line's start kept
_POLL_MAX = const(1024)   # bytes one poll takes at most; the rest waits in the UART's own buffer
LOOK_MAX = const(16)      # lines a poll looks at, newest first: a flood of noise costs no more
_NUMBERS = const(6)       # an EV line's numbers: battery_v, max_v, target_v, target_a, max_a, soc
_FIELDS = const(9)        # EV, gun, phase and the numbers
_SOC_MAX = const(10000)   # 100 %, in hundredths
_NUMBER_MAX = 99999.9     # the most a number on the link can say (five digits before the point)
_DOLLAR = const(0x24)
_STAR = const(0x2A)
_COMMA = const(0x2C)
_DOT = const(0x2E)
_CR = const(0x0D)
_LF = const(0x0A)

# What the EV asks for, as evse.dcseq.Ev.phase says it; phase 0 on the link is "-", no session.
PHASES = ("cable_check", "precharge", "charge", "stop")
_PHASE_BYTES = (b"cable_check", b"precharge", b"charge", b"stop")
# The charger's words (evse.dcseq's steps, the cable check's results) as the line carries them.
_WORDS = {w: w.encode() for w in ("idle", "cable_check", "precharge", "charging", "stopping", "weld_check",
                                  "done", "faulted", "valid", "warning", "fault", "-")}
_HEX = b"0123456789ABCDEF"


def checksum(data, start, end):
    """NMEA 0183's checksum: the XOR of data[start:end]."""
    x = 0
    for k in range(start, end):
        x ^= data[k]
    return x


def _hex(c):
    """One hex digit (either case) -> its value, -1 if c is not one."""
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20
    if 0x61 <= c <= 0x66:
        return c - 0x57
    return -1


def _digits(line, a, b):
    """line[a:b] as a decimal number, -1 unless it is 1 to 5 digits."""
    if b - a < 1 or b - a > 5:
        return -1
    n = 0
    for k in range(a, b):
        d = line[k] - 0x30
        if d < 0 or d > 9:
            return -1
        n = n * 10 + d
    return n


def _number(line, a, b):
    """line[a:b] as hundredths: 1 to 5 digits, then optionally "." and 1 or 2 digits; -1 if it
    is not such a number."""
    dot = line.find(_DOT, a, b)
    if dot < 0:
        whole = _digits(line, a, b)
        return whole * 100 if whole >= 0 else -1
    whole = _digits(line, a, dot)
    frac = _digits(line, dot + 1, b)
    if whole < 0 or frac < 0 or b - dot > 3:
        return -1
    return whole * 100 + (frac * 10 if b - dot == 2 else frac)


def _phase(line, a, b):
    """line[a:b] as a phase: 0 for "-", 1.. for PHASES, -1 if it is neither."""
    if b - a == 1 and line[a] == 0x2D:
        return 0
    for p in range(len(_PHASE_BYTES)):
        name = _PHASE_BYTES[p]
        if len(name) == b - a:
            k = 0
            while k < len(name) and line[a + k] == name[k]:
                k += 1
            if k == len(name):
                return p + 1
    return -1


class Link:
    """The controller's end of the link. `uart`: a machine.UART (any(), readinto(buf, n),
    write()); `limits`: per gun (max_v, max_a, max_kw), what the charger's lines carry."""

    def __init__(self, uart, limits, look_max=LOOK_MAX):
        self._uart = uart
        self._look_max = look_max
        guns = len(limits)
        self.guns = guns
        self.limits = limits
        self._rx = bytearray(RX_BYTES)
        self._rx_view = memoryview(self._rx)
        self._fill = 0          # bytes in _rx: at most a line's start is kept between polls
        # Per gun, its newest EV line with a good checksum not parsed yet (its body: "EV" up to
        # the "*"; length 0: none) and when it came.
        self._slots = bytearray(guns * LINE_MAX)
        self._slot_len = bytearray(guns)
        self._slot_ms = [0] * guns
        self._cuts = array("H", [0] * _FIELDS)   # where each field of the line being parsed ends
        self._scratch = array("i", [0] * _NUMBERS)
        # Per gun, its newest well-formed EV line: its phase (0 "-"), its numbers in hundredths
        # (gun i's at i * 6), and when it came (None: never).
        self.phase = bytearray(guns)
        self.numbers = array("i", [0] * (guns * _NUMBERS))
        self.heard_ms = [None] * guns   # type: list
        # Per gun, what the charger's line says: what ev_report told last (None: nothing yet),
        # the voltage and current measured last, and when the line went out.
        self.state = [None] * guns      # type: list
        self.isolation = [None] * guns  # type: list
        self.present_v = [0.0] * guns
        self.present_a = [0.0] * guns
        self.sent_ms = [0] * guns
        # A charger line is written into one buffer; its fixed end (the gun's limits) and that
        # end's share of the checksum are made once.
        self._tx = bytearray(LINE_MAX + 2)
        self._tx_view = memoryview(self._tx)
        self._tails = [b",%.1f,%.1f,%.1f" % limit for limit in limits]
        self._tail_x = [checksum(tail, 0, len(tail)) for tail in self._tails]
        self.accepted = 0   # well-formed EV lines taken
        self.rejected = 0   # lines looked at and dropped: bad checksum, malformed, unknown gun, too long
        self.skipped = 0    # EV lines not looked at: a newer good one of the same gun came in the same poll
        self.ignored = 0    # good lines of another kind (a newer SECC's): not for this firmware
        self.sent = 0       # charger lines written

    # ---- from the SECC ------------------------------------------------------------------------
    def poll(self, now_ms):
        """Take what the UART has received, at most _POLL_MAX bytes: never waits. When more is
        waiting than the buffer holds, only the lines of the last buffer's worth are looked at:
        the newest."""
        uart = self._uart
        taken = 0
        n = uart.any()
        while n:
            room = RX_BYTES - self._fill
            got = uart.readinto(self._rx_view[self._fill:], n if n < room else room)
            if not got:
                return
            self._fill += got
            taken += got
            n = uart.any() if taken < _POLL_MAX else 0
            self._lines(now_ms, not n)

    def _lines(self, now_ms, look):
        # The complete lines, newest first (at most look_max of them, and none unless `look`);
        # then keep only what may still become a line: the bytes from the last "$" after the
        # last LF, if they are few enough for one.
        rx = self._rx
        fill = self._fill
        last = rx.rfind(_LF, 0, fill)
        seen = 0   # bit i: gun index i's newest good line of this batch is in its slot
        end = last if look else -1
        left = self._look_max
        while end >= 0 and left:
            prev = rx.rfind(_LF, 0, end)
            start = rx.rfind(_DOLLAR, prev + 1, end)
            if start >= 0:   # else noise between two line ends
                seen = self._line(start + 1, end - 1 if end > start + 1 and rx[end - 1] == _CR else end, seen, now_ms)
            end = prev
            left -= 1
        keep = rx.rfind(_DOLLAR, last + 1, fill)
        if keep < 0 or fill - keep > LINE_MAX + 1:   # + its CR
            if keep >= 0:
                self.rejected += 1
            self._fill = 0
        else:
            if keep:
                rx[0:fill - keep] = rx[keep:fill]
            self._fill = fill - keep

    def _line(self, a, b, seen, now_ms):
        """The line rx[a:b] after its "$" -> seen, with its gun's bit set if its body went to
        the gun's slot (its checksum checked: ev() parses it)."""
        rx = self._rx
        star = b - 3
        if b - a + 1 > LINE_MAX or star < a or rx[star] != _STAR:
            self.rejected += 1
            return seen
        i = -1
        if star > a + 2 and rx[a] == 0x45 and rx[a + 1] == 0x56 and rx[a + 2] == _COMMA:   # "EV,"
            i = _digits(rx, a + 3, rx.find(_COMMA, a + 3, star)) - 1
            if i < 0 or i >= self.guns:
                self.rejected += 1
                return seen
            if seen >> i & 1:
                self.skipped += 1
                return seen
        hi = _hex(rx[star + 1])
        lo = _hex(rx[star + 2])
        if hi < 0 or lo < 0 or hi << 4 | lo != checksum(rx, a, star):
            self.rejected += 1   # line noise: an older line of the gun in this poll may still count
            return seen
        if i < 0:
            self.ignored += 1
            return seen
        base = i * LINE_MAX
        self._slots[base:base + star - a] = self._rx_view[a:star]
        self._slot_len[i] = star - a
        self._slot_ms[i] = now_ms
        return seen | 1 << i

    def _parse(self, i):
        """Gun index i's slot, "EV,<gun>,-" or "EV,<gun>,<phase>,<six numbers>", into phase[i]
        and its numbers; False (and nothing changed) if a field is not what the protocol says."""
        line = self._slots
        a = i * LINE_MAX
        end = a + self._slot_len[i]
        cuts = self._cuts
        fields = 0
        pos = a
        while fields < _FIELDS:
            cut = line.find(_COMMA, pos, end)
            if cut < 0:
                break
            cuts[fields] = cut
            fields += 1
            pos = cut + 1
        if fields < 2:
            return False
        phase = _phase(line, cuts[1] + 1, end if fields == 2 else cuts[2])
        if phase < 0 or fields != (2 if phase == 0 else _FIELDS - 1):
            return False
        if phase:
            cuts[_FIELDS - 1] = end
            scratch = self._scratch
            for f in range(_NUMBERS):
                value = _number(line, cuts[f + 2] + 1, cuts[f + 3])
                if value < 0:
                    return False
                scratch[f] = value
            if scratch[_NUMBERS - 1] > _SOC_MAX:
                return False
            base = i * _NUMBERS
            numbers = self.numbers
            for f in range(_NUMBERS):
                numbers[base + f] = scratch[f]
        self.phase[i] = phase
        return True

    def ev(self, i, ev, now_ms):
        """Gun index i's EV into an evse.dcseq.Ev: True while it talks (a session, and its last
        well-formed line within SILENT_MS); else ev.talking False and False. Parses the gun's
        newest line first if one came since the last call."""
        if self._slot_len[i]:
            if self._parse(i):
                self.heard_ms[i] = self._slot_ms[i]
                self.accepted += 1
            else:
                self.rejected += 1
            self._slot_len[i] = 0
        heard = self.heard_ms[i]
        phase = self.phase[i]
        if heard is not None and ticks_diff(now_ms, heard) >= SILENT_MS:
            # Silent: forgotten, since days later the tick difference wraps and must not revive it.
            heard = self.heard_ms[i] = None
            self.phase[i] = 0
        if heard is None or phase == 0:
            ev.talking = False
            ev.phase = None
            return False
        numbers = self.numbers
        base = i * _NUMBERS
        ev.talking = True
        ev.phase = PHASES[phase - 1]
        ev.battery_v = numbers[base] / 100
        ev.max_v = numbers[base + 1] / 100
        ev.target_v = numbers[base + 2] / 100
        ev.target_a = numbers[base + 3] / 100
        ev.max_a = numbers[base + 4] / 100
        ev.soc = numbers[base + 5] / 100
        return True

    # ---- to the SECC --------------------------------------------------------------------------
    def tell(self, i, state, isolation, now_ms):
        """What the charger tells gun index i's EV: sent now, and repeated by repeat()."""
        self.state[i] = state
        self.isolation[i] = isolation
        self._send(i, now_ms)

    def repeat(self, now_ms):
        """Send again each gun's line that is REPEAT_MS old (once ev_report has said something)."""
        for i in range(self.guns):
            if self.state[i] is not None and ticks_diff(now_ms, self.sent_ms[i]) >= REPEAT_MS:
                self._send(i, now_ms)

    def _send(self, i, now_ms):
        state = self.state[i]
        isolation = self.isolation[i] or "-"
        body = b"CS,%d,%s,%s,%.1f,%.1f" % (i + 1, _WORDS.get(state) or state.encode(),
                                          _WORDS.get(isolation) or isolation.encode(),
                                          min(self.present_v[i], _NUMBER_MAX), min(self.present_a[i], _NUMBER_MAX))
        tail = self._tails[i]
        tx = self._tx
        n = len(body)
        end = n + len(tail) + 1
        if end + 5 > len(tx):
            return   # a state name no SECC would take: never from evse.dcseq
        tx[0] = _DOLLAR
        tx[1:n + 1] = body
        tx[n + 1:end] = tail
        x = checksum(body, 0, n) ^ self._tail_x[i]
        tx[end] = _STAR
        tx[end + 1] = _HEX[x >> 4]
        tx[end + 2] = _HEX[x & 15]
        tx[end + 3] = _CR
        tx[end + 4] = _LF
        self._uart.write(self._tx_view[:end + 5])
        self.sent_ms[i] = now_ms
        self.sent += 1

    def stats(self):
        return {"accepted": self.accepted, "rejected": self.rejected, "skipped": self.skipped,
                "ignored": self.ignored, "sent": self.sent}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_board(board):
    """An MCU DC board file's SECC link on a UART of its own (no RS-485 driver) and each gun's
    voltage input (evse.config calls it); ValueError naming the key."""
    secc = board.get("secc")
    uarts = board.get("uart") or {}
    index = secc.get("uart") if isinstance(secc, dict) else None
    line = [u for u in uarts.values() if isinstance(u, dict) and u.get("index") == index]
    if not isinstance(index, int) or isinstance(index, bool) or not line:
        raise ValueError('board secc: a DC board on an MCU needs "secc": {"uart": <index>} naming an entry of '
                         'its "uart" section (the EVs\' communication controller, docs/secc-link.md), not %r' % (secc,))
    if "de" in line[0]:
        raise ValueError("board secc: UART %d has an RS-485 driver (de): the SECC link is a UART of its own" % index)
    taken = set()
    for gun in board["guns"]:
        for key in ("pp_mux", "ct_mux", "ntc_mux"):
            taken.add((gun.get("pins") or {}).get(key))
    for i, gun in enumerate(board["guns"]):
        dc_v = gun.get("dc_v")
        where = "board guns[%d].dc_v" % i
        if not isinstance(dc_v, dict):
            raise ValueError('%s: a DC gun on an MCU needs its voltage input: {"pin" or "mux": .., "v_per_mv": .., '
                             '"offset_mv": ..}, not %r' % (where, dc_v))
        v = dc_v.get("v_per_mv")
        if not _is_number(v) or not v > 0 or not _is_number(dc_v.get("offset_mv", 0)):  # type: ignore[operator]
            raise ValueError("%s: v_per_mv must be a number above 0 and offset_mv a number, not %r" % (where, dc_v))
        source = dc_v.get("mux", dc_v.get("pin"))
        if not isinstance(source, int) or isinstance(source, bool):
            raise ValueError("%s: give the ADC GPIO (pin) or the multiplexer channel (mux) as a number" % where)
        if "mux" in dc_v:
            if source in taken:
                raise ValueError("%s: multiplexer channel %d is another input's" % (where, source))
            taken.add(source)
