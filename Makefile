# Every target bootstraps .venv with the pinned tools; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOARD ?= sim-ac2
ARGS ?=
# Tests run in parallel: most HIL tests wait on real time, not on the CPU.
JOBS ?= 4
# The safety, gun, console and meter HIL tests run again on the emulated MCU boards, whose
# firmware is what `evsectl flash` installs, on the board's own port HAL.
MCU_BOARDS := rp2040-pico esp32-devkitc
MCU_HIL := hil_tests/test_pilot_hil.py hil_tests/test_console_hil.py hil_tests/test_metering_hil.py
# Stubs of the two MCU ports live apart: both ship their own `machine`.
STUBS_RP2 := $(VENV)/stubs/rp2
STUBS_ESP32 := $(VENV)/stubs/esp32

.PHONY: setup run test unit hil bench typecheck flash clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --target $(STUBS_RP2) --upgrade micropython-rp2-stubs==1.29.0.post1
	$(BIN)/python -m pip install -q --disable-pip-version-check --target $(STUBS_ESP32) --upgrade micropython-esp32-stubs==1.29.0.post1
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/evsectl demo --board $(BOARD) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup tests hil_tests $(ARGS)
	for board in $(MCU_BOARDS); do $(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup --board $$board $(MCU_HIL) $(ARGS) || exit 1; done

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests $(ARGS)

hil: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup hil_tests $(ARGS)
	for board in $(MCU_BOARDS); do $(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup --board $$board $(MCU_HIL) $(ARGS) || exit 1; done

# The heap section compares with a 32-bit MicroPython: the WebAssembly port, pinned, from npm.
NPM_MP := $(VENV)/npm/node_modules/@micropython/micropython-webassembly-pyscript

bench: $(STAMP)
	@if command -v npm >/dev/null && [ ! -d $(NPM_MP) ]; then npm install --no-audit --no-fund --prefix $(VENV)/npm @micropython/micropython-webassembly-pyscript@1.27.0; fi
	$(BIN)/python -m bench $(ARGS)

typecheck: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_hal_typecheck.py

# evsectl flash: compile for the board, write what changed, verify, start it (docs/bring-up.md).
flash: $(STAMP)
	$(BIN)/evsectl flash --board $(BOARD) $(if $(PORT),--port $(PORT)) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench/out
