"""The W&B bridge: W&B's sweeps and the local store as one loop.

* `resolve` turns what a user typed where a sweep id is taken into a store id: a local sweep id,
  a W&B sweep id the store knows (its runs ran here under `wandb agent`, or a local sweep was synced
  as it), or `ENTITY/PROJECT/SWEEP_ID`, which is first imported from W&B's public API when W&B is
  reachable (so a report covers the runs of every machine). Offline, the store's copy is used; a
  path the store does not know is a one-line error that says what to do.
* `import_sweep` copies a W&B sweep into the store: its config, name and state, and every run that
  is over (config, state, summary, per-epoch history, created time). Runs already in the store are
  left as they are, runs still going are taken on a later import: importing twice adds nothing.
* `sync` uploads a sweep's offline runs (`wandb sync`), checks they arrived, then creates the W&B
  sweep that holds them with W&B's own prior-runs mechanism (as `wandb sweep --prior_run`), from the
  sweep's own YAML, once: the W&B sweep's address is kept in the store (`wandb_path`).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlp import config as C
from mlp.errors import UsageError
from mlp.runs import results as R
from mlp.runs.store import FINAL_STATES, Store, StoreError, model_path_for
from mlp.runs.tracking import CONFUSION_COUNTS
from mlp.runs.wandb_api import (SweepPath, WandbUnreachable, base_url, connect, proposed_params, run_state,
                                summary_values, sweep_url)
from mlp.sweep.files import objective

__all__ = ["resolve", "import_sweep", "ImportResult", "sync", "store_config", "connection", "open_store",
           "download_model", "download_best_models", "TOP_MODELS"]

TOP_MODELS = 3        # an import downloads the model artifacts of this many best runs (a rerun's default --top)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _out(line: str) -> None:
    print(line, flush=True)


@dataclass
class ImportResult:
    sweep_id: str              # the store's id of the sweep
    path: str                  # its W&B path
    added: int = 0             # runs new to the store
    kept: int = 0              # runs the store had already
    waiting: int = 0           # runs W&B has that are not over yet (taken by a later import)
    models: int = 0            # model artifacts of its best runs downloaded


_CONNECTIONS: dict = {}


def connection():
    """W&B's API, or WandbUnreachable: tried once per process (and server, and key)."""
    key = (base_url(), os.environ.get("WANDB_API_KEY"))
    if key not in _CONNECTIONS:
        try:
            _CONNECTIONS[key] = connect()
        except WandbUnreachable as e:
            _CONNECTIONS[key] = e
    if isinstance(_CONNECTIONS[key], WandbUnreachable):
        raise _CONNECTIONS[key]
    return _CONNECTIONS[key]


def store_config(run_config: dict) -> dict:
    """A W&B run's config as the store keeps a run's config: its train.py hyperparameters, complete
    (a `configuration` spread out, missing keys at their defaults; W&B's own keys and other programs'
    keys left out)."""
    try:
        values = C.expand_configuration(run_config)
    except UsageError:
        values = dict(run_config)
    known = {k: v for k, v in values.items() if k in C.PARAMS and k not in C.PLUMBING}
    try:
        return C.hyperparameters(C.resolve(known))
    except UsageError:
        return known


def import_sweep(store, path: SweepPath, api=None, log: Callable[[str], None] = _log) -> ImportResult:
    """Copy W&B sweep `path` into the store (see the module docstring)."""
    if api is None:
        try:
            api = connection()
        except WandbUnreachable as e:
            raise UsageError(f"{e}; importing {path} needs W&B") from None
    log(f"importing W&B sweep {path} ...")
    found = api.sweep(path)
    sweep_id = store.upsert_wandb_sweep(str(path), found["config"], found["yaml"], found["name"], found["state"],
                                        found["created_at"])
    result = ImportResult(sweep_id, str(path))
    for run in api.sweep_runs(path):
        state = run_state(run["state"])
        if state is None:
            result.waiting += 1
            continue
        if store.find_run(run["id"]) is not None:
            result.kept += 1
            continue
        summary = summary_values(run["summary"])
        counts = summary.pop(CONFUSION_COUNTS, None)        # the test confusion matrix the run logged
        if counts is not None:
            summary["confusion_matrix"] = counts
        stopped_by = summary.get("stopped_by") if isinstance(summary.get("stopped_by"), str) else None
        if stopped_by:                                      # its sweep stopped it early: a short run, not a failure
            state = summary["state"] = "killed"
        summary.setdefault("state", state)
        if "epochs_run" not in summary and isinstance(summary.get("epoch"), int):
            summary["epochs_run"] = summary["epoch"]
        added = store.import_run(sweep_id, run["id"], store_config(run["config"]), state, summary,
                                 api.history(run), run["created_at"], finished_at=run["heartbeat_at"],
                                 params=proposed_params(found["config"], run["config"]), name=run["name"],
                                 wandb_entity=path.entity, wandb_project=path.project, stopped_by=stopped_by)
        result.added += int(added)
        result.kept += int(not added)
    where = sweep_id if sweep_id == path.sweep_id else f"{sweep_id} (the local sweep synced as it)"
    log(f"sweep {where}: {result.added} runs imported, {result.kept} already in the store"
        + (f", {result.waiting} not over yet (import again later)" if result.waiting else ""))
    result.models = download_best_models(store, api, sweep_id, log)
    return result


