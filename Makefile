# Every target bootstraps .venv with the pinned tools; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOARD ?= sim-ac2
ARGS ?=
FLASH_REBOOT_S ?= 3
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
	$(BIN)/python -m pytest -q tests hil_tests $(ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests $(ARGS)

hil: $(STAMP)
	$(BIN)/python -m pytest -q hil_tests $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

typecheck: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_hal_typecheck.py

# The README's deploy: maintenance mode first (the firmware's watchdog cannot be stopped), copy
# the firmware and the board file, leave maintenance mode, reset.
flash: $(STAMP)
	@test -n "$(PORT)" || { echo "make flash needs PORT=/dev/ttyACM0 (and BOARD=rp2040-pico or esp32-devkitc)"; exit 2; }
	@test -f boards/$(BOARD).json || { echo "no board file boards/$(BOARD).json"; exit 2; }
	$(BIN)/mpremote connect $(PORT) exec "open('maintenance', 'w').close()" + reset
	sleep $(FLASH_REBOOT_S)
	$(BIN)/mpremote connect $(PORT) cp -r firmware/evse : + cp firmware/main.py firmware/boot.py : \
		+ cp boards/$(BOARD).json :board.json + rm :maintenance + reset

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench/out
