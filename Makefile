# The two commands of the README: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= demo_out

.PHONY: demo test test-fast lint bench clean toolchain

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per extras set, so `make test` after `make demo` installs only what is missing.
$(VENV)/.stamp-%: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$(subst +,$(comma),$*)]"
	touch $@

comma := ,

demo: $(VENV)/.stamp-examples+tflm+mcu toolchain
	$(BIN)/keras-prune demo --out $(OUT) --force

# The C compile tests need host gcc/g++; the Cortex-M4 tests also need the cross compiler, newlib
# (the firmware links its memcpy/memset) and QEMU. As root (CI) they are installed from Debian;
# elsewhere the tests that need them skip with this hint.
C_TOOLS := gcc g++ arm-none-eabi-gcc qemu-system-arm
APT_PKGS := gcc g++ gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
# newlib has no command to look for: the cross gcc prints libc.a's absolute path only if it is there.
NEWLIB_LIBC = arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -print-file-name=libc.a
toolchain:
	@missing=""; for t in $(C_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	case "$$($(NEWLIB_LIBC) 2>/dev/null)" in /*) ;; *) missing="$$missing newlib";; esac; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing$$missing from Debian (apt-get: $(APT_PKGS))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(APT_PKGS) >/dev/null; \
	else \
		echo "note:$$missing not found; C compile and Cortex-M4 (QEMU) tests will be skipped." \
		     "Install: sudo apt-get install --no-install-recommends $(APT_PKGS)"; \
	fi

# Two pytest workers: the suite is half TensorFlow training and half compilers, QEMU and
# subprocesses, so a second process keeps both cores busy (13 -> 8.5 minutes on 2 cores).
# A file's tests stay on one worker, so module fixtures are built once.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: $(VENV)/.stamp-dev+examples+tfmot+tflm+mcu+distributed toolchain
	$(PYTEST)

# Everything but the tests marked slow (demo, MNIST training, QEMU, unicorn); CI runs `make test`.
test-fast: $(VENV)/.stamp-dev+examples+tfmot+tflm+mcu+distributed toolchain
	$(PYTEST) -m "not slow"

lint: $(VENV)/.stamp-dev+examples+tfmot+tflm+mcu+distributed
	$(BIN)/ruff check keras_prune tests benchmarks
	$(BIN)/ruff format --check keras_prune tests benchmarks

bench: $(VENV)/.stamp-dev+examples+tfmot+tflm+mcu+distributed toolchain
	$(BIN)/python benchmarks/train_overhead.py
	$(BIN)/python benchmarks/integral_macs.py
	$(BIN)/python benchmarks/tflm_size.py
	$(BIN)/python benchmarks/legr_pareto.py
	$(BIN)/python benchmarks/legr_ray.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/serving.py --width 32 --epochs 2 --generations 12 --tau 10
	$(BIN)/python benchmarks/serving_widths.py
	$(BIN)/python benchmarks/m4_kernels.py
	$(BIN)/python benchmarks/m4_cycles.py
	$(BIN)/python benchmarks/m4_sparse_fc.py
	$(BIN)/python benchmarks/m4_cost_model.py
	$(BIN)/python benchmarks/m4_sparse.py
	$(BIN)/python benchmarks/m4_sparse_convnets.py
	$(BIN)/python benchmarks/lottery.py
	$(BIN)/python benchmarks/budget.py --mobilenet
	$(BIN)/python benchmarks/budget_cpu.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
