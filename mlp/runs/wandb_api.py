"""W&B's public API, for what this project needs from the service: a sweep's config and runs
(config, state, summary, per-epoch history, created time), which runs a project holds, and a new
sweep, optionally holding existing runs (W&B's prior-runs mechanism, as `wandb sweep --prior_run`).

Everything goes through wandb's own client (`wandb.Api`, `wandb.sweep`); this module only decides,
quickly and without a prompt, whether W&B can be reached, and turns wandb's objects and errors into
plain dicts and one-line `UsageError`s. Reachable means (mlp.runs.wandb_access): credentials exist
for the server wandb talks to (`WANDB_API_KEY`, or the netrc entry `wandb login [--host URL]`
wrote), the server answers an HTTP request through the proxy wandb would use within
`MLP_WANDB_TIMEOUT` seconds (default 5), and it accepts the credentials.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlp.config import expand_configuration
from mlp.errors import UsageError
from mlp.runs import wandb_access as access
from mlp.runs.tracking import MODEL_ARTIFACT, MODEL_FILE

__all__ = ["SweepPath", "WandbUnreachable", "WandbApi", "connect", "base_url", "sweep_url", "FINAL_STATES",
           "run_state", "sweep_state", "epoch_rows", "summary_values", "timeout_seconds", "proposed_params"]

HISTORY_SAMPLES = 100_000          # full history: runs log one row per epoch, far fewer than this
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")   # W&B entity and project names
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")        # W&B sweep and run ids

# W&B run states -> the store's; running, pending and preempting runs are not final yet
FINAL_STATES = {"finished": "finished", "failed": "failed", "crashed": "crashed", "killed": "killed",
                "preempted": "killed"}
_SWEEP_STATES = {"RUNNING": "running", "PAUSED": "running", "PENDING": "pending", "FINISHED": "finished",
                 "CANCELED": "cancelled", "CANCELLED": "cancelled", "CRASHED": "finished"}


class WandbUnreachable(UsageError):
    """W&B is needed and cannot be reached (no credentials, no connection, credentials refused)."""


@dataclass(frozen=True)
class SweepPath:
    """A W&B sweep's address: ENTITY/PROJECT/SWEEP_ID."""

    entity: str
    project: str
    sweep_id: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.sweep_id}"

    @classmethod
    def parse(cls, text: str) -> "SweepPath | None":
        """`ENTITY/PROJECT/SWEEP_ID` (also `ENTITY/PROJECT/sweeps/SWEEP_ID` and the sweep's URL)
        -> a SweepPath; a bare id (no slash) -> None; anything else -> UsageError."""
        raw = str(text).strip()
        if "/" not in raw:
            return None
        path = re.sub(r"^[a-z]+://[^/]+/", "", raw)             # a URL: drop scheme and host
        parts = [p for p in path.strip("/").split("/")]
        if len(parts) == 4 and parts[2] == "sweeps":
            parts = [parts[0], parts[1], parts[3]]
        if (len(parts) != 3 or not _NAME.fullmatch(parts[0]) or not _NAME.fullmatch(parts[1])
                or not _ID.fullmatch(parts[2])):
            raise UsageError(f"{raw[:120]!r} is neither a sweep id nor a W&B sweep path ENTITY/PROJECT/SWEEP_ID "
                             f"(as `wandb sweep` prints it)")
        return cls(*parts)


timeout_seconds = access.timeout_seconds
base_url = access.base_url


def sweep_url(path: SweepPath, api_url: str | None = None) -> str:
    """The sweep's page in W&B's web app."""
    from wandb.util import app_url
    return f"{app_url(api_url or base_url())}/{path.entity}/{path.project}/sweeps/{path.sweep_id}"


def connect(timeout: float | None = None) -> "WandbApi":
    """A WandbApi, or WandbUnreachable saying why W&B cannot be used from here (one line)."""
    timeout = timeout or timeout_seconds()
    url = base_url()
    if not access.credentials_exist(url):
        raise WandbUnreachable(f"no W&B credentials for {url} (run `wandb login`, `wandb login --host URL` for a "
                               f"self-hosted server, or set WANDB_API_KEY)")
    reason = access.unreachable(url, timeout)
    if reason:
        raise WandbUnreachable(f"W&B at {url} is unreachable ({reason})")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb
    try:
        api = wandb.Api(timeout=max(1, math.ceil(timeout * 4)))
    except Exception as e:  # wandb raises AuthenticationError, CommError, UsageError, ...
        raise WandbUnreachable(f"W&B at {url} did not accept the credentials or the request "
                               f"({type(e).__name__}: {_first_line(e)})") from None
    return WandbApi(api, url)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] or type(e).__name__


