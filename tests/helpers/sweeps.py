"""Running `mlp` the way the sweep tests do: from the repository (where train.py is), W&B files and
the store in the test's folder, no launcher variables of this machine; a sweep file made from
sweeps/smoke.yaml; the id `mlp sweep` prints."""
import os
import subprocess
import sys

import yaml

from helpers.paths import ROOT


def mlp(tmp_path, *args, timeout=300, env_extra=None):
    """Run `mlp ...` from the repo root (where train.py is) with W&B files kept in tmp_path."""
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true", "MLP_STORE": str(tmp_path / "s.sqlite")}
    for key in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_SERVICE"):
        env.pop(key, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "mlp", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_sweep(tmp_path, name, **overrides):
    config = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    config.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sweep_id_of(proc):
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout.splitlines()[0].strip()
