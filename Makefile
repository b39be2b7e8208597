# dermaroll developer entry points. `make demo` and `make test` set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MPY_SOURCES := $(shell find firmware protocol -name '*.py' 2>/dev/null)

.PHONY: setup test pytest demo lint typecheck build bench flash clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## test: lint, firmware type check, xtensawin compile, then every pytest suite
test: lint typecheck build pytest

pytest: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --quiet .

## typecheck: the firmware against the ESP32 MicroPython stubs
typecheck: $(STAMP)
	$(BIN)/python tools/typecheck_firmware.py

## build: every firmware and protocol file through mpy-cross for the ESP32
build: $(STAMP)
	$(BIN)/python tools/build_mpy.py --out build/mpy $(MPY_SOURCES)

demo: $(STAMP)
	$(BIN)/dermaroll demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

flash:
	@echo "make flash: not available yet (the flashing issue adds it); see README.md"

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