def _seconds(timestamp) -> float | None:
    """W&B's ISO 8601 timestamps (UTC, usually without a zone) -> seconds since the epoch."""
    if not timestamp:
        return None
    try:
        value = dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def run_state(state: str | None) -> str | None:
    """The store's final state for a W&B run state, or None while the run is not over."""
    return FINAL_STATES.get(str(state or "").lower())


def sweep_state(state: str | None) -> str:
    return _SWEEP_STATES.get(str(state or "").upper(), "running")


def _scalar(value) -> bool:
    return isinstance(value, (int, float, str, bool))


def summary_values(summary: dict) -> dict:
    """What a run's W&B summary says that the store keeps: numbers, text and lists of numbers
    (media and W&B's own `_` keys are left out)."""
    out = {}
    for key, value in dict(summary or {}).items():
        if str(key).startswith("_"):
            continue
        if _scalar(value) or (isinstance(value, list) and all(_scalar(v) or isinstance(v, list) for v in value)):
            out[key] = value
    return out


def epoch_rows(history: list[dict]) -> list[dict]:
    """The per-epoch rows of a run's W&B history (rows that carry an integer `epoch`), with their
    scalar metrics."""
    rows = {}
    for row in history or []:
        epoch = row.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not float(epoch).is_integer():
            continue
        metrics = {k: v for k, v in row.items()
                   if not str(k).startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics["epoch"] = int(epoch)
        rows.setdefault(int(epoch), {}).update(metrics)
    return [rows[e] for e in sorted(rows)]


_RUN_STOP_STATE = """
query RunStopState($entity: String!, $project: String!, $name: String!) {
  project(name: $project, entityName: $entity) {
    run(name: $name) { shouldStop stopped }
  }
}
"""
_ATTACH_RUN = """
mutation UpsertBucket($entity: String, $project: String, $name: String, $sweep: String) {
  upsertBucket(input: {entityName: $entity, modelName: $project, name: $name, sweep: $sweep}) {
    bucket { id name sweepName }
  }
}
"""


class WandbApi:
    """wandb's public API with the answers as plain values and the errors as one line."""

    def __init__(self, api, url: str):
        self.api, self.url = api, url

    def _call(self, what: str, fn):
        try:
            return fn()
        except UsageError:
            raise
        except Exception as e:  # CommError, ValueError("Could not find ..."), WandbApiFailedError, ...
            raise UsageError(f"W&B could not {what}: {_first_line(e)}") from None

    @property
    def default_entity(self) -> str:
        entity = self._call("tell the default entity of these credentials", lambda: self.api.default_entity)
        if not entity:
            raise UsageError("W&B did not tell the default entity of these credentials; pass --entity")
        return entity

    def sweep(self, path: SweepPath) -> dict:
        """{"name", "config", "yaml", "state", "created_at"} of a sweep; UsageError if W&B has none."""
        def fetch():
            sweep = self.api.sweep(str(path))
            return {"name": sweep.name, "config": sweep.config, "yaml": sweep._attrs.get("config") or "",
                    "state": sweep_state(sweep._attrs.get("state")), "created_at": _seconds(sweep._attrs.get("createdAt"))}
        return self._call(f"find sweep {path}", fetch)

    def sweep_runs(self, path: SweepPath):
        """The sweep's runs, oldest first: {"id", "name", "state" (W&B's), "config" (values),
        "summary", "created_at", "heartbeat_at"} each. History comes from `history(run)`."""
        def fetch():
            runs = self.api.runs(f"{path.entity}/{path.project}", filters={"$and": [{"sweep": path.sweep_id}]},
                                 order="+created_at", per_page=100, lazy=False)
            return [{"id": r.id, "name": r.name, "state": r.state, "config": dict(r.config),
                     "summary": dict(r.summary_metrics), "created_at": _seconds(r._attrs.get("createdAt")),
                     "heartbeat_at": _seconds(r._attrs.get("heartbeatAt")), "_run": r} for r in runs]
        return self._call(f"list the runs of sweep {path}", fetch)

    def history(self, run: dict) -> list[dict]:
        """The run's per-epoch rows."""
        wandb_run = run["_run"]
        return self._call(f"read the history of run {run['id']}",
                          lambda: epoch_rows(wandb_run.history(samples=HISTORY_SAMPLES, pandas=False)))

    def download_model(self, entity: str, project: str, run_id: str, target) -> str | None:
        """Download run `run_id`'s model artifact (MODEL_ARTIFACT:RUN_ID, type `model`) to the file
        `target` (atomically); returns the artifact's W&B name, or None when W&B holds none."""
        name = f"{entity}/{project}/{MODEL_ARTIFACT}:{run_id}"
        target = Path(target)

        def fetch():
            if not self.api.artifact_exists(name, type="model"):
                return None
            artifact = self.api.artifact(name, type="model")
            with tempfile.TemporaryDirectory(prefix=".mlp-download-", dir=_existing_parent(target)) as folder:
                artifact.download(root=folder)
                got = Path(folder) / MODEL_FILE
                if not got.is_file():
                    raise UsageError(f"W&B artifact {name} holds no {MODEL_FILE}")
                got.replace(target)
            return name
        return self._call(f"download the model artifact of run {run_id}", fetch)

    def existing_runs(self, entity: str, project: str, run_ids) -> set[str]:
        """Which of these run ids the project holds."""
        ids = list(run_ids)
        if not ids:
            return set()

        def fetch():
            runs = self.api.runs(f"{entity}/{project}", filters={"$or": [{"name": i} for i in ids]}, per_page=100)
            return {r.id for r in runs}
        return self._call(f"list runs of {entity}/{project}", fetch)

    def run_should_stop(self, entity: str, project: str, run_id: str) -> bool:
        """Whether W&B asked for the run to stop: its sweep's early termination (`shouldStop`)."""
        answer = self._call(f"tell whether run {run_id} was asked to stop",
                            lambda: self._graphql(_RUN_STOP_STATE, {"entity": entity, "project": project,
                                                                    "name": run_id}))
        run = ((answer or {}).get("project") or {}).get("run") or {}
        return bool(run.get("shouldStop") or run.get("stopped"))

    def sweep_run_ids(self, path: SweepPath) -> set[str]:
        """The ids of the runs W&B holds in the sweep."""
        def fetch():
            runs = self.api.runs(f"{path.entity}/{path.project}", filters={"$and": [{"sweep": path.sweep_id}]},
                                 per_page=100)
            return {r.id for r in runs}
        return self._call(f"list the runs of sweep {path}", fetch)

    def attach_runs(self, path: SweepPath, run_ids) -> None:
        """Put existing runs of the sweep's project into the sweep — what W&B records for a run
        that starts in a sweep (`upsertBucket` with its sweep), for runs uploaded after the sweep was
        created without its id."""
        for run_id in run_ids:
            self._call(f"add run {run_id} to sweep {path}",
                       lambda run_id=run_id: self._graphql(_ATTACH_RUN, {"entity": path.entity, "project": path.project,
                                                                         "name": run_id, "sweep": path.sweep_id}))

    def _graphql(self, query: str, variables: dict):
        """One GraphQL operation through wandb's own client (wandb-core's, as the public API sends
        its own queries in every wandb this project supports: pyproject.toml's floor)."""
        return self.api._service_api.execute_graphql(query, variables)

    def create_sweep(self, config: dict, entity: str, project: str, prior_runs=None) -> SweepPath:
        """A new W&B sweep from `config`, holding the existing runs `prior_runs` (ids in the same
        project), made by wandb's own `wandb.sweep`. Its messages go to stderr, and the process
        environment it changes (WANDB_ENTITY, WANDB_PROJECT) is put back."""
        import wandb
        saved = {k: os.environ.get(k) for k in ("WANDB_ENTITY", "WANDB_PROJECT")}
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                sweep_id = self._call(f"create a sweep in {entity}/{project}",
                                      lambda: wandb.sweep(config, entity=entity, project=project,
                                                          prior_runs=list(prior_runs or []) or None))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if printed.getvalue().strip():
                print(printed.getvalue().rstrip(), file=sys.stderr, flush=True)
        return SweepPath(entity, project, str(sweep_id))


def _existing_parent(target: Path) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    return str(target.parent)


def proposed_params(sweep_config: dict, run_config: dict) -> dict:
    """What the sweep chose for a run: the run's values of the sweep's parameters, with a
    `configuration` spread into its parameters."""
    names = list((sweep_config or {}).get("parameters") or {})
    return expand_configuration({k: run_config[k] for k in names if k in run_config})


def describe_wandb_sweep(store, sweep_id: str, entity: str | None, project: str | None) -> None:
    """Give a W&B sweep known only through its runs' parameter files (method "unknown") its real
    config, name and state from W&B's public API. Best effort: a run goes on without it."""
    try:
        sweep = store.get_sweep(sweep_id)
        if sweep["origin"] != "wandb" or (sweep["config"] or {}).get("method") != "unknown":
            return
        if not sweep["wandb_path"] and not (entity and project):
            return
        path = SweepPath.parse(sweep["wandb_path"] or f"{entity}/{project}/{sweep_id}")
        found = connect().sweep(path)
        store.upsert_wandb_sweep(str(path), found["config"], found["yaml"], found["name"], found["state"],
                                 found["created_at"])
    except UsageError as e:
        print(f"warning: the store keeps sweep {sweep_id}'s config as its runs show it ({e})", file=sys.stderr,
              flush=True)