def download_model(store, api, sweep_id: str, run: dict, log: Callable[[str], None] = _log) -> str | None:
    """Download the run's W&B model artifact beside the store (where its sweep's runs keep their
    models) and record it in the run (model_source "artifact"); the file's path, or None when W&B
    holds no model artifact for the run."""
    target = model_path_for(store.path, sweep_id, run["id"])
    entity, project = run.get("wandb_entity") or api.default_entity, run["wandb_project"]
    name = api.download_model(entity, project, run["id"], target)
    if name is None:
        log(f"run {run['id']}: W&B holds no model artifact for it")
        return None
    store.update_run(run["id"], model_path=str(target), model_source="artifact", model_artifact=name)
    log(f"run {run['id']}: its model downloaded from W&B ({name})")
    return str(target)


def download_best_models(store, api, sweep_id: str, log: Callable[[str], None] = _log, top: int = TOP_MODELS) -> int:
    """The W&B model artifacts of the sweep's `top` best runs (by its metric) that have no model
    file here; returns how many were downloaded."""
    sweep = store.get_sweep(sweep_id)
    metric, goal = objective(sweep["config"])
    done = 0
    for run in R.best_first(store.list_runs(sweep_id), metric, goal)[:top]:
        path = run.get("model_path")
        if (path and Path(path).is_file()) or not run.get("wandb_project"):
            continue
        done += download_model(store, api, sweep_id, run, log) is not None
    return done


def _refresh(store, path: SweepPath, fallback: dict | None, log) -> str:
    """Import `path` (and its online reruns) when W&B is reachable; else, or if W&B fails, the
    store's copy `fallback` when there is one (said on the log), else a one-line error."""
    try:
        api = connection()
        result = import_sweep(store, path, api, log)
        for child in store.list_sweeps():    # online reruns of it: their results belong in its report
            if child["parent_sweep_id"] == result.sweep_id and child["origin"] == "wandb" and child["wandb_path"]:
                import_sweep(store, SweepPath.parse(child["wandb_path"]), api, log)
        return result.sweep_id
    except UsageError as e:
        if fallback is None:
            if isinstance(e, WandbUnreachable):
                raise UsageError(f"W&B sweep {path} is not in store {store.path} and {e}: run `mlp import {path}` "
                                 f"where W&B is reachable (same --store), or use the store its runs ran with") from None
            raise
        log(f"W&B sweep {path}: using the store's copy ({e})")
        return fallback["id"]


def _known(store, ref: str) -> bool:
    try:
        _by_id(store, ref)
        return True
    except UsageError:
        return False


def _by_id(store, ref: str) -> dict:
    try:
        return store.get_sweep(ref)
    except StoreError:          # a damaged store says so itself; it is not an unknown sweep
        raise
    except UsageError as unknown:
        synced = store.find_wandb_sweeps(ref)
        if len(synced) == 1:
            return synced[0]
        if len(synced) > 1:
            raise UsageError(f"W&B sweep id {ref!r} is in store {store.path} more than once "
                             f"({', '.join(s['wandb_path'] for s in synced)}); give ENTITY/PROJECT/{ref}") from None
        raise UsageError(f"{unknown}; a W&B sweep whose runs did not run here is imported with "
                         f"`mlp import ENTITY/PROJECT/SWEEP_ID`") from None


