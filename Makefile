# DigitalFront: every target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
MLLP_PORT ?= 2575

.PHONY: serve test lint bench compiled eval-nlp clean triton-venv browser-deps train-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# mypyc builds of the hot modules into .compiled/ (fhir_server/compiled.py); a no-op when current, and
# without a C compiler the server runs the same modules as pure Python.
compiled: $(STAMP)
	$(PY) scripts/build_compiled.py

# everything on the embedded default: FHIR API, SMART, CDS Hooks, NLP, in-process models, and the MLLP listener
serve: compiled
	$(VENV)/bin/digitalfront serve --host $(HOST) --port $(PORT) --mllp-port $(MLLP_PORT) --demo $(SERVE_ARGS)

test: compiled
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy fhir_server digitalfront interfaces terminology cds_hooks nlp inference smart_apps conformance

bench: compiled
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info .compiled .compiled.new

eval-nlp: $(STAMP)
	$(PY) -m nlp.eval

# Optional real-peer environments used by the integration tests (they skip, saying why, without them).
.venv-triton/.installed:
	$(PYTHON) -m venv .venv-triton
	.venv-triton/bin/pip install -q nvidia-pytriton==0.7.0 onnxruntime==1.32.0
	touch $@

triton-venv: .venv-triton/.installed

# the 'train' extra (torch CPU, scikit-learn, skl2onnx, onnx): the retraining tests run where it is installed
train-deps: $(STAMP)
	$(PY) -m pip install -q -e '.[train]'

browser-deps:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)
	npm ci --prefix tests/integration/smart/js --no-audit --no-fund --loglevel=error
