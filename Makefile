VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE := examples/water_noisy.wav
DEMO_OUT := out/demo

.PHONY: install demo test bench lint format

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/audiodenoise denoise $(EXAMPLE) -o $(DEMO_OUT)/water_denoised.wav
	$(PYTHON) scripts/demo_report.py --noisy $(EXAMPLE) --denoised $(DEMO_OUT)/water_denoised.wav \
		--clean examples/water_clean.wav --png $(DEMO_OUT)/spectrograms.png

test: $(STAMP)
	$(PYTHON) -m pytest -q

bench: $(STAMP)
	$(PYTHON) benchmarks/quality.py
	$(PYTHON) benchmarks/speed.py
	$(PYTHON) benchmarks/memory.py
	$(PYTHON) benchmarks/prepare.py
	$(PYTHON) benchmarks/train_speed.py
	$(PYTHON) benchmarks/serve_load.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks scripts
