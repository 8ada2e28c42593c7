# Every target bootstraps .venv with the pinned tools; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DEPS := host_tools/interop/node_modules/.package-lock.json
BOARD ?= sim-ac2
ARGS ?=
# Tests run in parallel: most HIL tests wait on real time, not on the CPU. The MCU boards' runs go
# beside the sim run, MCU_JOBS workers each, their output kept in $(TEST_OUT) and shown when they
# end; tests marked `latency` take a lock, so no two of them in any of these runs share the CPU.
JOBS ?= 6
MCU_JOBS ?= 3
TEST_OUT := build/test-out
# The safety, gun, console and meter HIL tests run again on the emulated MCU boards, whose
# firmware is what `evsectl flash` installs, on the board's own port HAL.
MCU_BOARDS := rp2040-pico esp32-devkitc
MCU_HIL := hil_tests/test_pilot_hil.py hil_tests/test_console_hil.py hil_tests/test_metering_hil.py
# Stubs of the two MCU ports live apart: both ship their own `machine`.
STUBS_RP2 := $(VENV)/stubs/rp2
STUBS_ESP32 := $(VENV)/stubs/esp32

.PHONY: setup run test unit quick hil bench typecheck flash clean

setup: $(STAMP) $(NODE_DEPS)

# The interop tests' central system (ocpp-rpc on Node.js 18+), pinned by its package-lock.json.
$(NODE_DEPS): host_tools/interop/package-lock.json
	cd host_tools/interop && npm ci --no-audit --no-fund --loglevel=error

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --target $(STUBS_RP2) --upgrade micropython-rp2-stubs==1.29.0.post1
	$(BIN)/python -m pip install -q --disable-pip-version-check --target $(STUBS_ESP32) --upgrade micropython-esp32-stubs==1.29.0.post1
	touch $(STAMP)

run: $(STAMP) $(NODE_DEPS)
	$(BIN)/evsectl demo --board $(BOARD) $(ARGS)

test: $(STAMP) $(NODE_DEPS)
	$(call beside_mcu_boards,tests hil_tests)

# $(call beside_mcu_boards,PATHS): pytest on PATHS (sim-ac2), the MCU boards' runs beside it.
# A shell without job control starts its background jobs with Ctrl-C ignored: PYTEST_BESIDE takes
# it back, so Ctrl-C ends those runs as it ends the one in front (each stops its workers and boards).
PYTEST_BESIDE = $(BIN)/python -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); \
	os.execv(sys.executable, [sys.executable, "-m", "pytest"] + sys.argv[1:])'
define beside_mcu_boards
	@rm -rf $(TEST_OUT) && mkdir -p $(TEST_OUT); pids=""; \
	trap 'kill -INT $$pids 2>/dev/null' INT TERM; \
	for board in $(MCU_BOARDS); do \
	  $(PYTEST_BESIDE) -q -n $(MCU_JOBS) --dist loadgroup --board $$board $(MCU_HIL) $(ARGS) \
	    >$(TEST_OUT)/$$board.log 2>&1 & pids="$$pids $$!"; \
	done; \
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup $(1) $(ARGS); rc=$$?; \
	set -- $$pids; \
	for board in $(MCU_BOARDS); do \
	  wait $$1 || rc=1; shift; \
	  echo "== on $$board: $(MCU_HIL)"; cat $(TEST_OUT)/$$board.log; \
	done; \
	exit $$rc
endef

unit: $(STAMP) $(NODE_DEPS)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup tests $(ARGS)

# The unit and property tests without those marked slow (the demo day, a long property run).
quick: $(STAMP) $(NODE_DEPS)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadgroup -m "not slow" tests $(ARGS)

hil: $(STAMP) $(NODE_DEPS)
	$(call beside_mcu_boards,hil_tests)

# The heap section compares with a 32-bit MicroPython: the WebAssembly port, pinned, from npm.
NPM_MP := $(VENV)/npm/node_modules/@micropython/micropython-webassembly-pyscript

bench: $(STAMP) $(NODE_DEPS)
	@if command -v npm >/dev/null && [ ! -d $(NPM_MP) ]; then npm install --no-audit --no-fund --prefix $(VENV)/npm @micropython/micropython-webassembly-pyscript@1.27.0; fi
	$(BIN)/python -m bench $(ARGS)

typecheck: $(STAMP) $(NODE_DEPS)
	$(BIN)/python -m pytest -q tests/test_hal_typecheck.py

# evsectl flash: compile for the board, write what changed, verify, start it (docs/bring-up.md).
flash: $(STAMP) $(NODE_DEPS)
	$(BIN)/evsectl flash --board $(BOARD) $(if $(PORT),--port $(PORT)) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench/out host_tools/interop/node_modules
