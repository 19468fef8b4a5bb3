"""Smoke tests of the benchmarks (epoch_speed, sweep_throughput, cold_start): each `--quick` mode
runs end to end and prints its table. No timing assertions: they only check that the benchmarks
work. Marked slow (minutes of CPU; `-m 'not slow'` skips them)."""
import re
import subprocess
import sys

import pytest

from helpers.paths import FASHION_SUBSET, ROOT

pytestmark = pytest.mark.slow


def test_epoch_speed_quick_prints_the_table(tmp_path):
    pytest.importorskip("torch", reason="the benchmark compares with PyTorch (dev or bench extra)")
    pytest.importorskip("threadpoolctl", reason="the benchmark sets thread counts with threadpoolctl (bench extra)")
    out = tmp_path / "table.md"
    # the small real subset keeps it fast and independent of the full dataset; one thread keeps it
    # quick on a busy machine
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "epoch_speed.py"), "--quick",
                           "--repeats", "1", "--threads", "1", "--data_dir", str(FASHION_SUBSET), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    assert table.strip() in proc.stdout
    rows = [line for line in table.splitlines() if line.startswith("| (")]
    assert [row[2:5] for row in rows] == ["(a)", "(b)", "(c)"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 7, row
        for seconds in cells[1:4]:  # mlp, PyTorch, scikit-learn
            assert float(seconds) >= 0
        for ratio in cells[4:6]:
            assert re.fullmatch(r"\d+\.\d\d× faster", ratio), ratio
        assert all(float(mb) > 0 for mb in cells[6].split(" / "))
    assert re.search(r"GEMM rate of this machine: \*\*\d+\.\d GFLOP/s\*\*", table)
    assert re.search(r"= \*\*\d+% of the GEMM rate\*\*", table)


def test_sweep_throughput_quick_runs_every_mode(tmp_path):
    """benchmarks/sweep_throughput.py --quick: the three agent modes run the same 2 runs and train
    the same numbers (the script checks that itself); the table has a row for each."""
    out = tmp_path / "sweep.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweep_throughput.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| a new") or line.startswith("| warm")]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[1].endswith(" s") and float(cells[1][:-2]) >= 0 and float(cells[3]) > 0


def test_cold_start_quick_times_every_phase(tmp_path):
    """benchmarks/cold_start.py --quick: both W&B modes reach the first batch; the phases are
    non-negative and add up to the total; only W&B offline logs sample images. No timing
    assertions (a loaded machine stretches any phase)."""
    out = tmp_path / "cold.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cold_start.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows, header = {}, None
    for line in out.read_text().splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if line.startswith("| W&B |"):
            header = cells[1:]
        elif line.startswith("| offline") or line.startswith("| disabled"):
            rows[cells[0]] = dict(zip(header, (float(c.removesuffix(" s")) for c in cells[1:]), strict=True))
    assert set(rows) == {"offline", "disabled"}
    assert header[-1] == "total" and header[:3] == ["python", "imports", "W&B import"]
    for phases in rows.values():
        assert len(phases) == 9 and all(x >= 0 for x in phases.values())
        assert abs(sum(phases.values()) - 2 * phases["total"]) < 0.01      # medians of one round: an exact sum
    assert rows["disabled"]["samples"] == 0.0                  # W&B disabled: no samples phase at all
    assert rows["offline"]["W&B import"] > 0 and rows["offline"]["W&B init"] > 0 and rows["offline"]["samples"] > 0
