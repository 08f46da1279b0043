# The two commands of the README: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= demo_out

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per extras set, so `make test` after `make demo` installs only what is missing.
$(VENV)/.stamp-%: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(subst +,$(comma),$*)]"
	touch $@

comma := ,

demo: $(VENV)/.stamp-examples+tflm
	$(BIN)/keras-prune demo --out $(OUT) --force

test: $(VENV)/.stamp-dev+examples+tfmot+tflm
	$(BIN)/python -m pytest -q

lint: $(VENV)/.stamp-dev+examples+tfmot+tflm
	$(BIN)/ruff check keras_prune tests benchmarks
	$(BIN)/ruff format --check keras_prune tests benchmarks

bench: $(VENV)/.stamp-dev+examples+tfmot+tflm
	$(BIN)/python benchmarks/train_overhead.py
	$(BIN)/python benchmarks/integral_macs.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
