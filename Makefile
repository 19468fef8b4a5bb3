# The two commands of the README. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Extra arguments for `make run`, e.g. make run ARGS="-e 2 --wandb_mode disabled"
ARGS   ?=

.PHONY: run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps record what was installed, so a later `make` only reinstalls when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed-run

# Train the default configuration on Fashion-MNIST (W&B offline unless you are logged in).
run: $(VENV)/.installed-run
	$(PY) train.py $(ARGS)

# The whole suite, slow real-data tests included (deselect them with PYTEST_ARGS="-m 'not slow'").
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/epoch_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