def resolve(store, ref: str, fetch: bool = True, log: Callable[[str], None] = _log,
            near: SweepPath | None = None) -> str:
    """The store id of the sweep `ref` names (see the module docstring). With `fetch`, a W&B
    sweep is brought up to date from W&B first when W&B is reachable (a path always; a bare id of
    a W&B sweep whose address the store knows), and its online reruns with it. `near`: a W&B sweep
    whose entity and project a bare id the store does not know is looked for in (`--compare ID`
    beside a W&B sweep)."""
    path = SweepPath.parse(ref)
    if path is None and near is not None and fetch and not _known(store, str(ref).strip()):
        path = SweepPath.parse(f"{near.entity}/{near.project}/{str(ref).strip()}")
    if path is None:
        sweep = _by_id(store, str(ref).strip())
        if fetch and sweep["origin"] == "wandb" and sweep["wandb_path"]:
            return _refresh(store, SweepPath.parse(sweep["wandb_path"]), sweep, log)
        return sweep["id"]
    known = store.find_wandb_sweeps(path.sweep_id, path.entity, path.project)
    if fetch:
        return _refresh(store, path, known[0] if known else None, log)
    if known:
        return known[0]["id"]
    raise UsageError(f"W&B sweep {path} is not in store {store.path}; import it with `mlp import {path}`")


def open_store(path: str, ref: str, importing: bool = False):
    """The store at `path` for sweep `ref`. A store that does not exist yet is created only for a
    W&B path that W&B can give now (it is imported into it), so bad input or no network leaves
    nothing behind."""
    target = SweepPath.parse(ref)                       # a malformed path fails before anything
    if target is None or os.path.exists(path):
        return Store(path, create=False)
    try:
        connection()
    except WandbUnreachable as e:
        if importing:
            raise UsageError(f"{e}; importing {target} needs W&B") from None
        raise UsageError(f"W&B sweep {target} is not in store {path} (there is none yet) and {e}: run "
                         f"`mlp import {target}` where W&B is reachable") from None
    return Store(path, create=True)


# ---- sync: offline runs -> W&B, as a sweep ----------------------------------------------------------

def _one(values: set, what: str, flag: str, sweep_id: str):
    values = {v for v in values if v}
    if len(values) > 1:
        fix = f"pass {flag} to upload them all to one" if flag else "upload them with `wandb sync` one project at a time"
        raise UsageError(f"the runs of sweep {sweep_id} logged to several W&B {what}s ({', '.join(sorted(values))}); "
                         f"{fix}")
    return next(iter(values), None)


