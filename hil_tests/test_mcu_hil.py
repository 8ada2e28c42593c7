"""The RP2040 and ESP32 boards on the virtual board: the firmware as `evsectl flash` installs it,
with the board's own port HAL on an emulated MCU (docs/virtual-board.md). The safety, gun and
console tests run on these boards too (`make test` runs them with --board); here is what only
these boards have: meters on the emulated UART behind RS-485, and board files the MCU refuses."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import fresh_rig, run_sim
from rigkit import Dut, Events, now_ms, start_charging, wait_booted

REPO = Path(__file__).resolve().parents[1]
EVSECTL = str(Path(sys.executable).parent / "evsectl")
MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def board_file(tmp_path, name, change=None):
    board = json.loads((REPO / "boards" / f"{name}.json").read_text())
    if change:
        change(board)
    path = tmp_path / f"{name}-variant.json"
    path.write_text(json.dumps(board))
    return path


@pytest.fixture
def metered_pico(request, tmp_path):
    """rp2040-pico with an SDM630 per gun on its RS-485 UART (uart.meter: UART0, DE on GP15)."""
    def with_meters(board):
        for n, gun in enumerate(board["guns"]):
            gun["meter"] = {"model": "sdm630", "uart": 0, "address": n + 1, "baud": 9600}
    path = board_file(tmp_path, "rp2040-pico", with_meters)
    for info in run_sim(request, str(path), tmp_path / "flash"):
        r = fresh_rig(info["control"])
        d = Dut(info["serial"])
        yield r, d
        d.close()
        r.close()


@pytest.mark.virtual_only("starts an RP2040 virtual board with meters of its own")
def test_an_rp2040_board_reads_its_meters_over_the_emulated_uart_and_a_silent_one_stops_its_gun(metered_pico):
    rig, dut = metered_pico
    events = Events(rig)
    start_charging(rig, events, max_a=16)
    rig.wait_for(lambda guns: guns[0]["energy_wh"] > 3, 20, what="3 Wh through gun 1")
    status = dut.wait_status(lambda s: s["guns"][0]["energy_wh"] >= 2 and s["guns"][0]["meter_ok"], 10)
    assert status["guns"][0]["energy_wh"] <= rig.gun(1)["energy_wh"] + 1  # read from the meter, not estimated
    t = now_ms(rig)
    rig.meter(gun=1, fault="silent")
    dut.wait_status(lambda s: s["guns"][0]["fault"] == "METER", 15)
    events.first(t, 1, "contactor", "open", timeout_s=2)
    rig.meter(gun=1, fault=None)
    events.first(now_ms(rig), 1, "contactor", "closed", timeout_s=20)


@pytest.mark.parametrize("name, change, message", [
    ("rp2040-pico", lambda b: b["guns"][1]["pins"].update(feedback=6),
     "guns[1].pins.feedback = 6: GPIO 6 is already guns[0].pins.contactor"),
    ("rp2040-pico", lambda b: b["guns"][0]["pins"].update(pilot_adc=30), "the rp2040 has no usable GPIO 30"),
    ("rp2040-pico", lambda b: b["guns"][0]["pins"].update(pilot_adc=22), "GPIO 22 of the rp2040 has no ADC"),
    ("esp32-devkitc", lambda b: b["guns"][0]["pins"].update(contactor=34), "GPIO 34 of the esp32 is input only"),
    ("esp32-devkitc", lambda b: b["adc"].update(pilot_offset_mv=2500), "adc.pilot_gain 0.088 and adc.pilot_offset_mv 2500"),
])
def test_evsectl_sim_refuses_a_board_file_the_mcu_cannot_run_and_names_the_key(tmp_path, name, change, message):
    path = board_file(tmp_path, name, change)
    done = subprocess.run([EVSECTL, "sim", "--board", str(path), "--flash", str(tmp_path / "flash")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "flash" / "flash.img").exists()  # nothing was programmed, nothing ran


@pytest.mark.virtual_only("writes a broken board file onto an RP2040 virtual board of its own")
def test_a_board_file_with_colliding_pins_stops_the_boot_and_nothing_is_driven(request, tmp_path):
    for info in run_sim(request, "rp2040-pico", tmp_path / "flash"):
        rig = fresh_rig(info["control"])
        port = info["serial"]
        dut = Dut(port)
        try:
            board = json.loads((REPO / "boards" / "rp2040-pico.json").read_text())
            board["guns"][1]["pins"]["rcd_fault"] = board["guns"][0]["pins"]["rcd_test"]
            subprocess.run([MPREMOTE, "connect", port, "exec",
                            f"f=open('board.json','w'); f.write({json.dumps(board)!r}); f.close()"],
                           capture_output=True, timeout=30, check=True)
            t = now_ms(rig)
            dut.flush()
            subprocess.run([MPREMOTE, "connect", port, "reset"], capture_output=True, timeout=30)
            out = dut.read_until(b"give each its own pin", 15)
            assert b"guns[1].pins.rcd_fault = 9: that GPIO is already guns[0].pins.rcd_test" in out
            rig.plug(gun=1, ev={"max_a": 16})
            time.sleep(2)
            driven = [e for e in Events(rig).since(t) if e["what"] == "contactor" or
                      (e["what"] == "duty" and e["value"] not in (None, 0.0))]
            assert not driven, driven  # no PWM offered, no coil: the guns stay off
        finally:
            dut.close()
            rig.close()


@pytest.mark.virtual_only("the emulated MCU's watchdog")
def test_a_stuck_firmware_is_reset_by_the_emulated_watchdog(request, tmp_path):
    """The WDT the firmware starts (5 s) is the chip's: stop feeding it and the board resets."""
    for info in run_sim(request, "esp32-devkitc", tmp_path / "flash"):
        rig = fresh_rig(info["control"])
        dut = Dut(info["serial"])
        try:
            t = now_ms(rig)
            dut.write(b"\x03")  # the REPL: the watchdog keeps running and nobody feeds it
            dut.read_until(b">>> ", 5)
            reset = Events(rig).first(t, 0, "watchdog", "reset", timeout_s=10)
            assert 4500 <= reset["t_ms"] - t <= 7000
            wait_booted(rig)
        finally:
            dut.close()
            rig.close()


