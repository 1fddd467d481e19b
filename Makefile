VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE := examples/water_noisy.wav
DEMO_OUT := out/demo
# ONNX Runtime Web for denoising in the browser: pinned in web-build/, copied into the package (git-ignored).
VENDOR := src/audiodenoise/web/vendor
WEB_STAMP := $(VENDOR)/.stamp
ORT_DIST := web-build/node_modules/onnxruntime-web/dist
ORT_FILES := ort.wasm.bundle.min.mjs ort-wasm-simd-threaded.wasm

.PHONY: install web demo test bench lint format

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(WEB_STAMP)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Without npm the page still works, with in-browser denoising off; no stamp is written, so a later run retries.
$(WEB_STAMP): web-build/package.json web-build/package-lock.json
	@if ! command -v npm >/dev/null; then echo "npm not found: in-browser denoising stays off (install npm, then make web)"; \
	else (cd web-build && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
		&& rm -rf $(VENDOR) && mkdir -p $(VENDOR) && cp $(addprefix $(ORT_DIST)/,$(ORT_FILES)) $(VENDOR)/ && touch $@; fi

web: $(WEB_STAMP)

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
	$(PYTHON) benchmarks/browser.py
	$(PYTHON) benchmarks/streaming.py
	$(PYTHON) benchmarks/batch.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks scripts
