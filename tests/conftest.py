"""Shared fixtures of the suite (the tests are arranged by layer: core, config, runs, sweep, report,
cli, meta, benchmarks). Shared functions live in tests/helpers (imported as `helpers.X`)."""
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for folder in (TESTS, TESTS / "reference"):       # helpers.*, and the scripts that record PyTorch's numbers
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty folder as cwd with the store inside it, W&B offline and quiet, and nothing of this
    machine's W&B (credentials, a launcher's run or sweep ids) or data variables in the way."""
    for key in [k for k in os.environ if k.startswith("WANDB_")] + ["MLP_DATA_DIR", "MLP_STORE"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("MLP_STORE", str(tmp_path / "s.sqlite"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