def _on_board(port, code):
    done = subprocess.run([MPREMOTE, "connect", port, "exec", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
@pytest.mark.virtual_only("starts an ESP32 virtual board with a ROMFS partition of its own")
def test_a_romfs_install_round_trips_through_evsectl_flash_and_mpremote_romfs(request, tmp_path):
    """esp32-devkitc is installed as a ROMFS image (hardware.install romfs): the factory put the
    package in the partition and only main.py, boot.py and board.json on littlefs. `evsectl
    flash` writes a changed package as a new image by `mpremote romfs deploy`, removes a package
    left on littlefs (it would be imported first), and the board boots from the new image."""
    import shutil
    firmware = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", firmware, ignore=shutil.ignore_patterns("__pycache__"))
    for info in run_sim(request, "esp32-devkitc", tmp_path / "flash"):
        rig = fresh_rig(info["control"])
        port = info["serial"]
        try:
            wait_booted(rig)
            query = subprocess.run([MPREMOTE, "connect", port, "romfs", "query"], capture_output=True, text=True,
                                   timeout=60)
            assert "ROMFS image size:" in query.stdout, query.stdout + query.stderr
            where = _on_board(port, "import os, evse.log\nprint(evse.log.__file__, 'evse' in os.listdir('/'))")
            assert where.endswith("/rom/evse/log.mpy False"), where
            # A package on littlefs (an .mpy install before) must go: "" comes first on sys.path.
            _on_board(port, "import os\nos.mkdir('evse')\nopen('evse/log.py', 'w').write('STALE = 1')")
            log = firmware / "evse" / "log.py"
            log.write_text(log.read_text() + "\nROMFS_TEST = 1\n")
            done = subprocess.run([EVSECTL, "flash", "--board", "esp32-devkitc", "--port", port, "--firmware",
                                   str(firmware), "--json", "--quiet"], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            result = json.loads(done.stdout.strip().splitlines()[-1])
            assert result["removed"] == ["evse/log.py"]
            assert "mpremote romfs deploy" in done.stdout and "verified the ROMFS image" in done.stdout
            assert "KiB of heap" not in done.stdout   # the firmware with OCPP fits it from ROMFS
            wait_booted(rig)
            assert _on_board(port, "import evse.log\nprint(evse.log.ROMFS_TEST)").endswith("1")
            again = subprocess.run([EVSECTL, "flash", "--board", "esp32-devkitc", "--port", port, "--firmware",
                                    str(firmware), "--quiet"], capture_output=True, text=True, timeout=300)
            assert again.returncode == 0 and "ROMFS image" in again.stdout and "up to date" in again.stdout, \
                again.stdout + again.stderr
        finally:
            rig.close()


@pytest.mark.virtual_only("starts an RP2040 virtual board of its own")
def test_flash_romfs_onto_a_micropython_without_a_romfs_partition_is_refused_and_says_how(request, tmp_path):
    for info in run_sim(request, "rp2040-pico", tmp_path / "flash"):
        rig = fresh_rig(info["control"])
        try:
            wait_booted(rig)
            done = subprocess.run([EVSECTL, "flash", "--board", "rp2040-pico", "--port", info["serial"], "--romfs",
                                   "--quiet"], capture_output=True, text=True, timeout=300)
            assert done.returncode == 1
            assert "no ROMFS partition" in done.stderr and "docs/bring-up.md" in done.stderr, done.stderr
            wait_booted(rig)   # the refused flash left the charger running
        finally:
            rig.close()


@pytest.mark.virtual_only("starts a virtual board with a WLAN, with the central system of its own")
@pytest.mark.parametrize("name", ["rp2040-pico-w", "esp32-wrover", "rp2350-pico2-w", "esp32-devkitc"])
def test_a_wlan_board_joins_and_runs_a_remote_session_with_the_central_system(request, tmp_path, csms_server, name):
    """rp2040-pico-w (the rp2 HAL joins the CYW43's WLAN), esp32-wrover (the PSRAM's heap),
    rp2350-pico2-w and esp32-devkitc (the WROOM's 110 KiB, its code from ROMFS), each at its
    measured heap: the HAL joins the WLAN from wifi.json (the factory wrote it) and the charge point
    talks to the central system over it; every frame is schema-valid."""
    from host_tools.csms.client import CsmsClient
    csms = CsmsClient(csms_server.api)
    csms.set(boot_status="Accepted", interval=300, refuse=[])
    t0 = csms.now_ms()
    try:
        for info in run_sim(request, name, tmp_path / "flash", "--csms", csms_server.ws):
            rig = fresh_rig(info["control"])
            try:
                boot = csms.wait("BootNotification", cp=name, since_ms=t0, timeout_s=30)
                assert boot["frame"][3]["chargePointModel"] == name
                t = csms.now_ms()
                rig.plug(gun=1, ev={"max_a": 16, "phases": 3, "response_s": 1})
                reply = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "AA11"}, cp=name)
                assert reply["payload"]["status"] == "Accepted"
                csms.wait("StartTransaction", cp=name, since_ms=t, timeout_s=15)
                Events(rig).first(now_ms(rig) - 15000, 1, "contactor", "closed", timeout_s=15)
                tx = [x for x in csms.transactions() if x["cp"] == name][-1]["transactionId"]
                stop = csms.call("RemoteStopTransaction", {"transactionId": tx}, cp=name)
                assert stop["payload"]["status"] == "Accepted"
                end = csms.wait("StopTransaction", cp=name, since_ms=t, timeout_s=15)["frame"][3]
                assert end["transactionId"] == tx and end["reason"] == "Remote"
                assert not csms.invalid_frames(since_ms=t0)
            finally:
                rig.close()
    finally:
        csms.close()


@pytest.mark.slow
@pytest.mark.virtual_only("starts an ESP32 virtual board with a ROMFS partition, with the central system of its own")
def test_an_ocpp_firmware_update_of_a_romfs_board_writes_its_new_image_to_the_partition(request, tmp_path, csms_server):
    """esp32-devkitc runs its package from a ROMFS image: UpdateFirmware with a bundle built for it
    (fwbundle --romfs) stages the new image on littlefs, and at the boot after the install
    romfs_update.py writes it to the partition before anything runs from /rom and mounts it; the
    board boots the new version from the new image, and says Installed."""
    from host_tools.csms.client import CsmsClient
    from test_ocpp_profiles_hil import assert_installed, firmware_bundle, iso_in, sent
    csms = CsmsClient(csms_server.api)
    csms.set(boot_status="Accepted", interval=300, refuse=[])
    name = "esp32-devkitc"
    url = firmware_bundle(csms, tmp_path, "0.1.1-romfs", "fw-romfs.bin", romfs_board=name)
    t0 = csms.now_ms()
    try:
        for info in run_sim(request, name, tmp_path / "flash", "--csms", csms_server.ws):
            rig = fresh_rig(info["control"])
            try:
                boot = csms.wait("BootNotification", cp=name, since_ms=t0, timeout_s=30)["frame"][3]
                old = boot["firmwareVersion"]
                t = csms.now_ms()
                assert csms.call("UpdateFirmware", {"location": url, "retrieveDate": iso_in(0)}, cp=name)["payload"] == {}
                deadline = time.monotonic() + 90
                while True:
                    boots = [b for b in sent(csms, t, "BootNotification") if b["chargePointModel"] == name]
                    if boots and boots[-1]["firmwareVersion"] == "0.1.1-romfs":
                        break
                    assert time.monotonic() < deadline, (old, boots, sent(csms, t, "FirmwareStatusNotification"))
                    time.sleep(0.3)
                assert_installed(csms, t)
                where = _on_board(info["serial"], "import os, evse\nprint(evse.VERSION, evse.__file__, "
                                                  "sorted(n for n in os.listdir('/') if n.startswith('evse')))")
                assert where.endswith("0.1.1-romfs /rom/evse/__init__.mpy []"), where
                assert not csms.invalid_frames(since_ms=t0)
            finally:
                rig.close()
    finally:
        csms.close()


@pytest.mark.virtual_only("the virtual board's heap probe (make bench's memory section)")
def test_the_heap_probe_reports_what_is_live_after_the_steps_of_a_running_board(tmp_path):
    import os
    from host_tools.sim.supervisor import sim_process
    probe = tmp_path / "heap-probe"
    with sim_process("rp2040-pico", tmp_path / "flash", env={**os.environ, "EVSE_SIM_HEAP_PROBE": str(probe)}) as info:
        rig = fresh_rig(info["control"])
        try:
            wait_booted(rig)
            deadline = time.monotonic() + 20   # ten looks: 2 s on an idle machine, more under load
            while True:
                fields = probe.read_bytes().split()
                peak, heap, looks = (int(x) for x in fields[:3])
                if looks >= 10 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            code = rig.info()["code_heap_bytes"]
            assert looks >= 10 and code < peak < heap      # the firmware's code is live, and more
            # Its collections are timed (the timing section's rows at the board's heap): as many
            # as it had looked at its last write, a 99th percentile in 10 us bins, not over the longest.
            collections, p99_us, max_us = (int(x) for x in fields[4:7])
            assert 1 <= collections <= looks and p99_us % 10 == 0 and 0 < p99_us and p99_us - 10 <= max_us
            # And the firmware's modules loaded at the peak are named (a job's code counts as code).
            loaded = (tmp_path / "heap-probe.modules").read_text().split()
            assert {"evse.app", "evse.hal.rp2", "evse.gun"} <= set(loaded) and "evse.ocpp.cp" not in loaded, loaded
        finally:
            rig.close()
