"""`mlp rerun ID --top K --dataset mnist`: train a sweep's K best validation configurations on
another dataset, as a child sweep linked to the original (parent_sweep_id), so the parent's
report can put both datasets' accuracies side by side.

The child sweep's YAML is a valid W&B grid sweep over exactly the K configs: a parameter shared by
all K is a `value`; if one parameter differs, it lists the K values; if several differ, the grid
is over one `configuration` parameter whose K values are the differing parts of each config (a
grid over separate lists would run every combination), and the values reach train.py through
W&B's parameter file (the command has no `${args}`). `run_cap: K`. Each config is the source run's
full effective config — not just the parameters the parent sweep searched — so a later change of
train.py's defaults cannot change what is rerun.

Where it runs: a W&B sweep's rerun (the parent lives in W&B) becomes a W&B sweep when W&B is
reachable — `wandb agent` runs it on any machine, and `mlp report` of the parent imports its runs;
otherwise, or with `local=True`, the local agent runs it here, handing out the K configs in order
from the sweep's rerun plan (`RerunPlan`, a store column; so `mlp agent CHILD_ID` resumes it).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import yaml

from mlp import config as C, paths
from mlp.errors import UsageError
from mlp.runs import results as R
from mlp.runs.data import check_data_dir, load_dataset
from mlp.runs.store import RerunPlan
from mlp.runs.wandb_api import SweepPath, WandbUnreachable, sweep_url
from mlp.sweep import bridge
from mlp.sweep.agent import Agent
from mlp.sweep.files import objective, validate_sweep_config

__all__ = ["rerun", "rerun_configs", "rerun_sweep_config"]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def rerun_configs(runs, dataset: str, epochs: int | None = None, data_dir: str | None = None,
                  portable: bool = False) -> list[dict]:
    """The runs' full effective configs as train flags, with the dataset (and epochs, data_dir)
    replaced. Plumbing (store, W&B project, output files) is left to the agent. `portable` (a
    rerun that W&B's agents run on other machines): no folder of this machine — the source runs'
    data_dir is dropped (agents find the data through MLP_DATA_DIR, their cache or Debian's
    package), and a given `data_dir` must be relative (to each agent's folder)."""
    if portable and data_dir is not None and paths.expand(data_dir, "--data_dir").is_absolute():
        raise UsageError(f"--data_dir {data_dir} is a folder of this machine, and W&B's agents run this rerun "
                         f"elsewhere: give a folder relative to train.py's (each agent's) folder, leave it out (agents "
                         f"find the data through MLP_DATA_DIR, their cache or Debian's package), or use --local")
    configs = []
    for run in runs:
        config = C.for_dataset({k: v for k, v in (run.get("config") or {}).items()
                                if k in C.PARAMS and k not in C.PLUMBING and v is not None}, dataset)
        if portable:
            config.pop("data_dir", None)
        if epochs is not None:
            config["epochs"] = int(epochs)
        if data_dir is not None:
            config["data_dir"] = str(data_dir) if portable else str(paths.expand(data_dir, "--data_dir").resolve())
        configs.append(config)
    return configs


def existing_child(store, parent_id: str, plan: RerunPlan, origin: str) -> dict | None:
    """The child sweep an earlier `mlp rerun` made for exactly this plan (same source runs, configs,
    dataset and epochs, here or in W&B), so running the same rerun twice reuses it."""
    for sweep in store.list_sweeps():
        old = sweep.get("rerun")
        if sweep["parent_sweep_id"] == parent_id and sweep["origin"] == origin and old is not None and \
                (old.source_runs, old.configs, old.dataset, old.epochs) == \
                (plan.source_runs, plan.configs, plan.dataset, plan.epochs):
            return sweep
    return None


ARG_MACROS = ("${args}", "${args_no_equals}", "${args_no_hyphens}", "${args_no_boolean_flags}", "${args_json}",
              "${args_json_file}", "${args_append_hydra}", "${args_override_hydra}")


def rerun_sweep_config(parent: dict, configs: list[dict], dataset: str) -> dict:
    """A valid W&B grid sweep over exactly the configs (see the module docstring)."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    shared, differing = {}, []
    for key in keys:
        values = []
        for c in configs:
            if c.get(key) not in values:
                values.append(c.get(key))
        if len(values) == 1:
            shared[key] = {"value": values[0]}
        else:
            differing.append(key)
    parameters = dict(shared)
    pc = parent.get("config") or {}
    command = list(pc.get("command") or [])
    if len(differing) == 1:
        parameters[differing[0]] = {"values": [c.get(differing[0]) for c in configs]}
    elif differing:
        parameters[C.CONFIGURATION] = {"values": [{k: c[k] for k in differing if k in c} for c in configs]}
        command = [part for part in (command or ["${env}", "${interpreter}", "${program}", "${args}"])
                   if part not in ARG_MACROS]
    where = parent.get("wandb_path") or parent["id"]
    config = {
        "name": f"{parent.get('name') or parent['id']}-top{len(configs)}-{dataset}",
        "description": f"The {len(configs)} best validation configurations of sweep {where}, rerun on {dataset}",
        "program": pc.get("program", "train.py"),
        "method": "grid",
        "metric": pc.get("metric") or dict(zip(("name", "goal"), objective(pc))),
        "run_cap": len(configs),
        "parameters": parameters,
    }
    if command:
        config["command"] = command
    return config


def _yaml_text(config: dict, parent_id: str, sources: list, configs: list) -> str:
    header = [f"# Rerun of the top {len(configs)} validation configurations of sweep {parent_id} "
              f"(made by `mlp rerun`).",
              "# A valid W&B grid sweep; `mlp rerun` runs exactly these configurations, one run each:"]
    for i, (src, c) in enumerate(zip(sources, configs), 1):
        header.append(f"#   {i}. from run {src}: " + R.describe(c))
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _workdir(parent: dict, program: str) -> Path:
    for candidate in (parent.get("workdir"), os.getcwd()):
        if candidate and (Path(candidate) / program).is_file():
            return Path(candidate).resolve()
    raise UsageError(f"program {program!r} of sweep {parent['id']} is not in {parent.get('workdir')} "
                     f"nor in the current folder; run `mlp rerun` from the folder that holds it")


def _online(parent: dict, local: bool, log):
    """W&B's API when the rerun goes to W&B (a W&B sweep, W&B reachable, not --local), else None."""
    if local or parent["origin"] != "wandb" or not parent["wandb_path"]:
        return None
    try:
        return bridge.connection()
    except WandbUnreachable as e:
        log(f"{e}; rerunning here instead (as with --local)")
        return None


def rerun(store, sweep_id: str, top: int = 3, dataset: str = "mnist", epochs: int | None = None,
          data_dir: str | None = None, local: bool = False, log: Callable[[str], None] = _log,
          out: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict:
    """Create the child sweep and run it: here with the local agent (one run after another), or,
    for a W&B sweep with W&B reachable (and not `local`), as a W&B sweep for `wandb agent`.
    Returns {"sweep_id", "rows", "exit_code"} (and "wandb_path" online). `sweep_id` may be any
    reference `mlp.sweep.bridge.resolve` takes. The child id (online: its W&B path, then the
    `wandb agent` command) is printed on `out` first."""
    sweep_id = bridge.resolve(store, sweep_id, log=log)
    parent = store.get_sweep(sweep_id)
    if int(top) < 1:
        raise UsageError(f"--top must be ≥ 1, got {top}")
    metric, goal = objective(parent["config"])
    runs = store.list_runs(sweep_id)
    best = R.best_first(runs, metric, goal)
    if not best:
        raise UsageError(f"sweep {sweep_id} has no finished runs with a {metric} to rerun; run it first with "
                         f"`mlp agent {sweep_id}`")
    chosen = best[:int(top)]
    api = _online(parent, local, log)
    if api is None and data_dir is not None:
        check_data_dir(data_dir)       # the rerun trains here: a folder that is not one is refused first
    if len(chosen) < top:
        them = "it" if len(chosen) == 1 else "those"
        log(f"sweep {sweep_id} has only {len(chosen)} run{'' if len(chosen) == 1 else 's'} with a {metric}; rerunning {them}")
    if api is not None:
        return _rerun_online(store, api, parent, chosen, top, dataset, epochs, data_dir, log, out)
    log(f"checking that {dataset} is available ...")
    load_dataset(dataset, data_dir=data_dir, progress=log)   # fail now, not in K subprocesses
    configs = rerun_configs(chosen, dataset, epochs, data_dir)
    config = rerun_sweep_config(parent, configs, dataset)
    validate_sweep_config(config, f"rerun sweep of {sweep_id}")
    workdir = _workdir(parent, config["program"])
    sources = [r["id"] for r in chosen]
    plan = RerunPlan(parent=sweep_id, source_runs=sources, configs=configs, dataset=dataset, epochs=epochs, top=int(top))
    child = existing_child(store, sweep_id, plan, "local")
    if child is not None:
        child_id = child["id"]
        out(child_id)
        log(f"sweep {child_id} (child of {sweep_id}) reruns exactly these configs already: continuing it")
    else:
        child_id = store.create_sweep(config, _yaml_text(config, sweep_id, sources, configs), name=config["name"],
                                      seed=parent.get("seed"), parent_sweep_id=sweep_id, workdir=workdir, rerun=plan)
        out(child_id)
        log(f"created sweep {child_id} (child of {sweep_id}): the top {len(configs)} configs of {sweep_id} on {dataset}")

    code = Agent(store, child_id, count=None, out=log).run()  # hands out the plan's configs in order
    child = store.get_sweep(child_id)
    autoencoder = (chosen[0].get("config") or {}).get("task") == "autoencoder"     # R², not accuracy
    rows = R.rerun_rows({r["id"]: r for r in runs}, child, store.list_runs(child_id),
                        R.searched_parameters(parent["config"]),
                        (chosen[0].get("config") or {}).get("dataset", "fashion_mnist"),
                        val_metric="val_r2" if autoencoder else "val_accuracy",
                        test_metric="test_r2" if autoencoder else "test_accuracy")
    source_ds = rows[0]["source_dataset"] if rows else ""
    out(_table(["#", "source run", f"{source_ds} val", f"{source_ds} test", f"{dataset} val", f"{dataset} test",
                "state"],
               [[r["rank"], r["source_run"], _f(r["source_val"]), _f(r["source_test"]), _f(r["target_val"]),
                 _f(r["target_test"]), r["state"]] for r in rows]))
    return {"sweep_id": child_id, "rows": rows, "exit_code": code}


def _rerun_online(store, api, parent, chosen, top, dataset, epochs, data_dir, log, out) -> dict:
    """The rerun as a W&B sweep in the parent's project, recorded in the store as the parent's
    child (with its plan), so the parent's report shows its runs once they are imported."""
    configs = rerun_configs(chosen, dataset, epochs, data_dir, portable=True)
    config = rerun_sweep_config(parent, configs, dataset)
    validate_sweep_config(config, f"rerun sweep of {parent['id']}")
    where = SweepPath.parse(parent["wandb_path"])
    sources = [r["id"] for r in chosen]
    plan = RerunPlan(parent=parent["id"], source_runs=sources, configs=configs, dataset=dataset, epochs=epochs,
                     top=int(top))
    child = existing_child(store, parent["id"], plan, "wandb")
    if child is not None:
        target = SweepPath.parse(child["wandb_path"])
        out(str(target))
        out(f"wandb agent {target}")
        log(f"W&B sweep {sweep_url(target, api.url)} reruns exactly these configs already (an earlier `mlp rerun`): "
            f"run `wandb agent {target}` to continue it; `mlp report {where}` imports its runs")
        return {"sweep_id": child["id"], "wandb_path": str(target), "rows": [], "exit_code": 0}
    target = api.create_sweep(config, where.entity, where.project)
    child_id = store.create_sweep(
        config, _yaml_text(config, str(where), sources, configs), name=config["name"], parent_sweep_id=parent["id"],
        workdir=parent.get("workdir"), origin="wandb", wandb_path=str(target), sweep_id=target.sweep_id, rerun=plan)
    out(str(target))
    out(f"wandb agent {target}")
    log(f"created W&B sweep {sweep_url(target, api.url)}: the top {len(configs)} configs of {where} on {dataset}, "
        f"a grid of exactly {len(configs)} runs. Run `wandb agent {target}` on any machine (in train.py's folder, with "
        f"its environment active{'' if data_dir else f', {dataset} found there'}); then `mlp report {where}` imports "
        f"them and shows both datasets side by side")
    return {"sweep_id": child_id, "wandb_path": str(target), "rows": [], "exit_code": 0}


def _f(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _table(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows])