def sync(store, ref: str, project: str | None = None, entity: str | None = None, dry_run: bool = False,
         log: Callable[[str], None] = _log, out: Callable[[str], None] = _out) -> int:
    """Upload the sweep's offline runs with `wandb sync` and make sure W&B holds them as one sweep.
    Prints the sweep's URL on `out`; returns 0, or 1 when a run has not arrived (one line says which;
    running it again finishes the job). Idempotent: a second sync creates nothing and uploads nothing.

    A local sweep becomes a W&B sweep once — only when every finished run has arrived, because W&B
    attaches existing runs to a sweep when it creates it (`wandb sweep --prior_run`). Its address is
    kept in the store; runs launched afterwards carry the W&B sweep's id (`mlp agent` sets it), so
    `wandb sync` files them in it, and a run that was already under way when the sweep was created
    is attached to it when a later sync uploads it. A W&B sweep's runs carry its id already."""
    sweep_id = resolve(store, ref, fetch=False, log=log)
    sweep = store.get_sweep(sweep_id)
    runs = store.list_runs(sweep_id)
    offline = [r for r in runs if r["state"] in FINAL_STATES and r["wandb_dir"] and Path(r["wandb_dir"]).is_dir()]
    target = SweepPath.parse(sweep["wandb_path"]) if sweep["wandb_path"] else None
    if not offline and target is None:
        raise UsageError(f"sweep {sweep_id} has no finished runs with an offline W&B directory to sync (runs with "
                         f"--wandb_mode disabled keep none)")
    entity, project, overrides = _destination(sweep, target, offline, entity, project)
    argv = [sys.executable, "-m", "wandb", "sync", *overrides, *[d for r in offline for d in _segments(r)]]
    if dry_run:
        out(" ".join(argv))
        return 0
    try:
        api = connection()
    except WandbUnreachable as e:
        raise UsageError(f"{e}; `mlp sync` uploads to W&B, so it needs W&B (the runs stay in the store and in "
                         f"their offline directories until then)") from None
    if not entity:                         # the credentials' own entity, where W&B puts runs without one
        entity = api.default_entity
        if overrides:
            argv[argv.index("--project"):argv.index("--project")] = ["--entity", entity]
    if offline:
        log(f"uploading {len(offline)} offline runs of sweep {sweep_id} to W&B project {entity}/{project} "
            f"(runs uploaded before are skipped) ...")
        proc = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            raise UsageError(f"`wandb sync` failed (exit code {proc.returncode}); see its messages above")
    ids = {r["id"] for r in offline}
    arrived = api.existing_runs(entity, project, ids)     # `wandb sync` exits 0 even when uploads failed
    missing = sorted(ids - arrived)
    active = [r["id"] for r in runs if r["state"] not in FINAL_STATES]
    if sweep["origin"] == "wandb":
        target = target or SweepPath(entity, project, sweep_id)
        log(f"the runs of W&B sweep {sweep_id} are uploaded to {entity}/{project} and join it there")
    elif target is None:
        if missing:
            return _not_arrived(missing, ids, entity, project, sweep_id, log,
                                "the W&B sweep is created once every run has arrived")
        target = api.create_sweep(sweep["config"], entity, project, prior_runs=sorted(arrived))
        store.update_sweep(sweep_id, wandb_path=str(target))
        log(f"created W&B sweep {target} holding the {len(arrived)} runs of sweep {sweep_id} (parallel coordinates "
            f"and parameter importance are on its page); `wandb agent {target}` continues it online")
    else:
        late = sorted(arrived - api.sweep_run_ids(target))
        if late:                           # under way when the sweep was created: attached now
            api.attach_runs(target, late)
            log(f"{len(late)} runs of sweep {sweep_id} uploaded since it became W&B sweep {target} joined it "
                f"({', '.join(late[:5])}{' …' if len(late) > 5 else ''})")
    if active:
        log(f"{len(active)} runs of sweep {sweep_id} are not over yet; they join W&B sweep {target} when `mlp sync "
            f"{sweep_id}` uploads them")
    out(sweep_url(target, api.url))
    if missing:
        return _not_arrived(missing, ids, entity, project, sweep_id, log, f"W&B sweep {target} holds the others")
    return 0


def _segments(run: dict) -> list[str]:
    """The offline W&B folders of a run, oldest first: its own, and those of the times it was
    resumed (`--resume`) under the same id beside it; `wandb sync` uploads them as one run."""
    folder = Path(run["wandb_dir"])
    found = sorted(str(p) for p in folder.parent.glob(f"offline-run-*-{run['id']}") if p.is_dir())
    return found if str(folder) in found else [*found, str(folder)]


def _destination(sweep: dict, target: SweepPath | None, offline: list, entity: str | None, project: str | None):
    """(entity, project, `wandb sync` overrides) the sweep's runs upload to: a W&B sweep's own
    project (its runs carry it); a synced local sweep's W&B project; else --project/--entity, else
    the one project the runs logged to, else the default project."""
    sweep_id = sweep["id"]
    if sweep["origin"] == "wandb":
        project = target.project if target else _one({r["wandb_project"] for r in offline}, "project", "", sweep_id)
        entity = target.entity if target else _one({r["wandb_entity"] for r in offline}, "entity", "", sweep_id)
        return entity, project, []
    if target is not None:
        for given, have, flag in ((project, target.project, "--project"), (entity, target.entity, "--entity")):
            if given and given != have:
                raise UsageError(f"sweep {sweep_id} is W&B sweep {target} already; its runs go to {target.entity}/"
                                 f"{target.project} (drop {flag} {given})")
        entity, project = target.entity, target.project
    else:
        project = project or _one({r["wandb_project"] for r in offline}, "project", "--project", sweep_id) \
            or C.DEFAULTS["wandb_project"]
        entity = entity or _one({r["wandb_entity"] for r in offline}, "entity", "--entity", sweep_id)
    return entity, project, ["--project", project] + (["--entity", entity] if entity else [])


def _not_arrived(missing, ids, entity, project, sweep_id, log, consequence) -> int:
    log(f"error: {len(missing)} of {len(ids)} runs of sweep {sweep_id} did not reach W&B project {entity}/{project} "
        f"({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; see the messages of `wandb sync` above); "
        f"{consequence}: run `mlp sync {sweep_id}` again")
    return 1
