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
# W&B's search engine `sweeps` 0.3.0 declares numpy<2, so where only NumPy 2 installs (Python
# 3.13+) pip falls back to sweeps 0.2.0, whose schema and bayes search differ. The same engine on
# every Python keeps seeded sweeps identical: 0.3.0 is pure Python and runs on NumPy 2 (the suite
# checks it), so it is installed without its pin after the rest.
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
SWEEPS := sweeps==0.3.0

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) -e .
	$(PIP) --no-deps '$(SWEEPS)'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps '$(SWEEPS)'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PIP) -e '.[dev,bench]'
	$(PIP) --no-deps '$(SWEEPS)'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed-run

# Train the default configuration on Fashion-MNIST (W&B offline unless you are logged in).
run: $(VENV)/.installed-run
	$(PY) train.py $(ARGS)

# The whole suite, slow real-data tests included (deselect them with PYTEST_ARGS="-m 'not slow'"),
# on one pytest worker per CPU (pytest-xdist; PYTEST_JOBS=0 runs it in this one process).
# The project's own sources are compiled first: where PYTHONDONTWRITEBYTECODE is set (as on this
# machine) Python never caches them, and each of the suite's many train.py / mlp subprocesses
# would compile them again (the reliability tests ran 12% faster with them compiled).
PYTEST_JOBS ?= auto
test: $(VENV)/.installed-dev
	$(PY) -m compileall -q mlp train.py benchmarks
	$(PY) -m pytest -n $(PYTEST_JOBS) $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/epoch_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
